#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "testing/test_fd_host.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::uapi {
namespace {

class DispatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = host_.open_iommufd();
    ASSERT_GE(fd_, 0);
  }
  testing::TestFdHost host_;
  int fd_ = -1;
};

TEST_F(DispatchTest, IoasAllocReturnsIdsFromOneAndDestroyReleasesThem) {
  iommu_ioas_alloc alloc{sizeof(alloc), 0, 0};
  ASSERT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, &alloc), 0);
  EXPECT_EQ(alloc.out_ioas_id, 1u);
  iommu_destroy d{sizeof(d), alloc.out_ioas_id};
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_DESTROY, &d), 0);
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_DESTROY, &d), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(DispatchTest, SizeBelowTheMinimumIsEinval) {
  iommu_ioas_alloc alloc{8, 0, 0};
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, &alloc), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST_F(DispatchTest, LargerStructNeedsAZeroTail) {
  struct {
    iommu_ioas_alloc a;
    std::uint32_t tail[3];
  } big{};
  big.a.size = sizeof(big);
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, &big), 0);
  EXPECT_EQ(big.a.out_ioas_id, 1u);
  big.tail[2] = 1;
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, &big), -1);
  EXPECT_EQ(errno, E2BIG);
}

TEST_F(DispatchTest, BadPointerIsEfault) {
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, nullptr), -1);
  EXPECT_EQ(errno, EFAULT);
}

TEST_F(DispatchTest, UnknownCommandsAreEnotty) {
  iommu_destroy d{sizeof(d), 1};
  EXPECT_EQ(host_.ioctl(fd_, io_cmd(0x9f), &d), -1);
  EXPECT_EQ(errno, ENOTTY);
  // Right number, wrong encoding (direction bits set).
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_DESTROY | (3ul << 30) | (8ul << 16), &d), -1);
  EXPECT_EQ(errno, ENOTTY);
}

// A readable page followed by an inaccessible one: at(n) is the address n bytes before the boundary.
class EdgeOfMemory {
 public:
  EdgeOfMemory() {
    page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    void* p = mmap(nullptr, 2 * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : static_cast<unsigned char*>(p);
    if (base_) mprotect(base_ + page_, page_, PROT_NONE);
  }
  ~EdgeOfMemory() {
    if (base_) munmap(base_, 2 * page_);
  }
  unsigned char* at(std::size_t n) const { return base_ + page_ - n; }
  bool ok() const { return base_ != nullptr; }

 private:
  std::size_t page_ = 0;
  unsigned char* base_ = nullptr;
};

TEST_F(DispatchTest, SizeBelowTheMinimumAtTheEndOfReadableMemoryIsEinval) {
  EdgeOfMemory edge;
  ASSERT_TRUE(edge.ok());
  // Only the 8 bytes the caller claims are readable: the kernel reads the size, then rejects it.
  const std::uint32_t head[2] = {8, 0};
  std::memcpy(edge.at(sizeof(head)), head, sizeof(head));
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, edge.at(sizeof(head))), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST_F(DispatchTest, StructEndingAtTheEndOfReadableMemoryIsAccepted) {
  EdgeOfMemory edge;
  ASSERT_TRUE(edge.ok());
  iommu_ioas_alloc alloc{sizeof(alloc), 0, 0};
  std::memcpy(edge.at(sizeof(alloc)), &alloc, sizeof(alloc));
  ASSERT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, edge.at(sizeof(alloc))), 0);
  std::memcpy(&alloc, edge.at(sizeof(alloc)), sizeof(alloc));
  EXPECT_EQ(alloc.out_ioas_id, 1u);
}

TEST_F(DispatchTest, UnreadableSizeIsEfault) {
  EdgeOfMemory edge;
  ASSERT_TRUE(edge.ok());
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, edge.at(2)), -1);
  EXPECT_EQ(errno, EFAULT);
}

TEST_F(DispatchTest, UnreadableTailOfALargerStructIsEfault) {
  EdgeOfMemory edge;
  ASSERT_TRUE(edge.ok());
  iommu_ioas_alloc alloc{sizeof(alloc) + 8, 0, 0};
  std::memcpy(edge.at(sizeof(alloc)), &alloc, sizeof(alloc));
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, edge.at(sizeof(alloc))), -1);
  EXPECT_EQ(errno, EFAULT);
}

TEST_F(DispatchTest, InjectedCopyInFailureIsEfaultAndCreatesNothing) {
  iommu_ioas_alloc alloc{sizeof(alloc), 0, 0};
  fail_nth_set(1);
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, &alloc), -1);
  EXPECT_EQ(errno, EFAULT);
  EXPECT_EQ(fail_nth_get(), 0u);
  EXPECT_STREQ(last_injected_fault(), "mm.copy_from_user");
  ASSERT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, &alloc), 0);
  EXPECT_EQ(alloc.out_ioas_id, 1u);
}

// The kernel's copy-in is one user-copy check (its get_user of the size is none).
TEST_F(DispatchTest, CopyInOfAReadableStructIsOneFaultSite) {
  iommu_ioas_alloc alloc{sizeof(alloc), 0, 0};
  fail_nth_set(2);
  host_.ioctl(fd_, IOMMU_IOAS_ALLOC, &alloc);
  EXPECT_EQ(fail_nth_get(), 0u);
  ASSERT_NE(last_injected_fault(), nullptr);
  EXPECT_STRNE(last_injected_fault(), "mm.copy_from_user");
}

}  // namespace
}  // namespace uiommufd::uapi
