// IoPagetable: the kernel's io_pagetable rules, one test per rule, with the invariants checked after
// every change.
#include "uiommufd/iopt/io_pagetable.h"

#include <memory>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/mm/mm.h"

namespace uiommufd {
namespace {

constexpr int kRW = kIommuRead | kIommuWrite;

// Anonymous memory for a test, unmapped at the end.
class Buffer {
 public:
  explicit Buffer(std::size_t bytes, int prot = PROT_READ | PROT_WRITE, std::size_t align = kPageSize)
      : bytes_(bytes + align) {
    void* p = mmap(nullptr, bytes_, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    base_ = static_cast<char*>(p);
    aligned_ = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(base_) + align - 1) & ~(align - 1));
  }
  ~Buffer() { munmap(base_, bytes_); }
  std::uint64_t addr(std::uint64_t offset = 0) const {
    return reinterpret_cast<std::uint64_t>(aligned_) + offset;
  }

 private:
  std::size_t bytes_;
  char* base_;
  char* aligned_;
};

RefPtr<Pages> user_pages(std::uint64_t uptr, std::uint64_t length, bool writable = true) {
  auto r = Pages::create_user(Mm::current(), uptr, length, writable, AccountMode::kNone);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : RefPtr<Pages>();
}

std::unique_ptr<PageTableDomain> software_domain() {
  auto r = PageTableDomain::create({});
  EXPECT_TRUE(r.ok());
  return std::move(*r);
}

std::unique_ptr<MockDomain> mock_domain() {
  auto r = MockDomain::create({});
  EXPECT_TRUE(r.ok());
  return std::move(*r);
}

class IoPagetableTest : public ::testing::Test {
 protected:
  void SetUp() override { pinned_before_ = Pages::total_pinned_pages(); }
  void TearDown() override { EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "pins leaked"; }
  void expect_invariants(IoPagetable& iopt) { EXPECT_EQ(iopt.check_invariants(), ""); }
  Status map(IoPagetable& iopt, std::uint64_t uptr, std::uint64_t length, std::uint64_t* iova, bool fixed,
             int prot = kRW) {
    return iopt.map_pages(user_pages(uptr, length, prot & kIommuWrite), iova, prot, fixed);
  }
  std::uint64_t pinned_before_ = 0;
};

TEST_F(IoPagetableTest, MapWithNoDomainPinsNothing) {
  Buffer buf(16 * kPageSize, PROT_NONE);  // not even readable: nothing may touch it
  IoPagetable iopt;
  std::uint64_t iova = 0x100000;
  ASSERT_TRUE(map(iopt, buf.addr(), 16 * kPageSize, &iova, true).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  EXPECT_EQ(iopt.area_count(), 1u);
  expect_invariants(iopt);
}

// Areas come from their slab and all go back to it: mapped, cut in two, unmapped, and when the
// IoPagetable itself goes.
TEST_F(IoPagetableTest, EveryAreaReturnsToItsSlab) {
  Buffer buf(16 * kPageSize, PROT_READ | PROT_WRITE);
  const std::size_t before = Area::slab().live_objects();
  {
    IoPagetable iopt;
    for (std::uint64_t i = 0; i < 4; ++i) {
      std::uint64_t iova = 0x100000 + i * 0x10000;
      ASSERT_TRUE(map(iopt, buf.addr() + i * 4 * kPageSize, 4 * kPageSize, &iova, true).ok());
    }
    EXPECT_EQ(Area::slab().live_objects(), before + 4);
    ASSERT_TRUE(iopt.set_large_pages(false).ok());
    ASSERT_TRUE(iopt.cut_iova({0x100000 + kPageSize - 1}).ok());
    EXPECT_EQ(iopt.area_count(), 5u);
    EXPECT_EQ(Area::slab().live_objects(), before + 5);
    std::uint64_t unmapped = 0;
    ASSERT_TRUE(iopt.unmap_range({0x110000, 0x11ffff}, &unmapped).ok());
    EXPECT_EQ(Area::slab().live_objects(), before + 4);
    expect_invariants(iopt);
  }
  EXPECT_EQ(Area::slab().live_objects(), before);
}

TEST_F(IoPagetableTest, FixedIovaOverAnAreaIsEexist) {
  Buffer buf(8 * kPageSize);
  IoPagetable iopt;
  std::uint64_t iova = 0x100000;
  ASSERT_TRUE(map(iopt, buf.addr(), 4 * kPageSize, &iova, true).ok());
  iova = 0x100000 + 3 * kPageSize;
  EXPECT_EQ(map(iopt, buf.addr(), 4 * kPageSize, &iova, true).error(), EEXIST);
  expect_invariants(iopt);
}

TEST_F(IoPagetableTest, FixedIovaInAReservedRangeIsEinval) {
  Buffer buf(4 * kPageSize);
  IoPagetable iopt;
  ASSERT_TRUE(iopt.add_reserved({0x200000, 0x2fffff}, nullptr).ok());
  std::uint64_t iova = 0x1ff000;
  EXPECT_EQ(map(iopt, buf.addr(), 4 * kPageSize, &iova, true).error(), EINVAL);
}

TEST_F(IoPagetableTest, FixedIovaThatWrapsIsEoverflow) {
  Buffer buf(4 * kPageSize);
  IoPagetable iopt;
  std::uint64_t iova = kUlongMax - kPageSize;
  EXPECT_EQ(map(iopt, buf.addr(), 4 * kPageSize, &iova, true).error(), EOVERFLOW);
}

TEST_F(IoPagetableTest, WriteMappingOfReadOnlyPagesIsEperm) {
  Buffer buf(4 * kPageSize);
  IoPagetable iopt;
  std::uint64_t iova = 0x100000;
  auto pages = user_pages(buf.addr(), 4 * kPageSize, false);
  EXPECT_EQ(iopt.map_pages(pages, &iova, kRW, true).error(), EPERM);
  EXPECT_TRUE(iopt.map_pages(pages, &iova, kIommuRead, true).ok());
}

TEST_F(IoPagetableTest, AllocatedIovaAvoidsReservedAndAreasAndIsNeverZero) {
  Buffer buf(64 * kPageSize);
  IoPagetable iopt;
  ASSERT_TRUE(iopt.add_reserved({0, 0xfffff}, nullptr).ok());
  std::uint64_t a = 0, b = 0;
  ASSERT_TRUE(map(iopt, buf.addr(), 16 * kPageSize, &a, false).ok());
  ASSERT_TRUE(map(iopt, buf.addr(16 * kPageSize), 16 * kPageSize, &b, false).ok());
  EXPECT_GE(a, 0x100000u);
  EXPECT_GE(b, 0x100000u);
  EXPECT_TRUE(b >= a + 16 * kPageSize || a >= b + 16 * kPageSize);
  expect_invariants(iopt);
}

TEST_F(IoPagetableTest, AllocatedIovaStaysInsideAllowedRanges) {
  Buffer buf(16 * kPageSize);
  IoPagetable iopt;
  ASSERT_TRUE(iopt.set_allowed({{0x40000000, 0x4fffffff}}).ok());
  std::uint64_t iova = 0;
  ASSERT_TRUE(map(iopt, buf.addr(), 16 * kPageSize, &iova, false).ok());
  EXPECT_GE(iova, 0x40000000u);
  EXPECT_LE(iova + 16 * kPageSize - 1, 0x4fffffffu);
}

TEST_F(IoPagetableTest, AllowedRangesRejectOneByteAndOverlapAndReserved) {
  IoPagetable iopt;
  EXPECT_EQ(iopt.set_allowed({{0x1000, 0x1000}}).error(), EINVAL);
  EXPECT_EQ(iopt.set_allowed({{0x1000, 0x2fff}, {0x2000, 0x4fff}}).error(), EINVAL);
  ASSERT_TRUE(iopt.add_reserved({0x10000, 0x1ffff}, nullptr).ok());
  EXPECT_EQ(iopt.set_allowed({{0x18000, 0x28fff}}).error(), EADDRINUSE);
  ASSERT_TRUE(iopt.set_allowed({{0x20000, 0x28fff}}).ok());
  // A reservation over an allowed range is refused too.
  EXPECT_EQ(iopt.add_reserved({0x28000, 0x30000}, nullptr).error(), EADDRINUSE);
  EXPECT_TRUE(iopt.set_allowed({}).ok());
}

TEST_F(IoPagetableTest, ReservingOverAnAreaIsEaddrinuse) {
  Buffer buf(4 * kPageSize);
  IoPagetable iopt;
  std::uint64_t iova = 0x100000;
  ASSERT_TRUE(map(iopt, buf.addr(), 4 * kPageSize, &iova, true).ok());
  EXPECT_EQ(iopt.add_reserved({0x101000, 0x101fff}, nullptr).error(), EADDRINUSE);
}

TEST_F(IoPagetableTest, IovaRangesAreTheHolesOfTheReservedRanges) {
  IoPagetable iopt;
  EXPECT_EQ(iopt.iova_ranges(), (std::vector<Interval>{{0, kUlongMax}}));
  auto mock = mock_domain();
  ASSERT_TRUE(iopt.add_domain(mock.get()).ok());
  EXPECT_EQ(iopt.iova_ranges(), (std::vector<Interval>{{1u << 24, (1ull << 31) - 1}}));
  EXPECT_EQ(iopt.iova_alignment(), 2048u);
  iopt.remove_domain(mock.get());
  EXPECT_EQ(iopt.iova_ranges(), (std::vector<Interval>{{0, kUlongMax}}));
  EXPECT_EQ(iopt.iova_alignment(), 1u);
}

TEST_F(IoPagetableTest, AttachingADomainFillsAndPinsExistingAreas) {
  Buffer buf(32 * kPageSize);
  IoPagetable iopt;
  std::uint64_t a = 0x100000, b = 0x200000;
  ASSERT_TRUE(map(iopt, buf.addr(), 16 * kPageSize, &a, true).ok());
  ASSERT_TRUE(map(iopt, buf.addr(16 * kPageSize), 16 * kPageSize, &b, true).ok());
  auto dom = software_domain();
  ASSERT_TRUE(iopt.add_domain(dom.get()).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 32);
  EXPECT_EQ(*dom->iova_to_phys(0x100000 + 5), buf.addr(5));
  EXPECT_EQ(dom->mapped_bytes(), 32 * kPageSize);
  expect_invariants(iopt);
  iopt.remove_domain(dom.get());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  EXPECT_EQ(dom->mapped_bytes(), 0u);
  expect_invariants(iopt);
}

TEST_F(IoPagetableTest, MapAndUnmapKeepEveryDomainInStepAndPinOnce) {
  Buffer buf(16 * kPageSize);
  IoPagetable iopt;
  auto d1 = software_domain();
  auto d2 = software_domain();
  ASSERT_TRUE(iopt.add_domain(d1.get()).ok());
  ASSERT_TRUE(iopt.add_domain(d2.get()).ok());
  std::uint64_t iova = 0x100000;
  ASSERT_TRUE(map(iopt, buf.addr(), 16 * kPageSize, &iova, true).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 16);  // two domains, one pin
  EXPECT_EQ(*d2->iova_to_phys(iova + kPageSize), buf.addr(kPageSize));
  expect_invariants(iopt);
  std::uint64_t unmapped = 0;
  ASSERT_TRUE(iopt.unmap_range({iova, iova + 16 * kPageSize - 1}, &unmapped).ok());
  EXPECT_EQ(unmapped, 16 * kPageSize);
  EXPECT_EQ(d1->mapped_bytes() + d2->mapped_bytes(), 0u);
  expect_invariants(iopt);
  iopt.remove_domain(d1.get());
  iopt.remove_domain(d2.get());
}

TEST_F(IoPagetableTest, CopySharesPagesPinnedAndChargedOnce) {
  Buffer buf(16 * kPageSize);
  IoPagetable src, dst;
  auto d1 = software_domain();
  auto d2 = software_domain();
  ASSERT_TRUE(src.add_domain(d1.get()).ok());
  ASSERT_TRUE(dst.add_domain(d2.get()).ok());
  std::uint64_t iova = 0x100000;
  ASSERT_TRUE(map(src, buf.addr(), 16 * kPageSize, &iova, true).ok());
  auto chunks = src.get_chunks(0x100000 + 4 * kPageSize, 8 * kPageSize);
  ASSERT_TRUE(chunks.ok());
  std::uint64_t dst_iova = 0x500000;
  ASSERT_TRUE(dst.map_chunks(*chunks, &dst_iova, kRW, true).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 16);
  EXPECT_EQ(*d2->iova_to_phys(0x500000), buf.addr(4 * kPageSize));
  expect_invariants(src);
  expect_invariants(dst);
  std::uint64_t unmapped;
  ASSERT_TRUE(src.unmap_range(Interval::full(), &unmapped).ok());
  // The copy still holds its slice pinned.
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 8);
  expect_invariants(dst);
  src.remove_domain(d1.get());
  dst.remove_domain(d2.get());
}

TEST_F(IoPagetableTest, CopyOfAGapIsEnoent) {
  Buffer buf(16 * kPageSize);
  IoPagetable iopt;
  std::uint64_t a = 0x100000, b = 0x100000 + 9 * kPageSize;
  ASSERT_TRUE(map(iopt, buf.addr(), 8 * kPageSize, &a, true).ok());
  ASSERT_TRUE(map(iopt, buf.addr(8 * kPageSize), 8 * kPageSize, &b, true).ok());
  EXPECT_EQ(iopt.get_chunks(0x100000, 10 * kPageSize).error(), ENOENT);
  // Contiguous areas may be spanned at byte granularity.
  std::uint64_t c = 0x100000 + 8 * kPageSize;
  Buffer other(kPageSize);
  ASSERT_TRUE(map(iopt, other.addr(), kPageSize, &c, true).ok());
  auto chunks = iopt.get_chunks(0x100000 + 7, 10 * kPageSize);
  ASSERT_TRUE(chunks.ok());
  EXPECT_EQ(chunks->size(), 3u);
  EXPECT_EQ(iopt.get_chunks(0x100000, 0).error(), EINVAL);
  EXPECT_EQ(iopt.get_chunks(kUlongMax, 2).error(), EOVERFLOW);
}

TEST_F(IoPagetableTest, UnmapMustCoverWholeAreas) {
  Buffer buf(16 * kPageSize);
  IoPagetable iopt;
  std::uint64_t a = 0x100000, b = 0x200000;
  ASSERT_TRUE(map(iopt, buf.addr(), 8 * kPageSize, &a, true).ok());
  ASSERT_TRUE(map(iopt, buf.addr(8 * kPageSize), 8 * kPageSize, &b, true).ok());
  std::uint64_t unmapped = 0;
  // The first area is inside, the second only partly: the first goes, then ENOENT (partial progress).
  EXPECT_EQ(iopt.unmap_range({0x100000, 0x200000 + kPageSize}, &unmapped).error(), ENOENT);
  EXPECT_EQ(unmapped, 8 * kPageSize);
  EXPECT_EQ(iopt.area_count(), 1u);
  // A range that touches nothing unmaps nothing and succeeds.
  EXPECT_TRUE(iopt.unmap_range({0x300000, 0x3fffff}, &unmapped).ok());
  EXPECT_EQ(unmapped, 0u);
  ASSERT_TRUE(iopt.unmap_range(Interval::full(), &unmapped).ok());
  EXPECT_EQ(unmapped, 8 * kPageSize);
  expect_invariants(iopt);
}

TEST_F(IoPagetableTest, MockDomainForcesTwoKibAlignmentAndSubPageAreas) {
  Buffer buf(8 * kPageSize);
  IoPagetable iopt;
  auto mock = mock_domain();
  ASSERT_TRUE(iopt.add_domain(mock.get()).ok());
  std::uint64_t iova = (1u << 24) + 2048;
  // Half a page in the middle of the buffer: sub-page granularity.
  ASSERT_TRUE(map(iopt, buf.addr(2048), 2048 * 3, &iova, true).ok());
  EXPECT_EQ(*mock->iova_to_phys(iova), buf.addr(2048));
  EXPECT_TRUE(mock->check_map(iova, 2048 * 3, buf.addr(2048)).ok());
  iova = (1u << 24) + 0x10000;
  EXPECT_EQ(map(iopt, buf.addr(), 1024, &iova, true).error(), EINVAL);  // length not 2 KiB aligned
  expect_invariants(iopt);
  std::uint64_t unmapped;
  ASSERT_TRUE(iopt.unmap_range(Interval::full(), &unmapped).ok());
  EXPECT_EQ(mock->boundary_violations(), 0u);
  iopt.remove_domain(mock.get());
}

TEST_F(IoPagetableTest, DomainApertureConflictingWithAnAreaIsEaddrinuse) {
  Buffer buf(4 * kPageSize);
  IoPagetable iopt;
  std::uint64_t iova = 0x1000;  // below the mock aperture
  ASSERT_TRUE(map(iopt, buf.addr(), 4 * kPageSize, &iova, true).ok());
  auto mock = mock_domain();
  EXPECT_EQ(iopt.add_domain(mock.get()).error(), EADDRINUSE);
  EXPECT_EQ(iopt.iova_ranges(), (std::vector<Interval>{{0, kUlongMax}}));
  expect_invariants(iopt);
}

TEST_F(IoPagetableTest, DomainNeedingAlignmentTheAreasLackIsEaddrinuse) {
  Buffer buf(4 * kPageSize);
  IoPagetable iopt;
  std::uint64_t iova = 0x100000 + 512;
  ASSERT_TRUE(map(iopt, buf.addr(512), 1024, &iova, true).ok());
  auto dom = software_domain();
  EXPECT_EQ(iopt.add_domain(dom.get()).error(), EADDRINUSE);
  EXPECT_EQ(iopt.domain_count(), 0u);
}

TEST_F(IoPagetableTest, DisablingLargePagesMapsPageByPage) {
  Buffer buf(8 * kPageSize);
  IoPagetable iopt;
  ASSERT_TRUE(iopt.set_large_pages(false).ok());
  EXPECT_EQ(iopt.iova_alignment(), kPageSize);
  auto dom = software_domain();
  ASSERT_TRUE(iopt.add_domain(dom.get()).ok());
  std::uint64_t iova = 0x100000;
  ASSERT_TRUE(map(iopt, buf.addr(), 8 * kPageSize, &iova, true).ok());
  // Already off: turning it off again changes nothing and succeeds, domain and area or not.
  EXPECT_TRUE(iopt.set_large_pages(false).ok());
  EXPECT_FALSE(iopt.large_pages());
  expect_invariants(iopt);
  std::uint64_t unmapped;
  ASSERT_TRUE(iopt.unmap_range(Interval::full(), &unmapped).ok());
  EXPECT_EQ(dom->boundary_violations(), 0u);
  iopt.remove_domain(dom.get());
  ASSERT_TRUE(iopt.set_large_pages(true).ok());
  EXPECT_EQ(iopt.iova_alignment(), 1u);
}

TEST_F(IoPagetableTest, BadUserRangeIsEfaultAndLeavesNothingPinned) {
  Buffer buf(8 * kPageSize, PROT_NONE);
  IoPagetable iopt;
  auto dom = software_domain();
  ASSERT_TRUE(iopt.add_domain(dom.get()).ok());
  std::uint64_t iova = 0x100000;
  EXPECT_EQ(map(iopt, buf.addr(), 8 * kPageSize, &iova, true).error(), EFAULT);
  EXPECT_EQ(iopt.area_count(), 0u);
  EXPECT_EQ(dom->mapped_bytes(), 0u);
  expect_invariants(iopt);
  iopt.remove_domain(dom.get());
}

TEST_F(IoPagetableTest, LazyMapFailsAtAttachWithEfault) {
  Buffer buf(8 * kPageSize, PROT_NONE);
  IoPagetable iopt;
  std::uint64_t iova = 0x100000;
  ASSERT_TRUE(map(iopt, buf.addr(), 8 * kPageSize, &iova, true).ok());
  auto dom = software_domain();
  EXPECT_EQ(iopt.add_domain(dom.get()).error(), EFAULT);
  EXPECT_EQ(iopt.domain_count(), 0u);
  EXPECT_EQ(dom->mapped_bytes(), 0u);
  expect_invariants(iopt);
}

TEST_F(IoPagetableTest, AccountingLimitFailsTheMapWithEnomem) {
  Buffer buf(16 * kPageSize);
  set_memlock_limit_for_testing(8);
  IoPagetable iopt;
  auto dom = software_domain();
  ASSERT_TRUE(iopt.add_domain(dom.get()).ok());
  std::uint64_t iova = 0x100000;
  auto pages = Pages::create_user(Mm::current(), buf.addr(), 16 * kPageSize, true, AccountMode::kUser);
  ASSERT_TRUE(pages.ok());
  EXPECT_EQ(iopt.map_pages(*pages, &iova, kRW, true).error(), ENOMEM);
  EXPECT_EQ(account_locked_pages(AccountMode::kUser), 0u);
  auto small = Pages::create_user(Mm::current(), buf.addr(), 8 * kPageSize, true, AccountMode::kUser);
  ASSERT_TRUE(iopt.map_pages(*small, &iova, kRW, true).ok());
  EXPECT_EQ(account_locked_pages(AccountMode::kUser), 8u);
  std::uint64_t unmapped;
  ASSERT_TRUE(iopt.unmap_range(Interval::full(), &unmapped).ok());
  EXPECT_EQ(account_locked_pages(AccountMode::kUser), 0u);
  set_memlock_limit_for_testing(std::nullopt);
  iopt.remove_domain(dom.get());
}

// Every fault site of map, copy, unmap, attach and detach, failed in turn: each run returns an errno or
// succeeds, and afterwards nothing is pinned or left behind and the invariants hold.
TEST_F(IoPagetableTest, FaultSweepOverMapCopyAttachDetachUnmapUnwinds) {
  Buffer buf(64 * kPageSize);
  std::unique_ptr<IoPagetable> src, dst;
  std::unique_ptr<PageTableDomain> d1, d2;
  auto setup = [&] {
    dst.reset();
    src.reset();
    d1 = software_domain();
    d2 = software_domain();
    src = std::make_unique<IoPagetable>();
    dst = std::make_unique<IoPagetable>();
    ASSERT_TRUE(src->add_domain(d1.get()).ok());
  };
  auto op = [&]() -> Status {
    std::uint64_t iova = 0;
    auto pages = Pages::create_user(Mm::current(), buf.addr(), 32 * kPageSize, true, AccountMode::kUser);
    if (!pages.ok()) return pages.status();
    TRY(src->map_pages(*pages, &iova, kRW, false));
    auto chunks = TRY(src->get_chunks(iova + kPageSize, 8 * kPageSize));
    std::uint64_t dst_iova = 0;
    TRY(dst->map_chunks(chunks, &dst_iova, kRW, false));
    TRY(dst->add_domain(d2.get()));
    dst->remove_domain(d2.get());
    std::uint64_t unmapped;
    TRY(src->unmap_range({iova, iova + 32 * kPageSize - 1}, &unmapped));
    return {};
  };
  auto after = [&](unsigned n, Status st) {
    EXPECT_EQ(src->check_invariants(), "") << "fault " << n;
    EXPECT_EQ(dst->check_invariants(), "") << "fault " << n;
    std::uint64_t unmapped;
    EXPECT_TRUE(src->unmap_range(Interval::full(), &unmapped).ok());
    EXPECT_TRUE(dst->unmap_range(Interval::full(), &unmapped).ok());
    if (dst->domain_count()) dst->remove_domain(d2.get());
    src->remove_domain(d1.get());
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "fault " << n << " leaked pins";
    EXPECT_EQ(account_locked_pages(AccountMode::kUser), 0u) << "fault " << n << " leaked a charge";
  };
  SweepResult r = sweep_fail_nth(setup, op, after, 400);
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_GE(r.sites_failed, 5u);
  dst.reset();
  src.reset();
}

TEST_F(IoPagetableTest, DisablingLargePagesWithADomainAndAnAreaIsEinval) {
  Buffer buf(4 * kPageSize);
  IoPagetable iopt;
  auto dom = software_domain();
  ASSERT_TRUE(iopt.add_domain(dom.get()).ok());
  std::uint64_t iova = 0x100000;
  ASSERT_TRUE(map(iopt, buf.addr(), 4 * kPageSize, &iova, true).ok());
  EXPECT_EQ(iopt.set_large_pages(false).error(), EINVAL);
  EXPECT_TRUE(iopt.large_pages());
  std::uint64_t unmapped;
  ASSERT_TRUE(iopt.unmap_range(Interval::full(), &unmapped).ok());
  iopt.remove_domain(dom.get());
}

// ---- the VFIO TYPE1 cut ----

constexpr std::uint64_t kCutIova = std::uint64_t{1} << 24;  // inside the mock aperture

TEST_F(IoPagetableTest, CutMakesTheIovaTheLastByteOfTheLeftPart) {
  Buffer buf(8 * kPageSize);
  IoPagetable iopt;
  std::uint64_t iova = kCutIova;
  ASSERT_TRUE(map(iopt, buf.addr(), 8 * kPageSize, &iova, true).ok());
  ASSERT_TRUE(iopt.cut_iova({kCutIova + 3 * kPageSize - 1}).ok());
  auto areas = iopt.areas();
  ASSERT_EQ(areas.size(), 2u);
  EXPECT_EQ(areas[0].iova, (Interval{kCutIova, kCutIova + 3 * kPageSize - 1}));
  EXPECT_EQ(areas[1].iova, (Interval{kCutIova + 3 * kPageSize, kCutIova + 8 * kPageSize - 1}));
  EXPECT_EQ(areas[0].start_byte, 0u);
  EXPECT_EQ(areas[1].start_byte, 3 * kPageSize);
  EXPECT_EQ(areas[0].prot, kRW);
  EXPECT_EQ(areas[1].prot, kRW);
  expect_invariants(iopt);
}

TEST_F(IoPagetableTest, CutHalvesShareThePagesWithOneMoreReference) {
  Buffer buf(8 * kPageSize);
  IoPagetable iopt;
  RefPtr<Pages> pages = user_pages(buf.addr(), 8 * kPageSize);
  std::uint64_t iova = kCutIova;
  ASSERT_TRUE(iopt.map_pages(pages, &iova, kRW, true).ok());
  std::uint32_t refs = pages->ref_count();
  ASSERT_TRUE(iopt.cut_iova({kCutIova + kPageSize - 1}).ok());
  auto areas = iopt.areas();
  ASSERT_EQ(areas.size(), 2u);
  EXPECT_EQ(areas[0].pages, pages.get());
  EXPECT_EQ(areas[1].pages, pages.get());
  EXPECT_EQ(pages->ref_count(), refs + 1);
  std::uint64_t unmapped;
  ASSERT_TRUE(iopt.unmap_range(Interval::full(), &unmapped).ok());
  EXPECT_EQ(pages->ref_count(), refs - 1);
}

TEST_F(IoPagetableTest, CutAtAnAreaEdgeOrOutsideEveryAreaChangesNothing) {
  Buffer buf(8 * kPageSize);
  IoPagetable iopt;
  std::uint64_t iova = kCutIova;
  ASSERT_TRUE(map(iopt, buf.addr(), 8 * kPageSize, &iova, true).ok());
  ASSERT_TRUE(iopt.cut_iova({kCutIova, kCutIova + 8 * kPageSize - 1, kCutIova - 1, 0, kUlongMax}).ok());
  EXPECT_EQ(iopt.area_count(), 1u);
  expect_invariants(iopt);
}

TEST_F(IoPagetableTest, CutNotAlignedToIovaAlignmentIsEinval) {
  Buffer buf(8 * kPageSize);
  IoPagetable iopt;
  ASSERT_TRUE(iopt.set_large_pages(false).ok());  // alignment kPageSize
  std::uint64_t iova = kCutIova;
  ASSERT_TRUE(map(iopt, buf.addr(), 8 * kPageSize, &iova, true).ok());
  EXPECT_EQ(iopt.cut_iova({kCutIova + 100}).error(), EINVAL);
  EXPECT_EQ(iopt.area_count(), 1u);
  // Byte granularity is fine while the alignment is 1.
  ASSERT_TRUE(iopt.set_large_pages(true).ok());
  EXPECT_TRUE(iopt.cut_iova({kCutIova + 100}).ok());
  EXPECT_EQ(iopt.area_count(), 2u);
  expect_invariants(iopt);
}

TEST_F(IoPagetableTest, CutOfAnAreaInADomainWithLargePagesIsEinval) {
  Buffer buf(8 * kPageSize);
  IoPagetable iopt;
  auto dom = software_domain();
  ASSERT_TRUE(iopt.add_domain(dom.get()).ok());
  std::uint64_t iova = kCutIova;
  ASSERT_TRUE(map(iopt, buf.addr(), 8 * kPageSize, &iova, true).ok());
  EXPECT_EQ(iopt.cut_iova({kCutIova + kPageSize - 1}).error(), EINVAL);
  EXPECT_EQ(iopt.area_count(), 1u);
  expect_invariants(iopt);
  std::uint64_t unmapped;
  ASSERT_TRUE(iopt.unmap_range(Interval::full(), &unmapped).ok());
  iopt.remove_domain(dom.get());
}

TEST_F(IoPagetableTest, CutWithLargePagesOffLetsAMiddlePartBeUnmappedAlone) {
  Buffer buf(8 * kPageSize);
  IoPagetable iopt;
  ASSERT_TRUE(iopt.set_large_pages(false).ok());
  auto dom = software_domain();
  auto mock = mock_domain();
  ASSERT_TRUE(iopt.add_domain(dom.get()).ok());
  ASSERT_TRUE(iopt.add_domain(mock.get()).ok());
  std::uint64_t iova = kCutIova;
  ASSERT_TRUE(map(iopt, buf.addr(), 8 * kPageSize, &iova, true).ok());
  std::uint64_t first = kCutIova + 3 * kPageSize, last = kCutIova + 5 * kPageSize - 1;
  ASSERT_TRUE(iopt.cut_iova({last, first - 1}).ok());
  EXPECT_EQ(iopt.area_count(), 3u);
  expect_invariants(iopt);
  // Cutting moved no pin: the pages stay pinned once.
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 8);
  std::uint64_t unmapped = 0;
  ASSERT_TRUE(iopt.unmap_range({first, last}, &unmapped).ok());
  EXPECT_EQ(unmapped, 2 * kPageSize);
  EXPECT_EQ(iopt.area_count(), 2u);
  EXPECT_FALSE(dom->iova_to_phys(first).has_value());
  EXPECT_FALSE(mock->iova_to_phys(last).has_value());
  EXPECT_TRUE(dom->iova_to_phys(first - 1).has_value());
  EXPECT_TRUE(mock->iova_to_phys(last + 1).has_value());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 6);
  EXPECT_EQ(dom->boundary_violations(), 0u);
  EXPECT_EQ(mock->boundary_violations(), 0u);
  expect_invariants(iopt);
  ASSERT_TRUE(iopt.unmap_range(Interval::full(), &unmapped).ok());
  EXPECT_EQ(unmapped, 6 * kPageSize);
  iopt.remove_domain(mock.get());
  iopt.remove_domain(dom.get());
}

// An access that never lets go of its pins: unmap gives up with EDEADLOCK and leaves prevent_access set.
class StubbornAccess : public AccessHook {
 public:
  bool try_get() override { return true; }
  void put() override {}
  void unmap_callback(std::uint64_t, std::uint64_t) override {}
};

TEST_F(IoPagetableTest, CutOfAnAreaWithAccessPinsIsEinvalAndOfOneBeingUnmappedEbusy) {
  Buffer buf(8 * kPageSize);
  IoPagetable iopt;
  StubbornAccess access;
  ASSERT_TRUE(iopt.add_access(&access, kPageSize).ok());
  std::uint64_t iova = kCutIova;
  ASSERT_TRUE(map(iopt, buf.addr(), 8 * kPageSize, &iova, true).ok());
  std::vector<AccessPage> out;
  ASSERT_TRUE(iopt.access_pin(kCutIova, kPageSize, false, &out).ok());
  EXPECT_EQ(iopt.cut_iova({kCutIova + 4 * kPageSize - 1}).error(), EINVAL);
  std::uint64_t unmapped;
  ASSERT_EQ(iopt.unmap_range(Interval::full(), &unmapped).error(), EDEADLOCK);
  EXPECT_EQ(iopt.cut_iova({kCutIova + 4 * kPageSize - 1}).error(), EBUSY);
  EXPECT_EQ(iopt.area_count(), 1u);
  ASSERT_TRUE(iopt.access_unpin(kCutIova, kPageSize));
  ASSERT_TRUE(iopt.unmap_range(Interval::full(), &unmapped).ok());
  iopt.remove_access(&access, kPageSize);
}

TEST_F(IoPagetableTest, CutStopsAtTheFirstRefusalKeepingEarlierCuts) {
  Buffer buf(8 * kPageSize);
  IoPagetable iopt;
  ASSERT_TRUE(iopt.set_large_pages(false).ok());
  std::uint64_t iova = kCutIova;
  ASSERT_TRUE(map(iopt, buf.addr(), 8 * kPageSize, &iova, true).ok());
  EXPECT_EQ(iopt.cut_iova({kCutIova + kPageSize - 1, kCutIova + 2 * kPageSize + 1}).error(), EINVAL);
  EXPECT_EQ(iopt.area_count(), 2u);
  expect_invariants(iopt);
}

TEST_F(IoPagetableTest, FaultSweepOverCutUnwinds) {
  Buffer buf(8 * kPageSize);
  std::unique_ptr<IoPagetable> iopt;
  std::unique_ptr<PageTableDomain> dom;
  auto setup = [&] {
    iopt.reset();
    dom = software_domain();
    iopt = std::make_unique<IoPagetable>();
    ASSERT_TRUE(iopt->set_large_pages(false).ok());
    ASSERT_TRUE(iopt->add_domain(dom.get()).ok());
    std::uint64_t iova = kCutIova;
    ASSERT_TRUE(map(*iopt, buf.addr(), 8 * kPageSize, &iova, true).ok());
  };
  auto op = [&] { return iopt->cut_iova({kCutIova + 2 * kPageSize - 1, kCutIova + 6 * kPageSize - 1}); };
  auto after = [&](unsigned n, Status st) {
    EXPECT_EQ(iopt->check_invariants(), "") << "fault " << n;
    EXPECT_TRUE(st.ok() || st.error() == ENOMEM) << "fault " << n << ": " << st.to_string();
    std::uint64_t unmapped;
    EXPECT_TRUE(iopt->unmap_range(Interval::full(), &unmapped).ok());
    EXPECT_EQ(unmapped, 8 * kPageSize) << "fault " << n;
    iopt->remove_domain(dom.get());
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "fault " << n << " leaked pins";
  };
  SweepResult r = sweep_fail_nth(setup, op, after, 100);
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_EQ(r.sites_failed, 4u);
  iopt.reset();
}

}  // namespace
}  // namespace uiommufd
