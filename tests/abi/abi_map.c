/* IOAS_MAP / IOAS_UNMAP / IOAS_MAP_FILE: fixed and automatic IOVAs, the automatic alignment rule
 * (docs/abi.md#auto-iova-alignment), unmap-all, and the error cases of docs/semantics.md#iova-selection,
 * #map, #unmap. No domain is attached, so nothing is pinned and the IOAS alignment is 1. */
#include <sys/syscall.h>

#include "abi.h"

static int map_raw(int fd, struct iommu_ioas_map* m) { return abi_ioctl(fd, IOMMU_IOAS_MAP, m); }

int main(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  uint8_t* buf = (uint8_t*)alloc_buffer(0x40000);
  uint64_t iova;

  /* Automatic IOVAs: lowest fit from PAGE_SIZE, aligned to min(roundup_pow_of_two(length), lowest set bit
   * of the source), keeping the source's offset within its page. */
  iova = 0;
  check_rc("auto_4k", ioas_map(fd, ioas, buf, 0x1000, &iova, 0), OK);
  check_u64("auto_4k", "iova", iova, 0x1000);
  iova = 0;
  check_rc("auto_8k", ioas_map(fd, ioas, buf + 0x2000, 0x2000, &iova, 0), OK);
  check_u64("auto_8k", "iova", iova, 0x2000);
  iova = 0;
  check_rc("auto_12k_pow2_align", ioas_map(fd, ioas, buf, 0x3000, &iova, 0), OK);
  check_u64("auto_12k_pow2_align", "iova", iova, 0x4000);
  iova = 0;
  check_rc("auto_keeps_page_offset", ioas_map(fd, ioas, buf + 0x800, 0x1000, &iova, 0), OK);
  check_u64("auto_keeps_page_offset", "iova", iova, 0x7800);

  /* Fixed IOVAs. */
  iova = 0x100000;
  check_rc("fixed", ioas_map(fd, ioas, buf, 0x4000, &iova, 1), OK);
  check_u64("fixed", "iova", iova, 0x100000);
  iova = 0x100000;
  check_rc("fixed_same_again", ioas_map(fd, ioas, buf, 0x4000, &iova, 1), ERR(EEXIST));
  iova = 0x102000;
  check_rc("fixed_overlap_tail", ioas_map(fd, ioas, buf, 0x4000, &iova, 1), ERR(EEXIST));
  iova = 0xfffffffffffff000ULL;
  check_rc("fixed_end_overflows", ioas_map(fd, ioas, buf, 0x2000, &iova, 1), ERR(EOVERFLOW));
  /* Alignment 1: a length that is not a page multiple is fine. */
  iova = 0x200000;
  check_rc("fixed_sub_page_length", ioas_map(fd, ioas, buf, 0x123, &iova, 1), OK);

  struct iommu_ioas_map m;
#define MAP_INIT()                              \
  memset(&m, 0, sizeof(m));                     \
  m.size = sizeof(m);                           \
  m.flags = MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA; \
  m.ioas_id = ioas;                             \
  m.user_va = (uintptr_t)buf;                   \
  m.length = 0x1000;                            \
  m.iova = 0x300000
  MAP_INIT();
  m.flags = IOMMU_IOAS_MAP_FIXED_IOVA;
  check_rc("no_read_no_write", map_raw(fd, &m), ERR(EINVAL));
  MAP_INIT();
  m.flags |= 1 << 3;
  check_rc("unknown_flag", map_raw(fd, &m), ERR(EOPNOTSUPP));
  MAP_INIT();
  m.__reserved = 1;
  check_rc("reserved_nonzero", map_raw(fd, &m), ERR(EOPNOTSUPP));
  MAP_INIT();
  m.ioas_id = 99;
  check_rc("unknown_ioas", map_raw(fd, &m), ERR(ENOENT));
  MAP_INIT();
  m.length = 0;
  check_rc("zero_length", map_raw(fd, &m), ERR(EINVAL));
  MAP_INIT();
  m.iova = ~0ULL;
  check_rc("iova_ulong_max", map_raw(fd, &m), ERR(EOVERFLOW));
  MAP_INIT();
  m.length = ~0ULL;
  check_rc("length_ulong_max", map_raw(fd, &m), ERR(EOVERFLOW));
  MAP_INIT();
  m.user_va = 0xfffffffffffff000ULL;
  m.length = 0x2000;
  check_rc("user_va_end_overflows", map_raw(fd, &m), ERR(EOVERFLOW));
  MAP_INIT();
  m.flags = MAP_RW;
  m.length = 1ULL << 63;
  check_rc("auto_length_too_big", map_raw(fd, &m), ERR(EOVERFLOW));

  /* Unmap: the range must cover whole areas. */
  uint64_t len = 0;
  check_rc("unmap_partial_area", ioas_unmap(fd, ioas, 0x100000, 0x2000, &len), ERR(ENOENT));
  check_rc("unmap_zero_length", ioas_unmap(fd, ioas, 0x100000, 0, &len), ERR(EINVAL));
  check_rc("unmap_end_overflows", ioas_unmap(fd, ioas, 0xfffffffffffff000ULL, 0x2000, &len), ERR(EOVERFLOW));
  check_rc("unmap_unknown_ioas", ioas_unmap(fd, 99, 0x100000, 0x4000, &len), ERR(ENOENT));
  len = 0;
  check_rc("unmap_exact", ioas_unmap(fd, ioas, 0x100000, 0x4000, &len), OK);
  check_u64("unmap_exact", "length", len, 0x4000);
  check_rc("unmap_empty_range", ioas_unmap(fd, ioas, 0x100000, 0x4000, &len), ERR(ENOENT));
  len = 0;
  check_rc("unmap_superset_two_areas", ioas_unmap(fd, ioas, 0, 0x4000, &len), OK);
  check_u64("unmap_superset_two_areas", "length", len, 0x3000);
  len = 0;
  check_rc("unmap_all", ioas_unmap(fd, ioas, 0, ~0ULL, &len), OK);
  check_u64("unmap_all", "length", len, 0x3000 + 0x1000 + 0x123);
  len = 1;
  check_rc("unmap_all_empty", ioas_unmap(fd, ioas, 0, ~0ULL, &len), OK);
  check_u64("unmap_all_empty", "length", len, 0);

  /* MAP_FILE on a memfd: the automatic IOVA follows the file offset's alignment. */
  int mfd = (int)syscall(SYS_memfd_create, "abi", 0);
  require("memfd", mfd >= 0 && ftruncate(mfd, 0x10000) == 0);
  struct iommu_ioas_map_file mf = {
      .size = sizeof(mf), .flags = MAP_RW, .ioas_id = ioas, .fd = mfd, .start = 0, .length = 0x4000};
  check_rc("map_file_auto", abi_ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf), OK);
  check_u64("map_file_auto", "iova", mf.iova, 0x4000);
  mf.flags = MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA;
  mf.iova = 0x400000;
  mf.start = 0x4000;
  check_rc("map_file_fixed", abi_ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf), OK);
  check_rc("map_file_fixed_again", abi_ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf), ERR(EEXIST));
  mf.iova = 0x500000;
  mf.fd = -1;
  check_rc("map_file_bad_fd", abi_ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf), ERR(EBADF));
  mf.fd = mfd;
  mf.ioas_id = 99;
  check_rc("map_file_unknown_ioas", abi_ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf), ERR(ENOENT));
  mf.ioas_id = ioas;
  mf.length = 0;
  check_rc("map_file_zero_length", abi_ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf), ERR(EINVAL));
  mf.length = 0x1000;
  mf.flags = IOMMU_IOAS_MAP_FIXED_IOVA;
  check_rc("map_file_no_read_no_write", abi_ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf), ERR(EINVAL));
  len = 0;
  check_rc("unmap_all_files", ioas_unmap(fd, ioas, 0, ~0ULL, &len), OK);
  check_u64("unmap_all_files", "length", len, 0x4000 + 0x4000);

  close(mfd);
  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
