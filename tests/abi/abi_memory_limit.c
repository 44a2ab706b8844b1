/* SET_TEMP_MEMORY_LIMIT: below one batch element (12 bytes) it is EINVAL; at 12 every batch of the pin and
 * fill paths is a single page, and map, copy, a mock domain attached to an IOAS that already has areas,
 * access pins and rw give the same answers, translations and pin counts as at the default limit
 * (drivers/iommu/iommufd/pages.c: temp_kmalloc(), batch_init(); docs/semantics.md#batches). The whole
 * scenario runs twice, once per limit, under the same step names with a prefix. */
#include "abi.h"

static int set_limit(int fd, uint32_t limit) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT};
  c.a.memory_limit.limit = limit;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

static int copy(int fd, uint32_t dst, uint32_t src, uint64_t src_iova, uint64_t len, uint64_t* dst_iova) {
  struct iommu_ioas_copy c = {.size = sizeof(c),
                              .flags = IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW,
                              .dst_ioas_id = dst,
                              .src_ioas_id = src,
                              .length = len,
                              .dst_iova = *dst_iova,
                              .src_iova = src_iova};
  return abi_ioctl(fd, IOMMU_IOAS_COPY, &c);
}

#define NPAGES 96
#define STEP(name) (snprintf(step, sizeof(step), "%s_%s", prefix, name), step)

static void scenario(int fd, const char* prefix, uint8_t* buf) {
  char step[96];
  const uint64_t base = MOCK_APERTURE_START;
  uint32_t a = 0, b = 0, hwpt_a = 0, hwpt_b = 0;
  require(STEP("alloc"), ioas_alloc(fd, &a) == 0 && ioas_alloc(fd, &b) == 0);
  /* a: a domain first, so the map fills it; 2 KiB into the buffer, so batches end inside IOVA pages. */
  check_rc(STEP("mock_domain_a"), mock_domain(fd, a, NULL, &hwpt_a, NULL), OK);
  uint64_t iova = base + 0x800;
  check_rc(STEP("map_a"), ioas_map(fd, a, buf + 0x800, NPAGES * PAGE_SZ - 0x800, &iova, 1), OK);
  check_rc(STEP("check_map_a"), check_map(fd, hwpt_a, base + 0x800, buf + 0x800, NPAGES * PAGE_SZ - 0x800), OK);
  check_rc(STEP("refs_a"), check_refs(fd, buf, NPAGES * PAGE_SZ, 1), OK);
  /* b: a copy first, then the domain, whose attach fills it from the areas (pinning them once more). */
  uint64_t dst = base;
  check_rc(STEP("copy_to_b"), copy(fd, b, a, base + 0x1000, 64 * PAGE_SZ, &dst), OK);
  check_rc(STEP("mock_domain_b"), mock_domain(fd, b, NULL, &hwpt_b, NULL), OK);
  check_rc(STEP("check_map_b"), check_map(fd, hwpt_b, base, buf + PAGE_SZ, 64 * PAGE_SZ), OK);
  check_rc(STEP("refs_b_shares_pins"), check_refs(fd, buf + PAGE_SZ, 64 * PAGE_SZ, 1), OK);
  /* An access pin across 32 pages of b, and rw through it. */
  int acc = -1;
  require(STEP("create_access"), create_access(fd, b, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &acc) == 0);
  uint32_t pages_id = 0;
  check_rc(STEP("access_pin"), access_pages(fd, acc, 0, base + 8 * PAGE_SZ, 32 * PAGE_SZ, buf + 9 * PAGE_SZ, &pages_id), OK);
  uint8_t out[256];
  check_rc(STEP("access_rw"), access_rw(fd, acc, 0, base + 20 * PAGE_SZ - 100, out, sizeof(out)), OK);
  check_u64(STEP("access_rw"), "same_bytes", memcmp(out, buf + 21 * PAGE_SZ - 100, sizeof(out)) == 0, 1);
  check_rc(STEP("access_unpin"), destroy_access_pages(fd, acc, pages_id), OK);
  close(acc);
  uint64_t len = 0;
  check_rc(STEP("unmap_b"), ioas_unmap(fd, b, 0, ~0ULL, &len), OK);
  check_u64(STEP("unmap_b"), "length", len, 64 * PAGE_SZ);
  check_rc(STEP("unmap_a"), ioas_unmap(fd, a, 0, ~0ULL, &len), OK);
  check_u64(STEP("unmap_a"), "length", len, NPAGES * PAGE_SZ - 0x800);
  check_rc(STEP("refs_none"), check_refs(fd, buf, NPAGES * PAGE_SZ, 0), OK);
}

int main(void) {
  int fd = open_iommufd();
  uint8_t* buf = (uint8_t*)alloc_buffer(NPAGES * PAGE_SZ);
  for (unsigned i = 0; i < NPAGES * PAGE_SZ; i++) buf[i] = (uint8_t)(i * 13 + (i >> 12));

  check_rc("limit_below_one_element", set_limit(fd, 11), ERR(EINVAL));
  check_rc("limit_default", set_limit(fd, 65536), OK);
  scenario(fd, "default", buf);
  check_rc("limit_minimum", set_limit(fd, 12), OK);
  scenario(fd, "minimum", buf);
  check_rc("limit_restored", set_limit(fd, 65536), OK);

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
