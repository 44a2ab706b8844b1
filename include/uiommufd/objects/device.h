// Device: a (mock) device bound to a Context, the kernel's iommufd_device. Its RID (PASID 0,
// IOMMU_NO_PASID) and, on a PASID-capable device, each PASID can be attached to an HWPT. Attaching to an
// IOAS picks or creates an automatic paging HWPT for it (the kernel's auto-domain path); attaching to an
// HWPT (paging or nested) uses that one. docs/semantics.md#attach has the rules.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <vector>

#include "uiommufd/base/result.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/objects/fault_queue.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/objects/object.h"

namespace uiommufd {

class Vdevice;
class Viommu;

class Device : public Object {
 public:
  enum class Kind : std::uint8_t {
    kMock,      // the kernel selftest's mock device: 2 KiB mock domains (IommuDriver::mock())
    kSoftware,  // a device behind a 4 KiB software page table (IommuDriver::software())
  };

  // MOCK_FLAGS_DEVICE_* (iommufd_test.h): mock devices only.
  static constexpr std::uint32_t kFlagNoDirty = 1u << 0;  // its IOMMU cannot track dirty pages
  static constexpr std::uint32_t kFlagPasid = 1u << 2;    // it has PASIDs, kMockPasidWidth bits of them
  static constexpr std::uint32_t kValidFlags = kFlagNoDirty | kFlagPasid;
  static constexpr unsigned kMockPasidWidth = 20;
  // The mock device's cache (DEV_CHECK_CACHE), which a vIOMMU invalidation clears.
  static constexpr std::uint32_t kCacheNum = 4;
  // IOMMU_NO_PASID: the RID.
  static constexpr std::uint32_t kNoPasid = 0;

  // Creates and binds a device; returns its id. EINVAL for flags outside kValidFlags (or any flag on a
  // software device), ENOMEM, ENOSPC.
  static Result<std::uint32_t> create(Context& ctx, Kind kind, std::uint32_t flags = 0);
  // The same for a driver that owns the device (the kernel's iommufd_device_bind): the returned reference
  // is the driver's user, so IOMMU_DESTROY of the device id is EBUSY until unbind(). Errors as create().
  static Result<ObjectRef<Device>> bind(Context& ctx, Kind kind, std::uint32_t flags = 0);
  // Detaches the RID and every PASID and destroys the device, waiting for operations in flight (the
  // kernel's iommufd_device_unbind(); the kernel expects PASIDs detached first and warns otherwise).
  // Consumes the driver's reference.
  static void unbind(ObjectRef<Device> device);

  // Attaches `pasid` (kNoPasid: the RID) to `pt_id`: an IOAS (an existing automatic HWPT that accepts the
  // device, else a new one) or an HWPT. Returns the HWPT id. Errors in the kernel's order
  // (device.c iommufd_device_change_pt(), iommufd_hw_pagetable_attach(); iommu.c
  // iommu_attach_device_pasid()):
  //   ENOENT   unknown pt_id;   EINVAL  pt_id names neither an IOAS nor an HWPT;
  //   EBUSY    `pasid` is already attached;
  //   EINVAL   PASID rules: a PASID needs an HWPT allocated with IOMMU_HWPT_ALLOC_PASID, and so does the
  //            RID while any PASID is attached (and a PASID while the RID's HWPT lacks it); an automatic
  //            HWPT never has it;
  //   ENOMEM   the attachment record (fault site "device.attach");
  //   EINVAL   RID: the driver refuses (an HWPT of another driver, dirty tracking on a NO_DIRTY device);
  //            PASID: beyond the device's PASID width;
  //   ENOMEM   the mock's set_dev_pasid fails every second call for PASID 1024 (IOMMU_TEST_PASID_RESERVED,
  //            for the kernel's rollback tests);
  //   and an IOAS's new automatic HWPT's errors (the domain, add_domain's).
  Result<std::uint32_t> attach(std::uint32_t pasid, std::uint32_t pt_id) EXCLUDES(mu_);
  Result<std::uint32_t> attach(std::uint32_t pt_id) EXCLUDES(mu_) { return attach(kNoPasid, pt_id); }
  // Moves `pasid` to `pt_id` in one step; the old HWPT is released after the new one is in place, and a
  // failure leaves the attachment as it was. EINVAL when `pasid` is not attached; a replace onto the HWPT
  // it already uses (by its id, or by its IOAS, which finds that same automatic HWPT) succeeds and changes
  // nothing, as in the kernel's iommufd_device_do_replace(). Then the errors of attach() after EBUSY
  // (without the PASID-width check, which the first attach made). On an IOAS, the new automatic HWPT is
  // filled before the PASID rules are checked, so its errors come first.
  Result<std::uint32_t> replace(std::uint32_t pasid, std::uint32_t pt_id) EXCLUDES(mu_);
  Result<std::uint32_t> replace(std::uint32_t pt_id) EXCLUDES(mu_) { return replace(kNoPasid, pt_id); }
  // Detaches `pasid`; nothing happens when it is not attached (the kernel's iommufd_device_detach()).
  void detach(std::uint32_t pasid) EXCLUDES(mu_);
  // The RID: EINVAL if not attached.
  Status detach() EXCLUDES(mu_);
  // The HWPT id `pasid` is attached to, 0 when it is not.
  std::uint32_t hwpt_id(std::uint32_t pasid = kNoPasid) EXCLUDES(mu_);
  // Diagnostics (dump/, docs/dump.md): every attachment as (PASID, HWPT id), in PASID order. Throws
  // std::bad_alloc when the list cannot be had.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> attachments() EXCLUDES(mu_);

  // IOMMU_GET_HW_INFO's view of the device: the driver's data of the requested type (kHwInfoTypeDefault:
  // its own), the capability bits and the PASID width (0: none). EOPNOTSUPP for a type the driver lacks,
  // ENOMEM.
  struct HwInfo {
    std::uint32_t type = 0;
    std::vector<std::uint8_t> data;
    std::uint64_t capabilities = 0;
    std::uint8_t max_pasid_log2 = 0;
  };
  Result<HwInfo> hw_info(std::uint32_t type) const;

  // The vIOMMU and virtual id the mock device reports virtual events with (TRIGGER_VEVENT): ENOENT when its
  // RID is not on a vIOMMU's nested HWPT, or its virtual id was 0. The vIOMMU comes with a user.
  Result<std::pair<ObjectRef<Viommu>, std::uint64_t>> event_target() EXCLUDES(mu_);

  // DEV_CHECK_CACHE: EINVAL for an id above 3 or another value.
  Status check_cache(std::uint32_t id, std::uint32_t value) const;
  // A vIOMMU cache invalidation of this mock device: one word (id < kCacheNum), or all of them.
  void invalidate_cache(std::uint32_t id, bool all);

  // A page request group raised by the device (reqs[n - 1] the last), as the IOMMU reports it (the
  // kernel's iommu_report_device_fault(), which TRIGGER_IOPF drives with one request). It goes to the
  // fault queue of the HWPT its attachment uses: the PASID's when the last request has
  // kPgfaultFlagPasidValid (or, when that PASID is not attached, the RID's if the RID uses a nested HWPT:
  // the mock keeps the PASID table in the guest, user_pasid_table), else the RID's. The group is answered
  // once through `responder`, with no engine lock held: by the queue's reader, by a detach or replace of
  // that attachment (kInvalid), or here:
  //   EINVAL   no attachment, or its HWPT has no fault queue: answered kInvalid (iopf_error_response());
  //   ENOMEM   the group cannot be allocated (fault site "fault.deliver"): answered kFailure.
  // After delivering, the queue's handler (FaultQueue::set_handler()) runs on this thread.
  Status report_page_fault(const PageRequest* reqs, std::size_t n, PageResponder responder = {})
      EXCLUDES(mu_);

  // DMA by the device through the paging HWPT its RID is attached to, as a device emulator behind an
  // IOMMU does it: [iova, iova + length) is translated by the domain and the memory it maps is read into
  // `dst` or written from `src` (fault-safe copies: EFAULT if that memory is gone). EINVAL when the RID is
  // not attached; EOPNOTSUPP on a nested HWPT (the guest's stage 1 is not modelled); then
  // PageTableDomain::dma()'s: EFAULT for an unmapped byte, EPERM for a missing permission, with nothing
  // copied. A write marks the entries it touches dirty while the domain tracks.
  Status dma_read(std::uint64_t iova, void* dst, std::uint64_t length) EXCLUDES(mu_);
  Status dma_write(std::uint64_t iova, const void* src, std::uint64_t length) EXCLUDES(mu_);

  // The vDEVICE of this device, if any: destroyed now, its id left as a tombstone (the kernel's
  // iommufd_device_pre_destroy()). Part of unbind(); after it no vDEVICE can be made for the device.
  void remove_vdevice() EXCLUDES(mu_);

  Kind kind() const { return kind_; }
  // Fault-capable HWPTs among the device's attachments (the mock's iopf_refcount); for tests.
  std::uint32_t iopf_count() EXCLUDES(mu_);
  std::uint32_t flags() const { return flags_; }
  const IommuDriver& driver() const { return *driver_; }
  // The number of PASIDs (the kernel's dev->iommu->max_pasids); 0 when the IOMMU has no PASIDs at all.
  // A mock device without kFlagPasid has a PASID width of 0, which the IOMMU core turns into one PASID,
  // PASID 0 (iommu.c dev_iommu_get_max_pasids()): every other PASID is out of range.
  std::uint32_t max_pasids() const {
    if (kind_ != Kind::kMock) return 0;
    return (flags_ & kFlagPasid) ? 1u << kMockPasidWidth : 1;
  }

 protected:
  void destroy() override;

 private:
  Device(Context& ctx, Kind kind, std::uint32_t flags);

  // One attachment (the kernel's iommufd_attach_handle): the hold on its HWPT and an id unique in the
  // process, which the fault groups raised through it carry, so that its detach answers exactly those.
  struct Attachment {
    HwPagetable::DeviceHold hold;
    std::uint64_t handle = 0;
    HwPagetable* operator->() const { return hold.get(); }
    HwPagetable* get() const { return hold.get(); }
  };
  static std::uint64_t new_attach_handle();
  // The mock's mock_dev_enable_iopf() / mock_dev_disable_iopf() for a fault-capable HWPT: the first one
  // adds the device to the IOMMU's fault queue (ENOMEM: fault site "device.iopf_enable").
  Status iopf_enable_locked(const HwPagetable& hwpt) REQUIRES(mu_);
  void iopf_disable_locked(const HwPagetable& hwpt) REQUIRES(mu_);
  // What follows taking an attachment out under mu_: its fault groups are answered, then its hold goes
  // (which may destroy an automatic HWPT). Runs without mu_.
  static void finish_detach(Attachment old) EXCLUDES(mu_);

  // The HWPT `pt_id` names, or for an IOAS the hold on an automatic HWPT: attach (replace false) or
  // replace at `pasid`. `*out` receives the new hold, or stays empty for a replace onto the HWPT in use.
  Status change_pt(std::uint32_t pasid, std::uint32_t pt_id, bool replace, HwPagetable::DeviceHold* out)
      REQUIRES(mu_);
  // Everything that decides whether `pasid` may move to `hwpt`, with the driver's side effects on success.
  Status check_attach(std::uint32_t pasid, const HwPagetable& hwpt, bool replace) REQUIRES(mu_);
  Status try_auto(std::uint32_t pasid, Ioas& ioas, bool replace, HwPagetable::DeviceHold* out) REQUIRES(mu_);
  // The mock's set_dev_pasid: the PASID-1024 fake error (selftest.c mock_domain_set_dev_pasid_nop()).
  Status mock_set_dev_pasid(std::uint32_t pasid, bool blocking) REQUIRES(mu_);
  Status dma(std::uint64_t iova, void* buf, std::uint64_t length, bool write) EXCLUDES(mu_);

  const Kind kind_;
  const std::uint32_t flags_;
  const IommuDriver* const driver_;
  std::array<std::atomic<std::uint32_t>, kCacheNum> cache_;
  lockdep::Mutex mu_{lock_order::kDeviceMutex};
  // PASID (kNoPasid: the RID) -> the HWPT it is attached to.
  std::map<std::uint32_t, Attachment> attached_ GUARDED_BY(mu_);
  bool pasid_1024_fake_error_ GUARDED_BY(mu_) = false;
  // The device's vDEVICE (held there by that object's user of the device), and whether unbind has begun,
  // after which none may be made (the kernel keeps both under the group lock).
  friend class Vdevice;
  Vdevice* vdev_ GUARDED_BY(mu_) = nullptr;
  bool destroying_ GUARDED_BY(mu_) = false;
  // Where the mock device reports virtual events: the vIOMMU of the nested HWPT its RID was last attached
  // to and its virtual id there then, as the mock's attach records them (selftest.c mock_domain_nop_attach():
  // kept while the RID moves within one vIOMMU, cleared by any other attach). The attachment's hold keeps
  // the vIOMMU alive while it is recorded.
  void note_rid_attach_locked(const HwPagetable* hwpt) REQUIRES(mu_);
  Viommu* event_viommu_ GUARDED_BY(mu_) = nullptr;
  std::uint64_t event_virt_id_ GUARDED_BY(mu_) = 0;
  std::uint32_t iopf_refcount_ GUARDED_BY(mu_) = 0;
};

}  // namespace uiommufd
