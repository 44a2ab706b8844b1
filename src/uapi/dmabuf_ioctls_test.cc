// The dma-buf test ops and IOMMU_IOAS_MAP_FILE of their fds through the dispatcher
// (docs/semantics.md#dma-buf): DMABUF_GET's checks and fd flags, DMABUF_REVOKE's lookups, MAP_FILE's choice
// between a dma-buf and a file, the fd's own ioctls, lifetimes, and the fail-nth sweep of get + map.
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "test_dmabuf.h"
#include "testing/test_fd_host.h"

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/base/page.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/pages/pages.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::uapi {
namespace {

using testing::make_test_cmd;

constexpr std::uint64_t kBufSize = 4 * kPageSize;
constexpr std::uint32_t kRW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

class DmaBufIoctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = host_.open_iommufd();
    ASSERT_GE(fd_, 0);
    iommu_ioas_alloc a{sizeof(a), 0, 0};
    ASSERT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, &a), 0);
    ioas_ = a.out_ioas_id;
  }
  void TearDown() override {
    for (int f : fds_) host_.close(f);
    host_.close(fd_);
  }
  // DMABUF_GET: the fd, or −errno.
  int get(std::uint32_t length, std::uint32_t open_flags = O_CLOEXEC) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DMABUF_GET, 0);
    c.dmabuf_get.length = length;
    c.dmabuf_get.open_flags = open_flags;
    const int r = host_.ioctl(fd_, IOMMU_TEST_CMD, &c);
    if (r < 0) return -errno;
    fds_.push_back(r);
    return r;
  }
  int revoke(int dmabuf_fd, std::uint32_t revoked) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DMABUF_REVOKE, 0);
    c.dmabuf_revoke.dmabuf_fd = dmabuf_fd;
    c.dmabuf_revoke.revoked = revoked;
    return host_.ioctl(fd_, IOMMU_TEST_CMD, &c) < 0 ? errno : 0;
  }
  // MAP_FILE: errno, 0 on success (*iova in/out).
  int map_file(int file_fd, std::uint64_t start, std::uint64_t length, std::uint64_t* iova,
               std::uint32_t flags = kRW) {
    iommu_ioas_map_file m{sizeof(m), flags, ioas_, file_fd, start, length, *iova};
    if (host_.ioctl(fd_, IOMMU_IOAS_MAP_FILE, &m) < 0) return errno;
    *iova = m.iova;
    return 0;
  }
  Context& ctx() { return static_cast<IommufdFile&>(*host_.lookup(fd_)).context(); }
  RefPtr<MockDmaBuf> buffer(int f) {
    auto b = lookup_dmabuf(host_, f);
    EXPECT_TRUE(b.ok());
    return b.ok() ? *b : RefPtr<MockDmaBuf>();
  }

  testing::TestFdHost host_;
  int fd_ = -1;
  std::uint32_t ioas_ = 0;
  std::vector<int> fds_;
};

TEST_F(DmaBufIoctlTest, GetLengthZeroIsEinval) { EXPECT_EQ(get(0), -EINVAL); }

TEST_F(DmaBufIoctlTest, GetLengthAbove512PagesIsEinval) {
  EXPECT_EQ(get(512 * kPageSize + 1), -EINVAL);
  EXPECT_EQ(get(0xffffffffu), -EINVAL);
}

TEST_F(DmaBufIoctlTest, GetRoundsTheLengthUpToPages) {
  const int f = get(1);
  ASSERT_GE(f, 0);
  EXPECT_EQ(buffer(f)->size(), kPageSize);
  const int g = get(512 * kPageSize);
  ASSERT_GE(g, 0);
  EXPECT_EQ(buffer(g)->size(), 512 * kPageSize);
}

TEST_F(DmaBufIoctlTest, GetBufferIsZeroedAndPageAligned) {
  const int f = get(kBufSize);
  ASSERT_GE(f, 0);
  RefPtr<MockDmaBuf> b = buffer(f);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b->memory()) % kPageSize, 0u);
  const auto* bytes = static_cast<const unsigned char*>(b->memory());
  for (std::uint64_t i = 0; i < kBufSize; ++i) ASSERT_EQ(bytes[i], 0) << i;
}

TEST_F(DmaBufIoctlTest, GetCloexecSetsTheFdFlag) {
  const int f = get(kPageSize, O_CLOEXEC);
  ASSERT_GE(f, 0);
  EXPECT_EQ(fcntl(f, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  const int g = get(kPageSize, 0);
  ASSERT_GE(g, 0);
  EXPECT_EQ(fcntl(g, F_GETFD) & FD_CLOEXEC, 0);
}

TEST_F(DmaBufIoctlTest, GetAccessModeAndNonblockAreTheFileFlags) {
  const struct {
    std::uint32_t open_flags;
    int getfl;
  } cases[] = {{O_CLOEXEC, O_RDONLY},
               {O_WRONLY, O_WRONLY},
               {O_RDWR | O_NONBLOCK, O_RDWR | O_NONBLOCK},
               {O_RDONLY | O_NONBLOCK, O_RDONLY | O_NONBLOCK},
               {O_CREAT | O_TRUNC | O_APPEND, O_RDONLY}};
  for (const auto& c : cases) {
    const int f = get(kPageSize, c.open_flags);
    ASSERT_GE(f, 0) << c.open_flags;
    EXPECT_EQ(fcntl(f, F_GETFL), c.getfl) << c.open_flags;
  }
}

TEST_F(DmaBufIoctlTest, GetFdTakesNoIoctl) {
  const int f = get(kPageSize);
  ASSERT_GE(f, 0);
  iommu_ioas_alloc a{sizeof(a), 0, 0};
  EXPECT_EQ(host_.ioctl(f, IOMMU_IOAS_ALLOC, &a), -1);
  EXPECT_EQ(errno, ENOTTY);
}

TEST_F(DmaBufIoctlTest, RevokeOfNoDescriptorIsEbadf) {
  EXPECT_EQ(revoke(-1, 1), EBADF);
  const int f = get(kPageSize);
  ASSERT_GE(f, 0);
  host_.close(f);
  fds_.clear();
  EXPECT_EQ(revoke(f, 1), EBADF);
}

TEST_F(DmaBufIoctlTest, RevokeOfAnotherFileIsEinval) {
  EXPECT_EQ(revoke(fd_, 1), EINVAL);
  const int memfd = static_cast<int>(syscall(SYS_memfd_create, "dmabuf_test", 0));
  ASSERT_GE(memfd, 0);
  EXPECT_EQ(revoke(memfd, 1), EINVAL);
  close(memfd);
}

TEST_F(DmaBufIoctlTest, RevokeTakesAnyNonZeroValueAsTrue) {
  const int f = get(kBufSize);
  ASSERT_GE(f, 0);
  EXPECT_EQ(revoke(f, 0x100), 0);
  std::uint64_t iova = 0;
  EXPECT_EQ(map_file(f, 0, kBufSize, &iova), ENODEV);
  EXPECT_EQ(revoke(f, 0), 0);
  EXPECT_EQ(map_file(f, 0, kBufSize, &iova), 0);
}

TEST_F(DmaBufIoctlTest, MapFileRangeChecks) {
  const int f = get(kBufSize);
  ASSERT_GE(f, 0);
  std::uint64_t iova = 0;
  EXPECT_EQ(map_file(f, 0, 0, &iova), EINVAL);
  EXPECT_EQ(map_file(f, kBufSize, kBufSize, &iova), EINVAL);
  EXPECT_EQ(map_file(f, 0, kBufSize + 1, &iova), EINVAL);
  EXPECT_EQ(map_file(f, ~0ull, 2, &iova), EOVERFLOW);
  EXPECT_EQ(map_file(f, 0, kBufSize, &iova, 0), EINVAL);
  EXPECT_EQ(map_file(f, 0, kBufSize, &iova, kRW | (1u << 7)), EOPNOTSUPP);
  EXPECT_EQ(buffer(f)->importers(), 0u);
}

TEST_F(DmaBufIoctlTest, MapFileOfADmaBufImportsIt) {
  const int f = get(kBufSize);
  ASSERT_GE(f, 0);
  std::uint64_t iova = 0;
  ASSERT_EQ(map_file(f, 0, kBufSize, &iova), 0);
  EXPECT_EQ(iova, kBufSize);  // aligned to the length, from the first page up
  EXPECT_EQ(buffer(f)->importers(), 1u);
  auto ioas = ctx().get<Ioas>(ioas_, ObjectType::kIoas);
  ASSERT_TRUE(ioas.ok());
  auto areas = (*ioas)->iopt().areas();
  ASSERT_EQ(areas.size(), 1u);
  EXPECT_EQ(areas[0].pages->kind(), PagesKind::kDmaBuf);
}

TEST_F(DmaBufIoctlTest, MapFileOfAnOrdinaryFileStillMapsTheFile) {
  const int memfd = static_cast<int>(syscall(SYS_memfd_create, "dmabuf_test", 0));
  ASSERT_GE(memfd, 0);
  ASSERT_EQ(ftruncate(memfd, kBufSize), 0);
  std::uint64_t iova = 0;
  EXPECT_EQ(map_file(memfd, 0, kBufSize, &iova), 0);
  auto ioas = ctx().get<Ioas>(ioas_, ObjectType::kIoas);
  ASSERT_TRUE(ioas.ok());
  EXPECT_EQ((*ioas)->iopt().areas()[0].pages->kind(), PagesKind::kFile);
  close(memfd);
}

TEST_F(DmaBufIoctlTest, TheMappingOutlivesTheFd) {
  const int f = get(kBufSize);
  ASSERT_GE(f, 0);
  RefPtr<MockDmaBuf> b = buffer(f);
  std::uint64_t iova = 0;
  ASSERT_EQ(map_file(f, 0, kBufSize, &iova), 0);
  host_.close(f);
  fds_.clear();
  EXPECT_EQ(b->importers(), 1u);
  iommu_ioas_unmap u{sizeof(u), ioas_, iova, kBufSize};
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_IOAS_UNMAP, &u), 0);
  EXPECT_EQ(b->importers(), 0u);
}

TEST_F(DmaBufIoctlTest, TheFdOutlivesItsIommufd) {
  testing::TestFdHost other;
  const int ofd = other.open_iommufd();
  ASSERT_GE(ofd, 0);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DMABUF_GET, 0);
  c.dmabuf_get.length = kBufSize;
  const int f = other.ioctl(ofd, IOMMU_TEST_CMD, &c);
  ASSERT_GE(f, 0);
  std::shared_ptr<OpenFile> file = other.lookup(f);
  other.close(ofd);
  EXPECT_EQ(file->kind(), OpenFile::Kind::kDmaBuf);
  EXPECT_EQ(static_cast<DmaBufFile&>(*file).buffer()->size(), kBufSize);
}

// Every site of DMABUF_GET followed by MAP_FILE of its fd, failed in turn: nothing is left (no fd of ours, no
// area, no importer).
TEST_F(DmaBufIoctlTest, FaultSweepOverGetAndMapUnwinds) {
  std::vector<int> made;
  auto setup = [&] {
    for (int f : made) host_.close(f);
    made.clear();
    iommu_ioas_unmap u{sizeof(u), ioas_, 0, ~0ull};
    ASSERT_EQ(host_.ioctl(fd_, IOMMU_IOAS_UNMAP, &u), 0);
  };
  auto op = [&]() -> Status {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DMABUF_GET, 0);
    c.dmabuf_get.length = kBufSize;
    const int f = host_.ioctl(fd_, IOMMU_TEST_CMD, &c);
    if (f < 0) return Status::error(errno);
    made.push_back(f);
    std::uint64_t iova = 0;
    const int e = map_file(f, 0, kBufSize, &iova);
    return e ? Status::error(e) : Status();
  };
  auto ioas = ctx().get<Ioas>(ioas_, ObjectType::kIoas);
  ASSERT_TRUE(ioas.ok());
  SweepResult r = sweep_fail_nth(setup, op, [&](unsigned, Status st) {
    // A reply that cannot be written leaves the mapping in place (EFAULT), as in the kernel.
    if (st.ok() || st.error() == EFAULT) return;
    EXPECT_EQ((*ioas)->iopt().area_count(), 0u) << st.to_string();
    for (int f : made) EXPECT_EQ(buffer(f)->importers(), 0u);
  });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  for (const char* site :
       {"selftest.alloc", "dmabuf.export", "pages.alloc", "dmabuf.attach", "iopt.alloc_area"}) {
    bool seen = false;
    for (const std::string& s : r.fired_sites) seen |= s == site;
    EXPECT_TRUE(seen) << site;
  }
  setup();
}

}  // namespace
}  // namespace uiommufd::uapi
