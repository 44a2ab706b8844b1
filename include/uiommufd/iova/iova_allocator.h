// IOVA selection for IOMMU_IOAS_MAP / MAP_FILE / COPY: checking a caller-chosen IOVA (FIXED_IOVA) and
// choosing one automatically, with the kernel's exact rules (docs/semantics.md#iova-selection; io_pagetable.c
// iopt_check_iova, iopt_alloc_iova, __alloc_iova_check_range), plus the IOMMU_IOAS_IOVA_RANGES hole list
// (docs/semantics.md#iova-ranges).
//
// All ranges are INCLUSIVE [start, last]; lengths are in bytes. Free functions over iopt's three trees:
//   areas     mapped areas, including half-built ones (they already own their IOVA)
//   reserved  reserved ranges, possibly overlapping (different owners)
//   allowed   the user's ALLOW_IOVAS list (non-overlapping; empty means "no restriction")
//
// Thread safety: none. The caller holds iopt's iova_rwsem across the check/allocation AND the insert of
// the area that uses the result (write side), or the result may be stale. Nothing here allocates except
// reserved_holes().
#pragma once

#include <cstdint>
#include <vector>

#include "uiommufd/base/interval.h"
#include "uiommufd/base/result.h"
#include "uiommufd/base/status.h"
#include "uiommufd/iova/interval_tree.h"

namespace uiommufd {

struct IovaTrees {
  const IntervalTree& areas;
  const IntervalTree& reserved;
  const IntervalTree& allowed;
};

// FIXED_IOVA: whether [iova, iova + length - 1] may be used. Checks, in this order (the first failing one
// decides the errno):
//   EINVAL     iova is not a multiple of iova_alignment (a power of two, iopt->iova_alignment);
//   EOVERFLOW  iova + length - 1 exceeds U64_MAX;
//   EINVAL     the range intersects a reserved range;
//   EEXIST     the range intersects an area.
// The allowed list is NOT consulted (as in the kernel). Precondition: length > 0 (the caller has already
// returned EINVAL for 0). O(log n).
Status check_fixed_iova(const IovaTrees& t, std::uint64_t iova, std::uint64_t length,
                        std::uint64_t iova_alignment);

// Automatic IOVA for `length` bytes whose first byte comes from `source_addr` (user VA + start byte, or
// file offset; 0 means "no address", alignment from the length only). Newest kernel semantics:
//   alignment = roundup_pow_of_two(length), or min(that, lowest set bit of source_addr) when
//               source_addr != 0; then capped at kHugePageSize (v6.17 "Prevent ALIGN() overflow", THP
//               configured);
//   the IOVA keeps the source's sub-page offset: candidate = align_up(hole_start, alignment) |
//               (source_addr % kPageSize);
//   search:     the allowed spans (merged, clipped to [kPageSize, kUlongMax - kPageSize]; an empty
//               allowed tree means that whole window), lowest first; each span is itself first checked
//               for a fit and the search inside it starts at its aligned candidate; inside, the holes
//               common to the reserved and area trees, lowest first;
//   fit:        candidate computed without wrapping, candidate < hole_last, and
//               hole_last - candidate >= length - 1 (note: strict `<`, so a candidate on hole_last never
//               fits, even for length 1 — the kernel's test);
//   first fit, lowest address; never returns 0 (the window starts at kPageSize).
// Errors:
//   EOVERFLOW  length == 0 or length >= kUlongMax / 2;
//   EINVAL     the alignment above is smaller than iova_alignment (a power of two);
//   ENOSPC     no hole fits.
// Cost: one walk of the area tree per allowed span, O(log n) for n areas to the first area gap that can
// hold `length` bytes from its first aligned address (the walk skips the others a subtree at a time,
// through IntervalTree's per-alignment gap augmentation), plus O(log n + log r) for each gap that passes
// that test but is spoilt by the r reserved ranges (the gap across the MSI window, typically). With no
// sub-page offset in source_addr the test is exact, so the first unspoilt gap holds the answer. With a
// sub-page offset (alignment < 4 KiB) the skip test uses raw hole lengths, and each hole that is long
// enough but fails after the `| offset` costs another O(log n).
Result<std::uint64_t> allocate_iova(const IovaTrees& t, std::uint64_t source_addr, std::uint64_t length,
                                    std::uint64_t iova_alignment);

// The holes of the reserved tree over [0, U64_MAX], ascending: the IOMMU_IOAS_IOVA_RANGES output. Areas
// and the allowed list do not affect it. An empty reserved tree gives exactly {[0, U64_MAX]}.
// Allocates the vector (std::bad_alloc on exhaustion): callers that must not allocate under the
// iova_rwsem can walk for_each_hole(Interval::full(), reserved, nullptr, f) instead.
std::vector<Interval> reserved_holes(const IntervalTree& reserved);

}  // namespace uiommufd
