// What the reports look like (the kernel's wording, so people and tools that know lockdep's output can
// read ours), where they go (stderr and reports()), and the modes (off, report, abort, and the
// UIOMMUFD_LOCKDEP environment variable).
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "testing/child_process.h"
#include "testing/scenario.h"

#include "uiommufd/lockdep/lock_class_key.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/lockdep/lockdep_map.h"
#include "uiommufd/lockdep/mutex.h"

#if UIOMMUFD_LOCKDEP_ENABLED

// Out of line, with external linkage and outside namespace uiommufd::lockdep (whose frames a report may
// treat as the validator's own), so they show up by name in symbolised stack traces (the build exports
// symbols for dladdr()).
[[gnu::noinline]] void lockdep_report_test_take_a_then_b(uiommufd::lockdep::Mutex& a,
                                                         uiommufd::lockdep::Mutex& b) {
  uiommufd::lockdep::MutexGuard ga(a);
  uiommufd::lockdep::MutexGuard gb(b);
  asm volatile("" ::: "memory");
}

[[gnu::noinline]] void lockdep_report_test_take_b_then_a(uiommufd::lockdep::Mutex& a,
                                                         uiommufd::lockdep::Mutex& b) {
  uiommufd::lockdep::MutexGuard gb(b);
  uiommufd::lockdep::MutexGuard ga(a);
  asm volatile("" ::: "memory");
}

[[gnu::noinline]] void lockdep_report_test_take_twice(uiommufd::lockdep::Mutex& x1,
                                                      uiommufd::lockdep::Mutex& x2) {
  uiommufd::lockdep::MutexGuard g1(x1);
  uiommufd::lockdep::MutexGuard g2(x2);
  asm volatile("" ::: "memory");
}

namespace uiommufd::lockdep::selftest {

namespace {

LockClassKey& alpha_key() {
  static LockClassKey key("report.alpha");
  return key;
}
LockClassKey& beta_key() {
  static LockClassKey key("report.beta");
  return key;
}

class ReportTest : public LockdepTest {};

// Position of `needle` in `text` at or after `from`; npos-safe for chaining.
std::size_t find_after(const std::string& text, const char* needle, std::size_t from) {
  if (from == std::string::npos) return std::string::npos;
  return text.find(needle, from);
}

::testing::AssertionResult contains_in_order(const std::string& text, const std::vector<const char*>& needles) {
  std::size_t pos = 0;
  for (const char* needle : needles) {
    std::size_t found = find_after(text, needle, pos);
    if (found == std::string::npos) {
      return ::testing::AssertionFailure() << "\"" << needle << "\" missing (in this order) from:\n" << text;
    }
    pos = found + std::strlen(needle);
  }
  return ::testing::AssertionSuccess();
}

Report circular_report() {
  Mutex a(alpha_key());
  Mutex b(beta_key());
  lockdep_report_test_take_a_then_b(a, b);
  lockdep_report_test_take_b_then_a(a, b);
  auto r = reports();
  if (r.size() != 1) {
    ADD_FAILURE() << describe(r);
    return {ReportKind::kLimitReached, ""};
  }
  return r[0];
}

TEST_F(ReportTest, CircularDependencyHasTheKernelShape) {
  Report r = circular_report();
  EXPECT_EQ(r.kind, ReportKind::kCircularDependency);
  const std::string& t = r.text;
  // The header: what is being taken, what is held, and why that is a problem.
  EXPECT_TRUE(contains_in_order(t, {"WARNING: possible circular locking dependency detected",
                                    "is trying to acquire lock:", "report.alpha",
                                    "but task is already holding lock:", "report.beta",
                                    "which lock already depends on the new lock."}));
  // The chain, innermost first, then the two-CPU scenario.
  EXPECT_TRUE(contains_in_order(t, {"the existing dependency chain (in reverse order) is:", "-> #1", "-> #0",
                                    "Possible unsafe locking scenario", "CPU0", "CPU1", "*** DEADLOCK ***"}));
  // Held locks, then the current stack.
  EXPECT_TRUE(contains_in_order(t, {"*** DEADLOCK ***", "lock", "held by", "report.beta", "stack backtrace:"}));
  EXPECT_TRUE(t.find("lock held by") != std::string::npos || t.find("locks held by") != std::string::npos) << t;
}

TEST_F(ReportTest, CircularScenarioNamesBothLocks) {
  Report r = circular_report();
  const std::string& t = r.text;
  const std::size_t begin = t.find("Possible unsafe locking scenario");
  const std::size_t end = t.find("*** DEADLOCK ***");
  ASSERT_NE(begin, std::string::npos) << t;
  ASSERT_NE(end, std::string::npos) << t;
  ASSERT_LT(begin, end) << t;
  const std::string scenario = t.substr(begin, end - begin);
  EXPECT_NE(scenario.find("report.alpha"), std::string::npos) << scenario;
  EXPECT_NE(scenario.find("report.beta"), std::string::npos) << scenario;
  // lock(A); lock(B); lock(A); lock(B); as the kernel draws it.
  std::size_t count = 0;
  for (std::size_t p = scenario.find("lock("); p != std::string::npos; p = scenario.find("lock(", p + 1)) ++count;
  EXPECT_GE(count, 4u) << scenario;
}

TEST_F(ReportTest, CircularReportIsSymbolised) {
  Report r = circular_report();
  const std::string& t = r.text;
  const std::size_t stack = t.find("stack backtrace:");
  ASSERT_NE(stack, std::string::npos) << t;
  // The acquisition that closed the cycle is on the current stack.
  EXPECT_NE(t.find("lockdep_report_test_take_b_then_a", stack), std::string::npos) << t;
  // The edge recorded earlier kept the stack it was made on.
  const std::size_t chain = t.find("the existing dependency chain");
  ASSERT_NE(chain, std::string::npos) << t;
  const std::size_t a_then_b = t.find("lockdep_report_test_take_a_then_b", chain);
  EXPECT_NE(a_then_b, std::string::npos) << t;
  EXPECT_LT(a_then_b, stack) << t;
}

TEST_F(ReportTest, RecursiveLockingHasTheKernelShape) {
  Mutex x1(alpha_key(), "alpha.one");
  Mutex x2(alpha_key(), "alpha.two");
  lockdep_report_test_take_twice(x1, x2);
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kRecursiveLocking);
  const std::string& t = r[0].text;
  EXPECT_TRUE(contains_in_order(t, {"WARNING: possible recursive locking detected", "is trying to acquire lock:",
                                    "but task is already holding lock:", "Possible unsafe locking scenario",
                                    "CPU0", "*** DEADLOCK ***", "May be due to missing lock nesting notation",
                                    "stack backtrace:"}));
  EXPECT_NE(t.find("report.alpha"), std::string::npos) << t;
  EXPECT_NE(t.find("lockdep_report_test_take_twice", t.find("stack backtrace:")), std::string::npos) << t;
}

TEST_F(ReportTest, BadUnlockHasTheKernelShape) {
  LockdepMap m(beta_key(), "beta.map");
  detail::release(m);
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kBadUnlock);
  EXPECT_TRUE(contains_in_order(r[0].text, {"WARNING: bad unlock balance detected!", "is trying to release lock",
                                            "but there are no more locks to release!"}));
  EXPECT_NE(r[0].text.find("beta.map"), std::string::npos) << r[0].text;
}

TEST_F(ReportTest, HeldLockFreedHasTheKernelShape) {
  std::thread t([] {
    auto* m = new LockdepMap(beta_key(), "beta.freed");
    ASSERT_TRUE(detail::acquire(*m, detail::Read::kExclusive, false, {}));
    delete m;
  });
  t.join();
  auto r = reports();
  ASSERT_GE(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kHeldLockFreed);
  EXPECT_NE(r[0].text.find("WARNING: held lock freed!"), std::string::npos) << r[0].text;
  EXPECT_NE(r[0].text.find("beta.freed"), std::string::npos) << r[0].text;
}

TEST_F(ReportTest, NestLockNotHeldNamesTheNestLock) {
  Mutex outer(beta_key(), "beta.outer");
  Mutex inner(alpha_key(), "alpha.inner");
  { MutexGuard g(inner, {.nest_lock = &outer.dep_map()}); }
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kNestLockNotHeld);
  EXPECT_TRUE(contains_in_order(r[0].text, {"WARNING: Nested lock was not taken", "is trying to lock:",
                                            "but this task is not holding:", "beta.outer"}));
}

TEST_F(ReportTest, AssertionNamesTheLock) {
  LockdepMap m(alpha_key(), "alpha.asserted");
  m.assert_held();
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kAssertion);
  EXPECT_NE(r[0].text.find("alpha.asserted"), std::string::npos) << r[0].text;
}

// lockdep_map.h: "`name` names this instance in reports". Two instances of one class must be told apart
// in a recursive-locking report, which is exactly where they differ.
TEST_F(ReportTest, RecursiveLockingNamesBothInstances) {
  Mutex x1(alpha_key(), "alpha.one");
  Mutex x2(alpha_key(), "alpha.two");
  lockdep_report_test_take_twice(x1, x2);
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_TRUE(contains_in_order(r[0].text, {"is trying to acquire lock:", "alpha.two",
                                            "but task is already holding lock:", "alpha.one"}));
}

// The class of an instance is named too, so reports about one instance can be matched with the graph.
TEST_F(ReportTest, NestLockReportNamesTheAcquiredInstance) {
  Mutex outer(beta_key(), "beta.outer");
  Mutex inner(alpha_key(), "alpha.inner");
  { MutexGuard g(inner, {.nest_lock = &outer.dep_map()}); }
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_TRUE(contains_in_order(r[0].text, {"is trying to lock:", "alpha.inner", "but this task is not holding:"}));
}

TEST_F(ReportTest, KindNames) {
  const ReportKind kinds[] = {ReportKind::kCircularDependency, ReportKind::kRecursiveLocking,
                              ReportKind::kBadUnlock,          ReportKind::kHeldLockFreed,
                              ReportKind::kNestLockNotHeld,    ReportKind::kAssertion,
                              ReportKind::kLimitReached};
  std::vector<std::string> names;
  for (ReportKind k : kinds) {
    ASSERT_NE(report_kind_name(k), nullptr);
    names.emplace_back(report_kind_name(k));
    EXPECT_FALSE(names.back().empty());
  }
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (std::size_t j = i + 1; j < names.size(); ++j) EXPECT_NE(names[i], names[j]);
  }
}

// --- sinks ---

TEST_F(ReportTest, ReportsAreKeptAndCleared) {
  EXPECT_EQ(report_count(), 0u);
  EXPECT_TRUE(reports().empty());
  circular_report();
  EXPECT_EQ(report_count(), 1u);
  EXPECT_EQ(reports().size(), 1u);
  clear_reports();
  EXPECT_EQ(report_count(), 0u);
  EXPECT_TRUE(reports().empty());
}

TEST_F(ReportTest, PrintedTextIsTheKeptText) {
  set_print_reports(true);
  ::testing::internal::CaptureStderr();
  circular_report();
  const std::string err = ::testing::internal::GetCapturedStderr();
  set_print_reports(false);
  auto r = reports();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_NE(err.find(r[0].text), std::string::npos) << "stderr:\n" << err << "\nkept:\n" << r[0].text;
}

TEST_F(ReportTest, SilencedReportsPrintNothing) {
  ::testing::internal::CaptureStderr();
  circular_report();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("circular locking"), std::string::npos) << err;
  EXPECT_EQ(report_count(), 1u);
}

// --- modes ---

TEST_F(ReportTest, OffModeReportsNothing) {
  set_mode(Mode::kOff);
  Mutex a(alpha_key());
  Mutex b(beta_key());
  lockdep_report_test_take_a_then_b(a, b);
  lockdep_report_test_take_b_then_a(a, b);
  {
    MutexGuard g(a);
    EXPECT_FALSE(a.dep_map().held());
  }
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

TEST_F(ReportTest, AbortModeAbortsWithTheReportOnStderr) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        set_print_reports(true);
        set_mode(Mode::kAbort);
        Mutex a(alpha_key());
        Mutex b(beta_key());
        lockdep_report_test_take_a_then_b(a, b);
        lockdep_report_test_take_b_then_a(a, b);
        std::_Exit(0);  // not reached
      },
      ::testing::KilledBySignal(SIGABRT), "WARNING: possible circular locking dependency detected");
}

TEST_F(ReportTest, AbortModeIsQuietWithoutAProblem) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        set_mode(Mode::kAbort);
        Mutex a(alpha_key());
        Mutex b(beta_key());
        lockdep_report_test_take_a_then_b(a, b);
        lockdep_report_test_take_a_then_b(a, b);
        std::_Exit(report_count() == 0 ? 7 : 1);
      },
      ::testing::ExitedWithCode(7), "");
}

// --- UIOMMUFD_LOCKDEP ---
//
// The mode is read from the environment when the process starts, so each value is checked in a fresh
// copy of this binary that runs only the probe below and prints the mode it sees.

TEST(LockdepEnvProbe, DISABLED_PrintMode) {
  const char* name = mode() == Mode::kOff ? "off" : mode() == Mode::kReport ? "report" : "abort";
  std::printf("lockdep-mode=%s\n", name);
  std::fflush(stdout);
}

// Runs the probe with UIOMMUFD_LOCKDEP=value (unset when null) and returns its output.
std::string probe_mode(const char* value) {
  std::vector<std::string> set;
  if (value) set.push_back(std::string("UIOMMUFD_LOCKDEP=") + value);
  ChildResult r =
      run_probe("LockdepEnvProbe.DISABLED_PrintMode", environment_with(set, {"UIOMMUFD_LOCKDEP"}));
  return r.spawn_error ? "spawn failed" : r.out;
}

TEST(LockdepEnv, ModeFromEnvironment) {
  EXPECT_NE(probe_mode("off").find("lockdep-mode=off"), std::string::npos);
  EXPECT_NE(probe_mode("report").find("lockdep-mode=report"), std::string::npos);
  EXPECT_NE(probe_mode("abort").find("lockdep-mode=abort"), std::string::npos);
  EXPECT_NE(probe_mode(nullptr).find("lockdep-mode=report"), std::string::npos) << "default is report";
}

}  // namespace
}  // namespace uiommufd::lockdep::selftest

#else

TEST(LockdepReport, CompiledOut) { GTEST_SKIP() << "lock validator compiled out"; }

#endif
