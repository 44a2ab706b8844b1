#include "uiommufd/iova/iova_allocator.h"

#include <bit>
#include <cerrno>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "uiommufd/base/page.h"
#include "uiommufd/iova/span_iterator.h"

namespace uiommufd {
namespace {

constexpr std::uint64_t kMax = kUlongMax;
constexpr std::uint64_t kPage = kPageSize;
constexpr std::uint64_t kMiB = 1024 * 1024;

// An iopt's three trees with owned nodes. With `exclude`, the areas' gap figures leave out the reserved
// ranges, as iopt sets them up; the answers must not change.
struct Iopt {
  std::deque<IntervalTreeNode> nodes;  // deque: stable addresses
  IntervalTree areas, reserved, allowed;
  bool exclude;
  explicit Iopt(bool exclude_reserved = true) : exclude(exclude_reserved) {
    if (exclude) areas.set_gap_exclusions(&reserved);
  }
  IovaTrees trees() const { return {areas, reserved, allowed}; }
  IntervalTreeNode* add(IntervalTree& t, Interval r) {
    nodes.emplace_back();
    nodes.back().range = r;
    t.insert(&nodes.back());
    if (exclude && &t == &reserved) areas.gap_exclusions_changed(r);
    return &nodes.back();
  }
  void remove_reserved(IntervalTreeNode* n) {
    reserved.remove(n);
    if (exclude) areas.gap_exclusions_changed(n->range);
  }
  IntervalTreeNode* area(std::uint64_t start, std::uint64_t length) {
    return add(areas, {start, start + length - 1});
  }
  ~Iopt() {
    areas.clear();
    reserved.clear();
    allowed.clear();
  }
};

// A literal transcription of the kernel's iopt_alloc_iova (v6.17+) on top of SpanIterator, without
// any pruning: the oracle the fast path is compared with.
std::optional<std::uint64_t> reference_fit(std::uint64_t start, std::uint64_t last, std::uint64_t length,
                                           std::uint64_t align, std::uint64_t page_offset) {
  std::uint64_t aligned;
  if (__builtin_add_overflow(start, align - 1, &aligned)) return std::nullopt;
  aligned &= ~(align - 1);
  aligned |= page_offset;
  if (aligned >= last || last - aligned < length - 1) return std::nullopt;
  return aligned;
}

Result<std::uint64_t> reference_allocate(const Iopt& io, std::uint64_t addr, std::uint64_t length,
                                         std::uint64_t iova_alignment) {
  if (length == 0 || length >= kMax / 2) return Status::error(EOVERFLOW);
  std::uint64_t align = std::bit_ceil(length);
  if (addr) align = std::min(align, std::uint64_t{1} << std::countr_zero(addr));
  if (align >= kHugePageSize) align = kHugePageSize;
  if (align < iova_alignment) return Status::error(EINVAL);
  const std::uint64_t po = addr % kPage;
  for (SpanIterator allowed({kPage, kMax - kPage}, io.allowed, nullptr); !allowed.done(); allowed.next()) {
    Interval span = allowed.span();
    bool is_hole = allowed.is_hole();
    if (io.allowed.empty()) {
      span = {kPage, kMax - kPage};
      is_hole = false;
    }
    if (is_hole) continue;
    const auto start = reference_fit(span.start, span.last, length, align, po);
    if (!start) continue;
    for (SpanIterator used({*start, span.last}, io.reserved, &io.areas); !used.done(); used.next()) {
      if (!used.is_hole()) continue;
      const auto iova = reference_fit(used.span().start, used.span().last, length, align, po);
      if (iova) return *iova;
    }
  }
  return Status::error(ENOSPC);
}

// ---- FIXED_IOVA -----------------------------------------------------------------------------------

TEST(CheckFixedIovaTest, FreeAlignedRangeIsAccepted) {
  Iopt io;
  EXPECT_TRUE(check_fixed_iova(io.trees(), 0, kPage, 1).ok());
  EXPECT_TRUE(check_fixed_iova(io.trees(), kMax, 1, 1).ok());  // the very last byte
}

TEST(CheckFixedIovaTest, MisalignedIovaIsEinval) {
  Iopt io;
  EXPECT_EQ(check_fixed_iova(io.trees(), kPage + 1, kPage, kPage).error(), EINVAL);
  EXPECT_TRUE(check_fixed_iova(io.trees(), kPage + 1, kPage, 1).ok());
}

TEST(CheckFixedIovaTest, EndPastU64MaxIsEoverflow) {
  Iopt io;
  EXPECT_EQ(check_fixed_iova(io.trees(), kMax, 2, 1).error(), EOVERFLOW);
  EXPECT_EQ(check_fixed_iova(io.trees(), kMax - kPage + 1, 2 * kPage, kPage).error(), EOVERFLOW);
}

TEST(CheckFixedIovaTest, IntersectingReservedIsEinval) {
  Iopt io;
  io.add(io.reserved, {0x10000, 0x1ffff});
  EXPECT_EQ(check_fixed_iova(io.trees(), 0xf000, 0x2000, kPage).error(), EINVAL);
  EXPECT_EQ(check_fixed_iova(io.trees(), 0x1f000, kPage, kPage).error(), EINVAL);
  EXPECT_TRUE(check_fixed_iova(io.trees(), 0x20000, kPage, kPage).ok());
  EXPECT_TRUE(check_fixed_iova(io.trees(), 0xf000, kPage, kPage).ok());
}

TEST(CheckFixedIovaTest, IntersectingAreaIsEexist) {
  Iopt io;
  io.area(0x10000, 0x10000);
  EXPECT_EQ(check_fixed_iova(io.trees(), 0x1f000, 0x2000, kPage).error(), EEXIST);
  EXPECT_TRUE(check_fixed_iova(io.trees(), 0x20000, kPage, kPage).ok());
}

TEST(CheckFixedIovaTest, AllowedListIsNotConsulted) {
  Iopt io;
  io.add(io.allowed, {0x100000, 0x1fffff});
  EXPECT_TRUE(check_fixed_iova(io.trees(), 0x10000, kPage, kPage).ok());
}

TEST(CheckFixedIovaTest, ChecksRunInKernelOrder) {
  Iopt io;
  io.add(io.reserved, {0, kMax});
  io.area(0x10000, kPage);
  // Misalignment wins over overflow, reserved and area.
  EXPECT_EQ(check_fixed_iova(io.trees(), kMax, 2, kPage).error(), EINVAL);
  // Overflow wins over reserved and area.
  EXPECT_EQ(check_fixed_iova(io.trees(), kMax, 2, 1).error(), EOVERFLOW);
  // Reserved (EINVAL) wins over area (EEXIST).
  EXPECT_EQ(check_fixed_iova(io.trees(), 0x10000, kPage, kPage).error(), EINVAL);
}

// ---- automatic allocation -----------------------------------------------------------------------

TEST(AllocateIovaTest, EmptyIoasGivesFirstPageAlignedAddressNeverZero) {
  Iopt io;
  EXPECT_EQ(allocate_iova(io.trees(), 0, kPage, 1).value(), kPage);
  EXPECT_EQ(allocate_iova(io.trees(), 0, 1, 1).value(), kPage);
}

TEST(AllocateIovaTest, AlignmentIsLengthRoundedUpToPowerOfTwoWithoutAddress) {
  Iopt io;
  // 5 pages → 8-page alignment: the first 32 KiB-aligned address in the window.
  EXPECT_EQ(allocate_iova(io.trees(), 0, 5 * kPage, 1).value(), 8 * kPage);
  EXPECT_EQ(allocate_iova(io.trees(), 0, 64 * 1024, 1).value(), 64 * 1024u);
}

TEST(AllocateIovaTest, AlignmentIsLimitedByLowestSetBitOfAddress) {
  Iopt io;
  // 1 MiB long but from an 8 KiB-aligned address → 8 KiB alignment.
  EXPECT_EQ(allocate_iova(io.trees(), 0x7f0000002000, kMiB, 1).value(), 2 * kPage);
  // A 64 KiB-aligned address and a 16 KiB length → 16 KiB.
  EXPECT_EQ(allocate_iova(io.trees(), 0x7f0000010000, 4 * kPage, 1).value(), 4 * kPage);
}

TEST(AllocateIovaTest, AlignmentIsCappedAtHugePageSize) {
  Iopt io;
  // 1 GiB from no address would ask for 1 GiB alignment; v6.17 caps it at 2 MiB.
  EXPECT_EQ(allocate_iova(io.trees(), 0, 1024 * kMiB, 1).value(), 2 * kMiB);
  EXPECT_EQ(allocate_iova(io.trees(), 0x40000000, 4 * kMiB, 1).value(), 2 * kMiB);
}

TEST(AllocateIovaTest, CapAppliesBeforeTheIovaAlignmentCheck) {
  Iopt io;
  // Alignment capped at 2 MiB; an iopt requiring 4 MiB refuses it.
  EXPECT_EQ(allocate_iova(io.trees(), 0, 8 * kMiB, 4 * kMiB).error(), EINVAL);
  EXPECT_TRUE(allocate_iova(io.trees(), 0, 8 * kMiB, 2 * kMiB).ok());
}

TEST(AllocateIovaTest, SubPageOffsetOfTheSourceIsKept) {
  Iopt io;
  // Source at offset 0x100 in its page, 16 bytes: alignment 16, candidate = align_up(4096,16)|0x100.
  EXPECT_EQ(allocate_iova(io.trees(), 0x7f0000000100, 16, 1).value(), kPage | 0x100);
  // Offset 0x800, a page long: alignment min(4096, 0x800) = 0x800.
  EXPECT_EQ(allocate_iova(io.trees(), 0x5800, kPage, 1).value(), kPage | 0x800);
}

TEST(AllocateIovaTest, AlignmentBelowIovaAlignmentIsEinval) {
  Iopt io;
  EXPECT_EQ(allocate_iova(io.trees(), 0x1800, kPage, kPage).error(), EINVAL);  // addr 2 KiB aligned
  EXPECT_EQ(allocate_iova(io.trees(), 0, 512, kPage).error(), EINVAL);         // short length
  EXPECT_TRUE(allocate_iova(io.trees(), 0x1000, kPage, kPage).ok());
}

TEST(AllocateIovaTest, ZeroOrHugeLengthIsEoverflow) {
  Iopt io;
  EXPECT_EQ(allocate_iova(io.trees(), 0, 0, 1).error(), EOVERFLOW);
  EXPECT_EQ(allocate_iova(io.trees(), 0, kMax / 2, 1).error(), EOVERFLOW);
  EXPECT_EQ(allocate_iova(io.trees(), 0, kMax, 1).error(), EOVERFLOW);
  // Just below the limit is looked for (and fits: the window is ~2^64 long).
  EXPECT_TRUE(allocate_iova(io.trees(), 0, kMax / 2 - 1, 1).ok());
}

TEST(AllocateIovaTest, AreasAreAvoidedAndFirstFitIsLowest) {
  Iopt io;
  io.area(kPage, 3 * kPage);      // [4K, 16K)
  io.area(5 * kPage, 3 * kPage);  // [20K, 32K): leaves a one-page hole at 16K
  EXPECT_EQ(allocate_iova(io.trees(), 0, kPage, 1).value(), 4 * kPage);
  EXPECT_EQ(allocate_iova(io.trees(), 0, 2 * kPage, 1).value(), 8 * kPage);
}

TEST(AllocateIovaTest, ReservedRangesAreAvoided) {
  Iopt io;
  io.add(io.reserved, {0, 0xfffff});
  io.add(io.reserved, {0x100000, 0x100fff});  // adjacent, different owner
  io.add(io.reserved, {0x100800, 0x101fff});  // overlapping
  EXPECT_EQ(allocate_iova(io.trees(), 0, kPage, 1).value(), 0x102000u);
}

TEST(AllocateIovaTest, AllowedRangesAreRespectedInOrder) {
  Iopt io;
  io.add(io.allowed, {0x200000, 0x200fff});
  io.add(io.allowed, {0x400000, 0x4fffff});
  EXPECT_EQ(allocate_iova(io.trees(), 0, kPage, 1).value(), 0x200000u);
  EXPECT_EQ(allocate_iova(io.trees(), 0, 2 * kPage, 1).value(), 0x400000u);
  io.area(0x400000, kPage);
  EXPECT_EQ(allocate_iova(io.trees(), 0, kPage, 1).value(), 0x200000u);
  EXPECT_EQ(allocate_iova(io.trees(), 0, 2 * kPage, 1).value(), 0x402000u);
}

TEST(AllocateIovaTest, AdjacentAllowedRangesFormOneSpan) {
  Iopt io;
  io.add(io.allowed, {0x10000, 0x10fff});
  io.add(io.allowed, {0x11000, 0x11fff});
  EXPECT_EQ(allocate_iova(io.trees(), 0x7000000000, 2 * kPage, 1).value(), 0x10000u);
}

TEST(AllocateIovaTest, AllowedRangesAreClippedToTheWindow) {
  Iopt io;
  io.add(io.allowed, {0, 0x1fff});
  EXPECT_EQ(allocate_iova(io.trees(), 0, kPage, 1).value(), kPage);  // not 0
  Iopt top;
  top.add(top.allowed, {kMax - 4 * kPage + 1, kMax});
  // Window ends at kMax - kPage: candidates in [kMax-4K*4+1 .. kMax-kPage].
  EXPECT_EQ(allocate_iova(top.trees(), 0, kPage, 1).value(), kMax - 4 * kPage + 1);
  EXPECT_EQ(allocate_iova(top.trees(), 0, 4 * kPage, 1).error(), ENOSPC);
}

TEST(AllocateIovaTest, CandidateOnHoleLastNeverFits) {
  // The kernel's test is `candidate < hole_last`: a 1-byte request cannot take the last byte of a hole,
  // so a 1-byte hole never fits anything.
  Iopt io;
  io.area(kPage, kPage);          // [4096, 8191]
  io.area(2 * kPage + 1, kPage);  // leaves the single byte 8192 free
  const auto iova = allocate_iova(io.trees(), 0, 1, 1);
  ASSERT_TRUE(iova.ok());
  EXPECT_NE(*iova, 2 * kPage);
  EXPECT_EQ(*iova, 3 * kPage + 1);
}

TEST(AllocateIovaTest, NothingFitsIsEnospc) {
  Iopt io;
  io.add(io.reserved, {0, kMax});
  EXPECT_EQ(allocate_iova(io.trees(), 0, kPage, 1).error(), ENOSPC);
  Iopt small;
  small.add(small.allowed, {0x10000, 0x10fff});
  EXPECT_EQ(allocate_iova(small.trees(), 0, 2 * kPage, 1).error(), ENOSPC);
}

TEST(AllocateIovaTest, AlignUpNearTopDoesNotWrap) {
  // The only hole starts past the last 2 MiB boundary: aligning it up wraps past U64_MAX. The
  // unchecked ALIGN() of older kernels turned that into candidate 0 and "fit"; v6.17 says no fit.
  Iopt io;
  io.add(io.reserved, {0, kMax - 2 * kMiB + 1});
  const auto iova = allocate_iova(io.trees(), 0, 2 * kMiB, 1);
  EXPECT_EQ(iova.error(), ENOSPC) << std::hex << iova.value_or(0);
  // A page-aligned request still fits there.
  EXPECT_EQ(allocate_iova(io.trees(), 0, kPage, 1).value(), kMax - 2 * kMiB + 1 + kPage);
}

TEST(AllocateIovaTest, ResultPassesTheFixedIovaCheck) {
  Iopt io;
  io.add(io.reserved, {0, 0xffff});
  io.area(0x10000, 0x3000);
  const std::uint64_t iova = allocate_iova(io.trees(), 0x7f0000001000, 0x5000, kPage).value();
  EXPECT_TRUE(check_fixed_iova(io.trees(), iova, 0x5000, kPage).ok());
}

// Random trees and requests: the fast path (gap-code pruning, reserved-then-area decomposition)
// must agree with a literal port of the kernel algorithm, errno and address alike.
TEST(AllocateIovaTest, RandomRequestsMatchKernelAlgorithm) {
  std::mt19937_64 rng(99);
  for (int round = 0; round < 300; ++round) {
    Iopt io(round % 2 == 0);
    const bool top = rng() % 4 == 0;  // exercise the top of the space too
    auto coord = [&]() -> std::uint64_t {
      const std::uint64_t x = (rng() % 256) * 0x800 + (rng() % 8 == 0 ? rng() % 0x800 : 0);
      return top ? kMax - x : x;
    };
    auto range = [&]() {
      std::uint64_t a = coord(), b = coord();
      if (a > b) std::swap(a, b);
      return Interval{a, b};
    };
    // Sometimes many reserved ranges, so that one area gap holds several reserved holes.
    const int reserved = static_cast<int>(rng() % 4 == 0 ? rng() % 16 : rng() % 4);
    for (int i = 0; i < reserved; ++i) io.add(io.reserved, range());
    if (rng() % 3 == 0) {
      for (int i = 0, n = 1 + static_cast<int>(rng() % 3); i < n; ++i) {
        const Interval r = range();
        if (!io.allowed.first_overlap(r)) io.add(io.allowed, r);
      }
    }
    for (int i = 0, n = static_cast<int>(rng() % 40); i < n; ++i) {
      const Interval r = range();
      if (!io.areas.first_overlap(r)) io.add(io.areas, r);
    }
    for (int q = 0; q < 50; ++q) {
      const std::uint64_t length = rng() % 4 == 0 ? 1 + rng() % 0x100 : (1 + rng() % 16) * 0x800;
      std::uint64_t addr = 0;
      switch (rng() % 4) {
        case 0:
          break;
        case 1:
          addr = (rng() % 0x100000) << 12;
          break;
        case 2:
          addr = rng() & ~std::uint64_t{0xf};
          break;
        default:
          addr = rng();
          break;
      }
      const std::uint64_t iova_alignment = std::uint64_t{1} << (rng() % 4 == 0 ? 12 : 0);
      const auto want = reference_allocate(io, addr, length, iova_alignment);
      const auto got = allocate_iova(io.trees(), addr, length, iova_alignment);
      ASSERT_EQ(got.error(), want.error()) << "round " << round << " q " << q;
      if (want.ok()) {
        ASSERT_EQ(*got, *want) << "round " << round << " q " << q;
        ASSERT_TRUE(check_fixed_iova(io.trees(), *got, length, 1).ok());
        if (rng() % 2) io.area(*got, length);  // grow the tree with real allocations
      }
    }
  }
}

// Churn like the benchmark, checked against the reference on every step.
TEST(AllocateIovaTest, ChurnMatchesKernelAlgorithm) {
  std::mt19937_64 rng(3);
  Iopt io;
  io.add(io.reserved, {0xfee00000, 0xfeefffff});  // an MSI window
  std::vector<IntervalTreeNode*> live;
  IntervalTreeNode* extra = nullptr;  // a reserved range that comes and goes, in a free part of the space
  int extras = 0;
  for (int step = 0; step < 3000; ++step) {
    if (step % 50 == 0) {
      if (extra != nullptr) {
        io.remove_reserved(extra);
        extra = nullptr;
      } else {
        const std::uint64_t start = (rng() % 0x1000) * kPage;
        const Interval r{start, start + kPage * (1 + rng() % 64) - 1};
        if (io.areas.first_overlap(r) == nullptr) {
          extra = io.add(io.reserved, r);
          ++extras;
        }
      }
      io.areas.check_invariants();
    }
    if (live.size() > 200 || (!live.empty() && rng() % 3 == 0)) {
      const std::size_t i = rng() % live.size();
      io.areas.remove(live[i]);
      live[i] = live.back();
      live.pop_back();
      continue;
    }
    const std::uint64_t length = (1 + rng() % 16) * kPage;
    const std::uint64_t addr = rng() % 2 ? 0 : (rng() % 0x100000) << 12;
    const auto want = reference_allocate(io, addr, length, kPage);
    const auto got = allocate_iova(io.trees(), addr, length, kPage);
    ASSERT_EQ(got.error(), want.error());
    ASSERT_EQ(*got, *want) << "step " << step;
    live.push_back(io.area(*got, length));
  }
  io.areas.check_invariants();
  EXPECT_GT(extras, 5);
}

// ---- IOVA ranges ----------------------------------------------------------------------------------

TEST(ReservedHolesTest, EmptyReservedTreeIsTheWholeSpace) {
  IntervalTree reserved;
  EXPECT_EQ(reserved_holes(reserved), (std::vector<Interval>{Interval::full()}));
}

TEST(ReservedHolesTest, HolesAroundOverlappingAndAdjacentReservations) {
  Iopt io;
  io.add(io.reserved, {0, 0xfff});
  io.add(io.reserved, {0xfee00000, 0xfeefffff});
  io.add(io.reserved, {0xfef00000, 0xfef0ffff});  // adjacent: merged
  io.add(io.reserved, {0xfee80000, 0xfee8ffff});  // inside another
  io.add(io.reserved, {kMax - 0xfff, kMax});
  EXPECT_EQ(reserved_holes(io.reserved),
            (std::vector<Interval>{{0x1000, 0xfedfffff}, {0xfef10000, kMax - 0x1000}}));
}

TEST(ReservedHolesTest, AreasAndAllowedDoNotAffectTheRanges) {
  Iopt io;
  io.area(0x10000, 0x1000);
  io.add(io.allowed, {0x20000, 0x2ffff});
  EXPECT_EQ(reserved_holes(io.reserved), (std::vector<Interval>{Interval::full()}));
}

TEST(ReservedHolesTest, FullReservationLeavesNoHole) {
  Iopt io;
  io.add(io.reserved, Interval::full());
  EXPECT_TRUE(reserved_holes(io.reserved).empty());
}

}  // namespace
}  // namespace uiommufd
