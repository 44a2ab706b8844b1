#include "uiommufd/objects/pinned_ranges.h"

#include <cerrno>

#include "uiommufd/base/reserve.h"
#include "uiommufd/base/try.h"

namespace uiommufd {

Result<std::uint32_t> PinnedRanges::pin(Access& access, std::uint64_t iova, std::uint64_t length,
                                        std::vector<AccessPage>* pages, std::uint32_t flags,
                                        const Check& check) {
  std::vector<AccessPage> local;
  std::vector<AccessPage>* out = pages ? pages : &local;
  lockdep::MutexGuard g(mu_);
  TRY(reserve_more(ranges_));  // the record below cannot fail once the pin is taken
  TRY(access.pin_pages(iova, length, out, flags));
  if (check) {
    if (Status st = check(*out); !st.ok()) {
      access.unpin_pages(iova, length);
      return st;
    }
  }
  const std::uint32_t id = next_id_++;
  ranges_.push_back({iova, length, id});
  return id;
}

Status PinnedRanges::unpin(Access& access, std::uint32_t id) {
  lockdep::MutexGuard g(mu_);
  for (auto it = ranges_.begin(); it != ranges_.end(); ++it) {
    if (it->id != id) continue;
    access.unpin_pages(it->iova, it->length);
    ranges_.erase(it);
    return {};
  }
  return Status::error(ENOENT);
}

std::uint64_t PinnedRanges::unmap(Access& access, std::uint64_t iova, std::uint64_t length) {
  lockdep::MutexGuard g(mu_);
  return unmap_locked(access, iova, length);
}

std::uint64_t PinnedRanges::unmap_locked(Access& access, std::uint64_t iova, std::uint64_t length) {
  mu_.assert_held();
  if (length == 0) return 0;
  const std::uint64_t last = iova + length - 1;
  std::uint64_t unpinned = 0;
  for (auto it = ranges_.begin(); it != ranges_.end();) {
    if (it->iova > last || it->iova + it->length - 1 < iova) {
      ++it;
      continue;
    }
    // In full, as pinned: unpin must mirror the pin exactly (docs/semantics.md#access-unpin).
    access.unpin_pages(it->iova, it->length);
    unpinned += it->length;
    it = ranges_.erase(it);
  }
  return unpinned;
}

std::size_t PinnedRanges::size() {
  lockdep::MutexGuard g(mu_);
  return ranges_.size();
}

std::vector<PinnedRanges::Range> PinnedRanges::ranges() {
  lockdep::MutexGuard g(mu_);
  return ranges_;
}

}  // namespace uiommufd
