// The validator's slow paths and shared state: everything that runs on a chain-cache miss, on release
// of a lock that is not on top of the stack, and for reports. The hot paths live inline in validator.cc.
#pragma once

#include <cstdint>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "chain_cache.h"
#include "class_registry.h"
#include "dependency_graph.h"
#include "dot_graph.h"
#include "held_lock_stack.h"
#include "stack_trace.h"

#include "uiommufd/lockdep/lockdep_map.h"

namespace uiommufd::lockdep {

class Validator {
 public:
  static Validator& get();

  // The class id of (key, subclass), registering it on first use; 0 when validation cannot continue.
  std::uint32_t class_id(LockClassKey& key, unsigned subclass);

  // Validates the chain ending at t.locks[index], which has just been pushed, and caches it.
  // Never throws: a std::bad_alloc inside turns validation off (out_of_memory()).
  void validate(HeldLockStack& t, unsigned index, const void* ip);

  // Reports for the cases found outside validate().
  void report_bad_unlock(const HeldLockStack& t, const LockdepMap& map, const void* ip);
  void report_held_lock_freed(const HeldLockStack& t, const HeldLock* held, const LockdepMap& map,
                              bool other_thread);
  void report_nest_lock_not_held(const HeldLockStack& t, unsigned index);
  void report_assertion(const HeldLockStack& t, const LockdepMap& map, const char* what);
  // A limit was hit: reports it and turns validation off. Takes the graph lock; limit_reached_locked()
  // is for callers that hold it.
  void limit_reached(const char* limit, std::size_t value);
  // limit_reached() for memory: reports without allocating if it must, and turns validation off. Takes
  // the graph lock.
  void out_of_memory();

  Stats stats();
  // A copy of the class graph and of the reports' chains, for a picture (dot_graph.h). Takes the graph
  // lock; throws std::bad_alloc.
  DotGraph dot_graph();
  void reset();
  // The fork handlers (validator.cc) hold the graph lock across fork.
  void lock_for_fork() { mu_.lock(); }
  void unlock_after_fork() { mu_.unlock(); }
  // lockdep::declare_order(): records the chain and adds its dependencies.
  void declare_order(std::vector<LockClassKey*> keys);

 private:
  Validator();

  // validate()'s work; may throw std::bad_alloc.
  void check_new_chain(HeldLockStack& t, unsigned index, const void* ip);

  // 0: no same-class conflict; 1: reported; 2: allowed by the nest lock, so no dependencies to add.
  int check_recursion(const HeldLockStack& t, unsigned index);
  void check_prev(const HeldLockStack& t, const HeldLock& prev, const HeldLock& next,
                  StackTraceRef* trace);

  void limit_reached_locked(const char* limit, std::size_t value);
  DotGraph dot_graph_locked() const;
  // Rewrites the UIOMMUFD_LOCKDEP_DOT file, if there is one, after a report.
  void write_dot_after_report_locked() const;

  void report_circular(const HeldLockStack& t, const HeldLock& prev, const HeldLock& next,
                       const std::vector<std::uint32_t>& path);
  void report_recursive(const HeldLockStack& t, const HeldLock& prev, const HeldLock& next);

  std::string describe(const HeldLock& h) const;
  std::string describe_map(const LockdepMap& map) const;
  // Exported (not file-local) so that the trace printer recognises it as the validator's own frame.
  static void append_current_stack(std::string& out, const void* ip);
  void append_held_locks(std::string& out, const HeldLockStack& t, unsigned depth) const;
  // Prints, records and (in abort mode) aborts on a report; `mark` is what the report names, for
  // pictures. Called with the graph lock held.
  void emit(ReportKind kind, std::string text, ReportMark mark);
  // The class of a map's lock at subclass 0, or 0 when it has none yet (for reports about one lock).
  static std::uint32_t class_of(const LockdepMap& map);

  std::mutex mu_;  // the graph lock: a plain mutex, since the validator cannot validate itself
  ClassRegistry classes_;
  DependencyGraph graph_{classes_};
  StackTraceStore traces_;
  // Class pairs already reported, so that one bad order is reported once, not on every chain that
  // exhibits it.
  std::set<std::pair<std::uint32_t, std::uint32_t>> reported_;
  // What each report named, the first kMaxReportMarks of them, and how many reports were made; since
  // start-up or the last reset().
  std::vector<ReportMark> marks_;
  std::size_t reports_made_ = 0;
  // Every declared order, added again after reset().
  std::vector<std::vector<LockClassKey*>> declared_;
  void add_declared_locked(const std::vector<LockClassKey*>& keys);
};

// Which thread, as reports name it: "name/tid".
std::string current_thread_label();

namespace detail {
// acquire() with the place of the acquisition given, for acquisitions recorded on behalf of a lock that
// is not instrumented itself (base_locks.cc).
bool acquire_slow(const LockdepMap& map, Read read, bool trylock, const AcquireOptions& options,
                  const void* ip);
}  // namespace detail

// Installs the observer of base's locks (base_locks.cc); once, however often it is called.
void install_base_lock_observer();

// The lock of the per-site class keys (lock_class_key.cc), for the fork handlers.
std::mutex& site_keys_mutex();

extern constinit ChainCache g_chains;

}  // namespace uiommufd::lockdep

namespace uiommufd::lockdep {

// For the destructors of the real locks: the current thread's own hold is reported by the embedded map's
// destructor; this catches a hold by another thread, which try_lock() reveals.
template <typename Lockable>
void check_not_held_elsewhere(Lockable& lock, const LockdepMap& map) {
  if (!detail::validating() || map.held()) return;
  if (lock.try_lock()) {
    lock.unlock();
    return;
  }
  Validator::get().report_held_lock_freed(current_held_locks(), nullptr, map, true);
}

}  // namespace uiommufd::lockdep
