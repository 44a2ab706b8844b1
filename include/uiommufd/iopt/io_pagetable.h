// IoPagetable: one I/O address space's areas, reserved and allowed ranges, and the domains that mirror
// it (the kernel's struct io_pagetable). Areas point at Pages; every attached Domain maps every
// fully-built area; a page index is pinned once while any domain or any access pin uses it.
//
// Thread safety: every public method may be called from any thread and takes the locks it needs, in the
// order of lockdep/engine_lock_order.h. Callers may hold the objects layer's locks above this one
// (device.mutex, access.ioas_lock, ioas.mutex), never iopt.* or anything below it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "uiommufd/base/interval.h"
#include "uiommufd/base/result.h"
#include "uiommufd/base/status.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/base/wait_word.h"
#include "uiommufd/domain/domain.h"
#include "uiommufd/iopt/area.h"
#include "uiommufd/iova/interval_tree.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/lockdep_map.h"
#include "uiommufd/lockdep/shared_mutex.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd {

// A slice of a Pages object to be mapped: MAP has one, COPY one per source area.
struct PagesChunk {
  RefPtr<Pages> pages;
  std::uint64_t start_byte;  // from the start of page 0 of the Pages window
  std::uint64_t length;      // bytes, > 0
};

// What the I/O page table needs from an access (the objects layer's Access implements it).
class AccessHook {
 public:
  // A short-term reference held across one callback; false when the access is being destroyed, which
  // unmap then skips.
  virtual bool try_get() = 0;
  virtual void put() = 0;
  // The driver's unmap callback for [iova, iova + length − 1]. Runs with no engine lock held.
  virtual void unmap_callback(std::uint64_t iova, std::uint64_t length) = 0;

 protected:
  ~AccessHook() = default;
};

// One page pinned for an access: its identity and where to read and write it while pinned (the
// user-space stand-in for kmap).
struct AccessPage {
  // Deliberately leaves both fields unwritten, so that growing a vector of handles does not write every
  // handle once before the pin writes it again (pin_pages of 512 pages is dominated by such writes).
  AccessPage() {}  // NOLINT(modernize-use-equals-default): = default would zero them in resize()
  AccessPage(PhysAddr p, void* a) : phys(p), address(a) {}
  PhysAddr phys;
  void* address;
};

class IoPagetable {
 public:
  // The unmap loop gives up on an area (EDEADLOCK) after this many rounds of callbacks that left pins
  // behind (the kernel's limit in iopt_unmap_iova_range()), or after waiting this long in all for
  // accesses being destroyed to let go (their destroyer's callback releases their pins).
  static constexpr unsigned kMaxUnmapNotifyRounds = 100;
  static constexpr std::chrono::seconds kUnmapDestroyWaitLimit{60};

  IoPagetable();
  // Unmaps everything; every domain must have been removed first.
  ~IoPagetable();
  IoPagetable(const IoPagetable&) = delete;
  IoPagetable& operator=(const IoPagetable&) = delete;

  // Maps the chunks back to back from *iova (fixed) or from an allocated IOVA (written to *iova), with
  // `prot` (kIommu* bits). Errors, in the kernel's order: EINVAL (a length of 0 or not a multiple of
  // iova_alignment; a chunk's page offset not aligned to it; fixed IOVA unaligned or in a reserved range),
  // EOVERFLOW, EEXIST (fixed IOVA over an area), ENOSPC / EINVAL (allocation), EPERM (write to
  // read-only pages), ENOMEM, and what filling the domains returns (EFAULT, ENOMEM, ENOENT from a mock
  // domain). On failure nothing stays mapped, pinned or charged.
  Status map_chunks(const std::vector<PagesChunk>& chunks, std::uint64_t* iova, int prot, bool fixed_iova)
      EXCLUDES(domains_rwsem_, iova_rwsem_);
  Status map_pages(RefPtr<Pages> pages, std::uint64_t* iova, int prot, bool fixed_iova)
      EXCLUDES(domains_rwsem_, iova_rwsem_);

  // The slices behind [iova, iova + length − 1], which must be covered by contiguous fully-built areas
  // (ENOENT otherwise); EINVAL for length 0, EOVERFLOW on wrap. For COPY.
  Result<std::vector<PagesChunk>> get_chunks(std::uint64_t iova, std::uint64_t length) EXCLUDES(iova_rwsem_);

  // Removes every area inside [start, last]; an area only partly inside fails the call with ENOENT, a
  // half-built one with EBUSY, and one whose access pins outlast kMaxUnmapNotifyRounds rounds of
  // callbacks, or kUnmapDestroyWaitLimit of waiting for accesses being destroyed, with EDEADLOCK. Areas below
  // the failing one are already gone then (as in the kernel). *unmapped gets the bytes removed, on success
  // and failure. An empty range succeeds with 0.
  Status unmap_range(Interval range, std::uint64_t* unmapped) EXCLUDES(domains_rwsem_, iova_rwsem_);

  // Domains. add_domain fills the domain from every area (pinning where nothing pinned yet) and reserves
  // the IOVA outside its aperture: EINVAL (granule above kPageSize), EADDRINUSE (an area not aligned to the
  // granule, or the aperture excludes an area or allowed range), ENOMEM/EFAULT/ENOENT from filling. On
  // failure the IOAS and the domain are unchanged. remove_domain never fails.
  Status add_domain(Domain* domain) EXCLUDES(domains_rwsem_, iova_rwsem_);
  void remove_domain(Domain* domain) EXCLUDES(domains_rwsem_, iova_rwsem_);

  // Dirty tracking of one attached domain (the kernel's iopt_set_dirty_tracking()): EOPNOTSUPP when the
  // domain cannot track. Enabling first clears whatever the domain's entries recorded before, area by area
  // with the IOVA lock held for reading, so that the first collection starts from a clean snapshot.
  Status set_dirty_tracking(Domain* domain, bool enable) EXCLUDES(iova_rwsem_);

  // One window of the kernel's dirty walk (iopt_read_and_clear_dirty_data(), __iommu_read_and_clear_dirty()):
  // the areas that follow one another from the one holding walk->cur, read through `domain` up to `last`
  // (Domain::read_and_clear_dirty(), whose reports are appended to *out). A window ends at the next
  // boundary of 128 Ki entries of the domain's granule (256 MiB of 2 KiB ones), so that the caller can
  // write a bitmap between windows with no lock held; walk->done
  // is set at `last`, at a hole (a start in a hole reads nothing) or at an area without pages.
  struct DirtyWalk {
    std::uint64_t cur = 0;
    bool done = false;
  };
  struct DirtyRange {
    std::uint64_t iova, length;
  };
  Status read_dirty_window(Domain* domain, std::uint64_t last, bool no_clear, std::vector<DirtyRange>* out,
                           DirtyWalk* walk) EXCLUDES(iova_rwsem_);

  // Reserved ranges, tagged by owner (a domain, a device, or null for the test op). EADDRINUSE if the
  // range intersects an area or an allowed range; ENOMEM.
  Status add_reserved(Interval range, const void* owner) EXCLUDES(iova_rwsem_);
  void remove_reserved(const void* owner) EXCLUDES(iova_rwsem_);

  // Replaces the allowed list. EINVAL: a range with start >= last, or two ranges overlapping;
  // EADDRINUSE: a range intersects a reserved range (the old list stays).
  Status set_allowed(const std::vector<Interval>& ranges) EXCLUDES(iova_rwsem_);

  // The holes of the reserved ranges over the whole 64-bit space (IOMMU_IOAS_IOVA_RANGES).
  std::vector<Interval> iova_ranges() EXCLUDES(iova_rwsem_);
  std::uint64_t iova_alignment() EXCLUDES(iova_rwsem_);

  // IOMMU_OPTION HUGE_PAGES and VFIO_SET_IOMMU(TYPE1). Disabling when already disabled succeeds and changes
  // nothing; otherwise it fails with EINVAL while a domain and an area both exist, and with EADDRINUSE
  // (rolled back) if an area is not page aligned.
  Status set_large_pages(bool enabled) EXCLUDES(domains_rwsem_, iova_rwsem_);
  bool large_pages() EXCLUDES(iova_rwsem_);

  // The VFIO TYPE1 cut (docs/semantics.md#cut): for each IOVA x of `iovas`, in order, splits the area holding
  // x so that x becomes the last byte of the left part. An IOVA in no area, or at an area's first or last
  // byte, is skipped. Both parts share the area's Pages (one more reference) and keep its protection; no
  // domain mapping, pin, charge or access record changes, which is sound only because with large pages
  // disabled every domain maps the area one page at a time. Errors, per area in this order, stopping at the
  // first (earlier cuts stay): EBUSY the area is half-built or being unmapped (prevent_access); EINVAL x + 1,
  // or its byte offset in the Pages, is not a multiple of iova_alignment; ENOMEM (fault site
  // "iopt.alloc_area", twice per cut); EINVAL the area has access pins, or it is mapped into a domain while
  // large pages are enabled.
  Status cut_iova(std::initializer_list<std::uint64_t> iovas) EXCLUDES(domains_rwsem_, iova_rwsem_);

  // What VFIO_IOMMU_GET_INFO reports, read under one lock: the page sizes every attached domain supports
  // (the AND of their bitmaps; all ones with no domain) and iova_alignment.
  struct PageSizes {
    std::uint64_t domains_pgsize_bitmap;
    std::uint64_t iova_alignment;
  };
  PageSizes page_sizes() EXCLUDES(domains_rwsem_, iova_rwsem_);

  // Accesses. add_access puts `access` on the notify list and raises iova_alignment to `alignment`
  // (EADDRINUSE when an area does not meet it; ENOMEM when the lists cannot grow); remove_access undoes
  // both and never fails.
  Status add_access(AccessHook* access, std::uint64_t alignment) EXCLUDES(domains_rwsem_, iova_rwsem_);
  void remove_access(AccessHook* access, std::uint64_t alignment) EXCLUDES(domains_rwsem_, iova_rwsem_);
  // Pins the backing pages of [iova, iova + length − 1] for an access, one AccessPage per page index
  // (docs/semantics.md#access-pin). EINVAL: length 0; an area being unmapped; a start not page aligned in the
  // backing; an area other than the last not ending at a page end. EOVERFLOW on wrap. ENOENT: a gap. EPERM:
  // `write` on an area without write permission, or a read of one without read. Pinning's errors (EFAULT,
  // ENOMEM). On failure no record is left. `lock_area`: the pin also locks its areas against unmap (an
  // internal access's, Area::num_locks()).
  Status access_pin(std::uint64_t iova, std::uint64_t length, bool write, std::vector<AccessPage>* out,
                    bool lock_area = false) EXCLUDES(iova_rwsem_);
  // Removes the pin records access_pin added for exactly (iova, length), with the same `lock_area`. False
  // when some record is not there (the caller reports it; those pins stay, as the kernel's WARN leaves them).
  bool access_unpin(std::uint64_t iova, std::uint64_t length, bool lock_area = false) EXCLUDES(iova_rwsem_);
  // Reads (write false) or writes `length` bytes at `iova` through the areas' backing, at any alignment,
  // across contiguous areas (docs/semantics.md#access-rw). Errors as access_pin; EFAULT when the backing is
  // not there. The fast path copies straight through the source address space; `slow_path`, and file-backed
  // pages, pin the pages for the copy.
  Status access_rw(std::uint64_t iova, void* data, std::uint64_t length, bool write, bool slow_path)
      EXCLUDES(iova_rwsem_);

  // For IOMMU_IOAS_CHANGE_PROCESS (Ioas::change_process), which holds the IOVA locks of several tables at
  // once: the lock itself, and with it held for writing, every area's Pages appended to *out (a Pages that
  // copies share appears once per area) — EBUSY for a half-built area, EINVAL for one that is not
  // file-backed, whichever comes first in IOVA order.
  lockdep::SharedMutex& iova_lock() RETURN_CAPABILITY(iova_rwsem_) { return iova_rwsem_; }
  Status file_pages_locked(std::vector<Pages*>* out) REQUIRES(iova_rwsem_);

  // Statistics and invariants for tests and the model checker.
  std::size_t area_count() EXCLUDES(iova_rwsem_);
  std::size_t domain_count() EXCLUDES(domains_rwsem_);
  struct AreaInfo {
    Interval iova;
    const Pages* pages;
    std::uint64_t start_byte;
    int prot;
  };
  std::vector<AreaInfo> areas() EXCLUDES(iova_rwsem_);
  // Empty when all invariants hold; otherwise what is wrong. Checks: areas disjoint, fully built, inside no
  // reserved range, aligned to iova_alignment; every domain maps exactly the areas, each to its backing;
  // every page of every area is pinned while a domain exists.
  std::string check_invariants() EXCLUDES(domains_rwsem_, iova_rwsem_);

  // Diagnostics (dump/, docs/dump.md): the table as it is at one instant, handed to an Inspector with
  // domains_rwsem and iova_rwsem held for reading throughout, so maps, unmaps and attaches that need them
  // for writing wait until it returns. Calls domains() once, then area() for each area in IOVA order with
  // its backing's pages.mutex held (backing null, and no mutex, for an area whose pages unmap has taken
  // away), then reserved() and allowed() in IOVA order. The inspector must not call into this table or
  // take any engine lock above domain.page_table; it may read the domains (Domain's methods lock their own
  // table). Added for the dump; nothing in the engine calls it.
  class Inspector {
   public:
    virtual void domains(const std::vector<Domain*>& domains, std::uint64_t iova_alignment, bool large_pages,
                         std::size_t accesses) = 0;
    virtual void area(const Area& area, Pages* backing) = 0;
    virtual void reserved(Interval range, const void* owner) = 0;
    virtual void allowed(Interval range) = 0;

   protected:
    ~Inspector() = default;
  };
  void inspect(Inspector& inspector) EXCLUDES(domains_rwsem_, iova_rwsem_, access_list_mu_);

  // The access_unmap map (see lockdep/engine_lock_order.h and docs/locking.md#access-unmap).
  lockdep::LockdepMap& access_unmap() { return access_unmap_; }

 private:
  struct Reserved {
    IntervalTreeNode node;
    const void* owner;
  };
  struct Allowed {
    IntervalTreeNode node;
  };

  static Area* area_of(IntervalTreeNode* n);
  Area* first_area_locked(Interval range) const REQUIRES_SHARED(iova_rwsem_);
  Area* next_area_locked(const Area* a, Interval range) const REQUIRES_SHARED(iova_rwsem_);

  // Maps the part `range` of `area` into `domain` (one call; one page at a time when large pages are off).
  Status map_range_into(Domain& domain, const Area& area, Interval range) REQUIRES_SHARED(domains_rwsem_);
  // Pins the area first when `pin` (resident batch by batch), then maps it into the `ndomains` domains
  // batch by batch (Pages::batch_pages()); on failure unmaps and unpins what it did. The caller holds
  // pages.mutex() (pages is the area's backing) and keeps `domains` stable.
  Status fill_batches_locked(Area& area, Pages& pages, Domain* const* domains, std::size_t ndomains, bool pin)
      REQUIRES_SHARED(domains_rwsem_) REQUIRES(pages.mutex());
  void unmap_range_from(Domain& domain, std::uint64_t iova, std::uint64_t length)
      REQUIRES_SHARED(domains_rwsem_);
  // Pins the area and maps it into every domain; undoes everything on failure. A dma-buf area is recorded
  // against every domain and mapped unless revoked, and never pinned (docs/semantics.md#dma-buf).
  Status fill_area(Area& area) REQUIRES_SHARED(domains_rwsem_);
  // dma-buf areas: one record per (area, domain) while the area is filled into the domain, through which
  // the buffer's revoke unmaps it (the kernel's iopt_dmabuf_track_domain()). Records the area against the
  // `ndomains` domains; on failure (ENOMEM) records none of them.
  class DomainTrack;
  Status track_dmabuf_locked(Area& area, Pages& pages, Domain* const* domains, std::size_t ndomains)
      REQUIRES(pages.mutex());
  // The reverse of fill_area, for a fully-filled area whose backing is `pages` (the area's own, or the
  // ones unmap has detached from it). Never fails.
  void unfill_area(Area& area, Pages& pages) REQUIRES_SHARED(domains_rwsem_);
  void remove_area_locked(Area* area) REQUIRES(iova_rwsem_);
  // One cut of cut_iova().
  Status split_area_locked(Area* area, std::uint64_t iova) REQUIRES_SHARED(domains_rwsem_)
      REQUIRES(iova_rwsem_);
  Status add_reserved_locked(Interval range, const void* owner) REQUIRES(iova_rwsem_);
  void remove_reserved_locked(const void* owner) REQUIRES(iova_rwsem_);

  std::uint64_t compute_alignment_locked(const std::vector<Domain*>& domains, bool large_pages) const
      REQUIRES_SHARED(iova_rwsem_);
  Status check_areas_aligned_locked(std::uint64_t alignment) const REQUIRES_SHARED(iova_rwsem_);
  bool intersects_locked(const IntervalTree& tree, Interval range) const REQUIRES_SHARED(iova_rwsem_);

  // Calls every access's unmap callback for the area [range] (no engine lock held), inside access_unmap.
  // Returns whether an access being destroyed was skipped; *list_gen gets access_list_gen_ as it was when
  // the list was read.
  bool notify_accesses(Interval range, std::uint32_t* list_gen)
      EXCLUDES(domains_rwsem_, iova_rwsem_, access_list_mu_);
  // One segment of an access operation: the part of `area` in [cur, last] with its page-index range.
  struct Segment {
    Area* area;
    std::uint64_t iova;
    std::uint64_t length;
    std::uint64_t start_byte;
  };
  // access_rw's work on one segment, with iova_rwsem held for read (not annotated: it runs inside the
  // segment walk's callback, where the analysis cannot see the lock).
  Status rw_segment_locked(const Segment& s, unsigned char* bytes, bool write, bool slow_path) const;
  // The segments of [iova, last] over contiguous fully-built areas, from iova up to the first gap or
  // half-built area. Callers work through them in order and report ENOENT for an incomplete walk only
  // after every segment succeeded, as the kernel's contiguous-area walk does (an earlier area's EPERM or
  // EINVAL wins, and a read or write has already moved its bytes).
  // Calls `bool f(const Segment&)` for each segment in order (no allocation: the access paths run it on
  // every pin); f returning false stops the walk. Returns whether the segments reached `last` without f
  // stopping them.
  template <typename F>
  bool walk_segments_locked(std::uint64_t iova, std::uint64_t last, F&& f) const
      REQUIRES_SHARED(iova_rwsem_) {
    iova_rwsem_.assert_shared_held();
    const Interval range{iova, last};
    std::uint64_t cur = iova;
    for (Area* a = first_area_locked(range);; a = next_area_locked(a, range)) {
      if (!a || a->iova_start() > cur || !a->pages()) return false;
      const std::uint64_t end = std::min(last, a->iova_last());
      if (!f(Segment{a, cur, end - cur + 1, a->start_byte() + (cur - a->iova_start())})) return false;
      if (end == last) return true;
      cur = end + 1;
    }
  }

  lockdep::SharedMutex domains_rwsem_{lock_order::kIoptDomainsRwsem};
  lockdep::SharedMutex iova_rwsem_{lock_order::kIoptIovaRwsem};
  lockdep::LockdepMap access_unmap_{"iopt.access_unmap"};

  std::vector<Domain*> domains_ GUARDED_BY(domains_rwsem_);
  // Changed under both rwsems (write) and this lock; the notify loop reads it under this lock alone.
  lockdep::Mutex access_list_mu_{lock_order::kIoptAccessList};
  std::vector<AccessHook*> accesses_ GUARDED_BY(access_list_mu_);
  // Bumped (under access_list_mu_) each time an access leaves accesses_.
  WaitWord access_list_gen_;
  IntervalTree areas_ GUARDED_BY(iova_rwsem_);
  IntervalTree reserved_ GUARDED_BY(iova_rwsem_);
  IntervalTree allowed_ GUARDED_BY(iova_rwsem_);
  std::vector<std::unique_ptr<Reserved>> reserved_nodes_ GUARDED_BY(iova_rwsem_);
  std::vector<std::unique_ptr<Allowed>> allowed_nodes_ GUARDED_BY(iova_rwsem_);
  std::vector<std::uint64_t> required_alignments_ GUARDED_BY(iova_rwsem_);
  std::uint64_t iova_alignment_ GUARDED_BY(iova_rwsem_) = 1;
  // Written under both rwsems, read under either: an atomic so that the analysis need not know that.
  std::atomic<bool> large_pages_{true};
};

}  // namespace uiommufd
