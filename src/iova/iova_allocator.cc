#include "uiommufd/iova/iova_allocator.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <optional>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/checked.h"
#include "uiommufd/base/page.h"
#include "uiommufd/iova/span_iterator.h"

namespace uiommufd {
namespace {

// The request, reduced to what the fit test needs.
struct Request {
  std::uint64_t length;
  std::uint64_t alignment;    // power of two
  std::uint64_t page_offset;  // source_addr % kPageSize, a multiple of alignment (or 0)
};

// The kernel's __alloc_iova_check_range: the candidate for a span [start, last], if the request fits.
// The align-up is checked (v6.17): a candidate that would wrap past U64_MAX does not fit. The `|
// page_offset` cannot push the candidate down: page_offset's set bits are all >= alignment (it is a
// multiple of it), so OR-ing them only adds to an aligned value.
std::optional<std::uint64_t> fit(const Request& r, std::uint64_t start, std::uint64_t last) {
  std::uint64_t aligned = 0;
  if (!checked_add(start, r.alignment - 1, &aligned)) return std::nullopt;
  aligned = align_down(aligned, r.alignment) | r.page_offset;
  if (aligned >= last || last - aligned < r.length - 1) return std::nullopt;
  return aligned;
}

}  // namespace

Status check_fixed_iova(const IovaTrees& t, std::uint64_t iova, std::uint64_t length,
                        std::uint64_t iova_alignment) {
  UIOMMUFD_DCHECK(length > 0);
  if (!is_aligned(iova, iova_alignment)) return Status::error(EINVAL);
  std::uint64_t last = 0;
  if (!checked_add(iova, length - 1, &last)) return Status::error(EOVERFLOW);
  const Interval range{iova, last};
  if (t.reserved.first_overlap(range) != nullptr) return Status::error(EINVAL);
  if (t.areas.first_overlap_disjoint(range) != nullptr) return Status::error(EEXIST);
  return Status();
}

Result<std::uint64_t> allocate_iova(const IovaTrees& t, std::uint64_t source_addr, std::uint64_t length,
                                    std::uint64_t iova_alignment) {
  // Also what keeps bit_ceil below from overflowing.
  if (length == 0 || length >= kUlongMax / 2) return Status::error(EOVERFLOW);

  // Keep the alignment present in the source address so that a THP-backed source can get a huge IOPTE.
  std::uint64_t alignment = std::bit_ceil(length);
  if (source_addr != 0) alignment = std::min(alignment, source_addr & (~source_addr + 1));
  // v6.17: never ask for more than a huge page. Larger alignments buy nothing (no larger IOPTE is used)
  // and, unchecked, made ALIGN() wrap near the top of the address space.
  alignment = std::min(alignment, kHugePageSize);
  if (alignment < iova_alignment) return Status::error(EINVAL);

  const Request req{length, alignment, page_offset(source_addr)};
  // A hole fits only if max(length, 2) addresses are free from its first alignment-aligned address
  // on (the candidate must be < hole_last with length - 1 bytes after it). The gap walks skip holes that
  // fail this a subtree at a time; with no sub-page offset it is also sufficient, so the first hole
  // they report is the answer.
  const std::uint64_t min_hole = std::max<std::uint64_t>(length, 2);
  const Interval window{kPageSize, kUlongMax - kPageSize};

  std::optional<std::uint64_t> found;
  // Innermost: the reserved tree's holes inside one gap of the area tree. Together these are exactly the
  // holes common to both trees (a common hole lies inside one area gap and is a maximal reserved-free run
  // there), in ascending order, as the kernel's double-span walk yields them. The area tree goes outside
  // because it is the large one: one walk of it per allowed span, never one per reserved hole, which on a
  // large IOAS would descend from the root again past every reserved range (the MSI window) and first
  // search the whole, usually full, space below it.
  auto common_hole = [&](Interval hole) {
    found = fit(req, hole.start, hole.last);
    return !found.has_value();
  };
  auto area_gap = [&](Interval gap) {
    return t.reserved.for_each_gap(gap, min_hole, req.alignment, common_hole);
  };
  auto allowed_span = [&](Interval span) {
    // The kernel checks the allowed span itself first and then searches from its aligned candidate.
    const std::optional<std::uint64_t> start = fit(req, span.start, span.last);
    if (!start) return true;
    return t.areas.for_each_gap(Interval{*start, span.last}, min_hole, req.alignment, area_gap);
  };

  if (t.allowed.empty()) {
    allowed_span(window);
  } else {
    for_each_used_span(window, t.allowed, nullptr, allowed_span);
  }
  // FIXME: with a sub-page source offset (alignment < 4 KiB), the augmentation only knows raw hole
  // lengths, and the `| page_offset` can push a candidate past a hole the walk reported; such holes
  // are each visited (O(log n) apiece), so a tree full of barely-too-short holes degrades towards a
  // scan of them. Page-aligned sources and source 0 do not have this problem.
  if (!found) return Status::error(ENOSPC);
  return *found;
}

std::vector<Interval> reserved_holes(const IntervalTree& reserved) {
  std::vector<Interval> holes;
  for_each_hole(Interval::full(), reserved, nullptr, [&](Interval hole) {
    holes.push_back(hole);
    return true;
  });
  return holes;
}

}  // namespace uiommufd
