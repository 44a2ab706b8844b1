#include "uiommufd/iova/span_iterator.h"

#include <algorithm>

#include "uiommufd/base/assert.h"

namespace uiommufd {

SpanIterator::SpanIterator(Interval within, const IntervalTree& a, const IntervalTree* b)
    : within_(within), trees_{&a, b}, cursor_{nullptr, nullptr}, pos_(within.start) {
  UIOMMUFD_ASSERT(within.start <= within.last);
  for (int i = 0; i < 2; ++i) {
    if (trees_[i] != nullptr) cursor_[i] = trees_[i]->first_overlap(within_);
  }
  load();
}

const IntervalTreeNode* SpanIterator::peek() const {
  const IntervalTreeNode* x = cursor_[0];
  const IntervalTreeNode* y = cursor_[1];
  if (x == nullptr) return y;
  if (y == nullptr) return x;
  return y->range.start < x->range.start ? y : x;
}

void SpanIterator::advance(const IntervalTreeNode* n) {
  const int i = n == cursor_[0] ? 0 : 1;
  cursor_[i] = trees_[i]->next_overlap(n, within_);
}

void SpanIterator::load() {
  // Nodes that end before pos_ lie inside an already reported used span (they started earlier and
  // were out-reached by a longer node); drop them.
  const IntervalTreeNode* n = peek();
  while (n != nullptr && n->range.last < pos_) {
    advance(n);
    n = peek();
  }
  if (n == nullptr || n->range.start > pos_) {
    // A hole up to the next node, or to the end. n->range.start > pos_ >= within.start, so the
    // subtraction cannot wrap, and n intersects within_, so start - 1 < within.last.
    is_hole_ = true;
    span_ = Interval{pos_, n == nullptr ? within_.last : n->range.start - 1};
    return;
  }
  // A used span from pos_: absorb every node starting at or right after the covered end. Stop once the
  // end reaches within.last, which also keeps end + 1 from wrapping at U64_MAX.
  std::uint64_t end = n->range.last;
  advance(n);
  while (end < within_.last) {
    n = peek();
    if (n == nullptr || n->range.start > end + 1) break;
    end = std::max(end, n->range.last);
    advance(n);
  }
  is_hole_ = false;
  span_ = Interval{pos_, std::min(end, within_.last)};
}

void SpanIterator::next() {
  UIOMMUFD_DCHECK(!done_);
  if (span_.last == within_.last) {
    done_ = true;
    return;
  }
  pos_ = span_.last + 1;
  load();
}

}  // namespace uiommufd
