// Domain: the interface of an I/O page table, the user-space counterpart of the kernel's
// `struct iommu_domain` with its `iommu_domain_ops` (map_pages, unmap_pages, iova_to_phys) and geometry
// (pgsize_bitmap, aperture).
//
// A domain translates IOVAs to PhysAddr values (page identities, see base/page.h). All ranges passed in
// are half-open [iova, iova + length) with the length in bytes; the aperture is an inclusive Interval.
//
// Thread safety: every method may be called from any thread. The engine maps disjoint areas of one domain
// from several threads at once, each under its own Pages mutex (a map's fill holds the IoPagetable locks
// only for reading), so an implementation serialises its own table; it takes no other lock and calls
// nothing that locks, so it may be called with any engine lock held (docs/locking.md#order).
#pragma once

#include <cerrno>
#include <cstdint>
#include <optional>

#include "uiommufd/base/interval.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/status.h"

namespace uiommufd {

// Bits of the `prot` argument of Domain::map, the kernel's IOMMU_READ / IOMMU_WRITE / IOMMU_CACHE.
enum IommuProt : int { kIommuRead = 1, kIommuWrite = 2, kIommuCache = 4 };

class Domain {
 public:
  virtual ~Domain() = default;

  // Bit n set = pages of 2^n bytes supported; the lowest set bit is the granule. Never 0.
  virtual std::uint64_t pgsize_bitmap() const = 0;
  // The lowest set bit of pgsize_bitmap(): the unit of every address and length in map/unmap.
  std::uint64_t granule() const;

  // The IOVAs the domain can translate, inclusive.
  virtual Interval aperture() const = 0;

  // Maps [iova, iova + length) to [paddr, paddr + length) with `prot` (IommuProt bits).
  // Errors:
  //   EINVAL  iova, paddr or length not a multiple of the granule, length 0, iova + length or
  //           paddr + length beyond 2^64, the range not inside the aperture, or unknown prot bits;
  //   EEXIST  some part of the range is already mapped;
  //   ENOMEM  a table level could not be allocated (fault site "domain.alloc_table");
  //   implementations may add their own (MockDomain: ENOENT from fault site "mock.domain_map").
  // Uses the largest supported page size that the alignment of iova and paddr and the remaining length
  // allow, at every step. On failure nothing stays mapped from this call and the table is as before.
  // [paddr, paddr + length) is one physically contiguous piece, as for the kernel's iommu_map().
  Status map(std::uint64_t iova, PhysAddr paddr, std::uint64_t length, int prot) {
    return map(iova, paddr, length, prot, 0);
  }
  // The same where the memory is physically contiguous only within each naturally aligned block of
  // `phys_block` bytes of PhysAddr (a power of two of at least the granule; 0 means throughout): PhysAddr
  // is a host address (base/page.h), so a run of it is a run of pages that are contiguous only where the
  // host backs them with one large page. A domain that models a table whose entries depend on physical
  // contiguity (wants_phys_block()) forms no entry across such a block; others may ignore it.
  // EINVAL also when phys_block is not 0 or a power of two of at least the granule.
  virtual Status map(std::uint64_t iova, PhysAddr paddr, std::uint64_t length, int prot,
                     std::uint64_t phys_block) = 0;
  // Whether map()'s phys_block changes what this domain builds. The engine finds the backing's blocks (a
  // system call, Mm::physical_block()) only for such domains and maps into the others with 0.
  virtual bool wants_phys_block() const { return false; }

  // Unmaps exactly [iova, iova + length); never fails, because the engine's teardown paths cannot.
  // The range must be made of whole entries as they were mapped: the engine unmaps with the boundaries it
  // mapped with (docs/semantics.md#large-pages). A request that would split a large entry, does not start at
  // the start of a map() call or end at the end of one, covers unmapped granules, or is misaligned / outside
  // the aperture is a caller bug: it is counted in boundary_violations() and fails UIOMMUFD_DCHECK
  // (implementations may let tests turn the DCHECK off). What such a request still unmaps is implementation
  // defined and documented by the implementation. Returns the bytes actually unmapped.
  virtual std::uint64_t unmap(std::uint64_t iova, std::uint64_t length) = 0;

  // Translation of one IOVA (any alignment): the PhysAddr of that byte, or nullopt if it is unmapped or
  // outside the aperture.
  virtual std::optional<PhysAddr> iova_to_phys(std::uint64_t iova) const = 0;

  // The physically contiguous mapped run starting at `iova`: {paddr of iova, length}, with
  // length <= max_length; length 0 (and paddr 0) if iova is unmapped, not granule aligned, or max_length
  // is 0. Contiguity is physical only: the run may cross table boundaries, page sizes and map() calls,
  // and stops at the first hole or discontinuity. The invariant check and the selftest's MD_CHECK_MAP read
  // mappings a run at a time with it.
  struct Run {
    PhysAddr paddr;
    std::uint64_t length;
  };
  virtual Run read_run(std::uint64_t iova, std::uint64_t max_length) const = 0;

  // Number of unmap() calls that broke the boundary contract above, since creation.
  virtual std::uint64_t boundary_violations() const = 0;
  // Bytes of memory the page table itself uses (for the engine's memory-per-page figure).
  virtual std::uint64_t table_bytes() const = 0;
  // Number of mapped bytes (sum of the sizes of live entries).
  virtual std::uint64_t mapped_bytes() const = 0;

  // ---- dirty tracking (the kernel's iommu_dirty_ops) ----
  // Whether the domain can track dirty pages at all (allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING).
  virtual bool dirty_capable() const { return false; }
  // Turns recording on or off. EOPNOTSUPP on a domain that cannot track.
  virtual Status set_dirty_tracking(bool enable) {
    (void)enable;
    return Status::error(EOPNOTSUPP);
  }
  // Calls record(iova, length) for every dirty leaf entry that overlaps [iova, iova + length), in IOVA
  // order, and makes it clean unless `no_clear`. The reported iova is the entry's start, or `iova` for an
  // entry that begins before it; the length is the entry's whole size (the kernel's record_dirty(): the
  // caller's bitmap clips it). Entries are read whether or not tracking is on. EOPNOTSUPP on a domain that
  // cannot track.
  using DirtySink = void (*)(void* ctx, std::uint64_t iova, std::uint64_t length);
  virtual Status read_and_clear_dirty(std::uint64_t iova, std::uint64_t length, bool no_clear,
                                      DirtySink record, void* ctx) {
    (void)iova, (void)length, (void)no_clear, (void)record, (void)ctx;
    return Status::error(EOPNOTSUPP);
  }
};

}  // namespace uiommufd
