// The three copy mechanisms and the probing fallback, each driven directly: on this kernel Mm uses the
// recoverable memcpy (or process_vm_* where that cannot be used) and MADV_POPULATE, so the fallbacks would
// otherwise go untested.
#include "user_copy.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "test_region.h"
#include "uiommufd/base/page.h"
#include "uiommufd/mm/mm.h"

namespace uiommufd::mm_internal {
namespace {

using mm_testing::TestRegion;

class CopyMethodTest : public ::testing::TestWithParam<CopyMethod> {};

INSTANTIATE_TEST_SUITE_P(Methods, CopyMethodTest,
                         ::testing::Values(CopyMethod::kRecoverable, CopyMethod::kProcessVm, CopyMethod::kPipe),
                         [](const auto& info) {
                           switch (info.param) {
                             case CopyMethod::kRecoverable: return "Recoverable";
                             case CopyMethod::kPipe: return "Pipe";
                             default: return "ProcessVm";
                           }
                         });

void fill_pattern(unsigned char* p, std::size_t n, unsigned seed) {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(i * 31 + seed);
}

TEST_P(CopyMethodTest, CopiesMappedRangeAcrossPagesBothWays) {
  TestRegion r(4);
  ASSERT_TRUE(r.ok());
  fill_pattern(r.ptr(), r.len(), 7);
  // Unaligned start and length, crossing three page boundaries.
  const std::size_t off = 100, len = 3 * kPageSize + 17;
  std::vector<unsigned char> buf(len);
  std::size_t copied = 0;
  ASSERT_EQ(copy_from_user(GetParam(), buf.data(), r.uaddr(off), len, &copied), Status());
  EXPECT_EQ(copied, len);
  EXPECT_EQ(std::memcmp(buf.data(), r.ptr(off), len), 0);

  fill_pattern(buf.data(), len, 99);
  ASSERT_EQ(copy_to_user(GetParam(), r.uaddr(off), buf.data(), len), Status());
  EXPECT_EQ(std::memcmp(buf.data(), r.ptr(off), len), 0);
}

TEST_P(CopyMethodTest, LargeCopyRoundTrips) {
  constexpr std::size_t kPages = 300;  // > 1 MiB: many pipe chunks, one process_vm call, 19 memcpy chunks
  TestRegion r(kPages);
  ASSERT_TRUE(r.ok());
  std::vector<unsigned char> src(r.len()), back(r.len());
  fill_pattern(src.data(), src.size(), 3);
  ASSERT_EQ(copy_to_user(GetParam(), r.uaddr(), src.data(), src.size()), Status());
  ASSERT_EQ(copy_from_user(GetParam(), back.data(), r.uaddr(), back.size()), Status());
  EXPECT_EQ(src, back);
}

TEST_P(CopyMethodTest, UnmappedIsEfault) {
  TestRegion r(1);
  ASSERT_TRUE(r.ok());
  const std::uint64_t gone = r.uaddr();
  ASSERT_TRUE(r.unmap_page(0));
  unsigned char buf[64] = {};
  EXPECT_EQ(copy_from_user(GetParam(), buf, gone, sizeof buf).error(), EFAULT);
  EXPECT_EQ(copy_to_user(GetParam(), gone, buf, sizeof buf).error(), EFAULT);
  EXPECT_EQ(copy_from_user(GetParam(), buf, 0, sizeof buf).error(), EFAULT);
  EXPECT_EQ(copy_from_user(GetParam(), buf, kUlongMax - kPageSize + 1, 16).error(), EFAULT);
}

TEST_P(CopyMethodTest, HoleInTheMiddleStopsThereAndReportsTheCopiedPrefix) {
  TestRegion r(3);
  ASSERT_TRUE(r.ok());
  fill_pattern(r.ptr(), r.len(), 1);
  ASSERT_TRUE(r.unmap_page(1));
  std::vector<unsigned char> buf(r.len());
  std::size_t copied = 12345;
  EXPECT_EQ(copy_from_user(GetParam(), buf.data(), r.uaddr(), buf.size(), &copied).error(), EFAULT);
  // Never past the hole; the first page is copied whole by every mechanism (none splits a page).
  EXPECT_EQ(copied, kPageSize);
  EXPECT_EQ(std::memcmp(buf.data(), r.ptr(), copied), 0);

  std::vector<unsigned char> src(r.len(), 0xab);
  EXPECT_EQ(copy_to_user(GetParam(), r.uaddr(), src.data(), src.size()).error(), EFAULT);
  // The page after the hole is untouched.
  EXPECT_NE(*r.ptr(2 * kPageSize), 0xab);
}

TEST_P(CopyMethodTest, ProtectionIsHonoured) {
  TestRegion r(2);
  ASSERT_TRUE(r.ok());
  std::memset(r.ptr(), 0x5a, r.len());
  ASSERT_TRUE(r.protect_page(0, PROT_READ));
  ASSERT_TRUE(r.protect_page(1, PROT_NONE));
  unsigned char buf[32];
  std::memset(buf, 0x11, sizeof buf);
  // Read-only: readable, not writable, and left unchanged by the failed write.
  EXPECT_EQ(copy_from_user(GetParam(), buf, r.uaddr(), sizeof buf), Status());
  EXPECT_EQ(buf[0], 0x5a);
  std::memset(buf, 0x11, sizeof buf);
  EXPECT_EQ(copy_to_user(GetParam(), r.uaddr(), buf, sizeof buf).error(), EFAULT);
  EXPECT_EQ(*r.ptr(), 0x5a);
  // PROT_NONE: neither.
  EXPECT_EQ(copy_from_user(GetParam(), buf, r.page_uaddr(1), sizeof buf).error(), EFAULT);
  EXPECT_EQ(copy_to_user(GetParam(), r.page_uaddr(1), buf, sizeof buf).error(), EFAULT);
}

TEST_P(CopyMethodTest, FailureLeavesNoStaleBytesForTheNextCopy) {
  // The pipe keeps bytes it failed to deliver; the next copy on this thread must not see them.
  TestRegion r(2);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.protect_page(1, PROT_READ));
  unsigned char junk[100];
  std::memset(junk, 0xee, sizeof junk);
  ASSERT_EQ(copy_to_user(GetParam(), r.page_uaddr(1), junk, sizeof junk).error(), EFAULT);

  fill_pattern(r.ptr(), 200, 5);
  unsigned char buf[200] = {};
  ASSERT_EQ(copy_from_user(GetParam(), buf, r.uaddr(), sizeof buf), Status());
  EXPECT_EQ(std::memcmp(buf, r.ptr(), sizeof buf), 0);
  unsigned char out[50];
  fill_pattern(out, sizeof out, 77);
  ASSERT_EQ(copy_to_user(GetParam(), r.uaddr(1000), out, sizeof out), Status());
  EXPECT_EQ(std::memcmp(out, r.ptr(1000), sizeof out), 0);
}

TEST(UserCopyTest, MmFallsBackToThePipeWhenProcessVmIsUnavailable) {
  ASSERT_FALSE(process_vm_unavailable()) << "process_vm_* should work on this machine";
  set_recoverable_copy_disabled_for_testing(true);
  set_process_vm_unavailable_for_testing(true);
  TestRegion r(2);
  ASSERT_TRUE(r.ok());
  const char msg[] = "through the pipe";
  auto mm = Mm::current();
  EXPECT_EQ(mm->copy_to_user(r.uaddr(10), msg, sizeof msg), Status());
  char back[sizeof msg] = {};
  EXPECT_EQ(mm->copy_from_user(back, r.uaddr(10), sizeof back), Status());
  EXPECT_STREQ(back, msg);
  ASSERT_TRUE(r.unmap_page(1));
  EXPECT_EQ(mm->copy_from_user(back, r.page_uaddr(1), sizeof back).error(), EFAULT);
  set_process_vm_unavailable_for_testing(false);
  set_recoverable_copy_disabled_for_testing(false);
}

TEST(UserCopyTest, PipeWorksOnManyThreads) {
  // One pipe per thread: concurrent copies must not see each other's bytes.
  TestRegion r(8);
  ASSERT_TRUE(r.ok());
  for (std::size_t p = 0; p < 8; ++p) std::memset(r.ptr(p * kPageSize), static_cast<int>(p), kPageSize);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (std::size_t t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::vector<unsigned char> buf(kPageSize);
      for (int i = 0; i < 200; ++i) {
        if (!copy_from_user(CopyMethod::kPipe, buf.data(), r.page_uaddr(t), buf.size()).ok()) ++bad;
        for (unsigned char c : buf)
          if (c != t) {
            ++bad;
            break;
          }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(UserCopyTest, MadvPopulateIsSupportedHere) {
  // Kernel 5.14+; if this fails the machine is older than the project assumes, not a bug here.
  EXPECT_TRUE(madv_populate_supported());
}

TEST(UserCopyTest, ProbingMakesResidentAndKeepsContents) {
  TestRegion r(4);
  ASSERT_TRUE(r.ok());
  r.ptr()[0] = 42;
  ASSERT_EQ(make_resident_by_probing(r.uaddr(), r.len(), /*write=*/true), Status());
  unsigned char vec[4] = {};
  ASSERT_EQ(mincore(r.ptr(), r.len(), vec), 0);
  for (unsigned char v : vec) EXPECT_TRUE(v & 1);
  EXPECT_EQ(r.ptr()[0], 42);
  EXPECT_EQ(make_resident_by_probing(r.uaddr(), r.len(), /*write=*/false), Status());
}

TEST(UserCopyTest, ProbingReportsBadPages) {
  TestRegion r(3);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.protect_page(2, PROT_READ));
  EXPECT_EQ(make_resident_by_probing(r.uaddr(), r.len(), /*write=*/false), Status());
  EXPECT_EQ(make_resident_by_probing(r.uaddr(), r.len(), /*write=*/true).error(), EFAULT);
  ASSERT_TRUE(r.unmap_page(1));
  EXPECT_EQ(make_resident_by_probing(r.uaddr(), r.len(), /*write=*/false).error(), EFAULT);
}

TEST(UserCopyTest, RangeIsMappedSeesHoles) {
  TestRegion r(3);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(range_is_mapped(r.uaddr(), r.len()));
  ASSERT_TRUE(r.protect_page(0, PROT_NONE));  // mapped, if inaccessible
  EXPECT_TRUE(range_is_mapped(r.uaddr(), r.len()));
  ASSERT_TRUE(r.unmap_page(1));
  EXPECT_FALSE(range_is_mapped(r.uaddr(), r.len()));
  EXPECT_TRUE(range_is_mapped(r.page_uaddr(2), kPageSize));
}

}  // namespace
}  // namespace uiommufd::mm_internal
