/* dup/close lifetimes (docs/semantics.md#close): a dup shares the context; the context lives until its last
 * fd closes; an access fd keeps it alive too; after the final close everything is torn down, so a reopen
 * starts from an empty context whose ids begin at 1 again, and no page is left pinned. */
#include "abi.h"

int main(void) {
  uint8_t* buf = (uint8_t*)alloc_buffer(0x4000);
  int fd = open_iommufd();
  uint32_t a = 0, b = 0;
  check_rc("alloc_on_fd", ioas_alloc(fd, &a), OK);
  check_u64("alloc_on_fd", "out_ioas_id", a, 1);
  int fd2 = dup(fd);
  require("dup", fd2 >= 0);
  check_rc("alloc_on_dup", ioas_alloc(fd2, &b), OK);
  check_u64("alloc_on_dup", "out_ioas_id", b, 2);

  uint32_t stdev = 0;
  check_rc("mock_domain", mock_domain(fd2, a, &stdev, NULL, NULL), OK);
  uint64_t iova = MOCK_APERTURE_START;
  check_rc("map_pins", ioas_map(fd, a, buf, 0x4000, &iova, 1), OK);
  check_rc("refs_pinned", check_refs(fd, buf, 0x4000, 1), OK);

  check_rc("close_original", close(fd) ? -errno : 0, OK);
  check_rc("dup_still_sees_ioas", destroy_id(fd2, b), OK);
  check_rc("refs_still_pinned", check_refs(fd2, buf, 0x4000, 1), OK);

  int fd3 = fcntl(fd2, F_DUPFD_CLOEXEC, 100);
  require("fcntl_dupfd", fd3 >= 0);
  check_rc("close_second", close(fd2) ? -errno : 0, OK);
  check_rc("fcntl_dup_still_works", check_refs(fd3, buf, 0x4000, 1), OK);

  /* An access fd holds the context as well. */
  int acc = -1;
  check_rc("create_access", create_access(fd3, a, 0, &acc), OK);
  check_rc("close_last_iommufd", close(fd3) ? -errno : 0, OK);
  check_rc("close_access", close(acc) ? -errno : 0, OK);

  /* Everything is gone: fresh ids and no pins. */
  int fresh = open_iommufd();
  uint32_t c = 0;
  check_rc("reopen_alloc", ioas_alloc(fresh, &c), OK);
  check_u64("reopen_alloc", "out_ioas_id", c, 1);
  check_rc("reopen_refs", check_refs(fresh, buf, 0x4000, 0), OK);
  check_rc("reopen_old_id_unknown", destroy_id(fresh, 2), ERR(ENOENT));

  /* Two opens are two independent contexts. */
  int other = open_iommufd();
  uint32_t d = 0;
  check_rc("second_open_alloc", ioas_alloc(other, &d), OK);
  check_u64("second_open_alloc", "out_ioas_id", d, 1);
  check_rc("close_other", close(other) ? -errno : 0, OK);
  check_rc("first_open_unaffected", destroy_id(fresh, c), OK);
  check_rc("close_fresh", close(fresh) ? -errno : 0, OK);
  return abi_finish();
}
