// With the validator compiled out, every instrumented lock is the bare lock and still locks.
#include <mutex>
#include <shared_mutex>
#include <thread>

#include <gtest/gtest.h>

#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/lockdep/shared_mutex.h"

namespace uiommufd::lockdep {
namespace {

static_assert(!kCompiledIn, "this test is built only with UIOMMUFD_LOCKDEP=OFF");
static_assert(sizeof(Mutex) == sizeof(std::mutex));
static_assert(sizeof(SharedMutex) == sizeof(std::shared_mutex));

TEST(LockdepCompiledOut, LocksStillExclude) {
  Mutex m("plain");
  long counter = 0;
  auto bump = [&] {
    for (int i = 0; i < 100000; ++i) {
      MutexGuard g(m);
      ++counter;
    }
  };
  std::thread t1(bump), t2(bump);
  t1.join();
  t2.join();
  EXPECT_EQ(counter, 200000);
}

TEST(LockdepCompiledOut, NothingIsEverReported) {
  Mutex a("a"), b("b");
  {
    MutexGuard ga(a);
    MutexGuard gb(b);
  }
  {
    MutexGuard gb(b);
    MutexGuard ga(a);
  }
  EXPECT_EQ(report_count(), 0u);
  EXPECT_TRUE(reports().empty());
}

}  // namespace
}  // namespace uiommufd::lockdep
