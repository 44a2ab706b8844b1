#include "uiommufd/objects/device.h"

#include <bit>
#include <cerrno>
#include <new>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/try.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/viommu.h"

namespace uiommufd {

// The attachment record (the kernel's iommufd_attach_handle, allocated on every attach and replace).
UIOMMUFD_FAULT_SITE(g_fault_device_attach, "device.attach", ENOMEM);
// The mock adding the device to its IOMMU's fault queue (iopf_queue_add_device()'s fault parameter).
UIOMMUFD_FAULT_SITE(g_fault_iopf_enable, "device.iopf_enable", ENOMEM);

namespace {
// IOMMU_TEST_PASID_RESERVED: the PASID on which the mock fails every second set_dev_pasid.
constexpr std::uint32_t kPasidFakeError = 1024;

Status check_flags(Device::Kind kind, std::uint32_t flags) {
  const std::uint32_t valid = kind == Device::Kind::kMock ? Device::kValidFlags : 0;
  return (flags & ~valid) ? Status::error(EINVAL) : Status();
}
}  // namespace

Device::Device(Context& ctx, Kind kind, std::uint32_t flags)
    : Object(ctx, ObjectType::kDevice),
      kind_(kind),
      flags_(flags),
      driver_(kind == Kind::kMock ? &IommuDriver::mock() : &IommuDriver::software()) {
  for (auto& c : cache_) c.store(kTestDevCacheDefault, std::memory_order_relaxed);
}

Result<std::uint32_t> Device::create(Context& ctx, Kind kind, std::uint32_t flags) {
  TRY(check_flags(kind, flags));
  std::unique_ptr<Object> device(new (std::nothrow) Device(ctx, kind, flags));
  if (!device) return Status::error(ENOMEM);
  std::uint32_t id = TRY(ctx.reserve(std::move(device)));
  ctx.finalize(id);
  return id;
}

Result<ObjectRef<Device>> Device::bind(Context& ctx, Kind kind, std::uint32_t flags) {
  TRY(check_flags(kind, flags));
  auto* device = new (std::nothrow) Device(ctx, kind, flags);
  if (!device) return Status::error(ENOMEM);
  std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(device)));
  device->add_user();  // the driver's
  ctx.finalize(id);
  return ObjectRef<Device>(device);
}

void Device::unbind(ObjectRef<Device> device) {
  device->remove_vdevice();
  Device* d = device.release();  // the driver's user: destroy_user() expects it
  // The destroy op releases every attachment as a detach would.
  d->context().destroy_user(d);
}

// ---- attach, replace, detach --------------------------------------------------------------------------

Status Device::mock_set_dev_pasid(std::uint32_t pasid, bool blocking) {
  // Only a device with PASIDs is told about PASID attachments (iommu.c __iommu_set_group_pasid()).
  if (kind_ != Kind::kMock || max_pasids() == 0 || pasid != kPasidFakeError) return {};
  if (blocking) {
    pasid_1024_fake_error_ = false;
  } else if (pasid_1024_fake_error_) {
    pasid_1024_fake_error_ = false;
    return Status::error(ENOMEM);
  } else {
    pasid_1024_fake_error_ = true;
  }
  return {};
}

Status Device::check_attach(std::uint32_t pasid, const HwPagetable& hwpt, bool replace) {
  // Whether a PASID may be used at all: the kernel's iommufd_hwpt_pasid_compat().
  if (pasid == kNoPasid) {
    if (!hwpt.pasid_compat() && attached_.upper_bound(kNoPasid) != attached_.end())
      return Status::error(EINVAL);
  } else {
    if (!hwpt.pasid_compat()) return Status::error(EINVAL);
    auto rid = attached_.find(kNoPasid);
    if (rid != attached_.end() && !rid->second->pasid_compat()) return Status::error(EINVAL);
  }
  TRY(inject(g_fault_device_attach));
  // The IOMMU core and the driver (iommu.c; selftest.c mock_domain_nop_attach(),
  // mock_domain_set_dev_pasid_nop()), whose last step enables page requests for a fault-capable HWPT.
  if (&hwpt.owner() != driver_) return Status::error(EINVAL);
  if (pasid == kNoPasid) {
    TRY(driver_->attach_dev(*this, hwpt));
    return iopf_enable_locked(hwpt);
  }
  // A replace keeps the PASID the first attach accepted (iommu_replace_device_pasid() checks no width).
  if (!replace && max_pasids() != 0 && pasid >= max_pasids()) return Status::error(EINVAL);
  TRY(mock_set_dev_pasid(pasid, /*blocking=*/false));
  return iopf_enable_locked(hwpt);
}

Status Device::iopf_enable_locked(const HwPagetable& hwpt) {
  mu_.assert_held();
  if (!hwpt.fault()) return {};
  if (iopf_refcount_ == 0) TRY(inject(g_fault_iopf_enable));
  ++iopf_refcount_;
  return {};
}

void Device::iopf_disable_locked(const HwPagetable& hwpt) {
  mu_.assert_held();
  if (hwpt.fault()) --iopf_refcount_;
}

std::uint64_t Device::new_attach_handle() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

void Device::finish_detach(Attachment old) {
  if (!old.hold) return;
  if (FaultQueue* fault = old->fault()) fault->auto_respond(old.handle);
  old.hold.release();
}

namespace {
// The state checks before any compatibility check: attach needs `pasid` free, replace needs it attached;
// *same when a replace targets the HWPT in use.
template <typename Attached>
Status check_state(const Attached& attached, std::uint32_t pasid, const HwPagetable* hwpt, bool replace,
                   bool* same) {
  auto it = attached.find(pasid);
  *same = false;
  if (!replace) return it != attached.end() ? Status::error(EBUSY) : Status();
  if (it == attached.end()) return Status::error(EINVAL);
  *same = it->second.get() == hwpt;
  return {};
}
}  // namespace

Status Device::try_auto(std::uint32_t pasid, Ioas& ioas, bool replace, HwPagetable::DeviceHold* out) {
  lockdep::MutexGuard g(ioas.mutex());
  // Any automatic HWPT that takes the device will do; EINVAL means "not this one" (the kernel's
  // iommufd_device_auto_get_domain() never picks a user-allocated HWPT).
  for (HwptPaging* hwpt : ioas.hwpts_locked()) {
    if (!hwpt->auto_domain()) continue;
    bool same = false;
    Status st = check_state(attached_, pasid, hwpt, replace, &same);
    if (st.ok() && same) return {};
    if (st.ok()) st = check_attach(pasid, *hwpt, replace);
    if (st.error() == EINVAL) continue;
    TRY(st);
    hwpt->ioas().mutex().assert_held();  // `ioas`'s, which the analysis cannot see
    *out = TRY(hwpt->hold_for_device_locked());
    return {};
  }
  std::unique_ptr<Domain> domain = TRY(driver_->alloc_paging(*this, 0, nullptr));
  HwptPaging::Props props;
  props.owner = driver_;
  props.auto_domain = true;
  // An attach checks the device against the new HWPT before filling it, a replace after (the kernel
  // attaches at once only when it attaches, iommufd_hwpt_paging_alloc()'s immediate_attach).
  // Captures by value and small enough for std::function to hold without allocating.
  auto check = [this, pasid, replace](HwptPaging& hwpt) REQUIRES(mu_) {
    bool same = false;
    TRY(check_state(attached_, pasid, &hwpt, replace, &same));
    return check_attach(pasid, hwpt, replace);
  };
  HwptPaging* hwpt = TRY(HwptPaging::create_reserved_locked(
      ioas, std::move(domain), props, replace ? HwptPaging::BeforeAdd{} : HwptPaging::BeforeAdd{check}));
  hwpt->ioas().mutex().assert_held();  // `ioas`'s, which the analysis cannot see
  if (replace) {
    if (Status st = check(*hwpt); !st.ok()) {
      hwpt->abort_reserved_locked();
      return st;
    }
  }
  *out = TRY(hwpt->hold_for_device_locked());  // listed: cannot fail
  ioas.context().finalize(hwpt->id());
  return {};
}

Status Device::change_pt(std::uint32_t pasid, std::uint32_t pt_id, bool replace,
                         HwPagetable::DeviceHold* out) {
  ObjectRef<Object> obj = TRY(context().get<Object>(pt_id, ObjectType::kAny));
  switch (obj->type()) {
    case ObjectType::kHwptPaging:
    case ObjectType::kHwptNested: {
      auto& hwpt = static_cast<HwPagetable&>(*obj);
      // A dying automatic HWPT is ENOENT, as the kernel's lookup of it fails.
      HwPagetable::DeviceHold hold = TRY(hwpt.hold_for_device());
      // The hold keeps the HWPT now; the lookup's reference goes, so that if a check below fails and this
      // hold turns out to be an automatic HWPT's last (its other devices left meanwhile), the destroy
      // that its release starts does not wait for a reference of this very call.
      obj.reset();
      bool same = false;
      TRY(check_state(attached_, pasid, &hwpt, replace, &same));
      if (same) return {};
      TRY(check_attach(pasid, hwpt, replace));
      *out = std::move(hold);
      return {};
    }
    case ObjectType::kIoas:
      return try_auto(pasid, static_cast<Ioas&>(*obj), replace, out);
    default:
      // An id that exists but names neither a page table nor an IOAS is EINVAL, not ENOENT.
      return Status::error(EINVAL);
  }
}

Result<std::uint32_t> Device::attach(std::uint32_t pasid, std::uint32_t pt_id) {
  lockdep::MutexGuard g(mu_);
  HwPagetable::DeviceHold hold;
  // The map's node first: past change_pt() nothing may fail, or the mock's PASID-1024 toggle would need
  // undoing. A library caller gets ENOMEM rather than an exception (docs/allocation.md).
  std::map<std::uint32_t, Attachment> node;
  try {
    node.emplace(pasid, Attachment());
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  TRY(change_pt(pasid, pt_id, /*replace=*/false, &hold));
  if (pasid == kNoPasid) note_rid_attach_locked(hold.get());
  const std::uint32_t id = hold->id();
  node.begin()->second = Attachment{std::move(hold), new_attach_handle()};
  attached_.merge(node);  // moves the node: no allocation
  return id;
}

Result<std::uint32_t> Device::replace(std::uint32_t pasid, std::uint32_t pt_id) {
  Attachment old;
  std::uint32_t id = 0;
  {
    lockdep::MutexGuard g(mu_);
    HwPagetable::DeviceHold hold;
    TRY(change_pt(pasid, pt_id, /*replace=*/true, &hold));
    Attachment& slot = attached_.at(pasid);
    if (!hold) return slot->id();  // onto the HWPT in use: nothing changes
    if (pasid == kNoPasid) note_rid_attach_locked(hold.get());
    // The new hold is in place before the old one goes, so an automatic HWPT the device moves within is
    // never without a device. The new attachment is a new handle: the old one's faults are answered.
    old = std::exchange(slot, Attachment{std::move(hold), new_attach_handle()});
    iopf_disable_locked(*old.get());
    id = slot->id();
  }
  finish_detach(std::move(old));
  return id;
}

void Device::detach(std::uint32_t pasid) {
  Attachment old;
  {
    lockdep::MutexGuard g(mu_);
    auto it = attached_.find(pasid);
    if (it == attached_.end()) return;
    if (pasid != kNoPasid) (void)mock_set_dev_pasid(pasid, /*blocking=*/true);
    if (pasid == kNoPasid) note_rid_attach_locked(nullptr);  // the blocking domain
    old = std::move(it->second);
    iopf_disable_locked(*old.get());
    attached_.erase(it);
  }
  finish_detach(std::move(old));
}

void Device::note_rid_attach_locked(const HwPagetable* hwpt) {
  Viommu* viommu = nullptr;
  std::uint64_t virt_id = 0;
  if (hwpt && hwpt->type() == ObjectType::kHwptNested) {
    viommu = static_cast<const HwptNested*>(hwpt)->viommu();
    // The attach checked that the device has a virtual id there.
    if (viommu) virt_id = viommu->virt_id_of(*this).value_or(0);
  }
  if (viommu == event_viommu_) return;
  event_viommu_ = viommu;
  event_virt_id_ = virt_id;
}

Result<std::pair<ObjectRef<Viommu>, std::uint64_t>> Device::event_target() {
  lockdep::MutexGuard g(mu_);
  if (!event_viommu_ || !event_virt_id_) return Status::error(ENOENT);
  return std::pair{ObjectRef<Viommu>::hold(*event_viommu_), event_virt_id_};
}

Status Device::detach() {
  if (hwpt_id(kNoPasid) == 0) return Status::error(EINVAL);
  detach(kNoPasid);
  return {};
}

std::uint32_t Device::hwpt_id(std::uint32_t pasid) {
  lockdep::MutexGuard g(mu_);
  auto it = attached_.find(pasid);
  return it == attached_.end() ? 0 : it->second->id();
}

std::vector<std::pair<std::uint32_t, std::uint32_t>> Device::attachments() {
  std::vector<std::pair<std::uint32_t, std::uint32_t>> out;
  lockdep::MutexGuard g(mu_);
  for (const auto& [pasid, attachment] : attached_) out.emplace_back(pasid, attachment->id());
  return out;
}

void Device::destroy() {
  // PASIDs first, as a careful driver detaches them before the RID; one at a time, each finished (its
  // faults answered, its hold released) outside the lock.
  for (;;) {
    Attachment old;
    {
      lockdep::MutexGuard g(mu_);
      note_rid_attach_locked(nullptr);
      if (attached_.empty()) return;
      auto it = std::prev(attached_.end());
      if (it->first != kNoPasid) (void)mock_set_dev_pasid(it->first, /*blocking=*/true);
      old = std::move(it->second);
      iopf_disable_locked(*old.get());
      attached_.erase(it);
    }
    finish_detach(std::move(old));
  }
}

std::uint32_t Device::iopf_count() {
  lockdep::MutexGuard g(mu_);
  return iopf_refcount_;
}

// ---- page requests ------------------------------------------------------------------------------------

Status Device::report_page_fault(const PageRequest* reqs, std::size_t n, PageResponder responder) {
  if (n == 0) return Status::error(EINVAL);
  const PageRequest& last = reqs[n - 1];
  ObjectRef<FaultQueue> queue;
  Status st;
  {
    lockdep::MutexGuard g(mu_);
    // The kernel's find_fault_handler().
    const Attachment* att = nullptr;
    if (last.flags & kPgfaultFlagPasidValid) {
      auto it = attached_.find(last.pasid);
      if (it != attached_.end()) {
        att = &it->second;
      } else if (auto rid = attached_.find(kNoPasid);
                 kind_ == Kind::kMock && rid != attached_.end() && rid->second->paging() == nullptr) {
        att = &rid->second;
      }
    } else if (auto rid = attached_.find(kNoPasid); rid != attached_.end()) {
      att = &rid->second;
    }
    if (!att || !(*att)->fault()) {
      st = Status::error(EINVAL);
    } else {
      FaultQueue* fault = (*att)->fault();
      // Queued under the lock, so that a detach of this attachment, which answers its groups after taking
      // it out under the same lock, cannot miss this one.
      st = fault->deliver(id(), att->handle, reqs, n, responder);
      if (st.ok()) queue = ObjectRef<FaultQueue>::hold(*fault);
    }
  }
  if (!st.ok()) {
    responder(last, st.error() == EINVAL ? PageResponseCode::kInvalid : PageResponseCode::kFailure);
    return st;
  }
  queue->run_handler();
  return {};
}

// ---- information --------------------------------------------------------------------------------------

Result<Device::HwInfo> Device::hw_info(std::uint32_t type) const {
  HwInfo info;
  info.type = type;
  TRY(driver_->hw_info(*this, &info.type, &info.data));
  if (driver_->capable(*this, IommuDriver::Cap::kDirtyTracking)) info.capabilities |= kHwCapDirtyTracking;
  if (!driver_->capable(*this, IommuDriver::Cap::kPciAtsSupported))
    info.capabilities |= kHwCapPciAtsNotSupported;
  if (max_pasids() != 0) info.max_pasid_log2 = static_cast<std::uint8_t>(std::bit_width(max_pasids()) - 1);
  return info;
}

// ---- DMA ----------------------------------------------------------------------------------------------

Status Device::dma(std::uint64_t iova, void* buf, std::uint64_t length, bool write) {
  // The attachment stays put for the whole transfer.
  lockdep::MutexGuard g(mu_);
  auto it = attached_.find(kNoPasid);
  if (it == attached_.end()) return Status::error(EINVAL);
  HwptPaging* paging = it->second->paging();
  if (!paging) return Status::error(EOPNOTSUPP);
  auto* table = dynamic_cast<PageTableDomain*>(&paging->domain());
  if (!table) return Status::error(EOPNOTSUPP);
  struct Copy {
    unsigned char* buf;
    bool write;
  } copy{static_cast<unsigned char*>(buf), write};
  // The domain maps host addresses (pages.h), which the fault-safe user copies reach.
  return table->dma(
      iova, length, write,
      [](void* ctx, PhysAddr paddr, std::uint64_t offset, std::uint64_t len) {
        auto* c = static_cast<Copy*>(ctx);
        if (c->write) return Mm::current_ref().copy_to_user(paddr, c->buf + offset, len);
        return Mm::current_ref().copy_from_user(c->buf + offset, paddr, len);
      },
      &copy);
}

Status Device::dma_read(std::uint64_t iova, void* dst, std::uint64_t length) {
  return dma(iova, dst, length, /*write=*/false);
}

Status Device::dma_write(std::uint64_t iova, const void* src, std::uint64_t length) {
  return dma(iova, const_cast<void*>(src), length, /*write=*/true);  // only read from when writing
}

void Device::invalidate_cache(std::uint32_t id, bool all) {
  for (std::uint32_t i = 0; i < kCacheNum; ++i) {
    if (all || i == id) cache_[i].store(0, std::memory_order_relaxed);
  }
}

void Device::remove_vdevice() {
  Vdevice* vdev;
  {
    lockdep::MutexGuard g(mu_);
    destroying_ = true;
    vdev = vdev_;
    // None, or a destroy of it is under way (it cannot take a user any more): that destroy drops its user
    // of this device, which the caller's destroy_user() waits for.
    if (!vdev || !vdev->try_add_user()) return;
  }
  context().destroy_user(vdev, /*tombstone=*/true);
}

Status Device::check_cache(std::uint32_t id, std::uint32_t value) const {
  if (id >= kCacheNum || cache_[id].load(std::memory_order_relaxed) != value) return Status::error(EINVAL);
  return {};
}

}  // namespace uiommufd
