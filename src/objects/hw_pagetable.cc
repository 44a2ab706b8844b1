#include "uiommufd/objects/hw_pagetable.h"

#include <algorithm>
#include <new>

#include "uiommufd/base/reserve.h"
#include "uiommufd/base/try.h"
#include "uiommufd/objects/context.h"

namespace uiommufd {

Result<ObjectRef<HwPagetable>> HwPagetable::create_locked(Ioas& ioas, std::unique_ptr<Domain> domain,
                                                          bool auto_domain) {
  Context& ctx = ioas.context();
  // Room on the IOAS's list first: past add_domain() nothing may fail.
  std::vector<HwPagetable*>& hwpts = ioas.hwpts_locked();
  TRY(reserve_more(hwpts));
  auto* hwpt = new (std::nothrow) HwPagetable(ctx, ioas, std::move(domain), auto_domain);
  if (!hwpt) return Status::error(ENOMEM);
  std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(hwpt)));
  ioas.add_user();
  if (Status st = ioas.iopt().add_domain(hwpt->domain_.get()); !st.ok()) {
    ioas.drop_user();
    ctx.abort(id);
    return st;
  }
  hwpt->added_ = true;
  hwpts.push_back(hwpt);  // within capacity
  hwpt->add_user();  // the caller's
  ctx.finalize(id);
  return ObjectRef<HwPagetable>(hwpt);
}

void HwPagetable::remove_from_ioas() {
  lockdep::MutexGuard g(ioas_->mutex());
  auto& list = ioas_->hwpts_locked();
  list.erase(std::remove(list.begin(), list.end(), this), list.end());
  if (added_) ioas_->iopt().remove_domain(domain_.get());
  added_ = false;
}

void HwPagetable::destroy() {
  remove_from_ioas();
  ioas_->drop_user();
}

}  // namespace uiommufd
