// The validator's view of base's own locks (base/base_lock.h): one LockdepMap per BaseLockId, under the
// classes of fork_lock_order.h, and the observer that records their acquisitions.
#include "validator.h"

#include "uiommufd/base/base_lock.h"
#include "uiommufd/lockdep/fork_lock_order.h"

namespace uiommufd::lockdep {

namespace {

// Made once by install_base_lock_observer() and never destroyed: base's locks are taken until the last
// thread exits.
constinit LockdepMap* g_maps[kBaseLockIds] = {};

bool observe_acquire(BaseLockId id, const void* ip) {
  return detail::validating() &&
         detail::acquire_slow(*g_maps[static_cast<unsigned>(id)], detail::Read::kExclusive, false, {}, ip);
}

void observe_release(BaseLockId id) { detail::release(*g_maps[static_cast<unsigned>(id)]); }

constexpr BaseLockObserver kObserver{observe_acquire, observe_release};

}  // namespace

void install_base_lock_observer() {
  static const bool installed = [] {
    g_maps[static_cast<unsigned>(BaseLockId::kSlab)] =
        new LockdepMap(lock_order::kSlab, nullptr, LockKind::kObservedLock);
    g_maps[static_cast<unsigned>(BaseLockId::kFaultRegistry)] =
        new LockdepMap(lock_order::kFaultRegistry, nullptr, LockKind::kObservedLock);
    set_base_lock_observer(&kObserver);
    return true;
  }();
  (void)installed;
}

}  // namespace uiommufd::lockdep
