#include "uiommufd/base/interval.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <limits>

namespace uiommufd {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

TEST(IntervalTest, FromLengthIsInclusive) {
  Result<Interval> r = Interval::from_length(0x1000, 0x1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->start, 0x1000u);
  EXPECT_EQ(r->last, 0x1fffu);
  EXPECT_EQ(r->length(), 0x1000u);
}

TEST(IntervalTest, FromLengthOfOneIsSingleAddress) {
  Interval i = *Interval::from_length(kMax, 1);
  EXPECT_EQ(i.start, kMax);
  EXPECT_EQ(i.last, kMax);
  EXPECT_EQ(i.length(), 1u);
}

TEST(IntervalTest, FromLengthZeroIsEinval) {
  EXPECT_EQ(Interval::from_length(0, 0).error(), EINVAL);
  EXPECT_EQ(Interval::from_length(kMax, 0).error(), EINVAL);
}

TEST(IntervalTest, FromLengthReachingTopSucceeds) {
  Interval i = *Interval::from_length(kMax - 0xfff, 0x1000);
  EXPECT_EQ(i.last, kMax);
  EXPECT_EQ(*Interval::from_length(0, kMax), (Interval{0, kMax - 1}));
  EXPECT_EQ(*Interval::from_length(1, kMax), (Interval{1, kMax}));
}

TEST(IntervalTest, FromLengthWrappingIsEoverflow) {
  EXPECT_EQ(Interval::from_length(kMax, 2).error(), EOVERFLOW);
  EXPECT_EQ(Interval::from_length(2, kMax).error(), EOVERFLOW);
  EXPECT_EQ(Interval::from_length(kMax - 0xfff, 0x1001).error(), EOVERFLOW);
}

TEST(IntervalTest, FullCoversTheWholeSpace) {
  Interval f = Interval::full();
  EXPECT_TRUE(f.is_full());
  EXPECT_TRUE(f.contains(0));
  EXPECT_TRUE(f.contains(kMax));
  EXPECT_TRUE(f.contains(Interval{5, 6}));
  EXPECT_FALSE((Interval{0, kMax - 1}).is_full());
  EXPECT_FALSE((Interval{1, kMax}).is_full());
  EXPECT_EQ((Interval{1, kMax}).length(), kMax);
}

TEST(IntervalTest, ContainsAddressIncludesBothEnds) {
  Interval i{10, 20};
  EXPECT_FALSE(i.contains(9));
  EXPECT_TRUE(i.contains(10));
  EXPECT_TRUE(i.contains(20));
  EXPECT_FALSE(i.contains(21));
}

TEST(IntervalTest, ContainsInterval) {
  Interval i{10, 20};
  EXPECT_TRUE(i.contains(Interval{10, 20}));
  EXPECT_TRUE(i.contains(Interval{12, 15}));
  EXPECT_FALSE(i.contains(Interval{9, 15}));
  EXPECT_FALSE(i.contains(Interval{15, 21}));
  EXPECT_FALSE(i.contains(Interval::full()));
}

TEST(IntervalTest, OverlapsWhenSharingAnEndpoint) {
  Interval i{10, 20};
  EXPECT_TRUE(i.overlaps(Interval{20, 30}));
  EXPECT_TRUE(i.overlaps(Interval{0, 10}));
  EXPECT_TRUE(i.overlaps(Interval{0, kMax}));
  EXPECT_TRUE(i.overlaps(Interval{15, 15}));
}

TEST(IntervalTest, DoesNotOverlapWhenDisjoint) {
  Interval i{10, 20};
  EXPECT_FALSE(i.overlaps(Interval{21, 30}));
  EXPECT_FALSE(i.overlaps(Interval{0, 9}));
  EXPECT_FALSE((Interval{kMax, kMax}).overlaps(Interval{0, kMax - 1}));
}

TEST(IntervalTest, IntersectGivesCommonPart) {
  Interval i{10, 20};
  EXPECT_EQ(i.intersect(Interval{15, 30}), (Interval{15, 20}));
  EXPECT_EQ(i.intersect(Interval{0, 10}), (Interval{10, 10}));
  EXPECT_EQ(i.intersect(Interval::full()), i);
  EXPECT_EQ(Interval::full().intersect(Interval::full()), Interval::full());
}

TEST(IntervalTest, IntersectOfDisjointIsEmpty) {
  EXPECT_FALSE((Interval{10, 20}).intersect(Interval{21, 30}).has_value());
}

TEST(IntervalTest, AdjacentBeforeOnlyWithoutGapOrOverlap) {
  Interval i{10, 20};
  EXPECT_TRUE(i.adjacent_before(Interval{21, 30}));
  EXPECT_FALSE(i.adjacent_before(Interval{22, 30}));
  EXPECT_FALSE(i.adjacent_before(Interval{20, 30}));
  EXPECT_FALSE((Interval{21, 30}).adjacent_before(i));
}

TEST(IntervalTest, NothingIsAdjacentAfterTheTop) {
  // last + 1 would wrap to 0; an interval at the top must not look adjacent to one at the bottom.
  EXPECT_FALSE((Interval{5, kMax}).adjacent_before(Interval{0, 3}));
  EXPECT_FALSE(Interval::full().adjacent_before(Interval::full()));
}

TEST(IntervalTest, EqualityComparesBothEnds) {
  EXPECT_EQ((Interval{1, 2}), (Interval{1, 2}));
  EXPECT_NE((Interval{1, 2}), (Interval{1, 3}));
  EXPECT_NE((Interval{0, 2}), (Interval{1, 2}));
}

}  // namespace
}  // namespace uiommufd
