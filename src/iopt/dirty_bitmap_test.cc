// Dirty collection over an IOAS (iopt/dirty_bitmap.h): the bitmap writer's page-at-a-time gathering
// against a one-report-at-a-time model of the kernel's iova_bitmap (random patterns, granules, unaligned
// bitmaps, entries of several sizes, unwritable bitmap pages, memory beside the bitmap left alone), and
// the dirty-run convenience (merging, clipping, holes, no_clear, errors).
#include "uiommufd/iopt/dirty_bitmap.h"

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uiommufd/base/page.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd {
namespace {

constexpr std::uint64_t k4K = kPageSize;
constexpr std::uint64_t k2M = kHugePageSize;
constexpr int kRW = kIommuRead | kIommuWrite;

// Anonymous memory with its mapping's lifetime.
class Mapping {
 public:
  explicit Mapping(std::uint64_t length, std::uint64_t align = k4K) : length_(length + align) {
    base_ = static_cast<char*>(
        mmap(nullptr, length_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    EXPECT_NE(base_, MAP_FAILED);
    addr_ = (reinterpret_cast<std::uint64_t>(base_) + align - 1) & ~(align - 1);
  }
  ~Mapping() { munmap(base_, length_); }
  std::uint64_t addr() const { return addr_; }
  std::uint8_t* ptr(std::uint64_t off = 0) const { return reinterpret_cast<std::uint8_t*>(addr_ + off); }

 private:
  char* base_;
  std::uint64_t length_;
  std::uint64_t addr_;
};

// An IOAS with one dirty-tracking domain over areas of a 4 MiB buffer. Large entries on, so a 2 MiB
// aligned piece becomes a 2 MiB entry. The parameter: whether the bitmap writer may store in place (its
// usual way) or must use copies (its way under the sanitizers), so that both are held to the model.
class DirtyBitmapTest : public ::testing::TestWithParam<bool> {
 protected:
  static constexpr std::uint64_t kBacking = 2 * k2M;

  void SetUp() override {
    Mm::set_store_in_place_disabled_for_testing(!GetParam());
    PageTableDomain::Options options;
    options.dirty_capable = true;
    auto d = PageTableDomain::create(options);
    ASSERT_TRUE(d.ok());
    domain_ = std::move(*d);
    ASSERT_TRUE(iopt_.add_domain(domain_.get()).ok());
    std::memset(backing_.ptr(), 0, kBacking);
  }
  void TearDown() override {
    std::uint64_t unmapped = 0;
    (void)iopt_.unmap_range(Interval::full(), &unmapped);
    iopt_.remove_domain(domain_.get());
    Mm::set_store_in_place_disabled_for_testing(false);
  }

  // Maps [offset, offset + length) of the backing at iova.
  void map(std::uint64_t iova, std::uint64_t offset, std::uint64_t length) {
    auto pages =
        Pages::create_user(Mm::current(), backing_.addr() + offset, length, true, AccountMode::kNone);
    ASSERT_TRUE(pages.ok());
    ASSERT_TRUE(iopt_.map_pages(*pages, &iova, kRW, /*fixed_iova=*/true).ok());
  }

  Status bitmap(std::uint64_t iova, std::uint64_t length, std::uint64_t page_size, std::uint64_t data,
                bool no_clear = false) {
    return read_dirty_bitmap(iopt_, domain_.get(), DirtyBitmapRequest{iova, length, page_size, data, no_clear});
  }

  using Runs = std::vector<std::pair<std::uint64_t, std::uint64_t>>;
  Runs runs(std::uint64_t iova, std::uint64_t length, bool no_clear = false) {
    Runs out;
    const Status st =
        for_each_dirty_run(iopt_, domain_.get(), iova, length, no_clear,
                           [&](std::uint64_t va, std::uint64_t len) { out.emplace_back(va, len); });
    EXPECT_TRUE(st.ok()) << st.to_string();
    return out;
  }

  Mapping backing_{kBacking, k2M};
  IoPagetable iopt_;
  std::unique_ptr<PageTableDomain> domain_;
};

// The kernel's writer, one report at a time, on a local byte array standing for the user's: the model the
// page-gathering writer must match (same bits set, nothing else touched). `writable(byte)` says whether
// the page holding that bitmap byte could be pinned for writing.
struct ModelBitmap {
  std::uint64_t iova, shift, total_bytes, data;
  std::vector<std::uint8_t>* bytes;  // bytes[k] is the user byte at data + k
  std::function<bool(std::uint64_t)> writable;

  void set(std::uint64_t va, std::uint64_t len) {
    std::uint64_t bit = (va - iova) >> shift;
    const std::uint64_t last_bit = (va - iova + (len - 1)) >> shift;
    if ((bit >> 3) >= total_bytes) return;
    std::uint64_t window_end = window(bit >> 3);
    for (; bit <= last_bit; ++bit) {
      const std::uint64_t byte = bit >> 3;
      if (data + byte >= window_end) {
        if (byte >= total_bytes) return;
        window_end = window(byte);
      }
      if (!writable(byte)) return;
      (*bytes)[byte] |= static_cast<std::uint8_t>(1u << (bit & 7));
    }
  }
  std::uint64_t window(std::uint64_t byte) const {
    const std::uint64_t start = data + byte;
    const std::uint64_t pages =
        std::min<std::uint64_t>((total_bytes - byte + k4K - 1) / k4K + (page_offset(start) != 0), 512);
    return page_align_down(start) + pages * k4K;
  }
};

TEST_P(DirtyBitmapTest, RandomPatternsMatchTheOneReportAtATimeModel) {
  // Areas: a 2 MiB entry at [2M, 4M), 4 KiB entries at [4M, 4M + 1M), a hole, more 4 KiB entries after.
  map(k2M, 0, k2M);
  map(2 * k2M, k2M + k4K, 256 * k4K);
  map(2 * k2M + 256 * k4K, k2M + 300 * k4K, 200 * k4K);
  map(4 * k2M, k2M, 64 * k4K);  // after a hole: the walk stops before it
  std::mt19937_64 rng(7);
  Mapping user(8 * k4K);
  for (int round = 0; round < 200; ++round) {
    // Dirty some leaves: the large entry sometimes, 4 KiB entries often.
    std::vector<std::uint64_t> leaves;
    if (rng() % 3 == 0) leaves.push_back(k2M);
    for (std::uint64_t p = 0; p < 456; ++p)
      if (rng() % 5 == 0) leaves.push_back(2 * k2M + p * k4K);
    for (std::uint64_t leaf : leaves) ASSERT_TRUE(domain_->set_dirty(leaf).ok());
    // A request inside [2M, 2M + 2M + 456 * 4K), its granule from 256 bytes (a bitmap of up to 2 KiB, often
    // across a page) to 2 MiB; the IOAS still wants 4 KiB alignment of the range.
    const unsigned shift = 8 + static_cast<unsigned>(rng() % 14);
    const std::uint64_t gran = std::uint64_t{1} << shift;
    const std::uint64_t step = std::max(gran, k4K);
    const std::uint64_t space_first = k2M, space_end = 2 * k2M + 456 * k4K;
    std::uint64_t iova = (space_first + (rng() % (space_end - space_first))) & ~(step - 1);
    if (iova < space_first) iova = space_first;
    const std::uint64_t max_len = ((space_end - iova) / step) * step;
    if (max_len == 0) continue;
    const std::uint64_t length = step * (1 + rng() % (max_len / step));
    // The bitmap at any byte offset, prefilled with junk the writer must keep.
    const std::uint64_t total = ((((length - 1) >> shift) >> 3) + 1);
    const std::uint64_t offset = rng() % (8 * k4K - total - 64);
    std::vector<std::uint8_t> before(8 * k4K);
    for (auto& b : before) b = static_cast<std::uint8_t>(rng() & rng());
    std::memcpy(user.ptr(), before.data(), before.size());
    // The model sees the same reports, collected without clearing.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> reports;
    IoPagetable::DirtyWalk walk{iova, false};
    std::vector<IoPagetable::DirtyRange> window;
    while (!walk.done) {
      window.clear();
      ASSERT_TRUE(
          iopt_.read_dirty_window(domain_.get(), iova + length - 1, /*no_clear=*/true, &window, &walk).ok());
      for (auto& r : window) reports.emplace_back(r.iova, r.length);
    }
    std::vector<std::uint8_t> expect(before.begin() + offset, before.end());
    ModelBitmap model{iova, shift, total, user.addr() + offset, &expect, [](std::uint64_t) { return true; }};
    for (auto& [va, len] : reports) model.set(va, len);

    ASSERT_TRUE(bitmap(iova, length, gran, user.addr() + offset).ok());
    EXPECT_EQ(0, std::memcmp(user.ptr(), before.data(), offset)) << "bytes before the bitmap changed";
    EXPECT_EQ(0, std::memcmp(user.ptr(offset), expect.data(), expect.size())) << "round " << round;
    // Cleared: the same request again finds nothing new.
    std::memcpy(user.ptr(), before.data(), before.size());
    ASSERT_TRUE(bitmap(iova, length, gran, user.addr() + offset).ok());
    EXPECT_EQ(0, std::memcmp(user.ptr(), before.data(), before.size()));
    // Whatever the request did not cover stays dirty for the next round; clear it all.
    ASSERT_TRUE(bitmap(k2M, space_end - k2M, k4K, user.addr()).ok());
  }
}

TEST_P(DirtyBitmapTest, AnUnwritableBitmapPageDropsTheRestOfEachReportThatReachesIt) {
  map(0, 0, k2M);
  // The granule only has to divide the range. At a 256 B granule a 2 MiB entry is 8192 bits = 1 KiB of
  // bitmap, so a bitmap starting 512 bytes before a page end puts half of one report on each side.
  constexpr std::uint64_t kGran = 256;
  Mapping user(3 * k4K);
  std::memset(user.ptr(), 0, 3 * k4K);
  ASSERT_EQ(mprotect(user.ptr(k4K), k4K, PROT_READ), 0);
  const std::uint64_t data = user.addr() + k4K - 512;
  ASSERT_TRUE(domain_->set_dirty(0).ok());
  ASSERT_TRUE(bitmap(0, k2M, kGran, data).ok());
  // The part before the read-only page is set, nothing after it.
  for (std::uint64_t i = 0; i < 512; ++i) ASSERT_EQ(user.ptr(k4K - 512)[i], 0xff) << i;
  for (std::uint64_t i = 0; i < k4K; ++i) ASSERT_EQ(user.ptr(k4K)[i], 0) << i;
  ASSERT_EQ(user.ptr(k4K - 513)[0], 0) << "the byte before the bitmap was written";
  // The entry was read and cleared all the same: the call does not fail, the bits are lost.
  ASSERT_EQ(mprotect(user.ptr(k4K), k4K, PROT_READ | PROT_WRITE), 0);
  std::memset(user.ptr(), 0, 3 * k4K);
  ASSERT_TRUE(bitmap(0, k2M, kGran, data).ok());
  for (std::uint64_t i = 0; i < 3 * k4K; ++i) ASSERT_EQ(user.ptr()[i], 0) << i;
}

TEST_P(DirtyBitmapTest, AnUnmappedBitmapIsNotAnErrorAndLosesTheBits) {
  map(0, 0, 16 * k4K);
  Mapping user(k4K);
  ASSERT_EQ(munmap(user.ptr(), k4K), 0);
  ASSERT_TRUE(domain_->set_dirty(3 * k4K).ok());
  EXPECT_TRUE(bitmap(0, 16 * k4K, k4K, user.addr()).ok());
  EXPECT_EQ(runs(0, 16 * k4K), Runs{});
  ASSERT_NE(mmap(user.ptr(), k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
            MAP_FAILED);
}

TEST_P(DirtyBitmapTest, RunsMergeNeighboursClipToTheRequestAndStopAtAHole) {
  map(k2M, 0, k2M);                       // one 2 MiB entry
  map(2 * k2M, k2M, 8 * k4K);             // eight 4 KiB entries right after it
  map(2 * k2M + 16 * k4K, k2M, 4 * k4K);  // after a hole
  ASSERT_TRUE(domain_->set_dirty(k2M).ok());
  ASSERT_TRUE(domain_->set_dirty(2 * k2M).ok());
  ASSERT_TRUE(domain_->set_dirty(2 * k2M + k4K).ok());
  ASSERT_TRUE(domain_->set_dirty(2 * k2M + 5 * k4K).ok());
  ASSERT_TRUE(domain_->set_dirty(2 * k2M + 16 * k4K).ok());
  // Starting inside the large entry: the run starts at the request, and the entry's run carries on into
  // the two dirty 4 KiB entries that follow it.
  EXPECT_EQ(runs(k2M + 0x1000, k2M + 7 * k4K, /*no_clear=*/true),
            (Runs{{k2M + 0x1000, k2M - 0x1000 + 2 * k4K}, {2 * k2M + 5 * k4K, k4K}}));
  // A request ending inside a run clips it; the hole at 2 * k2M + 8 * k4K ends the walk.
  EXPECT_EQ(runs(k2M, 2 * k2M, /*no_clear=*/true), (Runs{{k2M, k2M + 2 * k4K}, {2 * k2M + 5 * k4K, k4K}}));
  // Clearing: the second read finds only what lay outside the first.
  EXPECT_EQ(runs(2 * k2M, k4K), (Runs{{2 * k2M, k4K}}));
  EXPECT_EQ(runs(k2M, k2M + 8 * k4K), (Runs{{k2M, k2M}, {2 * k2M + k4K, k4K}, {2 * k2M + 5 * k4K, k4K}}));
  EXPECT_EQ(runs(k2M, k2M + 8 * k4K), Runs{});
  EXPECT_EQ(runs(2 * k2M + 16 * k4K, 4 * k4K), (Runs{{2 * k2M + 16 * k4K, k4K}}));
}

TEST_P(DirtyBitmapTest, RunsRefuseBadRangesAndDomainsThatCannotTrack) {
  map(0, 0, k4K);
  auto never = [](std::uint64_t, std::uint64_t) { ADD_FAILURE() << "a run from a refused request"; };
  EXPECT_EQ(for_each_dirty_run(iopt_, domain_.get(), 0, 0, false, never).error(), EINVAL);
  EXPECT_EQ(for_each_dirty_run(iopt_, domain_.get(), ~std::uint64_t{0}, 2, false, never).error(), EINVAL);
  auto plain = PageTableDomain::create();
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(for_each_dirty_run(iopt_, plain->get(), 0, k4K, false, never).error(), EOPNOTSUPP);
  EXPECT_EQ(read_dirty_bitmap(iopt_, plain->get(), DirtyBitmapRequest{0, k4K, k4K, 0, false}).error(),
            EOPNOTSUPP);
  // The bitmap's range checks come first, in the kernel's order.
  EXPECT_EQ(
      read_dirty_bitmap(iopt_, plain->get(), DirtyBitmapRequest{8, ~std::uint64_t{0}, k4K, 0, false}).error(),
      EOVERFLOW);
  EXPECT_EQ(read_dirty_bitmap(iopt_, domain_.get(), DirtyBitmapRequest{0, k4K, 0, 0, false}).error(), EINVAL);
  // page_size is used as a mask: 12 KiB lets a 4 KiB range through (0x1000 & 0x2fff is 0), not an 8 KiB one.
  EXPECT_EQ(read_dirty_bitmap(iopt_, domain_.get(), DirtyBitmapRequest{0, k4K, 3 * k4K, 0, false}).error(),
            0);
  EXPECT_EQ(
      read_dirty_bitmap(iopt_, domain_.get(), DirtyBitmapRequest{0, 2 * k4K, 3 * k4K, 0, false}).error(),
      EINVAL);
}

INSTANTIATE_TEST_SUITE_P(Writers, DirtyBitmapTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "InPlace" : "ByCopies";
                         });

}  // namespace
}  // namespace uiommufd
