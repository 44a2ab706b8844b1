/* Mock domains through IOMMU_TEST_CMD: one domain and several devices on an IOAS, the aperture
 * (docs/abi.md#mock-aperture), the 2 KiB page (#mock-page-size), MD_CHECK_MAP and MD_CHECK_REFS, pins
 * released with the last device. */
#include "abi.h"

int main(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0;
  require("alloc", ioas_alloc(fd, &ioas) == 0);
  uint8_t* buf = (uint8_t*)alloc_buffer(0x10000);
  const uint64_t base = MOCK_APERTURE_START;
  uint64_t iova;

  uint32_t stdev1 = 0, hwpt1 = 0, idev1 = 0;
  require("mock_domain_1", check_rc("mock_domain_1", mock_domain(fd, ioas, &stdev1, &hwpt1, &idev1), OK));
  check_u64("mock_domain_1", "out_stdev_id", stdev1, 2);
  check_u64("mock_domain_1", "out_idev_id", idev1, 3);
  check_u64("mock_domain_1", "out_hwpt_id", hwpt1, 4);
  check_rc("mock_domain_unknown_id", mock_domain(fd, 99, NULL, NULL, NULL), ERR(ENOENT));

  /* The aperture: outside it is reserved. */
  iova = 0x100000;
  check_rc("map_below_aperture", ioas_map(fd, ioas, buf, 0x1000, &iova, 1), ERR(EINVAL));
  iova = MOCK_APERTURE_LAST + 1 - 0x800;
  check_rc("map_across_aperture_end", ioas_map(fd, ioas, buf, 0x1000, &iova, 1), ERR(EINVAL));
  iova = 0;
  check_rc("auto_map_lands_in_aperture", ioas_map(fd, ioas, buf + 0x8000, 0x1000, &iova, 0), OK);
  check_u64("auto_map_lands_in_aperture", "iova", iova, base);

  /* 2 KiB granularity. */
  iova = base + 0x10000;
  check_rc("map_fixed", ioas_map(fd, ioas, buf, 0x4000, &iova, 1), OK);
  iova = base + 0x20800;
  check_rc("map_2k_offset", ioas_map(fd, ioas, buf + 0x4800, 0x800, &iova, 1), OK);
  iova = base + 0x30000;
  check_rc("map_length_1k", ioas_map(fd, ioas, buf, 0x400, &iova, 1), ERR(EINVAL));
  iova = base + 0x30400;
  check_rc("map_iova_1k", ioas_map(fd, ioas, buf, 0x800, &iova, 1), ERR(EINVAL));
  iova = base + 0x30000;
  check_rc("map_src_1k", ioas_map(fd, ioas, buf + 0x400, 0x800, &iova, 1), ERR(EINVAL));

  check_rc("check_map", check_map(fd, hwpt1, base + 0x10000, buf, 0x4000), OK);
  check_rc("check_map_2k", check_map(fd, hwpt1, base + 0x20800, buf + 0x4800, 0x800), OK);
  check_rc("check_map_wrong_uptr", check_map(fd, hwpt1, base + 0x10000, buf + 0x800, 0x800), ERR(EINVAL));
  check_rc("check_map_unmapped_iova", check_map(fd, hwpt1, base + 0x40000, buf, 0x800), ERR(EINVAL));
  check_rc("check_map_unaligned", check_map(fd, hwpt1, base + 0x10400, buf + 0x400, 0x800), ERR(EINVAL));
  check_rc("check_map_on_ioas_id", check_map(fd, ioas, base + 0x10000, buf, 0x800), ERR(ENOENT));

  check_rc("refs_pinned", check_refs(fd, buf, 0x4000, 1), OK);
  check_rc("refs_wrong_count", check_refs(fd, buf, 0x4000, 2), ERR(EIO));
  check_rc("refs_unpinned_page", check_refs(fd, buf + 0x6000, 0x1000, 0), OK);
  check_rc("refs_unaligned", check_refs(fd, buf + 0x800, 0x1000, 1), ERR(EINVAL));

  /* A second mock device on the same IOAS joins the existing auto domain (newest: the auto-domain path
   * tries the IOAS's auto HWPTs first). Two distinct domains need the v6.2 layout (abi_test_layouts). */
  uint32_t stdev2 = 0, hwpt2 = 0, idev2 = 0;
  check_rc("mock_domain_2", mock_domain(fd, ioas, &stdev2, &hwpt2, &idev2), OK);
  check_u64("mock_domain_2", "out_stdev_id", stdev2, 5);
  check_u64("mock_domain_2", "out_idev_id", idev2, 6);
  check_u64("mock_domain_2", "out_hwpt_id", hwpt2, hwpt1);
  check_rc("refs_two_devices", check_refs(fd, buf, 0x4000, 1), OK);
  iova = base + 0x50000;
  check_rc("map_with_two_devices", ioas_map(fd, ioas, buf + 0xa000, 0x2000, &iova, 1), OK);
  check_rc("check_map_new_area", check_map(fd, hwpt1, base + 0x50000, buf + 0xa000, 0x2000), OK);

  /* A third device joins the HWPT by id. */
  uint32_t stdev3 = 0, hwpt3 = 0;
  check_rc("mock_domain_on_hwpt", mock_domain(fd, hwpt1, &stdev3, &hwpt3, NULL), OK);
  check_u64("mock_domain_on_hwpt", "out_hwpt_id", hwpt3, hwpt1);

  /* The auto domain lives while any device is attached; the last detach destroys it and unpins. */
  check_rc("destroy_stdev_1", destroy_id(fd, stdev1), OK);
  check_rc("check_map_after_first_gone", check_map(fd, hwpt1, base + 0x10000, buf, 0x4000), OK);
  check_rc("refs_two_devices_left", check_refs(fd, buf, 0x4000, 1), OK);
  check_rc("destroy_stdev_3", destroy_id(fd, stdev3), OK);
  check_rc("destroy_stdev_2", destroy_id(fd, stdev2), OK);
  check_rc("check_map_domain_gone", check_map(fd, hwpt1, base + 0x10000, buf, 0x4000), ERR(ENOENT));
  check_rc("refs_no_domain", check_refs(fd, buf, 0x10000, 0), OK);

  /* Re-attaching pins again; unmapping unpins. */
  check_rc("mock_domain_again", mock_domain(fd, ioas, NULL, NULL, NULL), OK);
  check_rc("refs_reattached", check_refs(fd, buf, 0x4000, 1), OK);
  uint64_t len = 0;
  check_rc("unmap_all", ioas_unmap(fd, ioas, 0, ~0ULL, &len), OK);
  check_u64("unmap_all", "length", len, 0x1000 + 0x4000 + 0x800 + 0x2000);
  check_rc("refs_after_unmap", check_refs(fd, buf, 0x10000, 0), OK);

  /* With a domain, MAP pins at once, so a bad source address fails the map. */
  iova = base;
  check_rc("map_unmapped_va", ioas_map(fd, ioas, unmapped_page(), 0x1000, &iova, 1), ERR(EFAULT));

  /* Attaching a domain needs every area aligned to its 2 KiB page. */
  uint32_t odd = 0;
  require("alloc_odd", ioas_alloc(fd, &odd) == 0);
  iova = MOCK_APERTURE_START;
  check_rc("map_odd_length", ioas_map(fd, odd, buf, 0x123, &iova, 1), OK);
  check_rc("mock_domain_misaligned_area", mock_domain(fd, odd, NULL, NULL, NULL), ERR(EADDRINUSE));

  check_rc("close", close(fd) ? -errno : 0, OK);
  int fd2 = open_iommufd();
  check_rc("refs_after_close", check_refs(fd2, buf, 0x10000, 0), OK);
  close(fd2);
  return abi_finish();
}
