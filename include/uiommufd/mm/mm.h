// Mm: the address space that pinned pages come from (the kernel's struct mm_struct, as iopt_pages sees it).
//
// There is one Mm for this process (local()), and one per other process the shared-mode server serves
// (for_process(); docs/shared.md#memory): the server's engine reads, writes and pins a client's memory
// through it. "The caller" is Mm::current(): this process, or the client a server thread is serving
// (CurrentScope), as the kernel's current->mm. Every engine read or write of user memory goes through an
// Mm, which turns a bad address into EFAULT instead of a crash (docs/design.md#user-memory).
//
// Addresses ("uaddr") are user virtual addresses of this Mm as 64-bit integers. Ranges are half-open,
// [uaddr, uaddr + len), with len in bytes.
//
// Thread safety: every member may be called from any thread, concurrently, with or without engine locks
// held as far as this class is concerned; it takes no lock. Both a user copy and make_resident can sleep on
// page faults for a long time, so the engine keeps them out from under its locks except where the kernel
// has them there too: make_resident under pages.mutex (the pin), and access rw's copy of mapped memory under
// iova_rwsem for reading (docs/locking.md#rules).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <sys/types.h>

#include "uiommufd/base/page.h"
#include "uiommufd/base/ref_ptr.h"
#include "uiommufd/base/result.h"
#include "uiommufd/base/status.h"

namespace uiommufd {

class Mm : public RefCounted<Mm> {
 public:
  // The caller's address space: this process's (local()), unless a CurrentScope on this thread names
  // another.
  static RefPtr<Mm> current();
  // The same without taking a reference, for paths that only use it within a call (a CurrentScope
  // outlives the call it is opened around; the local instance lives as long as the process).
  static Mm& current_ref() {
    Mm* scoped = tls_current_;
    return scoped ? *scoped : local_ref();
  }
  // This process's own address space. It is never destroyed (it outlives every static object that might
  // still hold pages at exit). In a forked child it keeps working and refers to the child's own address
  // space: the process id is read on each call, never cached.
  static Mm& local_ref();

  // The address space of another process `pid` (the shared-mode server's client): read and written with
  // process_vm_readv / process_vm_writev, which the kernel permits by ptrace rules (the client allows its
  // server, docs/shared.md#memory). A pidfd is kept, so a pid reused after the process exited is never
  // taken for it: once the process is gone every access is EFAULT, as GUP on a dead mm. The same live
  // process gives the same Mm while anyone holds it. `pid` equal to this process's gives the local Mm.
  // Errors: ESRCH (no such process), EPERM (not ours to access), ENOMEM, EMFILE.
  static Result<RefPtr<Mm>> for_process(pid_t pid);

  // While alive, Mm::current() / current_ref() on this thread answer `mm` (the server serving a client's
  // call). Nests; the previous caller is restored at destruction. The Mm must outlive the scope.
  class CurrentScope {
   public:
    explicit CurrentScope(Mm& mm) : saved_(tls_current_) { tls_current_ = &mm; }
    ~CurrentScope() { tls_current_ = saved_; }
    CurrentScope(const CurrentScope&) = delete;
    CurrentScope& operator=(const CurrentScope&) = delete;

   private:
    Mm* saved_;
  };

  // The page identity (base/page.h) of an address of this Mm, as software domains store it: the address
  // itself for the local Mm; for another process, the address with that Mm's tag in bits 48..62, so that
  // the same address in two processes is two different pages and a domain entry names its process.
  static constexpr unsigned kPhysTagShift = 48;
  PhysAddr phys_of(std::uint64_t uaddr) const { return uaddr | (std::uint64_t{tag_} << kPhysTagShift); }
  // The address part of a PhysAddr made by phys_of(), and the Mm whose tag it carries (the local Mm for
  // tag 0; null when no Mm with that tag is alive any more).
  static std::uint64_t phys_address(PhysAddr p) { return p & ((std::uint64_t{1} << kPhysTagShift) - 1); }
  static RefPtr<Mm> of_phys(PhysAddr p);

  // Whether this is another process's address space (for_process()), and that process's id (0 locally).
  bool remote() const { return pid_ != 0; }
  pid_t pid() const { return pid_; }
  // Whether the process behind a remote Mm has exited (its pidfd is readable); false for the local Mm.
  bool exited() const;
  // The pidfd of a remote Mm's process (-1 locally), for a caller that waits for its exit with poll/epoll.
  int pidfd() const { return pidfd_; }
  // The real user id of the process (the kernel's current_user()), which kUser accounting charges.
  uid_t uid() const;

  // Fault-safe copies between engine memory (dst / src: ordinary pointers the caller vouches for) and user
  // addresses of this Mm. The user side is accessed with the permissions of its mapping, like the kernel's
  // copy_{from,to}_user: an unmapped, PROT_NONE, or (for copy_to_user) read-only page gives EFAULT and
  // never crashes.
  //
  // How: an ordinary memcpy inside a fault-recoverable region (src/mm/recoverable_copy.cc). On first use a
  // SIGSEGV / SIGBUS handler is installed, once per process; a fault in the user range of a copy in
  // progress on the faulting thread is turned into EFAULT (siglongjmp back into the copy), and any other
  // fault goes to the handler that was installed before ours, or kills the process as it would have.
  // No system call per copy. Programs that install their own SIGSEGV / SIGBUS handler after the first copy
  // must chain to the previous one (as ASan and most runtimes do), or user copies that fault will crash.
  // Where the region cannot be used — a range reaching above 2^47, a thread that blocks SIGSEGV or SIGBUS
  // (sampled on its first copy), a copy nested in a signal handler on the same thread — the copy uses
  // process_vm_readv / process_vm_writev on our own pid. If those are unavailable (ENOSYS or EPERM, e.g.
  // under seccomp), the process switches for good to a per-thread pipe: writing user memory into a pipe, or
  // reading a pipe into user memory, makes the kernel do the access and report EFAULT.
  //
  // len 0 succeeds without touching anything (and without consuming the fault-injection counter).
  // A range whose end wraps past 2^64 gives EFAULT.
  //
  // copy_from_user errors: EFAULT (bad user range; fault site "mm.copy_from_user"); ENOMEM only if the
  //   pipe fallback is in use and the pipe cannot be created (out of file descriptors). On error a prefix
  //   of dst may have been copied; the rest of dst is zeroed, as the kernel's copy_from_user does, so no
  //   stale engine memory is mistaken for user data.
  // copy_to_user errors: EFAULT (fault site "mm.copy_to_user"); ENOMEM as above. On error a prefix of the
  //   user range may have been written (never anything at or past the first inaccessible page).
  Status copy_from_user(void* dst, std::uint64_t uaddr, std::size_t len) const;
  Status copy_to_user(std::uint64_t uaddr, const void* src, std::size_t len) const;
  // The same without their fault sites, for copies the kernel never makes (the shared-mode client reading
  // its own ioctl argument to send it along): a fail-nth sweep counts only the engine's.
  Status copy_from_user_uninjected(void* dst, std::uint64_t uaddr, std::size_t len) const;
  Status copy_to_user_uninjected(std::uint64_t uaddr, const void* src, std::size_t len) const;

  // The first bytes of the caller's ioctl argument, as the shared-mode client sent them with the call
  // (docs/shared.md#inline): while an ArgWindowScope names it on this thread, the part of any copy of `mm`
  // that falls in [uaddr, uaddr + len) uses `bytes` instead of the process (reads from them; writes into
  // them, widening [dirty_lo, dirty_hi), which the server sends back for the client to store; a write is
  // EFAULT when the client found the bytes not writable). Fault sites count as for any copy.
  struct ArgWindow {
    const Mm* mm = nullptr;
    std::uint64_t uaddr = 0;
    unsigned char* bytes = nullptr;
    std::size_t len = 0;
    bool writable = false;
    std::size_t dirty_lo = SIZE_MAX, dirty_hi = 0;  // offsets into bytes; empty while lo >= hi
  };
  class ArgWindowScope {
   public:
    explicit ArgWindowScope(ArgWindow& w) : saved_(tls_window_) { tls_window_ = &w; }
    ~ArgWindowScope() { tls_window_ = saved_; }
    ArgWindowScope(const ArgWindowScope&) = delete;
    ArgWindowScope& operator=(const ArgWindowScope&) = delete;

   private:
    ArgWindow* saved_;
  };
  // An extensible struct of the caller's, `user_size` bytes at uaddr, into dst (`known` bytes), as the
  // kernel's copy_struct_from_user(): a shorter caller struct is zero-extended; a longer one must be zero
  // beyond `known` bytes (E2BIG otherwise). EFAULT if unreadable.
  Status copy_struct_from_user(void* dst, std::size_t known, std::uint64_t uaddr,
                               std::size_t user_size) const;
  // Whether [uaddr, uaddr + len) is all zero bytes (the kernel's check_zeroed_user()): E2BIG when not,
  // EFAULT if unreadable. Read in bounded pieces, each a copy.
  Status check_zeroed_user(std::uint64_t uaddr, std::size_t len) const;

  // Stores straight into user memory: runs store(ctx), which may write anywhere in [uaddr, uaddr + len) of
  // this Mm with ordinary stores, a fault there being caught by the region the copies use instead of killing
  // the process. For writers that scatter small pieces over a range (a dirty bitmap), where a copy per piece
  // costs more than the stores themselves. `store` must keep its progress in memory it was handed (a fault
  // abandons its frames), hold no lock and allocate nothing.
  // Errors: EFAULT when store faulted part way (it stopped at that store; what it stored before stays);
  //   EOPNOTSUPP, before store runs, where the region cannot serve (a range reaching above 2^47 or wrapping,
  //   a thread that blocks SIGSEGV or SIGBUS, a nested use, a sanitized build, whose instrumented stores
  //   check shadow memory first and would fault outside the range) or after
  //   set_store_in_place_disabled_for_testing(true): the caller then uses copies.
  // No fault site: callers that could fail where the kernel can (a pin) check with a copy first.
  Status store_in_place(std::uint64_t uaddr, std::size_t len, void (*store)(void*), void* ctx) const;
  static void set_store_in_place_disabled_for_testing(bool disabled);

  // Makes [uaddr, uaddr + len) resident and checks that every page is accessible for writing when `write`
  // (for reading otherwise), as long-term GUP with/without FOLL_WRITE would. uaddr and len must be
  // multiples of kPageSize. A write populate breaks copy-on-write sharing, so the pages are this Mm's own.
  //
  // How: madvise(MADV_POPULATE_WRITE / MADV_POPULATE_READ). If the kernel lacks them (before 5.14), each
  // page is probed instead with a fault-safe read, and for `write` a fault-safe write of the byte just read.
  // FIXME: that fallback write can undo a concurrent store of another thread to the same byte; the kernel
  // path has no such window. Kernels with MADV_POPULATE (everything since 5.14) never take it.
  //
  // Errors: EINVAL if uaddr or len is not page-aligned; EFAULT if the end wraps past 2^64, or any page is
  // unmapped, or lacks the access (PROT_NONE; read-only for `write`; VM_IO/VM_PFNMAP mappings);
  // ENOMEM if the kernel runs out of memory while populating a fully mapped range. len 0 succeeds.
  // No fault site: the pinning site ("pages.pin") belongs to the caller.
  Status make_resident(std::uint64_t uaddr, std::uint64_t len, bool write) const;

  // mlock / munlock of [uaddr, uaddr + len), for callers that ask pins to be locked in RAM. uaddr and len
  // must be multiples of kPageSize; len 0 is a no-op.
  //
  // mlock state is per page, not counted: two overlapping lock() calls are undone by one unlock(). Callers
  // that may overlap must count themselves. The kernel also charges mlocked pages to the process's own
  // locked_vm, separately from account_charge() (accounting.h), so a page both locked and charged in kMm
  // mode counts twice against RLIMIT_MEMLOCK in the real kernel but once in our counter.
  //
  // lock errors: EINVAL if unaligned; EFAULT if the end wraps or any page is unmapped; ENOMEM if the kernel
  //   refuses (over RLIMIT_MEMLOCK without CAP_IPC_LOCK, mlock's EPERM / EAGAIN / ENOMEM). On error nothing
  //   in the range is left locked (any part mlock managed before failing is unlocked again).
  Status lock(std::uint64_t uaddr, std::uint64_t len) const;
  // Never fails; unmapped parts are skipped. Precondition (checked in debug builds): page-aligned.
  void unlock(std::uint64_t uaddr, std::uint64_t len) const;

  // The size of the naturally aligned blocks of [uaddr, uaddr + len) that are each known to be physically
  // contiguous: the smallest page size of the mappings the range touches, which is a hugetlb mapping's huge
  // page size and kPageSize for any other mapping (a transparent huge page may be split at any time, so it
  // counts as small pages). kPageSize also for an unmapped part, len 0, or where the host cannot tell (a
  // kernel without /proc/self/maps' PROCMAP_QUERY, Linux 6.11). One system call per mapping in the range.
  std::uint64_t physical_block(std::uint64_t uaddr, std::uint64_t len) const;

  // Host pointer for an address of this Mm (the identity for the local Mm; null for a remote one, whose
  // pages are reached only through the copies above). Only for addresses already made resident by a pin;
  // the caller keeps them pinned while it dereferences the pointer.
  void* host_address(std::uint64_t uaddr) const;

  // Pages of another process that pins hold (Pages of user memory report them: hold_pinned() when a run of
  // pages becomes pinned, release_pinned() when it is unpinned; counted per page, so two areas of the same
  // memory hold a page twice). The kernel's pins hold struct pages, which outlive the process's mm: data a
  // domain pinned stays readable after the process has exited. Here a remote process's pages live only in
  // it, so its exit path asks the server to keep them (keep_held_pages()): every held page is copied out
  // while the process still exists, and every page held from then on is copied as it is held. Once the
  // process has exited, copies to and from held pages use those copies, and everything else is EFAULT.
  // No-ops for the local Mm. hold_pinned(): ENOMEM (nothing held then); EFAULT when keeping and the page
  // cannot be read. uaddr and len are page-aligned.
  Status hold_pinned(std::uint64_t uaddr, std::uint64_t len) const;
  void release_pinned(std::uint64_t uaddr, std::uint64_t len) const;
  // ENOMEM when a copy cannot be allocated (pages not copied are EFAULT after the exit); pages the process
  // no longer maps are skipped. What a SIGKILL ends cannot ask: its pinned pages are lost (docs/shared.md).
  Status keep_held_pages() const;
  // How many pages are held, and how many of them have a copy (tests, diagnostics).
  std::size_t held_page_count() const;
  std::size_t kept_page_count() const;

  // The accounting counters of this address space (the kernel's mm->locked_vm and mm->pinned_vm), in
  // pages; accounting.h updates them.
  std::atomic<std::uint64_t>& locked_vm() const { return locked_vm_; }
  std::atomic<std::uint64_t>& pinned_vm() const { return pinned_vm_; }

 private:
  friend class RefCounted<Mm>;
  struct Held;
  Mm();
  Mm(pid_t pid, int pidfd, uid_t uid, std::uint16_t tag, std::unique_ptr<Held> held);
  ~Mm();

  Status remote_copy(std::uint64_t uaddr, void* local, std::size_t len, bool write) const;
  Status windowed_copy(std::uint64_t uaddr, void* local, std::size_t len, bool write) const;
  // A copy of an exited process's memory, from and to the copies keep_held_pages() made: EFAULT unless
  // every page of the range has one.
  Status kept_copy(std::uint64_t uaddr, void* local, std::size_t len, bool write) const;
  Status remote_make_resident(std::uint64_t uaddr, std::uint64_t len, bool write) const;

  static inline thread_local Mm* tls_current_ = nullptr;
  static inline thread_local ArgWindow* tls_window_ = nullptr;

  const pid_t pid_ = 0;
  const int pidfd_ = -1;
  const uid_t uid_ = 0;
  const std::uint16_t tag_ = 0;  // 1..0x7fff for another process, unique among the live remote Mms
  const std::unique_ptr<Held> held_;  // for another process only
  mutable std::atomic<std::uint64_t> locked_vm_{0};
  mutable std::atomic<std::uint64_t> pinned_vm_{0};
};

}  // namespace uiommufd
