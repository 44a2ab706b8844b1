// The ioctl dispatcher of an iommufd file: the command table, the size rules, then the handler.

#include <array>
#include <cerrno>
#include <cstddef>
#include <new>

#include <fcntl.h>

#include "handlers.h"

#include "uiommufd/base/try.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {

namespace {

struct Op {
  long (*execute)(Ucmd&);
  std::uint32_t size;      // the struct as we know it
  std::uint32_t min_size;  // the end of its last mandatory field
};

#define UIOMMUFD_OP(fn, type, last_field) \
  Op { fn, sizeof(type), static_cast<std::uint32_t>(offsetof(type, last_field) + sizeof(type::last_field)) }

// Indexed by nr − kCmdBase; a hole (execute == nullptr) is ENOTTY, as an unknown command is.
constexpr std::size_t kOpCount = kNrTestCmd - kCmdBase + 1;
constexpr std::array<Op, kOpCount> make_ops() {
  std::array<Op, kOpCount> ops{};
  ops[kNrDestroy - kCmdBase] = UIOMMUFD_OP(destroy, iommu_destroy, id);
  ops[kNrIoasAlloc - kCmdBase] = UIOMMUFD_OP(ioas_alloc, iommu_ioas_alloc, out_ioas_id);
  ops[kNrIoasAllowIovas - kCmdBase] = UIOMMUFD_OP(ioas_allow_iovas, iommu_ioas_allow_iovas, allowed_iovas);
  ops[kNrIoasCopy - kCmdBase] = UIOMMUFD_OP(ioas_copy, iommu_ioas_copy, src_iova);
  ops[kNrIoasIovaRanges - kCmdBase] = UIOMMUFD_OP(ioas_iova_ranges, iommu_ioas_iova_ranges, out_iova_alignment);
  ops[kNrIoasMap - kCmdBase] = UIOMMUFD_OP(ioas_map, iommu_ioas_map, iova);
  ops[kNrIoasUnmap - kCmdBase] = UIOMMUFD_OP(ioas_unmap, iommu_ioas_unmap, length);
  ops[kNrOption - kCmdBase] = UIOMMUFD_OP(option, iommu_option, val64);
  ops[kNrVfioIoas - kCmdBase] = UIOMMUFD_OP(vfio_ioas, iommu_vfio_ioas, __reserved);
  ops[kNrIoasMapFile - kCmdBase] = UIOMMUFD_OP(ioas_map_file, iommu_ioas_map_file, iova);
  ops[kNrHwptAlloc - kCmdBase] = UIOMMUFD_OP(hwpt_alloc, iommu_hwpt_alloc, __reserved);
  ops[kNrGetHwInfo - kCmdBase] = UIOMMUFD_OP(get_hw_info, iommu_hw_info, __reserved);
  ops[kNrHwptInvalidate - kCmdBase] = UIOMMUFD_OP(hwpt_invalidate, iommu_hwpt_invalidate, __reserved);
  ops[kNrHwptSetDirtyTracking - kCmdBase] =
      UIOMMUFD_OP(hwpt_set_dirty_tracking, iommu_hwpt_set_dirty_tracking, __reserved);
  ops[kNrHwptGetDirtyBitmap - kCmdBase] =
      UIOMMUFD_OP(hwpt_get_dirty_bitmap, iommu_hwpt_get_dirty_bitmap, data);
  ops[kNrViommuAlloc - kCmdBase] = UIOMMUFD_OP(viommu_alloc, iommu_viommu_alloc, out_viommu_id);
  ops[kNrVdeviceAlloc - kCmdBase] = UIOMMUFD_OP(vdevice_alloc, iommu_vdevice_alloc, virt_id);
  ops[kNrIoasChangeProcess - kCmdBase] =
      UIOMMUFD_OP(ioas_change_process, iommu_ioas_change_process, __reserved);
  ops[kNrHwQueueAlloc - kCmdBase] = UIOMMUFD_OP(hw_queue_alloc, iommu_hw_queue_alloc, length);
  ops[kNrVeventqAlloc - kCmdBase] = UIOMMUFD_OP(veventq_alloc, iommu_veventq_alloc, out_veventq_fd);
  ops[kNrFaultQueueAlloc - kCmdBase] = UIOMMUFD_OP(fault_queue_alloc, iommu_fault_alloc, out_fault_fd);
  return ops;
}
#undef UIOMMUFD_OP
constexpr std::array<Op, kOpCount> kOps = make_ops();

}  // namespace

Result<int> FdHost::user_file(int fd) {
  if (fd < 0 || ::fcntl(fd, F_GETFD) == -1) return Status::error(EBADF);
  return fd;
}

Result<std::shared_ptr<IommufdFile>> IommufdFile::open(FdHost& host, bool vfio_compat) {
  // The allocation boundary of open (docs/allocation.md), as ioctl() below is of every command.
  try {
    std::unique_ptr<Context> ctx = TRY(Context::create(vfio_compat));
    IommufdFile* file = new (std::nothrow) IommufdFile(host, std::move(ctx));
    if (!file) return Status::error(ENOMEM);
    std::shared_ptr<IommufdFile> shared(file);  // frees `file` if the control block cannot be had
    shared->register_live();                    // once weak_from_this() works: live_files() reads it
    return shared;
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
}

IommufdFile::IommufdFile(FdHost& host, std::unique_ptr<Context> ctx)
    : OpenFile(Kind::kIommufd), host_(&host), ctx_(std::move(ctx)) {}

IommufdFile::~IommufdFile() { unregister_live(); }

long IommufdFile::ioctl(unsigned long cmd, std::uint64_t arg) {
  // The allocation boundary (docs/allocation.md): a std::bad_alloc from a container below has unwound
  // through code that holds everything in RAII owners, so the command has undone itself; it is ENOMEM.
  try {
    const unsigned nr = cmd & 0xff;
    if (nr < kCmdBase || nr - kCmdBase >= kOpCount) return vfio_ioctl(*this, cmd, arg);
    if (cmd == IOMMU_TEST_CMD) return test_cmd(*this, arg);
    const Op& op = kOps[nr - kCmdBase];
    // A table hit whose type or direction bits differ is not our command.
    if (!op.execute || cmd != io_cmd(nr)) return -ENOTTY;
    Ucmd ucmd(Ucmd::Uninitialized{}, *this, *ctx_, cmd, arg);
    const Status copied = copy_cmd_from_user(ucmd.buf, op.size, op.min_size, arg, &ucmd.user_size);
    if (!copied.ok()) return -copied.error();
    return op.execute(ucmd);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

}  // namespace uiommufd::uapi
