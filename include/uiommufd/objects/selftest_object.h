// SelftestObject: the kernel selftest's IOMMUFD_OBJ_SELFTEST, the id IOMMU_TEST_OP_MOCK_DOMAIN returns
// (docs/semantics.md#selftest). Two models, as the two test ABIs expect:
//
//   - newest: the object owns a bound mock Device attached to an IOAS or HWPT. Destroying the object
//     detaches, unbinds and deletes the device (and with it an automatic HWPT it was the last user of).
//   - v6.2: the object holds a bare mock-domain HWPT (not automatic) added to an IOAS. Destroying the object
//     removes the domain from the IOAS; the HWPT id stays and must be destroyed on its own.
//
// Both creators take a `respond` step that runs after everything is built but before the object is
// published (the ioctl's reply write); if it fails, everything is undone and its error returned, so a
// failed reply leaves no object, device, HWPT or pin behind.
#pragma once

#include <cstdint>
#include <functional>

#include "uiommufd/base/result.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/object.h"

namespace uiommufd {

class SelftestObject : public Object {
 public:
  struct Ids {
    std::uint32_t stdev_id;  // this object (v6.2: "device id")
    std::uint32_t hwpt_id;
    std::uint32_t idev_id;  // the bound device; 0 in the v6.2 model
  };
  using Respond = std::function<Status(const Ids&)>;

  // Newest model (MOCK_DOMAIN, and MOCK_DOMAIN_FLAGS with Device::kFlag* `dev_flags`). Ids are handed
  // out as the kernel does: this object, then the device, then a new HWPT. Errors: ENOMEM/ENOSPC (ids),
  // EINVAL for unknown dev_flags, then Device::attach's (ENOENT for a bad pt_id, EINVAL for a non-mock
  // HWPT, add_domain's EADDRINUSE/ENOMEM/EFAULT/ENOENT), then respond's.
  static Result<Ids> create_mock_device(Context& ctx, std::uint32_t pt_id, std::uint32_t dev_flags,
                                        const Respond& respond);
  // v6.2 model. ENOENT if `ioas_id` is not an IOAS; ENOMEM/ENOSPC; add_domain's errors; respond's.
  static Result<Ids> create_mock_hwpt(Context& ctx, std::uint32_t ioas_id, const Respond& respond);

  // IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: moves the device to `pt_id` and returns the HWPT id. EINVAL for a
  // v6.2-model object (it has no device); Device::replace's errors.
  Result<std::uint32_t> replace(std::uint32_t pt_id);
  // The mock device (newest model), for the PASID and cache test ops; null in the v6.2 model.
  Device* device() const { return device_.get(); }

 protected:
  void destroy() override;

 private:
  explicit SelftestObject(Context& ctx) : Object(ctx, ObjectType::kSelftest) {}

  // Exactly one is set once the object is published; each holds a user.
  // The driver's reference to its device, and the v6.2 domain's HWPT: each one user, given back by
  // destroy().
  ObjectRef<Device> device_;
  ObjectRef<HwptPaging> hwpt_;
};

}  // namespace uiommufd
