/* IOMMU_HWPT_ALLOC of paging HWPTs on an IOAS: the struct rules of the ioctl dispatcher, the checks of
 * hw_pagetable.c iommufd_hwpt_alloc() and iommufd_hwpt_paging_alloc() (their order decides which errno a
 * request with several faults gets), the mock driver's own rules (selftest.c
 * mock_domain_alloc_paging_flags(), mock_domain_alloc_pgtable(), mock_domain_nop_attach()), and the life of
 * the HWPT it returns: a user HWPT, filled from the IOAS's existing areas, attachable by id, never chosen
 * by the automatic domain selection, held busy by its devices and holding its IOAS busy. */
#include "abi.h"

/* A request buffer with room past the struct, for the size rules. */
union hwpt_req {
  struct iommu_hwpt_alloc c;
  uint8_t bytes[64];
};

static int hwpt_raw(int fd, union hwpt_req* r) { return abi_ioctl(fd, IOMMU_HWPT_ALLOC, r); }

static void req_init(union hwpt_req* r, uint32_t dev_id, uint32_t pt_id) {
  memset(r, 0, sizeof(*r));
  r->c.size = sizeof(r->c);
  r->c.dev_id = dev_id;
  r->c.pt_id = pt_id;
}

/* A paging HWPT with the mock's driver data: struct iommu_hwpt_selftest, `len` bytes of it. */
static int hwpt_alloc_selftest(int fd, uint32_t flags, uint32_t dev_id, uint32_t pt_id,
                               uint32_t pagetable_type, uint32_t len, uint32_t* out) {
  struct iommu_hwpt_selftest data[2];
  memset(data, 0, sizeof(data));
  data[0].iotlb = IOMMU_TEST_IOTLB_DEFAULT;
  data[0].pagetable_type = pagetable_type;
  return hwpt_alloc_full(fd, flags, dev_id, pt_id, IOMMU_HWPT_DATA_SELFTEST, data, len, 0, out);
}

/* IOVA_RANGES of `ioas`, every range and the alignment printed and checked. */
static void check_ranges(int fd, const char* step, uint32_t ioas, const struct iommu_iova_range* want,
                         uint32_t want_num, uint64_t want_align) {
  struct iommu_iova_range r[8];
  uint32_t num = 0;
  uint64_t align = 0;
  memset(r, 0, sizeof(r));
  check_rc(step, iova_ranges(fd, ioas, r, 8, &num, &align), OK);
  check_u64(step, "num_iovas", num, want_num);
  for (uint32_t i = 0; i < num && i < 8; i++) {
    char field[32];
    snprintf(field, sizeof(field), "range%u.start", i);
    check_u64(step, field, r[i].start, i < want_num ? want[i].start : 0);
    snprintf(field, sizeof(field), "range%u.last", i);
    check_u64(step, field, r[i].last, i < want_num ? want[i].last : 0);
  }
  check_u64(step, "out_iova_alignment", align, want_align);
}

int main(void) {
  int fd = open_iommufd();
  uint8_t* buf = (uint8_t*)alloc_buffer(0x10000);
  const uint64_t base = MOCK_APERTURE_START;
  union hwpt_req r;
  uint32_t out = 0, out2 = 0;

  /* Set-up: an IOAS with one area, a normal mock device and a NO_DIRTY one. The NO_DIRTY device joins the
   * normal device's automatic HWPT (it has no dirty tracking, so the mock accepts the attach). */
  uint32_t ioas = 0;
  require("setup_ioas", check_rc("setup_ioas", ioas_alloc(fd, &ioas), OK));
  check_u64("setup_ioas", "ioas_id", ioas, 1);
  uint64_t iova_a = base;
  require("setup_map_a", check_rc("setup_map_a", ioas_map(fd, ioas, buf, 0x4000, &iova_a, 1), OK));
  uint32_t stdev = 0, hwpt_auto = 0, idev = 0;
  require("setup_mock_domain",
          check_rc("setup_mock_domain", mock_domain(fd, ioas, &stdev, &hwpt_auto, &idev), OK));
  check_u64("setup_mock_domain", "out_stdev_id", stdev, 2);
  check_u64("setup_mock_domain", "out_idev_id", idev, 3);
  check_u64("setup_mock_domain", "out_hwpt_id", hwpt_auto, 4);
  uint32_t stdev_nd = 0, hwpt_nd = 0, idev_nd = 0;
  require(
      "setup_no_dirty_device",
      check_rc("setup_no_dirty_device",
               mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_NO_DIRTY, &stdev_nd, &hwpt_nd, &idev_nd), OK));
  check_u64("setup_no_dirty_device", "out_stdev_id", stdev_nd, 5);
  check_u64("setup_no_dirty_device", "out_idev_id", idev_nd, 6);
  check_u64("setup_no_dirty_device", "out_hwpt_id", hwpt_nd, hwpt_auto);

  /* ---- struct rules (main.c iommufd_fops_ioctl(): the minimum size is the end of __reserved, 24; a
   * longer struct must be zero past what the kernel knows) -------------------------------------------- */
  req_init(&r, idev, ioas);
  r.c.size = 23;
  check_rc("size_below_min", hwpt_raw(fd, &r), ERR(EINVAL));

  /* Exactly the minimum: out_hwpt_id (offset 16) is inside it and comes back. Object ids are the lowest
   * free ones, so the first HWPT here is 7 and a destroyed id is handed out again. */
  req_init(&r, idev, ioas);
  r.c.size = 24;
  check_rc("size_min", hwpt_raw(fd, &r), OK);
  check_u64("size_min", "out_hwpt_id", r.c.out_hwpt_id, 7);
  check_rc("size_min_destroy", destroy_id(fd, r.c.out_hwpt_id), OK);

  req_init(&r, idev, ioas);
  r.c.size = sizeof(r.bytes);
  check_rc("size_larger_zero_tail", hwpt_raw(fd, &r), OK);
  check_u64("size_larger_zero_tail", "out_hwpt_id", r.c.out_hwpt_id, 7);
  check_rc("size_larger_zero_tail_destroy", destroy_id(fd, r.c.out_hwpt_id), OK);

  req_init(&r, idev, ioas);
  r.c.size = sizeof(r.bytes);
  r.bytes[60] = 1;
  check_rc("size_larger_nonzero_tail", hwpt_raw(fd, &r), ERR(E2BIG));

  req_init(&r, idev, ioas);
  r.c.__reserved = 1;
  check_rc("reserved_nonzero", hwpt_raw(fd, &r), ERR(EOPNOTSUPP));

  /* data_type and data_len must agree: NONE carries no data, any other type carries some
   * (hw_pagetable.c iommufd_hwpt_alloc(), before any object is looked up). */
  struct iommu_hwpt_selftest sdata = {.iotlb = IOMMU_TEST_IOTLB_DEFAULT};
  check_rc("data_none_with_len",
           hwpt_alloc_full(fd, 0, idev, ioas, IOMMU_HWPT_DATA_NONE, &sdata, sizeof(sdata), 0, &out),
           ERR(EINVAL));
  check_rc("data_selftest_without_len",
           hwpt_alloc_full(fd, 0, idev, ioas, IOMMU_HWPT_DATA_SELFTEST, &sdata, 0, 0, &out), ERR(EINVAL));

  /* The order of the checks: __reserved, then data_type/data_len, then the device, then pt_id, then the
   * flags (those are iommufd_hwpt_paging_alloc()'s, reached only for an IOAS). */
  req_init(&r, 9999, ioas);
  r.c.__reserved = 1;
  r.c.data_len = 8;
  check_rc("order_reserved_first", hwpt_raw(fd, &r), ERR(EOPNOTSUPP));
  check_rc("order_data_before_device",
           hwpt_alloc_full(fd, 0, 9999, ioas, IOMMU_HWPT_DATA_NONE, &sdata, sizeof(sdata), 0, &out),
           ERR(EINVAL));
  check_rc("order_device_before_pt", hwpt_alloc(fd, 9999, 9999, 0, &out), ERR(ENOENT));
  check_rc("order_pt_before_flags", hwpt_alloc(fd, idev, 9999, 1u << 31, &out), ERR(EINVAL));
  check_rc("order_pt_device_before_flags", hwpt_alloc(fd, idev, idev, 1u << 31, &out), ERR(EINVAL));

  /* ---- the ids ------------------------------------------------------------------------------------- */
  /* dev_id must name a bound device (iommufd_get_device(): any other object is not found). */
  check_rc("dev_unknown", hwpt_alloc(fd, 9999, ioas, 0, &out), ERR(ENOENT));
  check_rc("dev_zero", hwpt_alloc(fd, 0, ioas, 0, &out), ERR(ENOENT));
  check_rc("dev_is_ioas", hwpt_alloc(fd, ioas, ioas, 0, &out), ERR(ENOENT));
  check_rc("dev_is_selftest_object", hwpt_alloc(fd, stdev, ioas, 0, &out), ERR(ENOENT));
  check_rc("dev_is_hwpt", hwpt_alloc(fd, hwpt_auto, ioas, 0, &out), ERR(ENOENT));
  /* pt_id: a failed lookup is reported as EINVAL, not ENOENT; so is an object that is neither an IOAS nor
   * a HWPT nor a vIOMMU. */
  check_rc("pt_unknown", hwpt_alloc(fd, idev, 9999, 0, &out), ERR(EINVAL));
  check_rc("pt_zero", hwpt_alloc(fd, idev, 0, 0, &out), ERR(EINVAL));
  check_rc("pt_is_device", hwpt_alloc(fd, idev, idev, 0, &out), ERR(EINVAL));
  check_rc("pt_is_selftest_object", hwpt_alloc(fd, idev, stdev, 0, &out), ERR(EINVAL));
  /* A paging HWPT as pt_id asks for a nested HWPT, which needs driver data
   * (hw_pagetable.c iommufd_hwpt_nested_alloc()). */
  check_rc("pt_is_paging_hwpt_no_data", hwpt_alloc(fd, idev, hwpt_auto, 0, &out), ERR(EOPNOTSUPP));

  /* ---- flags (iommufd_hwpt_paging_alloc()) --------------------------------------------------------- */
  check_rc("flag_unknown_bit4", hwpt_alloc(fd, idev, ioas, 1u << 4, &out), ERR(EOPNOTSUPP));
  check_rc("flag_unknown_bit31", hwpt_alloc(fd, idev, ioas, 1u << 31, &out), ERR(EOPNOTSUPP));
  check_rc("flag_nest_parent_with_fault_id",
           hwpt_alloc_full(fd, IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_FAULT_ID_VALID, idev, ioas,
                           IOMMU_HWPT_DATA_NONE, NULL, 0, 0, &out),
           ERR(EOPNOTSUPP));
  /* Dirty tracking needs the device's DIRTY_TRACKING capability (selftest.c mock_domain_capable()). */
  check_rc("flag_dirty_no_dirty_device", hwpt_alloc(fd, idev_nd, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &out),
           ERR(EOPNOTSUPP));
  uint32_t hwpt_dirty = 0;
  check_rc("flag_dirty", hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &hwpt_dirty), OK);
  check_u64("flag_dirty", "out_hwpt_id", hwpt_dirty, 7);
  check_rc("flag_dirty_check_map", check_map(fd, hwpt_dirty, base, buf, 0x4000), OK);
  check_rc("flag_nest_parent", hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &out), OK);
  check_u64("flag_nest_parent", "out_hwpt_id", out, 8);
  check_rc("flag_nest_parent_destroy", destroy_id(fd, out), OK);
  check_rc("flag_pasid", hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_PASID, &out), OK);
  check_u64("flag_pasid", "out_hwpt_id", out, 8);
  check_rc("flag_pasid_destroy", destroy_id(fd, out), OK);
  check_rc("flag_all_paging",
           hwpt_alloc(fd, idev, ioas,
                      IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID,
                      &out),
           OK);
  check_rc("flag_all_paging_destroy", destroy_id(fd, out), OK);
  /* NEST_PARENT and PASID are not dirty tracking: the NO_DIRTY device may ask for them. */
  check_rc("flag_nest_parent_no_dirty_device",
           hwpt_alloc(fd, idev_nd, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &out), OK);
  check_rc("flag_nest_parent_no_dirty_device_destroy", destroy_id(fd, out), OK);
  /* FAULT_ID_VALID: the fault object is looked up only after the HWPT was made; there is none here. */
  check_rc(
      "fault_id_unknown",
      hwpt_alloc_full(fd, IOMMU_HWPT_FAULT_ID_VALID, idev, ioas, IOMMU_HWPT_DATA_NONE, NULL, 0, 9999, &out),
      ERR(ENOENT));
  check_rc(
      "fault_id_is_ioas",
      hwpt_alloc_full(fd, IOMMU_HWPT_FAULT_ID_VALID, idev, ioas, IOMMU_HWPT_DATA_NONE, NULL, 0, ioas, &out),
      ERR(ENOENT));
  check_rc("fault_id_zero",
           hwpt_alloc_full(fd, IOMMU_HWPT_FAULT_ID_VALID, idev, ioas, IOMMU_HWPT_DATA_NONE, NULL, 0, 0, &out),
           ERR(ENOENT));
  /* Without the flag fault_id is not read. */
  check_rc("fault_id_ignored_without_flag",
           hwpt_alloc_full(fd, 0, idev, ioas, IOMMU_HWPT_DATA_NONE, NULL, 0, 9999, &out), OK);
  check_rc("fault_id_ignored_without_flag_destroy", destroy_id(fd, out), OK);
  /* The driver's refusal comes before the fault lookup. */
  check_rc("order_driver_before_fault_id",
           hwpt_alloc_selftest(fd, IOMMU_HWPT_FAULT_ID_VALID, idev, ioas, 2,
                               sizeof(struct iommu_hwpt_selftest), &out),
           ERR(EOPNOTSUPP));
  /* The flags are checked before the driver reads its data. */
  check_rc("order_flags_before_data",
           hwpt_alloc_selftest(fd, 1u << 4, idev, ioas, 2, sizeof(struct iommu_hwpt_selftest), &out),
           ERR(EOPNOTSUPP));

  /* ---- driver data (mock_domain_alloc_paging_flags(): iotlb is the oldest member, so 4 bytes is the
   * least it takes; more than it knows is refused, not checked for zeros) ------------------------------ */
  check_rc(
      "data_selftest_default",
      hwpt_alloc_selftest(fd, 0, idev, ioas, MOCK_IOMMUPT_DEFAULT, sizeof(struct iommu_hwpt_selftest), &out),
      OK);
  check_u64("data_selftest_default", "out_hwpt_id", out, 8);
  check_rc("data_selftest_default_check_map", check_map(fd, out, base, buf, 0x4000), OK);
  check_rc("data_selftest_default_destroy", destroy_id(fd, out), OK);
  /* Only iotlb passed: the pagetable_type of 2 that follows it in memory is not read. */
  check_rc("data_selftest_len4", hwpt_alloc_selftest(fd, 0, idev, ioas, 2, 4, &out), OK);
  check_rc("data_selftest_len4_destroy", destroy_id(fd, out), OK);
  check_rc("data_selftest_type2",
           hwpt_alloc_selftest(fd, 0, idev, ioas, 2, sizeof(struct iommu_hwpt_selftest), &out),
           ERR(EOPNOTSUPP));
  check_rc("data_selftest_len3", hwpt_alloc_selftest(fd, 0, idev, ioas, MOCK_IOMMUPT_DEFAULT, 3, &out),
           ERR(EINVAL));
  check_rc("data_selftest_len12", hwpt_alloc_selftest(fd, 0, idev, ioas, MOCK_IOMMUPT_DEFAULT, 12, &out),
           ERR(EINVAL));
  check_rc("data_selftest_unmapped",
           hwpt_alloc_full(fd, 0, idev, ioas, IOMMU_HWPT_DATA_SELFTEST, unmapped_page(),
                           sizeof(struct iommu_hwpt_selftest), 0, &out),
           ERR(EFAULT));
  check_rc("data_vtd_s1",
           hwpt_alloc_full(fd, 0, idev, ioas, IOMMU_HWPT_DATA_VTD_S1, &sdata, sizeof(sdata), 0, &out),
           ERR(EOPNOTSUPP));
  check_rc("data_type_unknown", hwpt_alloc_full(fd, 0, idev, ioas, 0x1234, &sdata, sizeof(sdata), 0, &out),
           ERR(EOPNOTSUPP));
  /* The dirty capability check (in the core) precedes the driver's look at its data. */
  check_rc(
      "order_dirty_before_data",
      hwpt_alloc_selftest(fd, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, idev_nd, ioas, MOCK_IOMMUPT_DEFAULT, 3, &out),
      ERR(EOPNOTSUPP));

  /* ---- the IOVA space a paging HWPT leaves its IOAS ------------------------------------------------ */
  /* A default mock page table narrows the IOAS to the mock aperture with 2 KiB alignment. */
  uint32_t ioas_d = 0, hwpt_d = 0;
  require("ranges_default_ioas", check_rc("ranges_default_ioas", ioas_alloc(fd, &ioas_d), OK));
  check_rc("ranges_default_alloc", hwpt_alloc(fd, idev, ioas_d, 0, &hwpt_d), OK);
  const struct iommu_iova_range mock_range[] = {{MOCK_APERTURE_START, MOCK_APERTURE_LAST}};
  check_ranges(fd, "ranges_default", ioas_d, mock_range, 1, MOCK_PAGE_SZ);
  check_rc("ranges_default_destroy", destroy_id(fd, hwpt_d), OK);
  const struct iommu_iova_range all_range[] = {{0, UINT64_MAX}};
  check_ranges(fd, "ranges_default_gone", ioas_d, all_range, 1, 1);

  /* MOCK_IOMMUPT_HUGE keeps the page table's own aperture instead of the mock one: a 2 KiB-page table that
   * starts at level 2 (mock_domain_alloc_pgtable()) translates 11 + 3 * 9 = 38 bits of IOVA. It offers 4 KiB
   * and 1 MiB pages, so the IOAS's alignment becomes 4 KiB. */
  uint32_t ioas_h = 0, hwpt_h = 0;
  require("huge_ioas", check_rc("huge_ioas", ioas_alloc(fd, &ioas_h), OK));
  check_rc("huge_alloc",
           hwpt_alloc_selftest(fd, 0, idev, ioas_h, MOCK_IOMMUPT_HUGE, sizeof(struct iommu_hwpt_selftest),
                               &hwpt_h),
           OK);
  const struct iommu_iova_range huge_range[] = {{0, (1ULL << 38) - 1}};
  check_ranges(fd, "huge_ranges", ioas_h, huge_range, 1, PAGE_SZ);
  uint64_t iova_h = base;
  check_rc("huge_map_2k", ioas_map(fd, ioas_h, buf, MOCK_PAGE_SZ, &iova_h, 1), ERR(EINVAL));
  iova_h = base;
  check_rc("huge_map_4k", ioas_map(fd, ioas_h, buf, 0x4000, &iova_h, 1), OK);
  check_rc("huge_check_map", check_map(fd, hwpt_h, base, buf, 0x4000), OK);
  check_rc("huge_unmap", ioas_unmap(fd, ioas_h, base, 0x4000, NULL), OK);
  check_rc("huge_destroy", destroy_id(fd, hwpt_h), OK);
  check_ranges(fd, "huge_gone_ranges", ioas_h, all_range, 1, 1);
  check_rc("huge_destroy_ioas", destroy_id(fd, ioas_h), OK);

  /* A page table joins its IOAS only if every existing area fits it (io_pagetable.c iopt_table_add_domain()):
   * alignment and aperture; otherwise EADDRINUSE. A fresh IOAS has alignment 1, so a 2 KiB area is allowed.
   */
  uint8_t* xbuf = buf + 0xc000; /* used by nothing else */
  uint32_t ioas_x = 0;
  require("fit_ioas", check_rc("fit_ioas", ioas_alloc(fd, &ioas_x), OK));
  uint64_t iova_x = base;
  check_rc("fit_map_2k", ioas_map(fd, ioas_x, xbuf, MOCK_PAGE_SZ, &iova_x, 1), OK);
  check_rc(
      "fit_huge_on_2k_area",
      hwpt_alloc_selftest(fd, 0, idev, ioas_x, MOCK_IOMMUPT_HUGE, sizeof(struct iommu_hwpt_selftest), &out),
      ERR(EADDRINUSE));
  check_rc("fit_default_on_2k_area", hwpt_alloc(fd, idev, ioas_x, 0, &out), OK);
  check_rc("fit_default_on_2k_area_destroy", destroy_id(fd, out), OK);
  check_rc("fit_unmap_2k", ioas_unmap(fd, ioas_x, base, MOCK_PAGE_SZ, NULL), OK);
  iova_x = 0x1000;
  check_rc("fit_map_low", ioas_map(fd, ioas_x, xbuf, PAGE_SZ, &iova_x, 1), OK);
  check_rc("fit_default_below_aperture", hwpt_alloc(fd, idev, ioas_x, 0, &out), ERR(EADDRINUSE));
  check_rc(
      "fit_huge_low",
      hwpt_alloc_selftest(fd, 0, idev, ioas_x, MOCK_IOMMUPT_HUGE, sizeof(struct iommu_hwpt_selftest), &out),
      OK);
  check_rc("fit_huge_low_check_map", check_map(fd, out, 0x1000, xbuf, PAGE_SZ), OK);
  check_rc("fit_huge_low_refs", check_refs(fd, xbuf, PAGE_SZ, 1), OK);
  check_rc("fit_huge_low_destroy", destroy_id(fd, out), OK);
  check_rc("fit_unmap_low", ioas_unmap(fd, ioas_x, 0x1000, PAGE_SZ, NULL), OK);
  iova_x = 1ULL << 38;
  check_rc("fit_map_high", ioas_map(fd, ioas_x, xbuf, PAGE_SZ, &iova_x, 1), OK);
  check_rc(
      "fit_huge_above_aperture",
      hwpt_alloc_selftest(fd, 0, idev, ioas_x, MOCK_IOMMUPT_HUGE, sizeof(struct iommu_hwpt_selftest), &out),
      ERR(EADDRINUSE));
  /* The refused page table left no pin behind (the IOAS has no domain now). */
  check_rc("fit_unpinned", check_refs(fd, xbuf, PAGE_SZ, 0), OK);
  check_rc("fit_destroy_ioas", destroy_id(fd, ioas_x), OK);

  /* ---- the allocated HWPT ------------------------------------------------------------------------- */
  uint32_t hwpt_u = 0;
  check_rc("user_alloc", hwpt_alloc(fd, idev, ioas, 0, &hwpt_u), OK);
  check_u64("user_alloc", "fresh", hwpt_u != hwpt_auto && hwpt_u != hwpt_dirty && hwpt_u != ioas_d, 1);
  /* Filled from the areas the IOAS already had... */
  check_rc("user_filled_from_existing", check_map(fd, hwpt_u, base, buf, 0x4000), OK);
  /* ...and given the ones mapped later. */
  uint64_t iova_b = base + 0x10000;
  check_rc("user_map_b", ioas_map(fd, ioas, buf + 0x4000, 0x4000, &iova_b, 1), OK);
  check_rc("user_map_b_check_map", check_map(fd, hwpt_u, iova_b, buf + 0x4000, 0x4000), OK);
  check_rc("user_map_b_check_map_auto", check_map(fd, hwpt_auto, iova_b, buf + 0x4000, 0x4000), OK);
  /* One pin however many domains hold the area. */
  check_rc("user_refs", check_refs(fd, buf, 0x8000, 1), OK);

  /* A new device attached by the HWPT's id uses it. */
  uint32_t stdev3 = 0, hwpt3 = 0;
  check_rc("user_attach_new_device", mock_domain(fd, hwpt_u, &stdev3, &hwpt3, NULL), OK);
  check_u64("user_attach_new_device", "out_hwpt_id", hwpt3, hwpt_u);
  /* An existing device moved onto it. */
  check_rc("user_replace", mock_domain_replace(fd, stdev, hwpt_u, &out), OK);
  check_u64("user_replace", "pt_id", out, hwpt_u);
  check_rc("user_replace_check_map", check_map(fd, hwpt_u, base, buf, 0x4000), OK);
  /* The automatic HWPT still has the NO_DIRTY device. */
  check_rc("user_replace_auto_kept", check_map(fd, hwpt_auto, base, buf, 0x4000), OK);
  check_rc("user_destroy_busy", destroy_id(fd, hwpt_u), ERR(EBUSY));
  check_rc("user_ioas_busy", destroy_id(fd, ioas), ERR(EBUSY));
  /* Back to the IOAS: the automatic selection finds the automatic HWPT, not the user one. */
  check_rc("user_replace_back", mock_domain_replace(fd, stdev, ioas, &out), OK);
  check_u64("user_replace_back", "pt_id", out, hwpt_auto);
  check_rc("user_destroy_still_busy", destroy_id(fd, hwpt_u), ERR(EBUSY));
  check_rc("user_destroy_device3", destroy_id(fd, stdev3), OK);
  check_rc("user_destroy", destroy_id(fd, hwpt_u), OK);
  check_rc("user_gone", check_map(fd, hwpt_u, base, buf, 0x4000), ERR(ENOENT));
  check_rc("user_gone_destroy_again", destroy_id(fd, hwpt_u), ERR(ENOENT));
  check_rc("user_gone_refs", check_refs(fd, buf, 0x8000, 1), OK);

  /* Dirty tracking: the mock refuses to attach a NO_DIRTY device to a dirty-tracking domain, whoever it
   * was allocated for; a normal device may use it. */
  check_rc("dirty_replace_no_dirty_device", mock_domain_replace(fd, stdev_nd, hwpt_dirty, &out), ERR(EINVAL));
  check_rc("dirty_replace_no_dirty_device_kept", mock_domain_replace(fd, stdev_nd, ioas, &out), OK);
  check_u64("dirty_replace_no_dirty_device_kept", "pt_id", out, hwpt_auto);
  check_rc("dirty_new_no_dirty_device",
           mock_domain_flags(fd, hwpt_dirty, MOCK_FLAGS_DEVICE_NO_DIRTY, NULL, NULL, NULL), ERR(EINVAL));
  check_rc("dirty_replace_normal_device", mock_domain_replace(fd, stdev, hwpt_dirty, &out), OK);
  check_u64("dirty_replace_normal_device", "pt_id", out, hwpt_dirty);
  check_rc("dirty_replace_back", mock_domain_replace(fd, stdev, ioas, &out), OK);
  check_u64("dirty_replace_back", "pt_id", out, hwpt_auto);
  check_rc("dirty_destroy", destroy_id(fd, hwpt_dirty), OK);

  /* The automatic selection ignores user HWPTs: on an IOAS whose only HWPT is a user one, a new device
   * gets a new automatic HWPT. */
  uint32_t ioas2 = 0, hwpt_u2 = 0, stdev4 = 0, hwpt4 = 0;
  require("auto_ioas", check_rc("auto_ioas", ioas_alloc(fd, &ioas2), OK));
  uint64_t iova2 = base;
  check_rc("auto_map", ioas_map(fd, ioas2, buf + 0x8000, 0x4000, &iova2, 1), OK);
  check_rc("auto_user_alloc", hwpt_alloc(fd, idev, ioas2, 0, &hwpt_u2), OK);
  check_rc("auto_user_refs", check_refs(fd, buf + 0x8000, 0x4000, 1), OK);
  check_rc("auto_mock_domain", mock_domain(fd, ioas2, &stdev4, &hwpt4, NULL), OK);
  check_u64("auto_mock_domain", "not_user_hwpt", hwpt4 != hwpt_u2, 1);
  check_rc("auto_check_map_auto", check_map(fd, hwpt4, base, buf + 0x8000, 0x4000), OK);
  check_rc("auto_check_map_user", check_map(fd, hwpt_u2, base, buf + 0x8000, 0x4000), OK);
  /* The user HWPT alone holds its IOAS. */
  check_rc("auto_destroy_device", destroy_id(fd, stdev4), OK);
  check_rc("auto_auto_hwpt_gone", check_map(fd, hwpt4, base, buf + 0x8000, 0x4000), ERR(ENOENT));
  check_rc("auto_user_kept", check_map(fd, hwpt_u2, base, buf + 0x8000, 0x4000), OK);
  check_rc("auto_ioas_busy", destroy_id(fd, ioas2), ERR(EBUSY));
  check_rc("auto_user_destroy", destroy_id(fd, hwpt_u2), OK);
  check_rc("auto_unpinned", check_refs(fd, buf + 0x8000, 0x4000, 0), OK);
  check_rc("auto_ioas_free", destroy_id(fd, ioas2), OK);

  /* ---- a failed allocation leaves nothing behind ---------------------------------------------------- */
  /* The id a new object gets now: take it and give it back. */
  uint32_t probe = 0, next = 0;
  require("fail_probe", check_rc("fail_probe", ioas_alloc(fd, &probe), OK));
  check_rc("fail_probe_destroy", destroy_id(fd, probe), OK);
  /* This one gets as far as a filled HWPT on the IOAS (the fault lookup is last), then is undone. */
  check_rc(
      "fail_after_fill",
      hwpt_alloc_full(fd, IOMMU_HWPT_FAULT_ID_VALID, idev, ioas, IOMMU_HWPT_DATA_NONE, NULL, 0, 9999, &out),
      ERR(ENOENT));
  check_rc("fail_after_fill_refs", check_refs(fd, buf, 0x8000, 1), OK);
  /* Nothing is written back on failure: the id is set in the reply only once the fault lookup passed. */
  req_init(&r, idev, ioas);
  r.c.flags = IOMMU_HWPT_FAULT_ID_VALID;
  r.c.fault_id = 9999;
  r.c.out_hwpt_id = 0xdeadbeef;
  check_rc("fail_out_untouched", hwpt_raw(fd, &r), ERR(ENOENT));
  check_u64("fail_out_untouched", "out_hwpt_id", r.c.out_hwpt_id, 0xdeadbeef);
  check_rc("fail_driver", hwpt_alloc_selftest(fd, 0, idev, ioas, 2, sizeof(struct iommu_hwpt_selftest), &out),
           ERR(EOPNOTSUPP));
  check_rc("fail_data_fault",
           hwpt_alloc_full(fd, 0, idev, ioas, IOMMU_HWPT_DATA_SELFTEST, unmapped_page(),
                           sizeof(struct iommu_hwpt_selftest), 0, &out),
           ERR(EFAULT));
  check_rc("fail_next_id", ioas_alloc(fd, &next), OK);
  check_u64("fail_next_id", "id", next, probe);
  check_u64("fail_next_id", "id_value", next, 7);
  check_rc("fail_next_id_destroy", destroy_id(fd, next), OK);
  /* And the next HWPT takes that same id. */
  check_rc("fail_next_hwpt", hwpt_alloc(fd, idev, ioas, 0, &out2), OK);
  check_u64("fail_next_hwpt", "out_hwpt_id", out2, probe);
  check_rc("fail_next_hwpt_destroy", destroy_id(fd, out2), OK);

  /* ---- tear-down: the pins go with the last domain ------------------------------------------------- */
  check_rc("teardown_destroy_device", destroy_id(fd, stdev), OK);
  check_rc("teardown_refs_one_device_left", check_refs(fd, buf, 0x8000, 1), OK);
  check_rc("teardown_destroy_no_dirty_device", destroy_id(fd, stdev_nd), OK);
  check_rc("teardown_auto_gone", check_map(fd, hwpt_auto, base, buf, 0x4000), ERR(ENOENT));
  check_rc("teardown_unpinned", check_refs(fd, buf, 0x10000, 0), OK);
  check_rc("teardown_destroy_ioas", destroy_id(fd, ioas), OK);
  check_rc("teardown_destroy_ioas_d", destroy_id(fd, ioas_d), OK);

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
