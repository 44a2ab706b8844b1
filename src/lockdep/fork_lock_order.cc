#include "uiommufd/lockdep/fork_lock_order.h"

#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lock_order {

// Constant-initialised, so that they are usable by locks taken during other files' static initialisation.
constinit lockdep::LockClassKey kEngineGate{"runtime.engine_gate"};
constinit lockdep::LockClassKey kFdTable{"runtime.fd_table"};
constinit lockdep::LockClassKey kSlab{"base.slab"};
constinit lockdep::LockClassKey kFaultRegistry{"base.fault_registry"};

namespace {
// Linked wherever one of the keys is used, so the order is in place before main().
[[maybe_unused]] const bool g_declared_at_start =
    (lockdep::declare_order({&kEngineGate, &kFdTable, &kSlab, &kFaultRegistry}), true);
}  // namespace

}  // namespace uiommufd::lock_order
