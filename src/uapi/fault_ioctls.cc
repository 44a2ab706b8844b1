// IOMMU_FAULT_QUEUE_ALLOC (the kernel's iommufd_fault_alloc(), drivers/iommu/iommufd/eventq.c).

#include <cerrno>
#include <memory>

#include "event_queue_file.h"
#include "handlers.h"

#include "uiommufd/base/try.h"
#include "uiommufd/objects/fault_queue.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {

static_assert(sizeof(FaultMessage) == sizeof(iommu_hwpt_pgfault) &&
                  offsetof(FaultMessage, addr) == offsetof(iommu_hwpt_pgfault, addr) &&
                  offsetof(FaultMessage, cookie) == offsetof(iommu_hwpt_pgfault, cookie),
              "FaultMessage is struct iommu_hwpt_pgfault");
static_assert(sizeof(FaultResponse) == sizeof(iommu_hwpt_page_response) &&
                  offsetof(FaultResponse, code) == offsetof(iommu_hwpt_page_response, code),
              "FaultResponse is struct iommu_hwpt_page_response");

long fault_queue_alloc(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_fault_alloc>();
  if (cmd.flags) return -EOPNOTSUPP;
  Context& ctx = ucmd.ctx;
  Result<FaultQueue*> queue = FaultQueue::create_reserved(ctx);
  if (!queue.ok()) return -queue.error();
  const std::uint32_t id = (*queue)->id();
  // Everything below is undone in reverse: the fd (which drops the file and its user of the queue), then
  // the reserved id.
  Result<std::shared_ptr<FaultQueueFile>> file =
      FaultQueueFile::create(ucmd.file.shared_from_this(), **queue);
  if (!file.ok()) {
    ctx.abort(id);
    return -file.error();
  }
  FdHost& host = ucmd.file.host();
  Result<int> fd = EventQueueFile::install(host, std::move(*file), PollFace::kReadWrite);
  if (!fd.ok()) {
    ctx.abort(id);
    return -fd.error();
  }
  cmd.out_fault_id = id;
  cmd.out_fault_fd = static_cast<std::uint32_t>(*fd);
  if (Status st = copy_out(ucmd, cmd); !st.ok()) {
    host.uninstall(*fd);
    ctx.abort(id);
    return to_ret(st);
  }
  ctx.finalize(id);
  return 0;
}

}  // namespace uiommufd::uapi
