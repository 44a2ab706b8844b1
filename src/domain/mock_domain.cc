#include "uiommufd/domain/mock_domain.h"

#include <cerrno>
#include <new>

#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"

namespace uiommufd {

UIOMMUFD_FAULT_SITE(g_fault_mock_domain_map, "mock.domain_map", ENOENT);

PageTableDomainOptions MockDomain::table_options(const Options& options) {
  PageTableDomainOptions table;
  table.granule_shift = kIoPageShift;
  table.aperture = options.huge_pagetable ? kHugeAperture : kAperture;
  table.dcheck_boundaries = options.dcheck_boundaries;
  table.dirty_capable = options.dirty_capable;
  if (options.huge_iova || options.huge_pagetable) {
    // One more size, 512 x 2 KiB, over any run (the selftest gives these tables huge pages), and 4 KiB
    // pages as entries of two items.
    table.large_pages = true;
    table.max_large_level = 1;
    table.contiguous_sizes = kPageSize;
  } else {
    // The kernel's default table: every power of two, each only where the memory is contiguous.
    table.large_pages = true;
    table.max_large_level = 2;
    table.large_within_block = true;
    table.contiguous_sizes = kKernelPgsizeBitmap;
  }
  return table;
}

Result<std::unique_ptr<MockDomain>> MockDomain::create(const Options& options) {
  const PageTableDomainOptions table = table_options(options);
  std::uint64_t* root = TRY(prepare_root(table));
  auto* domain = new (std::nothrow) MockDomain(table, root, options);
  if (domain == nullptr) {
    free_root(root);
    return Status::error(ENOMEM);
  }
  return std::unique_ptr<MockDomain>(domain);
}

std::uint64_t MockDomain::pgsize_bitmap() const {
  if (huge_pagetable_) return kHugePgsizeBitmap;
  return huge_iova_ ? PageTableDomain::pgsize_bitmap() : kKernelPgsizeBitmap;
}

Status MockDomain::map(std::uint64_t iova, PhysAddr paddr, std::uint64_t length, int prot,
                       std::uint64_t phys_block) {
  TRY(check_map_args(iova, paddr, length, prot, phys_block));
  TRY(inject(g_fault_mock_domain_map));
  return map_checked(iova, paddr, length, prot, phys_block);
}

Status MockDomain::check_map(std::uint64_t iova, std::uint64_t length, PhysAddr expected_start) const {
  if (((iova | length | expected_start) & (kIoPageSize - 1)) != 0) return Status::error(EINVAL);
  if (length == 0) return Status();
  std::uint64_t unused = 0;
  if (!checked_add(iova, length - 1, &unused) || !checked_add(expected_start, length - 1, &unused))
    return Status::error(EINVAL);
  // Runs instead of units: the same verdict, at the cost of one walk per table.
  for (std::uint64_t done = 0; done < length;) {
    const Run run = read_run(iova + done, length - done);
    if (run.length == 0 || run.paddr != expected_start + done) return Status::error(EINVAL);
    done += run.length;
  }
  return Status();
}

}  // namespace uiommufd
