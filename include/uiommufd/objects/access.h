// Access: an emulated device that uses an IOAS without an IOMMU (the kernel's iommufd_access). It pins
// pages by IOVA, reads and writes by IOVA, and is told through its unmap callback when a range it may be
// using is unmapped; it must then unpin what it pinned there before returning.
//
// Lifetime (newest kernel semantics): created unattached; attach / replace / detach move it between
// IOASes, and every move away from an IOAS calls the unmap callback for the whole range from the
// caller's thread. destroy() does the same and waits for callbacks in flight; once it returns, no callback
// runs or will run.
//
// Driver rule, checked by the lock validator: never hold a lock across destroy / detach / replace that the
// unmap callback takes. Destroy waits for the callback, the callback waits for the lock: a deadlock that
// only some runs hit, and that the access_unmap map turns into a report on every run.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "uiommufd/base/result.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/base/wait_word.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/object.h"

namespace uiommufd {

class Access : public Object, private AccessHook {
 public:
  struct Ops {
    // Whether the driver pins pages (pin_pages); it then needs page-aligned IOVAs.
    bool needs_pin_pages = true;
    // Called with [iova, iova + length − 1] of a range being unmapped; must unpin every pin it holds
    // that intersects the range before returning. Runs with no engine lock held.
    std::function<void(std::uint64_t iova, std::uint64_t length)> unmap;
    // An access the engine itself uses (the kernel's iommufd_access_create_internal(), for a hardware
    // queue's memory): it has no unmap callback and its pins lock their areas, so an unmap over them is
    // EBUSY until they are unpinned (Area::num_locks()).
    bool internal = false;
  };
  // pin_pages flags.
  static constexpr std::uint32_t kPinWrite = 1 << 0;
  // rw flags (the kernel's IOMMUFD_ACCESS_RW_*).
  static constexpr std::uint32_t kRwWrite = 1 << 0;
  static constexpr std::uint32_t kRwSlowPath = 1 << 2;

  // Creates an unattached access. The returned reference is the driver's; give it back to destroy().
  // ENOMEM, ENOSPC.
  static Result<ObjectRef<Access>> create(Context& ctx, Ops ops);

  // EINVAL if already attached; ENOENT for a bad IOAS id; EADDRINUSE if the IOAS has areas the access's
  // alignment does not allow.
  Status attach(std::uint32_t ioas_id) EXCLUDES(ioas_lock_);
  // ENOENT if not attached or a bad id; the same IOAS is a no-op; EBUSY while a detach runs elsewhere.
  Status replace(std::uint32_t ioas_id) EXCLUDES(ioas_lock_);
  // Not attached: reported (the kernel WARNs), nothing else happens.
  void detach() EXCLUDES(ioas_lock_);
  // Destroys the access (see above). Consumes the driver's reference.
  static void destroy(ObjectRef<Access> access);

  // Pins [iova, iova + length − 1]: one AccessPage per backing page. EINVAL: length 0, an access that does
  // not pin pages or has no unmap callback, a range not page aligned in its backing, an area being
  // unmapped; EOVERFLOW; ENOENT: not attached, or a hole; EPERM: kPinWrite on a read-only area.
  Status pin_pages(std::uint64_t iova, std::uint64_t length, std::vector<AccessPage>* pages,
                   std::uint32_t flags) EXCLUDES(ioas_lock_);
  // Undoes a pin_pages() of exactly (iova, length); works while the area is being unmapped. A mismatch is
  // reported (log warning, unpin_mismatches()) and the pin stays.
  void unpin_pages(std::uint64_t iova, std::uint64_t length) EXCLUDES(ioas_lock_);
  // Reads or writes (kRwWrite) through IOVA without a prior pin. EINVAL, EOVERFLOW, ENOENT, EPERM as for
  // pin_pages; EFAULT when the backing memory is gone.
  Status rw(std::uint64_t iova, void* data, std::uint64_t length, std::uint32_t flags) EXCLUDES(ioas_lock_);

  std::uint64_t unpin_mismatches() const { return unpin_mismatches_.load(); }
  // The attached IOAS's id, 0 when not attached.
  std::uint32_t ioas_id() EXCLUDES(ioas_lock_);

 protected:
  // The destroy op: detaches with the full-range callback.
  void destroy() override;

 private:
  Access(Context& ctx, Ops ops) : Object(ctx, ObjectType::kAccess), ops_(std::move(ops)) {}
  std::uint64_t alignment() const { return ops_.needs_pin_pages ? kPageSize : 1; }
  enum class Move { kAttach, kReplace, kDetach };
  // The kernel's change-IOAS: moves to `next` (null: detach), adopting the caller's user of `next` (kept
  // on success, dropped on failure) and releasing the old IOAS. ioas_lock is held throughout except
  // around the unmap callback.
  Status change_ioas(Move move, Ioas* next) EXCLUDES(ioas_lock_);

  // AccessHook
  bool try_get() override;
  void put() override { drop_user(); }
  void unmap_callback(std::uint64_t iova, std::uint64_t length) override;

  const Ops ops_;
  lockdep::Mutex ioas_lock_{lock_order::kAccessIoasLock};
  // The IOAS that pin and rw use (null while detached or moving), and the one unpin uses (the old IOAS
  // until a move has finished calling back).
  Ioas* ioas_ GUARDED_BY(ioas_lock_) = nullptr;        // borrowed from ioas_unpin_'s hold, or null
  ObjectRef<Ioas> ioas_unpin_ GUARDED_BY(ioas_lock_);  // the access's user of its IOAS
  std::atomic<std::uint64_t> unpin_mismatches_{0};
  // Bumped each time a move away from an IOAS has finished (ioas_ == ioas_unpin_ again).
  WaitWord moves_done_;
};

}  // namespace uiommufd
