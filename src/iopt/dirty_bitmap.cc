// Dirty collection into a user bitmap and as runs (dirty_bitmap.h, docs/semantics.md#dirty).
#include "uiommufd/iopt/dirty_bitmap.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <vector>

#include "uiommufd/base/checked.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/try.h"
#include "uiommufd/domain/domain.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/mm/mm.h"

namespace uiommufd {
namespace {

// The ranges below are short (a 2 MiB entry at a 4 KiB granule is 8 words): plain stores, not a call to
// memset, whose start-up costs more than the stores and whose wide stores stall the loads that follow.
#define UIOMMUFD_NO_MEMSET __attribute__((optimize("no-tree-loop-distribute-patterns")))

// Sets bits [lo, hi] of a bitmap held in 64-bit words (bit b of byte k is bit 8k + b of the little-endian
// words, as a byte-wise bitmap is on this machine).
UIOMMUFD_NO_MEMSET void set_bit_range(std::uint64_t* words, std::uint64_t lo, std::uint64_t hi) {
  static_assert(std::endian::native == std::endian::little);
  const std::uint64_t first = lo >> 6, last = hi >> 6;
  const std::uint64_t head = ~std::uint64_t{0} << (lo & 63);
  const std::uint64_t tail = ~std::uint64_t{0} >> (63 - (hi & 63));
  if (first == last) {
    words[first] |= head & tail;
    return;
  }
  words[first] |= head;
  for (std::uint64_t w = first + 1; w < last; ++w) words[w] = ~std::uint64_t{0};
  words[last] |= tail;
}

UIOMMUFD_NO_MEMSET void zero_words(std::uint64_t* words, std::uint64_t count) {
  for (std::uint64_t i = 0; i < count; ++i) words[i] = 0;
}

// The caller's bitmap, written as the kernel's iova_bitmap does (iova_bitmap.c iova_bitmap_set()): bit b
// is IOVA iova + (b << shift); bits are only ever set; each report sets its bits page by page of the
// bitmap and stops at the first page that cannot be written (the kernel's pin of that page fails and the
// rest of the report is dropped); a report whose first byte lies at or past the bitmap's end is dropped,
// and one that runs past the end keeps going to the end of the pages the kernel would have pinned for it.
//
// Reports are gathered here a bitmap page at a time, in a zeroed local copy of the page that records which
// 64-byte lines they touched. When a report reaches a new page the page is probed for writing with a
// one-byte user copy (a page the kernel could not pin drops the report there, as it does); when a report
// moves to another page, or the collection ends, the touched lines go back to the caller: a run of lines
// whose bytes are all set is written as it is, any other run is read, ORed into and written back. Only
// bytes between the first and the last one a report changed are ever written, so memory beside the
// bitmap is not touched. A collection costs a few user copies per bitmap page, or per run of dirty bits
// when they are sparse, instead of two per report.
class UserBitmap {
 public:
  UserBitmap(std::uint64_t iova, std::uint64_t length, std::uint64_t page_size, std::uint64_t data)
      : iova_(iova),
        shift_(static_cast<unsigned>(__builtin_ctzll(page_size))),
        total_bytes_((((length - 1) >> shift_) >> 3) + 1),
        data_(data),
        mm_(Mm::current_ref()) {}

  void set(std::uint64_t va, std::uint64_t len) {
    if (len == 0) return;
    std::uint64_t bit = (va - iova_) >> shift_;
    const std::uint64_t last_bit = (va - iova_ + (len - 1)) >> shift_;
    const std::uint64_t base = bit >> 3;
    if (base >= total_bytes_) return;
    // The pages the kernel pins for this report: from the page of its first byte, enough for the rest of
    // the bitmap plus one when that byte is not page aligned, at most 512.
    std::uint64_t window_end = pin_window_end(base);
    while (bit <= last_bit) {
      const std::uint64_t addr = data_ + (bit >> 3);
      if (addr >= window_end) {
        // The kernel moves its window to this bit, if it is still inside the bitmap.
        if ((bit >> 3) >= total_bytes_) return;
        window_end = pin_window_end(bit >> 3);
      }
      const std::uint64_t page_end = page_align_down(addr) + kPageSize;
      const std::uint64_t hi = std::min(last_bit, (page_end - data_) * 8 - 1);
      if (!or_bits(bit, hi)) return;
      bit = hi + 1;
    }
  }

  // Hands the held page's bits to the caller. A page that stopped being writable since its probe (the
  // caller unmapped it meanwhile) loses them, as a page the kernel pinned would be lost to the caller.
  void flush() {
    while (lines_) {
      const unsigned first = static_cast<unsigned>(__builtin_ctzll(lines_));
      const std::uint64_t after = lines_ >> first;
      const unsigned count = ~after ? static_cast<unsigned>(__builtin_ctzll(~after)) : 64 - first;
      lines_ &= count == 64 ? 0 : ~(((std::uint64_t{1} << count) - 1) << first);
      const std::uint64_t lo = std::max<std::uint64_t>(first * kLine, dirty_lo_);
      const std::uint64_t hi = std::min<std::uint64_t>((first + count) * kLine, dirty_hi_);
      write_back(lo, hi - lo);
      zero_words(buf_ + first * (kLine / 8), count * (kLine / 8));
    }
    dirty_lo_ = kPageSize;
    dirty_hi_ = 0;
  }

 private:
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};
  static constexpr std::uint64_t kLine = 64;

  std::uint64_t pin_window_end(std::uint64_t byte) const {
    const std::uint64_t start = data_ + byte;
    const std::uint64_t pages = std::min<std::uint64_t>(
        (total_bytes_ - byte + kPageSize - 1) / kPageSize + (page_offset(start) != 0), 512);
    return page_align_down(start) + pages * kPageSize;
  }

  // Sets bits [lo, hi] (all in one page of the bitmap); false when that page cannot be written.
  bool or_bits(std::uint64_t lo, std::uint64_t hi) {
    const std::uint64_t page = page_align_down(data_ + (lo >> 3));
    if (page != page_ && !load(page, data_ + (lo >> 3))) return false;
    // Bit b lives at byte data_ + (b >> 3): (data_ - page_) * 8 + b bits into the page.
    const std::uint64_t bias = (data_ - page_) * 8;
    const std::uint64_t first = (lo + bias) >> 3, last = (hi + bias) >> 3;
    set_bit_range(buf_, lo + bias, hi + bias);
    dirty_lo_ = std::min(dirty_lo_, first);
    dirty_hi_ = std::max(dirty_hi_, last + 1);
    const std::uint64_t l0 = first / kLine, l1 = last / kLine;
    lines_ |= (l1 - l0 == 63 ? ~std::uint64_t{0} : ((std::uint64_t{1} << (l1 - l0 + 1)) - 1)) << l0;
    return true;
  }

  // Makes `page` the held one, after probing the byte at `probe` for writing.
  bool load(std::uint64_t page, std::uint64_t probe) {
    flush();
    page_ = kNone;
    if (page == bad_page_) return false;
    std::uint8_t byte = 0;
    if (!mm_.copy_from_user(&byte, probe, 1).ok() || !mm_.copy_to_user(probe, &byte, 1).ok()) {
      bad_page_ = page;
      return false;
    }
    page_ = page;
    return true;
  }

  // Ors buf_[at, at + len) into the caller's page.
  void write_back(std::uint64_t at, std::uint64_t len) {
    static constexpr auto kOnes = [] {
      std::array<std::uint8_t, kPageSize> ones{};
      ones.fill(0xff);
      return ones;
    }();
    const std::uint8_t* src = bytes() + at;
    if (std::memcmp(src, kOnes.data(), len) == 0) {
      (void)mm_.copy_to_user(page_ + at, src, len);
      return;
    }
    alignas(8) std::uint8_t merged[kPageSize];
    if (!mm_.copy_from_user(merged, page_ + at, len).ok()) return;
    for (std::uint64_t i = 0; i < len; ++i) merged[i] |= src[i];
    (void)mm_.copy_to_user(page_ + at, merged, len);
  }

  const std::uint64_t iova_;
  const unsigned shift_;
  const std::uint64_t total_bytes_;
  const std::uint64_t data_;
  const Mm& mm_;
  std::uint64_t page_ = kNone;                         // the user page whose bits buf_ gathers
  std::uint64_t bad_page_ = kNone;                     // the last page found unwritable
  std::uint64_t lines_ = 0;                            // the 64-byte lines of buf_ holding bits
  std::uint64_t dirty_lo_ = kPageSize, dirty_hi_ = 0;  // the bytes of the page that bits were set in
  std::uint8_t* bytes() { return reinterpret_cast<std::uint8_t*>(buf_); }

  alignas(64) std::uint64_t buf_[kPageSize / 8] = {};
};

// The kernel's iommufd_check_iova_range(): the range against the IOAS's alignment and page_size, which is
// used as a mask (it need not be a power of two; the bitmap counts in its lowest set bit).
Status check_dirty_range(std::uint64_t iova, std::uint64_t length, std::uint64_t page_size,
                         std::uint64_t align) {
  std::uint64_t last = 0;
  if (!checked_add(iova, length - 1, &last)) return Status::error(EOVERFLOW);
  if ((iova & (align - 1)) || ((last + 1) & (align - 1))) return Status::error(EINVAL);
  if (!page_size) return Status::error(EINVAL);
  if ((iova & (page_size - 1)) || ((last + 1) & (page_size - 1))) return Status::error(EINVAL);
  return {};
}

// Walks [iova, last] window by window, handing each window's reports to `consume` with no lock held.
// Errors of the walk itself end it quietly, as the kernel ignores them (iommu_read_and_clear_dirty()).
template <typename Consume>
void walk_dirty(IoPagetable& iopt, Domain* domain, std::uint64_t iova, std::uint64_t last, bool no_clear,
                Consume&& consume) {
  IoPagetable::DirtyWalk walk{iova, false};
  std::vector<IoPagetable::DirtyRange> ranges;
  while (!walk.done) {
    ranges.clear();
    if (!iopt.read_dirty_window(domain, last, no_clear, &ranges, &walk).ok()) break;
    for (const auto& r : ranges) consume(r.iova, r.length);
  }
}

}  // namespace

Status read_dirty_bitmap(IoPagetable& iopt, Domain* domain, const DirtyBitmapRequest& req) {
  TRY(check_dirty_range(req.iova, req.length, req.page_size, iopt.iova_alignment()));
  if (!domain->dirty_capable()) return Status::error(EOPNOTSUPP);
  UserBitmap bitmap(req.iova, req.length, req.page_size, req.data);
  walk_dirty(iopt, domain, req.iova, req.iova + (req.length - 1), req.no_clear,
             [&](std::uint64_t va, std::uint64_t len) { bitmap.set(va, len); });
  bitmap.flush();
  return Status();
}

Status for_each_dirty_run(IoPagetable& iopt, Domain* domain, std::uint64_t iova, std::uint64_t length,
                          bool no_clear, DirtyRunSink run, void* ctx) {
  std::uint64_t last = 0;
  const std::uint64_t align = iopt.iova_alignment();
  if (length == 0 || !checked_add(iova, length - 1, &last) || (iova & (align - 1)) ||
      ((last + 1) & (align - 1)))
    return Status::error(EINVAL);
  if (!domain->dirty_capable()) return Status::error(EOPNOTSUPP);
  // Reports come in IOVA order; one that begins right after the open run extends it.
  bool open = false;
  std::uint64_t run_start = 0, run_last = 0;
  walk_dirty(iopt, domain, iova, last, no_clear, [&](std::uint64_t va, std::uint64_t len) {
    // A report runs from the request's start or its entry's, for the whole entry's size (the kernel's
    // record_dirty()); the entry itself is aligned to its size.
    const std::uint64_t lo = std::max(va, iova);
    const std::uint64_t hi = std::min((va & ~(len - 1)) + (len - 1), last);
    if (lo > hi) return;
    if (open && lo == run_last + 1) {
      run_last = hi;
      return;
    }
    if (open) run(ctx, run_start, run_last - run_start + 1);
    open = true;
    run_start = lo;
    run_last = hi;
  });
  if (open) run(ctx, run_start, run_last - run_start + 1);
  return Status();
}

}  // namespace uiommufd
