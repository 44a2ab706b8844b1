// The figures `make bench` reports: each one a declarative row naming what is measured, the baseline it
// is divided by (measured in the same run, same process) and the target the ratio is held against.
//
// Two kinds of ratio:
//   - paired (for costs of a few nanoseconds): `numerator` names a benchmark written with run_paired(),
//     which alternates short blocks of the operation and of its baseline so both see the same machine,
//     and reports the median of the per-block ratios in its "ratio" counter; `denominator` is null.
//   - unpaired: `numerator` and `denominator` name two ordinary benchmarks; the ratio is of their times.
// And one informational kind (Direction::kInfo): the numerator's time per iteration, scaled, no target;
// or, when `counter` is set, the median over the repetitions of that counter of the numerator; either
// divided by the denominator's time when one is named (an unpaired ratio kept as information).
//
// A figure whose baseline cannot run on this machine (say, a kernel facility that is switched off) has its
// benchmark call skip(), and prints as skipped with the reason, never as a number.
//
// bench_main.cc prints one line per figure:
//   BENCH <name> ratio=<r> target<=<t> PASS|MISS     (target>= when higher is better)
//   BENCH <name> <metric>=<x> <note>                  (informational)
//   BENCH <name> skipped: <reason>                     (the benchmark called skip())
// Figures are reported, not asserted: a MISS does not change the exit status.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

namespace uiommufd::bench {

enum class Direction {
  kLowerIsBetter,   // PASS when ratio <= target
  kHigherIsBetter,  // PASS when ratio >= target
  kInfo,            // no baseline, no target
};

struct Figure {
  const char* name;
  const char* numerator;              // benchmark function name, as registered
  const char* denominator = nullptr;  // unpaired baseline benchmark; null for paired
  double target = 0;
  Direction direction = Direction::kLowerIsBetter;
  // kInfo only: the printed metric name, the factor from nanoseconds per iteration to it, and a note.
  const char* metric = nullptr;
  double scale_from_ns = 1.0;
  const char* note = nullptr;
  // A counter of the numerator to use instead of its time: for kInfo, the value printed (scaled); for a
  // paired figure, the ratio (default kRatioCounter).
  const char* counter = nullptr;
};

// Declares figures at namespace scope, beside the benchmarks they use.
class FigureTable {
 public:
  FigureTable(std::initializer_list<Figure> figures);
};

const std::vector<Figure>& figures();

// Counter names a paired benchmark reports (bench_main.cc reads them).
inline constexpr char kRatioCounter[] = "ratio";           // median of the per-block ratios
inline constexpr char kOpCounter[] = "op_ns";              // op time per call (median block)
inline constexpr char kBaselineCounter[] = "baseline_ns";  // baseline time per call (median block)

// How a skipped benchmark's error message starts; bench_main.cc prints its figures as skipped, not failed.
inline constexpr char kSkippedPrefix[] = "skipped: ";

// Ends the benchmark as skipped for `reason` (its figures print "skipped: <reason>"). Call before the loop
// or instead of entering it.
inline void skip(benchmark::State& state, const std::string& reason) {
  state.SkipWithError((kSkippedPrefix + reason).c_str());
}

// Measures `op` against `baseline` in alternating blocks of kOpsPerBlock calls each (tens of
// microseconds, far shorter than the preemptions, frequency changes and co-runner bursts of a shared
// machine, which therefore hit both sides of a pair alike). Each benchmark iteration is one pair, the
// order alternating (AB, BA, ...); its manual time is the pair's. Counters carry the median ratio and the
// per-call time of each side's median block. Register with ->UseManualTime(). Operations of a millisecond
// or more pass a smaller `ops_per_block` (down to 1: each pair is then one call of each).
inline constexpr int kOpsPerBlock = 1000;

template <class F>
inline double time_block(F& f, int ops) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < ops; ++i) f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline double median_in_place(std::vector<double>& v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// The pairing loop of run_paired(): time_op() and time_baseline() each run and time one block of
// ops_per_block calls, returning seconds.
template <class TimeOp, class TimeBaseline>
void run_paired_blocks(benchmark::State& state, TimeOp&& time_op, TimeBaseline&& time_baseline,
                       int ops_per_block) {
  std::vector<double> ratios, op_times, baseline_times;
  const auto expected = static_cast<std::size_t>(
      std::min<benchmark::IterationCount>(state.max_iterations, benchmark::IterationCount{1} << 20));
  ratios.reserve(expected);
  op_times.reserve(expected);
  baseline_times.reserve(expected);
  bool op_first = true;
  for (auto _ : state) {
    double t_op, t_base;
    if (op_first) {
      t_op = time_op();
      t_base = time_baseline();
    } else {
      t_base = time_baseline();
      t_op = time_op();
    }
    op_first = !op_first;
    ratios.push_back(t_op / t_base);
    op_times.push_back(t_op);
    baseline_times.push_back(t_base);
    state.SetIterationTime(t_op + t_base);  // what --benchmark_min_time counts
  }
  if (ratios.empty()) return;
  state.counters[kRatioCounter] = median_in_place(ratios);
  state.counters[kOpCounter] = median_in_place(op_times) / ops_per_block * 1e9;
  state.counters[kBaselineCounter] = median_in_place(baseline_times) / ops_per_block * 1e9;
}

template <class Op, class Baseline>
void run_paired(benchmark::State& state, Op&& op, Baseline&& baseline, int ops_per_block = kOpsPerBlock) {
  run_paired_blocks(
      state, [&] { return time_block(op, ops_per_block); },
      [&] { return time_block(baseline, ops_per_block); }, ops_per_block);
}

// run_paired() for operations that consume their input (a collection clears the bits it reads): before
// each timed call of a side, that side's `prepare` restores the input, untimed. One call per block.
template <class PrepareOp, class Op, class PrepareBaseline, class Baseline>
void run_paired_prepared(benchmark::State& state, PrepareOp&& prepare_op, Op&& op,
                         PrepareBaseline&& prepare_baseline, Baseline&& baseline) {
  auto timed = [](auto& prepare, auto& f) {
    prepare();
    return time_block(f, 1);
  };
  run_paired_blocks(
      state, [&] { return timed(prepare_op, op); }, [&] { return timed(prepare_baseline, baseline); }, 1);
}

}  // namespace uiommufd::bench
