// Device: a (mock) device bound to a Context. Attaching it to an IOAS picks or creates an automatic HWPT
// for it (the kernel's auto-domain path); attaching to an HWPT uses that one.
#pragma once

#include <cstdint>

#include "uiommufd/base/result.h"
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
  // an HWPT. Returns the HWPT id. EINVAL if already attached; ENOENT for an unknown id; the HWPT's errors.
  Result<std::uint32_t> attach(std::uint32_t pt_id) EXCLUDES(mu_);
  // Moves the device to `pt_id` in one step; the old HWPT is released after the new one is in place.
  Result<std::uint32_t> replace(std::uint32_t pt_id) EXCLUDES(mu_);
  // EINVAL if not attached.
  Status detach() EXCLUDES(mu_);
  // The attached HWPT's id, 0 when detached.
  std::uint32_t hwpt_id() EXCLUDES(mu_);

 protected:
  void destroy() override;

 private:
  Device(Context& ctx, Kind kind) : Object(ctx, ObjectType::kDevice), kind_(kind) {}
  Result<HwPagetable*> attach_target(std::uint32_t pt_id);
  void release_hwpt(HwPagetable* hwpt);

  Kind kind_;
  lockdep::Mutex mu_{"device.mutex"};
  HwPagetable* hwpt_ GUARDED_BY(mu_) = nullptr;  // holds a user
};

}  // namespace uiommufd
