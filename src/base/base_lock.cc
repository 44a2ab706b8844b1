#include "uiommufd/base/base_lock.h"

namespace uiommufd {

namespace detail {
constinit std::atomic<const BaseLockObserver*> g_base_lock_observer{nullptr};
}

void set_base_lock_observer(const BaseLockObserver* observer) {
  detail::g_base_lock_observer.store(observer, std::memory_order_release);
}

}  // namespace uiommufd
