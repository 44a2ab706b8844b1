// HWPTs, the kernel's iommufd_hw_pagetable: what a device (or one PASID of it) is attached to.
//
//   - HwptPaging: a paging domain that mirrors one IOAS. It holds its IOAS (a user) and is listed on it;
//     destroying it removes the domain from the IOAS (unmapping, and unpinning when it was the last).
//     Automatic ones are made and found by attaching a device to an IOAS and go with their last device;
//     user ones come from IOMMU_HWPT_ALLOC and live until IOMMU_DESTROY.
//   - HwptNested: a stage-1 table owned by the guest on top of a NEST_PARENT paging HWPT (a user of it);
//     the mock driver models its IOTLB (NestedDomain), which IOMMU_HWPT_INVALIDATE clears.
//
// docs/semantics.md#hwpt has the rules; the kernel's are in drivers/iommu/iommufd/hw_pagetable.c.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "uiommufd/base/result.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/domain/domain.h"
#include "uiommufd/iopt/dirty_bitmap.h"
#include "uiommufd/objects/fault_queue.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/objects/object.h"

namespace uiommufd {

class HwptPaging;
class Viommu;

// IOMMU_HWPT_ALLOC's arguments past the struct rules.
struct HwptAllocArgs {
  std::uint32_t flags = 0;  // HwptAllocFlags
  std::uint32_t dev_id = 0;
  std::uint32_t pt_id = 0;  // an IOAS (paging) or a NEST_PARENT paging HWPT (nested)
  UserData data;            // type kHwptDataNone with len 0, or a driver type with its struct
  std::uint32_t fault_id = 0;
};

class HwPagetable : public Object {
 public:
  // IOMMU_HWPT_ALLOC: a paging HWPT on an IOAS or a nested one on a paging HWPT, for device `dev_id`. It
  // is published only after `respond(id)` succeeds (the ioctl's reply); a failure of respond undoes
  // everything and returns its error. Errors in the kernel's order (iommufd_hwpt_alloc(),
  // iommufd_hwpt_paging_alloc(), iommufd_hwpt_nested_alloc()):
  //   EINVAL   data type NONE with a length, or another type without one;
  //   ENOENT   dev_id is not a device;
  //   EINVAL   pt_id is unknown or neither an IOAS, a paging HWPT nor a vIOMMU;
  //   paging:  EOPNOTSUPP for flags or data the driver cannot take, unknown flags, DIRTY_TRACKING on a
  //            device that cannot track, FAULT_ID_VALID with NEST_PARENT; ENOMEM/ENOSPC (the object);
  //            the driver's (EOPNOTSUPP, EINVAL, EFAULT, ENOMEM); add_domain's (EADDRINUSE, ...);
  //   nested:  EOPNOTSUPP for flags other than PASID and FAULT_ID_VALID, no data, or no nesting in the
  //            driver; EINVAL for a parent that is automatic, not NEST_PARENT or of another driver;
  //            ENOMEM/ENOSPC; the driver's;
  //   vIOMMU:  EINVAL a device of another IOMMU; EOPNOTSUPP for flags other than PASID and FAULT_ID_VALID
  //            or no data; ENOMEM/ENOSPC (the object, first); the driver's nested domain's;
  //   ENOENT   FAULT_ID_VALID: fault_id names no fault queue (iommufd_get_fault()); else the HWPT holds the
  //            queue (a user, so IOMMU_DESTROY of the queue is EBUSY until the HWPT goes) and its devices'
  //            page requests go there;
  //   then respond's.
  using Respond = std::function<Status(std::uint32_t hwpt_id)>;
  static Result<std::uint32_t> alloc(Context& ctx, const HwptAllocArgs& args, const Respond& respond = {});

  // IOMMU_HWPT_INVALIDATE on `hwpt_id`; array.entry_num comes back as the number of entries handled (0
  // when the call fails before the driver). EINVAL: a non-empty array with no pointer, an entry_len of 0
  // or above 4 KiB, or more than 2^19 entries; ENOENT: unknown id; EINVAL: neither a nested HWPT nor a
  // vIOMMU; then the driver's (NestedDomain::invalidate()).
  static constexpr std::uint32_t kInvalidateEntryNumMax = 1u << 19;
  static Status invalidate(Context& ctx, std::uint32_t hwpt_id, UserDataArray& array);

  // A device's hold on the HWPT it (or one of its PASIDs) is attached to: one user of the HWPT and, for a
  // paging HWPT, one count in its device tally, taken and given back together. Move-only and released
  // exactly once, so no path can drop one without the other: a replace onto the page table the device
  // already uses takes a second hold, then drops the first, and both counts come back to where they were
  // (the kernel's replace onto the current HWPT is a no-op). The last hold of an automatic HWPT destroys
  // it (the kernel's iommufd_hw_pagetable_put()); release() then waits for operations in flight on it, so
  // it must not run under an engine lock.
  class DeviceHold {
   public:
    DeviceHold() = default;
    DeviceHold(DeviceHold&& o) noexcept : hwpt_(std::exchange(o.hwpt_, nullptr)) {}
    DeviceHold& operator=(DeviceHold&& o) noexcept {
      release();
      hwpt_ = std::exchange(o.hwpt_, nullptr);
      return *this;
    }
    DeviceHold(const DeviceHold&) = delete;
    DeviceHold& operator=(const DeviceHold&) = delete;
    ~DeviceHold() { release(); }

    HwPagetable* get() const { return hwpt_; }
    HwPagetable* operator->() const { return hwpt_; }
    explicit operator bool() const { return hwpt_ != nullptr; }
    void release();

   private:
    friend class HwPagetable;
    explicit DeviceHold(HwPagetable* hwpt) : hwpt_(hwpt) {}
    HwPagetable* hwpt_ = nullptr;
  };

  // A new device hold (its own user; the caller keeps whatever reference it used to reach the HWPT).
  // ENOENT when the HWPT is on its way out (an automatic one whose last device has gone).
  virtual Result<DeviceHold> hold_for_device() = 0;

  // Allocated with IOMMU_HWPT_ALLOC_PASID: may be attached to a PASID, and to the RID while PASIDs are.
  bool pasid_compat() const { return pasid_compat_; }
  // The driver whose domain this is; a device of another driver cannot use it.
  const IommuDriver& owner() const { return *owner_; }
  // The paging HWPT itself, or null for a nested one.
  virtual HwptPaging* paging() { return nullptr; }
  // Whether the domain tracks dirty pages (allocated with DIRTY_TRACKING: the mock's dirty_ops).
  virtual bool dirty_tracking() const { return false; }
  // The fault queue page requests through this HWPT go to (the kernel's hwpt->fault and the domain's
  // iopf_handler), or null. Set before the HWPT is published and never changed.
  FaultQueue* fault() const { return fault_.get(); }

 protected:
  HwPagetable(Context& ctx, ObjectType type, const IommuDriver& owner, bool pasid_compat)
      : Object(ctx, type), owner_(&owner), pasid_compat_(pasid_compat) {}
  static DeviceHold make_hold(HwPagetable* hwpt) { return DeviceHold(hwpt); }
  // Gives back what hold_for_device() took.
  virtual void release_device_hold() = 0;
  // The destroy ops' common part (__iommufd_hwpt_destroy()): the hold on the fault queue goes.
  void release_fault() { fault_.reset(); }

 private:
  const IommuDriver* const owner_;
  const bool pasid_compat_;
  ObjectRef<FaultQueue> fault_;  // a user of the queue; written only before the HWPT is published
};

class HwptPaging : public HwPagetable {
 public:
  struct Props {
    const IommuDriver* owner = nullptr;  // required
    bool auto_domain = false;
    bool nest_parent = false;
    bool dirty_tracking = false;
    bool pasid_compat = false;
  };

  // Creates the HWPT with an id reserved but unpublished, runs `before_add` (if any: a device's checks that
  // the kernel makes before the domain is filled), then adds its domain to `ioas` (filling it from every
  // area) and to the IOAS's list. The caller publishes it with Context::finalize() or undoes it with
  // abort_reserved(). Errors: ENOMEM/ENOSPC (the object, its id, its place on the list), before_add's, then
  // add_domain's (EINVAL, EADDRINUSE, EFAULT, ENOMEM, ENOENT); on failure nothing is left.
  using BeforeAdd = std::function<Status(HwptPaging&)>;
  static Result<HwptPaging*> create_reserved_locked(Ioas& ioas, std::unique_ptr<Domain> domain,
                                                    const Props& props, const BeforeAdd& before_add = {})
      REQUIRES(ioas.mutex());
  // create_reserved_locked(), published, with one extra user for the caller.
  static Result<ObjectRef<HwptPaging>> create_locked(Ioas& ioas, std::unique_ptr<Domain> domain,
                                                     const Props& props) REQUIRES(ioas.mutex());
  // Undoes create_reserved_locked() of an HWPT that was never published: off the IOAS, id released, freed.
  void abort_reserved() EXCLUDES(ioas().mutex());
  void abort_reserved_locked() REQUIRES(ioas().mutex());

  // Takes the domain out of the IOAS (unmapping, and unpinning where it held the last pin) and off the
  // IOAS's HWPT list, leaving the object itself to be destroyed later; a second call does nothing. The v6.2
  // selftest's mock domain does this when its selftest object goes (docs/abi.md#test-cmd-layouts).
  void remove_from_ioas() EXCLUDES(ioas().mutex());

  // A hold for a device attaching through the IOAS (its lock already held).
  Result<DeviceHold> hold_for_device_locked() REQUIRES(ioas().mutex());
  Result<DeviceHold> hold_for_device() override EXCLUDES(ioas().mutex());

  Domain& domain() { return *domain_; }
  Ioas& ioas() const { return *ioas_; }
  bool auto_domain() const { return auto_domain_; }
  bool nest_parent() const { return nest_parent_; }
  HwptPaging* paging() override { return this; }
  bool dirty_tracking() const override { return dirty_tracking_; }
  // IOMMU_HWPT_SET_DIRTY_TRACKING (IoPagetable::set_dirty_tracking()): EOPNOTSUPP unless the HWPT was
  // allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING.
  Status set_dirty_tracking(bool enable) { return ioas().iopt().set_dirty_tracking(domain_.get(), enable); }
  // IOMMU_HWPT_GET_DIRTY_BITMAP: the dirty bits of a range into a user bitmap (iopt/dirty_bitmap.h).
  Status read_dirty_bitmap(const DirtyBitmapRequest& req) {
    return uiommufd::read_dirty_bitmap(ioas().iopt(), domain_.get(), req);
  }
  // The dirty bytes of a range as runs, fn(iova, length), cleared unless no_clear (iopt/dirty_bitmap.h).
  template <typename Fn>
  Status for_each_dirty_run(std::uint64_t iova, std::uint64_t length, bool no_clear, Fn&& fn) {
    return uiommufd::for_each_dirty_run(ioas().iopt(), domain_.get(), iova, length, no_clear,
                                        std::forward<Fn>(fn));
  }
  // Devices attached; for tests.
  std::uint32_t device_count() EXCLUDES(ioas().mutex());

 protected:
  void destroy() override;
  void release_device_hold() override;

 private:
  void remove_from_ioas_locked() REQUIRES(ioas().mutex());

  HwptPaging(Context& ctx, Ioas& ioas, std::unique_ptr<Domain> domain, const Props& props)
      : HwPagetable(ctx, ObjectType::kHwptPaging, *props.owner, props.pasid_compat),
        ioas_(ObjectRef<Ioas>::hold(ioas)),
        domain_(std::move(domain)),
        auto_domain_(props.auto_domain),
        nest_parent_(props.nest_parent),
        dirty_tracking_(props.dirty_tracking) {}

  ObjectRef<Ioas> ioas_;  // a user of the IOAS, held until destroy() (or the object's freeing)
  std::unique_ptr<Domain> domain_;
  const bool auto_domain_;
  const bool nest_parent_;
  const bool dirty_tracking_;
  bool added_ GUARDED_BY(ioas().mutex()) = false;  // the domain is on the IOAS's IoPagetable
  // Holds of attached devices. Reaching 0 on an automatic HWPT takes it off the IOAS's list at once.
  std::uint32_t devices_ GUARDED_BY(ioas().mutex()) = 0;
  bool listed_ GUARDED_BY(ioas().mutex()) = false;  // on the IOAS's HWPT list
};

class HwptNested : public HwPagetable {
 public:
  ~HwptNested() override;
  Result<DeviceHold> hold_for_device() override;
  NestedDomain& domain() { return *domain_; }
  HwptPaging& parent() const { return *parent_; }
  // The vIOMMU it was allocated on (a user of it), or null for one allocated on a paging HWPT.
  Viommu* viommu() const { return viommu_; }
  // A nested HWPT on `viommu` (its parent is the vIOMMU's), reserved but unpublished: the object first, then
  // the driver's domain (ENOMEM/ENOSPC, then the driver's errors; nothing is left on failure).
  static Result<HwptNested*> create_on_viommu(Context& ctx, Viommu& viommu, const HwptAllocArgs& args);

 protected:
  void release_device_hold() override { drop_user(); }
  void destroy() override { release_fault(); }

 private:
  friend class HwPagetable;
  HwptNested(Context& ctx, HwptPaging& parent, std::unique_ptr<NestedDomain> domain, bool pasid_compat)
      : HwPagetable(ctx, ObjectType::kHwptNested, parent.owner(), pasid_compat),
        parent_(ObjectRef<HwptPaging>::hold(parent)),
        domain_(std::move(domain)) {}

  ObjectRef<HwptPaging> parent_;  // a user of the parent until the object is freed
  std::unique_ptr<NestedDomain> domain_;
  Viommu* viommu_ = nullptr;  // with a user of it until the object is freed
};

}  // namespace uiommufd
