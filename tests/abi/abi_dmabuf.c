/* dma-buf: the selftest's mock exporter (IOMMU_TEST_OP_DMABUF_GET / DMABUF_REVOKE) and IOMMU_IOAS_MAP_FILE of
 * its fds.
 *
 * Kernel references: selftest.c iommufd_test_dmabuf_get() (length rounded up to pages, 1..512 pages, the fd
 * from dma_buf_fd(): O_CLOEXEC on the fd, the access mode and O_NONBLOCK on the file, nothing refused),
 * iommufd_test_dmabuf_revoke() (dma_buf_get(): EBADF / EINVAL; any non-zero `revoked`),
 * iommufd_test_dma_buf_iommufd_map() (ENODEV while revoked); io_pagetable.c iopt_map_file_pages() (length 0,
 * wrap, then dma_buf_get() before fget()), iopt_area_split() (EOPNOTSUPP), iopt_table_add_domain() /
 * iopt_fill_domain() (a revoked area is recorded, not mapped); pages.c iopt_alloc_dmabuf_pages() (the range
 * must end inside the buffer), iopt_revoke_notify() (every domain mapping goes, for good),
 * iopt_area_add_access() and iopt_pages_rw_access() (EINVAL); the selftest's dmabuf_simple and dmabuf_revoke
 * tests.
 *
 * Whether an area is in a domain is read through dirty tracking: the mock marks dirty only what it maps, and
 * GET_DIRTY_BITMAP reports only that. Those IOASes have IOMMU_OPTION_HUGE_PAGES=0, so every page is its own
 * 4 KiB entry whatever the buffer's physical layout (abi_dirty.c explains why that matters). */
#include "abi.h"

#define BUF_SZ (4 * PAGE_SZ)

static int fd;
static uint64_t bitmap_words[4];

/* A step for a DMABUF_GET whose fd is kept: prints 0 for any fd, so that fd numbers need not agree. */
static int get_fd(const char* step, uint32_t length, uint32_t open_flags) {
  int r = dmabuf_get(fd, length, open_flags);
  check_rc(step, r >= 0 ? 0 : r, OK);
  return r;
}

/* A dirty-tracking HWPT on `ioas` for the mock device `idev`, tracking enabled. */
static uint32_t tracking_hwpt(const char* step, uint32_t idev, uint32_t ioas) {
  uint32_t h = 0;
  require(step, check_rc(step, hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &h), OK));
  require(step, check_rc(step, hwpt_set_dirty_tracking(fd, h, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK));
  return h;
}

/* Marks every page of [iova, iova + npages pages) dirty in `hwpt`, reads the bitmap back (clearing it) and
 * checks it: `want` has bit i set when page i is mapped. */
static void mapped_pages(const char* step, uint32_t hwpt, uint64_t iova, int npages, uint64_t want) {
  uint64_t all = npages == 64 ? ~0ULL : (1ULL << npages) - 1, nr = 0;
  check_rc(step, mock_set_dirty(fd, hwpt, iova, (uint64_t)npages * PAGE_SZ, PAGE_SZ, &all, &nr), OK);
  memset(bitmap_words, 0, sizeof(bitmap_words));
  check_rc(step, hwpt_get_dirty_bitmap(fd, hwpt, 0, iova, (uint64_t)npages * PAGE_SZ, PAGE_SZ, bitmap_words),
           OK);
  check_u64(step, "bitmap", bitmap_words[0], want);
}

static void get_and_revoke_args(void) {
  check_rc("get_length_0", dmabuf_get(fd, 0, O_CLOEXEC), ERR(EINVAL));
  check_rc("get_length_too_big", dmabuf_get(fd, 512 * PAGE_SZ + 1, O_CLOEXEC), ERR(EINVAL));
  check_rc("get_length_u32_max", dmabuf_get(fd, 0xffffffffu, O_CLOEXEC), ERR(EINVAL));
  int big = get_fd("get_length_max", 512 * PAGE_SZ, O_CLOEXEC);
  if (big >= 0) close(big);

  /* The fd and file flags: O_CLOEXEC on the fd, the access mode and O_NONBLOCK on the file. */
  int f = get_fd("get_cloexec", 1, O_CLOEXEC);
  check_u64("get_cloexec", "FD_CLOEXEC", (uint64_t)(fcntl(f, F_GETFD) & FD_CLOEXEC), FD_CLOEXEC);
  check_u64("get_cloexec", "F_GETFL", (uint64_t)fcntl(f, F_GETFL), O_RDONLY);
  /* Rounded up to a page: a page maps, a byte more does not. */
  uint32_t ioas = 0;
  require("ioas_alloc", ioas_alloc(fd, &ioas) == 0);
  uint64_t iova = 0;
  check_rc("get_rounded_map_page", ioas_map_file(fd, ioas, MAP_RW, f, 0, PAGE_SZ, &iova), OK);
  check_rc("get_rounded_map_more", ioas_map_file(fd, ioas, MAP_RW, f, 0, PAGE_SZ + 1, &iova), ERR(EINVAL));
  /* Reading an O_RDONLY dma-buf: it has no read method. Any ioctl of ours: ENOTTY. */
  char byte;
  errno = 0;
  check_rc("read_rdonly", read(f, &byte, 1) < 0 ? -errno : 0, ERR(EINVAL));
  errno = 0;
  check_rc("write_rdonly", write(f, &byte, 1) < 0 ? -errno : 0, ERR(EBADF));
  struct iommu_ioas_alloc ia = {.size = sizeof(ia)};
  check_rc("iommufd_ioctl_on_dmabuf", abi_ioctl(f, IOMMU_IOAS_ALLOC, &ia), ERR(ENOTTY));
  close(f);

  f = get_fd("get_no_cloexec", PAGE_SZ, 0);
  check_u64("get_no_cloexec", "FD_CLOEXEC", (uint64_t)(fcntl(f, F_GETFD) & FD_CLOEXEC), 0);
  close(f);
  f = get_fd("get_rdwr_nonblock", PAGE_SZ, O_RDWR | O_NONBLOCK);
  check_u64("get_rdwr_nonblock", "F_GETFL", (uint64_t)fcntl(f, F_GETFL), O_RDWR | O_NONBLOCK);
  check_u64("get_rdwr_nonblock", "FD_CLOEXEC", (uint64_t)(fcntl(f, F_GETFD) & FD_CLOEXEC), 0);
  close(f);
  f = get_fd("get_wronly", PAGE_SZ, O_WRONLY | O_CLOEXEC);
  check_u64("get_wronly", "F_GETFL", (uint64_t)fcntl(f, F_GETFL), O_WRONLY);
  errno = 0;
  check_rc("read_wronly", read(f, &byte, 1) < 0 ? -errno : 0, ERR(EBADF));
  errno = 0;
  check_rc("write_wronly", write(f, &byte, 1) < 0 ? -errno : 0, ERR(EINVAL));
  close(f);
  /* Unknown bits are not refused. */
  f = get_fd("get_other_flags", PAGE_SZ, O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC);
  check_u64("get_other_flags", "F_GETFL", (uint64_t)fcntl(f, F_GETFL), O_RDONLY);
  close(f);

  /* DMABUF_REVOKE of what is not a dma-buf: dma_buf_get()'s EBADF and EINVAL. */
  check_rc("revoke_fd_negative", dmabuf_revoke(fd, -1, 1), ERR(EBADF));
  check_rc("revoke_fd_closed", dmabuf_revoke(fd, f, 1), ERR(EBADF));
  check_rc("revoke_fd_iommufd", dmabuf_revoke(fd, fd, 1), ERR(EINVAL));
  check_rc("revoke_fd_stdout", dmabuf_revoke(fd, 1, 1), ERR(EINVAL));
  f = get_fd("get_for_revoke", BUF_SZ, O_CLOEXEC);
  check_rc("revoke_value_2", dmabuf_revoke(fd, f, 2), OK);
  check_rc("revoke_again", dmabuf_revoke(fd, f, 1), OK);
  check_rc("map_revoked", ioas_map_file(fd, ioas, MAP_RW, f, 0, PAGE_SZ, &iova), ERR(ENODEV));
  check_rc("unrevoke", dmabuf_revoke(fd, f, 0), OK);
  check_rc("unrevoke_again", dmabuf_revoke(fd, f, 0), OK);
  check_rc("map_unrevoked", ioas_map_file(fd, ioas, MAP_RW, f, 0, PAGE_SZ, &iova), OK);
  /* Through a dup: the same buffer. */
  int d = dup(f);
  check_rc("revoke_through_dup", dmabuf_revoke(fd, d, 1), OK);
  check_rc("map_revoked_through_original", ioas_map_file(fd, ioas, MAP_RW, f, 0, PAGE_SZ, &iova),
           ERR(ENODEV));
  close(d);
  close(f);
  check_rc("destroy_ioas", destroy_id(fd, ioas), OK);
}

/* MAP_FILE's checks on a dma-buf (the selftest's dmabuf_simple and more), in an IOAS without domains. */
static void map_args(void) {
  uint32_t ioas = 0;
  require("ioas_alloc", ioas_alloc(fd, &ioas) == 0);
  int f = get_fd("get", BUF_SZ, O_CLOEXEC);
  uint64_t iova = 0;
  check_rc("map_length_0", ioas_map_file(fd, ioas, MAP_RW, f, 0, 0, &iova), ERR(EINVAL));
  check_rc("map_start_at_end", ioas_map_file(fd, ioas, MAP_RW, f, BUF_SZ, BUF_SZ, &iova), ERR(EINVAL));
  check_rc("map_one_byte_past", ioas_map_file(fd, ioas, MAP_RW, f, 0, BUF_SZ + 1, &iova), ERR(EINVAL));
  check_rc("map_last_byte_past", ioas_map_file(fd, ioas, MAP_RW, f, PAGE_SZ, 3 * PAGE_SZ + 1, &iova),
           ERR(EINVAL));
  check_rc("map_start_wraps", ioas_map_file(fd, ioas, MAP_RW, f, ~0ULL, 2, &iova), ERR(EOVERFLOW));
  check_rc("map_no_prot", ioas_map_file(fd, ioas, 0, f, 0, BUF_SZ, &iova), ERR(EINVAL));
  check_rc("map_bad_flag", ioas_map_file(fd, ioas, MAP_RW | (1u << 5), f, 0, BUF_SZ, &iova), ERR(EOPNOTSUPP));
  check_rc("map_bad_ioas", ioas_map_file(fd, 9999, MAP_RW, f, 0, BUF_SZ, &iova), ERR(ENOENT));
  check_rc("map_bad_fd", ioas_map_file(fd, ioas, MAP_RW, -1, 0, BUF_SZ, &iova), ERR(EBADF));

  iova = 0;
  check_rc("map_whole", ioas_map_file(fd, ioas, MAP_RW, f, 0, BUF_SZ, &iova), OK);
  check_u64("map_whole", "iova", iova, 0x4000);
  uint64_t iova2 = 0;
  check_rc("map_sub_page_offset",
           ioas_map_file(fd, ioas, IOMMU_IOAS_MAP_READABLE, f, PAGE_SZ + 0x100, 0x1f00, &iova2), OK);
  check_u64("map_sub_page_offset", "iova", iova2, 0x1100);
  uint64_t iova3 = 0x100000;
  check_rc("map_fixed_last_byte",
           ioas_map_file(fd, ioas, MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA, f, BUF_SZ - 1, 1, &iova3), OK);
  check_rc("map_fixed_overlap",
           ioas_map_file(fd, ioas, MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA, f, 0, PAGE_SZ, &iova3), ERR(EEXIST));
  uint64_t n = 0;
  check_rc("unmap_part", ioas_unmap(fd, ioas, iova, PAGE_SZ, &n), ERR(ENOENT));
  check_rc("unmap_whole", ioas_unmap(fd, ioas, iova, BUF_SZ, &n), OK);
  check_u64("unmap_whole", "length", n, BUF_SZ);
  /* The fd may go: the mapping holds the buffer. */
  close(f);
  check_rc("unmap_after_close", ioas_unmap(fd, ioas, iova2, 0x1f00, &n), OK);
  check_u64("unmap_after_close", "length", n, 0x1f00);
  check_rc("destroy_ioas_mapped", destroy_id(fd, ioas), OK);
}

/* Domains: a dma-buf area is in every domain until it is revoked, and in none after, including domains added
 * later; unmap, copy and un-revoke (the selftest's dmabuf_revoke with mock domains and more). */
static void domains(void) {
  uint32_t ioas = 0, ioas2 = 0, stdev = 0, idev = 0;
  require("ioas_alloc", ioas_alloc(fd, &ioas) == 0 && ioas_alloc(fd, &ioas2) == 0);
  require("no_huge_pages", check_rc("no_huge_pages", ioas_set_huge_pages(fd, ioas, 0), OK));
  require("no_huge_pages2", check_rc("no_huge_pages2", ioas_set_huge_pages(fd, ioas2, 0), OK));
  require("mock_domain", check_rc("mock_domain", mock_domain(fd, ioas, &stdev, NULL, &idev), OK));
  uint32_t h1 = tracking_hwpt("hwpt1", idev, ioas);

  int f = get_fd("get", BUF_SZ, O_CLOEXEC);
  uint64_t a = MOCK_APERTURE_START;
  check_rc("map_fixed", ioas_map_file(fd, ioas, MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA, f, 0, BUF_SZ, &a), OK);
  mapped_pages("mapped_in_hwpt1", h1, a, 4, 0xf);
  /* A page-aligned part at an automatic IOVA. */
  uint64_t b = 0;
  check_rc("map_part", ioas_map_file(fd, ioas, MAP_RW, f, PAGE_SZ, 2 * PAGE_SZ, &b), OK);
  check_u64("map_part", "iova", b, MOCK_APERTURE_START + BUF_SZ);
  mapped_pages("part_in_hwpt1", h1, b, 2, 0x3);
  /* A domain added now maps both. */
  uint32_t h2 = tracking_hwpt("hwpt2", idev, ioas);
  mapped_pages("mapped_in_hwpt2", h2, a, 4, 0xf);
  /* With large pages off the IOVA alignment is a page: a start inside a page does not map. */
  uint64_t c = 0;
  check_rc("map_unaligned_start", ioas_map_file(fd, ioas, MAP_RW, f, 0x800, PAGE_SZ, &c), ERR(EINVAL));
  /* A copy into a second IOAS shares the import. */
  uint32_t h3 = tracking_hwpt("hwpt3", idev, ioas2);
  uint64_t d = MOCK_APERTURE_START + 0x100000;
  check_rc("copy_live", ioas_copy(fd, MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA, ioas2, ioas, a, BUF_SZ, &d), OK);
  mapped_pages("copy_in_hwpt3", h3, d, 4, 0xf);

  /* Revoke: every mapping of this import goes, in every IOAS and domain. */
  check_rc("revoke", dmabuf_revoke(fd, f, 1), OK);
  mapped_pages("revoked_hwpt1", h1, a, 4, 0);
  mapped_pages("revoked_part_hwpt1", h1, b, 2, 0);
  mapped_pages("revoked_hwpt2", h2, a, 4, 0);
  mapped_pages("revoked_copy_hwpt3", h3, d, 4, 0);
  /* The areas stay: an overlapping map still collides, copy and unmap still find them. */
  uint64_t a_again = a;
  check_rc("map_over_revoked", ioas_map(fd, ioas, alloc_buffer(PAGE_SZ), PAGE_SZ, &a_again, 1), ERR(EEXIST));
  /* Domains attached now get nothing of it. */
  uint32_t h4 = tracking_hwpt("hwpt4_after_revoke", idev, ioas);
  mapped_pages("revoked_hwpt4", h4, a, 4, 0);
  uint32_t stdev2 = 0;
  check_rc("mock_domain_after_revoke", mock_domain(fd, ioas, &stdev2, NULL, NULL), OK);
  uint64_t e = MOCK_APERTURE_START + 0x200000;
  check_rc("copy_revoked", ioas_copy(fd, MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA, ioas2, ioas, a, BUF_SZ, &e), OK);
  mapped_pages("copy_revoked_hwpt3", h3, e, 4, 0);
  /* A new import of a revoked buffer fails; of a restored one, it maps, while the old one stays revoked. */
  uint64_t g = 0;
  check_rc("map_while_revoked", ioas_map_file(fd, ioas, MAP_RW, f, 0, BUF_SZ, &g), ERR(ENODEV));
  check_rc("unrevoke", dmabuf_revoke(fd, f, 0), OK);
  mapped_pages("old_still_revoked", h1, a, 4, 0);
  g = 0;
  check_rc("map_after_unrevoke", ioas_map_file(fd, ioas, MAP_RW, f, 0, BUF_SZ, &g), OK);
  mapped_pages("new_mapped_hwpt1", h1, g, 4, 0xf);
  mapped_pages("new_mapped_hwpt4", h4, g, 4, 0xf);
  /* Unmapping the revoked area and mapping the buffer back at its IOVA (the selftest's "restore"). */
  uint64_t n = 0;
  check_rc("unmap_revoked", ioas_unmap(fd, ioas, a, BUF_SZ, &n), OK);
  check_u64("unmap_revoked", "length", n, BUF_SZ);
  check_rc("map_back_fixed", ioas_map_file(fd, ioas, MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA, f, 0, BUF_SZ, &a),
           OK);
  mapped_pages("mapped_back_hwpt2", h2, a, 4, 0xf);
  /* Detaching domains while areas of both kinds exist. */
  check_rc("destroy_hwpt4", destroy_id(fd, h4), OK);
  check_rc("destroy_stdev2", destroy_id(fd, stdev2), OK);
  /* The second revoke takes the new imports too. */
  check_rc("revoke_2", dmabuf_revoke(fd, f, 1), OK);
  mapped_pages("revoked_2_hwpt1", h1, g, 4, 0);
  mapped_pages("revoked_2_back_hwpt2", h2, a, 4, 0);
  check_rc("unmap_all", ioas_unmap(fd, ioas, 0, ~0ULL, &n), OK);
  check_u64("unmap_all", "length", n, 2 * BUF_SZ + 2 * PAGE_SZ);
  close(f);
  check_rc("destroy_h1", destroy_id(fd, h1), OK);
  check_rc("destroy_h2", destroy_id(fd, h2), OK);
  check_rc("destroy_h3", destroy_id(fd, h3), OK);
  check_rc("destroy_stdev", destroy_id(fd, stdev), OK);
  check_rc("destroy_ioas2", destroy_id(fd, ioas2), OK);
  check_rc("destroy_ioas", destroy_id(fd, ioas), OK);
}

/* Accesses refuse dma-buf areas; VFIO's cut too. */
static void access_and_cut(void) {
  uint32_t ioas = 0;
  require("ioas_alloc", ioas_alloc(fd, &ioas) == 0);
  int access = -1;
  require("create_access",
          check_rc("create_access",
                   create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &access), OK));
  int f = get_fd("get", BUF_SZ, O_CLOEXEC);
  uint64_t a = 0x100000, r = 0x200000;
  check_rc("map_rw", ioas_map_file(fd, ioas, MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA, f, 0, BUF_SZ, &a), OK);
  check_rc("map_ro",
           ioas_map_file(fd, ioas, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA, f, 0, BUF_SZ, &r),
           OK);
  uint32_t id = 0;
  check_rc("pin_read", access_pages(fd, access, 0, a, PAGE_SZ, NULL, &id), ERR(EINVAL));
  check_rc("pin_write", access_pages(fd, access, MOCK_FLAGS_ACCESS_WRITE, a, PAGE_SZ, NULL, &id),
           ERR(EINVAL));
  check_rc("pin_write_readonly", access_pages(fd, access, MOCK_FLAGS_ACCESS_WRITE, r, PAGE_SZ, NULL, &id),
           ERR(EPERM));
  char buf[64];
  check_rc("rw_read", access_rw(fd, access, 0, a + 8, buf, sizeof(buf)), ERR(EINVAL));
  check_rc("rw_write", access_rw(fd, access, MOCK_ACCESS_RW_WRITE, a + 8, buf, sizeof(buf)), ERR(EINVAL));
  check_rc("rw_slow", access_rw(fd, access, MOCK_ACCESS_RW_SLOW_PATH, a, buf, sizeof(buf)), ERR(EINVAL));
  check_rc("rw_write_readonly", access_rw(fd, access, MOCK_ACCESS_RW_WRITE, r, buf, sizeof(buf)), ERR(EPERM));
  /* Revoked: the same answers; an unmap does not wait for the access. */
  check_rc("revoke", dmabuf_revoke(fd, f, 1), OK);
  check_rc("pin_revoked", access_pages(fd, access, 0, a, PAGE_SZ, NULL, &id), ERR(EINVAL));
  uint64_t n = 0;
  check_rc("unmap_revoked", ioas_unmap(fd, ioas, a, BUF_SZ, &n), OK);
  close(access);
  close(f);

  /* VFIO TYPE1 cuts areas at the ends of an unmap; a dma-buf area cannot be cut. */
  struct iommu_vfio_ioas v = {.size = sizeof(v), .ioas_id = ioas, .op = IOMMU_VFIO_IOAS_SET};
  require("vfio_ioas_set", check_rc("vfio_ioas_set", abi_ioctl(fd, IOMMU_VFIO_IOAS, &v), OK));
  check_rc("unmap_ro", ioas_unmap(fd, ioas, r, BUF_SZ, &n), OK);
  require("set_iommu_type1",
          check_rc("set_iommu_type1", abi_ioctl(fd, VFIO_SET_IOMMU, (void*)(uintptr_t)VFIO_TYPE1_IOMMU), OK));
  f = get_fd("get_vfio", BUF_SZ, O_CLOEXEC);
  uint64_t c = 0x300000;
  check_rc("map_for_cut", ioas_map_file(fd, ioas, MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA, f, 0, BUF_SZ, &c), OK);
  struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof(u), .iova = c + PAGE_SZ, .size = PAGE_SZ};
  check_rc("vfio_unmap_cut", abi_ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u), ERR(EOPNOTSUPP));
  /* A failed cut returns before anything is written back. */
  check_u64("vfio_unmap_cut", "size", u.size, PAGE_SZ);
  u.iova = c;
  u.size = BUF_SZ;
  check_rc("vfio_unmap_whole", abi_ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u), OK);
  check_u64("vfio_unmap_whole", "size", u.size, BUF_SZ);
  close(f);
  check_rc("destroy_ioas", destroy_id(fd, ioas), OK);
}

/* Lifetimes: the dma-buf fd outlives its iommufd; a mapping outlives the fd; closing an iommufd with mapped
 * dma-bufs releases them (a revoke afterwards reaches nobody). */
static void lifetimes(void) {
  int fd2 = open_iommufd();
  struct iommu_test_cmd_dmabuf gc = {.size = sizeof(gc), .op = IOMMU_TEST_OP_DMABUF_GET};
  gc.dmabuf_get.length = BUF_SZ;
  gc.dmabuf_get.open_flags = O_CLOEXEC;
  int f = abi_ioctl(fd2, IOMMU_TEST_CMD, &gc);
  check_rc("get_on_second", f >= 0 ? 0 : f, OK);
  uint32_t ioas2 = 0;
  struct iommu_ioas_alloc ia = {.size = sizeof(ia)};
  require("ioas_alloc_second", abi_ioctl(fd2, IOMMU_IOAS_ALLOC, &ia) == 0);
  ioas2 = ia.out_ioas_id;
  struct iommu_ioas_map_file m = {
      .size = sizeof(m), .flags = MAP_RW, .ioas_id = ioas2, .fd = f, .length = BUF_SZ};
  check_rc("map_on_second", abi_ioctl(fd2, IOMMU_IOAS_MAP_FILE, &m), OK);
  check_rc("close_second", close(fd2) < 0 ? -errno : 0, OK);
  /* The buffer is still there, and now in no IOAS. */
  uint32_t ioas = 0;
  require("ioas_alloc", ioas_alloc(fd, &ioas) == 0);
  uint64_t iova = 0;
  check_rc("map_after_other_close", ioas_map_file(fd, ioas, MAP_RW, f, 0, BUF_SZ, &iova), OK);
  check_rc("revoke_after_other_close", dmabuf_revoke(fd, f, 1), OK);
  check_rc("close_dmabuf", close(f) < 0 ? -errno : 0, OK);
  check_rc("revoke_closed", dmabuf_revoke(fd, f, 0), ERR(EBADF));
  uint64_t n = 0;
  check_rc("unmap_after_close", ioas_unmap(fd, ioas, iova, BUF_SZ, &n), OK);
  /* An IOAS destroyed with a live mapping whose fd is gone. */
  f = get_fd("get_for_destroy", BUF_SZ, O_CLOEXEC);
  iova = 0;
  check_rc("map_for_destroy", ioas_map_file(fd, ioas, MAP_RW, f, 0, BUF_SZ, &iova), OK);
  close(f);
  check_rc("destroy_ioas_mapped", destroy_id(fd, ioas), OK);
}

int main(void) {
  fd = open_iommufd();
  get_and_revoke_args();
  map_args();
  domains();
  access_and_cut();
  lifetimes();
  return abi_finish();
}
