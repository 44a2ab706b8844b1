/* IOMMU_OPTION: RLIMIT_MODE (global) and HUGE_PAGES (per IOAS) with the alignment rules of
 * docs/abi.md#huge-pages-option. */
#include "abi.h"

static int option(int fd, uint32_t id, uint16_t op, uint32_t obj, uint64_t* val) {
  struct iommu_option c = {.size = sizeof(c), .option_id = id, .op = op, .object_id = obj, .val64 = *val};
  int r = abi_ioctl(fd, IOMMU_OPTION, &c);
  *val = c.val64;
  return r;
}

/* Whether CAP_SYS_RESOURCE (24) is in the effective set; uid 0 alone is not enough in a container. */
static int has_cap_sys_resource(void) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long long eff = 0;
  if (!f) return 0;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "CapEff: %llx", &eff) == 1) break;
  fclose(f);
  return (int)((eff >> 24) & 1);
}

static uint64_t alignment_of(int fd, uint32_t ioas) {
  uint32_t num = 0;
  uint64_t align = 0;
  struct iommu_iova_range r[8];
  iova_ranges(fd, ioas, r, 8, &num, &align);
  return align;
}

int main(void) {
  int fd = open_iommufd();
  uint64_t v;

  /* RLIMIT_MODE: global, object_id must be 0. SET needs CAP_SYS_RESOURCE and an empty context. */
  v = 7;
  check_rc("rlimit_get", option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, &v), OK);
  check_u64("rlimit_get", "val64", v, 0);
  v = 0;
  check_rc("rlimit_get_object_id", option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 1, &v),
           ERR(EOPNOTSUPP));
  const int privileged = has_cap_sys_resource();
  printf("info privileged=%d\n", privileged);
  v = 1;
  if (privileged) {
    check_rc("rlimit_set_mm_empty_ctx", option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v), OK);
    v = 0;
    check_rc("rlimit_get_mm", option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, &v), OK);
    check_u64("rlimit_get_mm", "val64", v, 1);
    v = 2;
    check_rc("rlimit_set_bad_value", option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v),
             ERR(EINVAL));
    v = 0;
    check_rc("rlimit_set_user", option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v), OK);
  } else {
    check_rc("rlimit_set_unprivileged", option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v),
             ERR(EPERM));
  }

  uint32_t ioas = 0;
  require("alloc", ioas_alloc(fd, &ioas) == 0);
  v = 0;
  check_rc("rlimit_set_with_objects", option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v),
           privileged ? ERR(EBUSY) : ERR(EPERM));

  /* HUGE_PAGES. */
  v = 7;
  check_rc("huge_get_fresh", option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, &v), OK);
  check_u64("huge_get_fresh", "val64", v, 1);
  v = 0;
  check_rc("huge_set_0", option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v), OK);
  check_u64("huge_set_0", "iova_alignment", alignment_of(fd, ioas), PAGE_SZ);
  v = 7;
  check_rc("huge_get_0", option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, &v), OK);
  check_u64("huge_get_0", "val64", v, 0);

  uint8_t* buf = (uint8_t*)alloc_buffer(0x10000);
  uint64_t iova = 0x10000;
  check_rc("map_src_2k_into_page", ioas_map(fd, ioas, buf + 0x800, 0x1000, &iova, 1), ERR(EINVAL));
  iova = 0x10000;
  check_rc("map_length_not_page_multiple", ioas_map(fd, ioas, buf, 0x800, &iova, 1), ERR(EINVAL));
  iova = 0x10800;
  check_rc("map_iova_not_page_aligned", ioas_map(fd, ioas, buf, 0x1000, &iova, 1), ERR(EINVAL));
  iova = 0;
  check_rc("map_auto_src_2k_into_page", ioas_map(fd, ioas, buf + 0x800, 0x1000, &iova, 0), ERR(EINVAL));
  iova = 0x10000;
  check_rc("map_aligned", ioas_map(fd, ioas, buf, 0x2000, &iova, 1), OK);
  v = 0;
  check_rc("huge_set_0_again", option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v), OK);

  v = 1;
  check_rc("huge_set_1", option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v), OK);
  check_u64("huge_set_1", "iova_alignment", alignment_of(fd, ioas), 1);
  iova = 0x20000;
  check_rc("map_sub_page", ioas_map(fd, ioas, buf, 0x123, &iova, 1), OK);
  v = 0;
  check_rc("huge_set_0_misaligned_area", option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v),
           ERR(EADDRINUSE));
  v = 7;
  check_rc("huge_get_unchanged", option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, &v), OK);
  check_u64("huge_get_unchanged", "val64", v, 1);
  check_u64("huge_get_unchanged", "iova_alignment", alignment_of(fd, ioas), 1);

  v = 2;
  check_rc("huge_set_bad_value", option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v),
           ERR(EINVAL));
  v = 0;
  check_rc("huge_unknown_ioas", option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, 99, &v),
           ERR(ENOENT));

  /* A domain with an area: large pages can no longer be turned off. Without an area they can. */
  uint32_t with_dom = 0, empty_dom = 0;
  require("alloc2", ioas_alloc(fd, &with_dom) == 0 && ioas_alloc(fd, &empty_dom) == 0);
  check_rc("mock_domain_a", mock_domain(fd, with_dom, NULL, NULL, NULL), OK);
  iova = MOCK_APERTURE_START;
  check_rc("map_into_domain", ioas_map(fd, with_dom, buf, 0x2000, &iova, 1), OK);
  v = 0;
  check_rc("huge_set_0_domain_and_area",
           option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, with_dom, &v), ERR(EINVAL));
  check_rc("mock_domain_b", mock_domain(fd, empty_dom, NULL, NULL, NULL), OK);
  v = 0;
  check_rc("huge_set_0_domain_no_area",
           option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, empty_dom, &v), OK);
  check_u64("huge_set_0_domain_no_area", "iova_alignment", alignment_of(fd, empty_dom), PAGE_SZ);

  v = 0;
  check_rc("unknown_option", option(fd, 5, IOMMU_OPTION_OP_GET, 0, &v), ERR(EOPNOTSUPP));
  check_rc("unknown_op", option(fd, IOMMU_OPTION_HUGE_PAGES, 7, ioas, &v), ERR(EOPNOTSUPP));
  struct iommu_option r = {.size = sizeof(r),
                           .option_id = IOMMU_OPTION_HUGE_PAGES,
                           .op = IOMMU_OPTION_OP_GET,
                           .__reserved = 1,
                           .object_id = ioas};
  check_rc("reserved_nonzero", abi_ioctl(fd, IOMMU_OPTION, &r), ERR(EOPNOTSUPP));

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
