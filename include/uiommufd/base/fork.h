// The fork handlers of all of uiommufd, in one ordered list (docs/locking.md#fork).
//
// fork() copies memory, locks included, exactly as they are at that instant; a lock that another thread of
// the parent holds stays held in the child for good, and the child's only thread (a copy of the forking
// one) waits for it forever. So every process-wide lock that another thread may hold at that instant is
// taken before the fork by the forking thread, and released after it, in the parent and in the child, by
// that same thread: in the child by its copy, which is the holder there. A held lock is released, never
// re-initialised (POSIX leaves initialising an initialised mutex undefined, and ThreadSanitizer keeps it
// held), and the state that belonged to the parent's other threads is reset by the child handler while it
// still holds the lock, without touching the lock itself.
//
// The levels are taken outermost first, in the run-time lock order, and released in the reverse order, so
// the acquisitions before a fork add no dependency that the run time does not already have. Each level's
// lock is seen by the lock validator (the base levels' through base_lock.h), and the order below is also
// declared to it (lockdep/fork_lock_order.h), so a run-time path that takes them the other way round is a
// report, and so is a lock held across fork() that some path takes inside one of them.
#pragma once

#include <atomic>
#include <cstdint>

namespace uiommufd {

// Outermost first. A level that is not linked into the program, or not used yet, has no handlers and is
// skipped.
enum class ForkLevel : std::uint8_t {
  // runtime/engine_gate.h: every call from the preload into the engine holds the gate open; the prepare
  // handler closes it and waits for the calls in flight, so the engine, every engine lock and every
  // object's state included, is at rest when it is copied. Outermost: those calls take all the rest.
  kEngineGate,
  // runtime/fd_table.h: the preload's descriptor table. Taken inside the gate (close, dup, an ioctl that
  // installs an fd), never across a call into the engine.
  kFdTable,
  // base/slab.h: the one lock of every object cache. Taken under engine locks (areas are freed under the
  // IOVA lock); nothing is taken under it.
  kSlab,
  // base/fault.h: the fail-nth thread registry. Taken on a thread's first fault-site check, which may be
  // under any engine lock, and at thread exit; nothing is taken under it.
  kFaultRegistry,
  // lockdep: the validator's own plain mutexes (graph, reports, class keys). Taken inside every validated
  // acquisition, so after every other level.
  kValidator,
};
inline constexpr unsigned kForkLevels = 5;

struct ForkHandlers {
  void (*prepare)() = nullptr;  // takes the level's locks; before fork, in the forking thread
  void (*parent)() = nullptr;   // releases them in the parent
  void (*child)() = nullptr;    // resets the child's copy of the parent's other threads' state, releases
};

// An ordered list of handlers. The process has one (set_fork_handlers); tests build their own.
class ForkHandlerList {
 public:
  constexpr ForkHandlerList() = default;
  ForkHandlerList(const ForkHandlerList&) = delete;
  ForkHandlerList& operator=(const ForkHandlerList&) = delete;

  // Sets (or replaces) the handlers of `level`. Any thread, at any time: a fork that has already run the
  // prepare handlers runs only the parent and child handlers of the levels it prepared.
  void set(ForkLevel level, const ForkHandlers& handlers);

  // prepare() runs every level's prepare handler, outermost first; parent() and child() run the parent or
  // child handlers of the levels prepare() ran, innermost first. Called by one thread for one fork (glibc
  // runs the handlers of concurrent forks one fork at a time).
  void prepare();
  void parent();
  void child();

 private:
  struct Slot {
    std::atomic<void (*)()> prepare{nullptr};
    std::atomic<void (*)()> parent{nullptr};
    std::atomic<void (*)()> child{nullptr};
  };
  Slot slots_[kForkLevels];
  // The levels whose prepare handler ran, by bit; atomic only because successive forks may run on
  // different threads.
  std::atomic<std::uint32_t> prepared_{0};
};

// Sets the handlers of `level` in the process's list. The list is registered with pthread_atfork on the
// first call, the only registration uiommufd makes. Safe during static initialisation.
void set_fork_handlers(ForkLevel level, const ForkHandlers& handlers);

}  // namespace uiommufd
