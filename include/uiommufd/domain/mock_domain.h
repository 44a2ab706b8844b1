// MockDomain: the software domain of the iommufd selftest mock IOMMU (docs/semantics.md#selftest), on
// PageTableDomain.
//
// Geometry as the kernel's mock: granule MOCK_IO_PAGE_SIZE = PAGE_SIZE / 2 = 2 KiB, aperture
// [1 << 24, (1 << 31) - 1] (which gives an IOAS the reserved ranges [0, 16 MiB - 1] and [2 GiB, ULONG_MAX]
// and iova_alignment 2 KiB). The default table builds the entries the kernel's AMDv1-format table builds:
// 1 MiB and 512 MiB items and contiguous entries of 2^k items, each only inside memory map() is told is
// physically contiguous (its phys_block; docs/semantics.md#dirty). `huge_iova` (MOCK_FLAGS_DEVICE_HUGE_IOVA)
// and `huge_pagetable` tables have just 2 KiB and 1 MiB items, the latter wherever IOVA and address align,
// and 4 KiB pages as entries of two items.
//
// Differences from the kernel's xarray mock, all deliberate:
//   - START and LAST are separate bits (the kernel shares one); the check is the same.
//   - The START / LAST check in unmap() stays on with huge_iova (the kernel skips it); large entries carry
//     the markers themselves, so the check remains exact.
//
// Thread safety: as PageTableDomain (see domain.h).
#pragma once

#include <cstdint>
#include <memory>

#include "uiommufd/base/interval.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/result.h"
#include "uiommufd/base/status.h"
#include "uiommufd/domain/page_table_domain.h"

namespace uiommufd {

struct MockDomainOptions {
  // MOCK_FLAGS_DEVICE_HUGE_IOVA: also support 1 MiB (512 x 2 KiB) entries.
  bool huge_iova = false;
  // MOCK_IOMMUPT_HUGE (IOMMU_HWPT_DATA_SELFTEST's pagetable_type): the kernel keeps the table's own
  // aperture, [0, 2^38 - 1] (three levels of 512 entries above the 2 KiB granule), and reports only the
  // 1 MiB page and PAGE_SIZE, so the IOAS's alignment becomes 4 KiB (selftest.c mock_domain_alloc_pgtable()).
  bool huge_pagetable = false;
  // IOMMU_HWPT_ALLOC_DIRTY_TRACKING: the domain has the mock's dirty ops (PageTableDomainOptions).
  bool dirty_capable = false;
  // As PageTableDomainOptions::dcheck_boundaries.
  bool dcheck_boundaries = true;
};

class MockDomain : public PageTableDomain {
 public:
  using Options = MockDomainOptions;

  static constexpr std::uint64_t kIoPageShift = kPageShift - 1;
  static constexpr std::uint64_t kIoPageSize = std::uint64_t{1} << kIoPageShift;  // MOCK_IO_PAGE_SIZE
  static constexpr Interval kAperture = {std::uint64_t{1} << 24, (std::uint64_t{1} << 31) - 1};
  static constexpr Interval kHugeAperture = {0, (std::uint64_t{1} << 38) - 1};
  static constexpr std::uint64_t kHugePgsizeBitmap = (std::uint64_t{1} << 20) | kPageSize;

  // Errors: ENOMEM (fault site "domain.alloc_table").
  static Result<std::unique_ptr<MockDomain>> create(const Options& options = {});

  // PageTableDomain::map with the mock's fault site: after the argument checks (EINVAL), fault site
  // "mock.domain_map" fails the call with ENOENT before anything is mapped, as the kernel's mock
  // map_pages does. Other errors as in domain.h.
  using PageTableDomain::map;
  Status map(std::uint64_t iova, PhysAddr paddr, std::uint64_t length, int prot,
             std::uint64_t phys_block) override;

  // IOMMU_TEST_OP_MD_CHECK_MAP against the PhysAddr model: every 2 KiB unit of [iova, iova + length) must
  // translate to expected_start plus its offset. expected_start is the PhysAddr of the user pointer's byte
  // (its page identity plus the offset in the page), as the kernel compares the page's physical address
  // plus uptr % PAGE_SIZE. length 0 checks nothing and succeeds.
  // Errors: EINVAL if iova, length or expected_start is not 2 KiB aligned, iova + length or
  // expected_start + length overflows, or any unit is unmapped or maps elsewhere.
  Status check_map(std::uint64_t iova, std::uint64_t length, PhysAddr expected_start) const;

  // The page sizes the kernel's mock reports, which VFIO_IOMMU_GET_INFO passes on: its table is an
  // AMDv1-format one with a 2 KiB granule and three levels (selftest.c mock_domain_alloc_pgtable(),
  // generic_pt/fmt/amdv1.h amdv1pt_possible_sizes(): every power of two in each level), cut below the
  // size of the whole top table (generic_pt/iommu_pt.h get_info()): every power of two from 2 KiB to
  // 64 GiB. The engine itself reads only the smallest size, the granule.
  static constexpr std::uint64_t kKernelPgsizeBitmap =
      ((std::uint64_t{1} << 37) - 1) & ~((std::uint64_t{1} << 11) - 1);
  std::uint64_t pgsize_bitmap() const override;

 private:
  MockDomain(const PageTableDomainOptions& options, std::uint64_t* root, const Options& mock)
      : PageTableDomain(options, root), huge_iova_(mock.huge_iova), huge_pagetable_(mock.huge_pagetable) {}

  const bool huge_iova_;
  const bool huge_pagetable_;

  static PageTableDomainOptions table_options(const Options& options);
};

}  // namespace uiommufd
