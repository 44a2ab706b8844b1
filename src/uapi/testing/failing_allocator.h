// A global allocator for one test binary that can be made to fail its Nth allocation, the heap's
// counterpart of the fail-nth fault sites (base/fault.h).
//
// Linking failing_allocator.cc into a binary replaces every form of the global operator new and operator
// delete (plain, array, nothrow, aligned, sized). Each thread has a counter, 0 (disarmed) when it starts;
// alloc_fail_nth_set(N) arms the calling thread's, after which each operator new on that thread counts
// down, and the one that brings it to 0 fails: the throwing forms throw std::bad_alloc, the nothrow forms
// return null. Exactly one allocation fails per arming. Other threads are never failed.
//
// Not covered: malloc, calloc and realloc called directly (by the C library or by the engine's own page
// table cache). Those are left to the sanitizers' allocators, which this file does not replace: it
// allocates with malloc, so AddressSanitizer still sees every block and reports the ones leaked.
#pragma once

#include <cstdint>

namespace uiommufd::uapi::testing {

// Arms (N > 0) or disarms (N = 0) the calling thread's counter.
void alloc_fail_nth_set(std::uint32_t n);
// The calling thread's counter: 0 after the armed allocation failed (or when disarmed), otherwise the
// number of allocations still to come before it.
std::uint32_t alloc_fail_nth_get();
// Allocations failed on purpose on the calling thread since it started.
std::uint64_t alloc_failures_on_this_thread();
// Blocks allocated by operator new and not yet deleted, over all threads.
std::int64_t live_blocks();

}  // namespace uiommufd::uapi::testing
