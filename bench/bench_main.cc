// The benchmark driver: runs every registered Google Benchmark, keeps the real time per iteration of each
// repetition, prints a compact table and then one `BENCH` line per figure (figures.h).
//
// Noise on a small shared machine: a paired benchmark (run_paired, figures.h) alternates its operation
// and its baseline in blocks of tens of microseconds and reports the median block ratio; its figure is
// the median of that over the repetitions. An unpaired figure compares one statistic of the repetitions
// of two benchmarks, by default the minimum (preemption and co-runners only ever add time, so the
// fastest repetition is the most repeatable estimate), with the repetitions of all benchmarks randomly
// interleaved so a slow patch of time hits numerator and baseline alike.
//
// Every default below can be overridden on the command line, e.g.
//   uiommufd_bench --estimator=median --benchmark_repetitions=25 --benchmark_filter='Cached1|ModeOff'
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <unistd.h>

#include "figures.h"

#include "uiommufd/lockdep/config.h"

namespace uiommufd::bench {
namespace {

struct Result {
  std::vector<double> ns_per_iter;  // one per successful repetition, real (or manual) time
  std::map<std::string, std::vector<double>> counters;  // likewise, by counter name
  std::int64_t iterations = 0;                          // of the last repetition
  std::string error;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double minimum(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

// Collects the per-repetition runs. Prints nothing while benchmarks run but a dot per run to a terminal.
class CollectingReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context& context) override {
    cpus_ = context.cpu_info.num_cpus;
    return true;
  }

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration) continue;  // aggregates are recomputed from the runs
      Result& r = results_[run.run_name.function_name];
      if (run.error_occurred) {
        r.error = run.error_message;
        continue;
      }
      r.ns_per_iter.push_back(run.GetAdjustedRealTime() * 1e9 /
                              benchmark::GetTimeUnitMultiplier(run.time_unit));
      r.iterations = run.iterations;
      for (const auto& [name, counter] : run.counters) r.counters[name].push_back(counter.value);
    }
    if (progress_) {
      std::fputc('.', stderr);
      std::fflush(stderr);
    }
  }

  void Finalize() override {
    if (progress_) std::fputc('\n', stderr);
  }

  int cpus() const { return cpus_; }
  const std::map<std::string, Result>& results() const { return results_; }

 private:
  const bool progress_ = isatty(STDERR_FILENO);
  int cpus_ = 0;
  std::map<std::string, Result> results_;
};

std::string format_time(double ns) {
  char buf[32];
  if (ns < 1e4) {
    std::snprintf(buf, sizeof buf, "%.2f ns", ns);
  } else if (ns < 1e7) {
    std::snprintf(buf, sizeof buf, "%.2f us", ns / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f ms", ns / 1e6);
  }
  return buf;
}

// The shortest of %.1f / %.2f / %.3f that reads back as the same value: 2.0, 1.2, 1.05.
std::string format_target(double t) {
  char buf[32];
  for (int prec = 1; prec <= 3; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*f", prec, t);
    if (std::strtod(buf, nullptr) == t) break;
  }
  return buf;
}

bool paired(const Result& r) { return r.counters.count(kRatioCounter) != 0; }

bool skipped(const Result& r) { return r.error.rfind(kSkippedPrefix, 0) == 0; }

void print_table(const CollectingReporter& reporter, bool use_median) {
  std::printf("# uiommufd_bench: lockdep compiled %s, %d CPUs\n", lockdep::kCompiledIn ? "in" : "out",
              reporter.cpus());
  std::printf("# paired: op | baseline (per call) | ratio [min-max], medians over repetitions\n");
  std::printf("# other:  real time per iteration, min | median | max (figures use the %s)\n",
              use_median ? "median" : "minimum");
  std::printf("%-22s %4s  %s\n", "benchmark", "reps", "results");
  for (const auto& [name, r] : reporter.results()) {
    std::printf("%-22s %4zu  ", name.c_str(), r.ns_per_iter.size());
    if (skipped(r)) {
      std::printf("%s\n", r.error.c_str());
      continue;
    }
    if (r.ns_per_iter.empty()) {
      std::printf("ERROR: %s\n", r.error.c_str());
      continue;
    }
    if (paired(r)) {
      const std::vector<double>& ratios = r.counters.at(kRatioCounter);
      const auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
      std::printf("%10s | %10s | %.3f [%.3f-%.3f]", format_time(median(r.counters.at(kOpCounter))).c_str(),
                  format_time(median(r.counters.at(kBaselineCounter))).c_str(), median(ratios), *lo, *hi);
    } else {
      const auto [lo, hi] = std::minmax_element(r.ns_per_iter.begin(), r.ns_per_iter.end());
      std::printf("%10s | %10s | %10s", format_time(*lo).c_str(), format_time(median(r.ns_per_iter)).c_str(),
                  format_time(*hi).c_str());
    }
    std::printf("%s%s\n", r.error.empty() ? "" : "  ERROR: ", r.error.c_str());
  }
}

// Prints the figure lines; returns false when a figure could not be computed.
bool print_figures(const CollectingReporter& reporter, bool use_median, bool filtered) {
  bool ok = true;
  // A figure whose benchmark skipped itself prints the reason; that is not a failure.
  auto skip_reason = [&](const char* bench) -> const std::string* {
    const auto it = reporter.results().find(bench);
    return it != reporter.results().end() && skipped(it->second) ? &it->second.error : nullptr;
  };
  auto lookup = [&](const char* figure, const char* bench) -> const Result* {
    const auto it = reporter.results().find(bench);
    const bool ran = it != reporter.results().end();
    if (!ran || it->second.ns_per_iter.empty() || !it->second.error.empty()) {
      if (filtered && !ran) return nullptr;  // filtered out on purpose
      std::fprintf(stderr, "uiommufd_bench: figure %s: benchmark %s %s\n", figure, bench,
                   ran ? ("failed: " + it->second.error).c_str() : "did not run");
      ok = false;
      return nullptr;
    }
    return &it->second;
  };
  auto time_of = [&](const Result& r) { return use_median ? median(r.ns_per_iter) : minimum(r.ns_per_iter); };
  for (const Figure& f : figures()) {
    const std::string* why = skip_reason(f.numerator);
    if (!why && f.denominator) why = skip_reason(f.denominator);
    if (why) {
      std::printf("BENCH %s %s\n", f.name, why->c_str());
      continue;
    }
    const Result* num = lookup(f.name, f.numerator);
    if (!num) continue;
    const char* counter = f.counter ? f.counter : kRatioCounter;
    if (f.counter && num->counters.count(counter) == 0) {
      std::fprintf(stderr, "uiommufd_bench: figure %s: %s has no counter %s\n", f.name, f.numerator, counter);
      ok = false;
      continue;
    }
    if (f.direction == Direction::kInfo) {
      double value = f.counter ? median(num->counters.at(counter)) : time_of(*num);
      if (f.denominator) {
        const Result* den = lookup(f.name, f.denominator);
        if (!den) continue;
        value /= time_of(*den);
      }
      std::printf("BENCH %s %s=%.3f%s%s\n", f.name, f.metric, value * f.scale_from_ns, f.note ? " " : "",
                  f.note ? f.note : "");
      continue;
    }
    double ratio;
    if (f.denominator) {
      const Result* den = lookup(f.name, f.denominator);
      if (!den) continue;
      ratio = time_of(*num) / time_of(*den);
    } else if (num->counters.count(counter) != 0) {
      ratio = median(num->counters.at(counter));
    } else {
      std::fprintf(stderr, "uiommufd_bench: figure %s: %s is not a paired benchmark\n", f.name, f.numerator);
      ok = false;
      continue;
    }
    const bool lower = f.direction == Direction::kLowerIsBetter;
    const bool pass = lower ? ratio <= f.target : ratio >= f.target;
    std::printf("BENCH %s ratio=%.3f target%s%s %s\n", f.name, ratio,
                lower ? "<=" : ">=", format_target(f.target).c_str(), pass ? "PASS" : "MISS");
  }
  return ok;
}

}  // namespace
}  // namespace uiommufd::bench

int main(int argc, char** argv) {
  using namespace uiommufd::bench;

  // Defaults first, so that the same flag given on the command line (parsed later) wins.
  static const char* const kDefaults[] = {
      "--benchmark_repetitions=12",
      "--benchmark_min_time=0.1",
      "--benchmark_enable_random_interleaving=true",
  };
  std::vector<char*> args;
  args.push_back(argv[0]);
  for (const char* d : kDefaults) args.push_back(const_cast<char*>(d));
  bool filtered = false;
  bool use_median = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--estimator=median") == 0) {
      use_median = true;
      continue;
    }
    if (std::strcmp(argv[i], "--estimator=min") == 0) continue;
    if (std::strncmp(argv[i], "--benchmark_filter=", 19) == 0) filtered = true;
    args.push_back(argv[i]);
  }
  args.push_back(nullptr);
  int n = static_cast<int>(args.size()) - 1;

  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;

  CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  print_table(reporter, use_median);
  const bool ok = print_figures(reporter, use_median, filtered);
  std::fflush(stdout);
  // A MISS is a reported figure, not a failure; only a figure that could not be computed fails.
  return ok ? 0 : 1;
}
