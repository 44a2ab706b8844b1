// Per-page cost of the software page table (src/domain) against the bound the architecture sets for it:
// "the per-4 KiB cost must stay near the cost of writing one 8-byte entry".
//
// Each iteration maps 1 GiB into a PageTableDomain and unmaps it again. The baseline does the same work
// on a dense array of one 8-byte entry per 4 KiB page: write every entry (map), then zero it (unmap). The
// domain additionally checks each slot is free, allocates and frees its 512 leaf tables, and walks from
// the root once per table; the 4k figure is the price of all that. The 2m figure maps 2 MiB-aligned
// memory (512 large entries, never a 1 GiB one) and is measured against the same per-4 KiB baseline, so
// it shows what large entries save per page.
#include <cstdint>
#include <memory>
#include <vector>

#include <benchmark/benchmark.h>

#include "figures.h"

#include "uiommufd/base/assert.h"
#include "uiommufd/base/page.h"
#include "uiommufd/domain/page_table_domain.h"

namespace uiommufd::bench {
namespace {

constexpr std::uint64_t kLength = std::uint64_t{1} << 30;
constexpr std::uint64_t kPages = kLength / kPageSize;
constexpr std::uint64_t kIova = std::uint64_t{1} << 30;
// 4 KiB aligned but not 2 MiB aligned: every page becomes a 4 KiB entry.
constexpr PhysAddr kPa4K = 0x7f0000001000;
// 2 MiB aligned but not 1 GiB aligned: 512 entries of 2 MiB.
constexpr PhysAddr kPa2M = 0x7f0000200000;

void map_unmap(benchmark::State& state, PhysAddr pa) {
  Result<std::unique_ptr<PageTableDomain>> created = PageTableDomain::create();
  UIOMMUFD_ASSERT(created.ok());
  PageTableDomain& domain = **created;
  for (auto _ : state) {
    const Status st = domain.map(kIova, pa, kLength, kIommuRead | kIommuWrite);
    UIOMMUFD_ASSERT(st.ok());
    const std::uint64_t unmapped = domain.unmap(kIova, kLength);
    UIOMMUFD_ASSERT(unmapped == kLength);
    benchmark::DoNotOptimize(unmapped);
  }
  UIOMMUFD_ASSERT(domain.boundary_violations() == 0);
  state.counters["pages"] = static_cast<double>(kPages);
}

void BM_DomainMapUnmap1G4K(benchmark::State& state) { map_unmap(state, kPa4K); }
BENCHMARK(BM_DomainMapUnmap1G4K);

void BM_DomainMapUnmap1G2M(benchmark::State& state) { map_unmap(state, kPa2M); }
BENCHMARK(BM_DomainMapUnmap1G2M);

// The limit: one 8-byte entry per 4 KiB page, written and then cleared, in a dense array.
void BM_DenseEntryWriteClear1G(benchmark::State& state) {
  std::vector<std::uint64_t> entries(kPages);
  for (auto _ : state) {
    std::uint64_t* e = entries.data();
    benchmark::DoNotOptimize(e);
    for (std::uint64_t i = 0; i < kPages; ++i) e[i] = (kPa4K + i * kPageSize) | 0xd;
    benchmark::ClobberMemory();
    for (std::uint64_t i = 0; i < kPages; ++i) e[i] = 0;
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_DenseEntryWriteClear1G);

const FigureTable kFigures{{
    {.name = "domain_map_unmap_1g_4k",
     .numerator = "BM_DomainMapUnmap1G4K",
     .denominator = "BM_DenseEntryWriteClear1G",
     .target = 3.0},
    {.name = "domain_map_unmap_1g_2m",
     .numerator = "BM_DomainMapUnmap1G2M",
     .denominator = "BM_DenseEntryWriteClear1G",
     .target = 0.05},
    {.name = "domain_map_unmap_4k_per_page",
     .numerator = "BM_DomainMapUnmap1G4K",
     .direction = Direction::kInfo,
     .metric = "ns_per_page",
     .scale_from_ns = 1.0 / static_cast<double>(kPages),
     .note = "(1 GiB of 4 KiB entries, map + unmap)"},
}};

}  // namespace
}  // namespace uiommufd::bench
