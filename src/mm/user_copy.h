// Internal to the mm layer: the fault-safe access mechanisms behind Mm, split out so that tests can drive
// each mechanism directly (the fallbacks are never taken on a modern kernel without seccomp).
//
// None of these check fault sites; Mm's public members do that once per call. All are thread-safe and
// take no lock. Ranges are half-open [uaddr, uaddr + len) in this process's address space; callers have
// already rejected ranges whose end wraps.
#pragma once

#include <cstddef>
#include <cstdint>

#include "uiommufd/base/status.h"

namespace uiommufd::mm_internal {

enum class CopyMethod : std::uint8_t {
  kAuto,         // the choice Mm makes: kRecoverable where usable, else process_vm_* while available, else
                 // the pipe
  kRecoverable,  // memcpy in a fault-recoverable region (recoverable_copy.cc); process_vm_* for the ranges
                 // and threads where recoverable_copy_usable() is false (never the pipe)
  kProcessVm,    // process_vm_readv / process_vm_writev on our own pid only
  kPipe,         // the per-thread pipe only
};

// Copies len bytes from user memory to dst. `*copied` (if non-null) receives the number of leading bytes
// copied (== len on success). Errors: EFAULT; ENOMEM if the pipe cannot be created; ENOSYS only with
// kProcessVm when process_vm_readv is unavailable (nothing copied then). dst is not zeroed here.
Status copy_from_user(CopyMethod method, void* dst, std::uint64_t uaddr, std::size_t len,
                      std::size_t* copied = nullptr);
// Copies len bytes from src to user memory. Errors as above.
Status copy_to_user(CopyMethod method, std::uint64_t uaddr, const void* src, std::size_t len);

// The fault-recoverable memcpy (recoverable_copy.cc). A SIGSEGV / SIGBUS handler is installed on first
// use (process-wide, once); faults outside a copy, or outside the user range of the copy in progress, go to
// the handler installed before it (or kill the process, if that was the default).
//
// recoverable_copy_available(): the handler is (now) installed and not disabled for testing.
// recoverable_copy_usable(): available, and usable for this range on this thread: the range lies below
//   2^47, the calling thread does not block SIGSEGV / SIGBUS (sampled once per thread), and no copy is
//   already in progress on this thread.
// recoverable_copy(): the copy; precondition recoverable_copy_usable(uaddr, len). *done receives the
//   leading bytes copied; on a fault the copy stops at the first inaccessible page (whole pages before it
//   are copied, nothing at or after it is). Errors: EFAULT only.
bool recoverable_copy_available();
bool recoverable_copy_usable(std::uint64_t uaddr, std::size_t len);
Status recoverable_copy(bool to_user, void* local, std::uint64_t uaddr, std::size_t len, std::size_t* done);
// The quick road for short copies (command structs): one instruction sequence under the handler's fix-up,
// with no region set up. True when all len bytes were copied. False when the range or thread does not
// qualify (too long, above 2^47, a thread whose mask state is not yet known to allow recovery, the handler
// not installed or disabled for testing) or when the copy faulted part way; either way the caller goes on
// to the general path, which redoes the whole copy and reports the exact progress.
bool short_copy(bool to_user, void* local, std::uint64_t uaddr, std::size_t len);
// Test hook: makes kAuto and kRecoverable skip the recoverable copy (as if it were not usable).
void set_recoverable_copy_disabled_for_testing(bool disabled);

// Runs fn(ctx) inside the recoverable region for [uaddr, uaddr + len): fn stores straight into that range,
// and a fault there ends fn (siglongjmp) with EFAULT. Precondition: recoverable_copy_usable(uaddr, len).
// fn's frames are abandoned on a fault: it must keep its progress in memory it was handed, hold no lock
// and allocate nothing.
Status recoverable_run(std::uint64_t uaddr, std::size_t len, void (*fn)(void*), void* ctx);

// Faults in the pages of a page-aligned range inside the recoverable region, the way a user copy would
// (write: writable, copy-on-write broken), without changing a byte: EFAULT where a page cannot be faulted
// in. For a few pages it is much cheaper than MADV_POPULATE_*, whose system call costs more than the
// faults of an already resident range. Precondition: recoverable_touch_supported() and
// recoverable_copy_usable(uaddr, len).
bool recoverable_touch_supported();
Status recoverable_touch(std::uint64_t uaddr, std::size_t len, bool write);

// Whether process_vm_* has been found unavailable (sticky once seen), and a test hook to pretend so.
bool process_vm_unavailable();
void set_process_vm_unavailable_for_testing(bool unavailable);

// Whether this kernel supports MADV_POPULATE_READ / _WRITE (probed once, then cached).
bool madv_populate_supported();

// make_resident's fallback: touches every page of the page-aligned range with a fault-safe read, and for
// `write` a fault-safe write of the same byte. EFAULT at the first page that fails; ENOMEM if the pipe
// fallback is in use and cannot be created.
Status make_resident_by_probing(std::uint64_t uaddr, std::uint64_t len, bool write);

// Whether every page of the page-aligned range is mapped (mincore reports ENOMEM for holes). Used to tell
// "unmapped" (EFAULT) from "out of memory" (ENOMEM), which madvise and mlock both report as ENOMEM.
bool range_is_mapped(std::uint64_t uaddr, std::uint64_t len);

}  // namespace uiommufd::mm_internal
