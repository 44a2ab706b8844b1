#include "uiommufd/domain/mock_domain.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/base/page.h"

namespace uiommufd {
namespace {

constexpr std::uint64_t k2K = MockDomain::kIoPageSize;
constexpr std::uint64_t k1M = std::uint64_t{1} << 20;
constexpr std::uint64_t kStart = std::uint64_t{1} << 24;  // the aperture's first IOVA
constexpr int kRW = kIommuRead | kIommuWrite;
constexpr PhysAddr kPa = 0x7f0000100000;  // 1 MiB aligned

std::unique_ptr<MockDomain> make(MockDomain::Options options = {}) {
  Result<std::unique_ptr<MockDomain>> d = MockDomain::create(options);
  EXPECT_TRUE(d.ok()) << d.status().to_string();
  return std::move(d).value();
}

TEST(MockDomainTest, GeometryIsTheKernelMocks) {
  auto d = make();
  EXPECT_EQ(k2K, kPageSize / 2);
  EXPECT_EQ(d->granule(), 2048u);
  // Every power of two from 2 KiB to 64 GiB, as the kernel's AMDv1-format mock reports.
  EXPECT_EQ(d->pgsize_bitmap(), 0x1ffffff800u);
  EXPECT_EQ(d->aperture(), (Interval{std::uint64_t{1} << 24, (std::uint64_t{1} << 31) - 1}));
  EXPECT_EQ(d->levels(), 3u);
}

TEST(MockDomainTest, HugeIovaAddsA1MPageSize) {
  auto d = make({.huge_iova = true});
  EXPECT_EQ(d->pgsize_bitmap(), 2048u | k1M);
  ASSERT_TRUE(d->map(kStart, kPa, 2 * k1M + k2K, kRW).ok());
  EXPECT_EQ(d->large_entries(), 2u);
  EXPECT_TRUE(d->check_map(kStart, 2 * k1M + k2K, kPa).ok());
  EXPECT_EQ(d->unmap(kStart, 2 * k1M + k2K), 2 * k1M + k2K);
  EXPECT_EQ(d->boundary_violations(), 0u);
}

// The default table builds what the kernel's AMDv1 table would, but only where the memory is contiguous:
// over single pages a 1 MiB aligned megabyte is 2 KiB items, inside one block it is one 1 MiB item.
TEST(MockDomainTest, TheDefaultTableUsesLargeItemsOnlyInsideAContiguousBlock) {
  auto d = make();
  EXPECT_TRUE(d->wants_phys_block());
  ASSERT_TRUE(d->map(kStart, kPa, k1M, kRW, kPageSize).ok());
  EXPECT_EQ(d->large_entries(), 0u);
  ASSERT_TRUE(d->map(kStart + k1M, kPa + k1M, k1M, kRW, k1M).ok());
  EXPECT_EQ(d->large_entries(), 1u);
  // A call without a block is contiguous throughout (the kernel's iommu_map()).
  ASSERT_TRUE(d->map(kStart + 2 * k1M, kPa + 2 * k1M, k1M, kRW).ok());
  EXPECT_EQ(d->large_entries(), 2u);
  // A 2 MiB block at a 1 MiB aligned address holds no 1 MiB item: the address is not 2 MiB aligned, and the
  // block's second half is a different block.
  ASSERT_TRUE(d->map(kStart + 4 * k1M, kPa + 4 * k1M - k2K * 2, k1M + k2K * 4, kRW, 2 * k1M).ok());
  EXPECT_EQ(d->large_entries(), 2u);
  EXPECT_TRUE(d->check_map(kStart, 3 * k1M, kPa).ok());
}

TEST(MockDomainTest, APhysBlockThatIsNotAPowerOfTwoOfAtLeastTheGranuleIsEinval) {
  auto d = make();
  EXPECT_EQ(d->map(kStart, kPa, 4 * k2K, kRW, 3 * kPageSize).error(), EINVAL);
  EXPECT_EQ(d->map(kStart, kPa, 4 * k2K, kRW, k2K / 2).error(), EINVAL);
  EXPECT_EQ(d->mapped_bytes(), 0u);
  EXPECT_TRUE(d->map(kStart, kPa, 4 * k2K, kRW, k2K).ok());
}

// The HUGE table has only 4 KiB and 1 MiB: a 2 MiB run is two single 1 MiB items whatever the block says.
TEST(MockDomainTest, TheHugeTableMapsOneMiBItemsWhereverAligned) {
  auto d = make({.huge_pagetable = true});
  EXPECT_FALSE(d->wants_phys_block());
  ASSERT_TRUE(d->map(kStart, kPa, 2 * k1M, kRW, kPageSize).ok());
  EXPECT_EQ(d->large_entries(), 2u);
}

// A contiguous entry is unmapped whole or not at all, like a large one; iommufd never does otherwise (it
// unmaps with its map boundaries, and refuses to split an area when large pages are on).
TEST(MockDomainTest, UnmapThatWouldSplitAContiguousEntryUnmapsNothing) {
  auto d = make({.dcheck_boundaries = false});
  // 16 KiB at a 16 KiB aligned IOVA and address, in one block: one entry of eight 2 KiB items.
  ASSERT_TRUE(d->map(kStart, kPa, 8 * k2K, kRW, 0).ok());
  EXPECT_EQ(d->unmap(kStart, 4 * k2K), 0u);
  EXPECT_EQ(d->unmap(kStart + 2 * k2K, 6 * k2K), 0u);
  EXPECT_EQ(d->boundary_violations(), 2u);
  EXPECT_EQ(d->mapped_bytes(), 8 * k2K);
  EXPECT_EQ(d->unmap(kStart, 8 * k2K), 8 * k2K);
  EXPECT_EQ(d->boundary_violations(), 2u);
  // Over single pages the same range is four entries of two items: a page-sized unmap splits none, and
  // is only a boundary violation because it is not the whole map call.
  ASSERT_TRUE(d->map(kStart, kPa, 8 * k2K, kRW, kPageSize).ok());
  EXPECT_EQ(d->unmap(kStart, 2 * k2K), 2 * k2K);
  EXPECT_EQ(d->boundary_violations(), 3u);
  EXPECT_EQ(d->unmap(kStart + 3 * k2K, k2K), 0u);  // half of a pair
  EXPECT_EQ(d->boundary_violations(), 4u);
}

TEST(MockDomainTest, MapsSubPageUnits) {
  auto d = make();
  // The second half of one 4 KiB page and the first half of the next: the kernel's sub-page case.
  ASSERT_TRUE(d->map(kStart + k2K, kPa + k2K, 2 * k2K, kRW).ok());
  EXPECT_EQ(d->iova_to_phys(kStart + k2K + 7), kPa + k2K + 7);
  EXPECT_EQ(d->iova_to_phys(kStart), std::nullopt);
}

TEST(MockDomainTest, MapOutsideTheApertureFailsWithEinval) {
  auto d = make();
  EXPECT_EQ(d->map(kStart - k2K, kPa, k2K, kRW).error(), EINVAL);
  EXPECT_EQ(d->map((std::uint64_t{1} << 31) - k2K, kPa, 2 * k2K, kRW).error(), EINVAL);
  EXPECT_EQ(d->map(kStart + 1024, kPa, k2K, kRW).error(), EINVAL);
}

TEST(MockDomainTest, MapFaultSiteFailsWithEnoentAndMapsNothing) {
  auto d = make();
  fail_nth_set(1);
  EXPECT_EQ(d->map(kStart, kPa, 4 * k2K, kRW).error(), ENOENT);
  EXPECT_EQ(fail_nth_get(), 0u);
  EXPECT_STREQ(last_injected_fault(), "mock.domain_map");
  EXPECT_EQ(d->mapped_bytes(), 0u);
  EXPECT_EQ(d->tables(), 1u);
}

TEST(MockDomainTest, MapArgumentErrorsComeBeforeTheFaultSite) {
  auto d = make();
  fail_nth_set(1);
  EXPECT_EQ(d->map(kStart + 1, kPa, k2K, kRW).error(), EINVAL);
  EXPECT_EQ(fail_nth_get(), 1u) << "the site was not reached";
  fail_nth_set(0);
}

TEST(MockDomainTest, MapSweepFailsTheMockSiteThenEachTableAllocation) {
  std::unique_ptr<MockDomain> d;
  SweepResult r = sweep_fail_nth([&] { d = make(); }, [&] { return d->map(kStart, kPa, 4 * k2K, kRW); },
                                 [&](unsigned, Status st) {
                                   if (st.ok()) return;
                                   EXPECT_EQ(d->tables(), 1u);
                                   EXPECT_EQ(d->mapped_bytes(), 0u);
                                 });
  EXPECT_TRUE(r.final_status.ok());
  EXPECT_EQ(r.fired_sites,
            (std::vector<std::string>{"mock.domain_map", "domain.alloc_table", "domain.alloc_table"}));
}

TEST(MockDomainTest, CheckMapAcceptsTheMappedRange) {
  auto d = make();
  ASSERT_TRUE(d->map(kStart, kPa, 600 * k2K, kRW).ok());  // crosses a leaf table
  EXPECT_TRUE(d->check_map(kStart, 600 * k2K, kPa).ok());
  EXPECT_TRUE(d->check_map(kStart + 3 * k2K, 10 * k2K, kPa + 3 * k2K).ok());
  EXPECT_TRUE(d->check_map(kStart, 0, kPa).ok());
}

TEST(MockDomainTest, CheckMapRejectsMisalignedArgumentsWithEinval) {
  auto d = make();
  ASSERT_TRUE(d->map(kStart, kPa, 4 * k2K, kRW).ok());
  EXPECT_EQ(d->check_map(kStart + 1, k2K, kPa).error(), EINVAL);
  EXPECT_EQ(d->check_map(kStart, k2K + 1, kPa).error(), EINVAL);
  EXPECT_EQ(d->check_map(kStart, k2K, kPa + 1).error(), EINVAL);
}

TEST(MockDomainTest, CheckMapRejectsOverflowWithEinval) {
  auto d = make();
  EXPECT_EQ(d->check_map(kStart, 2 * k2K, kUlongMax - k2K + 1).error(), EINVAL);
  EXPECT_EQ(d->check_map(kUlongMax - k2K + 1, 2 * k2K, kPa).error(), EINVAL);
}

TEST(MockDomainTest, CheckMapRejectsAWrongOrMissingUnitWithEinval) {
  auto d = make();
  ASSERT_TRUE(d->map(kStart, kPa, 4 * k2K, kRW).ok());
  ASSERT_TRUE(d->map(kStart + 4 * k2K, kPa + 100 * k2K, 2 * k2K, kRW).ok());
  EXPECT_EQ(d->check_map(kStart, 6 * k2K, kPa).error(), EINVAL);      // wrong after 4 units
  EXPECT_EQ(d->check_map(kStart, 7 * k2K, kPa).error(), EINVAL);      // and missing
  EXPECT_EQ(d->check_map(kStart, 4 * k2K, kPa + k2K).error(), EINVAL);
  EXPECT_EQ(d->check_map(kStart + 6 * k2K, k2K, kPa).error(), EINVAL);  // unmapped
  EXPECT_TRUE(d->check_map(kStart + 4 * k2K, 2 * k2K, kPa + 100 * k2K).ok());
}

TEST(MockDomainTest, UnmapAtMapBoundariesLeavesNoViolation) {
  auto d = make();
  ASSERT_TRUE(d->map(kStart, kPa, 5 * k2K, kRW).ok());
  EXPECT_EQ(d->unmap(kStart, 5 * k2K), 5 * k2K);
  EXPECT_EQ(d->boundary_violations(), 0u);
  EXPECT_EQ(d->table_bytes(), PageTableDomain::kTableBytes);
}

TEST(MockDomainTest, UnmapOfPartOfAMapCallIsCounted) {
  auto d = make({.dcheck_boundaries = false});
  ASSERT_TRUE(d->map(kStart, kPa, 5 * k2K, kRW).ok());
  // The call's last item, a single one after an entry of four.
  EXPECT_EQ(d->unmap(kStart + 4 * k2K, k2K), k2K);
  EXPECT_EQ(d->boundary_violations(), 1u);
}

}  // namespace
}  // namespace uiommufd
