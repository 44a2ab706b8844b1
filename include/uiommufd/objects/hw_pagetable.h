// HwPagetable: a paging HWPT, a Domain that mirrors one IOAS. It holds its IOAS (a user) and is listed on
// the IOAS; destroying it removes the domain from the IOAS (unmapping, and unpinning when it was the last).
#pragma once

#include <cstdint>
#include <memory>

#include "uiommufd/base/result.h"
#include "uiommufd/domain/domain.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/object.h"

namespace uiommufd {

class HwPagetable : public Object {
 public:
  // Creates the HWPT and adds its domain to `ioas` (filling it from every area). The caller holds
  // ioas.mutex(). Returns the object with one extra user for the caller (the attaching device). Errors
  // are ENOMEM/ENOSPC (the object, its id, its place on the IOAS's list) and add_domain's (EINVAL,
  // EADDRINUSE, EFAULT, ENOMEM, ENOENT); on failure nothing is left.
  static Result<ObjectRef<HwPagetable>> create_locked(Ioas& ioas, std::unique_ptr<Domain> domain,
                                                      bool auto_domain) REQUIRES(ioas.mutex());

  // Takes the domain out of the IOAS (unmapping, and unpinning where it held the last pin) and off the
  // IOAS's HWPT list, leaving the object itself to be destroyed later; a second call does nothing. The v6.2
  // selftest's mock domain does this when its selftest object goes (semantics §6.4).
  void remove_from_ioas();

  Domain& domain() { return *domain_; }
  Ioas& ioas() { return *ioas_; }
  bool auto_domain() const { return auto_domain_; }
  // Devices attached (guarded by the IOAS's mutex).
  std::uint32_t devices = 0;

 protected:
  void destroy() override;

 private:
  HwPagetable(Context& ctx, Ioas& ioas, std::unique_ptr<Domain> domain, bool auto_domain)
      : Object(ctx, ObjectType::kHwptPaging), ioas_(&ioas), domain_(std::move(domain)), auto_domain_(auto_domain) {}

  Ioas* ioas_;  // a user of the IOAS is held for the HWPT's lifetime
  std::unique_ptr<Domain> domain_;
  bool auto_domain_;
  bool added_ = false;
};

}  // namespace uiommufd
