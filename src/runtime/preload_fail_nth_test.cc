// The fail-nth files under the preload (docs/fault-injection.md#fail-nth-file, #virtual-fail-nth,
// #counter): the paths that name them, write / read / pread semantics, per-thread counters that start at 0 in
// new threads and forked children, and an armed counter failing IOMMU_IOAS_ALLOC.
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "preload_test_util.h"

namespace preload_test {
namespace {

std::string task_path(int tid) { return "/proc/self/task/" + std::to_string(tid) + "/fail-nth"; }

int open_own(int flags = O_RDWR) { return open(task_path(gettid()).c_str(), flags); }

std::string pread_text(int fd) {
  char buf[32] = {};
  const ssize_t n = pread(fd, buf, sizeof buf, 0);
  return n < 0 ? "error " + std::to_string(errno) : std::string(buf, static_cast<size_t>(n));
}

ssize_t write_text(int fd, const std::string& s) { return write(fd, s.data(), s.size()); }

class PreloadFailNth : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = open_own();
    ASSERT_GE(fd_, 0) << std::strerror(errno);
  }
  void TearDown() override {
    write_text(fd_, "0");
    close(fd_);
  }
  int fd_ = -1;
};

TEST_F(PreloadFailNth, FreshCounterReadsZero) { EXPECT_EQ(pread_text(fd_), "0\n"); }

TEST_F(PreloadFailNth, WriteReturnsFullLengthAndReadGivesValue) {
  EXPECT_EQ(write_text(fd_, "7\n"), 2);
  EXPECT_EQ(pread_text(fd_), "7\n");
}

TEST_F(PreloadFailNth, PwriteIgnoresThePosition) {
  EXPECT_EQ(pwrite(fd_, "9", 1, 100), 1);
  EXPECT_EQ(pread_text(fd_), "9\n");
}

TEST_F(PreloadFailNth, ReadAdvancesThePosition) {
  write_text(fd_, "12");
  char c[4] = {};
  EXPECT_EQ(read(fd_, c, 1), 1);
  EXPECT_EQ(c[0], '1');
  EXPECT_EQ(read(fd_, c, 4), 2);
  EXPECT_EQ(std::string(c, 2), "2\n");
  EXPECT_EQ(read(fd_, c, 4), 0);
  EXPECT_EQ(pread_text(fd_), "12\n");
}

TEST_F(PreloadFailNth, GarbageIsEinval) {
  EXPECT_EQ(write_text(fd_, "x"), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST_F(PreloadFailNth, TooLargeIsErange) {
  EXPECT_EQ(write_text(fd_, "99999999999"), -1);
  EXPECT_EQ(errno, ERANGE);
}

TEST_F(PreloadFailNth, ReadOnlyOpenRejectsWrite) {
  const int ro = open_own(O_RDONLY);
  EXPECT_EQ(write_text(ro, "1"), -1);
  EXPECT_EQ(errno, EBADF);
  close(ro);
}

TEST_F(PreloadFailNth, ArmedCounterFailsIoasAllocAndReadsZero) {
  const int iommufd = open("/dev/iommu", O_RDWR);
  ASSERT_GE(iommufd, 0);
  ASSERT_EQ(write_text(fd_, "1"), 1);
  const long rc = ioas_alloc(iommufd);
  EXPECT_LT(rc, 0);
  EXPECT_TRUE(rc == -ENOMEM || rc == -EFAULT || rc == -ENOENT) << rc;
  EXPECT_EQ(pread_text(fd_), "0\n");
  // Exactly one failure per write: the next call succeeds, and the failed one consumed no id.
  EXPECT_EQ(ioas_alloc(iommufd), 1);
  close(iommufd);
}

TEST_F(PreloadFailNth, SweepFailsEverySiteThenSucceeds) {
  const int iommufd = open("/dev/iommu", O_RDWR);
  ASSERT_GE(iommufd, 0);
  int k = 1;
  for (; k < 1000; ++k) {
    write_text(fd_, std::to_string(k));
    const long rc = ioas_alloc(iommufd);
    const std::string left = pread_text(fd_);
    write_text(fd_, "0");
    if (left != "0\n") {
      EXPECT_GT(rc, 0);
      break;
    }
    EXPECT_LT(rc, 0) << "site " << k << " fired but the call succeeded";
  }
  EXPECT_GT(k, 1);
  EXPECT_LT(k, 1000);
  // Every injected failure unwound its id: the one success got id 1.
  EXPECT_EQ(destroy(iommufd, 1), 0);
  close(iommufd);
}

TEST_F(PreloadFailNth, LargeCounterIsNotReachedAndStaysArmed) {
  const int iommufd = open("/dev/iommu", O_RDWR);
  write_text(fd_, "100000");
  EXPECT_EQ(ioas_alloc(iommufd), 1);
  const std::string left = pread_text(fd_);
  EXPECT_NE(left, "0\n");
  EXPECT_LT(std::stoul(left), 100000u);
  close(iommufd);
}

TEST_F(PreloadFailNth, AllPathsNameTheSameCounter) {
  write_text(fd_, "5");
  const std::string pid = std::to_string(getpid());
  for (const std::string& path :
       {std::string("/proc/thread-self/fail-nth"), "/proc/" + pid + "/task/" + pid + "/fail-nth",
        std::string("/proc/self/fail-nth"), "/proc/" + pid + "/fail-nth"}) {
    const int fd = open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0) << path;
    EXPECT_EQ(pread_text(fd), "5\n") << path;
    close(fd);
  }
}

TEST_F(PreloadFailNth, OpenatRelativeToProcDirectory) {
  const int dir = open(("/proc/" + std::to_string(getpid()) + "/task").c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dir, 0);
  const int fd = openat(dir, (std::to_string(gettid()) + "/fail-nth").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  write_text(fd_, "3");
  EXPECT_EQ(pread_text(fd), "3\n");
  close(fd);
  close(dir);
}

TEST_F(PreloadFailNth, UnknownThreadIsEnoent) {
  EXPECT_EQ(open(task_path(0x3fffffff).c_str(), O_RDWR), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(PreloadFailNth, DupSharesTheFile) {
  const int copy = dup(fd_);
  write_text(copy, "4");
  EXPECT_EQ(pread_text(fd_), "4\n");
  close(copy);
}

TEST_F(PreloadFailNth, NewThreadStartsDisarmed) {
  write_text(fd_, "5");
  std::string seen;
  std::thread t([&] {
    const int fd = open("/proc/thread-self/fail-nth", O_RDWR);
    seen = pread_text(fd);
    close(fd);
  });
  t.join();
  EXPECT_EQ(seen, "0\n");
  EXPECT_EQ(pread_text(fd_), "5\n");
}

TEST_F(PreloadFailNth, CountersArePerThread) {
  const int iommufd = open("/dev/iommu", O_RDWR);
  write_text(fd_, "1");
  long other = 0;
  std::thread t([&] { other = ioas_alloc(iommufd); });
  t.join();
  EXPECT_EQ(other, 1);
  EXPECT_EQ(pread_text(fd_), "1\n");
  close(iommufd);
}

TEST_F(PreloadFailNth, ArmingAnotherThreadFailsItsCall) {
  const int iommufd = open("/dev/iommu", O_RDWR);
  int tid = 0;
  int stage = 0;  // 0: started, 1: armed by the main thread
  std::mutex mu;
  std::condition_variable cv;
  long rc = 0;
  std::string left;
  std::thread t([&] {
    {
      std::unique_lock<std::mutex> l(mu);
      tid = gettid();
      cv.notify_all();
      cv.wait(l, [&] { return stage == 1; });
    }
    rc = ioas_alloc(iommufd);
  });
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return tid != 0; });
  }
  const int fd = open(task_path(tid).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(write_text(fd, "1"), 1);
  EXPECT_EQ(pread_text(fd), "1\n");
  {
    std::lock_guard<std::mutex> l(mu);
    stage = 1;
    cv.notify_all();
  }
  t.join();
  EXPECT_LT(rc, 0);
  close(fd);
  EXPECT_EQ(pread_text(fd_), "0\n");
  close(iommufd);
}

TEST_F(PreloadFailNth, ForkedChildStartsDisarmed) {
  write_text(fd_, "5");
  const int rc = in_child([] {
    const int fd = open("/proc/thread-self/fail-nth", O_RDWR);
    return pread_text(fd) == "0\n" ? 0 : 1;
  });
  EXPECT_EQ(rc, 0);
}

TEST_F(PreloadFailNth, ForkedChildCanArmItself) {
  const int rc = in_child([] {
    const int fd = open("/proc/self/fail-nth", O_RDWR);
    const int iommufd = open("/dev/iommu", O_RDWR);
    if (fd < 0 || iommufd < 0) return 1;
    write_text(fd, "1");
    if (ioas_alloc(iommufd) >= 0) return 2;
    return pread_text(fd) == "0\n" ? 0 : 3;
  });
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace preload_test
