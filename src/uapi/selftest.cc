// IOMMU_TEST_CMD: the kernel selftest's mock domains, devices and accesses (abi.md §6–7, semantics §6.4).

#include <cerrno>

#include "handlers.h"

namespace uiommufd::uapi {

long test_cmd(IommufdFile&, std::uint64_t) { return -ENOTTY; }

}  // namespace uiommufd::uapi
