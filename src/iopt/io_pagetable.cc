#include "uiommufd/iopt/io_pagetable.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <new>
#include <string>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/log.h"
#include "uiommufd/base/reserve.h"
#include "uiommufd/base/try.h"
#include "uiommufd/iova/iova_allocator.h"
#include "uiommufd/iova/span_iterator.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/mm/mm.h"

namespace uiommufd {

namespace {
UIOMMUFD_FAULT_SITE(g_fault_alloc_area, "iopt.alloc_area", ENOMEM);
UIOMMUFD_FAULT_SITE(g_fault_alloc_reserved, "iopt.alloc_reserved", ENOMEM);
// The kernel's iommufd_should_fail() in io_pagetable.c, before an area is inserted.
UIOMMUFD_FAULT_SITE(g_fault_insert, "iopt.insert_area", EINVAL);
// The kernel's site in access read/write.
UIOMMUFD_FAULT_SITE(g_fault_rw, "pages.rw", EINVAL);
// The record of a dma-buf area in a domain (the kernel's kzalloc in iopt_dmabuf_track_domain()).
UIOMMUFD_FAULT_SITE(g_fault_alloc_track, "iopt.alloc_track", ENOMEM);
}  // namespace

IoPagetable::IoPagetable() {
  // Reserved ranges are as unusable for an allocation as areas are; with the areas' gap figures leaving
  // them out, an allocation walk on a large IOAS does not descend to the MSI window every time only to
  // find it reserved. No lock: nothing else can see the table yet.
  areas_.set_gap_exclusions(&reserved_);
}

IoPagetable::~IoPagetable() {
  std::uint64_t unmapped = 0;
  {
    lockdep::ReadGuard d(domains_rwsem_);
    UIOMMUFD_ASSERT(domains_.empty());
  }
  {
    lockdep::MutexGuard l(access_list_mu_);
    UIOMMUFD_ASSERT(accesses_.empty());
  }
  Status st = unmap_range(Interval::full(), &unmapped);
  UIOMMUFD_ASSERT(st.ok());
  lockdep::WriteGuard g(iova_rwsem_);
  reserved_.clear();
  allowed_.clear();
}

Area* IoPagetable::area_of(IntervalTreeNode* n) { return IntervalTree::owner<Area, &Area::node>(n); }

Area* IoPagetable::first_area_locked(Interval range) const {
  iova_rwsem_.assert_shared_held();
  return area_of(areas_.first_overlap_disjoint(range));
}

Area* IoPagetable::next_area_locked(const Area* a, Interval range) const {
  iova_rwsem_.assert_shared_held();
  return area_of(areas_.next_overlap(&a->node, range));
}

bool IoPagetable::intersects_locked(const IntervalTree& tree, Interval range) const {
  iova_rwsem_.assert_shared_held();
  return tree.first_overlap(range) != nullptr;
}

// ---- mapping ----

Status IoPagetable::map_pages(RefPtr<Pages> pages, std::uint64_t* iova, int prot, bool fixed_iova) {
  std::uint64_t length = pages->length();
  std::uint64_t start_byte = pages->start_offset();
  return map_chunks({{std::move(pages), start_byte, length}}, iova, prot, fixed_iova);
}

Status IoPagetable::map_chunks(const std::vector<PagesChunk>& chunks, std::uint64_t* iova, int prot,
                               bool fixed_iova) {
  if (chunks.empty()) return Status::error(EINVAL);
  std::uint64_t total = 0;
  for (const PagesChunk& c : chunks) {
    if (c.length == 0) return Status::error(EINVAL);
    if (!checked_add(total, c.length, &total)) return Status::error(EOVERFLOW);
  }
  // Areas are allocated before any lock is taken.
  std::vector<std::unique_ptr<Area>> areas;
  TRY(reserve_more(areas, chunks.size()));
  for (const PagesChunk& c : chunks) {
    TRY(inject(g_fault_alloc_area));
    std::unique_ptr<Area> area(new (std::nothrow) Area(iova_rwsem_, c.pages, c.start_byte, prot));
    if (!area) return Status::error(ENOMEM);
    areas.push_back(std::move(area));  // within the capacity reserved above
  }

  std::uint64_t start = 0;
  {
    lockdep::WriteGuard g(iova_rwsem_);
    if (total % iova_alignment_ != 0) return Status::error(EINVAL);
    IovaTrees trees{areas_, reserved_, allowed_};
    if (fixed_iova) {
      TRY(check_fixed_iova(trees, *iova, total, iova_alignment_));
      start = *iova;
    } else {
      const PagesChunk& first = chunks.front();
      std::uint64_t source = first.pages->source_addr() - first.pages->start_offset() + first.start_byte;
      start = TRY(allocate_iova(trees, source, total, iova_alignment_));
    }
    Status st = inject(g_fault_insert);
    std::uint64_t cur = start;
    std::size_t inserted = 0;
    for (std::size_t i = 0; st.ok() && i < chunks.size(); ++i) {
      const PagesChunk& c = chunks[i];
      if ((prot & kIommuWrite) && !c.pages->writable()) {
        st = Status::error(EPERM);
      } else if ((c.start_byte % kPageSize) % iova_alignment_ != 0) {
        st = Status::error(EINVAL);
      } else {
        std::uint64_t last;
        if (!checked_add(cur, c.length - 1, &last)) {
          st = Status::error(EOVERFLOW);
        } else {
          areas[i]->node.range = {cur, last};
          areas_.insert(&areas[i]->node);
          ++inserted;
          cur = last + 1;
        }
      }
    }
    if (!st.ok()) {
      for (std::size_t i = 0; i < inserted; ++i) areas_.remove(&areas[i]->node);
      return st;
    }
  }

  // The areas now reserve their IOVA but are half-built: unmap and copy refuse them, and a domain added
  // meanwhile skips them. Filling under the domains lock (read) means every domain sees them filled.
  lockdep::ReadGuard d(domains_rwsem_);
  for (std::size_t i = 0; i < areas.size(); ++i) {
    Status st = fill_area(*areas[i]);
    if (!st.ok()) {
      for (std::size_t j = 0; j < i; ++j) unfill_area(*areas[j], areas[j]->backing());
      lockdep::WriteGuard g(iova_rwsem_);
      for (auto& a : areas) areas_.remove(&a->node);
      return st;
    }
  }
  lockdep::WriteGuard g(iova_rwsem_);
  for (auto& a : areas) {
    a->publish();
    a.release();  // the tree owns it now; remove_area_locked() deletes it
  }
  *iova = start;
  return {};
}

Status IoPagetable::map_range_into(Domain& domain, const Area& area, Interval range) {
  int prot = area.prot() | kIommuCache;
  // A run of PhysAddr is contiguous memory only within the backing's pages; a domain whose entries depend
  // on that (the mock's kernel table, docs/semantics.md#dirty) is told how far, the others are not asked.
  const bool blocks = domain.wants_phys_block();
  if (large_pages_.load(std::memory_order_relaxed)) {
    const PhysAddr pa = area.phys(range.start);
    const std::uint64_t block =
        blocks ? area.backing().physical_block(page_align_down(pa), page_offset(pa) + range.length()) : 0;
    return domain.map(range.start, pa, range.length(), prot, block);
  }
  // With large pages off every page is its own map call, so that any page boundary can later be cut
  // (VFIO TYPE1) and unmapped on its own.
  for (std::uint64_t iova = range.start; iova <= range.last;) {
    std::uint64_t len = std::min(kPageSize - iova % kPageSize, range.last - iova + 1);
    Status st = domain.map(iova, area.phys(iova), len, prot, blocks ? kPageSize : 0);
    if (!st.ok()) {
      if (iova != range.start) unmap_range_from(domain, range.start, iova - range.start);
      return st;
    }
    iova += len;
  }
  return {};
}

void IoPagetable::unmap_range_from(Domain& domain, std::uint64_t iova, std::uint64_t length) {
  // Unmap with the boundaries the map used: one call for a run, page by page when large pages are off.
  if (large_pages_.load(std::memory_order_relaxed)) {
    domain.unmap(iova, length);
    return;
  }
  for (std::uint64_t done = 0; done < length;) {
    std::uint64_t cur = iova + done;
    std::uint64_t len = std::min(kPageSize - cur % kPageSize, length - done);
    domain.unmap(cur, len);
    done += len;
  }
}

Status IoPagetable::fill_area(Area& area) {
  if (domains_.empty()) return {};
  Pages& pages = area.backing();
  lockdep::MutexGuard pg(pages.mutex());
  if (!pages.is_dmabuf())
    return fill_batches_locked(area, pages, domains_.data(), domains_.size(), /*pin=*/true);
  // Recorded even while revoked, so that every later path finds the same records (iopt_area_fill_domains()).
  TRY(track_dmabuf_locked(area, pages, domains_.data(), domains_.size()));
  if (pages.revoked_locked()) return {};
  Status st = fill_batches_locked(area, pages, domains_.data(), domains_.size(), /*pin=*/false);
  if (!st.ok()) pages.untrack_locked(&area, nullptr);
  return st;
}

// The unmap a revoke does (iopt_revoke_notify()). Runs with the Pages' mutex held and no I/O page-table
// lock: the record exists only while its area is filled into its domain, and both the area's unfill and
// the domain's removal drop it under that same mutex first, so neither can go meanwhile.
class IoPagetable::DomainTrack final : public DmaBufTrack {
 public:
  DomainTrack(IoPagetable& iopt, Area& area, Domain& domain)
      : DmaBufTrack(&area, &domain), iopt_(iopt), area_(area), domain_(domain) {}
  void revoke_unmap() override NO_THREAD_SAFETY_ANALYSIS {
    iopt_.unmap_range_from(domain_, area_.iova_start(), area_.length());
  }

 private:
  IoPagetable& iopt_;
  Area& area_;
  Domain& domain_;
};

Status IoPagetable::track_dmabuf_locked(Area& area, Pages& pages, Domain* const* domains,
                                        std::size_t ndomains) {
  pages.mutex().assert_held();
  for (std::size_t i = 0; i < ndomains; ++i) {
    Status st = inject(g_fault_alloc_track);
    std::unique_ptr<DomainTrack> t;
    if (st.ok()) {
      t.reset(new (std::nothrow) DomainTrack(*this, area, *domains[i]));
      if (!t) st = Status::error(ENOMEM);
    }
    if (!st.ok()) {
      for (std::size_t j = 0; j < i; ++j) pages.untrack_locked(&area, domains[j]);
      return st;
    }
    pages.track_locked(std::move(t));
  }
  return {};
}

Status IoPagetable::fill_batches_locked(Area& area, Pages& pages, Domain* const* domains,
                                        std::size_t ndomains, bool pin) {
  pages.mutex().assert_held();
  const std::uint64_t first = area.first_index();
  const std::uint64_t last = area.last_index();
  // The pin makes the area resident batch by batch itself (Pages::pin_locked), but counts and charges it
  // once: those steps have fixed costs (system calls for the limit check) that would otherwise be paid per
  // batch. The kernel's pfn reader interleaves pinning and mapping per batch; the outcome is the same.
  if (pin) TRY(pages.pin_locked(first, last));
  // Then the domains, batch by batch (Pages::batch_pages()), so that no single map call grows with the
  // area either.
  Status st;
  std::uint64_t next = first;  // [first, next − 1] is mapped into every domain
  while (next <= last) {
    const std::uint64_t batch_last = pages.batch_last(next, last);
    const Interval iova = area.iova_of_pages(next, batch_last);
    Pages::count_batch_step();
    std::size_t mapped = 0;
    for (; mapped < ndomains; ++mapped) {
      st = map_range_into(*domains[mapped], area, iova);
      if (!st.ok()) break;
    }
    if (!st.ok()) {
      for (std::size_t j = 0; j < mapped; ++j) unmap_range_from(*domains[j], iova.start, iova.length());
      break;
    }
    next = batch_last + 1;
  }
  if (st.ok()) return st;
  // Unmap before unpin: a page must never be unpinned while a domain still maps it.
  if (next > first) {
    const Interval done = area.iova_of_pages(first, next - 1);
    for (std::size_t j = 0; j < ndomains; ++j) unmap_range_from(*domains[j], done.start, done.length());
  }
  if (pin) pages.unpin_locked(first, last);
  return st;
}

void IoPagetable::unfill_area(Area& area, Pages& pages) {
  if (domains_.empty()) return;
  lockdep::MutexGuard pg(pages.mutex());
  if (pages.is_dmabuf()) {
    // A revoke has already unmapped it everywhere (iopt_area_unfill_domains()).
    if (!pages.revoked_locked())
      for (Domain* d : domains_) unmap_range_from(*d, area.iova_start(), area.length());
    pages.untrack_locked(&area, nullptr);
    return;
  }
  // Unmap before unpin: a page must never be unpinned while a domain still maps it.
  for (Domain* d : domains_) unmap_range_from(*d, area.iova_start(), area.length());
  pages.unpin_locked(area.first_index(), area.last_index());
}

void IoPagetable::remove_area_locked(Area* area) {
  iova_rwsem_.assert_held();
  areas_.remove(&area->node);
  delete area;
}

// ---- copy and unmap ----

Result<std::vector<PagesChunk>> IoPagetable::get_chunks(std::uint64_t iova, std::uint64_t length) {
  if (length == 0) return Status::error(EINVAL);
  std::uint64_t last;
  if (!checked_add(iova, length - 1, &last)) return Status::error(EOVERFLOW);
  Interval range{iova, last};
  std::vector<PagesChunk> chunks;
  lockdep::ReadGuard g(iova_rwsem_);
  std::uint64_t cur = iova;
  for (Area* a = first_area_locked(range);; a = next_area_locked(a, range)) {
    if (!a || a->iova_start() > cur || !a->pages()) return Status::error(ENOENT);
    std::uint64_t end = std::min(last, a->iova_last());
    chunks.push_back({a->pages(), a->start_byte() + (cur - a->iova_start()), end - cur + 1});
    if (end == last) break;
    cur = end + 1;
  }
  return chunks;
}

Status IoPagetable::unmap_range(Interval range, std::uint64_t* unmapped) {
  *unmapped = 0;
  std::uint64_t start = range.start;
  unsigned rounds = 0;
  // The whole of the waits for accesses that were being destroyed; past it, the unmap gives up as for
  // a driver that keeps its pins.
  const auto wait_deadline = std::chrono::steady_clock::now() + kUnmapDestroyWaitLimit;
  for (;;) {
    Interval notify{};
    {
      // Read for the whole teardown, as in the kernel's iopt_unmap_iova_range(): while an area's pages are
      // detached no domain may be added or removed, or it would miss or double the area's unmap.
      lockdep::ReadGuard d(domains_rwsem_);
      for (;;) {
        Area* a;
        RefPtr<Pages> pages;
        {
          lockdep::WriteGuard g(iova_rwsem_);
          a = first_area_locked({start, range.last});
          if (!a) return {};
          if (!a->pages()) return Status::error(EBUSY);
          a->iova_lock().assert_held();
          // Locked by an internal access, whose pins no callback can take back.
          if (a->num_locks() > 0) return Status::error(EBUSY);
          if (a->iova_start() < start || a->iova_last() > range.last) return Status::error(ENOENT);
          if (a->iova_start() != start) rounds = 0;
          a->iova_lock().assert_held();
          if (a->num_accesses() > 0) {
            // Pins by accesses: stop new ones, then ask every access to let go, with no lock held.
            start = a->iova_start();
            a->prevent_access = true;
            notify = a->node.range;
            break;
          }
          // From here the area is half-built again: it keeps its IOVA, but pins, rw, copy, cut and other
          // unmaps see it as being built (ENOENT / EBUSY) and nothing else can reach its pages.
          pages = a->detach_pages();
        }
        // The slow part, with the IOVA lock dropped: pins, rw and IOVA_RANGES on the rest of the IOAS go
        // on meanwhile.
        unfill_area(*a, *pages);
        const std::uint64_t area_last = a->iova_last();
        *unmapped += a->length();
        {
          lockdep::WriteGuard g(iova_rwsem_);
          remove_area_locked(a);
        }
        pages.reset();  // the last reference frees the Pages outside the IOVA lock
        if (area_last >= range.last) return {};
        // Moving the start past the removed area keeps an area that a concurrent map has placed at an
        // already unmapped IOVA from being found again (iopt_unmap_iova_range(); docs/semantics.md#unmap).
        start = area_last + 1;
      }
    }
    std::uint32_t list_gen = 0;
    const bool skipped = notify_accesses(notify, &list_gen);
    if (skipped) {
      // An access being destroyed is skipped, and its destroyer's own callback is what releases its
      // pins: sleep until it has left the list (remove_access() wakes this) rather than spend rounds.
      if (access_list_gen_.wait_change(list_gen, wait_deadline)) continue;
    } else if (++rounds <= kMaxUnmapNotifyRounds) {
      continue;  // every live access was called; retry at once, as the kernel does
    }
    UIOMMUFD_LOG(LogLevel::kWarn, "unmap of [%#llx, %#llx]: accesses kept their pins (EDEADLOCK)",
                 static_cast<unsigned long long>(notify.start), static_cast<unsigned long long>(notify.last));
    return Status::error(EDEADLOCK);
  }
}

bool IoPagetable::notify_accesses(Interval range, std::uint32_t* list_gen) {
  // Held (as a recursive reader: concurrent unmaps, and unmaps from inside a callback, are fine) around
  // the callbacks; access destroy touches it. A driver lock taken here and held across destroy is then a
  // reported cycle.
  lockdep::MapRecursiveSharedGuard inside(access_unmap_);
  // In batches of a fixed size, so that an unmap never needs memory for this. An access that leaves the
  // list between batches may shift one behind it past the next batch's start; that one still holds its
  // pins then, and the unmap's next notify round reaches it.
  constexpr std::size_t kBatch = 16;
  bool skipped = false;
  bool first = true;
  for (std::size_t next = 0;;) {
    AccessHook* live[kBatch];
    std::size_t n = 0;
    bool more = false;
    {
      lockdep::MutexGuard g(access_list_mu_);
      // Read with the list: a removal after this changes it.
      if (first) *list_gen = access_list_gen_.load();
      first = false;
      for (; next < accesses_.size() && n < kBatch; ++next) {
        if (accesses_[next]->try_get())
          live[n++] = accesses_[next];
        else
          skipped = true;
      }
      more = next < accesses_.size();
    }
    for (std::size_t i = 0; i < n; ++i) {
      live[i]->unmap_callback(range.start, range.last - range.start + 1);
      live[i]->put();
    }
    if (!more) return skipped;
  }
}

// ---- accesses ----

Status IoPagetable::add_access(AccessHook* access, std::uint64_t alignment) {
  lockdep::WriteGuard d(domains_rwsem_);
  lockdep::WriteGuard g(iova_rwsem_);
  {
    lockdep::MutexGuard l(access_list_mu_);
    TRY(reserve_more(accesses_));
  }
  TRY(reserve_more(required_alignments_));
  // The access's alignment joins the others; every area must already meet the result.
  required_alignments_.push_back(alignment);
  std::uint64_t a = compute_alignment_locked(domains_, large_pages_.load());
  if (Status st = check_areas_aligned_locked(a); !st.ok()) {
    required_alignments_.pop_back();
    return st;
  }
  iova_alignment_ = a;
  lockdep::MutexGuard l(access_list_mu_);
  accesses_.push_back(access);
  return {};
}

void IoPagetable::remove_access(AccessHook* access, std::uint64_t alignment) {
  lockdep::WriteGuard d(domains_rwsem_);
  lockdep::WriteGuard g(iova_rwsem_);
  {
    lockdep::MutexGuard l(access_list_mu_);
    auto it = std::find(accesses_.begin(), accesses_.end(), access);
    UIOMMUFD_ASSERT(it != accesses_.end());
    accesses_.erase(it);
    access_list_gen_.bump();  // an unmap waiting for a dying access to let go re-checks
  }
  auto it = std::find(required_alignments_.begin(), required_alignments_.end(), alignment);
  UIOMMUFD_ASSERT(it != required_alignments_.end());
  required_alignments_.erase(it);
  iova_alignment_ = compute_alignment_locked(domains_, large_pages_.load());
}

namespace {
// n handles of consecutive pages from (phys, host) on. Both fields step by a page together, so each handle
// is one 16-byte vector store: this is most of a large pin's own work, and the compiler does not
// vectorise the plain loop at -O2. Four stores an iteration, from four independent vectors: a loop of
// one store runs at the front end's pace, which moves with where the linker happens to place it (a 15%
// swing in access_pin_2m between builds); four keep the store ports busy instead.
void fill_handles(AccessPage* handles, std::size_t n, PhysAddr phys, std::uintptr_t host) {
  static_assert(sizeof(AccessPage) == 16 && sizeof(void*) == 8 && sizeof(PhysAddr) == 8);
  using Pair = std::uint64_t __attribute__((vector_size(16)));
  const Pair step = {kPageSize, kPageSize};
  Pair v0 = {phys, host};
  Pair v1 = v0 + step, v2 = v1 + step, v3 = v2 + step;
  const Pair step4 = step * 4;
  auto put = [&](std::size_t k, const Pair& v) {
    std::memcpy(static_cast<void*>(&handles[k]), &v, sizeof(v));
  };
  std::size_t k = 0;
  for (; k + 4 <= n; k += 4) {
    put(k, v0);
    put(k + 1, v1);
    put(k + 2, v2);
    put(k + 3, v3);
    v0 += step4;
    v1 += step4;
    v2 += step4;
    v3 += step4;
  }
  for (; k < n; ++k) {
    put(k, v0);
    v0 += step;
  }
}

Status check_access_prot(const Area& a, bool write) {
  if (write ? !(a.prot() & kIommuWrite) : !(a.prot() & kIommuRead)) return Status::error(EPERM);
  return {};
}
}  // namespace

Status IoPagetable::access_pin(std::uint64_t iova, std::uint64_t length, bool write,
                               std::vector<AccessPage>* out, bool lock_area) {
  const int locks = lock_area ? 1 : 0;
  if (length == 0) return Status::error(EINVAL);
  std::uint64_t last;
  if (!checked_add(iova, length - 1, &last)) return Status::error(EOVERFLOW);
  out->clear();
  lockdep::ReadGuard g(iova_rwsem_);
  std::size_t done = 0;
  Status st;
  const bool complete = walk_segments_locked(iova, last, [&](const Segment& s) {
    Area& a = *s.area;
    a.iova_lock().assert_shared_held();
    // Only the segment that ends the range may end off a page boundary.
    const bool final_segment = s.iova + s.length - 1 == last;
    if (a.prevent_access || s.start_byte % kPageSize != 0 ||
        (!final_segment && (a.start_byte() + a.length()) % kPageSize != 0)) {
      st = Status::error(EINVAL);
      return false;
    }
    if (st = check_access_prot(a, write); !st.ok()) return false;
    // The exporter's memory is not for CPU access (iopt_area_add_access()).
    if (a.pages()->is_dmabuf()) {
      st = Status::error(EINVAL);
      return false;
    }
    const std::uint64_t first = s.start_byte / kPageSize,
                        last_index = (s.start_byte + s.length - 1) / kPageSize;
    const std::uintptr_t host = a.host_page0() + ((first - a.first_index()) << kPageShift);
    // Pinning touches the first page; on a large address space its translation is rarely cached, and the
    // walk costs more than all the bookkeeping below. Starting it now lets the two overlap.
    __builtin_prefetch(reinterpret_cast<const void*>(host), 1);
    Pages& pages = *a.pages();
    {
      lockdep::MutexGuard pg(pages.mutex());
      if (st = pages.add_access_locked(first, last_index); !st.ok()) return false;
      a.change_num_accesses(+1);
      a.change_num_locks(locks);
    }
    ++done;
    // A Pages window is contiguous, so the handles follow from the first page's.
    const PhysAddr phys = pages.page_phys(first);
    const std::size_t at = out->size(), n = last_index - first + 1;
    try {
      out->resize(at + n);
    } catch (const std::bad_alloc&) {
      st = Status::error(ENOMEM);  // this segment's record is undone with the others'
      return false;
    }
    fill_handles(out->data() + at, n, phys, host);
    return true;
  });
  if (st.ok() && !complete) st = Status::error(ENOENT);
  if (st.ok()) return st;
  // Undo the records of the segments before the failing one: the same walk, under the same lock, meets
  // the same segments first.
  std::size_t undone = 0;
  walk_segments_locked(iova, last, [&](const Segment& s) {
    if (undone == done) return false;
    Pages& pages = *s.area->pages();
    lockdep::MutexGuard pg(pages.mutex());
    pages.remove_access_locked(s.start_byte / kPageSize, (s.start_byte + s.length - 1) / kPageSize);
    s.area->iova_lock().assert_shared_held();
    s.area->change_num_accesses(-1);
    s.area->change_num_locks(-locks);
    ++undone;
    return true;
  });
  out->clear();
  return st;
}

bool IoPagetable::access_unpin(std::uint64_t iova, std::uint64_t length, bool lock_area) {
  const int locks = lock_area ? 1 : 0;
  std::uint64_t last;
  if (length == 0 || !checked_add(iova, length - 1, &last)) return false;
  lockdep::ReadGuard g(iova_rwsem_);
  // Nothing is removed unless the whole range is there: the first walk checks that and keeps the first
  // few segments (usually the only ones), so only a range over many areas is walked a second time.
  constexpr std::size_t kKept = 4;
  Segment kept[kKept];
  std::size_t count = 0;
  if (!walk_segments_locked(iova, last, [&](const Segment& s) {
        if (count < kKept) kept[count] = s;
        ++count;
        return true;
      }))
    return false;
  bool all = true;
  auto remove = [&](const Segment& s) {
    Pages& pages = *s.area->pages();
    lockdep::MutexGuard pg(pages.mutex());
    s.area->iova_lock().assert_shared_held();
    if (pages.remove_access_locked(s.start_byte / kPageSize, (s.start_byte + s.length - 1) / kPageSize)) {
      s.area->change_num_accesses(-1);
      s.area->change_num_locks(-locks);
    } else {
      all = false;
    }
    return true;
  };
  if (count <= kKept) {
    for (std::size_t i = 0; i < count; ++i) remove(kept[i]);
  } else {
    walk_segments_locked(iova, last, remove);
  }
  return all;
}

Status IoPagetable::access_rw(std::uint64_t iova, void* data, std::uint64_t length, bool write,
                              bool slow_path) {
  if (length == 0) return Status::error(EINVAL);
  std::uint64_t last;
  if (!checked_add(iova, length - 1, &last)) return Status::error(EOVERFLOW);
  TRY(inject(g_fault_rw));
  lockdep::ReadGuard g(iova_rwsem_);
  auto* bytes = static_cast<unsigned char*>(data);
  Status st;
  const bool complete = walk_segments_locked(iova, last, [&](const Segment& s) {
    st = rw_segment_locked(s, bytes, write, slow_path);
    bytes += s.length;
    return st.ok();
  });
  TRY(st);
  if (!complete) return Status::error(ENOENT);
  return {};
}

Status IoPagetable::rw_segment_locked(const Segment& s, unsigned char* bytes, bool write,
                                      bool slow_path) const {
  iova_rwsem_.assert_shared_held();
  Area& a = *s.area;
  a.iova_lock().assert_shared_held();
  if (a.prevent_access) return Status::error(EINVAL);
  TRY(check_access_prot(a, write));
  Pages& pages = *a.pages();
  if (write && !pages.writable()) return Status::error(EPERM);
  if (pages.is_dmabuf()) return Status::error(EINVAL);  // iopt_pages_rw_access()
  const std::uint64_t va = pages.page_address(0) + s.start_byte;
  // User pages are reached through the address space they come from (the area's process, which may not be
  // the caller's: docs/shared.md#memory): a bad address is EFAULT, never a crash.
  const Mm& source = pages.mm();
  auto copy = [&] {
    return write ? source.copy_to_user(va, bytes, s.length) : source.copy_from_user(bytes, va, s.length);
  };
  if (pages.kind() == PagesKind::kUser && !slow_path) return copy();
  const std::uint64_t first = s.start_byte / kPageSize,
                      last_index = (s.start_byte + s.length - 1) / kPageSize;
  lockdep::MutexGuard pg(pages.mutex());
  TRY(pages.pin_locked(first, last_index));
  Status st;
  if (pages.kind() == PagesKind::kUser && source.remote()) {
    st = copy();  // no host pointer into another process
  } else {
    auto* host = static_cast<unsigned char*>(pages.host_page(first)) + s.start_byte % kPageSize;
    if (write)
      std::memcpy(host, bytes, s.length);
    else
      std::memcpy(bytes, host, s.length);
  }
  pages.unpin_locked(first, last_index);
  return st;
}

// ---- domains ----

std::uint64_t IoPagetable::compute_alignment_locked(const std::vector<Domain*>& domains,
                                                    bool large_pages) const {
  iova_rwsem_.assert_shared_held();
  std::uint64_t a = large_pages ? 1 : kPageSize;
  for (const Domain* d : domains) a = std::max(a, d->granule());
  for (std::uint64_t r : required_alignments_) a = std::max(a, r);
  return a;
}

Status IoPagetable::check_areas_aligned_locked(std::uint64_t alignment) const {
  iova_rwsem_.assert_shared_held();
  for (IntervalTreeNode* n = areas_.first(); n; n = areas_.next(n)) {
    const Area* a = area_of(n);
    if (a->iova_start() % alignment || a->length() % alignment || a->page_offset() % alignment)
      return Status::error(EADDRINUSE);
  }
  return {};
}

Status IoPagetable::add_domain(Domain* domain) {
  lockdep::WriteGuard d(domains_rwsem_);
  lockdep::WriteGuard g(iova_rwsem_);
  if (std::find(domains_.begin(), domains_.end(), domain) != domains_.end()) return Status::error(EEXIST);
  if (domain->granule() > kPageSize) return Status::error(EINVAL);
  // Room for everything this records, before it changes anything.
  TRY(reserve_more(domains_));
  TRY(reserve_more(reserved_nodes_, 2));
  std::vector<Area*> filled;
  TRY(reserve_more(filled, areas_.size()));
  std::vector<Domain*> with;
  TRY(reserve_more(with, domains_.size() + 1));
  with = domains_;  // within capacity: no allocation
  with.push_back(domain);
  std::uint64_t alignment = compute_alignment_locked(with, large_pages_.load());
  TRY(check_areas_aligned_locked(alignment));

  Interval aperture = domain->aperture();
  Status st;
  if (aperture.start > 0) st = add_reserved_locked({0, aperture.start - 1}, domain);
  if (st.ok() && aperture.last < kUlongMax) st = add_reserved_locked({aperture.last + 1, kUlongMax}, domain);
  if (!st.ok()) {
    remove_reserved_locked(domain);
    return st;
  }

  // Fill from every published area. The first domain pins; later ones map what is already pinned.
  bool first_domain = domains_.empty();
  for (IntervalTreeNode* n = areas_.first(); n && st.ok(); n = areas_.next(n)) {
    Area* a = area_of(n);
    if (!a->pages()) continue;
    Pages& pages = *a->pages();
    lockdep::MutexGuard pg(pages.mutex());
    if (pages.is_dmabuf()) {
      // Recorded whether or not it is revoked; filled only if not (iopt_fill_domain()).
      st = track_dmabuf_locked(*a, pages, &domain, 1);
      if (st.ok() && !pages.revoked_locked()) {
        st = fill_batches_locked(*a, pages, &domain, 1, /*pin=*/false);
        if (!st.ok()) pages.untrack_locked(a, domain);
      }
    } else {
      st = fill_batches_locked(*a, pages, &domain, 1, /*pin=*/first_domain);
    }
    if (st.ok()) filled.push_back(a);
  }
  if (!st.ok()) {
    for (Area* a : filled) {
      Pages& pages = *a->pages();
      lockdep::MutexGuard pg(pages.mutex());
      if (pages.is_dmabuf()) {
        // A revoke since the fill has unmapped it already.
        if (!pages.revoked_locked()) unmap_range_from(*domain, a->iova_start(), a->length());
        pages.untrack_locked(a, domain);
        continue;
      }
      unmap_range_from(*domain, a->iova_start(), a->length());
      if (first_domain) pages.unpin_locked(a->first_index(), a->last_index());
    }
    remove_reserved_locked(domain);
    return st;
  }
  domains_.push_back(domain);
  iova_alignment_ = alignment;
  return {};
}

void IoPagetable::remove_domain(Domain* domain) {
  lockdep::WriteGuard d(domains_rwsem_);
  lockdep::WriteGuard g(iova_rwsem_);
  auto it = std::find(domains_.begin(), domains_.end(), domain);
  UIOMMUFD_ASSERT(it != domains_.end());
  bool last_domain = domains_.size() == 1;
  for (IntervalTreeNode* n = areas_.first(); n; n = areas_.next(n)) {
    Area* a = area_of(n);
    if (!a->pages()) continue;
    Pages& pages = *a->pages();
    lockdep::MutexGuard pg(pages.mutex());
    if (pages.is_dmabuf()) {
      if (!pages.revoked_locked()) unmap_range_from(*domain, a->iova_start(), a->length());
      pages.untrack_locked(a, domain);
      continue;
    }
    unmap_range_from(*domain, a->iova_start(), a->length());
    if (last_domain) pages.unpin_locked(a->first_index(), a->last_index());
  }
  domains_.erase(it);
  remove_reserved_locked(domain);
  iova_alignment_ = compute_alignment_locked(domains_, large_pages_.load());
}

// ---- reserved and allowed ranges ----

Status IoPagetable::add_reserved_locked(Interval range, const void* owner) {
  iova_rwsem_.assert_held();
  if (intersects_locked(areas_, range) || intersects_locked(allowed_, range))
    return Status::error(EADDRINUSE);
  TRY(inject(g_fault_alloc_reserved));
  TRY(reserve_more(reserved_nodes_));
  std::unique_ptr<Reserved> r(new (std::nothrow) Reserved());
  if (!r) return Status::error(ENOMEM);
  r->node.range = range;
  r->owner = owner;
  reserved_.insert(&r->node);
  areas_.gap_exclusions_changed(range);
  reserved_nodes_.push_back(std::move(r));
  return {};
}

void IoPagetable::remove_reserved_locked(const void* owner) {
  iova_rwsem_.assert_held();
  // A plain loop: the thread-safety analysis does not follow the lock into a lambda.
  for (auto it = reserved_nodes_.begin(); it != reserved_nodes_.end();) {
    if ((*it)->owner != owner) {
      ++it;
      continue;
    }
    reserved_.remove(&(*it)->node);
    areas_.gap_exclusions_changed((*it)->node.range);
    it = reserved_nodes_.erase(it);
  }
}

Status IoPagetable::add_reserved(Interval range, const void* owner) {
  lockdep::WriteGuard g(iova_rwsem_);
  return add_reserved_locked(range, owner);
}

void IoPagetable::remove_reserved(const void* owner) {
  lockdep::WriteGuard g(iova_rwsem_);
  remove_reserved_locked(owner);
}

Status IoPagetable::set_allowed(const std::vector<Interval>& ranges) {
  std::vector<std::unique_ptr<Allowed>> nodes;
  nodes.reserve(ranges.size());  // push_back below must not throw while `tree` holds the node
  IntervalTree tree;
  for (const Interval& r : ranges) {
    if (r.start >= r.last || tree.first_overlap(r)) {
      tree.clear();
      return Status::error(EINVAL);
    }
    auto n = std::make_unique<Allowed>();
    n->node.range = r;
    tree.insert(&n->node);
    nodes.push_back(std::move(n));
  }
  lockdep::WriteGuard g(iova_rwsem_);
  for (IntervalTreeNode* n = tree.first(); n; n = tree.next(n)) {
    if (intersects_locked(reserved_, n->range)) {
      tree.clear();
      return Status::error(EADDRINUSE);
    }
  }
  allowed_.clear();
  swap(allowed_, tree);
  allowed_nodes_.swap(nodes);
  return {};
}

std::vector<Interval> IoPagetable::iova_ranges() {
  lockdep::ReadGuard g(iova_rwsem_);
  return reserved_holes(reserved_);
}

std::uint64_t IoPagetable::iova_alignment() {
  lockdep::ReadGuard g(iova_rwsem_);
  return iova_alignment_;
}

Status IoPagetable::set_large_pages(bool enabled) {
  lockdep::WriteGuard d(domains_rwsem_);
  lockdep::WriteGuard g(iova_rwsem_);
  if (!enabled) {
    if (!large_pages_.load()) return {};
    if (!domains_.empty() && !areas_.empty()) return Status::error(EINVAL);
    std::uint64_t alignment = compute_alignment_locked(domains_, false);
    TRY(check_areas_aligned_locked(alignment));
    large_pages_.store(false);
    iova_alignment_ = alignment;
    return {};
  }
  large_pages_.store(true);
  iova_alignment_ = compute_alignment_locked(domains_, true);
  return {};
}

bool IoPagetable::large_pages() { return large_pages_.load(); }

// ---- the VFIO TYPE1 cut ----

Status IoPagetable::cut_iova(std::initializer_list<std::uint64_t> iovas) {
  // The domains lock (read) keeps the "mapped into a domain" answer stable for the whole cut.
  lockdep::ReadGuard d(domains_rwsem_);
  lockdep::WriteGuard g(iova_rwsem_);
  for (std::uint64_t iova : iovas) {
    Area* a = first_area_locked({iova, iova});
    if (a) TRY(split_area_locked(a, iova));
  }
  return {};
}

Status IoPagetable::split_area_locked(Area* area, std::uint64_t iova) {
  iova_rwsem_.assert_held();
  domains_rwsem_.assert_shared_held();
  const std::uint64_t start = area->iova_start(), last = area->iova_last();
  if (iova == start || iova == last) return {};
  area->iova_lock().assert_held();
  if (!area->pages() || area->prevent_access) return Status::error(EBUSY);
  // A dma-buf's records are per area; the kernel does not split them (iopt_area_split()).
  if (area->pages()->is_dmabuf()) return Status::error(EOPNOTSUPP);
  const std::uint64_t right_start = iova + 1;
  const std::uint64_t right_start_byte = area->start_byte() + (right_start - start);
  // Both halves must be areas that map_chunks could have created.
  if (right_start % iova_alignment_ || right_start_byte % iova_alignment_) return Status::error(EINVAL);
  TRY(inject(g_fault_alloc_area));
  std::unique_ptr<Area> left(new (std::nothrow)
                                 Area(iova_rwsem_, area->pages(), area->start_byte(), area->prot()));
  if (!left) return Status::error(ENOMEM);
  TRY(inject(g_fault_alloc_area));
  std::unique_ptr<Area> right(new (std::nothrow)
                                  Area(iova_rwsem_, area->pages(), right_start_byte, area->prot()));
  if (!right) return Status::error(ENOMEM);
  // Pin records are kept per byte range of the area that made them; a record cannot be divided.
  if (area->num_accesses()) return Status::error(EINVAL);
  // A filled area may sit in large IOPTEs, which a domain cannot unmap in parts. With large pages off,
  // every page was mapped by its own call, so either half can later be unmapped on its own. Every
  // published area is filled into every domain, so "filled" is "a domain exists".
  if (!domains_.empty() && large_pages_.load()) return Status::error(EINVAL);

  // The page-index ranges of the halves are disjoint whenever a domain pins them (the alignment is then
  // at least kPageSize), so the pins the whole area held are exactly the halves' pins.
  areas_.remove(&area->node);
  left->node.range = {start, iova};
  right->node.range = {right_start, last};
  left->publish();
  right->publish();
  areas_.insert(&left->node);
  areas_.insert(&right->node);
  left.release();  // the tree owns both now
  right.release();
  delete area;
  return {};
}

IoPagetable::PageSizes IoPagetable::page_sizes() {
  lockdep::ReadGuard d(domains_rwsem_);
  lockdep::ReadGuard g(iova_rwsem_);
  std::uint64_t bitmap = ~std::uint64_t{0};
  for (const Domain* dom : domains_) bitmap &= dom->pgsize_bitmap();
  return {bitmap, iova_alignment_};
}

// ---- dirty tracking ----

Status IoPagetable::set_dirty_tracking(Domain* domain, bool enable) {
  if (!domain->dirty_capable()) return Status::error(EOPNOTSUPP);
  lockdep::ReadGuard g(iova_rwsem_);
  if (enable) {
    for (IntervalTreeNode* n = areas_.first(); n; n = areas_.next(n)) {
      const Area* a = area_of(n);
      if (!a->pages()) continue;
      TRY(domain->read_and_clear_dirty(
          n->range.start, n->range.length(), /*no_clear=*/false, [](void*, std::uint64_t, std::uint64_t) {},
          nullptr));
    }
  }
  return domain->set_dirty_tracking(enable);
}

Status IoPagetable::read_dirty_window(Domain* domain, std::uint64_t last, bool no_clear,
                                      std::vector<DirtyRange>* out, DirtyWalk* walk) {
  // A window spans 128 Ki entries of the domain's smallest size (256 MiB of the mock's 2 KiB ones, 512 MiB
  // of 4 KiB ones): a bounded report buffer and a bounded time with the IOVA lock held.
  constexpr unsigned kWindowEntriesShift = 17;
  const unsigned granule_shift = static_cast<unsigned>(__builtin_ctzll(domain->pgsize_bitmap()));
  const std::uint64_t window = std::uint64_t{1} << (kWindowEntriesShift + granule_shift);
  if (walk->done) return Status();
  const std::uint64_t window_last = std::min(last, walk->cur | (window - 1));
  // Room first: once an entry is read and cleaned, its report must not be lost to a failed allocation
  // (docs/allocation.md: room first, change second). Enough for a whole window or the rest of the request,
  // whichever is less, so that a caller reusing *out allocates only before its first window, as the kernel
  // allocates its bitmap state before its walk.
  out->reserve(out->size() + (std::min(last - walk->cur, window - 1) >> granule_shift) + 2);
  lockdep::ReadGuard g(iova_rwsem_);
  // The areas that follow one another from walk->cur within the window are read in one call: an entry never
  // spans two areas, so the reports are those of one call per area (the kernel's loop over contiguous
  // areas), at one domain lock and one table walk per window instead of per area.
  const Interval range{walk->cur, window_last};
  std::uint64_t end = walk->cur - 1;  // the last byte of the contiguous run so far
  bool hole = false;
  for (Area* a = first_area_locked(range); end != window_last; a = next_area_locked(a, range)) {
    if (!a || a->iova_start() > end + 1 || !a->pages()) {
      hole = true;
      break;
    }
    end = std::min(window_last, a->iova_last());
  }
  if (end + 1 != walk->cur) {  // something to read
    TRY(domain->read_and_clear_dirty(
        walk->cur, end - walk->cur + 1, no_clear,
        [](void* ctx, std::uint64_t iova, std::uint64_t length) {
          static_cast<std::vector<DirtyRange>*>(ctx)->push_back({iova, length});
        },
        out));
  }
  if (hole || end == last) {
    walk->done = true;
    return Status();
  }
  walk->cur = end + 1;
  return Status();
}

// ---- introspection ----

Status IoPagetable::file_pages_locked(std::vector<Pages*>* out) {
  iova_rwsem_.assert_held();
  const Interval all{0, kUlongMax};
  // Area by area in IOVA order, as the kernel checks them: the first area that fails decides the error.
  for (Area* a = first_area_locked(all); a; a = next_area_locked(a, all)) {
    if (!a->pages()) return Status::error(EBUSY);
    if (a->pages()->kind() != PagesKind::kFile) return Status::error(EINVAL);
  }
  for (Area* a = first_area_locked(all); a; a = next_area_locked(a, all)) out->push_back(a->pages().get());
  return {};
}

std::size_t IoPagetable::area_count() {
  lockdep::ReadGuard g(iova_rwsem_);
  return areas_.size();
}

std::size_t IoPagetable::domain_count() {
  lockdep::ReadGuard d(domains_rwsem_);
  return domains_.size();
}

std::vector<IoPagetable::AreaInfo> IoPagetable::areas() {
  std::vector<AreaInfo> out;
  lockdep::ReadGuard g(iova_rwsem_);
  for (IntervalTreeNode* n = areas_.first(); n; n = areas_.next(n)) {
    const Area* a = area_of(n);
    out.push_back({n->range, &a->backing(), a->start_byte(), a->prot()});
  }
  return out;
}

std::string IoPagetable::check_invariants() {
  lockdep::ReadGuard d(domains_rwsem_);
  lockdep::ReadGuard g(iova_rwsem_);
  auto fail = [](std::string what, const Area* a) {
    return what + " (area [" + std::to_string(a->iova_start()) + ", " + std::to_string(a->iova_last()) + "])";
  };
  const Area* prev = nullptr;
  std::uint64_t mapped = 0;
  // Expected pin users per Pages, as +1/-1 events at page-index boundaries, and how many of this
  // table's areas reference each Pages: when that is all its references, the count must match exactly;
  // a Pages shared with another IOAS (COPY) may carry that IOAS's pins too.
  struct Expectation {
    std::map<std::uint64_t, std::int64_t> events;
    std::uint32_t areas = 0;
  };
  std::map<Pages*, Expectation> expected;
  // The tree's own structure and figures (aborts on a violation: it is a bug in the tree, not in iopt).
  areas_.check_invariants();
  for (IntervalTreeNode* n = areas_.first(); n; n = areas_.next(n)) {
    const Area* a = area_of(n);
    if (!a->pages()) return fail("half-built area outside an operation", a);
    if (prev && prev->iova_last() >= a->iova_start()) return fail("areas overlap", a);
    if (intersects_locked(reserved_, n->range)) return fail("area inside a reserved range", a);
    if (a->iova_start() % iova_alignment_ || a->length() % iova_alignment_ ||
        a->page_offset() % iova_alignment_)
      return fail("area not aligned to iova_alignment", a);
    if (a->pages()->is_dmabuf()) {
      Pages& pages = *a->pages();
      lockdep::MutexGuard pg(pages.mutex());
      if (pages.npinned_locked() != 0) return fail("a dma-buf backing is pinned", a);
      if (pages.revoked_locked()) {
        // Revoked: in no domain, whatever was attached before or since.
        for (const Domain* dom : domains_)
          if (dom->read_run(a->iova_start(), a->length()).length != 0)
            return fail("a domain still maps a revoked dma-buf area", a);
        prev = a;
        continue;
      }
    }
    for (const Domain* dom : domains_) {
      for (std::uint64_t iova : {a->iova_start(), a->iova_last()}) {
        std::optional<PhysAddr> pa = dom->iova_to_phys(iova);
        if (!pa || *pa != a->phys(iova)) return fail("domain maps the area to the wrong backing", a);
      }
      std::uint64_t run_start = a->iova_start() - a->iova_start() % dom->granule();
      Domain::Run run = dom->read_run(run_start, a->iova_last() - run_start + 1);
      if (run.length != a->iova_last() - run_start + 1)
        return fail("domain mapping of the area is not one contiguous run", a);
    }
    mapped += a->length();
    if (!a->pages()->pins_pages()) {
      prev = a;
      continue;
    }
    Expectation& e = expected[a->pages().get()];
    ++e.areas;
    if (!domains_.empty()) {
      e.events[a->first_index()] += 1;
      e.events[a->last_index() + 1] -= 1;
    }
    prev = a;
  }
  for (const Domain* dom : domains_) {
    if (dom->mapped_bytes() != mapped) return "a domain maps bytes that belong to no area";
    if (dom->boundary_violations() != 0) return "a domain was unmapped across map boundaries";
  }
  for (auto& [pages, e] : expected) {
    bool exclusive = pages->ref_count() == e.areas;
    lockdep::MutexGuard pg(pages->mutex());
    for (const auto& [range, users] : pages->access_records_locked()) {
      e.events[range.start] += users;
      e.events[range.last + 1] -= users;
    }
    std::int64_t users = 0;
    std::uint64_t total = 0;
    for (auto it = e.events.begin(); it != e.events.end(); ++it) {
      users += it->second;
      auto next = std::next(it);
      if (next == e.events.end()) break;
      if (users > 0) total += next->first - it->first;
      for (std::uint64_t idx : {it->first, next->first - 1}) {
        std::int64_t have = pages->pin_users_locked(idx);
        if (exclusive ? have != users : have < users)
          return "pin count of page " + std::to_string(idx) + " is " + std::to_string(have) +
                 ", its users here are " + std::to_string(users);
      }
    }
    if (exclusive && pages->npinned_locked() != total) return "pages pinned that no area uses";
  }
  return {};
}

}  // namespace uiommufd
