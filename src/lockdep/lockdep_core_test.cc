// The validator's own machinery: class identity, the chain cache, modes, limits and concurrent use.
// The deadlock-verdict table lives in lockdep_selftest_test.cc.
#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/lockdep/shared_mutex.h"

namespace uiommufd::lockdep {
namespace {

class LockdepCore : public ::testing::Test {
 protected:
  void SetUp() override {
    set_mode(Mode::kReport);
    set_print_reports(false);
    reset_for_testing();
    declared_ = stats().dependencies;  // the declared orders (the engine's), recorded by every reset
  }
  void TearDown() override {
    set_print_reports(true);
    set_mode(Mode::kReport);
    reset_for_testing();
  }

  std::size_t declared_ = 0;
};

Mutex* make_at_one_site(const char* name) { return new Mutex(name); }

TEST_F(LockdepCore, LocksFromOneSiteShareAClass) {
  std::unique_ptr<Mutex> a(make_at_one_site("site.lock"));
  std::unique_ptr<Mutex> b(make_at_one_site("site.lock"));
  EXPECT_EQ(&a->dep_map().key(), &b->dep_map().key());
  {
    MutexGuard ga(*a);
    MutexGuard gb(*b);  // same class, no nesting notation: AA
  }
  ASSERT_EQ(report_count(), 1u);
  EXPECT_EQ(reports()[0].kind, ReportKind::kRecursiveLocking);
}

TEST_F(LockdepCore, DifferentNamesAtOneSiteAreDifferentClasses) {
  std::unique_ptr<Mutex> a(make_at_one_site("site.a"));
  std::unique_ptr<Mutex> b(make_at_one_site("site.b"));
  EXPECT_NE(&a->dep_map().key(), &b->dep_map().key());
  {
    MutexGuard ga(*a);
    MutexGuard gb(*b);
  }
  EXPECT_EQ(report_count(), 0u);
}

TEST_F(LockdepCore, ADeclaredOrderIsEnforcedTheFirstTimeItIsBroken) {
  static LockClassKey outer{"declared.outer"}, middle{"declared.middle"}, inner{"declared.inner"};
  declare_order({&outer, &middle, &inner});
  Mutex a(outer), c(inner);
  {
    // inner then outer never happened the other way round in this run: the declaration alone makes it
    // a cycle (through middle, which is never taken at all).
    MutexGuard gc(c);
    MutexGuard ga(a);
  }
  ASSERT_EQ(report_count(), 1u);
  EXPECT_EQ(reports()[0].kind, ReportKind::kCircularDependency);
  // The declaration outlives a reset, and the declared direction stays clean.
  reset_for_testing();
  {
    MutexGuard ga(a);
    MutexGuard gc(c);
  }
  EXPECT_EQ(report_count(), 0u);
  {
    MutexGuard gc(c);
    MutexGuard ga(a);
  }
  EXPECT_EQ(report_count(), 1u);
}

TEST_F(LockdepCore, TheEngineOrderIsDeclaredBeforeAnyEngineLockIsTaken) {
  // Instances of two engine classes, against their order (the IOVA lock is above pages.mutex), with
  // readers: a shared hold of the IOVA lock is still ordered.
  Mutex pages(lock_order::kPagesMutex);
  SharedMutex iova(lock_order::kIoptIovaRwsem);
  {
    MutexGuard gp(pages);
    ReadGuard gi(iova);
  }
  ASSERT_EQ(report_count(), 1u);
  EXPECT_EQ(reports()[0].kind, ReportKind::kCircularDependency);
}

TEST_F(LockdepCore, ExplicitKeyGroupsInstancesFromDifferentSites) {
  static LockClassKey key{"explicit.key"};
  Mutex a(key);
  Mutex b(key);
  EXPECT_STREQ(a.name(), "explicit.key");
  EXPECT_EQ(&a.dep_map().key(), &b.dep_map().key());
}

TEST_F(LockdepCore, RepeatedChainIsServedFromTheCache) {
  Mutex a("cache.a"), b("cache.b"), c("cache.c");
  {
    MutexGuard ga(a);
    MutexGuard gb(b);
    MutexGuard gc(c);
  }
  Stats before = stats();
  for (int i = 0; i < 1000; ++i) {
    MutexGuard ga(a);
    MutexGuard gb(b);
    MutexGuard gc(c);
  }
  Stats after = stats();
  EXPECT_EQ(after.graph_searches, before.graph_searches);
  EXPECT_EQ(after.chains, before.chains);
  // a->b, b->c; a->c is implied through b. The declared orders are there from the reset on.
  EXPECT_EQ(after.dependencies - declared_, 2u);
}

TEST_F(LockdepCore, SharedAndExclusiveAcquisitionsAreDifferentChains) {
  SharedMutex s("chain.rw");
  Mutex m("chain.m");
  {
    ReadGuard r(s);
    MutexGuard g(m);
  }
  std::size_t chains = stats().chains;
  {
    WriteGuard w(s);
    MutexGuard g(m);
  }
  EXPECT_GT(stats().chains, chains);
}

TEST_F(LockdepCore, OffModeRecordsNothing) {
  Mutex a("off.a"), b("off.b");
  set_mode(Mode::kOff);
  {
    MutexGuard ga(a);
    EXPECT_FALSE(a.dep_map().held());
    MutexGuard gb(b);
  }
  {
    MutexGuard gb(b);
    MutexGuard ga(a);
  }
  set_mode(Mode::kReport);
  EXPECT_EQ(report_count(), 0u);
  EXPECT_EQ(stats().dependencies, declared_);
}

TEST_F(LockdepCore, SwitchingModeWhileHoldingIsConsistent) {
  Mutex a("switch.a"), b("switch.b");
  {
    set_mode(Mode::kOff);
    MutexGuard ga(a);  // not tracked
    set_mode(Mode::kReport);
    MutexGuard gb(b);  // tracked; releasing a later is not an imbalance
    EXPECT_TRUE(b.dep_map().held());
    EXPECT_FALSE(a.dep_map().held());
  }
  {
    MutexGuard ga(a);  // tracked
    set_mode(Mode::kOff);
  }  // released while off: still popped, so the stack stays balanced
  set_mode(Mode::kReport);
  EXPECT_FALSE(a.dep_map().held());
  EXPECT_EQ(report_count(), 0u);
}

TEST_F(LockdepCore, ScopedModeRestores) {
  {
    ScopedMode off(Mode::kOff);
    EXPECT_EQ(mode(), Mode::kOff);
  }
  EXPECT_EQ(mode(), Mode::kReport);
}

TEST_F(LockdepCore, DepthLimitTurnsValidationOffWithAClearMessage) {
  static LockClassKey key{"depth.lock"};
  std::vector<std::unique_ptr<LockdepMap>> maps;
  for (std::size_t i = 0; i <= kMaxLockDepth; ++i) maps.push_back(std::make_unique<LockdepMap>(key));
  {
    std::vector<std::unique_ptr<MapRecursiveSharedGuard>> guards;
    for (auto& m : maps) guards.push_back(std::make_unique<MapRecursiveSharedGuard>(*m));
  }
  ASSERT_EQ(report_count(), 1u);
  Report r = reports()[0];
  EXPECT_EQ(r.kind, ReportKind::kLimitReached);
  EXPECT_NE(r.text.find("kMaxLockDepth (48)"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("turning off the locking correctness validator"), std::string::npos);
  EXPECT_FALSE(detail::validating());
  reset_for_testing();
  EXPECT_TRUE(detail::validating());
}

TEST_F(LockdepCore, SubclassOutOfRangeIsALimitNotACrash) {
  Mutex m("subclass.range");
  {
    MutexGuard g(m, {.subclass = kMaxSubclasses});
  }
  ASSERT_EQ(report_count(), 1u);
  EXPECT_EQ(reports()[0].kind, ReportKind::kLimitReached);
}

TEST_F(LockdepCore, SubclassesAreDistinctClassesInReports) {
  static LockClassKey key{"ioas.lock"};
  Mutex a(key), b(key);
  {
    MutexGuard ga(a);
    MutexGuard gb(b, {.subclass = 1});
  }
  {
    MutexGuard gb(b, {.subclass = 1});
    MutexGuard ga(a);
  }
  ASSERT_EQ(report_count(), 1u);
  EXPECT_NE(reports()[0].text.find("(ioas.lock/1)"), std::string::npos) << reports()[0].text;
}

TEST_F(LockdepCore, TryLockAdoptedIntoAGuardIsHeldAndReleased) {
  Mutex m("try.m");
  // A plain `if`, not ASSERT_TRUE: the thread-safety analysis follows try_lock() only through a branch.
  if (!m.try_lock()) FAIL() << "free mutex: try_lock failed";
  {
    MutexGuard g(m, std::adopt_lock);
    EXPECT_TRUE(m.dep_map().held());
  }
  EXPECT_FALSE(m.dep_map().held());
  SharedMutex s("try.s");
  if (!s.try_lock_shared()) FAIL() << "free shared mutex: try_lock_shared failed";
  {
    ReadGuard g(s, std::adopt_lock);
    EXPECT_TRUE(s.dep_map().held());
  }
  EXPECT_FALSE(s.dep_map().held());
  EXPECT_EQ(report_count(), 0u);
}

// Threads take a fixed global order of locks, with random subsets and modes, for a bounded time: the
// validator must stay silent, consistent and race-free (this test runs under ThreadSanitizer in CI).
TEST_F(LockdepCore, ConcurrentConsistentOrderStaysSilent) {
  constexpr int kLocks = 6;
  std::vector<std::unique_ptr<SharedMutex>> locks;
  static LockClassKey keys[kLocks] = {LockClassKey("stress.0"), LockClassKey("stress.1"),
                                      LockClassKey("stress.2"), LockClassKey("stress.3"),
                                      LockClassKey("stress.4"), LockClassKey("stress.5")};
  for (auto& k : keys) locks.push_back(std::make_unique<SharedMutex>(k));
  std::atomic<long> acquisitions{0};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(400);
  auto worker = [&](unsigned seed) {
    std::mt19937 rng(seed);
    while (std::chrono::steady_clock::now() < deadline) {
      unsigned subset = rng() % (1u << kLocks);
      unsigned shared = rng();
      std::vector<std::unique_ptr<ReadGuard>> readers;
      std::vector<std::unique_ptr<WriteGuard>> writers;
      for (int i = 0; i < kLocks; ++i) {
        if (!(subset & (1u << i))) continue;
        if (shared & (1u << i)) readers.push_back(std::make_unique<ReadGuard>(*locks[i]));
        else writers.push_back(std::make_unique<WriteGuard>(*locks[i]));
        acquisitions.fetch_add(1, std::memory_order_relaxed);
      }
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) threads.emplace_back(worker, t + 1);
  for (auto& t : threads) t.join();
  EXPECT_GT(acquisitions.load(), 0);
  EXPECT_EQ(report_count(), 0u) << (report_count() ? reports()[0].text : "");
}

// Two threads build the two halves of an ABBA concurrently; exactly one report names the pair.
TEST_F(LockdepCore, ConcurrentOppositeOrdersReportOnce) {
  for (int round = 0; round < 20; ++round) {
    reset_for_testing();
    LockdepMap a("race.a"), b("race.b");
    std::atomic<int> ready{0};
    auto take = [&](LockdepMap& x, LockdepMap& y) {
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      MapGuard gx(x);
      MapGuard gy(y);
    };
    std::thread t1(take, std::ref(a), std::ref(b));
    std::thread t2(take, std::ref(b), std::ref(a));
    t1.join();
    t2.join();
    ASSERT_EQ(report_count(), 1u) << "round " << round;
    EXPECT_EQ(reports()[0].kind, ReportKind::kCircularDependency);
  }
}

}  // namespace
}  // namespace uiommufd::lockdep
