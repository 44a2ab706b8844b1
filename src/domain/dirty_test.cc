// Dirty tracking and DMA through a PageTableDomain: the dirty bit of each leaf entry, reading and
// clearing it, marking it by DMA writes and by set_dirty(), checked against a plain model; DMA's
// permission and hole checks; and a concurrent writer/collector run in which no write may be lost.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/domain/page_table_domain.h"

namespace uiommufd {
namespace {

constexpr std::uint64_t k4K = std::uint64_t{1} << 12;
constexpr std::uint64_t k2M = std::uint64_t{1} << 21;
constexpr std::uint64_t k1G = std::uint64_t{1} << 30;
constexpr int kRW = kIommuRead | kIommuWrite;
// PhysAddr bases: one only 4 KiB aligned (4 KiB entries), one 2 MiB aligned (2 MiB entries where the IOVA
// allows). Nothing is copied through them in these tests.
constexpr PhysAddr kPa4K = 0x7f0000001000;
constexpr PhysAddr kPa2M = 0x7f0000000000;

std::unique_ptr<PageTableDomain> make(bool dirty_capable = true) {
  PageTableDomain::Options options;
  options.dirty_capable = dirty_capable;
  Result<std::unique_ptr<PageTableDomain>> d = PageTableDomain::create(options);
  EXPECT_TRUE(d.ok());
  return std::move(d).value();
}

using Ranges = std::vector<std::pair<std::uint64_t, std::uint64_t>>;

Ranges collect(PageTableDomain& d, std::uint64_t iova, std::uint64_t length, bool no_clear = false) {
  Ranges out;
  Status st = d.read_and_clear_dirty(
      iova, length, no_clear,
      [](void* ctx, std::uint64_t va, std::uint64_t len) {
        static_cast<Ranges*>(ctx)->emplace_back(va, len);
      },
      &out);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return out;
}

// A DMA segment that moves nothing and counts the bytes it was given.
Status count_segment(void* ctx, PhysAddr, std::uint64_t, std::uint64_t len) {
  *static_cast<std::uint64_t*>(ctx) += len;
  return Status();
}

Status dma_write(PageTableDomain& d, std::uint64_t iova, std::uint64_t length,
                 std::uint64_t* moved = nullptr) {
  std::uint64_t local = 0;
  return d.dma(iova, length, /*write=*/true, count_segment, moved ? moved : &local);
}

TEST(DirtyTest, ADomainThatCannotTrackRefusesEveryDirtyOperation) {
  auto d = make(/*dirty_capable=*/false);
  ASSERT_TRUE(d->map(0, kPa4K, k4K, kRW).ok());
  EXPECT_FALSE(d->dirty_capable());
  EXPECT_EQ(d->set_dirty_tracking(true).error(), EOPNOTSUPP);
  EXPECT_EQ(d->set_dirty(0).error(), EOPNOTSUPP);
  EXPECT_EQ(d->read_and_clear_dirty(
                 0, k4K, false, [](void*, std::uint64_t, std::uint64_t) {}, nullptr)
                .error(),
            EOPNOTSUPP);
  // DMA still works; it just records nothing.
  EXPECT_TRUE(dma_write(*d, 0, k4K).ok());
}

TEST(DirtyTest, SetDirtyMarksTheEntryAndReadingClearsIt) {
  auto d = make();
  ASSERT_TRUE(d->map(0x10000, kPa4K, 4 * k4K, kRW).ok());
  EXPECT_EQ(d->set_dirty(0x8000).error(), ENOENT);  // unmapped
  ASSERT_TRUE(d->set_dirty(0x11000 + 5).ok());      // any byte of the entry
  ASSERT_TRUE(d->set_dirty(0x13000).ok());
  EXPECT_EQ(collect(*d, 0x10000, 4 * k4K, /*no_clear=*/true), (Ranges{{0x11000, k4K}, {0x13000, k4K}}));
  EXPECT_EQ(collect(*d, 0x10000, 4 * k4K), (Ranges{{0x11000, k4K}, {0x13000, k4K}}));
  EXPECT_EQ(collect(*d, 0x10000, 4 * k4K), Ranges{});
}

TEST(DirtyTest, ALargeEntryIsDirtyAsAWholeAndAPartialRequestReportsFromItsStart) {
  auto d = make();
  ASSERT_TRUE(d->map(k2M, kPa2M, 2 * k2M, kRW).ok());
  ASSERT_EQ(d->large_entries(), 2u);
  ASSERT_TRUE(d->set_dirty(k2M + 3 * k4K).ok());
  EXPECT_EQ(collect(*d, k2M, 2 * k2M, true), (Ranges{{k2M, k2M}}));
  // A request beginning inside the entry: reported from the request's start, with the entry's size, as the
  // kernel's record_dirty() does; the caller's bitmap clips it.
  EXPECT_EQ(collect(*d, k2M + 8 * k4K, k4K), (Ranges{{k2M + 8 * k4K, k2M}}));
  EXPECT_EQ(collect(*d, k2M, 2 * k2M), Ranges{});
}

TEST(DirtyTest, DmaWritesMarkOnlyWhileTracking) {
  auto d = make();
  ASSERT_TRUE(d->map(0, kPa4K, 8 * k4K, kRW).ok());
  ASSERT_TRUE(dma_write(*d, k4K, 16).ok());
  EXPECT_EQ(collect(*d, 0, 8 * k4K), Ranges{});
  ASSERT_TRUE(d->set_dirty_tracking(true).ok());
  EXPECT_TRUE(d->dirty_tracking());
  std::uint64_t moved = 0;
  // Three entries touched: the tail of page 2, page 3, the head of page 4.
  ASSERT_TRUE(dma_write(*d, 3 * k4K - 8, k4K + 16, &moved).ok());
  EXPECT_EQ(moved, k4K + 16);
  EXPECT_EQ(collect(*d, 0, 8 * k4K), (Ranges{{2 * k4K, k4K}, {3 * k4K, k4K}, {4 * k4K, k4K}}));
  // A read never marks.
  std::uint64_t read = 0;
  ASSERT_TRUE(d->dma(0, 8 * k4K, /*write=*/false, count_segment, &read).ok());
  EXPECT_EQ(read, 8 * k4K);
  EXPECT_EQ(collect(*d, 0, 8 * k4K), Ranges{});
  ASSERT_TRUE(d->set_dirty_tracking(false).ok());
  ASSERT_TRUE(dma_write(*d, 0, k4K).ok());
  EXPECT_EQ(collect(*d, 0, 8 * k4K), Ranges{});
}

TEST(DirtyTest, DmaChecksTheWholeRangeBeforeMovingAByte) {
  auto d = make();
  ASSERT_TRUE(d->set_dirty_tracking(true).ok());
  ASSERT_TRUE(d->map(0, kPa4K, 2 * k4K, kRW).ok());
  ASSERT_TRUE(d->map(3 * k4K, kPa4K + 3 * k4K, k4K, kRW).ok());
  ASSERT_TRUE(d->map(4 * k4K, kPa4K + 4 * k4K, k4K, kIommuRead).ok());
  ASSERT_TRUE(d->map(5 * k4K, kPa4K + 5 * k4K, k4K, kIommuWrite).ok());
  std::uint64_t moved = 0;
  EXPECT_EQ(dma_write(*d, 0, 4 * k4K, &moved).error(), EFAULT);       // page 2 is a hole
  EXPECT_EQ(dma_write(*d, 3 * k4K, 2 * k4K, &moved).error(), EPERM);  // page 4 is read-only
  EXPECT_EQ(d->dma(4 * k4K, 2 * k4K, /*write=*/false, count_segment, &moved).error(),
            EPERM);  // 5: write-only
  EXPECT_EQ(moved, 0u);
  EXPECT_EQ(collect(*d, 0, 6 * k4K), Ranges{});                         // a refused write marks nothing
  EXPECT_EQ(dma_write(*d, ~std::uint64_t{0} - 8, 16).error(), EFAULT);  // wraps
  EXPECT_TRUE(dma_write(*d, 0, 0).ok());
  // A segment's error ends the transfer and is returned.
  EXPECT_EQ(d->dma(
                 0, 2 * k4K, true,
                 [](void*, PhysAddr, std::uint64_t, std::uint64_t) { return Status::error(EFAULT); }, nullptr)
                .error(),
            EFAULT);
}

TEST(DirtyTest, CollectionCrossesGigabytePiecesAndHoles) {
  auto d = make();
  // Entries just below and just above the 1 GiB boundary, and a hole between.
  ASSERT_TRUE(d->map(k1G - k4K, kPa4K, k4K, kRW).ok());
  ASSERT_TRUE(d->map(k1G + k2M, kPa2M, k2M, kRW).ok());
  ASSERT_TRUE(d->set_dirty(k1G - k4K).ok());
  ASSERT_TRUE(d->set_dirty(k1G + k2M).ok());
  EXPECT_EQ(collect(*d, 0, 2 * k1G), (Ranges{{k1G - k4K, k4K}, {k1G + k2M, k2M}}));
  EXPECT_EQ(d->read_and_clear_dirty(
                 ~std::uint64_t{0} - k4K, 2 * k4K, false, [](void*, std::uint64_t, std::uint64_t) {}, nullptr)
                .error(),
            EINVAL);
}

TEST(DirtyTest, UnmapForgetsTheDirtyState) {
  auto d = make();
  ASSERT_TRUE(d->map(0, kPa4K, k4K, kRW).ok());
  ASSERT_TRUE(d->set_dirty(0).ok());
  ASSERT_EQ(d->unmap(0, k4K), k4K);
  ASSERT_TRUE(d->map(0, kPa4K, k4K, kRW).ok());
  EXPECT_EQ(collect(*d, 0, k4K), Ranges{});
  // The dirty bit is not part of the translation.
  ASSERT_TRUE(d->set_dirty(0).ok());
  EXPECT_EQ(d->iova_to_phys(0), kPa4K);
  EXPECT_EQ(d->read_run(0, k4K).paddr, kPa4K);
}

TEST(DirtyTest, TheMockDomainTracksWhenAllocatedToAndReportsItsEntries) {
  MockDomain::Options options;
  options.dirty_capable = true;
  auto created = MockDomain::create(options);
  ASSERT_TRUE(created.ok());
  MockDomain& d = **created;
  const std::uint64_t base = MockDomain::kAperture.start;
  ASSERT_TRUE(d.map(base, kPa4K, 2 * k4K, kRW).ok());
  ASSERT_TRUE(d.set_dirty(base + k4K).ok());
  // The mock's table has 2 KiB entries: one dirty entry is half a page.
  EXPECT_EQ(collect(d, base, 2 * k4K), (Ranges{{base + k4K, k4K / 2}}));
  auto plain = MockDomain::create();
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE((*plain)->dirty_capable());
}

std::unique_ptr<MockDomain> make_mock(MockDomain::Options options = {}) {
  options.dirty_capable = true;
  auto created = MockDomain::create(options);
  EXPECT_TRUE(created.ok());
  return std::move(created).value();
}

constexpr std::uint64_t k2K = MockDomain::kIoPageSize;
constexpr std::uint64_t kG = MockDomain::kAperture.start;

// 8 KiB at kG (8 KiB aligned, as is kPa2M) in blocks of `phys_block`, its last 2 KiB item marked dirty.
std::unique_ptr<MockDomain> eight_kib_dirty_at_the_end(std::uint64_t phys_block) {
  auto d = make_mock();
  EXPECT_TRUE(d->map(kG, kPa2M, 4 * k2K, kRW, phys_block).ok());
  EXPECT_TRUE(d->set_dirty(kG + 3 * k2K).ok());
  return d;
}

// A contiguous entry of the mock's default table (generic_pt's record_dirty()): dirty when any item is,
// reported from the item the walk reaches first up to, not including, its last item, or to the end of
// the request if that comes first; cleaned whole.
TEST(DirtyTest, AContiguousEntryOfTheMockReportsAsTheKernelsRecordDirty) {
  auto d = eight_kib_dirty_at_the_end(k2M);  // one entry of four items
  EXPECT_EQ(collect(*d, kG, 4 * k2K, true), (Ranges{{kG, 3 * k2K}}));
  EXPECT_EQ(collect(*d, kG, 2 * k2K, true), (Ranges{{kG, 2 * k2K}}));
  EXPECT_EQ(collect(*d, kG + k2K, 3 * k2K, true), (Ranges{{kG + k2K, 2 * k2K}}));
  EXPECT_EQ(collect(*d, kG + 2 * k2K, 2 * k2K, true), (Ranges{{kG + 2 * k2K, k2K}}));
  // From the last item the kernel would report nothing and never return; here that item.
  EXPECT_EQ(collect(*d, kG + 3 * k2K, k2K, true), (Ranges{{kG + 3 * k2K, k2K}}));
  // Reading the first item clears all four.
  EXPECT_EQ(collect(*d, kG, k2K), (Ranges{{kG, k2K}}));
  EXPECT_EQ(collect(*d, kG, 4 * k2K), Ranges{});
  // A DMA write into any item makes the whole entry dirty.
  ASSERT_TRUE(d->set_dirty_tracking(true).ok());
  ASSERT_TRUE(dma_write(*d, kG + 2 * k2K, 16).ok());
  EXPECT_EQ(collect(*d, kG, 4 * k2K), (Ranges{{kG, 3 * k2K}}));
}

TEST(DirtyTest, TheSameRangeOverSinglePagesIsEntriesOfTwoItems) {
  auto d = eight_kib_dirty_at_the_end(k4K);
  EXPECT_EQ(collect(*d, kG, 4 * k2K), (Ranges{{kG + 2 * k2K, k2K}}));
}

// A 2 MiB block at a 2 MiB aligned IOVA: one entry of two 1 MiB items, which reports its first MiB, from
// the request's own start (the bits run past a request that ends inside the item).
TEST(DirtyTest, TwoMiBOfTheMockInOneBlockIsOneEntryOfTwoOneMiBItems) {
  auto d = make_mock();
  constexpr std::uint64_t k1M = k2M / 2;
  const std::uint64_t x = 2 * MockDomain::kAperture.start;
  ASSERT_TRUE(d->map(x, kPa2M, k2M, kRW, k2M).ok());
  EXPECT_EQ(d->large_entries(), 2u);
  ASSERT_TRUE(d->set_dirty(x + k1M + k4K).ok());
  EXPECT_EQ(collect(*d, x, k2M, true), (Ranges{{x, k1M}}));
  EXPECT_EQ(collect(*d, x + 3 * k4K, k4K, true), (Ranges{{x + 3 * k4K, k1M}}));
  EXPECT_EQ(collect(*d, x, k1M, true), (Ranges{{x, k1M}}));
  EXPECT_EQ(collect(*d, x, k4K), (Ranges{{x, k1M}}));
  EXPECT_EQ(collect(*d, x, k2M), Ranges{});
  // The HUGE table has no 2 MiB entry: two single items, each reported whole.
  auto h = make_mock({.huge_pagetable = true});
  ASSERT_TRUE(h->map(x, kPa2M, k2M, kRW, k2M).ok());
  ASSERT_TRUE(h->set_dirty(x + k1M + k4K).ok());
  ASSERT_TRUE(h->set_dirty(x).ok());
  EXPECT_EQ(collect(*h, x, k2M), (Ranges{{x, k1M}, {x + k1M, k1M}}));
}

// The model: which granules are dirty. Random maps (4 KiB and 2 MiB entries), marks by set_dirty() and by
// tracked DMA writes, and collections with and without clearing, compared after every step.
TEST(DirtyTest, RandomOperationsMatchAModel) {
  std::mt19937_64 rng(20261207);
  for (int round = 0; round < 20; ++round) {
    auto d = make();
    ASSERT_TRUE(d->set_dirty_tracking(true).ok());
    constexpr std::uint64_t kSpan = 16 * k2M;
    // Entry start -> size for every mapped entry.
    std::map<std::uint64_t, std::uint64_t> entries;
    std::set<std::uint64_t> dirty;  // entry starts
    for (std::uint64_t slot = 0; slot < kSpan; slot += k2M) {
      switch (rng() % 3) {
        case 0:
          break;  // a hole
        case 1:
          ASSERT_TRUE(d->map(slot, kPa2M + slot, k2M, kRW).ok());
          entries[slot] = k2M;
          break;
        default:
          ASSERT_TRUE(
              d->map(slot, kPa4K + slot, k2M, kRW).ok());  // 4 KiB entries: kPa4K is not 2 MiB aligned
          for (std::uint64_t o = 0; o < k2M; o += k4K) entries[slot + o] = k4K;
      }
    }
    auto entry_of = [&](std::uint64_t iova) -> const std::pair<const std::uint64_t, std::uint64_t>* {
      auto it = entries.upper_bound(iova);
      if (it == entries.begin()) return nullptr;
      --it;
      return iova < it->first + it->second ? &*it : nullptr;
    };
    for (int step = 0; step < 200; ++step) {
      const std::uint64_t iova = (rng() % (kSpan / k4K)) * k4K;
      switch (rng() % 3) {
        case 0: {
          const auto* e = entry_of(iova);
          EXPECT_EQ(d->set_dirty(iova).ok(), e != nullptr);
          if (e) dirty.insert(e->first);
          break;
        }
        case 1: {
          const std::uint64_t len = (rng() % 4 + 1) * k4K;
          bool whole = true;
          for (std::uint64_t o = 0; o < len; o += k4K)
            whole = whole && entry_of(iova + o) && iova + o < kSpan;
          EXPECT_EQ(dma_write(*d, iova, len).ok(), whole);
          if (whole)
            for (std::uint64_t o = 0; o < len; o += k4K) dirty.insert(entry_of(iova + o)->first);
          break;
        }
        default: {
          const std::uint64_t len = std::min<std::uint64_t>((rng() % 64 + 1) * k4K, kSpan - iova);
          const bool no_clear = rng() % 2;
          Ranges want;
          for (auto it = dirty.begin(); it != dirty.end();) {
            const std::uint64_t start = *it, size = entries[start];
            if (start + size > iova && start < iova + len) {
              want.emplace_back(std::max(start, iova), size);
              if (!no_clear) {
                it = dirty.erase(it);
                continue;
              }
            }
            ++it;
          }
          EXPECT_EQ(collect(*d, iova, len, no_clear), want) << "round " << round << " step " << step;
        }
      }
    }
  }
}

// Writers write pages through the domain while a collector reads and clears. Each writer notes how many
// collections had started just before and just after its write: [k0, k]. Collections run one at a time, so
// those numbered below k0 - 1 ended before the write began, and collection k begins after it ended: the
// write must be reported by a collection numbered k0 - 1 to k. A lost write (a bit cleared without being
// reported, or never set) breaks that.
TEST(DirtyTest, ConcurrentWritesAreNeverLostByCollections) {
  auto d = make();
  constexpr std::uint64_t kPages = 512;
  ASSERT_TRUE(d->map(0, kPa4K, kPages * k4K, kRW).ok());
  ASSERT_TRUE(d->set_dirty_tracking(true).ok());
  constexpr int kWriters = 3;
  constexpr int kWritesEach = 20000;
  // Writers go on until the collector has started this many collections, so that collections and writes
  // interleave however the threads are scheduled.
  constexpr std::uint32_t kMinCollections = 8;
  struct Write {
    std::uint32_t page;
    std::uint32_t k0, k;
  };
  std::atomic<std::uint32_t> started{0};
  std::atomic<int> writers_left{kWriters};
  std::vector<std::vector<Write>> logs(kWriters);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937_64 rng(w + 1);
      logs[w].reserve(kWritesEach);
      for (int i = 0; i < kWritesEach || started.load() < kMinCollections; ++i) {
        const auto page = static_cast<std::uint32_t>(rng() % kPages);
        const std::uint32_t k0 = started.load(std::memory_order_seq_cst);
        const bool ok = dma_write(*d, std::uint64_t{page} * k4K, 8).ok();
        const std::uint32_t k = started.load(std::memory_order_seq_cst);
        if (!ok) ADD_FAILURE() << "dma_write failed";
        logs[w].push_back({page, k0, k});
      }
      writers_left.fetch_sub(1);
    });
  }
  // reports[c][p]: collection c reported page p.
  std::vector<std::vector<bool>> reports;
  for (bool last = false; !last;) {
    last = writers_left.load() == 0;  // one more collection after every writer has finished
    started.fetch_add(1, std::memory_order_seq_cst);
    std::vector<bool> pages(kPages, false);
    for (const auto& [va, len] : collect(*d, 0, kPages * k4K))
      for (std::uint64_t p = va / k4K; p < (va + len) / k4K; ++p) pages[p] = true;
    reports.push_back(std::move(pages));
  }
  for (auto& t : writers) t.join();
  std::uint64_t checked = 0;
  for (const auto& log : logs) {
    for (const Write& w : log) {
      const std::uint32_t first = w.k0 == 0 ? 0 : w.k0 - 1;
      bool found = false;
      for (std::uint32_t c = first; c <= w.k && c < reports.size() && !found; ++c) found = reports[c][w.page];
      ASSERT_TRUE(found) << "a write to page " << w.page << " between collections " << w.k0 << " and " << w.k
                         << " was never reported";
      ++checked;
    }
  }
  EXPECT_GE(checked, std::uint64_t{kWriters} * kWritesEach);
  EXPECT_GE(reports.size(), kMinCollections);
}

}  // namespace
}  // namespace uiommufd
