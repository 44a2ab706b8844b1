// The ioctl handlers, one file per family. Each returns the ioctl's value (≥ 0) or a negated errno.
#pragma once

#include "ucmd.h"

namespace uiommufd::uapi {

// iommufd's own commands (iommufd_ioctls.cc).
long destroy(Ucmd& ucmd);
long ioas_alloc(Ucmd& ucmd);
long ioas_allow_iovas(Ucmd& ucmd);
long ioas_copy(Ucmd& ucmd);
long ioas_iova_ranges(Ucmd& ucmd);
long ioas_map(Ucmd& ucmd);
long ioas_map_file(Ucmd& ucmd);
long ioas_change_process(Ucmd& ucmd);
long ioas_unmap(Ucmd& ucmd);
long option(Ucmd& ucmd);
long vfio_ioas(Ucmd& ucmd);

// The page-table commands (hwpt_ioctls.cc).
long hwpt_alloc(Ucmd& ucmd);
long get_hw_info(Ucmd& ucmd);
long hwpt_invalidate(Ucmd& ucmd);
long hwpt_set_dirty_tracking(Ucmd& ucmd);
long hwpt_get_dirty_bitmap(Ucmd& ucmd);

// The virtual-IOMMU commands (viommu_ioctls.cc).
long viommu_alloc(Ucmd& ucmd);
long vdevice_alloc(Ucmd& ucmd);
long hw_queue_alloc(Ucmd& ucmd);
long veventq_alloc(Ucmd& ucmd);
// IOMMU_FAULT_QUEUE_ALLOC (fault_ioctls.cc).
long fault_queue_alloc(Ucmd& ucmd);

// IOMMU_TEST_CMD (selftest.cc). Called before any size check: the test command has two layouts told
// apart by size (docs/abi.md#test-cmd-layouts), so it applies its own rules.
long test_cmd(IommufdFile& file, std::uint64_t uptr);

// Every command with nr < 0x80 or outside the table: the VFIO container ioctls (vfio_compat.cc).
// Unknown commands are ENOTTY.
long vfio_ioctl(IommufdFile& file, unsigned long cmd, std::uint64_t arg);

}  // namespace uiommufd::uapi
