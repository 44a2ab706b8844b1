// The validator sees the locks the fork handlers take (base/fork.h) and base's own locks
// (base/base_lock.h): a fork handler list that takes them against the declared order is reported, as is a
// run-time path that does, and a lock held across fork() that a run-time path takes inside one of them.
#include <string>

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testing/scenario.h"

#include "uiommufd/base/base_lock.h"
#include "uiommufd/base/fork.h"
#include "uiommufd/base/slab.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/lockdep/mutex.h"

#if UIOMMUFD_LOCKDEP_ENABLED

namespace uiommufd::lockdep::selftest {
namespace {

// Other instances of the classes of the slab's and the fault registry's locks: the validator reasons
// about classes, so these stand for them without touching the real ones.
constinit BaseMutex g_slab_class{BaseLockId::kSlab};
constinit BaseMutex g_registry_class{BaseLockId::kFaultRegistry};

class ForkOrderTest : public LockdepTest {};

::testing::AssertionResult one_circular_report_naming(const char* a, const char* b) {
  const std::vector<Report> got = reports();
  if (got.size() != 1) return ::testing::AssertionFailure() << got.size() << " reports";
  if (got[0].kind != ReportKind::kCircularDependency)
    return ::testing::AssertionFailure() << "not a circular dependency:\n" << got[0].text;
  if (got[0].text.find(a) == std::string::npos || got[0].text.find(b) == std::string::npos)
    return ::testing::AssertionFailure() << "does not name " << a << " and " << b << ":\n" << got[0].text;
  return ::testing::AssertionSuccess();
}

// Handlers that take the two classes the wrong way round: the registry's at the slab's level, the slab's
// at the registry's. Taken in one handler and released in another, as fork handlers do.
void take_registry_class() NO_THREAD_SAFETY_ANALYSIS { g_registry_class.lock(); }
void release_registry_class() NO_THREAD_SAFETY_ANALYSIS { g_registry_class.unlock(); }
void take_slab_class() NO_THREAD_SAFETY_ANALYSIS { g_slab_class.lock(); }
void release_slab_class() NO_THREAD_SAFETY_ANALYSIS { g_slab_class.unlock(); }

TEST_F(ForkOrderTest, InvertedPreforkOrderIsReported) {
  ForkHandlerList list;
  list.set(ForkLevel::kSlab, {take_registry_class, release_registry_class, release_registry_class});
  list.set(ForkLevel::kFaultRegistry, {take_slab_class, release_slab_class, release_slab_class});
  list.prepare();
  list.parent();
  EXPECT_TRUE(one_circular_report_naming("base.slab", "base.fault_registry"));
}

TEST_F(ForkOrderTest, PreforkInTheDeclaredOrderIsNotReported) {
  ForkHandlerList list;
  list.set(ForkLevel::kSlab, {take_slab_class, release_slab_class, release_slab_class});
  list.set(ForkLevel::kFaultRegistry, {take_registry_class, release_registry_class, release_registry_class});
  list.prepare();
  list.parent();
  EXPECT_EQ(report_count(), 0u);
}

TEST_F(ForkOrderTest, RunTimeInversionOfBaseLocksIsReported) {
  {
    BaseGuard registry(g_registry_class);
    BaseGuard slab(g_slab_class);
  }
  EXPECT_TRUE(one_circular_report_naming("base.slab", "base.fault_registry"));
}

// A lock held across fork() is outside every lock the fork handlers take; a run-time path that takes it
// inside one of them (here: inside the slab's) closes a cycle with the slab's real fork handler, which
// the validator reports as the handler takes the slab's lock.
TEST_F(ForkOrderTest, LockHeldAcrossForkTakenInsideAForkLevelAtRunTimeIsReported) {
  // Links the slab, and with it its fork handlers, into this program.
  Slab slab(64);
  slab.free(slab.alloc());

  static LockClassKey held_across_fork{"test.held_across_fork"};
  Mutex user_lock(held_across_fork);
  {
    BaseGuard slab_lock(g_slab_class);
    MutexGuard g(user_lock);
  }
  ASSERT_EQ(report_count(), 0u);
  pid_t pid = 0;
  {
    MutexGuard g(user_lock);
    pid = fork();
    if (pid == 0) _exit(0);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(one_circular_report_naming("base.slab", "test.held_across_fork"));
}

}  // namespace
}  // namespace uiommufd::lockdep::selftest

#endif  // UIOMMUFD_LOCKDEP_ENABLED
