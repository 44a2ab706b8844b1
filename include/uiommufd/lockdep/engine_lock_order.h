// The engine's lock order, written once, in code. Every engine lock is constructed with its class key
// from this file, and the chain below is declared to the validator (lockdep::declare_order) before any of
// them is taken, so an acquisition against it is reported the first time it happens, not only once both
// orders have been seen. A lock may be taken while holding only locks above it. The reasons per level are
// in docs/locking.md#levels; each line here gives the short one.
//
// The keys live with the validator (as a kernel's lock ranks live with its locks) so that every engine
// layer, from pages up to objects, can name its lock's class; the validator itself knows nothing of them.
//
//   pinned_ranges.mutex   a driver's own lock (objects/pinned_ranges.h): held across pin_pages and taken
//                         in the unmap callback, so outside everything of the engine.
//   device.mutex          a device's attachment; held across picking or creating its HWPT.
//   access.ioas_lock      an access's IOAS: pin, unpin and rw hold it across the I/O page-table locks, and
//                         change-IOAS across adding the access to an IOAS. Dropped around the unmap
//                         callback.
//   ioas.mutex            the IOAS's HWPT list; held across creating a domain and attaching it.
//   iopt.domains_rwsem    the set of domains. Read while an area is half-built (map fill, unmap teardown),
//                         so an attach never sees it half-filled; write to add or remove a domain or an
//                         access, or to change large pages.
//   iopt.iova_rwsem       the area, reserved and allowed trees and iova_alignment.
//   iopt.access_list      the accesses to notify; taken under both rwsems to change, alone to read, and
//                         around nothing.
//   pages.registry        every live Pages, for MD_CHECK_REFS; Pages are made and freed under the I/O
//                         page-table locks, and the check takes each pages.mutex inside it.
//   dmabuf.resv           a dma-buf's reservation lock (pages/dma_buf.h): held across an import and
//                         across the exporter's revoke, which takes each importer's pages.mutex inside
//                         it (pages.c, iopt_map_dmabuf() and iopt_revoke_notify()).
//   pages.mutex           one Pages object's pins; its areas' domain map and unmap run under it.
//   pages.mlock           the process-wide mlock users of each page; around mlock / munlock only.
//   viommu.queues         a vIOMMU's hardware-queue slots; held across checking a new queue's address in
//                         the parent domain.
//   domain.page_table     one software domain's table; every domain operation takes it.
//   viommu.vdevs          a vIOMMU's virtual-id table; taken under device.mutex (vDEVICE allocation,
//                         attach), around nothing but the table and a device's cache words.
//   viommu.veventqs       a vIOMMU's event queues by type; read while an event is reported into one (so
//                         across eventq.lock), written to add or remove a queue (across
//                         taking its object's id).
//   context.objects       the object table; never held across anything that locks.
//   vevent.read           one vEVENT queue's reader: held across a read's copies out of the queue, and
//                         across eventq.lock within it; nothing of the engine is held around it.
//   eventq.lock           one event queue's deliver list and response table; taken under device.mutex to
//                         deliver a fault; around list moves and the readiness signal of its file only.
//
// Not in the chain: the access_unmap LockdepMap of each IOAS, which is not a lock (the unmap path holds it
// shared around the callbacks with no engine lock held; access destroy, detach and replace touch it), and
// the process-wide locks that fork takes, whose order is fork_lock_order.h: the runtime's engine gate
// before every engine lock, the descriptor table, the slab and the fault registry after them.
#pragma once

#include "uiommufd/lockdep/lock_class_key.h"

namespace uiommufd::lock_order {

extern lockdep::LockClassKey kPinnedRangesMutex;
extern lockdep::LockClassKey kDeviceMutex;
extern lockdep::LockClassKey kAccessIoasLock;
extern lockdep::LockClassKey kIoasMutex;
extern lockdep::LockClassKey kContextIoasCreation;
extern lockdep::LockClassKey kIoptDomainsRwsem;
extern lockdep::LockClassKey kIoptIovaRwsem;
extern lockdep::LockClassKey kIoptAccessList;
extern lockdep::LockClassKey kPagesRegistry;
extern lockdep::LockClassKey kDmaBufResv;
extern lockdep::LockClassKey kPagesMutex;
extern lockdep::LockClassKey kPagesMlock;
extern lockdep::LockClassKey kViommuQueues;
extern lockdep::LockClassKey kDomainPageTable;
extern lockdep::LockClassKey kViommuVdevs;
extern lockdep::LockClassKey kContextObjects;
extern lockdep::LockClassKey kVeventRead;
extern lockdep::LockClassKey kViommuVeventqs;
extern lockdep::LockClassKey kEventqLock;

// Declares the chain above to the validator. Runs during static initialisation of any program that
// links an engine lock; calling it again adds nothing new.
void declare_engine_lock_order();

}  // namespace uiommufd::lock_order
