// VFIO container compatibility on the iommufd fd (docs/semantics.md#vfio-compat; the kernel's vfio_compat.c).
//
// The VFIO structs carry their own `argsz` and do not follow iommufd's extensible-struct rules: each
// handler reads the fixed prefix it needs (EFAULT if unreadable), checks argsz against the end of its last
// mandatory field (EINVAL), and writes back at most that much. Every operation acts on the compat IOAS
// (Context::vfio_ioas_id()); without one it fails with ENODEV, after the argument checks, as in the kernel.

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <optional>
#include <vector>

#include "handlers.h"

#include "uiommufd/base/page.h"
#include "uiommufd/base/try.h"
#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {

namespace {

// The end of each struct's last mandatory field: the smallest argsz accepted and the bytes read in.
constexpr std::size_t kInfoMinSize = offsetof(vfio_iommu_type1_info, iova_pgsizes) + sizeof(std::uint64_t);
constexpr std::size_t kMapMinSize = offsetof(vfio_iommu_type1_dma_map, size) + sizeof(std::uint64_t);
constexpr std::size_t kUnmapMinSize = offsetof(vfio_iommu_type1_dma_unmap, size) + sizeof(std::uint64_t);

// Capabilities start on 8-byte boundaries (the newest kernel pads each one; the 12-byte DMA_AVAIL cap used
// to leave the IOVA ranges misaligned).
constexpr std::uint64_t kCapAlign = sizeof(std::uint64_t);

const Mm& user() { return *Mm::current(); }

// The compat IOAS with a user held for the operation. ENODEV when none is set, and also when it is being
// destroyed meanwhile: destroying it unsets it, so the caller then sees the state it would have seen a
// moment later.
Result<ObjectRef<Ioas>> compat_ioas(Context& ctx) {
  Result<std::uint32_t> id = ctx.vfio_ioas_id();
  if (!id.ok()) return Status::error(ENODEV);
  Result<ObjectRef<Ioas>> ioas = ctx.get<Ioas>(*id, ObjectType::kIoas);
  if (!ioas.ok()) return Status::error(ENODEV);
  return ioas;
}

long check_extension(Context& ctx, unsigned long extension) {
  switch (extension) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      return 1;
    case VFIO_DMA_CC_IOMMU: {
      // 1 iff every paging HWPT on the compat IOAS enforces cache coherency (the kernel's
      // iommufd_vfio_cc_iommu). A HWPT enforces it only when its device's IOMMU reports
      // IOMMU_CAP_ENFORCE_CACHE_COHERENCY as the HWPT is allocated (iommufd_hwpt_paging_alloc): the
      // selftest's mock IOMMU does not (selftest.c, mock_domain_capable()), so a mock-domain HWPT makes it 0;
      // the software devices' domains always map with kIommuCache.
      Result<ObjectRef<Ioas>> ioas = compat_ioas(ctx);
      if (!ioas.ok()) return -ioas.error();
      Ioas& io = **ioas;
      lockdep::MutexGuard g(io.mutex());
      for (HwptPaging* hwpt : io.hwpts_locked())
        if (dynamic_cast<MockDomain*>(&hwpt->domain())) return 0;
      return 1;
    }
    case VFIO_NOIOMMU_IOMMU:  // we are not a no-iommu build (CONFIG_VFIO_NOIOMMU)
    case VFIO_TYPE1_NESTING_IOMMU:
    case VFIO_UPDATE_VADDR:
    default:
      return 0;
  }
}

Status set_iommu(Context& ctx, unsigned long type) {
  // No-iommu mode is never entered (no no-iommu devices), so NOIOMMU is an unknown type like any other.
  if (type != VFIO_TYPE1_IOMMU && type != VFIO_TYPE1v2_IOMMU) return Status::error(EINVAL);
  Result<ObjectRef<Ioas>> ioas = compat_ioas(ctx);
  if (!ioas.ok()) return ioas.status();
  // TYPE1 may unmap any page-aligned part of a mapping; large IOPTEs could not be split, so they go.
  if (type == VFIO_TYPE1_IOMMU) return (*ioas)->iopt().set_large_pages(false);
  return {};
}

// VFIO's page-size bitmap: what every domain supports, with sub-page sizes reported as PAGE_SIZE (VFIO
// users expect nothing below it), and never finer than the IOAS's alignment.
std::uint64_t vfio_pgsizes(const IoPagetable::PageSizes& ps) {
  std::uint64_t bitmap = ps.domains_pgsize_bitmap;
  if (bitmap & (kPageSize - 1)) bitmap = (bitmap & ~(kPageSize - 1)) | kPageSize;
  return std::max(bitmap, ps.iova_alignment);
}

// A capability writer: writes its capability at `at` only if all of it fits in `avail` bytes (a part of
// the IOVA-range list may be written when the whole does not fit, as the kernel does) and returns its full
// size either way.
Result<std::uint64_t> fill_cap_dma_avail(std::uint64_t at, std::uint64_t avail) {
  vfio_iommu_type1_info_dma_avail cap{};
  cap.header.id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
  cap.header.version = 1;
  // iommufd limits pinning by the memlock rlimit, not by a mapping count; U32_MAX says "no count limit"
  // (the kernel chose it over VFIO's U16_MAX because s390 QEMU sizes itself by it).
  cap.avail = 0xffffffffu;
  if (avail >= sizeof(cap)) TRY(user().copy_to_user(at, &cap, sizeof(cap)));
  return sizeof(cap);
}

Result<std::uint64_t> fill_cap_iova_range(const std::vector<Interval>& holes, std::uint64_t at,
                                          std::uint64_t avail) {
  vfio_iommu_type1_info_cap_iova_range cap{};
  cap.header.id = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;
  cap.header.version = 1;
  for (const Interval& hole : holes) {
    std::uint64_t end = sizeof(cap) + (cap.nr_iovas + 1) * sizeof(vfio_iova_range);
    if (avail >= end) {
      vfio_iova_range range{hole.start, hole.last};
      TRY(user().copy_to_user(at + end - sizeof(range), &range, sizeof(range)));
    }
    ++cap.nr_iovas;
  }
  std::uint64_t size = sizeof(cap) + cap.nr_iovas * sizeof(vfio_iova_range);
  if (avail >= size) TRY(user().copy_to_user(at, &cap, sizeof(cap)));
  return size;
}

Status get_info(Context& ctx, std::uint64_t arg) {
  vfio_iommu_type1_info info{};
  TRY(user().copy_from_user(&info, arg, kInfoMinSize));
  if (info.argsz < kInfoMinSize) return Status::error(EINVAL);
  const std::size_t out_size = std::min<std::size_t>(info.argsz, sizeof(info));
  ObjectRef<Ioas> ioas = TRY(compat_ioas(ctx));

  info.flags = VFIO_IOMMU_INFO_PGSIZES;
  info.iova_pgsizes = vfio_pgsizes(ioas->iopt().page_sizes());
  info.cap_offset = 0;
  const std::vector<Interval> holes = ioas->iopt().iova_ranges();

  // The chain: DMA_AVAIL, then IOVA_RANGE, each linked from the previous one's `next`. A capability that
  // does not fit is not written, but its size still counts, so argsz comes back as the size that holds
  // all of them; cap_offset is set only then.
  std::uint64_t total = sizeof(info);
  std::optional<std::uint64_t> last_cap;
  for (int i = 0; i < 2; ++i) {
    std::uint64_t avail = info.argsz > total ? info.argsz - total : 0;
    std::uint64_t size =
        TRY(i == 0 ? fill_cap_dma_avail(arg + total, avail) : fill_cap_iova_range(holes, arg + total, avail));
    size = (size + kCapAlign - 1) & ~(kCapAlign - 1);
    // The previous capability was written iff it fit, and only then is it linked.
    if (last_cap && info.argsz >= total) {
      std::uint32_t next = static_cast<std::uint32_t>(total);
      TRY(user().copy_to_user(*last_cap + offsetof(vfio_info_cap_header, next), &next, sizeof(next)));
    }
    last_cap = arg + total;
    total += size;
  }
  if (info.argsz >= total) info.cap_offset = sizeof(info);
  info.argsz = static_cast<std::uint32_t>(total);
  info.flags |= VFIO_IOMMU_INFO_CAPS;
  TRY(user().copy_to_user(arg, &info, out_size));
  return {};
}

Status map_dma(Context& ctx, std::uint64_t arg) {
  vfio_iommu_type1_dma_map map{};
  TRY(user().copy_from_user(&map, arg, kMapMinSize));
  if (map.argsz < kMapMinSize || (map.flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)))
    return Status::error(EINVAL);
  // Unlike IOAS_MAP, a map with neither READ nor WRITE is accepted: the kernel maps the range with no
  // access permission.
  const int prot = ((map.flags & VFIO_DMA_MAP_FLAG_READ) ? kIommuRead : 0) |
                   ((map.flags & VFIO_DMA_MAP_FLAG_WRITE) ? kIommuWrite : 0);
  ObjectRef<Ioas> ioas = TRY(compat_ioas(ctx));
  // IOAS_MAP's path below its argument checks, always at the fixed IOVA. Pages are charged in the
  // context's mode, which is per-process (MM) for a file opened as /dev/vfio/vfio.
  RefPtr<Pages> pages =
      TRY(Pages::create_user(Mm::current(), map.vaddr, map.size, prot & kIommuWrite, ctx.account_mode()));
  std::uint64_t iova = map.iova;
  return ioas->iopt().map_pages(std::move(pages), &iova, prot, /*fixed_iova=*/true);
}

// The kernel's iopt_unmap_iova: EINVAL for size 0, EOVERFLOW when the range wraps, then the range unmap,
// which succeeds with nothing unmapped on an empty range, as the newest kernel's does
// (docs/semantics.md#vfio-compat).
Status unmap_iova(IoPagetable& iopt, std::uint64_t iova, std::uint64_t size, std::uint64_t* unmapped) {
  Interval range = TRY(Interval::from_length(iova, size));
  return iopt.unmap_range(range, unmapped);
}

Status unmap_dma(Context& ctx, std::uint64_t arg) {
  vfio_iommu_type1_dma_unmap unmap{};
  TRY(user().copy_from_user(&unmap, arg, kUnmapMinSize));
  // GET_DIRTY_BITMAP and VADDR are not supported: dirty tracking has its own iommufd interface.
  if (unmap.argsz < kUnmapMinSize || (unmap.flags & ~VFIO_DMA_UNMAP_FLAG_ALL)) return Status::error(EINVAL);
  ObjectRef<Ioas> ioas = TRY(compat_ioas(ctx));
  IoPagetable& iopt = ioas->iopt();

  std::uint64_t unmapped = 0;
  Status st;
  if (unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL) {
    if (unmap.iova != 0 || unmap.size != 0) return Status::error(EINVAL);
    st = iopt.unmap_range(Interval::full(), &unmapped);
  } else {
    if (!iopt.large_pages()) {
      // TYPE1 may unmap part of a mapping: cut the areas at both ends of the range first, so that the range
      // unmap finds only whole areas inside it. Nothing lies below IOVA 0, so no cut is needed there. The
      // arithmetic wraps as the kernel's does; a wrapped or empty range then fails the unmap itself.
      const std::uint64_t last = unmap.iova + unmap.size - 1;
      Status cut = unmap.iova ? iopt.cut_iova({last, unmap.iova - 1}) : iopt.cut_iova({last});
      if (!cut.ok()) return cut;
    }
    st = unmap_iova(iopt, unmap.iova, unmap.size, &unmapped);
  }
  // The bytes unmapped go back also on failure: areas below a refused one are already gone.
  unmap.size = unmapped;
  if (!user().copy_to_user(arg, &unmap, kUnmapMinSize).ok()) return Status::error(EFAULT);
  return st;
}

}  // namespace

long vfio_ioctl(IommufdFile& file, unsigned long cmd, std::uint64_t arg) {
  Context& ctx = file.context();
  switch (cmd) {
    case VFIO_GET_API_VERSION:
      return VFIO_API_VERSION;
    case VFIO_CHECK_EXTENSION:
      return check_extension(ctx, arg);
    case VFIO_SET_IOMMU:
      return to_ret(set_iommu(ctx, arg));
    case VFIO_IOMMU_GET_INFO:
      return to_ret(get_info(ctx, arg));
    case VFIO_IOMMU_MAP_DMA:
      return to_ret(map_dma(ctx, arg));
    case VFIO_IOMMU_UNMAP_DMA:
      return to_ret(unmap_dma(ctx, arg));
    default:
      // Including VFIO_IOMMU_DIRTY_PAGES: dirty tracking is iommufd's own HWPT interface.
      return -ENOTTY;
  }
}

}  // namespace uiommufd::uapi
