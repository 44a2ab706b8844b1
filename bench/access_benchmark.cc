// Accesses (emulated devices without an IOMMU) end to end through the objects layer:
//   access_pin_unpin_4k_vs_kernel  pin + unpin of one random 4 KiB page in an IOAS of 10^4 areas, against
//                           the kernel's long-term pin of the same page (an io_uring fixed-buffer register +
//                           unregister, kernel_pin.h), paired
//   access_pin_2m_vs_kernel pin_pages of a 2 MiB run (512 pages, resident, THP-backed) + unpin, against
//                           registering + unregistering the same 2 MiB as a fixed buffer, paired
//   access_pin_unpin_4k     (info) the same pin against std::map find + insert + erase on 10^4 entries
//                           (a naive pin tracker), paired
//   access_pin_2m           (info) the same 2 MiB pin against writing one 8-byte entry per page, paired
//   access_rw_64k / _1m     Access::rw read bandwidth (fast path) as a fraction of memcpy's, paired
//   unmap_with_16_accesses  unmap of one 64 KiB area with 16 accesses each holding a pin in it (info, µs)
//   pin_during_unmap_1g     latency of a pin + unpin of a page of area A while another thread unmaps a
//                           1 GiB area B of the same IOAS (a software domain attached), over the same pin
//                           with B idle, paired: median ratio (target), p99 ratio (info)
//
// Except in pin_during_unmap_1g, no domain is attached: these measure the access path alone, so a pin of a
// page nobody else pins pays the engine's pinning (making the page resident) itself. All memory is touched
// beforehand, so that is a walk of resident page tables, never a page fault.
//
// Every benchmark checks each operation's status (SkipWithError otherwise), drops every pin it took and
// checks that the process-wide pinned-page count is back where it started.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

#include "figures.h"
#include "kernel_pin.h"

#include "uiommufd/objects/access.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
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

// What a pin is measured against.
enum class Peer {
  kKernel,      // the kernel's long-term pin of the same memory (KernelPin)
  kMapTracker,  // 4 KiB: std::map find + insert + erase on 10^4 entries
  kDenseWrite,  // 2 MiB: one 8-byte entry written per page
};

void pin_unpin_4k(benchmark::State& state, Peer peer) {
  PinLeakCheck leak_check(state);
  static Memory mem(kAreas * kAreaBytes);  // 160 MiB: faulted in once per process, not per run
  std::optional<KernelPin> kernel;         // only for Peer::kKernel: the other peers' runs hold no ring
  if (peer == Peer::kKernel) {
    if (std::string why = kernel.emplace().probe(mem.ptr(), kPageSize); !why.empty()) return skip(state, why);
  }
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
  // The pages to pin, by IOVA and by host address (the same page at both indexes).
  std::vector<std::uint64_t> iovas(kRandomOps);
  std::vector<char*> hosts(kRandomOps);
  for (std::size_t i = 0; i < kRandomOps; ++i) {
    const std::uint64_t area = rng() % kAreas, page = rng() % kPagesPerArea;
    iovas[i] = kIovaBase + area * kAreaStride + page * kPageSize;
    hosts[i] = mem.ptr() + area * kAreaBytes + page * kPageSize;
  }
  // The naive tracker: a map keyed by area IOVA; a pin finds the area, inserts a record and erases it.
  std::map<std::uint64_t, std::uint64_t> tracker;
  for (std::uint64_t i = 0; i < kAreas; ++i) tracker.emplace(kIovaBase + i * kAreaStride, i);
  std::vector<std::uint64_t> keys(kRandomOps);
  for (auto& k : keys) k = kIovaBase + rng() % kAreas * kAreaStride;

  std::vector<AccessPage> pages;
  pages.reserve(1);
  std::size_t next_op = 0, next_key = 0, next_host = 0;
  bool failed = false;
  int kernel_err = 0;
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
  auto kernel_pin = [&] {
    if (int err = kernel->register_unregister(hosts[next_host++ & (kRandomOps - 1)], kPageSize))
      kernel_err = err;
  };
  if (peer == Peer::kKernel)
    run_paired(state, op, kernel_pin);
  else
    run_paired(state, op, baseline);
  if (failed) state.SkipWithError("pin_pages failed");
  else if (kernel_err != 0)
    state.SkipWithError(("kernel pin failed: " + std::string(std::strerror(kernel_err))).c_str());
  else if (driver.access().unpin_mismatches() != 0) state.SkipWithError("unpin_pages mismatched");
  else if (tracker.size() != kAreas) state.SkipWithError("tracker");
}
void BM_AccessPinUnpin4K(benchmark::State& state) { pin_unpin_4k(state, Peer::kMapTracker); }
BENCHMARK(BM_AccessPinUnpin4K)->UseManualTime();
void BM_AccessPinUnpin4KVsKernel(benchmark::State& state) { pin_unpin_4k(state, Peer::kKernel); }
BENCHMARK(BM_AccessPinUnpin4KVsKernel)->UseManualTime();

// ---- access_pin_2m ----
//
// The figure is about the engine's per-page bookkeeping, so the run is one transparent huge page: making
// it resident (MADV_POPULATE_WRITE) is then one PMD, not a walk of 512 PTEs. With 4 KiB backing that walk
// (the kernel's GUP, which the real kernel's pin_user_pages pays too) is ~90% of the time.
// Without THP (transparent_hugepage=never) the benchmark silently measures 4 KiB backing.

constexpr std::uint64_t kRunPages = kHugePageSize / kPageSize;  // 512

// Paired (run_paired): op = pin_pages of the run + unpin, baseline = the kernel's long-term pin of the
// same 2 MiB, or one 8-byte entry written per page of the run (the dense-write limit), so the ratio is per
// page as well as per run.
void pin_2m(benchmark::State& state, bool thp, Peer peer) {
  PinLeakCheck leak_check(state);
  Memory mem(kHugePageSize, thp);
  std::optional<KernelPin> kernel;  // only for Peer::kKernel: the other peers' runs hold no ring
  if (peer == Peer::kKernel) {
    if (std::string why = kernel.emplace().probe(mem.ptr(), kHugePageSize); !why.empty())
      return skip(state, why);
  }
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
  int kernel_err = 0;
  auto kernel_pin = [&] {
    if (int err = kernel->register_unregister(mem.ptr(), kHugePageSize)) kernel_err = err;
  };
  if (peer == Peer::kKernel)
    run_paired(state, op, kernel_pin);
  else
    run_paired(state, op, dense_write);
  if (failed) state.SkipWithError("pin_pages failed");
  else if (kernel_err != 0)
    state.SkipWithError(("kernel pin failed: " + std::string(std::strerror(kernel_err))).c_str());
  else if (driver.access().unpin_mismatches() != 0) state.SkipWithError("unpin_pages mismatched");
}
void BM_AccessPin2M(benchmark::State& state) { pin_2m(state, /*thp=*/true, Peer::kDenseWrite); }
BENCHMARK(BM_AccessPin2M)->UseManualTime();
void BM_AccessPin2MVsKernel(benchmark::State& state) { pin_2m(state, /*thp=*/true, Peer::kKernel); }
BENCHMARK(BM_AccessPin2MVsKernel)->UseManualTime();

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

// ---- pin_during_unmap_1g ----
//
// Thread 1 (the benchmark's) pins and unpins one page of a 64 KiB area A on a fixed schedule, one pin
// every kPinInterval, sleeping in between, as a driver serving steady I/O would. Thread 2 (an Unmapper)
// maps a 1 GiB area B of resident 4 KiB pages on the same IOAS and unmaps it again; the IOAS has a
// software-domain device attached and large pages off, so the unmap clears 262144 IOPTEs and unpins as
// many pages. Each benchmark iteration is a pair of phases, in alternating order:
//   - busy: thread 2 maps and unmaps B once while thread 1 keeps to its schedule; the pins measured are
//     those scheduled between the start and the end of the unmap (not the map before it);
//   - idle: thread 2 waits; thread 1 makes kIdlePins pins on the same schedule.
//
// A pin's latency runs to the end of its unpin from when it could start: from its wake-up when thread 1
// slept until it, from its scheduled time when thread 1 was behind schedule. Counting from the schedule
// is what makes a stall visible: a pin blocked for the whole unmap holds up every pin scheduled behind
// it, and each of those is charged its wait; timing only the pins that happen to get issued would record
// one slow pin per unmap among hundreds of fast ones. Counting from the wake-up otherwise leaves out the
// scheduler's wake-up delay, which on a shared machine is noise of the same order as a pin. Sleeping
// between pins (rather than spinning) keeps thread 1 from being preempted mid-pin by the machine's other
// tenants for using up its share. When it is preempted all the same, the pins scheduled meanwhile are
// charged the co-runner's time slice: on a busy host that shows in the 99th percentile of both phases
// (milliseconds), rarely in the medians.
//
// The pair's ratio is the median busy latency over the median idle latency. Counters: "ratio", the median
// of those over the pairs; "p99_ratio", the 99th percentile of every busy latency over that of every idle
// one; op_ns / baseline_ns, the median busy and idle latency.

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
constexpr std::uint64_t kPinArea = 64 * 1024;
constexpr std::uint64_t kBigIova = kIovaBase + kGiB;  // B, clear of A at kIovaBase
constexpr int kIdlePins = 400;
constexpr std::chrono::nanoseconds kPinInterval{50000};  // a few hundred pins per unmap of B

using Clock = std::chrono::steady_clock;

// Thread 2: maps and unmaps B once per request, and records when the unmap started and ended.
class Unmapper {
 public:
  Unmapper(Ioas& ioas, std::uint64_t uptr) : ioas_(ioas), uptr_(uptr), thread_([this] { run(); }) {}
  ~Unmapper() {
    requested_.store(kStop);
    requested_.notify_one();
    thread_.join();
  }
  Unmapper(const Unmapper&) = delete;
  Unmapper& operator=(const Unmapper&) = delete;

  // Asks for one more map + unmap of B. Only thread 1 calls it.
  void request() {
    requested_.store(++requested_seen_);
    requested_.notify_one();
  }
  // Whether every request so far has been carried out (thread 1).
  bool idle() const { return done_.load(std::memory_order_acquire) == requested_seen_; }
  // The last unmap's start and end; read once idle().
  Clock::time_point unmap_start() const { return unmap_start_; }
  Clock::time_point unmap_end() const { return unmap_end_; }
  bool failed() const { return failed_.load(); }

 private:
  static constexpr std::uint64_t kStop = UINT64_MAX;

  void run() {
    for (std::uint64_t done = 0;;) {
      const std::uint64_t requested = requested_.load();
      if (requested == kStop) return;
      if (requested == done) {
        requested_.wait(requested);
        continue;
      }
      std::uint64_t iova = kBigIova, unmapped = 0;
      if (!ioas_.map(uptr_, kGiB, &iova, kMapFlags).ok()) {
        failed_ = true;
      } else {
        unmap_start_ = Clock::now();
        if (!ioas_.unmap(kBigIova, kGiB, &unmapped).ok() || unmapped != kGiB) failed_ = true;
        unmap_end_ = Clock::now();
      }
      done_.store(++done, std::memory_order_release);  // publishes the two times
    }
  }

  Ioas& ioas_;
  const std::uint64_t uptr_;
  std::uint64_t requested_seen_ = 0;           // thread 1's own count of its requests
  std::atomic<std::uint64_t> requested_{0};    // that count as thread 2 sees it, or kStop
  Clock::time_point unmap_start_, unmap_end_;  // thread 2's until done_ moves
  std::atomic<std::uint64_t> done_{0};
  std::atomic<bool> failed_{false};
  std::thread thread_;  // last: starts once the fields above exist
};

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

void BM_PinDuringUnmap1G(benchmark::State& state) {
  PinLeakCheck leak_check(state);
  static Memory big(kGiB);  // resident once per process
  Memory small(kPinArea);
  Setup s;
  std::uint64_t iova = kIovaBase;
  if (!s.create() || !s.ioas->iopt().set_large_pages(false).ok() ||
      !s.ioas->map(small.addr(), kPinArea, &iova, kMapFlags).ok()) {
    state.SkipWithError("setup");
    return;
  }
  auto device_id = Device::create(*s.ctx, Device::Kind::kSoftware);
  if (!device_id.ok()) {
    state.SkipWithError("device");
    return;
  }
  {
    auto device = s.ctx->get<Device>(*device_id, ObjectType::kDevice);
    if (!device.ok() || !(*device)->attach(s.ioas_id).ok()) {
      state.SkipWithError("attach");
      return;
    }
  }
  Driver driver(*s.ctx);
  if (!driver.ok() || !driver.access().attach(s.ioas_id).ok()) {
    state.SkipWithError("access");
    return;
  }
  std::vector<AccessPage> pages;
  pages.reserve(1);
  bool failed = false;
  std::uint64_t next_page = 0;  // one page of A, a different one each time
  // Sleeps until `when` unless already past it, pins + unpins, and returns the latency (see above).
  auto scheduled_pin = [&](Clock::time_point when) {
    Clock::time_point start = when;
    if (Clock::now() < when) {
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
      const timespec until{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) == EINTR) {
      }
      start = Clock::now();
    }
    const std::uint64_t page_iova = kIovaBase + (next_page++ % (kPinArea / kPageSize)) * kPageSize;
    if (!driver.access().pin_pages(page_iova, kPageSize, &pages, 0).ok() || pages.size() != 1) failed = true;
    driver.access().unpin_pages(page_iova, kPageSize);
    return Clock::now() - start;
  };
  auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };

  std::vector<double> all_busy, all_idle, ratios, busy_medians, idle_medians;
  std::vector<double> busy, idle;
  std::vector<std::pair<Clock::time_point, Clock::duration>> busy_pins;  // (scheduled, latency)
  std::uint64_t pairs_without_busy_pin = 0;
  bool failed_b = false;
  {
    Unmapper unmapper(*s.ioas, big.addr());
    // Wake-ups on time: the default 50 µs slack is as long as the pin interval.
    const int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
    bool busy_first = true;
    for (auto _ : state) {
      busy.clear();
      idle.clear();
      busy_pins.clear();
      const Clock::time_point pair_start = Clock::now();
      for (int phase = 0; phase < 2; ++phase) {
        Clock::time_point when = Clock::now();
        if ((phase == 0) == busy_first) {
          unmapper.request();
          // Until the schedule is past the unmap's end, so that a pin held up behind it is not left out.
          while (!unmapper.idle() || when < unmapper.unmap_end()) {
            busy_pins.emplace_back(when, scheduled_pin(when));
            when += kPinInterval;
          }
          for (const auto& [scheduled, latency] : busy_pins) {
            if (scheduled >= unmapper.unmap_start() && scheduled < unmapper.unmap_end())
              busy.push_back(seconds(latency));
          }
        } else {
          for (int i = 0; i < kIdlePins; ++i, when += kPinInterval)
            idle.push_back(seconds(scheduled_pin(when)));
        }
      }
      busy_first = !busy_first;
      state.SetIterationTime(seconds(Clock::now() - pair_start));
      all_idle.insert(all_idle.end(), idle.begin(), idle.end());
      if (busy.empty()) {
        ++pairs_without_busy_pin;
        continue;
      }
      all_busy.insert(all_busy.end(), busy.begin(), busy.end());
      const double busy_median = median_in_place(busy), idle_median = median_in_place(idle);
      ratios.push_back(busy_median / idle_median);
      busy_medians.push_back(busy_median);
      idle_medians.push_back(idle_median);
    }
    failed_b = unmapper.failed();
    if (slack > 0) prctl(PR_SET_TIMERSLACK, slack, 0, 0, 0);
  }
  if (failed_b) return state.SkipWithError("map or unmap of B failed");
  if (failed) return state.SkipWithError("pin_pages failed");
  if (driver.access().unpin_mismatches() != 0) return state.SkipWithError("unpin_pages mismatched");
  if (ratios.empty()) return state.SkipWithError("no pin was scheduled during an unmap");
  state.counters[kRatioCounter] = median_in_place(ratios);
  state.counters[kOpCounter] = median_in_place(busy_medians) * 1e9;
  state.counters[kBaselineCounter] = median_in_place(idle_medians) * 1e9;
  const double busy_p99 = percentile(all_busy, 0.99), idle_p99 = percentile(all_idle, 0.99);
  state.counters["p99_ratio"] = busy_p99 / idle_p99;
  state.counters["busy_p99_ns"] = busy_p99 * 1e9;
  state.counters["idle_p99_ns"] = idle_p99 * 1e9;
  state.counters["busy_pins"] = static_cast<double>(all_busy.size());
  state.counters["pairs_without_busy_pin"] = static_cast<double>(pairs_without_busy_pin);
}
BENCHMARK(BM_PinDuringUnmap1G)->UseManualTime()->Iterations(10)->Repetitions(5);

const FigureTable kFigures{{
    {.name = "access_pin_unpin_4k_vs_kernel", .numerator = "BM_AccessPinUnpin4KVsKernel", .target = 0.5},
    {.name = "access_pin_2m_vs_kernel", .numerator = "BM_AccessPin2MVsKernel", .target = 1.0},
    {.name = "access_pin_unpin_4k",
     .numerator = "BM_AccessPinUnpin4K",
     .direction = Direction::kInfo,
     .metric = "ratio",
     .note = "(against std::map find + insert + erase on 10^4 entries)",
     .counter = kRatioCounter},
    {.name = "access_pin_2m",
     .numerator = "BM_AccessPin2M",
     .direction = Direction::kInfo,
     .metric = "ratio",
     .note = "(against one 8-byte write per page)",
     .counter = kRatioCounter},
    {.name = "access_rw_64k",
     .numerator = "BM_AccessRw64K",
     .target = 0.90,
     .direction = Direction::kHigherIsBetter},
    {.name = "access_rw_1m",
     .numerator = "BM_AccessRw1M",
     .target = 0.95,
     .direction = Direction::kHigherIsBetter},
    {.name = "unmap_with_16_accesses",
     .numerator = "BM_AccessUnmapWith16",
     .direction = Direction::kInfo,
     .metric = "us",
     .scale_from_ns = 1e-3,
     .note = "(one 64 KiB area, 16 accesses each holding a pin)"},
    {.name = "pin_during_unmap_1g", .numerator = "BM_PinDuringUnmap1G", .target = 3.0},
    {.name = "pin_during_unmap_1g_p99",
     .numerator = "BM_PinDuringUnmap1G",
     .direction = Direction::kInfo,
     .metric = "ratio",
     .note = "(99th percentile of the same latencies)",
     .counter = "p99_ratio"},
}};

}  // namespace
}  // namespace uiommufd::bench
