#include "engine_gate.h"

#include <atomic>
#include <chrono>
#include <cstddef>

#include <sys/single_threaded.h>
#include <unistd.h>

#include "uiommufd/base/fork.h"
#include "uiommufd/base/wait_word.h"
#include "uiommufd/lockdep/fork_lock_order.h"
#include "uiommufd/lockdep/lockdep_map.h"

namespace uiommufd::runtime {

namespace {

// The threads inside, counted on a few cache lines instead of one, so that threads calling at once do not
// all write the same line; the closer adds them up. Counts never go below zero on a line: a thread leaves
// on the line it entered on.
constexpr std::size_t kShards = 16;
struct alignas(64) Shard {
  std::atomic<std::uint32_t> inside{0};
};
constinit Shard g_shards[kShards];

// 1 while a fork holds the gate closed; entering threads sleep on it.
constinit std::atomic<std::uint32_t> g_closed{0};
// Bumped by a thread that leaves (or backs off) while the gate is closed; the closer sleeps on it.
constinit std::atomic<std::uint32_t> g_left{0};

// Never destroyed: calls may run during and after static destruction.
union GateMap {
  constexpr GateMap() : map(lock_order::kEngineGate) {}
  ~GateMap() {}
  lockdep::LockdepMap map;
};
constinit GateMap g_gate;

// Initial-exec, as the fd table's: read on every call that concerns one of our fds.
#define UIOMMUFD_TLS __attribute__((tls_model("initial-exec"))) constinit thread_local
UIOMMUFD_TLS unsigned t_depth = 0;                   // Scopes open on this thread
UIOMMUFD_TLS bool t_counted = false;                 // the outermost Scope counted this thread on its shard
UIOMMUFD_TLS Shard* t_shard = nullptr;               // this thread's shard, chosen on first use
UIOMMUFD_TLS lockdep::detail::Acquisition t_held;    // the validator's record of the outermost Scope
UIOMMUFD_TLS lockdep::detail::Acquisition t_closed;  // the closer's record, across fork
#undef UIOMMUFD_TLS

// By thread id, which the kernel hands out in sequence, so that threads spread over the lines.
Shard& my_shard() {
  if (t_shard == nullptr) t_shard = &g_shards[static_cast<unsigned>(gettid()) % kShards];
  return *t_shard;
}

constexpr auto kNoDeadline = std::chrono::steady_clock::time_point::max();

void wake_closer() {
  g_left.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(g_left);
}

void fork_prepare() { EngineGate::close_for_fork(); }
void fork_parent_or_child() { EngineGate::open_after_fork(); }

[[maybe_unused]] const bool g_fork_handlers_set = [] {
  set_fork_handlers(ForkLevel::kEngineGate, {fork_prepare, fork_parent_or_child, fork_parent_or_child});
  return true;
}();

}  // namespace

void EngineGate::enter() {
  if (t_depth++ != 0) return;
  // Recorded before waiting, as every instrumented lock is: a report comes out even if the wait hangs.
  t_held = lockdep::detail::Acquisition(g_gate.map, lockdep::detail::Read::kShared, {});
  if (__libc_single_threaded) return;
  // Sequentially consistent on both sides: this thread counts itself, then reads the flag; the closer sets
  // the flag, then reads the counts. One of them always sees the other.
  Shard& s = my_shard();
  for (;;) {
    s.inside.fetch_add(1, std::memory_order_seq_cst);
    if (g_closed.load(std::memory_order_seq_cst) == 0) break;
    // A fork is waiting for the threads inside: back off, let it see this one gone, and wait it out.
    s.inside.fetch_sub(1, std::memory_order_seq_cst);
    wake_closer();
    while (g_closed.load(std::memory_order_seq_cst) != 0) futex_wait_until(g_closed, 1, kNoDeadline);
  }
  t_counted = true;
}

void EngineGate::leave() {
  if (--t_depth != 0) return;
  if (t_counted) {
    t_counted = false;
    my_shard().inside.fetch_sub(1, std::memory_order_seq_cst);
    if (g_closed.load(std::memory_order_seq_cst) != 0) wake_closer();
  }
  t_held.end();
  t_held = {};
}

bool EngineGate::inside() { return t_depth != 0; }

void EngineGate::close_for_fork() {
  t_closed = lockdep::detail::Acquisition(g_gate.map, lockdep::detail::Read::kExclusive, {});
  g_closed.store(1, std::memory_order_seq_cst);
  // The forking thread itself may be counted, in a call into the engine that a signal handler interrupted
  // to fork; waiting for itself would never end (see the header).
  const std::uint64_t own = t_counted ? 1 : 0;
  for (;;) {
    const std::uint32_t seen = g_left.load(std::memory_order_seq_cst);
    std::uint64_t inside = 0;
    for (const Shard& s : g_shards) inside += s.inside.load(std::memory_order_seq_cst);
    if (inside <= own) return;
    futex_wait_until(g_left, seen, kNoDeadline);
  }
}

void EngineGate::open_after_fork() {
  // In the child the other threads are gone, and none of them was inside: nothing of theirs to reset.
  g_closed.store(0, std::memory_order_seq_cst);
  futex_wake_all(g_closed);
  t_closed.end();
  t_closed = {};
}

}  // namespace uiommufd::runtime
