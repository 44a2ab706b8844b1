// Pages created with lock_pinned: what a pin locks, what an unpin unlocks, and that every failure unlocks
// what it locked. Locking is observed in /proc (lock_probe.h), not through our own bookkeeping.
#include <cstdint>
#include <string>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../mm/test_region.h"
#include "lock_probe.h"
#include "pages_testing.h"

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd {
namespace {

using lock_probe::locked_pages_in;
using lock_probe::vm_locked_kib;
using mm_testing::TestRegion;
using pages_testing::Memfd;
using pages_testing::npinned;
using pages_testing::pin;
using pages_testing::unpin;

RefPtr<Pages> locked_user_pages(const TestRegion& r, bool lock = true,
                                AccountMode mode = AccountMode::kUser) {
  auto p = Pages::create_user(Mm::current(), r.uaddr(), r.len(), /*writable=*/true, mode, lock);
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  return p.ok() ? std::move(*p) : RefPtr<Pages>();
}

// Locked pages among [first, last] of `r`.
std::uint64_t locked(const TestRegion& r, std::uint64_t first, std::uint64_t last) {
  return locked_pages_in(r.page_uaddr(first), (last - first + 1) * kPageSize);
}

// Every test must end with nothing pinned, charged or locked, and without lock reports.
class PagesLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(Pages::total_pinned_pages(), 0u);
    user_before_ = account_locked_pages(AccountMode::kUser);
    vm_locked_before_ = vm_locked_kib();
    reports_before_ = lockdep::report_count();
  }
  void TearDown() override {
    set_memlock_limit_for_testing(std::nullopt);
    fail_nth_set(0);
    EXPECT_EQ(Pages::total_pinned_pages(), 0u);
    EXPECT_EQ(account_locked_pages(AccountMode::kUser), user_before_);
    EXPECT_EQ(vm_locked_kib(), vm_locked_before_);
    EXPECT_EQ(lockdep::report_count(), reports_before_);
  }

  std::uint64_t user_before_ = 0;
  long vm_locked_before_ = 0;
  std::size_t reports_before_ = 0;
};

TEST_F(PagesLockTest, LockPinnedIsOffByDefaultAndKeptAsCreated) {
  TestRegion r(1);
  auto off = Pages::create_user(Mm::current(), r.uaddr(), r.len(), true, AccountMode::kUser);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE((*off)->lock_pinned());
  EXPECT_TRUE(locked_user_pages(r)->lock_pinned());
}

TEST_F(PagesLockTest, PinLocksExactlyThePinnedPagesAndUnpinUnlocksThem) {
  TestRegion r(8);
  auto p = locked_user_pages(r);
  ASSERT_TRUE(pin(*p, 2, 5).ok());
  EXPECT_EQ(locked(r, 2, 5), 4u);
  EXPECT_EQ(locked(r, 0, 7), 4u);  // nothing outside the pin
  EXPECT_GE(vm_locked_kib() - vm_locked_before_, static_cast<long>(4 * kPageSize / 1024));
  unpin(*p, 2, 5);
  EXPECT_EQ(locked(r, 0, 7), 0u);
}

TEST_F(PagesLockTest, WithoutLockPinnedNothingIsLocked) {
  TestRegion r(8);
  auto p = locked_user_pages(r, /*lock=*/false);
  ASSERT_TRUE(pin(*p, 0, 7).ok());
  EXPECT_EQ(npinned(*p), 8u);
  EXPECT_EQ(locked(r, 0, 7), 0u);
  EXPECT_EQ(vm_locked_kib(), vm_locked_before_);
  unpin(*p, 0, 7);
}

TEST_F(PagesLockTest, OverlappingPinsStayLockedUntilTheirLastUnpin) {
  TestRegion r(8);
  auto p = locked_user_pages(r);
  ASSERT_TRUE(pin(*p, 0, 3).ok());
  ASSERT_TRUE(pin(*p, 2, 5).ok());
  EXPECT_EQ(locked(r, 0, 7), 6u);
  unpin(*p, 0, 3);
  EXPECT_EQ(locked(r, 0, 1), 0u);  // 1 → 0 users: unlocked
  EXPECT_EQ(locked(r, 2, 5), 4u);  // still held by the second pin
  unpin(*p, 2, 5);
  EXPECT_EQ(locked(r, 0, 7), 0u);
}

TEST_F(PagesLockTest, UnpinOfOneOfTwoUsersOfARangeDoesNotUnlockIt) {
  TestRegion r(4);
  auto p = locked_user_pages(r);
  ASSERT_TRUE(pin(*p, 0, 3).ok());
  ASSERT_TRUE(pin(*p, 0, 3).ok());
  unpin(*p, 0, 3);
  EXPECT_EQ(locked(r, 0, 3), 4u);
  unpin(*p, 0, 3);
  EXPECT_EQ(locked(r, 0, 3), 0u);
}

TEST_F(PagesLockTest, TwoLockedPagesOverOneBufferKeepItLockedUntilBothUnpin) {
  // Two MAPs of the same memory: mlock is one bit per page, so the first Pages to unpin must not unlock
  // pages the other still holds.
  TestRegion r(6);
  auto a = locked_user_pages(r);
  auto b = locked_user_pages(r);
  ASSERT_TRUE(pin(*a, 0, 3).ok());
  ASSERT_TRUE(pin(*b, 2, 5).ok());
  unpin(*a, 0, 3);
  EXPECT_EQ(locked(r, 0, 1), 0u);
  EXPECT_EQ(locked(r, 2, 5), 4u);
  unpin(*b, 2, 5);
  EXPECT_EQ(locked(r, 0, 5), 0u);
}

TEST_F(PagesLockTest, UnlockedPagesOverALockedOnesMemoryNeitherLockNorUnlockIt) {
  TestRegion r(4);
  auto locking = locked_user_pages(r);
  auto plain = locked_user_pages(r, /*lock=*/false);
  ASSERT_TRUE(pin(*locking, 0, 3).ok());
  ASSERT_TRUE(pin(*plain, 0, 3).ok());
  unpin(*plain, 0, 3);
  EXPECT_EQ(locked(r, 0, 3), 4u);
  unpin(*locking, 0, 3);
}

TEST_F(PagesLockTest, PinFailingAtALaterRunUnlocksTheRunsItLocked) {
  // Index 1 is pinned already; pinning [0, 3] locks the fresh run [0, 0], then fails making [2, 3]
  // resident (page 2 is PROT_NONE). Only index 1 may stay locked.
  TestRegion r(4);
  ASSERT_TRUE(r.protect_page(2, PROT_NONE));
  auto p = locked_user_pages(r);
  ASSERT_TRUE(pin(*p, 1, 1).ok());
  EXPECT_EQ(pin(*p, 0, 3).error(), EFAULT);
  EXPECT_EQ(npinned(*p), 1u);
  EXPECT_EQ(locked(r, 0, 0), 0u);
  EXPECT_EQ(locked(r, 1, 1), 1u);
  EXPECT_EQ(locked(r, 2, 3), 0u);
  unpin(*p, 1, 1);
}

TEST_F(PagesLockTest, ChargeOverTheMemlockLimitUnlocksEverythingThePinLocked) {
  TestRegion r(8);
  set_memlock_limit_for_testing(user_before_ + 4);
  auto p = locked_user_pages(r);
  ASSERT_TRUE(pin(*p, 0, 1).ok());
  EXPECT_EQ(pin(*p, 0, 7).error(), ENOMEM);
  EXPECT_EQ(npinned(*p), 2u);
  EXPECT_EQ(locked(r, 0, 1), 2u);
  EXPECT_EQ(locked(r, 2, 7), 0u);
  unpin(*p, 0, 1);
}

TEST_F(PagesLockTest, EveryFaultSiteOfALockedPinLeavesNothingLocked) {
  TestRegion r(64);
  auto p = locked_user_pages(r);
  SweepResult res = sweep_fail_nth(
      [&] {
        if (npinned(*p) != 0) unpin(*p, 0, 63);
      },
      [&] { return pin(*p, 0, 63); },
      [&](unsigned n, Status st) {
        if (st.ok()) return;
        EXPECT_EQ(npinned(*p), 0u) << "n=" << n;
        EXPECT_EQ(locked(r, 0, 63), 0u) << "n=" << n;
        EXPECT_EQ(vm_locked_kib(), vm_locked_before_) << "n=" << n;
      });
  EXPECT_TRUE(res.final_status.ok());
  // Locking adds no fault site: mlock's own failures are tested for real below.
  EXPECT_EQ(res.fired_sites, (std::vector<std::string>{"pages.pin", "pages.account"}));
  EXPECT_EQ(locked(r, 0, 63), 64u);
  unpin(*p, 0, 63);
}

// ---- file pages
// --------------------------------------------------------------------------------------------

RefPtr<Pages> locked_file_pages(const Memfd& f, std::uint64_t npages) {
  auto p = Pages::create_file(f.fd(), 0, npages * kPageSize, true, AccountMode::kUser, /*lock_pinned=*/true);
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  return p.ok() ? std::move(*p) : RefPtr<Pages>();
}

std::uint64_t locked_in_window(Pages& p, std::uint64_t first, std::uint64_t last) {
  return locked_pages_in(reinterpret_cast<std::uint64_t>(p.host_page(first)), (last - first + 1) * kPageSize);
}

TEST_F(PagesLockTest, FilePagesAreLockedInTheirWindowMapping) {
  Memfd f(4);
  auto p = locked_file_pages(f, 4);
  ASSERT_TRUE(pin(*p, 1, 2).ok());
  EXPECT_EQ(locked_in_window(*p, 0, 3), 2u);
  EXPECT_EQ(locked_in_window(*p, 1, 2), 2u);
  unpin(*p, 1, 2);
  EXPECT_EQ(locked_in_window(*p, 0, 3), 0u);
}

TEST_F(PagesLockTest, FilePinReachingPastTheEndOfFileLocksNothing) {
  Memfd f(2);
  auto p = locked_file_pages(f, 4);  // pages 2 and 3 are past the end of the file
  ASSERT_TRUE(pin(*p, 0, 0).ok());
  EXPECT_EQ(pin(*p, 0, 3).error(), EINVAL);
  EXPECT_EQ(npinned(*p), 1u);
  EXPECT_EQ(locked_in_window(*p, 0, 0), 1u);
  EXPECT_EQ(locked_in_window(*p, 1, 3), 0u);
  unpin(*p, 0, 0);
}

// ---- mlock refused by the host
// ------------------------------------------------------------------------------

// Runs `body` in a child without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at `limit_pages`, so mlock really
// fails; the child's exit code is the number of the first failed check (0: all passed).
int run_without_ipc_lock(std::uint64_t limit_pages, int (*body)()) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (!mm_testing::drop_cap_ipc_lock()) _exit(101);
    const rlimit lim{limit_pages * kPageSize, limit_pages * kPageSize};
    if (setrlimit(RLIMIT_MEMLOCK, &lim) != 0) _exit(102);
    _exit(body());
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

TEST_F(PagesLockTest, MlockOverTheHostLimitIsEnomemAndLeavesNothingPinnedOrLocked) {
  // kNone: our own charge never fails, so the failure is mlock's.
  const int rc = run_without_ipc_lock(4, [] {
    TestRegion r(16);
    const long vm_locked_before = vm_locked_kib();
    auto p = Pages::create_user(Mm::current(), r.uaddr(), r.len(), true, AccountMode::kNone, true);
    if (!p.ok()) return 1;
    if (pin(**p, 0, 15).error() != ENOMEM) return 2;
    if (npinned(**p) != 0 || Pages::total_pinned_pages() != 0) return 3;
    if (locked(r, 0, 15) != 0 || vm_locked_kib() != vm_locked_before) return 4;
    if (!pin(**p, 0, 1).ok()) return 5;  // within the limit
    if (locked(r, 0, 1) != 2) return 6;
    unpin(**p, 0, 1);
    return locked(r, 0, 15) == 0 ? 0 : 7;
  });
  EXPECT_EQ(rc, 0);
}

TEST_F(PagesLockTest, MlockFailureOfALaterRunUnlocksTheEarlierRuns) {
  // With [0, 1] and [4, 4] pinned (3 pages locked), pinning [0, 7] has two fresh runs: [2, 3] fits the
  // 6-page limit and is locked, [5, 7] does not. The failure must unlock [2, 3] and keep the old pins locked.
  const int rc = run_without_ipc_lock(6, [] {
    TestRegion r(8);
    auto p = Pages::create_user(Mm::current(), r.uaddr(), r.len(), true, AccountMode::kNone, true);
    if (!p.ok()) return 1;
    if (!pin(**p, 0, 1).ok() || !pin(**p, 4, 4).ok()) return 2;
    if (pin(**p, 0, 7).error() != ENOMEM) return 3;
    if (npinned(**p) != 3) return 4;
    if (locked(r, 0, 1) != 2 || locked(r, 2, 3) != 0 || locked(r, 4, 4) != 1 || locked(r, 5, 7) != 0)
      return 5;
    unpin(**p, 0, 1);
    unpin(**p, 4, 4);
    return locked(r, 0, 7) == 0 ? 0 : 6;
  });
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace uiommufd
