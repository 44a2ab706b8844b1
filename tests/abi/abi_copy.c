/* IOAS_COPY: any source sub-range of contiguous, fully built areas at byte granularity
 * (docs/abi.md#byte-granular-copy), the destination's alignment, and the error cases of
 * docs/semantics.md#copy. Copied bytes are read back through a non-pinning test access, which needs no
 * alignment. */
#include "abi.h"

int main(void) {
  int fd = open_iommufd();
  uint32_t a = 0, b = 0, c = 0;
  require("alloc", ioas_alloc(fd, &a) == 0 && ioas_alloc(fd, &b) == 0 && ioas_alloc(fd, &c) == 0);
  uint8_t* buf = (uint8_t*)alloc_buffer(0x8000);
  for (unsigned i = 0; i < 0x8000; i++) buf[i] = (uint8_t)(i * 7 + i / 251);

  uint64_t iova = 0x10000;
  require("map_src", check_rc("map_src", ioas_map(fd, a, buf, 0x4000, &iova, 1), OK));
  iova = 0x14000; /* a second area, IOVA-contiguous with the first */
  require("map_src2", check_rc("map_src2", ioas_map(fd, a, buf + 0x4000, 0x2000, &iova, 1), OK));

  int acc = -1;
  require("access", check_rc("create_access_dst", create_access(fd, b, 0, &acc), OK));

  const uint32_t fx = MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA;
  uint8_t out[1024];
  /* Source offsets in 511-byte steps: no page or 2 KiB alignment needed. */
  for (unsigned k = 0; k < 8; k++) {
    uint64_t dst = 0x100000 + 0x1000 * k;
    char name[64];
    snprintf(name, sizeof(name), "copy_511_step_%u", k);
    check_rc(name, ioas_copy(fd, fx, b, a, 0x10000 + 511 * k, 511, &dst), OK);
    memset(out, 0, sizeof(out));
    snprintf(name, sizeof(name), "read_back_511_step_%u", k);
    check_rc(name, access_rw(fd, acc, 0, 0x100000 + 0x1000 * k, out, 511), OK);
    check_u64(name, "equal", memcmp(out, buf + 511 * k, 511) == 0, 1);
  }

  /* Across the seam of two areas. */
  uint64_t dst = 0x200000;
  check_rc("copy_across_areas", ioas_copy(fd, fx, b, a, 0x13f00, 0x300, &dst), OK);
  memset(out, 0, sizeof(out));
  check_rc("read_back_across", access_rw(fd, acc, 0, 0x200000, out, 0x300), OK);
  check_u64("read_back_across", "equal", memcmp(out, buf + 0x3f00, 0x300) == 0, 1);

  /* Automatic destination: alignment from the source address (byte 511 of a 2 MiB-aligned buffer). */
  dst = 0;
  check_rc("copy_auto_dst", ioas_copy(fd, MAP_RW, b, a, 0x101ff, 0x100, &dst), OK);
  check_u64("copy_auto_dst", "dst_iova", dst, 0x11ff);

  dst = 0x300000;
  check_rc("src_past_end", ioas_copy(fd, fx, b, a, 0x15f00, 0x200, &dst), ERR(ENOENT));
  check_rc("src_unmapped", ioas_copy(fd, fx, b, a, 0x40000, 0x100, &dst), ERR(ENOENT));
  check_rc("zero_length", ioas_copy(fd, fx, b, a, 0x10000, 0, &dst), ERR(EINVAL));
  check_rc("unknown_src", ioas_copy(fd, fx, b, 99, 0x10000, 0x100, &dst), ERR(ENOENT));
  check_rc("unknown_dst", ioas_copy(fd, fx, 99, a, 0x10000, 0x100, &dst), ERR(ENOENT));
  check_rc("no_read_no_write", ioas_copy(fd, IOMMU_IOAS_MAP_FIXED_IOVA, b, a, 0x10000, 0x100, &dst),
           ERR(EINVAL));
  check_rc("unknown_flag", ioas_copy(fd, fx | (1 << 3), b, a, 0x10000, 0x100, &dst), ERR(EOPNOTSUPP));
  check_rc("length_ulong_max", ioas_copy(fd, fx, b, a, 0x10000, ~0ULL, &dst), ERR(EOVERFLOW));
  dst = 0x100000;
  check_rc("dst_occupied", ioas_copy(fd, fx, b, a, 0x10000, 0x100, &dst), ERR(EEXIST));

  /* A destination with a mock domain has alignment 2 KiB: a 511-byte copy no longer fits it. */
  uint32_t stdev = 0, hwpt = 0;
  require("mock_domain", check_rc("mock_domain_dst", mock_domain(fd, c, &stdev, &hwpt, NULL), OK));
  dst = MOCK_APERTURE_START;
  check_rc("copy_unaligned_into_domain", ioas_copy(fd, fx, c, a, 0x10000, 511, &dst), ERR(EINVAL));
  dst = MOCK_APERTURE_START;
  check_rc("copy_2k_into_domain", ioas_copy(fd, fx, c, a, 0x10800, 0x1000, &dst), OK);
  check_rc("copy_2k_check_map", check_map(fd, hwpt, MOCK_APERTURE_START, buf + 0x800, 0x1000), OK);
  check_rc("copy_2k_refs", check_refs(fd, buf, 0x2000, 1), OK);

  check_rc("close_access", close(acc) ? -errno : 0, OK);
  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
