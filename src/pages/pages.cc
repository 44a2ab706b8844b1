#include "uiommufd/pages/pages.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <new>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/high_fd.h"
#include "uiommufd/base/try.h"
#include "uiommufd/lockdep/mutex.h"

namespace uiommufd {

namespace {
// The kernel's iopt_alloc_pages allocation (docs/fault-injection.md#sites: pages structures → ENOMEM).
UIOMMUFD_FAULT_SITE(g_fault_pages_alloc, "pages.alloc", ENOMEM);
// The kernel's GUP / memfd folio pin (→ EFAULT), once per pin call rather than per page
// (docs/fault-injection.md#site-budget).
UIOMMUFD_FAULT_SITE(g_fault_pages_pin, "pages.pin", EFAULT);

// A dma-buf import is refused from this many pages on (the kernel's MAX_NPFNS, the largest count one
// batch entry holds).
constexpr std::uint64_t kMaxDmaBufPages = 0xffffffffu;

constexpr std::uint64_t kSizeMax = std::numeric_limits<std::size_t>::max();

// The checks shared by MAP and MAP_FILE (the kernel's iopt_alloc_pages): EINVAL before EOVERFLOW.
// `end_exclusive` names the overflow rule: MAP checks uptr + length, MAP_FILE start + length − 1.
Status check_window(std::uint64_t addr, std::uint64_t length, bool end_exclusive) {
  if (length == 0 || length > kSizeMax - kPageSize) return Status::error(EINVAL);
  std::uint64_t end = 0;
  if (!checked_add(addr, end_exclusive ? length : length - 1, &end)) return Status::error(EOVERFLOW);
  return Status();
}

// Pages covering `length` bytes that start `offset` bytes into the first page. Cannot overflow: length is
// at most SIZE_MAX − kPageSize and offset is below kPageSize.
std::uint64_t pages_for(std::uint64_t offset, std::uint64_t length) {
  return (offset + length + kPageSize - 1) >> kPageShift;
}
}  // namespace

// The lock users of every page address of this process (page number = address >> kPageShift), over all
// Pages with lock_pinned: mlock is one bit per page, so two locked Pages over one buffer (two MAPs of it)
// must not unlock what the other still holds. Each Pages adds at most one user per page (its own 0 → 1
// edges); a page is mlocked while it has a user. Every Mm's addresses are this process's (Mm::lock
// mlocks them directly), so the address alone names the page.
struct LockedPages {
  lockdep::Mutex mu{lock_order::kPagesMlock};
  PinRuns users GUARDED_BY(mu);

  static LockedPages& get() {
    static auto* locked = new LockedPages;  // never destroyed: Pages may outlive static destructors
    return *locked;
  }
};

std::atomic<std::uint64_t> Pages::total_pinned_{0};
std::atomic<std::size_t> Pages::temp_memory_limit_{Pages::kDefaultTempMemoryLimit};
std::atomic<std::uint64_t> Pages::batch_steps_{0};

// Every live Pages, for pin_count_is. A list rather than an index by address: it changes only at
// create and destroy, and a query is a test-only operation that may walk it.
struct PagesRegistry {
  lockdep::Mutex mu{lock_order::kPagesRegistry};
  Pages* head GUARDED_BY(mu) = nullptr;

  static PagesRegistry& get() {
    static auto* registry = new PagesRegistry;  // never destroyed: Pages may outlive static destructors
    return *registry;
  }
  void add(Pages* p) EXCLUDES(mu) {
    lockdep::MutexGuard g(mu);
    p->registry_next_ = head;
    if (head) head->registry_prev_ = p;
    head = p;
  }
  void remove(Pages* p) EXCLUDES(mu) {
    lockdep::MutexGuard g(mu);
    if (p->registry_prev_)
      p->registry_prev_->registry_next_ = p->registry_next_;
    else
      head = p->registry_next_;
    if (p->registry_next_) p->registry_next_->registry_prev_ = p->registry_prev_;
  }
};

Pages::Pages(PagesKind kind, RefPtr<Mm> mm, std::uint64_t base, std::uint64_t start_offset,
             std::uint64_t length, std::uint64_t npages, std::uint64_t source_addr, bool writable,
             AccountMode mode, bool lock_pinned, int file_fd, std::uint64_t file_dev, std::uint64_t file_ino)
    : kind_(kind),
      mm_(kind == PagesKind::kUser ? mm : RefPtr<Mm>(&Mm::local_ref())),
      base_(base),
      start_offset_(start_offset),
      length_(length),
      npages_(npages),
      source_addr_(source_addr),
      writable_(writable),
      account_mode_(mode),
      lock_pinned_(lock_pinned),
      file_fd_(file_fd),
      file_dev_(file_dev),
      file_ino_(file_ino),
      account_mm_(std::move(mm)) {}

Result<RefPtr<Pages>> Pages::create_user(RefPtr<Mm> mm, std::uint64_t uptr, std::uint64_t length,
                                         bool writable, AccountMode mode, bool lock_pinned) {
  UIOMMUFD_ASSERT(mm);
  TRY(check_window(uptr, length, /*end_exclusive=*/true));
  TRY(inject(g_fault_pages_alloc));
  const std::uint64_t offset = page_offset(uptr);
  auto* pages = new (std::nothrow) Pages(PagesKind::kUser, std::move(mm), page_align_down(uptr), offset,
                                         length, pages_for(offset, length), uptr, writable, mode, lock_pinned,
                                         /*file_fd=*/-1, /*file_dev=*/0, /*file_ino=*/0);
  if (pages == nullptr) return Status::error(ENOMEM);
  PagesRegistry::get().add(pages);
  return RefPtr<Pages>(pages);
}

Result<RefPtr<Pages>> Pages::create_file(int fd, std::uint64_t start, std::uint64_t length, bool writable,
                                         AccountMode mode, bool lock_pinned) {
  // `fd` is a descriptor of this process (the shared-mode server has fetched the caller's:
  // FdHost::user_file). Our own duplicate keeps the file identity visible; the caller may close theirs as
  // soon as we return.
  if (fd < 0) return Status::error(EBADF);
  const int dup_fd = dup_high(fd);
  if (dup_fd < 0) return Status::error(errno == EMFILE ? EMFILE : EBADF);
  struct FdCloser {
    int fd;
    ~FdCloser() {
      if (fd >= 0) ::close(fd);
    }
  } closer{dup_fd};
  TRY(check_window(start, length, /*end_exclusive=*/false));
  const std::uint64_t offset = page_offset(start);
  const std::uint64_t npages = pages_for(offset, length);
  const std::uint64_t file_base = page_align_down(start);
  const std::uint64_t map_len = npages << kPageShift;
  // mmap takes an off_t: the window must end at or below its maximum. The kernel has no such limit (it
  // pins by folio index), but no real file is that large.
  std::uint64_t file_end = 0;
  if (!checked_add(file_base, map_len, &file_end) ||
      file_end > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max())) {
    return Status::error(EOVERFLOW);
  }
  TRY(inject(g_fault_pages_alloc));
  // The file's identity for pin counting (MD_CHECK_REFS); fstat of an open descriptor does not fail.
  struct stat st {};
  if (::fstat(dup_fd, &st) != 0) return Status::error(EBADF);

  // The mapping only reserves address space and takes a file reference; no page is touched until a pin
  // makes the window resident (docs/semantics.md#lazy-pinning).
  const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* addr = ::mmap(nullptr, map_len, prot, MAP_SHARED, dup_fd, static_cast<off_t>(file_base));
  if (addr == MAP_FAILED) {
    const int err = errno;
    if (err == EACCES || err == EPERM || err == ENOMEM) return Status::error(err);
    return Status::error(EINVAL);  // ENODEV (pipe, socket, directory), EINVAL, …
  }
  auto* pages =
      new (std::nothrow) Pages(PagesKind::kFile, Mm::current(), reinterpret_cast<std::uint64_t>(addr), offset,
                               length, npages, start, writable, mode, lock_pinned, dup_fd,
                               static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino));
  if (pages == nullptr) {
    ::munmap(addr, map_len);
    return Status::error(ENOMEM);
  }
  closer.fd = -1;  // the Pages owns it now
  PagesRegistry::get().add(pages);
  return RefPtr<Pages>(pages);
}

Result<RefPtr<Pages>> Pages::create_dmabuf(RefPtr<DmaBuf> buf, std::uint64_t start, std::uint64_t length,
                                           bool writable) {
  UIOMMUFD_ASSERT(buf && length != 0);
  // start + length − 1 does not wrap: the caller checked it (EOVERFLOW).
  if (buf->size() <= start + length - 1 || length / kPageSize >= kMaxDmaBufPages)
    return Status::error(EINVAL);
  TRY(check_window(start, length, /*end_exclusive=*/false));
  TRY(inject(g_fault_pages_alloc));
  const std::uint64_t offset = page_offset(start);
  // Not in the registry (no pins to count), so a dma-buf Pages is made and freed without pages.registry.
  auto* raw = new (std::nothrow) Pages(PagesKind::kDmaBuf, Mm::current(), /*base=*/0, offset, length,
                                       pages_for(offset, length), start, writable, AccountMode::kNone,
                                       /*lock_pinned=*/false, /*file_fd=*/-1, /*file_dev=*/0, /*file_ino=*/0);
  if (raw == nullptr) return Status::error(ENOMEM);
  RefPtr<Pages> pages(raw);  // a failure below frees it, detaching it if it got attached
  raw->dmabuf_.emplace(raw, buf);
  lockdep::MutexGuard r(buf->resv());
  // The order resv → pages.mutex (the invalidate path) is declared here, at the first import, rather than
  // at the first revoke (the kernel takes and drops the mutex here for lockdep).
  raw->mu_.might_lock();
  TRY(buf->attach(&*raw->dmabuf_));
  raw->attached_ = true;
  const DmaBuf::Phys phys = TRY(buf->physical());
  raw->base_ = phys.addr + page_align_down(start);
  return pages;
}

void Pages::DmaBufImport::invalidate() {
  lockdep::MutexGuard g(pages->mu_);
  if (pages->revoked_) return;
  // Every mapping of every area goes, whatever the exporter's new state: an importer reads the buffer's
  // range once, at import (iopt_revoke_notify() empties its copy of it).
  for (DmaBufTrack* t = pages->tracks_; t != nullptr; t = t->next_) t->revoke_unmap();
  pages->revoked_ = true;
}

bool Pages::revoked_locked() const {
  mu_.assert_held();
  return revoked_;
}

void Pages::track_locked(std::unique_ptr<DmaBufTrack> track) {
  mu_.assert_held();
  UIOMMUFD_DCHECK(is_dmabuf());
  for (const DmaBufTrack* t = tracks_; t != nullptr; t = t->next_)
    UIOMMUFD_DCHECK(t->area != track->area || t->domain != track->domain);
  track->next_ = tracks_;
  tracks_ = track.release();
}

void Pages::untrack_locked(const void* area, const void* domain) {
  mu_.assert_held();
  for (DmaBufTrack** link = &tracks_; *link != nullptr;) {
    DmaBufTrack* t = *link;
    if (t->area == area && (domain == nullptr || t->domain == domain)) {
      *link = t->next_;
      delete t;
    } else {
      link = &t->next_;
    }
  }
}

std::size_t Pages::tracks_locked() const {
  mu_.assert_held();
  std::size_t n = 0;
  for (const DmaBufTrack* t = tracks_; t != nullptr; t = t->next_) ++n;
  return n;
}

Pages::~Pages() {
  // Not analysed by -Wthread-safety (destructor); no other reference exists, so the lock is not needed.
  UIOMMUFD_ASSERT(pins_.empty());
  if (kind_ == PagesKind::kDmaBuf) {
    // Every area untracked itself when it left its domains.
    UIOMMUFD_ASSERT(tracks_ == nullptr);
    if (attached_) {
      lockdep::MutexGuard r(dmabuf_->buf->resv());
      dmabuf_->buf->detach(&*dmabuf_);
    }
    return;
  }
  PagesRegistry::get().remove(this);
  if (kind_ == PagesKind::kFile) {
    ::munmap(reinterpret_cast<void*>(base_), npages_ << kPageShift);
    ::close(file_fd_);
  }
}

PhysAddr Pages::page_phys(std::uint64_t index) const {
  UIOMMUFD_DCHECK(index < npages_);
  const std::uint64_t addr = base_ + (index << kPageShift);
  return kind_ == PagesKind::kUser ? mm_->phys_of(addr) : addr;
}

PageIdentity Pages::file_identity(std::uint64_t index) const {
  UIOMMUFD_DCHECK(kind_ == PagesKind::kFile && index < npages_);
  return {file_dev_, file_ino_, file_offset() + (index << kPageShift)};
}

void* Pages::host_page(std::uint64_t index) const {
  UIOMMUFD_DCHECK(index < npages_);
  const std::uint64_t addr = base_ + (index << kPageShift);
  // Our own mapping of a file; a dma-buf's address, which only a domain reads (access pins refuse it).
  if (kind_ != PagesKind::kUser) return reinterpret_cast<void*>(addr);
  return mm_->host_address(addr);
}

Status Pages::pin_locked(std::uint64_t first, std::uint64_t last) {
  mu_.assert_held();
  UIOMMUFD_DCHECK(pins_pages());
  if (first > last || last >= npages_) return Status::error(EINVAL);

  // Count first, so the 0 → 1 runs are known; every exit below that fails undoes exactly this add.
  std::vector<Interval> newly;
  TRY(pins_.add(first, last, &newly));
  if (newly.empty()) return Status();  // already pinned by other users: nothing to fault in or charge

  if (Status st = inject(g_fault_pages_pin); !st.ok()) {
    unwind_pin_locked(first, last);
    return st;
  }
  if (kind_ == PagesKind::kFile) {
    // The kernel pins file pages with memfd_pin_folios, which refuses a range whose last byte lies at or
    // beyond the end of the file (EINVAL) rather than faulting on it. The size is read now, as the kernel
    // reads it at pin time: the file may have grown or shrunk since the map.
    struct stat st {};
    if (::fstat(file_fd_, &st) != 0) {
      unwind_pin_locked(first, last);
      return Status::error(EINVAL);
    }
    for (const Interval& run : newly) {
      const std::uint64_t end_byte = file_offset() + ((run.last + 1) << kPageShift) - 1;
      if (end_byte >= static_cast<std::uint64_t>(st.st_size)) {
        unwind_pin_locked(first, last);
        return Status::error(EINVAL);
      }
    }
  }
  std::uint64_t n = 0;
  // What is locked so far, for the unwind without a list (nothing may be allocated past pins_.add()):
  // the runs of `newly` before run `locked_runs`, and that run up to page `locked_to` − 1.
  std::size_t locked_runs = 0;
  std::uint64_t locked_to = 0;
  Status st;
  for (const Interval& run : newly) {
    locked_to = run.start;
    // One call per batch of the run: the mm layer populates each batch at once (a single madvise).
    for (std::uint64_t b = run.start; st.ok() && b <= run.last;) {
      const Interval batch{b, batch_last(b, run.last)};
      count_batch_step();
      st = mm_->make_resident(base_ + (batch.start << kPageShift), batch.length() << kPageShift, writable_);
      // Locked once resident, so that mlock finds nothing left to fault in and fails only for the limit.
      if (st.ok() && lock_pinned_) {
        st = lock_run_locked(batch);
        if (st.ok()) locked_to = batch.last + 1;
      }
      b = batch.last + 1;
    }
    if (!st.ok()) break;
    ++locked_runs;
    n += run.length();
  }
  // Charged after pinning, like the kernel's npinned/last_npinned step (docs/semantics.md#accounting).
  if (st.ok()) st = account_charge(*account_mm_, account_mode_, n);
  // Another process's pages are held in its Mm, which keeps them past its exit (docs/shared.md#exit).
  std::size_t held_runs = 0;
  for (; st.ok() && mm_->remote() && held_runs < newly.size(); ++held_runs) {
    st = mm_->hold_pinned(base_ + (newly[held_runs].start << kPageShift), newly[held_runs].length()
                                                                              << kPageShift);
    if (!st.ok()) {
      for (std::size_t i = 0; i < held_runs; ++i)
        mm_->release_pinned(base_ + (newly[i].start << kPageShift), newly[i].length() << kPageShift);
      account_uncharge(*account_mm_, account_mode_, n);
      break;
    }
  }
  if (!st.ok()) {
    if (lock_pinned_) {
      for (std::size_t i = 0; i < locked_runs; ++i) unlock_run(newly[i]);
      if (locked_runs < newly.size() && locked_to > newly[locked_runs].start)
        unlock_run({newly[locked_runs].start, locked_to - 1});
    }
    unwind_pin_locked(first, last);
    return st;
  }
  total_pinned_.fetch_add(n, std::memory_order_relaxed);
  return Status();
}

Status Pages::lock_run_locked(const Interval& run) {
  mu_.assert_held();
  const std::uint64_t page0 = (base_ >> kPageShift) + run.start;
  LockedPages& locked = LockedPages::get();
  lockdep::MutexGuard g(locked.mu);
  std::vector<Interval> fresh;
  TRY(locked.users.add(page0, page0 + run.length() - 1, &fresh));
  for (std::size_t i = 0; i < fresh.size(); ++i) {
    Status st = mm_->lock(fresh[i].start << kPageShift, fresh[i].length() << kPageShift);
    if (!st.ok()) {
      for (std::size_t j = 0; j < i; ++j)
        mm_->unlock(fresh[j].start << kPageShift, fresh[j].length() << kPageShift);
      locked.users.remove(page0, page0 + run.length() - 1, nullptr);
      return st;
    }
  }
  return Status();
}

void Pages::unlock_run(const Interval& run) const {
  LockedPages& locked = LockedPages::get();
  lockdep::MutexGuard g(locked.mu);
  const std::uint64_t page0 = (base_ >> kPageShift) + run.start;
  locked.users.remove(
      page0, page0 + run.length() - 1,
      [](void* mm, const Interval& r) {
        static_cast<const Mm*>(mm)->unlock(r.start << kPageShift, r.length() << kPageShift);
      },
      const_cast<Mm*>(mm_.get()));
}

void Pages::unwind_pin_locked(std::uint64_t first, std::uint64_t last) {
  // Residency is not undone: a populated page is harmless, and the kernel's unpin does not evict either.
  pins_.remove(first, last, nullptr);
}

void Pages::unpin_locked(std::uint64_t first, std::uint64_t last) {
  mu_.assert_held();
  UIOMMUFD_ASSERT(first <= last && last < npages_);
  // Uncharged as soon as npinned drops (docs/semantics.md#accounting); the drop is the number of 1 → 0
  // indices.
  const std::uint64_t before = pins_.pinned_pages();
  if (lock_pinned_ || mm_->remote()) {
    // Each run that went to 0 users is unlocked, and let go of in its process, as the removal finds it: no
    // list to allocate on this path.
    pins_.remove(
        first, last,
        [](void* self, const Interval& run) {
          const auto* p = static_cast<const Pages*>(self);
          if (p->lock_pinned_) p->unlock_run(run);
          p->mm_->release_pinned(p->base_ + (run.start << kPageShift), run.length() << kPageShift);
        },
        this);
  } else {
    pins_.remove(first, last, nullptr);  // no run list to build: the count is all unpin needs
  }
  const std::uint64_t n = before - pins_.pinned_pages();
  if (n == 0) return;
  account_uncharge(*account_mm_, account_mode_, n);
  total_pinned_.fetch_sub(n, std::memory_order_relaxed);
}

std::uint32_t Pages::pin_users_locked(std::uint64_t index) const {
  mu_.assert_held();
  return pins_.users(index);
}

std::uint64_t Pages::npinned_locked() const {
  mu_.assert_held();
  return pins_.pinned_pages();
}

std::size_t Pages::pin_run_count_locked() const {
  mu_.assert_held();
  return pins_.run_count();
}

std::uint64_t Pages::total_pinned_pages() { return total_pinned_.load(std::memory_order_relaxed); }

Status Pages::add_access_locked(std::uint64_t first, std::uint64_t last) {
  mu_.assert_held();
  auto it = access_records_.find({first, last});
  if (it != access_records_.end()) {
    ++it->second;
    return {};
  }
  // The record first: making it is what can run out of memory, and taking it back cannot fail.
  try {
    it = access_records_.emplace(std::make_pair(first, last), 1u).first;
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  if (Status st = pin_locked(first, last); !st.ok()) {
    access_records_.erase(it);
    return st;
  }
  return {};
}

bool Pages::remove_access_locked(std::uint64_t first, std::uint64_t last) {
  mu_.assert_held();
  auto it = access_records_.find({first, last});
  if (it == access_records_.end()) return false;
  if (--it->second == 0) {
    access_records_.erase(it);
    unpin_locked(first, last);
  }
  return true;
}

std::vector<std::pair<Interval, std::uint32_t>> Pages::access_records_locked() const {
  mu_.assert_held();
  std::vector<std::pair<Interval, std::uint32_t>> out;
  for (const auto& [range, users] : access_records_) out.push_back({{range.first, range.second}, users});
  return out;
}

std::uint64_t Pages::access_users_locked() const {
  mu_.assert_held();
  std::uint64_t n = 0;
  for (const auto& [range, users] : access_records_) n += users;
  return n;
}

std::uint32_t Pages::access_record_users_locked(std::uint64_t first, std::uint64_t last) const {
  mu_.assert_held();
  auto it = access_records_.find({first, last});
  return it == access_records_.end() ? 0 : it->second;
}

bool Pages::pin_count_is(const Mm& mm, std::uint64_t uaddr, std::uint64_t length, std::uint32_t refs) {
  UIOMMUFD_ASSERT(page_offset(uaddr) == 0 && page_offset(length) == 0);
  if (length == 0) return true;
  // Pinned runs of every Pages as they stand, copied out so that no lock is held while /proc is read.
  // `id` is the identity of the run's first page for file pages; for user pages only its VA is known yet.
  struct Pinned {
    bool file;
    PageIdentity id;
    std::uint64_t va;
    std::uint64_t npages;
  };
  std::vector<Pinned> pinned;
  {
    PagesRegistry& registry = PagesRegistry::get();
    lockdep::MutexGuard rg(registry.mu);
    std::vector<Interval> runs;
    for (Pages* p = registry.head; p != nullptr; p = p->registry_next_) {
      if (p->kind_ == PagesKind::kUser && p->mm_.get() != &mm) continue;
      runs.clear();
      {
        lockdep::MutexGuard g(p->mu_);
        p->pins_.pinned_in(0, p->npages_ - 1, &runs);
      }
      for (const Interval& r : runs) {
        if (p->kind_ == PagesKind::kFile)
          pinned.push_back({true, p->file_identity(r.start), 0, r.length()});
        else
          pinned.push_back({false, {}, p->base_ + (r.start << kPageShift), r.length()});
      }
    }
  }
  if (pinned.empty()) return refs == 0;  // nothing pinned anywhere: no need to look at the address space

  const MapsSnapshot snap = MapsSnapshot::take(mm);
  // Every pinned run as runs of identities.
  std::vector<std::pair<PageIdentity, std::uint64_t>> held;
  for (const Pinned& p : pinned) {
    if (p.file) {
      held.push_back({p.id, p.npages});
      continue;
    }
    for (const IdentityRun& r : snap.resolve(p.va, p.npages << kPageShift))
      held.push_back({r.first, r.npages});
  }
  // For each run of the query: the pinned runs of the same backing as +1 at their first page and −1 after
  // their last (page numbers of that backing); a sweep over the sorted edges gives every page's count
  // without visiting pages.
  std::vector<std::pair<std::uint64_t, int>> edges;
  for (const IdentityRun& q : snap.resolve(uaddr, length)) {
    const std::uint64_t q_first = q.first.offset >> kPageShift;
    const std::uint64_t q_last = q_first + q.npages - 1;
    edges.clear();
    for (const auto& [id, n] : held) {
      if (!id.same_space(q.first)) continue;
      const std::uint64_t h_first = id.offset >> kPageShift;
      const std::uint64_t h_last = h_first + n - 1;
      if (h_last < q_first || h_first > q_last) continue;
      edges.push_back({std::max(h_first, q_first), +1});
      if (h_last < q_last) edges.push_back({h_last + 1, -1});
    }
    std::sort(edges.begin(), edges.end());
    std::int64_t count = 0;
    std::size_t i = 0;
    for (std::uint64_t cur = q_first;;) {
      for (; i < edges.size() && edges[i].first <= cur; ++i) count += edges[i].second;
      if (count != static_cast<std::int64_t>(refs)) return false;
      if (i == edges.size()) break;
      cur = edges[i].first;
    }
  }
  return true;
}

void Pages::set_temp_memory_limit(std::size_t bytes) {
  temp_memory_limit_.store(bytes, std::memory_order_relaxed);
}
std::size_t Pages::temp_memory_limit() { return temp_memory_limit_.load(std::memory_order_relaxed); }

std::uint64_t Pages::batch_pages() {
  const std::uint64_t handles = std::max<std::uint64_t>(1, temp_memory_limit() / sizeof(std::uint64_t));
  return std::uint64_t{1} << (63 - __builtin_clzll(handles));  // the power of two at or below
}

std::uint64_t Pages::batch_last(std::uint64_t index, std::uint64_t last) const {
  // Edges at backing addresses that are multiples of the batch: page_phys is base_ + index pages, and
  // base_ is page aligned, so the page number of the address decides.
  const std::uint64_t size = batch_pages();
  const std::uint64_t page = (base_ >> kPageShift) + index;
  const std::uint64_t to_edge = size - (page & (size - 1));
  return std::min(last, index + to_edge - 1);
}

}  // namespace uiommufd
