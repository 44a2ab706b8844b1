// SharedMutex: std::shared_mutex under the lock validator, with the kernel rwsem's rules: readers are
// not recursive (a reader can wait behind a queued writer), so read-A-then-read-B in one thread and
// read-B-then-read-A in another is reported, and so is read-after-read of one instance.
//
//   lockdep::SharedMutex iova_rwsem{"iopt.iova_rwsem"};
//   { lockdep::WriteGuard g(iova_rwsem); ... }   // exclusive
//   { lockdep::ReadGuard g(iova_rwsem); ... }    // shared
#pragma once

#include <mutex>
#include <shared_mutex>

#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/lockdep_map.h"

namespace uiommufd::lockdep {

class CAPABILITY("shared_mutex") SharedMutex {
 public:
  explicit SharedMutex(const char* name = nullptr, SourceSite site = SourceSite::current())
      : map_(name, site, LockKind::kSharedMutex) {}
  explicit SharedMutex(LockClassKey& key, const char* name = nullptr)
      : map_(key, name, LockKind::kSharedMutex) {}
  ~SharedMutex() {
    if constexpr (kCompiledIn) check_not_held_on_destroy();
  }

  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void might_lock(AcquireOptions options = {}) EXCLUDES(this) { map_.touch(options); }
  void assert_held() const ASSERT_CAPABILITY(this) { map_.assert_held(); }
  void assert_shared_held() const ASSERT_SHARED_CAPABILITY(this) { map_.assert_shared_held(); }
  void assert_not_held() const { map_.assert_not_held(); }

  // See Mutex::try_lock: on success, adopt into WriteGuard / ReadGuard with std::adopt_lock.
  UIOMMUFD_LOCKDEP_INLINE bool try_lock() TRY_ACQUIRE(true) {
    if (!mu_.try_lock()) return false;
    adopted_writer_ = detail::Acquisition::after_trylock(map_, detail::Read::kExclusive);
    return true;
  }
  bool try_lock_shared() TRY_ACQUIRE_SHARED(true);

  const LockdepMap& dep_map() const { return map_; }
  const char* name() const { return map_.name(); }

 private:
  friend class WriteGuard;
  friend class ReadGuard;

  void check_not_held_on_destroy();

  std::shared_mutex mu_;
  [[no_unique_address]] LockdepMap map_;
  [[no_unique_address]] detail::Acquisition adopted_writer_;
};

class SCOPED_CAPABILITY WriteGuard {
 public:
  UIOMMUFD_LOCKDEP_INLINE explicit WriteGuard(SharedMutex& mu, AcquireOptions options = {}) ACQUIRE(mu)
      : mu_(mu), acq_(mu.map_, detail::Read::kExclusive, options) {
    mu_.mu_.lock();
  }
  UIOMMUFD_LOCKDEP_INLINE WriteGuard(SharedMutex& mu, std::adopt_lock_t) REQUIRES(mu) : mu_(mu), acq_(mu.adopted_writer_) {
    mu.adopted_writer_ = {};
  }
  UIOMMUFD_LOCKDEP_INLINE ~WriteGuard() RELEASE() {
    acq_.end();
    mu_.mu_.unlock();
  }
  WriteGuard(const WriteGuard&) = delete;
  WriteGuard& operator=(const WriteGuard&) = delete;

 private:
  SharedMutex& mu_;
  detail::Acquisition acq_;
};

class SCOPED_CAPABILITY ReadGuard {
 public:
  UIOMMUFD_LOCKDEP_INLINE explicit ReadGuard(SharedMutex& mu, AcquireOptions options = {}) ACQUIRE_SHARED(mu)
      : mu_(mu), acq_(mu.map_, detail::Read::kShared, options) {
    mu_.mu_.lock_shared();
  }
  // Adopts a successful try_lock_shared(); the record lives in the guard since many readers may adopt.
  UIOMMUFD_LOCKDEP_INLINE ReadGuard(SharedMutex& mu, std::adopt_lock_t) REQUIRES_SHARED(mu)
      : mu_(mu), acq_(detail::Acquisition::after_trylock(mu.map_, detail::Read::kShared)) {}
  UIOMMUFD_LOCKDEP_INLINE ~ReadGuard() RELEASE() {
    acq_.end();
    mu_.mu_.unlock_shared();
  }
  ReadGuard(const ReadGuard&) = delete;
  ReadGuard& operator=(const ReadGuard&) = delete;

 private:
  SharedMutex& mu_;
  detail::Acquisition acq_;
};

inline bool SharedMutex::try_lock_shared() { return mu_.try_lock_shared(); }

}  // namespace uiommufd::lockdep
