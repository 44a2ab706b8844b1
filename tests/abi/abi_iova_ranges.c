/* IOAS_IOVA_RANGES: the two-call protocol (docs/abi.md#iova-ranges-protocol): capacity in, total out,
 * EMSGSIZE with the header still written when the capacity is short; ranges are the holes of the reserved set
 * only. */
#include "abi.h"

int main(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0;
  require("alloc", ioas_alloc(fd, &ioas) == 0);
  struct iommu_iova_range r[4];
  uint32_t num = 0;
  uint64_t align = 0;

  memset(r, 0xab, sizeof(r));
  check_rc("fresh", iova_ranges(fd, ioas, r, 4, &num, &align), OK);
  check_u64("fresh", "num_iovas", num, 1);
  check_u64("fresh", "out_iova_alignment", align, 1);
  check_u64("fresh", "start0", r[0].start, 0);
  check_u64("fresh", "last0", r[0].last, ~0ULL);

  check_rc("size_query", iova_ranges(fd, ioas, NULL, 0, &num, &align), ERR(EMSGSIZE));
  check_u64("size_query", "num_iovas", num, 1);
  check_u64("size_query", "out_iova_alignment", align, 1);

  /* Two reserved ranges split the space in three. */
  check_rc("add_reserved_a", add_reserved(fd, ioas, 0x10000, 0x1000), OK);
  check_rc("add_reserved_b", add_reserved(fd, ioas, 0x100000, 0x100000), OK);
  memset(r, 0xab, sizeof(r));
  check_rc("capacity_short", iova_ranges(fd, ioas, r, 2, &num, &align), ERR(EMSGSIZE));
  check_u64("capacity_short", "num_iovas", num, 3);
  check_u64("capacity_short", "start0", r[0].start, 0);
  check_u64("capacity_short", "last0", r[0].last, 0xffff);
  check_u64("capacity_short", "start1", r[1].start, 0x11000);
  check_u64("capacity_short", "last1", r[1].last, 0xfffff);
  check_u64("capacity_short", "untouched2", r[2].start, 0xababababababababULL);

  memset(r, 0xab, sizeof(r));
  check_rc("capacity_exact", iova_ranges(fd, ioas, r, 3, &num, &align), OK);
  check_u64("capacity_exact", "num_iovas", num, 3);
  check_u64("capacity_exact", "start2", r[2].start, 0x200000);
  check_u64("capacity_exact", "last2", r[2].last, ~0ULL);

  /* Mappings and the allowed list do not change the output. */
  uint8_t* buf = (uint8_t*)alloc_buffer(0x1000);
  uint64_t iova = 0x20000;
  check_rc("map", ioas_map(fd, ioas, buf, 0x1000, &iova, 1), OK);
  struct iommu_iova_range allow = {0x300000, 0x3fffff};
  struct iommu_ioas_allow_iovas al = {
      .size = sizeof(al), .ioas_id = ioas, .num_iovas = 1, .allowed_iovas = (uintptr_t)&allow};
  check_rc("allow", abi_ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &al), OK);
  check_rc("after_map_and_allow", iova_ranges(fd, ioas, r, 4, &num, &align), OK);
  check_u64("after_map_and_allow", "num_iovas", num, 3);

  /* A mock domain reserves everything outside its aperture and raises the alignment to 2 KiB. */
  uint32_t ioas2 = 0;
  require("alloc2", ioas_alloc(fd, &ioas2) == 0);
  check_rc("mock_domain", mock_domain(fd, ioas2, NULL, NULL, NULL), OK);
  memset(r, 0xab, sizeof(r));
  check_rc("mock_aperture", iova_ranges(fd, ioas2, r, 4, &num, &align), OK);
  check_u64("mock_aperture", "num_iovas", num, 1);
  check_u64("mock_aperture", "out_iova_alignment", align, MOCK_PAGE_SZ);
  check_u64("mock_aperture", "start0", r[0].start, MOCK_APERTURE_START);
  check_u64("mock_aperture", "last0", r[0].last, MOCK_APERTURE_LAST);

  struct iommu_ioas_iova_ranges c = {.size = sizeof(c), .ioas_id = ioas, .num_iovas = 4, .__reserved = 1};
  c.allowed_iovas = (uintptr_t)r;
  check_rc("reserved_nonzero", abi_ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &c), ERR(EOPNOTSUPP));
  check_rc("unknown_ioas", iova_ranges(fd, 99, r, 4, &num, &align), ERR(ENOENT));
  check_rc("bad_out_pointer",
           iova_ranges(fd, ioas, (struct iommu_iova_range*)unmapped_page(), 4, &num, &align), ERR(EFAULT));

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
