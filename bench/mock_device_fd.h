// The start of every runtime figure's set-up: /dev/iommu opened through the preload, an IOAS, and a mock
// device attached to it (IOMMU_TEST_OP_MOCK_DOMAIN).
#pragma once

#include <cstdint>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "uiommufd/uapi/abi.h"

namespace uiommufd::bench {

struct MockDeviceFd {
  int fd = -1;
  std::uint32_t ioas = 0, stdev = 0, idev = 0;
  // False when /dev/iommu is not served (not run under `uiommufd run --`) or a step failed.
  bool open_mock_device() {
    fd = ::open("/dev/iommu", O_RDWR | O_CLOEXEC);
    if (fd < 0) return false;
    uapi::iommu_ioas_alloc a{sizeof(a), 0, 0};
    if (ioctl(fd, uapi::IOMMU_IOAS_ALLOC, &a) != 0) return false;
    ioas = a.out_ioas_id;
    uapi::iommu_test_cmd md{};
    md.size = sizeof(md);
    md.op = uapi::IOMMU_TEST_OP_MOCK_DOMAIN;
    md.id = ioas;
    if (ioctl(fd, uapi::IOMMU_TEST_CMD, &md) != 0) return false;
    stdev = md.mock_domain.out_stdev_id;
    idev = md.mock_domain.out_idev_id;
    return true;
  }
  ~MockDeviceFd() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace uiommufd::bench
