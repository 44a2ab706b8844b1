// PinnedRanges: the pin bookkeeping of an access driver in the manner of the kernel selftest's mock access
// (selftest.c): every successful pin_pages() is recorded as {iova, length, id}, and the driver's unmap
// callback unpins, in full, every record that intersects the range being unmapped. Emulated devices, the
// IOMMU_TEST_CMD access fds, tests and benchmarks share this one implementation.
//
// Locking: one driver mutex, held across pin_pages() (rule R3 of docs/semantics.md#driver-rules: an unmap
// that starts right after the pin returns must wait for the record to exist before it can unpin it) and
// across the unmap callback's unpins. Access::destroy / detach / replace call the unmap callback themselves,
// so the mutex must not be held across them (R1/R2); the lock validator reports it if it is.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "uiommufd/base/result.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/objects/access.h"

namespace uiommufd {

class PinnedRanges {
 public:
  struct Range {
    std::uint64_t iova;
    std::uint64_t length;  // bytes, > 0
    std::uint32_t id;
  };
  // Run under the driver mutex on the pages a pin returned, before the record is kept; an error unpins
  // them again and is returned (the selftest's page compare).
  using Check = std::function<Status(const std::vector<AccessPage>& pages)>;

  // The driver mutex is of the class "pinned_ranges.mutex", or of `key` (a driver's own lock class).
  PinnedRanges() = default;
  explicit PinnedRanges(lockdep::LockClassKey& key) : mu_(key) {}
  PinnedRanges(const PinnedRanges&) = delete;
  PinnedRanges& operator=(const PinnedRanges&) = delete;

  // Pins [iova, iova + length − 1] through `access` (Access::pin_pages' flags and errors), runs `check`
  // and records the pin. Returns the record's id (ids count up from 0 per PinnedRanges). `pages` may be
  // null. ENOMEM when the record cannot be made room for (checked before pinning). On any error nothing
  // stays pinned or recorded.
  Result<std::uint32_t> pin(Access& access, std::uint64_t iova, std::uint64_t length,
                            std::vector<AccessPage>* pages, std::uint32_t flags, const Check& check = {})
      EXCLUDES(mu_);
  // Unpins the record `id` exactly as it was pinned. ENOENT if there is no such record (never pinned, or
  // already dropped by an unmap).
  Status unpin(Access& access, std::uint32_t id) EXCLUDES(mu_);

  // The unmap callback: unpins and drops every record intersecting [iova, iova + length − 1]. Returns the
  // bytes unpinned (the sum of the dropped records' lengths). length 0 does nothing.
  std::uint64_t unmap(Access& access, std::uint64_t iova, std::uint64_t length) EXCLUDES(mu_);
  // The same for a driver that keeps more state under this mutex (its callback takes mutex() itself).
  std::uint64_t unmap_locked(Access& access, std::uint64_t iova, std::uint64_t length) REQUIRES(mu_);

  std::size_t size() EXCLUDES(mu_);
  std::vector<Range> ranges() EXCLUDES(mu_);
  lockdep::Mutex& mutex() RETURN_CAPABILITY(mu_) { return mu_; }

 private:
  lockdep::Mutex mu_{lock_order::kPinnedRangesMutex};
  std::vector<Range> ranges_ GUARDED_BY(mu_);
  std::uint32_t next_id_ GUARDED_BY(mu_) = 0;
};

}  // namespace uiommufd
