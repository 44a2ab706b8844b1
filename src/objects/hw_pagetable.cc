#include "uiommufd/objects/hw_pagetable.h"

#include <algorithm>
#include <cerrno>
#include <new>

#include "uiommufd/base/page.h"
#include "uiommufd/base/reserve.h"
#include "uiommufd/base/try.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/viommu.h"

namespace uiommufd {

// ---- device holds -------------------------------------------------------------------------------------

void HwPagetable::DeviceHold::release() {
  if (HwPagetable* hwpt = std::exchange(hwpt_, nullptr)) hwpt->release_device_hold();
}

Result<HwPagetable::DeviceHold> HwptPaging::hold_for_device_locked() {
  ioas().mutex().assert_held();
  if (!listed_) return Status::error(ENOENT);
  add_user();
  ++devices_;
  return make_hold(this);
}

Result<HwPagetable::DeviceHold> HwptPaging::hold_for_device() {
  lockdep::MutexGuard g(ioas().mutex());
  return hold_for_device_locked();
}

void HwptPaging::release_device_hold() {
  bool last_of_auto = false;
  {
    lockdep::MutexGuard g(ioas().mutex());
    last_of_auto = --devices_ == 0 && auto_domain_;
    if (last_of_auto) {
      // Off the list now, so that no attach to the IOAS picks it up while it is being destroyed.
      auto& list = ioas().hwpts_locked();
      list.erase(std::remove(list.begin(), list.end(), this), list.end());
      listed_ = false;
    }
  }
  if (last_of_auto)
    context().destroy_user(this);
  else
    drop_user();
}

Result<HwPagetable::DeviceHold> HwptNested::hold_for_device() {
  // Never automatic, so never dying while the caller's reference keeps IOMMU_DESTROY away.
  add_user();
  return make_hold(this);
}

// ---- paging HWPTs -------------------------------------------------------------------------------------

Result<HwptPaging*> HwptPaging::create_reserved_locked(Ioas& ioas, std::unique_ptr<Domain> domain,
                                                       const Props& props, const BeforeAdd& before_add) {
  ioas.mutex().assert_held();
  Context& ctx = ioas.context();
  // Room on the IOAS's list first: past add_domain() nothing may fail.
  std::vector<HwptPaging*>& hwpts = ioas.hwpts_locked();
  TRY(reserve_more(hwpts));
  auto* hwpt = new (std::nothrow) HwptPaging(ctx, ioas, std::move(domain), props);
  if (!hwpt) return Status::error(ENOMEM);
  const std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(hwpt)));
  Status st = before_add ? before_add(*hwpt) : Status();
  if (st.ok()) st = ioas.iopt().add_domain(hwpt->domain_.get());
  if (!st.ok()) {
    ctx.abort(id);  // freeing the HWPT gives its user of the IOAS back
    return st;
  }
  // The same lock as the caller's; the analysis cannot see that hwpt->ioas() is `ioas`.
  hwpt->ioas().mutex().assert_held();
  hwpt->added_ = true;
  hwpt->listed_ = true;
  hwpts.push_back(hwpt);  // within capacity
  return hwpt;
}

Result<ObjectRef<HwptPaging>> HwptPaging::create_locked(Ioas& ioas, std::unique_ptr<Domain> domain,
                                                        const Props& props) {
  HwptPaging* hwpt = TRY(create_reserved_locked(ioas, std::move(domain), props));
  hwpt->add_user();  // the caller's
  ioas.context().finalize(hwpt->id());
  return ObjectRef<HwptPaging>(hwpt);
}

void HwptPaging::abort_reserved() {
  remove_from_ioas();
  context().abort(id());
}

void HwptPaging::abort_reserved_locked() {
  remove_from_ioas_locked();
  context().abort(id());
}

std::uint32_t HwptPaging::device_count() {
  lockdep::MutexGuard g(ioas().mutex());
  return devices_;
}

void HwptPaging::remove_from_ioas() {
  lockdep::MutexGuard g(ioas().mutex());
  remove_from_ioas_locked();
}

void HwptPaging::remove_from_ioas_locked() {
  ioas().mutex().assert_held();
  if (listed_) {
    auto& list = ioas().hwpts_locked();
    list.erase(std::remove(list.begin(), list.end(), this), list.end());
    listed_ = false;
  }
  if (added_) ioas().iopt().remove_domain(domain_.get());
  added_ = false;
}

void HwptPaging::destroy() {
  remove_from_ioas();
  release_fault();
  ioas_.reset();
}

// ---- IOMMU_HWPT_ALLOC ---------------------------------------------------------------------------------

namespace {

constexpr std::uint32_t kPagingFlags =
    kHwptAllocNestParent | kHwptAllocDirtyTracking | kHwptFaultIdValid | kHwptAllocPasid;

// The paging half of IOMMU_HWPT_ALLOC (the kernel's iommufd_hwpt_paging_alloc() without immediate attach):
// an unpublished user HWPT on `ioas`.
Result<HwptPaging*> alloc_paging(Device& dev, Ioas& ioas, const HwptAllocArgs& args) {
  const IommuDriver& driver = dev.driver();
  const UserData* data = args.data.len ? &args.data : nullptr;
  if ((args.flags || data) && !driver.has_alloc_flags()) return Status::error(EOPNOTSUPP);
  if (args.flags & ~kPagingFlags) return Status::error(EOPNOTSUPP);
  if ((args.flags & kHwptAllocDirtyTracking) && !driver.capable(dev, IommuDriver::Cap::kDirtyTracking))
    return Status::error(EOPNOTSUPP);
  if ((args.flags & kHwptFaultIdValid) && (args.flags & kHwptAllocNestParent))
    return Status::error(EOPNOTSUPP);
  std::unique_ptr<Domain> domain = TRY(driver.alloc_paging(dev, args.flags & ~kHwptFaultIdValid, data));
  HwptPaging::Props props;
  props.owner = &driver;
  props.nest_parent = args.flags & kHwptAllocNestParent;
  props.dirty_tracking = args.flags & kHwptAllocDirtyTracking;
  props.pasid_compat = args.flags & kHwptAllocPasid;
  lockdep::MutexGuard g(ioas.mutex());
  return HwptPaging::create_reserved_locked(ioas, std::move(domain), props);
}

// The vIOMMU half (iommufd_viommu_alloc_hwpt_nested()): the object first, then the driver's domain, whose
// failure aborts it.
Result<HwptNested*> alloc_nested_on_viommu(Context& ctx, Device& dev, Viommu& viommu,
                                           const HwptAllocArgs& args) {
  if (&viommu.driver() != &dev.driver()) return Status::error(EINVAL);
  if ((args.flags & ~(kHwptFaultIdValid | kHwptAllocPasid)) || !args.data.len)
    return Status::error(EOPNOTSUPP);
  return HwptNested::create_on_viommu(ctx, viommu, args);
}

}  // namespace

Result<HwptNested*> HwptNested::create_on_viommu(Context& ctx, Viommu& viommu, const HwptAllocArgs& args) {
  auto* nested = new (std::nothrow) HwptNested(ctx, viommu.hwpt(), nullptr, args.flags & kHwptAllocPasid);
  if (!nested) return Status::error(ENOMEM);
  const std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(nested)));
  viommu.add_user();
  nested->viommu_ = &viommu;
  // The mock's alloc_domain_nested on a vIOMMU takes only the PASID flag.
  Result<std::unique_ptr<NestedDomain>> domain =
      viommu.driver().alloc_nested(args.flags & ~kHwptFaultIdValid, args.data);
  if (!domain.ok()) {
    ctx.abort(id);
    return domain.status();
  }
  nested->domain_ = std::move(*domain);
  return nested;
}

HwptNested::~HwptNested() {
  if (viommu_) viommu_->drop_user();
}

Result<std::uint32_t> HwPagetable::alloc(Context& ctx, const HwptAllocArgs& args, const Respond& respond) {
  if ((args.data.type == kHwptDataNone) != (args.data.len == 0)) return Status::error(EINVAL);
  ObjectRef<Device> dev = TRY(ctx.get<Device>(args.dev_id, ObjectType::kDevice));
  // The kernel turns a failed lookup of pt_id into EINVAL, not ENOENT.
  Result<ObjectRef<Object>> pt = ctx.get<Object>(args.pt_id, ObjectType::kAny);
  if (!pt.ok()) return Status::error(EINVAL);

  HwPagetable* hwpt = nullptr;
  // Undoes the unpublished HWPT: a paging one leaves its IOAS first.
  auto abort = [&ctx](HwPagetable* h) {
    if (HwptPaging* p = h->paging())
      p->abort_reserved();
    else
      ctx.abort(h->id());
  };
  if ((*pt)->type() == ObjectType::kIoas) {
    hwpt = TRY(alloc_paging(*dev, static_cast<Ioas&>(**pt), args));
  } else if ((*pt)->type() == ObjectType::kHwptPaging) {
    auto& parent = static_cast<HwptPaging&>(**pt);
    const IommuDriver& driver = dev->driver();
    if ((args.flags & ~(kHwptFaultIdValid | kHwptAllocPasid)) || !args.data.len || !driver.has_nesting())
      return Status::error(EOPNOTSUPP);
    if (parent.auto_domain() || !parent.nest_parent() || &parent.owner() != &driver)
      return Status::error(EINVAL);
    std::unique_ptr<NestedDomain> domain =
        TRY(driver.alloc_nested(args.flags & ~kHwptFaultIdValid, args.data));
    auto* nested =
        new (std::nothrow) HwptNested(ctx, parent, std::move(domain), args.flags & kHwptAllocPasid);
    if (!nested) return Status::error(ENOMEM);
    TRY(ctx.reserve(std::unique_ptr<Object>(nested)));
    hwpt = nested;
  } else if ((*pt)->type() == ObjectType::kViommu) {
    hwpt = TRY(alloc_nested_on_viommu(ctx, *dev, static_cast<Viommu&>(**pt), args));
  } else {
    return Status::error(EINVAL);
  }

  Status st;
  if (args.flags & kHwptFaultIdValid) {
    // The kernel's iommufd_get_fault(): the HWPT keeps its own user; the lookup's goes.
    Result<ObjectRef<FaultQueue>> fault = ctx.get<FaultQueue>(args.fault_id, ObjectType::kFault);
    st = fault.status();
    if (st.ok()) hwpt->fault_ = ObjectRef<FaultQueue>::hold(**fault);
  }
  if (st.ok() && respond) st = respond(hwpt->id());
  if (!st.ok()) {
    abort(hwpt);
    return st;
  }
  const std::uint32_t id = hwpt->id();
  ctx.finalize(id);
  return id;
}

// ---- IOMMU_HWPT_INVALIDATE ----------------------------------------------------------------------------

Status HwPagetable::invalidate(Context& ctx, std::uint32_t hwpt_id, UserDataArray& array) {
  const std::uint32_t requested = array.entry_num;
  array.entry_num = 0;
  // Bounded so that one call cannot keep a CPU for long (and entry_len bounds the zero-tail scan).
  if (requested &&
      (!array.uptr || !array.entry_len || array.entry_len > kPageSize || requested > kInvalidateEntryNumMax))
    return Status::error(EINVAL);
  ObjectRef<Object> obj = TRY(ctx.get<Object>(hwpt_id, ObjectType::kAny));
  array.entry_num = requested;
  if (obj->type() == ObjectType::kHwptNested)
    return static_cast<HwptNested&>(*obj).domain().invalidate(array);
  if (obj->type() == ObjectType::kViommu) return static_cast<Viommu&>(*obj).invalidate(array);
  array.entry_num = 0;
  return Status::error(EINVAL);
}

}  // namespace uiommufd
