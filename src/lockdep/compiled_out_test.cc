// With the validator compiled out, every instrumented lock is the bare lock and still locks, and the
// picture of the class graph says that there is none.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <unistd.h>

#include "uiommufd/lockdep/dot.h"
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

TEST(LockdepCompiledOut, PictureSaysCompiledOut) {
  char* buf = nullptr;
  std::size_t len = 0;
  std::FILE* f = open_memstream(&buf, &len);
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(write_dot(f).ok());
  std::fclose(f);
  const std::string dot(buf, len);
  std::free(buf);
  EXPECT_NE(dot.find("compiled out"), std::string::npos) << dot;
  EXPECT_NE(dot.find("digraph"), std::string::npos) << dot;

  char dir[] = "/tmp/uiommufd-dot-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/graph.dot";
  EXPECT_TRUE(write_dot_file(path).ok());
  std::ifstream in(path);
  std::ostringstream file;
  file << in.rdbuf();
  EXPECT_EQ(file.str(), dot);
  unlink(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace uiommufd::lockdep
