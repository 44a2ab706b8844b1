/* Accesses through the test interface: CREATE_ACCESS fd, ACCESS_PAGES / DESTROY_ACCESS_PAGES, ACCESS_RW
 * (aligned, unaligned, SLOW_PATH), unpinning on unmap notification, pins shared with domains
 * (docs/semantics.md#access, #selftest). Access fds are never printed. */
#include "abi.h"

int main(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0;
  require("alloc", ioas_alloc(fd, &ioas) == 0);
  uint8_t* buf = (uint8_t*)alloc_buffer(0x10000);
  for (unsigned i = 0; i < 0x10000; i++) buf[i] = (uint8_t)(i ^ (i >> 8));
  uint64_t iova = 0x100000;
  require("map", check_rc("map", ioas_map(fd, ioas, buf, 0x8000, &iova, 1), OK));

  int acc = -1;
  require(
      "create_access",
      check_rc("create_access", create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &acc), OK));
  check_rc("create_access_unknown_ioas", create_access(fd, 99, 0, &(int){0}), ERR(ENOENT));
  check_rc("create_access_bad_flags", create_access(fd, ioas, 1 << 4, &(int){0}), ERR(EOPNOTSUPP));

  /* Pinning. */
  uint32_t p1 = 0, p2 = 0;
  check_rc("pin", access_pages(fd, acc, 0, 0x100000, 0x2000, buf, &p1), OK);
  check_rc("pin_refs", check_refs(fd, buf, 0x2000, 1), OK);
  check_rc("pin_refs_rest_unpinned", check_refs(fd, buf + 0x2000, 0x6000, 0), OK);
  check_rc("pin_write", access_pages(fd, acc, MOCK_FLAGS_ACCESS_WRITE, 0x103000, 0x1000, buf + 0x3000, &p2),
           OK);
  check_rc("pin_page_mismatch", access_pages(fd, acc, 0, 0x104000, 0x1000, buf, NULL), ERR(EBADE));
  check_rc("pin_mismatch_left_nothing", check_refs(fd, buf + 0x4000, 0x1000, 0), OK);
  check_rc("pin_unaligned_iova", access_pages(fd, acc, 0, 0x100800, 0x1000, NULL, NULL), ERR(EINVAL));
  check_rc("pin_zero_length", access_pages(fd, acc, 0, 0x100000, 0, NULL, NULL), ERR(EINVAL));
  check_rc("pin_past_mapping", access_pages(fd, acc, 0, 0x107000, 0x2000, NULL, NULL), ERR(ENOENT));
  check_rc("pin_over_16m", access_pages(fd, acc, 0, 0x100000, (16UL << 20) + 0x1000, NULL, NULL),
           ERR(ENOMEM));
  check_rc("pin_bad_flags", access_pages(fd, acc, 1 << 3, 0x100000, 0x1000, NULL, NULL), ERR(EOPNOTSUPP));
  check_rc("pin_not_an_access_fd", access_pages(fd, fd, 0, 0x100000, 0x1000, NULL, NULL), ERR(EBADFD));

  check_rc("unpin", destroy_access_pages(fd, acc, p1), OK);
  check_rc("unpin_again", destroy_access_pages(fd, acc, p1), ERR(ENOENT));
  check_rc("unpin_refs", check_refs(fd, buf, 0x2000, 0), OK);

  int nopin = -1;
  check_rc("create_access_no_pin", create_access(fd, ioas, 0, &nopin), OK);
  check_rc("pin_without_needs_pin", access_pages(fd, nopin, 0, 0x100000, 0x1000, NULL, NULL),
           ERR(EOPNOTSUPP));

  /* Read/write by IOVA: any alignment, any length, across pages, fast and slow path. */
  uint8_t data[64], back[64];
  for (unsigned i = 0; i < sizeof(data); i++) data[i] = (uint8_t)(0xa0 + i);
  check_rc("rw_write_unaligned", access_rw(fd, nopin, MOCK_ACCESS_RW_WRITE, 0x100003, data, 17), OK);
  check_u64("rw_write_unaligned", "memory_equal", memcmp(buf + 3, data, 17) == 0, 1);
  memset(back, 0, sizeof(back));
  check_rc("rw_read_unaligned", access_rw(fd, nopin, 0, 0x100003, back, 17), OK);
  check_u64("rw_read_unaligned", "equal", memcmp(back, data, 17) == 0, 1);
  check_rc("rw_write_slow_cross_page",
           access_rw(fd, acc, MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH, 0x100ff0, data, 40), OK);
  check_u64("rw_write_slow_cross_page", "memory_equal", memcmp(buf + 0xff0, data, 40) == 0, 1);
  memset(back, 0, sizeof(back));
  check_rc("rw_read_slow_cross_page", access_rw(fd, acc, MOCK_ACCESS_RW_SLOW_PATH, 0x100ff0, back, 40), OK);
  check_u64("rw_read_slow_cross_page", "equal", memcmp(back, data, 40) == 0, 1);
  memset(back, 0, sizeof(back));
  check_rc("rw_read_aligned", access_rw(fd, acc, 0, 0x102000, back, 64), OK);
  check_u64("rw_read_aligned", "equal", memcmp(back, buf + 0x2000, 64) == 0, 1);
  check_rc("rw_unmapped", access_rw(fd, acc, 0, 0x200000, back, 8), ERR(ENOENT));
  check_rc("rw_past_end", access_rw(fd, acc, 0, 0x107ffc, back, 8), ERR(ENOENT));
  check_rc("rw_zero_length", access_rw(fd, acc, 0, 0x100000, back, 0), ERR(EINVAL));
  check_rc("rw_over_16m", access_rw(fd, acc, 0, 0x100000, back, (16UL << 20) + 1), ERR(ENOMEM));
  check_rc("rw_bad_flags", access_rw(fd, acc, 1 << 3, 0x100000, back, 8), ERR(EOPNOTSUPP));
  check_rc("rw_bad_user_buffer", access_rw(fd, acc, 0, 0x100000, unmapped_page(), 8), ERR(EFAULT));

  /* Unmap notifies the access, whose mock driver unpins the whole item; then the unmap completes. */
  uint32_t p3 = 0;
  check_rc("pin_before_unmap", access_pages(fd, acc, 0, 0x101000, 0x1000, buf + 0x1000, &p3), OK);
  uint64_t len = 0;
  check_rc("unmap_with_pins", ioas_unmap(fd, ioas, 0x100000, 0x8000, &len), OK);
  check_u64("unmap_with_pins", "length", len, 0x8000);
  check_rc("notified_item_gone", destroy_access_pages(fd, acc, p3), ERR(ENOENT));
  check_rc("notified_item_p2_gone", destroy_access_pages(fd, acc, p2), ERR(ENOENT));
  check_rc("unmap_refs", check_refs(fd, buf, 0x8000, 0), OK);

  /* Pins shared with a domain: a page pinned by both counts once, and stays pinned until both let go. */
  uint32_t stdev = 0, hwpt = 0;
  check_rc("mock_domain", mock_domain(fd, ioas, &stdev, &hwpt, NULL), OK);
  iova = MOCK_APERTURE_START;
  check_rc("map_into_domain", ioas_map(fd, ioas, buf, 0x4000, &iova, 1), OK);
  uint32_t p4 = 0;
  check_rc("pin_domain_backed", access_pages(fd, acc, 0, MOCK_APERTURE_START, 0x2000, buf, &p4), OK);
  check_rc("shared_refs", check_refs(fd, buf, 0x2000, 1), OK);
  check_rc("destroy_domain", destroy_id(fd, stdev), OK);
  check_rc("refs_held_by_access", check_refs(fd, buf, 0x2000, 1), OK);
  check_rc("refs_released_by_domain", check_refs(fd, buf + 0x2000, 0x2000, 0), OK);
  check_rc("unpin_last", destroy_access_pages(fd, acc, p4), OK);
  check_rc("refs_none", check_refs(fd, buf, 0x4000, 0), OK);

  /* Closing an access fd with pins unpins them (the mock's full-range unmap), and closes cleanly. */
  check_rc("pin_before_close", access_pages(fd, acc, 0, MOCK_APERTURE_START, 0x1000, buf, NULL), OK);
  check_rc("close_access", close(acc) ? -errno : 0, OK);
  check_rc("refs_after_access_close", check_refs(fd, buf, 0x4000, 0), OK);
  check_rc("closed_access_fd", access_rw(fd, acc, 0, MOCK_APERTURE_START, back, 8), ERR(EBADFD));
  check_rc("close_access_no_pin", close(nopin) ? -errno : 0, OK);

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
