#include "uiommufd/base/high_fd.h"

#include <cerrno>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

namespace uiommufd {
namespace {

long floor_of_top_quarter() {
  rlimit rl{};
  EXPECT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  const rlim_t cur = rl.rlim_cur == RLIM_INFINITY ? (rlim_t{1} << 20) : rl.rlim_cur;
  return static_cast<long>(cur - cur / 4);
}

// The fd the program would get next is still free after we keep one of our own.
TEST(HighFd, MovedFdsLeaveTheLowNumbersToTheProgram) {
  const int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(probe, 0);
  close(probe);
  const int ours = move_high(open("/dev/null", O_RDONLY));
  ASSERT_GE(ours, floor_of_top_quarter());
  EXPECT_EQ(fcntl(ours, F_GETFD), FD_CLOEXEC);
  const int next = open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(next, probe);
  const int dup = dup_high(next);
  EXPECT_GE(dup, floor_of_top_quarter());
  close(dup);
  close(next);
  close(ours);
}

TEST(HighFd, ABadFdStaysAsItIs) {
  EXPECT_EQ(move_high(-1), -1);
  EXPECT_EQ(dup_high(-1), -1);
  EXPECT_EQ(errno, EBADF);
}

// A full top quarter falls back to the lowest free number rather than failing.
TEST(HighFd, AFullTopQuarterFallsBackToLowNumbers) {
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit small = old;
  small.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &small), 0);
  const int src = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(src, 0);
  std::vector<int> filler;
  int fd;
  while ((fd = dup_high(src)) >= 48) filler.push_back(fd);
  EXPECT_EQ(filler.size(), 16u);
  EXPECT_GE(fd, 0);  // the fallback, not a failure
  if (fd >= 0) close(fd);
  for (int f : filler) close(f);
  close(src);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
}

}  // namespace
}  // namespace uiommufd
