#include "uiommufd/objects/hw_pagetable.h"

#include <algorithm>
#include <new>

#include "uiommufd/base/reserve.h"
#include "uiommufd/base/try.h"
#include "uiommufd/objects/context.h"

namespace uiommufd {

Result<ObjectRef<HwPagetable>> HwPagetable::create_locked(Ioas& ioas, std::unique_ptr<Domain> domain,
                                                          bool auto_domain) {
  ioas.mutex().assert_held();
  Context& ctx = ioas.context();
  // Room on the IOAS's list first: past add_domain() nothing may fail.
  std::vector<HwPagetable*>& hwpts = ioas.hwpts_locked();
  TRY(reserve_more(hwpts));
  auto* hwpt = new (std::nothrow) HwPagetable(ctx, ioas, std::move(domain), auto_domain);
  if (!hwpt) return Status::error(ENOMEM);
  std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(hwpt)));
  if (Status st = ioas.iopt().add_domain(hwpt->domain_.get()); !st.ok()) {
    ctx.abort(id);  // freeing the HWPT gives its user of the IOAS back
    return st;
  }
  // The same lock as the caller's; the analysis cannot see that hwpt->ioas() is `ioas`.
  hwpt->ioas().mutex().assert_held();
  hwpt->added_ = true;
  hwpt->listed_ = true;
  hwpts.push_back(hwpt);  // within capacity
  hwpt->add_user();  // the caller's
  ctx.finalize(id);
  return ObjectRef<HwPagetable>(hwpt);
}

Result<HwPagetable::DeviceHold> HwPagetable::hold_for_device_locked() {
  ioas().mutex().assert_held();
  if (!listed_) return Status::error(ENOENT);
  add_user();
  ++devices_;
  return DeviceHold(this);
}

void HwPagetable::DeviceHold::release() {
  HwPagetable* hwpt = std::exchange(hwpt_, nullptr);
  if (!hwpt) return;
  bool last_of_auto = false;
  {
    lockdep::MutexGuard g(hwpt->ioas().mutex());
    last_of_auto = --hwpt->devices_ == 0 && hwpt->auto_domain_;
    if (last_of_auto) {
      // Off the list now, so that no attach to the IOAS picks it up while it is being destroyed.
      auto& list = hwpt->ioas().hwpts_locked();
      list.erase(std::remove(list.begin(), list.end(), hwpt), list.end());
      hwpt->listed_ = false;
    }
  }
  if (last_of_auto)
    hwpt->context().destroy_user(hwpt);
  else
    hwpt->drop_user();
}

std::uint32_t HwPagetable::device_count() {
  lockdep::MutexGuard g(ioas().mutex());
  return devices_;
}

void HwPagetable::remove_from_ioas() {
  lockdep::MutexGuard g(ioas().mutex());
  if (listed_) {
    auto& list = ioas().hwpts_locked();
    list.erase(std::remove(list.begin(), list.end(), this), list.end());
    listed_ = false;
  }
  if (added_) ioas().iopt().remove_domain(domain_.get());
  added_ = false;
}

void HwPagetable::destroy() {
  remove_from_ioas();
  ioas_.reset();
}

}  // namespace uiommufd
