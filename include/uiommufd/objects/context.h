// Context: one open of /dev/iommu (the kernel's iommufd_ctx): the object table and the accounting mode.
//
// Ids start at 1 and are handed out lowest-free-first, so a destroyed object's id is reused. Allocation
// reserves an id (invisible to lookups) until finalize() publishes the object; abort() releases it.
// Destroying the Context tears every object down synchronously, leaves first, in ascending id order per
// pass (the kernel's close()): no pin, charge or object survives it.
//
// Thread safety: all methods may be called from any thread. The table lock is innermost.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "uiommufd/base/result.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/lockdep/shared_mutex.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/objects/object.h"

namespace uiommufd {

class Context {
 public:
  // `vfio_compat`: opened as /dev/vfio/vfio, which charges pinned pages to the process (AccountMode::kMm).
  static Result<std::unique_ptr<Context>> create(bool vfio_compat = false);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Reserves an id for `obj` (ENOSPC past 2^31 − 1 ids, ENOMEM: the tables cannot grow, or fault site
  // "objects.alloc"). The object is owned by the table from here, also on failure (it is freed then); it
  // is invisible to lookups until finalize().
  Result<std::uint32_t> reserve(std::unique_ptr<Object> obj) EXCLUDES(mu_);
  // Publishes a reserved id. Never fails and never allocates: reserve() made the room.
  void finalize(std::uint32_t id) EXCLUDES(mu_);
  // Ends the creation of a reserved object whose set-up gave `st`: when that is ok, runs `respond` (the
  // ioctl's reply; may be empty) with the id, then publishes the object and returns the id; otherwise, or
  // when respond fails, undoes the object through its destroy op, releases the id and returns the error.
  Result<std::uint32_t> finish_create(Object& obj, Status st,
                                      const std::function<Status(std::uint32_t)>& respond) EXCLUDES(mu_);
  // Undoes reserve(): frees the object without its destroy op (its creator has already undone whatever
  // it did) and releases the id, so the next object gets it.
  void abort(std::uint32_t id) EXCLUDES(mu_);

  // A short-term reference to a live object of `type` (kAny: any type). ENOENT: no such id, a reserved
  // id, a type mismatch, an object being destroyed, or fault site "objects.lookup".
  template <typename T>
  Result<ObjectRef<T>> get(std::uint32_t id, ObjectType type) {
    Object* obj = nullptr;
    TRY(lookup(id, type, &obj));
    return ObjectRef<T>(static_cast<T*>(obj));
  }

  // IOMMU_DESTROY: ENOENT for an unknown id; EBUSY while anything but the table holds the object (another
  // object, a driver, or an operation in flight). Never waits.
  Status destroy(std::uint32_t id) EXCLUDES(mu_);
  // Destroys `obj` whose caller holds one user (e.g. a driver's reference), first sleeping until the
  // operations in flight on it have finished (the kernel's iommufd_object_destroy_user()); each one's
  // drop_user() wakes the wait. After kDestroyWaitLimit, as in the kernel, it gives up: the caller's user
  // is dropped, the object stays until the Context goes, and the result is false (an error is logged).
  // Must not be called with an engine lock held.
  static constexpr std::chrono::seconds kDestroyWaitLimit{60};
  // `tombstone`: the id stays taken until the Context goes, so IOMMU_DESTROY of it is ENOENT and no new
  // object gets it (the kernel's iommufd_object_tombstone_user(), for a vDEVICE whose device goes first).
  bool destroy_user(Object* obj, bool tombstone = false) EXCLUDES(mu_);

  // IOMMU_OPTION RLIMIT_MODE: the accounting mode of new pages. SET needs CAP_SYS_RESOURCE (EPERM) and a
  // context with no objects (EBUSY).
  bool mm_account_mode() const { return mm_mode_.load(); }
  Status set_mm_account_mode(bool mm) EXCLUDES(mu_);
  AccountMode account_mode() const { return default_account_mode(mm_account_mode()); }

  std::size_t object_count() EXCLUDES(mu_);

  // Short-term references to every live object of `type`, in ascending id order (objects being destroyed
  // are skipped). ENOMEM if the list cannot be had.
  Result<std::vector<ObjectRef<Object>>> live_objects(ObjectType type) EXCLUDES(mu_);

  // The kernel's ioas_creation_lock: an IOAS is published (finalize) holding it shared, so that
  // IOMMU_IOAS_CHANGE_PROCESS, holding it exclusively, sees every IOAS there will be while it holds all
  // their IOVA locks; those are taken nested under it (its dep_map is their nest lock).
  lockdep::SharedMutex& ioas_creation_lock() RETURN_CAPABILITY(ioas_creation_) { return ioas_creation_; }

  // Regions of memory an object offers for mmap() of the iommufd (the kernel's iommufd_mmap table,
  // driver.c _iommufd_alloc_mmap()): each has a page-aligned offset, the lowest free one at or above one page
  // (offset 0 is never handed out), an owner object, and a file whose pages are the region.
  struct MmapRegion {
    Object* owner = nullptr;
    std::uint64_t length = 0;
    int memfd = -1;  // borrowed from the owner, which keeps it open while the region exists
  };
  // ENOMEM when the table cannot grow (fault site "objects.mmap"); EINVAL for a length 0 or not page aligned.
  Result<std::uint64_t> alloc_mmap(Object& owner, int memfd, std::uint64_t length) EXCLUDES(mu_);
  void destroy_mmap(std::uint64_t offset) EXCLUDES(mu_);
  // mmap() of the iommufd at `offset` for `length` bytes: the region that starts exactly there and has
  // exactly that length, with a user of its owner taken for the mapping (the vma's). ENXIO otherwise, or
  // when the owner is being destroyed.
  Result<MmapRegion> get_mmap(std::uint64_t offset, std::uint64_t length) EXCLUDES(mu_);

  // The VFIO-compatibility IOAS (IOMMU_VFIO_IOAS, docs/semantics.md#vfio-compat): the one the VFIO container
  // ioctls act on. ENODEV when none is set. Destroying that IOAS clears it.
  Result<std::uint32_t> vfio_ioas_id() EXCLUDES(mu_);
  // `id` must name a live IOAS (the caller has looked it up).
  void set_vfio_ioas_id(std::uint32_t id) EXCLUDES(mu_);
  void clear_vfio_ioas_id() EXCLUDES(mu_);

 private:
  Context() = default;
  // The object through *out rather than a Result: this runs on every ioctl, and a packed Result read back
  // right after it is written stalls on store forwarding.
  Status lookup(std::uint32_t id, ObjectType type, Object** out) EXCLUDES(mu_);
  // Removes `obj` from the table if only `expected_users` hold it; false otherwise.
  bool remove_if_users(Object* obj, std::uint32_t expected_users) EXCLUDES(mu_);
  void free_object(Object* obj, bool tombstone = false);

  // Makes the lock-free lookup table hold `id`, replacing it by a larger copy if needed. Throws
  // std::bad_alloc, leaving the table as it was.
  void grow_published_locked(std::uint32_t id) REQUIRES(mu_);
  // Points the lookup table's entry for `id` at `obj` (null: unpublished). Never allocates: a published
  // id is within the table (grow_published_locked() ran when it was reserved).
  void publish_locked(std::uint32_t id, Object* obj) REQUIRES(mu_);

  lockdep::SharedMutex ioas_creation_{lock_order::kContextIoasCreation};
  lockdep::Mutex mu_{lock_order::kContextObjects};
  // Index = id; null = free. A reserved id holds its object with `published` false.
  struct Slot {
    std::unique_ptr<Object> obj;
    bool published = false;
    bool tombstone = false;  // no object, and the id is not handed out again
  };
  std::vector<Slot> slots_ GUARDED_BY(mu_);
  // The published objects again, for lookup() without the lock: written under mu_, read lock-free under a
  // hazard pointer (base/hazard.h), so free_object() waits for readers between their read and their
  // count. Growing replaces the table; replaced tables stay allocated until the Context goes, because a
  // reader may still be reading one.
  struct PublishedTable {
    std::uint32_t capacity;
    std::unique_ptr<std::atomic<Object*>[]> objs;
  };
  std::atomic<PublishedTable*> published_{nullptr};
  std::vector<std::unique_ptr<PublishedTable>> tables_ GUARDED_BY(mu_);
  std::uint32_t vfio_ioas_id_ GUARDED_BY(mu_) = 0;
  std::map<std::uint64_t, MmapRegion> mmaps_ GUARDED_BY(mu_);  // by offset
  std::atomic<bool> mm_mode_{false};
  // Where destroy_user() sleeps and every object's drop_user() wakes it (the kernel's ictx->destroy_wait):
  // on the Context, which outlives its objects.
  WaitWord destroy_wait_;
};

}  // namespace uiommufd
