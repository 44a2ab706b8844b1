// A stress test's way into the dispatcher: one iommufd of a TestFdHost and the calls every queue test makes
// on it (an ioctl as an errno, a test op, MOCK_DOMAIN_REPLACE, IOMMU_DESTROY, the Context behind the fd).
#pragma once

#include <cerrno>
#include <cstdint>

#include <gtest/gtest.h>

#include "testing/test_fd_host.h"

#include "uiommufd/objects/context.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd {

class DispatchFixture : public ::testing::Test {
 protected:
  // 0 or the errno of the call.
  int call(unsigned long cmd, void* arg) { return host_.ioctl(fd_, cmd, arg) < 0 ? errno : 0; }
  int test(uapi::iommu_test_cmd& c) { return call(uapi::IOMMU_TEST_CMD, &c); }
  int replace(std::uint32_t stdev, std::uint32_t pt) {
    uapi::iommu_test_cmd c = uapi::testing::make_test_cmd(uapi::IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev);
    c.mock_domain_replace.pt_id = pt;
    return test(c);
  }
  int destroy(std::uint32_t id) {
    uapi::iommu_destroy d{sizeof(d), id};
    return call(uapi::IOMMU_DESTROY, &d);
  }
  Context& ctx() { return static_cast<uapi::IommufdFile&>(*host_.lookup(fd_)).context(); }
  // Opens the iommufd (fd_) and allocates an IOAS in it; its id (0 after a failure, which is reported).
  std::uint32_t open_with_ioas() {
    fd_ = host_.open_iommufd();
    EXPECT_GE(fd_, 0);
    uapi::iommu_ioas_alloc ia{sizeof(ia), 0, 0};
    EXPECT_EQ(call(uapi::IOMMU_IOAS_ALLOC, &ia), 0);
    return ia.out_ioas_id;
  }

  uapi::testing::TestFdHost host_;
  int fd_ = -1;
};

}  // namespace uiommufd
