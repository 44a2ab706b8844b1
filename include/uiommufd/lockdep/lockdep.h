// The lock validator: run-time control, reports and limits.
//
// The validator watches every acquisition of an instrumented lock (Mutex, SharedMutex, LockdepMap) and
// builds a global graph of "class A was held while class B was acquired" edges. A new edge that closes a
// cycle is reported as a possible circular locking dependency even when the timing of this run did not
// deadlock. Validated acquisition sequences are remembered by a 64-bit chain key, so a sequence seen before
// costs one hash lookup; the graph is searched only on a cache miss.
//
// Thread safety: every function here may be called from any thread, except reset_for_testing().
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "uiommufd/lockdep/config.h"

namespace uiommufd::lockdep {

// Limits. Hitting one prints which limit and turns validation off for the rest of the process, as the
// kernel's lockdep does: the graph would otherwise be incomplete and its verdicts untrustworthy.
inline constexpr std::size_t kMaxLockDepth = 48;          // locks held by one thread at once
inline constexpr std::size_t kMaxLockClasses = 8192;      // (key, subclass) pairs
inline constexpr std::size_t kMaxSubclasses = 8;          // subclasses per key: 0 .. kMaxSubclasses - 1
inline constexpr std::size_t kMaxDependencies = 1 << 18;  // edges in the class graph
inline constexpr std::size_t kMaxChains = 1 << 18;        // validated chains remembered (hash slots)
inline constexpr std::size_t kMaxStackTraceEntries = 1 << 20;  // frames kept for edge stack traces
inline constexpr std::size_t kMaxStackDepth = 24;              // frames recorded per trace

enum class Mode {
  kOff,     // instrumented locks behave as plain locks; nothing is recorded
  kReport,  // print each report, keep it for reports(), and continue
  kAbort,   // print the first report and abort the process
};

// The mode starts from the environment variable UIOMMUFD_LOCKDEP=off|report|abort (default: report).
// Switching modes is safe at any time: a lock taken while the validator was off is simply not tracked.
void set_mode(Mode mode);
Mode mode();

enum class ReportKind {
  kCircularDependency,  // "possible circular locking dependency detected"
  kRecursiveLocking,    // "possible recursive locking detected" (AA)
  kBadUnlock,           // "bad unlock balance detected" (release of a lock not held)
  kHeldLockFreed,       // "held lock freed" (a lock destroyed while held)
  kNestLockNotHeld,     // a nest-lock acquisition whose nest lock is not held
  kAssertion,           // assert_held / assert_not_held failed
  kLimitReached,        // a kMax* limit was hit; the validator turned itself off
};

const char* report_kind_name(ReportKind kind);

struct Report {
  ReportKind kind;
  std::string text;  // exactly what was printed
};

// Reports go to stderr (unless silenced) and to an in-memory sink that tests read.
std::vector<Report> reports();
std::size_t report_count();
void clear_reports();
void set_print_reports(bool print);

struct Stats {
  std::size_t classes = 0;
  std::size_t dependencies = 0;
  std::size_t chains = 0;          // validated chains in the cache
  std::size_t graph_searches = 0;  // breadth-first searches run (cache misses that added an edge)
  std::size_t stack_trace_entries = 0;
};
Stats stats();

// Forgets every dependency, cached chain and report, and re-enables validation if a limit turned it off.
// Lock classes keep their identity, and declared orders (below) are recorded again. For tests: no
// instrumented lock may be held by any thread, and no other thread may be using the validator.
void reset_for_testing();

class LockClassKey;
// Declares that locks of these classes (subclass 0) are taken in this order, each only while holding
// classes before it, never after: every consecutive pair is recorded as a dependency before any such lock
// is taken. An acquisition against the declared order is then a "possible circular locking dependency"
// report the first time it happens, even in a run where the declared pair itself never occurred. The
// order is the strongest kind (held exclusive, taken non-recursive), so readers are ordered too. Can be
// called more than once (orders may share classes); each declaration stays across reset_for_testing().
// Does nothing with the validator compiled out.
void declare_order(std::initializer_list<LockClassKey*> keys);

// Turns validation off and then back on for the current scope's duration (tests of code that provokes
// reports on purpose use report mode instead).
class ScopedMode {
 public:
  explicit ScopedMode(Mode m) : saved_(mode()) { set_mode(m); }
  ~ScopedMode() { set_mode(saved_); }
  ScopedMode(const ScopedMode&) = delete;
  ScopedMode& operator=(const ScopedMode&) = delete;

 private:
  Mode saved_;
};

// How a guard acquires: a subclass distinguishes nesting levels of one class (the kernel's
// mutex_lock_nested); a nest lock, when held, permits any number of locks of one class in any order
// (mutex_lock_nest_lock), e.g. several IOAS locked together under a context lock.
class LockdepMap;
struct AcquireOptions {
  unsigned subclass = 0;
  const LockdepMap* nest_lock = nullptr;
};

namespace detail {

enum class Read : std::uint8_t {
  kExclusive = 0,
  kShared = 1,           // a reader that a waiting writer blocks (rwsem read)
  kRecursiveShared = 2,  // a reader that never blocks on another reader (rwlock read, lock_map_acquire_read)
};

#if UIOMMUFD_LOCKDEP_ENABLED
// True while the mode is not kOff and no limit has turned validation off. Read inline by every guard
// before calling out of line, so a validator switched off costs one relaxed load and a branch.
extern std::atomic<bool> g_validating;
inline bool validating() { return g_validating.load(std::memory_order_relaxed); }

// Validate and record an acquisition by the current thread, before it blocks on the real lock (so a
// report comes out even when the acquisition then hangs). Returns whether it was recorded, which the
// guard passes back to release(): an acquisition made while the validator was off is never released.
// Both take the caller's return address as the "at:" site of reports.
bool acquire(const LockdepMap& map, Read read, bool trylock, const AcquireOptions& options);
// The same for the common case: blocking, subclass 0, no nest lock.
bool acquire(const LockdepMap& map, Read read);
void release(const LockdepMap& map);
#endif

}  // namespace detail

}  // namespace uiommufd::lockdep
