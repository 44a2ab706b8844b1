// /dev/iommu under the preload: every open variant gives a working iommufd, the dup family shares one
// context, the last close tears it down, O_CLOEXEC and fork behave, and other fds pass through untouched.
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "preload_test_util.h"

extern "C" int __open_2(const char* path, int flags);
extern "C" int __openat_2(int dirfd, const char* path, int flags);

namespace preload_test {
namespace {

// Each open variant: the fd works (IOAS_ALLOC gives id 1 in a fresh context) and closes with 0.
void expect_fresh_iommufd(int fd) {
  ASSERT_GE(fd, 0) << std::strerror(errno);
  EXPECT_EQ(ioas_alloc(fd), 1);
  EXPECT_EQ(close(fd), 0);
}

TEST(PreloadOpen, OpenGivesWorkingIommufd) { expect_fresh_iommufd(open("/dev/iommu", O_RDWR)); }
TEST(PreloadOpen, Open64GivesWorkingIommufd) { expect_fresh_iommufd(open64("/dev/iommu", O_RDWR)); }
TEST(PreloadOpen, OpenatGivesWorkingIommufd) { expect_fresh_iommufd(openat(AT_FDCWD, "/dev/iommu", O_RDWR)); }
TEST(PreloadOpen, Openat64GivesWorkingIommufd) {
  expect_fresh_iommufd(openat64(AT_FDCWD, "/dev/iommu", O_RDWR));
}
TEST(PreloadOpen, FortifiedOpenGivesWorkingIommufd) { expect_fresh_iommufd(__open_2("/dev/iommu", O_RDWR)); }
TEST(PreloadOpen, FortifiedOpenatGivesWorkingIommufd) {
  expect_fresh_iommufd(__openat_2(AT_FDCWD, "/dev/iommu", O_RDWR));
}
TEST(PreloadOpen, OpenatRelativeToDevGivesWorkingIommufd) {
  const int dev = open("/dev", O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dev, 0);
  expect_fresh_iommufd(openat(dev, "iommu", O_RDWR));
  close(dev);
}
TEST(PreloadOpen, UnnormalisedPathGivesWorkingIommufd) {
  expect_fresh_iommufd(open("//dev/./iommu", O_RDWR));
}

TEST(PreloadOpen, DirectoryFlagIsEnotdir) {
  EXPECT_EQ(open("/dev/iommu", O_RDONLY | O_DIRECTORY), -1);
  EXPECT_EQ(errno, ENOTDIR);
}

TEST(PreloadOpen, SuccessKeepsErrno) {
  errno = 1234;
  const int fd = open("/dev/iommu", O_RDWR);
  EXPECT_EQ(errno, 1234);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ioas_alloc(fd), 1);
  EXPECT_EQ(errno, 1234);
  close(fd);
}

TEST(PreloadIoctl, DestroyRemovesTheIoas) {
  const int fd = open("/dev/iommu", O_RDWR);
  ASSERT_EQ(ioas_alloc(fd), 1);
  EXPECT_EQ(destroy(fd, 1), 0);
  EXPECT_EQ(destroy(fd, 1), -ENOENT);
  close(fd);
}

TEST(PreloadIoctl, UnknownCommandIsEnotty) {
  const int fd = open("/dev/iommu", O_RDWR);
  EXPECT_EQ(ioctl(fd, 0x12345678, nullptr), -1);
  EXPECT_EQ(errno, ENOTTY);
  close(fd);
}

TEST(PreloadIoctl, ReadAndWriteOfIommufdAreEinval) {
  const int fd = open("/dev/iommu", O_RDWR);
  char c = 0;
  EXPECT_EQ(read(fd, &c, 1), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(write(fd, &c, 1), -1);
  EXPECT_EQ(errno, EINVAL);
  close(fd);
}

TEST(PreloadIoctl, PollOfIommufdWorks) {
  const int fd = open("/dev/iommu", O_RDWR);
  pollfd p{fd, POLLIN | POLLOUT, 0};
  EXPECT_EQ(poll(&p, 1, 0), 1);
  close(fd);
}

// --- the dup family shares one context ---

void expect_shared(int fd, int copy) {
  ASSERT_GE(copy, 0) << std::strerror(errno);
  EXPECT_NE(copy, fd);
  EXPECT_EQ(ioas_alloc(fd), 1);
  EXPECT_EQ(ioas_alloc(copy), 2);
  EXPECT_EQ(close(fd), 0);
  // The copy keeps the context alive: id 1 is still there.
  EXPECT_EQ(destroy(copy, 1), 0);
  EXPECT_EQ(close(copy), 0);
}

TEST(PreloadDup, DupSharesTheContext) {
  const int fd = open("/dev/iommu", O_RDWR);
  expect_shared(fd, dup(fd));
}
TEST(PreloadDup, Dup2SharesTheContext) {
  const int fd = open("/dev/iommu", O_RDWR);
  expect_shared(fd, dup2(fd, 200));
}
TEST(PreloadDup, Dup3SharesTheContext) {
  const int fd = open("/dev/iommu", O_RDWR);
  expect_shared(fd, dup3(fd, 201, O_CLOEXEC));
}
TEST(PreloadDup, FcntlDupfdSharesTheContext) {
  const int fd = open("/dev/iommu", O_RDWR);
  expect_shared(fd, fcntl(fd, F_DUPFD, 100));
}
TEST(PreloadDup, FcntlDupfdCloexecSharesTheContext) {
  const int fd = open("/dev/iommu", O_RDWR);
  const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 100);
  EXPECT_EQ(fcntl(copy, F_GETFD), FD_CLOEXEC);
  expect_shared(fd, copy);
}

TEST(PreloadDup, Dup2ToItselfKeepsTheFile) {
  const int fd = open("/dev/iommu", O_RDWR);
  EXPECT_EQ(dup2(fd, fd), fd);
  EXPECT_EQ(ioas_alloc(fd), 1);
  close(fd);
}

TEST(PreloadDup, Dup2OntoIommufdDropsIt) {
  const int fd = open("/dev/iommu", O_RDWR);
  ASSERT_EQ(ioas_alloc(fd), 1);
  const int other = open("/dev/null", O_RDWR);
  ASSERT_EQ(dup2(other, fd), fd);
  // fd is /dev/null now: our ioctl no longer reaches a context.
  EXPECT_EQ(ioas_alloc(fd), -ENOTTY);
  close(fd);
  close(other);
}

TEST(PreloadDup, Dup2OfIommufdOntoAnotherIommufdReplacesIt) {
  const int a = open("/dev/iommu", O_RDWR);
  const int b = open("/dev/iommu", O_RDWR);
  ASSERT_EQ(ioas_alloc(a), 1);
  ASSERT_EQ(ioas_alloc(a), 2);
  ASSERT_EQ(dup2(a, b), b);
  EXPECT_EQ(ioas_alloc(b), 3);
  close(a);
  close(b);
}

// --- close ---

TEST(PreloadClose, ClosingEveryDupTearsDown) {
  const int fd = open("/dev/iommu", O_RDWR);
  const int copy = dup(fd);
  ASSERT_EQ(ioas_alloc(fd), 1);
  ASSERT_EQ(ioas_alloc(copy), 2);
  EXPECT_EQ(close(fd), 0);
  EXPECT_EQ(close(copy), 0);
  const int again = open("/dev/iommu", O_RDWR);
  EXPECT_EQ(ioas_alloc(again), 1);
  close(again);
}

TEST(PreloadClose, ClosedNumberReusedByOtherFileIsNotOurs) {
  const int fd = open("/dev/iommu", O_RDWR);
  close(fd);
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  // The lowest free numbers come back: the pipe reuses the closed fd's number.
  EXPECT_TRUE(pipefd[0] == fd || pipefd[1] == fd);
  EXPECT_EQ(write(pipefd[1], "x", 1), 1);
  char c = 0;
  EXPECT_EQ(read(pipefd[0], &c, 1), 1);
  EXPECT_EQ(c, 'x');
  close(pipefd[0]);
  close(pipefd[1]);
}

TEST(PreloadClose, CloseRangeDropsIommufds) {
  const int fd = dup2(open("/dev/iommu", O_RDWR), 300);
  ASSERT_EQ(fd, 300);
  ASSERT_EQ(close_range(300, 300, 0), 0);
  EXPECT_EQ(fcntl(300, F_GETFD), -1);
  const int again = dup2(open("/dev/null", O_RDWR), 300);
  EXPECT_EQ(ioas_alloc(again), -ENOTTY);
  close(again);
}

TEST(PreloadClose, CloseOfBadFdIsEbadf) {
  EXPECT_EQ(close(987654), -1);
  EXPECT_EQ(errno, EBADF);
}

// --- exec and fork ---

// True when an exec'd shell still has `fd` open.
bool exec_child_sees(int fd) {
  const std::string script = "test -e /proc/self/fd/" + std::to_string(fd);
  return in_child([&] {
           execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
           return 99;
         }) == 0;
}

TEST(PreloadExec, CloexecFdIsClosedInExecdChild) {
  const int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
  EXPECT_EQ(fcntl(fd, F_GETFD), FD_CLOEXEC);
  EXPECT_FALSE(exec_child_sees(fd));
  close(fd);
}

TEST(PreloadExec, FdWithoutCloexecSurvivesExec) {
  const int fd = open("/dev/iommu", O_RDWR);
  EXPECT_EQ(fcntl(fd, F_GETFD), 0);
  EXPECT_TRUE(exec_child_sees(fd));
  close(fd);
}

TEST(PreloadFork, ChildCanUseItsCopy) {
  const int fd = open("/dev/iommu", O_RDWR);
  ASSERT_EQ(ioas_alloc(fd), 1);
  const int rc = in_child([&] {
    if (destroy(fd, 1) != 0) return 1;
    if (ioas_alloc(fd) != 1) return 2;  // ids are reused lowest-first
    if (close(fd) != 0) return 3;
    const int fresh = open("/dev/iommu", O_RDWR);
    return ioas_alloc(fresh) == 1 ? 0 : 4;
  });
  EXPECT_EQ(rc, 0);
  // The parent's context is its own (see src/runtime/README.md: no sharing across processes yet).
  EXPECT_EQ(ioas_alloc(fd), 2);
  close(fd);
}

// --- passthrough ---

TEST(PreloadPassthrough, DevNullIsTheKernels) {
  const int fd = open("/dev/null", O_RDWR);
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(major(st.st_rdev), 1u);
  EXPECT_EQ(minor(st.st_rdev), 3u);
  EXPECT_EQ(ioas_alloc(fd), -ENOTTY);
  close(fd);
}

TEST(PreloadPassthrough, PipesReadWriteDupAndIoctl) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  const int w = dup(p[1]);
  EXPECT_EQ(write(w, "abc", 3), 3);
  int avail = 0;
  EXPECT_EQ(ioctl(p[0], FIONREAD, &avail), 0);
  EXPECT_EQ(avail, 3);
  char buf[3];
  EXPECT_EQ(read(p[0], buf, 3), 3);
  close(p[0]);
  close(p[1]);
  close(w);
}

TEST(PreloadPassthrough, RegularFilesWithModeArgument) {
  char path[] = "/tmp/uiommufd-preload-XXXXXX";
  const int tmp = mkstemp(path);
  ASSERT_GE(tmp, 0);
  close(tmp);
  unlink(path);
  const int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0640);
  ASSERT_GE(fd, 0);
  struct stat st {};
  fstat(fd, &st);
  EXPECT_EQ(st.st_mode & 0777 & ~0640u, 0u);
  EXPECT_EQ(pwrite(fd, "hello", 5, 0), 5);
  char buf[5];
  EXPECT_EQ(pread(fd, buf, 5, 0), 5);
  EXPECT_EQ(std::string(buf, 5), "hello");
  close(fd);
  unlink(path);
}

TEST(PreloadPassthrough, MissingFileIsEnoent) {
  EXPECT_EQ(open("/dev/uiommufd-no-such-device", O_RDWR), -1);
  EXPECT_EQ(errno, ENOENT);
}

}  // namespace
}  // namespace preload_test
