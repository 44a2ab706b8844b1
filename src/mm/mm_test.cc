// Mm's public contract: fault-safe copies, make_resident, lock/unlock, fault sites.
#include "uiommufd/mm/mm.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "test_region.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/page.h"

namespace uiommufd {
namespace {

using mm_testing::TestRegion;

bool all_resident(const TestRegion& r) {
  std::vector<unsigned char> vec(r.len() / kPageSize);
  if (mincore(r.ptr(), r.len(), vec.data()) != 0) return false;
  for (unsigned char v : vec)
    if (!(v & 1)) return false;
  return true;
}

// VmLck of this process, in KiB (-1 if unreadable).
long vm_locked_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmLck:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

TEST(MmTest, CurrentIsOneSharedInstance) {
  RefPtr<Mm> a = Mm::current();
  RefPtr<Mm> b = Mm::current();
  ASSERT_TRUE(a);
  EXPECT_EQ(a, b);
}

TEST(MmTest, HostAddressIsTheIdentity) {
  int x = 5;
  const auto uaddr = reinterpret_cast<std::uintptr_t>(&x);
  EXPECT_EQ(Mm::current()->host_address(uaddr), &x);
}

// Only a hugetlb mapping is known to be physically contiguous beyond a page.
TEST(MmTest, PhysicalBlockIsTheHugePageSizeOfHugetlbMemoryOnly) {
  Mm& mm = Mm::current_ref();
  void* plain = mmap(nullptr, 4 * kHugePageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(plain, MAP_FAILED);
  const auto p = reinterpret_cast<std::uint64_t>(plain);
  EXPECT_EQ(mm.physical_block(p, 4 * kHugePageSize), kPageSize);
  EXPECT_EQ(mm.physical_block(p, 0), kPageSize);
  ASSERT_EQ(munmap(plain, 4 * kHugePageSize), 0);
  EXPECT_EQ(mm.physical_block(p, kPageSize), kPageSize);  // unmapped now
  void* huge = mmap(nullptr, 2 * kHugePageSize, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (huge == MAP_FAILED) GTEST_SKIP() << "no hugetlb pages (vm.nr_hugepages)";
  const auto h = reinterpret_cast<std::uint64_t>(huge);
  EXPECT_EQ(mm.physical_block(h, 2 * kHugePageSize), kHugePageSize);
  EXPECT_EQ(mm.physical_block(h + kPageSize, kPageSize), kHugePageSize);
  // A range that runs on past the mapping includes memory that is not hugetlb.
  EXPECT_EQ(mm.physical_block(h, 3 * kHugePageSize), kPageSize);
  ASSERT_EQ(munmap(huge, 2 * kHugePageSize), 0);
}

TEST(MmTest, CopiesGoodRangesBothWays) {
  TestRegion r(2);
  ASSERT_TRUE(r.ok());
  const char msg[] = "hello, user memory";
  auto mm = Mm::current();
  ASSERT_EQ(mm->copy_to_user(r.uaddr(kPageSize - 5), msg, sizeof msg), Status());  // straddles a page
  EXPECT_EQ(std::memcmp(r.ptr(kPageSize - 5), msg, sizeof msg), 0);
  char back[sizeof msg] = {};
  ASSERT_EQ(mm->copy_from_user(back, r.uaddr(kPageSize - 5), sizeof back), Status());
  EXPECT_STREQ(back, msg);
}

TEST(MmTest, ZeroLengthCopiesSucceedEvenAtBadAddresses) {
  auto mm = Mm::current();
  char c = 'x';
  EXPECT_EQ(mm->copy_from_user(&c, 0, 0), Status());
  EXPECT_EQ(mm->copy_to_user(0, &c, 0), Status());
  EXPECT_EQ(c, 'x');
}

TEST(MmTest, BadAddressesAreEfault) {
  auto mm = Mm::current();
  char buf[16];
  EXPECT_EQ(mm->copy_from_user(buf, 0, sizeof buf).error(), EFAULT);
  EXPECT_EQ(mm->copy_to_user(0, buf, sizeof buf).error(), EFAULT);
  EXPECT_EQ(mm->copy_from_user(buf, std::uint64_t{1} << 63, sizeof buf).error(), EFAULT);  // kernel half
}

TEST(MmTest, WrappingRangeIsEfault) {
  auto mm = Mm::current();
  char buf[100];
  EXPECT_EQ(mm->copy_from_user(buf, kUlongMax - 10, sizeof buf).error(), EFAULT);
  EXPECT_EQ(mm->copy_to_user(kUlongMax - 10, buf, sizeof buf).error(), EFAULT);
}

TEST(MmTest, UnmappedRangeIsEfault) {
  TestRegion r(1);
  ASSERT_TRUE(r.ok());
  const std::uint64_t gone = r.uaddr();
  ASSERT_TRUE(r.unmap_page(0));
  char buf[32];
  EXPECT_EQ(Mm::current()->copy_from_user(buf, gone, sizeof buf).error(), EFAULT);
  EXPECT_EQ(Mm::current()->copy_to_user(gone, buf, sizeof buf).error(), EFAULT);
}

TEST(MmTest, PartlyUnmappedCopyFromIsEfaultWithTheTailZeroed) {
  TestRegion r(3);
  ASSERT_TRUE(r.ok());
  std::memset(r.ptr(), 0x77, r.len());
  ASSERT_TRUE(r.unmap_page(1));
  std::vector<unsigned char> buf(r.len(), 0xcc);
  EXPECT_EQ(Mm::current()->copy_from_user(buf.data(), r.uaddr(), buf.size()).error(), EFAULT);
  // As the kernel's copy_from_user: what was copied is there, the rest is zero, never stale.
  for (std::size_t i = 0; i < buf.size(); ++i) {
    ASSERT_TRUE(buf[i] == 0x77 || buf[i] == 0) << i;
    if (i >= kPageSize) {
      ASSERT_EQ(buf[i], 0) << i;
    }
  }
}

TEST(MmTest, PartlyUnmappedCopyToIsEfault) {
  TestRegion r(3);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.unmap_page(1));
  std::vector<unsigned char> src(r.len(), 0x42);
  EXPECT_EQ(Mm::current()->copy_to_user(r.uaddr(), src.data(), src.size()).error(), EFAULT);
  EXPECT_EQ(*r.ptr(2 * kPageSize), 0);  // nothing written past the hole
}

TEST(MmTest, CopyToReadOnlyIsEfaultAndLeavesItUnchanged) {
  TestRegion r(1);
  ASSERT_TRUE(r.ok());
  std::memset(r.ptr(), 1, 64);
  ASSERT_TRUE(r.protect_all(PROT_READ));
  const unsigned char src[64] = {};
  EXPECT_EQ(Mm::current()->copy_to_user(r.uaddr(), src, sizeof src).error(), EFAULT);
  EXPECT_EQ(*r.ptr(), 1);
}

TEST(MmTest, CopyFaultSitesFireOncePerArming) {
  TestRegion r(1);
  ASSERT_TRUE(r.ok());
  std::memset(r.ptr(), 9, 32);
  auto mm = Mm::current();
  unsigned char buf[32];
  std::memset(buf, 0xff, sizeof buf);

  fail_nth_set(1);
  EXPECT_EQ(mm->copy_from_user(buf, r.uaddr(), sizeof buf).error(), EFAULT);
  EXPECT_EQ(fail_nth_get(), 0u);
  EXPECT_STREQ(last_injected_fault(), "mm.copy_from_user");
  for (unsigned char b : buf) ASSERT_EQ(b, 0);  // zeroed, like a failed kernel copy
  EXPECT_EQ(mm->copy_from_user(buf, r.uaddr(), sizeof buf), Status());  // disarmed again

  fail_nth_set(2);  // the first check passes, the second fails
  EXPECT_EQ(mm->copy_from_user(buf, r.uaddr(), sizeof buf), Status());
  const unsigned char src[32] = {};
  EXPECT_EQ(mm->copy_to_user(r.uaddr(), src, sizeof src).error(), EFAULT);
  EXPECT_STREQ(last_injected_fault(), "mm.copy_to_user");
  EXPECT_EQ(*r.ptr(), 9);  // an injected failure writes nothing
  EXPECT_EQ(fail_nth_get(), 0u);

  fail_nth_set(1);  // len 0 consumes nothing
  EXPECT_EQ(mm->copy_to_user(r.uaddr(), src, 0), Status());
  EXPECT_EQ(fail_nth_get(), 1u);
  fail_nth_set(0);
}

TEST(MmTest, CopySitesAreRegistered) {
  bool from = false, to = false;
  for (const FaultSite* site : fault_sites()) {
    if (std::string(site->name()) == "mm.copy_from_user") from = site->error() == EFAULT;
    if (std::string(site->name()) == "mm.copy_to_user") to = site->error() == EFAULT;
  }
  EXPECT_TRUE(from);
  EXPECT_TRUE(to);
}

TEST(MmTest, MakeResidentPopulatesGoodRanges) {
  TestRegion r(8);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Mm::current()->make_resident(r.uaddr(), r.len(), /*write=*/false), Status());
  EXPECT_TRUE(all_resident(r));
  TestRegion w(8);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(Mm::current()->make_resident(w.uaddr(), w.len(), /*write=*/true), Status());
  EXPECT_TRUE(all_resident(w));
}

// Short ranges are faulted in by touching them; the touch must leave every byte as it was, including bytes
// another thread keeps writing meanwhile (a read and write-back would lose some of those writes).
TEST(MmTest, MakeResidentOfAShortRangeChangesNothing) {
  TestRegion r(4);
  ASSERT_TRUE(r.ok());
  for (std::size_t i = 0; i < r.len(); ++i) *r.ptr(i) = static_cast<unsigned char>(i * 7);
  std::atomic<bool> stop{false};
  std::atomic<std::uint32_t> writes{0};
  std::thread writer([&] {
    while (!stop.load()) {
      // The first byte of each page is what the touch works on.
      for (std::size_t p = 0; p < 4; ++p) {
        __atomic_add_fetch(r.ptr(p * kPageSize), 1, __ATOMIC_RELAXED);
      }
      writes.fetch_add(1);
    }
  });
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(Mm::current()->make_resident(r.uaddr(), r.len(), /*write=*/true), Status());
  stop.store(true);
  writer.join();
  const std::uint32_t n = writes.load();
  for (std::size_t p = 0; p < 4; ++p) {
    EXPECT_EQ(*r.ptr(p * kPageSize), static_cast<unsigned char>(p * kPageSize * 7 + n)) << "page " << p;
    for (std::size_t i = 1; i < kPageSize; ++i) ASSERT_EQ(*r.ptr(p * kPageSize + i), static_cast<unsigned char>((p * kPageSize + i) * 7));
  }
  EXPECT_TRUE(all_resident(r));
}

TEST(MmTest, MakeResidentOfUnmappedIsEfault) {
  TestRegion r(3);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.unmap_page(1));
  EXPECT_EQ(Mm::current()->make_resident(r.uaddr(), r.len(), false).error(), EFAULT);
  EXPECT_EQ(Mm::current()->make_resident(r.page_uaddr(1), kPageSize, true).error(), EFAULT);
  EXPECT_EQ(Mm::current()->make_resident(r.page_uaddr(2), kPageSize, true), Status());
}

TEST(MmTest, MakeResidentChecksAccess) {
  TestRegion r(2);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.protect_page(1, PROT_READ));
  auto mm = Mm::current();
  EXPECT_EQ(mm->make_resident(r.uaddr(), r.len(), /*write=*/false), Status());
  EXPECT_EQ(mm->make_resident(r.uaddr(), r.len(), /*write=*/true).error(), EFAULT);
  EXPECT_EQ(mm->make_resident(r.page_uaddr(1), kPageSize, /*write=*/true).error(), EFAULT);
  ASSERT_TRUE(r.protect_page(0, PROT_NONE));
  EXPECT_EQ(mm->make_resident(r.page_uaddr(0), kPageSize, /*write=*/false).error(), EFAULT);
}

TEST(MmTest, MakeResidentArgumentChecks) {
  auto mm = Mm::current();
  EXPECT_EQ(mm->make_resident(kUlongMax - kPageSize + 1, 2 * kPageSize, false).error(), EFAULT);  // wraps
  EXPECT_EQ(mm->make_resident(0, kPageSize, false).error(), EFAULT);
  EXPECT_EQ(mm->make_resident(std::uint64_t{1} << 63, kPageSize, false).error(), EFAULT);  // not user space
  TestRegion r(1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(mm->make_resident(r.uaddr(1), kPageSize, false).error(), EINVAL);
  EXPECT_EQ(mm->make_resident(r.uaddr(), 100, false).error(), EINVAL);
  EXPECT_EQ(mm->make_resident(0, 0, true), Status());
}

TEST(MmTest, MakeResidentOfAReadOnlyFileMappingForReadWorks) {
  // Private file-backed memory (here: our own executable's first page) is readable but not writable.
  const long pagesz = sysconf(_SC_PAGESIZE);
  ASSERT_EQ(static_cast<std::uint64_t>(pagesz), kPageSize);
  std::FILE* f = std::fopen("/proc/self/exe", "r");
  ASSERT_NE(f, nullptr);
  void* p = mmap(nullptr, kPageSize, PROT_READ, MAP_PRIVATE, fileno(f), 0);
  std::fclose(f);
  ASSERT_NE(p, MAP_FAILED);
  const auto uaddr = reinterpret_cast<std::uintptr_t>(p);
  EXPECT_EQ(Mm::current()->make_resident(uaddr, kPageSize, false), Status());
  EXPECT_EQ(Mm::current()->make_resident(uaddr, kPageSize, true).error(), EFAULT);
  munmap(p, kPageSize);
}

TEST(MmTest, LockAndUnlock) {
  TestRegion r(16);
  ASSERT_TRUE(r.ok());
  auto mm = Mm::current();
  const long before = vm_locked_kib();
  ASSERT_EQ(mm->lock(r.uaddr(), r.len()), Status());
  EXPECT_GE(vm_locked_kib() - before, static_cast<long>(r.len() / 1024));
  EXPECT_TRUE(all_resident(r));  // mlock populates
  mm->unlock(r.uaddr(), r.len());
  EXPECT_EQ(vm_locked_kib(), before);
}

TEST(MmTest, LockErrorsLeaveNothingLocked) {
  TestRegion r(4);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.unmap_page(2));
  auto mm = Mm::current();
  const long before = vm_locked_kib();
  EXPECT_EQ(mm->lock(r.uaddr(), r.len()).error(), EFAULT);
  EXPECT_EQ(vm_locked_kib(), before);
  EXPECT_EQ(mm->lock(kUlongMax - kPageSize + 1, 2 * kPageSize).error(), EFAULT);
  EXPECT_EQ(mm->lock(r.uaddr(1), kPageSize).error(), EINVAL);
  EXPECT_EQ(mm->lock(r.uaddr(), 0), Status());
}

TEST(MmTest, UnlockSkipsHoles) {
  TestRegion r(4);
  ASSERT_TRUE(r.ok());
  auto mm = Mm::current();
  const long before = vm_locked_kib();
  ASSERT_EQ(mm->lock(r.uaddr(), r.len()), Status());
  ASSERT_TRUE(r.unmap_page(1));  // the user unmaps part of a locked range
  mm->unlock(r.uaddr(), r.len());
  EXPECT_EQ(vm_locked_kib(), before);
}

TEST(MmTest, WorksInAForkedChild) {
  // The pid is read per call: in the child, copies must address the child's own memory.
  TestRegion r(1);
  ASSERT_TRUE(r.ok());
  std::memcpy(r.ptr(), "parent", 7);
  auto mm = Mm::current();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::memcpy(r.ptr(), "child!", 7);  // COW: only the child's copy changes
    char buf[7] = {};
    const bool ok = mm->copy_from_user(buf, r.uaddr(), sizeof buf).ok() && std::memcmp(buf, "child!", 7) == 0;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(std::memcmp(r.ptr(), "parent", 7), 0);
}

}  // namespace
}  // namespace uiommufd
