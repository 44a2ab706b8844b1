#include "uiommufd/lockdep/engine_lock_order.h"

#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lock_order {

// Constant-initialised, so that they are usable by locks built during other files' static initialisation.
constinit lockdep::LockClassKey kPinnedRangesMutex{"pinned_ranges.mutex"};
constinit lockdep::LockClassKey kDeviceMutex{"device.mutex"};
constinit lockdep::LockClassKey kAccessIoasLock{"access.ioas_lock"};
constinit lockdep::LockClassKey kIoasMutex{"ioas.mutex"};
constinit lockdep::LockClassKey kContextIoasCreation{"context.ioas_creation"};
constinit lockdep::LockClassKey kIoptDomainsRwsem{"iopt.domains_rwsem"};
constinit lockdep::LockClassKey kIoptIovaRwsem{"iopt.iova_rwsem"};
constinit lockdep::LockClassKey kIoptAccessList{"iopt.access_list"};
constinit lockdep::LockClassKey kPagesRegistry{"pages.registry"};
constinit lockdep::LockClassKey kDmaBufResv{"dmabuf.resv"};
constinit lockdep::LockClassKey kPagesMutex{"pages.mutex"};
constinit lockdep::LockClassKey kPagesMlock{"pages.mlock"};
constinit lockdep::LockClassKey kViommuQueues{"viommu.queues"};
constinit lockdep::LockClassKey kDomainPageTable{"domain.page_table"};
constinit lockdep::LockClassKey kViommuVdevs{"viommu.vdevs"};
constinit lockdep::LockClassKey kContextObjects{"context.objects"};
constinit lockdep::LockClassKey kVeventRead{"vevent.read"};
constinit lockdep::LockClassKey kViommuVeventqs{"viommu.veventqs"};
constinit lockdep::LockClassKey kEventqLock{"eventq.lock"};

void declare_engine_lock_order() {
  static const bool declared = [] {
    lockdep::declare_order({&kPinnedRangesMutex, &kDeviceMutex, &kAccessIoasLock, &kIoasMutex,
                            &kContextIoasCreation, &kIoptDomainsRwsem, &kIoptIovaRwsem, &kIoptAccessList,
                            &kPagesRegistry, &kDmaBufResv, &kPagesMutex, &kPagesMlock, &kViommuQueues,
                            &kDomainPageTable, &kViommuVdevs, &kViommuVeventqs, &kContextObjects,
                            &kVeventRead, &kEventqLock});
    return true;
  }();
  (void)declared;
}

namespace {
// The keys above are what every engine lock refers to, so this file is linked wherever one is, and the
// order is in place before main() and before any lock of these classes can be taken by it.
[[maybe_unused]] const bool g_declared_at_start = (declare_engine_lock_order(), true);
}  // namespace

}  // namespace uiommufd::lock_order
