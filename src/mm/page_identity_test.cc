#include "uiommufd/mm/page_identity.h"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "uiommufd/base/page.h"

namespace uiommufd {
namespace {

std::uint64_t addr_of(const void* p) { return reinterpret_cast<std::uint64_t>(p); }

// A memfd of `npages` pages with `nmaps` mmaps of it (MAP_SHARED unless `flags` says otherwise).
class MappedMemfd {
 public:
  MappedMemfd(std::uint64_t npages, int flags = MAP_SHARED) : len_(npages * kPageSize) {
    fd_ = ::memfd_create("page_identity_test", MFD_CLOEXEC);
    EXPECT_GE(fd_, 0);
    EXPECT_EQ(::ftruncate(fd_, static_cast<off_t>(len_)), 0);
    a_ = static_cast<char*>(::mmap(nullptr, len_, PROT_READ | PROT_WRITE, flags, fd_, 0));
    b_ = static_cast<char*>(::mmap(nullptr, len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0));
    EXPECT_NE(a_, MAP_FAILED);
    EXPECT_NE(b_, MAP_FAILED);
  }
  ~MappedMemfd() {
    ::munmap(a_, len_);
    ::munmap(b_, len_);
    ::close(fd_);
  }
  MappedMemfd(const MappedMemfd&) = delete;
  MappedMemfd& operator=(const MappedMemfd&) = delete;

  int fd() const { return fd_; }
  char* a() const { return a_; }  // mapped with the constructor's flags
  char* b() const { return b_; }  // always MAP_SHARED
  struct stat st() const {
    struct stat s {};
    EXPECT_EQ(::fstat(fd_, &s), 0);
    return s;
  }

 private:
  std::uint64_t len_;
  int fd_ = -1;
  char* a_ = nullptr;
  char* b_ = nullptr;
};

TEST(PageIdentityTest, PrivateAnonymousMemoryIsItsVirtualAddress) {
  void* p = ::mmap(nullptr, 2 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  const MapsSnapshot snap = MapsSnapshot::take();
  ASSERT_TRUE(snap.complete());
  const PageIdentity id = snap.identity(addr_of(p) + kPageSize + 17);
  EXPECT_FALSE(id.is_file());
  EXPECT_EQ(id.offset, addr_of(p) + kPageSize);
  ::munmap(p, 2 * kPageSize);
}

TEST(PageIdentityTest, SharedMemfdPageIsDeviceInodeAndFileOffsetAsFstatSaysIt) {
  MappedMemfd m(4);
  const MapsSnapshot snap = MapsSnapshot::take();
  const PageIdentity id = snap.identity(addr_of(m.a()) + 2 * kPageSize);
  const struct stat st = m.st();
  EXPECT_TRUE(id.is_file());
  EXPECT_EQ(id.dev, static_cast<std::uint64_t>(st.st_dev));
  EXPECT_EQ(id.ino, static_cast<std::uint64_t>(st.st_ino));
  EXPECT_EQ(id.offset, 2 * kPageSize);
}

TEST(PageIdentityTest, TwoSharedMappingsOfOneFileReachTheSamePages) {
  MappedMemfd m(4);
  const MapsSnapshot snap = MapsSnapshot::take();
  EXPECT_TRUE(snap.same_pages(addr_of(m.a()), addr_of(m.b()), 4 * kPageSize));
  EXPECT_TRUE(snap.same_pages(addr_of(m.a()) + 2048, addr_of(m.b()) + 2048, 2 * kPageSize));
  // Shifted by a page, or by a different in-page offset: other pages.
  EXPECT_FALSE(snap.same_pages(addr_of(m.a()), addr_of(m.b()) + kPageSize, kPageSize));
  EXPECT_FALSE(snap.same_pages(addr_of(m.a()), addr_of(m.b()) + 2048, kPageSize));
}

TEST(PageIdentityTest, AMappingAtAnOffsetResolvesToThatFileOffset) {
  MappedMemfd m(4);
  char* tail = static_cast<char*>(::mmap(nullptr, kPageSize, PROT_READ, MAP_SHARED, m.fd(), 3 * kPageSize));
  ASSERT_NE(tail, MAP_FAILED);
  const MapsSnapshot snap = MapsSnapshot::take();
  EXPECT_TRUE(snap.same_pages(addr_of(tail), addr_of(m.a()) + 3 * kPageSize, kPageSize));
  EXPECT_EQ(snap.identity(addr_of(tail)).offset, 3 * kPageSize);
  ::munmap(tail, kPageSize);
}

TEST(PageIdentityTest, PrivateAnonymousMemoryMatchesOnlyItself) {
  void* p = ::mmap(nullptr, 2 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  const MapsSnapshot snap = MapsSnapshot::take();
  EXPECT_TRUE(snap.same_pages(addr_of(p), addr_of(p), 2 * kPageSize));
  EXPECT_FALSE(snap.same_pages(addr_of(p), addr_of(p) + kPageSize, kPageSize));
  ::munmap(p, 2 * kPageSize);
}

TEST(PageIdentityTest, UnwrittenPrivateFileMappingReachesTheFilePages) {
  MappedMemfd m(2, MAP_PRIVATE);
  volatile char c = m.a()[0];  // a read fault maps the file's page
  (void)c;
  const MapsSnapshot snap = MapsSnapshot::take();
  EXPECT_TRUE(snap.same_pages(addr_of(m.a()), addr_of(m.b()), 2 * kPageSize));
}

TEST(PageIdentityTest, WrittenPrivateFileMappingPageIsTheProcesssOwnCopy) {
  MappedMemfd m(2, MAP_PRIVATE);
  m.a()[kPageSize] = 1;  // copy-on-write of page 1 only
  const MapsSnapshot snap = MapsSnapshot::take();
  EXPECT_TRUE(snap.same_pages(addr_of(m.a()), addr_of(m.b()), kPageSize));
  EXPECT_FALSE(snap.same_pages(addr_of(m.a()) + kPageSize, addr_of(m.b()) + kPageSize, kPageSize));
  const PageIdentity id = snap.identity(addr_of(m.a()) + kPageSize);
  EXPECT_FALSE(id.is_file());
  EXPECT_EQ(id.offset, addr_of(m.a()) + kPageSize);
}

TEST(PageIdentityTest, ResolveSplitsARangeAtMappingBoundariesAndMergesContinuations) {
  MappedMemfd m(4);
  const MapsSnapshot snap = MapsSnapshot::take();
  const std::vector<IdentityRun> runs = snap.resolve(addr_of(m.a()) + 100, 4 * kPageSize - 100);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].addr, addr_of(m.a()));
  EXPECT_EQ(runs[0].npages, 4u);
  EXPECT_EQ(runs[0].first.offset, 0u);
  EXPECT_TRUE(snap.resolve(addr_of(m.a()), 0).empty());
}

TEST(PageIdentityTest, ParseKeepsFileMappingsAndTreatsTheRestAsPrivate) {
  const std::string text =
      "1000-3000 rw-s 00002000 00:01 77   /memfd:x (deleted)\n"
      "3000-4000 rw-p 00000000 00:00 0 \n"
      "5000-6000 r--p 00000000 fd:02 99   /usr/lib/libc.so\n"
      "garbage line\n";
  const MapsSnapshot snap = MapsSnapshot::parse(text.data(), text.size());
  EXPECT_EQ(snap.identity(0x2000), (PageIdentity{makedev(0, 1), 77, 0x3000}));
  EXPECT_EQ(snap.identity(0x3000), (PageIdentity{0, 0, 0x3000}));
  EXPECT_EQ(snap.identity(0x7000), (PageIdentity{0, 0, 0x7000}));
  const std::vector<IdentityRun> runs = snap.resolve(0, 0x4000);
  ASSERT_EQ(runs.size(), 3u);  // [0, 0x1000) private, [0x1000, 0x3000) file, [0x3000, 0x4000) private
  EXPECT_EQ(runs[1].npages, 2u);
  EXPECT_EQ(runs[1].first.offset, 0x2000u);
}

TEST(PageIdentityTest, AnUnreadableMapsFileLeavesEveryAddressPrivate) {
  const MapsSnapshot snap;  // what take() gives when /proc/self/maps cannot be read
  EXPECT_FALSE(snap.complete());
  EXPECT_EQ(snap.identity(0x12345), (PageIdentity{0, 0, 0x12000}));
}

TEST(PageIdentityTest, ASnapshotIsCheapEnoughForTestOps) {
  // The fail-nth sweeps call the checks often: a snapshot must stay well below a millisecond.
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(MapsSnapshot::take().complete());
  const auto per = (std::chrono::steady_clock::now() - start) / 100;
  EXPECT_LT(per, std::chrono::milliseconds(2));
}

}  // namespace
}  // namespace uiommufd
