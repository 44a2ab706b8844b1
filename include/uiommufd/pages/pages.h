// Pages: the backing of one or more areas (the kernel's iopt_pages, docs/semantics.md#pages): a page-aligned
// window of a source — a user VA range of an Mm, or a range of a memfd/shmem/hugetlbfs file — plus the pin
// bookkeeping of that window.
//
// Page indices run from 0 to npages() − 1. Index 0 is the page holding the first mapped byte, which sits
// start_offset() bytes into it. Several areas (in different IOASes after COPY, or two halves after a split)
// share one Pages through RefPtr and pin/unpin slices of it; a page index is pinned — made resident and
// charged — while at least one user holds it, and only once however many users hold it
// (docs/semantics.md#pinned).
//
// What "pinned" means in user space (docs/design.md#memory): the range is made resident
// through Mm::make_resident, counted in a PinRuns, and charged to account_mode(). Residency alone does not
// stop the host kernel from reclaiming or migrating a page later, so a Pages created with lock_pinned also
// mlocks what it pins (Mm::lock; user pages at their user VA, file pages at the window's address): a page is
// locked while at least one user of at least one such Pages holds it. mlock state is per page and not
// counted, so the locks of all Pages are counted together, process-wide, by page address; the count is
// guarded by "pages.mlock", taken inside pages.mutex and around nothing else. FIXME: an mlock the owner made
// itself is not in that count, so the last unpin of a locked Pages over it unlocks it too. Without
// lock_pinned (the default) nothing is locked. Either way nothing stops the owner from munmapping the
// memory; as with VFIO, memory must stay mapped while it is mapped into an IOAS.
//
// What a domain stores (PhysAddr) is a host address of this process through which the page is reached:
//   - user pages: the user VA (this process's memory is the engine's own address space);
//   - file pages: the address inside a private MAP_SHARED mapping of the file window made by create_file();
//   - dma-buf pages: the address the exporter gave (DmaBuf::physical()). Such a Pages is never pinned: the
//     memory is the exporter's, which may revoke it; a revoke unmaps every area of it from every domain
//     through the DmaBufTrack records the I/O page table keeps here (docs/semantics.md#dma-buf).
// Which page that address reaches — the kernel's struct page, what the selftest checks compare — is its
// PageIdentity (mm/page_identity.h), resolved from /proc/self/maps when a check asks: a page of a shared
// file mapping is (device, inode, file offset), so two MAP_FILEs of one file range, or a MAP_FILE and a MAP
// of an mmap of the same file, name the same pages although their PhysAddrs differ. File pages also
// record their (device, inode) at creation (file_identity()), so pin counting needs no address lookup.
//
// Locking: mutex() is "pages.mutex", innermost of the engine's I/O page-table locks (after iopt.iova_rwsem;
// only pages.mlock and domain.page_table nest inside it). The pin state is guarded by it; methods suffixed
// _locked require it. pin_locked makes memory resident with the lock held, as the kernel does GUP under
// pages->mutex; that is slow for a large range, and it is the one place where the rule "nothing slow under an
// engine lock" (docs/locking.md#rules) gives way, since the pin must be atomic with the bookkeeping that
// decides which indices are new. With lock_pinned the mlock runs there too, and also under the process-wide
// "pages.mlock", so locking pins of different Pages serialise on it. Geometry accessors are immutable after
// creation and need no lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "uiommufd/base/interval.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/ref_ptr.h"
#include "uiommufd/base/result.h"
#include "uiommufd/base/status.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/mm/page_identity.h"
#include "uiommufd/pages/dma_buf.h"
#include "uiommufd/pages/pin_runs.h"

namespace uiommufd {

// kDmaBuf: a range of an exporter's DmaBuf (IOAS_MAP_FILE of a dma-buf; docs/semantics.md#dma-buf).
enum class PagesKind : std::uint8_t { kUser, kFile, kDmaBuf };

// The I/O page table's record that one area of a dma-buf Pages is mapped into one domain (the kernel's
// iopt_pages_dmabuf_track): a revoke unmaps the area from the domain through it. The pages layer knows
// neither areas nor domains; `area` and `domain` are keys only. Owned by the Pages while tracked.
class DmaBufTrack {
 public:
  DmaBufTrack(const void* area, const void* domain) : area(area), domain(domain) {}
  virtual ~DmaBufTrack() = default;
  // Unmaps the area from the domain, with the Pages' mutex held (and the buffer's resv).
  virtual void revoke_unmap() = 0;

  const void* const area;
  const void* const domain;

 private:
  friend class Pages;
  DmaBufTrack* next_ = nullptr;
};

class Pages : public RefCounted<Pages> {
 public:
  // User VA backing (IOAS_MAP, docs/semantics.md#pages-creation). The window is [page_align_down(uptr),
  // page_align_up(uptr + length)), npages = ceil((uptr % kPageSize + length) / kPageSize).
  // Errors, in this order: EINVAL if length == 0 or length > SIZE_MAX − kPageSize; EOVERFLOW if uptr +
  // length overflows; ENOMEM from fault site "pages.alloc".
  // Touches no memory: a VA that is unmapped or PROT_NONE is accepted and fails only when pinned
  // (docs/semantics.md#lazy-pinning). `mm` must not be null.
  // `lock_pinned`: pinned pages are also mlocked (see the top of this file); fixed for the object's life.
  static Result<RefPtr<Pages>> create_user(RefPtr<Mm> mm, std::uint64_t uptr, std::uint64_t length,
                                           bool writable, AccountMode mode, bool lock_pinned = false);

  // File backing (IOAS_MAP_FILE, docs/semantics.md#map-file). The window is the page-aligned file range
  // covering [start, start + length − 1]; the Pages dups `fd` (close-on-exec) and mmaps the window
  // MAP_SHARED with PROT_READ, plus PROT_WRITE when writable, into this process (the current Mm).
  // Errors, in this order: EBADF if fd is not an open descriptor; EINVAL if length == 0 or length >
  // SIZE_MAX − kPageSize; EOVERFLOW if start + length − 1 overflows or the window's end does not fit in
  // off_t; ENOMEM from fault site "pages.alloc"; then mmap's failure: EACCES / EPERM (the fd's open mode
  // or seals forbid the protection) and ENOMEM (no address space) pass through, anything else — a pipe,
  // socket or directory that cannot be mmapped (ENODEV) — becomes EINVAL. EMFILE if the dup fails.
  // Deviation: the kernel only pins memfd/shmem/hugetlbfs folios and fails other files at pin time; any
  // mmappable file (e.g. a regular ext4 file) works here. A window past the end of the file is accepted and
  // fails at pin time with EINVAL, as the kernel's memfd_pin_folios does for a range reaching the file's end.
  // `lock_pinned` as for create_user.
  static Result<RefPtr<Pages>> create_file(int fd, std::uint64_t start, std::uint64_t length, bool writable,
                                           AccountMode mode, bool lock_pinned = false);

  // A range of a dma-buf (IOAS_MAP_FILE of a dma-buf; the kernel's iopt_alloc_dmabuf_pages()). `start` is
  // the byte offset of the first mapped byte in the buffer; the window is the page-aligned part of the
  // buffer covering [start, start + length − 1]. The caller has checked length != 0 and that
  // start + length − 1 does not overflow (IOAS_MAP_FILE's EINVAL / EOVERFLOW). Errors, in the kernel's order:
  // EINVAL when the range does not end inside the buffer or has 2^32 − 1 pages or more, or length >
  // SIZE_MAX − kPageSize; ENOMEM from fault site "pages.alloc"; then, with the buffer's resv() held,
  // DmaBuf::attach's ENOMEM and DmaBuf::physical()'s errors (ENODEV: revoked). The Pages is attached to the
  // buffer until it is destroyed. Nothing is pinned or charged, ever: the account mode is kNone (the
  // kernel's IOPT_PAGES_ACCOUNT_NONE) and pin_locked() is not to be called (see pins_pages()).
  static Result<RefPtr<Pages>> create_dmabuf(RefPtr<DmaBuf> buf, std::uint64_t start, std::uint64_t length,
                                             bool writable);

  PagesKind kind() const { return kind_; }
  bool is_dmabuf() const { return kind_ == PagesKind::kDmaBuf; }
  // Whether domains and accesses pin this backing: false for a dma-buf, whose memory is the exporter's
  // (no pin, no charge; access pin and rw refuse it with EINVAL, as the kernel does).
  bool pins_pages() const { return kind_ != PagesKind::kDmaBuf; }
  // The buffer of a dma-buf backing; null otherwise.
  DmaBuf* dmabuf() const { return dmabuf_ ? dmabuf_->buf.get() : nullptr; }

  // dma-buf backing only (precondition is_dmabuf()). Revoked: the exporter has invalidated the buffer
  // since this Pages imported it; from then on nothing of it may be mapped, and it stays so (the kernel's
  // iopt_dmabuf_revoked()). false for other kinds.
  bool revoked_locked() const REQUIRES(mu_);
  // Records that `track->area` is mapped (or, while revoked, would be mapped) into `track->domain`; takes
  // ownership (the caller allocated it: that is where the kernel's allocation, and its failure, is).
  void track_locked(std::unique_ptr<DmaBufTrack> track) REQUIRES(mu_);
  // Drops the record of (area, domain), or every record of `area` (domain null). Never fails.
  void untrack_locked(const void* area, const void* domain) REQUIRES(mu_);
  // Number of records; for tests and invariant checks.
  std::size_t tracks_locked() const REQUIRES(mu_);
  bool writable() const { return writable_; }
  AccountMode account_mode() const { return account_mode_; }
  // The address space user pages come from (the kernel's source_mm as GUP sees it); for file and dma-buf
  // pages, this process's, which holds the file window.
  const Mm& mm() const { return *mm_; }
  // The process pins are charged to (accounting.h): the one that created the Pages, until
  // IOMMU_IOAS_CHANGE_PROCESS moves it (set_account_mm_locked(), which the caller pairs with moving the
  // charge of npinned_locked() pages).
  const RefPtr<Mm>& account_mm_locked() const REQUIRES(mu_) { return account_mm_; }
  void set_account_mm_locked(RefPtr<Mm> mm) REQUIRES(mu_) { account_mm_ = std::move(mm); }
  // Whether pins also mlock the pages (create_user / create_file's `lock_pinned`).
  bool lock_pinned() const { return lock_pinned_; }
  std::uint64_t npages() const { return npages_; }
  // Byte offset of the first mapped byte inside page 0 (uptr % kPageSize, or start % kPageSize).
  std::uint64_t start_offset() const { return start_offset_; }
  // Length in bytes, as created.
  std::uint64_t length() const { return length_; }
  // The address used for automatic IOVA alignment (docs/semantics.md#iova-selection): the user VA of the
  // first byte, or the file offset of the first byte.
  std::uint64_t source_addr() const { return source_addr_; }
  // The file offset of page 0 (page-aligned); 0 for user pages.
  std::uint64_t file_offset() const { return kind_ == PagesKind::kFile ? page_align_down(source_addr_) : 0; }
  // File pages: the identity of page `index` (precondition kind() == kFile and index < npages(),
  // debug-checked): the file's device and inode as fstat() gave them at creation, and the page's offset.
  PageIdentity file_identity(std::uint64_t index) const;

  // Identity of page `index` (precondition index < npages(), debug-checked): its page-aligned address in
  // mm() as Mm::phys_of() tags it (the host address for this process's memory), so consecutive indices are
  // "physically" contiguous by construction. Valid whether pinned or not.
  PhysAddr page_phys(std::uint64_t index) const;
  // The address of page `index` in mm() (no tag): where user pages are read and written.
  std::uint64_t page_address(std::uint64_t index) const { return base_ + (index << kPageShift); }
  // Mm::physical_block() of the page_phys() addresses [addr, addr + len): the size of the aligned blocks
  // of them that are each physically contiguous (a hugetlb backing's huge page size, else kPageSize).
  // A system call or more; no lock needed.
  std::uint64_t physical_block(PhysAddr addr, std::uint64_t len) const {
    // A dma-buf's range is one contiguous piece of the exporter's memory (the kernel's BATCH_MMIO).
    return kind_ == PagesKind::kDmaBuf ? 0 : mm_->physical_block(Mm::phys_address(addr), len);
  }
  // Host pointer to the start of page `index` (precondition index < npages()). Dereference only while the
  // page is pinned by the caller (and, for user pages, while the owner keeps it mapped).
  void* host_page(std::uint64_t index) const;

  lockdep::Mutex& mutex() RETURN_CAPABILITY(mu_) { return mu_; }

  // Adds a pin user to every index in [first, last] (inclusive page indices).
  // Errors: EINVAL if first > last or last >= npages(). EFAULT from fault site "pages.pin" (checked once per
  // call, and only when some index is newly pinned) or from Mm::make_resident (the VA is not mapped with
  // the needed access). EINVAL when a newly pinned file page reaches the end of the file. With
  // lock_pinned(): Mm::lock's errors — ENOMEM when the host refuses the mlock (RLIMIT_MEMLOCK without
  // CAP_IPC_LOCK), EFAULT if the range was unmapped meanwhile. ENOMEM from account_charge (memlock limit, or
  // fault site "pages.account").
  // Indices going 0 → 1 users are made resident, one make_resident per newly pinned run (write access when
  // writable()) followed, with lock_pinned(), by its mlock; then all of them are charged at once:
  // account_charge(account_mode(), n). Indices already pinned cost nothing. On any error every pin this call
  // added is removed, everything it locked is unlocked and nothing is charged: the state is exactly as
  // before the call. Fault sites hit per call: "pages.pin", then make_resident's per newly pinned run (one
  // for a fresh range), then account_charge's — never one per page (docs/fault-injection.md#site-budget);
  // locking has none.
  Status pin_locked(std::uint64_t first, std::uint64_t last) REQUIRES(mu_);

  // Removes one pin user from every index in [first, last]. Precondition: the range is valid and every
  // index in it is pinned (a caller unpinning what it did not pin is a bug: range checked always, users
  // checked in debug builds). Indices going 1 → 0 are uncharged and, with lock_pinned(), unlocked unless
  // another locked Pages still holds the same page address. Never fails and has no fault sites; it may
  // allocate a map node to split a run (see PinRuns).
  void unpin_locked(std::uint64_t first, std::uint64_t last) REQUIRES(mu_);

  // Pin users of `index` (0 if unpinned).
  std::uint32_t pin_users_locked(std::uint64_t index) const REQUIRES(mu_);
  // Indices with at least one user (the kernel's npinned); always equal to the pages this object has
  // charged to its account mode.
  std::uint64_t npinned_locked() const REQUIRES(mu_);
  // Number of runs in the pin bookkeeping; for tests of the "runs, not pages" property.
  std::size_t pin_run_count_locked() const REQUIRES(mu_);
  // Diagnostics (dump/, docs/dump.md): the pin bookkeeping itself, read with the mutex held.
  const PinRuns& pin_runs_locked() const REQUIRES(mu_) { return pins_; }

  // Access pin records (docs/semantics.md#pin-records): a record [first, last] has a users count; adding one
  // that exists with exactly that range bumps its users, a new one pins the range (pin_locked's errors).
  // Removing drops a user and unpins when the last goes; false (and nothing changes) if no record has exactly
  // that range.
  Status add_access_locked(std::uint64_t first, std::uint64_t last) REQUIRES(mu_);
  bool remove_access_locked(std::uint64_t first, std::uint64_t last) REQUIRES(mu_);
  // Every record as ([first, last], users); for invariant checks.
  std::vector<std::pair<Interval, std::uint32_t>> access_records_locked() const REQUIRES(mu_);
  // Total users over all access records; for invariant checks.
  std::uint64_t access_users_locked() const REQUIRES(mu_);
  // The users of the record with exactly this range (0 if none).
  std::uint32_t access_record_users_locked(std::uint64_t first, std::uint64_t last) const REQUIRES(mu_);

  // Pages pinned (and charged) right now across every Pages object of the process; for leak checks.
  static std::uint64_t total_pinned_pages();

  // IOMMU_TEST_OP_MD_CHECK_REFS: true when every page that [uaddr, uaddr + length) of `mm` reaches is pinned
  // by exactly `refs` live Pages objects. Pages are compared by identity (mm/page_identity.h), as the kernel
  // compares struct pages: a memfd page pinned through IOAS_MAP_FILE and again through IOAS_MAP of an
  // mmap of the memfd counts 2 (two iopt_pages), and a query through a third mapping of that memfd sees
  // both. A Pages counts once per page however many users (areas, domains, access records) hold that page,
  // so two MAPs of the same memory give 2 and a COPY (which shares the Pages) still 1 — the kernel's page
  // refcount / GUP_PIN_COUNTING_BIAS. uaddr and length are page aligned (precondition). length 0 is true.
  // Deviation: the kernel skips compound pages (hugetlbfs, THP) and so passes any `refs` for them; here
  // they are counted like any page.
  //
  // Cost: one pass over the registry of live Pages (registered at create, removed at destruction: no
  // per-pin work) collecting their pinned runs under each pages.mutex; nothing pinned anywhere answers
  // without more. Otherwise one MapsSnapshot (a read of /proc/self/maps) resolves the query range and the
  // pinned VA runs, and the count is a sweep over run edges — never a visit per page. Takes the registry
  // lock ("pages.registry") and then each pages.mutex: call with no pages.mutex held; no Pages may be
  // created or destroyed under a pages.mutex.
  static bool pin_count_is(const Mm& mm, std::uint64_t uaddr, std::uint64_t length, std::uint32_t refs);

  // IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT: the kernel's cap on the temporary arrays its pin and fill paths
  // work through (pages.c, temp_kmalloc(); default 65536 bytes, at least 12: one batch element). It
  // bounds the batches that pinning, domain filling (map, copy, attach) and access pins go in:
  // batch_pages() pages per step. Process-wide, as the kernel's is system-wide.
  static constexpr std::size_t kDefaultTempMemoryLimit = 65536;
  static void set_temp_memory_limit(std::size_t bytes);
  static std::size_t temp_memory_limit();
  // Pages per batch: what an array of 8-byte page handles of temp_memory_limit() bytes holds (the
  // kernel's pin_user_pages() array), at least 1, rounded down to a power of two so that batch edges fall
  // on backing addresses aligned to the batch size: a batch of 2 MiB or more never splits a large IOPTE.
  // 8192 (32 MiB) by default; 1 at the minimum limit.
  static std::uint64_t batch_pages();
  // The last page index of the batch that page `index` starts, at most `last`: batches end where the
  // backing address reaches a multiple of batch_pages() pages.
  std::uint64_t batch_last(std::uint64_t index, std::uint64_t last) const;
  // Batch steps taken so far by every pin and every domain fill in this process (tests use it to see
  // that a small limit really cuts the work up).
  static std::uint64_t batch_steps() { return batch_steps_.load(std::memory_order_relaxed); }
  static void count_batch_step() { batch_steps_.fetch_add(1, std::memory_order_relaxed); }

  // Precondition: no pins remain (UIOMMUFD_ASSERT: a pin outliving its Pages would leak a charge). Unmaps
  // the file window and closes the dup'd fd. Must not run with mutex() held (it is destroyed).
  ~Pages();

 private:
  Pages(PagesKind kind, RefPtr<Mm> mm, std::uint64_t base, std::uint64_t start_offset, std::uint64_t length,
        std::uint64_t npages, std::uint64_t source_addr, bool writable, AccountMode mode, bool lock_pinned,
        int file_fd, std::uint64_t file_dev, std::uint64_t file_ino);

  // The import of a dma-buf: attached to `buf` (so its invalidate reaches the Pages) from creation until
  // the Pages is destroyed.
  struct DmaBufImport final : DmaBuf::Importer {
    DmaBufImport(Pages* owner, RefPtr<DmaBuf> b) : pages(owner), buf(std::move(b)) {}
    void invalidate() override;  // the kernel's iopt_revoke_notify()
    Pages* const pages;
    const RefPtr<DmaBuf> buf;
  };

  // Undoes a partial pin: removes the users add() gave [first, last]. Charges are the caller's business.
  void unwind_pin_locked(std::uint64_t first, std::uint64_t last) REQUIRES(mu_);
  // mlock / munlock of the page-index run `run`, through the process-wide count of locked page addresses.
  // lock_run has Mm::lock's errors and leaves nothing locked on failure.
  Status lock_run_locked(const Interval& run) REQUIRES(mu_);
  // One run's lock users back, munlocking the pages no other Pages has locked. Needs no lock of this Pages
  // (it reads only constant fields) and never allocates, so unpin can call it from a PinRuns sink.
  void unlock_run(const Interval& run) const;

  const PagesKind kind_;
  // The source's address space: the mapping Mm for user pages, the local Mm (which holds the file window)
  // for file pages.
  const RefPtr<Mm> mm_;
  // Address (in mm_) of page 0: page_align_down(uptr), or the file window's mmap address; for a dma-buf,
  // the exporter's address of the window's first page, set once by create_dmabuf() before the Pages is
  // shared (physical() is asked after the object exists, in the kernel's order).
  std::uint64_t base_;
  const std::uint64_t start_offset_;
  const std::uint64_t length_;
  const std::uint64_t npages_;
  const std::uint64_t source_addr_;
  const bool writable_;
  const AccountMode account_mode_;
  const bool lock_pinned_;
  const int file_fd_;  // dup'd fd of a file backing; -1 for user pages
  // st_dev / st_ino of a file backing; 0 for user pages.
  const std::uint64_t file_dev_;
  const std::uint64_t file_ino_;

  lockdep::Mutex mu_{lock_order::kPagesMutex};
  PinRuns pins_ GUARDED_BY(mu_);
  RefPtr<Mm> account_mm_ GUARDED_BY(mu_);
  // Access pin records by exact range; overlapping records coexist.
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint32_t> access_records_ GUARDED_BY(mu_);

  // dma-buf backing: the import (null for other kinds), whether it was revoked, and the (area, domain)
  // records revoke unmaps.
  std::optional<DmaBufImport> dmabuf_;
  bool attached_ = false;  // dmabuf_ is on its buffer's importer list
  bool revoked_ GUARDED_BY(mu_) = false;
  DmaBufTrack* tracks_ GUARDED_BY(mu_) = nullptr;

  static std::atomic<std::uint64_t> total_pinned_;
  static std::atomic<std::size_t> temp_memory_limit_;
  static std::atomic<std::uint64_t> batch_steps_;

  // Links of the registry of live Pages (pin_count_is); guarded by the registry's lock, which lives
  // in pages.cc (not expressible as an annotation here).
  friend struct PagesRegistry;
  Pages* registry_prev_ = nullptr;
  Pages* registry_next_ = nullptr;
};

}  // namespace uiommufd
