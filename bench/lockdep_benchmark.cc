// Lock validator costs, each against std::mutex in the same run (paired: see run_paired in figures.h):
//   lockdep_cached_lock_unlock_1  validation on, acquisition chain already cached, no other lock held
//   lockdep_cached_lock_unlock_4  the same with 3 instrumented locks of distinct classes already held
//   lockdep_disabled_runtime      the validator switched off at run time (Mode::kOff)
//   lockdep_compiled_out          the validator compiled out (the nolockdep preset only)
//   lockdep_new_edge              cost of one new dependency in a 1,000-class, 10,000-edge graph
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "figures.h"

#include "uiommufd/lockdep/config.h"
#include "uiommufd/lockdep/lock_class_key.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/lockdep/lockdep_map.h"
#include "uiommufd/lockdep/mutex.h"

namespace uiommufd::bench {
namespace {

namespace ld = uiommufd::lockdep;

// Keys have static storage duration, as the validator requires.
ld::LockClassKey g_inner_key{"bench.inner"};

// The baseline of every figure here: lock+unlock of a std::mutex, with three others held for the _4 shape.
struct StdMutexOp {
  std::mutex mu;
  void operator()() {
    benchmark::DoNotOptimize(&mu);
    mu.lock();
    benchmark::ClobberMemory();
    mu.unlock();
  }
};

// Lock+unlock of `mu` through its guard.
struct LockdepMutexOp {
  ld::Mutex& mu;
  void operator()() {
    benchmark::DoNotOptimize(&mu);
    ld::MutexGuard g(mu);
    benchmark::ClobberMemory();
  }
};

#if UIOMMUFD_LOCKDEP_ENABLED

ld::LockClassKey g_outer_keys[3] = {ld::LockClassKey{"bench.outer0"}, ld::LockClassKey{"bench.outer1"},
                                    ld::LockClassKey{"bench.outer2"}};

// Validation on, reports kept but not printed; an unexpected report fails the benchmark.
struct ValidatingScope {
  explicit ValidatingScope(benchmark::State& state) : state_(state), mode_(ld::Mode::kReport) {
    ld::set_print_reports(false);
    reports_before_ = ld::report_count();
    if (!ld::detail::validating()) state.SkipWithError("lockdep is not validating (a limit was hit?)");
  }
  ~ValidatingScope() {
    if (ld::report_count() != reports_before_ && !state_.error_occurred()) {
      state_.SkipWithError("lockdep reported during the benchmark");
    }
  }
  benchmark::State& state_;
  ld::ScopedMode mode_;
  std::size_t reports_before_ = 0;
};

// Takes `mu` once (so its chain is cached), checks the validator tracked it, and returns the stats to
// compare after the loop: a cached acquisition adds no chain and runs no graph search.
ld::Stats warm_up(benchmark::State& state, ld::Mutex& mu) {
  {
    ld::MutexGuard g(mu);
    if (!mu.dep_map().held()) state.SkipWithError("lockdep did not record the acquisition");
  }
  return ld::stats();
}

void check_cached(benchmark::State& state, const ld::Stats& before) {
  const ld::Stats after = ld::stats();
  if (state.error_occurred()) return;
  if (after.chains != before.chains || after.graph_searches != before.graph_searches ||
      after.dependencies != before.dependencies) {
    state.SkipWithError("the measured acquisition was not a chain-cache hit");
  }
}

void BM_LockdepCached1(benchmark::State& state) {
  ValidatingScope scope(state);
  ld::Mutex mu(g_inner_key);
  StdMutexOp baseline;
  const ld::Stats before = warm_up(state, mu);
  run_paired(state, LockdepMutexOp{mu}, baseline);
  check_cached(state, before);
}
BENCHMARK(BM_LockdepCached1)->UseManualTime();

void BM_LockdepCached4(benchmark::State& state) {
  ValidatingScope scope(state);
  ld::Mutex outer0(g_outer_keys[0]), outer1(g_outer_keys[1]), outer2(g_outer_keys[2]);
  ld::Mutex mu(g_inner_key);
  std::mutex std_outer[3];
  StdMutexOp baseline;
  {
    // Both shapes held at once: the std::mutexes are invisible to the validator, so the measured
    // lockdep::Mutex is the 4th instrumented lock held, and the baseline the 4th std::mutex.
    ld::MutexGuard g0(outer0);
    ld::MutexGuard g1(outer1);
    ld::MutexGuard g2(outer2);
    std::scoped_lock std_held(std_outer[0], std_outer[1], std_outer[2]);
    const ld::Stats before = warm_up(state, mu);
    run_paired(state, LockdepMutexOp{mu}, baseline);
    check_cached(state, before);
  }
}
BENCHMARK(BM_LockdepCached4)->UseManualTime();

void BM_LockdepModeOff(benchmark::State& state) {
  ld::ScopedMode off(ld::Mode::kOff);
  ld::Mutex mu(g_inner_key);
  StdMutexOp baseline;
  if (ld::detail::validating()) state.SkipWithError("Mode::kOff did not turn validation off");
  run_paired(state, LockdepMutexOp{mu}, baseline);
}
BENCHMARK(BM_LockdepModeOff)->UseManualTime();

// The new-edge graph: 1,000 classes, 10,000 edges of a random DAG (i < j), then one fresh pair per
// iteration. Everything here lives for the whole process: keys must outlive every use of their class.
constexpr int kGraphClasses = 1000;
constexpr int kGraphEdges = 10000;
constexpr int kNewEdgesPerRepetition = 500;

struct Graph {
  std::deque<std::string> names;
  std::deque<ld::LockClassKey> keys;
  std::deque<ld::LockdepMap> maps;
  std::vector<std::pair<int, int>> edges;
  std::vector<std::pair<int, int>> fresh;  // not in `edges`, distinct

  Graph() {
    for (int i = 0; i < kGraphClasses; ++i) {
      names.push_back("bench.graph" + std::to_string(i));
      keys.emplace_back(names.back().c_str());
      maps.emplace_back(keys.back());
    }
    std::mt19937_64 rng(20240601);
    std::uniform_int_distribution<int> pick(0, kGraphClasses - 1);
    std::unordered_set<std::int64_t> seen;
    auto next_pair = [&] {
      for (;;) {
        int a = pick(rng), b = pick(rng);
        if (a == b) continue;
        if (a > b) std::swap(a, b);
        if (seen.insert(std::int64_t{a} * kGraphClasses + b).second) return std::pair{a, b};
      }
    };
    while (edges.size() < kGraphEdges) edges.push_back(next_pair());
    while (fresh.size() < kNewEdgesPerRepetition) fresh.push_back(next_pair());
  }
};

Graph& graph() {
  static Graph* g = new Graph();  // never freed
  return *g;
}

void nest(Graph& g, std::pair<int, int> edge) {
  ld::MapGuard a(g.maps[edge.first]);
  ld::MapGuard b(g.maps[edge.second]);
  benchmark::ClobberMemory();
}

void BM_LockdepNewEdge(benchmark::State& state) {
  Graph& g = graph();
  ld::reset_for_testing();
  {
    ValidatingScope scope(state);
    // Every class is seen alone first, so an iteration's only miss is the new two-lock chain.
    for (ld::LockdepMap& m : g.maps) ld::MapGuard a(m);
    for (const auto& e : g.edges) nest(g, e);
    const std::size_t built = ld::stats().dependencies;
    if (built != kGraphEdges && !state.error_occurred()) {
      state.SkipWithError(
          ("graph has " + std::to_string(built) + " dependencies, expected " + std::to_string(kGraphEdges))
              .c_str());
    }
    std::size_t i = 0;
    for (auto _ : state) nest(g, g.fresh[i++]);
    const std::size_t added = ld::stats().dependencies - built;
    if (added != i && !state.error_occurred()) {
      state.SkipWithError(
          ("added " + std::to_string(added) + " dependencies in " + std::to_string(i) + " iterations")
              .c_str());
    }
    state.counters["classes"] = static_cast<double>(ld::stats().classes);
    state.counters["edges"] = static_cast<double>(ld::stats().dependencies);
  }
  // Leave a clean validator to whatever runs next.
  ld::reset_for_testing();
}
BENCHMARK(BM_LockdepNewEdge)->Iterations(kNewEdgesPerRepetition)->Repetitions(3);

const FigureTable kFigures{{
    {.name = "lockdep_cached_lock_unlock_1", .numerator = "BM_LockdepCached1", .target = 2.0},
    {.name = "lockdep_cached_lock_unlock_4", .numerator = "BM_LockdepCached4", .target = 2.0},
    {.name = "lockdep_disabled_runtime", .numerator = "BM_LockdepModeOff", .target = 1.2},
    {.name = "lockdep_new_edge",
     .numerator = "BM_LockdepNewEdge",
     .direction = Direction::kInfo,
     .metric = "us_per_edge",
     .scale_from_ns = 1e-3,
     .note = "(classes=1000 edges=10000)"},
}};

#else  // !UIOMMUFD_LOCKDEP_ENABLED

void BM_LockdepCompiledOut(benchmark::State& state) {
  static_assert(!ld::kCompiledIn);
  ld::Mutex mu(g_inner_key);
  StdMutexOp baseline;
  run_paired(state, LockdepMutexOp{mu}, baseline);
}
BENCHMARK(BM_LockdepCompiledOut)->UseManualTime();

const FigureTable kFigures{{
    {.name = "lockdep_compiled_out", .numerator = "BM_LockdepCompiledOut", .target = 1.05},
}};

#endif  // UIOMMUFD_LOCKDEP_ENABLED

}  // namespace
}  // namespace uiommufd::bench
