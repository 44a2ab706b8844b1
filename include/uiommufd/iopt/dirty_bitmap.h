// Collecting a domain's dirty bits over an IOVA range (docs/semantics.md#dirty): into a caller's bitmap,
// as IOMMU_HWPT_GET_DIRTY_BITMAP does (the kernel's iopt_read_and_clear_dirty_data() writing through
// iova_bitmap.c), or as runs of dirty bytes for C++ callers that want no bitmap at all.
//
// Both walk the areas that follow one another from `iova` (a hole, or an area without pages, ends the
// walk as it ends the kernel's) in windows of 128 Ki entries of the domain's granule, with the IOVA lock held for reading only while a
// window's entries are read and cleared; the bitmap's user memory is touched between windows, never
// with an engine lock held.
#pragma once

#include <cstdint>
#include <type_traits>

#include "uiommufd/base/status.h"

namespace uiommufd {

class Domain;
class IoPagetable;

struct DirtyBitmapRequest {
  std::uint64_t iova = 0;
  std::uint64_t length = 0;
  // The bitmap's granule: bit b of the bitmap stands for [iova + b * page_size, + page_size). The kernel
  // checks the range against it as a mask, so it is the lowest set bit that counts (check_dirty_range()).
  std::uint64_t page_size = 0;
  std::uint64_t data = 0;  // the bitmap's user address: any alignment, any number of pages
  bool no_clear = false;   // IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR: report without clearing
};

// Errors, in the kernel's order: EOVERFLOW (iova + length - 1 wraps); EINVAL (iova or iova + length not
// aligned to the IOAS's IOVA alignment or to page_size, or page_size 0); EOPNOTSUPP (the domain cannot
// track dirty pages). The kernel's check adds length - 1 to iova, so length 0 is EOVERFLOW unless iova is 0.
// Past those checks the call succeeds whatever it meets, as the kernel's does: bits are only ever set
// (what the caller left in the bitmap stays), a bitmap page that cannot be written loses the bits of the
// report that reached it, and a report of an entry larger than the granule sets a bit for every granule of
// the entry from the first one the request covers (even past the end of the request, up to the end of
// the bitmap pages the kernel would have pinned). Its one allocation, the report buffer, is made before
// anything is read: std::bad_alloc there (ENOMEM at the ioctl boundary) leaves every dirty bit in place.
Status read_dirty_bitmap(IoPagetable& iopt, Domain* domain, const DirtyBitmapRequest& req);

// Calls run(ctx, iova, length) for each maximal run of dirty bytes within [iova, iova + length), in IOVA
// order, clearing them unless no_clear; no bitmap, and runs are clipped to the request (unlike the bitmap's
// whole-entry reports). EINVAL: the range is empty, wraps, or is not aligned to the IOAS's IOVA alignment;
// EOPNOTSUPP as above. `run` is called with no engine lock held.
using DirtyRunSink = void (*)(void* ctx, std::uint64_t iova, std::uint64_t length);
Status for_each_dirty_run(IoPagetable& iopt, Domain* domain, std::uint64_t iova, std::uint64_t length,
                          bool no_clear, DirtyRunSink run, void* ctx);

// The same with a callable.
template <typename Fn>
Status for_each_dirty_run(IoPagetable& iopt, Domain* domain, std::uint64_t iova, std::uint64_t length,
                          bool no_clear, Fn&& fn) {
  return for_each_dirty_run(
      iopt, domain, iova, length, no_clear,
      [](void* ctx, std::uint64_t run_iova, std::uint64_t run_length) {
        (*static_cast<std::remove_reference_t<Fn>*>(ctx))(run_iova, run_length);
      },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace uiommufd
