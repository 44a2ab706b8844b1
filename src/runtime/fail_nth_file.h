// read / write of the virtual fail-nth files (docs/fault-injection.md#fail-nth-file, #virtual-fail-nth), on
// the counters of include/uiommufd/base/fault.h. Neither consumes a counter: they pass no fault site.
#pragma once

#include <cstddef>
#include <cstdint>

#include <sys/types.h>

namespace uiommufd::runtime {

// Parses the caller's text as the kernel's kstrtouint_from_user does (at most the first 34 bytes count)
// and sets thread `tid`'s counter. Returns `count`, or a negated errno: EFAULT (buf unreadable), EINVAL
// (not a number), ERANGE (above 2^32 - 1), ESRCH (the thread has exited).
ssize_t fail_nth_write(int tid, const void* buf, std::size_t count);

// "%u\n" of thread `tid`'s counter, from byte `pos` on: the number of bytes copied (0 at or past the
// end), or a negated errno: EINVAL (pos < 0), EFAULT (buf unwritable), ESRCH (the thread has exited).
ssize_t fail_nth_read(int tid, void* buf, std::size_t count, std::int64_t pos);

}  // namespace uiommufd::runtime
