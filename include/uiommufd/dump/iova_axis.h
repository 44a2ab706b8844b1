// IovaAxis: the horizontal scale of an IOAS picture. The IOVA space is 2^64 bytes and what is in it is
// sparse and of every size (a 4 KiB area beside a reserved range of 2^63 bytes), so a linear scale would
// show nothing; the axis is piecewise instead:
//
//   - Every start and every end of a drawn range is a boundary, and the space [0, 2^64 − 1] is cut into
//     segments at them. A segment covered by some drawn range is *occupied*, one covered by none a *gap*.
//   - An occupied segment is given a width that grows with the logarithm of its length:
//     kMinWidth + kPerDoubling · max(0, log2(length) − 12), so a page is kMinWidth wide and each doubling
//     adds kPerDoubling. A gap, whatever its length, gets kGapWidth, and the picture marks it as cut.
//   - The widths are then scaled together to fill the plot width. Within one segment the scale is linear.
//
// So every range is visible and ordered, sizes compare within a segment but only roughly across segments,
// and the exact addresses are in the tick labels (hex) at segment boundaries and in each shape's tooltip.
#pragma once

#include <cstdint>
#include <vector>

#include "uiommufd/base/interval.h"

namespace uiommufd::dump {

class IovaAxis {
 public:
  static constexpr double kMinWidth = 6;
  static constexpr double kPerDoubling = 3;
  static constexpr double kGapWidth = 18;

  struct Segment {
    Interval iova;
    bool gap = false;
    double x0 = 0;  // left edge
    double x1 = 0;  // right edge (the next segment's x0)
  };

  // The axis for `ranges` (any order, may overlap) over [x0, x0 + width]. With no range at all the whole
  // space is one gap.
  IovaAxis(const std::vector<Interval>& ranges, double x0, double width);

  // The x of an address's left edge, and of the right edge of its byte (x_after(U64_MAX) is the plot's end).
  double x(std::uint64_t addr) const;
  double x_after(std::uint64_t addr) const;
  // Left and right edges of a range.
  double left(Interval r) const { return x(r.start); }
  double right(Interval r) const { return x_after(r.last); }

  const std::vector<Segment>& segments() const { return segments_; }

 private:
  // The segment holding `addr`.
  const Segment& find(std::uint64_t addr) const;

  std::vector<Segment> segments_;
};

}  // namespace uiommufd::dump
