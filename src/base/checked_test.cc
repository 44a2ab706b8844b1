#include "uiommufd/base/checked.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <limits>

namespace uiommufd {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// The helpers are usable in constant expressions.
static_assert([] {
  uint64_t out = 0;
  return checked_add(1, 2, &out) && out == 3;
}());
static_assert(is_aligned(0x2000, 0x1000) && align_down(0x2fff, 0x1000) == 0x2000);

TEST(CheckedAddTest, SumThatFitsSucceeds) {
  uint64_t out = 0;
  EXPECT_TRUE(checked_add(kMax - 1, 1, &out));
  EXPECT_EQ(out, kMax);
  EXPECT_TRUE(checked_add(0, 0, &out));
  EXPECT_EQ(out, 0u);
}

TEST(CheckedAddTest, WrapIsReported) {
  uint64_t out = 0;
  EXPECT_FALSE(checked_add(kMax, 1, &out));
  EXPECT_FALSE(checked_add(kMax, kMax, &out));
  EXPECT_FALSE(checked_add(1ull << 63, 1ull << 63, &out));
}

TEST(CheckedMulTest, ProductThatFitsSucceeds) {
  uint64_t out = 1;
  EXPECT_TRUE(checked_mul(kMax, 1, &out));
  EXPECT_EQ(out, kMax);
  EXPECT_TRUE(checked_mul(kMax, 0, &out));
  EXPECT_EQ(out, 0u);
  EXPECT_TRUE(checked_mul(1ull << 31, 1ull << 32, &out));
  EXPECT_EQ(out, 1ull << 63);
}

TEST(CheckedMulTest, WrapIsReported) {
  uint64_t out = 0;
  EXPECT_FALSE(checked_mul(1ull << 32, 1ull << 32, &out));
  EXPECT_FALSE(checked_mul(kMax, 2, &out));
}

TEST(AlignmentTest, IsPowerOf2) {
  EXPECT_FALSE(is_power_of_2(0));
  EXPECT_TRUE(is_power_of_2(1));
  EXPECT_TRUE(is_power_of_2(1ull << 63));
  EXPECT_FALSE(is_power_of_2(3));
  EXPECT_FALSE(is_power_of_2(kMax));
}

TEST(AlignmentTest, IsAligned) {
  EXPECT_TRUE(is_aligned(0, 4096));
  EXPECT_TRUE(is_aligned(8192, 4096));
  EXPECT_FALSE(is_aligned(4097, 4096));
  EXPECT_TRUE(is_aligned(kMax, 1));
  EXPECT_FALSE(is_aligned(kMax, 2));
  EXPECT_TRUE(is_aligned(1ull << 63, 1ull << 63));
}

TEST(AlignmentTest, AlignDownNeverOverflows) {
  EXPECT_EQ(align_down(0, 4096), 0u);
  EXPECT_EQ(align_down(4095, 4096), 0u);
  EXPECT_EQ(align_down(4096, 4096), 4096u);
  EXPECT_EQ(align_down(kMax, 4096), kMax - 4095);
  EXPECT_EQ(align_down(kMax, 1ull << 63), 1ull << 63);
}

TEST(AlignmentTest, AlignUpRoundsToNextMultiple) {
  EXPECT_EQ(*align_up_checked(0, 4096), 0u);
  EXPECT_EQ(*align_up_checked(1, 4096), 4096u);
  EXPECT_EQ(*align_up_checked(4096, 4096), 4096u);
  EXPECT_EQ(*align_up_checked(kMax, 1), kMax);
}

TEST(AlignmentTest, AlignUpOfAlignedValueNearTopSucceeds) {
  EXPECT_EQ(*align_up_checked(kMax - 4095, 4096), kMax - 4095);
}

TEST(AlignmentTest, AlignUpPast64BitsIsEoverflow) {
  EXPECT_EQ(align_up_checked(kMax, 2).error(), EOVERFLOW);
  EXPECT_EQ(align_up_checked(kMax - 4094, 4096).error(), EOVERFLOW);
  EXPECT_EQ(align_up_checked((1ull << 63) + 1, 1ull << 63).error(), EOVERFLOW);
}

}  // namespace
}  // namespace uiommufd
