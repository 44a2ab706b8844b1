#include "uiommufd/objects/viommu.h"

#include <cerrno>
#include <climits>
#include <cstring>
#include <new>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/high_fd.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/try.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"

namespace uiommufd {

namespace {
// The mock vIOMMU's page for mmap (__get_free_pages() in mock_viommu_init()).
UIOMMUFD_FAULT_SITE(g_fault_viommu_alloc, "viommu.alloc", ENOMEM);
// The copy of an invalidation array (kzalloc in mock_viommu_cache_invalidate()).
UIOMMUFD_FAULT_SITE(g_fault_viommu_invalidate, "viommu.invalidate", ENOMEM);
// A hardware queue's page list (kvcalloc in iommufd_hw_queue_alloc_phys()).
UIOMMUFD_FAULT_SITE(g_fault_hw_queue, "viommu.hw_queue", ENOMEM);

// struct iommu_viommu_selftest (iommufd_test.h): in_data is looped back to out_data, and the mmap region
// is reported. The first version ends at out_data.
struct ViommuSelftest {
  std::uint32_t in_data;
  std::uint32_t out_data;
  std::uint64_t out_mmap_offset;
  std::uint64_t out_mmap_length;
};
constexpr std::size_t kViommuSelftestMin = offsetof(ViommuSelftest, out_data) + sizeof(std::uint32_t);

// struct iommu_viommu_invalidate_selftest.
struct ViommuInvalidateSelftest {
  std::uint32_t flags;
  std::uint32_t vdev_id;
  std::uint32_t cache_id;
};
static_assert(sizeof(ViommuInvalidateSelftest) == 12);
}  // namespace

// ---- vIOMMU -------------------------------------------------------------------------------------------

Result<std::uint32_t> Viommu::alloc(Context& ctx, const ViommuAllocArgs& args, const ObjectRespond& respond) {
  if (args.flags || args.type == kViommuTypeDefault) return Status::error(EOPNOTSUPP);
  ObjectRef<Device> dev = TRY(ctx.get<Device>(args.dev_id, ObjectType::kDevice));
  if (!dev->driver().viommu_supported(args.type)) return Status::error(EOPNOTSUPP);
  ObjectRef<HwptPaging> hwpt = TRY(ctx.get<HwptPaging>(args.hwpt_id, ObjectType::kHwptPaging));
  if (!hwpt->nest_parent()) return Status::error(EINVAL);
  auto* viommu = new (std::nothrow) Viommu(ctx, *hwpt, dev->driver(), args.type);
  if (!viommu) return Status::error(ENOMEM);
  TRY(ctx.reserve(std::unique_ptr<Object>(viommu)));
  // From here a failure goes through the destroy op, as the kernel's abort of a half-made vIOMMU does.
  return ctx.finish_create(*viommu, args.data_len ? viommu->init_data(args) : Status(), respond);
}

Status Viommu::init_data(const ViommuAllocArgs& args) {
  // The data's type is the vIOMMU's own type.
  const UserData data{type_, args.data_uptr, args.data_len};
  ViommuSelftest cfg;
  if (data.len < kViommuSelftestMin || data.len > sizeof(cfg)) return Status::error(EINVAL);
  TRY(Mm::current_ref().copy_struct_from_user(&cfg, sizeof(cfg), data.uptr, data.len));
  // The region's two pages live in a memfd, so that mmap() of the iommufd can share them.
  TRY(inject(g_fault_viommu_alloc));
  const int fd = move_high(memfd_create("uiommufd-viommu", MFD_CLOEXEC));
  if (fd < 0) return Status::error(ENOMEM);
  if (ftruncate(fd, static_cast<off_t>(kMmapLength)) != 0 ||
      pwrite(fd, &cfg.in_data, sizeof(cfg.in_data), 0) != static_cast<ssize_t>(sizeof(cfg.in_data))) {
    close(fd);
    return Status::error(ENOMEM);
  }
  memfd_ = fd;
  mmap_offset_ = TRY(context().alloc_mmap(*this, memfd_, kMmapLength));
  cfg.out_data = cfg.in_data;
  cfg.out_mmap_offset = mmap_offset_;
  cfg.out_mmap_length = kMmapLength;
  return Mm::current_ref().copy_to_user(data.uptr, &cfg, data.len);
}

void Viommu::destroy() {
  if (mmap_offset_) context().destroy_mmap(mmap_offset_);
  mmap_offset_ = 0;
  hwpt_.reset();
}

Viommu::~Viommu() {
  // The region's file may outlive the object in a mapping, which holds the file itself.
  if (memfd_ >= 0) close(memfd_);
}

Result<std::uint64_t> Viommu::virt_id_of(const Device& dev) {
  lockdep::MutexGuard g(vdevs_mu_);
  for (const auto& [virt_id, vdev] : vdevs_) {
    if (vdev && &vdev->device() == &dev) return virt_id;
  }
  return Status::error(ENOENT);
}

Result<ObjectRef<Device>> Viommu::device_of(std::uint64_t virt_id) {
  lockdep::MutexGuard g(vdevs_mu_);
  auto it = vdevs_.find(virt_id);
  if (it == vdevs_.end() || !it->second) return Status::error(ENOENT);
  return ObjectRef<Device>::hold(it->second->device());
}

// ---- the mock's vIOMMU invalidation (selftest.c mock_viommu_cache_invalidate()) ---------------------------

Status Viommu::invalidate(UserDataArray& array) {
  const std::uint32_t requested = array.entry_num;
  array.entry_num = 0;
  // An empty array only checks the type.
  if (requested == 0 && array.type == kViommuInvalidateDataSelftest) return {};
  TRY(inject(g_fault_viommu_invalidate));
  std::vector<ViommuInvalidateSelftest> cmds;
  try {
    cmds.resize(requested);
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  // The whole array is read before any entry runs (iommu_copy_struct_from_full_user_array()).
  if (array.type != kViommuInvalidateDataSelftest || requested == 0) return Status::error(EINVAL);
  const Mm& mm = Mm::current_ref();
  if (array.entry_len == sizeof(ViommuInvalidateSelftest)) {
    TRY(mm.copy_from_user(cmds.data(), array.uptr, std::size_t{requested} * array.entry_len));
  } else {
    for (std::uint32_t i = 0; i < requested; ++i)
      TRY(mm.copy_struct_from_user(&cmds[i], sizeof(cmds[i]), array.uptr + std::uint64_t{array.entry_len} * i,
                                   array.entry_len));
  }
  for (const ViommuInvalidateSelftest& cmd : cmds) {
    if (cmd.flags & ~kTestInvalidateFlagAll) return Status::error(EOPNOTSUPP);
    if (cmd.cache_id >= Device::kCacheNum) return Status::error(EINVAL);
    {
      lockdep::MutexGuard g(vdevs_mu_);
      auto it = vdevs_.find(cmd.vdev_id);
      if (it == vdevs_.end() || !it->second) return Status::error(EINVAL);
      it->second->device().invalidate_cache(cmd.cache_id, cmd.flags & kTestInvalidateFlagAll);
    }
    ++array.entry_num;
  }
  return {};
}

// ---- vDEVICE ------------------------------------------------------------------------------------------

Result<std::uint32_t> Vdevice::alloc(Context& ctx, std::uint32_t viommu_id, std::uint32_t dev_id,
                                     std::uint64_t virt_id, const ObjectRespond& respond) {
  ObjectRef<Viommu> viommu = TRY(ctx.get<Viommu>(viommu_id, ObjectType::kViommu));
  ObjectRef<Device> dev = TRY(ctx.get<Device>(dev_id, ObjectType::kDevice));
  if (&viommu->driver() != &dev->driver()) return Status::error(EINVAL);
  lockdep::MutexGuard g(dev->mu_);
  if (dev->destroying_) return Status::error(ENOENT);
  if (dev->vdev_) return Status::error(EEXIST);
  auto* vdev = new (std::nothrow) Vdevice(ctx, *viommu, *dev, virt_id);
  if (!vdev) return Status::error(ENOMEM);
  const std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(vdev)));
  dev->vdev_ = vdev;
  Status st;
  {
    lockdep::MutexGuard v(viommu->vdevs_mu_);
    try {
      // Held with no vDEVICE until the reply has gone, so lookups do not find a half-made one.
      if (!viommu->vdevs_.emplace(virt_id, nullptr).second) st = Status::error(EEXIST);
    } catch (const std::bad_alloc&) {
      st = Status::error(ENOMEM);
    }
  }
  const bool inserted = st.ok();
  if (st.ok() && respond) st = respond(id);
  if (!st.ok()) {
    dev->vdev_ = nullptr;
    if (inserted) {
      lockdep::MutexGuard v(viommu->vdevs_mu_);
      viommu->vdevs_.erase(virt_id);
    }
    ctx.abort(id);
    return st;
  }
  {
    lockdep::MutexGuard v(viommu->vdevs_mu_);
    viommu->vdevs_[virt_id] = vdev;
  }
  ctx.finalize(id);
  return id;
}

void Vdevice::unlink() {
  Device& dev = *device_;
  lockdep::MutexGuard g(dev.mu_);
  {
    lockdep::MutexGuard v(viommu_->vdevs_mu_);
    auto it = viommu_->vdevs_.find(virt_id_);
    if (it != viommu_->vdevs_.end() && it->second == this) viommu_->vdevs_.erase(it);
  }
  dev.vdev_ = nullptr;
}

void Vdevice::destroy() {
  unlink();
  viommu_.reset();
  device_.reset();
}

// ---- hardware queues ----------------------------------------------------------------------------------

Result<std::uint32_t> HwQueue::alloc(Context& ctx, const HwQueueAllocArgs& args,
                                     const ObjectRespond& respond) {
  if (args.flags || args.type == kHwQueueTypeDefault) return Status::error(EOPNOTSUPP);
  if (args.length == 0) return Status::error(EINVAL);
  std::uint64_t last;
  if (!checked_add(args.nesting_parent_iova, args.length - 1, &last)) return Status::error(EOVERFLOW);
  ObjectRef<Viommu> viommu = TRY(ctx.get<Viommu>(args.viommu_id, ObjectType::kViommu));
  // The mock vIOMMU has queues of one type (mock_viommu_get_hw_queue_size()).
  if (args.type != kHwQueueTypeSelftest) return Status::error(EOPNOTSUPP);
  auto* queue = new (std::nothrow) HwQueue(ctx);
  if (!queue) return Status::error(ENOMEM);
  const std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(queue)));
  Result<PhysAddr> base = queue->pin_memory(*viommu, args);
  if (!base.ok()) {
    ctx.abort(id);
    return base.status();
  }
  queue->viommu_ = ObjectRef<Viommu>::hold(*viommu);
  queue->base_iova_ = args.nesting_parent_iova;
  queue->length_ = args.length;

  // The mock's hw_queue_init_phys(): a slot per index, filled in order, and a check that the address the
  // core found is what the parent domain translates the IOVA to.
  Status st;
  if (args.index >= kTestHwQueueMax) {
    st = Status::error(EINVAL);
  } else {
    lockdep::MutexGuard g(viommu->queues_mu_);
    if (viommu->hw_queues_[args.index]) {
      st = Status::error(EEXIST);
    } else if (args.index && !viommu->hw_queues_[args.index - 1]) {
      st = Status::error(EIO);
    } else if (viommu->hwpt().domain().iova_to_phys(args.nesting_parent_iova) !=
               std::optional<PhysAddr>(*base)) {
      st = Status::error(EFAULT);
    } else {
      if (args.index) {
        queue->prev_ = viommu->hw_queues_[args.index - 1];
        queue->prev_->add_user();  // the kernel's iommufd_hw_queue_depend()
      }
      queue->index_ = args.index;
      queue->in_slot_ = true;
      viommu->hw_queues_[args.index] = queue;
    }
  }
  return ctx.finish_create(*queue, st, respond);
}

Result<PhysAddr> HwQueue::pin_memory(Viommu& viommu, const HwQueueAllocArgs& args) {
  const std::uint64_t aligned = page_align_down(args.nesting_parent_iova);
  const std::uint64_t offset = args.nesting_parent_iova - aligned;
  std::uint64_t length;
  if (!checked_add(offset, args.length, &length) || !checked_add(length, kPageSize - 1, &length))
    return Status::error(ERANGE);
  const std::uint64_t npages = length / kPageSize;
  length = npages * kPageSize;
  // The kernel's page list is one kvmalloc, which refuses more than INT_MAX bytes.
  TRY(inject(g_fault_hw_queue));
  if (npages > INT_MAX / sizeof(void*)) return Status::error(ENOMEM);

  Access::Ops ops;
  ops.internal = true;
  ObjectRef<Access> access = TRY(Access::create(context(), std::move(ops)));
  Status st = access->attach(viommu.hwpt().ioas().id());
  std::vector<AccessPage> pages;
  if (st.ok()) {
    st = access->pin_pages(aligned, length, &pages, 0);
    if (st.ok()) {
      // Physically contiguous: one block of the memory's own page size holds them all.
      const auto first = reinterpret_cast<std::uint64_t>(pages.front().address);
      const auto final = reinterpret_cast<std::uint64_t>(pages.back().address);
      bool contiguous = final - first == (npages - 1) * kPageSize;
      if (contiguous && npages > 1) {
        const std::uint64_t block = Mm::current_ref().physical_block(first, length);
        contiguous = first / block == final / block;
      }
      if (!contiguous) {
        st = Status::error(EFAULT);
        access->unpin_pages(aligned, length);
      }
    }
    if (!st.ok()) access->detach();
  }
  if (!st.ok()) {
    Access::destroy(std::move(access));
    return st;
  }
  access_ = std::move(access);
  return pages.front().phys + offset;
}

void HwQueue::unpin_memory() {
  if (!access_) return;
  const std::uint64_t aligned = page_align_down(base_iova_);
  access_->unpin_pages(aligned, page_align_down(length_ + (base_iova_ - aligned) + kPageSize - 1));
  access_->detach();
  Access::destroy(std::move(access_));
}

void HwQueue::destroy() {
  if (in_slot_) {
    lockdep::MutexGuard g(viommu_->queues_mu_);
    viommu_->hw_queues_[index_] = nullptr;
    in_slot_ = false;
  }
  if (prev_) std::exchange(prev_, nullptr)->drop_user();
  unpin_memory();
  viommu_.reset();
}

}  // namespace uiommufd
