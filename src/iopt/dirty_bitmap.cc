// Dirty collection into a user bitmap and as runs (dirty_bitmap.h, docs/semantics.md#dirty).
#include "uiommufd/iopt/dirty_bitmap.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/try.h"
#include "uiommufd/domain/domain.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/mm/mm.h"

namespace uiommufd {

// The kernel's iova_bitmap_alloc(): its state for the walk, allocated after the range checks and before
// anything is read.
UIOMMUFD_FAULT_SITE(g_fault_dirty_bitmap, "iopt.dirty_bitmap", ENOMEM);

namespace {

// The caller's bitmap, written as the kernel's iova_bitmap does (iova_bitmap.c iova_bitmap_set()): bit b
// is IOVA iova + (b << shift); bits are only ever set; each report sets its bits page by page of the
// bitmap and stops at the first page that cannot be written (the kernel's pin of that page fails and the
// rest of the report is dropped); a report whose first byte lies at or past the bitmap's end is dropped,
// and one that runs past the end keeps going to the end of the pages the kernel would have pinned for it.
//
// Two ways to set a piece of a report, one page of the bitmap at a time:
//   - in place (the usual one): the page is probed once with a one-byte read and write-back through the
//     user copies (the kernel's pin, with its fault sites), then bits are set with ordinary stores, wide
//     ones for whole bytes, all of a window's reports inside one Mm::store_in_place() call. A collection
//     costs what the stores cost: the bitmap lines they miss, many in flight at once, as any writer of the
//     bitmap pays (a copy per piece instead would leave one line in flight at a time).
//   - by copies, a read-modify-write of the piece's bytes, where stores in place cannot be used (a
//     sanitized build, a thread blocking SIGSEGV) or faulted (the caller unmapped a probed page).
// Either way only the bytes holding bits of a report are written: memory beside the bitmap is not touched.
class UserBitmap {
 public:
  UserBitmap(std::uint64_t iova, std::uint64_t length, std::uint64_t page_size, std::uint64_t data)
      : iova_(iova),
        shift_(static_cast<unsigned>(__builtin_ctzll(page_size))),
        total_bytes_((((length - 1) >> shift_) >> 3) + 1),
        data_(data),
        mm_(Mm::current_ref()) {}

  void set_all(const std::vector<IoPagetable::DirtyRange>& ranges) {
    std::size_t i = 0;
    if (in_place_) {
      InPlace run{this, ranges.data(), ranges.size(), 0};
      const Status st = mm_.store_in_place(data_, reach(), store_run, &run);
      if (st.ok()) return;
      // EFAULT: the report being stored when the fault hit goes again by copies (setting a bit twice is
      // harmless), and so does the rest of this window.
      if (st.error() == EOPNOTSUPP) in_place_ = false;
      i = run.next;
    }
    for (; i < ranges.size(); ++i)
      set(ranges[i].iova, ranges[i].length, [this](std::uint64_t lo, std::uint64_t hi) { return copy_bits(lo, hi); });
  }

 private:
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};

  struct InPlace {
    UserBitmap* self;
    const IoPagetable::DirtyRange* ranges;
    std::size_t count;
    volatile std::size_t next;  // read after a fault abandons store_run()
  };

  static void store_run(void* ctx) {
    auto* run = static_cast<InPlace*>(ctx);
    UserBitmap* self = run->self;
    for (std::size_t i = run->next; i < run->count; ++i) {
      run->next = i;
      self->set(run->ranges[i].iova, run->ranges[i].length,
                [self](std::uint64_t lo, std::uint64_t hi) { return self->store_bits(lo, hi); });
    }
    run->next = run->count;
  }

  // The bytes set() can reach from data_: the bitmap, and the pin window of a report starting in its last
  // byte (up to the end of the page after the one holding that byte).
  std::uint64_t reach() const { return total_bytes_ + 2 * kPageSize; }

  // Sets the bits of one report through `piece(lo, hi)`, which sets bits [lo, hi] of one bitmap page and
  // returns false when that page cannot be written.
  template <typename Piece>
  void set(std::uint64_t va, std::uint64_t len, Piece&& piece) {
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
      if (!piece(bit, hi)) return;
      bit = hi + 1;
    }
  }

  std::uint64_t pin_window_end(std::uint64_t byte) const {
    const std::uint64_t start = data_ + byte;
    const std::uint64_t pages = std::min<std::uint64_t>(
        (total_bytes_ - byte + kPageSize - 1) / kPageSize + (page_offset(start) != 0), 512);
    return page_align_down(start) + pages * kPageSize;
  }

  // In place: probe the page once, then store. Runs inside Mm::store_in_place().
  bool store_bits(std::uint64_t lo, std::uint64_t hi) {
    const std::uint64_t at = data_ + (lo >> 3);
    const std::uint64_t page = page_align_down(at);
    if (page != probed_) {
      if (page == bad_page_) return false;
      std::uint8_t byte = 0;
      if (!mm_.copy_from_user(&byte, at, 1).ok() || !mm_.copy_to_user(at, &byte, 1).ok()) {
        bad_page_ = page;
        return false;
      }
      probed_ = page;
    }
    set_bits_in_place(reinterpret_cast<std::uint8_t*>(data_), lo, hi);
    return true;
  }

  // By copies: the bytes holding bits [lo, hi], read, changed and written back.
  bool copy_bits(std::uint64_t lo, std::uint64_t hi) {
    const std::uint64_t first = lo >> 3, last = hi >> 3;
    if (page_align_down(data_ + first) == bad_page_) return false;
    std::uint8_t buf[kPageSize];
    const std::size_t n = last - first + 1;
    if (!mm_.copy_from_user(buf, data_ + first, n).ok()) {
      bad_page_ = page_align_down(data_ + first);
      return false;
    }
    set_bits_in_place(buf - first, lo, hi);
    if (!mm_.copy_to_user(data_ + first, buf, n).ok()) {
      bad_page_ = page_align_down(data_ + first);
      return false;
    }
    return true;
  }

  // Sets bits [lo, hi] of the byte-wise bitmap at `bytes`, writing no byte outside bytes lo / 8 .. hi / 8:
  // the partial bytes at the ends by read-modify-write, whole bytes between them with 8-byte stores.
  static void set_bits_in_place(std::uint8_t* bytes, std::uint64_t lo, std::uint64_t hi) {
    const std::uint64_t first = lo >> 3, last = hi >> 3;
    const auto head = static_cast<std::uint8_t>(0xffu << (lo & 7));
    const auto tail = static_cast<std::uint8_t>(0xffu >> (7 - (hi & 7)));
    if (first == last) {
      bytes[first] |= head & tail;
      return;
    }
    bytes[first] |= head;
    std::uint64_t b = first + 1;
    constexpr std::uint64_t kOnes = ~std::uint64_t{0};
    for (; b + 8 <= last; b += 8) std::memcpy(bytes + b, &kOnes, 8);
    for (; b < last; ++b) bytes[b] = 0xff;
    bytes[last] |= tail;
  }

  const std::uint64_t iova_;
  const unsigned shift_;
  const std::uint64_t total_bytes_;
  const std::uint64_t data_;
  const Mm& mm_;
  bool in_place_ = true;
  std::uint64_t probed_ = kNone;    // the page stores in place last probed
  std::uint64_t bad_page_ = kNone;  // the last page found unwritable
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
// The report buffer is sized in the first window for every later one, so a failed allocation (a
// std::bad_alloc for the entry point's boundary to turn into ENOMEM, docs/allocation.md) comes before
// anything is read, as the kernel allocates its bitmap state before its walk. Errors of the walk itself end
// it quietly, as the kernel ignores them (iommu_read_and_clear_dirty()).
template <typename Consume>
void walk_dirty(IoPagetable& iopt, Domain* domain, std::uint64_t iova, std::uint64_t last, bool no_clear,
                Consume&& consume) {
  IoPagetable::DirtyWalk walk{iova, false};
  std::vector<IoPagetable::DirtyRange> ranges;
  while (!walk.done) {
    ranges.clear();
    if (!iopt.read_dirty_window(domain, last, no_clear, &ranges, &walk).ok()) break;
    consume(ranges);
  }
}

}  // namespace

Status read_dirty_bitmap(IoPagetable& iopt, Domain* domain, const DirtyBitmapRequest& req) {
  TRY(check_dirty_range(req.iova, req.length, req.page_size, iopt.iova_alignment()));
  if (!domain->dirty_capable()) return Status::error(EOPNOTSUPP);
  TRY(inject(g_fault_dirty_bitmap));
  UserBitmap bitmap(req.iova, req.length, req.page_size, req.data);
  walk_dirty(iopt, domain, req.iova, req.iova + (req.length - 1), req.no_clear,
             [&](const std::vector<IoPagetable::DirtyRange>& ranges) { bitmap.set_all(ranges); });
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
  walk_dirty(iopt, domain, iova, last, no_clear, [&](const std::vector<IoPagetable::DirtyRange>& ranges) {
    for (const auto& [va, len] : ranges) {
      // A report runs from the request's start or its entry's, for the whole entry's size (the kernel's
      // record_dirty()); the entry itself is aligned to its size.
      const std::uint64_t lo = std::max(va, iova);
      const std::uint64_t hi = std::min((va & ~(len - 1)) + (len - 1), last);
      if (lo > hi) continue;
      if (open && lo == run_last + 1) {
        run_last = hi;
        continue;
      }
      if (open) run(ctx, run_start, run_last - run_start + 1);
      open = true;
      run_start = lo;
      run_last = hi;
    }
  });
  if (open) run(ctx, run_start, run_last - run_start + 1);
  return Status();
}

}  // namespace uiommufd
