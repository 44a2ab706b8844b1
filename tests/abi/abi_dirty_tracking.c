/* The part of abi_dirty.c that uiommufd serves today: IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_TEST_OP_DIRTY
 * and the VFIO compat layer's answers to dirty requests, without the IOMMU_HWPT_GET_DIRTY_BITMAP steps
 * (docs/semantics.md#dirty). When GET_DIRTY_BITMAP lands, abi_dirty replaces this program. */
#define ABI_DIRTY_TRACKING_ONLY 1
#include "abi_dirty.c"
