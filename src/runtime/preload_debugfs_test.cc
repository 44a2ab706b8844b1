// The debugfs knobs a fault-injection harness writes before arming fail-nth
// (docs/fault-injection.md#debugfs-knobs, #virtual-debugfs): they open and absorb writes whether or not the
// kernel has them, and nothing reaches the real debugfs.
#include <cerrno>
#include <cstring>
#include <string>

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace {

TEST(PreloadDebugfs, OpendirSucceeds) {
  DIR* d = opendir("/sys/kernel/debug/");
  ASSERT_NE(d, nullptr) << std::strerror(errno);
  EXPECT_EQ(closedir(d), 0);
}

TEST(PreloadDebugfs, KnobsRelativeToDirFdAcceptWrites) {
  DIR* d = opendir("/sys/kernel/debug/");
  ASSERT_NE(d, nullptr);
  const int dir = dirfd(d);
  for (const char* knob :
       {"failslab/ignore-gfp-wait", "fail_page_alloc/ignore-gfp-wait", "fail_page_alloc/ignore-gfp-highmem",
        "failslab/verbose", "fail_iommufd/verbose"}) {
    const int fd = openat(dir, knob, O_WRONLY);
    ASSERT_GE(fd, 0) << knob << ": " << std::strerror(errno);
    EXPECT_EQ(write(fd, "N", 1), 1) << knob;
    EXPECT_EQ(close(fd), 0);
  }
  closedir(d);
}

TEST(PreloadDebugfs, KnobsByAbsolutePathAcceptWrites) {
  const int fd = open("/sys/kernel/debug/failslab/ignore-gfp-wait", O_WRONLY);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  EXPECT_EQ(write(fd, "N\n", 2), 2);
  close(fd);
}

TEST(PreloadDebugfs, ListingHasOnlyFailEntriesWeAbsorb) {
  DIR* d = opendir("/sys/kernel/debug");
  ASSERT_NE(d, nullptr);
  const int dir = dirfd(d);
  while (dirent* e = readdir(d)) {
    if (std::strncmp(e->d_name, "fail", 4) != 0) continue;
    const int fd = openat(dir, (std::string(e->d_name) + "/verbose").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0) << e->d_name;
    EXPECT_EQ(write(fd, "0", 1), 1);
    close(fd);
  }
  closedir(d);
}

TEST(PreloadDebugfs, DirectoryOpenedWithOpenWorksForOpenat) {
  const int dir = open("/sys/kernel/debug", O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dir, 0) << std::strerror(errno);
  const int fd = openat(dir, "fail_page_alloc/ignore-gfp-highmem", O_WRONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(write(fd, "N", 1), 1);
  close(fd);
  close(dir);
}

TEST(PreloadDebugfs, DirectoryOpenedForWritingIsEisdir) {
  EXPECT_EQ(open("/sys/kernel/debug", O_WRONLY), -1);
  EXPECT_EQ(errno, EISDIR);
}

TEST(PreloadDebugfs, ClosedirReleasesTheDirectoryFd) {
  DIR* d = opendir("/sys/kernel/debug/");
  ASSERT_NE(d, nullptr);
  const int fd = dirfd(d);
  closedir(d);
  // The number is free again and a plain file taking it is not mistaken for the directory.
  const int again = open("/dev/null", O_RDONLY);
  EXPECT_EQ(again, fd);
  EXPECT_EQ(openat(again, "failslab/ignore-gfp-wait", O_WRONLY), -1);
  EXPECT_EQ(errno, ENOTDIR);
  close(again);
}

}  // namespace
