/* Object ids and IOMMU_DESTROY: lowest-free-first ids from 1, reuse after destroy, ENOENT for unknown or
 * wrong-type ids, EBUSY while another object holds a reference (docs/semantics.md#object-ids,
 * #object-references, #destroy). */
#include "abi.h"

int main(void) {
  int fd = open_iommufd();
  uint32_t a = 0, b = 0, c = 0;

  check_rc("alloc_first", ioas_alloc(fd, &a), OK);
  check_u64("alloc_first", "out_ioas_id", a, 1);
  check_rc("alloc_second", ioas_alloc(fd, &b), OK);
  check_u64("alloc_second", "out_ioas_id", b, 2);

  check_rc("destroy_unknown", destroy_id(fd, 99), ERR(ENOENT));
  check_rc("destroy_zero", destroy_id(fd, 0), ERR(ENOENT));
  struct iommu_destroy short_cmd = {.size = 4, .id = a};
  check_rc("destroy_size_below_min", abi_ioctl(fd, IOMMU_DESTROY, &short_cmd), ERR(EINVAL));

  check_rc("destroy_first", destroy_id(fd, a), OK);
  check_rc("destroy_first_again", destroy_id(fd, a), ERR(ENOENT));
  check_rc("alloc_reuses_lowest", ioas_alloc(fd, &c), OK);
  check_u64("alloc_reuses_lowest", "out_ioas_id", c, 1);

  /* A mock device on IOAS 2: the selftest object, the device and the auto domain take ids 3, 4, 5. */
  uint32_t stdev = 0, hwpt = 0, idev = 0;
  require("mock_domain", check_rc("mock_domain", mock_domain(fd, b, &stdev, &hwpt, &idev), OK));
  check_u64("mock_domain", "out_stdev_id", stdev, 3);
  check_u64("mock_domain", "out_idev_id", idev, 4);
  check_u64("mock_domain", "out_hwpt_id", hwpt, 5);

  check_rc("destroy_ioas_in_use", destroy_id(fd, b), ERR(EBUSY));
  check_rc("destroy_hwpt_in_use", destroy_id(fd, hwpt), ERR(EBUSY));

  /* An id of the wrong type is as unknown as a missing one. */
  static uint8_t page[4096] __attribute__((aligned(4096)));
  uint64_t iova = 0;
  check_rc("map_on_hwpt_id", ioas_map(fd, hwpt, page, sizeof(page), &iova, 0), ERR(ENOENT));
  check_rc("map_on_stdev_id", ioas_map(fd, stdev, page, sizeof(page), &iova, 0), ERR(ENOENT));

  /* Destroying the selftest object detaches and unbinds the device; the auto domain goes with it. */
  check_rc("destroy_stdev", destroy_id(fd, stdev), OK);
  check_rc("destroy_auto_hwpt_gone", destroy_id(fd, hwpt), ERR(ENOENT));
  check_rc("destroy_ioas_now_free", destroy_id(fd, b), OK);

  uint32_t d = 0;
  check_rc("alloc_after_teardown", ioas_alloc(fd, &d), OK);
  check_u64("alloc_after_teardown", "out_ioas_id", d, 2);

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
