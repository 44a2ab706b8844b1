// The validator across threads: one global graph, per-thread held stacks, and the access_unmap pattern
// the engine relies on (an unmap callback that takes a driver lock, against a destroy that waits for the
// callbacks while the driver holds that lock).
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "testing/scenario.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/lock_class_key.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/lockdep/lockdep_map.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/lockdep/shared_mutex.h"

#if UIOMMUFD_LOCKDEP_ENABLED

namespace uiommufd::lockdep::selftest {
namespace {

class ThreadsTest : public LockdepTest {};

// Runs `fn` on a new thread and waits for it, so threads never overlap and real locks never block.
template <class Fn>
void on_thread(Fn&& fn) {
  std::thread t(std::forward<Fn>(fn));
  t.join();
}

// Runs one script on a new thread, keeping the reports already collected.
void script_on_thread(Flavour flavour, const char* script) {
  on_thread([&] {
    ScenarioRunner runner(flavour);
    EXPECT_TRUE(runner.run(script)) << runner.error();
  });
}

TEST_F(ThreadsTest, CrossThreadABBAMutex) {
  Mutex a(key_for('A'), "A1");
  Mutex b(key_for('B'), "B1");
  on_thread([&] {
    MutexGuard ga(a);
    MutexGuard gb(b);
  });
  EXPECT_EQ(report_count(), 0u);
  on_thread([&] {
    MutexGuard gb(b);
    MutexGuard ga(a);
  });
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kCircularDependency);
}

TEST_F(ThreadsTest, CrossThreadCyclesEveryKind) {
  for (Flavour f : {Flavour::kMutex, Flavour::kRwsemWrite, Flavour::kRwsemRead, Flavour::kMap,
                    Flavour::kMapShared, Flavour::kMapRecursiveRead}) {
    SCOPED_TRACE(flavour_name(f));
    fresh_validator();
    script_on_thread(f, "A B");
    script_on_thread(f, "B C");
    script_on_thread(f, "C A");
    auto r = reports();
    if (f == Flavour::kMapRecursiveRead) {
      EXPECT_TRUE(r.empty()) << describe(r);
    } else {
      ASSERT_EQ(r.size(), 1u) << describe(r);
      EXPECT_EQ(r[0].kind, ReportKind::kCircularDependency);
    }
  }
}

TEST_F(ThreadsTest, CrossThreadChainCacheIsGlobal) {
  // A chain validated by one thread is a cache hit for another: no new search.
  script_on_thread(Flavour::kMap, "A B C");
  const std::size_t searches = stats().graph_searches;
  for (int i = 0; i < 4; ++i) script_on_thread(Flavour::kMap, "A B C, A B C");
  EXPECT_EQ(stats().graph_searches, searches);
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

// ---------------------------------------------------------------------------------------------------
// The unmap-callback deadlock. The unmap path runs the access's callback inside the access_unmap map held
// as a reader; the callback takes the driver's lock. Access destroy waits for every callback to leave:
// access_unmap.touch(). A driver that destroys its access while holding its own lock deadlocks against a
// concurrent unmap; the validator must see it whichever half runs first.

LockClassKey& access_unmap_key() {
  static LockClassKey key("access_unmap");
  return key;
}
LockClassKey& driver_lock_key() {
  static LockClassKey key("driver.lock");
  return key;
}

struct Driver {
  LockdepMap access_unmap{access_unmap_key()};
  Mutex lock{driver_lock_key()};
};

enum class Inside { kShared, kRecursiveShared };
enum class Order { kUnmapFirst, kDestroyFirst };

void unmap_path(Driver& d, Inside inside) {
  if (inside == Inside::kShared) {
    MapSharedGuard in(d.access_unmap);
    MutexGuard l(d.lock);  // the driver's callback
  } else {
    MapRecursiveSharedGuard in(d.access_unmap);
    MutexGuard l(d.lock);
  }
}

void buggy_destroy(Driver& d) {
  MutexGuard l(d.lock);
  d.access_unmap.touch();  // waits for callbacks with the lock they take held
}

void correct_destroy(Driver& d) {
  { MutexGuard l(d.lock); }
  d.access_unmap.touch();
}

using UnmapParam = std::tuple<Inside, Order>;

std::string unmap_name(const ::testing::TestParamInfo<UnmapParam>& info) {
  return std::string(std::get<0>(info.param) == Inside::kShared ? "Shared" : "RecursiveShared") +
         (std::get<1>(info.param) == Order::kUnmapFirst ? "_UnmapFirst" : "_DestroyFirst");
}

class UnmapCallbackTest : public LockdepTest, public ::testing::WithParamInterface<UnmapParam> {};

TEST_P(UnmapCallbackTest, BuggyDriverIsReported) {
  const Inside inside = std::get<0>(GetParam());
  const Order order = std::get<1>(GetParam());
  Driver d;
  if (order == Order::kUnmapFirst) {
    on_thread([&] { unmap_path(d, inside); });
    EXPECT_EQ(report_count(), 0u) << describe(reports());
    on_thread([&] { buggy_destroy(d); });
  } else {
    on_thread([&] { buggy_destroy(d); });
    EXPECT_EQ(report_count(), 0u) << describe(reports());
    on_thread([&] { unmap_path(d, inside); });
  }
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kCircularDependency);
  const std::string& text = r[0].text;
  for (const char* needle :
       {"access_unmap", "driver.lock", "WARNING: possible circular locking dependency detected",
        "the existing dependency chain (in reverse order) is:", "Possible unsafe locking scenario",
        "*** DEADLOCK ***"}) {
    EXPECT_NE(text.find(needle), std::string::npos) << "missing \"" << needle << "\" in:\n" << text;
  }
}

TEST_P(UnmapCallbackTest, CorrectDriverIsSilent) {
  const Inside inside = std::get<0>(GetParam());
  const Order order = std::get<1>(GetParam());
  Driver d;
  for (int i = 0; i < 3; ++i) {
    if (order == Order::kUnmapFirst) {
      on_thread([&] { unmap_path(d, inside); });
      on_thread([&] { correct_destroy(d); });
    } else {
      on_thread([&] { correct_destroy(d); });
      on_thread([&] { unmap_path(d, inside); });
    }
  }
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

INSTANTIATE_TEST_SUITE_P(
    Unmap, UnmapCallbackTest,
    ::testing::Combine(::testing::Values(Inside::kShared, Inside::kRecursiveShared),
                       ::testing::Values(Order::kUnmapFirst, Order::kDestroyFirst)),
    unmap_name);

// Deliberate misuse below: the static analysis would (rightly) reject it; the validator is under test.
void nested_recursive_unmaps(Driver& d) NO_THREAD_SAFETY_ANALYSIS {
  MapRecursiveSharedGuard outer(d.access_unmap);
  MapRecursiveSharedGuard inner(d.access_unmap);
  MutexGuard l(d.lock);
}

void nested_plain_unmaps(Driver& d) NO_THREAD_SAFETY_ANALYSIS {
  MapSharedGuard outer(d.access_unmap);
  MapSharedGuard inner(d.access_unmap);
}

void destroy_from_callback(Driver& d) NO_THREAD_SAFETY_ANALYSIS {
  MapSharedGuard in(d.access_unmap);
  d.access_unmap.touch();
}

TEST_F(ThreadsTest, UnmapInsideUnmapIsFineForRecursiveReaders) {
  // Nested unmaps (a callback that triggers another unmap of the same access) hold the map twice as a
  // recursive reader: allowed. As a plain reader it would be recursive locking.
  Driver d;
  on_thread([&] { nested_recursive_unmaps(d); });
  EXPECT_EQ(report_count(), 0u) << describe(reports());
  on_thread([&] { nested_plain_unmaps(d); });
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kRecursiveLocking);
}

TEST_F(ThreadsTest, DestroyFromInsideTheCallbackIsRecursiveLocking) {
  // touch() while holding the map shared: the destroy would wait for itself.
  Driver d;
  on_thread([&] { destroy_from_callback(d); });
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kRecursiveLocking);
}

// ---------------------------------------------------------------------------------------------------
// Held stacks are per thread.

TEST_F(ThreadsTest, HeldStacksArePerThread) {
  LockdepMap m(key_for('M'), "M1");
  std::promise<void> taken;
  std::promise<void> done;
  std::thread holder([&] {
    MapGuard g(m);
    EXPECT_TRUE(m.held());
    taken.set_value();
    done.get_future().wait();
  });
  taken.get_future().wait();
  EXPECT_FALSE(m.held()) << "held by another thread only";
  on_thread([&] {
    // Another thread taking the same instance is not recursion (for a real lock it would simply wait).
    { MapGuard g(m); }
    m.assert_held();
  });
  done.set_value();
  holder.join();
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kAssertion);
}

TEST_F(ThreadsTest, ConsistentOrderUnderContentionIsSilent) {
  Mutex a(key_for('A'), "A1");
  Mutex b(key_for('B'), "B1");
  SharedMutex c(key_for('C'), "C1");
  std::atomic<long> counter{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        MutexGuard ga(a);
        if ((i + t) % 3 == 0) {
          MutexGuard gb(b);
          ReadGuard gc(c);
          counter.fetch_add(1, std::memory_order_relaxed);
        } else {
          WriteGuard gc(c);  // skips B: A -> C directly
          counter.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter.load(), 8 * 2000);
  EXPECT_EQ(report_count(), 0u) << describe(reports());
  EXPECT_FALSE(a.dep_map().held());
}

TEST_F(ThreadsTest, ConcurrentInversionOnMapsIsReported) {
  // Maps never block, so the inversion can race for real; the graph must catch it whichever edge wins.
  LockdepMap a(key_for('A'), "A1");
  LockdepMap b(key_for('B'), "B1");
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < 500; ++i) {
        if (t % 2 == 0) {
          MapGuard ga(a);
          MapGuard gb(b);
        } else {
          MapGuard gb(b);
          MapGuard ga(a);
        }
      }
    });
  }
  go.store(true);
  for (auto& t : threads) t.join();
  auto r = reports();
  ASSERT_GE(r.size(), 1u);
  for (const Report& rep : r) EXPECT_EQ(rep.kind, ReportKind::kCircularDependency) << rep.text;
}

TEST_F(ThreadsTest, ManyThreadsManyClassesNoFalsePositive) {
  // Each thread nests its own pair in a fixed global order (letters ascending).
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([t] {
      const char first = static_cast<char>('A' + t);
      const std::string script = std::string(1, first) + " " + static_cast<char>(first + 1) + " " +
                                 static_cast<char>(first + 3);
      for (int i = 0; i < 50; ++i) {
        ScenarioRunner runner(Flavour::kMap);
        EXPECT_TRUE(runner.run(script)) << runner.error();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

}  // namespace
}  // namespace uiommufd::lockdep::selftest

#else

TEST(LockdepThreads, CompiledOut) { GTEST_SKIP() << "lock validator compiled out"; }

#endif
