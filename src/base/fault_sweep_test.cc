#include "uiommufd/base/fault_sweep.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/result.h"

namespace uiommufd {
namespace {

UIOMMUFD_FAULT_SITE(g_toy_lookup, "toy.lookup", ENOENT);
UIOMMUFD_FAULT_SITE(g_toy_alloc, "toy.alloc", ENOMEM);
UIOMMUFD_FAULT_SITE(g_toy_copy, "toy.copy", EFAULT);

// A toy operation with three sites that builds two resources and must release them on any failure.
class Toy {
 public:
  Status run() {
    TRY(inject(g_toy_lookup));
    ++live_;
    Status st = alloc_and_copy();
    if (!st.ok()) --live_;  // unwind the first resource
    return st;
  }
  void teardown() { live_ = 0; }
  int live() const { return live_; }

 private:
  Status alloc_and_copy() {
    TRY(inject(g_toy_alloc));
    ++live_;
    if (Status st = inject(g_toy_copy); !st.ok()) {
      --live_;
      return st;
    }
    return Status();
  }

  int live_ = 0;
};

TEST(SweepFailNthTest, FailsEachOfThreeSitesThenSucceeds) {
  Toy toy;
  std::vector<std::pair<unsigned, int>> calls;
  std::vector<int> live_after_failure;
  SweepResult r = sweep_fail_nth([&] { toy.teardown(); }, [&] { return toy.run(); },
                                 [&](unsigned n, Status st) {
                                   calls.emplace_back(n, st.error());
                                   if (!st.ok()) live_after_failure.push_back(toy.live());
                                   EXPECT_EQ(fail_nth_get(), 0u) << "after_each must run disarmed";
                                 });
  EXPECT_EQ(r.sites_failed, 3u);
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok());
  EXPECT_EQ(r.fired_sites, (std::vector<std::string>{"toy.lookup", "toy.alloc", "toy.copy"}));
  EXPECT_EQ(calls, (std::vector<std::pair<unsigned, int>>{{1, ENOENT}, {2, ENOMEM}, {3, EFAULT}, {4, 0}}));
  EXPECT_EQ(live_after_failure, (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(toy.live(), 2);
}

TEST(SweepFailNthTest, SetupRunsBeforeEveryAttemptAndIsNotCounted) {
  int setups = 0;
  SweepResult r = sweep_fail_nth(
      [&] {
        ++setups;
        // Sites hit during setup run disarmed and do not shift the sweep.
        EXPECT_FALSE(should_fail(g_toy_lookup));
      },
      [] { return inject(g_toy_alloc); }, [](unsigned, Status) {});
  EXPECT_EQ(setups, 2);
  EXPECT_EQ(r.sites_failed, 1u);
}

TEST(SweepFailNthTest, OperationWithoutSitesSucceedsAtOnce) {
  SweepResult r = sweep_fail_nth([] {}, [] { return Status(); }, [](unsigned, Status) {});
  EXPECT_EQ(r.sites_failed, 0u);
  EXPECT_TRUE(r.fired_sites.empty());
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok());
}

TEST(SweepFailNthTest, FinalStatusReportsACompletedRunThatFailed) {
  SweepResult r = sweep_fail_nth([] {}, [] { return Status::error(EBUSY); }, [](unsigned, Status) {});
  EXPECT_EQ(r.sites_failed, 0u);
  EXPECT_EQ(r.final_status, Status::error(EBUSY));
}

TEST(SweepFailNthTest, ReachingTheCapIsReported) {
  // An operation that hits more sites than the cap, e.g. one per page.
  auto many_sites = [] {
    for (int i = 0; i < 100; ++i) TRY(inject(g_toy_alloc));
    return Status();
  };
  unsigned after_calls = 0;
  SweepResult r = sweep_fail_nth([] {}, many_sites, [&](unsigned, Status) { ++after_calls; }, 10);
  EXPECT_TRUE(r.hit_cap);
  EXPECT_EQ(r.sites_failed, 10u);
  EXPECT_EQ(after_calls, 10u);
  EXPECT_EQ(r.final_status, Status::error(ENOMEM));
  EXPECT_EQ(fail_nth_get(), 0u);
}

TEST(SweepFailNthTest, SwallowedFailureStillCountsAsFired) {
  // A fallback path (like the kernel's batch-buffer allocation) absorbs the injected failure.
  auto with_fallback = [] {
    if (!inject(g_toy_alloc).ok()) {
      // fall back to a smaller buffer
    }
    return Status();
  };
  std::vector<int> statuses;
  SweepResult r = sweep_fail_nth([] {}, with_fallback, [&](unsigned, Status st) { statuses.push_back(st.error()); });
  EXPECT_EQ(r.sites_failed, 1u);
  EXPECT_EQ(statuses, (std::vector<int>{0, 0}));
}

}  // namespace
}  // namespace uiommufd
