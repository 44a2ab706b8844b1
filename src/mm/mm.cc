#include "uiommufd/mm/mm.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "user_copy.h"

#include "uiommufd/base/assert.h"
#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/sanitizers.h"

namespace uiommufd {
namespace {

// The kernel's generic usercopy fault points (docs/fault-injection.md#kernel-sites, #sites): every copy from
// or to caller memory.
UIOMMUFD_FAULT_SITE(g_fault_copy_from_user, "mm.copy_from_user", EFAULT);
UIOMMUFD_FAULT_SITE(g_fault_copy_to_user, "mm.copy_to_user", EFAULT);

void* to_ptr(std::uint64_t uaddr) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(uaddr)); }

// The kernel's access_ok(): a range whose end wraps is never valid user memory.
bool range_wraps(std::uint64_t uaddr, std::uint64_t len) {
  std::uint64_t end = 0;
  return !checked_add(uaddr, len, &end);
}

// make_resident() and lock() take whole pages; a misaligned request is a caller bug that would otherwise
// silently cover a different range than asked.
bool page_aligned(std::uint64_t uaddr, std::uint64_t len) {
  return page_offset(uaddr) == 0 && page_offset(len) == 0;
}

// mlock / munlock as raw system calls: the sanitizer runtimes intercept the libc wrappers and turn them
// into no-ops that report success, which would make ASan/TSan builds behave differently from the rest.
int sys_mlock(std::uint64_t uaddr, std::uint64_t len) {
  return static_cast<int>(syscall(SYS_mlock, to_ptr(uaddr), static_cast<std::size_t>(len)));
}
int sys_munlock(std::uint64_t uaddr, std::uint64_t len) {
  return static_cast<int>(syscall(SYS_munlock, to_ptr(uaddr), static_cast<std::size_t>(len)));
}

}  // namespace

RefPtr<Mm> Mm::current() {
  // Never destroyed: objects torn down by other static destructors (or by threads still running at exit)
  // may hold references.
  static RefPtr<Mm>* const instance = new RefPtr<Mm>(new Mm());
  return *instance;
}

Mm& Mm::current_ref() {
  static Mm* const mm = current().get();
  return *mm;
}

Status Mm::copy_from_user(void* dst, std::uint64_t uaddr, std::size_t len) const {
  if (len == 0) return Status();
  if (should_fail(g_fault_copy_from_user)) {
    std::memset(dst, 0, len);
    return Status::error(g_fault_copy_from_user.error());
  }
  const bool wraps = range_wraps(uaddr, len);
  if (!wraps && mm_internal::short_copy(/*to_user=*/false, dst, uaddr, len)) [[likely]] return Status();
  std::size_t copied = 0;
  Status st = wraps ? Status::error(EFAULT)
                    : mm_internal::copy_from_user(mm_internal::CopyMethod::kAuto, dst, uaddr, len, &copied);
  if (!st.ok()) std::memset(static_cast<char*>(dst) + copied, 0, len - copied);
  return st;
}

Status Mm::copy_to_user(std::uint64_t uaddr, const void* src, std::size_t len) const {
  if (len == 0) return Status();
  TRY(inject(g_fault_copy_to_user));
  if (range_wraps(uaddr, len)) return Status::error(EFAULT);
  // The local side is only read.
  if (mm_internal::short_copy(/*to_user=*/true, const_cast<void*>(src), uaddr, len)) [[likely]]
    return Status();
  return mm_internal::copy_to_user(mm_internal::CopyMethod::kAuto, uaddr, src, len);
}

Status Mm::check_zeroed_user(std::uint64_t uaddr, std::size_t len) const {
  unsigned char buf[256];
  for (std::size_t off = 0; off < len;) {
    const std::size_t chunk = std::min<std::size_t>(sizeof(buf), len - off);
    TRY(copy_from_user(buf, uaddr + off, chunk));
    for (std::size_t i = 0; i < chunk; ++i) {
      if (buf[i]) return Status::error(E2BIG);
    }
    off += chunk;
  }
  return {};
}

Status Mm::copy_struct_from_user(void* dst, std::size_t known, std::uint64_t uaddr,
                                 std::size_t user_size) const {
  std::memset(dst, 0, known);
  if (user_size > known) TRY(check_zeroed_user(uaddr + known, user_size - known));
  return copy_from_user(dst, uaddr, std::min(known, user_size));
}

namespace {
std::atomic<bool> g_store_in_place_disabled{false};
}  // namespace

void Mm::set_store_in_place_disabled_for_testing(bool disabled) {
  g_store_in_place_disabled.store(disabled, std::memory_order_relaxed);
}

Status Mm::store_in_place(std::uint64_t uaddr, std::size_t len, void (*store)(void*), void* ctx) const {
#if defined(UIOMMUFD_SANITIZED)
  (void)uaddr, (void)len, (void)store, (void)ctx;
  return Status::error(EOPNOTSUPP);
#else
  if (g_store_in_place_disabled.load(std::memory_order_relaxed) || range_wraps(uaddr, len) ||
      !mm_internal::recoverable_copy_usable(uaddr, len))
    return Status::error(EOPNOTSUPP);
  return mm_internal::recoverable_run(uaddr, len, store, ctx);
#endif
}

Status Mm::make_resident(std::uint64_t uaddr, std::uint64_t len, bool write) const {
  if (!page_aligned(uaddr, len)) return Status::error(EINVAL);
  if (len == 0) return Status();
  if (range_wraps(uaddr, len)) return Status::error(EFAULT);
  // A short range is faulted in by touching it: for pages already resident that is a few instructions
  // instead of a system call. Longer ranges go to MADV_POPULATE, which faults many pages per call.
  constexpr std::uint64_t kTouchMaxBytes = 16 * kPageSize;
  if (len <= kTouchMaxBytes && mm_internal::recoverable_touch_supported() &&
      mm_internal::recoverable_copy_usable(uaddr, len))
    return mm_internal::recoverable_touch(uaddr, len, write);
  if (!mm_internal::madv_populate_supported()) return mm_internal::make_resident_by_probing(uaddr, len, write);

  for (;;) {
    if (madvise(to_ptr(uaddr), len, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0) return Status();
    switch (errno) {
      case EINTR:
        // Only a fatal signal interrupts populating; retrying is harmless while the process dies.
        continue;
      case ENOMEM:
        // madvise says ENOMEM both for "no VMA here" and for a real allocation failure; GUP, which we
        // model, says EFAULT for the first.
        return Status::error(mm_internal::range_is_mapped(uaddr, len) ? ENOMEM : EFAULT);
      default:
        // EINVAL: alignment was checked and support was probed, so it is "incompatible mapping or
        // permissions" (write to a read-only mapping, PROT_NONE, VM_IO / VM_PFNMAP), which GUP reports as
        // EFAULT. EFAULT / EHWPOISON: a page could not be faulted in.
        return Status::error(EFAULT);
    }
  }
}

Status Mm::lock(std::uint64_t uaddr, std::uint64_t len) const {
  if (!page_aligned(uaddr, len)) return Status::error(EINVAL);
  if (len == 0) return Status();
  if (range_wraps(uaddr, len)) return Status::error(EFAULT);
  // mlock locks VMA by VMA and stops at the first hole, so check for holes first rather than undo a
  // half-done lock in the common bad-address case.
  if (!mm_internal::range_is_mapped(uaddr, len)) return Status::error(EFAULT);
  if (sys_mlock(uaddr, len) == 0) return Status();
  const int err = errno;
  // Whatever part mlock managed before failing (a hole appearing meanwhile, or failed population after the
  // VMAs were marked) is unlocked again, so a failed lock() leaves nothing behind.
  sys_munlock(uaddr, len);
  if (err == ENOMEM && !mm_internal::range_is_mapped(uaddr, len)) return Status::error(EFAULT);
  if (err == EINVAL) return Status::error(EFAULT);
  // ENOMEM (over RLIMIT_MEMLOCK), EPERM (limit 0 without CAP_IPC_LOCK), EAGAIN (pages could not be locked):
  // all are "no more memory can be locked" to our callers.
  return Status::error(ENOMEM);
}

void Mm::unlock(std::uint64_t uaddr, std::uint64_t len) const {
  UIOMMUFD_DCHECK(page_aligned(uaddr, len));
  if (len == 0 || range_wraps(uaddr, len)) return;
  // munlock stops with ENOMEM at the first hole. Normally the pinned range is still fully mapped and one
  // call does it; otherwise go page by page so that pages past the hole are unlocked too.
  if (sys_munlock(uaddr, len) == 0) return;
  for (std::uint64_t off = 0; off < len; off += kPageSize) sys_munlock(uaddr + off, kPageSize);
}

void* Mm::host_address(std::uint64_t uaddr) const { return to_ptr(uaddr); }

namespace {

// /proc/<pid>/maps' PROCMAP_QUERY (include/uapi/linux/fs.h, Linux 6.11), declared here because the C
// library's headers may predate it.
struct ProcmapQuery {
  std::uint64_t size;
  std::uint64_t query_flags;
  std::uint64_t query_addr;
  std::uint64_t vma_start;
  std::uint64_t vma_end;
  std::uint64_t vma_flags;
  std::uint64_t vma_page_size;
  std::uint64_t vma_offset;
  std::uint64_t inode;
  std::uint32_t dev_major;
  std::uint32_t dev_minor;
  std::uint32_t vma_name_size;
  std::uint32_t build_id_size;
  std::uint64_t vma_name_addr;
  std::uint64_t build_id_addr;
};
constexpr unsigned long kProcmapQuery = _IOWR('f', 17, ProcmapQuery);

}  // namespace

std::uint64_t Mm::physical_block(std::uint64_t uaddr, std::uint64_t len) const {
  std::uint64_t last = 0;
  if (len == 0 || !checked_add(uaddr, len - 1, &last)) return kPageSize;
  // Opened per call: a descriptor kept open would answer for the parent after a fork.
  const int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kPageSize;
  std::uint64_t block = 0;
  for (std::uint64_t addr = uaddr;;) {
    ProcmapQuery q{};
    q.size = sizeof(q);
    q.query_addr = addr;
    if (::ioctl(fd, kProcmapQuery, &q) != 0 || q.vma_start > addr || q.vma_page_size < kPageSize ||
        (q.vma_page_size & (q.vma_page_size - 1)) != 0) {
      block = kPageSize;
      break;
    }
    block = block == 0 ? q.vma_page_size : std::min(block, q.vma_page_size);
    if (block == kPageSize || q.vma_end == 0 || q.vma_end - 1 >= last) break;
    addr = q.vma_end;
  }
  ::close(fd);
  return block;
}

}  // namespace uiommufd
