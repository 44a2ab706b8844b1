// The /dev/iommu binary interface: our own definitions of the kernel's iommufd, VFIO-container and
// iommufd-selftest structs and numbers (docs/abi.md). Every layout is pinned with static_asserts on size
// and field offsets, so a change that would break byte compatibility does not compile.
//
// Plain C-compatible types only (these structs travel through ioctl from unmodified programs).
#pragma once

#include <cstddef>
#include <cstdint>

namespace uiommufd::uapi {

// ---- encoding -------------------------------------------------------------------------------------------

// Every iommufd and VFIO-container command is _IO(';', nr): no size or direction bits.
inline constexpr unsigned kIoctlType = ';';
constexpr unsigned long io_cmd(unsigned nr) { return (kIoctlType << 8) | nr; }
inline constexpr unsigned kCmdBase = 0x80;

enum : unsigned {
  kNrDestroy = 0x80,
  kNrIoasAlloc = 0x81,
  kNrIoasAllowIovas = 0x82,
  kNrIoasCopy = 0x83,
  kNrIoasIovaRanges = 0x84,
  kNrIoasMap = 0x85,
  kNrIoasUnmap = 0x86,
  kNrOption = 0x87,
  kNrVfioIoas = 0x88,
  kNrHwptAlloc = 0x89,
  kNrGetHwInfo = 0x8a,
  kNrHwptSetDirtyTracking = 0x8b,
  kNrHwptGetDirtyBitmap = 0x8c,
  kNrHwptInvalidate = 0x8d,
  kNrFaultQueueAlloc = 0x8e,
  kNrIoasMapFile = 0x8f,
  kNrViommuAlloc = 0x90,
  kNrVdeviceAlloc = 0x91,
  kNrIoasChangeProcess = 0x92,
  kNrVeventqAlloc = 0x93,
  kNrHwQueueAlloc = 0x94,
  kNrTestCmd = 0xa0,
};

inline constexpr unsigned long IOMMU_DESTROY = io_cmd(kNrDestroy);
inline constexpr unsigned long IOMMU_IOAS_ALLOC = io_cmd(kNrIoasAlloc);
inline constexpr unsigned long IOMMU_IOAS_ALLOW_IOVAS = io_cmd(kNrIoasAllowIovas);
inline constexpr unsigned long IOMMU_IOAS_COPY = io_cmd(kNrIoasCopy);
inline constexpr unsigned long IOMMU_IOAS_IOVA_RANGES = io_cmd(kNrIoasIovaRanges);
inline constexpr unsigned long IOMMU_IOAS_MAP = io_cmd(kNrIoasMap);
inline constexpr unsigned long IOMMU_IOAS_UNMAP = io_cmd(kNrIoasUnmap);
inline constexpr unsigned long IOMMU_OPTION = io_cmd(kNrOption);
inline constexpr unsigned long IOMMU_VFIO_IOAS = io_cmd(kNrVfioIoas);
inline constexpr unsigned long IOMMU_HWPT_ALLOC = io_cmd(kNrHwptAlloc);
inline constexpr unsigned long IOMMU_GET_HW_INFO = io_cmd(kNrGetHwInfo);
inline constexpr unsigned long IOMMU_HWPT_INVALIDATE = io_cmd(kNrHwptInvalidate);
inline constexpr unsigned long IOMMU_HWPT_SET_DIRTY_TRACKING = io_cmd(kNrHwptSetDirtyTracking);
inline constexpr unsigned long IOMMU_HWPT_GET_DIRTY_BITMAP = io_cmd(kNrHwptGetDirtyBitmap);
inline constexpr unsigned long IOMMU_IOAS_MAP_FILE = io_cmd(kNrIoasMapFile);
inline constexpr unsigned long IOMMU_VIOMMU_ALLOC = io_cmd(kNrViommuAlloc);
inline constexpr unsigned long IOMMU_VDEVICE_ALLOC = io_cmd(kNrVdeviceAlloc);
inline constexpr unsigned long IOMMU_IOAS_CHANGE_PROCESS = io_cmd(kNrIoasChangeProcess);
inline constexpr unsigned long IOMMU_HW_QUEUE_ALLOC = io_cmd(kNrHwQueueAlloc);
inline constexpr unsigned long IOMMU_VEVENTQ_ALLOC = io_cmd(kNrVeventqAlloc);
inline constexpr unsigned long IOMMU_FAULT_QUEUE_ALLOC = io_cmd(kNrFaultQueueAlloc);
inline constexpr unsigned long IOMMU_TEST_CMD = io_cmd(kNrTestCmd);

// ---- iommufd structs ------------------------------------------------------------------------------------

struct iommu_destroy {
  std::uint32_t size;
  std::uint32_t id;
};

struct iommu_ioas_alloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t out_ioas_id;
};

struct iommu_iova_range {
  std::uint64_t start;
  std::uint64_t last;
};

struct iommu_ioas_allow_iovas {
  std::uint32_t size;
  std::uint32_t ioas_id;
  std::uint32_t num_iovas;
  std::uint32_t __reserved;
  std::uint64_t allowed_iovas;
};

inline constexpr std::uint32_t IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
inline constexpr std::uint32_t IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
inline constexpr std::uint32_t IOMMU_IOAS_MAP_READABLE = 1 << 2;

struct iommu_ioas_copy {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t dst_ioas_id;
  std::uint32_t src_ioas_id;
  std::uint64_t length;
  std::uint64_t dst_iova;
  std::uint64_t src_iova;
};

struct iommu_ioas_iova_ranges {
  std::uint32_t size;
  std::uint32_t ioas_id;
  std::uint32_t num_iovas;
  std::uint32_t __reserved;
  std::uint64_t allowed_iovas;
  std::uint64_t out_iova_alignment;
};

struct iommu_ioas_map {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t ioas_id;
  std::uint32_t __reserved;
  std::uint64_t user_va;
  std::uint64_t length;
  std::uint64_t iova;
};

struct iommu_ioas_map_file {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t ioas_id;
  std::int32_t fd;
  std::uint64_t start;
  std::uint64_t length;
  std::uint64_t iova;
};

struct iommu_ioas_unmap {
  std::uint32_t size;
  std::uint32_t ioas_id;
  std::uint64_t iova;
  std::uint64_t length;
};

enum : std::uint32_t { IOMMU_OPTION_RLIMIT_MODE = 0, IOMMU_OPTION_HUGE_PAGES = 1 };
enum : std::uint16_t { IOMMU_OPTION_OP_SET = 0, IOMMU_OPTION_OP_GET = 1 };

struct iommu_option {
  std::uint32_t size;
  std::uint32_t option_id;
  std::uint16_t op;
  std::uint16_t __reserved;
  std::uint32_t object_id;
  std::uint64_t val64;
};

enum : std::uint16_t { IOMMU_VFIO_IOAS_GET = 0, IOMMU_VFIO_IOAS_SET = 1, IOMMU_VFIO_IOAS_CLEAR = 2 };

struct iommu_vfio_ioas {
  std::uint32_t size;
  std::uint32_t ioas_id;
  std::uint16_t op;
  std::uint16_t __reserved;
};

struct iommu_hwpt_alloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t dev_id;
  std::uint32_t pt_id;
  std::uint32_t out_hwpt_id;
  std::uint32_t __reserved;
  std::uint32_t data_type;
  std::uint32_t data_len;
  std::uint64_t data_uptr;
  std::uint32_t fault_id;
  std::uint32_t __reserved2;  // not checked by the kernel: past the mandatory part
};

inline constexpr std::uint32_t IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0;

struct iommu_hw_info {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t dev_id;
  std::uint32_t data_len;
  std::uint64_t data_uptr;
  std::uint32_t data_type;  // in_data_type / out_data_type
  std::uint8_t out_max_pasid_log2;
  std::uint8_t __reserved[3];
  std::uint64_t out_capabilities;
};

inline constexpr std::uint32_t IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1 << 0;

struct iommu_hwpt_set_dirty_tracking {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t hwpt_id;
  std::uint32_t __reserved;  // not checked by the kernel
};

inline constexpr std::uint32_t IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1 << 0;

struct iommu_hwpt_get_dirty_bitmap {
  std::uint32_t size;
  std::uint32_t hwpt_id;
  std::uint32_t flags;
  std::uint32_t __reserved;
  std::uint64_t iova;
  std::uint64_t length;
  std::uint64_t page_size;
  std::uint64_t data;
};

struct iommu_hwpt_invalidate {
  std::uint32_t size;
  std::uint32_t hwpt_id;
  std::uint64_t data_uptr;
  std::uint32_t data_type;
  std::uint32_t entry_len;
  std::uint32_t entry_num;
  std::uint32_t __reserved;
};

struct iommu_viommu_alloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t type;
  std::uint32_t dev_id;
  std::uint32_t hwpt_id;
  std::uint32_t out_viommu_id;
  std::uint32_t data_len;
  std::uint32_t __reserved;
  std::uint64_t data_uptr;
};

struct iommu_vdevice_alloc {
  std::uint32_t size;
  std::uint32_t viommu_id;
  std::uint32_t dev_id;
  std::uint32_t out_vdevice_id;
  std::uint64_t virt_id;
};

struct iommu_ioas_change_process {
  std::uint32_t size;
  std::uint32_t __reserved;
};

struct iommu_veventq_alloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t viommu_id;
  std::uint32_t type;
  std::uint32_t veventq_depth;
  std::uint32_t out_veventq_id;
  std::uint32_t out_veventq_fd;
  std::uint32_t __reserved;
};

struct iommu_hw_queue_alloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t viommu_id;
  std::uint32_t type;
  std::uint32_t index;
  std::uint32_t out_hw_queue_id;
  std::uint64_t nesting_parent_iova;
  std::uint64_t length;
};

// ---- fault queues (IOMMU_FAULT_QUEUE_ALLOC and the records of its fd) ----

struct iommu_fault_alloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t out_fault_id;
  std::uint32_t out_fault_fd;
};

inline constexpr std::uint32_t IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0;
inline constexpr std::uint32_t IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1;
inline constexpr std::uint32_t IOMMU_PGFAULT_PERM_READ = 1 << 0;
inline constexpr std::uint32_t IOMMU_PGFAULT_PERM_WRITE = 1 << 1;
inline constexpr std::uint32_t IOMMUFD_PAGE_RESP_SUCCESS = 0;
inline constexpr std::uint32_t IOMMUFD_PAGE_RESP_INVALID = 1;

// What a read of the fault fd returns, one per page request.
struct iommu_hwpt_pgfault {
  std::uint32_t flags;
  std::uint32_t dev_id;
  std::uint32_t pasid;
  std::uint32_t grpid;
  std::uint32_t perm;
  std::uint32_t __reserved;
  std::uint64_t addr;
  std::uint32_t length;
  std::uint32_t cookie;
};

// What a write to the fault fd takes, one per group.
struct iommu_hwpt_page_response {
  std::uint32_t cookie;
  std::uint32_t code;
};

#define UIOMMUFD_ABI_LAYOUT(type, sz) static_assert(sizeof(type) == (sz) && alignof(type) <= 8, #type " size")
#define UIOMMUFD_ABI_FIELD(type, field, off) static_assert(offsetof(type, field) == (off), #type "." #field)

UIOMMUFD_ABI_LAYOUT(iommu_destroy, 8);
UIOMMUFD_ABI_FIELD(iommu_destroy, id, 4);
UIOMMUFD_ABI_LAYOUT(iommu_ioas_alloc, 12);
UIOMMUFD_ABI_FIELD(iommu_ioas_alloc, flags, 4);
UIOMMUFD_ABI_FIELD(iommu_ioas_alloc, out_ioas_id, 8);
UIOMMUFD_ABI_LAYOUT(iommu_iova_range, 16);
UIOMMUFD_ABI_FIELD(iommu_iova_range, last, 8);
UIOMMUFD_ABI_LAYOUT(iommu_ioas_allow_iovas, 24);
UIOMMUFD_ABI_FIELD(iommu_ioas_allow_iovas, ioas_id, 4);
UIOMMUFD_ABI_FIELD(iommu_ioas_allow_iovas, num_iovas, 8);
UIOMMUFD_ABI_FIELD(iommu_ioas_allow_iovas, __reserved, 12);
UIOMMUFD_ABI_FIELD(iommu_ioas_allow_iovas, allowed_iovas, 16);
UIOMMUFD_ABI_LAYOUT(iommu_ioas_copy, 40);
UIOMMUFD_ABI_FIELD(iommu_ioas_copy, flags, 4);
UIOMMUFD_ABI_FIELD(iommu_ioas_copy, dst_ioas_id, 8);
UIOMMUFD_ABI_FIELD(iommu_ioas_copy, src_ioas_id, 12);
UIOMMUFD_ABI_FIELD(iommu_ioas_copy, length, 16);
UIOMMUFD_ABI_FIELD(iommu_ioas_copy, dst_iova, 24);
UIOMMUFD_ABI_FIELD(iommu_ioas_copy, src_iova, 32);
UIOMMUFD_ABI_LAYOUT(iommu_ioas_iova_ranges, 32);
UIOMMUFD_ABI_FIELD(iommu_ioas_iova_ranges, ioas_id, 4);
UIOMMUFD_ABI_FIELD(iommu_ioas_iova_ranges, num_iovas, 8);
UIOMMUFD_ABI_FIELD(iommu_ioas_iova_ranges, __reserved, 12);
UIOMMUFD_ABI_FIELD(iommu_ioas_iova_ranges, allowed_iovas, 16);
UIOMMUFD_ABI_FIELD(iommu_ioas_iova_ranges, out_iova_alignment, 24);
UIOMMUFD_ABI_LAYOUT(iommu_ioas_map, 40);
UIOMMUFD_ABI_FIELD(iommu_ioas_map, flags, 4);
UIOMMUFD_ABI_FIELD(iommu_ioas_map, ioas_id, 8);
UIOMMUFD_ABI_FIELD(iommu_ioas_map, __reserved, 12);
UIOMMUFD_ABI_FIELD(iommu_ioas_map, user_va, 16);
UIOMMUFD_ABI_FIELD(iommu_ioas_map, length, 24);
UIOMMUFD_ABI_FIELD(iommu_ioas_map, iova, 32);
UIOMMUFD_ABI_LAYOUT(iommu_ioas_map_file, 40);
UIOMMUFD_ABI_FIELD(iommu_ioas_map_file, ioas_id, 8);
UIOMMUFD_ABI_FIELD(iommu_ioas_map_file, fd, 12);
UIOMMUFD_ABI_FIELD(iommu_ioas_map_file, start, 16);
UIOMMUFD_ABI_FIELD(iommu_ioas_map_file, length, 24);
UIOMMUFD_ABI_FIELD(iommu_ioas_map_file, iova, 32);
UIOMMUFD_ABI_LAYOUT(iommu_ioas_unmap, 24);
UIOMMUFD_ABI_FIELD(iommu_ioas_unmap, ioas_id, 4);
UIOMMUFD_ABI_FIELD(iommu_ioas_unmap, iova, 8);
UIOMMUFD_ABI_FIELD(iommu_ioas_unmap, length, 16);
UIOMMUFD_ABI_LAYOUT(iommu_option, 24);
UIOMMUFD_ABI_FIELD(iommu_option, option_id, 4);
UIOMMUFD_ABI_FIELD(iommu_option, op, 8);
UIOMMUFD_ABI_FIELD(iommu_option, __reserved, 10);
UIOMMUFD_ABI_FIELD(iommu_option, object_id, 12);
UIOMMUFD_ABI_FIELD(iommu_option, val64, 16);
UIOMMUFD_ABI_LAYOUT(iommu_vfio_ioas, 12);
UIOMMUFD_ABI_FIELD(iommu_vfio_ioas, ioas_id, 4);
UIOMMUFD_ABI_FIELD(iommu_vfio_ioas, op, 8);
UIOMMUFD_ABI_FIELD(iommu_vfio_ioas, __reserved, 10);

UIOMMUFD_ABI_LAYOUT(iommu_hwpt_alloc, 48);
UIOMMUFD_ABI_FIELD(iommu_hwpt_alloc, dev_id, 8);
UIOMMUFD_ABI_FIELD(iommu_hwpt_alloc, out_hwpt_id, 16);
UIOMMUFD_ABI_FIELD(iommu_hwpt_alloc, __reserved, 20);
UIOMMUFD_ABI_FIELD(iommu_hwpt_alloc, data_type, 24);
UIOMMUFD_ABI_FIELD(iommu_hwpt_alloc, data_uptr, 32);
UIOMMUFD_ABI_FIELD(iommu_hwpt_alloc, fault_id, 40);
UIOMMUFD_ABI_LAYOUT(iommu_hw_info, 40);
UIOMMUFD_ABI_FIELD(iommu_hw_info, data_uptr, 16);
UIOMMUFD_ABI_FIELD(iommu_hw_info, data_type, 24);
UIOMMUFD_ABI_FIELD(iommu_hw_info, out_max_pasid_log2, 28);
UIOMMUFD_ABI_FIELD(iommu_hw_info, __reserved, 29);
UIOMMUFD_ABI_FIELD(iommu_hw_info, out_capabilities, 32);
UIOMMUFD_ABI_LAYOUT(iommu_hwpt_set_dirty_tracking, 16);
UIOMMUFD_ABI_FIELD(iommu_hwpt_set_dirty_tracking, hwpt_id, 8);
UIOMMUFD_ABI_LAYOUT(iommu_hwpt_get_dirty_bitmap, 48);
UIOMMUFD_ABI_FIELD(iommu_hwpt_get_dirty_bitmap, __reserved, 12);
UIOMMUFD_ABI_FIELD(iommu_hwpt_get_dirty_bitmap, data, 40);
UIOMMUFD_ABI_LAYOUT(iommu_hwpt_invalidate, 32);
UIOMMUFD_ABI_FIELD(iommu_hwpt_invalidate, data_uptr, 8);
UIOMMUFD_ABI_FIELD(iommu_hwpt_invalidate, data_type, 16);
UIOMMUFD_ABI_FIELD(iommu_hwpt_invalidate, entry_num, 24);
UIOMMUFD_ABI_LAYOUT(iommu_viommu_alloc, 40);
UIOMMUFD_ABI_FIELD(iommu_viommu_alloc, out_viommu_id, 20);
UIOMMUFD_ABI_FIELD(iommu_viommu_alloc, data_len, 24);
UIOMMUFD_ABI_FIELD(iommu_viommu_alloc, data_uptr, 32);
UIOMMUFD_ABI_LAYOUT(iommu_vdevice_alloc, 24);
UIOMMUFD_ABI_FIELD(iommu_vdevice_alloc, out_vdevice_id, 12);
UIOMMUFD_ABI_FIELD(iommu_vdevice_alloc, virt_id, 16);
UIOMMUFD_ABI_LAYOUT(iommu_veventq_alloc, 32);
UIOMMUFD_ABI_FIELD(iommu_veventq_alloc, out_veventq_fd, 24);
UIOMMUFD_ABI_LAYOUT(iommu_hw_queue_alloc, 40);
UIOMMUFD_ABI_FIELD(iommu_hw_queue_alloc, out_hw_queue_id, 20);
UIOMMUFD_ABI_FIELD(iommu_hw_queue_alloc, nesting_parent_iova, 24);
UIOMMUFD_ABI_FIELD(iommu_hw_queue_alloc, length, 32);
UIOMMUFD_ABI_FIELD(iommu_hwpt_invalidate, __reserved, 28);
UIOMMUFD_ABI_LAYOUT(iommu_fault_alloc, 16);
UIOMMUFD_ABI_FIELD(iommu_fault_alloc, out_fault_id, 8);
UIOMMUFD_ABI_FIELD(iommu_fault_alloc, out_fault_fd, 12);
UIOMMUFD_ABI_LAYOUT(iommu_hwpt_pgfault, 40);
UIOMMUFD_ABI_FIELD(iommu_hwpt_pgfault, perm, 16);
UIOMMUFD_ABI_FIELD(iommu_hwpt_pgfault, addr, 24);
UIOMMUFD_ABI_FIELD(iommu_hwpt_pgfault, length, 32);
UIOMMUFD_ABI_FIELD(iommu_hwpt_pgfault, cookie, 36);
UIOMMUFD_ABI_LAYOUT(iommu_hwpt_page_response, 8);
UIOMMUFD_ABI_FIELD(iommu_hwpt_page_response, code, 4);

// ---- VFIO container compatibility (nr < 0x80) -------------------------------------------------------------

enum : unsigned {
  kNrVfioGetApiVersion = 100,
  kNrVfioCheckExtension = 101,
  kNrVfioSetIommu = 102,
  kNrVfioIommuGetInfo = 112,
  kNrVfioIommuMapDma = 113,
  kNrVfioIommuUnmapDma = 114,
  kNrVfioIommuDirtyPages = 117,
};
inline constexpr unsigned long VFIO_GET_API_VERSION = io_cmd(kNrVfioGetApiVersion);
inline constexpr unsigned long VFIO_CHECK_EXTENSION = io_cmd(kNrVfioCheckExtension);
inline constexpr unsigned long VFIO_SET_IOMMU = io_cmd(kNrVfioSetIommu);
inline constexpr unsigned long VFIO_IOMMU_GET_INFO = io_cmd(kNrVfioIommuGetInfo);
inline constexpr unsigned long VFIO_IOMMU_MAP_DMA = io_cmd(kNrVfioIommuMapDma);
inline constexpr unsigned long VFIO_IOMMU_UNMAP_DMA = io_cmd(kNrVfioIommuUnmapDma);

inline constexpr int VFIO_API_VERSION = 0;
enum : unsigned long {
  VFIO_TYPE1_IOMMU = 1,
  VFIO_TYPE1v2_IOMMU = 3,
  VFIO_DMA_CC_IOMMU = 4,
  VFIO_TYPE1_NESTING_IOMMU = 6,
  VFIO_NOIOMMU_IOMMU = 8,
  VFIO_UNMAP_ALL = 9,
  VFIO_UPDATE_VADDR = 10,
};

inline constexpr std::uint32_t VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
inline constexpr std::uint32_t VFIO_IOMMU_INFO_CAPS = 1 << 1;
inline constexpr std::uint16_t VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
inline constexpr std::uint16_t VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

struct vfio_iommu_type1_info {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint64_t iova_pgsizes;
  std::uint32_t cap_offset;
  std::uint32_t pad;
};

struct vfio_info_cap_header {
  std::uint16_t id;
  std::uint16_t version;
  std::uint32_t next;
};

struct vfio_iova_range {
  std::uint64_t start;
  std::uint64_t end;
};

struct vfio_iommu_type1_info_cap_iova_range {
  vfio_info_cap_header header;
  std::uint32_t nr_iovas;
  std::uint32_t reserved;
  // followed by nr_iovas vfio_iova_range
};

struct vfio_iommu_type1_info_dma_avail {
  vfio_info_cap_header header;
  std::uint32_t avail;
};

inline constexpr std::uint32_t VFIO_DMA_MAP_FLAG_READ = 1 << 0;
inline constexpr std::uint32_t VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
inline constexpr std::uint32_t VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;

struct vfio_iommu_type1_dma_map {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint64_t vaddr;
  std::uint64_t iova;
  std::uint64_t size;
};

inline constexpr std::uint32_t VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
inline constexpr std::uint32_t VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
inline constexpr std::uint32_t VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;

struct vfio_iommu_type1_dma_unmap {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint64_t iova;
  std::uint64_t size;
  // followed by an optional dirty bitmap (unsupported)
};

UIOMMUFD_ABI_LAYOUT(vfio_iommu_type1_info, 24);
UIOMMUFD_ABI_FIELD(vfio_iommu_type1_info, iova_pgsizes, 8);
UIOMMUFD_ABI_FIELD(vfio_iommu_type1_info, cap_offset, 16);
UIOMMUFD_ABI_LAYOUT(vfio_info_cap_header, 8);
UIOMMUFD_ABI_LAYOUT(vfio_iova_range, 16);
UIOMMUFD_ABI_LAYOUT(vfio_iommu_type1_info_cap_iova_range, 16);
UIOMMUFD_ABI_FIELD(vfio_iommu_type1_info_cap_iova_range, nr_iovas, 8);
UIOMMUFD_ABI_LAYOUT(vfio_iommu_type1_info_dma_avail, 12);
UIOMMUFD_ABI_FIELD(vfio_iommu_type1_info_dma_avail, avail, 8);
UIOMMUFD_ABI_LAYOUT(vfio_iommu_type1_dma_map, 32);
UIOMMUFD_ABI_FIELD(vfio_iommu_type1_dma_map, vaddr, 8);
UIOMMUFD_ABI_FIELD(vfio_iommu_type1_dma_map, iova, 16);
UIOMMUFD_ABI_FIELD(vfio_iommu_type1_dma_map, size, 24);
UIOMMUFD_ABI_LAYOUT(vfio_iommu_type1_dma_unmap, 24);
UIOMMUFD_ABI_FIELD(vfio_iommu_type1_dma_unmap, iova, 8);
UIOMMUFD_ABI_FIELD(vfio_iommu_type1_dma_unmap, size, 16);

// ---- IOMMU_TEST_CMD (the kernel's selftest interface) -----------------------------------------------------

enum : std::uint32_t {
  IOMMU_TEST_OP_ADD_RESERVED = 1,
  IOMMU_TEST_OP_MOCK_DOMAIN = 2,
  IOMMU_TEST_OP_MD_CHECK_MAP = 3,
  IOMMU_TEST_OP_MD_CHECK_REFS = 4,
  IOMMU_TEST_OP_CREATE_ACCESS = 5,
  IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6,
  IOMMU_TEST_OP_ACCESS_PAGES = 7,
  IOMMU_TEST_OP_ACCESS_RW = 8,
  IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9,
  IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10,
  IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11,
  IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12,
  IOMMU_TEST_OP_DIRTY = 13,
  IOMMU_TEST_OP_MD_CHECK_IOTLB = 14,
  IOMMU_TEST_OP_TRIGGER_IOPF = 15,
  IOMMU_TEST_OP_DEV_CHECK_CACHE = 16,
  IOMMU_TEST_OP_TRIGGER_VEVENT = 17,
  IOMMU_TEST_OP_PASID_ATTACH = 18,
  IOMMU_TEST_OP_PASID_REPLACE = 19,
  IOMMU_TEST_OP_PASID_DETACH = 20,
  IOMMU_TEST_OP_PASID_CHECK_HWPT = 21,
  IOMMU_TEST_OP_DMABUF_GET = 22,
  IOMMU_TEST_OP_DMABUF_REVOKE = 23,
};

inline constexpr std::uint64_t MOCK_APERTURE_START = 1ull << 24;
inline constexpr std::uint64_t MOCK_APERTURE_LAST = (1ull << 31) - 1;
inline constexpr std::uint32_t MOCK_FLAGS_ACCESS_WRITE = 1 << 0;
inline constexpr std::uint32_t MOCK_FLAGS_ACCESS_SYZ = 1 << 16;
inline constexpr std::uint32_t MOCK_ACCESS_RW_WRITE = 1 << 0;
inline constexpr std::uint32_t MOCK_ACCESS_RW_SLOW_PATH = 1 << 2;
inline constexpr std::uint32_t MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0;

// The union members, each at offset 16 of the command.
struct iommu_test_add_reserved {
  std::uint64_t start;
  std::uint64_t length;
};
struct iommu_test_mock_domain {
  std::uint32_t out_stdev_id;  // v6.2: out_device_id
  std::uint32_t out_hwpt_id;
  std::uint32_t out_idev_id;  // newest layout only
};
struct iommu_test_check_map {
  std::uint64_t iova;
  std::uint64_t length;
  std::uint64_t uptr;
};
struct iommu_test_check_refs {
  std::uint64_t length;
  std::uint64_t uptr;
  std::uint32_t refs;
};
struct iommu_test_create_access {
  std::uint32_t out_access_fd;
  std::uint32_t flags;
};
struct iommu_test_destroy_access_pages {
  std::uint32_t access_pages_id;
};
struct iommu_test_access_pages {
  std::uint32_t flags;
  std::uint32_t out_access_pages_id;
  std::uint64_t iova;
  std::uint64_t length;
  std::uint64_t uptr;
};
struct iommu_test_access_rw {
  std::uint64_t iova;
  std::uint64_t length;
  std::uint64_t uptr;
  std::uint32_t flags;
};
struct iommu_test_memory_limit {
  std::uint32_t limit;
};
struct iommu_test_mock_domain_replace {
  std::uint32_t pt_id;
};
struct iommu_test_access_replace_ioas {
  std::uint32_t ioas_id;
};
struct iommu_test_mock_domain_flags {
  std::uint32_t out_stdev_id;
  std::uint32_t out_hwpt_id;
  std::uint32_t out_idev_id;
  std::uint32_t dev_flags;
};
struct iommu_test_check_iotlb {
  std::uint32_t id;
  std::uint32_t iotlb;
};
struct iommu_test_check_dev_cache {
  std::uint32_t id;
  std::uint32_t cache;
};
// PASID_ATTACH and PASID_REPLACE (pt_id in, the HWPT id out), PASID_DETACH (pasid only).
struct iommu_test_pasid_attach {
  std::uint32_t pasid;
  std::uint32_t pt_id;
};
// The dirty op's member is the one that made the union 48 bytes.
struct iommu_test_dirty {
  std::uint32_t flags;
  std::uint64_t iova;
  std::uint64_t length;
  std::uint64_t page_size;
  std::uint64_t uptr;
  std::uint64_t out_nr_dirty;
};
struct iommu_test_pasid_check {
  std::uint32_t pasid;
  std::uint32_t hwpt_id;  // 0: the PASID must be detached
};
struct iommu_test_trigger_iopf {
  std::uint32_t dev_id;
  std::uint32_t pasid;
  std::uint32_t grpid;
  std::uint32_t perm;
  std::uint64_t addr;
};

struct iommu_test_trigger_vevent {
  std::uint32_t dev_id;
};

// DMABUF_GET: a new mock dma-buf of `length` bytes (rounded up to pages), its fd the ioctl's value.
struct iommu_test_dmabuf_get {
  std::uint32_t length;
  std::uint32_t open_flags;
};
// DMABUF_REVOKE: revokes (or, with 0, gives back) the mock dma-buf behind `dmabuf_fd`.
struct iommu_test_dmabuf_revoke {
  std::int32_t dmabuf_fd;
  std::uint32_t revoked;
};

// The newest layout (72 bytes: the union grew to 48 bytes with the dirty-tracking member). The v6.2
// layout is this one cut at 56 bytes: the same header, a 32-byte union (every member of ops 1–9 fits in
// it), and `last` at offset 48. A v6.2 command is read into this struct; only the sizes differ.
struct iommu_test_cmd {
  std::uint32_t size;
  std::uint32_t op;
  std::uint32_t id;
  std::uint32_t __reserved;
  union {
    iommu_test_add_reserved add_reserved;
    iommu_test_mock_domain mock_domain;
    iommu_test_check_map check_map;
    iommu_test_check_refs check_refs;
    iommu_test_create_access create_access;
    iommu_test_destroy_access_pages destroy_access_pages;
    iommu_test_access_pages access_pages;
    iommu_test_access_rw access_rw;
    iommu_test_memory_limit memory_limit;
    iommu_test_mock_domain_replace mock_domain_replace;
    iommu_test_access_replace_ioas access_replace_ioas;
    iommu_test_mock_domain_flags mock_domain_flags;
    iommu_test_check_iotlb check_iotlb;
    iommu_test_check_dev_cache check_dev_cache;
    iommu_test_pasid_attach pasid_attach;
    iommu_test_pasid_check pasid_check;
    iommu_test_dirty dirty;
    iommu_test_dmabuf_get dmabuf_get;
    iommu_test_dmabuf_revoke dmabuf_revoke;
    iommu_test_trigger_iopf trigger_iopf;
    iommu_test_trigger_vevent trigger_vevent;
    std::uint8_t raw[48];
  };
  std::uint32_t last;
};

inline constexpr std::uint32_t kTestCmdMinSize = offsetof(iommu_test_cmd, last) + 4;
inline constexpr std::uint32_t kTestCmdV62Size = 56;
inline constexpr std::uint32_t kTestCmdV62LastOffset = 48;
inline constexpr std::uint32_t kTestCmdV62MinSize = kTestCmdV62LastOffset + 4;

UIOMMUFD_ABI_LAYOUT(iommu_test_cmd, 72);
UIOMMUFD_ABI_FIELD(iommu_test_cmd, op, 4);
UIOMMUFD_ABI_FIELD(iommu_test_cmd, id, 8);
UIOMMUFD_ABI_FIELD(iommu_test_cmd, add_reserved, 16);
UIOMMUFD_ABI_FIELD(iommu_test_cmd, last, 64);
static_assert(kTestCmdV62Size == kTestCmdV62LastOffset + 8, "v6.2 iommu_test_cmd: last + tail padding");
static_assert(sizeof(iommu_test_add_reserved) <= 32 && sizeof(iommu_test_mock_domain) <= 32 &&
                  sizeof(iommu_test_check_map) <= 32 && sizeof(iommu_test_check_refs) <= 32 &&
                  sizeof(iommu_test_create_access) <= 32 && sizeof(iommu_test_destroy_access_pages) <= 32 &&
                  sizeof(iommu_test_access_pages) <= 32 && sizeof(iommu_test_access_rw) <= 32 &&
                  sizeof(iommu_test_memory_limit) <= 32,
              "every v6.2 op fits the v6.2 union");
static_assert(kTestCmdMinSize == 68 && kTestCmdV62MinSize == 52);
UIOMMUFD_ABI_LAYOUT(iommu_test_dirty, 48);
UIOMMUFD_ABI_FIELD(iommu_test_dirty, iova, 8);
UIOMMUFD_ABI_FIELD(iommu_test_dirty, out_nr_dirty, 40);
UIOMMUFD_ABI_LAYOUT(iommu_test_trigger_iopf, 24);
UIOMMUFD_ABI_FIELD(iommu_test_trigger_iopf, addr, 16);
UIOMMUFD_ABI_LAYOUT(iommu_test_add_reserved, 16);
UIOMMUFD_ABI_LAYOUT(iommu_test_mock_domain, 12);
UIOMMUFD_ABI_FIELD(iommu_test_mock_domain, out_hwpt_id, 4);
UIOMMUFD_ABI_FIELD(iommu_test_mock_domain, out_idev_id, 8);
UIOMMUFD_ABI_LAYOUT(iommu_test_check_map, 24);
UIOMMUFD_ABI_LAYOUT(iommu_test_check_refs, 24);
UIOMMUFD_ABI_FIELD(iommu_test_check_refs, refs, 16);
UIOMMUFD_ABI_LAYOUT(iommu_test_create_access, 8);
UIOMMUFD_ABI_LAYOUT(iommu_test_access_pages, 32);
UIOMMUFD_ABI_FIELD(iommu_test_access_pages, out_access_pages_id, 4);
UIOMMUFD_ABI_FIELD(iommu_test_access_pages, iova, 8);
UIOMMUFD_ABI_FIELD(iommu_test_access_pages, uptr, 24);
UIOMMUFD_ABI_LAYOUT(iommu_test_access_rw, 32);
UIOMMUFD_ABI_FIELD(iommu_test_access_rw, flags, 24);

#undef UIOMMUFD_ABI_LAYOUT
#undef UIOMMUFD_ABI_FIELD

}  // namespace uiommufd::uapi
