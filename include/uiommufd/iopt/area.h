// One mapped IOVA range [start, last] and the slice of a Pages object behind it.
#pragma once

#include <cstdint>

#include "uiommufd/base/interval.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/ref_ptr.h"
#include "uiommufd/base/slab.h"
#include "uiommufd/iova/interval_tree.h"
#include "uiommufd/lockdep/shared_mutex.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd {

// From a slab: a lookup reads one area per tree level, and on a large IOAS those reads are cheaper on
// huge pages (see slab.h).
class Area : public SlabAllocated<Area> {
 public:
  // An area starts half-built: it reserves its IOVA range in the tree while its pages are filled into the
  // domains, and `pages` is published only when that is done. Unmap and copy refuse half-built areas.
  // `iova_lock` is the IOVA lock of the I/O page table the area belongs to (IoPagetable's iova_rwsem).
  Area(const lockdep::SharedMutex& iova_lock, RefPtr<Pages> pages, std::uint64_t start_byte, int prot)
      : iova_lock_(iova_lock), pending_pages_(std::move(pages)), start_byte_(start_byte), prot_(prot) {}

  IntervalTreeNode node;

  std::uint64_t iova_start() const { return node.range.start; }
  std::uint64_t iova_last() const { return node.range.last; }
  std::uint64_t length() const { return node.range.last - node.range.start + 1; }

  // The backing, once published (null while half-built).
  const RefPtr<Pages>& pages() const { return pages_; }
  // Unmap's first step (under the IOVA lock, written): takes the backing away, so the area reads as
  // half-built again while its domains are unfilled and its pages unpinned without that lock.
  RefPtr<Pages> detach_pages() { return std::move(pages_); }
  // The backing whatever the state; used while building it and while tearing it down.
  Pages& backing() const { return pages_ ? *pages_ : *pending_pages_; }
  // Diagnostics (dump/, docs/dump.md): the backing of a half-built area that is being mapped, null once
  // published and for an area whose pages unmap has taken away. Written under the IOVA lock held for
  // writing (construction, publish()), so a reader holding it shared sees a settled value.
  Pages* pending_pages() const { return pending_pages_.get(); }
  void publish() {
    pages_ = std::move(pending_pages_);
    host_page0_ = reinterpret_cast<std::uintptr_t>(pages_->host_page(first_index()));
  }
  // Where this process sees the area's first page (once published). Kept here so that a pin can start
  // fetching the page it will touch before it has read the Pages object, a cache miss of its own.
  std::uintptr_t host_page0() const { return host_page0_; }

  // Byte offset of the area's first byte from the start of page 0 of its Pages window.
  std::uint64_t start_byte() const { return start_byte_; }
  std::uint64_t first_index() const { return start_byte_ / kPageSize; }
  std::uint64_t last_index() const { return (start_byte_ + length() - 1) / kPageSize; }
  // The IOVA range of the area's backing pages [first, last] (page indices, inside
  // [first_index(), last_index()]), clipped to the area where it starts or ends inside a page.
  Interval iova_of_pages(std::uint64_t first, std::uint64_t last) const {
    const std::uint64_t start =
        first == first_index() ? iova_start() : iova_start() + ((first << kPageShift) - start_byte_);
    const std::uint64_t end =
        last == last_index() ? iova_last() : iova_start() + (((last + 1) << kPageShift) - start_byte_) - 1;
    return {start, end};
  }
  // Offset of the first byte inside its page: what must agree with iova_alignment.
  std::uint64_t page_offset() const { return start_byte_ % kPageSize; }
  // The backing address of IOVA `iova` in this area.
  PhysAddr phys(std::uint64_t iova) const {
    return backing().page_phys(0) + start_byte_ + (iova - iova_start());
  }
  int prot() const { return prot_; }

  // The IOVA lock, by the name the annotations use: a holder of its table's iova_rwsem asserts it
  // through this (the analysis cannot see that the two are one lock).
  const lockdep::SharedMutex& iova_lock() const RETURN_CAPABILITY(iova_lock_) { return iova_lock_; }

  // Set by unmap (iova_rwsem held for writing) before it notifies accesses; never cleared, as in the
  // kernel. New pins and rw on the area fail; unpins still work.
  bool prevent_access GUARDED_BY(iova_lock_) = false;

  // Pin records of accesses on this area, kept by IoPagetable's access pin and unpin.
  std::uint32_t num_accesses() const REQUIRES_SHARED(iova_lock_) { return num_accesses_; }
  // Changed under the IOVA lock held *shared* and the backing's pages mutex: the mutex orders the
  // changers among themselves, and the shared IOVA lock keeps out unmap, which reads the count holding
  // the IOVA lock exclusively. The analysis cannot express "shared lock plus another mutex" for a write,
  // so it is off here; both locks are checked at run time instead.
  void change_num_accesses(int delta) REQUIRES_SHARED(iova_lock_) NO_THREAD_SAFETY_ANALYSIS {
    iova_lock_.assert_shared_held();
    backing().mutex().assert_held();
    num_accesses_ += delta;
  }
  // Of those, the pins that lock the area: an internal access's (a hardware queue's memory), which no unmap
  // callback can give back, so unmap of the area is EBUSY while one is held (the kernel's num_locks).
  // Changed together with num_accesses, under the same locks.
  std::uint32_t num_locks() const REQUIRES_SHARED(iova_lock_) { return num_locks_; }
  void change_num_locks(int delta) REQUIRES_SHARED(iova_lock_) NO_THREAD_SAFETY_ANALYSIS {
    iova_lock_.assert_shared_held();
    backing().mutex().assert_held();
    num_locks_ += delta;
  }

 private:
  const lockdep::SharedMutex& iova_lock_;
  std::uint32_t num_accesses_ GUARDED_BY(iova_lock_) = 0;
  std::uint32_t num_locks_ GUARDED_BY(iova_lock_) = 0;
  RefPtr<Pages> pages_;
  RefPtr<Pages> pending_pages_;
  std::uint64_t start_byte_;
  std::uintptr_t host_page0_ = 0;
  int prot_;
};

}  // namespace uiommufd
