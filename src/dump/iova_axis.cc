#include "uiommufd/dump/iova_axis.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace uiommufd::dump {

namespace {
constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

// Bytes in a segment as a floating value (2^64 for the whole space).
long double length_of(Interval r) { return static_cast<long double>(r.last - r.start) + 1.0L; }
}  // namespace

IovaAxis::IovaAxis(const std::vector<Interval>& ranges, double x0, double width) {
  // Boundaries: each range's start and the address after its last (none after U64_MAX), plus 0.
  std::vector<std::uint64_t> starts{0};
  for (const Interval& r : ranges) {
    starts.push_back(r.start);
    if (r.last != kMax) starts.push_back(r.last + 1);
  }
  std::sort(starts.begin(), starts.end());
  starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
  for (std::size_t i = 0; i < starts.size(); ++i)
    segments_.push_back({{starts[i], i + 1 < starts.size() ? starts[i + 1] - 1 : kMax}, true});

  // Occupied segments: those inside some range. Ranges sorted by start, swept once with the segments.
  std::vector<Interval> sorted = ranges;
  std::sort(sorted.begin(), sorted.end(), [](Interval a, Interval b) { return a.start < b.start; });
  std::size_t next = 0;
  std::uint64_t covered_to = 0;  // last address covered by a range starting at or before the segment
  bool any = false;
  for (Segment& s : segments_) {
    for (; next < sorted.size() && sorted[next].start <= s.iova.start; ++next) {
      covered_to = any ? std::max(covered_to, sorted[next].last) : sorted[next].last;
      any = true;
    }
    // Boundaries include every range end, so a segment is either wholly covered or wholly not.
    s.gap = !(any && covered_to >= s.iova.start);
  }

  std::vector<double> weights;
  double total = 0;
  for (const Segment& s : segments_) {
    double w = kGapWidth;
    if (!s.gap) {
      const double doublings = static_cast<double>(std::log2(length_of(s.iova))) - 12;
      w = kMinWidth + kPerDoubling * std::max(0.0, doublings);
    }
    weights.push_back(w);
    total += w;
  }
  double x = x0;
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    segments_[i].x0 = x;
    x += total > 0 ? weights[i] * width / total : 0;
    segments_[i].x1 = x;
  }
  segments_.back().x1 = x0 + width;
}

const IovaAxis::Segment& IovaAxis::find(std::uint64_t addr) const {
  auto it = std::upper_bound(segments_.begin(), segments_.end(), addr,
                             [](std::uint64_t a, const Segment& s) { return a < s.iova.start; });
  return *(it - 1);  // segments_ starts at 0, so some segment starts at or below addr
}

double IovaAxis::x(std::uint64_t addr) const {
  const Segment& s = find(addr);
  const long double frac = static_cast<long double>(addr - s.iova.start) / length_of(s.iova);
  return s.x0 + static_cast<double>(frac * (s.x1 - s.x0));
}

double IovaAxis::x_after(std::uint64_t addr) const {
  const Segment& s = find(addr);
  const long double frac = (static_cast<long double>(addr - s.iova.start) + 1.0L) / length_of(s.iova);
  return s.x0 + static_cast<double>(frac * (s.x1 - s.x0));
}

}  // namespace uiommufd::dump
