#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "testing/test_fd_host.h"
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

}  // namespace
}  // namespace uiommufd::uapi
