#include "uiommufd/iova/interval_tree.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace uiommufd {
namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

struct Item {
  int id = 0;
  IntervalTreeNode node;
};

Item* item_of(IntervalTreeNode* n) { return IntervalTree::owner<Item, &Item::node>(n); }

// Coordinates that stress the edges: 0, U64_MAX and their neighbours, a small dense space (lots of
// overlap and adjacency) and its mirror at the top of the space.
std::uint64_t random_coord(std::mt19937_64& rng) {
  switch (rng() % 8) {
    case 0:
      return 0;
    case 1:
      return kMax;
    case 2:
      return 1 + rng() % 3;
    case 3:
      return kMax - 1 - rng() % 3;
    case 4:
      return kMax - rng() % 200;
    case 5:
      return rng();
    default:
      return rng() % 200;
  }
}

Interval random_interval(std::mt19937_64& rng) {
  std::uint64_t a = random_coord(rng), b = random_coord(rng);
  if (rng() % 4 == 0) {  // short ones
    const std::uint64_t d = rng() % 8;
    b = a > kMax - d ? kMax : a + d;
  }
  if (a > b) std::swap(a, b);
  return Interval{a, b};
}

// The brute-force model: the linked items, queried by linear scan.
std::vector<Item*> linked_sorted(std::vector<Item>& items) {
  std::vector<Item*> out;
  for (Item& it : items) {
    if (it.node.linked()) out.push_back(&it);
  }
  std::sort(out.begin(), out.end(), [](const Item* a, const Item* b) {
    if (a->node.range.start != b->node.range.start) return a->node.range.start < b->node.range.start;
    return std::less<const IntervalTreeNode*>{}(&a->node, &b->node);
  });
  return out;
}

std::vector<Interval> brute_holes(const std::vector<Item*>& sorted, Interval within) {
  std::vector<Interval> holes;
  std::uint64_t pos = within.start;
  for (const Item* it : sorted) {
    const Interval r = it->node.range;
    if (!r.overlaps(within) || r.last < pos) continue;
    if (r.start > pos) holes.push_back({pos, r.start - 1});
    if (r.last >= within.last) return holes;
    pos = std::max(pos, r.last + 1);
  }
  holes.push_back({pos, within.last});
  return holes;
}

// The one-byte gap codes: exact for small values, monotonic, never below the value and at most an eighth
// above it, and "huge" for what does not fit.
TEST(IntervalTreeTest, GapCodesAreMonotonicUpperBounds) {
  using interval_tree_internal::decode_gap;
  using interval_tree_internal::encode_gap;
  for (std::uint64_t v = 0; v < 16; ++v) EXPECT_EQ(decode_gap(encode_gap(v)), v);
  std::uint8_t prev = 0;
  for (std::uint64_t v = 1; v < (std::uint64_t{1} << 40); v += 1 + v / 7) {
    const std::uint8_t c = encode_gap(v);
    ASSERT_GE(c, prev) << v;
    prev = c;
    const std::uint64_t d = decode_gap(c);
    ASSERT_GE(d, v) << v;
    if (c != interval_tree_internal::kHugeCode) {
      ASSERT_LE(d - v, v / 8 + 1) << v;
    }
  }
  EXPECT_EQ(encode_gap(UINT64_MAX), interval_tree_internal::kHugeCode);
  EXPECT_EQ(decode_gap(interval_tree_internal::kHugeCode), UINT64_MAX);
}

TEST(IntervalTreeTest, EmptyTreeAnswersNothing) {
  IntervalTree tree;
  EXPECT_TRUE(tree.empty());
  EXPECT_EQ(tree.size(), 0u);
  EXPECT_EQ(tree.first(), nullptr);
  EXPECT_EQ(tree.first_overlap(Interval::full()), nullptr);
  tree.check_invariants();
}

TEST(IntervalTreeTest, InsertLinksAndRemoveUnlinks) {
  IntervalTree tree;
  Item a;
  a.node.range = {10, 20};
  EXPECT_FALSE(a.node.linked());
  tree.insert(&a.node);
  EXPECT_TRUE(a.node.linked());
  EXPECT_EQ(tree.size(), 1u);
  EXPECT_EQ(tree.first_overlap({20, 30}), &a.node);
  EXPECT_EQ(tree.first_overlap({21, 30}), nullptr);
  EXPECT_EQ(tree.first_overlap({0, 9}), nullptr);
  tree.remove(&a.node);
  EXPECT_FALSE(a.node.linked());
  EXPECT_TRUE(tree.empty());
}

TEST(IntervalTreeTest, OwnerRecoversTheEmbeddingObject) {
  Item a;
  a.id = 42;
  EXPECT_EQ(item_of(&a.node), &a);
  EXPECT_EQ(item_of(nullptr), nullptr);
}

TEST(IntervalTreeTest, IdenticalIntervalsAreOrderedByAddress) {
  std::vector<Item> items(20);
  IntervalTree tree;
  for (Item& it : items) {
    it.node.range = {5, 5};
    tree.insert(&it.node);
  }
  tree.check_invariants();
  std::size_t n = 0;
  for (IntervalTreeNode* x = tree.first_overlap({5, 5}); x; x = tree.next_overlap(x, {5, 5})) ++n;
  EXPECT_EQ(n, items.size());
  for (Item& it : items) tree.remove(&it.node);
  EXPECT_TRUE(tree.empty());
}

TEST(IntervalTreeTest, FullRangeNodeOverlapsEverything) {
  IntervalTree tree;
  Item a;
  a.node.range = Interval::full();
  tree.insert(&a.node);
  EXPECT_EQ(tree.first_overlap({kMax, kMax}), &a.node);
  EXPECT_EQ(tree.first_overlap({0, 0}), &a.node);
  int gaps = 0;
  EXPECT_TRUE(tree.for_each_gap(Interval::full(), 1, [&](Interval) { return ++gaps, true; }));
  EXPECT_EQ(gaps, 0);
  tree.remove(&a.node);
}

TEST(IntervalTreeTest, ClearUnlinksEveryNode) {
  std::vector<Item> items(100);
  IntervalTree tree;
  for (std::size_t i = 0; i < items.size(); ++i) {
    items[i].node.range = {i * 10, i * 10 + 15};
    tree.insert(&items[i].node);
  }
  tree.clear();
  EXPECT_TRUE(tree.empty());
  for (Item& it : items) EXPECT_FALSE(it.node.linked());
  tree.insert(&items[3].node);  // reusable after clear
  tree.check_invariants();
  tree.remove(&items[3].node);
}

TEST(IntervalTreeTest, MoveAndSwapCarryTheNodes) {
  Item a, b;
  a.node.range = {1, 2};
  b.node.range = {3, 4};
  IntervalTree t1, t2;
  t1.insert(&a.node);
  t2.insert(&b.node);
  swap(t1, t2);
  EXPECT_EQ(t1.first(), &b.node);
  EXPECT_EQ(t2.first(), &a.node);
  IntervalTree t3 = std::move(t1);
  EXPECT_TRUE(t1.empty());
  EXPECT_EQ(t3.first(), &b.node);
  t3.clear();
  t2.clear();
}

// Random inserts and removes of overlapping intervals (with U64_MAX ends and the full range), every
// query compared with the linear-scan model after each step.
TEST(IntervalTreeTest, RandomOperationsMatchBruteForceModel) {
  std::mt19937_64 rng(std::getenv("SEED") ? std::strtoull(std::getenv("SEED"), nullptr, 10) : 12345);
  std::vector<Item> items(300);
  for (std::size_t i = 0; i < items.size(); ++i) items[i].id = static_cast<int>(i);
  IntervalTree tree;
  std::size_t linked = 0;
  for (int step = 0; step < 6000; ++step) {
    Item& it = items[rng() % items.size()];
    // Bias towards growing, then shrinking, so both large and empty trees are visited.
    const bool grow = (step / 1500) % 2 == 0;
    if (!it.node.linked() && (grow || rng() % 3 == 0)) {
      it.node.range = rng() % 50 == 0 ? Interval::full() : random_interval(rng);
      tree.insert(&it.node);
      ++linked;
    } else if (it.node.linked()) {
      tree.remove(&it.node);
      --linked;
    }
    ASSERT_EQ(tree.size(), linked);
    tree.check_invariants();

    const std::vector<Item*> sorted = linked_sorted(items);
    // In-order iteration.
    std::size_t k = 0;
    for (IntervalTreeNode* n = tree.first(); n; n = tree.next(n), ++k) {
      ASSERT_LT(k, sorted.size());
      ASSERT_EQ(n, &sorted[k]->node);
    }
    ASSERT_EQ(k, sorted.size());

    // Overlap queries.
    for (int q = 0; q < 3; ++q) {
      const Interval range = q == 0 && step % 11 == 0 ? Interval::full() : random_interval(rng);
      std::vector<IntervalTreeNode*> expect;
      for (Item* x : sorted) {
        if (x->node.range.overlaps(range)) expect.push_back(&x->node);
      }
      std::vector<IntervalTreeNode*> got;
      for (IntervalTreeNode* n = tree.first_overlap(range); n; n = tree.next_overlap(n, range)) {
        got.push_back(n);
      }
      ASSERT_EQ(got, expect) << "range [" << range.start << ", " << range.last << "]";
    }

    // Gaps, with and without a size filter.
    const Interval within = step % 13 == 0 ? Interval::full() : random_interval(rng);
    const std::uint64_t min_size = rng() % 3 == 0 ? 0 : rng() % 4 == 0 ? kMax : 1 + rng() % 64;
    std::vector<Interval> expect;
    for (Interval h : brute_holes(sorted, within)) {
      if (h.last - h.start >= (min_size == 0 ? 0 : min_size - 1)) expect.push_back(h);
    }
    std::vector<Interval> got;
    tree.for_each_gap(within, min_size, [&](Interval g) {
      got.push_back(g);
      return true;
    });
    ASSERT_EQ(got, expect) << "within [" << within.start << ", " << within.last << "] min " << min_size;
  }
  tree.clear();
}

// Nodes that never overlap (how iopt keeps its areas): the one-path lookup gives first_overlap's answer.
TEST(IntervalTreeTest, DisjointLookupMatchesTheGeneralOne) {
  std::mt19937_64 rng(7);
  std::vector<Item> items(300);
  IntervalTree tree;
  for (int step = 0; step < 4000; ++step) {
    Item& it = items[rng() % items.size()];
    if (it.node.linked()) {
      tree.remove(&it.node);
    } else {
      const Interval candidate = random_interval(rng);
      if (tree.first_overlap(candidate) == nullptr) {
        it.node.range = candidate;
        tree.insert(&it.node);
      }
    }
    for (int q = 0; q < 4; ++q) {
      const Interval range = q == 0 ? Interval::full() : random_interval(rng);
      ASSERT_EQ(tree.first_overlap_disjoint(range), tree.first_overlap(range))
          << "range [" << range.start << ", " << range.last << "]";
    }
  }
  EXPECT_GT(tree.size(), 0u);
  tree.clear();
}

// Gap exclusions: after any change to either tree the figures equal a fresh computation (check_invariants
// recomputes them), and a gap walk reports only gaps that fit, in order, missing none whose parts outside
// the excluded nodes fit.
TEST(IntervalTreeTest, GapExclusionsKeepTheWalkComplete) {
  std::mt19937_64 rng(std::getenv("SEED") ? std::strtoull(std::getenv("SEED"), nullptr, 10) : 2024);
  std::vector<Item> items(200), excluded(12);
  IntervalTree tree, ex;
  tree.set_gap_exclusions(&ex);
  bool excluding = true;
  auto fits = [](Interval h, std::uint64_t min_size, std::uint64_t alignment) {
    std::uint64_t c = 0;
    if (__builtin_add_overflow(h.start, alignment - 1, &c)) return false;
    c &= ~(alignment - 1);
    return c <= h.last && h.last - c >= min_size - 1;
  };
  for (int step = 0; step < 5000; ++step) {
    const int what = static_cast<int>(rng() % 16);
    if (what == 0) {
      excluding = !excluding;
      tree.set_gap_exclusions(excluding ? &ex : nullptr);
    } else if (what < 4) {
      Item& e = excluded[rng() % excluded.size()];
      const Interval before = e.node.range;
      if (e.node.linked()) {
        ex.remove(&e.node);
      } else {
        e.node.range = random_interval(rng);
        ex.insert(&e.node);
      }
      if (excluding) tree.gap_exclusions_changed(e.node.linked() ? e.node.range : before);
    } else {
      Item& it = items[rng() % items.size()];
      if (it.node.linked()) {
        tree.remove(&it.node);
      } else {
        it.node.range = random_interval(rng);
        tree.insert(&it.node);
      }
    }
    tree.check_invariants();

    const std::vector<Item*> sorted = linked_sorted(items);
    const std::vector<Item*> ex_sorted = linked_sorted(excluded);
    const Interval within = step % 7 == 0 ? Interval::full() : random_interval(rng);
    const std::uint64_t min_size = 1 + rng() % (rng() % 2 ? 8 : 0x3000);
    const std::uint64_t alignment = std::uint64_t{1} << (rng() % 2 ? 0 : 12 + rng() % 5);
    std::vector<Interval> got;
    tree.for_each_gap(within, min_size, alignment, [&](Interval g) {
      got.push_back(g);
      return true;
    });
    const std::vector<Interval> holes = brute_holes(sorted, within);
    std::size_t k = 0;
    for (const Interval h : holes) {
      bool must = false;
      if (!excluding || ex_sorted.empty()) {
        must = fits(h, min_size, alignment);
      } else {
        for (const Interval free : brute_holes(ex_sorted, h)) must = must || fits(free, min_size, alignment);
      }
      if (k < got.size() && got[k] == h) {
        ASSERT_TRUE(fits(h, min_size, alignment)) << "step " << step << ": reported a gap that does not fit";
        ++k;
      } else {
        ASSERT_FALSE(must) << "step " << step << ": missed [" << h.start << ", " << h.last << "]";
      }
    }
    ASSERT_EQ(k, got.size()) << "step " << step << ": reported something that is not a gap, or out of order";
  }
  tree.clear();
  ex.clear();
}

TEST(IntervalTreeTest, GapWalkStopsWhenTheCallbackSaysSo) {
  std::vector<Item> items(10);
  IntervalTree tree;
  for (std::size_t i = 0; i < items.size(); ++i) {
    items[i].node.range = {i * 10, i * 10 + 4};
    tree.insert(&items[i].node);
  }
  int calls = 0;
  EXPECT_FALSE(tree.for_each_gap({0, 1000}, 1, [&](Interval g) {
    ++calls;
    return g.start < 20;
  }));
  EXPECT_EQ(calls, 3);  // [5,9] and [15,19] continue, [25,29] stops
  tree.clear();
}

// The max-gap augmentation lets the walk step over a large full prefix: with 100,000 packed nodes and
// one hole near the end, finding a hole of 2 addresses visits O(log n) nodes. Measured indirectly: the
// walk must finish quickly even when repeated many times.
TEST(IntervalTreeTest, GapWalkSkipsPackedSubtrees) {
  constexpr std::size_t kN = 100000;
  std::vector<Item> items(kN);
  IntervalTree tree;
  for (std::size_t i = 0; i < kN; ++i) {
    // Unit holes between neighbours, except one 3-address hole before the last node.
    const std::uint64_t start = i * 2 + (i == kN - 1 ? 2 : 0);
    items[i].node.range = {start, start};
    tree.insert(&items[i].node);
  }
  tree.check_invariants();
  Interval found{};
  for (int rep = 0; rep < 10000; ++rep) {
    ASSERT_FALSE(tree.for_each_gap({0, kMax}, 3, [&](Interval g) {
      found = g;
      return false;
    }));
  }
  EXPECT_EQ(found, (Interval{(kN - 1) * 2 - 1, (kN - 1) * 2 + 1}));
  tree.clear();
}

}  // namespace
}  // namespace uiommufd
