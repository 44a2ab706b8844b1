// IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP of one page at a fixed IOVA, the call pair several runtime figures
// time: through ioctl() on a /dev/iommu fd (the preload's, or the server's), or straight into a dispatcher.
#pragma once

#include <cstdint>

#include <sys/ioctl.h>

#include "uiommufd/base/page.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::bench {

inline constexpr std::uint32_t kMapFixedRw =
    uapi::IOMMU_IOAS_MAP_FIXED_IOVA | uapi::IOMMU_IOAS_MAP_READABLE | uapi::IOMMU_IOAS_MAP_WRITEABLE;

// True when both calls succeeded.
inline bool map_unmap_page(int fd, std::uint32_t ioas, std::uint64_t uptr, std::uint64_t iova) {
  uapi::iommu_ioas_map map{sizeof(map), kMapFixedRw, ioas, 0, uptr, kPageSize, iova};
  uapi::iommu_ioas_unmap unmap{sizeof(unmap), ioas, iova, kPageSize};
  return ioctl(fd, uapi::IOMMU_IOAS_MAP, &map) == 0 && ioctl(fd, uapi::IOMMU_IOAS_UNMAP, &unmap) == 0;
}

inline bool map_unmap_page(uapi::OpenFile& file, std::uint32_t ioas, std::uint64_t uptr, std::uint64_t iova) {
  uapi::iommu_ioas_map map{sizeof(map), kMapFixedRw, ioas, 0, uptr, kPageSize, iova};
  uapi::iommu_ioas_unmap unmap{sizeof(unmap), ioas, iova, kPageSize};
  return file.ioctl(uapi::IOMMU_IOAS_MAP, reinterpret_cast<std::uintptr_t>(&map)) == 0 &&
         file.ioctl(uapi::IOMMU_IOAS_UNMAP, reinterpret_cast<std::uintptr_t>(&unmap)) == 0;
}

}  // namespace uiommufd::bench
