/* Dirty tracking: IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_HWPT_GET_DIRTY_BITMAP and the mock's
 * IOMMU_TEST_OP_DIRTY, plus what the VFIO compat layer answers for dirty requests.
 *
 * Kernel references: hw_pagetable.c iommufd_hwpt_set_dirty_tracking() and iommufd_hwpt_get_dirty_bitmap();
 * io_pagetable.c iopt_set_dirty_tracking() (enabling first clears every dirty bit),
 * iommufd_check_iova_range(), iopt_read_and_clear_dirty_data() and __iommu_read_and_clear_dirty() (walks the
 * areas contiguous from the start IOVA; the walk's result is thrown away, so holes and unwritable bitmaps
 * still succeed); iova_bitmap.c (the user bitmap is pinned lazily, only when a bit is to be set, and a failed
 * pin drops the bit); selftest.c iommufd_test_dirty() and mock_domain_set_dirty_tracking(); generic_pt
 * iommu_pt.h record_dirty() and fmt/amdv1.h (the mock page table: 2 KiB items, a 4 KiB mapping is one
 * contiguous entry of two items, and a dirty contiguous entry walked from its first item is reported one item
 * short).
 *
 * Every mapping whose dirty bits are read is laid out so that the mock's leaf entries do not depend on the
 * physical contiguity of the buffer: an IOAS with IOMMU_OPTION_HUGE_PAGES=0 maps every 4 KiB page on its own
 * (one 4 KiB entry of two 2 KiB items), an area at an IOVA that is 2 KiB but not 4 KiB aligned can only get
 * single 2 KiB items, and the MOCK_IOMMUPT_HUGE table only has 4 KiB and 1 MiB leaves (our areas there are
 * far below 1 MiB). On the default table with large pages allowed, physically contiguous pages become larger
 * contiguous entries, so those steps check only the bit of the dirty page itself, which is set either way.
 *
 * No request here starts at the second item of a dirty contiguous entry: on Linux 7.2.13 that makes
 * record_dirty() pass a zero length to iova_bitmap_set(), which then loops forever in the kernel. */
#include "abi.h"

static int fd;

/* The bitmap area: its own pages, so a kernel write past a bitmap can only land here. */
static uint8_t* bmp;
#define BMP_SZ (2 * PAGE_SZ)

static uint64_t load64(const void* p) {
  uint64_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

/* GET_DIRTY_BITMAP into `data`, whose first nwords 64-bit words are first filled with `fill`; checks the
 * result and then every one of those words (as hex). */
static void get_check(const char* step, uint32_t hwpt, uint32_t flags, uint64_t iova, uint64_t len,
                      uint64_t ps, void* data, uint64_t fill, int want_rc, int nwords, const uint64_t* want) {
  for (int i = 0; i < nwords; i++) memcpy((uint8_t*)data + 8 * i, &fill, 8);
  check_rc(step, hwpt_get_dirty_bitmap(fd, hwpt, flags, iova, len, ps, data), want_rc);
  for (int i = 0; i < nwords; i++) {
    char field[16];
    snprintf(field, sizeof(field), "w%d", i);
    check_u64(step, field, load64((uint8_t*)data + 8 * i), want[i]);
  }
}
#define WORDS(...) \
  (int)(sizeof((const uint64_t[]){__VA_ARGS__}) / 8), (const uint64_t[]) { __VA_ARGS__ }
/* Zero-filled bitmap in the bitmap area, NO_CLEAR or clearing. */
#define PEEK(step, hwpt, iova, len, ps, ...) \
  get_check(step, hwpt, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, iova, len, ps, bmp, 0, OK, WORDS(__VA_ARGS__))
#define TAKE(step, hwpt, iova, len, ps, ...) \
  get_check(step, hwpt, 0, iova, len, ps, bmp, 0, OK, WORDS(__VA_ARGS__))

/* TEST_OP_DIRTY of the units listed (unit i = [iova + i*ps, iova + (i+1)*ps)) out of `nunits`; checks the
 * result and out_nr_dirty. */
static void mark(const char* step, uint32_t hwpt, uint64_t iova, uint64_t ps, uint64_t nunits, int n,
                 const int* idx) {
  uint64_t bits[16] = {0}, nr = ~0ULL;
  for (int i = 0; i < n; i++) bits[idx[i] / 64] |= 1ULL << (idx[i] % 64);
  check_rc(step, mock_set_dirty(fd, hwpt, iova, nunits * ps, ps, bits, &nr), OK);
  check_u64(step, "out_nr_dirty", nr, (uint64_t)n);
}
#define MARK(step, hwpt, iova, ps, nunits, ...)                                               \
  mark(step, hwpt, iova, ps, nunits, (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int)), \
       (const int[]){__VA_ARGS__})

/* SET_DIRTY_TRACKING / GET_DIRTY_BITMAP with a raw size and a tail after the struct. */
static int set_raw(uint32_t size, uint32_t flags, uint32_t hwpt, uint32_t reserved, uint64_t tail) {
  struct {
    struct iommu_hwpt_set_dirty_tracking c;
    uint64_t tail;
  } b = {{.size = size, .flags = flags, .hwpt_id = hwpt, .__reserved = reserved}, tail};
  return abi_ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &b);
}
static int get_raw(uint32_t size, uint32_t flags, uint32_t hwpt, uint32_t reserved, uint64_t tail,
                   uint64_t iova, uint64_t len, uint64_t ps, void* data) {
  struct {
    struct iommu_hwpt_get_dirty_bitmap c;
    uint64_t tail;
  } b = {{.size = size,
          .hwpt_id = hwpt,
          .flags = flags,
          .__reserved = reserved,
          .iova = iova,
          .length = len,
          .page_size = ps,
          .data = (uintptr_t)data},
         tail};
  return abi_ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &b);
}

static int set_huge_pages(uint32_t ioas, uint64_t val) { return ioas_set_huge_pages(fd, ioas, val); }

static void map_at(const char* step, uint32_t ioas, const void* va, uint64_t len, uint64_t iova) {
  require(step, check_rc(step, ioas_map(fd, ioas, va, len, &iova, 1), OK));
}

/* ---- VFIO compat ------------------------------------------------------------------------------------------
 */
struct vfio_iommu_type1_dirty_bitmap {
  uint32_t argsz;
  uint32_t flags;
};
enum {
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2,
};
enum { VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2 };

static int vfio_unmap(int vfd, uint32_t argsz, uint32_t flags, uint64_t iova, uint64_t size) {
  uint8_t raw[64] = {0};
  struct vfio_iommu_type1_dma_unmap u = {.argsz = argsz, .flags = flags, .iova = iova, .size = size};
  memcpy(raw, &u, sizeof(u));
  return abi_ioctl(vfd, VFIO_IOMMU_UNMAP_DMA, raw);
}

static void vfio_dirty_steps(const char* prefix, int vfd) {
  char name[96];
  static const uint32_t fl[] = {VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
                                VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP};
  static const char* const fn[] = {"start", "stop", "get_bitmap"};
  for (int i = 0; i < 3; i++) {
    struct vfio_iommu_type1_dirty_bitmap d = {.argsz = sizeof(d), .flags = fl[i]};
    snprintf(name, sizeof(name), "%s_dirty_pages_%s", prefix, fn[i]);
    check_rc(name, abi_ioctl(vfd, VFIO_IOMMU_DIRTY_PAGES, &d), ERR(ENOTTY));
  }
  snprintf(name, sizeof(name), "%s_dirty_pages_null_arg", prefix);
  check_rc(name, abi_ioctl(vfd, VFIO_IOMMU_DIRTY_PAGES, NULL), ERR(ENOTTY));
  /* iommufd_vfio_unmap_dma(): only VFIO_DMA_UNMAP_FLAG_ALL is supported; the flags are refused before the
   * compat IOAS is looked up. */
  snprintf(name, sizeof(name), "%s_unmap_get_dirty_bitmap", prefix);
  check_rc(name, vfio_unmap(vfd, 24, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, 0x100000, 0x1000), ERR(EINVAL));
  snprintf(name, sizeof(name), "%s_unmap_get_dirty_bitmap_argsz48", prefix);
  check_rc(name, vfio_unmap(vfd, 48, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, 0x100000, 0x1000), ERR(EINVAL));
  snprintf(name, sizeof(name), "%s_unmap_get_dirty_bitmap_all", prefix);
  check_rc(name, vfio_unmap(vfd, 24, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL, 0, 0),
           ERR(EINVAL));
}

static void vfio_steps(void) {
  int vfd = open_iommufd();
  vfio_dirty_steps("vfio_no_ioas", vfd);
  /* Without a compat IOAS a plain unmap gets ENODEV: the EINVAL above is the flag check. */
  check_rc("vfio_no_ioas_unmap_plain", vfio_unmap(vfd, 24, 0, 0x100000, 0x1000), ERR(ENODEV));
  /* VFIO defines no dirty-tracking extension; iommufd_vfio_check_extension() answers 1 only for TYPE1,
   * TYPE1v2 and UNMAP_ALL (and for DMA_CC with an IOAS). */
  static const unsigned long ext[] = {2, 5, 7, 10, 11, 12};
  for (int i = 0; i < 6; i++) {
    char name[64];
    snprintf(name, sizeof(name), "vfio_ext_%lu", ext[i]);
    check_rc(name, abi_ioctl(vfd, VFIO_CHECK_EXTENSION, (void*)ext[i]), 0);
  }
  uint32_t ioas = 0;
  require("vfio_ioas_alloc", ioas_alloc(vfd, &ioas) == 0);
  struct iommu_vfio_ioas v = {.size = sizeof(v), .ioas_id = ioas, .op = IOMMU_VFIO_IOAS_SET};
  require("vfio_ioas_set", check_rc("vfio_ioas_set", abi_ioctl(vfd, IOMMU_VFIO_IOAS, &v), OK));
  check_rc("vfio_set_iommu", abi_ioctl(vfd, VFIO_SET_IOMMU, (void*)(unsigned long)VFIO_TYPE1v2_IOMMU), 0);
  vfio_dirty_steps("vfio_ioas", vfd);
  /* GET_INFO: the capability chain has no migration (dirty-logging) capability. */
  union {
    struct vfio_iommu_type1_info info;
    uint8_t raw[256];
  } u;
  memset(&u, 0, sizeof(u));
  u.info.argsz = sizeof(u);
  check_rc("vfio_get_info", abi_ioctl(vfd, VFIO_IOMMU_GET_INFO, &u), OK);
  uint64_t ids = 0;
  for (uint32_t off = u.info.cap_offset, n = 0; off && off + 8 <= sizeof(u) && n < 8; n++) {
    struct vfio_info_cap_header h;
    memcpy(&h, u.raw + off, sizeof(h));
    if (h.id < 64) ids |= 1ULL << h.id;
    off = h.next;
  }
  check_u64("vfio_get_info", "cap_ids", ids,
            (1ULL << VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) | (1ULL << VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL));
  check_u64("vfio_get_info", "migration_cap", (ids >> VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION) & 1, 0);
  check_rc("vfio_close", close(vfd) ? -errno : 0, OK);
}

int main(void) {
  fd = open_iommufd();
  uint8_t* buf = (uint8_t*)alloc_buffer(64 * PAGE_SZ);
  bmp = (uint8_t*)mmap(NULL, BMP_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  require("bitmap_mmap", bmp != MAP_FAILED);
  memset(bmp, 0, BMP_SZ);

  /* ---- set-up ------------------------------------------------------------------------------------------ */
  /* ioas_a: large pages allowed, a mock device (its automatic HWPT has no dirty ops) and HWPTs made with
   * HWPT_ALLOC; ioas_s: IOMMU_OPTION_HUGE_PAGES=0, set before any domain or area. */
  uint32_t ioas_a = 0, ioas_s = 0, stdev = 0, auto_hwpt = 0, idev = 0;
  require("alloc_ioas_a", ioas_alloc(fd, &ioas_a) == 0);
  require("alloc_ioas_s", ioas_alloc(fd, &ioas_s) == 0);
  require("mock_domain", check_rc("mock_domain", mock_domain(fd, ioas_a, &stdev, &auto_hwpt, &idev), OK));
  require("ioas_s_no_huge_pages", check_rc("ioas_s_no_huge_pages", set_huge_pages(ioas_s, 0), OK));
  uint32_t sh = 0, sh2 = 0, ph = 0, dh = 0, npd = 0, nh = 0;
  require("alloc_sh",
          check_rc("alloc_sh", hwpt_alloc(fd, idev, ioas_s, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &sh), OK));
  require("alloc_sh2",
          check_rc("alloc_sh2", hwpt_alloc(fd, idev, ioas_s, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &sh2), OK));
  require("alloc_plain", check_rc("alloc_plain", hwpt_alloc(fd, idev, ioas_a, 0, &ph), OK));
  require("alloc_dh",
          check_rc("alloc_dh", hwpt_alloc(fd, idev, ioas_a, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &dh), OK));
  require("alloc_nest_parent",
          check_rc("alloc_nest_parent",
                   hwpt_alloc(fd, idev, ioas_a,
                              IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &npd),
                   OK));
  require("alloc_nested", check_rc("alloc_nested", hwpt_alloc_nested(fd, idev, npd, 0, 0, &nh), OK));
  /* The IOVA alignment GET_DIRTY_BITMAP checks against: 2 KiB with the mock's 2 KiB items, a page when
   * large pages are off (io_pagetable.c iopt_calculate_iova_alignment()). */
  uint64_t align = 0;
  uint32_t num = 0;
  struct iommu_iova_range rg[4];
  check_rc("ioas_a_alignment", iova_ranges(fd, ioas_a, rg, 4, &num, &align), OK);
  check_u64("ioas_a_alignment", "out_iova_alignment", align, MOCK_PAGE_SZ);
  check_rc("ioas_s_alignment", iova_ranges(fd, ioas_s, rg, 4, &num, &align), OK);
  check_u64("ioas_s_alignment", "out_iova_alignment", align, PAGE_SZ);

  const uint64_t A = MOCK_APERTURE_START; /* ioas_s: 64 pages, buf[0..64) */
  map_at("map_a", ioas_s, buf, 64 * PAGE_SZ, A);

  /* ---- SET_DIRTY_TRACKING: struct, flags, object ------------------------------------------------------- */
  check_rc("set_size_short", set_raw(12, 0, sh, 0, 0), ERR(EINVAL));
  check_rc("set_size_tail_zero", set_raw(24, 0, sh, 0, 0), OK);
  check_rc("set_size_tail_nonzero", set_raw(24, 0, sh, 0, 1), ERR(E2BIG));
  /* __reserved is documented "must be 0" but iommufd_hwpt_set_dirty_tracking() never looks at it. */
  check_rc("set_reserved_ignored", set_raw(16, 0, sh, 0xffffffffu, 0), OK);
  check_rc("set_flags_unknown", set_raw(16, 2, sh, 0, 0), ERR(EOPNOTSUPP));
  check_rc("set_flags_unknown_bad_id", set_raw(16, 3, 9999, 0, 0), ERR(EOPNOTSUPP));
  check_rc("set_unknown_id", hwpt_set_dirty_tracking(fd, 9999, IOMMU_HWPT_DIRTY_TRACKING_ENABLE),
           ERR(ENOENT));
  check_rc("set_ioas_id", hwpt_set_dirty_tracking(fd, ioas_s, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), ERR(ENOENT));
  check_rc("set_nested", hwpt_set_dirty_tracking(fd, nh, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), ERR(ENOENT));
  check_rc("set_device_id", hwpt_set_dirty_tracking(fd, idev, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), ERR(ENOENT));
  /* A paging HWPT made without IOMMU_HWPT_ALLOC_DIRTY_TRACKING has no dirty ops: both directions refused. */
  check_rc("set_auto_hwpt_enable", hwpt_set_dirty_tracking(fd, auto_hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE),
           ERR(EOPNOTSUPP));
  check_rc("set_auto_hwpt_disable", hwpt_set_dirty_tracking(fd, auto_hwpt, 0), ERR(EOPNOTSUPP));
  check_rc("set_plain_hwpt_enable", hwpt_set_dirty_tracking(fd, ph, IOMMU_HWPT_DIRTY_TRACKING_ENABLE),
           ERR(EOPNOTSUPP));
  check_rc("set_plain_hwpt_disable", hwpt_set_dirty_tracking(fd, ph, 0), ERR(EOPNOTSUPP));
  check_rc("set_nest_parent_enable", hwpt_set_dirty_tracking(fd, npd, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK);
  check_rc("set_nest_parent_disable", hwpt_set_dirty_tracking(fd, npd, 0), OK);
  /* Disabling when off, enabling twice, disabling twice: all succeed. */
  check_rc("set_disable_when_off", hwpt_set_dirty_tracking(fd, sh, 0), OK);
  check_rc("set_enable", hwpt_set_dirty_tracking(fd, sh, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK);
  check_rc("set_enable_again", hwpt_set_dirty_tracking(fd, sh, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK);
  check_rc("set_disable", hwpt_set_dirty_tracking(fd, sh, 0), OK);
  check_rc("set_disable_again", hwpt_set_dirty_tracking(fd, sh, 0), OK);
  /* A device that cannot track dirty pages cannot join a HWPT that has dirty ops (selftest.c
   * mock_domain_nop_attach()). */
  check_rc("no_dirty_device_attach", mock_domain_flags(fd, sh, MOCK_FLAGS_DEVICE_NO_DIRTY, NULL, NULL, NULL),
           ERR(EINVAL));

  /* ---- TEST_OP_DIRTY ----------------------------------------------------------------------------------- */
  uint64_t one = 1, nr = 0;
  void* hole = unmapped_page();
  /* Argument checks come first (EINVAL), then the bit count (EOVERFLOW above 16M * 8 bits), then the HWPT,
   * then whether it is tracking, and only then is the bitmap read. */
  check_rc("td_page_size_zero", mock_set_dirty(fd, sh, A, PAGE_SZ, 0, &one, &nr), ERR(EINVAL));
  check_rc("td_length_zero", mock_set_dirty(fd, sh, A, 0, PAGE_SZ, &one, &nr), ERR(EINVAL));
  check_rc("td_iova_unaligned", mock_set_dirty(fd, sh, A + MOCK_PAGE_SZ, PAGE_SZ, PAGE_SZ, &one, &nr),
           ERR(EINVAL));
  check_rc("td_length_unaligned", mock_set_dirty(fd, sh, A, PAGE_SZ + MOCK_PAGE_SZ, PAGE_SZ, &one, &nr),
           ERR(EINVAL));
  check_rc("td_null_uptr", mock_set_dirty(fd, sh, A, PAGE_SZ, PAGE_SZ, NULL, &nr), ERR(EINVAL));
  check_rc("td_null_uptr_unknown_id", mock_set_dirty(fd, 9999, A, PAGE_SZ, PAGE_SZ, NULL, &nr), ERR(EINVAL));
  check_rc("td_too_many_bits", mock_set_dirty(fd, 9999, 0, (1ULL << 27) + 1, 1, &one, &nr), ERR(EOVERFLOW));
  check_rc("td_max_bits_unknown_id", mock_set_dirty(fd, 9999, 0, 1ULL << 27, 1, &one, &nr), ERR(ENOENT));
  check_rc("td_unknown_id", mock_set_dirty(fd, 9999, A, PAGE_SZ, PAGE_SZ, &one, &nr), ERR(ENOENT));
  check_rc("td_ioas_id", mock_set_dirty(fd, ioas_s, A, PAGE_SZ, PAGE_SZ, &one, &nr), ERR(ENOENT));
  check_rc("td_nested", mock_set_dirty(fd, nh, A, PAGE_SZ, PAGE_SZ, &one, &nr), ERR(ENOENT));
  check_rc("td_device_id", mock_set_dirty(fd, idev, A, PAGE_SZ, PAGE_SZ, &one, &nr), ERR(ENOENT));
  check_rc("td_auto_hwpt", mock_set_dirty(fd, auto_hwpt, A, PAGE_SZ, PAGE_SZ, &one, &nr), ERR(EINVAL));
  check_rc("td_plain_hwpt", mock_set_dirty(fd, ph, A, PAGE_SZ, PAGE_SZ, &one, &nr), ERR(EINVAL));
  check_rc("td_tracking_off", mock_set_dirty(fd, sh, A, PAGE_SZ, PAGE_SZ, &one, &nr), ERR(EINVAL));
  check_rc("td_tracking_off_bad_uptr", mock_set_dirty(fd, sh, A, PAGE_SZ, PAGE_SZ, hole, &nr), ERR(EINVAL));
  require("enable_sh",
          check_rc("enable_sh", hwpt_set_dirty_tracking(fd, sh, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK));
  check_rc("td_bad_uptr", mock_set_dirty(fd, sh, A, PAGE_SZ, PAGE_SZ, hole, &nr), ERR(EFAULT));
  uint64_t zero = 0;
  nr = 7;
  check_rc("td_no_bits", mock_set_dirty(fd, sh, A, 64 * PAGE_SZ, PAGE_SZ, &zero, &nr), OK);
  check_u64("td_no_bits", "out_nr_dirty", nr, 0);
  /* out_nr_dirty counts the bits asked for, mapped or not: an IOVA with no mapping (or beyond what the table
   * can address) is silently skipped. */
  MARK("td_unmapped_iova", sh, A + 0x10000000, PAGE_SZ, 1, 0);
  MARK("td_beyond_table", sh, 1ULL << 60, PAGE_SZ, 1, 0);
  PEEK("td_unmapped_nothing_at_a", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0, 0);
  /* A page_size that is not a power of two is fine, as long as iova is a multiple of it: units of 6 KiB
   * from A + 2K mark A + 2K (the second half of page 0), A + 8K (page 2) and A + 20K (page 5). */
  check_rc("td_page_size_6k_unaligned", mock_set_dirty(fd, sh, A, 0xc000, 3 * MOCK_PAGE_SZ, &one, &nr),
           ERR(EINVAL));
  MARK("td_page_size_6k", sh, A + MOCK_PAGE_SZ, 3 * MOCK_PAGE_SZ, 8, 0, 1, 3);
  TAKE("td_page_size_6k_read", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0x25, 0);

  /* ---- GET_DIRTY_BITMAP: struct, flags, object, range -------------------------------------------------- */
  check_rc("get_size_short", get_raw(40, 0, sh, 0, 0, A, PAGE_SZ, PAGE_SZ, bmp), ERR(EINVAL));
  check_rc("get_size_tail_zero", get_raw(56, 0, sh, 0, 0, A, PAGE_SZ, PAGE_SZ, bmp), OK);
  check_rc("get_size_tail_nonzero", get_raw(56, 0, sh, 0, 1, A, PAGE_SZ, PAGE_SZ, bmp), ERR(E2BIG));
  check_rc("get_flags_unknown", get_raw(48, 2, sh, 0, 0, A, PAGE_SZ, PAGE_SZ, bmp), ERR(EOPNOTSUPP));
  check_rc("get_reserved", get_raw(48, 0, sh, 1, 0, A, PAGE_SZ, PAGE_SZ, bmp), ERR(EOPNOTSUPP));
  check_rc("get_reserved_unknown_id", get_raw(48, 0, 9999, 1, 0, A, PAGE_SZ, PAGE_SZ, bmp), ERR(EOPNOTSUPP));
  check_rc("get_unknown_id", hwpt_get_dirty_bitmap(fd, 9999, 0, A, PAGE_SZ, PAGE_SZ, bmp), ERR(ENOENT));
  check_rc("get_ioas_id", hwpt_get_dirty_bitmap(fd, ioas_s, 0, A, PAGE_SZ, PAGE_SZ, bmp), ERR(ENOENT));
  check_rc("get_nested", hwpt_get_dirty_bitmap(fd, nh, 0, A, PAGE_SZ, PAGE_SZ, bmp), ERR(ENOENT));
  check_rc("get_device_id", hwpt_get_dirty_bitmap(fd, idev, 0, A, PAGE_SZ, PAGE_SZ, bmp), ERR(ENOENT));
  check_rc("get_unknown_id_bad_range", hwpt_get_dirty_bitmap(fd, 9999, 0, ~0ULL - 0xfff, 0x2000, 0, bmp),
           ERR(ENOENT));
  /* iommufd_check_iova_range(): iova + length - 1 must not wrap (EOVERFLOW, checked first: a zero length
   * wraps unless iova is 0), then iova and iova + length must be aligned to the IOAS's IOVA alignment, then
   * page_size must be non-zero, then iova and iova + length must be aligned to page_size, tested as
   * `x & (page_size - 1)`. */
  check_rc("get_overflow", hwpt_get_dirty_bitmap(fd, sh, 0, ~0ULL - 0xfff, 0x2000, PAGE_SZ, bmp),
           ERR(EOVERFLOW));
  check_rc("get_overflow_unaligned_no_page_size",
           hwpt_get_dirty_bitmap(fd, sh, 0, ~0ULL - 0x7ff, 0x2000, 0, bmp), ERR(EOVERFLOW));
  check_rc("get_length_zero", hwpt_get_dirty_bitmap(fd, sh, 0, A, 0, PAGE_SZ, bmp), ERR(EOVERFLOW));
  check_rc("get_iova_unaligned_ioas", hwpt_get_dirty_bitmap(fd, sh, 0, A + MOCK_PAGE_SZ, PAGE_SZ, 0, bmp),
           ERR(EINVAL));
  check_rc("get_length_unaligned_ioas",
           hwpt_get_dirty_bitmap(fd, sh, 0, A, PAGE_SZ + MOCK_PAGE_SZ, MOCK_PAGE_SZ, bmp), ERR(EINVAL));
  check_rc("get_page_size_zero", hwpt_get_dirty_bitmap(fd, sh, 0, A, PAGE_SZ, 0, bmp), ERR(EINVAL));
  check_rc("get_iova_unaligned_page_size", hwpt_get_dirty_bitmap(fd, sh, 0, A + PAGE_SZ, 0x4000, 0x2000, bmp),
           ERR(EINVAL));
  check_rc("get_length_unaligned_page_size", hwpt_get_dirty_bitmap(fd, sh, 0, A, 0x3000, 0x2000, bmp),
           ERR(EINVAL));
  check_rc("get_page_size_above_length", hwpt_get_dirty_bitmap(fd, sh, 0, A, 0x4000, 0x10000, bmp),
           ERR(EINVAL));
  /* page_size 0x3000: the mask is 0x2fff, so A + 0x3000 fails and A + 0x4000 passes. */
  check_rc("get_page_size_3000_rejected", hwpt_get_dirty_bitmap(fd, sh, 0, A, 0x3000, 0x3000, bmp),
           ERR(EINVAL));
  /* No dirty ops: the range is checked first, then EOPNOTSUPP. */
  check_rc("get_plain_hwpt", hwpt_get_dirty_bitmap(fd, ph, 0, A, PAGE_SZ, PAGE_SZ, bmp), ERR(EOPNOTSUPP));
  check_rc("get_plain_hwpt_bad_range", hwpt_get_dirty_bitmap(fd, ph, 0, A + 0x400, PAGE_SZ, PAGE_SZ, bmp),
           ERR(EINVAL));
  check_rc("get_plain_hwpt_whole_space", hwpt_get_dirty_bitmap(fd, ph, 0, 0, 0, PAGE_SZ, bmp),
           ERR(EOPNOTSUPP));
  check_rc("get_auto_hwpt", hwpt_get_dirty_bitmap(fd, auto_hwpt, 0, A, PAGE_SZ, PAGE_SZ, bmp),
           ERR(EOPNOTSUPP));
  /* A HWPT that has dirty ops answers whether or not tracking is on. */
  check_rc("get_nest_parent", hwpt_get_dirty_bitmap(fd, npd, 0, A, PAGE_SZ, PAGE_SZ, bmp), OK);
  check_rc("get_sh2_tracking_off", hwpt_get_dirty_bitmap(fd, sh2, 0, A, PAGE_SZ, PAGE_SZ, bmp), OK);
  /* iova 0 with length 0 passes every check (the range is the whole 64-bit space); ioas_s has nothing mapped
   * at 0, so nothing is reported. */
  get_check("get_whole_space", sh, 0, 0, 0, PAGE_SZ, bmp, 0, OK, WORDS(0));
  /* page_size below the IOAS alignment is accepted. */
  get_check("get_page_size_1k", sh, 0, A, PAGE_SZ, 0x400, bmp, 0, OK, WORDS(0));

  /* ---- granularity on ioas_s (every page one 4 KiB entry of two 2 KiB items) ----------------------------
   */
  /* A dirty entry is reported from its first item for one item less than the entry: the first 2 KiB of the
   * page, whichever half was marked. */
  MARK("gran_mark", sh, A, PAGE_SZ, 64, 0, 3, 17, 63);
  PEEK("gran_4k", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0x8000000000020009ULL, 0);
  PEEK("gran_2k", sh, A, 64 * PAGE_SZ, MOCK_PAGE_SZ, 0x400000041ULL, 0x4000000000000000ULL, 0);
  PEEK("gran_1k", sh, A, 64 * PAGE_SZ, 0x400, 0x3003, 0x30, 0, 0x3000000000000000ULL);
  PEEK("gran_8k", sh, A, 64 * PAGE_SZ, 0x2000, 0x80000103ULL);
  PEEK("gran_64k", sh, A, 64 * PAGE_SZ, 0x10000, 0xb);
  PEEK("gran_2m", sh, A, HUGE_SZ, HUGE_SZ, 0x1);
  /* page_size 0x3000 counts in 4 KiB units (the bit shift is its lowest set bit). */
  PEEK("gran_page_size_3000", sh, A, 0x4000, 0x3000, 0x9);
  PEEK("gran_sub_range", sh, A + 0x2000, 0x4000, PAGE_SZ, 0x2);
  TAKE("gran_take", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0x8000000000020009ULL, 0);
  PEEK("gran_after_take", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0, 0);

  /* Halves: only the second 2 KiB of page 5 marked; then both halves of page 7. */
  MARK("half_mark_second", sh, A, MOCK_PAGE_SZ, 128, 11);
  PEEK("half_second_2k", sh, A, 64 * PAGE_SZ, MOCK_PAGE_SZ, 0x400, 0);
  PEEK("half_second_1k", sh, A, 64 * PAGE_SZ, 0x400, 0x300000, 0);
  TAKE("half_second_4k", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0x20);
  MARK("half_mark_both", sh, A, MOCK_PAGE_SZ, 128, 14, 15);
  TAKE("half_both_2k", sh, A, 64 * PAGE_SZ, MOCK_PAGE_SZ, 0x4000, 0);
  PEEK("half_after_take", sh, A, 64 * PAGE_SZ, MOCK_PAGE_SZ, 0, 0);

  /* ---- where the bitmap is ------------------------------------------------------------------------------
   */
  MARK("place_mark", sh, A, PAGE_SZ, 64, 0, 31, 32, 63);
  const uint64_t want = 0x8000000180000001ULL;
  /* 3 bytes into the bitmap area: the bits are laid out from the given address; the bytes around are kept. */
  memset(bmp, 0x5a, 16);
  check_rc(
      "place_plus3",
      hwpt_get_dirty_bitmap(fd, sh, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, A, 64 * PAGE_SZ, PAGE_SZ, bmp + 3),
      OK);
  check_u64("place_plus3", "w0", load64(bmp + 3), want | 0x5a5a5a5a5a5a5a5aULL);
  check_u64("place_plus3", "before", load64(bmp) & 0xffffff, 0x5a5a5a);
  check_u64("place_plus3", "after", load64(bmp + 8) >> 24, 0x5a5a5a5a5aULL);
  memset(bmp, 0, 16);
  /* Across a page boundary: 4 bytes in each page. */
  get_check("place_cross_page", sh, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, A, 64 * PAGE_SZ, PAGE_SZ,
            bmp + PAGE_SZ - 4, 0, OK, WORDS(want));
  /* A pre-filled bitmap: bits are only ever set, never cleared. */
  get_check("place_prefilled_ones", sh, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, A, 64 * PAGE_SZ, PAGE_SZ, bmp,
            ~0ULL, OK, WORDS(~0ULL, ~0ULL));
  get_check("place_prefilled_pattern", sh, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, A, 64 * PAGE_SZ, PAGE_SZ,
            bmp, 0x0550000550000550ULL, OK, WORDS(0x0550000550000550ULL | want, 0x0550000550000550ULL));
  /* Pages that cannot be pinned for writing: the bits meant for them are dropped and the call succeeds. */
  uint8_t* two =
      (uint8_t*)mmap(NULL, 2 * PAGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  require("place_two_pages", two != MAP_FAILED);
  memset(two, 0, 2 * PAGE_SZ);
  munmap(two + PAGE_SZ, PAGE_SZ);
  check_rc("place_second_page_unmapped",
           hwpt_get_dirty_bitmap(fd, sh, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, A, 64 * PAGE_SZ, PAGE_SZ,
                                 two + PAGE_SZ - 4),
           OK);
  check_u64("place_second_page_unmapped", "low_half", load64(two + PAGE_SZ - 8) >> 32, 0x80000001ULL);
  uint8_t* two2 =
      (uint8_t*)mmap(NULL, 2 * PAGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  require("place_two_pages2", two2 != MAP_FAILED);
  memset(two2, 0, 2 * PAGE_SZ);
  munmap(two2, PAGE_SZ);
  check_rc("place_first_page_unmapped",
           hwpt_get_dirty_bitmap(fd, sh, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, A, 64 * PAGE_SZ, PAGE_SZ,
                                 two2 + PAGE_SZ - 4),
           OK);
  check_u64("place_first_page_unmapped", "high_half", load64(two2 + PAGE_SZ) & 0xffffffffULL, 0x80000001ULL);
  uint8_t* ro = (uint8_t*)mmap(NULL, PAGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  require("place_ro_page", ro != MAP_FAILED);
  memset(ro, 0, PAGE_SZ);
  mprotect(ro, PAGE_SZ, PROT_READ);
  check_rc("place_read_only",
           hwpt_get_dirty_bitmap(fd, sh, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, A, 64 * PAGE_SZ, PAGE_SZ, ro),
           OK);
  check_u64("place_read_only", "w0", load64(ro), 0);
  check_rc(
      "place_unmapped_no_clear",
      hwpt_get_dirty_bitmap(fd, sh, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, A, 64 * PAGE_SZ, PAGE_SZ, hole),
      OK);
  check_rc(
      "place_null_no_clear",
      hwpt_get_dirty_bitmap(fd, sh, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, A, 64 * PAGE_SZ, PAGE_SZ, NULL),
      OK);
  PEEK("place_still_dirty", sh, A, 64 * PAGE_SZ, PAGE_SZ, want);
  /* Without NO_CLEAR the dirty bits are cleared even though none could be written: they are lost. */
  check_rc("place_unmapped_clear", hwpt_get_dirty_bitmap(fd, sh, 0, A, 64 * PAGE_SZ, PAGE_SZ, hole), OK);
  PEEK("place_lost", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0);

  /* ---- areas and holes (ioas_s) -------------------------------------------------------------------------
   */
  /* The walk covers the areas that follow each other without a gap from the start IOVA; a hole ends it, a
   * start in a hole reports nothing, and none of that is an error. */
  const uint64_t H = A + 0x100000, J = A + 0x200000;
  map_at("map_h1", ioas_s, buf, 0x4000, H);
  map_at("map_h2", ioas_s, buf + 0x4000, 0x4000, H + 0x8000);
  MARK("hole_mark", sh, H, PAGE_SZ, 12, 1, 9);
  PEEK("hole_span", sh, H, 0xc000, PAGE_SZ, 0x2);
  PEEK("hole_start_in_hole", sh, H + 0x4000, 0x8000, PAGE_SZ, 0);
  PEEK("hole_second_area", sh, H + 0x8000, 0x4000, PAGE_SZ, 0x2);
  PEEK("hole_outside_areas", sh, H + 0x80000, 0x4000, PAGE_SZ, 0);
  PEEK("hole_past_area_end", sh, H + 0x8000, 0x8000, PAGE_SZ, 0x2);
  map_at("map_j1", ioas_s, buf, 0x4000, J);
  map_at("map_j2", ioas_s, buf + 0x4000, 0x4000, J + 0x4000);
  MARK("adjacent_mark", sh, J, PAGE_SZ, 8, 1, 5);
  PEEK("adjacent_both", sh, J, 0x8000, PAGE_SZ, 0x22);
  /* Unmap and map again: the new mapping starts clean. */
  check_rc("unmap_j1", ioas_unmap(fd, ioas_s, J, 0x4000, NULL), OK);
  PEEK("unmapped_start", sh, J, 0x8000, PAGE_SZ, 0);
  PEEK("unmapped_rest", sh, J + 0x4000, 0x4000, PAGE_SZ, 0x2);
  map_at("remap_j1", ioas_s, buf, 0x4000, J);
  PEEK("remapped", sh, J, 0x8000, PAGE_SZ, 0x20);

  /* ---- tracking off, enabling again, per HWPT -----------------------------------------------------------
   */
  TAKE("reset_a", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0);
  MARK("off_mark", sh, A, PAGE_SZ, 64, 9);
  check_rc("off_disable", hwpt_set_dirty_tracking(fd, sh, 0), OK);
  check_rc("off_mark_refused", mock_set_dirty(fd, sh, A, PAGE_SZ, PAGE_SZ, &one, &nr), ERR(EINVAL));
  /* Disabling keeps the dirty bits, and they are still read (and cleared) while tracking is off. */
  PEEK("off_still_reported", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0x200);
  TAKE("off_take", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0x200);
  PEEK("off_after_take", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0);
  check_rc("off_enable", hwpt_set_dirty_tracking(fd, sh, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK);
  MARK("stale_mark", sh, A, PAGE_SZ, 64, 10);
  check_rc("stale_disable", hwpt_set_dirty_tracking(fd, sh, 0), OK);
  check_rc("stale_enable", hwpt_set_dirty_tracking(fd, sh, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK);
  /* Enabling clears every dirty bit of every area first ... */
  PEEK("stale_cleared", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0);
  PEEK("stale_cleared_h", sh, H, 0x4000, PAGE_SZ, 0);
  /* ... also when tracking was already on. */
  MARK("again_mark", sh, A, PAGE_SZ, 64, 11);
  check_rc("again_enable", hwpt_set_dirty_tracking(fd, sh, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK);
  PEEK("again_cleared", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0);
  /* Tracking and dirty bits belong to each HWPT, not to the IOAS. */
  check_rc("other_hwpt_off", mock_set_dirty(fd, sh2, A, PAGE_SZ, PAGE_SZ, &one, &nr), ERR(EINVAL));
  check_rc("other_hwpt_enable", hwpt_set_dirty_tracking(fd, sh2, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK);
  MARK("other_hwpt_mark", sh, A, PAGE_SZ, 64, 12);
  PEEK("other_hwpt_clean", sh2, A, 64 * PAGE_SZ, PAGE_SZ, 0);
  TAKE("other_hwpt_own", sh, A, 64 * PAGE_SZ, PAGE_SZ, 0x1000);

  /* ---- single 2 KiB items: an area at an IOVA that is 2 KiB but not 4 KiB aligned (ioas_a, dh) ----------
   */
  check_rc("odd_enable", hwpt_set_dirty_tracking(fd, dh, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK);
  const uint64_t O = A + MOCK_PAGE_SZ;
  map_at("odd_map", ioas_a, buf + 8 * PAGE_SZ, 8 * PAGE_SZ, O);
  MARK("odd_mark", dh, O, MOCK_PAGE_SZ, 16, 0, 3, 5);
  PEEK("odd_2k", dh, O, 8 * PAGE_SZ, MOCK_PAGE_SZ, 0x29);
  PEEK("odd_1k", dh, O, 8 * PAGE_SZ, 0x400, 0xcc3);
  PEEK("odd_512", dh, O, 8 * PAGE_SZ, 0x200, 0xf0f00f);
  check_rc("odd_4k_unaligned", hwpt_get_dirty_bitmap(fd, dh, 0, O, 8 * PAGE_SZ, PAGE_SZ, bmp), ERR(EINVAL));
  PEEK("odd_sub_range", dh, O + 3 * MOCK_PAGE_SZ, 4 * MOCK_PAGE_SZ, MOCK_PAGE_SZ, 0x5);
  TAKE("odd_take", dh, O, 8 * PAGE_SZ, MOCK_PAGE_SZ, 0x29);
  PEEK("odd_after_take", dh, O, 8 * PAGE_SZ, MOCK_PAGE_SZ, 0);
  /* The other HWPTs of ioas_a see none of it (the automatic one cannot even be asked). */
  PEEK("odd_nest_parent_clean", npd, O, 8 * PAGE_SZ, MOCK_PAGE_SZ, 0);

  /* ---- plain pages on the default table with large pages allowed ----------------------------------------
   */
  /* How many neighbouring pages are reported with a dirty one depends on which pages happen to be physically
   * contiguous; the dirty page's own bit (its first 2 KiB) is set either way. */
  const uint64_t P = A + 0x100000;
  map_at("plain_map", ioas_a, buf + 16 * PAGE_SZ, 16 * PAGE_SZ, P);
  MARK("plain_mark", dh, P, PAGE_SZ, 16, 5);
  check_rc("plain_4k",
           hwpt_get_dirty_bitmap(fd, dh, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, P, 16 * PAGE_SZ, PAGE_SZ,
                                 memset(bmp, 0, 16)),
           OK);
  check_u64("plain_4k", "own_bit", (load64(bmp) >> 5) & 1, 1);
  check_rc("plain_2k", hwpt_get_dirty_bitmap(fd, dh, 0, P, 16 * PAGE_SZ, MOCK_PAGE_SZ, memset(bmp, 0, 16)),
           OK);
  check_u64("plain_2k", "own_bit", (load64(bmp) >> 10) & 1, 1);
  PEEK("plain_after_take", dh, P, 16 * PAGE_SZ, PAGE_SZ, 0);

  /* ---- the MOCK_IOMMUPT_HUGE table (4 KiB and 1 MiB leaves), plain pages at IOVA 0 --------------------- */
  uint32_t ioas_h = 0, hh = 0;
  require("alloc_ioas_h", ioas_alloc(fd, &ioas_h) == 0);
  struct iommu_hwpt_selftest huge = {.pagetable_type = MOCK_IOMMUPT_HUGE};
  require("alloc_huge", check_rc("alloc_huge",
                                 hwpt_alloc_full(fd, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, idev, ioas_h,
                                                 IOMMU_HWPT_DATA_SELFTEST, &huge, sizeof(huge), 0, &hh),
                                 OK));
  check_rc("huge_alignment", iova_ranges(fd, ioas_h, rg, 4, &num, &align), OK);
  check_u64("huge_alignment", "out_iova_alignment", align, PAGE_SZ);
  map_at("huge_map_zero", ioas_h, buf + 32 * PAGE_SZ, 4 * PAGE_SZ, 0);
  check_rc("huge_enable", hwpt_set_dirty_tracking(fd, hh, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK);
  MARK("huge_mark", hh, 0, MOCK_PAGE_SZ, 8, 3);
  PEEK("huge_2k", hh, 0, 4 * PAGE_SZ, MOCK_PAGE_SZ, 0x4);
  /* iova 0, length 0: the whole space, walked from the area at 0. */
  PEEK("huge_whole_space", hh, 0, 0, PAGE_SZ, 0x2, 0);
  TAKE("huge_whole_space_take", hh, 0, 0, MOCK_PAGE_SZ, 0x4, 0);
  PEEK("huge_after_take", hh, 0, 4 * PAGE_SZ, MOCK_PAGE_SZ, 0);

  /* ---- VFIO compat ---------------------------------------------------------------------------------------
   */
  vfio_steps();

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
