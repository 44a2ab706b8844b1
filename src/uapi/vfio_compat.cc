// VFIO container compatibility on the iommufd fd (semantics §7).

#include <cerrno>

#include "handlers.h"

namespace uiommufd::uapi {

long vfio_ioctl(IommufdFile&, unsigned long, std::uint64_t) { return -ENOTTY; }

}  // namespace uiommufd::uapi
