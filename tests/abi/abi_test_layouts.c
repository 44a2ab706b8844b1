/* The two IOMMU_TEST_CMD layouts (docs/abi.md#test-cmd-layouts): the newest 72-byte struct with the usual
 * size rules, and the v6.2 56-byte struct that uiommufd also accepts (told apart by size). With the v6.2
 * layout each MOCK_DOMAIN creates its own HWPT, which is how one IOAS gets two distinct mock domains.
 *
 * NOTE for diffs against a real kernel: a newest kernel rejects every size below 68 with EINVAL, so the
 * `v62_*` steps are uiommufd's documented compatibility (docs/abi.md#test-cmd-layouts) and are expected to
 * differ there. */
#include "abi.h"

static int v62(int fd, struct iommu_test_cmd_v62* c) { return abi_ioctl(fd, IOMMU_TEST_CMD, c); }

int main(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0;
  require("alloc", ioas_alloc(fd, &ioas) == 0);
  uint8_t* buf = (uint8_t*)alloc_buffer(0x10000);

  /* Newest layout: min 68, zero tail accepted, non-zero tail E2BIG. */
  struct {
    struct iommu_test_cmd c;
    uint8_t tail[8];
  } big;
  memset(&big, 0, sizeof(big));
  big.c.size = sizeof(big);
  big.c.op = IOMMU_TEST_OP_ADD_RESERVED;
  big.c.id = ioas;
  big.c.a.add_reserved.start = 0x1000;
  big.c.a.add_reserved.length = 0x1000;
  check_rc("newest_zero_tail", abi_ioctl(fd, IOMMU_TEST_CMD, &big), OK);
  big.tail[7] = 1;
  big.c.a.add_reserved.start = 0x3000;
  check_rc("newest_nonzero_tail", abi_ioctl(fd, IOMMU_TEST_CMD, &big), ERR(E2BIG));
  big.tail[7] = 0;
  big.c.size = 68;
  check_rc("newest_min_size", abi_ioctl(fd, IOMMU_TEST_CMD, &big), OK);
  big.c.size = 51;
  check_rc("size_below_every_min", abi_ioctl(fd, IOMMU_TEST_CMD, &big), ERR(EINVAL));
  big.c.size = sizeof(big.c);
  big.c.op = 0x7fff;
  check_rc("newest_unknown_op", abi_ioctl(fd, IOMMU_TEST_CMD, &big), ERR(EOPNOTSUPP));

  /* v6.2 layout. */
  struct iommu_test_cmd_v62 c;
  memset(&c, 0, sizeof(c));
  c.size = sizeof(c);
  c.op = IOMMU_TEST_OP_MOCK_DOMAIN;
  c.id = ioas;
  check_rc("v62_mock_domain_1", v62(fd, &c), OK);
  uint32_t dev1 = c.a.mock_domain.out_stdev_id, hwpt1 = c.a.mock_domain.out_hwpt_id;
  memset(&c, 0, sizeof(c));
  c.size = sizeof(c);
  c.op = IOMMU_TEST_OP_MOCK_DOMAIN;
  c.id = ioas;
  check_rc("v62_mock_domain_2", v62(fd, &c), OK);
  uint32_t dev2 = c.a.mock_domain.out_stdev_id, hwpt2 = c.a.mock_domain.out_hwpt_id;
  check_u64("v62_mock_domain_2", "distinct_hwpt", hwpt1 != hwpt2, 1);

  uint64_t iova = MOCK_APERTURE_START;
  check_rc("v62_map_two_domains", ioas_map(fd, ioas, buf, 0x4000, &iova, 1), OK);
  memset(&c, 0, sizeof(c));
  c.size = 52; /* the v6.2 minimum */
  c.op = IOMMU_TEST_OP_MD_CHECK_MAP;
  c.id = hwpt2;
  c.a.check_map.iova = MOCK_APERTURE_START;
  c.a.check_map.length = 0x4000;
  c.a.check_map.uptr = (uintptr_t)buf;
  check_rc("v62_check_map_domain_2", v62(fd, &c), OK);
  c.id = hwpt1;
  check_rc("v62_check_map_domain_1", v62(fd, &c), OK);
  check_rc("v62_refs_shared_by_two_domains", check_refs(fd, buf, 0x4000, 1), OK);

  memset(&c, 0, sizeof(c));
  c.size = sizeof(c);
  c.op = 10; /* MOCK_DOMAIN_REPLACE: not a v6.2 op */
  check_rc("v62_newer_op", v62(fd, &c), ERR(EOPNOTSUPP));
  struct {
    struct iommu_test_cmd_v62 c;
    uint32_t tail;
  } v62big;
  memset(&v62big, 0, sizeof(v62big));
  v62big.c.size = 60;
  v62big.c.op = IOMMU_TEST_OP_MD_CHECK_REFS;
  v62big.c.a.check_refs.uptr = (uintptr_t)buf;
  v62big.c.a.check_refs.length = 0x4000;
  v62big.c.a.check_refs.refs = 1;
  v62big.tail = 5;
  check_rc("v62_nonzero_tail", v62(fd, &v62big.c), ERR(E2BIG));
  v62big.tail = 0;
  check_rc("v62_zero_tail", v62(fd, &v62big.c), OK);

  /* v6.2 access ops through the old layout. */
  memset(&c, 0, sizeof(c));
  c.size = sizeof(c);
  c.op = IOMMU_TEST_OP_CREATE_ACCESS;
  c.id = ioas;
  /* Where the layout is refused (a newest kernel) there is no access fd: never close someone else's fd 0. */
  int acc = check_rc("v62_create_access", v62(fd, &c), OK) ? (int)c.a.create_access.out_access_fd : -1;
  uint8_t back[32];
  memset(&c, 0, sizeof(c));
  c.size = sizeof(c);
  c.op = IOMMU_TEST_OP_ACCESS_RW;
  c.id = (uint32_t)acc;
  c.a.access_rw.iova = MOCK_APERTURE_START + 5;
  c.a.access_rw.length = 20;
  c.a.access_rw.uptr = (uintptr_t)back;
  check_rc("v62_access_rw", v62(fd, &c), OK);
  check_u64("v62_access_rw", "equal", memcmp(back, buf + 5, 20) == 0, 1);
  check_rc("v62_close_access", close(acc) ? -errno : 0, OK);

  /* v6.2 object model: destroying the device removes the domain; the HWPT id is destroyed separately. */
  check_rc("v62_destroy_dev_1", destroy_id(fd, dev1), OK);
  check_rc("v62_destroy_hwpt_1", destroy_id(fd, hwpt1), OK);
  check_rc("v62_refs_one_domain_left", check_refs(fd, buf, 0x4000, 1), OK);
  check_rc("v62_destroy_dev_2", destroy_id(fd, dev2), OK);
  check_rc("v62_destroy_hwpt_2", destroy_id(fd, hwpt2), OK);
  check_rc("v62_refs_no_domain", check_refs(fd, buf, 0x4000, 0), OK);

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
