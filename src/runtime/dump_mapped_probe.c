/* dump_mapped_probe: a context kept alive by nothing but an mmap of a vIOMMU region (every fd closed), as
 * the kernel's vma keeps the iommufd's file. `uiommufd run --dump-at-exit` must still list it, with its
 * objects, as left at exit (docs/dump.md). Exit 0 when the setup went as planned. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>

#include "abi.h"

int main(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0, stdev = 0, hwpt = 0, idev = 0, parent = 0, viommu = 0;
  struct iommu_viommu_selftest data = {.in_data = 0xbeef};
  if (fd < 0 || ioas_alloc(fd, &ioas) || mock_domain(fd, ioas, &stdev, &hwpt, &idev) ||
      hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent) ||
      viommu_alloc(fd, idev, parent, &data, sizeof(data), &viommu))
    return 1;
  void* m = mmap(NULL, data.out_mmap_length, PROT_READ, MAP_SHARED, fd, (off_t)data.out_mmap_offset);
  if (m == MAP_FAILED) return 2;
  close(fd);
  return *(volatile uint32_t*)m == 0xbeef ? 0 : 3;
}
