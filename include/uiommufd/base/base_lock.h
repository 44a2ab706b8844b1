// BaseMutex: the process-wide locks of the base layer (the slab's, the fault registry's), seen by the lock
// validator although base sits below it.
//
// Base cannot use the validator's locks, so these are plain pthread mutexes, each with a fixed identity.
// The validator, when it is linked in, installs an observer at start-up that records every acquisition
// under a lock class of its own for each identity (lockdep/fork_lock_order.h), so these locks take part in
// the validated order like any other: against the engine's locks, the runtime's, and the fork handlers'
// (base/fork.h). Without the validator, or before it has started, a BaseMutex is the bare pthread mutex
// plus one relaxed load.
#pragma once

#include <atomic>
#include <cstdint>

#include <pthread.h>

#include "uiommufd/base/thread_annotations.h"

namespace uiommufd {

enum class BaseLockId : std::uint8_t { kSlab, kFaultRegistry };
inline constexpr unsigned kBaseLockIds = 2;

struct BaseLockObserver {
  // Called before the calling thread blocks on the lock; `ip` is where it was taken. Returns whether the
  // acquisition was recorded, which is passed back to release() (an acquisition not recorded, e.g. while
  // validation is off, is not released).
  bool (*acquire)(BaseLockId id, const void* ip);
  void (*release)(BaseLockId id);
};

// Installs the observer, once (the validator, during static initialisation); it must live for the rest of
// the process.
void set_base_lock_observer(const BaseLockObserver* observer);

namespace detail {
extern std::atomic<const BaseLockObserver*> g_base_lock_observer;
}

class CAPABILITY("mutex") BaseMutex {
 public:
  constexpr explicit BaseMutex(BaseLockId id) : id_(id) {}
  BaseMutex(const BaseMutex&) = delete;
  BaseMutex& operator=(const BaseMutex&) = delete;

  // Inlined, so that the place recorded is the caller of the function that takes the lock.
  inline __attribute__((always_inline)) void lock() ACQUIRE() {
    const BaseLockObserver* o = detail::g_base_lock_observer.load(std::memory_order_acquire);
    const bool tracked = o != nullptr && o->acquire(id_, __builtin_return_address(0));
    pthread_mutex_lock(&mu_);
    tracked_ = tracked;
  }
  void unlock() RELEASE() {
    if (tracked_) {
      tracked_ = false;
      detail::g_base_lock_observer.load(std::memory_order_acquire)->release(id_);
    }
    pthread_mutex_unlock(&mu_);
  }

  BaseLockId id() const { return id_; }

 private:
  pthread_mutex_t mu_ = PTHREAD_MUTEX_INITIALIZER;
  const BaseLockId id_;
  bool tracked_ = false;  // written and read only by the holder
};

class SCOPED_CAPABILITY BaseGuard {
 public:
  inline __attribute__((always_inline)) explicit BaseGuard(BaseMutex& mu) ACQUIRE(mu) : mu_(mu) {
    mu_.lock();
  }
  ~BaseGuard() RELEASE() { mu_.unlock(); }
  BaseGuard(const BaseGuard&) = delete;
  BaseGuard& operator=(const BaseGuard&) = delete;

 private:
  BaseMutex& mu_;
};

}  // namespace uiommufd
