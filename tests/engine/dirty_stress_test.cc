// Concurrency stress of dirty tracking through the dispatcher (docs/semantics.md#dirty): for a bounded time,
//   - writers mark pages dirty, two with IOMMU_TEST_OP_DIRTY and one with DMA writes through the domain
//     (Device::dma_write), over two adjacent areas of a tracking mock HWPT;
//   - a collector reads and clears the dirty bitmap of both areas (IOMMU_HWPT_GET_DIRTY_BITMAP) into a
//     fresh bitmap per collection, at a different byte offset each time;
//   - a peeker reads the same range with NO_CLEAR;
//   - a mapper maps and unmaps a third area right after the two, which nothing writes.
//
// No write may be lost. Collection k starts by publishing epoch k. A writer reads the epoch e before a write
// and f after it; the write then lies after collection e began (so no earlier collection can have seen it)
// and before collection f + 1 began (which therefore finds the bit unless a collection in between took it).
// So every write must be reported by some collection c with e <= c <= f + 1; a last collection after the
// writers stopped closes the range. Conversely every report needs a write to explain it: a write whose bit
// was set after collection c - 1 read the page (f >= c - 1) and before collection c did (e <= c). The third
// area is never written, so its bits are never set, and the peeker's reads never fail.
//
// At the end the iommufd is closed: nothing stays pinned or charged and the lock validator reported nothing.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "stress_baseline.h"
#include "testing/test_fd_host.h"

#include "uiommufd/base/page.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {
namespace {

using testing::make_test_cmd;

constexpr std::uint64_t kIova = MOCK_APERTURE_START;
constexpr std::uint64_t kPages = 256;                  // the two written areas, 128 pages each
constexpr std::uint64_t kChurnPages = 16;              // the third area, mapped and unmapped
constexpr std::uint64_t kBits = kPages + kChurnPages;  // what a collection reads
constexpr std::uint64_t kWords = (kBits + 63) / 64;
constexpr auto kRunTime = std::chrono::milliseconds(2000);
constexpr std::uint32_t kMapFlags =
    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

std::uint64_t uptr(const void* p) { return reinterpret_cast<std::uint64_t>(p); }

// A write as the writer saw it: the page and the epochs read before and after.
struct Write {
  std::uint16_t page;
  std::uint32_t e, f;
};
using Bitmap = std::array<std::uint64_t, kWords>;

TEST(DirtyStressTest, WritersCollectorPeekerAndMapperLoseNoWriteUnderTheLockValidator) {
  const StressBaseline baseline;
  const std::uint64_t len = (kPages + kChurnPages) * kPageSize;
  auto* buf = static_cast<std::uint8_t*>(
      mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(buf, MAP_FAILED);

  testing::TestFdHost host;
  const int fd = host.open_iommufd();
  ASSERT_GE(fd, 0);
  auto call = [&](unsigned long cmd, const void* arg) { return host.ioctl(fd, cmd, arg) == 0 ? 0 : errno; };
  auto map = [&](std::uint32_t ioas, std::uint64_t iova, const void* va, std::uint64_t n) {
    iommu_ioas_map m{sizeof(m), kMapFlags, ioas, 0, uptr(va), n, iova};
    return call(IOMMU_IOAS_MAP, &m);
  };

  // The IOAS, its two written areas, a mock device on a DIRTY_TRACKING HWPT, tracking on.
  iommu_ioas_alloc a{sizeof(a), 0, 0};
  ASSERT_EQ(call(IOMMU_IOAS_ALLOC, &a), 0);
  const std::uint32_t ioas = a.out_ioas_id;
  ASSERT_EQ(map(ioas, kIova, buf, kPages / 2 * kPageSize), 0);
  ASSERT_EQ(map(ioas, kIova + kPages / 2 * kPageSize, buf + kPages / 2 * kPageSize, kPages / 2 * kPageSize),
            0);
  iommu_test_cmd md = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, ioas);
  ASSERT_EQ(call(IOMMU_TEST_CMD, &md), 0);
  iommu_hwpt_alloc ha{};
  ha.size = sizeof(ha);
  ha.flags = kHwptAllocDirtyTracking;
  ha.dev_id = md.mock_domain_flags.out_idev_id;
  ha.pt_id = ioas;
  ASSERT_EQ(call(IOMMU_HWPT_ALLOC, &ha), 0);
  const std::uint32_t hwpt = ha.out_hwpt_id;
  iommu_test_cmd rp = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, md.mock_domain_flags.out_stdev_id);
  rp.mock_domain_replace.pt_id = hwpt;
  ASSERT_EQ(call(IOMMU_TEST_CMD, &rp), 0);
  iommu_hwpt_set_dirty_tracking on{sizeof(on), IOMMU_HWPT_DIRTY_TRACKING_ENABLE, hwpt, 0};
  ASSERT_EQ(call(IOMMU_HWPT_SET_DIRTY_TRACKING, &on), 0);
  Context& ctx = static_cast<IommufdFile&>(*host.lookup(fd)).context();
  Result<ObjectRef<Device>> dev_ref = ctx.get<Device>(md.mock_domain_flags.out_idev_id, ObjectType::kDevice);
  ASSERT_TRUE(dev_ref.ok());
  ObjectRef<Device> dev = std::move(*dev_ref);

  std::atomic<std::uint32_t> epoch{0};
  std::atomic<bool> stop{false};
  std::atomic<long> failures{0};
  auto fail = [&](const std::string& what) {
    if (failures.fetch_add(1) < 20) ADD_FAILURE() << what;
  };

  // ---- writers ----
  std::vector<std::vector<Write>> writes(3);
  auto op_writer = [&](int id) {
    std::mt19937_64 rng(100 + id);
    std::vector<Write>& log = writes[id];
    while (!stop.load(std::memory_order_relaxed)) {
      Bitmap bits{};
      std::uint16_t pages[8];
      const int n = 1 + static_cast<int>(rng() % 8);
      for (int i = 0; i < n; ++i) {
        pages[i] = static_cast<std::uint16_t>(rng() % kPages);
        bits[pages[i] / 64] |= std::uint64_t{1} << (pages[i] % 64);
      }
      iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DIRTY, hwpt);
      c.dirty = {0, kIova, kPages * kPageSize, kPageSize, uptr(bits.data()), 0};
      const std::uint32_t e = epoch.load();
      const int err = call(IOMMU_TEST_CMD, &c);
      const std::uint32_t f = epoch.load();
      if (err != 0) {
        fail("TEST_OP_DIRTY: " + std::string(std::strerror(err)));
        continue;
      }
      for (int i = 0; i < n; ++i) log.push_back({pages[i], e, f});
    }
  };
  auto dma_writer = [&](int id) {
    std::mt19937_64 rng(100 + id);
    std::vector<Write>& log = writes[id];
    std::uint8_t src[64];
    std::memset(src, 0xd1, sizeof(src));
    while (!stop.load(std::memory_order_relaxed)) {
      // Up to 64 bytes anywhere in the two areas: one page, or two when it crosses a boundary.
      const std::uint64_t off = rng() % (kPages * kPageSize - sizeof(src));
      const std::uint64_t n = 1 + rng() % sizeof(src);
      const std::uint32_t e = epoch.load();
      const Status st = dev->dma_write(kIova + off, src, n);
      const std::uint32_t f = epoch.load();
      if (!st.ok()) {
        fail("dma_write: " + st.to_string());
        continue;
      }
      for (std::uint64_t p = off / kPageSize; p <= (off + n - 1) / kPageSize; ++p)
        log.push_back({static_cast<std::uint16_t>(p), e, f});
    }
  };

  // ---- the collector: collection k is collections[k] ----
  std::vector<Bitmap> collections(1);  // [0] unused: collections count from 1
  auto get = [&](std::uint32_t flags, Bitmap* out, std::uint64_t byte_offset) {
    // Read into a byte buffer at `byte_offset`, guarded by a pattern that must survive around it.
    std::uint8_t raw[sizeof(Bitmap) + 16];
    std::memset(raw, 0, sizeof(raw));
    const int err = [&] {
      iommu_hwpt_get_dirty_bitmap g{
          sizeof(g), hwpt, flags, 0, kIova, kBits * kPageSize, kPageSize, uptr(raw + byte_offset)};
      return call(IOMMU_HWPT_GET_DIRTY_BITMAP, &g);
    }();
    std::memcpy(out->data(), raw + byte_offset, sizeof(Bitmap));
    for (std::uint64_t i = 0; i < byte_offset; ++i)
      if (raw[i] != 0) fail("a byte before the bitmap was written");
    for (std::uint64_t i = byte_offset + (kBits + 7) / 8; i < sizeof(raw); ++i)
      if (raw[i] != 0) fail("a byte after the bitmap was written");
    return err;
  };
  auto collector = [&] {
    for (std::uint32_t k = 1; !stop.load(std::memory_order_relaxed); ++k) {
      epoch.store(k);
      Bitmap b{};
      if (int err = get(0, &b, k % 8); err != 0) fail("GET_DIRTY_BITMAP: " + std::string(std::strerror(err)));
      collections.push_back(b);
    }
  };
  std::atomic<long> peeks{0};
  auto peeker = [&] {
    while (!stop.load(std::memory_order_relaxed)) {
      Bitmap b{};
      if (int err = get(IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, &b, 3); err != 0)
        fail("NO_CLEAR read: " + std::string(std::strerror(err)));
      peeks.fetch_add(1, std::memory_order_relaxed);
    }
  };
  std::atomic<long> churns{0};
  auto mapper = [&] {
    const std::uint64_t iova = kIova + kPages * kPageSize;
    while (!stop.load(std::memory_order_relaxed)) {
      if (int err = map(ioas, iova, buf + kPages * kPageSize, kChurnPages * kPageSize); err != 0)
        fail("map: " + std::string(std::strerror(err)));
      iommu_ioas_unmap u{sizeof(u), ioas, iova, kChurnPages * kPageSize};
      if (int err = call(IOMMU_IOAS_UNMAP, &u); err != 0) fail("unmap: " + std::string(std::strerror(err)));
      churns.fetch_add(1, std::memory_order_relaxed);
    }
  };

  {
    std::vector<std::thread> threads;
    threads.emplace_back(op_writer, 0);
    threads.emplace_back(op_writer, 1);
    threads.emplace_back(dma_writer, 2);
    threads.emplace_back(collector);
    threads.emplace_back(peeker);
    threads.emplace_back(mapper);
    std::this_thread::sleep_for(kRunTime);
    stop.store(true);
    for (auto& t : threads) t.join();
  }
  // The last collection, with everything quiet.
  const std::uint32_t last = static_cast<std::uint32_t>(collections.size());
  epoch.store(last);
  Bitmap final_bits{};
  ASSERT_EQ(get(0, &final_bits, 0), 0);
  collections.push_back(final_bits);

  // The collections that reported each page, in order; nothing ever in the third area.
  std::vector<std::vector<std::uint32_t>> reported(kPages);
  for (std::uint32_t c = 1; c < collections.size(); ++c) {
    for (std::uint64_t p = 0; p < kBits; ++p) {
      if (!(collections[c][p / 64] >> (p % 64) & 1)) continue;
      if (p >= kPages)
        fail("collection " + std::to_string(c) + " reported page " + std::to_string(p) +
             " of the unwritten area");
      else
        reported[p].push_back(c);
    }
  }
  // Every write is reported by a collection in [e, f + 1].
  long total = 0;
  const std::size_t dma_writes = writes[2].size(), op_writes = writes[0].size();
  std::vector<std::vector<Write>> by_page(kPages);
  for (auto& log : writes) {
    for (const Write& w : log) {
      ++total;
      by_page[w.page].push_back(w);
      const std::vector<std::uint32_t>& r = reported[w.page];
      auto it = std::lower_bound(r.begin(), r.end(), w.e);
      if (it == r.end() || *it > w.f + 1)
        fail("a write to page " + std::to_string(w.page) + " between collections " + std::to_string(w.e) +
             " and " + std::to_string(w.f + 1) + " was never reported in them");
    }
    log.clear();
    log.shrink_to_fit();
  }
  // Every report has a write behind it: some write with e <= c and f >= c - 1.
  for (std::uint64_t p = 0; p < kPages; ++p) {
    std::vector<Write>& ws = by_page[p];
    std::sort(ws.begin(), ws.end(), [](const Write& x, const Write& y) { return x.e < y.e; });
    std::vector<std::uint32_t> max_f(ws.size());
    for (std::size_t i = 0; i < ws.size(); ++i) max_f[i] = std::max(ws[i].f, i ? max_f[i - 1] : 0u);
    for (std::uint32_t c : reported[p]) {
      auto it =
          std::upper_bound(ws.begin(), ws.end(), c, [](std::uint32_t v, const Write& w) { return v < w.e; });
      if (it == ws.begin() || max_f[static_cast<std::size_t>(it - ws.begin()) - 1] + 1 < c)
        fail("collection " + std::to_string(c) + " reported page " + std::to_string(p) +
             " with no write to explain it");
    }
  }
  // Nothing is left: the last collection took it all.
  Bitmap after{};
  ASSERT_EQ(get(IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, &after, 0), 0);
  EXPECT_EQ(after, Bitmap{});

  std::printf(
      "[ stats    ] %ld writes (%zu by DMA), %u collections, %ld NO_CLEAR reads, %ld map/unmap cycles\n",
      total, dma_writes, last, peeks.load(), churns.load());
  EXPECT_EQ(failures.load(), 0);
  // Each kind of thread got work done, and collections ran while writers wrote.
  EXPECT_GT(op_writes, 0u);
  EXPECT_GT(dma_writes, 0u);
  EXPECT_GT(last, 2u);
  EXPECT_GT(peeks.load(), 0);
  EXPECT_GT(churns.load(), 0);
  EXPECT_EQ(dev->hwpt_id(), hwpt);

  {
    Result<ObjectRef<Ioas>> io = ctx.get<Ioas>(ioas, ObjectType::kIoas);
    ASSERT_TRUE(io.ok());
    EXPECT_EQ((*io)->iopt().check_invariants(), "");
  }
  dev.reset();  // before the iommufd goes
  host.close(fd);
  baseline.expect_back();
  munmap(buf, len);
}

}  // namespace
}  // namespace uiommufd::uapi
