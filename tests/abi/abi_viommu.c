/* vIOMMUs, vDEVICEs and hardware queues: IOMMU_VIOMMU_ALLOC (with the mock's data and its mmap region),
 * nested HWPTs on a vIOMMU, IOMMU_HWPT_INVALIDATE of a vIOMMU (the mock devices' caches, DEV_CHECK_CACHE),
 * IOMMU_VDEVICE_ALLOC and the tombstone a vDEVICE leaves when its device goes first, IOMMU_HW_QUEUE_ALLOC
 * and the pin it holds on its memory.
 *
 * Kernel side: drivers/iommu/iommufd/viommu.c iommufd_viommu_alloc_ioctl(), iommufd_vdevice_alloc_ioctl(),
 * iommufd_hw_queue_alloc_ioctl(), iommufd_hw_queue_alloc_phys(); hw_pagetable.c
 * iommufd_viommu_alloc_hwpt_nested(), iommufd_hwpt_invalidate(); driver.c _iommufd_alloc_mmap(); main.c
 * iommufd_fops_mmap(), iommufd_object_remove(); device.c iommufd_device_remove_vdev(); selftest.c
 * mock_viommu_init(), mock_viommu_cache_invalidate(), mock_hw_queue_init_phys(), mock_domain_nop_attach(). */
#include "abi.h"

/* mmap() of the iommufd: 0 on success (*out the address), else -errno. */
static int mmap_iommufd(int fd, size_t len, int prot, int flags, uint64_t offset, void** out) {
  void* p = mmap(NULL, len, prot, flags, fd, (off_t)offset);
  if (p == MAP_FAILED) return -errno;
  *out = p;
  return 0;
}
static void inv_step(int fd, const char* step, uint32_t viommu, const void* reqs, uint32_t type,
                     uint32_t entry_len, uint32_t num, int want, uint32_t want_num) {
  check_rc(step, hwpt_invalidate(fd, viommu, reqs, type, entry_len, &num), want);
  check_u64(step, "entry_num", num, want_num);
}
static void check_cache4(int fd, const char* step, uint32_t idev, uint32_t c0, uint32_t c1, uint32_t c2,
                         uint32_t c3) {
  const uint32_t want[4] = {c0, c1, c2, c3};
  char name[96];
  for (int i = 0; i < 4; i++) {
    snprintf(name, sizeof(name), "%s_cache%d", step, i);
    check_rc(name, dev_check_cache(fd, idev, (uint32_t)i, want[i]), OK);
  }
}

int main(void) {
  int fd = open_iommufd();
  uint8_t* buf = (uint8_t*)alloc_buffer(0x4000);
  const uint64_t base = MOCK_APERTURE_START;
  uint32_t ioas = 0, stdev = 0, auto_hwpt = 0, idev = 0, id = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  require("mock_domain", check_rc("mock_domain", mock_domain(fd, ioas, &stdev, &auto_hwpt, &idev), OK));
  uint32_t parent = 0, plain = 0;
  require("alloc_parent",
          check_rc("alloc_parent", hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent), OK));
  require("alloc_plain", check_rc("alloc_plain", hwpt_alloc(fd, idev, ioas, 0, &plain), OK));
  check_u64("ids", "parent", parent, 5);
  check_u64("ids", "plain", plain, 6);

  /* ---- IOMMU_VIOMMU_ALLOC refusals, in the kernel's order ------------------------------------------- */
  const uint32_t VS = sizeof(struct iommu_viommu_alloc), VT = IOMMU_VIOMMU_TYPE_SELFTEST;
  check_rc("viommu_flags", viommu_alloc_full(fd, VS, 1, VT, idev, parent, NULL, 0, &id), ERR(EOPNOTSUPP));
  check_rc("viommu_type_default", viommu_alloc_full(fd, VS, 0, 0, idev, parent, NULL, 0, &id),
           ERR(EOPNOTSUPP));
  check_rc("viommu_type_default_unknown_dev", viommu_alloc_full(fd, VS, 0, 0, 9999, 9999, NULL, 0, &id),
           ERR(EOPNOTSUPP));
  check_rc("viommu_unknown_dev", viommu_alloc_full(fd, VS, 0, VT, 9999, parent, NULL, 0, &id), ERR(ENOENT));
  check_rc("viommu_dev_is_stdev", viommu_alloc_full(fd, VS, 0, VT, stdev, parent, NULL, 0, &id), ERR(ENOENT));
  check_rc("viommu_type_unknown", viommu_alloc_full(fd, VS, 0, 0xdead, idev, parent, NULL, 0, &id),
           ERR(EOPNOTSUPP));
  check_rc("viommu_type_unknown_bad_hwpt", viommu_alloc_full(fd, VS, 0, 0xdead, idev, 9999, NULL, 0, &id),
           ERR(EOPNOTSUPP));
  check_rc("viommu_hwpt_0", viommu_alloc(fd, idev, 0, NULL, 0, &id), ERR(ENOENT));
  check_rc("viommu_hwpt_is_ioas", viommu_alloc(fd, idev, ioas, NULL, 0, &id), ERR(ENOENT));
  check_rc("viommu_hwpt_not_parent", viommu_alloc(fd, idev, plain, NULL, 0, &id), ERR(EINVAL));
  check_rc("viommu_hwpt_auto", viommu_alloc(fd, idev, auto_hwpt, NULL, 0, &id), ERR(EINVAL));
  check_rc("viommu_size_short", viommu_alloc_full(fd, 20, 0, VT, idev, parent, NULL, 0, &id), ERR(EINVAL));
  check_rc("viommu_size_long_tail", viommu_alloc_full(fd, VS + 8, 0, VT, idev, parent, NULL, 0, &id),
           ERR(E2BIG));

  /* ---- a vIOMMU without data, and what it holds ----------------------------------------------------- */
  uint32_t viommu = 0;
  require("viommu_alloc", check_rc("viommu_alloc", viommu_alloc(fd, idev, parent, NULL, 0, &viommu), OK));
  check_u64("viommu_alloc", "id", viommu, 7);
  check_rc("destroy_parent_busy", destroy_id(fd, parent), ERR(EBUSY));
  /* A short struct (up to out_viommu_id) is enough. */
  uint32_t viommu_short = 0;
  check_rc("viommu_size_24", viommu_alloc_full(fd, 24, 0, VT, idev, parent, NULL, 0, &viommu_short), OK);
  check_u64("viommu_size_24", "id", viommu_short, 8);
  check_rc("destroy_viommu_short", destroy_id(fd, viommu_short), OK);

  /* ---- data: loopback and the mmap region ---------------------------------------------------------- */
  struct iommu_viommu_selftest data = {.in_data = 0xbeef};
  uint32_t vd = 0;
  check_rc("viommu_data_len_4", viommu_alloc(fd, idev, parent, &data, 4, &vd), ERR(EINVAL));
  check_rc("viommu_data_len_25", viommu_alloc(fd, idev, parent, &data, 25, &vd), ERR(EINVAL));
  check_rc("viommu_data_null", viommu_alloc(fd, idev, parent, NULL, sizeof(data), &vd), ERR(EFAULT));
  /* The first version of the struct ends at out_data: no region is reported back then. */
  struct iommu_viommu_selftest data8 = {.in_data = 0x1234};
  uint32_t vd8 = 0;
  check_rc("viommu_data_len_8", viommu_alloc(fd, idev, parent, &data8, 8, &vd8), OK);
  check_u64("viommu_data_len_8", "out_data", data8.out_data, 0x1234);
  check_u64("viommu_data_len_8", "out_mmap_length", data8.out_mmap_length, 0);
  require("viommu_data",
          check_rc("viommu_data", viommu_alloc(fd, idev, parent, &data, sizeof(data), &vd), OK));
  check_u64("viommu_data", "out_data", data.out_data, 0xbeef);
  check_u64("viommu_data", "out_mmap_length", data.out_mmap_length, 2 * PAGE_SZ);
  /* Regions take the lowest free offset from one page up: vd8's region came first. */
  check_u64("viommu_data", "out_mmap_offset", data.out_mmap_offset, 3 * PAGE_SZ);
  void* m = NULL;
  const size_t ml = data.out_mmap_length;
  const uint64_t mo = data.out_mmap_offset;
  const int RW = PROT_READ | PROT_WRITE;
  check_rc("mmap_offset_plus_page", mmap_iommufd(fd, ml, RW, MAP_SHARED, mo + PAGE_SZ, &m), ERR(ENXIO));
  check_rc("mmap_offset_plus_2_pages", mmap_iommufd(fd, ml, RW, MAP_SHARED, mo + 2 * PAGE_SZ, &m),
           ERR(ENXIO));
  check_rc("mmap_half_length", mmap_iommufd(fd, ml / 2, RW, MAP_SHARED, mo, &m), ERR(ENXIO));
  check_rc("mmap_double_length", mmap_iommufd(fd, ml * 2, RW, MAP_SHARED, mo, &m), ERR(ENXIO));
  check_rc("mmap_offset_0", mmap_iommufd(fd, ml, RW, MAP_SHARED, 0, &m), ERR(ENXIO));
  check_rc("mmap_private", mmap_iommufd(fd, ml, RW, MAP_PRIVATE, mo, &m), ERR(EINVAL));
  check_rc("mmap_exec", mmap_iommufd(fd, ml, RW | PROT_EXEC, MAP_SHARED, mo, &m), ERR(EPERM));
  check_rc("mmap_unaligned_offset", mmap_iommufd(fd, ml, RW, MAP_SHARED, mo + 1, &m), ERR(EINVAL));
  check_rc("mmap_length_0", mmap_iommufd(fd, 0, RW, MAP_SHARED, mo, &m), ERR(EINVAL));
  /* A length that rounds up to the region's is the region. */
  void* m2 = NULL;
  check_rc("mmap_round_up", mmap_iommufd(fd, ml - 100, PROT_READ, MAP_SHARED, mo, &m2), OK);
  if (m2) munmap(m2, ml);
  require("mmap", check_rc("mmap", mmap_iommufd(fd, ml, RW, MAP_SHARED, mo, &m), OK));
  check_u64("mmap", "page_word", *(volatile uint32_t*)m, 0xbeef);
  check_u64("mmap", "second_page_word", *(volatile uint32_t*)((uint8_t*)m + PAGE_SZ), 0);
  /* The mapping holds the vIOMMU, piece by piece: a split mapping holds it twice. */
  check_rc("destroy_viommu_mapped", destroy_id(fd, vd), ERR(EBUSY));
  check_rc("munmap_first_page", munmap(m, PAGE_SZ) == 0 ? 0 : -errno, OK);
  check_rc("destroy_viommu_half_mapped", destroy_id(fd, vd), ERR(EBUSY));
  check_rc("munmap_second_page", munmap((uint8_t*)m + PAGE_SZ, PAGE_SZ) == 0 ? 0 : -errno, OK);
  check_rc("destroy_viommu_unmapped", destroy_id(fd, vd), OK);
  check_rc("mmap_after_destroy", mmap_iommufd(fd, ml, RW, MAP_SHARED, mo, &m), ERR(ENXIO));
  /* Freed offsets are handed out again. */
  struct iommu_viommu_selftest data2 = {.in_data = 7};
  uint32_t vd2 = 0;
  check_rc("viommu_data_again", viommu_alloc(fd, idev, parent, &data2, sizeof(data2), &vd2), OK);
  check_u64("viommu_data_again", "out_mmap_offset", data2.out_mmap_offset, 3 * PAGE_SZ);
  check_rc("destroy_viommu_data_again", destroy_id(fd, vd2), OK);
  check_rc("destroy_viommu_len_8", destroy_id(fd, vd8), OK);

  /* ---- nested HWPTs on the vIOMMU ------------------------------------------------------------------- */
  struct iommu_hwpt_selftest hdata = {.iotlb = IOMMU_TEST_IOTLB_DEFAULT};
  const uint32_t DS = IOMMU_HWPT_DATA_SELFTEST;
  uint32_t nested = 0;
  check_rc("nested_flag_parent",
           hwpt_alloc_full(fd, IOMMU_HWPT_ALLOC_NEST_PARENT, idev, viommu, DS, &hdata, sizeof(hdata), 0, &id),
           ERR(EOPNOTSUPP));
  check_rc("nested_no_data", hwpt_alloc_full(fd, 0, idev, viommu, IOMMU_HWPT_DATA_NONE, NULL, 0, 0, &id),
           ERR(EOPNOTSUPP));
  check_rc("nested_type_unknown", hwpt_alloc_full(fd, 0, idev, viommu, DS + 1, &hdata, sizeof(hdata), 0, &id),
           ERR(EOPNOTSUPP));
  check_rc("nested_len_3", hwpt_alloc_full(fd, 0, idev, viommu, DS, &hdata, 3, 0, &id), ERR(EINVAL));
  require(
      "nested",
      check_rc("nested", hwpt_alloc_full(fd, 0, idev, viommu, DS, &hdata, sizeof(hdata), 0, &nested), OK));
  check_u64("nested", "id", nested, 8);
  check_rc("destroy_viommu_with_nested", destroy_id(fd, viommu), ERR(EBUSY));
  /* A device needs a virtual id on the vIOMMU before it can use the vIOMMU's nested HWPT. */
  check_rc("attach_nested_no_vdev", mock_domain_replace(fd, stdev, nested, NULL), ERR(ENOENT));
  check_rc("nested_invalidate_iotlb", check_iotlb(fd, nested, 0, IOMMU_TEST_IOTLB_DEFAULT), OK);

  /* ---- IOMMU_VDEVICE_ALLOC -------------------------------------------------------------------------- */
  uint32_t vdev = 0, stdev2 = 0, idev2 = 0, vdev2 = 0;
  check_rc("vdev_unknown_viommu", vdevice_alloc(fd, 9999, idev, 0x99, &id), ERR(ENOENT));
  check_rc("vdev_viommu_is_hwpt", vdevice_alloc(fd, parent, idev, 0x99, &id), ERR(ENOENT));
  check_rc("vdev_unknown_dev", vdevice_alloc(fd, viommu, 9999, 0x99, &id), ERR(ENOENT));
  check_rc("vdev_dev_is_stdev", vdevice_alloc(fd, viommu, stdev, 0x99, &id), ERR(ENOENT));
  require("vdev", check_rc("vdev", vdevice_alloc(fd, viommu, idev, 0x99, &vdev), OK));
  check_u64("vdev", "id", vdev, 9);
  check_rc("vdev_same_dev", vdevice_alloc(fd, viommu, idev, 0x98, &id), ERR(EEXIST));
  require("mock_domain2", check_rc("mock_domain2", mock_domain(fd, ioas, &stdev2, NULL, &idev2), OK));
  check_rc("vdev_same_virt_id", vdevice_alloc(fd, viommu, idev2, 0x99, &id), ERR(EEXIST));
  check_rc("vdev2", vdevice_alloc(fd, viommu, idev2, 0x88, &vdev2), OK);
  check_rc("vdev_high_virt_id", vdevice_alloc(fd, viommu, idev2, 1ULL << 40, &id), ERR(EEXIST));
  check_rc("destroy_viommu_with_vdev", destroy_id(fd, viommu), ERR(EBUSY));
  check_rc("attach_nested", mock_domain_replace(fd, stdev, nested, NULL), OK);
  check_rc("destroy_nested_attached", destroy_id(fd, nested), ERR(EBUSY));
  /* The vDEVICE itself does not hold the attachment. */
  check_rc("destroy_vdev_attached", destroy_id(fd, vdev), OK);
  check_rc("vdev_again", vdevice_alloc(fd, viommu, idev, 0x99, &vdev), OK);
  check_rc("detach_nested", mock_domain_replace(fd, stdev, ioas, NULL), OK);

  /* ---- vIOMMU cache invalidation (the kernel selftest's vdevice_cache) ---------------------------- */
  struct iommu_viommu_invalidate_selftest inv[2];
  struct {
    struct iommu_viommu_invalidate_selftest e;
    uint32_t tail;
  } inv_long[2];
  const uint32_t VI = IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, IL = sizeof(inv[0]);
  memset(inv, 0, sizeof(inv));
  check_cache4(fd, "cache_default", idev, IOMMU_TEST_DEV_CACHE_DEFAULT, IOMMU_TEST_DEV_CACHE_DEFAULT,
               IOMMU_TEST_DEV_CACHE_DEFAULT, IOMMU_TEST_DEV_CACHE_DEFAULT);
  inv_step(fd, "inv_empty", viommu, inv, VI, IL, 0, OK, 0);
  inv_step(fd, "inv_empty_bad_type", viommu, inv, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID, IL, 0,
           ERR(EINVAL), 0);
  inv_step(fd, "inv_bad_type", viommu, inv, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID, IL, 1, ERR(EINVAL),
           0);
  inv_step(fd, "inv_len_plus_1", viommu, inv, VI, IL + 1, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_len_1", viommu, inv, VI, 1, 1, ERR(EINVAL), 0);
  inv[0].flags = 0xffffffff;
  inv[0].vdev_id = 0x99;
  inv_step(fd, "inv_bad_flags", viommu, inv, VI, IL, 1, ERR(EOPNOTSUPP), 0);
  inv[0].flags = 0;
  inv_step(fd, "inv_null", viommu, NULL, VI, IL, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_len_0", viommu, inv, VI, 0, 1, ERR(EINVAL), 0);
  inv[0].cache_id = MOCK_DEV_CACHE_ID_MAX + 1;
  inv_step(fd, "inv_bad_cache_id", viommu, inv, VI, IL, 1, ERR(EINVAL), 0);
  inv[0].vdev_id = 0x9;
  inv[0].cache_id = 0;
  inv_step(fd, "inv_bad_vdev_id", viommu, inv, VI, IL, 1, ERR(EINVAL), 0);
  /* A longer entry: its tail must be zero (copy_struct_from_user()). */
  memset(inv_long, 0, sizeof(inv_long));
  inv_long[0].e.vdev_id = 0x99;
  inv_long[0].tail = 1;
  inv_step(fd, "inv_long_tail", viommu, inv_long, VI, sizeof(inv_long[0]), 1, ERR(E2BIG), 0);
  inv[0].vdev_id = 0x99;
  inv[0].cache_id = 0;
  inv[1].flags = 0xffffffff;
  inv[1].vdev_id = 0x99;
  inv[1].cache_id = 1;
  inv_step(fd, "inv_second_bad_flags", viommu, inv, VI, IL, 2, ERR(EOPNOTSUPP), 1);
  check_cache4(fd, "after_first", idev, 0, IOMMU_TEST_DEV_CACHE_DEFAULT, IOMMU_TEST_DEV_CACHE_DEFAULT,
               IOMMU_TEST_DEV_CACHE_DEFAULT);
  inv[1].flags = 0;
  inv[1].cache_id = MOCK_DEV_CACHE_ID_MAX + 1;
  inv_step(fd, "inv_second_bad_cache", viommu, inv, VI, IL, 2, ERR(EINVAL), 1);
  inv[0].cache_id = 1;
  inv_step(fd, "inv_cache_1", viommu, inv, VI, IL, 1, OK, 1);
  check_cache4(fd, "after_cache_1", idev, 0, 0, IOMMU_TEST_DEV_CACHE_DEFAULT, IOMMU_TEST_DEV_CACHE_DEFAULT);
  inv[0].cache_id = 2;
  inv[1].cache_id = 3;
  inv_step(fd, "inv_cache_2_3", viommu, inv, VI, IL, 2, OK, 2);
  check_cache4(fd, "after_cache_2_3", idev, 0, 0, 0, 0);
  /* The other device's cache is its own; FLAG_ALL ignores cache_id. */
  check_cache4(fd, "dev2_untouched", idev2, IOMMU_TEST_DEV_CACHE_DEFAULT, IOMMU_TEST_DEV_CACHE_DEFAULT,
               IOMMU_TEST_DEV_CACHE_DEFAULT, IOMMU_TEST_DEV_CACHE_DEFAULT);
  inv[0].flags = IOMMU_TEST_INVALIDATE_FLAG_ALL;
  inv[0].vdev_id = 0x88;
  inv[0].cache_id = 0;
  inv_step(fd, "inv_all_dev2", viommu, inv, VI, IL, 1, OK, 1);
  check_cache4(fd, "dev2_all", idev2, 0, 0, 0, 0);
  /* Only a nested HWPT or a vIOMMU takes invalidations. */
  inv_step(fd, "inv_on_parent", parent, inv, VI, IL, 1, ERR(EINVAL), 0);
  inv_step(fd, "inv_on_ioas", ioas, inv, VI, IL, 1, ERR(EINVAL), 0);

  /* ---- hardware queues (the kernel selftest's hw_queue) -------------------------------------------- */
  const uint32_t QT = IOMMU_HW_QUEUE_TYPE_SELFTEST;
  uint32_t q0 = 0, q1 = 0;
  uint64_t qiova = base;
  check_rc("hwq_type_default", hw_queue_alloc(fd, viommu, 0, 0, qiova, PAGE_SZ, &id), ERR(EOPNOTSUPP));
  check_rc("hwq_length_0", hw_queue_alloc(fd, viommu, QT, 0, qiova, 0, &id), ERR(EINVAL));
  check_rc("hwq_overflow", hw_queue_alloc(fd, viommu, QT, 0, ~0ULL, PAGE_SZ, &id), ERR(EOVERFLOW));
  check_rc("hwq_unknown_viommu", hw_queue_alloc(fd, 9999, QT, 0, qiova, PAGE_SZ, &id), ERR(ENOENT));
  check_rc("hwq_type_unknown", hw_queue_alloc(fd, viommu, 0x1234, 0, qiova, PAGE_SZ, &id), ERR(EOPNOTSUPP));
  check_rc("hwq_not_mapped", hw_queue_alloc(fd, viommu, QT, 0, qiova, PAGE_SZ, &id), ERR(ENOENT));
  check_rc("hwq_erange", hw_queue_alloc(fd, viommu, QT, 0, 0x800, ~0ULL - 0x1000, &id), ERR(ERANGE));
  uint64_t iova2 = 0;
  require("map_q0", check_rc("map_q0", ioas_map(fd, ioas, buf, PAGE_SZ, &qiova, 0), OK));
  require("map_q1", check_rc("map_q1", ioas_map(fd, ioas, buf + PAGE_SZ, PAGE_SZ, &iova2, 0), OK));
  check_rc("hwq_index_1_first", hw_queue_alloc(fd, viommu, QT, 1, qiova, PAGE_SZ, &id), ERR(EIO));
  check_rc("hwq_index_max", hw_queue_alloc(fd, viommu, QT, IOMMU_TEST_HW_QUEUE_MAX, qiova, PAGE_SZ, &id),
           ERR(EINVAL));
  require("hwq0", check_rc("hwq0", hw_queue_alloc(fd, viommu, QT, 0, qiova, PAGE_SZ, &q0), OK));
  /* The queue's internal access took the next id, and gave the failed ones back. */
  check_u64("hwq0", "id", q0, 13);
  check_rc("destroy_hwq0_access", destroy_id(fd, q0 + 1), ERR(EBUSY));
  check_rc("hwq_index_taken", hw_queue_alloc(fd, viommu, QT, 0, qiova, PAGE_SZ, &id), ERR(EEXIST));
  uint64_t unmapped = 0;
  check_rc("unmap_queue_memory", ioas_unmap(fd, ioas, qiova, PAGE_SZ, &unmapped), ERR(EBUSY));
  check_rc("unmap_all_with_queue", ioas_unmap(fd, ioas, 0, ~0ULL, &unmapped), ERR(EBUSY));
  check_rc("unmap_other_page", ioas_unmap(fd, ioas, iova2, PAGE_SZ, NULL), OK);
  check_rc("hwq1_unmapped_half", hw_queue_alloc(fd, viommu, QT, 1, iova2, PAGE_SZ, &id), ERR(ENOENT));
  require("hwq1",
          check_rc("hwq1", hw_queue_alloc(fd, viommu, QT, 1, qiova + PAGE_SZ / 2, PAGE_SZ / 2, &q1), OK));
  check_u64("hwq1", "id", q1, 15);
  check_rc("destroy_hwq0_depended", destroy_id(fd, q0), ERR(EBUSY));
  check_rc("destroy_viommu_with_queues", destroy_id(fd, viommu), ERR(EBUSY));
  check_rc("destroy_hwq1", destroy_id(fd, q1), OK);
  check_rc("destroy_hwq0", destroy_id(fd, q0), OK);
  check_rc("unmap_queue_memory_after", ioas_unmap(fd, ioas, qiova, PAGE_SZ, NULL), OK);

  /* ---- the tombstone a vDEVICE leaves when its device goes first ------------------------------------- */
  uint32_t stdev3 = 0, idev3 = 0, vdev3 = 0, later = 0;
  require("mock_domain3", check_rc("mock_domain3", mock_domain(fd, ioas, &stdev3, NULL, &idev3), OK));
  require("vdev3", check_rc("vdev3", vdevice_alloc(fd, viommu, idev3, 0x77, &vdev3), OK));
  check_rc("destroy_stdev3", destroy_id(fd, stdev3), OK);
  check_rc("destroy_vdev3_tombstone", destroy_id(fd, vdev3), ERR(ENOENT));
  /* The virtual id is free again; the object id is not handed out. */
  check_rc("vdev_reuse_virt_id", vdevice_alloc(fd, viommu, idev2, 0x77, &id), ERR(EEXIST));
  check_rc("destroy_vdev2", destroy_id(fd, vdev2), OK);
  check_rc("vdev_reuse_virt_id_2", vdevice_alloc(fd, viommu, idev2, 0x77, &vdev2), OK);
  uint32_t fill[12];
  int reused = 0;
  for (int i = 0; i < 12; i++) {
    check_rc("ioas_fill", ioas_alloc(fd, &fill[i]), OK);
    reused |= fill[i] == vdev3;
  }
  check_u64("ioas_fill", "tombstone_reused", (uint64_t)reused, 0);
  check_u64("ioas_fill", "last_id", fill[11], 25);
  for (int i = 0; i < 12; i++) check_rc("ioas_fill_destroy", destroy_id(fd, fill[i]), OK);
  (void)later;

  /* ---- teardown: the vIOMMU goes after everything that holds it ----------------------------------- */
  check_rc("destroy_vdev", destroy_id(fd, vdev), OK);
  check_rc("destroy_vdev2_again", destroy_id(fd, vdev2), OK);
  check_rc("destroy_nested", destroy_id(fd, nested), OK);
  check_rc("destroy_viommu", destroy_id(fd, viommu), OK);
  check_rc("destroy_parent", destroy_id(fd, parent), OK);
  /* A mapping outlives the close of its iommufd (the vma holds the file). */
  struct iommu_viommu_selftest data3 = {.in_data = 0xfeed};
  uint32_t parent2 = 0, vd3 = 0;
  check_rc("alloc_parent2", hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent2), OK);
  check_rc("viommu_data3", viommu_alloc(fd, idev, parent2, &data3, sizeof(data3), &vd3), OK);
  void* m3 = NULL;
  check_rc("mmap3", mmap_iommufd(fd, data3.out_mmap_length, RW, MAP_SHARED, data3.out_mmap_offset, &m3), OK);
  close(fd);
  if (m3) {
    check_u64("after_close", "page_word", *(volatile uint32_t*)m3, 0xfeed);
    check_rc("munmap_after_close", munmap(m3, data3.out_mmap_length) == 0 ? 0 : -errno, OK);
  }
  return abi_finish();
}
