// Page geometry shared by every layer. uiommufd models the x86-64 kernel: 4 KiB pages, 2 MiB huge pages.
#pragma once

#include <cstdint>

namespace uiommufd {

inline constexpr std::uint64_t kPageShift = 12;
inline constexpr std::uint64_t kPageSize = std::uint64_t{1} << kPageShift;
inline constexpr std::uint64_t kHugePageShift = 21;
inline constexpr std::uint64_t kHugePageSize = std::uint64_t{1} << kHugePageShift;
// The kernel's ULONG_MAX on a 64-bit machine: the last IOVA, and the bound several ioctls check against.
inline constexpr std::uint64_t kUlongMax = ~std::uint64_t{0};

// What a software IOMMU page table stores for a page: the page's identity. For memory of this process it
// is the page's host virtual address (the engine runs in the process whose memory it maps), so a
// physically contiguous run is a virtually contiguous one.
using PhysAddr = std::uint64_t;

constexpr std::uint64_t page_align_down(std::uint64_t v) { return v & ~(kPageSize - 1); }
constexpr std::uint64_t page_offset(std::uint64_t v) { return v & (kPageSize - 1); }

}  // namespace uiommufd
