// IOVA allocation under area churn: the cost of one "unmap a random area, then map a new one at an
// automatically chosen IOVA" step (IntervalTree::remove + allocate_iova + IntervalTree::insert), with
// 10^4 and with 10^6 live areas of 4 KiB–64 KiB (random multiples of 4 KiB).
//
//   iova_area_churn       source address 0: alignment from the length alone (up to 64 KiB), the
//                         harder case for first fit, since a long-enough hole may still be misaligned
//   iova_area_churn_va    page-aligned source VAs: alignment min(length, lowest set bit of the VA)
//
// Each figure is the time per step at 10^6 live areas divided by the time at 10^4 in the same run
// (target <= 2.5: near-logarithmic; a scan of all holes from address 0 would be ~100x). The trees are
// built once per size and process and then churned for as many steps as the first-fit layout needs to
// reach its steady state, so every repetition measures the same workload.
//
//   iova_area_churn       (info: at 10^6 much of the growth is cache misses, which depend on the host)
//   iova_area_churn_vs_map  the churn step at 10^6 live areas against std::map erase + insert of the
//                         same keys on a map of the same 10^6 areas, paired (target <= 2.0): what the gap
//                         bookkeeping and the first-fit search cost over a plain balanced tree that is
//                         told the key
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include "figures.h"

#include "uiommufd/base/page.h"
#include "uiommufd/base/slab.h"
#include "uiommufd/iova/interval_tree.h"
#include "uiommufd/iova/iova_allocator.h"

namespace uiommufd::bench {
namespace {

// The nodes come from a slab, as iopt's areas do: where the engine's tree nodes live is part of what a walk
// of a large tree costs.
struct Node : IntervalTreeNode, SlabAllocated<Node> {};

// The harness's own list of the live areas, from which a step picks one at random. On huge pages itself,
// and its slot fetched a step ahead, so that the pick (not part of what is measured) adds no TLB or cache
// miss of its own at 10^6.
class NodeList {
 public:
  explicit NodeList(std::size_t n) : bytes_(std::max<std::size_t>(n * sizeof(Node*), 1)) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    madvise(p, bytes_, MADV_HUGEPAGE);
    nodes_ = static_cast<Node**>(p);
    for (std::size_t i = 0; i < n; ++i) nodes_[i] = new Node();
    size_ = n;
  }
  ~NodeList() {
    for (std::size_t i = 0; i < size_; ++i) delete nodes_[i];
    munmap(nodes_, bytes_);
  }
  NodeList(const NodeList&) = delete;
  NodeList& operator=(const NodeList&) = delete;
  std::size_t size() const { return size_; }
  Node& operator[](std::size_t i) const { return *nodes_[i]; }
  // Starts fetching slot i of the list (not the node it names: that one is the engine's to fetch).
  void prefetch_slot(std::size_t i) const { __builtin_prefetch(&nodes_[i]); }

 private:
  std::size_t bytes_;
  Node** nodes_ = nullptr;
  std::size_t size_ = 0;
};

struct Churn {
  NodeList areas;        // one per live area
  IntervalTreeNode msi;  // an x86 MSI window, as a device attach reserves it
  IntervalTree area_tree, reserved, allowed;
  std::mt19937_64 rng{0x10f0};
  bool with_va;

  Churn(std::size_t n, bool va) : areas(n), with_va(va) {
    // As iopt sets its trees up: the areas' gap figures leave the reserved ranges out.
    area_tree.set_gap_exclusions(&reserved);
    msi.range = {0xfee00000, 0xfeefffff};
    reserved.insert(&msi);
    area_tree.gap_exclusions_changed(msi.range);
    for (std::size_t i = 0; i < n; ++i) map(areas[i]);
    // Warm up to the steady state: every area replaced about once.
    for (std::size_t i = 0; i < n; ++i) step();
  }
  ~Churn() {
    area_tree.clear();
    reserved.clear();
  }

  void map(IntervalTreeNode& a) {
    const std::uint64_t length = (1 + rng() % 16) * kPageSize;
    const std::uint64_t addr = with_va ? 0x7f0000000000 + (rng() % (std::uint64_t{1} << 28)) * kPageSize : 0;
    const Result<std::uint64_t> iova = allocate_iova({area_tree, reserved, allowed}, addr, length, kPageSize);
    if (!iova.ok()) std::abort();
    a.range = Interval{*iova, *iova + length - 1};
    area_tree.insert(&a);
  }

  // Drawn a step ahead, so that reading the victim's slot of the list is no cache miss either.
  std::size_t next_victim = 0;

  void step() {
    IntervalTreeNode& a = areas[next_victim];
    next_victim = rng() % areas.size();
    areas.prefetch_slot(next_victim);
    area_tree.remove(&a);
    map(a);
  }
};

Churn& churn(std::size_t n, bool va) {
  static std::unique_ptr<Churn> cache[2][2];
  std::unique_ptr<Churn>& c = cache[n > 100000][va];
  if (!c) c = std::make_unique<Churn>(n, va);
  return *c;
}

void run(benchmark::State& state, std::size_t n, bool va) {
  Churn& c = churn(n, va);
  for (auto _ : state) c.step();
  state.counters["live"] = static_cast<double>(c.area_tree.size());
}

// What the churn figure's growth is made of: one lookup of the area at or after a random IOVA (as unmap and
// access pins do), on the same trees. Its nodes at 10^4 stay in cache; at 10^6 the lower half of the path
// does not, and a churn step has two such random paths (the removed area's, the allocation's).
void lookup(benchmark::State& state, std::size_t n) {
  Churn& c = churn(n, false);
  const std::uint64_t top = c.area_tree.hull().last;
  std::mt19937_64 rng(7);
  for (auto _ : state) {
    const std::uint64_t iova = rng() % top;
    benchmark::DoNotOptimize(c.area_tree.first_overlap_disjoint({iova, UINT64_MAX}));
  }
}
void BM_IovaAreaLookup10k(benchmark::State& state) { lookup(state, 10000); }
void BM_IovaAreaLookup1M(benchmark::State& state) { lookup(state, 1000000); }
BENCHMARK(BM_IovaAreaLookup10k);
BENCHMARK(BM_IovaAreaLookup1M);

void BM_IovaAreaChurn10k(benchmark::State& state) { run(state, 10000, false); }
void BM_IovaAreaChurn1M(benchmark::State& state) { run(state, 1000000, false); }
void BM_IovaAreaChurnVa10k(benchmark::State& state) { run(state, 10000, true); }
void BM_IovaAreaChurnVa1M(benchmark::State& state) { run(state, 1000000, true); }
BENCHMARK(BM_IovaAreaChurn10k);
BENCHMARK(BM_IovaAreaChurn1M);
BENCHMARK(BM_IovaAreaChurnVa10k);
BENCHMARK(BM_IovaAreaChurnVa1M);

// Paired (run_paired): op = a churn step at 10^6, which logs the start it removed and the range it
// inserted; baseline = the same erase + insert on a std::map (a red-black tree too) that mirrors the area
// tree, replaying the log. The log is primed with one untimed block, so that with the pairs' alternating
// order (AB BA AB ...) the replay never runs ahead of the steps; the map then always holds exactly the
// tree's keys as they were when the replayed step ran.
void BM_IovaAreaChurnVsMap(benchmark::State& state) {
  constexpr std::size_t kLive = 1000000;
  // Blocks of 100 steps (~0.5 ms at 10^6): a step costs microseconds, so the default block would be long
  // enough for a co-runner's time slice to land in one side of a pair only.
  constexpr int kStepsPerBlock = 100;
  constexpr std::size_t kLogSize = 4 * kStepsPerBlock;
  Churn& c = churn(kLive, false);
  std::map<std::uint64_t, std::uint64_t> mirror;  // area start -> last
  for (std::size_t i = 0; i < c.areas.size(); ++i)
    mirror.emplace(c.areas[i].range.start, c.areas[i].range.last);
  if (mirror.size() != kLive) {
    state.SkipWithError("areas overlap");
    return;
  }
  struct Change {
    std::uint64_t removed_start;
    Interval inserted;
  };
  std::vector<Change> log(kLogSize);
  std::size_t logged = 0, replayed = 0;
  auto step = [&] {
    const IntervalTreeNode& a = c.areas[c.next_victim];
    const std::uint64_t removed = a.range.start;
    c.step();
    log[logged++ % kLogSize] = {removed, a.range};
  };
  bool overrun = false;
  auto replay = [&] {
    if (replayed == logged) {
      overrun = true;
      return;
    }
    const Change& ch = log[replayed++ % kLogSize];
    mirror.erase(ch.removed_start);
    mirror.emplace(ch.inserted.start, ch.inserted.last);
  };
  for (int i = 0; i < kStepsPerBlock; ++i) step();
  run_paired(state, step, replay, kStepsPerBlock);
  while (replayed < logged) replay();
  if (overrun)
    state.SkipWithError("the replay ran ahead of the churn");
  else if (mirror.size() != kLive || mirror.begin()->first != c.area_tree.hull().start)
    state.SkipWithError("the map does not mirror the area tree");
}
BENCHMARK(BM_IovaAreaChurnVsMap)->UseManualTime();

const FigureTable kFigures{{
    {.name = "iova_area_churn_vs_map", .numerator = "BM_IovaAreaChurnVsMap", .target = 2.0},
    {.name = "iova_area_churn",
     .numerator = "BM_IovaAreaChurn1M",
     .denominator = "BM_IovaAreaChurn10k",
     .direction = Direction::kInfo,
     .metric = "ratio",
     .note = "(a churn step at 10^6 live areas over one at 10^4)"},
    {.name = "iova_area_churn_va",
     .numerator = "BM_IovaAreaChurnVa1M",
     .denominator = "BM_IovaAreaChurnVa10k",
     .direction = Direction::kInfo,
     .metric = "ratio",
     .note = "(the same with page-aligned source addresses)"},
    {.name = "iova_area_lookup_10k",
     .numerator = "BM_IovaAreaLookup10k",
     .direction = Direction::kInfo,
     .metric = "ns",
     .note = "(the area at or after a random IOVA, 10^4 live areas)"},
    {.name = "iova_area_lookup_1m",
     .numerator = "BM_IovaAreaLookup1M",
     .direction = Direction::kInfo,
     .metric = "ns",
     .note = "(the same with 10^6: the lower half of the path misses the cache)"},
}};

}  // namespace
}  // namespace uiommufd::bench
