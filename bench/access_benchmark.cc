// Accesses (emulated devices without an IOMMU) end to end through the objects layer:
//   access_pin_unpin_4k     pin + unpin of one random 4 KiB page in an IOAS of 10^4 areas, against
//                           std::map find + insert + erase on 10^4 entries (a naive pin tracker), paired
//   access_pin_2m           pin_pages of a 2 MiB run (512 pages, resident, THP-backed) + unpin, against
//                           writing one 8-byte entry per page for the same 512 pages, paired
//   access_rw_64k / _1m     Access::rw read bandwidth (fast path) as a fraction of memcpy's, paired
//   unmap_with_16_accesses  unmap of one 64 KiB area with 16 accesses each holding a pin in it (info, µs)
//
// No domain is attached anywhere: these measure the access path alone, so a pin of a page nobody else pins
// pays the engine's pinning (making the page resident) itself. All memory is touched beforehand, so that
// is a walk of resident page tables, never a page fault.
//
// Every benchmark checks each operation's status (SkipWithError otherwise), drops every pin it took and
// checks that the process-wide pinned-page count is back where it started.
#include <sys/mman.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "figures.h"
#include "uiommufd/objects/access.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/pinned_ranges.h"

namespace uiommufd::bench {
namespace {

constexpr std::uint32_t kMapFlags = Ioas::kReadable | Ioas::kWriteable | Ioas::kFixedIova;
constexpr std::uint64_t kIovaBase = std::uint64_t{1} << 32;

// Anonymous memory, touched (resident) before use; 4 KiB pages unless `thp`.
class Memory {
 public:
  explicit Memory(std::uint64_t size, bool thp = false) : size_(size + kHugePageSize) {
    base_ = static_cast<char*>(mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (base_ == MAP_FAILED) std::abort();
    aligned_ = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(base_) + kHugePageSize - 1) &
                                       ~(kHugePageSize - 1));
    madvise(aligned_, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    std::memset(aligned_, 0x5a, size);
  }
  ~Memory() { munmap(base_, size_); }
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;
  char* ptr() const { return aligned_; }
  std::uint64_t addr(std::uint64_t off = 0) const { return reinterpret_cast<std::uint64_t>(aligned_) + off; }

 private:
  std::uint64_t size_;
  char* base_;
  char* aligned_;
};

// A driver in the manner of the kernel's test access: its pins in a PinnedRanges, which its unmap callback
// drops.
class Driver {
 public:
  explicit Driver(Context& ctx, bool needs_pin_pages = true) {
    Access::Ops ops;
    ops.needs_pin_pages = needs_pin_pages;
    ops.unmap = [this](std::uint64_t iova, std::uint64_t length) { ranges_.unmap(*raw_, iova, length); };
    auto access = Access::create(ctx, std::move(ops));
    if (access.ok()) {
      access_ = std::move(*access);
      raw_ = access_.get();
    }
  }
  ~Driver() {
    if (access_) Access::destroy(std::move(access_));
  }
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  bool ok() const { return raw_ != nullptr; }
  Access& access() { return *raw_; }
  // A pin the driver remembers, so that its unmap callback can drop it.
  bool pin(std::uint64_t iova, std::uint64_t length, std::vector<AccessPage>* pages) {
    return ranges_.pin(*raw_, iova, length, pages, 0).ok();
  }
  std::size_t pins() { return ranges_.size(); }

 private:
  ObjectRef<Access> access_;
  Access* raw_ = nullptr;
  PinnedRanges ranges_;
};

// A Context with one IOAS; torn down in the right order (the IOAS reference before the context).
struct Setup {
  std::unique_ptr<Context> ctx;
  std::uint32_t ioas_id = 0;
  ObjectRef<Ioas> ioas;

  bool create() {
    auto c = Context::create();
    if (!c.ok()) return false;
    ctx = std::move(*c);
    auto id = Ioas::create(*ctx);
    if (!id.ok()) return false;
    ioas_id = *id;
    auto ref = ctx->get<Ioas>(ioas_id, ObjectType::kIoas);
    if (!ref.ok()) return false;
    ioas = std::move(*ref);
    return true;
  }
  ~Setup() {
    ioas.reset();
    ctx.reset();
  }
};

// Checks, at the end of a benchmark (after its objects are gone), that no pin survived it.
class PinLeakCheck {
 public:
  explicit PinLeakCheck(benchmark::State& state) : state_(state), before_(Pages::total_pinned_pages()) {}
  ~PinLeakCheck() {
    if (Pages::total_pinned_pages() != before_ && !state_.error_occurred()) state_.SkipWithError("pins leaked");
  }

 private:
  benchmark::State& state_;
  std::uint64_t before_;
};

// ---- access_pin_unpin_4k ----

constexpr std::uint64_t kAreas = 10000;
constexpr std::uint64_t kPagesPerArea = 4;
constexpr std::uint64_t kAreaBytes = kPagesPerArea * kPageSize;
constexpr std::uint64_t kAreaStride = 2 * kAreaBytes;  // a hole between areas: no run of contiguous areas
constexpr std::size_t kRandomOps = std::size_t{1} << 16;  // pre-generated, used cyclically

void BM_AccessPinUnpin4K(benchmark::State& state) {
  PinLeakCheck leak_check(state);
  static Memory mem(kAreas * kAreaBytes);  // 160 MiB: faulted in once per process, not per run
  Setup s;
  if (!s.create()) {
    state.SkipWithError("setup");
    return;
  }
  for (std::uint64_t i = 0; i < kAreas; ++i) {
    std::uint64_t iova = kIovaBase + i * kAreaStride;
    if (!s.ioas->map(mem.addr(i * kAreaBytes), kAreaBytes, &iova, kMapFlags).ok()) {
      state.SkipWithError("map");
      return;
    }
  }
  Driver driver(*s.ctx);
  if (!driver.ok() || !driver.access().attach(s.ioas_id).ok() || s.ioas->iopt().area_count() != kAreas) {
    state.SkipWithError("attach");
    return;
  }

  std::mt19937_64 rng(42);
  std::vector<std::uint64_t> iovas(kRandomOps);
  for (auto& iova : iovas)
    iova = kIovaBase + rng() % kAreas * kAreaStride + rng() % kPagesPerArea * kPageSize;
  // The naive tracker: a map keyed by area IOVA; a pin finds the area, inserts a record and erases it.
  std::map<std::uint64_t, std::uint64_t> tracker;
  for (std::uint64_t i = 0; i < kAreas; ++i) tracker.emplace(kIovaBase + i * kAreaStride, i);
  std::vector<std::uint64_t> keys(kRandomOps);
  for (auto& k : keys) k = kIovaBase + rng() % kAreas * kAreaStride;

  std::vector<AccessPage> pages;
  pages.reserve(1);
  std::size_t next_op = 0, next_key = 0;
  bool failed = false;
  auto op = [&] {
    const std::uint64_t iova = iovas[next_op++ & (kRandomOps - 1)];
    if (!driver.access().pin_pages(iova, kPageSize, &pages, 0).ok() || pages.size() != 1) failed = true;
    benchmark::DoNotOptimize(pages.data());
    driver.access().unpin_pages(iova, kPageSize);
  };
  auto baseline = [&] {
    const std::uint64_t key = keys[next_key++ & (kRandomOps - 1)];
    auto it = tracker.find(key);
    benchmark::DoNotOptimize(it);
    auto [ins, inserted] = tracker.emplace(key + kPageSize, it->second);
    benchmark::DoNotOptimize(inserted);
    tracker.erase(ins);
  };
  run_paired(state, op, baseline);
  if (failed) state.SkipWithError("pin_pages failed");
  else if (driver.access().unpin_mismatches() != 0) state.SkipWithError("unpin_pages mismatched");
  else if (tracker.size() != kAreas) state.SkipWithError("tracker");
}
BENCHMARK(BM_AccessPinUnpin4K)->UseManualTime();

// ---- access_pin_2m ----
//
// The figure is about the engine's per-page bookkeeping, so the run is one transparent huge page: making
// it resident (MADV_POPULATE_WRITE) is then one PMD, not a walk of 512 PTEs. With 4 KiB backing that walk
// (the kernel's GUP, which the real kernel's pin_user_pages pays too) is ~90% of the time.
// Without THP (transparent_hugepage=never) the benchmark silently measures 4 KiB backing.

constexpr std::uint64_t kRunPages = kHugePageSize / kPageSize;  // 512

// Paired (run_paired): op = pin_pages of the run + unpin, baseline = one 8-byte entry written per page of
// the run (the dense-write limit), so the ratio is per page as well as per run.
void pin_2m(benchmark::State& state, bool thp) {
  PinLeakCheck leak_check(state);
  Memory mem(kHugePageSize, thp);
  Setup s;
  std::uint64_t iova = kIovaBase;
  if (!s.create() || !s.ioas->map(mem.addr(), kHugePageSize, &iova, kMapFlags).ok()) {
    state.SkipWithError("setup");
    return;
  }
  Driver driver(*s.ctx);
  if (!driver.ok() || !driver.access().attach(s.ioas_id).ok()) {
    state.SkipWithError("attach");
    return;
  }
  std::vector<AccessPage> pages;
  pages.reserve(kRunPages);
  bool failed = false;
  auto op = [&] {
    if (!driver.access().pin_pages(kIovaBase, kHugePageSize, &pages, Access::kPinWrite).ok() ||
        pages.size() != kRunPages)
      failed = true;
    benchmark::DoNotOptimize(pages.data());
    driver.access().unpin_pages(kIovaBase, kHugePageSize);
  };
  std::vector<std::uint64_t> entries(kRunPages);
  const std::uint64_t base = mem.addr();
  auto dense_write = [&] {
    for (std::uint64_t i = 0; i < kRunPages; ++i) entries[i] = base + i * kPageSize;
    benchmark::DoNotOptimize(entries.data());
    benchmark::ClobberMemory();
  };
  run_paired(state, op, dense_write);
  if (failed) state.SkipWithError("pin_pages failed");
  else if (driver.access().unpin_mismatches() != 0) state.SkipWithError("unpin_pages mismatched");
}
void BM_AccessPin2M(benchmark::State& state) { pin_2m(state, /*thp=*/true); }
BENCHMARK(BM_AccessPin2M)->UseManualTime();

// ---- access_rw_64k / access_rw_1m ----

// Paired: op = memcpy, baseline = Access::rw read of the same bytes into the same buffer, so the ratio
// (op time / baseline time) is rw's bandwidth as a fraction of memcpy's.
void rw_read(benchmark::State& state, std::uint64_t size) {
  PinLeakCheck leak_check(state);
  Memory mem(size);
  Setup s;
  std::uint64_t iova = kIovaBase;
  if (!s.create() || !s.ioas->map(mem.addr(), size, &iova, kMapFlags).ok()) {
    state.SkipWithError("setup");
    return;
  }
  Driver driver(*s.ctx, /*needs_pin_pages=*/false);
  if (!driver.ok() || !driver.access().attach(s.ioas_id).ok()) {
    state.SkipWithError("attach");
    return;
  }
  std::vector<char> buf(size);
  if (!driver.access().rw(kIovaBase, buf.data(), size, 0).ok() || std::memcmp(buf.data(), mem.ptr(), size) != 0) {
    state.SkipWithError("rw read returned wrong bytes");
    return;
  }
  bool failed = false;
  auto copy = [&] {
    std::memcpy(buf.data(), mem.ptr(), size);
    benchmark::ClobberMemory();
  };
  auto rw = [&] {
    if (!driver.access().rw(kIovaBase, buf.data(), size, 0).ok()) failed = true;
    benchmark::ClobberMemory();
  };
  run_paired(state, copy, rw);
  if (failed) state.SkipWithError("rw failed");
}
void BM_AccessRw64K(benchmark::State& state) { rw_read(state, 64 * 1024); }
BENCHMARK(BM_AccessRw64K)->UseManualTime();
void BM_AccessRw1M(benchmark::State& state) { rw_read(state, 1024 * 1024); }
BENCHMARK(BM_AccessRw1M)->UseManualTime();

// ---- unmap_with_16_accesses ----

constexpr int kAccesses = 16;
constexpr std::uint64_t kUnmapArea = 64 * 1024;  // 16 pages: access i pins page i

void BM_AccessUnmapWith16(benchmark::State& state) {
  PinLeakCheck leak_check(state);
  Memory mem(kUnmapArea);
  Setup s;
  if (!s.create()) {
    state.SkipWithError("setup");
    return;
  }
  std::vector<std::unique_ptr<Driver>> drivers;
  for (int i = 0; i < kAccesses; ++i) {
    drivers.push_back(std::make_unique<Driver>(*s.ctx));
    if (!drivers.back()->ok() || !drivers.back()->access().attach(s.ioas_id).ok()) {
      state.SkipWithError("attach");
      return;
    }
  }
  std::vector<AccessPage> pages;
  for (auto _ : state) {
    std::uint64_t iova = kIovaBase;
    if (!s.ioas->map(mem.addr(), kUnmapArea, &iova, kMapFlags).ok()) {
      state.SkipWithError("map");
      break;
    }
    bool pinned = true;
    for (int i = 0; i < kAccesses; ++i) pinned &= drivers[i]->pin(kIovaBase + i * kPageSize, kPageSize, &pages);
    if (!pinned) {
      state.SkipWithError("pin");
      break;
    }
    std::uint64_t unmapped = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const Status st = s.ioas->unmap(kIovaBase, kUnmapArea, &unmapped);
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (!st.ok() || unmapped != kUnmapArea) {
      state.SkipWithError("unmap");
      break;
    }
  }
  for (auto& d : drivers) {
    if (!state.error_occurred() && (d->pins() != 0 || d->access().unpin_mismatches() != 0))
      state.SkipWithError("a pin survived the unmap");
  }
  std::uint64_t unmapped;
  (void)s.ioas->unmap(0, kUlongMax, &unmapped);  // after a failure above
  drivers.clear();
}
BENCHMARK(BM_AccessUnmapWith16)->UseManualTime()->Unit(benchmark::kMicrosecond);

const FigureTable kFigures{{
    {.name = "access_pin_unpin_4k", .numerator = "BM_AccessPinUnpin4K", .target = 1.0},
    {.name = "access_pin_2m", .numerator = "BM_AccessPin2M", .target = 4.0},
    {.name = "access_rw_64k", .numerator = "BM_AccessRw64K", .target = 0.90,
     .direction = Direction::kHigherIsBetter},
    {.name = "access_rw_1m", .numerator = "BM_AccessRw1M", .target = 0.95,
     .direction = Direction::kHigherIsBetter},
    {.name = "unmap_with_16_accesses", .numerator = "BM_AccessUnmapWith16", .direction = Direction::kInfo,
     .metric = "us", .scale_from_ns = 1e-3, .note = "(one 64 KiB area, 16 accesses each holding a pin)"},
}};

}  // namespace
}  // namespace uiommufd::bench
