// SpanIterator: walks an inclusive range as alternating "used" and "hole" spans over the nodes of one or
// two IntervalTrees, in ascending order — the kernel's interval_tree_span_iter (one tree) and iommufd's
// interval_tree_double_span_iter (two trees) in one.
//
// Spans, for `within` = [first, last]:
//   used  a maximal run of addresses covered by at least one node of either tree. Overlapping AND
//         adjacent nodes merge into one span (as in the kernel: [0,9] and [10,19] are one used span
//         [0,19]), and nodes of the two trees merge with each other.
//   hole  a maximal run covered by no node of either tree.
// Spans are clipped to `within`, never empty, never overlap, and together cover exactly `within`; two
// holes or two used spans are never consecutive. The full range [0, U64_MAX] works: nothing computes
// last + 1 past U64_MAX.
//
// Cost: O(log n) to start, then O(log n) per node consumed (next_overlap); each node is consumed once.
//
// Thread safety: none. The trees must not change while an iterator or a for_each_* call is live; iopt
// holds its iova_rwsem (read suffices) around the walk.
#pragma once

#include <cstdint>

#include "uiommufd/base/interval.h"
#include "uiommufd/iova/interval_tree.h"

namespace uiommufd {

class SpanIterator {
 public:
  // Positions on the first span of `within`. `b` may be null (one tree). Both trees must outlive the
  // iterator. Precondition: within.start <= within.last.
  SpanIterator(Interval within, const IntervalTree& a, const IntervalTree* b);

  // Whether every span has been visited. The iterator starts not-done: `within` has at least one span.
  bool done() const { return done_; }
  // The current span and whether it is a hole. Precondition: !done().
  Interval span() const { return span_; }
  bool is_hole() const { return is_hole_; }
  bool is_used() const { return !is_hole_; }
  // Advances to the next span. Precondition: !done().
  void next();

 private:
  // Computes the span starting at pos_, consuming the nodes that make it up.
  void load();
  // The lower of the two cursors in (start) order, or null when both are exhausted.
  const IntervalTreeNode* peek() const;
  void advance(const IntervalTreeNode* n);

  Interval within_;
  const IntervalTree* trees_[2];
  const IntervalTreeNode* cursor_[2];  // next unconsumed node of each tree intersecting within_
  std::uint64_t pos_;                  // first address of the span to load
  Interval span_{};
  bool is_hole_ = false;
  bool done_ = false;
};

// Calls `bool f(Interval hole)` for each hole of `within` with respect to the nodes of `a` and, when not
// null, `b`, in ascending order. Returning false from f stops the walk; the call then returns false,
// otherwise true.
template <typename F>
bool for_each_hole(Interval within, const IntervalTree& a, const IntervalTree* b, F&& f) {
  for (SpanIterator it(within, a, b); !it.done(); it.next()) {
    if (it.is_hole() && !f(it.span())) return false;
  }
  return true;
}

// Likewise for the used spans (maximal merged runs of covered addresses, clipped to `within`).
template <typename F>
bool for_each_used_span(Interval within, const IntervalTree& a, const IntervalTree* b, F&& f) {
  for (SpanIterator it(within, a, b); !it.done(); it.next()) {
    if (it.is_used() && !f(it.span())) return false;
  }
  return true;
}

}  // namespace uiommufd
