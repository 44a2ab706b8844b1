// The per-thread counters of include/uiommufd/base/fault.h as the fail-nth files of other threads use
// them: fail_nth_set_thread / fail_nth_get_thread.
#include <atomic>
#include <cerrno>
#include <thread>

#include <gtest/gtest.h>
#include <unistd.h>

#include "uiommufd/base/fault.h"

namespace uiommufd {
namespace {

UIOMMUFD_FAULT_SITE(g_test_site, "runtime_test.site", ENOMEM);

// A thread that reports its id, waits until released, then runs `body`.
class Worker {
 public:
  template <typename F>
  explicit Worker(F body)
      : thread_([this, body] {
          tid_.store(static_cast<int>(gettid()));
          while (!go_.load()) std::this_thread::yield();
          body();
        }) {
    while (tid_.load() == 0) std::this_thread::yield();
  }
  int tid() const { return tid_.load(); }
  void release_and_join() {
    go_.store(true);
    thread_.join();
  }

 private:
  std::atomic<int> tid_{0};
  std::atomic<bool> go_{false};
  std::thread thread_;
};

TEST(FaultRegistry, SetForSelfIsFailNthSet) {
  ASSERT_TRUE(fail_nth_set_thread(static_cast<int>(gettid()), 9).ok());
  EXPECT_EQ(fail_nth_get(), 9u);
  EXPECT_EQ(*fail_nth_get_thread(static_cast<int>(gettid())), 9u);
  fail_nth_set(0);
}

TEST(FaultRegistry, ValueSetBeforeTheThreadsFirstCheckIsTakenOver) {
  uint32_t seen = 0;
  Worker w([&] { seen = fail_nth_get(); });
  ASSERT_TRUE(fail_nth_set_thread(w.tid(), 4).ok());
  EXPECT_EQ(*fail_nth_get_thread(w.tid()), 4u);
  w.release_and_join();
  EXPECT_EQ(seen, 4u);
}

TEST(FaultRegistry, ArmingAnotherThreadFailsItsCheck) {
  bool failed = false;
  uint32_t after = 1;
  Worker w([&] {
    failed = should_fail(g_test_site);
    after = fail_nth_get();
  });
  ASSERT_TRUE(fail_nth_set_thread(w.tid(), 1).ok());
  w.release_and_join();
  EXPECT_TRUE(failed);
  EXPECT_EQ(after, 0u);
}

TEST(FaultRegistry, ReadsAndOverwritesTheCounterOfAKnownThread) {
  std::atomic<int> tid{0};
  std::atomic<bool> done{false};
  uint32_t final_value = 0;
  std::thread t([&] {
    fail_nth_set(6);  // known to the registry from here on
    tid.store(static_cast<int>(gettid()));
    while (!done.load()) std::this_thread::yield();
    final_value = fail_nth_get();
  });
  while (tid.load() == 0) std::this_thread::yield();
  EXPECT_EQ(*fail_nth_get_thread(tid.load()), 6u);
  ASSERT_TRUE(fail_nth_set_thread(tid.load(), 2).ok());
  done.store(true);
  t.join();
  EXPECT_EQ(final_value, 2u);
}

TEST(FaultRegistry, UnknownThreadIsEsrch) {
  EXPECT_EQ(fail_nth_set_thread(0x3fffffff, 1).error(), ESRCH);
  EXPECT_EQ(fail_nth_get_thread(0x3fffffff).error(), ESRCH);
}

}  // namespace
}  // namespace uiommufd
