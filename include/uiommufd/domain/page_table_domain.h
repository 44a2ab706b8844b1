// PageTableDomain: a software IOMMU domain backed by a real multi-level radix page table with large
// entries, the table behind the mock and software domains.
//
// Geometry. Every table holds 512 eight-byte entries (4 KiB), so each level resolves 9 IOVA bits above
// the granule; there are as many levels as the aperture's highest address needs. Level 0 (the leaf level)
// maps one granule per entry. An entry at level L >= 1 either points to a table of level L - 1 or, when
// large pages are enabled for that level, is a *large entry* mapping granule << (9 * L) bytes: 2 MiB and
// 1 GiB for a 4 KiB granule, 1 MiB and 512 MiB for 2 KiB. map() uses a large entry whenever iova, paddr
// and the remaining length are aligned to it (and, with large_within_block, the memory is contiguous that
// far), so a 1 GiB THP-backed mapping costs one entry.
//
// Entry format (8 bytes): the granule-aligned PhysAddr, or for a table pointer the table's 4 KiB aligned
// address, with flag bits in the low 11 bits (free because the granule is at least 2 KiB): present, large,
// the three IommuProt bits, the START / LAST markers, dirty, and the contiguous-group marks. A table pointer
// keeps the number of live entries of the table it points to in its low bits, so an emptied table is found
// and freed without a scan and without any side structure; table_bytes() returns to one table (the root) once
// everything is unmapped. Freed empty tables go to a bounded per-thread cache (src/domain/table_cache.h)
// rather than straight back to malloc, so map/unmap churn does not page-fault; table_bytes() counts only the
// domain's live tables.
//
// START / LAST. As in the kernel's selftest mock, the first granule (or large entry) of every map() call
// carries START and its last one LAST. unmap() requires START on the entry holding its first byte and LAST
// on the entry holding its last byte; this proves the engine unmaps exactly at its map boundaries.
//
// Cost. map, unmap and read_run walk from the root once per table and then move a cursor through that
// table's entries, so the per-granule cost is close to writing (or reading) one 8-byte entry.
//
// Thread safety: see domain.h. Every public entry point takes the domain's own mutex,
// "domain.page_table", innermost of the engine's locks: nothing else is locked under it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "uiommufd/base/interval.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/result.h"
#include "uiommufd/base/status.h"
#include "uiommufd/domain/domain.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"

namespace uiommufd {

// Outside the class so that it can be a default argument of the factory.
struct PageTableDomainOptions {
  // log2 of the granule: 12 for 4 KiB, 11 for the mock's 2 KiB. Must be 11..30.
  unsigned granule_shift = 12;
  // Translatable IOVAs, inclusive. Its start and last + 1 must be granule aligned (last may be U64_MAX).
  Interval aperture = {0, (std::uint64_t{1} << 48) - 1};
  // Whether entries at upper levels may be large entries (and pgsize_bitmap says so).
  bool large_pages = true;
  // The highest level that may hold a large entry when large_pages is set: 2 gives 2 MiB + 1 GiB with a
  // 4 KiB granule; 1 gives only granule << 9 (the mock's HUGE_IOVA page). Capped at the top level.
  unsigned max_large_level = 2;
  // Whether a boundary violation in unmap() also fails UIOMMUFD_DCHECK (aborting debug builds). Tests that
  // exercise the violation path turn it off; the counter and the warning are kept either way.
  bool dcheck_boundaries = true;
  // Whether the domain can track dirty pages (Domain::dirty_capable()); each memory entry then has a dirty
  // bit, set by a write through dma_write() while tracking is on, or by set_dirty().
  bool dirty_capable = false;
  // Contiguous entries, as the kernel's mock table (generic_pt's AMDv1 format) forms them: a piece of a map
  // call of 2^k items of one level (1 <= k <= 8), aligned to its size in IOVA and address and inside one
  // physically contiguous block (map()'s phys_block), is one entry there. Bit n set = such entries of 2^n
  // bytes may be formed; 0 = none. The table still holds 2^k entries but marks them as one group (the first
  // as its head), which dirty tracking reports as the kernel does (read_and_clear_dirty()) and unmap() does
  // not split.
  std::uint64_t contiguous_sizes = 0;
  // Whether large entries too need a physically contiguous block of their size (map()'s phys_block), as
  // in a kernel table; otherwise they form wherever IOVA and address are aligned.
  bool large_within_block = false;
};

class PageTableDomain : public Domain {
 public:
  using Options = PageTableDomainOptions;

  // Errors: EINVAL for options outside the ranges above; ENOMEM if the root table cannot be allocated
  // (fault site "domain.alloc_table").
  static Result<std::unique_ptr<PageTableDomain>> create(const Options& options = {});

  ~PageTableDomain() override;
  PageTableDomain(const PageTableDomain&) = delete;
  PageTableDomain& operator=(const PageTableDomain&) = delete;

  // Domain. See domain.h for the contracts; what is specific to this table is stated here.
  std::uint64_t pgsize_bitmap() const override { return pgsize_bitmap_; }
  Interval aperture() const override { return aperture_; }
  using Domain::map;
  Status map(std::uint64_t iova, PhysAddr paddr, std::uint64_t length, int prot,
             std::uint64_t phys_block) override;
  bool wants_phys_block() const override { return large_within_block_ || contiguous_sizes_ > 2 * granule_; }
  // Boundary violations and what is still unmapped:
  //   - misaligned, zero length, wrapping or outside the aperture: nothing is unmapped;
  //   - the first or last byte inside a large entry or a contiguous group that the range does not cover
  //     whole: nothing is unmapped (splitting a large entry is impossible, as with real IOMMU drivers);
  //   - first entry without START, last entry without LAST, or unmapped granules inside: every mapped
  //     entry in the range is unmapped (the kernel mock WARNs and still erases).
  // Each violating call counts once and logs a warning (the first time per domain only).
  std::uint64_t unmap(std::uint64_t iova, std::uint64_t length) override;
  std::optional<PhysAddr> iova_to_phys(std::uint64_t iova) const override;
  Run read_run(std::uint64_t iova, std::uint64_t max_length) const override;
  std::uint64_t boundary_violations() const override {
    lockdep::MutexGuard g(mu_);
    return boundary_violations_;
  }
  std::uint64_t table_bytes() const override {
    lockdep::MutexGuard g(mu_);
    return tables_ * kTableBytes;
  }
  std::uint64_t mapped_bytes() const override {
    lockdep::MutexGuard g(mu_);
    return mapped_bytes_;
  }

  // Dirty tracking (domain.h). A leaf entry is dirty or clean as a whole, so a dirty 2 MiB entry reports all
  // of its 2 MiB; reading and clearing is one step per entry under the table's lock, so a write that
  // sets the bit either lands before the read (and is reported) or after the clear (and stays for the
  // next read): none is lost.
  bool dirty_capable() const override { return dirty_capable_; }
  Status set_dirty_tracking(bool enable) override EXCLUDES(mu_);
  bool dirty_tracking() const EXCLUDES(mu_);
  Status read_and_clear_dirty(std::uint64_t iova, std::uint64_t length, bool no_clear, DirtySink record,
                              void* ctx) override EXCLUDES(mu_);
  // Marks the entry holding `iova` dirty, whether or not tracking is on (the selftest's IOMMU_TEST_OP_DIRTY,
  // the kernel's set_dirty op). ENOENT when `iova` is unmapped or outside the aperture; EOPNOTSUPP on a
  // domain that cannot track.
  Status set_dirty(std::uint64_t iova) EXCLUDES(mu_);

  // DMA through the domain, as a device behind this IOMMU does it: [iova, iova + length) is translated
  // entry by entry. EFAULT when some byte is unmapped or outside the aperture, EPERM when an entry lacks
  // the permission (kIommuWrite for a write, kIommuRead for a read); `segment` is then never called.
  // Otherwise `segment(ctx, paddr, offset, len)` is called for each piece in order (`offset` into the
  // request), under the table's lock so that no unmap can pull the memory away mid-copy, and its first
  // error is returned. A write marks every entry it touches dirty while tracking is on. length 0 succeeds.
  // The copy itself is the caller's (objects/dma.h does it with fault-safe user copies).
  using DmaSegment = Status (*)(void* ctx, PhysAddr paddr, std::uint64_t offset, std::uint64_t len);
  Status dma(std::uint64_t iova, std::uint64_t length, bool write, DmaSegment segment, void* ctx)
      EXCLUDES(mu_);

  // Introspection for tests and figures.
  unsigned levels() const { return levels_; }
  std::uint64_t tables() const {
    lockdep::MutexGuard g(mu_);
    return tables_;
  }
  // Live entries at levels >= 1 that map memory directly.
  std::uint64_t large_entries() const {
    lockdep::MutexGuard g(mu_);
    return large_entries_;
  }
  // The IommuProt bits of the entry holding `iova`, or nullopt if unmapped.
  std::optional<int> prot_at(std::uint64_t iova) const;

  static constexpr unsigned kIndexBits = 9;
  static constexpr unsigned kEntriesPerTable = 1u << kIndexBits;
  static constexpr std::uint64_t kTableBytes = kEntriesPerTable * sizeof(std::uint64_t);
  // A 64-bit space with an 11-bit granule needs 6.
  static constexpr unsigned kMaxLevels = 8;

 protected:
  // For subclass factories: validates `options` (EINVAL) and allocates a zeroed root table (ENOMEM, fault
  // site "domain.alloc_table"), which the constructor then owns; free_root() undoes it if construction
  // cannot proceed.
  static Result<std::uint64_t*> prepare_root(const Options& options);
  static void free_root(std::uint64_t* root);
  // `root` comes from prepare_root(options).
  PageTableDomain(const Options& options, std::uint64_t* root);

  // map() is check_map_args() then map_checked(); split so that a subclass can put its own fault site
  // between argument checking and the first table change, as the kernel's mock map_pages sits behind
  // iommu_map()'s checks.
  Status check_map_args(std::uint64_t iova, PhysAddr paddr, std::uint64_t length, int prot,
                        std::uint64_t phys_block) const;
  Status map_checked(std::uint64_t iova, PhysAddr paddr, std::uint64_t length, int prot,
                     std::uint64_t phys_block);

 private:
  // Where an entry that maps memory lives: its table, level and index.
  struct Leaf {
    std::uint64_t* table;
    unsigned level;
    unsigned index;
    std::uint64_t entry() const { return table[index]; }
  };
  // The table at `level` that holds `iova`, with the slot that counts its live entries.
  struct TableRef {
    std::uint64_t* table;
    std::uint64_t* count_slot;
  };

  static Status validate(const Options& options);
  static Result<std::uint64_t*> alloc_table();

  unsigned shift(unsigned level) const { return granule_shift_ + kIndexBits * level; }
  unsigned index(std::uint64_t iova, unsigned level) const {
    return static_cast<unsigned>(iova >> shift(level)) & (kEntriesPerTable - 1);
  }
  // The largest enabled level whose entry size the alignment of va and pa, `remaining` and (with
  // large_within_block) `phys_block` allow.
  unsigned pick_level(std::uint64_t va, PhysAddr pa, std::uint64_t remaining, std::uint64_t phys_block) const;
  // Marks the contiguous groups among the n entries of `level` just written at `slot` for va / pa.
  void form_groups(std::uint64_t* slot, std::uint64_t n, unsigned level, std::uint64_t va, PhysAddr pa,
                   std::uint64_t phys_block) const REQUIRES(mu_);
  // The first and last index of the group holding table[i] (a group member).
  static unsigned group_first(const std::uint64_t* table, unsigned i);
  static unsigned group_last(const std::uint64_t* table, unsigned i);
  // Descends to the table of `level` holding `iova`, allocating missing tables (ENOMEM) and failing with
  // EEXIST on a large entry above `level`.
  Result<TableRef> walk_alloc(std::uint64_t iova, unsigned level) REQUIRES(mu_);
  // The entry that maps `iova`, or nullopt.
  std::optional<Leaf> find(std::uint64_t iova) const REQUIRES(mu_);
  // Clears every entry that maps memory in [start, last] below `table` (of `level`), freeing tables that
  // become empty. Large entries must lie wholly inside. Sets *holes when it meets an unmapped granule.
  // Returns the bytes cleared.
  std::uint64_t clear(std::uint64_t* table, unsigned level, std::uint64_t* count_slot, std::uint64_t start,
                      std::uint64_t last, bool* holes) REQUIRES(mu_);
  // Frees the empty tables on the path to `iova`, bottom up (after a failed map).
  void prune(std::uint64_t iova) REQUIRES(mu_);
  void free_tree(std::uint64_t* table, unsigned level) REQUIRES(mu_);
  void free_table(std::uint64_t* table) REQUIRES(mu_);
  void note_violation(const char* what, std::uint64_t iova, std::uint64_t length) REQUIRES(mu_);
  // The leaves covering [iova, iova + length) in order, or EFAULT at the first hole, EPERM at the first
  // entry without `need` (IommuProt bits); calls visit(leaf, entry_start, entry_size) for each.
  template <typename Visit>
  Status for_each_leaf(std::uint64_t iova, std::uint64_t length, int need, Visit&& visit) const REQUIRES(mu_);
  // read_and_clear_dirty() below `table` (of `level`) for [start, last]; `from` is the request's start.
  void collect_dirty(std::uint64_t* table, unsigned level, std::uint64_t start, std::uint64_t last,
                     std::uint64_t from, bool no_clear, DirtySink record, void* ctx) REQUIRES(mu_);

  const unsigned granule_shift_;
  const std::uint64_t granule_;
  const Interval aperture_;
  const unsigned levels_;
  const unsigned max_large_level_;  // 0 when large pages are off
  const std::uint64_t pgsize_bitmap_;
  const bool dcheck_boundaries_;
  const bool dirty_capable_;
  const std::uint64_t contiguous_sizes_;
  const bool large_within_block_;

  // Serialises the table: the engine maps disjoint areas of one domain from several threads at once (each
  // under its own pages lock), as IOMMU drivers allow. Innermost of all engine locks; every public entry
  // point takes it, and the state below is touched only under it.
  mutable lockdep::Mutex mu_{lock_order::kDomainPageTable};

  std::uint64_t* const root_ PT_GUARDED_BY(mu_);
  std::uint64_t root_count_ GUARDED_BY(mu_) = 0;  // the root's live-entry count, in table-pointer encoding
  std::uint64_t tables_ GUARDED_BY(mu_) = 1;
  std::uint64_t large_entries_ GUARDED_BY(mu_) = 0;
  std::uint64_t mapped_bytes_ GUARDED_BY(mu_) = 0;
  std::uint64_t boundary_violations_ GUARDED_BY(mu_) = 0;
  bool violation_logged_ GUARDED_BY(mu_) = false;
  bool dirty_tracking_ GUARDED_BY(mu_) = false;
};

}  // namespace uiommufd
