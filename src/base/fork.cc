#include "uiommufd/base/fork.h"

#include <pthread.h>

namespace uiommufd {

void ForkHandlerList::set(ForkLevel level, const ForkHandlers& h) {
  Slot& s = slots_[static_cast<unsigned>(level)];
  // The prepare handler last: a fork that sees it also sees the other two.
  s.parent.store(h.parent, std::memory_order_relaxed);
  s.child.store(h.child, std::memory_order_relaxed);
  s.prepare.store(h.prepare, std::memory_order_release);
}

void ForkHandlerList::prepare() {
  std::uint32_t prepared = 0;
  for (unsigned i = 0; i < kForkLevels; ++i) {
    void (*fn)() = slots_[i].prepare.load(std::memory_order_acquire);
    if (fn == nullptr) continue;
    fn();
    prepared |= 1u << i;
  }
  prepared_.store(prepared, std::memory_order_relaxed);
}

void ForkHandlerList::parent() {
  const std::uint32_t prepared = prepared_.load(std::memory_order_relaxed);
  for (unsigned i = kForkLevels; i-- > 0;) {
    if (!(prepared & (1u << i))) continue;
    if (void (*fn)() = slots_[i].parent.load(std::memory_order_relaxed)) fn();
  }
}

void ForkHandlerList::child() {
  const std::uint32_t prepared = prepared_.load(std::memory_order_relaxed);
  for (unsigned i = kForkLevels; i-- > 0;) {
    if (!(prepared & (1u << i))) continue;
    if (void (*fn)() = slots_[i].child.load(std::memory_order_relaxed)) fn();
  }
}

namespace {

// Constant-initialised, so levels may be set from any static initialiser, in any order.
constinit ForkHandlerList g_process_list;

void run_prepare() { g_process_list.prepare(); }
void run_parent() { g_process_list.parent(); }
void run_child() { g_process_list.child(); }

}  // namespace

void set_fork_handlers(ForkLevel level, const ForkHandlers& handlers) {
  g_process_list.set(level, handlers);
  static const bool registered = (pthread_atfork(run_prepare, run_parent, run_child), true);
  (void)registered;
}

}  // namespace uiommufd
