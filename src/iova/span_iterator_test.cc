#include "uiommufd/iova/span_iterator.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace uiommufd {
namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

struct Span {
  Interval range;
  bool hole;
  friend bool operator==(const Span&, const Span&) = default;
};

std::ostream& operator<<(std::ostream& os, const Span& s) {
  return os << (s.hole ? "hole[" : "used[") << s.range.start << ", " << s.range.last << "]";
}

std::vector<Span> walk(Interval within, const IntervalTree& a, const IntervalTree* b) {
  std::vector<Span> out;
  for (SpanIterator it(within, a, b); !it.done(); it.next()) out.push_back({it.span(), it.is_hole()});
  return out;
}

// Owns nodes and a tree; inserts intervals given as literals.
struct Trees {
  std::vector<IntervalTreeNode> nodes = std::vector<IntervalTreeNode>(64);
  std::size_t used = 0;
  IntervalTree tree;
  void add(Interval r) {
    nodes.at(used).range = r;
    tree.insert(&nodes[used++]);
  }
  ~Trees() { tree.clear(); }
};

TEST(SpanIteratorTest, EmptyTreeIsOneHole) {
  IntervalTree empty;
  EXPECT_EQ(walk({5, 9}, empty, nullptr), (std::vector<Span>{{{5, 9}, true}}));
  EXPECT_EQ(walk({5, 9}, empty, &empty), (std::vector<Span>{{{5, 9}, true}}));
}

TEST(SpanIteratorTest, FullRangeOfEmptyTreeIsOneHoleWithoutOverflow) {
  IntervalTree empty;
  EXPECT_EQ(walk(Interval::full(), empty, nullptr), (std::vector<Span>{{Interval::full(), true}}));
}

TEST(SpanIteratorTest, FullRangeNodeIsOneUsedSpan) {
  Trees t;
  t.add(Interval::full());
  EXPECT_EQ(walk(Interval::full(), t.tree, nullptr), (std::vector<Span>{{Interval::full(), false}}));
  EXPECT_EQ(walk({kMax, kMax}, t.tree, nullptr), (std::vector<Span>{{{kMax, kMax}, false}}));
}

TEST(SpanIteratorTest, NodesAtBothEndsOfTheSpace) {
  Trees t;
  t.add({0, 0});
  t.add({kMax, kMax});
  EXPECT_EQ(walk(Interval::full(), t.tree, nullptr),
            (std::vector<Span>{{{0, 0}, false}, {{1, kMax - 1}, true}, {{kMax, kMax}, false}}));
}

TEST(SpanIteratorTest, AdjacentNodesMergeIntoOneUsedSpan) {
  Trees t;
  t.add({10, 19});
  t.add({20, 29});
  EXPECT_EQ(walk({0, 100}, t.tree, nullptr),
            (std::vector<Span>{{{0, 9}, true}, {{10, 29}, false}, {{30, 100}, true}}));
}

TEST(SpanIteratorTest, OverlappingNodesMergeAndAShortOneInsideALongOneIsAbsorbed) {
  Trees t;
  t.add({10, 50});
  t.add({12, 14});
  t.add({40, 60});
  EXPECT_EQ(walk({0, 100}, t.tree, nullptr),
            (std::vector<Span>{{{0, 9}, true}, {{10, 60}, false}, {{61, 100}, true}}));
}

TEST(SpanIteratorTest, SpansAreClippedToTheRange) {
  Trees t;
  t.add({0, 20});
  t.add({30, 100});
  EXPECT_EQ(walk({15, 40}, t.tree, nullptr),
            (std::vector<Span>{{{15, 20}, false}, {{21, 29}, true}, {{30, 40}, false}}));
}

TEST(SpanIteratorTest, TwoTreesMergeTheirNodes) {
  Trees a, b;
  a.add({10, 19});
  b.add({20, 24});
  b.add({40, 49});
  a.add({45, 59});
  EXPECT_EQ(walk({0, 70}, a.tree, &b.tree),
            (std::vector<Span>{
                {{0, 9}, true}, {{10, 24}, false}, {{25, 39}, true}, {{40, 59}, false}, {{60, 70}, true}}));
}

TEST(SpanIteratorTest, ForEachHoleAndUsedSpanStopEarly) {
  Trees t;
  t.add({10, 19});
  t.add({30, 39});
  int n = 0;
  EXPECT_FALSE(for_each_hole({0, 100}, t.tree, nullptr, [&](Interval) { return ++n < 2; }));
  EXPECT_EQ(n, 2);
  std::vector<Interval> used;
  EXPECT_TRUE(for_each_used_span({0, 100}, t.tree, nullptr, [&](Interval s) {
    used.push_back(s);
    return true;
  }));
  EXPECT_EQ(used, (std::vector<Interval>{{10, 19}, {30, 39}}));
}

// Random trees: spans alternate, tile the range exactly, holes touch no node, used spans are covered.
TEST(SpanIteratorTest, RandomTreesTileTheRangeWithMaximalSpans) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 400; ++round) {
    Trees a, b;
    auto coord = [&]() -> std::uint64_t {
      switch (rng() % 5) {
        case 0:
          return rng() % 2 ? 0 : kMax;
        case 1:
          return kMax - rng() % 64;
        default:
          return rng() % 64;
      }
    };
    const int na = static_cast<int>(rng() % 10), nb = static_cast<int>(rng() % 10);
    std::vector<Interval> all;
    for (int i = 0; i < na + nb; ++i) {
      std::uint64_t x = coord(), y = coord();
      if (x > y) std::swap(x, y);
      (i < na ? a : b).add({x, y});
      all.push_back({x, y});
    }
    std::uint64_t x = coord(), y = coord();
    if (x > y) std::swap(x, y);
    const Interval within = round % 10 == 0 ? Interval::full() : Interval{x, y};
    const std::vector<Span> both = walk(within, a.tree, &b.tree);
    ASSERT_FALSE(both.empty());
    ASSERT_EQ(both.front().range.start, within.start);
    ASSERT_EQ(both.back().range.last, within.last);
    for (std::size_t i = 0; i < both.size(); ++i) {
      const Span& s = both[i];
      if (i > 0) {
        ASSERT_EQ(both[i - 1].range.last + 1, s.range.start);
        ASSERT_NE(both[i - 1].hole, s.hole);
      }
      if (s.hole) {
        for (Interval n : all) ASSERT_FALSE(n.overlaps(s.range));
      } else {
        // Covered: walking the nodes that touch it in start order leaves no uncovered address.
        std::vector<Interval> touching;
        for (Interval n : all) {
          if (n.overlaps(s.range)) touching.push_back(n);
        }
        std::sort(touching.begin(), touching.end(), [](Interval l, Interval r) { return l.start < r.start; });
        ASSERT_FALSE(touching.empty());
        ASSERT_LE(touching.front().start, s.range.start);
        std::uint64_t covered = touching.front().last;
        for (Interval n : touching) {
          if (covered >= s.range.last) break;
          ASSERT_LE(n.start, covered + 1);
          covered = std::max(covered, n.last);
        }
        ASSERT_GE(covered, s.range.last);
      }
    }
    // With one tree, the same checks hold against that tree's nodes alone (holes are gaps of a).
    std::vector<Interval> holes_a;
    for_each_hole(within, a.tree, nullptr, [&](Interval h) {
      holes_a.push_back(h);
      return true;
    });
    std::vector<Interval> gaps_a;
    a.tree.for_each_gap(within, 1, [&](Interval g) {
      gaps_a.push_back(g);
      return true;
    });
    ASSERT_EQ(holes_a, gaps_a);
  }
}

}  // namespace
}  // namespace uiommufd
