#include "uiommufd/objects/ioas.h"

#include <algorithm>
#include <array>
#include <memory>
#include <new>
#include <vector>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/try.h"
#include "uiommufd/mm/accounting.h"
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

void Ioas::publish(Context& ctx, std::uint32_t id) {
  lockdep::ReadGuard creation(ctx.ioas_creation_lock());
  ctx.finalize(id);
}

Result<std::uint32_t> Ioas::create(Context& ctx) {
  std::uint32_t id = TRY(reserve(ctx));
  publish(ctx, id);
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

// The lock set is dynamic (one IOVA lock per IOAS), which the static analysis cannot follow: the locks are
// held by the guards in `held` for the whole body, and file_pages_locked() checks its lock at run time.
Status Ioas::change_process(Context& ctx) NO_THREAD_SAFETY_ANALYSIS {
  const RefPtr<Mm> to = Mm::current();
  lockdep::WriteGuard creation(ctx.ioas_creation_lock());
  std::vector<ObjectRef<Object>> ioases = TRY(ctx.live_objects(ObjectType::kIoas));
  std::vector<std::unique_ptr<lockdep::WriteGuard>> held;
  std::vector<Pages*> pages;
  // Released newest first, before the IOAS users go.
  struct Unlocker {
    std::vector<std::unique_ptr<lockdep::WriteGuard>>& held;
    ~Unlocker() {
      while (!held.empty()) held.pop_back();
    }
  } unlocker{held};
  try {
    held.reserve(ioases.size());
    for (ObjectRef<Object>& obj : ioases) {
      held.push_back(std::make_unique<lockdep::WriteGuard>(
          static_cast<Ioas*>(obj.get())->iopt().iova_lock(),
          lockdep::AcquireOptions{.nest_lock = &ctx.ioas_creation_lock().dep_map()}));
    }
    for (ObjectRef<Object>& obj : ioases)
      TRY(static_cast<Ioas*>(obj.get())->iopt().file_pages_locked(&pages));
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  std::sort(pages.begin(), pages.end());
  pages.erase(std::unique(pages.begin(), pages.end()), pages.end());

  // With every IOVA lock held no pin or unpin can run (they all hold one of them), so what is counted here
  // is what is moved below. A Pages charged to the caller already stays put; any other moves in its mode
  // (the kernel's need_charge_update(), which for kUser also looks at the user: a different address space
  // means a different process's pinned_vm, so ours moves on either).
  constexpr std::size_t kModes = 3;
  std::array<std::uint64_t, kModes> moving{};
  for (Pages* p : pages) {
    lockdep::MutexGuard g(p->mutex());
    if (p->account_mm_locked() != to)
      moving[static_cast<std::size_t>(p->account_mode())] += p->npinned_locked();
  }
  for (std::size_t m = 0; m < kModes; ++m) {
    const Status st = account_charge(*to, static_cast<AccountMode>(m), moving[m]);
    if (st.ok()) continue;
    while (m-- > 0) account_uncharge(*to, static_cast<AccountMode>(m), moving[m]);
    return st;
  }
  for (Pages* p : pages) {
    lockdep::MutexGuard g(p->mutex());
    if (p->account_mm_locked() == to) continue;
    account_uncharge(*p->account_mm_locked(), p->account_mode(), p->npinned_locked());
    p->set_account_mm_locked(to);
  }
  return {};
}

}  // namespace uiommufd
