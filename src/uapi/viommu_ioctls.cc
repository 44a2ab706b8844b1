// The virtual-IOMMU commands: IOMMU_VIOMMU_ALLOC, IOMMU_VDEVICE_ALLOC, IOMMU_HW_QUEUE_ALLOC,
// IOMMU_VEVENTQ_ALLOC
// (docs/semantics.md#viommu). The struct rules are the dispatcher's; the objects check the fields in the
// kernel's order (drivers/iommu/iommufd/viommu.c), and the reply is written before the object is published.

#include "event_queue_file.h"
#include "handlers.h"

#include "uiommufd/objects/vevent_queue.h"
#include "uiommufd/objects/viommu.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::uapi {

long viommu_alloc(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_viommu_alloc>();
  ViommuAllocArgs args;
  args.flags = cmd.flags;
  args.type = cmd.type;
  args.dev_id = cmd.dev_id;
  args.hwpt_id = cmd.hwpt_id;
  args.data_uptr = cmd.data_uptr;
  args.data_len = cmd.data_len;
  Result<std::uint32_t> id = Viommu::alloc(ucmd.ctx, args, [&](std::uint32_t viommu_id) {
    cmd.out_viommu_id = viommu_id;
    return copy_out(ucmd, cmd);
  });
  return to_ret(id.status());
}

long vdevice_alloc(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_vdevice_alloc>();
  Result<std::uint32_t> id =
      Vdevice::alloc(ucmd.ctx, cmd.viommu_id, cmd.dev_id, cmd.virt_id, [&](std::uint32_t vdevice_id) {
        cmd.out_vdevice_id = vdevice_id;
        return copy_out(ucmd, cmd);
      });
  return to_ret(id.status());
}

long hw_queue_alloc(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_hw_queue_alloc>();
  HwQueueAllocArgs args;
  args.flags = cmd.flags;
  args.viommu_id = cmd.viommu_id;
  args.type = cmd.type;
  args.index = cmd.index;
  args.nesting_parent_iova = cmd.nesting_parent_iova;
  args.length = cmd.length;
  Result<std::uint32_t> id = HwQueue::alloc(ucmd.ctx, args, [&](std::uint32_t queue_id) {
    cmd.out_hw_queue_id = queue_id;
    return copy_out(ucmd, cmd);
  });
  return to_ret(id.status());
}

// IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc()): the queue, its file behind a new fd that polls readable
// only, the reply, then the queue is published. Each failure undoes the steps before it in reverse.
long veventq_alloc(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_veventq_alloc>();
  if (cmd.flags || cmd.__reserved || cmd.type == kVeventqTypeDefault) return -EOPNOTSUPP;
  if (cmd.veventq_depth == 0 || cmd.veventq_depth > kVeventqMaxDepth) return -EINVAL;
  Result<ObjectRef<Viommu>> viommu = ucmd.ctx.get<Viommu>(cmd.viommu_id, ObjectType::kViommu);
  if (!viommu.ok()) return -viommu.error();
  Result<VeventQueue*> queue = VeventQueue::create_reserved(**viommu, 0, cmd.type, cmd.veventq_depth);
  if (!queue.ok()) return -queue.error();
  Result<std::shared_ptr<VeventQueueFile>> file =
      VeventQueueFile::create(ucmd.file.shared_from_this(), **queue);
  if (!file.ok()) {
    (*queue)->abort_reserved();
    return -file.error();
  }
  FdHost& host = ucmd.file.host();
  Result<int> fd = EventQueueFile::install(host, std::move(*file), PollFace::kReadOnly);
  if (!fd.ok()) {
    (*queue)->abort_reserved();
    return -fd.error();
  }
  cmd.out_veventq_id = (*queue)->id();
  cmd.out_veventq_fd = static_cast<std::uint32_t>(*fd);
  if (Status st = copy_out(ucmd, cmd); !st.ok()) {
    host.uninstall(*fd);
    (*queue)->abort_reserved();
    return to_ret(st);
  }
  (*queue)->publish();
  return 0;
}

}  // namespace uiommufd::uapi
