/* Page identity of memfd memory, as the kernel selftest's mfd tests use it (iommufd.c: basic with a file,
 * all_aligns with a file, user_copy with a file): IOAS_MAP_FILE of a memfd, then MD_CHECK_MAP, MD_CHECK_REFS
 * and ACCESS_PAGES's uptr compare given a pointer into an mmap of that memfd. A memfd page is one page
 * however it is reached, so a MAP_FILE and a MAP of the mmap pin it twice. */
#include <sys/syscall.h>

#include "abi.h"

#define BUF_PAGES 8
#define BUF_SZ (BUF_PAGES * PAGE_SZ)

static int map_file(int fd, uint32_t ioas, int mfd, uint64_t start, uint64_t len, uint64_t* iova, int fixed) {
  return ioas_map_file(fd, ioas, MAP_RW | (fixed ? IOMMU_IOAS_MAP_FIXED_IOVA : 0), mfd, start, len, iova);
}

int main(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0, hwpt = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  require("mock_domain", check_rc("mock_domain", mock_domain(fd, ioas, NULL, &hwpt, NULL), OK));

  int mfd = (int)syscall(SYS_memfd_create, "abi_map_file", 0);
  require("memfd", mfd >= 0 && ftruncate(mfd, (off_t)BUF_SZ) == 0);
  uint8_t* buf = (uint8_t*)mmap(NULL, BUF_SZ, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  require("mmap", buf != MAP_FAILED);
  check_rc("refs_before", check_refs(fd, buf, BUF_SZ, 0), OK);

  /* basic: one page through MAP_FILE, checked through the mmap. */
  uint64_t iova = 0;
  require("map_file_page", check_rc("map_file_page", map_file(fd, ioas, mfd, 0, PAGE_SZ, &iova, 0), OK));
  check_rc("map_file_page_check_map", check_map(fd, hwpt, iova, buf, PAGE_SZ), OK);
  check_rc("map_file_page_refs", check_refs(fd, buf, PAGE_SZ, 1), OK);
  check_rc("map_file_page_other_offset", check_map(fd, hwpt, iova, buf + PAGE_SZ, PAGE_SZ), ERR(EINVAL));
  check_rc("map_file_page_unmap", ioas_unmap(fd, ioas, iova, PAGE_SZ, NULL), OK);
  check_rc("map_file_page_refs_after", check_refs(fd, buf, PAGE_SZ, 0), OK);

  /* all_aligns: every 2 KiB-aligned [start, end) of the file; one step line for the whole sweep. */
  uint64_t tried = 0, failed = 0;
  for (uint64_t start = 0; start < BUF_SZ; start += MOCK_PAGE_SZ) {
    for (uint64_t end = start + MOCK_PAGE_SZ; end <= BUF_SZ; end += MOCK_PAGE_SZ) {
      uint64_t len = end - start, first = start / PAGE_SZ * PAGE_SZ, last = end / PAGE_SZ * PAGE_SZ;
      uint64_t at = 0;
      int r = map_file(fd, ioas, mfd, start, len, &at, 0);
      int ok = r == 0 && check_map(fd, hwpt, at, buf + start, len) == 0 &&
               check_refs(fd, buf + first, last - first, 1) == 0;
      if (r == 0 && ioas_unmap(fd, ioas, at, len, NULL) != 0) ok = 0;
      tried++;
      if (!ok && failed++ == 0)
        printf("note: all_aligns first failure at start=0x%llx end=0x%llx\n", (unsigned long long)start,
               (unsigned long long)end);
    }
  }
  check_u64("all_aligns", "tried", tried, 136);
  check_u64("all_aligns", "failed", failed, 0);
  check_rc("all_aligns_refs_after", check_refs(fd, buf, BUF_SZ, 0), OK);

  /* A MAP_FILE and a MAP of the mmap are two pins of the same pages. */
  uint64_t file_iova = MOCK_APERTURE_START, va_iova = MOCK_APERTURE_START + 0x100000;
  check_rc("two_pins_map_file", map_file(fd, ioas, mfd, 0, 4 * PAGE_SZ, &file_iova, 1), OK);
  check_rc("two_pins_map_va", ioas_map(fd, ioas, buf, 4 * PAGE_SZ, &va_iova, 1), OK);
  check_rc("two_pins_refs", check_refs(fd, buf, 4 * PAGE_SZ, 2), OK);
  check_rc("two_pins_check_map_file", check_map(fd, hwpt, file_iova, buf, 4 * PAGE_SZ), OK);
  check_rc("two_pins_check_map_va", check_map(fd, hwpt, va_iova, buf, 4 * PAGE_SZ), OK);
  check_rc("two_pins_unmap_va", ioas_unmap(fd, ioas, va_iova, 4 * PAGE_SZ, NULL), OK);
  check_rc("two_pins_refs_one_left", check_refs(fd, buf, 4 * PAGE_SZ, 1), OK);
  check_rc("two_pins_unmap_file", ioas_unmap(fd, ioas, file_iova, 4 * PAGE_SZ, NULL), OK);

  /* user_copy: pin through an access in an IOAS without domains, compared with the mmap; COPY into the
   * IOAS with the mock domain and check the domain through the mmap. */
  uint32_t src = 0;
  require("src_alloc", check_rc("src_alloc", ioas_alloc(fd, &src), OK));
  uint64_t src_iova = 0;
  check_rc("copy_map_file", map_file(fd, src, mfd, 0, BUF_SZ, &src_iova, 0), OK);
  int acc = -1;
  require(
      "create_access",
      check_rc("create_access", create_access(fd, src, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &acc), OK));
  uint32_t pages_id = 0;
  check_rc("access_pages_uptr_mmap", access_pages(fd, acc, 0, src_iova, BUF_SZ, buf, &pages_id), OK);
  check_rc("access_pages_refs", check_refs(fd, buf, BUF_SZ, 1), OK);
  check_rc("access_pages_uptr_other_offset", access_pages(fd, acc, 0, src_iova, PAGE_SZ, buf + PAGE_SZ, NULL),
           ERR(EBADE));
  struct iommu_ioas_copy cp = {.size = sizeof(cp),
                               .flags = MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA,
                               .dst_ioas_id = ioas,
                               .src_ioas_id = src,
                               .length = BUF_SZ,
                               .dst_iova = MOCK_APERTURE_START,
                               .src_iova = src_iova};
  check_rc("copy", abi_ioctl(fd, IOMMU_IOAS_COPY, &cp), OK);
  check_rc("copy_check_map", check_map(fd, hwpt, MOCK_APERTURE_START, buf, BUF_SZ), OK);
  check_rc("copy_refs_shared_pages", check_refs(fd, buf, BUF_SZ, 1), OK);
  check_rc("destroy_access_pages", destroy_access_pages(fd, acc, pages_id), OK);
  check_rc("copy_unmap_dst", ioas_unmap(fd, ioas, MOCK_APERTURE_START, BUF_SZ, NULL), OK);
  check_rc("copy_unmap_src", ioas_unmap(fd, src, src_iova, BUF_SZ, NULL), OK);
  check_rc("refs_after", check_refs(fd, buf, BUF_SZ, 0), OK);

  close(acc);
  munmap(buf, BUF_SZ);
  close(mfd);
  close(fd);
  return abi_finish();
}
