// Accounting of pinned pages (docs/semantics.md#pages-creation, #accounting).
#include "uiommufd/mm/accounting.h"

#include "test_region.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "accounting_internal.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/page.h"

namespace uiommufd {
namespace {

constexpr AccountMode kAllModes[] = {AccountMode::kNone, AccountMode::kUser, AccountMode::kMm};

// Counters are process-wide: every test must leave them as it found them, and the override unset.
class AccountingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    user0_ = account_locked_pages(AccountMode::kUser);
    mm0_ = account_locked_pages(AccountMode::kMm);
    pinned0_ = account_pinned_vm();
  }
  void TearDown() override {
    set_memlock_limit_for_testing(std::nullopt);
    fail_nth_set(0);
    EXPECT_EQ(account_locked_pages(AccountMode::kUser), user0_);
    EXPECT_EQ(account_locked_pages(AccountMode::kMm), mm0_);
    EXPECT_EQ(account_pinned_vm(), pinned0_);
  }
  std::uint64_t user0_ = 0, mm0_ = 0, pinned0_ = 0;
};

TEST(AccountModeTest, RuleOfSemantics32) {
  using mm_internal::account_mode_for;
  static_assert(account_mode_for(/*cap=*/true, /*mm=*/false) == AccountMode::kNone);
  static_assert(account_mode_for(/*cap=*/true, /*mm=*/true) == AccountMode::kNone);  // only kUser turns kMm
  static_assert(account_mode_for(/*cap=*/false, /*mm=*/false) == AccountMode::kUser);
  static_assert(account_mode_for(/*cap=*/false, /*mm=*/true) == AccountMode::kMm);
}

TEST(AccountModeTest, DefaultFollowsThisProcesssCapability) {
  const bool cap = has_cap_ipc_lock();
  EXPECT_EQ(default_account_mode(false), cap ? AccountMode::kNone : AccountMode::kUser);
  EXPECT_EQ(default_account_mode(true), cap ? AccountMode::kNone : AccountMode::kMm);
}

TEST(AccountModeTest, WithoutCapIpcLockPagesAreUserOrMm) {
  if (!has_cap_ipc_lock()) GTEST_SKIP() << "already without CAP_IPC_LOCK; covered by the test above";
  // Drop the capability in a child, so both branches run for real on a machine where we are root.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!mm_testing::drop_cap_ipc_lock()) _exit(3);
    const bool ok = !has_cap_ipc_lock() && default_account_mode(false) == AccountMode::kUser &&
                    default_account_mode(true) == AccountMode::kMm;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(AccountingTest, NoneIsNeverLimitedButCountsPinnedVm) {
  set_memlock_limit_for_testing(0);
  fail_nth_set(1);
  EXPECT_EQ(account_charge(AccountMode::kNone, 1000), Status());
  EXPECT_EQ(fail_nth_get(), 1u) << "kNone has no fault site";
  fail_nth_set(0);
  EXPECT_EQ(account_locked_pages(AccountMode::kNone), 0u);
  EXPECT_EQ(account_pinned_vm(), pinned0_ + 1000);
  account_uncharge(AccountMode::kNone, 1000);
}

TEST_F(AccountingTest, LimitPerMode) {
  for (AccountMode mode : {AccountMode::kUser, AccountMode::kMm}) {
    SCOPED_TRACE(static_cast<int>(mode));
    const std::uint64_t base = account_locked_pages(mode);
    set_memlock_limit_for_testing(base + 10);
    EXPECT_EQ(account_charge(mode, 6), Status());
    EXPECT_EQ(account_charge(mode, 4), Status());  // exactly at the limit is allowed
    EXPECT_EQ(account_locked_pages(mode), base + 10);
    EXPECT_EQ(account_charge(mode, 1).error(), ENOMEM);
    EXPECT_EQ(account_locked_pages(mode), base + 10);  // a failed charge changes nothing
    EXPECT_EQ(account_pinned_vm(), pinned0_ + 10);
    account_uncharge(mode, 3);
    EXPECT_EQ(account_charge(mode, 3), Status());
    account_uncharge(mode, 10);
    EXPECT_EQ(account_locked_pages(mode), base);
  }
}

TEST_F(AccountingTest, UserAndMmCountersAreSeparate) {
  set_memlock_limit_for_testing(user0_ + mm0_ + 8);
  ASSERT_EQ(account_charge(AccountMode::kUser, 5), Status());
  ASSERT_EQ(account_charge(AccountMode::kMm, 7), Status());
  EXPECT_EQ(account_locked_pages(AccountMode::kUser), user0_ + 5);
  EXPECT_EQ(account_locked_pages(AccountMode::kMm), mm0_ + 7);
  EXPECT_EQ(account_pinned_vm(), pinned0_ + 12);
  account_uncharge(AccountMode::kUser, 5);
  account_uncharge(AccountMode::kMm, 7);
}

TEST_F(AccountingTest, ZeroLimitAndZeroPages) {
  set_memlock_limit_for_testing(0);
  for (AccountMode mode : {AccountMode::kUser, AccountMode::kMm}) {
    if (account_locked_pages(mode) != 0) continue;
    EXPECT_EQ(account_charge(mode, 1).error(), ENOMEM);
    fail_nth_set(1);
    EXPECT_EQ(account_charge(mode, 0), Status());  // nothing to charge: no site, no limit
    EXPECT_EQ(fail_nth_get(), 1u);
    fail_nth_set(0);
  }
}

TEST_F(AccountingTest, WrapIsEnomemEvenWhenUnlimited) {
  set_memlock_limit_for_testing(UINT64_MAX);
  ASSERT_EQ(account_charge(AccountMode::kUser, 1), Status());
  EXPECT_EQ(account_charge(AccountMode::kUser, UINT64_MAX).error(), ENOMEM);
  account_uncharge(AccountMode::kUser, 1);
}

// Sets the soft RLIMIT_MEMLOCK for the scope, restoring it after (lowering and restoring up to the hard
// limit needs no privilege).
class ScopedMemlockRlimit {
 public:
  explicit ScopedMemlockRlimit(rlim_t soft) {
    ok_ = getrlimit(RLIMIT_MEMLOCK, &saved_) == 0 && (saved_.rlim_max == RLIM_INFINITY || soft <= saved_.rlim_max);
    if (!ok_) return;
    rlimit rl = saved_;
    rl.rlim_cur = soft;
    ok_ = setrlimit(RLIMIT_MEMLOCK, &rl) == 0;
  }
  ~ScopedMemlockRlimit() {
    if (ok_) setrlimit(RLIMIT_MEMLOCK, &saved_);
  }
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  bool ok_ = false;
};

TEST_F(AccountingTest, RealRlimitAppliesToUserAlways) {
  ScopedMemlockRlimit limit((user0_ + 16) * kPageSize);
  ASSERT_TRUE(limit.ok());
  EXPECT_EQ(account_charge(AccountMode::kUser, 16), Status());
  EXPECT_EQ(account_charge(AccountMode::kUser, 1).error(), ENOMEM);  // even with CAP_IPC_LOCK
  account_uncharge(AccountMode::kUser, 16);
}

TEST_F(AccountingTest, RealRlimitInPagesRoundsDown) {
  ScopedMemlockRlimit limit((user0_ + 2) * kPageSize + kPageSize - 1);
  ASSERT_TRUE(limit.ok());
  EXPECT_EQ(account_charge(AccountMode::kUser, 3).error(), ENOMEM);
  EXPECT_EQ(account_charge(AccountMode::kUser, 2), Status());
  account_uncharge(AccountMode::kUser, 2);
}

TEST_F(AccountingTest, CapIpcLockLiftsTheMmLimit) {
  ScopedMemlockRlimit limit((mm0_ + 4) * kPageSize);
  ASSERT_TRUE(limit.ok());
  if (has_cap_ipc_lock()) {
    EXPECT_EQ(account_charge(AccountMode::kMm, 100), Status());
    account_uncharge(AccountMode::kMm, 100);
    // The test override switches the bypass off.
    set_memlock_limit_for_testing(mm0_ + 4);
    EXPECT_EQ(account_charge(AccountMode::kMm, 100).error(), ENOMEM);
  } else {
    EXPECT_EQ(account_charge(AccountMode::kMm, 100).error(), ENOMEM);
  }
}

TEST_F(AccountingTest, RlimInfinityIsUnlimited) {
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
  if (rl.rlim_max != RLIM_INFINITY) GTEST_SKIP() << "hard RLIMIT_MEMLOCK is finite here";
  ScopedMemlockRlimit limit(RLIM_INFINITY);
  ASSERT_TRUE(limit.ok());
  EXPECT_EQ(account_charge(AccountMode::kUser, std::uint64_t{1} << 40), Status());
  account_uncharge(AccountMode::kUser, std::uint64_t{1} << 40);
}

TEST_F(AccountingTest, FaultSiteFiresBeforeAnyCounterMoves) {
  set_memlock_limit_for_testing(UINT64_MAX);
  for (AccountMode mode : {AccountMode::kUser, AccountMode::kMm}) {
    fail_nth_set(1);
    EXPECT_EQ(account_charge(mode, 5).error(), ENOMEM);
    EXPECT_EQ(fail_nth_get(), 0u);
    EXPECT_STREQ(last_injected_fault(), "pages.account");
    EXPECT_EQ(account_locked_pages(mode), mode == AccountMode::kUser ? user0_ : mm0_);
    EXPECT_EQ(account_pinned_vm(), pinned0_);
  }
  bool registered = false;
  for (const FaultSite* site : fault_sites())
    if (std::string(site->name()) == "pages.account") registered = site->error() == ENOMEM;
  EXPECT_TRUE(registered);
}

TEST_F(AccountingTest, ConcurrentChargeAndUnchargeBalance) {
  constexpr std::uint64_t kLimit = 1000;
  set_memlock_limit_for_testing(std::max(user0_, mm0_) + kLimit);
  constexpr int kThreads = 8;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  std::atomic<bool> over_limit{false};
  std::atomic<std::uint64_t> ops{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::uint64_t held[3] = {};
      std::uint64_t i = 0;
      // Bounded both by count and by time, so slow sanitizer builds still finish quickly.
      for (; i < 200000 && std::chrono::steady_clock::now() < deadline; ++i) {
        const AccountMode mode = kAllModes[(i + t) % 3];
        const std::uint64_t n = 1 + (i * 7 + t) % 50;
        const auto m = static_cast<int>(mode);
        if (held[m] < 200 && account_charge(mode, n).ok()) {
          held[m] += n;
          if (account_locked_pages(AccountMode::kUser) > user0_ + kLimit ||
              account_locked_pages(AccountMode::kMm) > mm0_ + kLimit)
            over_limit = true;
        } else if (held[m] > 0) {
          const std::uint64_t give = std::min(held[m], n);
          account_uncharge(mode, give);
          held[m] -= give;
        }
      }
      for (AccountMode mode : kAllModes) account_uncharge(mode, held[static_cast<int>(mode)]);
      ops += i;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(over_limit.load());
  EXPECT_GT(ops.load(), 0u);
  // TearDown checks every counter is back where it started.
}

TEST_F(AccountingTest, UnderflowIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(account_uncharge(AccountMode::kUser, user0_ + 1), "cur >= npages");
  EXPECT_DEATH(account_uncharge(AccountMode::kNone, pinned0_ + 1), "cur >= npages");
}

}  // namespace
}  // namespace uiommufd
