/* IOAS_ALLOW_IOVAS: list validation, EADDRINUSE both ways between allowed and reserved ranges
 * (docs/abi.md#reserved-allowed-overlap), and automatic IOVAs confined to the allowed list. */
#include "abi.h"

static int allow(int fd, uint32_t ioas, const struct iommu_iova_range* r, uint32_t n) {
  struct iommu_ioas_allow_iovas c = {
      .size = sizeof(c), .ioas_id = ioas, .num_iovas = n, .allowed_iovas = (uintptr_t)r};
  return abi_ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &c);
}

int main(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0;
  require("alloc", ioas_alloc(fd, &ioas) == 0);
  uint8_t* buf = (uint8_t*)alloc_buffer(0x4000);

  struct iommu_iova_range ok2[2] = {{0x100000, 0x1fffff}, {0x400000, 0x4fffff}};
  check_rc("allow_two", allow(fd, ioas, ok2, 2), OK);
  uint64_t iova = 0;
  check_rc("auto_map_inside_allowed", ioas_map(fd, ioas, buf, 0x1000, &iova, 0), OK);
  check_u64("auto_map_inside_allowed", "iova", iova, 0x100000);
  /* Fixed IOVAs ignore the allowed list. */
  iova = 0x10000;
  check_rc("fixed_map_outside_allowed", ioas_map(fd, ioas, buf, 0x1000, &iova, 1), OK);

  struct iommu_iova_range one_byte = {0x600000, 0x600000};
  check_rc("one_byte_range", allow(fd, ioas, &one_byte, 1), ERR(EINVAL));
  struct iommu_iova_range overlap[2] = {{0x100000, 0x1fffff}, {0x180000, 0x27ffff}};
  check_rc("overlapping_ranges", allow(fd, ioas, overlap, 2), ERR(EINVAL));
  check_rc("bad_pointer", allow(fd, ioas, (struct iommu_iova_range*)unmapped_page(), 1), ERR(EFAULT));
  check_rc("unknown_ioas", allow(fd, 99, ok2, 2), ERR(ENOENT));
  struct iommu_ioas_allow_iovas res = {.size = sizeof(res), .ioas_id = ioas, .__reserved = 1};
  check_rc("reserved_nonzero", abi_ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &res), ERR(EOPNOTSUPP));

  /* A reservation inside an allowed range is refused, and so is an allowed range over a reservation. */
  check_rc("reserve_inside_allowed", add_reserved(fd, ioas, 0x480000, 0x1000), ERR(EADDRINUSE));
  check_rc("reserve_outside_allowed", add_reserved(fd, ioas, 0x800000, 0x1000), OK);
  struct iommu_iova_range over_reserved = {0x700000, 0x8fffff};
  check_rc("allow_over_reserved", allow(fd, ioas, &over_reserved, 1), ERR(EADDRINUSE));
  /* The failed call left the previous list in force. */
  iova = 0;
  check_rc("old_list_still_in_force", ioas_map(fd, ioas, buf, 0x1000, &iova, 0), OK);
  check_u64("old_list_still_in_force", "iova", iova, 0x101000);

  /* A reservation over an existing area is refused too. */
  check_rc("reserve_over_area", add_reserved(fd, ioas, 0x10000, 0x1000), ERR(EADDRINUSE));

  /* A mock domain's aperture reserves [0, 16 MiB): it cannot attach while an allowed range lies there. */
  uint32_t ioas2 = 0;
  require("alloc2", ioas_alloc(fd, &ioas2) == 0);
  struct iommu_iova_range low = {0x1000, 0xfffff};
  check_rc("allow_low", allow(fd, ioas2, &low, 1), OK);
  check_rc("mock_domain_conflicts", mock_domain(fd, ioas2, NULL, NULL, NULL), ERR(EADDRINUSE));
  check_rc("clear_list", allow(fd, ioas2, NULL, 0), OK);
  check_rc("mock_domain_after_clear", mock_domain(fd, ioas2, NULL, NULL, NULL), OK);
  check_rc("allow_in_reserved_low", allow(fd, ioas2, &low, 1), ERR(EADDRINUSE));
  struct iommu_iova_range in_aperture = {MOCK_APERTURE_START, MOCK_APERTURE_START + 0xfffff};
  check_rc("allow_in_aperture", allow(fd, ioas2, &in_aperture, 1), OK);

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
