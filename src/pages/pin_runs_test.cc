#include "uiommufd/pages/pin_runs.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

namespace uiommufd {
namespace {

using Intervals = std::vector<Interval>;

TEST(PinRunsTest, AddReportsOnlyTheIndicesThatWentFromZeroToOne) {
  PinRuns runs;
  Intervals newly;
  ASSERT_TRUE(runs.add(0, 9, &newly).ok());
  EXPECT_EQ(newly, (Intervals{{0, 9}}));
  ASSERT_TRUE(runs.add(5, 14, &newly).ok());
  EXPECT_EQ(newly, (Intervals{{10, 14}}));
  EXPECT_EQ(runs.users(0), 1u);
  EXPECT_EQ(runs.users(5), 2u);
  EXPECT_EQ(runs.users(9), 2u);
  EXPECT_EQ(runs.users(10), 1u);
  EXPECT_EQ(runs.users(15), 0u);
  EXPECT_EQ(runs.pinned_pages(), 15u);
  EXPECT_EQ(runs.run_count(), 3u);
  runs.check_invariants();
}

TEST(PinRunsTest, AddAcrossSeveralHolesReportsEachHoleInOrder) {
  PinRuns runs;
  ASSERT_TRUE(runs.add(2, 3, nullptr).ok());
  ASSERT_TRUE(runs.add(6, 7, nullptr).ok());
  Intervals newly;
  ASSERT_TRUE(runs.add(0, 9, &newly).ok());
  EXPECT_EQ(newly, (Intervals{{0, 1}, {4, 5}, {8, 9}}));
  EXPECT_EQ(runs.pinned_pages(), 10u);
  runs.check_invariants();
}

TEST(PinRunsTest, RemoveReportsOnlyTheIndicesThatWentFromOneToZero) {
  PinRuns runs;
  ASSERT_TRUE(runs.add(0, 9, nullptr).ok());
  ASSERT_TRUE(runs.add(5, 14, nullptr).ok());
  Intervals gone;
  runs.remove(0, 9, &gone);
  EXPECT_EQ(gone, (Intervals{{0, 4}}));
  EXPECT_EQ(runs.pinned_pages(), 10u);
  EXPECT_EQ(runs.run_count(), 1u);  // [5, 14] with one user each: merged back into one run
  runs.remove(5, 14, &gone);
  EXPECT_EQ(gone, (Intervals{{5, 14}}));
  EXPECT_TRUE(runs.empty());
  EXPECT_EQ(runs.pinned_pages(), 0u);
}

TEST(PinRunsTest, RemoveReportsMaximalRangesAcrossStoredRuns) {
  PinRuns runs;
  ASSERT_TRUE(runs.add(0, 4, nullptr).ok());
  ASSERT_TRUE(runs.add(5, 9, nullptr).ok());  // merges with [0, 4]
  ASSERT_TRUE(runs.add(3, 6, nullptr).ok());
  runs.remove(3, 6, nullptr);
  Intervals gone;
  runs.remove(0, 9, &gone);
  EXPECT_EQ(gone, (Intervals{{0, 9}}));
}

TEST(PinRunsTest, TouchingRunsWithEqualCountsAreMerged) {
  PinRuns runs;
  Intervals newly;
  ASSERT_TRUE(runs.add(0, 4, &newly).ok());
  ASSERT_TRUE(runs.add(5, 9, &newly).ok());
  EXPECT_EQ(newly, (Intervals{{5, 9}}));
  EXPECT_EQ(runs.run_count(), 1u);
  ASSERT_TRUE(runs.add(0, 9, nullptr).ok());
  EXPECT_EQ(runs.run_count(), 1u);
  EXPECT_EQ(runs.users(7), 2u);
  runs.remove(0, 9, nullptr);
  runs.remove(0, 9, nullptr);
  EXPECT_TRUE(runs.empty());
}

TEST(PinRunsTest, AddIsUndoneExactlyByRemoveOfTheSameRange) {
  PinRuns runs;
  ASSERT_TRUE(runs.add(10, 19, nullptr).ok());
  ASSERT_TRUE(runs.add(15, 30, nullptr).ok());
  ASSERT_TRUE(runs.add(40, 40, nullptr).ok());
  const std::size_t run_count = runs.run_count();
  std::vector<std::uint32_t> before;
  for (std::uint64_t i = 0; i < 64; ++i) before.push_back(runs.users(i));

  ASSERT_TRUE(runs.add(5, 45, nullptr).ok());
  runs.remove(5, 45, nullptr);

  for (std::uint64_t i = 0; i < 64; ++i) EXPECT_EQ(runs.users(i), before[i]) << "index " << i;
  EXPECT_EQ(runs.run_count(), run_count);
  EXPECT_EQ(runs.pinned_pages(), 10u + 16u + 1u - 5u);
  runs.check_invariants();
}

TEST(PinRunsTest, RangesAtTheTopOfTheIndexSpaceDoNotWrap) {
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  PinRuns runs;
  Intervals newly;
  ASSERT_TRUE(runs.add(kMax - 9, kMax, &newly).ok());
  EXPECT_EQ(newly, (Intervals{{kMax - 9, kMax}}));
  ASSERT_TRUE(runs.add(kMax - 4, kMax, &newly).ok());
  EXPECT_TRUE(newly.empty());
  EXPECT_EQ(runs.users(kMax), 2u);
  EXPECT_EQ(runs.pinned_pages(), 10u);
  runs.check_invariants();
  runs.remove(kMax - 4, kMax, nullptr);
  Intervals gone;
  runs.remove(kMax - 9, kMax, &gone);
  EXPECT_EQ(gone, (Intervals{{kMax - 9, kMax}}));
  EXPECT_TRUE(runs.empty());
}

TEST(PinRunsTest, OneHugeRangeIsOneRun) {
  PinRuns runs;
  ASSERT_TRUE(runs.add(0, (std::uint64_t{1} << 40) - 1, nullptr).ok());
  EXPECT_EQ(runs.run_count(), 1u);
  EXPECT_EQ(runs.pinned_pages(), std::uint64_t{1} << 40);
  runs.remove(0, (std::uint64_t{1} << 40) - 1, nullptr);
  EXPECT_TRUE(runs.empty());
}

TEST(PinRunsTest, RunCountFollowsTheStructureOfThePatternNotItsSize) {
  PinRuns runs;
  // 1000 disjoint chunks of 1000 pages each, then one range over all of them: 2000 + 1 runs at most
  // (chunks with 2 users, gaps with 1), never a million.
  for (std::uint64_t c = 0; c < 1000; ++c) ASSERT_TRUE(runs.add(c * 2000, c * 2000 + 999, nullptr).ok());
  EXPECT_EQ(runs.run_count(), 1000u);
  ASSERT_TRUE(runs.add(0, 2000 * 1000 - 1, nullptr).ok());
  EXPECT_LE(runs.run_count(), 2001u);
  EXPECT_EQ(runs.pinned_pages(), 2000u * 1000u);
  runs.check_invariants();
  // Nested ranges [i, N - 1 - i]: one distinct count per nesting level on each side.
  PinRuns nested;
  constexpr std::uint64_t kN = 1 << 20;
  for (std::uint64_t i = 0; i < 100; ++i) ASSERT_TRUE(nested.add(i * 100, kN - 1 - i * 100, nullptr).ok());
  EXPECT_EQ(nested.run_count(), 199u);
  nested.check_invariants();
  // Pinning the same range many times is still one run.
  PinRuns same;
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(same.add(4096, 8191, nullptr).ok());
  EXPECT_EQ(same.run_count(), 1u);
  EXPECT_EQ(same.users(5000), 1000u);
}

// Maximal ranges of `model` where `pred(before, after)` holds, as PinRuns reports them.
template <typename Pred>
Intervals edges(const std::vector<std::uint32_t>& before, const std::vector<std::uint32_t>& after, Pred pred) {
  Intervals out;
  for (std::uint64_t i = 0; i < before.size(); ++i) {
    if (!pred(before[i], after[i])) continue;
    if (!out.empty() && out.back().last + 1 == i) {
      out.back().last = i;
    } else {
      out.push_back({i, i});
    }
  }
  return out;
}

// Runs in the canonical form: maximal ranges of equal non-zero counts.
std::size_t canonical_runs(const std::vector<std::uint32_t>& model) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < model.size(); ++i) {
    if (model[i] != 0 && (i == 0 || model[i - 1] != model[i])) ++n;
  }
  return n;
}

TEST(PinRunsTest, RandomAddRemoveMatchesAPerPageModel) {
  constexpr std::uint64_t kIndices = 300;
  std::mt19937_64 rng(0x5eed);
  PinRuns runs;
  std::vector<std::uint32_t> model(kIndices, 0);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> live;  // ranges added and not yet removed

  for (int step = 0; step < 20000; ++step) {
    const std::vector<std::uint32_t> before = model;
    Intervals reported;
    const bool do_add = live.empty() || (rng() % 100) < (live.size() < 40 ? 60 : 40);
    if (do_add) {
      const std::uint64_t first = rng() % kIndices;
      // Mostly short ranges, sometimes long ones, so both fragmentation and merging happen.
      const std::uint64_t max_len = (rng() % 4 == 0) ? kIndices - first : std::min<std::uint64_t>(16, kIndices - first);
      const std::uint64_t last = first + rng() % max_len;
      ASSERT_TRUE(runs.add(first, last, &reported).ok());
      for (std::uint64_t i = first; i <= last; ++i) ++model[i];
      live.emplace_back(first, last);
      EXPECT_EQ(reported, edges(before, model, [](auto b, auto a) { return b == 0 && a == 1; })) << "step " << step;
    } else {
      const std::size_t k = rng() % live.size();
      const auto [first, last] = live[k];
      live[k] = live.back();
      live.pop_back();
      runs.remove(first, last, &reported);
      for (std::uint64_t i = first; i <= last; ++i) --model[i];
      EXPECT_EQ(reported, edges(before, model, [](auto b, auto a) { return b == 1 && a == 0; })) << "step " << step;
    }
    runs.check_invariants();
    ASSERT_EQ(runs.run_count(), canonical_runs(model)) << "step " << step;
    std::uint64_t pinned = 0;
    for (std::uint64_t i = 0; i < kIndices; ++i) {
      ASSERT_EQ(runs.users(i), model[i]) << "step " << step << " index " << i;
      pinned += model[i] != 0;
    }
    ASSERT_EQ(runs.pinned_pages(), pinned);
  }
  for (const auto& [first, last] : live) runs.remove(first, last, nullptr);
  EXPECT_TRUE(runs.empty());
  EXPECT_EQ(runs.pinned_pages(), 0u);
}

#ifndef NDEBUG
TEST(PinRunsDeathTest, RemovingAnUnpinnedIndexIsCaughtInDebugBuilds) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  PinRuns runs;
  ASSERT_TRUE(runs.add(0, 3, nullptr).ok());
  EXPECT_DEATH(runs.remove(2, 5, nullptr), "no users");
}
#endif

TEST(PinRunsTest, PinnedInClipsStoredRunsToTheRange) {
  PinRuns runs;
  ASSERT_TRUE(runs.add(2, 9, nullptr).ok());
  ASSERT_TRUE(runs.add(5, 6, nullptr).ok());  // runs [2,4]x1 [5,6]x2 [7,9]x1
  ASSERT_TRUE(runs.add(20, 20, nullptr).ok());
  std::vector<Interval> out;
  runs.pinned_in(3, 8, &out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].start, 3u);
  EXPECT_EQ(out[0].last, 4u);
  EXPECT_EQ(out[1].start, 5u);
  EXPECT_EQ(out[2].last, 8u);
  out.clear();
  runs.pinned_in(10, 19, &out);
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace uiommufd
