// DMA by a device through its HWPT (Device::dma_read / dma_write): real memory moves through the
// domain's translation, the domain's permissions and holes refuse it, and a tracking domain records the
// pages written.
#include <cerrno>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "uiommufd/base/page.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"

namespace uiommufd {
namespace {

constexpr std::uint64_t kIova = 0x1000000;  // inside the mock aperture too
constexpr std::uint64_t kPages = 8;
constexpr std::uint64_t kLen = kPages * kPageSize;

class DmaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = std::move(*Context::create());
    ioas_id_ = *Ioas::create(*ctx_);
    ioas_ = std::move(*ctx_->get<Ioas>(ioas_id_, ObjectType::kIoas));
    mem_ = static_cast<unsigned char*>(
        mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(mem_, MAP_FAILED);
    for (std::uint64_t i = 0; i < kLen; ++i) mem_[i] = static_cast<unsigned char>(i * 7);
  }
  void TearDown() override {
    devices_.clear();
    ioas_.reset();
    ctx_.reset();
    munmap(mem_, kLen);
  }
  // Maps [mem_ + offset, + len) at kIova + offset.
  void map(std::uint64_t offset, std::uint64_t len, std::uint32_t flags) {
    std::uint64_t iova = kIova + offset;
    ASSERT_TRUE(
        ioas_->map(reinterpret_cast<std::uint64_t>(mem_) + offset, len, &iova, flags | Ioas::kFixedIova)
            .ok());
  }
  Device& device(Device::Kind kind) {
    const std::uint32_t id = *Device::create(*ctx_, kind);
    devices_.push_back(std::move(*ctx_->get<Device>(id, ObjectType::kDevice)));
    return *devices_.back();
  }

  // A HWPT with dirty tracking on the IOAS, the mock device attached to it.
  ObjectRef<HwptPaging> tracking_hwpt(Device& dev) {
    HwptAllocArgs args;
    args.dev_id = dev.id();
    args.pt_id = ioas_id_;
    args.flags = kHwptAllocDirtyTracking;
    const Result<std::uint32_t> id = HwPagetable::alloc(*ctx_, args);
    if (!id.ok() || !dev.attach(*id).ok()) return {};
    return std::move(*ctx_->get<HwptPaging>(*id, ObjectType::kHwptPaging));
  }

  std::unique_ptr<Context> ctx_;
  std::uint32_t ioas_id_ = 0;
  ObjectRef<Ioas> ioas_;
  std::vector<ObjectRef<Device>> devices_;
  unsigned char* mem_ = nullptr;
};

TEST_F(DmaTest, ReadsAndWritesTheMemoryTheDomainMaps) {
  map(0, kLen, Ioas::kReadable | Ioas::kWriteable);
  Device& dev = device(Device::Kind::kSoftware);
  ASSERT_TRUE(dev.attach(ioas_id_).ok());
  std::vector<unsigned char> got(3 * kPageSize);
  // Across page boundaries, at an odd offset.
  ASSERT_TRUE(dev.dma_read(kIova + kPageSize - 5, got.data(), got.size()).ok());
  EXPECT_EQ(std::memcmp(got.data(), mem_ + kPageSize - 5, got.size()), 0);
  std::vector<unsigned char> data(kPageSize + 9, 0xa5);
  ASSERT_TRUE(dev.dma_write(kIova + 2 * kPageSize + 3, data.data(), data.size()).ok());
  EXPECT_EQ(std::memcmp(mem_ + 2 * kPageSize + 3, data.data(), data.size()), 0);
  EXPECT_EQ(mem_[2 * kPageSize + 2],
            static_cast<unsigned char>((2 * kPageSize + 2) * 7));  // untouched around
}

TEST_F(DmaTest, ReadOnlyMappingsRefuseWritesAndHolesRefuseEverything) {
  map(0, 2 * kPageSize, Ioas::kReadable);
  map(3 * kPageSize, kPageSize, Ioas::kReadable | Ioas::kWriteable);
  Device& dev = device(Device::Kind::kSoftware);
  ASSERT_TRUE(dev.attach(ioas_id_).ok());
  const unsigned char before = mem_[0];
  unsigned char byte = 1;
  EXPECT_EQ(dev.dma_write(kIova, &byte, 1).error(), EPERM);
  EXPECT_EQ(mem_[0], before);
  EXPECT_TRUE(dev.dma_read(kIova, &byte, 1).ok());
  std::vector<unsigned char> buf(2 * kPageSize);
  EXPECT_EQ(dev.dma_read(kIova + kPageSize, buf.data(), buf.size()).error(), EFAULT);  // page 2 is a hole
  EXPECT_EQ(dev.dma_write(kIova + 3 * kPageSize, buf.data(), kPageSize + 1).error(), EFAULT);
}

TEST_F(DmaTest, NeedsAnAttachedPagingHwpt) {
  map(0, kLen, Ioas::kReadable | Ioas::kWriteable);
  Device& dev = device(Device::Kind::kMock);
  unsigned char byte = 0;
  EXPECT_EQ(dev.dma_read(kIova, &byte, 1).error(), EINVAL);
  HwptAllocArgs parent_args;
  parent_args.dev_id = dev.id();
  parent_args.pt_id = ioas_id_;
  parent_args.flags = kHwptAllocNestParent;
  const std::uint32_t parent = *HwPagetable::alloc(*ctx_, parent_args);
  std::uint32_t stage1[2] = {kTestIotlbDefault, 0};
  HwptAllocArgs nested_args;
  nested_args.dev_id = dev.id();
  nested_args.pt_id = parent;
  nested_args.data = {kHwptDataSelftest, reinterpret_cast<std::uint64_t>(stage1), sizeof(stage1)};
  const std::uint32_t nested = *HwPagetable::alloc(*ctx_, nested_args);
  ASSERT_TRUE(dev.attach(nested).ok());
  EXPECT_EQ(dev.dma_read(kIova, &byte, 1).error(), EOPNOTSUPP);
  ASSERT_TRUE(dev.replace(parent).ok());
  EXPECT_TRUE(dev.dma_read(kIova, &byte, 1).ok());
  EXPECT_EQ(byte, mem_[0]);
  dev.detach(Device::kNoPasid);
}

TEST_F(DmaTest, AWriteThroughATrackingMockDomainIsRecordedAsDirty) {
  map(0, kLen, Ioas::kReadable | Ioas::kWriteable);
  Device& dev = device(Device::Kind::kMock);
  ObjectRef<HwptPaging> hwpt = tracking_hwpt(dev);
  ASSERT_TRUE(hwpt);
  Domain& domain = hwpt->domain();
  ASSERT_TRUE(domain.dirty_capable());
  ASSERT_TRUE(domain.set_dirty_tracking(true).ok());
  const unsigned char data[4] = {1, 2, 3, 4};
  ASSERT_TRUE(dev.dma_write(kIova + 5 * kPageSize + 100, data, sizeof(data)).ok());
  EXPECT_EQ(std::memcmp(mem_ + 5 * kPageSize + 100, data, sizeof(data)), 0);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> dirty;
  ASSERT_TRUE(domain
                  .read_and_clear_dirty(
                      kIova, kLen, false,
                      [](void* ctx, std::uint64_t va, std::uint64_t len) {
                        static_cast<std::vector<std::pair<std::uint64_t, std::uint64_t>>*>(ctx)->emplace_back(
                            va, len);
                      },
                      &dirty)
                  .ok());
  // The mock's 2 KiB entry holding offset 100 of page 5.
  ASSERT_EQ(dirty.size(), 1u);
  EXPECT_EQ(dirty[0].first, kIova + 5 * kPageSize);
  EXPECT_EQ(dirty[0].second, kPageSize / 2);
  dev.detach(Device::kNoPasid);
}

// The C++ face of a migration loop (README): tracking on, the device writes, the dirty pages come back as
// runs or as a bitmap, and each read clears what it returned.
TEST_F(DmaTest, TheHwptGivesWhatTheDeviceWroteAsRunsAndAsABitmap) {
  map(0, kLen, Ioas::kReadable | Ioas::kWriteable);
  Device& dev = device(Device::Kind::kMock);
  ObjectRef<HwptPaging> hwpt = tracking_hwpt(dev);
  ASSERT_TRUE(hwpt);
  const unsigned char data[8] = {9, 8, 7, 6, 5, 4, 3, 2};
  // Tracking off: nothing is recorded.
  ASSERT_TRUE(dev.dma_write(kIova + kPageSize, data, sizeof(data)).ok());
  ASSERT_TRUE(hwpt->set_dirty_tracking(true).ok());
  // Across the boundary of pages 2 and 3 (the second 2 KiB item of page 2, the first of page 3), and in
  // page 6.
  ASSERT_TRUE(dev.dma_write(kIova + 3 * kPageSize - 4, data, sizeof(data)).ok());
  ASSERT_TRUE(dev.dma_write(kIova + 6 * kPageSize + 10, data, sizeof(data)).ok());
  using Runs = std::vector<std::pair<std::uint64_t, std::uint64_t>>;
  Runs runs;
  auto collect = [&](std::uint64_t va, std::uint64_t len) { runs.emplace_back(va, len); };
  ASSERT_TRUE(hwpt->for_each_dirty_run(kIova, kLen, /*no_clear=*/true, collect).ok());
  // The mock reports a 4 KiB page mapped at a 4 KiB IOVA by its first 2 KiB, whichever item was written
  // (docs/semantics.md#dirty).
  EXPECT_EQ(runs, (Runs{{kIova + 2 * kPageSize, kPageSize / 2}, {kIova + 3 * kPageSize, kPageSize / 2},
                        {kIova + 6 * kPageSize, kPageSize / 2}}));
  std::uint64_t bitmap = 0;
  ASSERT_TRUE(hwpt->read_dirty_bitmap({kIova, kLen, kPageSize, reinterpret_cast<std::uint64_t>(&bitmap)}).ok());
  EXPECT_EQ(bitmap, (1u << 2) | (1u << 3) | (1u << 6));
  runs.clear();
  ASSERT_TRUE(hwpt->for_each_dirty_run(kIova, kLen, false, collect).ok());
  EXPECT_EQ(runs, Runs{});
  EXPECT_EQ(hwpt->for_each_dirty_run(kIova, 0, false, collect).error(), EINVAL);
  dev.detach(Device::kNoPasid);
}

}  // namespace
}  // namespace uiommufd
