#include "uiommufd/objects/selftest_object.h"

#include <cerrno>
#include <new>

#include "uiommufd/base/try.h"
#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/ioas.h"

namespace uiommufd {

Result<SelftestObject::Ids> SelftestObject::create_mock_device(Context& ctx, std::uint32_t pt_id,
                                                               std::uint32_t dev_flags,
                                                               const Respond& respond) {
  auto* sobj = new (std::nothrow) SelftestObject(ctx);
  if (!sobj) return Status::error(ENOMEM);
  const std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(sobj)));
  Result<ObjectRef<Device>> device = Device::bind(ctx, Device::Kind::kMock, dev_flags);
  if (!device.ok()) {
    ctx.abort(id);
    return device.status();
  }
  Result<std::uint32_t> hwpt_id = (*device)->attach(pt_id);
  Status st = hwpt_id.status();
  const Ids ids{id, hwpt_id.ok() ? *hwpt_id : 0, (*device)->id()};
  if (st.ok()) st = respond(ids);
  if (!st.ok()) {
    Device::unbind(std::move(*device));  // detaches too
    ctx.abort(id);
    return st;
  }
  sobj->device_ = std::move(*device);
  ctx.finalize(id);
  return ids;
}

Result<SelftestObject::Ids> SelftestObject::create_mock_hwpt(Context& ctx, std::uint32_t ioas_id,
                                                             const Respond& respond) {
  ObjectRef<Ioas> ioas = TRY(ctx.get<Ioas>(ioas_id, ObjectType::kIoas));
  auto* sobj = new (std::nothrow) SelftestObject(ctx);
  if (!sobj) return Status::error(ENOMEM);
  const std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(sobj)));
  Result<ObjectRef<HwptPaging>> hwpt = Status::error(ENOMEM);
  if (Result<std::unique_ptr<MockDomain>> domain = MockDomain::create(); !domain.ok()) {
    hwpt = domain.status();
  } else {
    lockdep::MutexGuard g(ioas->mutex());
    HwptPaging::Props props;
    props.owner = &IommuDriver::mock();
    hwpt = HwptPaging::create_locked(*ioas, std::move(*domain), props);
  }
  Status st = hwpt.status();
  if (st.ok()) st = respond(Ids{id, (*hwpt)->id(), 0});
  if (!st.ok()) {
    if (hwpt.ok()) {
      HwptPaging* h = hwpt->release();  // our user: destroy_user() expects it
      ctx.destroy_user(h);
    }
    ctx.abort(id);
    return st;
  }
  sobj->hwpt_ = std::move(*hwpt);
  const Ids ids{id, sobj->hwpt_->id(), 0};
  ctx.finalize(id);
  return ids;
}

Result<std::uint32_t> SelftestObject::replace(std::uint32_t pt_id) {
  if (!device_) return Status::error(EINVAL);
  return device_->replace(pt_id);
}

void SelftestObject::destroy() {
  if (device_) Device::unbind(std::move(device_));
  if (hwpt_) {
    hwpt_->remove_from_ioas();
    hwpt_.reset();
  }
}

}  // namespace uiommufd
