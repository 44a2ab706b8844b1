// Dirty tracking (docs/semantics.md#dirty): what a live-migration loop pays per collection, and what a
// device's write pays for being tracked.
//
//   dirty_bitmap_1g_4k    the collection IOMMU_HWPT_GET_DIRTY_BITMAP runs (read_dirty_bitmap(): the IOAS
//                         walk, the domain's read-and-clear, the user bitmap writer) over 1 GiB of 4 KiB
//                         entries, 1 in 8 dirty, 4 KiB granule;
//   dirty_bitmap_64g_2m   the same over 64 GiB of 2 MiB entries, 1 in 8 dirty, 4 KiB granule (2 MiB of
//                         bitmap, 512 bits per dirty entry);
// each against the limit any implementation must pay, measured in the same run on a dense array of one
// 8-byte entry per leaf with the same dirty pattern: read every entry once, clear each dirty one with one
// atomic operation, and set its bits in the bitmap. Both sides are re-dirtied (and their bitmaps zeroed)
// before every call, untimed, and the calls are paired, one against one.
//
//   dirty_write_overhead  a 4 KiB DMA write through a domain that tracks dirty pages against the same
//                         write through one that does not (PageTableDomain::dma()), paired.
//
// The IOVA space reuses its backing: one 256 MiB buffer is mapped at every 256 MiB of IOVA, so 64 GiB of
// IOVA fits this machine. A page's identity is its host address, so a 2 MiB-aligned buffer gives 2 MiB
// entries; the 4 KiB figure turns large entries off, as real 4 KiB pages are physically scattered.
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include "figures.h"

#include "uiommufd/base/assert.h"
#include "uiommufd/base/page.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/iopt/dirty_bitmap.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd::bench {
namespace {

constexpr std::uint64_t kChunk = std::uint64_t{256} << 20;
constexpr int kRW = kIommuRead | kIommuWrite;

// The shared backing: 256 MiB, 2 MiB aligned, resident.
class Backing {
 public:
  Backing() {
    size_ = kChunk + kHugePageSize;
    base_ =
        static_cast<char*>(mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    UIOMMUFD_ASSERT(base_ != MAP_FAILED);
    aligned_ = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(base_) + kHugePageSize - 1) &
                                       ~(kHugePageSize - 1));
    std::memset(aligned_, 1, kChunk);
  }
  ~Backing() { munmap(base_, size_); }
  std::uint64_t addr() const { return reinterpret_cast<std::uint64_t>(aligned_); }

 private:
  char* base_;
  char* aligned_;
  std::size_t size_;
};

Backing& backing() {
  static Backing b;
  return b;
}

// An IOAS with one dirty-tracking software domain, the backing mapped over [iova, iova + length).
class TrackedSpace {
 public:
  TrackedSpace(std::uint64_t iova, std::uint64_t length, bool large_pages) : iova_(iova), length_(length) {
    PageTableDomain::Options options;
    options.large_pages = large_pages;
    options.dirty_capable = true;
    auto domain = PageTableDomain::create(options);
    UIOMMUFD_ASSERT(domain.ok());
    domain_ = std::move(*domain);
    UIOMMUFD_ASSERT(iopt_.add_domain(domain_.get()).ok());
    auto pages = Pages::create_user(Mm::current(), backing().addr(), kChunk, true, AccountMode::kNone);
    UIOMMUFD_ASSERT(pages.ok());
    for (std::uint64_t at = iova; at < iova + length; at += kChunk) {
      std::uint64_t va = at;
      UIOMMUFD_ASSERT(iopt_.map_pages(*pages, &va, kRW, /*fixed_iova=*/true).ok());
    }
    UIOMMUFD_ASSERT(iopt_.set_dirty_tracking(domain_.get(), true).ok());
  }
  ~TrackedSpace() {
    std::uint64_t unmapped = 0;
    (void)iopt_.unmap_range(Interval::full(), &unmapped);
    iopt_.remove_domain(domain_.get());
  }
  IoPagetable& iopt() { return iopt_; }
  PageTableDomain& domain() { return *domain_; }
  std::uint64_t iova() const { return iova_; }
  std::uint64_t length() const { return length_; }

 private:
  IoPagetable iopt_;
  std::unique_ptr<PageTableDomain> domain_;
  std::uint64_t iova_, length_;
};

// Leaf indexes, about 1 in 8 of `leaves`, in a fixed pseudo-random pattern (a regular one would flatter
// both sides' branch prediction alike, and no migration loop sees one).
std::vector<std::uint64_t> dirty_pattern(std::uint64_t leaves) {
  std::mt19937_64 rng(0x5eed);
  std::vector<std::uint64_t> out;
  for (std::uint64_t i = 0; i < leaves; ++i)
    if ((rng() & 7) == 0) out.push_back(i);
  return out;
}

// Sets bits [first, first + count) of a bitmap of 64-bit words.
void set_bits(std::uint64_t* words, std::uint64_t first, std::uint64_t count) {
  for (std::uint64_t b = first; b < first + count;) {
    if ((b & 63) == 0 && first + count - b >= 64) {
      words[b >> 6] = ~std::uint64_t{0};
      b += 64;
    } else {
      words[b >> 6] |= std::uint64_t{1} << (b & 63);
      ++b;
    }
  }
}

std::uint64_t popcount(const std::vector<std::uint64_t>& words) {
  std::uint64_t n = 0;
  for (std::uint64_t w : words) n += static_cast<std::uint64_t>(__builtin_popcountll(w));
  return n;
}

// One collection figure: `length` of IOVA in leaves of `leaf_size`, a 4 KiB-granule bitmap.
void collect(benchmark::State& state, std::uint64_t iova, std::uint64_t length, std::uint64_t leaf_size) {
  TrackedSpace space(iova, length, /*large_pages=*/leaf_size > kPageSize);
  const std::uint64_t leaves = length / leaf_size;
  const std::uint64_t bits_per_leaf = leaf_size / kPageSize;
  const std::vector<std::uint64_t> dirty = dirty_pattern(leaves);
  std::vector<std::uint64_t> bitmap(length / kPageSize / 64), limit_bitmap(bitmap.size());

  DirtyBitmapRequest req;
  req.iova = iova;
  req.length = length;
  req.page_size = kPageSize;
  req.data = reinterpret_cast<std::uint64_t>(bitmap.data());

  // The limit's entries: the same count, nonzero like a mapped entry, the dirty bit where the domain's is.
  constexpr std::uint64_t kDirtyBit = std::uint64_t{1} << 7;
  std::vector<std::uint64_t> entries(leaves);
  for (std::uint64_t i = 0; i < leaves; ++i) entries[i] = (backing().addr() + i * leaf_size) | 0x3;

  bool failed = false;
  run_paired_prepared(
      state,
      [&] {
        std::memset(bitmap.data(), 0, bitmap.size() * sizeof(bitmap[0]));
        for (std::uint64_t leaf : dirty) failed |= !space.domain().set_dirty(iova + leaf * leaf_size).ok();
      },
      [&] { failed |= !read_dirty_bitmap(space.iopt(), &space.domain(), req).ok(); },
      [&] {
        std::memset(limit_bitmap.data(), 0, limit_bitmap.size() * sizeof(limit_bitmap[0]));
        for (std::uint64_t leaf : dirty) entries[leaf] |= kDirtyBit;
      },
      [&] {
        std::uint64_t* e = entries.data();
        std::uint64_t* words = limit_bitmap.data();
        benchmark::DoNotOptimize(e);
        for (std::uint64_t i = 0; i < leaves; ++i) {
          if (e[i] & kDirtyBit) {
            __atomic_fetch_and(&e[i], ~kDirtyBit, __ATOMIC_RELAXED);
            set_bits(words, i * bits_per_leaf, bits_per_leaf);
          }
        }
        benchmark::ClobberMemory();
      });
  // Both sides must have found the same bits, or the ratio compares different work.
  if (failed || popcount(bitmap) != dirty.size() * bits_per_leaf || bitmap != limit_bitmap)
    state.SkipWithError("the collection and the limit disagree");
  state.counters["dirty_leaves"] = static_cast<double>(dirty.size());
}

void BM_DirtyBitmap1G4K(benchmark::State& state) {
  collect(state, std::uint64_t{1} << 30, std::uint64_t{1} << 30, kPageSize);
}
BENCHMARK(BM_DirtyBitmap1G4K)->UseManualTime()->MinTime(0.5);

void BM_DirtyBitmap64G2M(benchmark::State& state) {
  collect(state, std::uint64_t{64} << 30, std::uint64_t{64} << 30, kHugePageSize);
}
BENCHMARK(BM_DirtyBitmap64G2M)->UseManualTime()->MinTime(0.5);

Status copy_in(void* ctx, PhysAddr paddr, std::uint64_t offset, std::uint64_t len) {
  std::memcpy(reinterpret_cast<void*>(paddr), static_cast<const char*>(ctx) + offset, len);
  return Status();
}

void BM_DirtyWriteOverhead(benchmark::State& state) {
  constexpr std::uint64_t kIova = std::uint64_t{1} << 30;
  constexpr std::uint64_t kPagesCycled = 64;  // spread over a few entries, as a device's writes are
  TrackedSpace tracked(kIova, kChunk, /*large_pages=*/false);
  TrackedSpace untracked(kIova, kChunk, /*large_pages=*/false);
  UIOMMUFD_ASSERT(untracked.iopt().set_dirty_tracking(&untracked.domain(), false).ok());
  alignas(64) static char source[kPageSize];
  std::memset(source, 0x5a, sizeof(source));
  std::uint64_t next_tracked = 0, next_untracked = 0;
  bool failed = false;
  run_paired(
      state,
      [&] {
        const std::uint64_t iova = kIova + (next_tracked++ % kPagesCycled) * kPageSize;
        failed |= !tracked.domain().dma(iova, kPageSize, /*write=*/true, copy_in, source).ok();
      },
      [&] {
        const std::uint64_t iova = kIova + (next_untracked++ % kPagesCycled) * kPageSize;
        failed |= !untracked.domain().dma(iova, kPageSize, /*write=*/true, copy_in, source).ok();
      });
  // The tracked side must really have recorded its writes.
  std::uint64_t dirty_bytes = 0;
  failed |= !for_each_dirty_run(tracked.iopt(), &tracked.domain(), kIova, kChunk, false,
                                [&](std::uint64_t, std::uint64_t len) { dirty_bytes += len; })
                 .ok();
  if (failed || dirty_bytes != kPagesCycled * kPageSize)
    state.SkipWithError("a DMA write failed or was lost");
}
BENCHMARK(BM_DirtyWriteOverhead)->UseManualTime();

const FigureTable kFigures{{
    {.name = "dirty_bitmap_1g_4k", .numerator = "BM_DirtyBitmap1G4K", .target = 2.0},
    {.name = "dirty_bitmap_64g_2m", .numerator = "BM_DirtyBitmap64G2M", .target = 2.0},
    {.name = "dirty_write_overhead", .numerator = "BM_DirtyWriteOverhead", .target = 1.10},
}};

}  // namespace
}  // namespace uiommufd::bench
