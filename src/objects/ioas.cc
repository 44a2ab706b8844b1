#include "uiommufd/objects/ioas.h"

#include "uiommufd/base/assert.h"
#include "uiommufd/base/try.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/context.h"

namespace uiommufd {

namespace {
constexpr std::uint32_t kMapFlags = Ioas::kFixedIova | Ioas::kWriteable | Ioas::kReadable;

// The checks shared by MAP, MAP_FILE and COPY, in the kernel's order, and the IOMMU protection.
Result<int> check_map_flags(std::uint32_t flags, std::uint64_t iova, std::uint64_t length) {
  if (flags & ~kMapFlags) return Status::error(EOPNOTSUPP);
  if (iova >= kUlongMax || length >= kUlongMax) return Status::error(EOVERFLOW);
  if (!(flags & (Ioas::kReadable | Ioas::kWriteable))) return Status::error(EINVAL);
  return ((flags & Ioas::kReadable) ? kIommuRead : 0) | ((flags & Ioas::kWriteable) ? kIommuWrite : 0);
}
}  // namespace

Result<std::uint32_t> Ioas::create(Context& ctx) {
  std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(new Ioas(ctx))));
  ctx.finalize(id);
  return id;
}

Status Ioas::map(std::uint64_t uptr, std::uint64_t length, std::uint64_t* iova, std::uint32_t flags) {
  int prot = TRY(check_map_flags(flags, *iova, length));
  RefPtr<Pages> pages =
      TRY(Pages::create_user(Mm::current(), uptr, length, flags & kWriteable, context().account_mode()));
  return iopt_.map_pages(std::move(pages), iova, prot, flags & kFixedIova);
}

Status Ioas::map_file(int fd, std::uint64_t start, std::uint64_t length, std::uint64_t* iova,
                      std::uint32_t flags) {
  int prot = TRY(check_map_flags(flags, *iova, length));
  RefPtr<Pages> pages = TRY(Pages::create_file(fd, start, length, flags & kWriteable, context().account_mode()));
  return iopt_.map_pages(std::move(pages), iova, prot, flags & kFixedIova);
}

Status Ioas::copy_from(Ioas& src, std::uint64_t src_iova, std::uint64_t length, std::uint64_t* dst_iova,
                       std::uint32_t flags) {
  int prot = TRY(check_map_flags(flags, *dst_iova, length));
  if (src_iova >= kUlongMax) return Status::error(EOVERFLOW);
  std::vector<PagesChunk> chunks = TRY(src.iopt().get_chunks(src_iova, length));
  return iopt_.map_chunks(chunks, dst_iova, prot, flags & kFixedIova);
}

Status Ioas::unmap(std::uint64_t iova, std::uint64_t length, std::uint64_t* unmapped) {
  *unmapped = 0;
  if (iova == 0 && length == kUlongMax) return iopt_.unmap_range(Interval::full(), unmapped);
  if (iova >= kUlongMax || length >= kUlongMax) return Status::error(EOVERFLOW);
  Interval range = TRY(Interval::from_length(iova, length));
  TRY(iopt_.unmap_range(range, unmapped));
  // The core succeeds on an empty range (VFIO relies on that); IOAS_UNMAP calls it ENOENT.
  if (*unmapped == 0) return Status::error(ENOENT);
  return {};
}

void Ioas::destroy() {
  // HWPTs hold users of their IOAS, so none can be left when the IOAS goes.
  lockdep::MutexGuard g(mu_);
  UIOMMUFD_ASSERT(hwpts_.empty());
}

}  // namespace uiommufd
