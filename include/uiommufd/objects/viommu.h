// The virtual IOMMU objects of the newest ABI (drivers/iommu/iommufd/viommu.c): what a VMM uses to give a
// guest an IOMMU backed by the host's.
//
//   - Viommu: one per (guest IOMMU, nesting-parent HWPT). It holds its parent (a user), owns the table of
//     virtual device ids, takes cache invalidations for the guest (IOMMU_HWPT_INVALIDATE with its id), is the
//     pt_id of nested HWPTs allocated on it, and may offer a memory region for mmap() of the iommufd.
//   - Vdevice: a device's virtual id on one vIOMMU (at most one per device, one device per id). It holds its
//     vIOMMU and its device. When the device goes first, the vDEVICE is destroyed with it and its id left as
//     a tombstone: IOMMU_DESTROY of it is then ENOENT and the id is never handed out again.
//   - HwQueue: a queue the (emulated) hardware reads from guest memory, given by its IOVA in the parent's
//     IOAS. That memory is pinned by an internal access while the queue lives, so an unmap of it is EBUSY.
//
// Only the mock driver has vIOMMUs (IommuDriver::viommu_supported()); what its vIOMMU does (the loopback
// data, the mmap page, invalidation of the mock devices' caches, the queue slots) is the kernel selftest's
// mock_viommu_ops (selftest.c), kept in one section of viommu.cc. docs/semantics.md#viommu has the rules.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "uiommufd/base/result.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/lockdep/shared_mutex.h"
#include "uiommufd/objects/access.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/objects/object.h"

namespace uiommufd {

class Device;
class HwQueue;
class Vdevice;
class VeventQueue;

// Types (include/uapi/linux/iommufd.h, iommufd_test.h).
inline constexpr std::uint32_t kViommuTypeDefault = 0;
inline constexpr std::uint32_t kViommuTypeSelftest = 0xdeadbeef;
inline constexpr std::uint32_t kViommuInvalidateDataSelftest = 0xdeadbeef;
inline constexpr std::uint32_t kHwQueueTypeDefault = 0;
inline constexpr std::uint32_t kHwQueueTypeSelftest = 0xdeadbeef;
// The mock vIOMMU's queue slots (IOMMU_TEST_HW_QUEUE_MAX).
inline constexpr std::uint32_t kTestHwQueueMax = 2;

// The reply of an allocation: the new id goes back to the caller before the object is published; a failure
// there undoes the allocation and is its result.
using ObjectRespond = std::function<Status(std::uint32_t id)>;

struct ViommuAllocArgs {
  std::uint32_t flags = 0;
  std::uint32_t type = 0;
  std::uint32_t dev_id = 0;
  std::uint32_t hwpt_id = 0;    // a NEST_PARENT paging HWPT
  std::uint64_t data_uptr = 0;  // the driver's struct for `type` (iommu_viommu_selftest), in and out
  std::uint32_t data_len = 0;   // 0: none
};

class Viommu : public Object {
 public:
  // IOMMU_VIOMMU_ALLOC, errors in the kernel's order (iommufd_viommu_alloc_ioctl(), mock_viommu_init()):
  //   EOPNOTSUPP  flags, or the DEFAULT type;
  //   ENOENT      dev_id is not a device;
  //   EOPNOTSUPP  the device's driver has no vIOMMU of `type`;
  //   ENOENT      hwpt_id is not a paging HWPT;
  //   EINVAL      the HWPT is not a nesting parent;
  //   ENOMEM/ENOSPC the object;
  //   with data:  EINVAL (length below out_data's end or above the struct), EFAULT, ENOMEM (the region's
  //               memory, fault site "viommu.alloc"; its offset, "objects.mmap"), EFAULT writing it back;
  //   then respond's.
  static Result<std::uint32_t> alloc(Context& ctx, const ViommuAllocArgs& args,
                                     const ObjectRespond& respond = {});

  HwptPaging& hwpt() const { return *hwpt_; }
  const IommuDriver& driver() const { return *driver_; }
  std::uint32_t viommu_type() const { return type_; }

  // IOMMU_HWPT_INVALIDATE on the vIOMMU with IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST entries {flags, vdev_id,
  // cache_id}: each clears one cache word (or all, FLAG_ALL) of the device behind vdev_id. array.entry_num
  // comes back as the number handled. An empty array of that type succeeds; otherwise the whole array is read
  // first (ENOMEM: fault site "viommu.invalidate"; EINVAL: another type; E2BIG: a longer entry with a
  // non-zero tail; EFAULT), then entries run in order and the first bad one stops: EOPNOTSUPP an unknown
  // flag, EINVAL a cache_id above 3 or an unknown vdev_id.
  Status invalidate(UserDataArray& array) EXCLUDES(vdevs_mu_);

  // The virtual id `dev` has on this vIOMMU: ENOENT when none (iommufd_viommu_get_vdev_id()).
  Result<std::uint64_t> virt_id_of(const Device& dev) EXCLUDES(vdevs_mu_);
  // The device with virtual id `virt_id`, with a user taken; ENOENT when none.
  Result<ObjectRef<Device>> device_of(std::uint64_t virt_id) EXCLUDES(vdevs_mu_);

  // Reports a virtual event of `type` with `len` bytes of payload to the vIOMMU's queue of that type (the
  // kernel's iommufd_viommu_report_event()): EOPNOTSUPP when it has none; ENOMEM when the event could not be
  // allocated and was counted as lost; 0 otherwise (also when the queue was full and it was counted as
  // lost). The queue's handler, if any, runs afterwards on this thread with no engine lock held.
  Status report_event(std::uint32_t type, const void* data, std::size_t len) EXCLUDES(veventqs_mu_);

  // The region mmap() of the iommufd offers (0, 0 when allocated without data).
  std::uint64_t mmap_offset() const { return mmap_offset_; }
  std::uint64_t mmap_length() const { return mmap_offset_ ? kMmapLength : 0; }
  static constexpr std::uint64_t kMmapLength = 2 * 4096;

  ~Viommu() override;

 protected:
  void destroy() override;

 private:
  friend class Vdevice;
  friend class HwQueue;
  Viommu(Context& ctx, HwptPaging& hwpt, const IommuDriver& driver, std::uint32_t type)
      : Object(ctx, ObjectType::kViommu),
        hwpt_(ObjectRef<HwptPaging>::hold(hwpt)),
        driver_(&driver),
        type_(type) {}
  // The mock's viommu_init with data: the loopback and the mmap page.
  Status init_data(const ViommuAllocArgs& args);

  ObjectRef<HwptPaging> hwpt_;  // a user of the nesting parent until the object goes
  const IommuDriver* const driver_;
  const std::uint32_t type_;
  int memfd_ = -1;  // the two pages of the mmap region
  std::uint64_t mmap_offset_ = 0;

  lockdep::Mutex vdevs_mu_{lock_order::kViommuVdevs};
  // Virtual id -> vDEVICE; null while an allocation holds the id.
  std::map<std::uint64_t, Vdevice*> vdevs_ GUARDED_BY(vdevs_mu_);

  // The event queues, one per type; `live` once published (reports skip a queue still being made).
  friend class VeventQueue;
  struct VeventqSlot {
    VeventQueue* queue;
    bool live;
  };
  lockdep::SharedMutex veventqs_mu_{lock_order::kViommuVeventqs};
  std::vector<VeventqSlot> veventqs_ GUARDED_BY(veventqs_mu_);

  lockdep::Mutex queues_mu_{lock_order::kViommuQueues};
  std::array<HwQueue*, kTestHwQueueMax> hw_queues_ GUARDED_BY(queues_mu_){};
};

class Vdevice : public Object {
 public:
  // IOMMU_VDEVICE_ALLOC (iommufd_vdevice_alloc_ioctl()): ENOENT viommu_id, then dev_id; EINVAL a device of
  // another IOMMU; ENOENT a device being destroyed; EEXIST the device already has a vDEVICE, or virt_id is
  // taken on the vIOMMU; ENOMEM/ENOSPC; then respond's.
  static Result<std::uint32_t> alloc(Context& ctx, std::uint32_t viommu_id, std::uint32_t dev_id,
                                     std::uint64_t virt_id, const ObjectRespond& respond = {});

  Viommu& viommu() const { return *viommu_; }
  Device& device() const { return *device_; }
  std::uint64_t virt_id() const { return virt_id_; }

 protected:
  void destroy() override;

 private:
  Vdevice(Context& ctx, Viommu& viommu, Device& device, std::uint64_t virt_id)
      : Object(ctx, ObjectType::kVdevice),
        viommu_(ObjectRef<Viommu>::hold(viommu)),
        device_(ObjectRef<Device>::hold(device)),
        virt_id_(virt_id) {}
  // Off the device and the vIOMMU's table (the kernel's iommufd_vdevice_abort()).
  void unlink();

  ObjectRef<Viommu> viommu_;
  ObjectRef<Device> device_;
  const std::uint64_t virt_id_;
};

struct HwQueueAllocArgs {
  std::uint32_t flags = 0;
  std::uint32_t viommu_id = 0;
  std::uint32_t type = 0;
  std::uint32_t index = 0;
  std::uint64_t nesting_parent_iova = 0;
  std::uint64_t length = 0;
};

class HwQueue : public Object {
 public:
  // IOMMU_HW_QUEUE_ALLOC, errors in the kernel's order (iommufd_hw_queue_alloc_ioctl(),
  // iommufd_hw_queue_alloc_phys(), mock_hw_queue_init_phys()):
  //   EOPNOTSUPP flags or the DEFAULT type;  EINVAL length 0;  EOVERFLOW the range wraps;
  //   ENOENT viommu_id;  EOPNOTSUPP a type the vIOMMU has no queues of;  ENOMEM/ENOSPC the object;
  //   ERANGE the page-rounded length wraps;  ENOMEM the page list (fault site "viommu.hw_queue", or more
  //   pages than the kernel's kvmalloc allows);  the internal access's (ENOMEM/ENOSPC, EADDRINUSE) and its
  //   pin's (ENOENT a hole, EINVAL, EFAULT...);  EFAULT the pages are not physically contiguous;
  //   EINVAL index >= kTestHwQueueMax;  EEXIST the index is taken;  EIO index − 1 is not;  then respond's.
  // A queue at index > 0 depends on the one before it, which cannot be destroyed first (EBUSY).
  static Result<std::uint32_t> alloc(Context& ctx, const HwQueueAllocArgs& args,
                                     const ObjectRespond& respond = {});

  std::uint32_t index() const { return index_; }

 protected:
  void destroy() override;

 private:
  explicit HwQueue(Context& ctx) : Object(ctx, ObjectType::kHwQueue) {}
  // Pins the queue's memory through a new internal access on the parent's IOAS, checks it is contiguous
  // and returns its address; on failure nothing is left.
  Result<PhysAddr> pin_memory(Viommu& viommu, const HwQueueAllocArgs& args);
  void unpin_memory();

  ObjectRef<Viommu> viommu_;  // set once the queue holds its vIOMMU
  ObjectRef<Access> access_;  // the internal access (its driver reference), while the memory is pinned
  std::uint64_t base_iova_ = 0, length_ = 0;
  std::uint32_t index_ = 0;
  bool in_slot_ = false;     // the mock's slot at index_ points here
  HwQueue* prev_ = nullptr;  // the queue this one depends on (a user of it)
};

}  // namespace uiommufd
