// The temporary memory limit (IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT) cuts pinning and domain filling into
// batches. At its minimum every page is a batch of its own; a map, a copy, an access pin and domain
// attaches must then take many batch steps and still give exactly the state the default limit gives:
// the same translations in every domain, pins, charges and access page handles.
#include <map>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "uiommufd/mm/accounting.h"
#include "uiommufd/objects/access.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/pinned_ranges.h"

namespace uiommufd {
namespace {

constexpr std::uint32_t kRW = Ioas::kReadable | Ioas::kWriteable | Ioas::kFixedIova;
constexpr std::uint64_t kPagesMapped = 700;  // more than two 2 MiB blocks, not a multiple of one
constexpr std::uint64_t kIova = 0x40000000;

struct Outcome {
  std::uint64_t batch_steps = 0;
  // Per HWPT id, the translation of every 2 KiB unit of the mapped ranges (0 when unmapped).
  std::map<std::uint32_t, std::vector<PhysAddr>> translations;
  std::uint64_t pinned = 0;
  std::uint64_t charged = 0;
  std::vector<PhysAddr> access_pages;
  std::string invariants;
};

// Maps a buffer into IOAS a (with a mock device attached: filled at once), copies part of it into IOAS b,
// maps it again 2 KiB into its first page on IOAS c, pins through an access, and attaches devices
// afterwards (one joining a's HWPT, the first domain of b).
Outcome run_scenario(char* mem, std::size_t limit) {
  Pages::set_temp_memory_limit(limit);
  Outcome out;
  const std::uint64_t steps_before = Pages::batch_steps();
  const std::uint64_t charged_before = account_pinned_vm();
  const std::uint64_t pinned_before = Pages::total_pinned_pages();
  {
    std::unique_ptr<Context> ctx = std::move(*Context::create());
    const std::uint32_t a = *Ioas::create(*ctx), b = *Ioas::create(*ctx), c = *Ioas::create(*ctx);
    auto ioas = [&](std::uint32_t id) { return std::move(*ctx->get<Ioas>(id, ObjectType::kIoas)); };
    auto device = [&](std::uint32_t id) { return std::move(*ctx->get<Device>(id, ObjectType::kDevice)); };
    const std::uint32_t mock_a = *Device::create(*ctx, Device::Kind::kMock);
    const std::uint32_t hwpt_mock_a = *device(mock_a)->attach(a);
    std::uint64_t iova = kIova;
    EXPECT_TRUE(
        ioas(a)->map(reinterpret_cast<std::uint64_t>(mem), kPagesMapped * kPageSize, &iova, kRW).ok());
    std::uint64_t dst = kIova;
    EXPECT_TRUE(ioas(b)->copy_from(*ioas(a), kIova + 5 * kPageSize, 400 * kPageSize, &dst, kRW).ok());
    // On c, a start 2 KiB into a page: batch edges then fall inside IOVA pages of the mock's 2 KiB granule.
    const std::uint32_t mock_c = *Device::create(*ctx, Device::Kind::kMock);
    const std::uint32_t hwpt_mock_c = *device(mock_c)->attach(c);
    iova = kIova + 0x800;
    EXPECT_TRUE(
        ioas(c)->map(reinterpret_cast<std::uint64_t>(mem) + 0x800, 100 * kPageSize - 0x800, &iova, kRW).ok());

    PinnedRanges ranges;
    Access* raw = nullptr;
    Access::Ops ops;
    ops.unmap = [&](std::uint64_t iova, std::uint64_t length) { ranges.unmap(*raw, iova, length); };
    ObjectRef<Access> access = std::move(*Access::create(*ctx, ops));
    raw = access.get();
    EXPECT_TRUE(access->attach(a).ok());
    std::vector<AccessPage> pages;
    EXPECT_TRUE(ranges.pin(*access, kIova + 99 * kPageSize, 64 * kPageSize, &pages, 0).ok());
    for (const AccessPage& p : pages) out.access_pages.push_back(p.phys);

    const std::uint32_t soft_a = *Device::create(*ctx, Device::Kind::kMock);
    const std::uint32_t hwpt_soft_a = *device(soft_a)->attach(hwpt_mock_a);  // joins: no new domain
    const std::uint32_t mock_b = *Device::create(*ctx, Device::Kind::kMock);
    const std::uint32_t hwpt_mock_b = *device(mock_b)->attach(b);  // the first domain of b: pins
    (void)hwpt_soft_a;

    for (std::uint32_t hwpt_id : {hwpt_mock_a, hwpt_mock_b, hwpt_mock_c}) {
      ObjectRef<HwptPaging> hwpt = std::move(*ctx->get<HwptPaging>(hwpt_id, ObjectType::kHwptPaging));
      std::vector<PhysAddr>& t = out.translations[hwpt_id];
      for (std::uint64_t off = 0; off < kPagesMapped * kPageSize; off += 0x800)
        t.push_back(hwpt->domain().iova_to_phys(kIova + off).value_or(0));
    }
    out.pinned = Pages::total_pinned_pages() - pinned_before;
    out.charged = account_pinned_vm() - charged_before;
    for (std::uint32_t id : {a, b, c}) out.invariants += ioas(id)->iopt().check_invariants();
    Access::destroy(std::move(access));
  }
  out.batch_steps = Pages::batch_steps() - steps_before;
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before) << "pins leaked";
  Pages::set_temp_memory_limit(Pages::kDefaultTempMemoryLimit);
  return out;
}

TEST(TempMemoryLimitTest, TheMinimumLimitCutsTheWorkIntoPagesAndChangesNoResult) {
  const std::size_t len = kPagesMapped * kPageSize + (2u << 20);
  void* region = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(region, MAP_FAILED);
  // 2 MiB aligned, so that the default limit's batches (32 MiB) cover it in one and large entries form.
  char* mem = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(region) + (2u << 20) - 1) &
                                      ~std::uintptr_t{(2u << 20) - 1});

  EXPECT_EQ(Pages::batch_pages(), 8192u);
  const Outcome normal = run_scenario(mem, Pages::kDefaultTempMemoryLimit);
  Pages::set_temp_memory_limit(12);
  EXPECT_EQ(Pages::batch_pages(), 1u);
  Pages::set_temp_memory_limit(100);  // 12 handles, rounded down to 8
  EXPECT_EQ(Pages::batch_pages(), 8u);
  const Outcome smallest = run_scenario(mem, 12);

  EXPECT_EQ(normal.invariants, "");
  EXPECT_EQ(smallest.invariants, "");
  EXPECT_EQ(smallest.translations, normal.translations);
  EXPECT_EQ(smallest.pinned, normal.pinned);
  EXPECT_EQ(smallest.charged, normal.charged);
  EXPECT_EQ(smallest.access_pages, normal.access_pages);
  EXPECT_EQ(smallest.access_pages.size(), 64u);
  // Every page of every fill and pin was its own batch: a's fill (700 pages) and pin (700), b's attach
  // (400), c's fill and pin (100 each); with the default limit each of those is one or two.
  EXPECT_GE(smallest.batch_steps, 2 * kPagesMapped + 400 + 2 * 100);
  EXPECT_LE(normal.batch_steps, 20u);
  munmap(region, len);
}

}  // namespace
}  // namespace uiommufd
