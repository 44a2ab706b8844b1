// iommufd's own commands (docs/semantics.md#destroy and the IOAS sections, #ioas). Each handler checks its
// arguments in the order of the kernel's handler (drivers/iommu/iommufd/ioas.c, main.c, vfio_compat.c), so
// that a struct with several faults gets the kernel's errno.

#include <cerrno>
#include <cstddef>
#include <iterator>
#include <map>
#include <vector>

#include "handlers.h"
#include "test_dmabuf.h"

#include "uiommufd/base/interval.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::uapi {

namespace {

Result<ObjectRef<Ioas>> get_ioas(Ucmd& ucmd, std::uint32_t id) {
  return ucmd.ctx.get<Ioas>(id, ObjectType::kIoas);
}

// Reads ALLOW_IOVAS' array one entry at a time and validates each against the earlier ones, as the
// kernel's load loop does, so that a bad entry before an unreadable one is EINVAL, not EFAULT.
Result<std::vector<Interval>> load_iovas(std::uint64_t uptr, std::uint32_t count) {
  std::vector<Interval> ranges;
  std::map<std::uint64_t, std::uint64_t> seen;  // start → last, for the overlap check
  for (std::uint32_t i = 0; i != count; ++i) {
    iommu_iova_range r;
    TRY(Mm::current()->copy_from_user(&r, uptr + std::uint64_t{i} * sizeof(r), sizeof(r)));
    if (r.start >= r.last) return Status::error(EINVAL);
    auto next = seen.upper_bound(r.start);
    if (next != seen.end() && next->first <= r.last) return Status::error(EINVAL);
    if (next != seen.begin() && std::prev(next)->second >= r.start) return Status::error(EINVAL);
    seen.emplace(r.start, r.last);
    ranges.push_back(Interval{r.start, r.last});
  }
  return ranges;
}

// MAP and MAP_FILE after their own field checks: the shared argument checks, the IOAS, the mapping, and
// the IOVA written back. As in the kernel, a failed reply leaves the mapping in place and returns EFAULT.
template <typename Cmd, typename MapFn>
long map_and_reply(Ucmd& ucmd, Cmd& cmd, MapFn&& map_fn) {
  Status args = Ioas::check_map_args(cmd.flags, {cmd.iova, cmd.length});
  if (!args.ok()) return to_ret(args);
  Result<ObjectRef<Ioas>> ioas = get_ioas(ucmd, cmd.ioas_id);
  if (!ioas.ok()) return -ioas.error();
  std::uint64_t iova = cmd.iova;
  Status s = map_fn(**ioas, &iova);
  if (!s.ok()) return to_ret(s);
  cmd.iova = iova;
  return to_ret(copy_out(ucmd, cmd));
}

long option_rlimit_mode(Ucmd& ucmd, iommu_option& cmd) {
  if (cmd.object_id) return -EOPNOTSUPP;
  if (cmd.op == IOMMU_OPTION_OP_GET) {
    cmd.val64 = ucmd.ctx.mm_account_mode() ? 1 : 0;
    return 0;
  }
  if (cmd.op != IOMMU_OPTION_OP_SET) return -EOPNOTSUPP;
  if (cmd.val64 > 1) {
    // The kernel checks the capability and the empty table before the value. Setting the mode it already
    // has runs exactly those checks and changes nothing.
    Status s = ucmd.ctx.set_mm_account_mode(ucmd.ctx.mm_account_mode());
    return s.ok() ? -EINVAL : to_ret(s);
  }
  return to_ret(ucmd.ctx.set_mm_account_mode(cmd.val64 == 1));
}

long option_huge_pages(Ucmd& ucmd, iommu_option& cmd) {
  Result<ObjectRef<Ioas>> ioas = get_ioas(ucmd, cmd.object_id);
  if (!ioas.ok()) return -ioas.error();
  IoPagetable& iopt = (*ioas)->iopt();
  if (cmd.op == IOMMU_OPTION_OP_GET) {
    cmd.val64 = iopt.large_pages() ? 1 : 0;
    return 0;
  }
  if (cmd.op != IOMMU_OPTION_OP_SET) return -EOPNOTSUPP;
  if (cmd.val64 > 1) return -EINVAL;
  return to_ret(iopt.set_large_pages(cmd.val64 == 1));
}

}  // namespace

long destroy(Ucmd& ucmd) { return to_ret(ucmd.ctx.destroy(ucmd.arg<iommu_destroy>().id)); }

long ioas_alloc(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_ioas_alloc>();
  if (cmd.flags) return -EOPNOTSUPP;
  Result<std::uint32_t> id = Ioas::reserve(ucmd.ctx);
  if (!id.ok()) return -id.error();
  cmd.out_ioas_id = *id;
  // The object is published only once the caller can know its id; otherwise its id is released again.
  Status reply = copy_out(ucmd, cmd);
  if (!reply.ok()) {
    ucmd.ctx.abort(*id);
    return to_ret(reply);
  }
  Ioas::publish(ucmd.ctx, *id);
  return 0;
}

long ioas_allow_iovas(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_ioas_allow_iovas>();
  if (cmd.__reserved) return -EOPNOTSUPP;
  Result<ObjectRef<Ioas>> ioas = get_ioas(ucmd, cmd.ioas_id);
  if (!ioas.ok()) return -ioas.error();
  Result<std::vector<Interval>> ranges = load_iovas(cmd.allowed_iovas, cmd.num_iovas);
  if (!ranges.ok()) return -ranges.error();
  return to_ret((*ioas)->iopt().set_allowed(*ranges));
}

long ioas_copy(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_ioas_copy>();
  std::uint64_t iova = cmd.dst_iova;
  Status s =
      Ioas::copy(ucmd.ctx, cmd.dst_ioas_id, cmd.src_ioas_id, cmd.src_iova, cmd.length, &iova, cmd.flags);
  if (!s.ok()) return to_ret(s);
  // As in the kernel, a failed reply leaves the copy in place and returns EFAULT.
  cmd.dst_iova = iova;
  return to_ret(copy_out(ucmd, cmd));
}

long ioas_iova_ranges(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_ioas_iova_ranges>();
  if (cmd.__reserved) return -EOPNOTSUPP;
  Result<ObjectRef<Ioas>> ioas = get_ioas(ucmd, cmd.ioas_id);
  if (!ioas.ok()) return -ioas.error();
  IoPagetable& iopt = (*ioas)->iopt();
  const std::uint32_t capacity = cmd.num_iovas;
  // The kernel reads the holes and the alignment under one hold of iova_rwsem; two snapshots can differ
  // only if a domain or reservation changes concurrently, which the caller cannot order against anyway.
  const std::uint64_t alignment = iopt.iova_alignment();
  const std::vector<Interval> holes = iopt.iova_ranges();
  for (std::size_t i = 0; i < holes.size() && i < capacity; ++i) {
    const iommu_iova_range r{holes[i].start, holes[i].last};
    Status s = Mm::current()->copy_to_user(cmd.allowed_iovas + i * sizeof(r), &r, sizeof(r));
    if (!s.ok()) return to_ret(s);
  }
  cmd.num_iovas = static_cast<std::uint32_t>(holes.size());
  cmd.out_iova_alignment = alignment;
  // The header goes back even when the array was too small: that is how the caller learns the count.
  Status reply = copy_out(ucmd, cmd);
  if (!reply.ok()) return to_ret(reply);
  return holes.size() > capacity ? -EMSGSIZE : 0;
}

long ioas_map(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_ioas_map>();
  if (cmd.__reserved) return -EOPNOTSUPP;
  return map_and_reply(ucmd, cmd, [&](Ioas& ioas, std::uint64_t* iova) {
    return ioas.map(cmd.user_va, cmd.length, iova, cmd.flags);
  });
}

long ioas_map_file(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_ioas_map_file>();
  return map_and_reply(ucmd, cmd, [&](Ioas& ioas, std::uint64_t* iova) {
    // A dma-buf first, any other file otherwise (iopt_map_file_pages(): dma_buf_get(), then fget()).
    Result<RefPtr<MockDmaBuf>> buf = lookup_dmabuf(ucmd.file.host(), cmd.fd);
    if (buf.ok()) return ioas.map_dmabuf(std::move(*buf), cmd.start, cmd.length, iova, cmd.flags);
    // The caller's fd as one of ours (the server's fetch of a client's file); one not open reaches
    // Pages::create_file as -1, which fails it with EBADF after the argument checks, where the kernel does.
    const Result<int> file = ucmd.file.host().user_file(static_cast<int>(cmd.fd));
    return ioas.map_file(file.ok() ? *file : -1, cmd.start, cmd.length, iova, cmd.flags);
  });
}

long ioas_change_process(Ucmd& ucmd) {
  if (ucmd.arg<iommu_ioas_change_process>().__reserved) return -EOPNOTSUPP;
  return to_ret(Ioas::change_process(ucmd.ctx));
}

long ioas_unmap(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_ioas_unmap>();
  Result<ObjectRef<Ioas>> ioas = get_ioas(ucmd, cmd.ioas_id);
  if (!ioas.ok()) return -ioas.error();
  std::uint64_t unmapped = 0;
  Status s = (*ioas)->unmap(cmd.iova, cmd.length, &unmapped);
  // On error nothing is written back, although areas below the failing one may already be gone.
  if (!s.ok()) return to_ret(s);
  cmd.length = unmapped;
  return to_ret(copy_out(ucmd, cmd));
}

long option(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_option>();
  if (cmd.__reserved) return -EOPNOTSUPP;
  long rc;
  switch (cmd.option_id) {
    case IOMMU_OPTION_RLIMIT_MODE:
      rc = option_rlimit_mode(ucmd, cmd);
      break;
    case IOMMU_OPTION_HUGE_PAGES:
      rc = option_huge_pages(ucmd, cmd);
      break;
    default:
      return -EOPNOTSUPP;
  }
  if (rc) return rc;
  return to_ret(copy_field_out(ucmd, offsetof(iommu_option, val64), cmd.val64));
}

long vfio_ioas(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_vfio_ioas>();
  if (cmd.__reserved) return -EOPNOTSUPP;
  switch (cmd.op) {
    case IOMMU_VFIO_IOAS_GET: {
      Result<std::uint32_t> id = ucmd.ctx.vfio_ioas_id();
      if (!id.ok()) return -id.error();
      cmd.ioas_id = *id;
      return to_ret(copy_out(ucmd, cmd));
    }
    case IOMMU_VFIO_IOAS_SET: {
      // The reference is held across the store, so the IOAS cannot be destroyed in between.
      Result<ObjectRef<Ioas>> ioas = get_ioas(ucmd, cmd.ioas_id);
      if (!ioas.ok()) return -ioas.error();
      ucmd.ctx.set_vfio_ioas_id(cmd.ioas_id);
      return 0;
    }
    case IOMMU_VFIO_IOAS_CLEAR:
      ucmd.ctx.clear_vfio_ioas_id();
      return 0;
    default:
      return -EOPNOTSUPP;
  }
}

}  // namespace uiommufd::uapi
