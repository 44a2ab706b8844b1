#include "engine_gate.h"

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

namespace uiommufd::runtime {
namespace {

using std::chrono::milliseconds;

void wait_for(const std::atomic<bool>& flag) {
  while (!flag.load()) std::this_thread::yield();
}

TEST(EngineGateTest, ScopesNest) {
  EXPECT_FALSE(EngineGate::inside());
  {
    EngineGate::Scope outer;
    EXPECT_TRUE(EngineGate::inside());
    {
      EngineGate::Scope inner;
      EXPECT_TRUE(EngineGate::inside());
    }
    EXPECT_TRUE(EngineGate::inside());
  }
  EXPECT_FALSE(EngineGate::inside());
}

// The sleeps only make the bad interleaving likely if the gate were broken; what is checked holds for
// every interleaving of a working gate.
TEST(EngineGateTest, ClosingWaitsForTheThreadsInside) {
  std::atomic<bool> inside{false}, left{false};
  std::thread t([&] {
    EngineGate::Scope scope;
    inside = true;
    std::this_thread::sleep_for(milliseconds(20));
    left = true;
  });
  wait_for(inside);
  EngineGate::close_for_fork();
  EXPECT_TRUE(left.load());
  EngineGate::open_after_fork();
  t.join();
}

TEST(EngineGateTest, EnteringWaitsWhileClosed) {
  std::atomic<bool> started{false}, opened{false}, entered_after_open{false};
  std::thread warm_up([] {});  // the process is multi-threaded from here on, so every entry is counted
  warm_up.join();
  EngineGate::close_for_fork();
  std::thread t([&] {
    started = true;
    EngineGate::Scope scope;
    entered_after_open = opened.load();
  });
  wait_for(started);
  std::this_thread::sleep_for(milliseconds(20));
  opened = true;
  EngineGate::open_after_fork();
  t.join();
  EXPECT_TRUE(entered_after_open.load());
}

// The real thing: the gate's fork handlers are set (base/fork.h), so fork() waits until the thread
// inside has left, and the child's copy is of memory as it was after that.
TEST(EngineGateTest, ForkWaitsForTheThreadsInside) {
  std::atomic<bool> inside{false}, left{false}, forked{false};
  std::thread t([&] {
    {
      EngineGate::Scope scope;
      inside = true;
      std::this_thread::sleep_for(milliseconds(20));
      left = true;
    }
    // Still running at the fork: ThreadSanitizer takes a thread that has ended but is not joined for a
    // leak, in the child too.
    wait_for(forked);
  });
  wait_for(inside);
  const pid_t pid = fork();
  if (pid == 0) _exit(left.load() && !EngineGate::inside() ? 0 : 1);
  forked = true;
  t.join();
  ASSERT_GE(pid, 0);
  EXPECT_TRUE(left.load());
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // Open again in the parent: a new entry does not wait.
  EngineGate::Scope scope;
  EXPECT_TRUE(EngineGate::inside());
}

}  // namespace
}  // namespace uiommufd::runtime
