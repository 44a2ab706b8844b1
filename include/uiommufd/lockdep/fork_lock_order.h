// The order of the process-wide locks that fork takes (base/fork.h), as lock classes: declared to the
// validator during the static initialisation of any program that links one of them, in the order the
// fork handlers take them. The run time
// takes them in the same order (docs/locking.md#fork), so the fork handlers' acquisitions add nothing new;
// a run-time path that takes two of them the other way round is a report the first time it happens, in a
// program that never forks as well.
//
//   runtime.engine_gate   held shared by every call from the preload into the engine, exclusively by the
//                         fork handler (runtime/engine_gate.h); every engine lock is taken inside it.
//   runtime.fd_table      the preload's descriptor table (runtime/fd_table.h).
//   base.slab             the lock of every object cache (base/slab.h), a BaseMutex.
//   base.fault_registry   the fail-nth thread registry (base/fault.h), a BaseMutex.
//
// The engine's own locks (engine_lock_order.h) sit between the gate and the other three: engine paths
// take the slab and fault-registry locks, and install fds, under engine locks, and none of these three is
// held across anything that locks.
#pragma once

#include "uiommufd/lockdep/lock_class_key.h"

namespace uiommufd::lock_order {

extern lockdep::LockClassKey kEngineGate;
extern lockdep::LockClassKey kFdTable;
extern lockdep::LockClassKey kSlab;
extern lockdep::LockClassKey kFaultRegistry;

}  // namespace uiommufd::lock_order
