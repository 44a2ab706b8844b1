// Device: a (mock) device bound to a Context. Attaching it to an IOAS picks or creates an automatic HWPT
// for it (the kernel's auto-domain path); attaching to an HWPT uses that one.
#pragma once

#include <cstdint>

#include "uiommufd/base/result.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/object.h"

namespace uiommufd {

class Device : public Object {
 public:
  enum class Kind : std::uint8_t {
    kMock,      // the kernel selftest's mock device: 2 KiB mock domains
    kSoftware,  // a device behind a 4 KiB software page table
  };

  // Creates and binds a device; returns its id. ENOMEM, ENOSPC.
  static Result<std::uint32_t> create(Context& ctx, Kind kind);
  // The same for a driver that owns the device (the kernel's iommufd_device_bind): the returned reference
  // is the driver's user, so IOMMU_DESTROY of the device id is EBUSY until unbind(). ENOMEM, ENOSPC.
  static Result<ObjectRef<Device>> bind(Context& ctx, Kind kind);
  // Detaches the device if attached and destroys it, waiting for operations in flight (the kernel's
  // iommufd_device_unbind). Consumes the driver's reference.
  static void unbind(ObjectRef<Device> device);

  // Attaches to `pt_id`: an IOAS (an existing automatic HWPT of the right kind on it, else a new one) or
  // an HWPT. Returns the HWPT id. EINVAL if already attached, for an id of another type, or for an HWPT
  // whose domain does not suit the device; ENOENT for an unknown id; the HWPT's errors.
  Result<std::uint32_t> attach(std::uint32_t pt_id) EXCLUDES(mu_);
  // Moves the device to `pt_id` in one step; the old HWPT is released after the new one is in place. A
  // replace onto the HWPT the device already uses (by its id, or by its IOAS, which finds that same
  // automatic HWPT) succeeds and changes nothing, as in the kernel's iommufd_device_do_replace().
  Result<std::uint32_t> replace(std::uint32_t pt_id) EXCLUDES(mu_);
  // EINVAL if not attached.
  Status detach() EXCLUDES(mu_);
  // The attached HWPT's id, 0 when detached.
  std::uint32_t hwpt_id() EXCLUDES(mu_);

 protected:
  void destroy() override;

 private:
  Device(Context& ctx, Kind kind) : Object(ctx, ObjectType::kDevice), kind_(kind) {}
  // A hold on the HWPT `pt_id` names: that HWPT, or on an IOAS an existing automatic HWPT of the right
  // kind, else a new automatic one.
  Result<HwPagetable::DeviceHold> attach_target(std::uint32_t pt_id);

  const Kind kind_;
  lockdep::Mutex mu_{lock_order::kDeviceMutex};
  HwPagetable::DeviceHold hwpt_ GUARDED_BY(mu_);
};

}  // namespace uiommufd
