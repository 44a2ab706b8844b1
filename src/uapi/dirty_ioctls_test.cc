// Dirty tracking through the dispatcher (docs/semantics.md#dirty): IOMMU_HWPT_SET_DIRTY_TRACKING,
// IOMMU_HWPT_GET_DIRTY_BITMAP and the mock's IOMMU_TEST_OP_DIRTY, on real structs.
//   - Every errno, in the order of the kernel's checks (hw_pagetable.c iommufd_hwpt_set_dirty_tracking(),
//     iommufd_hwpt_get_dirty_bitmap(); io_pagetable.c iommufd_check_iova_range(); selftest.c
//     iommufd_test_dirty()).
//   - The bitmap against a model of what Linux 7.2 writes: random dirty patterns set by the test op and by
//     DMA through the domain, granularities from 16 bytes to 2 MiB, bitmaps at unaligned addresses and
//     across pages, ranges over several areas and holes (io_pagetable.c __iommu_read_and_clear_dirty():
//     the walk ends at the first hole), 1 MiB leaves (the MOCK_IOMMUPT_HUGE table), bits already set,
//     NO_CLEAR. The model of the user bitmap is iova_bitmap.c's rule (bits only set; a report pins from the
//     page of its first byte and stops at the first page that cannot be pinned for writing; a report that
//     starts past the bitmap is dropped, one that runs past its end goes on to the end of the pinned pages).
//   - Bitmaps with pages that cannot be written: the call still succeeds and writes what the rule allows.
//   - The fail-nth sweep of a whole dirty-tracking sequence.
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "testing/hwpt_ioctl_test.h"
#include "testing/sweep_checked.h"

#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/page.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::uapi {
namespace {

using testing::addr;
using testing::HwptIoctlTest;
using testing::HwptSelftest;
using testing::kIova;
using testing::kNoSuchId;
using testing::make_test_cmd;
using testing::Padded;
using testing::SweepRun;

constexpr std::uint64_t k2K = std::uint64_t{1} << 11;
constexpr std::uint64_t k4K = std::uint64_t{1} << 12;
constexpr std::uint64_t k1M = std::uint64_t{1} << 20;
constexpr std::uint64_t k2M = std::uint64_t{1} << 21;
constexpr std::uint32_t kEnable = IOMMU_HWPT_DIRTY_TRACKING_ENABLE;
constexpr std::uint32_t kNoClear = IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR;
// In the kernel's half of the address space: no user copy reaches it.
constexpr std::uint64_t kKernelAddress = 0xffff888000000000;

// ---- the model ----------------------------------------------------------------------------------------

using Reports = std::vector<std::pair<std::uint64_t, std::uint64_t>>;

// The mock page table as dirty tracking sees it: the IOAS's areas, and the leaves they were mapped with.
// A leaf is dirty or clean as a whole and reports, from the first byte of it the walk reaches, `report`
// bytes (generic_pt iommu_pt.h record_dirty()): a 4 KiB page (one contiguous entry of two 2 KiB items)
// its first item, a 1 MiB leaf all of it.
class TableModel {
 public:
  // An area mapped with leaves of `leaf` bytes (4 KiB or 1 MiB; iova and len are multiples of it).
  void add_area(std::uint64_t iova, std::uint64_t len, std::uint64_t leaf) {
    areas_[iova] = iova + len - 1;
    for (std::uint64_t at = iova; at < iova + len; at += leaf)
      leaves_[at] = Leaf{leaf, leaf == k4K ? k2K : leaf, false};
  }
  // The leaf holding `iova` becomes dirty (nothing when it is unmapped).
  void mark(std::uint64_t iova) {
    if (Leaf* l = leaf_at(iova)) l->dirty = true;
  }
  // A DMA write of [iova, iova + len), all mapped.
  void write(std::uint64_t iova, std::uint64_t len) {
    for (std::uint64_t at = iova; at < iova + len;) {
      auto it = std::prev(leaves_.upper_bound(at));
      it->second.dirty = true;
      at = it->first + it->second.size;
    }
  }
  // GET_DIRTY_BITMAP's walk over [iova, last]: the areas that follow one another from the one holding iova,
  // up to the first hole; each dirty leaf reports from max(its start, the start of the area's piece).
  Reports collect(std::uint64_t iova, std::uint64_t last, bool no_clear) {
    Reports out;
    for (std::uint64_t cur = iova;;) {
      auto a = areas_.upper_bound(cur);
      if (a == areas_.begin()) break;
      --a;
      if (a->second < cur) break;  // a hole
      const std::uint64_t end = std::min(last, a->second);
      for (auto it = std::prev(leaves_.upper_bound(cur)); it != leaves_.end() && it->first <= end; ++it) {
        if (!it->second.dirty) continue;
        out.emplace_back(std::max(it->first, cur), it->second.report);
        if (!no_clear) it->second.dirty = false;
      }
      if (end == last) break;
      cur = end + 1;
    }
    return out;
  }
  bool any_dirty() const {
    return std::any_of(leaves_.begin(), leaves_.end(), [](const auto& l) { return l.second.dirty; });
  }

 private:
  struct Leaf {
    std::uint64_t size, report;
    bool dirty;
  };
  Leaf* leaf_at(std::uint64_t iova) {
    auto it = leaves_.upper_bound(iova);
    if (it == leaves_.begin()) return nullptr;
    --it;
    return iova - it->first < it->second.size ? &it->second : nullptr;
  }
  std::map<std::uint64_t, std::uint64_t> areas_;
  std::map<std::uint64_t, Leaf> leaves_;
};

// User memory around a bitmap as the kernel's iova_bitmap.c leaves it: `image` mirrors [base, base +
// image.size()), and `writable(page)` says whether the page at that address can be pinned for writing
// (anything outside the image cannot).
class BitmapModel {
 public:
  BitmapModel(std::uint64_t base, std::vector<std::uint8_t> image,
              std::function<bool(std::uint64_t)> writable)
      : base_(base), image_(std::move(image)), writable_(std::move(writable)) {}

  void begin(std::uint64_t data, std::uint64_t iova, std::uint64_t length, std::uint64_t page_size) {
    data_ = data;
    iova_ = iova;
    shift_ = static_cast<unsigned>(std::countr_zero(page_size));
    total_ = (((length - 1) >> shift_) >> 3) + 1;
  }
  void report(std::uint64_t va, std::uint64_t len) {
    const std::uint64_t first = (va - iova_) >> shift_;
    const std::uint64_t last = (va - iova_ + len - 1) >> shift_;
    std::uint64_t window_end = 0;
    for (std::uint64_t b = first; b <= last; ++b) {
      const std::uint64_t byte = b >> 3;
      const std::uint64_t at = data_ + byte;
      if (b == first || at >= window_end) {
        // A new window of pinned pages, only from a byte inside the bitmap: from that byte's page, the
        // pages the rest of the bitmap needs (one more when the byte is not page aligned), at most 512, up
        // to the first page that cannot be pinned for writing.
        if (byte >= total_) return;
        const std::uint64_t page = page_align_down(at);
        const std::uint64_t want =
            std::min<std::uint64_t>((total_ - byte + kPageSize - 1) / kPageSize + (at != page), 512);
        std::uint64_t n = 0;
        while (n < want && in_image(page + n * kPageSize) && writable_(page + n * kPageSize)) ++n;
        if (n == 0) return;
        window_end = page + n * kPageSize;
      }
      image_[at - base_] |= static_cast<std::uint8_t>(1u << (b & 7));
    }
  }
  const std::vector<std::uint8_t>& image() const { return image_; }

 private:
  bool in_image(std::uint64_t page) const { return page >= base_ && page - base_ < image_.size(); }

  const std::uint64_t base_;
  std::vector<std::uint8_t> image_;
  const std::function<bool(std::uint64_t)> writable_;
  std::uint64_t data_ = 0, iova_ = 0, total_ = 0;
  unsigned shift_ = 0;
};

// ---- the fixture --------------------------------------------------------------------------------------

// A mock device `md_` whose RID is on `dirty_`, a paging HWPT made with IOMMU_HWPT_ALLOC_DIRTY_TRACKING on
// the fixture's IOAS (which has no other HWPT: the automatic one went with the replace), and 16 pages of
// mem_ mapped at kIova. Tracking is off.
class DirtyIoctlTest : public HwptIoctlTest {
 protected:
  void SetUp() override {
    HwptIoctlTest::SetUp();
    md_ = mock(ioas_);
    dirty_ = hwpt_ok(md_.idev, ioas_, kHwptAllocDirtyTracking);
    ASSERT_EQ(mock_replace(md_.stdev, dirty_), 0);
    ASSERT_EQ(map(ioas_, kIova, 0, 16 * kPageSize), 0);
  }

  int set_tracking(std::uint32_t hwpt, bool on) {
    iommu_hwpt_set_dirty_tracking c{sizeof(c), on ? kEnable : 0u, hwpt, 0};
    return call(IOMMU_HWPT_SET_DIRTY_TRACKING, &c);
  }
  int get(std::uint32_t hwpt, std::uint32_t flags, std::uint64_t iova, std::uint64_t length,
          std::uint64_t page_size, std::uint64_t data) {
    iommu_hwpt_get_dirty_bitmap c{sizeof(c), hwpt, flags, 0, iova, length, page_size, data};
    return call(IOMMU_HWPT_GET_DIRTY_BITMAP, &c);
  }
  int get(std::uint32_t hwpt, std::uint32_t flags, std::uint64_t iova, std::uint64_t length,
          std::uint64_t page_size, void* data) {
    return get(hwpt, flags, iova, length, page_size, addr(data));
  }
  // The first 64 bits of a NO_CLEAR read of [iova, iova + 64 * page_size) into a zeroed bitmap.
  std::uint64_t peek(std::uint32_t hwpt, std::uint64_t iova, std::uint64_t page_size = kPageSize) {
    std::uint64_t bits[2] = {};
    EXPECT_EQ(get(hwpt, kNoClear, iova, 64 * page_size, page_size, bits), 0);
    EXPECT_EQ(bits[1], 0u) << "written past a 64-bit bitmap";
    return bits[0];
  }
  // The same, clearing.
  std::uint64_t take(std::uint32_t hwpt, std::uint64_t iova, std::uint64_t page_size = kPageSize) {
    std::uint64_t bits[2] = {};
    EXPECT_EQ(get(hwpt, 0, iova, 64 * page_size, page_size, bits), 0);
    EXPECT_EQ(bits[1], 0u) << "written past a 64-bit bitmap";
    return bits[0];
  }
  // IOMMU_TEST_OP_DIRTY; *nr gets out_nr_dirty as the call left it.
  int mark(std::uint32_t hwpt, std::uint64_t iova, std::uint64_t length, std::uint64_t page_size,
           std::uint64_t uptr, std::uint64_t* nr = nullptr) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DIRTY, hwpt);
    c.dirty.iova = iova;
    c.dirty.length = length;
    c.dirty.page_size = page_size;
    c.dirty.uptr = uptr;
    c.dirty.out_nr_dirty = ~0ull;
    const int e = test(c);
    if (nr) *nr = c.dirty.out_nr_dirty;
    return e;
  }
  // Marks the units of [iova, iova + 64 * page_size) whose bits are set in `bits`; expects success.
  void mark_bits(std::uint32_t hwpt, std::uint64_t iova, std::uint64_t bits,
                 std::uint64_t page_size = kPageSize) {
    std::uint64_t nr = 0;
    ASSERT_EQ(mark(hwpt, iova, 64 * page_size, page_size, addr(&bits), &nr), 0);
    EXPECT_EQ(nr, static_cast<std::uint64_t>(std::popcount(bits)));
  }
  int map_va(std::uint32_t ioas, std::uint64_t iova, const void* va, std::uint64_t len) {
    iommu_ioas_map m{sizeof(m), testing::kMapRW, ioas, 0, addr(va), len, iova};
    return call(IOMMU_IOAS_MAP, &m);
  }
  int unmap(std::uint32_t ioas, std::uint64_t iova, std::uint64_t len) {
    iommu_ioas_unmap u{sizeof(u), ioas, iova, len};
    return call(IOMMU_IOAS_UNMAP, &u);
  }
  Status dma_write(std::uint32_t idev, std::uint64_t iova, std::uint64_t len) {
    Result<ObjectRef<Device>> dev = ctx().get<Device>(idev, ObjectType::kDevice);
    if (!dev.ok()) return dev.status();
    std::vector<std::uint8_t> src(len, 0x3c);
    return (*dev)->dma_write(iova, src.data(), len);
  }
  PageTableDomain* table(std::uint32_t hwpt) {
    Result<ObjectRef<HwptPaging>> h = ctx().get<HwptPaging>(hwpt, ObjectType::kHwptPaging);
    EXPECT_TRUE(h.ok()) << hwpt;
    return h.ok() ? dynamic_cast<PageTableDomain*>(&(*h)->domain()) : nullptr;  // the table keeps it
  }
  bool tracking(std::uint32_t hwpt) {
    PageTableDomain* d = table(hwpt);
    return d && d->dirty_tracking();
  }
  // Anonymous memory that the test unmaps at the end.
  std::uint8_t* anon(std::uint64_t len, int prot = PROT_READ | PROT_WRITE) {
    void* p = mmap(nullptr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    if (p == MAP_FAILED) return nullptr;
    regions_.emplace_back(p, len);
    return static_cast<std::uint8_t*>(p);
  }
  void TearDown() override {
    HwptIoctlTest::TearDown();
    for (auto [p, len] : regions_) munmap(p, len);
  }

  MockIds md_;
  std::uint32_t dirty_ = 0;
  std::vector<std::pair<void*, std::uint64_t>> regions_;
};

// ---- IOMMU_HWPT_SET_DIRTY_TRACKING: errnos ---------------------------------------------------------------

TEST_F(DirtyIoctlTest, SetStructSizeRules) {
  Padded<iommu_hwpt_set_dirty_tracking> r{};
  r.c = {12, kEnable, dirty_, 0};
  EXPECT_EQ(call(IOMMU_HWPT_SET_DIRTY_TRACKING, &r), EINVAL);
  EXPECT_FALSE(tracking(dirty_));
  r.c.size = 24;
  r.bytes[20] = 1;
  EXPECT_EQ(call(IOMMU_HWPT_SET_DIRTY_TRACKING, &r), E2BIG);
  EXPECT_FALSE(tracking(dirty_));
  r.bytes[20] = 0;
  EXPECT_EQ(call(IOMMU_HWPT_SET_DIRTY_TRACKING, &r), 0);
  EXPECT_TRUE(tracking(dirty_));
}

TEST_F(DirtyIoctlTest, SetUnknownFlagsAreEopnotsuppBeforeTheLookupAndReservedIsNotLookedAt) {
  for (std::uint32_t flags : {2u, 3u, 0x80000000u}) {
    iommu_hwpt_set_dirty_tracking c{sizeof(c), flags, dirty_, 0};
    EXPECT_EQ(call(IOMMU_HWPT_SET_DIRTY_TRACKING, &c), EOPNOTSUPP) << flags;
    c.hwpt_id = kNoSuchId;
    EXPECT_EQ(call(IOMMU_HWPT_SET_DIRTY_TRACKING, &c), EOPNOTSUPP) << flags;
  }
  EXPECT_FALSE(tracking(dirty_));
  iommu_hwpt_set_dirty_tracking c{sizeof(c), kEnable, dirty_, 0xffffffffu};
  EXPECT_EQ(call(IOMMU_HWPT_SET_DIRTY_TRACKING, &c), 0);
  EXPECT_TRUE(tracking(dirty_));
}

TEST_F(DirtyIoctlTest, SetNeedsAPagingHwptAndOneWithDirtyOps) {
  const std::uint32_t parent = hwpt_ok(md_.idev, ioas_, kHwptAllocNestParent | kHwptAllocDirtyTracking);
  const std::uint32_t nested = nested_ok(md_.idev, parent);
  const std::uint32_t plain = hwpt_ok(md_.idev, ioas_);
  const MockIds other = mock(ioas_);  // on a new automatic HWPT, which has no dirty ops
  auto sw = Device::create(ctx(), Device::Kind::kSoftware);
  ASSERT_TRUE(sw.ok());
  const std::uint32_t soft = hwpt_ok(*sw, ioas_);
  for (bool on : {true, false}) {
    SCOPED_TRACE(on);
    // Unknown ids and every other kind of object: ENOENT.
    for (std::uint32_t id : {kNoSuchId, 0u, ioas_, nested, md_.idev, md_.stdev, *sw})
      EXPECT_EQ(set_tracking(id, on), ENOENT) << id;
    // Paging HWPTs without dirty ops, both directions.
    for (std::uint32_t id : {plain, other.hwpt, soft}) EXPECT_EQ(set_tracking(id, on), EOPNOTSUPP) << id;
  }
  EXPECT_EQ(set_tracking(parent, true), 0);
  EXPECT_TRUE(tracking(parent));
  EXPECT_EQ(set_tracking(parent, false), 0);
  EXPECT_FALSE(tracking(parent));
  // A destroyed HWPT is gone.
  ASSERT_EQ(destroy(plain), 0);
  EXPECT_EQ(set_tracking(plain, true), ENOENT);
}

TEST_F(DirtyIoctlTest, SetInEitherDirectionIsIdempotent) {
  EXPECT_EQ(set_tracking(dirty_, false), 0);
  EXPECT_FALSE(tracking(dirty_));
  EXPECT_EQ(set_tracking(dirty_, true), 0);
  EXPECT_EQ(set_tracking(dirty_, true), 0);
  EXPECT_TRUE(tracking(dirty_));
  EXPECT_EQ(set_tracking(dirty_, false), 0);
  EXPECT_EQ(set_tracking(dirty_, false), 0);
  EXPECT_FALSE(tracking(dirty_));
}

// The struct is never written back: a read-only one works.
TEST_F(DirtyIoctlTest, SetAndGetNeverWriteTheirStructBack) {
  const iommu_hwpt_set_dirty_tracking s{sizeof(s), kEnable, dirty_, 0};
  EXPECT_EQ(call(IOMMU_HWPT_SET_DIRTY_TRACKING, read_only_copy(s)), 0);
  EXPECT_TRUE(tracking(dirty_));
  mark_bits(dirty_, kIova, 0x6);
  std::uint64_t bits = 0;
  const iommu_hwpt_get_dirty_bitmap g{sizeof(g), dirty_, 0, 0, kIova, 16 * kPageSize, kPageSize, addr(&bits)};
  EXPECT_EQ(call(IOMMU_HWPT_GET_DIRTY_BITMAP, read_only_copy(g)), 0);
  EXPECT_EQ(bits, 0x6u);
}

// ---- IOMMU_HWPT_SET_DIRTY_TRACKING: what it does ---------------------------------------------------------

// Enabling cleans every entry first, also when tracking was on already; disabling keeps the bits, which a
// read still reports (and clears) with tracking off. The test op needs tracking on.
TEST_F(DirtyIoctlTest, EnablingStartsFromACleanSnapshotAndDisablingKeepsTheBits) {
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  mark_bits(dirty_, kIova, 0x9);
  ASSERT_EQ(set_tracking(dirty_, false), 0);
  std::uint64_t one = 1;
  EXPECT_EQ(mark(dirty_, kIova, kPageSize, kPageSize, addr(&one)), EINVAL) << "marking with tracking off";
  EXPECT_EQ(peek(dirty_, kIova), 0x9u);
  EXPECT_EQ(take(dirty_, kIova), 0x9u);
  EXPECT_EQ(peek(dirty_, kIova), 0u);
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  mark_bits(dirty_, kIova, 0x30);
  ASSERT_EQ(set_tracking(dirty_, false), 0);
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  EXPECT_EQ(peek(dirty_, kIova), 0u) << "enabling again did not clean";
  mark_bits(dirty_, kIova, 0x30);
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  EXPECT_EQ(peek(dirty_, kIova), 0u) << "enabling while on did not clean";
}

// Every area is cleaned on enable, not just the first, and each HWPT has its own bits.
TEST_F(DirtyIoctlTest, EnablingCleansEveryAreaAndTrackingBelongsToEachHwpt) {
  ASSERT_EQ(map(ioas_, kIova + k1M, 0, 4 * kPageSize), 0);
  const std::uint32_t second = hwpt_ok(md_.idev, ioas_, kHwptAllocDirtyTracking);
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  mark_bits(dirty_, kIova, 0x1);
  mark_bits(dirty_, kIova + k1M, 0x4);
  std::uint64_t one = 1;
  EXPECT_EQ(mark(second, kIova, kPageSize, kPageSize, addr(&one)), EINVAL)
      << "the other HWPT is not tracking";
  EXPECT_EQ(peek(second, kIova), 0u);
  EXPECT_EQ(peek(second, kIova + k1M), 0u);
  ASSERT_EQ(set_tracking(second, true), 0);
  EXPECT_EQ(peek(dirty_, kIova), 0x1u) << "enabling another HWPT cleaned this one";
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  EXPECT_EQ(peek(dirty_, kIova), 0u);
  EXPECT_EQ(peek(dirty_, kIova + k1M), 0u);
}

// DMA through the domain sets the bits of the entries it writes while tracking is on, and only then.
TEST_F(DirtyIoctlTest, DmaWritesAreRecordedOnlyWhileTracking) {
  ASSERT_TRUE(dma_write(md_.idev, kIova + kPageSize, 10).ok());
  EXPECT_EQ(peek(dirty_, kIova), 0u);
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  // Page 3 from its last byte into page 4, and all of page 9.
  ASSERT_TRUE(dma_write(md_.idev, kIova + 4 * kPageSize - 1, 2).ok());
  ASSERT_TRUE(dma_write(md_.idev, kIova + 9 * kPageSize, kPageSize).ok());
  EXPECT_EQ(take(dirty_, kIova), 0x218u);
  Result<ObjectRef<Device>> dev = ctx().get<Device>(md_.idev, ObjectType::kDevice);
  ASSERT_TRUE(dev.ok());
  std::uint8_t b = 0;
  ASSERT_TRUE((*dev)->dma_read(kIova + 5 * kPageSize, &b, 1).ok());
  EXPECT_EQ(peek(dirty_, kIova), 0u) << "a read is not a write";
  ASSERT_EQ(set_tracking(dirty_, false), 0);
  ASSERT_TRUE(dma_write(md_.idev, kIova, kPageSize).ok());
  EXPECT_EQ(peek(dirty_, kIova), 0u);
}

// ---- IOMMU_TEST_OP_DIRTY -------------------------------------------------------------------------------

TEST_F(DirtyIoctlTest, TestOpArgumentChecksComeFirstThenTheBitCountThenTheHwpt) {
  std::uint64_t one = 1;
  const std::uint64_t bits = addr(&one);
  for (std::uint32_t id : {dirty_, kNoSuchId}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(mark(id, kIova, kPageSize, 0, bits), EINVAL);                    // page_size 0
    EXPECT_EQ(mark(id, kIova, 0, kPageSize, bits), EINVAL);                    // length 0
    EXPECT_EQ(mark(id, kIova + k2K, kPageSize, kPageSize, bits), EINVAL);      // iova % page_size
    EXPECT_EQ(mark(id, kIova, kPageSize + k2K, kPageSize, bits), EINVAL);      // length % page_size
    EXPECT_EQ(mark(id, kIova, kPageSize, kPageSize, 0), EINVAL);               // no bitmap
    EXPECT_EQ(mark(id, kIova, 0xc000, 3 * k2K, bits), EINVAL);                 // a true remainder
    EXPECT_EQ(mark(id, 0, (std::uint64_t{1} << 27) + 1, 1, bits), EOVERFLOW);  // 2^27 + 1 bits
  }
  EXPECT_EQ(mark(kNoSuchId, 0, std::uint64_t{1} << 27, 1, bits), ENOENT);  // 2^27 bits is fine
}

TEST_F(DirtyIoctlTest, TestOpNeedsATrackingMockPagingHwpt) {
  std::uint64_t one = 1;
  const std::uint64_t bits = addr(&one);
  const std::uint32_t parent = hwpt_ok(md_.idev, ioas_, kHwptAllocNestParent | kHwptAllocDirtyTracking);
  const std::uint32_t nested = nested_ok(md_.idev, parent);
  const std::uint32_t plain = hwpt_ok(md_.idev, ioas_);
  const MockIds other = mock(ioas_);
  auto sw = Device::create(ctx(), Device::Kind::kSoftware);
  ASSERT_TRUE(sw.ok());
  const std::uint32_t soft = hwpt_ok(*sw, ioas_);
  for (std::uint32_t id : {kNoSuchId, 0u, ioas_, nested, md_.idev, md_.stdev})
    EXPECT_EQ(mark(id, kIova, kPageSize, kPageSize, bits), ENOENT) << id;
  // Not the mock's table, or no dirty ops: EINVAL.
  for (std::uint32_t id : {soft, plain, other.hwpt})
    EXPECT_EQ(mark(id, kIova, kPageSize, kPageSize, bits), EINVAL) << id;
  // Tracking off: EINVAL before the bitmap is read.
  EXPECT_EQ(mark(dirty_, kIova, kPageSize, kPageSize, testing::kUnmapped), EINVAL);
  EXPECT_EQ(mark(parent, kIova, kPageSize, kPageSize, bits), EINVAL);
  ASSERT_EQ(set_tracking(parent, true), 0);
  EXPECT_EQ(mark(parent, kIova, kPageSize, kPageSize, bits), 0);
  EXPECT_EQ(peek(parent, kIova), 0x1u);
  EXPECT_EQ(peek(dirty_, kIova), 0u);
}

// The bitmap is read whole before anything is marked: one that cannot be read marks nothing.
TEST_F(DirtyIoctlTest, TestOpReadsTheWholeBitmapFirst) {
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  std::uint64_t nr = 0;
  EXPECT_EQ(mark(dirty_, kIova, kPageSize, kPageSize, testing::kUnmapped, &nr), EFAULT);
  EXPECT_EQ(nr, ~0ull) << "out_nr_dirty written on failure";
  EXPECT_EQ(mark(dirty_, kIova, kPageSize, kPageSize, kKernelAddress), EFAULT);
  // 16 bits, the second byte on the inaccessible page: nothing is marked, not even the first byte's.
  std::uint8_t* last = reinterpret_cast<std::uint8_t*>(edge_) + kPageSize - 1;
  *last = 0xff;
  EXPECT_EQ(mark(dirty_, kIova, 16 * kPageSize, kPageSize, addr(last)), EFAULT);
  EXPECT_EQ(peek(dirty_, kIova), 0u);
  // 8 bits fit on the accessible page.
  EXPECT_EQ(mark(dirty_, kIova, 8 * kPageSize, kPageSize, addr(last), &nr), 0);
  EXPECT_EQ(nr, 8u);
  EXPECT_EQ(peek(dirty_, kIova), 0xffu);
}

// out_nr_dirty counts the set bits, mapped or not; units may be smaller or larger than a page, and of any
// size that divides iova and length; a reply that cannot be written is EFAULT with the marks made.
TEST_F(DirtyIoctlTest, TestOpCountsEveryBitAndMarksTheEntryHoldingEachUnit) {
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  std::uint64_t nr = 0;
  std::uint64_t bits = 0x5;
  EXPECT_EQ(mark(dirty_, kIova + 0x10000000, 64 * kPageSize, kPageSize, addr(&bits), &nr), 0);
  EXPECT_EQ(nr, 2u);
  EXPECT_EQ(mark(dirty_, std::uint64_t{1} << 60, 64 * kPageSize, kPageSize, addr(&bits), &nr), 0);
  EXPECT_EQ(nr, 2u);
  EXPECT_EQ(peek(dirty_, kIova), 0u);
  bits = 0;
  EXPECT_EQ(mark(dirty_, kIova, 64 * kPageSize, kPageSize, addr(&bits), &nr), 0);
  EXPECT_EQ(nr, 0u);
  // 2 KiB units: unit 3 is the second half of page 1, unit 8 the first half of page 4.
  mark_bits(dirty_, kIova, 0x108, k2K);
  EXPECT_EQ(take(dirty_, kIova), 0x12u);
  // 6 KiB units from kIova + 2 KiB: kIova + 2K (page 0), + 8K (page 2), + 20K (page 5).
  mark_bits(dirty_, kIova + k2K, 0xb, 3 * k2K);
  EXPECT_EQ(take(dirty_, kIova), 0x25u);
  // 16 KiB units mark the page holding each unit's first byte.
  mark_bits(dirty_, kIova, 0x6, 4 * kPageSize);
  EXPECT_EQ(take(dirty_, kIova), 0x110u);
  // The reply on a read-only page: EFAULT, but the pages are marked (as the kernel's respond fails last).
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DIRTY, dirty_);
  bits = 0x80;
  c.dirty = {0, kIova, 8 * kPageSize, kPageSize, addr(&bits), 0};
  EXPECT_EQ(call(IOMMU_TEST_CMD, read_only_copy(c)), EFAULT);
  EXPECT_EQ(peek(dirty_, kIova), 0x80u);
}

// ---- IOMMU_HWPT_GET_DIRTY_BITMAP: errnos -----------------------------------------------------------------

TEST_F(DirtyIoctlTest, GetStructSizeRules) {
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  mark_bits(dirty_, kIova, 0x1);
  std::uint64_t bits = 0;
  Padded<iommu_hwpt_get_dirty_bitmap> r{};
  r.c = {40, dirty_, 0, 0, kIova, 16 * kPageSize, kPageSize, addr(&bits)};
  EXPECT_EQ(call(IOMMU_HWPT_GET_DIRTY_BITMAP, &r), EINVAL);
  r.c.size = 56;
  r.bytes[50] = 1;
  EXPECT_EQ(call(IOMMU_HWPT_GET_DIRTY_BITMAP, &r), E2BIG);
  EXPECT_EQ(bits, 0u);
  EXPECT_EQ(peek(dirty_, kIova), 0x1u) << "a refused read cleared";
  r.bytes[50] = 0;
  EXPECT_EQ(call(IOMMU_HWPT_GET_DIRTY_BITMAP, &r), 0);
  EXPECT_EQ(bits, 0x1u);
}

TEST_F(DirtyIoctlTest, GetFlagsAndReservedAreEopnotsuppBeforeTheLookup) {
  std::uint64_t bits = 0;
  for (std::uint32_t id : {dirty_, kNoSuchId}) {
    for (auto [flags, reserved] : {std::pair{2u, 0u}, std::pair{0x80000001u, 0u}, std::pair{0u, 1u},
                                   std::pair{kNoClear, 0x80000000u}}) {
      iommu_hwpt_get_dirty_bitmap c{sizeof(c), id, flags, reserved, kIova, kPageSize, kPageSize, addr(&bits)};
      EXPECT_EQ(call(IOMMU_HWPT_GET_DIRTY_BITMAP, &c), EOPNOTSUPP) << id << " " << flags << " " << reserved;
    }
  }
}

TEST_F(DirtyIoctlTest, GetNeedsAPagingHwptAndLooksItUpBeforeTheRange) {
  std::uint64_t bits = 0;
  const std::uint32_t parent = hwpt_ok(md_.idev, ioas_, kHwptAllocNestParent);
  const std::uint32_t nested = nested_ok(md_.idev, parent);
  for (std::uint32_t id : {kNoSuchId, 0u, ioas_, nested, md_.idev, md_.stdev}) {
    EXPECT_EQ(get(id, 0, kIova, kPageSize, kPageSize, &bits), ENOENT) << id;
    EXPECT_EQ(get(id, 0, ~0ull - 0xfff, 0x2000, 0, &bits), ENOENT) << id;
  }
}

// iommufd_check_iova_range(): iova + length - 1 must not wrap (EOVERFLOW, first: length 0 wraps unless
// iova is 0), iova and iova + length must meet the IOAS's alignment, page_size must not be 0, and iova and
// iova + length must be multiples of it as a mask.
TEST_F(DirtyIoctlTest, GetRangeChecksInTheKernelsOrder) {
  std::uint64_t bits = 0;
  // This IOAS has only the mock's 2 KiB items: its alignment is 2 KiB.
  iommu_iova_range ranges[4] = {};
  iommu_ioas_iova_ranges q{sizeof(q), ioas_, 4, 0, addr(ranges), 0};
  ASSERT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &q), 0);
  ASSERT_EQ(q.out_iova_alignment, k2K);
  EXPECT_EQ(get(dirty_, 0, ~0ull - 0xfff, 0x2000, kPageSize, &bits), EOVERFLOW);
  EXPECT_EQ(get(dirty_, 0, ~0ull - 0x7ff, 0x2000, 0, &bits), EOVERFLOW);  // before page_size and alignment
  EXPECT_EQ(get(dirty_, 0, kIova, 0, kPageSize, &bits), EOVERFLOW);
  EXPECT_EQ(get(dirty_, 0, 1, 0, 0, &bits), EOVERFLOW);
  EXPECT_EQ(get(dirty_, 0, kIova + 0x400, kPageSize, 0x400, &bits), EINVAL);  // iova vs the IOAS
  EXPECT_EQ(get(dirty_, 0, kIova, kPageSize + 0x400, 0x400, &bits), EINVAL);  // end vs the IOAS
  EXPECT_EQ(get(dirty_, 0, kIova + 0x400, kPageSize, 0, &bits), EINVAL);
  EXPECT_EQ(get(dirty_, 0, kIova, kPageSize, 0, &bits), EINVAL);                    // page_size 0
  EXPECT_EQ(get(dirty_, 0, kIova + k2K, 2 * kPageSize, kPageSize, &bits), EINVAL);  // iova vs page_size
  EXPECT_EQ(get(dirty_, 0, kIova, kPageSize + k2K, kPageSize, &bits), EINVAL);      // end vs page_size
  EXPECT_EQ(get(dirty_, 0, kIova, 4 * kPageSize, 16 * kPageSize, &bits), EINVAL);   // page_size > length
  // page_size 0x3000 is the mask 0x2fff: kIova + 0x3000 fails, kIova + 0x4000 passes.
  EXPECT_EQ(get(dirty_, 0, kIova, 0x3000, 0x3000, &bits), EINVAL);
  EXPECT_EQ(get(dirty_, 0, kIova, 0x4000, 0x3000, &bits), 0);
  // Below the IOAS's alignment is fine, and so is the end of the 64-bit space.
  EXPECT_EQ(get(dirty_, 0, kIova, kPageSize, 0x200, &bits), 0);
  EXPECT_EQ(get(dirty_, 0, ~0ull - 0xfff, 0x1000, kPageSize, &bits), 0);
  EXPECT_EQ(get(dirty_, 0, 0, 0, kPageSize, &bits), 0);  // iova 0, length 0: the whole space
  EXPECT_EQ(bits, 0u);
}

// A HWPT without dirty ops: the range is checked first, then EOPNOTSUPP.
TEST_F(DirtyIoctlTest, GetOnAHwptWithoutDirtyOpsIsEopnotsuppAfterTheRange) {
  std::uint64_t bits = 0;
  const std::uint32_t plain = hwpt_ok(md_.idev, ioas_);
  const MockIds other = mock(ioas_);
  auto sw = Device::create(ctx(), Device::Kind::kSoftware);
  ASSERT_TRUE(sw.ok());
  const std::uint32_t soft = hwpt_ok(*sw, ioas_);
  for (std::uint32_t id : {plain, other.hwpt, soft}) {
    EXPECT_EQ(get(id, 0, kIova, kPageSize, kPageSize, &bits), EOPNOTSUPP) << id;
    EXPECT_EQ(get(id, 0, 0, 0, kPageSize, &bits), EOPNOTSUPP) << id;
    EXPECT_EQ(get(id, 0, kIova + 0x400, kPageSize, kPageSize, &bits), EINVAL) << id;
    EXPECT_EQ(get(id, 0, kIova, 0, kPageSize, &bits), EOVERFLOW) << id;
  }
}

// ---- IOMMU_HWPT_GET_DIRTY_BITMAP: what it reports
// ----------------------------------------------------------

// A 4 KiB page is one contiguous entry of two 2 KiB items in the mock's table, reported from its first
// item for one item: at 2 KiB and below only its first half shows, whichever half was marked.
TEST_F(DirtyIoctlTest, APageReportsItsFirstTwoKiBAtEveryGranularity) {
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  mark_bits(dirty_, kIova, 0x8009);                       // pages 0, 3, 15
  mark_bits(dirty_, kIova, std::uint64_t{1} << 11, k2K);  // the second half of page 5
  EXPECT_EQ(peek(dirty_, kIova), 0x8029u);
  EXPECT_EQ(peek(dirty_, kIova, k2K), 0x40000441u);
  EXPECT_EQ(peek(dirty_, kIova, 0x400), 0x3000000000303003u);
  EXPECT_EQ(peek(dirty_, kIova, 0x2000), 0x87u);
}

TEST_F(DirtyIoctlTest, NoClearKeepsTheBitsAndASecondReadAfterAClearIsEmpty) {
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  mark_bits(dirty_, kIova, 0xa5);
  EXPECT_EQ(peek(dirty_, kIova), 0xa5u);
  EXPECT_EQ(peek(dirty_, kIova), 0xa5u);
  EXPECT_EQ(take(dirty_, kIova), 0xa5u);
  EXPECT_EQ(take(dirty_, kIova), 0u);
  EXPECT_EQ(peek(dirty_, kIova), 0u);
}

// Bits are only ever set: whatever the caller's bitmap held stays, and bytes around it are not touched.
TEST_F(DirtyIoctlTest, BitsAlreadySetStayAndNothingAroundTheBitmapChanges) {
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  mark_bits(dirty_, kIova, 0x8001);
  std::uint8_t buf[8];
  std::memset(buf, 0x5a, sizeof(buf));
  // 16 bits from buf + 3.
  ASSERT_EQ(get(dirty_, kNoClear, kIova, 16 * kPageSize, kPageSize, buf + 3), 0);
  const std::uint8_t want[8] = {0x5a, 0x5a, 0x5a, 0x5b, 0xda, 0x5a, 0x5a, 0x5a};
  EXPECT_EQ(std::memcmp(buf, want, sizeof(buf)), 0);
  std::memset(buf, 0xff, sizeof(buf));
  ASSERT_EQ(get(dirty_, 0, kIova, 16 * kPageSize, kPageSize, buf), 0);
  for (std::uint8_t b : buf) EXPECT_EQ(b, 0xff);
  EXPECT_EQ(peek(dirty_, kIova), 0u);
}

// The walk covers the areas that follow one another from the one holding iova; a hole ends it (what lies
// beyond stays dirty), a start in a hole reports nothing. None of it is an error.
TEST_F(DirtyIoctlTest, AHoleEndsTheWalk) {
  // Areas: [kIova, +16 pages) (the fixture's), [+16, +20) adjacent, a hole [+20, +24), [+24, +32).
  ASSERT_EQ(map(ioas_, kIova + 16 * kPageSize, 0, 4 * kPageSize), 0);
  ASSERT_EQ(map(ioas_, kIova + 24 * kPageSize, 0, 8 * kPageSize), 0);
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  const std::uint64_t marked = (1ull << 1) | (1ull << 17) | (1ull << 25) | (1ull << 31);
  mark_bits(dirty_, kIova, marked);
  EXPECT_EQ(peek(dirty_, kIova), (1ull << 1) | (1ull << 17));
  EXPECT_EQ(peek(dirty_, kIova + 20 * kPageSize), 0u);
  EXPECT_EQ(peek(dirty_, kIova + 24 * kPageSize), (1ull << 1) | (1ull << 7));
  EXPECT_EQ(take(dirty_, kIova), (1ull << 1) | (1ull << 17));
  EXPECT_EQ(take(dirty_, kIova + 20 * kPageSize), 0u);
  EXPECT_EQ(peek(dirty_, kIova + 24 * kPageSize), (1ull << 1) | (1ull << 7)) << "cleared past the hole";
  // The whole space: the walk starts at 0, which is in a hole.
  std::uint64_t bits = 0;
  EXPECT_EQ(get(dirty_, 0, 0, 0, kPageSize, &bits), 0);
  EXPECT_EQ(bits, 0u);
  EXPECT_EQ(peek(dirty_, kIova + 24 * kPageSize), (1ull << 1) | (1ull << 7));
}

// Unmapping forgets an entry's dirty state: mapped again, it starts clean.
TEST_F(DirtyIoctlTest, UnmapForgetsAndARemapStartsClean) {
  ASSERT_EQ(map(ioas_, kIova + 16 * kPageSize, 0, 4 * kPageSize), 0);
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  mark_bits(dirty_, kIova, (1ull << 17) | (1ull << 2));
  ASSERT_EQ(unmap(ioas_, kIova + 16 * kPageSize, 4 * kPageSize), 0);
  EXPECT_EQ(peek(dirty_, kIova), 1ull << 2);
  ASSERT_EQ(map(ioas_, kIova + 16 * kPageSize, 0, 4 * kPageSize), 0);
  EXPECT_EQ(peek(dirty_, kIova), 1ull << 2);
}

// ---- bitmaps with pages that cannot be written -----------------------------------------------------------

// The call succeeds whatever the bitmap pointer; without NO_CLEAR the entries are cleaned even when no bit
// could be written (the kernel drops them with the pin that failed).
TEST_F(DirtyIoctlTest, ABitmapThatCannotBeWrittenAtAllStillSucceeds) {
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  mark_bits(dirty_, kIova, 0x8421);
  std::uint8_t* ro = anon(kPageSize);
  ASSERT_EQ(mprotect(ro, kPageSize, PROT_READ), 0);
  std::uint8_t* none = anon(kPageSize, PROT_NONE);
  for (std::uint64_t data : {std::uint64_t{0}, testing::kUnmapped, addr(ro), addr(none), kKernelAddress,
                             ~std::uint64_t{0} - 1, ~std::uint64_t{0} - kPageSize + 1}) {
    EXPECT_EQ(get(dirty_, kNoClear, kIova, 16 * kPageSize, kPageSize, data), 0) << std::hex << data;
    EXPECT_EQ(peek(dirty_, kIova), 0x8421u) << std::hex << data;
  }
  EXPECT_EQ(ro[0], 0);
  EXPECT_EQ(get(dirty_, 0, kIova, 16 * kPageSize, kPageSize, addr(ro)), 0);
  EXPECT_EQ(peek(dirty_, kIova), 0u) << "cleaned, and lost";
}

// Each report pins the bitmap from the page of its first byte: bits on a page that cannot be written are
// lost, bits of later reports on a writable page after it are written.
TEST_F(DirtyIoctlTest, OnlyTheReportsOnWritablePagesAreWritten) {
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  std::uint8_t* two = anon(2 * kPageSize);
  const std::uint64_t marked = 0x8001;  // 16 bits from 1 byte before a page boundary
  std::uint8_t* data = two + kPageSize - 1;
  mark_bits(dirty_, kIova, marked);
  for (int prot : {PROT_READ, PROT_NONE}) {
    SCOPED_TRACE(prot);
    // The second page cannot be written: page 15's bit is lost, page 0's is written.
    std::memset(two, 0, 2 * kPageSize);
    ASSERT_EQ(mprotect(two + kPageSize, kPageSize, prot), 0);
    ASSERT_EQ(get(dirty_, kNoClear, kIova, 16 * kPageSize, kPageSize, data), 0);
    ASSERT_EQ(mprotect(two + kPageSize, kPageSize, PROT_READ | PROT_WRITE), 0);
    EXPECT_EQ(data[0], 0x01);
    EXPECT_EQ(data[1], 0x00);
    // The first page cannot be written: page 15's bit is.
    std::memset(two, 0, 2 * kPageSize);
    ASSERT_EQ(mprotect(two, kPageSize, prot), 0);
    ASSERT_EQ(get(dirty_, kNoClear, kIova, 16 * kPageSize, kPageSize, data), 0);
    ASSERT_EQ(mprotect(two, kPageSize, PROT_READ | PROT_WRITE), 0);
    EXPECT_EQ(data[0], 0x00);
    EXPECT_EQ(data[1], 0x80);
  }
  // The second page unmapped.
  ASSERT_EQ(munmap(two + kPageSize, kPageSize), 0);
  std::memset(two, 0, kPageSize);
  ASSERT_EQ(get(dirty_, 0, kIova, 16 * kPageSize, kPageSize, data), 0);
  EXPECT_EQ(data[0], 0x01);
  EXPECT_EQ(peek(dirty_, kIova), 0u);
}

// ---- the bitmap against the model ----------------------------------------------------------------------

// An area of a layout: IOVA offset from the layout's base, offset into the 1 MiB aligned buffer, length,
// and the leaves the table maps it with.
struct AreaSpec {
  std::uint64_t iova_off, va_off, len, leaf;
};

// The default mock table: 4 KiB pages only (two 2 KiB items each). Two adjacent areas, a hole, two more
// adjacent ones, a larger hole, a last area.
const std::vector<AreaSpec> kPagesLayout = {{0, 0, 128 << 10, k4K},
                                            {128 << 10, k1M, 32 << 10, k4K},
                                            {192 << 10, 2 * k1M, 256 << 10, k4K},
                                            {448 << 10, 3 * k1M, k4K, k4K},
                                            {k1M, 4 * k1M, 64 << 10, k4K}};
// The MOCK_IOMMUPT_HUGE table: 1 MiB leaves where IOVA and address are 1 MiB aligned, 4 KiB pages
// elsewhere. Two 1 MiB leaves, an adjacent 4 KiB area, a hole, one 1 MiB leaf, an adjacent large area of 4
// KiB pages.
const std::vector<AreaSpec> kHugeLayout = {{0, 0, k2M, k1M},
                                           {k2M, k2M + k4K, 64 << 10, k4K},
                                           {3 * k1M, 3 * k1M, k1M, k1M},
                                           {4 * k1M, k1M + k4K, k1M + 2 * k4K, k4K}};

// Model-checked rounds on a layout: each marks pages (the test op at granules from 2 KiB to 1 MiB, and DMA
// writes through the domain), then reads a random range at a random granularity from 16 bytes to 2 MiB,
// clearing or not, into a bitmap at a random place in pre-filled memory whose pages are sometimes
// read-only or inaccessible; the bitmap memory must then be what the model says, byte for byte.
class DirtyModelTest : public DirtyIoctlTest {
 protected:
  static constexpr std::uint64_t kBufLen = 6 * k1M;
  static constexpr std::uint64_t kBitmapPages = 6;  // and an inaccessible one after them
  static constexpr std::uint64_t kPagesBase = kIova;
  static constexpr std::uint64_t kHugeBase = std::uint64_t{1} << 30;

  void SetUp() override {
    DirtyIoctlTest::SetUp();
    ASSERT_EQ(unmap(ioas_, kIova, 16 * kPageSize), 0);
    std::uint8_t* raw = anon(kBufLen + k1M);
    ASSERT_NE(raw, nullptr);
    buf_ = raw + (((addr(raw) + k1M - 1) & ~(k1M - 1)) - addr(raw));
    bitmap_ = anon((kBitmapPages + 1) * kPageSize);
    ASSERT_NE(bitmap_, nullptr);
    ASSERT_EQ(mprotect(bitmap_ + kBitmapPages * kPageSize, kPageSize, PROT_NONE), 0);
  }

  // Maps `layout` from `base` into `ioas` and mirrors it in model_.
  void build(std::uint32_t ioas, std::uint64_t base, const std::vector<AreaSpec>& layout) {
    layout_ = layout;
    base_ = base;
    for (const AreaSpec& a : layout) {
      ASSERT_EQ(map_va(ioas, base + a.iova_off, buf_ + a.va_off, a.len), 0) << a.iova_off;
      model_.add_area(base + a.iova_off, a.len, a.leaf);
    }
    span_ = layout.back().iova_off + layout.back().len;
  }

  // A new IOAS with a tracking DIRTY_TRACKING HWPT of the MOCK_IOMMUPT_HUGE table, kHugeLayout mapped.
  std::uint32_t build_huge() {
    const std::uint32_t ioas = ioas_alloc();
    const HwptSelftest huge{kTestIotlbDefault, kMockIommuptHuge};
    std::uint32_t hwpt = 0;
    EXPECT_EQ(
        hwpt_alloc(kHwptAllocDirtyTracking, md_.idev, ioas, kHwptDataSelftest, &huge, sizeof(huge), 0, &hwpt),
        0);
    build(ioas, kHugeBase, kHugeLayout);
    // The premise of the layout: three 1 MiB leaves, 4 KiB pages elsewhere.
    EXPECT_EQ(table(hwpt)->large_entries(), 3u);
    EXPECT_EQ(set_tracking(hwpt, true), 0);
    return hwpt;
  }

  void mark_some(std::mt19937_64& rng, std::uint32_t hwpt, std::uint32_t idev) {
    for (int m = static_cast<int>(rng() % 4); m > 0; --m) {
      if (rng() % 2) {
        static constexpr std::uint64_t kUnits[] = {k2K, k4K, 16 << 10, 64 << 10, k1M};
        const std::uint64_t unit = kUnits[rng() % 5];
        const std::uint64_t nunits = 1 + rng() % 64;
        const std::uint64_t iova = align_down(base_ - (64 << 10) + rng() % (span_ + (128 << 10)), unit);
        std::uint64_t bits = 0;
        for (std::uint64_t i = 0; i < nunits; ++i) {
          if (rng() % 6 != 0) continue;
          bits |= std::uint64_t{1} << i;
          model_.mark(iova + i * unit);
        }
        std::uint64_t nr = 0;
        ASSERT_EQ(mark(hwpt, iova, nunits * unit, unit, addr(&bits), &nr), 0);
        ASSERT_EQ(nr, static_cast<std::uint64_t>(std::popcount(bits)));
      } else {
        const AreaSpec& a = layout_[rng() % layout_.size()];
        const std::uint64_t off = rng() % a.len;
        const std::uint64_t len = 1 + rng() % std::min(3 * kPageSize, a.len - off);
        ASSERT_TRUE(dma_write(idev, base_ + a.iova_off + off, len).ok());
        model_.write(base_ + a.iova_off + off, len);
      }
    }
  }

  // One read; returns false (with a failure recorded) when the bitmap memory is not what the model says.
  bool read_and_check(std::mt19937_64& rng, std::uint32_t hwpt, bool no_clear, bool bad_pages,
                      std::uint64_t iova, std::uint64_t length, std::uint64_t page_size) {
    const std::uint64_t region = kBitmapPages * kPageSize;
    const std::uint64_t total = (((length - 1) >> std::countr_zero(page_size)) >> 3) + 1;
    std::uint64_t data_off = 0;
    switch (rng() % 3) {
      case 0:
        data_off = rng() % 8;
        break;
      case 1:  // across the first page boundary
        data_off = kPageSize - 1 - rng() % std::min<std::uint64_t>(total, 8);
        break;
      default:
        data_off = rng() % (2 * kPageSize);
    }
    std::vector<std::uint8_t> before(region, 0);
    if (rng() % 2)
      for (auto& b : before) b = static_cast<std::uint8_t>(rng() % 4 == 0 ? rng() : 0);
    std::memcpy(bitmap_, before.data(), region);
    std::vector<int> prot(kBitmapPages, PROT_READ | PROT_WRITE);
    if (bad_pages) {
      for (auto& p : prot) {
        const unsigned r = rng() % 6;
        p = r < 2 ? PROT_READ : r < 3 ? PROT_NONE : p;
      }
    }
    for (std::uint64_t i = 0; i < kBitmapPages; ++i)
      EXPECT_EQ(mprotect(bitmap_ + i * kPageSize, kPageSize, prot[i]), 0);

    const std::uint64_t base = addr(bitmap_);
    BitmapModel want(base, before, [&](std::uint64_t page) {
      return prot[(page - base) / kPageSize] == (PROT_READ | PROT_WRITE);
    });
    want.begin(base + data_off, iova, length, page_size);
    for (auto [va, len] : model_.collect(iova, iova + length - 1, no_clear)) want.report(va, len);

    const int e = get(hwpt, no_clear ? kNoClear : 0, iova, length, page_size, base + data_off);
    EXPECT_EQ(mprotect(bitmap_, region, PROT_READ | PROT_WRITE), 0);
    EXPECT_EQ(e, 0);
    const std::uint8_t* got = bitmap_;
    for (std::uint64_t i = 0; i < region; ++i) {
      if (got[i] == want.image()[i]) continue;
      ADD_FAILURE() << "bitmap memory differs at byte " << i << " (bitmap at " << data_off << ", " << total
                    << " bytes): got 0x" << std::hex << int{got[i]} << ", want 0x" << int{want.image()[i]}
                    << std::dec << "; iova base+0x" << std::hex << (iova - base_) << " length 0x" << length
                    << " page_size 0x" << page_size << std::dec << (no_clear ? " NO_CLEAR" : "")
                    << (bad_pages ? " with bad pages" : "");
      return false;
    }
    return true;
  }

  void rounds(std::uint32_t hwpt, std::uint32_t idev, unsigned seed, int count) {
    std::mt19937_64 rng(seed);
    const std::uint64_t lo = base_ - (64 << 10), hi = base_ + span_ + (64 << 10);
    for (int round = 0; round < count; ++round) {
      SCOPED_TRACE("round " + std::to_string(round));
      mark_some(rng, hwpt, idev);
      if (HasFatalFailure()) return;
      const std::uint64_t page_size = std::uint64_t{1} << (4 + rng() % 18);  // 16 bytes to 2 MiB
      const std::uint64_t unit = std::max(page_size, k4K);
      const std::uint64_t iova = align_down(lo + rng() % (hi - lo), unit);
      // At most 2 pages of bitmap, so that whatever a report writes past it stays in the region.
      const std::uint64_t max_units =
          std::max<std::uint64_t>(1, std::min((hi - iova) / unit + 1, 2 * kPageSize * 8 * page_size / unit));
      const std::uint64_t length = (1 + rng() % max_units) * unit;
      const bool no_clear = rng() % 3 == 0;
      if (!read_and_check(rng, hwpt, no_clear, rng() % 4 == 0, iova, length, page_size)) return;
      // After a clearing read, the same range again holds nothing the walk reaches.
      if (!no_clear && rng() % 4 == 0) {
        if (!model_.collect(iova, iova + length - 1, true).empty()) {
          ADD_FAILURE() << "the model kept bits in a range it read and cleared";
          return;
        }
        if (!read_and_check(rng, hwpt, true, false, iova, length, page_size)) return;
      }
    }
    // Finally everything, area by area.
    for (const AreaSpec& a : layout_) {
      if (!read_and_check(rng, hwpt, false, false, base_ + a.iova_off, a.len, kPageSize)) return;
    }
    EXPECT_FALSE(model_.any_dirty());
  }

  std::uint8_t* buf_ = nullptr;
  std::uint8_t* bitmap_ = nullptr;
  std::vector<AreaSpec> layout_;
  std::uint64_t base_ = 0, span_ = 0;
  TableModel model_;
};

TEST_F(DirtyModelTest, RandomPatternsOverPagesAreasAndHolesMatchTheModel) {
  build(ioas_, kPagesBase, kPagesLayout);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_EQ(table(dirty_)->large_entries(), 0u);
  ASSERT_EQ(set_tracking(dirty_, true), 0);
  rounds(dirty_, md_.idev, 1, 400);
}

TEST_F(DirtyModelTest, RandomPatternsOverOneMiBLeavesMatchTheModel) {
  const std::uint32_t hwpt = build_huge();
  ASSERT_FALSE(HasFatalFailure());
  const MockIds dev = mock(hwpt);
  rounds(hwpt, dev.idev, 2, 400);
}

// The rules a batching writer might bend, each on its own. A dirty 1 MiB leaf reports all of itself from
// the first byte the walk reaches, whatever the request: past the request's end the bits go on to the end
// of the pages pinned for the report (one page for a page-aligned bitmap, two when its first byte is not
// page aligned), and stop there.
TEST_F(DirtyModelTest, ALeafReportRunsPastTheBitmapToTheEndOfThePinnedPages) {
  const std::uint32_t hwpt = build_huge();
  ASSERT_FALSE(HasFatalFailure());
  std::uint64_t one = 1;
  ASSERT_EQ(mark(hwpt, kHugeBase + (512 << 10), kPageSize, kPageSize, addr(&one)), 0);
  const std::uint64_t region = kBitmapPages * kPageSize;
  auto count_ff = [&](std::uint64_t from) {
    std::uint64_t n = 0;
    for (std::uint64_t i = from; i < region && bitmap_[i] == 0xff; ++i) ++n;
    return n;
  };
  // One page in the middle of the leaf at 4 KiB: its 256 bits from bit 0, 32 bytes, all on the pinned page.
  std::memset(bitmap_, 0, region);
  ASSERT_EQ(get(hwpt, kNoClear, kHugeBase + (512 << 10), kPageSize, kPageSize, bitmap_), 0);
  EXPECT_EQ(count_ff(0), 32u);
  EXPECT_EQ(bitmap_[32], 0);
  // 16-byte granules: 65536 bits, 8 KiB, from a page-aligned 32-byte bitmap: one page is pinned.
  std::memset(bitmap_, 0, region);
  ASSERT_EQ(get(hwpt, kNoClear, kHugeBase + (512 << 10), kPageSize, 16, bitmap_), 0);
  EXPECT_EQ(count_ff(0), kPageSize);
  EXPECT_EQ(bitmap_[kPageSize], 0);
  // The same bitmap 32 bytes before a page boundary: two pages are pinned.
  std::memset(bitmap_, 0, region);
  ASSERT_EQ(get(hwpt, kNoClear, kHugeBase + (512 << 10), kPageSize, 16, bitmap_ + kPageSize - 32), 0);
  EXPECT_EQ(count_ff(kPageSize - 32), kPageSize + 32);
  EXPECT_EQ(bitmap_[2 * kPageSize], 0);
  // ... unless the second cannot be written: then only the first page's 32 bytes.
  std::memset(bitmap_, 0, region);
  ASSERT_EQ(mprotect(bitmap_ + kPageSize, kPageSize, PROT_READ), 0);
  ASSERT_EQ(get(hwpt, kNoClear, kHugeBase + (512 << 10), kPageSize, 16, bitmap_ + kPageSize - 32), 0);
  ASSERT_EQ(mprotect(bitmap_ + kPageSize, kPageSize, PROT_READ | PROT_WRITE), 0);
  EXPECT_EQ(count_ff(kPageSize - 32), 32u);
  EXPECT_EQ(bitmap_[kPageSize], 0);
  // The request from the leaf's second half: the report still runs 1 MiB, into the next leaf's bits.
  std::memset(bitmap_, 0, region);
  ASSERT_EQ(get(hwpt, kNoClear, kHugeBase + (512 << 10), k1M, kPageSize, bitmap_), 0);
  EXPECT_EQ(count_ff(0), 32u);
  EXPECT_EQ(bitmap_[32], 0);
  // Cleared, the leaf is clean whatever part of it was asked for.
  ASSERT_EQ(get(hwpt, 0, kHugeBase + (768 << 10), kPageSize, kPageSize, bitmap_), 0);
  EXPECT_EQ(peek(hwpt, kHugeBase), 0u);
}

// ---- the fail-nth sweep of a dirty-tracking sequence ------------------------------------------------------

// A fresh iommufd per run: an empty IOAS `ioas_` and a mock device on a second IOAS. The swept sequence:
// HWPT_ALLOC with DIRTY_TRACKING on ioas_, the device's RID onto it, a 16-page map, tracking on, four pages
// marked, a clearing read of the bitmap, tracking off. It stops at the first failing call.
class DirtySweepTest : public HwptIoctlTest {
 protected:
  enum Step { kStepAlloc, kStepAttach, kStepMap, kStepEnable, kStepMark, kStepRead, kStepDisable, kStepDone };
  static constexpr std::uint64_t kMarkedBits = 0x8062;

  void reset() {
    host_.close(fd_);
    ASSERT_EQ(Pages::total_pinned_pages(), pinned_before_) << "pins leaked";
    fd_ = host_.open_iommufd();
    ASSERT_GE(fd_, 0);
    ioas_ = ioas_alloc();
    md_ = mock(ioas_alloc());
    hwpt_ = 0;
    bitmap_[0] = bitmap_[1] = 0;
  }

  // The sequence; step_ says where it stopped (kStepDone when it did not), fired_in_ in which step the armed
  // site fired (kStepDone when none did).
  int run() {
    fired_in_ = kStepDone;
    const std::uint64_t injected = injected_on_this_thread();
    int e = 0;
    for (step_ = kStepAlloc; step_ != kStepDone; step_ = static_cast<Step>(step_ + 1)) {
      e = run_step(step_);
      if (fired_in_ == kStepDone && injected_on_this_thread() != injected) fired_in_ = step_;
      if (e) break;
    }
    return e;
  }
  int run_step(Step s) {
    switch (s) {
      case kStepAlloc:
        return hwpt_alloc(md_.idev, ioas_, kHwptAllocDirtyTracking, &hwpt_);
      case kStepAttach:
        return mock_replace(md_.stdev, hwpt_);
      case kStepMap:
        return map(ioas_, kIova, 0, 16 * kPageSize);
      case kStepEnable:
      case kStepDisable: {
        iommu_hwpt_set_dirty_tracking c{sizeof(c), s == kStepEnable ? kEnable : 0u, hwpt_, 0};
        return call(IOMMU_HWPT_SET_DIRTY_TRACKING, &c);
      }
      case kStepMark: {
        iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DIRTY, hwpt_);
        const std::uint64_t bits = kMarkedBits;
        c.dirty = {0, kIova, 16 * kPageSize, kPageSize, addr(&bits), 0};
        return test(c);
      }
      case kStepRead: {
        iommu_hwpt_get_dirty_bitmap c{sizeof(c), hwpt_,          0,         0,
                                      kIova,     16 * kPageSize, kPageSize, addr(bitmap_)};
        return call(IOMMU_HWPT_GET_DIRTY_BITMAP, &c);
      }
      case kStepDone:
        break;
    }
    return 0;
  }
  // What the domain still holds, read with injection off.
  std::uint64_t held() {
    std::uint64_t bits[2] = {};
    iommu_hwpt_get_dirty_bitmap c{sizeof(c), hwpt_,          kNoClear,  0,
                                  kIova,     16 * kPageSize, kPageSize, addr(bits)};
    EXPECT_EQ(call(IOMMU_HWPT_GET_DIRTY_BITMAP, &c), 0);
    return bits[0];
  }
  bool tracking() {
    auto h = ctx().get<HwptPaging>(hwpt_, ObjectType::kHwptPaging);
    auto* d = h.ok() ? dynamic_cast<PageTableDomain*>(&(*h)->domain()) : nullptr;
    return d && d->dirty_tracking();
  }

  MockIds md_;
  std::uint32_t hwpt_ = 0;
  std::uint64_t bitmap_[2] = {};
  Step step_ = kStepDone, fired_in_ = kStepDone;
};

TEST_F(DirtySweepTest, EveryFaultSiteOfTheSequenceFailsItsStepAndLeavesTheDirtyStateConsistent) {
  std::map<std::pair<int, std::string>, unsigned> seen;  // (step, site) -> runs that failed it
  std::vector<std::pair<int, std::string>> fired;
  auto expected = [&](const SweepRun& run) {
    const unsigned ordinal = ++seen[{fired_in_, run.site}];
    fired.emplace_back(fired_in_, run.site);
    // HWPT_ALLOC turns a failed lookup of pt_id (its second) into EINVAL (hw_pagetable.c).
    if (fired_in_ == kStepAlloc && run.site == "objects.lookup" && ordinal == 2) return EINVAL;
    // The read of the user bitmap's bytes and their write back: a bitmap page that cannot be written loses
    // its bits and the call goes on, as a failed pin does in the kernel (the struct is the first read).
    if (fired_in_ == kStepRead &&
        (run.site == "mm.copy_to_user" || (run.site == "mm.copy_from_user" && ordinal > 1)))
      return 0;
    return testing::fault_site_errno(run.site);
  };
  SweepResult r = testing::sweep_checked(
      [&] { reset(); }, [&] { return run(); },
      [&](const SweepRun& run) {
        const std::string where =
            "run " + std::to_string(run.n) + ", " + run.site + " in step " + std::to_string(fired_in_);
        EXPECT_EQ(ctx().get<Ioas>(ioas_, ObjectType::kIoas).value()->iopt().check_invariants(), "") << where;
        if (step_ == kStepAlloc) {
          EXPECT_EQ(ctx().get<HwptPaging>(hwpt_, ObjectType::kHwptPaging).status().error(), ENOENT) << where;
          return;
        }
        if (step_ <= kStepMap) {
          EXPECT_FALSE(tracking()) << where;
          return;
        }
        // Tracking is on from a successful enable to a successful disable.
        EXPECT_EQ(tracking(), step_ > kStepEnable && step_ <= kStepDisable) << where;
        std::uint64_t want_held = 0, want_bitmap = 0;
        if (step_ == kStepMark) {
          // A failed reply comes after the marks.
          want_held = run.site == "mm.copy_to_user" ? kMarkedBits : 0;
        } else if (step_ == kStepRead) {
          want_held = kMarkedBits;  // a refused read cleans nothing
        } else if (step_ > kStepRead) {
          want_bitmap = kMarkedBits;  // read, and cleaned
        }
        EXPECT_EQ(held(), want_held) << where;
        if (fired_in_ == kStepRead && step_ > kStepRead) {
          // The bitmap's write failed: the bits it was to hold are lost (how many depends on how the
          // writes are grouped), no other bit appears.
          EXPECT_EQ(bitmap_[0] & ~want_bitmap, 0u) << where;
        } else {
          EXPECT_EQ(bitmap_[0], want_bitmap) << where;
        }
        EXPECT_EQ(bitmap_[1], 0u) << where;
      },
      0, expected);
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  // Each dirty command has its sites: the struct and the lookup; the test op its allocation, its bitmap and
  // its reply; the read its bitmap.
  auto has = [&](Step s, const char* site) {
    return std::find(fired.begin(), fired.end(), std::pair<int, std::string>{s, site}) != fired.end();
  };
  for (Step s : {kStepEnable, kStepMark, kStepRead, kStepDisable}) {
    EXPECT_TRUE(has(s, "mm.copy_from_user")) << s;
    EXPECT_TRUE(has(s, "objects.lookup")) << s;
  }
  EXPECT_TRUE(has(kStepMark, "selftest.alloc"));
  EXPECT_TRUE(has(kStepMark, "mm.copy_to_user"));
  auto count = [&](Step s, const char* site) {
    return std::count(fired.begin(), fired.end(), std::pair<int, std::string>{s, site});
  };
  EXPECT_GE(count(kStepMark, "mm.copy_from_user"), 2);  // the struct, the bitmap
  EXPECT_TRUE(has(kStepRead, "mm.copy_to_user"));
  EXPECT_GE(count(kStepRead, "mm.copy_from_user"), 2);  // the struct, the bitmap
}

}  // namespace
}  // namespace uiommufd::uapi
