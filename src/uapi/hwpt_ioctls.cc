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

namespace {

// The caller's dirty bitmap, written as the kernel's iova_bitmap does (iova_bitmap.c): bit b is IOVA
// iova + (b << shift); bits are only ever set; each report sets its bits page by page of the bitmap and
// stops at the first page that cannot be written (the kernel's pin of that page fails and the rest of the
// report is dropped); a report whose first byte lies at or past the bitmap's end is dropped, and one that
// runs past the end keeps going to the end of the pages the kernel would have pinned for it (nothing trims
// it to the request). Writes are read-modify-write user copies with no engine lock held.
class UserBitmap {
 public:
  UserBitmap(std::uint64_t iova, std::uint64_t length, std::uint64_t page_size, std::uint64_t data)
      : iova_(iova),
        shift_(static_cast<unsigned>(__builtin_ctzll(page_size))),
        total_bytes_((((length - 1) >> shift_) >> 3) + 1),
        data_(data) {}

  void set(std::uint64_t va, std::uint64_t len) {
    if (len == 0) return;
    std::uint64_t bit = (va - iova_) >> shift_;
    const std::uint64_t last_bit = (va - iova_ + (len - 1)) >> shift_;
    const std::uint64_t base = bit >> 3;
    if (base >= total_bytes_) return;
    // The pages the kernel pins for this report: from the page of its first byte, enough for the rest of
    // the bitmap plus one when that byte is not page aligned, at most 512.
    const std::uint64_t pin_start = data_ + base;
    const std::uint64_t npages = std::min<std::uint64_t>(
        (total_bytes_ - base + kPageSize - 1) / kPageSize + (page_offset(pin_start) != 0), 512);
    std::uint64_t window_end = page_align_down(pin_start) + npages * kPageSize;
    while (bit <= last_bit) {
      const std::uint64_t addr = data_ + (bit >> 3);
      if (addr >= window_end) {
        // The kernel moves its window to this bit, if it is still inside the bitmap.
        if ((bit >> 3) >= total_bytes_) return;
        const std::uint64_t pages = std::min<std::uint64_t>(
            (total_bytes_ - (bit >> 3) + kPageSize - 1) / kPageSize + (page_offset(addr) != 0), 512);
        window_end = page_align_down(addr) + pages * kPageSize;
      }
      const std::uint64_t page_end = page_align_down(addr) + kPageSize;
      const std::uint64_t hi = std::min(last_bit, (page_end - data_) * 8 - 1);
      if (!or_bits(bit, hi)) return;
      bit = hi + 1;
    }
  }

 private:
  // Sets bits [lo, hi] (all in one page of the bitmap); false when that page cannot be written.
  bool or_bits(std::uint64_t lo, std::uint64_t hi) {
    const std::uint64_t first = lo >> 3, last = hi >> 3;
    std::uint8_t buf[kPageSize];
    const std::size_t n = last - first + 1;
    Mm& mm = Mm::current_ref();
    if (!mm.copy_from_user(buf, data_ + first, n).ok()) return false;
    for (std::uint64_t b = lo; b <= hi; ++b)
      buf[(b >> 3) - first] |= static_cast<std::uint8_t>(1u << (b & 7));
    return mm.copy_to_user(data_ + first, buf, n).ok();
  }

  const std::uint64_t iova_;
  const unsigned shift_;
  const std::uint64_t total_bytes_;
  const std::uint64_t data_;
};

// The kernel's iommufd_check_iova_range(): the range against the IOAS's alignment and page_size, which is
// used as a mask (it need not be a power of two; the bitmap counts in its lowest set bit).
Status check_dirty_range(std::uint64_t iova, std::uint64_t length, std::uint64_t page_size,
                         std::uint64_t align) {
  std::uint64_t last = 0;
  if (!checked_add(iova, length - 1, &last)) return Status::error(EOVERFLOW);
  if ((iova & (align - 1)) || ((last + 1) & (align - 1))) return Status::error(EINVAL);
  if (!page_size) return Status::error(EINVAL);
  if ((iova & (page_size - 1)) || ((last + 1) & (page_size - 1))) return Status::error(EINVAL);
  return {};
}

}  // namespace

long hwpt_get_dirty_bitmap(Ucmd& ucmd) {
  const auto& cmd = ucmd.arg<iommu_hwpt_get_dirty_bitmap>();
  if ((cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) || cmd.__reserved) return -EOPNOTSUPP;
  Result<ObjectRef<HwptPaging>> hwpt = ucmd.ctx.get<HwptPaging>(cmd.hwpt_id, ObjectType::kHwptPaging);
  if (!hwpt.ok()) return -hwpt.error();
  IoPagetable& iopt = (*hwpt)->ioas().iopt();
  if (Status st = check_dirty_range(cmd.iova, cmd.length, cmd.page_size, iopt.iova_alignment()); !st.ok())
    return to_ret(st);
  Domain& domain = (*hwpt)->domain();
  if (!domain.dirty_capable()) return -EOPNOTSUPP;
  // As in the kernel, what follows never fails the call: a hole ends the walk and a bitmap byte that
  // cannot be written loses its bits (iommu_read_and_clear_dirty() ignores the walk's result).
  UserBitmap bitmap(cmd.iova, cmd.length, cmd.page_size, cmd.data);
  const std::uint64_t last = cmd.iova + (cmd.length - 1);
  const bool no_clear = cmd.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR;
  IoPagetable::DirtyWalk walk{cmd.iova, false};
  std::vector<IoPagetable::DirtyRange> ranges;
  while (!walk.done) {
    ranges.clear();
    if (!iopt.read_dirty_window(&domain, last, no_clear, &ranges, &walk).ok()) break;
    for (const auto& r : ranges) bitmap.set(r.iova, r.length);
  }
  return 0;
}

}  // namespace uiommufd::uapi
