#include "uiommufd/objects/ioas.h"

#include <new>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/try.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/context.h"

namespace uiommufd {

namespace {
constexpr std::uint32_t kMapFlags = Ioas::kFixedIova | Ioas::kWriteable | Ioas::kReadable;

// The IOMMU protection of MAP / MAP_FILE / COPY flags already checked by check_map_args.
int map_prot(std::uint32_t flags) {
  return ((flags & Ioas::kReadable) ? kIommuRead : 0) | ((flags & Ioas::kWriteable) ? kIommuWrite : 0);
}

// MAP_FILE's checks of its range, before the descriptor is looked at (iopt_map_file_pages()).
Status check_file_range(std::uint64_t start, std::uint64_t length) {
  std::uint64_t last = 0;
  if (length == 0) return Status::error(EINVAL);
  if (!checked_add(start, length - 1, &last)) return Status::error(EOVERFLOW);
  return {};
}
}  // namespace

Result<std::uint32_t> Ioas::reserve(Context& ctx) {
  std::unique_ptr<Object> ioas(new (std::nothrow) Ioas(ctx));
  if (!ioas) return Status::error(ENOMEM);
  return ctx.reserve(std::move(ioas));
}

Result<std::uint32_t> Ioas::create(Context& ctx) {
  std::uint32_t id = TRY(reserve(ctx));
  ctx.finalize(id);
  return id;
}

Status Ioas::check_map_args(std::uint32_t flags, std::initializer_list<std::uint64_t> values) {
  if (flags & ~kMapFlags) return Status::error(EOPNOTSUPP);
  for (std::uint64_t v : values) {
    if (v >= kUlongMax) return Status::error(EOVERFLOW);
  }
  if (!(flags & (kReadable | kWriteable))) return Status::error(EINVAL);
  return {};
}

Status Ioas::map(std::uint64_t uptr, std::uint64_t length, std::uint64_t* iova, std::uint32_t flags) {
  TRY(check_map_args(flags, {*iova, length}));
  RefPtr<Pages> pages = TRY(Pages::create_user(Mm::current(), uptr, length, flags & kWriteable,
                                               context().account_mode(), lock_pinned()));
  return iopt_.map_pages(std::move(pages), iova, map_prot(flags), flags & kFixedIova);
}

Status Ioas::map_file(int fd, std::uint64_t start, std::uint64_t length, std::uint64_t* iova,
                      std::uint32_t flags) {
  TRY(check_map_args(flags, {*iova, length}));
  TRY(check_file_range(start, length));
  RefPtr<Pages> pages =
      TRY(Pages::create_file(fd, start, length, flags & kWriteable, context().account_mode(), lock_pinned()));
  return iopt_.map_pages(std::move(pages), iova, map_prot(flags), flags & kFixedIova);
}

Status Ioas::map_dmabuf(RefPtr<DmaBuf> buf, std::uint64_t start, std::uint64_t length, std::uint64_t* iova,
                        std::uint32_t flags) {
  TRY(check_map_args(flags, {*iova, length}));
  TRY(check_file_range(start, length));
  RefPtr<Pages> pages = TRY(Pages::create_dmabuf(std::move(buf), start, length, flags & kWriteable));
  return iopt_.map_pages(std::move(pages), iova, map_prot(flags), flags & kFixedIova);
}

Status Ioas::map_copy(const std::vector<PagesChunk>& chunks, std::uint64_t* dst_iova, std::uint32_t flags) {
  return iopt_.map_chunks(chunks, dst_iova, map_prot(flags), flags & kFixedIova);
}

Status Ioas::copy_from(Ioas& src, std::uint64_t src_iova, std::uint64_t length, std::uint64_t* dst_iova,
                       std::uint32_t flags) {
  // All three values are checked for overflow before the permission bits, as the kernel does.
  TRY(check_map_args(flags, {length, src_iova, *dst_iova}));
  std::vector<PagesChunk> chunks = TRY(src.iopt().get_chunks(src_iova, length));
  return map_copy(chunks, dst_iova, flags);
}

Status Ioas::copy(Context& ctx, std::uint32_t dst_id, std::uint32_t src_id, std::uint64_t src_iova,
                  std::uint64_t length, std::uint64_t* dst_iova, std::uint32_t flags) {
  TRY(check_map_args(flags, {length, src_iova, *dst_iova}));
  std::vector<PagesChunk> chunks;
  {
    // The chunks hold the pages; the source IOAS itself need not stay referenced while mapping.
    ObjectRef<Ioas> src = TRY(ctx.get<Ioas>(src_id, ObjectType::kIoas));
    chunks = TRY(src->iopt().get_chunks(src_iova, length));
  }
  ObjectRef<Ioas> dst = TRY(ctx.get<Ioas>(dst_id, ObjectType::kIoas));
  return dst->map_copy(chunks, dst_iova, flags);
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
