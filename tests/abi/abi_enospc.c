/* ENOSPC from automatic IOVA allocation, including the overflow-safe alignment of a hole near the top of
 * the address space (docs/abi.md#enospc; the kernel selftest's reserved_overflow case). */
#include "abi.h"

static struct iommu_iova_range one;

int main(void) {
  int fd = open_iommufd();
  uint8_t* buf = (uint8_t*)alloc_buffer(0x10000);
  uint64_t iova;

  for (int with_domain = 0; with_domain < 2; with_domain++) {
    char name[64];
    uint32_t ioas = 0;
    require("alloc", ioas_alloc(fd, &ioas) == 0);
    if (with_domain) check_rc("mock_domain", mock_domain(fd, ioas, NULL, NULL, NULL), OK);
    snprintf(name, sizeof(name), "reserve_to_top_domain%d", with_domain);
    check_rc(name, add_reserved(fd, ioas, 6, 0xffffffffffff8001ULL), OK);
    iova = 0;
    snprintf(name, sizeof(name), "auto_map_overflowing_hole_domain%d", with_domain);
    check_rc(name, ioas_map(fd, ioas, buf, 0x5000, &iova, 0), ERR(ENOSPC));
  }

  /* An allowed list too small for the request. */
  uint32_t ioas = 0;
  require("alloc", ioas_alloc(fd, &ioas) == 0);
  one.start = 0x100000;
  one.last = 0x100fff;
  struct iommu_ioas_allow_iovas al = {
      .size = sizeof(al), .ioas_id = ioas, .num_iovas = 1, .allowed_iovas = (uintptr_t)&one};
  check_rc("allow_one_page", abi_ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &al), OK);
  iova = 0;
  check_rc("auto_map_two_pages", ioas_map(fd, ioas, buf, 0x2000, &iova, 0), ERR(ENOSPC));
  iova = 0;
  check_rc("auto_map_one_page", ioas_map(fd, ioas, buf, 0x1000, &iova, 0), OK);
  check_u64("auto_map_one_page", "iova", iova, 0x100000);
  iova = 0;
  check_rc("auto_map_full", ioas_map(fd, ioas, buf, 0x1000, &iova, 0), ERR(ENOSPC));

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
