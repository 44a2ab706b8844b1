#include "uiommufd/objects/device.h"

#include <new>

#include "uiommufd/base/try.h"
#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/objects/context.h"

namespace uiommufd {

Result<std::uint32_t> Device::create(Context& ctx, Kind kind) {
  std::unique_ptr<Object> device(new (std::nothrow) Device(ctx, kind));
  if (!device) return Status::error(ENOMEM);
  std::uint32_t id = TRY(ctx.reserve(std::move(device)));
  ctx.finalize(id);
  return id;
}

Result<ObjectRef<Device>> Device::bind(Context& ctx, Kind kind) {
  auto* device = new (std::nothrow) Device(ctx, kind);
  if (!device) return Status::error(ENOMEM);
  std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(device)));
  device->add_user();  // the driver's
  ctx.finalize(id);
  return ObjectRef<Device>(device);
}

void Device::unbind(ObjectRef<Device> device) {
  Device* d = device.release();  // the driver's user: destroy_user() expects it
  // The destroy op releases the HWPT as a detach would.
  d->context().destroy_user(d);
}

namespace {
Result<std::unique_ptr<Domain>> new_domain(Device::Kind kind) {
  if (kind == Device::Kind::kMock) return std::unique_ptr<Domain>(TRY(MockDomain::create()).release());
  return std::unique_ptr<Domain>(TRY(PageTableDomain::create()).release());
}
bool domain_fits(Device::Kind kind, Domain& d) {
  return (dynamic_cast<MockDomain*>(&d) != nullptr) == (kind == Device::Kind::kMock);
}
}  // namespace

Result<HwPagetable::DeviceHold> Device::attach_target(std::uint32_t pt_id) {
  ObjectRef<Object> obj = TRY(context().get<Object>(pt_id, ObjectType::kAny));
  if (obj->type() == ObjectType::kHwptPaging) {
    auto* hwpt = static_cast<HwPagetable*>(obj.get());
    if (!domain_fits(kind_, hwpt->domain())) return Status::error(EINVAL);
    lockdep::MutexGuard g(hwpt->ioas().mutex());
    return hwpt->hold_for_device_locked();
  }
  // An id that exists but names neither a page table nor an IOAS (a device, an access) is EINVAL, not
  // ENOENT: the kernel's attach looks the id up as any type first (a real Linux 7.2 showed it).
  if (obj->type() != ObjectType::kIoas) return Status::error(EINVAL);
  auto* ioas = static_cast<Ioas*>(obj.get());
  lockdep::MutexGuard g(ioas->mutex());
  for (HwPagetable* hwpt : ioas->hwpts_locked()) {
    if (hwpt->auto_domain() && domain_fits(kind_, hwpt->domain())) {
      hwpt->ioas().mutex().assert_held();  // `ioas`'s, which the analysis cannot see
      return hwpt->hold_for_device_locked();
    }
  }
  std::unique_ptr<Domain> domain = TRY(new_domain(kind_));
  ObjectRef<HwPagetable> hwpt = TRY(HwPagetable::create_locked(*ioas, std::move(domain), true));
  hwpt->ioas().mutex().assert_held();
  return hwpt->hold_for_device_locked();
}

Result<std::uint32_t> Device::attach(std::uint32_t pt_id) {
  lockdep::MutexGuard g(mu_);
  if (hwpt_) return Status::error(EINVAL);
  hwpt_ = TRY(attach_target(pt_id));
  return hwpt_->id();
}

Result<std::uint32_t> Device::replace(std::uint32_t pt_id) {
  lockdep::MutexGuard g(mu_);
  if (!hwpt_) return Status::error(EINVAL);
  // The new hold is taken before the old one goes, so an automatic HWPT the device moves within is never
  // without a device; the old hold is released when `old` leaves scope.
  HwPagetable::DeviceHold old = std::exchange(hwpt_, TRY(attach_target(pt_id)));
  return hwpt_->id();
}

Status Device::detach() {
  lockdep::MutexGuard g(mu_);
  if (!hwpt_) return Status::error(EINVAL);
  hwpt_.release();
  return {};
}

std::uint32_t Device::hwpt_id() {
  lockdep::MutexGuard g(mu_);
  return hwpt_ ? hwpt_->id() : 0;
}

void Device::destroy() {
  lockdep::MutexGuard g(mu_);
  hwpt_.release();
}

}  // namespace uiommufd
