// Mutex: std::mutex under the lock validator. Taken only through MutexGuard.
//
//   lockdep::Mutex mu{"pages.mutex"};          // class per construction site, named
//   int count GUARDED_BY(mu);
//   { lockdep::MutexGuard g(mu); ++count; }
//
// Nesting two locks of one class needs a subclass (MutexGuard g(b, {.subclass = 1})) or a nest lock that
// serialises all such nesting (MutexGuard g(x, {.nest_lock = &outer.dep_map()})); otherwise it is
// reported as recursive locking. With UIOMMUFD_LOCKDEP=OFF at build time the class is a bare std::mutex.
#pragma once

#include <mutex>

#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/lockdep_map.h"

namespace uiommufd::lockdep {

class CAPABILITY("mutex") Mutex {
 public:
  explicit Mutex(const char* name = nullptr, SourceSite site = SourceSite::current())
      : map_(name, site, LockKind::kMutex) {}
  explicit Mutex(LockClassKey& key, const char* name = nullptr) : map_(key, name, LockKind::kMutex) {}
  ~Mutex() {
    if constexpr (kCompiledIn) check_not_held_on_destroy();
  }

  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  // Validates the acquisition as if the lock were taken and released here, without taking it: for a
  // path that takes the lock only sometimes (the kernel's might_lock).
  void might_lock(AcquireOptions options = {}) EXCLUDES(this) { map_.touch(options); }

  void assert_held() const ASSERT_CAPABILITY(this) { map_.assert_held(); }
  void assert_not_held() const { map_.assert_not_held(); }

  // Takes the lock only if it is free. On success the validator records it as held (it cannot deadlock,
  // so no dependency is added) and the caller adopts it into a guard:
  //   if (mu.try_lock()) { MutexGuard g(mu, std::adopt_lock); ... }
  UIOMMUFD_LOCKDEP_INLINE bool try_lock() TRY_ACQUIRE(true) {
    if (!mu_.try_lock()) return false;
    adopted_ = detail::Acquisition::after_trylock(map_, detail::Read::kExclusive);
    return true;
  }

  const LockdepMap& dep_map() const { return map_; }
  const char* name() const { return map_.name(); }

 private:
  friend class MutexGuard;

  void check_not_held_on_destroy();

  std::mutex mu_;
  [[no_unique_address]] LockdepMap map_;
  // The record of a try_lock() acquisition, handed to the guard that adopts the lock. Touched only by the
  // thread that holds mu_.
  [[no_unique_address]] detail::Acquisition adopted_;
};

class SCOPED_CAPABILITY MutexGuard {
 public:
  UIOMMUFD_LOCKDEP_INLINE explicit MutexGuard(Mutex& mu, AcquireOptions options = {}) ACQUIRE(mu)
      : mu_(mu), acq_(mu.map_, detail::Read::kExclusive, options) {
    mu_.mu_.lock();
  }
  UIOMMUFD_LOCKDEP_INLINE MutexGuard(Mutex& mu, std::adopt_lock_t) REQUIRES(mu) : mu_(mu), acq_(mu.adopted_) {
    mu.adopted_ = {};
  }
  UIOMMUFD_LOCKDEP_INLINE ~MutexGuard() RELEASE() {
    acq_.end();
    mu_.mu_.unlock();
  }
  MutexGuard(const MutexGuard&) = delete;
  MutexGuard& operator=(const MutexGuard&) = delete;

 private:
  Mutex& mu_;
  detail::Acquisition acq_;
};

}  // namespace uiommufd::lockdep
