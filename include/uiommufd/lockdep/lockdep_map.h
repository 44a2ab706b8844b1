// LockdepMap: a lock the validator sees but nobody blocks on, for waits the validator cannot otherwise
// see (a refcount drained by a waitqueue, a callback barrier). The kernel's struct lockdep_map.
//
// The pattern: code that runs "inside" holds the map shared (MapSharedGuard / MapRecursiveSharedGuard);
// code that waits for everyone inside to leave calls touch(), an exclusive acquire-and-release. A lock L
// held across touch() while the code inside takes L is then a reported cycle, on every run, rather than a
// hang on the unlucky one.
//
// Every instrumented lock embeds one; its class is the lock's class. All guards are scoped.
#pragma once

#include <type_traits>

#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/lock_class_key.h"
#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lockdep {

#if UIOMMUFD_LOCKDEP_ENABLED

class CAPABILITY("lockdep_map") LockdepMap {
 public:
  // A class per construction site, named `name` (or "file:line" when null).
  explicit LockdepMap(const char* name = nullptr, SourceSite site = SourceSite::current())
      : LockdepMap(name, site, LockKind::kMap) {}
  // A class shared by every map constructed with `key`; `name` names this instance in reports. Constant
  // (constinit) for a key with static storage duration; such a map does not note its kind (see below).
  constexpr explicit LockdepMap(LockClassKey& key, const char* name = nullptr) : key_(&key), name_(name) {
    if (!std::is_constant_evaluated()) key.note_kind(LockKind::kMap);
  }
  // For a lock that embeds its map (Mutex, SharedMutex) or a map that stands for a real lock: notes
  // `kind` for the key (LockClassKey::note_kind) instead of a pseudo-lock.
  LockdepMap(const char* name, SourceSite site, LockKind kind)
      : key_(&LockClassKey::for_site(site, name)), name_(name ? name : key_->name()) {
    key_->note_kind(kind);
  }
  LockdepMap(LockClassKey& key, const char* name, LockKind kind) : key_(&key), name_(name) {
    key.note_kind(kind);
  }
  // Destroying a map (or the lock around it) that the current thread holds is reported.
  ~LockdepMap();

  LockdepMap(const LockdepMap&) = delete;
  LockdepMap& operator=(const LockdepMap&) = delete;

  const char* name() const { return name_ ? name_ : key_->name(); }
  LockClassKey& key() const { return *key_; }

  // Exclusive acquire and immediate release: "wait until every holder has left".
  UIOMMUFD_LOCKDEP_INLINE void touch(AcquireOptions options = {}) EXCLUDES(this) {
    if (detail::validating() && detail::acquire(*this, detail::Read::kExclusive, false, options))
      detail::release(*this);
  }

  // Whether the current thread holds this instance (any mode). False while the validator is off.
  bool held() const;
  // Report (ReportKind::kAssertion) unless the current thread holds this instance exclusively
  // (assert_held), in any mode (assert_shared_held: "at least shared", as the thread-safety analysis
  // reads it), or not at all (assert_not_held). Silent while the validator is off.
  void assert_held() const ASSERT_CAPABILITY(this);
  void assert_shared_held() const ASSERT_SHARED_CAPABILITY(this);
  void assert_not_held() const;

 private:
  LockClassKey* key_;
  const char* name_;  // null: the key's name
};

namespace detail {

// The common body of every scoped guard: validate, then the guard takes the real lock (or nothing, for a
// map). A default-constructed Acquisition records nothing.
class Acquisition {
 public:
  Acquisition() = default;
  // Options are usually the default constant, so after inlining the choice below costs nothing.
  UIOMMUFD_LOCKDEP_INLINE Acquisition(const LockdepMap& map, Read read, const AcquireOptions& options)
      : map_(&map),
        tracked_(validating() && (options.subclass == 0 && options.nest_lock == nullptr
                                      ? acquire(map, read)
                                      : acquire(map, read, false, options))) {}
  // For a lock already taken by a successful trylock: recorded as held, no dependency added.
  UIOMMUFD_LOCKDEP_INLINE static Acquisition after_trylock(const LockdepMap& map, Read read) {
    Acquisition a;
    a.map_ = &map;
    a.tracked_ = validating() && acquire(map, read, true, {});
    return a;
  }
  UIOMMUFD_LOCKDEP_INLINE void end() {
    if (tracked_) release(*map_);
  }

 private:
  const LockdepMap* map_ = nullptr;
  bool tracked_ = false;
};

}  // namespace detail

#else  // !UIOMMUFD_LOCKDEP_ENABLED

// Compiled out: an empty type, so a lock that embeds one ([[no_unique_address]]) is the bare lock.
class CAPABILITY("lockdep_map") LockdepMap {
 public:
  explicit LockdepMap(const char* = nullptr, SourceSite = SourceSite::current()) {}
  constexpr explicit LockdepMap(LockClassKey&, const char* = nullptr) {}
  LockdepMap(const char*, SourceSite, LockKind) {}
  LockdepMap(LockClassKey&, const char*, LockKind) {}
  LockdepMap(const LockdepMap&) = delete;
  LockdepMap& operator=(const LockdepMap&) = delete;

  const char* name() const { return "(lockdep compiled out)"; }
  void touch(AcquireOptions = {}) EXCLUDES(this) {}
  bool held() const { return false; }
  void assert_held() const ASSERT_CAPABILITY(this) {}
  void assert_shared_held() const ASSERT_SHARED_CAPABILITY(this) {}
  void assert_not_held() const {}
};

namespace detail {
class Acquisition {
 public:
  Acquisition() = default;
  Acquisition(const LockdepMap&, Read, const AcquireOptions&) {}
  static Acquisition after_trylock(const LockdepMap&, Read) { return {}; }
  void end() {}
};
}  // namespace detail

#endif  // UIOMMUFD_LOCKDEP_ENABLED

// Holds the map exclusively for the scope.
class SCOPED_CAPABILITY MapGuard {
 public:
  UIOMMUFD_LOCKDEP_INLINE explicit MapGuard(LockdepMap& map, AcquireOptions options = {}) ACQUIRE(map)
      : acq_(map, detail::Read::kExclusive, options) {}
  UIOMMUFD_LOCKDEP_INLINE ~MapGuard() RELEASE() { acq_.end(); }
  MapGuard(const MapGuard&) = delete;
  MapGuard& operator=(const MapGuard&) = delete;

 private:
  detail::Acquisition acq_;
};

// Holds the map shared, as a reader that a waiting writer would block (rwsem read).
class SCOPED_CAPABILITY MapSharedGuard {
 public:
  UIOMMUFD_LOCKDEP_INLINE explicit MapSharedGuard(LockdepMap& map, AcquireOptions options = {}) ACQUIRE_SHARED(map)
      : acq_(map, detail::Read::kShared, options) {}
  UIOMMUFD_LOCKDEP_INLINE ~MapSharedGuard() RELEASE() { acq_.end(); }
  MapSharedGuard(const MapSharedGuard&) = delete;
  MapSharedGuard& operator=(const MapSharedGuard&) = delete;

 private:
  detail::Acquisition acq_;
};

// Holds the map shared, as a reader that never waits for another reader (the kernel's
// lock_map_acquire_read): reader-after-reader, even of the same instance, is never a deadlock.
class SCOPED_CAPABILITY MapRecursiveSharedGuard {
 public:
  UIOMMUFD_LOCKDEP_INLINE explicit MapRecursiveSharedGuard(LockdepMap& map, AcquireOptions options = {}) ACQUIRE_SHARED(map)
      : acq_(map, detail::Read::kRecursiveShared, options) {}
  UIOMMUFD_LOCKDEP_INLINE ~MapRecursiveSharedGuard() RELEASE() { acq_.end(); }
  MapRecursiveSharedGuard(const MapRecursiveSharedGuard&) = delete;
  MapRecursiveSharedGuard& operator=(const MapRecursiveSharedGuard&) = delete;

 private:
  detail::Acquisition acq_;
};

}  // namespace uiommufd::lockdep
