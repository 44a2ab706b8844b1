/* MOCK_DOMAIN_REPLACE and the device's hold on its page table: a replace onto the HWPT the device already
 * uses, or onto its IOAS (which finds that same automatic HWPT), changes nothing; a replace onto another
 * IOAS moves the device to a new automatic HWPT and the old one goes with its last device. After each,
 * destroying the device removes its automatic HWPT, and the IOAS can then be destroyed
 * (drivers/iommu/iommufd/device.c: iommufd_device_do_replace(), iommufd_device_auto_get_domain();
 * docs/semantics.md). */
#include "abi.h"

/* Destroys the mock device, then checks that its automatic HWPT went with it and the IOAS is free. */
static void destroy_device_and_ioas(int fd, const char* prefix, uint32_t stdev, uint32_t hwpt, uint32_t ioas,
                                    const void* buf) {
  char name[96];
  snprintf(name, sizeof(name), "%s_destroy_device", prefix);
  check_rc(name, destroy_id(fd, stdev), OK);
  snprintf(name, sizeof(name), "%s_hwpt_gone", prefix);
  check_rc(name, destroy_id(fd, hwpt), ERR(ENOENT));
  snprintf(name, sizeof(name), "%s_unpinned", prefix);
  check_rc(name, check_refs(fd, buf, 0x4000, 0), OK);
  snprintf(name, sizeof(name), "%s_destroy_ioas", prefix);
  check_rc(name, destroy_id(fd, ioas), OK);
}

static uint32_t mapped_ioas(int fd, const char* name, void* buf) {
  uint32_t ioas = 0;
  require(name, ioas_alloc(fd, &ioas) == 0);
  uint64_t iova = MOCK_APERTURE_START;
  require(name, ioas_map(fd, ioas, buf, 0x4000, &iova, 1) == 0);
  return ioas;
}

int main(void) {
  int fd = open_iommufd();
  uint8_t* buf = (uint8_t*)alloc_buffer(0x4000);
  uint32_t stdev = 0, hwpt = 0, out = 0;

  /* Onto the same HWPT, by its id. */
  uint32_t ioas = mapped_ioas(fd, "same_hwpt_setup", buf);
  require("same_hwpt_mock_domain", check_rc("same_hwpt_mock_domain", mock_domain(fd, ioas, &stdev, &hwpt, NULL), OK));
  check_rc("same_hwpt_replace", mock_domain_replace(fd, stdev, hwpt, &out), OK);
  check_u64("same_hwpt_replace", "pt_id", out, hwpt);
  check_rc("same_hwpt_replace_again", mock_domain_replace(fd, stdev, hwpt, &out), OK);
  check_rc("same_hwpt_refs", check_refs(fd, buf, 0x4000, 1), OK);
  check_rc("same_hwpt_ioas_busy", destroy_id(fd, ioas), ERR(EBUSY));
  destroy_device_and_ioas(fd, "same_hwpt", stdev, hwpt, ioas, buf);

  /* Onto the same IOAS: the device's own automatic HWPT is found again. */
  ioas = mapped_ioas(fd, "same_ioas_setup", buf);
  require("same_ioas_mock_domain", check_rc("same_ioas_mock_domain", mock_domain(fd, ioas, &stdev, &hwpt, NULL), OK));
  check_rc("same_ioas_replace", mock_domain_replace(fd, stdev, ioas, &out), OK);
  check_u64("same_ioas_replace", "pt_id", out, hwpt);
  check_rc("same_ioas_refs", check_refs(fd, buf, 0x4000, 1), OK);
  check_rc("same_ioas_check_map", check_map(fd, hwpt, MOCK_APERTURE_START, buf, 0x4000), OK);
  destroy_device_and_ioas(fd, "same_ioas", stdev, hwpt, ioas, buf);

  /* Onto another IOAS and back: each move makes a new automatic HWPT and the old one goes. */
  uint32_t ioas_a = mapped_ioas(fd, "a_setup", buf);
  uint32_t ioas_b = mapped_ioas(fd, "b_setup", buf);
  uint32_t hwpt_a = 0, hwpt_b = 0, hwpt_a2 = 0;
  require("move_mock_domain", check_rc("move_mock_domain", mock_domain(fd, ioas_a, &stdev, &hwpt_a, NULL), OK));
  check_rc("move_to_b", mock_domain_replace(fd, stdev, ioas_b, &hwpt_b), OK);
  check_u64("move_to_b", "new_hwpt", hwpt_b != hwpt_a, 1);
  check_rc("move_to_b_old_hwpt_gone", check_map(fd, hwpt_a, MOCK_APERTURE_START, buf, 0x4000), ERR(ENOENT));
  check_rc("move_to_b_check_map", check_map(fd, hwpt_b, MOCK_APERTURE_START, buf, 0x4000), OK);
  check_rc("move_to_b_refs", check_refs(fd, buf, 0x4000, 1), OK);
  check_rc("move_to_b_a_free", destroy_id(fd, ioas_a), OK);
  ioas_a = mapped_ioas(fd, "a_again_setup", buf);
  check_rc("move_back", mock_domain_replace(fd, stdev, ioas_a, &hwpt_a2), OK);
  check_rc("move_back_old_hwpt_gone", check_map(fd, hwpt_b, MOCK_APERTURE_START, buf, 0x4000), ERR(ENOENT));
  check_rc("move_back_check_map", check_map(fd, hwpt_a2, MOCK_APERTURE_START, buf, 0x4000), OK);
  check_rc("move_back_b_free", destroy_id(fd, ioas_b), OK);
  check_rc("move_back_same_ioas", mock_domain_replace(fd, stdev, ioas_a, &out), OK);
  check_u64("move_back_same_ioas", "pt_id", out, hwpt_a2);
  destroy_device_and_ioas(fd, "move_back", stdev, hwpt_a2, ioas_a, buf);

  /* A replace that fails leaves the device where it was. */
  ioas = mapped_ioas(fd, "fail_setup", buf);
  require("fail_mock_domain", check_rc("fail_mock_domain", mock_domain(fd, ioas, &stdev, &hwpt, NULL), OK));
  check_rc("fail_unknown_pt", mock_domain_replace(fd, stdev, 9999, &out), ERR(ENOENT));
  check_rc("fail_pt_is_device", mock_domain_replace(fd, stdev, stdev, &out), ERR(EINVAL));
  check_rc("fail_unknown_device", mock_domain_replace(fd, 9999, ioas, &out), ERR(ENOENT));
  check_rc("fail_still_mapped", check_map(fd, hwpt, MOCK_APERTURE_START, buf, 0x4000), OK);
  destroy_device_and_ioas(fd, "fail", stdev, hwpt, ioas, buf);

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
