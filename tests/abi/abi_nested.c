/* Nested HWPTs on a NEST_PARENT paging HWPT, IOMMU_HWPT_INVALIDATE of the mock's stage-1 IOTLB, and the
 * mock's test hooks around them (MD_CHECK_IOTLB, DEV_CHECK_CACHE).
 *
 * Kernel side: drivers/iommu/iommufd/hw_pagetable.c iommufd_hwpt_alloc(), iommufd_hwpt_nested_alloc(),
 * iommufd_hwpt_invalidate(); drivers/iommu/iommufd/selftest.c __mock_domain_alloc_nested(),
 * mock_domain_alloc_nested(), mock_domain_cache_invalidate_user(), iommufd_test_md_check_iotlb(),
 * iommufd_test_dev_check_cache(); include/linux/iommu.h __iommu_copy_struct_from_user() and
 * __iommu_copy_struct_from_user_array(), which (unlike the ioctl structs) refuse a driver struct longer than
 * the kernel's, even with a zero tail. */
#include "abi.h"

static char step_name[128];
static const char* nm(const char* prefix, int i) {
  snprintf(step_name, sizeof(step_name), "%s_%d", prefix, i);
  return step_name;
}

/* All four IOTLB entries of nested HWPT `hwpt` hold `want`: one step line per entry. */
static void check_iotlb_all(int fd, const char* prefix, uint32_t hwpt, uint32_t want) {
  for (int i = 0; i < MOCK_NESTED_DOMAIN_IOTLB_NUM; i++)
    check_rc(nm(prefix, i), check_iotlb(fd, hwpt, i, want), OK);
}

/* IOMMU_HWPT_INVALIDATE with the whole struct given and a `size` of the caller's choice; the struct may be
 * followed by a tail (buf is at least `size` bytes). Returns the result; *num gets entry_num as left in the
 * caller's struct, whether or not the kernel wrote it back. */
static int invalidate_raw(int fd, void* buf, uint32_t size, uint32_t* num) {
  struct iommu_hwpt_invalidate* c = (struct iommu_hwpt_invalidate*)buf;
  c->size = size;
  int r = abi_ioctl(fd, IOMMU_HWPT_INVALIDATE, c);
  *num = c->entry_num;
  return r;
}

/* One invalidation with `num` entries of `reqs`; prints the result and the entry_num written back. */
static void inv_step(int fd, const char* step, uint32_t hwpt, const void* reqs, uint32_t type,
                     uint32_t entry_len, uint32_t num, int want, uint32_t want_num) {
  check_rc(step, hwpt_invalidate(fd, hwpt, reqs, type, entry_len, &num), want);
  check_u64(step, "entry_num", num, want_num);
}

int main(void) {
  int fd = open_iommufd();
  uint8_t* buf = (uint8_t*)alloc_buffer(0x4000);
  const uint64_t base = MOCK_APERTURE_START;
  uint64_t iova = base;

  uint32_t ioas = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  require("map", check_rc("map", ioas_map(fd, ioas, buf, 0x4000, &iova, 1), OK));
  uint32_t stdev = 0, auto_hwpt = 0, idev = 0;
  require("mock_domain", check_rc("mock_domain", mock_domain(fd, ioas, &stdev, &auto_hwpt, &idev), OK));
  check_u64("mock_domain", "out_hwpt_id", auto_hwpt, 4);

  /* Two paging HWPTs on the IOAS: one may be a parent, one may not. */
  uint32_t parent = 0, plain = 0, id = 0;
  require("alloc_parent",
          check_rc("alloc_parent", hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent), OK));
  check_u64("alloc_parent", "out_hwpt_id", parent, 5);
  require("alloc_plain", check_rc("alloc_plain", hwpt_alloc(fd, idev, ioas, 0, &plain), OK));
  check_u64("alloc_plain", "out_hwpt_id", plain, 6);
  check_rc("parent_check_map", check_map(fd, parent, base, buf, 0x4000), OK);

  /* ---- allocation refusals ------------------------------------------------------------------------- */
  struct iommu_hwpt_selftest data = {.iotlb = IOMMU_TEST_IOTLB_DEFAULT};
  struct {
    struct iommu_hwpt_selftest s;
    uint64_t tail;
  } data_long = {.s = {.iotlb = IOMMU_TEST_IOTLB_DEFAULT}, .tail = 0};
  const uint32_t DS = IOMMU_HWPT_DATA_SELFTEST;

  /* The parent must be a NEST_PARENT paging HWPT that the user allocated (iommufd_hwpt_nested_alloc()). */
  check_rc("nested_on_plain", hwpt_alloc_nested(fd, idev, plain, 0, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(EINVAL));
  check_rc("nested_on_auto_hwpt", hwpt_alloc_nested(fd, idev, auto_hwpt, 0, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(EINVAL));
  /* The pt_id lookup: anything that is not an IOAS or an HWPT_PAGING is EINVAL, an unknown id too. */
  check_rc("nested_on_unknown_pt", hwpt_alloc_nested(fd, idev, 9999, 0, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(EINVAL));
  check_rc("nested_on_device_pt", hwpt_alloc_nested(fd, idev, idev, 0, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(EINVAL));
  check_rc("nested_on_stdev_pt", hwpt_alloc_nested(fd, idev, stdev, 0, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(EINVAL));
  /* dev_id must name a bound device; it is looked up before pt_id. */
  check_rc("nested_unknown_dev", hwpt_alloc_nested(fd, 9999, parent, 0, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(ENOENT));
  check_rc("nested_dev_is_stdev", hwpt_alloc_nested(fd, stdev, parent, 0, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(ENOENT));
  check_rc("nested_unknown_dev_and_pt", hwpt_alloc_nested(fd, 9999, 9999, 0, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(ENOENT));

  /* data_type and data_len must agree: NONE with data, or a type without data, is refused before any
   * lookup (an unknown dev_id does not change the answer). */
  check_rc("nested_type_none_with_data",
           hwpt_alloc_full(fd, 0, idev, parent, IOMMU_HWPT_DATA_NONE, &data, sizeof(data), 0, &id),
           ERR(EINVAL));
  check_rc("nested_type_none_with_data_unknown_dev",
           hwpt_alloc_full(fd, 0, 9999, parent, IOMMU_HWPT_DATA_NONE, &data, sizeof(data), 0, &id),
           ERR(EINVAL));
  check_rc("nested_type_without_data", hwpt_alloc_full(fd, 0, idev, parent, DS, &data, 0, 0, &id),
           ERR(EINVAL));
  /* NONE without data on a paging HWPT: a nested HWPT needs driver data, refused as unsupported. */
  check_rc("nested_type_none_no_data",
           hwpt_alloc_full(fd, 0, idev, parent, IOMMU_HWPT_DATA_NONE, NULL, 0, 0, &id), ERR(EOPNOTSUPP));
  /* A type the mock does not know (the driver's check, mock_domain_alloc_nested()). */
  check_rc("nested_type_unknown", hwpt_alloc_full(fd, 0, idev, parent, DS + 1, &data, sizeof(data), 0, &id),
           ERR(EOPNOTSUPP));
  /* The parent is checked before the driver sees the type. */
  check_rc("nested_type_unknown_on_plain",
           hwpt_alloc_full(fd, 0, idev, plain, DS + 1, &data, sizeof(data), 0, &id), ERR(EINVAL));

  /* data_len: at least up to iotlb (4), at most the kernel's struct (8), even with a zero tail. */
  check_rc("nested_len_3", hwpt_alloc_full(fd, 0, idev, parent, DS, &data, 3, 0, &id), ERR(EINVAL));
  check_rc("nested_len_9", hwpt_alloc_full(fd, 0, idev, parent, DS, &data_long, 9, 0, &id), ERR(EINVAL));
  check_rc("nested_len_16_zero_tail", hwpt_alloc_full(fd, 0, idev, parent, DS, &data_long, 16, 0, &id),
           ERR(EINVAL));
  check_rc("nested_data_null", hwpt_alloc_full(fd, 0, idev, parent, DS, NULL, sizeof(data), 0, &id),
           ERR(EFAULT));
  void* hole = unmapped_page();
  check_rc("nested_data_unmapped", hwpt_alloc_full(fd, 0, idev, parent, DS, hole, sizeof(data), 0, &id),
           ERR(EFAULT));

  /* data_len 4: only iotlb is given; the value reaches every IOTLB entry. */
  struct iommu_hwpt_selftest data_1234 = {.iotlb = 0x1234, .pagetable_type = 0x77};
  check_rc("nested_len_4", hwpt_alloc_full(fd, 0, idev, parent, DS, &data_1234, 4, 0, &id), OK);
  check_u64("nested_len_4", "out_hwpt_id", id, 7);
  check_iotlb_all(fd, "nested_len_4_iotlb", id, 0x1234);
  check_rc("nested_len_4_destroy", destroy_id(fd, id), OK);
  /* data_len 6, and pagetable_type (meaningful for paging HWPTs only) is ignored. */
  check_rc("nested_len_6", hwpt_alloc_full(fd, 0, idev, parent, DS, &data_1234, 6, 0, &id), OK);
  check_u64("nested_len_6", "out_hwpt_id", id, 7);
  check_rc("nested_len_6_iotlb", check_iotlb(fd, id, 0, 0x1234), OK);
  check_rc("nested_len_6_destroy", destroy_id(fd, id), OK);
  check_rc("nested_len_8_pagetable_type", hwpt_alloc_full(fd, 0, idev, parent, DS, &data_1234, 8, 0, &id),
           OK);
  check_u64("nested_len_8_pagetable_type", "out_hwpt_id", id, 7);
  check_rc("nested_len_8_pagetable_type_destroy", destroy_id(fd, id), OK);

  /* Flags: only FAULT_ID_VALID and PASID are allowed on a nested HWPT; a bad flag is refused before the
   * parent is looked at (so even on a non-parent it is EOPNOTSUPP). */
  check_rc("nested_flag_nest_parent",
           hwpt_alloc_nested(fd, idev, parent, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(EOPNOTSUPP));
  check_rc(
      "nested_flag_dirty",
      hwpt_alloc_nested(fd, idev, parent, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_TEST_IOTLB_DEFAULT, &id),
      ERR(EOPNOTSUPP));
  check_rc("nested_flag_unknown", hwpt_alloc_nested(fd, idev, parent, 1u << 4, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(EOPNOTSUPP));
  check_rc("nested_flag_nest_parent_on_plain",
           hwpt_alloc_nested(fd, idev, plain, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(EOPNOTSUPP));
  check_rc("nested_flag_pasid",
           hwpt_alloc_nested(fd, idev, parent, IOMMU_HWPT_ALLOC_PASID, IOMMU_TEST_IOTLB_DEFAULT, &id), OK);
  check_u64("nested_flag_pasid", "out_hwpt_id", id, 7);
  check_rc("nested_flag_pasid_destroy", destroy_id(fd, id), OK);
  /* FAULT_ID_VALID: the fault object is looked up after the nested HWPT was made (which is then undone);
   * an id naming nothing, or naming an IOAS, is ENOENT. */
  check_rc("nested_fault_id_unknown",
           hwpt_alloc_full(fd, IOMMU_HWPT_FAULT_ID_VALID, idev, parent, DS, &data, sizeof(data), 9999, &id),
           ERR(ENOENT));
  check_rc("nested_fault_id_is_ioas",
           hwpt_alloc_full(fd, IOMMU_HWPT_FAULT_ID_VALID, idev, parent, DS, &data, sizeof(data), ioas, &id),
           ERR(ENOENT));
  /* The parent check still comes first. */
  check_rc("nested_fault_id_unknown_on_plain",
           hwpt_alloc_full(fd, IOMMU_HWPT_FAULT_ID_VALID, idev, plain, DS, &data, sizeof(data), 9999, &id),
           ERR(EINVAL));

  /* ---- two nested HWPTs on one parent ---------------------------------------------------------------- */
  uint32_t n0 = 0, n1 = 0;
  require("alloc_n0",
          check_rc("alloc_n0", hwpt_alloc_nested(fd, idev, parent, 0, IOMMU_TEST_IOTLB_DEFAULT, &n0), OK));
  check_u64("alloc_n0", "out_hwpt_id", n0, 7);
  require("alloc_n1", check_rc("alloc_n1", hwpt_alloc_nested(fd, idev, parent, 0, 0x1234, &n1), OK));
  check_u64("alloc_n1", "out_hwpt_id", n1, 8);
  check_iotlb_all(fd, "n0_iotlb_default", n0, IOMMU_TEST_IOTLB_DEFAULT);
  check_iotlb_all(fd, "n1_iotlb_1234", n1, 0x1234);

  /* MD_CHECK_IOTLB: entry 4 does not exist; a wrong value is EINVAL; only nested HWPTs are found. */
  check_rc("iotlb_id_4", check_iotlb(fd, n1, 4, 0x1234), ERR(EINVAL));
  check_rc("iotlb_wrong_value", check_iotlb(fd, n1, 0, IOMMU_TEST_IOTLB_DEFAULT), ERR(EINVAL));
  check_rc("iotlb_on_parent", check_iotlb(fd, parent, 0, IOMMU_TEST_IOTLB_DEFAULT), ERR(ENOENT));
  check_rc("iotlb_on_auto_hwpt", check_iotlb(fd, auto_hwpt, 0, IOMMU_TEST_IOTLB_DEFAULT), ERR(ENOENT));
  check_rc("iotlb_on_ioas", check_iotlb(fd, ioas, 0, IOMMU_TEST_IOTLB_DEFAULT), ERR(ENOENT));
  check_rc("iotlb_on_unknown", check_iotlb(fd, 9999, 0, IOMMU_TEST_IOTLB_DEFAULT), ERR(ENOENT));
  /* MD_CHECK_MAP finds paging HWPTs only. */
  check_rc("check_map_on_nested", check_map(fd, n0, base, buf, 0x4000), ERR(ENOENT));

  /* No nesting on a nested HWPT; the parent and its IOAS are held by the nested HWPTs. */
  check_rc("nested_on_nested", hwpt_alloc_nested(fd, idev, n0, 0, IOMMU_TEST_IOTLB_DEFAULT, &id),
           ERR(EINVAL));
  check_rc("destroy_parent_busy", destroy_id(fd, parent), ERR(EBUSY));
  check_rc("destroy_ioas_busy", destroy_id(fd, ioas), ERR(EBUSY));

  /* ---- IOMMU_HWPT_INVALIDATE ------------------------------------------------------------------------- */
  struct iommu_hwpt_invalidate_selftest inv[2];
  struct {
    struct iommu_hwpt_invalidate_selftest e;
    uint64_t tail;
  } inv_long = {{0, 0}, 0};
  const uint32_t IT = IOMMU_HWPT_INVALIDATE_DATA_SELFTEST;
  const uint32_t EL = sizeof(inv[0]);
  memset(inv, 0, sizeof(inv));

  /* Only a nested HWPT (or a vIOMMU) takes invalidations; entry_num is always written back. */
  inv_step(fd, "inv_on_parent", parent, inv, IT, EL, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_on_ioas", ioas, inv, IT, EL, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_on_stdev", stdev, inv, IT, EL, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_on_unknown", 9999, inv, IT, EL, 1, ERR(ENOENT), 0);
  /* An empty array: only the type is checked (by the driver), the pointer and entry_len are not. */
  inv_step(fd, "inv_empty", n0, inv, IT, EL, 0, OK, 0);
  inv_step(fd, "inv_empty_null", n0, NULL, IT, 0, 0, OK, 0);
  inv_step(fd, "inv_empty_bad_type", n0, inv, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID, EL, 0, ERR(EINVAL),
           0);
  inv_step(fd, "inv_empty_on_parent", parent, inv, IT, EL, 0, ERR(EINVAL), 0);
  inv_step(fd, "inv_bad_type", n0, inv, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID, EL, 1, ERR(EINVAL), 0);
  /* entry_len: exactly the kernel's struct, at least up to iotlb_id (8, the whole struct), even a zero tail
   * beyond it is refused. */
  inv_step(fd, "inv_entry_len_9", n0, inv, IT, EL + 1, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_entry_len_12_zero_tail", n0, &inv_long, IT, 12, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_entry_len_16_zero_tail", n0, &inv_long, IT, 16, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_entry_len_4", n0, inv, IT, 4, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_entry_len_1", n0, inv, IT, 1, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_entry_len_0", n0, inv, IT, 0, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_entry_len_page_plus_1", n0, inv, IT, PAGE_SZ + 1, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_entry_num_max_plus_1", n0, inv, IT, EL, IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX + 1,
           ERR(EINVAL), 0);
  inv_step(fd, "inv_null_uptr", n0, NULL, IT, EL, 1, ERR(EINVAL), 0);
  /* Those bounds are checked before the HWPT is looked up. */
  inv_step(fd, "inv_entry_len_0_unknown_hwpt", 9999, inv, IT, 0, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_null_uptr_unknown_hwpt", 9999, NULL, IT, EL, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_unmapped_uptr", n0, hole, IT, EL, 1, ERR(EFAULT), 0);
  /* Entry contents: unknown flags, then an iotlb_id above 3 (even with FLAG_ALL). */
  inv[0].flags = 0xffffffff;
  inv_step(fd, "inv_bad_flags", n0, inv, IT, EL, 1, ERR(EOPNOTSUPP), 0);
  inv[0].flags = 1u << 1;
  inv[0].iotlb_id = MOCK_NESTED_DOMAIN_IOTLB_ID_MAX + 1;
  inv_step(fd, "inv_bad_flags_and_id", n0, inv, IT, EL, 1, ERR(EOPNOTSUPP), 0);
  inv[0].flags = 0;
  inv_step(fd, "inv_iotlb_id_4", n0, inv, IT, EL, 1, ERR(EINVAL), 0);
  inv[0].flags = IOMMU_TEST_INVALIDATE_FLAG_ALL;
  inv_step(fd, "inv_all_iotlb_id_4", n0, inv, IT, EL, 1, ERR(EINVAL), 0);
  /* entry_num at the cap passes the bound; the first (bad) entry stops the walk. */
  inv_step(fd, "inv_entry_num_max", n0, inv, IT, EL, IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX, ERR(EINVAL), 0);
  check_iotlb_all(fd, "inv_refused_iotlb_unchanged", n0, IOMMU_TEST_IOTLB_DEFAULT);

  /* Partly processed arrays: the first entry takes effect, entry_num says 1. */
  inv[0].flags = 0;
  inv[0].iotlb_id = 0;
  inv[1].flags = 0xffffffff;
  inv[1].iotlb_id = 1;
  inv_step(fd, "inv_partial_bad_flags", n0, inv, IT, EL, 2, ERR(EOPNOTSUPP), 1);
  check_rc("inv_partial_bad_flags_iotlb_0", check_iotlb(fd, n0, 0, 0), OK);
  check_rc("inv_partial_bad_flags_iotlb_1", check_iotlb(fd, n0, 1, IOMMU_TEST_IOTLB_DEFAULT), OK);
  check_rc("inv_partial_bad_flags_iotlb_2", check_iotlb(fd, n0, 2, IOMMU_TEST_IOTLB_DEFAULT), OK);
  check_rc("inv_partial_bad_flags_iotlb_3", check_iotlb(fd, n0, 3, IOMMU_TEST_IOTLB_DEFAULT), OK);
  inv[1].flags = 0;
  inv[1].iotlb_id = MOCK_NESTED_DOMAIN_IOTLB_ID_MAX + 1;
  inv_step(fd, "inv_partial_bad_id", n0, inv, IT, EL, 2, ERR(EINVAL), 1);
  check_rc("inv_partial_bad_id_iotlb_1", check_iotlb(fd, n0, 1, IOMMU_TEST_IOTLB_DEFAULT), OK);
  /* The second entry on an inaccessible page: EFAULT after the first took effect. */
  uint8_t* two =
      (uint8_t*)mmap(NULL, 2 * PAGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  require("mmap_two_pages", two != MAP_FAILED && mprotect(two + PAGE_SZ, PAGE_SZ, PROT_NONE) == 0);
  struct iommu_hwpt_invalidate_selftest* edge = (struct iommu_hwpt_invalidate_selftest*)(two + PAGE_SZ - EL);
  edge->flags = 0;
  edge->iotlb_id = 2;
  inv_step(fd, "inv_partial_fault", n1, edge, IT, EL, 2, ERR(EFAULT), 1);
  check_rc("inv_partial_fault_iotlb_1", check_iotlb(fd, n1, 1, 0x1234), OK);
  check_rc("inv_partial_fault_iotlb_2", check_iotlb(fd, n1, 2, 0), OK);

  /* Successful invalidations. */
  inv[0].flags = 0;
  inv[0].iotlb_id = 1;
  inv_step(fd, "inv_one", n0, inv, IT, EL, 1, OK, 1);
  check_rc("inv_one_iotlb_0", check_iotlb(fd, n0, 0, 0), OK);
  check_rc("inv_one_iotlb_1", check_iotlb(fd, n0, 1, 0), OK);
  check_rc("inv_one_iotlb_2", check_iotlb(fd, n0, 2, IOMMU_TEST_IOTLB_DEFAULT), OK);
  inv[0].iotlb_id = 2;
  inv[1].flags = 0;
  inv[1].iotlb_id = 3;
  inv_step(fd, "inv_two", n0, inv, IT, EL, 2, OK, 2);
  check_iotlb_all(fd, "inv_two_iotlb", n0, 0);
  inv[0].flags = IOMMU_TEST_INVALIDATE_FLAG_ALL;
  inv[0].iotlb_id = 3;
  inv_step(fd, "inv_all", n1, inv, IT, EL, 1, OK, 1);
  check_iotlb_all(fd, "inv_all_iotlb", n1, 0);
  /* The device cache is not touched by a nested HWPT's invalidation. */
  for (int i = 0; i < MOCK_DEV_CACHE_NUM; i++)
    check_rc(nm("dev_cache_default", i), dev_check_cache(fd, idev, i, IOMMU_TEST_DEV_CACHE_DEFAULT), OK);

  /* The ioctl struct itself (main.c iommufd_fops_ioctl(): minimum size is the whole 32 bytes). */
  struct {
    struct iommu_hwpt_invalidate c;
    uint64_t tail;
  } raw;
  uint32_t num = 0;
  memset(&raw, 0, sizeof(raw));
  inv[0].flags = 0;
  inv[0].iotlb_id = 0;
  raw.c.hwpt_id = n0;
  raw.c.data_uptr = (uintptr_t)inv;
  raw.c.data_type = IT;
  raw.c.entry_len = EL;
  raw.c.entry_num = 1;
  check_rc("inv_size_24", invalidate_raw(fd, &raw, 24, &num), ERR(EINVAL));
  check_u64("inv_size_24", "entry_num", num, 1);
  raw.tail = 1;
  check_rc("inv_size_40_nonzero_tail", invalidate_raw(fd, &raw, 40, &num), ERR(E2BIG));
  check_u64("inv_size_40_nonzero_tail", "entry_num", num, 1);
  raw.tail = 0;
  check_rc("inv_size_40_zero_tail", invalidate_raw(fd, &raw, 40, &num), OK);
  check_u64("inv_size_40_zero_tail", "entry_num", num, 1);
  check_u64("inv_size_40_zero_tail", "tail", raw.tail, 0);
  raw.c.__reserved = 1;
  check_rc("inv_reserved", invalidate_raw(fd, &raw, sizeof(raw.c), &num), ERR(EOPNOTSUPP));
  check_u64("inv_reserved", "entry_num", num, 0);
  raw.c.entry_num = 1;
  raw.c.hwpt_id = 9999;
  raw.c.entry_len = 0;
  check_rc("inv_reserved_before_all", invalidate_raw(fd, &raw, sizeof(raw.c), &num), ERR(EOPNOTSUPP));
  check_u64("inv_reserved_before_all", "entry_num", num, 0);

  /* ---- attaching the mock device to nested HWPTs ----------------------------------------------------- */
  uint32_t out = 0;
  check_rc("replace_to_n0", mock_domain_replace(fd, stdev, n0, &out), OK);
  check_u64("replace_to_n0", "pt_id", out, n0);
  /* The automatic HWPT went with its only device. */
  check_rc("auto_hwpt_gone", destroy_id(fd, auto_hwpt), ERR(ENOENT));
  check_rc("destroy_n0_attached", destroy_id(fd, n0), ERR(EBUSY));
  check_rc("destroy_parent_attached_nested", destroy_id(fd, parent), ERR(EBUSY));
  check_rc("attached_parent_check_map", check_map(fd, parent, base, buf, 0x4000), OK);
  check_rc("attached_refs", check_refs(fd, buf, 0x4000, 1), OK);
  inv[0].flags = 0;
  inv[0].iotlb_id = 0;
  inv_step(fd, "attached_inv", n0, inv, IT, EL, 1, OK, 1);
  check_rc("replace_to_n1", mock_domain_replace(fd, stdev, n1, &out), OK);
  check_u64("replace_to_n1", "pt_id", out, n1);
  check_rc("destroy_n1_attached", destroy_id(fd, n1), ERR(EBUSY));
  check_rc("destroy_n0_detached", destroy_id(fd, n0), OK);
  check_rc("replace_to_parent", mock_domain_replace(fd, stdev, parent, &out), OK);
  check_u64("replace_to_parent", "pt_id", out, parent);
  check_rc("destroy_n1_detached", destroy_id(fd, n1), OK);
  check_rc("destroy_parent_attached", destroy_id(fd, parent), ERR(EBUSY));
  check_rc("replace_to_ioas", mock_domain_replace(fd, stdev, ioas, &out), OK);
  check_u64("replace_to_ioas", "pt_id", out, 4);
  auto_hwpt = out;
  check_rc("destroy_parent", destroy_id(fd, parent), OK);
  check_rc("destroy_plain", destroy_id(fd, plain), OK);

  /* MOCK_DOMAIN straight onto a nested HWPT. */
  uint32_t parent2 = 0, n2 = 0, stdev2 = 0, hwpt2 = 0, idev2 = 0;
  require("alloc_parent2",
          check_rc("alloc_parent2", hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent2), OK));
  check_u64("alloc_parent2", "out_hwpt_id", parent2, 5);
  require("alloc_n2", check_rc("alloc_n2", hwpt_alloc_nested(fd, idev, parent2, 0, 0x5678, &n2), OK));
  check_u64("alloc_n2", "out_hwpt_id", n2, 6);
  check_rc("mock_domain_on_nested", mock_domain(fd, n2, &stdev2, &hwpt2, &idev2), OK);
  check_u64("mock_domain_on_nested", "out_hwpt_id", hwpt2, n2);
  check_u64("mock_domain_on_nested", "out_stdev_id", stdev2, 7);
  check_u64("mock_domain_on_nested", "out_idev_id", idev2, 8);
  check_rc("mock_domain_on_nested_iotlb", check_iotlb(fd, n2, 3, 0x5678), OK);
  check_rc("mock_domain_on_nested_destroy_busy", destroy_id(fd, n2), ERR(EBUSY));
  check_rc("mock_domain_on_nested_dev_cache", dev_check_cache(fd, idev2, 0, IOMMU_TEST_DEV_CACHE_DEFAULT),
           OK);
  check_rc("mock_domain_on_nested_destroy_dev", destroy_id(fd, stdev2), OK);
  check_rc("mock_domain_on_nested_destroy_n2", destroy_id(fd, n2), OK);
  check_rc("mock_domain_on_nested_destroy_parent", destroy_id(fd, parent2), OK);

  /* DEV_CHECK_CACHE refusals: cache id 4, a wrong value, ids that are not a bound device. */
  check_rc("dev_cache_id_4", dev_check_cache(fd, idev, 4, IOMMU_TEST_DEV_CACHE_DEFAULT), ERR(EINVAL));
  check_rc("dev_cache_wrong_value", dev_check_cache(fd, idev, 0, 0), ERR(EINVAL));
  check_rc("dev_cache_on_ioas", dev_check_cache(fd, ioas, 0, IOMMU_TEST_DEV_CACHE_DEFAULT), ERR(ENOENT));
  check_rc("dev_cache_on_stdev", dev_check_cache(fd, stdev, 0, IOMMU_TEST_DEV_CACHE_DEFAULT), ERR(ENOENT));
  check_rc("dev_cache_on_hwpt", dev_check_cache(fd, auto_hwpt, 0, IOMMU_TEST_DEV_CACHE_DEFAULT), ERR(ENOENT));
  check_rc("dev_cache_on_unknown", dev_check_cache(fd, 9999, 0, IOMMU_TEST_DEV_CACHE_DEFAULT), ERR(ENOENT));

  check_rc("destroy_stdev", destroy_id(fd, stdev), OK);
  check_rc("auto_hwpt_gone_with_device", destroy_id(fd, auto_hwpt), ERR(ENOENT));
  check_rc("unpinned", check_refs(fd, buf, 0x4000, 0), OK);
  check_rc("destroy_ioas", destroy_id(fd, ioas), OK);
  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
