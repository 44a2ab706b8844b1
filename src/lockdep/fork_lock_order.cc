#include "uiommufd/lockdep/fork_lock_order.h"

#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lock_order {

// Constant-initialised, so that they are usable by locks taken during other files' static initialisation.
// Each stands for a real lock that a LockdepMap observes (the engine gate's readers and closer, the fd
// table's pthread mutex, base's locks), which the class graph draws as such (lockdep/dot.h).
constexpr auto kObserved = lockdep::LockKind::kObservedLock;
constinit lockdep::LockClassKey kEngineGate{"runtime.engine_gate", kObserved};
constinit lockdep::LockClassKey kFdTable{"runtime.fd_table", kObserved};
constinit lockdep::LockClassKey kSlab{"base.slab", kObserved};
constinit lockdep::LockClassKey kFaultRegistry{"base.fault_registry", kObserved};

namespace {
// Linked wherever one of the keys is used, so the order is in place before main().
[[maybe_unused]] const bool g_declared_at_start =
    (lockdep::declare_order({&kEngineGate, &kFdTable, &kSlab, &kFaultRegistry}), true);
}  // namespace

}  // namespace uiommufd::lock_order
