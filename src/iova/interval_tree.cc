#include "uiommufd/iova/interval_tree.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <utility>

namespace uiommufd {
namespace {

using Node = IntervalTreeNode;

int height(const Node* n) { return n ? n->height : 0; }

// Number of addresses strictly between an interval ending at `last` and one starting at `start`.
std::uint64_t gap_between(std::uint64_t last, std::uint64_t start) {
  return start > last ? start - last - 1 : 0;  // start > last implies last < U64_MAX: no wrap
}

using interval_tree_internal::encode_gap;
constexpr int kCodes = 1 + IntervalTreeNode::kGapClasses;

// Folds a child's gap maxima into n's. Codes order as their values do.
void absorb_child(Node* n, const Node* child) {
  for (int k = 0; k < kCodes; ++k) n->gap_code[k] = std::max(n->gap_code[k], child->gap_code[k]);
}

// What the gap figures leave out (see IntervalTree::set_gap_exclusions), taken once per operation: the
// excluding tree and the hull of its nodes, so that a gap clear of the hull costs two compares.
struct GapContext {
  const IntervalTree* excluded = nullptr;
  Interval hull{};
};

GapContext gap_context(const IntervalTree* excluded) {
  if (excluded == nullptr || excluded->empty()) return {};
  return {excluded, excluded->hull()};
}

// Folds the free run [gs, gl] (1 <= gs <= gl) into n's maxima.
void absorb_free(Node* n, std::uint64_t gs, std::uint64_t gl) {
  n->gap_code[0] = std::max(n->gap_code[0], encode_gap(gl - gs + 1));
  for (int k = 0; k < IntervalTreeNode::kGapClasses; ++k) {
    const std::uint64_t align = std::uint64_t{1} << IntervalTreeNode::kClassShifts[k];
    std::uint64_t c = 0;
    if (__builtin_add_overflow(gs, align - 1, &c)) break;  // coarser classes wrap too
    c &= ~(align - 1);
    if (c > gl) break;  // coarser classes start no earlier
    // gl - c + 1 cannot wrap: c >= gs >= 1. Pages rounded up so the figure stays an upper bound.
    const std::uint64_t pages = ((gl - c) >> IntervalTreeNode::kClassShifts[0]) + 1;
    n->gap_code[1 + k] = std::max(n->gap_code[1 + k], encode_gap(pages));
  }
}

// Folds the gap between an interval ending at `last` and one starting at `start` into n's maxima: all of
// it, or only the parts of it no excluded node covers.
void absorb_gap(Node* n, std::uint64_t last, std::uint64_t start, const GapContext& ctx) {
  if (gap_between(last, start) == 0) return;
  const Interval gap{last + 1, start - 1};  // gap.start >= 1: no gap starts at 0 here
  if (ctx.excluded == nullptr || !gap.overlaps(ctx.hull)) {
    absorb_free(n, gap.start, gap.last);
    return;
  }
  ctx.excluded->for_each_gap(gap, 1, [n](Interval free) {
    absorb_free(n, free.start, free.last);
    return true;
  });
}

// A node is one cache line (the node type is 64-byte aligned and sized).
inline void prefetch_node(const Node* n) { __builtin_prefetch(n); }

// Recomputes n's height and augmentation from its children, which must already be up to date.
void update(Node* n, const GapContext& ctx) {
  const Node* l = n->left;
  const Node* r = n->right;
  n->height = static_cast<std::uint8_t>(1 + std::max(height(l), height(r)));
  std::fill(std::begin(n->gap_code), std::end(n->gap_code), 0);
  std::uint64_t last = n->range.last;
  std::uint64_t covered = n->range.last;  // max last of the left subtree and n itself
  if (l != nullptr) {
    last = std::max(last, l->subtree_last);
    absorb_child(n, l);
    absorb_gap(n, l->subtree_last, n->range.start, ctx);
    covered = std::max(covered, l->subtree_last);
  }
  if (r != nullptr) {
    last = std::max(last, r->subtree_last);
    absorb_child(n, r);
    absorb_gap(n, covered, r->subtree_first, ctx);
  }
  n->subtree_last = last;
  n->subtree_first = l != nullptr ? l->subtree_first : n->range.start;
}

// (start, address) order.
bool before(const Node* a, const Node* b) {
  if (a->range.start != b->range.start) return a->range.start < b->range.start;
  return std::less<const Node*>{}(a, b);
}

Node* leftmost(Node* n) {
  while (n->left != nullptr) n = n->left;
  return n;
}

void unlink_fields(Node* n) {
  n->parent = n->left = n->right = nullptr;
  n->height = 0;
}

[[noreturn]] void invariant_failed(const char* what) {
  std::fprintf(stderr, "IntervalTree invariant violated: %s\n", what);
  std::abort();
}

}  // namespace

IntervalTree::IntervalTree(IntervalTree&& other) noexcept
    : root_(std::exchange(other.root_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      gap_exclusions_(std::exchange(other.gap_exclusions_, nullptr)) {}

IntervalTree& IntervalTree::operator=(IntervalTree&& other) noexcept {
  if (this != &other) {
    root_ = std::exchange(other.root_, nullptr);
    size_ = std::exchange(other.size_, 0);
    gap_exclusions_ = std::exchange(other.gap_exclusions_, nullptr);
  }
  return *this;
}

void swap(IntervalTree& a, IntervalTree& b) noexcept {
  std::swap(a.root_, b.root_);
  std::swap(a.size_, b.size_);
  std::swap(a.gap_exclusions_, b.gap_exclusions_);
}

namespace {

// Points whatever pointed at `old_child` (its parent's link, or the root) at `new_child`.
void replace_child(Node*& root, Node* parent, Node* old_child, Node* new_child) {
  if (parent == nullptr) {
    root = new_child;
  } else if (parent->left == old_child) {
    parent->left = new_child;
  } else {
    parent->right = new_child;
  }
  if (new_child != nullptr) new_child->parent = parent;
}

Node* rotate_left(Node*& root, Node* x, const GapContext& ctx) {
  Node* y = x->right;
  x->right = y->left;
  if (y->left != nullptr) y->left->parent = x;
  replace_child(root, x->parent, x, y);
  y->left = x;
  x->parent = y;
  update(x, ctx);
  update(y, ctx);
  return y;
}

Node* rotate_right(Node*& root, Node* x, const GapContext& ctx) {
  Node* y = x->left;
  x->left = y->right;
  if (y->right != nullptr) y->right->parent = x;
  replace_child(root, x->parent, x, y);
  y->right = x;
  x->parent = y;
  update(x, ctx);
  update(y, ctx);
  return y;
}

bool same_augmentation(const Node& a, const Node& b) {
  return a.height == b.height && a.subtree_last == b.subtree_last && a.subtree_first == b.subtree_first &&
         std::equal(std::begin(a.gap_code), std::end(a.gap_code), std::begin(b.gap_code));
}

// Walks from `n` towards the root, restoring balance and the augmentation at every level. Stops early
// once a level needs no rotation and its height and augmentation come out unchanged (then no ancestor
// can change either), but never before passing `must_reach`, a node whose stored figures are known
// to be stale (remove() moves the successor into the removed node's place).
void retrace(Node*& root, Node* n, const Node* must_reach, const GapContext& ctx) {
  bool passed = must_reach == nullptr;
  while (n != nullptr) {
    // The next level's update reads both children of n's parent: one is n, the other is usually not in
    // cache on a large tree. Start fetching it (and the grandparent) while this level is worked on.
    if (const Node* p = n->parent) {
      prefetch_node(p->left == n ? p->right : p->left);
      prefetch_node(p->parent);
    }
    const Node before_update = *n;
    update(n, ctx);
    const int balance = height(n->left) - height(n->right);
    bool rotated = false;
    if (balance > 1) {
      if (height(n->left->left) < height(n->left->right)) rotate_left(root, n->left, ctx);
      n = rotate_right(root, n, ctx);
      rotated = true;
    } else if (balance < -1) {
      if (height(n->right->right) < height(n->right->left)) rotate_right(root, n->right, ctx);
      n = rotate_left(root, n, ctx);
      rotated = true;
    }
    if (n == must_reach) passed = true;
    if (passed && !rotated && same_augmentation(before_update, *n)) return;
    n = n->parent;
  }
}

}  // namespace

void IntervalTree::insert(IntervalTreeNode* node) {
  UIOMMUFD_ASSERT(!node->linked());
  UIOMMUFD_ASSERT(node->range.start <= node->range.last);
  node->left = node->right = nullptr;
  Node* parent = nullptr;
  Node** link = &root_;
  while (*link != nullptr) {
    parent = *link;
    link = before(node, parent) ? &parent->left : &parent->right;
  }
  node->parent = parent;
  *link = node;
  const GapContext ctx = gap_context(gap_exclusions_);
  update(node, ctx);
  ++size_;
  retrace(root_, parent, nullptr, ctx);
}

void IntervalTree::remove(IntervalTreeNode* node) {
  UIOMMUFD_ASSERT(node->linked());
  Node* retrace_from;
  const Node* stale = nullptr;
  if (node->left != nullptr && node->right != nullptr) {
    // Put the in-order successor (leftmost of the right subtree, which has no left child) where node
    // was. Nodes are relinked, never copied: their owners hold pointers to them.
    Node* succ = leftmost(node->right);
    if (succ->parent == node) {
      retrace_from = succ;
    } else {
      retrace_from = succ->parent;
      replace_child(root_, succ->parent, succ, succ->right);
      succ->right = node->right;
      succ->right->parent = succ;
    }
    replace_child(root_, node->parent, node, succ);
    succ->left = node->left;
    succ->left->parent = succ;
    // Take over node's height and figures: they are what succ's new parent was computed from, so
    // retrace's "unchanged, stop here" test at succ compares against the right values.
    succ->height = node->height;
    succ->subtree_last = node->subtree_last;
    succ->subtree_first = node->subtree_first;
    std::copy(std::begin(node->gap_code), std::end(node->gap_code), std::begin(succ->gap_code));
    stale = succ;  // ... but they do not describe its new subtree yet
  } else {
    Node* child = node->left != nullptr ? node->left : node->right;
    retrace_from = node->parent;
    replace_child(root_, node->parent, node, child);
  }
  --size_;
  unlink_fields(node);
  retrace(root_, retrace_from, stale, gap_context(gap_exclusions_));
}

namespace {

// The lowest-order node of subtree `n` intersecting `range`, given n->subtree_last >= range.start.
Node* subtree_search(Node* n, Interval range) {
  while (true) {
    // Go left whenever the left subtree reaches range.start: the answer, if any, is there, and if
    // the leftmost candidate there starts beyond range.last, so does everything after it.
    if (n->left != nullptr && n->left->subtree_last >= range.start) {
      n = n->left;
      continue;
    }
    if (n->range.start > range.last) return nullptr;
    if (n->range.last >= range.start) return n;
    if (n->right != nullptr && n->right->subtree_last >= range.start) {
      n = n->right;
      continue;
    }
    return nullptr;
  }
}

}  // namespace

IntervalTreeNode* IntervalTree::first_overlap(Interval range) const {
  if (root_ == nullptr || root_->subtree_last < range.start) return nullptr;
  return subtree_search(root_, range);
}

IntervalTreeNode* IntervalTree::first_overlap_disjoint(Interval range) const {
  // Branch-free, with masks (the compiler turns a conditional choice of child back into a branch): which
  // way a random lookup turns is a coin toss, and a mispredicted turn costs more than the level's load.
  std::uintptr_t found = 0;
  for (Node* n = root_; n != nullptr;) {
    const std::uintptr_t left = -static_cast<std::uintptr_t>(n->range.last >= range.start);
    const auto self = reinterpret_cast<std::uintptr_t>(n);
    found = (self & left) | (found & ~left);
    n = reinterpret_cast<Node*>((reinterpret_cast<std::uintptr_t>(n->left) & left) |
                                (reinterpret_cast<std::uintptr_t>(n->right) & ~left));
  }
  Node* const f = reinterpret_cast<Node*>(found);
  return f != nullptr && f->range.start <= range.last ? f : nullptr;
}

IntervalTreeNode* IntervalTree::next_overlap(const IntervalTreeNode* node, Interval range) const {
  Node* n = const_cast<Node*>(node);
  while (true) {
    if (n->right != nullptr && n->right->subtree_last >= range.start) return subtree_search(n->right, range);
    // Climb until we arrive from a left child: that ancestor is the next node in order.
    Node* prev;
    do {
      prev = n;
      n = n->parent;
      if (n == nullptr) return nullptr;
    } while (n->right == prev);
    if (n->range.start > range.last) return nullptr;
    if (n->range.last >= range.start) return n;
  }
}

IntervalTreeNode* IntervalTree::first() const { return root_ != nullptr ? leftmost(root_) : nullptr; }

IntervalTreeNode* IntervalTree::next(const IntervalTreeNode* node) const {
  Node* n = const_cast<Node*>(node);
  if (n->right != nullptr) return leftmost(n->right);
  Node* prev;
  do {
    prev = n;
    n = n->parent;
  } while (n != nullptr && n->right == prev);
  return n;
}

void IntervalTree::set_gap_exclusions(const IntervalTree* excluded) {
  UIOMMUFD_ASSERT(excluded != this);
  gap_exclusions_ = excluded;
  // Post-order, so that every node is recomputed after its children.
  const GapContext ctx = gap_context(excluded);
  Node* n = root_;
  while (n != nullptr && (n->left != nullptr || n->right != nullptr)) n = n->left ? n->left : n->right;
  while (n != nullptr) {
    update(n, ctx);
    Node* parent = n->parent;
    if (parent != nullptr && parent->left == n && parent->right != nullptr) {
      n = parent->right;
      while (n->left != nullptr || n->right != nullptr) n = n->left ? n->left : n->right;
    } else {
      n = parent;
    }
  }
}

void IntervalTree::gap_exclusions_changed(Interval range) {
  const GapContext ctx = gap_context(gap_exclusions_);
  // A gap's figures are folded in at the node that follows it in order (against its left subtree) or at
  // an ancestor of that node (against its right subtree, whose leftmost node that is), and from there
  // into every ancestor. So recompute the whole path up from each node whose preceding gap can touch
  // `range`: those starting after range.start, up to and including the first that starts past its end.
  Node* n = nullptr;
  for (Node* c = root_; c != nullptr;) {
    if (c->range.start > range.start) {
      n = c;
      c = c->left;
    } else {
      c = c->right;
    }
  }
  for (; n != nullptr; n = next(n)) {
    for (Node* a = n; a != nullptr; a = a->parent) update(a, ctx);
    if (n->range.start > range.last) break;
  }
}

void IntervalTree::clear() {
  // Post-order without a stack: descend to a leaf, unlink it from its parent, climb.
  Node* n = root_;
  while (n != nullptr) {
    if (n->left != nullptr) {
      n = n->left;
    } else if (n->right != nullptr) {
      n = n->right;
    } else {
      Node* parent = n->parent;
      if (parent != nullptr) (parent->left == n ? parent->left : parent->right) = nullptr;
      unlink_fields(n);
      n = parent;
    }
  }
  root_ = nullptr;
  size_ = 0;
}

namespace {

struct SubtreeFacts {
  int height = 0;
  std::size_t count = 0;
};

SubtreeFacts check_subtree(const Node* n, const Node* parent, const GapContext& ctx) {
  if (n == nullptr) return {};
  if (n->parent != parent) invariant_failed("parent link");
  if (n->range.start > n->range.last) invariant_failed("start > last");
  if (n->left != nullptr && !before(n->left, n)) invariant_failed("left child not before node");
  if (n->right != nullptr && !before(n, n->right)) invariant_failed("right child not after node");
  const SubtreeFacts l = check_subtree(n->left, n, ctx);
  const SubtreeFacts r = check_subtree(n->right, n, ctx);
  if (n->height != 1 + std::max(l.height, r.height)) invariant_failed("height");
  if (l.height - r.height > 1 || r.height - l.height > 1) invariant_failed("AVL balance");
  Node copy = *n;
  update(&copy, ctx);
  if (copy.subtree_last != n->subtree_last) invariant_failed("subtree_last");
  if (copy.subtree_first != n->subtree_first) invariant_failed("subtree_first");
  if (!std::equal(std::begin(copy.gap_code), std::end(copy.gap_code), std::begin(n->gap_code)))
    invariant_failed("gap codes");
  return {n->height, l.count + r.count + 1};
}

}  // namespace

void IntervalTree::check_invariants() const {
  const SubtreeFacts facts = check_subtree(root_, nullptr, gap_context(gap_exclusions_));
  if (facts.count != size_) invariant_failed("size");
  // Full order (child checks only cover direct children).
  const Node* prev = nullptr;
  for (const Node* n = first(); n != nullptr; n = next(n)) {
    if (prev != nullptr && !before(prev, n)) invariant_failed("in-order sequence");
    prev = n;
  }
}

}  // namespace uiommufd
