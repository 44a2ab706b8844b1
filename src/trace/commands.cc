#include "commands.h"

#include <algorithm>
#include <cstddef>

#include "uiommufd/uapi/abi.h"

namespace uiommufd::trace::tables {
namespace {

using namespace uapi;

// A field of `type`, by its member name: offset and width come from the struct itself.
#define F(type, field, kind, dir, ...) \
  Field { #field, offsetof(type, field), sizeof(type::field), Kind::kind, dir, __VA_ARGS__ }
// The same, named otherwise (a struct member spelt for C++ but known by the kernel's name).
#define FN(name, type, field, kind, dir, ...) \
  Field { name, offsetof(type, field), sizeof(type::field), Kind::kind, dir, __VA_ARGS__ }
// A selftest op's field: `member` of the union, at its offset in the command.
#define TF(member_type, field, kind, dir, ...)                                                          \
  Field {                                                                                               \
#field, static_cast < std::uint16_t>(offsetof(iommu_test_cmd, raw) + offsetof(member_type, field)), \
        sizeof(member_type::field), Kind::kind, dir, __VA_ARGS__                                        \
  }

// ---- names -----------------------------------------------------------------------------------------------

constexpr Name kMapFlags[] = {{IOMMU_IOAS_MAP_FIXED_IOVA, "FIXED_IOVA"},
                              {IOMMU_IOAS_MAP_WRITEABLE, "WRITEABLE"},
                              {IOMMU_IOAS_MAP_READABLE, "READABLE"}};
constexpr Name kOptionIds[] = {{IOMMU_OPTION_RLIMIT_MODE, "RLIMIT_MODE"},
                               {IOMMU_OPTION_HUGE_PAGES, "HUGE_PAGES"}};
constexpr Name kOptionOps[] = {{IOMMU_OPTION_OP_SET, "SET"}, {IOMMU_OPTION_OP_GET, "GET"}};
constexpr Name kVfioIoasOps[] = {
    {IOMMU_VFIO_IOAS_GET, "GET"}, {IOMMU_VFIO_IOAS_SET, "SET"}, {IOMMU_VFIO_IOAS_CLEAR, "CLEAR"}};
constexpr Name kHwptAllocFlags[] = {
    {1u << 0, "NEST_PARENT"}, {1u << 1, "DIRTY_TRACKING"}, {1u << 2, "FAULT_ID_VALID"}, {1u << 3, "PASID"}};
constexpr Name kHwptDataTypes[] = {
    {0, "NONE"}, {1, "VTD_S1"}, {2, "ARM_SMMUV3"}, {3, "AMD_GUEST"}, {0xdead, "SELFTEST"}};
constexpr Name kHwInfoFlags[] = {{IOMMU_HW_INFO_FLAG_INPUT_TYPE, "INPUT_TYPE"}};
constexpr Name kHwInfoTypes[] = {{0, "DEFAULT"},        {1, "INTEL_VTD"}, {2, "ARM_SMMUV3"},
                                 {3, "TEGRA241_CMDQV"}, {4, "AMD"},       {0xfeedbeef, "SELFTEST"}};
constexpr Name kHwCaps[] = {{1u << 0, "DIRTY_TRACKING"},
                            {1u << 1, "PCI_PASID_EXEC"},
                            {1u << 2, "PCI_PASID_PRIV"},
                            {1u << 3, "PCI_ATS_NOT_SUPPORTED"}};
constexpr Name kDirtyTrackingFlags[] = {{IOMMU_HWPT_DIRTY_TRACKING_ENABLE, "ENABLE"}};
constexpr Name kDirtyBitmapFlags[] = {{IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, "NO_CLEAR"}};
constexpr Name kInvalidateTypes[] = {
    {0, "VTD_S1"}, {1, "ARM_SMMUV3"}, {0xdeadbeef, "SELFTEST"}, {0xdadbeef, "SELFTEST_INVALID"}};
constexpr Name kViommuTypes[] = {
    {0, "DEFAULT"}, {1, "ARM_SMMUV3"}, {2, "TEGRA241_CMDQV"}, {0xdeadbeef, "SELFTEST"}};
constexpr Name kVeventqTypes[] = {
    {0, "DEFAULT"}, {1, "ARM_SMMUV3"}, {2, "TEGRA241_CMDQV"}, {0xbeefbeef, "SELFTEST"}};
constexpr Name kHwQueueTypes[] = {{0, "DEFAULT"}, {1, "TEGRA241_CMDQV"}, {0xdeadbeef, "SELFTEST"}};

constexpr Name kVfioExtensions[] = {{VFIO_TYPE1_IOMMU, "VFIO_TYPE1_IOMMU"},
                                    {VFIO_TYPE1v2_IOMMU, "VFIO_TYPE1v2_IOMMU"},
                                    {VFIO_DMA_CC_IOMMU, "VFIO_DMA_CC_IOMMU"},
                                    {5, "VFIO_EEH"},
                                    {VFIO_TYPE1_NESTING_IOMMU, "VFIO_TYPE1_NESTING_IOMMU"},
                                    {7, "VFIO_SPAPR_TCE_v2_IOMMU"},
                                    {VFIO_NOIOMMU_IOMMU, "VFIO_NOIOMMU_IOMMU"},
                                    {VFIO_UNMAP_ALL, "VFIO_UNMAP_ALL"},
                                    {VFIO_UPDATE_VADDR, "VFIO_UPDATE_VADDR"}};
constexpr Name kVfioInfoFlags[] = {{VFIO_IOMMU_INFO_PGSIZES, "PGSIZES"}, {VFIO_IOMMU_INFO_CAPS, "CAPS"}};
constexpr Name kVfioMapFlags[] = {
    {VFIO_DMA_MAP_FLAG_READ, "READ"}, {VFIO_DMA_MAP_FLAG_WRITE, "WRITE"}, {VFIO_DMA_MAP_FLAG_VADDR, "VADDR"}};
constexpr Name kVfioUnmapFlags[] = {{VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, "GET_DIRTY_BITMAP"},
                                    {VFIO_DMA_UNMAP_FLAG_ALL, "ALL"},
                                    {VFIO_DMA_UNMAP_FLAG_VADDR, "VADDR"}};
constexpr Name kVfioDirtyFlags[] = {{1u << 0, "START"}, {1u << 1, "STOP"}, {1u << 2, "GET_BITMAP"}};

constexpr Name kAccessPagesFlags[] = {{MOCK_FLAGS_ACCESS_WRITE, "WRITE"}, {MOCK_FLAGS_ACCESS_SYZ, "SYZ"}};
constexpr Name kAccessRwFlags[] = {{MOCK_ACCESS_RW_WRITE, "WRITE"}, {MOCK_ACCESS_RW_SLOW_PATH, "SLOW_PATH"}};
constexpr Name kCreateAccessFlags[] = {{MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, "NEEDS_PIN_PAGES"}};
constexpr Name kMockDeviceFlags[] = {{1u << 0, "NO_DIRTY"}, {1u << 2, "PASID"}};

// ---- structs ---------------------------------------------------------------------------------------------

constexpr Field kRangeFields[] = {F(iommu_iova_range, start, kHex, kInOut),
                                  F(iommu_iova_range, last, kHex, kInOut)};

constexpr Field kDestroy[] = {F(iommu_destroy, size, kDec, kIn), F(iommu_destroy, id, kId, kIn)};
constexpr Field kIoasAlloc[] = {F(iommu_ioas_alloc, size, kDec, kIn), F(iommu_ioas_alloc, flags, kHex, kIn),
                                F(iommu_ioas_alloc, out_ioas_id, kId, kOut)};
constexpr Array kAllowArray{kRangeFields, sizeof(iommu_iova_range), 2};
constexpr Field kAllowIovas[] = {
    F(iommu_ioas_allow_iovas, size, kDec, kIn), F(iommu_ioas_allow_iovas, ioas_id, kId, kIn),
    F(iommu_ioas_allow_iovas, num_iovas, kDec, kIn), F(iommu_ioas_allow_iovas, __reserved, kReserved, kIn),
    F(iommu_ioas_allow_iovas, allowed_iovas, kArray, kIn, {}, &kAllowArray)};
constexpr Field kIoasCopy[] = {
    F(iommu_ioas_copy, size, kDec, kIn),       F(iommu_ioas_copy, flags, kFlags, kIn, kMapFlags),
    F(iommu_ioas_copy, dst_ioas_id, kId, kIn), F(iommu_ioas_copy, src_ioas_id, kId, kIn),
    F(iommu_ioas_copy, length, kHex, kIn),     F(iommu_ioas_copy, dst_iova, kHex, kInOut),
    F(iommu_ioas_copy, src_iova, kHex, kIn)};
constexpr Array kRangesArray{kRangeFields, sizeof(iommu_iova_range), 2};
constexpr Field kIovaRanges[] = {F(iommu_ioas_iova_ranges, size, kDec, kIn),
                                 F(iommu_ioas_iova_ranges, ioas_id, kId, kIn),
                                 F(iommu_ioas_iova_ranges, num_iovas, kDec, kInOut),
                                 F(iommu_ioas_iova_ranges, __reserved, kReserved, kIn),
                                 F(iommu_ioas_iova_ranges, allowed_iovas, kArray, kOut, {}, &kRangesArray),
                                 F(iommu_ioas_iova_ranges, out_iova_alignment, kHex, kOut)};
constexpr Field kIoasMap[] = {
    F(iommu_ioas_map, size, kDec, kIn),     F(iommu_ioas_map, flags, kFlags, kIn, kMapFlags),
    F(iommu_ioas_map, ioas_id, kId, kIn),   F(iommu_ioas_map, __reserved, kReserved, kIn),
    F(iommu_ioas_map, user_va, kAddr, kIn), F(iommu_ioas_map, length, kHex, kIn),
    F(iommu_ioas_map, iova, kHex, kInOut)};
constexpr Field kIoasMapFile[] = {
    F(iommu_ioas_map_file, size, kDec, kIn),   F(iommu_ioas_map_file, flags, kFlags, kIn, kMapFlags),
    F(iommu_ioas_map_file, ioas_id, kId, kIn), F(iommu_ioas_map_file, fd, kFd, kIn),
    F(iommu_ioas_map_file, start, kHex, kIn),  F(iommu_ioas_map_file, length, kHex, kIn),
    F(iommu_ioas_map_file, iova, kHex, kInOut)};
constexpr Field kIoasUnmap[] = {F(iommu_ioas_unmap, size, kDec, kIn), F(iommu_ioas_unmap, ioas_id, kId, kIn),
                                F(iommu_ioas_unmap, iova, kHex, kIn),
                                F(iommu_ioas_unmap, length, kHex, kInOut)};
constexpr Field kOption[] = {F(iommu_option, size, kDec, kIn),
                             F(iommu_option, option_id, kEnum, kIn, kOptionIds),
                             F(iommu_option, op, kEnum, kIn, kOptionOps),
                             F(iommu_option, __reserved, kReserved, kIn),
                             F(iommu_option, object_id, kId, kIn),
                             F(iommu_option, val64, kDec, kInOut)};
constexpr Field kVfioIoas[] = {F(iommu_vfio_ioas, size, kDec, kIn), F(iommu_vfio_ioas, ioas_id, kId, kInOut),
                               F(iommu_vfio_ioas, op, kEnum, kIn, kVfioIoasOps),
                               F(iommu_vfio_ioas, __reserved, kReserved, kIn)};
constexpr Field kHwptAlloc[] = {F(iommu_hwpt_alloc, size, kDec, kIn),
                                F(iommu_hwpt_alloc, flags, kFlags, kIn, kHwptAllocFlags),
                                F(iommu_hwpt_alloc, dev_id, kId, kIn),
                                F(iommu_hwpt_alloc, pt_id, kId, kIn),
                                F(iommu_hwpt_alloc, out_hwpt_id, kId, kOut),
                                F(iommu_hwpt_alloc, __reserved, kReserved, kIn),
                                F(iommu_hwpt_alloc, data_type, kEnum, kIn, kHwptDataTypes),
                                F(iommu_hwpt_alloc, data_len, kDec, kIn),
                                F(iommu_hwpt_alloc, data_uptr, kAddr, kIn),
                                F(iommu_hwpt_alloc, fault_id, kId, kIn),
                                F(iommu_hwpt_alloc, __reserved2, kReserved, kIn)};
constexpr Field kHwInfo[] = {F(iommu_hw_info, size, kDec, kIn),
                             F(iommu_hw_info, flags, kFlags, kIn, kHwInfoFlags),
                             F(iommu_hw_info, dev_id, kId, kIn),
                             F(iommu_hw_info, data_len, kDec, kInOut),
                             F(iommu_hw_info, data_uptr, kAddr, kIn),
                             F(iommu_hw_info, data_type, kEnum, kInOut, kHwInfoTypes),
                             F(iommu_hw_info, out_max_pasid_log2, kDec, kOut),
                             FN("__reserved", iommu_hw_info, __reserved[0], kReserved, kIn),
                             F(iommu_hw_info, out_capabilities, kFlags, kOut, kHwCaps)};
constexpr Field kSetDirtyTracking[] = {
    F(iommu_hwpt_set_dirty_tracking, size, kDec, kIn),
    F(iommu_hwpt_set_dirty_tracking, flags, kFlags, kIn, kDirtyTrackingFlags),
    F(iommu_hwpt_set_dirty_tracking, hwpt_id, kId, kIn),
    F(iommu_hwpt_set_dirty_tracking, __reserved, kReserved, kIn)};
constexpr Field kGetDirtyBitmap[] = {F(iommu_hwpt_get_dirty_bitmap, size, kDec, kIn),
                                     F(iommu_hwpt_get_dirty_bitmap, hwpt_id, kId, kIn),
                                     F(iommu_hwpt_get_dirty_bitmap, flags, kFlags, kIn, kDirtyBitmapFlags),
                                     F(iommu_hwpt_get_dirty_bitmap, __reserved, kReserved, kIn),
                                     F(iommu_hwpt_get_dirty_bitmap, iova, kHex, kIn),
                                     F(iommu_hwpt_get_dirty_bitmap, length, kHex, kIn),
                                     F(iommu_hwpt_get_dirty_bitmap, page_size, kHex, kIn),
                                     F(iommu_hwpt_get_dirty_bitmap, data, kAddr, kIn)};
constexpr Field kHwptInvalidate[] = {F(iommu_hwpt_invalidate, size, kDec, kIn),
                                     F(iommu_hwpt_invalidate, hwpt_id, kId, kIn),
                                     F(iommu_hwpt_invalidate, data_uptr, kAddr, kIn),
                                     F(iommu_hwpt_invalidate, data_type, kEnum, kIn, kInvalidateTypes),
                                     F(iommu_hwpt_invalidate, entry_len, kDec, kIn),
                                     F(iommu_hwpt_invalidate, entry_num, kDec, kInOut),
                                     F(iommu_hwpt_invalidate, __reserved, kReserved, kIn)};
constexpr Field kFaultAlloc[] = {
    F(iommu_fault_alloc, size, kDec, kIn), F(iommu_fault_alloc, flags, kHex, kIn),
    F(iommu_fault_alloc, out_fault_id, kId, kOut), F(iommu_fault_alloc, out_fault_fd, kFd, kOut)};
constexpr Field kViommuAlloc[] = {F(iommu_viommu_alloc, size, kDec, kIn),
                                  F(iommu_viommu_alloc, flags, kHex, kIn),
                                  F(iommu_viommu_alloc, type, kEnum, kIn, kViommuTypes),
                                  F(iommu_viommu_alloc, dev_id, kId, kIn),
                                  F(iommu_viommu_alloc, hwpt_id, kId, kIn),
                                  F(iommu_viommu_alloc, out_viommu_id, kId, kOut),
                                  F(iommu_viommu_alloc, data_len, kDec, kIn),
                                  F(iommu_viommu_alloc, __reserved, kReserved, kIn),
                                  F(iommu_viommu_alloc, data_uptr, kAddr, kIn)};
constexpr Field kVdeviceAlloc[] = {
    F(iommu_vdevice_alloc, size, kDec, kIn), F(iommu_vdevice_alloc, viommu_id, kId, kIn),
    F(iommu_vdevice_alloc, dev_id, kId, kIn), F(iommu_vdevice_alloc, out_vdevice_id, kId, kOut),
    F(iommu_vdevice_alloc, virt_id, kHex, kIn)};
constexpr Field kChangeProcess[] = {F(iommu_ioas_change_process, size, kDec, kIn),
                                    F(iommu_ioas_change_process, __reserved, kReserved, kIn)};
constexpr Field kVeventqAlloc[] = {F(iommu_veventq_alloc, size, kDec, kIn),
                                   F(iommu_veventq_alloc, flags, kHex, kIn),
                                   F(iommu_veventq_alloc, viommu_id, kId, kIn),
                                   F(iommu_veventq_alloc, type, kEnum, kIn, kVeventqTypes),
                                   F(iommu_veventq_alloc, veventq_depth, kDec, kIn),
                                   F(iommu_veventq_alloc, out_veventq_id, kId, kOut),
                                   F(iommu_veventq_alloc, out_veventq_fd, kFd, kOut),
                                   F(iommu_veventq_alloc, __reserved, kReserved, kIn)};
constexpr Field kHwQueueAlloc[] = {F(iommu_hw_queue_alloc, size, kDec, kIn),
                                   F(iommu_hw_queue_alloc, flags, kHex, kIn),
                                   F(iommu_hw_queue_alloc, viommu_id, kId, kIn),
                                   F(iommu_hw_queue_alloc, type, kEnum, kIn, kHwQueueTypes),
                                   F(iommu_hw_queue_alloc, index, kDec, kIn),
                                   F(iommu_hw_queue_alloc, out_hw_queue_id, kId, kOut),
                                   F(iommu_hw_queue_alloc, nesting_parent_iova, kHex, kIn),
                                   F(iommu_hw_queue_alloc, length, kHex, kIn)};

// VFIO container commands (argsz first).
constexpr Field kVfioGetInfo[] = {FN("argsz", vfio_iommu_type1_info, argsz, kDec, kInOut),
                                  F(vfio_iommu_type1_info, flags, kFlags, kOut, kVfioInfoFlags),
                                  F(vfio_iommu_type1_info, iova_pgsizes, kHex, kOut),
                                  F(vfio_iommu_type1_info, cap_offset, kDec, kOut)};
constexpr Field kVfioMapDma[] = {FN("argsz", vfio_iommu_type1_dma_map, argsz, kDec, kIn),
                                 F(vfio_iommu_type1_dma_map, flags, kFlags, kIn, kVfioMapFlags),
                                 F(vfio_iommu_type1_dma_map, vaddr, kAddr, kIn),
                                 F(vfio_iommu_type1_dma_map, iova, kHex, kIn),
                                 F(vfio_iommu_type1_dma_map, size, kHex, kIn)};
constexpr Field kVfioUnmapDma[] = {FN("argsz", vfio_iommu_type1_dma_unmap, argsz, kDec, kIn),
                                   F(vfio_iommu_type1_dma_unmap, flags, kFlags, kIn, kVfioUnmapFlags),
                                   F(vfio_iommu_type1_dma_unmap, iova, kHex, kIn),
                                   F(vfio_iommu_type1_dma_unmap, size, kHex, kInOut)};
struct VfioDirtyBitmap {
  std::uint32_t argsz;
  std::uint32_t flags;
};
constexpr Field kVfioDirtyPages[] = {F(VfioDirtyBitmap, argsz, kDec, kIn),
                                     F(VfioDirtyBitmap, flags, kFlags, kIn, kVfioDirtyFlags)};

// IOMMU_TEST_CMD: the header, then the op's union member.
constexpr Field kTestHeader[] = {F(iommu_test_cmd, size, kDec, kIn), F(iommu_test_cmd, op, kOp, kIn),
                                 F(iommu_test_cmd, id, kId, kIn),
                                 F(iommu_test_cmd, __reserved, kReserved, kIn)};
constexpr Field kTAddReserved[] = {TF(iommu_test_add_reserved, start, kHex, kIn),
                                   TF(iommu_test_add_reserved, length, kHex, kIn)};
constexpr Field kTMockDomain[] = {TF(iommu_test_mock_domain, out_stdev_id, kId, kOut),
                                  TF(iommu_test_mock_domain, out_hwpt_id, kId, kOut),
                                  TF(iommu_test_mock_domain, out_idev_id, kId, kOut)};
constexpr Field kTCheckMap[] = {TF(iommu_test_check_map, iova, kHex, kIn),
                                TF(iommu_test_check_map, length, kHex, kIn),
                                TF(iommu_test_check_map, uptr, kAddr, kIn)};
constexpr Field kTCheckRefs[] = {TF(iommu_test_check_refs, length, kHex, kIn),
                                 TF(iommu_test_check_refs, uptr, kAddr, kIn),
                                 TF(iommu_test_check_refs, refs, kDec, kIn)};
constexpr Field kTCreateAccess[] = {TF(iommu_test_create_access, out_access_fd, kFd, kOut),
                                    TF(iommu_test_create_access, flags, kFlags, kIn, kCreateAccessFlags)};
constexpr Field kTDestroyAccessPages[] = {TF(iommu_test_destroy_access_pages, access_pages_id, kId, kIn)};
constexpr Field kTAccessPages[] = {
    TF(iommu_test_access_pages, flags, kFlags, kIn, kAccessPagesFlags),
    TF(iommu_test_access_pages, out_access_pages_id, kId, kOut), TF(iommu_test_access_pages, iova, kHex, kIn),
    TF(iommu_test_access_pages, length, kHex, kIn), TF(iommu_test_access_pages, uptr, kAddr, kIn)};
constexpr Field kTAccessRw[] = {
    TF(iommu_test_access_rw, iova, kHex, kIn), TF(iommu_test_access_rw, length, kHex, kIn),
    TF(iommu_test_access_rw, uptr, kAddr, kIn), TF(iommu_test_access_rw, flags, kFlags, kIn, kAccessRwFlags)};
constexpr Field kTMemoryLimit[] = {TF(iommu_test_memory_limit, limit, kDec, kIn)};
constexpr Field kTMockDomainReplace[] = {TF(iommu_test_mock_domain_replace, pt_id, kId, kInOut)};
constexpr Field kTAccessReplaceIoas[] = {TF(iommu_test_access_replace_ioas, ioas_id, kId, kIn)};
constexpr Field kTMockDomainFlags[] = {
    TF(iommu_test_mock_domain_flags, out_stdev_id, kId, kOut),
    TF(iommu_test_mock_domain_flags, out_hwpt_id, kId, kOut),
    TF(iommu_test_mock_domain_flags, out_idev_id, kId, kOut),
    TF(iommu_test_mock_domain_flags, dev_flags, kFlags, kIn, kMockDeviceFlags)};
constexpr Field kTDirty[] = {
    TF(iommu_test_dirty, flags, kHex, kIn),  TF(iommu_test_dirty, iova, kHex, kIn),
    TF(iommu_test_dirty, length, kHex, kIn), TF(iommu_test_dirty, page_size, kHex, kIn),
    TF(iommu_test_dirty, uptr, kAddr, kIn),  TF(iommu_test_dirty, out_nr_dirty, kDec, kOut)};
constexpr Field kTCheckIotlb[] = {TF(iommu_test_check_iotlb, id, kDec, kIn),
                                  TF(iommu_test_check_iotlb, iotlb, kHex, kIn)};
constexpr Field kTDevCheckCache[] = {TF(iommu_test_check_dev_cache, id, kDec, kIn),
                                     TF(iommu_test_check_dev_cache, cache, kHex, kIn)};
constexpr Field kTTriggerIopf[] = {
    TF(iommu_test_trigger_iopf, dev_id, kId, kIn), TF(iommu_test_trigger_iopf, pasid, kDec, kIn),
    TF(iommu_test_trigger_iopf, grpid, kDec, kIn), TF(iommu_test_trigger_iopf, perm, kHex, kIn),
    TF(iommu_test_trigger_iopf, addr, kHex, kIn)};
constexpr Field kTTriggerVevent[] = {TF(iommu_test_trigger_vevent, dev_id, kId, kIn)};
constexpr Field kTPasidAttach[] = {TF(iommu_test_pasid_attach, pasid, kDec, kIn),
                                   TF(iommu_test_pasid_attach, pt_id, kId, kInOut)};
constexpr Field kTPasidDetach[] = {TF(iommu_test_pasid_attach, pasid, kDec, kIn)};
constexpr Field kTPasidCheck[] = {TF(iommu_test_pasid_check, pasid, kDec, kIn),
                                  TF(iommu_test_pasid_check, hwpt_id, kId, kIn)};
constexpr Field kTDmabufGet[] = {TF(iommu_test_dmabuf_get, length, kHex, kIn),
                                 TF(iommu_test_dmabuf_get, open_flags, kHex, kIn)};
constexpr Field kTDmabufRevoke[] = {TF(iommu_test_dmabuf_revoke, dmabuf_fd, kFd, kIn),
                                    TF(iommu_test_dmabuf_revoke, revoked, kDec, kIn)};

constexpr Op kTestOps[] = {
    {IOMMU_TEST_OP_ADD_RESERVED, "ADD_RESERVED", kTAddReserved},
    {IOMMU_TEST_OP_MOCK_DOMAIN, "MOCK_DOMAIN", kTMockDomain},
    {IOMMU_TEST_OP_MD_CHECK_MAP, "MD_CHECK_MAP", kTCheckMap},
    {IOMMU_TEST_OP_MD_CHECK_REFS, "MD_CHECK_REFS", kTCheckRefs},
    {IOMMU_TEST_OP_CREATE_ACCESS, "CREATE_ACCESS", kTCreateAccess},
    {IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, "DESTROY_ACCESS_PAGES", kTDestroyAccessPages},
    {IOMMU_TEST_OP_ACCESS_PAGES, "ACCESS_PAGES", kTAccessPages},
    {IOMMU_TEST_OP_ACCESS_RW, "ACCESS_RW", kTAccessRw},
    {IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT, "SET_TEMP_MEMORY_LIMIT", kTMemoryLimit},
    {IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, "MOCK_DOMAIN_REPLACE", kTMockDomainReplace},
    {IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, "ACCESS_REPLACE_IOAS", kTAccessReplaceIoas},
    {IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, "MOCK_DOMAIN_FLAGS", kTMockDomainFlags},
    {IOMMU_TEST_OP_DIRTY, "DIRTY", kTDirty},
    {IOMMU_TEST_OP_MD_CHECK_IOTLB, "MD_CHECK_IOTLB", kTCheckIotlb},
    {IOMMU_TEST_OP_TRIGGER_IOPF, "TRIGGER_IOPF", kTTriggerIopf},
    {IOMMU_TEST_OP_DEV_CHECK_CACHE, "DEV_CHECK_CACHE", kTDevCheckCache},
    {IOMMU_TEST_OP_TRIGGER_VEVENT, "TRIGGER_VEVENT", kTTriggerVevent},
    {IOMMU_TEST_OP_PASID_ATTACH, "PASID_ATTACH", kTPasidAttach},
    {IOMMU_TEST_OP_PASID_REPLACE, "PASID_REPLACE", kTPasidAttach},
    {IOMMU_TEST_OP_PASID_DETACH, "PASID_DETACH", kTPasidDetach},
    {IOMMU_TEST_OP_PASID_CHECK_HWPT, "PASID_CHECK_HWPT", kTPasidCheck},
    {IOMMU_TEST_OP_DMABUF_GET, "DMABUF_GET", kTDmabufGet},
    {IOMMU_TEST_OP_DMABUF_REVOKE, "DMABUF_REVOKE", kTDmabufRevoke},
};

#define CMD(cmd, fields, type) \
  Command { cmd, #cmd, Arg::kStruct, fields, sizeof(type) }

constexpr Command kCommands[] = {
    CMD(IOMMU_DESTROY, kDestroy, iommu_destroy),
    CMD(IOMMU_IOAS_ALLOC, kIoasAlloc, iommu_ioas_alloc),
    CMD(IOMMU_IOAS_ALLOW_IOVAS, kAllowIovas, iommu_ioas_allow_iovas),
    CMD(IOMMU_IOAS_COPY, kIoasCopy, iommu_ioas_copy),
    CMD(IOMMU_IOAS_IOVA_RANGES, kIovaRanges, iommu_ioas_iova_ranges),
    CMD(IOMMU_IOAS_MAP, kIoasMap, iommu_ioas_map),
    CMD(IOMMU_IOAS_UNMAP, kIoasUnmap, iommu_ioas_unmap),
    CMD(IOMMU_OPTION, kOption, iommu_option),
    CMD(IOMMU_VFIO_IOAS, kVfioIoas, iommu_vfio_ioas),
    CMD(IOMMU_HWPT_ALLOC, kHwptAlloc, iommu_hwpt_alloc),
    CMD(IOMMU_GET_HW_INFO, kHwInfo, iommu_hw_info),
    CMD(IOMMU_HWPT_SET_DIRTY_TRACKING, kSetDirtyTracking, iommu_hwpt_set_dirty_tracking),
    CMD(IOMMU_HWPT_GET_DIRTY_BITMAP, kGetDirtyBitmap, iommu_hwpt_get_dirty_bitmap),
    CMD(IOMMU_HWPT_INVALIDATE, kHwptInvalidate, iommu_hwpt_invalidate),
    CMD(IOMMU_FAULT_QUEUE_ALLOC, kFaultAlloc, iommu_fault_alloc),
    CMD(IOMMU_IOAS_MAP_FILE, kIoasMapFile, iommu_ioas_map_file),
    CMD(IOMMU_VIOMMU_ALLOC, kViommuAlloc, iommu_viommu_alloc),
    CMD(IOMMU_VDEVICE_ALLOC, kVdeviceAlloc, iommu_vdevice_alloc),
    CMD(IOMMU_IOAS_CHANGE_PROCESS, kChangeProcess, iommu_ioas_change_process),
    CMD(IOMMU_VEVENTQ_ALLOC, kVeventqAlloc, iommu_veventq_alloc),
    CMD(IOMMU_HW_QUEUE_ALLOC, kHwQueueAlloc, iommu_hw_queue_alloc),
    Command{
        IOMMU_TEST_CMD, "IOMMU_TEST_CMD", Arg::kStruct, kTestHeader, sizeof(iommu_test_cmd), {}, kTestOps},
    Command{VFIO_GET_API_VERSION, "VFIO_GET_API_VERSION", Arg::kNone, {}, 0},
    Command{VFIO_CHECK_EXTENSION, "VFIO_CHECK_EXTENSION", Arg::kValue, {}, 0, kVfioExtensions},
    Command{VFIO_SET_IOMMU, "VFIO_SET_IOMMU", Arg::kValue, {}, 0, kVfioExtensions},
    CMD(VFIO_IOMMU_GET_INFO, kVfioGetInfo, vfio_iommu_type1_info),
    CMD(VFIO_IOMMU_MAP_DMA, kVfioMapDma, vfio_iommu_type1_dma_map),
    CMD(VFIO_IOMMU_UNMAP_DMA, kVfioUnmapDma, vfio_iommu_type1_dma_unmap),
    Command{io_cmd(kNrVfioIommuDirtyPages), "VFIO_IOMMU_DIRTY_PAGES", Arg::kStruct, kVfioDirtyPages,
            sizeof(VfioDirtyBitmap)},
};

}  // namespace

std::span<const Command> commands() { return kCommands; }

const Command* find(unsigned long cmd) {
  for (const Command& c : kCommands)
    if (c.cmd == cmd) return &c;
  return nullptr;
}

const Op* find_op(const Command& c, std::uint32_t op) {
  for (const Op& o : c.ops)
    if (o.op == op) return &o;
  return nullptr;
}

}  // namespace uiommufd::trace::tables
