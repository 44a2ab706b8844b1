/* IOMMU_GET_HW_INFO on mock devices: the struct rules, the order of device.c iommufd_get_hw_info()'s checks,
 * how the driver's data (selftest.c mock_domain_hw_info(): struct iommu_test_hw_info, 8 bytes) is copied into
 * a caller buffer of any length, the capability bits (mock_domain_capable() and the device's PASID width),
 * and the mock device flags MOCK_DOMAIN_FLAGS accepts. */
#include "abi.h"

/* A request buffer with room past the struct, for the size rules. */
union info_req {
  struct iommu_hw_info c;
  uint8_t bytes[64];
};

static void req_init(union info_req* r, uint32_t dev_id) {
  memset(r, 0, sizeof(*r));
  r->c.size = sizeof(r->c);
  r->c.dev_id = dev_id;
}

static int info_raw(int fd, union info_req* r) { return get_hw_info(fd, &r->c); }

/* A plain query of `dev_id` with a `len`-byte buffer. */
static int info_query(int fd, uint32_t dev_id, void* data, uint32_t len, union info_req* r) {
  req_init(r, dev_id);
  r->c.data_len = len;
  r->c.data_uptr = (uintptr_t)data;
  return info_raw(fd, r);
}

/* The out-values of a successful query. */
static void check_out(const char* step, const union info_req* r, uint32_t data_len, uint32_t type,
                      uint64_t caps, uint32_t pasid_log2) {
  check_u64(step, "data_len", r->c.data_len, data_len);
  check_u64(step, "out_data_type", r->c.in_data_type, type);
  check_u64(step, "out_capabilities", r->c.out_capabilities, caps);
  check_u64(step, "out_max_pasid_log2", r->c.out_max_pasid_log2, pasid_log2);
}

int main(void) {
  int fd = open_iommufd();
  union info_req r;
  const uint64_t caps_normal = IOMMU_HW_CAP_DIRTY_TRACKING | IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED;

  uint32_t ioas = 0;
  require("setup_ioas", check_rc("setup_ioas", ioas_alloc(fd, &ioas), OK));
  uint32_t stdev = 0, hwpt = 0, idev = 0;
  require("setup_mock_domain",
          check_rc("setup_mock_domain", mock_domain(fd, ioas, &stdev, &hwpt, &idev), OK));
  check_u64("setup_mock_domain", "out_idev_id", idev, 3);

  /* ---- struct rules (main.c iommufd_fops_ioctl(): the minimum is the end of __reserved, 32) ---------- */
  req_init(&r, idev);
  r.c.size = 31;
  check_rc("size_below_min", info_raw(fd, &r), ERR(EINVAL));

  /* Exactly the minimum: everything up to __reserved comes back; out_capabilities (offset 32) is past the
   * caller's struct and is left alone. */
  req_init(&r, idev);
  r.c.size = 32;
  r.c.out_capabilities = 0x5a5a5a5a5a5a5a5aULL;
  check_rc("size_min", info_raw(fd, &r), OK);
  check_u64("size_min", "data_len", r.c.data_len, 8);
  check_u64("size_min", "out_data_type", r.c.in_data_type, IOMMU_HW_INFO_TYPE_SELFTEST);
  check_u64("size_min", "out_max_pasid_log2", r.c.out_max_pasid_log2, 0);
  check_u64("size_min", "out_capabilities_untouched", r.c.out_capabilities, 0x5a5a5a5a5a5a5a5aULL);

  req_init(&r, idev);
  r.c.size = sizeof(r.bytes);
  memset(r.bytes + sizeof(r.c), 0, sizeof(r.bytes) - sizeof(r.c));
  check_rc("size_larger_zero_tail", info_raw(fd, &r), OK);
  check_out("size_larger_zero_tail", &r, 8, IOMMU_HW_INFO_TYPE_SELFTEST, caps_normal, 0);
  /* The kernel writes back only its own struct: the tail stays as the caller left it (zero). */
  check_u64("size_larger_zero_tail", "tail_byte", r.bytes[sizeof(r.c)], 0);

  req_init(&r, idev);
  r.c.size = sizeof(r.bytes);
  r.bytes[50] = 1;
  check_rc("size_larger_nonzero_tail", info_raw(fd, &r), ERR(E2BIG));

  req_init(&r, idev);
  r.c.flags = 1u << 1;
  check_rc("flags_unknown", info_raw(fd, &r), ERR(EOPNOTSUPP));
  req_init(&r, idev);
  r.c.flags = 1u << 31;
  check_rc("flags_unknown_bit31", info_raw(fd, &r), ERR(EOPNOTSUPP));
  req_init(&r, idev);
  r.c.__reserved[0] = 1;
  check_rc("reserved0_nonzero", info_raw(fd, &r), ERR(EOPNOTSUPP));
  req_init(&r, idev);
  r.c.__reserved[2] = 0x80;
  check_rc("reserved2_nonzero", info_raw(fd, &r), ERR(EOPNOTSUPP));

  /* dev_id must name a bound device. */
  check_rc("dev_unknown", info_query(fd, 9999, NULL, 0, &r), ERR(ENOENT));
  check_rc("dev_zero", info_query(fd, 0, NULL, 0, &r), ERR(ENOENT));
  check_rc("dev_is_ioas", info_query(fd, ioas, NULL, 0, &r), ERR(ENOENT));
  check_rc("dev_is_selftest_object", info_query(fd, stdev, NULL, 0, &r), ERR(ENOENT));
  check_rc("dev_is_hwpt", info_query(fd, hwpt, NULL, 0, &r), ERR(ENOENT));

  /* The order: flags, then __reserved, both before the device lookup; the driver's type check after it. */
  req_init(&r, 9999);
  r.c.flags = 1u << 1;
  r.c.__reserved[1] = 1;
  check_rc("order_flags_first", info_raw(fd, &r), ERR(EOPNOTSUPP));
  req_init(&r, 9999);
  r.c.__reserved[1] = 1;
  check_rc("order_reserved_before_device", info_raw(fd, &r), ERR(EOPNOTSUPP));
  req_init(&r, 9999);
  r.c.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
  r.c.in_data_type = IOMMU_HW_INFO_TYPE_SELFTEST + 1;
  check_rc("order_device_before_type", info_raw(fd, &r), ERR(ENOENT));
  /* An unmapped buffer is only touched once the driver's data is in hand. */
  check_rc("order_device_before_buffer", info_query(fd, 9999, unmapped_page(), 8, &r), ERR(ENOENT));

  /* ---- the driver's data ---------------------------------------------------------------------------- */
  /* No buffer: only the length the driver has is reported. */
  check_rc("query_len0", info_query(fd, idev, NULL, 0, &r), OK);
  check_out("query_len0", &r, 8, IOMMU_HW_INFO_TYPE_SELFTEST, caps_normal, 0);
  /* Length 0 copies nothing, so even an unmapped pointer is fine. */
  check_rc("query_len0_unmapped", info_query(fd, idev, unmapped_page(), 0, &r), OK);
  check_u64("query_len0_unmapped", "data_len", r.c.data_len, 8);

  struct iommu_test_hw_info hi;
  memset(&hi, 0xa5, sizeof(hi));
  check_rc("data_exact", info_query(fd, idev, &hi, sizeof(hi), &r), OK);
  check_u64("data_exact", "data_len", r.c.data_len, 8);
  check_u64("data_exact", "flags", hi.flags, 0);
  check_u64("data_exact", "test_reg", hi.test_reg, IOMMU_HW_INFO_SELFTEST_REGVAL);

  /* A shorter buffer gets the first bytes only; the rest of the caller's memory is untouched, and data_len
   * still says 8. */
  memset(&hi, 0xa5, sizeof(hi));
  check_rc("data_short4", info_query(fd, idev, &hi, 4, &r), OK);
  check_u64("data_short4", "data_len", r.c.data_len, 8);
  check_u64("data_short4", "flags", hi.flags, 0);
  check_u64("data_short4", "test_reg_untouched", hi.test_reg, 0xa5a5a5a5u);

  /* A longer buffer: the data, then zeros to the end of it. */
  uint8_t big[24];
  memset(big, 0xff, sizeof(big));
  check_rc("data_long16", info_query(fd, idev, big, 16, &r), OK);
  check_u64("data_long16", "data_len", r.c.data_len, 8);
  uint32_t w0, w1;
  uint64_t tail, beyond;
  memcpy(&w0, big, 4);
  memcpy(&w1, big + 4, 4);
  memcpy(&tail, big + 8, 8);
  memcpy(&beyond, big + 16, 8);
  check_u64("data_long16", "flags", w0, 0);
  check_u64("data_long16", "test_reg", w1, IOMMU_HW_INFO_SELFTEST_REGVAL);
  check_u64("data_long16", "bytes_8_15", tail, 0);
  check_u64("data_long16", "bytes_16_23_untouched", beyond, UINT64_MAX);

  check_rc("data_unmapped", info_query(fd, idev, unmapped_page(), 8, &r), ERR(EFAULT));
  /* The data fits in mapped memory but the zeroing runs into an unmapped page. */
  uint8_t* two =
      (uint8_t*)mmap(NULL, 2 * PAGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  require("two_pages", two != MAP_FAILED && mprotect(two + PAGE_SZ, PAGE_SZ, PROT_NONE) == 0);
  memset(two + PAGE_SZ - 8, 0xff, 8);
  check_rc("data_zeroing_faults", info_query(fd, idev, two + PAGE_SZ - 8, 16, &r), ERR(EFAULT));
  memcpy(&w1, two + PAGE_SZ - 4, 4);
  check_u64("data_zeroing_faults", "test_reg_copied", w1, IOMMU_HW_INFO_SELFTEST_REGVAL);

  /* ---- the requested type (IOMMU_HW_INFO_FLAG_INPUT_TYPE) -------------------------------------------- */
  req_init(&r, idev);
  r.c.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
  r.c.in_data_type = IOMMU_HW_INFO_TYPE_SELFTEST;
  check_rc("input_type_selftest", info_raw(fd, &r), OK);
  check_out("input_type_selftest", &r, 8, IOMMU_HW_INFO_TYPE_SELFTEST, caps_normal, 0);
  req_init(&r, idev);
  r.c.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
  r.c.in_data_type = IOMMU_HW_INFO_TYPE_SELFTEST + 1;
  check_rc("input_type_other", info_raw(fd, &r), ERR(EOPNOTSUPP));
  req_init(&r, idev);
  r.c.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
  r.c.in_data_type = 1;
  check_rc("input_type_1", info_raw(fd, &r), ERR(EOPNOTSUPP));
  req_init(&r, idev);
  r.c.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
  r.c.in_data_type = IOMMU_HW_INFO_TYPE_DEFAULT;
  check_rc("input_type_default", info_raw(fd, &r), OK);
  check_out("input_type_default", &r, 8, IOMMU_HW_INFO_TYPE_SELFTEST, caps_normal, 0);
  /* Without the flag the field is reset to DEFAULT before the driver sees it. */
  req_init(&r, idev);
  r.c.in_data_type = IOMMU_HW_INFO_TYPE_SELFTEST + 1;
  check_rc("input_type_ignored", info_raw(fd, &r), OK);
  check_out("input_type_ignored", &r, 8, IOMMU_HW_INFO_TYPE_SELFTEST, caps_normal, 0);

  /* ---- capabilities per device kind ----------------------------------------------------------------- */
  uint32_t stdev_nd = 0, idev_nd = 0;
  check_rc("no_dirty_device",
           mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_NO_DIRTY, &stdev_nd, NULL, &idev_nd), OK);
  check_rc("no_dirty_info", info_query(fd, idev_nd, NULL, 0, &r), OK);
  check_out("no_dirty_info", &r, 8, IOMMU_HW_INFO_TYPE_SELFTEST, IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED, 0);

  /* A PASID-capable mock device reports its 20-bit PASID width; it is not PCI, so no PASID exec/priv
   * bits. */
  uint32_t stdev_p = 0, idev_p = 0;
  check_rc("pasid_device", mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_PASID, &stdev_p, NULL, &idev_p), OK);
  check_rc("pasid_info", info_query(fd, idev_p, NULL, 0, &r), OK);
  check_out("pasid_info", &r, 8, IOMMU_HW_INFO_TYPE_SELFTEST, caps_normal, MOCK_PASID_WIDTH);

  uint32_t stdev_both = 0, idev_both = 0;
  check_rc("no_dirty_pasid_device",
           mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_PASID, &stdev_both,
                             NULL, &idev_both),
           OK);
  check_rc("no_dirty_pasid_info", info_query(fd, idev_both, NULL, 0, &r), OK);
  check_out("no_dirty_pasid_info", &r, 8, IOMMU_HW_INFO_TYPE_SELFTEST, IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED,
            MOCK_PASID_WIDTH);

  /* Device flags the mock does not know are refused (selftest.c mock_dev_create()). */
  check_rc("device_flag_bit1", mock_domain_flags(fd, ioas, 1u << 1, NULL, NULL, NULL), ERR(EINVAL));
  check_rc("device_flag_bit5", mock_domain_flags(fd, ioas, 1u << 5, NULL, NULL, NULL), ERR(EINVAL));
  check_rc("device_flag_bit1_with_known",
           mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_PASID | (1u << 1), NULL, NULL, NULL), ERR(EINVAL));
  /* The refused devices left nothing: the next object takes the next id after the 10 made so far. */
  uint32_t next = 0;
  check_rc("device_flag_next_id", ioas_alloc(fd, &next), OK);
  check_u64("device_flag_next_id", "id", next, 11);
  check_rc("device_flag_next_id_destroy", destroy_id(fd, next), OK);
  /* A device that is gone has no info. */
  check_rc("destroy_pasid_device", destroy_id(fd, stdev_p), OK);
  check_rc("gone_device_info", info_query(fd, idev_p, NULL, 0, &r), ERR(ENOENT));

  check_rc("destroy_no_dirty_pasid_device", destroy_id(fd, stdev_both), OK);
  check_rc("destroy_no_dirty_device", destroy_id(fd, stdev_nd), OK);
  check_rc("destroy_device", destroy_id(fd, stdev), OK);
  check_rc("destroy_ioas", destroy_id(fd, ioas), OK);
  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
