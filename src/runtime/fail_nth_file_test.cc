#include "fail_nth_file.h"

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uiommufd/base/fault.h"

namespace uiommufd::runtime {
namespace {

int self() { return static_cast<int>(gettid()); }

ssize_t write_text(int tid, const std::string& s) { return fail_nth_write(tid, s.data(), s.size()); }

std::string read_text(int tid, std::int64_t pos = 0, size_t count = 64) {
  char buf[64] = {};
  const ssize_t n = fail_nth_read(tid, buf, count, pos);
  return n < 0 ? "error " + std::to_string(-n) : std::string(buf, static_cast<size_t>(n));
}

class FailNthFile : public ::testing::Test {
 protected:
  void TearDown() override { fail_nth_set(0); }
};

TEST_F(FailNthFile, WriteReturnsFullCountAndSetsCounter) {
  EXPECT_EQ(write_text(self(), "12\n"), 3);
  EXPECT_EQ(fail_nth_get(), 12u);
}

TEST_F(FailNthFile, WriteAcceptsHexAndOctal) {
  EXPECT_EQ(write_text(self(), "0x10"), 4);
  EXPECT_EQ(fail_nth_get(), 16u);
  EXPECT_EQ(write_text(self(), "010"), 3);
  EXPECT_EQ(fail_nth_get(), 8u);
}

TEST_F(FailNthFile, WriteOfGarbageIsEinvalAndKeepsCounter) {
  fail_nth_set(5);
  EXPECT_EQ(write_text(self(), "abc"), -EINVAL);
  EXPECT_EQ(write_text(self(), ""), -EINVAL);
  EXPECT_EQ(write_text(self(), "-1"), -EINVAL);
  EXPECT_EQ(fail_nth_get(), 5u);
}

TEST_F(FailNthFile, WriteAbove32BitsIsErange) { EXPECT_EQ(write_text(self(), "4294967296"), -ERANGE); }

TEST_F(FailNthFile, WriteLooksAtThe34FirstBytesOnly) {
  // 34 zeros and then garbage: the kernel never sees the garbage.
  EXPECT_EQ(write_text(self(), std::string(34, '0') + "junk"), 38);
  EXPECT_EQ(fail_nth_get(), 0u);
}

TEST_F(FailNthFile, WriteFromBadPointerIsEfault) {
  void* p = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  EXPECT_EQ(fail_nth_write(self(), p, 2), -EFAULT);
  munmap(p, 4096);
}

TEST_F(FailNthFile, ReadGivesCounterWithNewline) {
  fail_nth_set(42);
  EXPECT_EQ(read_text(self()), "42\n");
}

TEST_F(FailNthFile, ReadHonoursOffsetAndCount) {
  fail_nth_set(42);
  EXPECT_EQ(read_text(self(), 1), "2\n");
  EXPECT_EQ(read_text(self(), 3), "");
  EXPECT_EQ(read_text(self(), 0, 1), "4");
}

TEST_F(FailNthFile, ReadAtNegativeOffsetIsEinval) {
  char c;
  EXPECT_EQ(fail_nth_read(self(), &c, 1, -1), -EINVAL);
}

TEST_F(FailNthFile, ReadDoesNotConsumeTheCounter) {
  fail_nth_set(1);
  read_text(self());
  EXPECT_EQ(fail_nth_get(), 1u);
}

TEST_F(FailNthFile, ExitedThreadIsEsrch) {
  int tid = 0;
  std::thread t([&] { tid = self(); });
  t.join();
  EXPECT_EQ(write_text(tid, "1"), -ESRCH);
}

}  // namespace
}  // namespace uiommufd::runtime
