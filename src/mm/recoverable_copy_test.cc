// The fault-recoverable memcpy behind Mm's copies: correctness on good and bad ranges, concurrency, the
// state a recovered fault must leave behind (signal mask, FP control), and that a fault which is not ours
// still does what it would have done without us (death tests).
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cfenv>
#include <cstring>
#include <thread>
#include <vector>

#include "test_region.h"
#include "uiommufd/base/page.h"
#include "uiommufd/mm/mm.h"
#include "user_copy.h"

namespace uiommufd::mm_internal {
namespace {

using mm_testing::TestRegion;

constexpr std::size_t kMiB = std::size_t{1} << 20;

void fill_pattern(unsigned char* p, std::size_t n, unsigned seed) {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(i * 131 + seed);
}

TEST(RecoverableCopyTest, IsWhatMmUsesHere) {
  TestRegion r(1);
  ASSERT_TRUE(r.ok());
  unsigned char b = 0;
  ASSERT_EQ(Mm::current()->copy_from_user(&b, r.uaddr(), 1), Status());
  EXPECT_TRUE(recoverable_copy_available());
  EXPECT_TRUE(recoverable_copy_usable(r.uaddr(), r.len()));
  // Not above the canonical user half: those go to process_vm.
  EXPECT_FALSE(recoverable_copy_usable(std::uint64_t{1} << 47, 16));
}

TEST(RecoverableCopyTest, CopiesOneMiBBothWays) {
  TestRegion r(kMiB / kPageSize + 1);
  ASSERT_TRUE(r.ok());
  std::vector<unsigned char> src(kMiB), back(kMiB);
  fill_pattern(src.data(), src.size(), 9);
  auto mm = Mm::current();
  // Unaligned by 3 bytes, so every chunk boundary falls inside a memcpy's natural alignment.
  ASSERT_EQ(mm->copy_to_user(r.uaddr(3), src.data(), src.size()), Status());
  EXPECT_EQ(std::memcmp(r.ptr(3), src.data(), src.size()), 0);
  ASSERT_EQ(mm->copy_from_user(back.data(), r.uaddr(3), back.size()), Status());
  EXPECT_EQ(src, back);
}

TEST(RecoverableCopyTest, ProtNonePageInTheMiddle) {
  constexpr std::size_t kPages = 40;  // spans several 64 KiB chunks; the bad page is in the third
  constexpr std::size_t kBad = 37;
  TestRegion r(kPages);
  ASSERT_TRUE(r.ok());
  fill_pattern(r.ptr(), r.len(), 4);
  const std::vector<unsigned char> orig(r.ptr(), r.ptr() + r.len());
  ASSERT_TRUE(r.protect_page(kBad, PROT_NONE));
  const std::size_t off = 100, len = r.len() - off;
  const std::size_t good = kBad * kPageSize - off;

  std::size_t copied = 0;
  std::vector<unsigned char> buf(len, 0xcc);
  EXPECT_EQ(copy_from_user(CopyMethod::kRecoverable, buf.data(), r.uaddr(off), len, &copied).error(), EFAULT);
  EXPECT_EQ(copied, good);

  // Through Mm: the prefix up to the bad page, and the tail zeroed.
  std::fill(buf.begin(), buf.end(), 0xcc);
  EXPECT_EQ(Mm::current()->copy_from_user(buf.data(), r.uaddr(off), len).error(), EFAULT);
  EXPECT_EQ(std::memcmp(buf.data(), r.ptr(off), good), 0);
  for (std::size_t i = good; i < len; ++i) ASSERT_EQ(buf[i], 0) << i;

  // To user: everything before the bad page written, nothing after it.
  std::vector<unsigned char> src(len, 0xab);
  EXPECT_EQ(Mm::current()->copy_to_user(r.uaddr(off), src.data(), len).error(), EFAULT);
  for (std::size_t i = off; i < kBad * kPageSize; ++i) ASSERT_EQ(*r.ptr(i), 0xab) << i;
  for (std::size_t i = (kBad + 1) * kPageSize; i < r.len(); ++i) ASSERT_EQ(*r.ptr(i), orig[i]) << i;
}

TEST(RecoverableCopyTest, UnmappedRange) {
  constexpr std::size_t kPages = 20;
  const std::uint64_t gone = mm_testing::kHoleUaddr;
  ASSERT_TRUE(mm_testing::is_hole(gone, kPages));
  std::vector<unsigned char> buf(kPages * kPageSize, 0xcc);
  std::size_t copied = 99;
  EXPECT_EQ(copy_from_user(CopyMethod::kRecoverable, buf.data(), gone, buf.size(), &copied).error(), EFAULT);
  EXPECT_EQ(copied, 0u);
  EXPECT_EQ(copy_to_user(CopyMethod::kRecoverable, gone, buf.data(), buf.size()).error(), EFAULT);
  EXPECT_EQ(Mm::current()->copy_from_user(buf.data(), gone, buf.size()).error(), EFAULT);
  for (unsigned char c : buf) ASSERT_EQ(c, 0);
  // NULL page and a read-only page.
  EXPECT_EQ(copy_from_user(CopyMethod::kRecoverable, buf.data(), 0, 64).error(), EFAULT);
  TestRegion ro(1, PROT_READ);
  ASSERT_TRUE(ro.ok());
  EXPECT_EQ(copy_to_user(CopyMethod::kRecoverable, ro.uaddr(), buf.data(), 64).error(), EFAULT);
}

TEST(RecoverableCopyTest, ShortCopyIntoABadPageStopsAtItsFirstByte) {
  // Short copies take the fix-up path first; the exact progress still comes out.
  TestRegion r(2);
  ASSERT_TRUE(r.ok());
  fill_pattern(r.ptr(), r.len(), 7);
  ASSERT_TRUE(r.protect_page(1, PROT_NONE));
  const std::size_t off = kPageSize - 40;
  unsigned char buf[100];
  std::memset(buf, 0xcc, sizeof buf);
  std::size_t copied = 0;
  EXPECT_EQ(copy_from_user(CopyMethod::kRecoverable, buf, r.uaddr(off), sizeof buf, &copied).error(), EFAULT);
  EXPECT_EQ(copied, 40u);
  EXPECT_EQ(std::memcmp(buf, r.ptr(off), 40), 0);

  unsigned char src[100];
  std::memset(src, 0xab, sizeof src);
  EXPECT_EQ(copy_to_user(CopyMethod::kRecoverable, r.uaddr(off), src, sizeof src).error(), EFAULT);
  for (std::size_t i = off; i < kPageSize; ++i) ASSERT_EQ(*r.ptr(i), 0xab) << i;
}

TEST(RecoverableCopyTest, TouchFaultsOnlyWhereTheAccessIsMissing) {
  TestRegion rw(2), ro(2, PROT_READ), none(1, PROT_NONE);
  ASSERT_TRUE(rw.ok() && ro.ok() && none.ok());
  EXPECT_EQ(recoverable_touch(rw.uaddr(), rw.len(), /*write=*/true), Status());
  EXPECT_EQ(recoverable_touch(ro.uaddr(), ro.len(), /*write=*/false), Status());
  EXPECT_EQ(recoverable_touch(ro.uaddr(), ro.len(), /*write=*/true).error(), EFAULT);
  EXPECT_EQ(recoverable_touch(none.uaddr(), none.len(), /*write=*/false).error(), EFAULT);
  EXPECT_EQ(recoverable_touch(mm_testing::kHoleUaddr, kPageSize, /*write=*/false).error(), EFAULT);
  // A bad page after good ones: the good ones are still touched, and nothing is changed.
  fill_pattern(rw.ptr(), rw.len(), 3);
  const std::vector<unsigned char> orig(rw.ptr(), rw.ptr() + rw.len());
  ASSERT_TRUE(rw.protect_page(1, PROT_READ));
  EXPECT_EQ(recoverable_touch(rw.uaddr(), rw.len(), /*write=*/true).error(), EFAULT);
  EXPECT_EQ(std::memcmp(rw.ptr(), orig.data(), orig.size()), 0);
  // Recovery leaves SIGSEGV deliverable, so the next fault is recovered too.
  EXPECT_EQ(recoverable_touch(none.uaddr(), none.len(), /*write=*/true).error(), EFAULT);
}

TEST(RecoverableCopyTest, ManyFaultsInARowOnOneThread) {
  // With SIGSEGV left blocked after a recovery, the second fault would kill the process.
  TestRegion r(2);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.protect_page(1, PROT_NONE));
  unsigned char buf[64];
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(copy_from_user(CopyMethod::kRecoverable, buf, r.page_uaddr(1), sizeof buf).error(), EFAULT);
    ASSERT_EQ(copy_to_user(CopyMethod::kRecoverable, r.page_uaddr(1), buf, sizeof buf).error(), EFAULT);
  }
  sigset_t cur;
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &cur), 0);
  EXPECT_EQ(sigismember(&cur, SIGSEGV), 0);
  EXPECT_EQ(sigismember(&cur, SIGBUS), 0);
}

TEST(RecoverableCopyTest, RecoveryKeepsTheFloatingPointControlState) {
  // The kernel starts a handler with default FP control state; the longjmp must not leak it.
  TestRegion r(1, PROT_NONE);
  ASSERT_TRUE(r.ok());
  const int before = std::fegetround();
  ASSERT_EQ(std::fesetround(FE_UPWARD), 0);
  unsigned char buf[16];
  const Status st = copy_from_user(CopyMethod::kRecoverable, buf, r.uaddr(), sizeof buf);
  const int during = std::fegetround();
  std::fesetround(before);
  EXPECT_EQ(st.error(), EFAULT);
  EXPECT_EQ(during, FE_UPWARD);
}

TEST(RecoverableCopyTest, EightThreadsSomeFaulting) {
  constexpr int kThreads = 8;
  constexpr std::size_t kPagesPer = 20;
  TestRegion r(kThreads * kPagesPer);
  ASSERT_TRUE(r.ok());
  for (int t = 0; t < kThreads; ++t) {
    std::memset(r.ptr(t * kPagesPer * kPageSize), t + 1, kPagesPer * kPageSize);
    // Odd threads have a hole in their slice, at a different page each.
    if (t % 2) {
      ASSERT_TRUE(r.protect_page(t * kPagesPer + 3 + t, PROT_NONE));
    }
  }
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::uint64_t base = r.page_uaddr(t * kPagesPer);
      const std::size_t len = kPagesPer * kPageSize;
      const std::size_t good = t % 2 ? (3 + t) * kPageSize : len;
      std::vector<unsigned char> buf(len);
      auto mm = Mm::current();
      for (int i = 0; i < 300; ++i) {
        const Status st = mm->copy_from_user(buf.data(), base, len);
        if (st.error() != (t % 2 ? EFAULT : 0)) ++bad;
        for (std::size_t j = 0; j < len; j += 512) {
          if (buf[j] != (j < good ? t + 1 : 0)) {
            ++bad;
            break;
          }
        }
        // Write back what was read: same bytes, so the other threads' view never changes.
        const Status wst = mm->copy_to_user(base, buf.data(), good);
        if (!wst.ok()) ++bad;
        if (t % 2 && mm->copy_to_user(base, buf.data(), len).error() != EFAULT) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(RecoverableCopyTest, ThreadThatBlocksSigsegvTakesTheSyscallPath) {
  // A synchronous fault on a blocked SIGSEGV kills without running any handler; such a thread must not use
  // the recoverable copy (decided on its first copy).
  TestRegion r(1, PROT_NONE);
  ASSERT_TRUE(r.ok());
  Status st;
  bool usable = true;
  std::thread th([&] {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    unsigned char buf[16];
    st = Mm::current()->copy_from_user(buf, r.uaddr(), sizeof buf);
    usable = recoverable_copy_usable(r.uaddr(), sizeof buf);
  });
  th.join();
  EXPECT_EQ(st.error(), EFAULT);
  EXPECT_FALSE(usable);
}

// Death tests run in a fresh re-executed process, so the handler installation order inside them is the one
// the test body sets up.
class RecoverableCopyDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

void install_handler_then_touch(void* wild) {
  TestRegion r(1);
  unsigned char b;
  if (Mm::current()->copy_from_user(&b, r.uaddr(), 1).ok() && recoverable_copy_available())
    *static_cast<volatile unsigned char*>(wild) = 1;
}

TEST_F(RecoverableCopyDeathTest, WildFaultOutsideACopyStillKills) {
  TestRegion r(1, PROT_NONE);
  ASSERT_TRUE(r.ok());
  EXPECT_DEATH(install_handler_then_touch(r.ptr()), "");
}

TEST_F(RecoverableCopyDeathTest, FaultOnTheEngineSideOfACopyStillKills) {
  // A bad engine pointer is a bug, not EFAULT: only faults inside the user range are recovered.
  TestRegion user(1), engine(1, PROT_NONE);
  ASSERT_TRUE(user.ok() && engine.ok());
  EXPECT_DEATH((void)copy_from_user(CopyMethod::kRecoverable, engine.ptr(), user.uaddr(), 64), "");
  EXPECT_DEATH((void)copy_to_user(CopyMethod::kRecoverable, user.uaddr(), engine.ptr(), 64), "");
}

void exit_42(int, siginfo_t*, void*) { _exit(42); }

TEST_F(RecoverableCopyDeathTest, ForeignFaultsChainToThePreviousHandler) {
  TestRegion r(1, PROT_NONE);
  ASSERT_TRUE(r.ok());
  EXPECT_EXIT(
      {
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = exit_42;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, nullptr);
        // Ours goes in on top of it now, and must still recover its own faults...
        unsigned char buf[8];
        if (Mm::current()->copy_from_user(buf, r.uaddr(), sizeof buf).error() != EFAULT) _exit(1);
        if (!recoverable_copy_available()) _exit(2);
        // ...and hand this one on.
        *static_cast<volatile unsigned char*>(r.ptr()) = 1;
        _exit(3);
      },
      ::testing::ExitedWithCode(42), "");
}

}  // namespace
}  // namespace uiommufd::mm_internal
