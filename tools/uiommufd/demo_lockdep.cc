// `uiommufd demo`: the classic access-unmap driver bug, caught by the lock validator.
//
// The IOAS and the driver here are stand-ins of a few lines each: the engine's IoPagetable and Access
// arrive in later issues. What is real is the validator and the locking pattern the engine will use: the
// unmap path runs access callbacks inside the IOAS's `access_unmap` map held shared, and access destroy
// waits for them with touch() (ARCHITECTURE.md, "Rules that hold everywhere").

#include "demo_lockdep.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <thread>
#include <vector>

#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/config.h"
#include "uiommufd/lockdep/lock_class_key.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/lockdep/lockdep_map.h"
#include "uiommufd/lockdep/mutex.h"

namespace uiommufd::tools {

#if UIOMMUFD_LOCKDEP_ENABLED

namespace ld = ::uiommufd::lockdep;

// The stand-ins live in a named namespace, not an anonymous one, and their lock-taking functions are
// neither inlined nor cloned (g++ would otherwise emit a local ".isra" copy), so the frames in the
// validator's report, symbolised with dladdr, which sees only exported symbols, name them.
#if defined(__clang__)
#define UIOMMUFD_DEMO_FRAME [[gnu::noinline]]
#else
#define UIOMMUFD_DEMO_FRAME [[gnu::noinline, gnu::noclone]]
#endif

namespace demo {

constexpr int kUnmaps = 1000;
constexpr std::uint64_t kPageSize = 4096;

// Each part has classes of its own, so nothing the first part taught the validator can reach the second,
// even beyond what reset_for_testing() forgets. The names are the same on purpose: they are the names a
// real driver and IOAS would carry.
constinit ld::LockClassKey g_buggy_driver_lock{"driver.lock"};
constinit ld::LockClassKey g_buggy_access_unmap{"ioas.access_unmap"};
constinit ld::LockClassKey g_fixed_driver_lock{"driver.lock"};
constinit ld::LockClassKey g_fixed_access_unmap{"ioas.access_unmap"};

// Acquisitions made by the demo (guards taken and maps touched), for the summary.
std::atomic<std::uint64_t> g_acquisitions{0};

inline void counted() { g_acquisitions.fetch_add(1, std::memory_order_relaxed); }

class EmulatedDriver;

// The IOAS side, reduced to its callback barrier.
class StandInIoas {
 public:
  explicit StandInIoas(ld::LockClassKey& key) : access_unmap_(key, "ioas.access_unmap") {}

  // The unmap path: the access's callback runs inside access_unmap held shared, with no engine lock held.
  UIOMMUFD_DEMO_FRAME void unmap(std::uint64_t iova, std::uint64_t length, EmulatedDriver& driver);

  // Access destroy: waits until every unmap callback in flight has returned. In the engine that wait is
  // real; here only the validator's view of it (an exclusive acquire and release) is.
  UIOMMUFD_DEMO_FRAME void destroy_access() {
    access_unmap_.touch();
    counted();
  }

 private:
  ld::LockdepMap access_unmap_;
};

// An emulated-device driver that pins guest memory through an access and guards its state with its own
// lock.
class EmulatedDriver {
 public:
  EmulatedDriver(ld::LockClassKey& key, StandInIoas& ioas) : lock_(key, "driver.lock"), ioas_(ioas) {}

  // The access's unmap callback: drop the driver's pins of [iova, iova + length - 1].
  UIOMMUFD_DEMO_FRAME void on_unmap(std::uint64_t /*iova*/, std::uint64_t length) {
    ld::MutexGuard guard(lock_);
    counted();
    unpinned_pages_ += length / kPageSize;
  }

  // The bug: driver.lock is held across access destroy.
  UIOMMUFD_DEMO_FRAME void close_buggy() {
    ld::MutexGuard guard(lock_);
    counted();
    closing_ = true;
    ioas_.destroy_access();
  }

  // The fix: mark the device closing under the lock, drop it, then destroy the access.
  UIOMMUFD_DEMO_FRAME void close_correct() {
    {
      ld::MutexGuard guard(lock_);
      counted();
      closing_ = true;
    }
    ioas_.destroy_access();
  }

 private:
  ld::Mutex lock_;
  bool closing_ GUARDED_BY(lock_) = false;
  std::uint64_t unpinned_pages_ GUARDED_BY(lock_) = 0;
  StandInIoas& ioas_;
};

void StandInIoas::unmap(std::uint64_t iova, std::uint64_t length, EmulatedDriver& driver) {
  ld::MapSharedGuard inside(access_unmap_);
  counted();
  driver.on_unmap(iova, length);
}

// Thread 1: user space unmapping, one page at a time.
UIOMMUFD_DEMO_FRAME void unmap_thread(StandInIoas& ioas, EmulatedDriver& driver) {
  for (int i = 0; i < kUnmaps; ++i) ioas.unmap(i * kPageSize, kPageSize, driver);
}

// Thread 2: the device being closed.
UIOMMUFD_DEMO_FRAME void close_thread(EmulatedDriver& driver, bool buggy) {
  if (buggy) {
    driver.close_buggy();
  } else {
    driver.close_correct();
  }
}

struct PartResult {
  std::vector<ld::Report> reports;
  ld::Stats stats;
};

// Thread 1 runs the unmap path and is joined before thread 2 closes the driver: the two orders are both
// seen, but never at the same time, so nothing blocks. The validator reports what could deadlock.
PartResult run_part(ld::LockClassKey& driver_key, ld::LockClassKey& map_key, bool buggy) {
  ld::reset_for_testing();
  StandInIoas ioas(map_key);
  EmulatedDriver driver(driver_key, ioas);

  std::thread unmapper(unmap_thread, std::ref(ioas), std::ref(driver));
  unmapper.join();
  std::printf("  thread 1: %d unmaps, each callback takes driver.lock ..................... done\n", kUnmaps);
  if (buggy) {
    std::printf("  thread 2: takes driver.lock, then destroys the access\n\n");
    std::printf("--- the validator's report (written by the validator to stderr) ---\n");
  }
  std::fflush(stdout);

  std::thread closer(close_thread, std::ref(driver), buggy);
  closer.join();
  std::fflush(stderr);
  if (buggy) {
    std::printf("--- end of report ---\n\n");
  } else {
    std::printf("  thread 2: takes driver.lock, marks closing, drops it, destroys the access .. done\n");
  }
  return {ld::reports(), ld::stats()};
}

bool only_circular(const std::vector<ld::Report>& reports) {
  if (reports.empty()) return false;
  for (const ld::Report& r : reports) {
    if (r.kind != ld::ReportKind::kCircularDependency) return false;
  }
  return true;
}

// The kernel's words for a report, as the validator's own header line prints them.
const char* describe(ld::ReportKind kind) {
  switch (kind) {
    case ld::ReportKind::kCircularDependency:
      return "possible circular locking dependency";
    case ld::ReportKind::kRecursiveLocking:
      return "possible recursive locking";
    case ld::ReportKind::kBadUnlock:
      return "bad unlock balance";
    case ld::ReportKind::kHeldLockFreed:
      return "held lock freed";
    default:
      return ld::report_kind_name(kind);
  }
}

void print_reports_line(const std::vector<ld::Report>& reports) {
  if (reports.empty()) {
    std::printf("0 reports");
    return;
  }
  std::printf("%zu report%s:", reports.size(), reports.size() == 1 ? "" : "s");
  for (std::size_t i = 0; i < reports.size(); ++i) {
    std::printf("%s %s", i == 0 ? "" : ",", describe(reports[i].kind));
  }
}

int run() {
  // Report mode whatever UIOMMUFD_LOCKDEP says: the point is to see the report and go on.
  ld::ScopedMode mode(ld::Mode::kReport);
  ld::set_print_reports(true);
  g_acquisitions.store(0, std::memory_order_relaxed);

  std::printf(
      "uiommufd demo: the lock validator and the access-unmap driver bug\n"
      "\n"
      "The lock validator (a user-space lockdep) finds a deadlock from one harmless run. The\n"
      "engine's accesses come later; here a few lines of stand-in code play IOAS and driver.\n"
      "\n"
      "The bug. An emulated-device driver pins guest memory through an iommufd access. On an\n"
      "unmap, the IOAS calls the driver's unmap callback, which takes the driver's own lock,\n"
      "driver.lock. On close, the driver destroys the access, which waits for every callback in\n"
      "flight. Holding driver.lock across that destroy hangs for good if a callback is waiting\n"
      "for driver.lock just then -- only on the rare run where an unmap races the close.\n"
      "\n"
      "The catch. Callbacks run inside the IOAS's ioas.access_unmap map, held shared; destroy\n"
      "acquires and releases it exclusively (touch()). Nobody blocks on the map; it tells the\n"
      "validator about the wait, so it sees both orders (access_unmap -> driver.lock in the\n"
      "callback, driver.lock -> access_unmap in destroy) and reports the cycle on every run.\n"
      "Two real threads run one after the other, so nothing actually blocks here.\n"
      "\n"
      "Part 1: the buggy driver (driver.lock held across access destroy)\n");
  std::fflush(stdout);

  const auto start = std::chrono::steady_clock::now();
  const PartResult buggy = run_part(g_buggy_driver_lock, g_buggy_access_unmap, /*buggy=*/true);
  const bool caught = only_circular(buggy.reports);
  std::printf("  Result: ");
  print_reports_line(buggy.reports);
  std::printf(" -- %s\n\n", caught ? "caught, as expected" : "NOT what was expected");

  std::printf(
      "Part 2: the correct driver (drops driver.lock before destroying the access)\n"
      "  Fresh validator state (reset_for_testing) and new lock classes.\n");
  std::fflush(stdout);
  const PartResult fixed = run_part(g_fixed_driver_lock, g_fixed_access_unmap, /*buggy=*/false);
  const bool clean = fixed.reports.empty();
  std::printf("  Result: ");
  print_reports_line(fixed.reports);
  std::printf(" -- %s\n\n", clean ? "clean, as expected" : "NOT what was expected");
  const auto elapsed = std::chrono::steady_clock::now() - start;

  const double ms = std::chrono::duration<double, std::milli>(elapsed).count();
  std::printf("Summary\n  buggy driver:      ");
  print_reports_line(buggy.reports);
  std::printf("\n  correct driver:    ");
  print_reports_line(fixed.reports);
  std::printf(
      "\n  lock acquisitions: %llu, all validated; wall time %.1f ms (both parts, threads included)\n",
      static_cast<unsigned long long>(g_acquisitions.load(std::memory_order_relaxed)), ms);
  std::printf("  part 2 graph:      dependencies %zu, cached chains %zu, graph searches %zu\n",
              fixed.stats.dependencies, fixed.stats.chains, fixed.stats.graph_searches);
  if (caught && clean) {
    std::printf("PASS: the bug was reported and the fix ran clean.\n");
    return 0;
  }
  std::printf(
      "FAIL: expected only circular-dependency reports for the buggy driver and none for the\n"
      "correct one.\n");
  return 1;
}

}  // namespace demo

int run_lockdep_demo() { return demo::run(); }

#else  // !UIOMMUFD_LOCKDEP_ENABLED

int run_lockdep_demo() {
  std::fprintf(stderr,
               "uiommufd demo: the lock validator is compiled out of this build (UIOMMUFD_LOCKDEP=OFF);\n"
               "there is nothing to demonstrate. Use the release preset (make demo).\n");
  return 77;
}

#endif  // UIOMMUFD_LOCKDEP_ENABLED

}  // namespace uiommufd::tools
