#include "uiommufd/domain/page_table_domain.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/base/log.h"
#include "uiommufd/base/page.h"

namespace uiommufd {
namespace {

constexpr std::uint64_t k4K = std::uint64_t{1} << 12;
constexpr std::uint64_t k2M = std::uint64_t{1} << 21;
constexpr std::uint64_t k1G = std::uint64_t{1} << 30;
constexpr int kRW = kIommuRead | kIommuWrite;
// A PhysAddr base that is 4 KiB but not 2 MiB aligned, so mappings from it use 4 KiB entries only.
constexpr PhysAddr kPa4K = 0x7f0000001000;
// A PhysAddr base aligned to 1 GiB.
constexpr PhysAddr kPa1G = 0x7f0000000000;

std::unique_ptr<PageTableDomain> make(PageTableDomain::Options options = {}) {
  Result<std::unique_ptr<PageTableDomain>> d = PageTableDomain::create(options);
  EXPECT_TRUE(d.ok()) << d.status().to_string();
  return std::move(d).value();
}

PageTableDomain::Options no_dcheck(PageTableDomain::Options options = {}) {
  options.dcheck_boundaries = false;
  return options;
}

// Captures warnings so that violation tests stay quiet and can count log lines.
class CapturedLog {
 public:
  CapturedLog() {
    set_log_sink([this](LogLevel level, std::string_view message) {
      if (level <= LogLevel::kWarn) lines_.emplace_back(message);
    });
  }
  ~CapturedLog() { set_log_sink(nullptr); }
  const std::vector<std::string>& lines() const { return lines_; }

 private:
  std::vector<std::string> lines_;
};

// --- geometry ---------------------------------------------------------------------------------------

TEST(PageTableDomainTest, LevelsFollowTheAperturesTopBit) {
  EXPECT_EQ(make()->levels(), 4u);  // 48 bits: 12 + 4 x 9
  EXPECT_EQ(make({.aperture = {0, k2M - 1}})->levels(), 1u);
  EXPECT_EQ(make({.aperture = {0, 2 * k2M - 1}})->levels(), 2u);  // needs bit 21
  EXPECT_EQ(make({.aperture = Interval::full()})->levels(), 6u);  // 52 bits above the granule
  EXPECT_EQ(make({.granule_shift = 11, .aperture = {1u << 24, (1ull << 31) - 1}})->levels(), 3u);
}

TEST(PageTableDomainTest, PgsizeBitmapReflectsEnabledSizes) {
  EXPECT_EQ(make()->pgsize_bitmap(), k4K | k2M | k1G);
  EXPECT_EQ(make({.large_pages = false})->pgsize_bitmap(), k4K);
  EXPECT_EQ(make({.max_large_level = 1})->pgsize_bitmap(), k4K | k2M);
  // No level above the top: a 2-level table has only 2 MiB large entries.
  EXPECT_EQ(make({.aperture = {0, k1G - 1}})->pgsize_bitmap(), k4K | k2M);
  EXPECT_EQ(make({.granule_shift = 11})->pgsize_bitmap(), (1ull << 11) | (1ull << 20) | (1ull << 29));
  EXPECT_EQ(make()->granule(), k4K);
  EXPECT_EQ(make({.granule_shift = 11})->granule(), 2048u);
}

TEST(PageTableDomainTest, CreateRejectsBadOptions) {
  EXPECT_EQ(PageTableDomain::create({.granule_shift = 10}).error(), EINVAL);
  EXPECT_EQ(PageTableDomain::create({.granule_shift = 31}).error(), EINVAL);
  EXPECT_EQ(PageTableDomain::create({.aperture = {k4K + 1, k1G - 1}}).error(), EINVAL);
  EXPECT_EQ(PageTableDomain::create({.aperture = {0, k1G}}).error(), EINVAL);
}

TEST(PageTableDomainTest, CreateFailsWithEnomemWhenTheRootCannotBeAllocated) {
  fail_nth_set(1);
  EXPECT_EQ(PageTableDomain::create().error(), ENOMEM);
  EXPECT_EQ(fail_nth_get(), 0u);
  EXPECT_STREQ(last_injected_fault(), "domain.alloc_table");
}

TEST(PageTableDomainTest, EmptyDomainHoldsOnlyTheRoot) {
  auto d = make();
  EXPECT_EQ(d->table_bytes(), PageTableDomain::kTableBytes);
  EXPECT_EQ(d->mapped_bytes(), 0u);
  EXPECT_EQ(d->iova_to_phys(0), std::nullopt);
}

// --- map / translate ---------------------------------------------------------------------------------

TEST(PageTableDomainTest, MapTranslatesEveryGranuleAndByte) {
  auto d = make();
  ASSERT_TRUE(d->map(0x10000, kPa4K, 3 * k4K, kRW).ok());
  EXPECT_EQ(d->mapped_bytes(), 3 * k4K);
  for (std::uint64_t off = 0; off < 3 * k4K; off += 511) EXPECT_EQ(d->iova_to_phys(0x10000 + off), kPa4K + off);
  EXPECT_EQ(d->iova_to_phys(0x10000 - 1), std::nullopt);
  EXPECT_EQ(d->iova_to_phys(0x10000 + 3 * k4K), std::nullopt);
  EXPECT_EQ(d->large_entries(), 0u);
}

TEST(PageTableDomainTest, MapStoresProt) {
  auto d = make();
  ASSERT_TRUE(d->map(0, kPa4K, k4K, kIommuRead).ok());
  ASSERT_TRUE(d->map(k4K, kPa4K, k4K, kIommuWrite | kIommuCache).ok());
  ASSERT_TRUE(d->map(k2M, kPa1G, k2M, kRW).ok());
  EXPECT_EQ(d->prot_at(0), kIommuRead);
  EXPECT_EQ(d->prot_at(k4K), kIommuWrite | kIommuCache);
  EXPECT_EQ(d->prot_at(k2M + 5 * k4K), kRW);
  EXPECT_EQ(d->prot_at(2 * k4K), std::nullopt);
}

TEST(PageTableDomainTest, TranslatesAtTheTopOfAFullAperture) {
  auto d = make({.aperture = Interval::full()});
  const std::uint64_t iova = kUlongMax - 2 * k4K + 1;
  ASSERT_TRUE(d->map(iova, kPa4K, 2 * k4K, kRW).ok());
  EXPECT_EQ(d->iova_to_phys(kUlongMax), kPa4K + 2 * k4K - 1);
  EXPECT_EQ(d->iova_to_phys(0), std::nullopt);
  EXPECT_EQ(d->read_run(iova, ~0ull).length, 2 * k4K);
  EXPECT_EQ(d->unmap(iova, 2 * k4K), 2 * k4K);
  EXPECT_EQ(d->boundary_violations(), 0u);
  EXPECT_EQ(d->table_bytes(), PageTableDomain::kTableBytes);
}

// --- large entries -----------------------------------------------------------------------------------

TEST(PageTableDomainTest, UsesA2MEntryWhenIovaPaddrAndLengthAreAligned) {
  auto d = make();
  ASSERT_TRUE(d->map(k2M, kPa1G + k2M, k2M, kRW).ok());
  EXPECT_EQ(d->large_entries(), 1u);
  EXPECT_EQ(d->tables(), 3u);  // root, level 2, level 1: no leaf table
  EXPECT_EQ(d->iova_to_phys(k2M + 12345), kPa1G + k2M + 12345);
}

TEST(PageTableDomainTest, UsesGranulesWhenPaddrIsNot2MAligned) {
  auto d = make();
  ASSERT_TRUE(d->map(k2M, kPa4K, k2M, kRW).ok());
  EXPECT_EQ(d->large_entries(), 0u);
  EXPECT_EQ(d->tables(), 4u);  // plus one leaf table
}

TEST(PageTableDomainTest, UsesGranulesWhenLengthIsShortOfALargePage) {
  auto d = make();
  ASSERT_TRUE(d->map(k2M, kPa1G, k2M - k4K, kRW).ok());
  EXPECT_EQ(d->large_entries(), 0u);
}

TEST(PageTableDomainTest, UsesOne1GEntryFor1GAlignedMapping) {
  auto d = make();
  ASSERT_TRUE(d->map(k1G, kPa1G, k1G, kRW).ok());
  EXPECT_EQ(d->large_entries(), 1u);
  EXPECT_EQ(d->tables(), 2u);  // root and level 2
  EXPECT_EQ(d->iova_to_phys(k1G + k1G / 3), kPa1G + k1G / 3);
}

TEST(PageTableDomainTest, SplitsAMisalignedRangeIntoTheLargestPieces) {
  auto d = make();
  // 2 granules up to a 2 MiB boundary, one 2 MiB entry, then 3 granules; iova and paddr congruent.
  const std::uint64_t iova = 5 * k2M - 2 * k4K;
  const PhysAddr pa = kPa1G + 7 * k2M - 2 * k4K;
  const std::uint64_t length = 2 * k4K + k2M + 3 * k4K;
  ASSERT_TRUE(d->map(iova, pa, length, kRW).ok());
  EXPECT_EQ(d->large_entries(), 1u);
  EXPECT_EQ(d->mapped_bytes(), length);
  for (std::uint64_t off = 0; off < length; off += k4K) ASSERT_EQ(d->iova_to_phys(iova + off), pa + off);
  EXPECT_EQ(d->unmap(iova, length), length);
  EXPECT_EQ(d->boundary_violations(), 0u);
  EXPECT_EQ(d->large_entries(), 0u);
  EXPECT_EQ(d->table_bytes(), PageTableDomain::kTableBytes);
}

TEST(PageTableDomainTest, LargePagesOffUsesOnlyGranules) {
  auto d = make({.large_pages = false});
  ASSERT_TRUE(d->map(k1G, kPa1G, k1G, kRW).ok());
  EXPECT_EQ(d->large_entries(), 0u);
  EXPECT_EQ(d->tables(), 1u + 1u + 1u + 512u);
}

TEST(PageTableDomainTest, MaxLargeLevelOneUses2MForA1GMapping) {
  auto d = make({.max_large_level = 1});
  ASSERT_TRUE(d->map(k1G, kPa1G, k1G, kRW).ok());
  EXPECT_EQ(d->large_entries(), 512u);
}

// --- unmap and table memory --------------------------------------------------------------------------

TEST(PageTableDomainTest, UnmapFreesEveryTableButTheRoot) {
  auto d = make();
  ASSERT_TRUE(d->map(0x40000000 - 3 * k4K, kPa4K, 6 * k2M, kRW).ok());
  ASSERT_TRUE(d->map(5 * k1G, kPa1G, k1G + k2M + k4K, kRW).ok());
  EXPECT_GT(d->tables(), 5u);
  EXPECT_EQ(d->unmap(0x40000000 - 3 * k4K, 6 * k2M), 6 * k2M);
  EXPECT_EQ(d->unmap(5 * k1G, k1G + k2M + k4K), k1G + k2M + k4K);
  EXPECT_EQ(d->boundary_violations(), 0u);
  EXPECT_EQ(d->mapped_bytes(), 0u);
  EXPECT_EQ(d->large_entries(), 0u);
  EXPECT_EQ(d->table_bytes(), PageTableDomain::kTableBytes);
}

TEST(PageTableDomainTest, UnmapOfTwoMapCallsAtTheirOuterBoundariesIsClean) {
  auto d = make();
  ASSERT_TRUE(d->map(0, kPa4K, 2 * k4K, kRW).ok());
  ASSERT_TRUE(d->map(2 * k4K, kPa1G, 2 * k4K, kRW).ok());
  EXPECT_EQ(d->unmap(0, 4 * k4K), 4 * k4K);
  EXPECT_EQ(d->boundary_violations(), 0u);
}

TEST(PageTableDomainTest, SingleGranuleMapCarriesBothMarkers) {
  auto d = make();
  ASSERT_TRUE(d->map(k4K, kPa4K, k4K, kRW).ok());
  EXPECT_EQ(d->unmap(k4K, k4K), k4K);
  EXPECT_EQ(d->boundary_violations(), 0u);
}

TEST(PageTableDomainTest, DestroyingAMappedDomainFreesItsTables) {
  // Leaks show under the asan preset.
  auto d = make();
  ASSERT_TRUE(d->map(k4K, kPa4K, 3 * k2M, kRW).ok());
  ASSERT_TRUE(d->map(4 * k1G, kPa1G, k1G, kRW).ok());
  d.reset();
}

TEST(PageTableDomainTest, MemoryPerPageIsAtMost16BytesFor4KEntries) {
  auto d = make();
  const std::uint64_t length = 64ull << 20;
  ASSERT_TRUE(d->map(k1G, kPa4K, length, kRW).ok());
  const double bytes_per_page = static_cast<double>(d->table_bytes()) / (length / k4K);
  EXPECT_LE(bytes_per_page, 16.0);
  RecordProperty("bytes_per_4k_page", std::to_string(bytes_per_page));
}

TEST(PageTableDomainTest, MemoryPerPageIsAtMost1ByteFor2MAlignedMapping) {
  auto d = make();
  const std::uint64_t length = 64ull << 20;
  ASSERT_TRUE(d->map(k1G, kPa1G + k2M, length, kRW).ok());
  const double bytes_per_page = static_cast<double>(d->table_bytes()) / (length / k4K);
  EXPECT_LE(bytes_per_page, 1.0);
  RecordProperty("bytes_per_4k_page", std::to_string(bytes_per_page));
}

// --- failures leave the table unchanged --------------------------------------------------------------

TEST(PageTableDomainTest, MapFailingPartWayLeavesNothingMapped) {
  std::unique_ptr<PageTableDomain> d;
  std::uint64_t tables_before = 0;
  // Ends a level-3 slot and starts the next, so it needs new tables at every level on both sides:
  // leaf and level 1 before 512 GiB; level 2, level 1 and (after two 2 MiB entries) a leaf after it.
  const std::uint64_t iova = 512 * k1G - 3 * k4K;
  const PhysAddr pa = kPa1G + 5 * k1G - 3 * k4K;  // congruent to iova modulo 2 MiB
  const std::uint64_t length = 3 * k4K + k2M + 600 * k4K;
  SweepResult r = sweep_fail_nth(
      [&] {
        d = make();
        ASSERT_TRUE(d->map(0, kPa4K, k4K, kRW).ok());  // a neighbour sharing the root and a level-2 table
        tables_before = d->tables();
      },
      [&] { return d->map(iova, pa, length, kRW); },
      [&](unsigned n, Status st) {
        if (st.ok()) return;
        EXPECT_EQ(st.error(), ENOMEM);
        EXPECT_EQ(d->tables(), tables_before) << "n=" << n;
        EXPECT_EQ(d->mapped_bytes(), k4K);
        EXPECT_EQ(d->large_entries(), 0u);
        for (std::uint64_t off = 0; off < length; off += k4K) ASSERT_EQ(d->iova_to_phys(iova + off), std::nullopt);
        EXPECT_EQ(d->iova_to_phys(0), kPa4K);
      });
  EXPECT_TRUE(r.final_status.ok());
  EXPECT_FALSE(r.hit_cap);
  EXPECT_EQ(r.sites_failed, 5u);
  EXPECT_EQ(d->large_entries(), 2u);
  for (const std::string& site : r.fired_sites) EXPECT_EQ(site, "domain.alloc_table");
  EXPECT_EQ(d->mapped_bytes(), k4K + length);
  EXPECT_EQ(d->unmap(iova, length), length);
  EXPECT_EQ(d->boundary_violations(), 0u);
}

TEST(PageTableDomainTest, MapOverlappingAtTheEndFailsWithEexistAndLeavesTheTableUnchanged) {
  auto d = make();
  ASSERT_TRUE(d->map(k2M + 4 * k4K, kPa4K, 4 * k4K, kRW).ok());
  const std::uint64_t tables = d->tables();
  // Maps 4 granules before meeting the existing ones, then must take them back.
  EXPECT_EQ(d->map(k2M, kPa1G, 6 * k4K, kRW).error(), EEXIST);
  EXPECT_EQ(d->tables(), tables);
  EXPECT_EQ(d->mapped_bytes(), 4 * k4K);
  EXPECT_EQ(d->iova_to_phys(k2M), std::nullopt);
  EXPECT_EQ(d->iova_to_phys(k2M + 4 * k4K), kPa4K);
}

TEST(PageTableDomainTest, MapOverlappingInANewTableRegionFailsWithEexistAndFreesNewTables) {
  auto d = make();
  ASSERT_TRUE(d->map(2 * k1G, kPa4K, k4K, kRW).ok());
  const std::uint64_t tables = d->tables();
  // Starts in a level-2 region without tables (allocating some), ends on the existing granule.
  EXPECT_EQ(d->map(2 * k1G - 5 * k4K, kPa4K, 6 * k4K, kRW).error(), EEXIST);
  EXPECT_EQ(d->tables(), tables);
  EXPECT_EQ(d->mapped_bytes(), k4K);
}

TEST(PageTableDomainTest, MapInsideALargeEntryFailsWithEexist) {
  auto d = make();
  ASSERT_TRUE(d->map(k2M, kPa1G, k2M, kRW).ok());
  const std::uint64_t tables = d->tables();
  EXPECT_EQ(d->map(k2M + k4K, kPa4K, k4K, kRW).error(), EEXIST);
  EXPECT_EQ(d->tables(), tables);
  EXPECT_EQ(d->iova_to_phys(k2M + k4K), kPa1G + k4K);
}

TEST(PageTableDomainTest, LargeMapOverExistingGranulesFailsWithEexist) {
  auto d = make();
  ASSERT_TRUE(d->map(k2M + 7 * k4K, kPa4K, k4K, kRW).ok());
  const std::uint64_t tables = d->tables();
  EXPECT_EQ(d->map(0, kPa1G, 2 * k2M, kRW).error(), EEXIST);
  EXPECT_EQ(d->tables(), tables);
  EXPECT_EQ(d->mapped_bytes(), k4K);
  EXPECT_EQ(d->large_entries(), 0u);
  EXPECT_EQ(d->iova_to_phys(0), std::nullopt);
}

TEST(PageTableDomainTest, MapRejectsBadArgumentsWithEinval) {
  auto d = make({.aperture = {k2M, k1G - 1}});
  EXPECT_EQ(d->map(k2M, kPa4K, 0, kRW).error(), EINVAL);
  EXPECT_EQ(d->map(k2M + 1, kPa4K, k4K, kRW).error(), EINVAL);
  EXPECT_EQ(d->map(k2M, kPa4K + 8, k4K, kRW).error(), EINVAL);
  EXPECT_EQ(d->map(k2M, kPa4K, k4K + 1, kRW).error(), EINVAL);
  EXPECT_EQ(d->map(k2M - k4K, kPa4K, k4K, kRW).error(), EINVAL);       // below the aperture
  EXPECT_EQ(d->map(k1G - k4K, kPa4K, 2 * k4K, kRW).error(), EINVAL);   // straddles its end
  EXPECT_EQ(d->map(k2M, kUlongMax - k4K + 1, 2 * k4K, kRW).error(), EINVAL);  // paddr wraps
  EXPECT_EQ(d->map(k2M, kPa4K, k4K, 8).error(), EINVAL);                // unknown prot bit
  EXPECT_EQ(d->mapped_bytes(), 0u);
  EXPECT_EQ(d->tables(), 1u);
}

// --- boundary violations -----------------------------------------------------------------------------

TEST(PageTableDomainTest, UnmapOfHalfAMapCallCountsAViolationAndUnmapsThatHalf) {
  CapturedLog log;
  auto d = make(no_dcheck());
  ASSERT_TRUE(d->map(0, kPa4K, 4 * k4K, kRW).ok());
  EXPECT_EQ(d->unmap(0, 2 * k4K), 2 * k4K);  // lacks LAST at its end
  EXPECT_EQ(d->boundary_violations(), 1u);
  EXPECT_EQ(d->iova_to_phys(2 * k4K), kPa4K + 2 * k4K);
  EXPECT_EQ(d->unmap(2 * k4K, 2 * k4K), 2 * k4K);  // lacks START at its start
  EXPECT_EQ(d->boundary_violations(), 2u);
  EXPECT_EQ(d->table_bytes(), PageTableDomain::kTableBytes);
  EXPECT_EQ(log.lines().size(), 1u) << "logged once per domain";
}

TEST(PageTableDomainTest, UnmapThatWouldSplitALargeEntryUnmapsNothing) {
  CapturedLog log;
  auto d = make(no_dcheck());
  ASSERT_TRUE(d->map(k2M, kPa1G, k2M, kRW).ok());
  EXPECT_EQ(d->unmap(k2M, k4K), 0u);           // end inside the entry
  EXPECT_EQ(d->unmap(k2M + k4K, k2M - k4K), 0u);  // start inside the entry
  EXPECT_EQ(d->boundary_violations(), 2u);
  EXPECT_EQ(d->mapped_bytes(), k2M);
  EXPECT_EQ(d->iova_to_phys(k2M), kPa1G);
  EXPECT_EQ(d->unmap(k2M, k2M), k2M);
  EXPECT_EQ(d->boundary_violations(), 2u);
}

TEST(PageTableDomainTest, UnmapCoveringAHoleCountsAViolationAndUnmapsTheRest) {
  CapturedLog log;
  auto d = make(no_dcheck());
  ASSERT_TRUE(d->map(0, kPa4K, k4K, kRW).ok());
  ASSERT_TRUE(d->map(2 * k4K, kPa4K, k4K, kRW).ok());
  EXPECT_EQ(d->unmap(0, 3 * k4K), 2 * k4K);
  EXPECT_EQ(d->boundary_violations(), 1u);
  EXPECT_EQ(d->mapped_bytes(), 0u);
  EXPECT_EQ(d->table_bytes(), PageTableDomain::kTableBytes);
}

TEST(PageTableDomainTest, UnmapOfNothingCountsAViolation) {
  CapturedLog log;
  auto d = make(no_dcheck());
  EXPECT_EQ(d->unmap(k2M, k4K), 0u);
  EXPECT_EQ(d->boundary_violations(), 1u);
  EXPECT_EQ(d->tables(), 1u);
}

TEST(PageTableDomainTest, MisalignedOrOutOfApertureUnmapCountsAViolationAndUnmapsNothing) {
  CapturedLog log;
  auto d = make(no_dcheck({.aperture = {0, k1G - 1}}));
  ASSERT_TRUE(d->map(0, kPa4K, 2 * k4K, kRW).ok());
  EXPECT_EQ(d->unmap(0, k4K + 1), 0u);
  EXPECT_EQ(d->unmap(1, k4K), 0u);
  EXPECT_EQ(d->unmap(0, 0), 0u);
  EXPECT_EQ(d->unmap(0, k1G + k4K), 0u);
  EXPECT_EQ(d->unmap(k4K, kUlongMax - k4K + 1), 0u);  // wraps
  EXPECT_EQ(d->boundary_violations(), 5u);
  EXPECT_EQ(d->mapped_bytes(), 2 * k4K);
}

#ifndef NDEBUG
TEST(PageTableDomainDeathTest, ViolationFailsTheDcheckByDefault) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto d = make();
  ASSERT_TRUE(d->map(0, kPa4K, 2 * k4K, kRW).ok());
  EXPECT_DEATH(d->unmap(0, k4K), "unmap_matches_map_boundaries");
}
#endif

// --- read_run ----------------------------------------------------------------------------------------

TEST(PageTableDomainTest, ReadRunMergesContiguousEntriesAcrossTables) {
  auto d = make();
  const std::uint64_t iova = k2M - 16 * k4K;
  const std::uint64_t length = 2 * k2M + 40 * k4K;  // spans three leaf tables
  ASSERT_TRUE(d->map(iova, kPa4K, length, kRW).ok());
  const Domain::Run run = d->read_run(iova, ~0ull);
  EXPECT_EQ(run.paddr, kPa4K);
  EXPECT_EQ(run.length, length);
}

TEST(PageTableDomainTest, ReadRunMergesAcrossPageSizesAndMapCalls) {
  auto d = make();
  const std::uint64_t iova = 3 * k2M - 2 * k4K;
  const PhysAddr pa = kPa1G + 3 * k2M - 2 * k4K;
  ASSERT_TRUE(d->map(iova, pa, 2 * k4K + k2M, kRW).ok());           // granules then a 2 MiB entry
  ASSERT_TRUE(d->map(iova + 2 * k4K + k2M, pa + 2 * k4K + k2M, 5 * k4K, kRW).ok());  // contiguous call
  ASSERT_EQ(d->large_entries(), 1u);
  const Domain::Run run = d->read_run(iova, ~0ull);
  EXPECT_EQ(run.paddr, pa);
  EXPECT_EQ(run.length, 7 * k4K + k2M);
}

TEST(PageTableDomainTest, ReadRunStopsAtAPhysicalDiscontinuity) {
  auto d = make();
  ASSERT_TRUE(d->map(0, kPa4K, 3 * k4K, kRW).ok());
  ASSERT_TRUE(d->map(3 * k4K, kPa4K + 10 * k4K, 3 * k4K, kRW).ok());
  EXPECT_EQ(d->read_run(0, ~0ull).length, 3 * k4K);
  const Domain::Run second = d->read_run(3 * k4K, ~0ull);
  EXPECT_EQ(second.paddr, kPa4K + 10 * k4K);
  EXPECT_EQ(second.length, 3 * k4K);
}

TEST(PageTableDomainTest, ReadRunStopsAtAHoleAndAtMaxLength) {
  auto d = make();
  ASSERT_TRUE(d->map(0, kPa4K, 3 * k4K, kRW).ok());
  ASSERT_TRUE(d->map(4 * k4K, kPa4K + 4 * k4K, 3 * k4K, kRW).ok());
  EXPECT_EQ(d->read_run(0, ~0ull).length, 3 * k4K);
  EXPECT_EQ(d->read_run(0, 2 * k4K).length, 2 * k4K);
  EXPECT_EQ(d->read_run(k4K, k4K).paddr, kPa4K + k4K);
  EXPECT_EQ(d->read_run(3 * k4K, ~0ull).length, 0u);
  EXPECT_EQ(d->read_run(0, 0).length, 0u);
  EXPECT_EQ(d->read_run(1, ~0ull).length, 0u);  // not granule aligned
}

TEST(PageTableDomainTest, ReadRunStartingInsideALargeEntry) {
  auto d = make();
  ASSERT_TRUE(d->map(k2M, kPa1G, k2M, kRW).ok());
  const Domain::Run run = d->read_run(k2M + 3 * k4K, ~0ull);
  EXPECT_EQ(run.paddr, kPa1G + 3 * k4K);
  EXPECT_EQ(run.length, k2M - 3 * k4K);
  EXPECT_EQ(d->read_run(k2M + 3 * k4K, k4K).length, k4K);
}

TEST(PageTableDomainTest, ReadRunStopsAtTheApertureEnd) {
  auto d = make({.aperture = {0, k2M - 1}});
  ASSERT_TRUE(d->map(k2M - 2 * k4K, kPa4K, 2 * k4K, kRW).ok());
  EXPECT_EQ(d->read_run(k2M - 2 * k4K, ~0ull).length, 2 * k4K);
  EXPECT_EQ(d->read_run(k2M, ~0ull).length, 0u);
}

}  // namespace
}  // namespace uiommufd
