/* IOAS_ALLOC and the extensible-struct size rules every command follows (docs/abi.md#extensible-structs,
 * #struct-sizes, #unknown-commands). */
#include "abi.h"

int main(void) {
  int fd = open_iommufd();
  uint8_t raw[64];
  struct iommu_ioas_alloc* c = (struct iommu_ioas_alloc*)raw;

  memset(raw, 0, sizeof(raw));
  c->size = 11;
  check_rc("size_below_min", abi_ioctl(fd, IOMMU_IOAS_ALLOC, raw), ERR(EINVAL));

  memset(raw, 0, sizeof(raw));
  c->size = 12;
  check_rc("size_exact", abi_ioctl(fd, IOMMU_IOAS_ALLOC, raw), OK);
  check_u64("size_exact", "out_ioas_id", c->out_ioas_id, 1);

  memset(raw, 0, sizeof(raw));
  c->size = 16;
  memset(raw + 12, 0xee, 4);
  raw[12] = 0;
  raw[13] = 0;
  raw[14] = 0;
  raw[15] = 0;
  check_rc("size_larger_zero_tail", abi_ioctl(fd, IOMMU_IOAS_ALLOC, raw), OK);
  check_u64("size_larger_zero_tail", "out_ioas_id", c->out_ioas_id, 2);
  /* Only the known struct is written back; the caller's tail is left alone. */
  check_u64("size_larger_zero_tail", "tail", raw[12] | raw[13] | raw[14] | raw[15], 0);

  memset(raw, 0, sizeof(raw));
  c->size = 64;
  raw[63] = 1;
  check_rc("size_larger_nonzero_tail", abi_ioctl(fd, IOMMU_IOAS_ALLOC, raw), ERR(E2BIG));

  memset(raw, 0, sizeof(raw));
  c->size = 12;
  c->flags = 1;
  check_rc("flags_nonzero", abi_ioctl(fd, IOMMU_IOAS_ALLOC, raw), ERR(EOPNOTSUPP));

  /* Failures above consumed no id. */
  memset(raw, 0, sizeof(raw));
  c->size = 12;
  check_rc("alloc_after_failures", abi_ioctl(fd, IOMMU_IOAS_ALLOC, raw), OK);
  check_u64("alloc_after_failures", "out_ioas_id", c->out_ioas_id, 3);

  memset(raw, 0, sizeof(raw));
  c->size = 12;
  check_rc("unknown_nr_in_table_hole", abi_ioctl(fd, ABI_IO(0x9f), raw), ERR(ENOTTY));
  check_rc("unknown_nr_beyond_table", abi_ioctl(fd, ABI_IO(0xfe), raw), ERR(ENOTTY));
  check_rc("unknown_nr_below_0x80", abi_ioctl(fd, ABI_IO(0x50), raw), ERR(ENOTTY));
  check_rc("direction_bits", abi_ioctl(fd, IOMMU_IOAS_ALLOC | (3UL << 30) | (12UL << 16), raw), ERR(ENOTTY));
  check_rc("other_type", abi_ioctl(fd, ('x' << 8) | 0x81, raw), ERR(ENOTTY));

  check_rc("null_pointer", abi_ioctl(fd, IOMMU_IOAS_ALLOC, NULL), ERR(EFAULT));
  void* hole = unmapped_page();
  check_rc("unmapped_pointer", abi_ioctl(fd, IOMMU_IOAS_ALLOC, hole), ERR(EFAULT));

  /* A size whose tail runs into unmapped memory cannot be checked for zeros. */
  uint8_t* two =
      (uint8_t*)mmap(NULL, 2 * PAGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  mprotect(two + PAGE_SZ, PAGE_SZ, PROT_NONE);
  struct iommu_ioas_alloc* edge = (struct iommu_ioas_alloc*)(two + PAGE_SZ - 16);
  memset(edge, 0, 16);
  edge->size = 64;
  check_rc("tail_into_unmapped", abi_ioctl(fd, IOMMU_IOAS_ALLOC, edge), ERR(EFAULT));

  /* The same rules on another command: DESTROY (min 8). */
  struct {
    struct iommu_destroy d;
    uint32_t tail;
  } big = {{.size = 12, .id = 3}, 7};
  check_rc("destroy_nonzero_tail", abi_ioctl(fd, IOMMU_DESTROY, &big), ERR(E2BIG));
  big.tail = 0;
  check_rc("destroy_zero_tail", abi_ioctl(fd, IOMMU_DESTROY, &big), OK);

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
