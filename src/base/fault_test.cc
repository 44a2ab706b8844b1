#include "uiommufd/base/fault.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

namespace uiommufd {
namespace {

UIOMMUFD_FAULT_SITE(g_test_site_a, "test.site_a", ENOMEM);
UIOMMUFD_FAULT_SITE(g_test_site_b, "test.site_b", EFAULT);

// Every test starts and ends disarmed, whatever the previous one did.
class FailNthTest : public ::testing::Test {
 protected:
  void SetUp() override { fail_nth_set(0); }
  void TearDown() override { fail_nth_set(0); }
};

TEST_F(FailNthTest, DisarmedSitesNeverFail) {
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(should_fail(g_test_site_a));
  EXPECT_EQ(fail_nth_get(), 0u);
}

TEST_F(FailNthTest, OneFailsTheVeryNextSite) {
  fail_nth_set(1);
  EXPECT_TRUE(should_fail(g_test_site_a));
  EXPECT_EQ(fail_nth_get(), 0u);
}

TEST_F(FailNthTest, ThreeFailsTheThirdSite) {
  fail_nth_set(3);
  EXPECT_FALSE(should_fail(g_test_site_a));
  EXPECT_EQ(fail_nth_get(), 2u);
  EXPECT_FALSE(should_fail(g_test_site_b));
  EXPECT_EQ(fail_nth_get(), 1u);
  EXPECT_TRUE(should_fail(g_test_site_a));
  EXPECT_EQ(fail_nth_get(), 0u);
}

TEST_F(FailNthTest, ExactlyOneFailurePerArming) {
  fail_nth_set(2);
  int failures = 0;
  for (int i = 0; i < 50; ++i) failures += should_fail(g_test_site_a) ? 1 : 0;
  EXPECT_EQ(failures, 1);
}

TEST_F(FailNthTest, SettingZeroDisarms) {
  fail_nth_set(1);
  fail_nth_set(0);
  EXPECT_FALSE(should_fail(g_test_site_a));
}

TEST_F(FailNthTest, SettingReplacesPreviousValue) {
  fail_nth_set(5);
  fail_nth_set(1);
  EXPECT_TRUE(should_fail(g_test_site_a));
}

TEST_F(FailNthTest, ReadingTheCounterDoesNotConsumeIt) {
  fail_nth_set(2);
  EXPECT_EQ(fail_nth_get(), 2u);
  EXPECT_EQ(fail_nth_get(), 2u);
  EXPECT_FALSE(should_fail(g_test_site_a));
  EXPECT_TRUE(should_fail(g_test_site_a));
}

TEST_F(FailNthTest, UnreachedCounterStaysArmed) {
  fail_nth_set(10);
  EXPECT_FALSE(should_fail(g_test_site_a));
  EXPECT_EQ(fail_nth_get(), 9u);
}

TEST_F(FailNthTest, InjectReturnsTheSiteErrno) {
  fail_nth_set(2);
  EXPECT_TRUE(inject(g_test_site_a).ok());
  EXPECT_EQ(inject(g_test_site_b), Status::error(EFAULT));
  EXPECT_TRUE(inject(g_test_site_b).ok());
}

TEST_F(FailNthTest, SitesCountHitsAndInjections) {
  uint64_t hits = g_test_site_b.hits(), injected = g_test_site_b.injected();
  fail_nth_set(2);
  (void)should_fail(g_test_site_b);
  (void)should_fail(g_test_site_b);
  (void)should_fail(g_test_site_b);
  EXPECT_EQ(g_test_site_b.hits() - hits, 3u);
  EXPECT_EQ(g_test_site_b.injected() - injected, 1u);
}

TEST_F(FailNthTest, HitsOfOtherThreadsCountWhileTheyRunAndAfterTheyExit) {
  const uint64_t hits = g_test_site_a.hits();
  std::atomic<int> stage{0};
  std::thread t([&] {
    (void)should_fail(g_test_site_a);
    (void)should_fail(g_test_site_a);
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
  });
  while (stage.load() != 1) std::this_thread::yield();
  EXPECT_EQ(g_test_site_a.hits() - hits, 2u);
  stage.store(2);
  t.join();
  EXPECT_EQ(g_test_site_a.hits() - hits, 2u);
}

TEST_F(FailNthTest, CountsInjectionsOnTheCallingThread) {
  const uint64_t before = injected_on_this_thread();
  fail_nth_set(2);
  (void)should_fail(g_test_site_a);
  EXPECT_EQ(injected_on_this_thread(), before);
  (void)should_fail(g_test_site_a);
  EXPECT_EQ(injected_on_this_thread(), before + 1);
}

TEST_F(FailNthTest, RemembersLastInjectedSite) {
  fail_nth_set(1);
  (void)should_fail(g_test_site_b);
  ASSERT_NE(last_injected_fault(), nullptr);
  EXPECT_STREQ(last_injected_fault(), "test.site_b");
  fail_nth_set(2);
  (void)should_fail(g_test_site_b);
  (void)should_fail(g_test_site_a);
  EXPECT_STREQ(last_injected_fault(), "test.site_a");
}

TEST_F(FailNthTest, OtherThreadsAreUnaffected) {
  fail_nth_set(1);
  bool other_failed = true;
  uint32_t other_counter = 99;
  std::thread t([&] {
    other_counter = fail_nth_get();
    other_failed = should_fail(g_test_site_a);
  });
  t.join();
  EXPECT_EQ(other_counter, 0u);
  EXPECT_FALSE(other_failed);
  EXPECT_EQ(fail_nth_get(), 1u);
  EXPECT_TRUE(should_fail(g_test_site_a));
}

TEST_F(FailNthTest, ArmingInAnotherThreadDoesNotArmThisOne) {
  std::thread t([] { fail_nth_set(1); });
  t.join();
  EXPECT_EQ(fail_nth_get(), 0u);
}

TEST_F(FailNthTest, ForkedChildStartsDisarmed) {
  fail_nth_set(1);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Exit codes: 0 ok, 1 counter inherited, 2 a site failed.
    if (fail_nth_get() != 0) _exit(1);
    if (should_fail(g_test_site_a)) _exit(2);
    _exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 0);
  // The parent keeps its arming.
  EXPECT_EQ(fail_nth_get(), 1u);
}

TEST(FaultSitesTest, ListsRegisteredSitesSortedByName) {
  std::vector<const FaultSite*> sites = fault_sites();
  auto a = std::find(sites.begin(), sites.end(), &g_test_site_a);
  auto b = std::find(sites.begin(), sites.end(), &g_test_site_b);
  ASSERT_NE(a, sites.end());
  ASSERT_NE(b, sites.end());
  EXPECT_LT(a, b);
  EXPECT_TRUE(std::is_sorted(sites.begin(), sites.end(), [](const FaultSite* x, const FaultSite* y) {
    return std::strcmp(x->name(), y->name()) < 0;
  }));
}

TEST(FaultSitesTest, SiteKeepsNameAndErrno) {
  EXPECT_STREQ(g_test_site_a.name(), "test.site_a");
  EXPECT_EQ(g_test_site_a.error(), ENOMEM);
}

// kstrtouint

TEST(ParseKstrtouintTest, Decimal) {
  EXPECT_EQ(*parse_kstrtouint("0"), 0u);
  EXPECT_EQ(*parse_kstrtouint("1"), 1u);
  EXPECT_EQ(*parse_kstrtouint("1234"), 1234u);
}

TEST(ParseKstrtouintTest, HexWithPrefixInEitherCase) {
  EXPECT_EQ(*parse_kstrtouint("0x1f"), 31u);
  EXPECT_EQ(*parse_kstrtouint("0X1F"), 31u);
  EXPECT_EQ(*parse_kstrtouint("0xffffffff"), 0xffffffffu);
}

TEST(ParseKstrtouintTest, LeadingZeroIsOctal) {
  EXPECT_EQ(*parse_kstrtouint("010"), 8u);
  EXPECT_EQ(*parse_kstrtouint("00"), 0u);
  EXPECT_EQ(parse_kstrtouint("08").error(), EINVAL);
}

TEST(ParseKstrtouintTest, OptionalLeadingPlus) {
  EXPECT_EQ(*parse_kstrtouint("+5"), 5u);
  EXPECT_EQ(*parse_kstrtouint("+0x10"), 16u);
  EXPECT_EQ(parse_kstrtouint("++5").error(), EINVAL);
  EXPECT_EQ(parse_kstrtouint("-1").error(), EINVAL);
}

TEST(ParseKstrtouintTest, OneTrailingNewlineAllowed) {
  EXPECT_EQ(*parse_kstrtouint("7\n"), 7u);
  EXPECT_EQ(parse_kstrtouint("7\n\n").error(), EINVAL);
  EXPECT_EQ(parse_kstrtouint("\n").error(), EINVAL);
}

TEST(ParseKstrtouintTest, EmptyOrGarbageIsEinval) {
  EXPECT_EQ(parse_kstrtouint("").error(), EINVAL);
  EXPECT_EQ(parse_kstrtouint("+").error(), EINVAL);
  EXPECT_EQ(parse_kstrtouint("abc").error(), EINVAL);
  EXPECT_EQ(parse_kstrtouint(" 1").error(), EINVAL);
  EXPECT_EQ(parse_kstrtouint("1 ").error(), EINVAL);
  EXPECT_EQ(parse_kstrtouint("12a").error(), EINVAL);
}

TEST(ParseKstrtouintTest, HexPrefixWithoutDigitsIsEinval) {
  // "0x" with no hex digit after it is octal 0 followed by a stray 'x'.
  EXPECT_EQ(parse_kstrtouint("0x").error(), EINVAL);
  EXPECT_EQ(parse_kstrtouint("0xg").error(), EINVAL);
  EXPECT_EQ(parse_kstrtouint("0x\n").error(), EINVAL);
}

TEST(ParseKstrtouintTest, NulEndsTheText) {
  EXPECT_EQ(*parse_kstrtouint(std::string_view("3\0garbage", 9)), 3u);
}

TEST(ParseKstrtouintTest, AboveUint32MaxIsErange) {
  EXPECT_EQ(*parse_kstrtouint("4294967295"), 4294967295u);
  EXPECT_EQ(parse_kstrtouint("4294967296").error(), ERANGE);
  EXPECT_EQ(parse_kstrtouint("0x100000000").error(), ERANGE);
  EXPECT_EQ(parse_kstrtouint("99999999999999999999999").error(), ERANGE);
}

TEST(ParseKstrtouintTest, Overflow64IsErangeEvenWithTrailingGarbage) {
  // The kernel reports overflow of the 64-bit accumulator before it looks at what follows.
  EXPECT_EQ(parse_kstrtouint("99999999999999999999999x").error(), ERANGE);
  // A value that fits 64 bits is checked for leftovers first.
  EXPECT_EQ(parse_kstrtouint("4294967296x").error(), EINVAL);
}

}  // namespace
}  // namespace uiommufd
