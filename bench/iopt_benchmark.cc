// The I/O page table end to end: map + unmap of 1 GiB of resident memory with a software domain attached,
// filling a domain, and the engine's memory per mapped page.
//
// Limits, measured in the same run: making the same range resident with MADV_POPULATE_WRITE plus writing
// one 8-byte entry per page (what any pinning IOMMU must at least do), and the dense 8-byte write alone.
//
// And the peer (map_unmap_1g_4k_vs_kernel): IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP of 1 GiB of resident 4 KiB
// pages on an IOAS with a software-domain device attached (the ioctls' handlers, Ioas::map and
// Ioas::unmap), against the kernel's long-term pin of the same GiB, an io_uring fixed-buffer register +
// unregister (kernel_pin.h; 1 GiB is its limit per buffer), paired one call against one call.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include "figures.h"
#include "kernel_pin.h"

#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/ioas.h"

namespace uiommufd::bench {
namespace {

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
constexpr std::uint64_t kPages = kGiB / kPageSize;
constexpr int kRW = kIommuRead | kIommuWrite;

// 1 GiB of resident memory: 4 KiB pages (huge pages refused), or 2 MiB-aligned THP.
//
// A page's identity is its host address, so any virtually contiguous run would qualify for large IOPTEs.
// Real 4 KiB pages are physically scattered; the 4 KiB figures model that with a domain that has large
// entries turned off, so every page costs one 8-byte entry.
class Memory {
 public:
  explicit Memory(bool thp) {
    size_ = kGiB + kHugePageSize;
    base_ = static_cast<char*>(mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (base_ == MAP_FAILED) std::abort();
    aligned_ = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(base_) + kHugePageSize - 1) &
                                       ~(kHugePageSize - 1));
    madvise(aligned_, kGiB, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    std::memset(aligned_, 1, kGiB);
  }
  ~Memory() { munmap(base_, size_); }
  std::uint64_t addr() const { return reinterpret_cast<std::uint64_t>(aligned_); }
  char* ptr() const { return aligned_; }

 private:
  char* base_;
  char* aligned_;
  std::size_t size_;
};

Memory& memory(bool thp) {
  static Memory four_k(false);
  static Memory huge(true);
  return thp ? huge : four_k;
}

Result<std::unique_ptr<PageTableDomain>> domain_for(bool thp) {
  PageTableDomain::Options options;
  options.large_pages = thp;
  return PageTableDomain::create(options);
}

void map_unmap(benchmark::State& state, bool thp) {
  Memory& mem = memory(thp);
  IoPagetable iopt;
  auto domain = domain_for(thp);
  if (!domain.ok() || !iopt.add_domain(domain->get()).ok()) {
    state.SkipWithError("domain");
    return;
  }
  for (auto _ : state) {
    auto pages = Pages::create_user(Mm::current(), mem.addr(), kGiB, true, AccountMode::kNone);
    std::uint64_t iova = 0;
    if (!pages.ok() || !iopt.map_pages(*pages, &iova, kRW, false).ok()) {
      state.SkipWithError("map");
      break;
    }
    std::uint64_t unmapped = 0;
    if (!iopt.unmap_range(Interval::full(), &unmapped).ok() || unmapped != kGiB) state.SkipWithError("unmap");
  }
  iopt.remove_domain(domain->get());
}

void BM_IoptMapUnmap1G4K(benchmark::State& state) { map_unmap(state, false); }
BENCHMARK(BM_IoptMapUnmap1G4K)->Unit(benchmark::kMillisecond)->Iterations(5)->Repetitions(3);

void BM_IoptMapUnmap1GThp(benchmark::State& state) { map_unmap(state, true); }
BENCHMARK(BM_IoptMapUnmap1GThp)->Unit(benchmark::kMillisecond)->Iterations(5)->Repetitions(3);

// IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP through the objects layer. The IOAS has large pages off
// (IOMMU_OPTION_HUGE_PAGES = 0) for the reason the 4 KiB domains above have them off: real 4 KiB pages are
// physically scattered, so every page costs one IOPTE.
void BM_IoasMapUnmap1G4KVsKernel(benchmark::State& state) {
  Memory& mem = memory(false);
  KernelPin kernel;
  if (std::string why = kernel.probe(mem.ptr(), kGiB); !why.empty()) return skip(state, why);
  std::uint64_t pinned_before = Pages::total_pinned_pages();
  {
    auto ctx = Context::create();
    if (!ctx.ok()) return state.SkipWithError("context");
    auto ioas_id = Ioas::create(**ctx);
    auto device_id = Device::create(**ctx, Device::Kind::kSoftware);
    if (!ioas_id.ok() || !device_id.ok()) return state.SkipWithError("objects");
    {
      auto ioas = (*ctx)->get<Ioas>(*ioas_id, ObjectType::kIoas);
      auto device = (*ctx)->get<Device>(*device_id, ObjectType::kDevice);
      if (!ioas.ok() || !device.ok() || !(*ioas)->iopt().set_large_pages(false).ok() ||
          !(*device)->attach(*ioas_id).ok())
        return state.SkipWithError("attach");
      bool failed = false;
      int kernel_err = 0;
      auto map_unmap = [&] {
        std::uint64_t iova = 0, unmapped = 0;
        if (!(*ioas)->map(mem.addr(), kGiB, &iova, Ioas::kReadable | Ioas::kWriteable).ok() ||
            !(*ioas)->unmap(iova, kGiB, &unmapped).ok() || unmapped != kGiB)
          failed = true;
      };
      auto kernel_pin = [&] {
        if (int err = kernel.register_unregister(mem.ptr(), kGiB)) kernel_err = err;
      };
      run_paired(state, map_unmap, kernel_pin, /*ops_per_block=*/1);
      if (failed)
        state.SkipWithError("map or unmap failed");
      else if (kernel_err != 0)
        state.SkipWithError(("kernel pin failed: " + std::string(std::strerror(kernel_err))).c_str());
    }
  }
  if (Pages::total_pinned_pages() != pinned_before && !state.error_occurred())
    state.SkipWithError("pins leaked");
}
BENCHMARK(BM_IoasMapUnmap1G4KVsKernel)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(6)
    ->Repetitions(3);

// The limit for map + unmap: make the range resident and write one 8-byte entry per page.
void populate_and_write(benchmark::State& state, bool thp) {
  Memory& mem = memory(thp);
  std::vector<std::uint64_t> entries(kPages);
  for (auto _ : state) {
    if (madvise(mem.ptr(), kGiB, MADV_POPULATE_WRITE) != 0) state.SkipWithError("populate");
    for (std::uint64_t i = 0; i < kPages; ++i) entries[i] = mem.addr() + i * kPageSize;
    benchmark::DoNotOptimize(entries.data());
    benchmark::ClobberMemory();
  }
}

void BM_PopulateAndWrite1G4K(benchmark::State& state) { populate_and_write(state, false); }
BENCHMARK(BM_PopulateAndWrite1G4K)->Unit(benchmark::kMillisecond)->Iterations(5)->Repetitions(3);

void BM_PopulateAndWrite1GThp(benchmark::State& state) { populate_and_write(state, true); }
BENCHMARK(BM_PopulateAndWrite1GThp)->Unit(benchmark::kMillisecond)->Iterations(5)->Repetitions(3);

// Filling a domain from 1 GiB already mapped and pinned (a second domain): the per-page work is the
// page-table write, so the limit is the dense write.
void BM_IoptDomainFill1G(benchmark::State& state) {
  Memory& mem = memory(false);
  IoPagetable iopt;
  auto first = domain_for(false);
  auto pages = Pages::create_user(Mm::current(), mem.addr(), kGiB, true, AccountMode::kNone);
  std::uint64_t iova = 0;
  if (!first.ok() || !pages.ok() || !iopt.add_domain(first->get()).ok() ||
      !iopt.map_pages(*pages, &iova, kRW, false).ok()) {
    state.SkipWithError("setup");
    return;
  }
  for (auto _ : state) {
    auto domain = domain_for(false);
    if (!domain.ok() || !iopt.add_domain(domain->get()).ok()) {
      state.SkipWithError("fill");
      break;
    }
    state.PauseTiming();
    iopt.remove_domain(domain->get());
    state.ResumeTiming();
  }
  std::uint64_t unmapped;
  (void)iopt.unmap_range(Interval::full(), &unmapped);
  iopt.remove_domain(first->get());
}
BENCHMARK(BM_IoptDomainFill1G)->Unit(benchmark::kMillisecond)->Iterations(5)->Repetitions(3);

void BM_DenseWrite1G(benchmark::State& state) {
  std::vector<std::uint64_t> entries(kPages);
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < kPages; ++i) entries[i] = i * kPageSize;
    benchmark::DoNotOptimize(entries.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_DenseWrite1G)->Unit(benchmark::kMillisecond)->Iterations(20)->Repetitions(3);

// Engine memory per mapped 4 KiB page with one domain, for 4 KiB-aligned and 2 MiB-aligned backing.
void memory_per_page(benchmark::State& state, bool thp) {
  Memory& mem = memory(thp);
  for (auto _ : state) {
    IoPagetable iopt;
    auto domain = domain_for(thp);
    auto pages = Pages::create_user(Mm::current(), mem.addr(), kGiB, true, AccountMode::kNone);
    std::uint64_t iova = thp ? kGiB : 0;
    if (!domain.ok() || !pages.ok() || !iopt.add_domain(domain->get()).ok() ||
        !iopt.map_pages(*pages, &iova, kRW, thp).ok()) {
      state.SkipWithError("setup");
      break;
    }
    // Reported through the time slot as "nanoseconds" = bytes, so the figure table can read it.
    double bytes = static_cast<double>((*domain)->table_bytes() + sizeof(Area) + sizeof(Pages)) / kPages;
    state.SetIterationTime(bytes * 1e-9);
    std::uint64_t unmapped;
    (void)iopt.unmap_range(Interval::full(), &unmapped);
    iopt.remove_domain(domain->get());
  }
}
void BM_EngineBytesPerPage4K(benchmark::State& state) { memory_per_page(state, false); }
BENCHMARK(BM_EngineBytesPerPage4K)->UseManualTime()->Iterations(1);
void BM_EngineBytesPerPage2M(benchmark::State& state) { memory_per_page(state, true); }
BENCHMARK(BM_EngineBytesPerPage2M)->UseManualTime()->Iterations(1);

const FigureTable kFigures{{
    {.name = "map_unmap_1g_4k",
     .numerator = "BM_IoptMapUnmap1G4K",
     .denominator = "BM_PopulateAndWrite1G4K",
     .target = 2.0},
    {.name = "map_unmap_1g_4k_vs_kernel", .numerator = "BM_IoasMapUnmap1G4KVsKernel", .target = 1.0},
    {.name = "map_unmap_1g_thp",
     .numerator = "BM_IoptMapUnmap1GThp",
     .denominator = "BM_PopulateAndWrite1GThp",
     .target = 2.0},
    {.name = "domain_fill_1g",
     .numerator = "BM_IoptDomainFill1G",
     .denominator = "BM_DenseWrite1G",
     .target = 3.0},
    {.name = "engine_bytes_per_page_4k",
     .numerator = "BM_EngineBytesPerPage4K",
     .direction = Direction::kInfo,
     .metric = "bytes",
     .note = "(target <= 16 per mapped 4 KiB page, one domain)"},
    {.name = "engine_bytes_per_page_2m",
     .numerator = "BM_EngineBytesPerPage2M",
     .direction = Direction::kInfo,
     .metric = "bytes",
     .note = "(target <= 1 per mapped 4 KiB page, 2 MiB aligned)"},
}};

}  // namespace
}  // namespace uiommufd::bench
