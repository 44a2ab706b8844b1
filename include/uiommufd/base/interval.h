// Interval: a closed range of 64-bit addresses [start, last], both ends INCLUSIVE.
//
// Inclusive, not half-open, because the IOVA space is the whole of [0, 2^64 - 1]: a half-open
// [start, end) cannot express a range that ends at U64_MAX (end would be 2^64), and the kernel's
// interval trees (interval_tree_node.start/.last, iopt_area) use `last` for the same reason.
// The cost is that length() of the full space (2^64) does not fit in a uint64_t; see length().
//
// Invariant: start <= last. An Interval is never empty. Build one from a length with from_length(),
// which checks; aggregate initialisation {start, last} is for values already known to be ordered.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <optional>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/checked.h"
#include "uiommufd/base/result.h"

namespace uiommufd {

struct Interval {
  uint64_t start = 0;
  uint64_t last = 0;  // inclusive

  // [start, start + length - 1].
  // Errors: EINVAL if length is 0 (no empty intervals); EOVERFLOW if start + length - 1 exceeds
  // U64_MAX.
  static Result<Interval> from_length(uint64_t start, uint64_t length) {
    if (length == 0) return Status::error(EINVAL);
    uint64_t last = 0;
    if (!checked_add(start, length - 1, &last)) return Status::error(EOVERFLOW);
    return Interval{start, last};
  }

  // [0, U64_MAX].
  static constexpr Interval full() { return {0, std::numeric_limits<uint64_t>::max()}; }

  constexpr bool is_full() const { return start == 0 && last == std::numeric_limits<uint64_t>::max(); }

  // Number of addresses, last - start + 1. Precondition: !is_full() (2^64 does not fit; checked in
  // debug builds). Callers that may see the full space test is_full() first.
  constexpr uint64_t length() const {
    UIOMMUFD_DCHECK(!is_full());
    return last - start + 1;
  }

  constexpr bool contains(uint64_t addr) const { return start <= addr && addr <= last; }
  // Whether every address of `other` is in this interval.
  constexpr bool contains(Interval other) const { return start <= other.start && other.last <= last; }
  // Whether the two share at least one address.
  constexpr bool overlaps(Interval other) const { return start <= other.last && other.start <= last; }

  // The common addresses, or nullopt when they do not overlap.
  constexpr std::optional<Interval> intersect(Interval other) const {
    if (!overlaps(other)) return std::nullopt;
    return Interval{std::max(start, other.start), std::min(last, other.last)};
  }

  // Whether `next` begins exactly one past this interval's last address (no gap, no overlap). False
  // when this interval ends at U64_MAX, since nothing can follow it.
  constexpr bool adjacent_before(Interval next) const {
    return last != std::numeric_limits<uint64_t>::max() && last + 1 == next.start;
  }

  friend constexpr bool operator==(Interval, Interval) = default;
};

}  // namespace uiommufd
