// Concurrency stress: threads map, unmap, copy, attach/detach domains and reserve ranges on one IOAS for a
// bounded time.
// Run under ThreadSanitizer and the lock validator in CI; at the end the invariants hold and nothing is
// pinned.
#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/mm/mm.h"

namespace uiommufd {
namespace {

constexpr int kRW = kIommuRead | kIommuWrite;

TEST(IoptStressTest, ConcurrentMapUnmapCopyAttachReserveKeepInvariants) {
  constexpr std::uint64_t kPages = 512;
  void* mem = mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  const std::uint64_t buf = reinterpret_cast<std::uint64_t>(mem);
  const std::uint64_t pinned_before = Pages::total_pinned_pages();
  const std::size_t reports_before = lockdep::report_count();
  std::atomic<long> ops{0};
  std::atomic<long> reserved{0};  // reservations that went in, into a hole or past the last area
  {
    IoPagetable iopt;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
    auto mapper = [&](unsigned seed) {
      std::mt19937_64 rng(seed);
      while (std::chrono::steady_clock::now() < deadline) {
        std::uint64_t pages = 1 + rng() % 8, first = rng() % (kPages - pages), iova = 0;
        auto p = Pages::create_user(Mm::current(), buf + first * kPageSize, pages * kPageSize, true,
                                    AccountMode::kNone);
        ASSERT_TRUE(p.ok());
        Status st = iopt.map_pages(*p, &iova, kRW, false);
        ASSERT_TRUE(st.ok()) << st.to_string();
        if (rng() % 2) {
          auto chunks = iopt.get_chunks(iova, pages * kPageSize);
          std::uint64_t dst = 0;
          // The area may already be gone (another thread's unmap): ENOENT is the right answer then.
          if (chunks.ok()) {
            ASSERT_TRUE(iopt.map_chunks(*chunks, &dst, kRW, false).ok());
          } else {
            ASSERT_EQ(chunks.error(), ENOENT);
          }
        }
        ops.fetch_add(1, std::memory_order_relaxed);
      }
    };
    auto unmapper = [&](unsigned seed) {
      std::mt19937_64 rng(seed);
      while (std::chrono::steady_clock::now() < deadline) {
        auto areas = iopt.areas();
        if (areas.empty()) continue;
        const auto& a = areas[rng() % areas.size()];
        std::uint64_t unmapped = 0;
        Status st = iopt.unmap_range(a.iova, &unmapped);
        // Gone already, or replaced by a half-built area at the same place.
        ASSERT_TRUE(st.ok() || st.error() == EBUSY || st.error() == ENOENT) << st.to_string();
        ops.fetch_add(1, std::memory_order_relaxed);
      }
    };
    auto attacher = [&](unsigned seed) {
      std::mt19937_64 rng(seed);
      while (std::chrono::steady_clock::now() < deadline) {
        auto d = PageTableDomain::create({});
        ASSERT_TRUE(d.ok());
        ASSERT_TRUE(iopt.add_domain(d->get()).ok());
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
        iopt.remove_domain(d->get());
        ops.fetch_add(1, std::memory_order_relaxed);
      }
    };
    // Reserved ranges come and go among the areas (a device's regions, as attach and detach change them),
    // while the mappers' allocations must keep out of them.
    auto reserver = [&](unsigned seed) {
      std::mt19937_64 rng(seed);
      const int owner = 0;
      while (std::chrono::steady_clock::now() < deadline) {
        // Over 4 GiB of IOVA: among the areas the mappers pack from the bottom, and past them. (Within the
        // first 256 MiB only, a loaded machine that runs the mappers long before this thread could leave no
        // hole there at all, and no reservation would ever go in.)
        const std::uint64_t start = (1 + rng() % (std::uint64_t{1} << 20)) * kPageSize;
        const Interval range{start, start + (1 + rng() % 16) * kPageSize - 1};
        Status st = iopt.add_reserved(range, &owner);
        ASSERT_TRUE(st.ok() || st.error() == EADDRINUSE) << st.to_string();
        if (st.ok()) reserved.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
        iopt.remove_reserved(&owner);
        ops.fetch_add(1, std::memory_order_relaxed);
      }
    };
    std::vector<std::thread> threads;
    threads.emplace_back(mapper, 1);
    threads.emplace_back(mapper, 2);
    threads.emplace_back(unmapper, 3);
    threads.emplace_back(attacher, 4);
    threads.emplace_back(reserver, 5);
    for (auto& t : threads) t.join();
    EXPECT_EQ(iopt.check_invariants(), "");
  }
  EXPECT_GT(ops.load(), 100);
  EXPECT_GT(reserved.load(), 0);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before);
  EXPECT_EQ(lockdep::report_count(), reports_before) << "the lock validator reported the engine";
  munmap(mem, kPages * kPageSize);
}

}  // namespace
}  // namespace uiommufd
