#include "uiommufd/base/fork.h"

#include <atomic>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uiommufd/base/fault.h"

namespace uiommufd {
namespace {

// Handlers are plain functions: they append to one log.
std::string g_log;
template <char kWhat, int kLevel>
void record() {
  g_log += kWhat;
  g_log += static_cast<char>('0' + kLevel);
  g_log += ' ';
}
template <int kLevel>
ForkHandlers recording() {
  return {record<'p', kLevel>, record<'a', kLevel>, record<'c', kLevel>};
}

class ForkHandlerListTest : public ::testing::Test {
 protected:
  void SetUp() override { g_log.clear(); }
};

TEST_F(ForkHandlerListTest, PrepareRunsOutermostFirstParentAndChildInnermostFirst) {
  ForkHandlerList list;
  // Set out of order: the level decides, not the order of setting.
  list.set(ForkLevel::kValidator, recording<4>());
  list.set(ForkLevel::kEngineGate, recording<0>());
  list.set(ForkLevel::kSlab, recording<2>());
  list.set(ForkLevel::kFdTable, recording<1>());
  list.set(ForkLevel::kFaultRegistry, recording<3>());
  list.prepare();
  list.parent();
  EXPECT_EQ(g_log, "p0 p1 p2 p3 p4 a4 a3 a2 a1 a0 ");
  g_log.clear();
  list.prepare();
  list.child();
  EXPECT_EQ(g_log, "p0 p1 p2 p3 p4 c4 c3 c2 c1 c0 ");
}

TEST_F(ForkHandlerListTest, LevelsWithoutHandlersAreSkipped) {
  ForkHandlerList list;
  list.set(ForkLevel::kFdTable, recording<1>());
  list.set(ForkLevel::kFaultRegistry, recording<3>());
  list.prepare();
  list.child();
  EXPECT_EQ(g_log, "p1 p3 c3 c1 ");
}

// A level set between prepare and parent (a handler set while another thread forks) was not prepared, so
// it has nothing to release.
TEST_F(ForkHandlerListTest, ALevelSetAfterPrepareIsNotReleasedByThatFork) {
  ForkHandlerList list;
  list.set(ForkLevel::kSlab, recording<2>());
  list.prepare();
  list.set(ForkLevel::kFaultRegistry, recording<3>());
  list.parent();
  EXPECT_EQ(g_log, "p2 a2 ");
}

UIOMMUFD_FAULT_SITE(g_fork_test_site, "test.fork_site", ENOMEM);

// The registry's lock is released in the child by the forking thread's copy, which took it before the
// fork, while another thread keeps taking it (reading a site's hits walks the registry under it).
TEST(ForkTest, AChildForkedWhileAnotherThreadUsesTheFaultRegistryCanArmItself) {
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    fail_nth_set(0);  // registers this thread
    while (!stop.load(std::memory_order_relaxed)) (void)g_fork_test_site.hits();
  });
  for (int i = 0; i < 20; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      fail_nth_set(1);
      _exit(should_fail(g_fork_test_site) && fail_nth_get() == 0 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  stop = true;
  reader.join();
}

}  // namespace
}  // namespace uiommufd
