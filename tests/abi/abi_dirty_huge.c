/* Dirty bits of large mock entries, on memory that is physically contiguous by construction (a 2 MiB
 * MAP_HUGETLB page): how the mock page table's leaves turn one dirty page into reported ranges.
 *
 * The mock page table (generic_pt fmt/amdv1.h built for the selftest) has 2 KiB items at level 0 and 1 MiB
 * items at level 1. The default table may use every power-of-two size: a 2 MiB page at a 2 MiB-aligned IOVA
 * becomes one contiguous entry of two 1 MiB items, an 8 KiB piece of it at an 8 KiB-aligned IOVA one entry of
 * four 2 KiB items. The MOCK_IOMMUPT_HUGE table only allows 4 KiB and 1 MiB (selftest.c
 * mock_domain_alloc_pgtable()), so the 2 MiB page becomes two single 1 MiB items.
 *
 * What generic_pt iommu_pt.h record_dirty() reports for a dirty entry (any of its items dirty, fmt/amdv1.h
 * amdv1pt_entry_is_write_dirty()), walking [start, last] of one area:
 *  - the length counts from the walk's position in the entry: for a contiguous entry up to its last item,
 *    exclusive (so an entry wholly inside the range loses its last item), or up to the end of the range if
 *    that comes first; for a single item the whole item;
 *  - the bits are set from the walk's position, which for the first entry is the requested start itself;
 *    nothing trims them to the requested range, so a request that starts or ends inside a large item sets
 *    bits past its end in the user bitmap (as far as the pinned bitmap pages reach);
 *  - without NO_CLEAR the whole entry is made clean, also the part outside the range.
 * A request that starts at the last item of a dirty contiguous entry (here X + 1 MiB, or G + 6 KiB) gives
 * a zero length, and iova_bitmap_set() then loops forever in Linux 7.2.13: no step does that. */
#include "abi.h"

static int fd;
static uint8_t* bmp;
#define BMP_SZ (2 * PAGE_SZ)
#define ONES (~0ULL)

static uint64_t load64(const void* p) {
  uint64_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

static void get_check(const char* step, uint32_t hwpt, uint32_t flags, uint64_t iova, uint64_t len,
                      uint64_t ps, int nwords, const uint64_t* want) {
  memset(bmp, 0, BMP_SZ);
  check_rc(step, hwpt_get_dirty_bitmap(fd, hwpt, flags, iova, len, ps, bmp), OK);
  for (int i = 0; i < nwords; i++) {
    char field[16];
    snprintf(field, sizeof(field), "w%d", i);
    check_u64(step, field, load64(bmp + 8 * i), want[i]);
  }
}
#define WORDS(...) \
  (int)(sizeof((const uint64_t[]){__VA_ARGS__}) / 8), (const uint64_t[]) { __VA_ARGS__ }
#define PEEK(step, hwpt, iova, len, ps, ...) \
  get_check(step, hwpt, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, iova, len, ps, WORDS(__VA_ARGS__))
#define TAKE(step, hwpt, iova, len, ps, ...) get_check(step, hwpt, 0, iova, len, ps, WORDS(__VA_ARGS__))

/* TEST_OP_DIRTY of the single unit `idx` of `ps` bytes from `iova`. */
static void mark(const char* step, uint32_t hwpt, uint64_t iova, uint64_t ps, uint64_t idx) {
  uint64_t bits[16] = {0}, nr = 0;
  bits[idx / 64] = 1ULL << (idx % 64);
  check_rc(step, mock_set_dirty(fd, hwpt, iova, (idx / 64 + 1) * 64 * ps, ps, bits, &nr), OK);
  check_u64(step, "out_nr_dirty", nr, 1);
}

/* Without a free hugetlb page (the host's vm.nr_hugepages) there is nothing to measure: the program skips
 * with status 77 before its first step, which CTest reports as skipped. */
static uint8_t* hugetlb_page(const char* step) {
  uint8_t* p =
      (uint8_t*)mmap(NULL, HUGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (p == MAP_FAILED) {
    printf("SKIP %s: no hugetlb page (errno=%s; raise /proc/sys/vm/nr_hugepages)\n", step,
           abi_errno_name(errno));
    exit(77);
  }
  memset(p, 1, HUGE_SZ);
  return p;
}

int main(void) {
  fd = open_iommufd();
  bmp = (uint8_t*)mmap(NULL, BMP_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  require("bitmap_mmap", bmp != MAP_FAILED);
  uint8_t* h1 = hugetlb_page("hugetlb_1");
  uint8_t* h2 = hugetlb_page("hugetlb_2");

  uint32_t ioas_a = 0, ioas_d = 0, ioas_h = 0, idev = 0, dd = 0, hh = 0;
  require("alloc_ioas",
          ioas_alloc(fd, &ioas_a) == 0 && ioas_alloc(fd, &ioas_d) == 0 && ioas_alloc(fd, &ioas_h) == 0);
  require("mock_domain", check_rc("mock_domain", mock_domain(fd, ioas_a, NULL, NULL, &idev), OK));
  require("alloc_default",
          check_rc("alloc_default", hwpt_alloc(fd, idev, ioas_d, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &dd), OK));
  struct iommu_hwpt_selftest huge = {.pagetable_type = MOCK_IOMMUPT_HUGE};
  require("alloc_huge", check_rc("alloc_huge",
                                 hwpt_alloc_full(fd, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, idev, ioas_h,
                                                 IOMMU_HWPT_DATA_SELFTEST, &huge, sizeof(huge), 0, &hh),
                                 OK));
  const uint64_t X = 32ULL << 20, G = X + (4ULL << 20), Y = 32ULL << 20;
  uint64_t iova = X;
  require("map_default", check_rc("map_default", ioas_map(fd, ioas_d, h1, HUGE_SZ, &iova, 1), OK));
  iova = G;
  require("map_g8", check_rc("map_g8", ioas_map(fd, ioas_d, h1, 0x2000, &iova, 1), OK));
  iova = Y;
  require("map_huge", check_rc("map_huge", ioas_map(fd, ioas_h, h2, HUGE_SZ, &iova, 1), OK));
  check_rc("enable_default", hwpt_set_dirty_tracking(fd, dd, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK);
  check_rc("enable_huge", hwpt_set_dirty_tracking(fd, hh, IOMMU_HWPT_DIRTY_TRACKING_ENABLE), OK);

  /* ---- default table: one entry of two 1 MiB items --------------------------------------------------------
   */
  /* One dirty 4 KiB page in the second MiB: reported as the first MiB. */
  mark("def_mark", dd, X, PAGE_SZ, 257);
  PEEK("def_4k", dd, X, HUGE_SZ, PAGE_SZ, ONES, ONES, ONES, ONES, 0, 0, 0, 0);
  PEEK("def_1m", dd, X, HUGE_SZ, 1ULL << 20, 0x1);
  PEEK("def_2m", dd, X, HUGE_SZ, HUGE_SZ, 0x1);
  /* The first MiB alone: the range ends inside the entry, so the full MiB. */
  PEEK("def_first_mib", dd, X, 1ULL << 20, PAGE_SZ, ONES, ONES, ONES, ONES, 0);
  /* One page inside the entry: a MiB of bits from the requested start, 255 of them past the range. */
  PEEK("def_one_page", dd, X + 0x3000, PAGE_SZ, PAGE_SZ, ONES, ONES, ONES, ONES, 0);
  /* Reading (and clearing) the first page cleans the whole entry. */
  TAKE("def_take_first_page", dd, X, PAGE_SZ, PAGE_SZ, ONES, ONES, ONES, ONES, 0);
  PEEK("def_after_take", dd, X, HUGE_SZ, PAGE_SZ, 0, 0, 0, 0, 0, 0, 0, 0);
  mark("def_mark_last_2k", dd, X, MOCK_PAGE_SZ, 1023);
  PEEK("def_last_2k", dd, X, HUGE_SZ, HUGE_SZ, 0x1);
  TAKE("def_take", dd, X, HUGE_SZ, 1ULL << 20, 0x1);
  PEEK("def_clean", dd, X, HUGE_SZ, 1ULL << 20, 0);

  /* ---- default table: one entry of four 2 KiB items (8 KiB at G) ----------------------------------------
   */
  mark("g8_mark_last", dd, G, MOCK_PAGE_SZ, 3);
  PEEK("g8_2k", dd, G, 0x2000, MOCK_PAGE_SZ, 0x7);
  PEEK("g8_1k", dd, G, 0x2000, 0x400, 0x3f);
  PEEK("g8_4k", dd, G, 0x2000, PAGE_SZ, 0x3);
  PEEK("g8_first_half", dd, G, 0x1000, MOCK_PAGE_SZ, 0x3);
  PEEK("g8_from_item1", dd, G + MOCK_PAGE_SZ, 0x1800, MOCK_PAGE_SZ, 0x3);
  PEEK("g8_from_item2", dd, G + 2 * MOCK_PAGE_SZ, 0x1000, MOCK_PAGE_SZ, 0x1);
  TAKE("g8_take_first_half", dd, G, 0x1000, MOCK_PAGE_SZ, 0x3);
  PEEK("g8_after_take", dd, G, 0x2000, MOCK_PAGE_SZ, 0);
  /* The 2 MiB mapping of the same page at X is a different entry. */
  PEEK("g8_default_clean", dd, X, HUGE_SZ, HUGE_SZ, 0);

  /* ---- MOCK_IOMMUPT_HUGE: two single 1 MiB items --------------------------------------------------------
   */
  mark("huge_mark", hh, Y, PAGE_SZ, 257);
  PEEK("huge_4k", hh, Y, HUGE_SZ, PAGE_SZ, 0, 0, 0, 0, ONES, ONES, ONES, ONES);
  PEEK("huge_1m", hh, Y, HUGE_SZ, 1ULL << 20, 0x2);
  PEEK("huge_2m", hh, Y, HUGE_SZ, HUGE_SZ, 0x1);
  PEEK("huge_second_mib", hh, Y + (1ULL << 20), 1ULL << 20, PAGE_SZ, ONES, ONES, ONES, ONES, 0);
  mark("huge_mark_first", hh, Y, MOCK_PAGE_SZ, 5);
  PEEK("huge_both", hh, Y, HUGE_SZ, PAGE_SZ, ONES, ONES, ONES, ONES, ONES, ONES, ONES, ONES);
  /* One page inside an item: a whole MiB of bits from the requested start. */
  PEEK("huge_one_page", hh, Y + 0x2000, PAGE_SZ, PAGE_SZ, ONES, ONES, ONES, ONES, 0);
  PEEK("huge_one_page_2k", hh, Y + 0x2000, PAGE_SZ, MOCK_PAGE_SZ, ONES, ONES, ONES, ONES, ONES, ONES, ONES,
       ONES, 0);
  /* Clearing through one page cleans that whole item, not the other. */
  TAKE("huge_take_one_page", hh, Y + 0x2000, PAGE_SZ, PAGE_SZ, ONES, ONES, ONES, ONES, 0);
  PEEK("huge_after_take", hh, Y, HUGE_SZ, 1ULL << 20, 0x2);
  TAKE("huge_take", hh, Y, HUGE_SZ, 1ULL << 20, 0x2);
  PEEK("huge_clean", hh, Y, HUGE_SZ, 1ULL << 20, 0);

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
