// Ioas: an I/O address space object (IOMMU_IOAS_ALLOC): an IoPagetable plus the paging HWPTs bound to it.
// The map / copy / unmap entry points check their arguments in the kernel's order and return its errnos.
//
// Library option, not part of the kernel's uAPI (no ioctl sets it): set_lock_pinned(true) makes the areas
// that map() and map_file() create afterwards mlock their memory while it is pinned (Pages' lock_pinned),
// so that the host kernel cannot reclaim what a domain or access holds.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "uiommufd/base/result.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/objects/object.h"

namespace uiommufd {

class HwptPaging;

class Ioas : public Object {
 public:
  // The IOMMU_IOAS_MAP_* / IOMMU_IOAS_COPY flag bits.
  static constexpr std::uint32_t kFixedIova = 1 << 0;
  static constexpr std::uint32_t kWriteable = 1 << 1;
  static constexpr std::uint32_t kReadable = 1 << 2;

  // IOMMU_IOAS_ALLOC: a new, empty IOAS; returns its id. ENOMEM.
  static Result<std::uint32_t> create(Context& ctx);
  // The first half of create(): the id is reserved but invisible to lookups until the caller runs
  // ctx.finalize(id), or released again by ctx.abort(id) (the ioctl does this when its reply cannot be
  // written, so that no object exists whose id the caller never learnt). ENOMEM.
  static Result<std::uint32_t> reserve(Context& ctx);
  // The second half: publishes the reserved IOAS, under the context's IOAS-creation lock (shared), so that
  // change_process() never misses one.
  static void publish(Context& ctx, std::uint32_t id);

  // IOMMU_IOAS_CHANGE_PROCESS (the kernel's iommufd_ioas_change_process()): every area of every IOAS of
  // `ctx` is charged to, and remembered as coming from, the calling process (Mm::current()) from now on.
  // Holds every IOAS's IOVA lock for writing at once (in id order, nested under the IOAS-creation lock).
  // EBUSY when an area is half built (being mapped or unmapped), EINVAL when any area is not file-backed
  // (IOMMU_IOAS_MAP_FILE; user memory and dma-bufs cannot follow a process); then the pinned pages of
  // every Pages whose charge must move (a kMm Pages of another address space, a kUser one of another
  // address space or user) are charged to the caller in each mode at once — ENOMEM (limit, or fault site
  // "pages.account") undoes the modes already charged — and only then uncharged from where they were.
  // Pins stay as they are. On error nothing changed. Ok with no IOAS or no area.
  static Status change_process(Context& ctx);

  // The argument checks MAP, MAP_FILE and COPY make before looking any object up, in the kernel's order:
  // EOPNOTSUPP for unknown flag bits, EOVERFLOW when any of `values` (IOVAs, lengths) is ≥ U64_MAX,
  // EINVAL when neither kReadable nor kWriteable is set.
  static Status check_map_args(std::uint32_t flags, std::initializer_list<std::uint64_t> values);

  // IOMMU_IOAS_COPY by ids, in the kernel's order: check_map_args(flags, {length, src_iova, *dst_iova}),
  // then the source IOAS (ENOENT) and its range (get_chunks' errors), then the destination IOAS (ENOENT),
  // then the mapping. The source is released before the destination is looked up, as in the kernel.
  static Status copy(Context& ctx, std::uint32_t dst_id, std::uint32_t src_id, std::uint64_t src_iova,
                     std::uint64_t length, std::uint64_t* dst_iova, std::uint32_t flags);

  IoPagetable& iopt() { return iopt_; }

  // Whether map() and map_file() create Pages that mlock what they pin (default false). The setting is read
  // once per map, so it applies to later maps only; areas already mapped keep theirs. copy_from() / copy()
  // share the source's Pages and so keep the source's setting whatever the destination's is. Any thread.
  void set_lock_pinned(bool on) { lock_pinned_.store(on, std::memory_order_relaxed); }
  bool lock_pinned() const { return lock_pinned_.load(std::memory_order_relaxed); }

  // IOMMU_IOAS_MAP of [uptr, uptr + length) at *iova (kFixedIova) or at an allocated IOVA written to
  // *iova. EOPNOTSUPP unknown flags; EOVERFLOW iova or length ≥ U64_MAX, or uptr + length wraps; EINVAL
  // neither readable nor writeable, length 0; then IoPagetable::map_chunks' errors.
  Status map(std::uint64_t uptr, std::uint64_t length, std::uint64_t* iova, std::uint32_t flags);
  // IOMMU_IOAS_MAP_FILE: the same for [start, start + length) of the file `fd` (a memfd, shmem or hugetlbfs
  // file). EBADF for a bad fd.
  Status map_file(int fd, std::uint64_t start, std::uint64_t length, std::uint64_t* iova,
                  std::uint32_t flags);
  // IOMMU_IOAS_MAP_FILE of a dma-buf (docs/semantics.md#dma-buf): [start, start + length) of the exporter's
  // buffer `buf`, mapped into every domain of the IOAS until the area is unmapped or the exporter revokes
  // the buffer (DmaBuf::invalidate_mappings()), whichever comes first; nothing is pinned or charged.
  // check_map_args' errors; EINVAL length 0; EOVERFLOW start + length − 1 wraps; then
  // Pages::create_dmabuf's (EINVAL the range does not end inside the buffer, ENOMEM, ENODEV revoked) and
  // IoPagetable::map_chunks' (ENOMEM also from fault site "iopt.alloc_track"). The area refuses access
  // pins and rw (EINVAL) and VFIO cuts (EOPNOTSUPP); unmap and copy work as for any area, revoked or not.
  Status map_dmabuf(RefPtr<DmaBuf> buf, std::uint64_t start, std::uint64_t length, std::uint64_t* iova,
                    std::uint32_t flags);
  // IOMMU_IOAS_COPY from `src` (may be this IOAS): the destination areas share the source's pages, so
  // nothing is pinned or charged twice. check_map_args' errors (on length, src_iova and *dst_iova), then
  // ENOENT when the source range is not covered by fully built contiguous areas (EINVAL for length 0),
  // then map_chunks' errors.
  Status copy_from(Ioas& src, std::uint64_t src_iova, std::uint64_t length, std::uint64_t* dst_iova,
                   std::uint32_t flags);
  // IOMMU_IOAS_UNMAP: (0, U64_MAX) unmaps everything and succeeds even when empty; otherwise EOVERFLOW
  // (iova or length ≥ U64_MAX, or wrap), EINVAL (length 0), ENOENT (nothing inside the range, or an
  // area only partly inside), EBUSY (an area being mapped, or locked by a hardware queue's pin),
  // EDEADLOCK (accesses kept their pins, see
  // IoPagetable::unmap_range). *unmapped: bytes removed.
  Status unmap(std::uint64_t iova, std::uint64_t length, std::uint64_t* unmapped);

  lockdep::Mutex& mutex() RETURN_CAPABILITY(mu_) { return mu_; }
  // The paging HWPTs bound to this IOAS.
  std::vector<HwptPaging*>& hwpts_locked() REQUIRES(mu_) {
    mu_.assert_held();
    return hwpts_;
  }

 protected:
  void destroy() override;

 private:
  explicit Ioas(Context& ctx) : Object(ctx, ObjectType::kIoas) {}
  // Maps the chunks of a source range (COPY's second half).
  Status map_copy(const std::vector<PagesChunk>& chunks, std::uint64_t* dst_iova, std::uint32_t flags);

  IoPagetable iopt_;
  std::atomic<bool> lock_pinned_{false};
  lockdep::Mutex mu_{lock_order::kIoasMutex};
  std::vector<HwptPaging*> hwpts_ GUARDED_BY(mu_);
};

}  // namespace uiommufd
