// The page-table commands of the newest ABI: IOMMU_HWPT_ALLOC, IOMMU_GET_HW_INFO, IOMMU_HWPT_INVALIDATE
// (docs/semantics.md#hwpt, docs/abi.md). The struct rules are the dispatcher's; each handler then checks
// its fields in the order of the kernel's handler (drivers/iommu/iommufd/hw_pagetable.c
// iommufd_hwpt_alloc(), iommufd_hwpt_invalidate(); device.c iommufd_get_hw_info()).

#include <algorithm>
#include <cerrno>
#include <vector>

#include "handlers.h"

#include "uiommufd/base/checked.h"
#include "uiommufd/base/page.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::uapi {

long hwpt_alloc(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_hwpt_alloc>();
  if (cmd.__reserved) return -EOPNOTSUPP;
  HwptAllocArgs args;
  args.flags = cmd.flags;
  args.dev_id = cmd.dev_id;
  args.pt_id = cmd.pt_id;
  args.data = UserData{cmd.data_type, cmd.data_uptr, cmd.data_len};
  args.fault_id = cmd.fault_id;
  Result<std::uint32_t> id = HwPagetable::alloc(ucmd.ctx, args, [&](std::uint32_t hwpt_id) {
    cmd.out_hwpt_id = hwpt_id;
    return copy_out(ucmd, cmd);
  });
  return to_ret(id.status());
}

long get_hw_info(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_hw_info>();
  if (cmd.flags & ~IOMMU_HW_INFO_FLAG_INPUT_TYPE) return -EOPNOTSUPP;
  if (cmd.__reserved[0] || cmd.__reserved[1] || cmd.__reserved[2]) return -EOPNOTSUPP;
  // Without the flag the field is only an output: whatever the caller left there asks for the default.
  if (!(cmd.flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE)) cmd.data_type = kHwInfoTypeDefault;
  Result<ObjectRef<Device>> dev = ucmd.ctx.get<Device>(cmd.dev_id, ObjectType::kDevice);
  if (!dev.ok()) return -dev.error();
  Result<Device::HwInfo> info = (*dev)->hw_info(cmd.data_type);
  if (!info.ok()) return -info.error();
  // The caller's buffer gets what fits, then zeros up to its length: a larger buffer never holds stale
  // bytes, a smaller one gets a prefix. data_len then says how much the driver has.
  Mm& mm = Mm::current_ref();
  const std::size_t copy_len = std::min<std::size_t>(cmd.data_len, info->data.size());
  if (copy_len) {
    if (Status st = mm.copy_to_user(cmd.data_uptr, info->data.data(), copy_len); !st.ok()) return -EFAULT;
  }
  // clear_user() refuses a range that is not all user space (it wraps, or ends above x86-64's
  // TASK_SIZE_MAX) before writing anything; within it, it zeroes up to the first unmapped byte. So: the
  // range check first, then a page at a time (which also keeps a huge data_len from costing memory).
  static constexpr std::uint64_t kTaskSizeMax = (std::uint64_t{1} << 47) - kPageSize;
  std::uint64_t end = 0;
  if (copy_len < cmd.data_len &&
      (!checked_add(cmd.data_uptr, std::uint64_t{cmd.data_len}, &end) || end > kTaskSizeMax))
    return -EFAULT;
  static constexpr std::uint8_t kZeros[kPageSize] = {};
  for (std::uint64_t at = cmd.data_uptr + copy_len; at < end;) {
    const std::uint64_t chunk = std::min<std::uint64_t>(end - at, kPageSize - page_offset(at));
    if (Status st = mm.copy_to_user(at, kZeros, chunk); !st.ok()) return -EFAULT;
    at += chunk;
  }
  cmd.data_len = static_cast<std::uint32_t>(info->data.size());
  cmd.data_type = info->type;
  cmd.out_capabilities = info->capabilities;
  cmd.out_max_pasid_log2 = info->max_pasid_log2;
  return to_ret(copy_out(ucmd, cmd));
}

long hwpt_invalidate(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_hwpt_invalidate>();
  Status st;
  UserDataArray array{cmd.data_type, cmd.data_uptr, cmd.entry_len, cmd.entry_num};
  if (cmd.__reserved) {
    array.entry_num = 0;
    st = Status::error(EOPNOTSUPP);
  } else {
    st = HwPagetable::invalidate(ucmd.ctx, cmd.hwpt_id, array);
  }
  // The count handled goes back on success and failure alike: it tells the caller where the array stopped.
  cmd.entry_num = array.entry_num;
  if (Status reply = copy_out(ucmd, cmd); !reply.ok()) return -EFAULT;
  return to_ret(st);
}

long hwpt_set_dirty_tracking(Ucmd& ucmd) {
  const auto& cmd = ucmd.arg<iommu_hwpt_set_dirty_tracking>();
  if (cmd.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE) return -EOPNOTSUPP;
  Result<ObjectRef<HwptPaging>> hwpt = ucmd.ctx.get<HwptPaging>(cmd.hwpt_id, ObjectType::kHwptPaging);
  if (!hwpt.ok()) return -hwpt.error();
  return to_ret((*hwpt)->set_dirty_tracking(cmd.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
}

long hwpt_get_dirty_bitmap(Ucmd& ucmd) {
  const auto& cmd = ucmd.arg<iommu_hwpt_get_dirty_bitmap>();
  if ((cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) || cmd.__reserved) return -EOPNOTSUPP;
  Result<ObjectRef<HwptPaging>> hwpt = ucmd.ctx.get<HwptPaging>(cmd.hwpt_id, ObjectType::kHwptPaging);
  if (!hwpt.ok()) return -hwpt.error();
  DirtyBitmapRequest req;
  req.iova = cmd.iova;
  req.length = cmd.length;
  req.page_size = cmd.page_size;
  req.data = cmd.data;
  req.no_clear = cmd.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR;
  return to_ret((*hwpt)->read_dirty_bitmap(req));
}

}  // namespace uiommufd::uapi
