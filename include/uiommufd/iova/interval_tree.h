// IntervalTree: an intrusive, balanced (AVL) tree of INCLUSIVE intervals [start, last], the user-space
// counterpart of the kernel's interval_tree (lib/interval_tree.c) that backs iopt's area, reserved and
// allowed trees.
//
// Intrusive: the node (IntervalTreeNode) is a member of the caller's object and the tree only links it,
// so insert and remove never allocate and cannot fail. That is what lets iopt reserve IOVA space under
// its iova_rwsem write lock without an allocation (and therefore without an ENOMEM path) inside it:
// the owning object is allocated before the lock is taken (docs/design.md#no-allocation-under-locks).
//
// Ordering and overlap: nodes are ordered by (range.start, node address). Overlapping and identical
// intervals are allowed (reserved ranges from different owners may overlap); the address tie-break
// gives every node a unique position, so remove() needs no search and is O(log n).
//
// Augmentation, per node over its subtree, maintained through every rotation:
//   subtree_last     max range.last     → overlap queries in O(log n + k)
//   subtree_first    min range.start    → the start of the subtree's leftmost node, in O(1)
//   gap_code[0]      the largest number of uncovered addresses between a node and everything before it
//                    *within the subtree* (the gap in front of the subtree's leftmost node is not
//                    counted: it depends on what precedes the subtree), in bytes;
//   gap_code[1 + k]  the same maximum, but of the addresses usable from the first aligned address of each
//                    gap on, for the alignment of class k (4, 8, 16, 32 and 64 KiB, and 2 MiB), in pages.
// All gap figures are stored as one-byte codes of a rounded-up value (exact below 16, within 1/8 above,
// "assume huge" past about 2^34), so they stay upper bounds; codes order as their values do, so a maximum of
// codes is the code of the maximum. Gap figures are upper bounds in any case for trees whose nodes
// overlap (a node outside the subtree may cover a gap the subtree sees). for_each_gap() uses them to step
// over whole subtrees that cannot hold a gap of the requested size at the requested alignment; an
// alignment between two classes is tested against the finer one.
//
// Exclusions: a tree may be told that the addresses another tree's nodes cover are not free either
// (iopt: its areas' tree leaves out the reserved ranges). The gap figures then count only the parts of
// each gap outside those nodes, so a gap walk for an allocation steps over a gap that reserved ranges fill
// (an MSI window amid a large IOAS) instead of descending to it every time.
//
// Layout: a node is one 64-byte cache line. On a tree of a million nodes nearly every node an operation
// reads is a cache miss, and what a level costs is how many lines it reads.
//
// Thread safety: none. The tree is a plain data structure; iopt serialises every call with its
// iova_rwsem (write for insert/remove/clear, read for queries). Iteration is invalidated by any
// insert/remove.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/interval.h"

namespace uiommufd {

struct alignas(64) IntervalTreeNode {
  // Set by the owner before insert(); must not change while linked (the tree's order and
  // augmentation are computed from it).
  Interval range{};

  // Internal links and augmentation. Public only so the node can be embedded as a plain member; owners
  // never read or write them.
  IntervalTreeNode* parent = nullptr;
  IntervalTreeNode* left = nullptr;
  IntervalTreeNode* right = nullptr;
  std::uint64_t subtree_last = 0;
  std::uint64_t subtree_first = 0;
  // Alignment classes of the page figures, as log2 of the alignment.
  static constexpr int kClassShifts[] = {12, 13, 14, 15, 16, 21};
  static constexpr int kGapClasses = sizeof(kClassShifts) / sizeof(kClassShifts[0]);
  std::uint8_t gap_code[1 + kGapClasses] = {};  // [0]: raw bytes; [1 + k]: pages at class k
  std::uint8_t height = 0;                      // AVL height, >= 1 while linked; 0 marks an unlinked node

  // Whether the node is currently in a tree.
  bool linked() const { return height != 0; }
};
static_assert(sizeof(IntervalTreeNode) == 64, "a node is one cache line");

// The one-byte gap codes (see the top of the file): monotonic, and decode(encode(v)) >= v.
namespace interval_tree_internal {
inline constexpr std::uint8_t kHugeCode = 255;
constexpr std::uint8_t encode_gap(std::uint64_t v) {
  if (v < 16) return static_cast<std::uint8_t>(v);
  int e = std::bit_width(v) - 4;                             // v >> e in [8, 15]
  std::uint64_t m = (v + (std::uint64_t{1} << e) - 1) >> e;  // rounded up: [8, 16]
  if (m == 16) m = 8, ++e;
  const std::uint64_t code = 16 + static_cast<std::uint64_t>(e - 1) * 8 + (m - 8);
  return code >= kHugeCode ? kHugeCode : static_cast<std::uint8_t>(code);
}
constexpr std::uint64_t decode_gap(std::uint8_t code) {
  if (code < 16) return code;
  if (code == kHugeCode) return UINT64_MAX;
  const int e = (code - 16) / 8 + 1;
  return (static_cast<std::uint64_t>((code - 16) % 8) + 8) << e;
}
}  // namespace interval_tree_internal

class IntervalTree {
 public:
  IntervalTree() = default;
  // Not copyable: nodes point at each other, not at the tree, but a copy would share them.
  IntervalTree(const IntervalTree&) = delete;
  IntervalTree& operator=(const IntervalTree&) = delete;
  // Movable (iopt swaps a freshly built allowed tree in, as the kernel's iopt_set_allow_iova does).
  IntervalTree(IntervalTree&& other) noexcept;
  IntervalTree& operator=(IntervalTree&& other) noexcept;
  // Destruction does not unlink: call clear() first if the owners will look at linked() afterwards.
  ~IntervalTree() = default;

  friend void swap(IntervalTree& a, IntervalTree& b) noexcept;

  // Links `node`. Preconditions (checked): node is not linked; node->range.start <= node->range.last.
  // O(log n); never allocates.
  void insert(IntervalTreeNode* node);
  // Unlinks `node`, which must be linked in THIS tree (not checked beyond linked()). Afterwards
  // node->linked() is false and its links are null. O(log n).
  void remove(IntervalTreeNode* node);

  bool empty() const { return root_ == nullptr; }
  std::size_t size() const { return size_; }

  // The node with the lowest (start, address) that intersects `range`, or null. O(log n).
  IntervalTreeNode* first_overlap(Interval range) const;
  // The same answer for a tree whose nodes never overlap one another (iopt's areas). Ends are then
  // ordered as starts are, so the answer is the first node ending at or after range.start, found on one
  // root-to-leaf path; first_overlap() also reads a child beside the path at every level, which in a
  // large tree is a second cache miss per level.
  IntervalTreeNode* first_overlap_disjoint(Interval range) const;
  // The next node after `node` in (start, address) order that intersects `range`, or null. `node` must
  // be linked in this tree; it need not itself intersect `range`. O(log n) per call, so enumerating the
  // k intersecting nodes costs O((k + 1) log n) at worst.
  IntervalTreeNode* next_overlap(const IntervalTreeNode* node, Interval range) const;

  // In-order (start, address) iteration. first() is null on an empty tree; next() null after the last.
  IntervalTreeNode* first() const;
  IntervalTreeNode* next(const IntervalTreeNode* node) const;

  // Unlinks every node (each becomes !linked()); the owners still own them. O(n), no allocation.
  void clear();

  // The smallest interval that covers every node. Precondition: !empty(). O(1).
  Interval hull() const { return Interval{root_->subtree_first, root_->subtree_last}; }

  // From now on the gap figures leave out whatever `excluded`'s nodes cover (null: nothing). `excluded`
  // must outlive this tree's use of it, and after each insert into or remove from `excluded` the owner
  // calls gap_exclusions_changed() with the node's range before this tree is used again. O(n).
  void set_gap_exclusions(const IntervalTree* excluded);
  // Brings the figures of the gaps that touch `range` up to date with the exclusions. O((k + 1) log n)
  // for k nodes starting inside `range`; none in iopt, whose reserved ranges never overlap an area.
  void gap_exclusions_changed(Interval range);

  // The object that embeds `n` as its member `Member`, or null for a null `n` (container_of):
  //   struct Area { IntervalTreeNode node; ... };
  //   Area* a = IntervalTree::owner<Area, &Area::node>(tree.first());
  // Relies on the Itanium C++ ABI (GCC, Clang on Linux) representing a pointer to data member as the
  // member's byte offset; `Member` must not be reached through a virtual base.
  template <typename T, IntervalTreeNode T::*Member>
  static T* owner(IntervalTreeNode* n) {
    static_assert(sizeof(Member) == sizeof(std::ptrdiff_t), "pointer to data member is not an offset");
    if (n == nullptr) return nullptr;
    const auto offset = std::bit_cast<std::ptrdiff_t>(Member);
    return reinterpret_cast<T*>(reinterpret_cast<char*>(n) - offset);
  }
  template <typename T, IntervalTreeNode T::*Member>
  static const T* owner(const IntervalTreeNode* n) {
    return owner<T, Member>(const_cast<IntervalTreeNode*>(n));
  }

  // Walks, in ascending order, the maximal runs of addresses inside `within` that no node covers
  // ("gaps"), calling `bool f(Interval gap)` for each gap [gs, gl] that holds `min_size` addresses
  // (0 counts as 1) starting at its first `alignment`-aligned address: align_up(gs, alignment) does not
  // wrap and align_up(gs, alignment) + min_size - 1 <= gl. Other gaps are never reported. With gap
  // exclusions set, a gap that holds such a run only by counting excluded addresses may be left out too
  // (but it is reported whole, excluded parts included, whenever it is reported at all). Returning
  // false from f stops the walk. Returns false if f stopped the walk, true otherwise. `alignment` is a
  // power of two; with min_size <= 1 and alignment 1 it yields the same holes as for_each_hole() over
  // this one tree.
  //
  // Cost: O(log n) to reach `within`, plus O(log n) per reported gap: subtrees none of whose gaps can
  // qualify are stepped over in O(1) via the gap augmentation. For a non-overlapping tree that test is
  // exact for gaps below 16 pages (16 bytes for the raw figure used below 4 KiB alignment) at the class
  // alignments, and errs by at most an eighth above, so finding the first qualifying gap is O(log n)
  // unless many gaps just short of the request (or, for alignments between 64 KiB and 2 MiB, long
  // enough only at the finer class) precede it; each such gap costs a descent. This is what keeps IOVA
  // allocation from scanning every hole from address 0 when the low space is full.
  template <typename F>
  bool for_each_gap(Interval within, std::uint64_t min_size, std::uint64_t alignment, F&& f) const;
  template <typename F>
  bool for_each_gap(Interval within, std::uint64_t min_size, F&& f) const {
    return for_each_gap(within, min_size, 1, std::forward<F>(f));
  }

  // Checks every structural invariant (order, parent links, AVL balance, heights, augmentation, size);
  // aborts with a message on the first violation. O(n). For tests.
  void check_invariants() const;

 private:
  enum class Walk { kContinue, kEnd, kStopped };
  struct GapState {
    Interval within;
    std::uint64_t min_size;   // >= 1
    std::uint64_t alignment;  // power of two
    std::uint64_t next_free;  // lowest address of `within` not yet known to be covered
    bool exhausted;           // nodes cover everything from next_free to within.last
  };
  template <typename F>
  static Walk gap_walk(const IntervalTreeNode* n, GapState& s, F& f);
  // Whether [gs, gl] (gs <= gl) holds min_size addresses from its first `alignment`-aligned address.
  static bool gap_fits(std::uint64_t gs, std::uint64_t gl, std::uint64_t min_size, std::uint64_t alignment) {
    std::uint64_t c = 0;
    if (__builtin_add_overflow(gs, alignment - 1, &c)) return false;
    c &= ~(alignment - 1);
    return c <= gl && gl - c >= min_size - 1;
  }
  // Whether some gap inside n's subtree (not the one in front of it) might qualify.
  static bool subtree_may_fit(const IntervalTreeNode* n, std::uint64_t min_size, std::uint64_t alignment);

  IntervalTreeNode* root_ = nullptr;
  std::size_t size_ = 0;
  const IntervalTree* gap_exclusions_ = nullptr;
};

// ---- template implementation -------------------------------------------------------------------

template <typename F>
IntervalTree::Walk IntervalTree::gap_walk(const IntervalTreeNode* n, GapState& s, F& f) {
  if (n == nullptr) return Walk::kContinue;
  // Both children's augmentation is read next, at this level or the one below; on a large tree they are
  // rarely in cache.
  __builtin_prefetch(n->left);
  __builtin_prefetch(n->right);
  // Nothing in this subtree reaches the first uncovered address: no gap, no extra coverage.
  if (n->subtree_last < s.next_free) return Walk::kContinue;
  // The subtree (and, by order, everything after it) starts beyond `within`: only the tail is left.
  if (n->subtree_first > s.within.last) return Walk::kEnd;
  // Prune: if neither the gap in front of the subtree nor any gap inside it can be min_size long, the
  // subtree only extends the covered prefix. The inside gaps seen from here are never larger than the
  // subtree-local ones, because the prefix before the subtree covers at least as much.
  const bool front_gap_fits =
      n->subtree_first > s.next_free &&
      gap_fits(s.next_free, std::min(n->subtree_first - 1, s.within.last), s.min_size, s.alignment);
  if (!front_gap_fits && !subtree_may_fit(n, s.min_size, s.alignment)) {
    if (n->subtree_last >= s.within.last) {
      s.exhausted = true;
      return Walk::kEnd;
    }
    s.next_free = n->subtree_last + 1;
    return Walk::kContinue;
  }
  const Walk w = gap_walk(n->left, s, f);
  if (w != Walk::kContinue) return w;
  if (n->range.start > s.within.last) return Walk::kEnd;
  if (n->range.start > s.next_free) {
    const Interval gap{s.next_free, n->range.start - 1};
    if (gap_fits(gap.start, gap.last, s.min_size, s.alignment) && !f(gap)) return Walk::kStopped;
  }
  if (n->range.last >= s.within.last) {
    s.exhausted = true;
    return Walk::kEnd;
  }
  s.next_free = std::max(s.next_free, n->range.last + 1);
  return gap_walk(n->right, s, f);
}

inline bool IntervalTree::subtree_may_fit(const IntervalTreeNode* n, std::uint64_t min_size,
                                          std::uint64_t alignment) {
  using interval_tree_internal::decode_gap;
  const int shift = std::countr_zero(alignment);
  if (shift < IntervalTreeNode::kClassShifts[0]) return decode_gap(n->gap_code[0]) >= min_size;
  // The finest class at or below the alignment: a coarser alignment never leaves more room, so the
  // figure stays an upper bound.
  int k = IntervalTreeNode::kGapClasses - 1;
  while (IntervalTreeNode::kClassShifts[k] > shift) --k;
  const std::uint64_t pages = decode_gap(n->gap_code[1 + k]);
  if (pages >= (UINT64_MAX >> IntervalTreeNode::kClassShifts[0])) return true;
  return (pages << IntervalTreeNode::kClassShifts[0]) >= min_size;
}

template <typename F>
bool IntervalTree::for_each_gap(Interval within, std::uint64_t min_size, std::uint64_t alignment,
                                F&& f) const {
  UIOMMUFD_DCHECK(within.start <= within.last);
  UIOMMUFD_DCHECK(alignment != 0 && (alignment & (alignment - 1)) == 0);
  GapState s{within, min_size == 0 ? 1 : min_size, alignment, within.start, false};
  if (gap_walk(root_, s, f) == Walk::kStopped) return false;
  if (s.exhausted) return true;
  // The tail [next_free, within.last]: nothing linked intersects it.
  if (gap_fits(s.next_free, within.last, s.min_size, s.alignment) && !f(Interval{s.next_free, within.last})) {
    return false;
  }
  return true;
}

}  // namespace uiommufd
