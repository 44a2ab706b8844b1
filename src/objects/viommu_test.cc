// vIOMMU, vDEVICE and hardware queues at the library face (objects/viommu.h): allocation errors in the
// kernel's order, what each object holds (EBUSY), the mmap region table, the tombstone, internal-access pins
// that lock their areas, invalidation of the mock devices' caches, and a fault-injection sweep of each
// allocation that must leave nothing behind. tests/abi/abi_viommu.c checks the same against Linux.
#include "uiommufd/objects/viommu.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/vevent_queue.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd {
namespace {

constexpr std::uint32_t kRW = Ioas::kReadable | Ioas::kWriteable;
constexpr std::uint64_t kBase = MockDomain::kAperture.start;
constexpr std::uint32_t kNoSuchId = 9999;

struct ViommuSelftest {
  std::uint32_t in_data;
  std::uint32_t out_data;
  std::uint64_t out_mmap_offset;
  std::uint64_t out_mmap_length;
};
struct InvalidateEntry {
  std::uint32_t flags;
  std::uint32_t vdev_id;
  std::uint32_t cache_id;
};
struct HwptSelftest {
  std::uint32_t iotlb;
  std::uint32_t pagetable_type;
};

std::uint64_t addr(const void* p) { return reinterpret_cast<std::uint64_t>(p); }

class ViommuTest : public ::testing::Test {
 protected:
  static constexpr std::uint64_t kLen = 16 * kPageSize;

  void SetUp() override {
    pinned_before_ = Pages::total_pinned_pages();
    auto c = Context::create();
    ASSERT_TRUE(c.ok());
    ctx_ = std::move(*c);
    mem_ =
        static_cast<char*>(mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(mem_, MAP_FAILED);
    std::memset(mem_, 0, kLen);
    ioas_ = *Ioas::create(*ctx_);
    auto d = Device::bind(*ctx_, Device::Kind::kMock);
    ASSERT_TRUE(d.ok());
    dev_ = std::move(*d);
    ASSERT_TRUE(dev_->attach(ioas_).ok());
    parent_ = alloc_hwpt(ioas_, kHwptAllocNestParent);
  }
  void TearDown() override {
    fail_nth_set(0);
    if (dev_) Device::unbind(std::move(dev_));
    ctx_.reset();
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "the context leaked pins";
    munmap(mem_, kLen);
  }

  std::uint32_t alloc_hwpt(std::uint32_t pt_id, std::uint32_t flags, UserData data = {}) {
    HwptAllocArgs args;
    args.flags = flags;
    args.dev_id = dev_->id();
    args.pt_id = pt_id;
    args.data = data;
    auto r = HwPagetable::alloc(*ctx_, args);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? *r : 0;
  }
  Result<std::uint32_t> viommu(std::uint32_t hwpt, void* data = nullptr, std::uint32_t len = 0,
                               std::uint32_t type = kViommuTypeSelftest, std::uint32_t dev_id = 0) {
    ViommuAllocArgs args;
    args.type = type;
    args.dev_id = dev_id ? dev_id : dev_->id();
    args.hwpt_id = hwpt;
    args.data_uptr = addr(data);
    args.data_len = len;
    return Viommu::alloc(*ctx_, args);
  }
  Result<std::uint32_t> queue(std::uint32_t viommu_id, std::uint32_t index, std::uint64_t iova,
                              std::uint64_t len) {
    HwQueueAllocArgs args;
    args.viommu_id = viommu_id;
    args.type = kHwQueueTypeSelftest;
    args.index = index;
    args.nesting_parent_iova = iova;
    args.length = len;
    return HwQueue::alloc(*ctx_, args);
  }
  Status map(std::uint64_t iova, std::uint64_t off, std::uint64_t len) {
    auto io = ctx_->get<Ioas>(ioas_, ObjectType::kIoas);
    return (*io)->map(addr(mem_ + off), len, &iova, kRW | Ioas::kFixedIova);
  }
  Status unmap(std::uint64_t iova, std::uint64_t len) {
    auto io = ctx_->get<Ioas>(ioas_, ObjectType::kIoas);
    std::uint64_t unmapped = 0;
    return (*io)->unmap(iova, len, &unmapped);
  }
  Status invalidate(std::uint32_t id, const void* entries, std::uint32_t num, std::uint32_t* done,
                    std::uint32_t entry_len = sizeof(InvalidateEntry),
                    std::uint32_t type = kViommuInvalidateDataSelftest) {
    UserDataArray array{type, addr(entries), entry_len, num};
    Status st = HwPagetable::invalidate(*ctx_, id, array);
    *done = array.entry_num;
    return st;
  }

  std::unique_ptr<Context> ctx_;
  char* mem_ = nullptr;
  std::uint32_t ioas_ = 0, parent_ = 0;
  ObjectRef<Device> dev_;
  std::uint64_t pinned_before_ = 0;
};

TEST_F(ViommuTest, AllocationErrorsComeInTheKernelsOrder) {
  ViommuAllocArgs args;
  args.flags = 1;
  args.type = kViommuTypeSelftest;
  EXPECT_EQ(Viommu::alloc(*ctx_, args).error(), EOPNOTSUPP);
  EXPECT_EQ(viommu(parent_, nullptr, 0, kViommuTypeDefault).error(), EOPNOTSUPP);
  EXPECT_EQ(viommu(parent_, nullptr, 0, kViommuTypeSelftest, kNoSuchId).error(), ENOENT);
  EXPECT_EQ(viommu(kNoSuchId, nullptr, 0, 0xdead).error(), EOPNOTSUPP);  // the type before the HWPT
  EXPECT_EQ(viommu(0).error(), ENOENT);
  EXPECT_EQ(viommu(ioas_).error(), ENOENT);
  EXPECT_EQ(viommu(alloc_hwpt(ioas_, 0)).error(), EINVAL);
  auto sw = Device::create(*ctx_, Device::Kind::kSoftware);
  EXPECT_EQ(viommu(parent_, nullptr, 0, kViommuTypeSelftest, *sw).error(), EOPNOTSUPP);
}

TEST_F(ViommuTest, HoldsItsParentAndLoopsBackItsData) {
  ViommuSelftest data{0xbeef, 0, 0, 0};
  auto id = viommu(parent_, &data, sizeof(data));
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(data.out_data, 0xbeefu);
  EXPECT_EQ(data.out_mmap_offset, kPageSize);
  EXPECT_EQ(data.out_mmap_length, 2 * kPageSize);
  EXPECT_EQ(ctx_->destroy(parent_).error(), EBUSY);
  // The region maps exactly: same offset, same length.
  EXPECT_EQ(ctx_->get_mmap(kPageSize, kPageSize).error(), ENXIO);
  EXPECT_EQ(ctx_->get_mmap(2 * kPageSize, 2 * kPageSize).error(), ENXIO);
  auto region = ctx_->get_mmap(kPageSize, 2 * kPageSize);
  ASSERT_TRUE(region.ok());
  std::uint32_t word = 0;
  ASSERT_EQ(pread(region->memfd, &word, sizeof(word), 0), static_cast<ssize_t>(sizeof(word)));
  EXPECT_EQ(word, 0xbeefu);
  // The mapping's user keeps the vIOMMU.
  EXPECT_EQ(ctx_->destroy(*id).error(), EBUSY);
  region->owner->drop_user();
  EXPECT_TRUE(ctx_->destroy(*id).ok());
  EXPECT_EQ(ctx_->get_mmap(kPageSize, 2 * kPageSize).error(), ENXIO);
  EXPECT_TRUE(ctx_->destroy(parent_).ok());
}

TEST_F(ViommuTest, DataLengthAndPointerAreChecked) {
  ViommuSelftest data{1, 0, 0, 0};
  EXPECT_EQ(viommu(parent_, &data, 4).error(), EINVAL);
  EXPECT_EQ(viommu(parent_, &data, sizeof(data) + 1).error(), EINVAL);
  EXPECT_EQ(viommu(parent_, reinterpret_cast<void*>(0x1000), sizeof(data)).error(), EFAULT);
  // The refusals gave their ids and region offsets back.
  auto id = viommu(parent_, &data, sizeof(data));
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(data.out_mmap_offset, kPageSize);
  EXPECT_EQ(*id, parent_ + 1);
}

TEST_F(ViommuTest, RegionsTakeTheLowestFreeOffset) {
  ViommuSelftest a{1, 0, 0, 0}, b{2, 0, 0, 0}, c{3, 0, 0, 0};
  auto ia = viommu(parent_, &a, sizeof(a));
  auto ib = viommu(parent_, &b, sizeof(b));
  ASSERT_TRUE(ia.ok() && ib.ok());
  EXPECT_EQ(a.out_mmap_offset, kPageSize);
  EXPECT_EQ(b.out_mmap_offset, 3 * kPageSize);
  ASSERT_TRUE(ctx_->destroy(*ia).ok());
  ASSERT_TRUE(viommu(parent_, &c, sizeof(c)).ok());
  EXPECT_EQ(c.out_mmap_offset, kPageSize);
}

TEST_F(ViommuTest, NestedHwptsOnAViommuNeedAVirtualIdToAttach) {
  auto v = viommu(parent_);
  ASSERT_TRUE(v.ok());
  HwptSelftest cfg{kTestIotlbDefault, 0};
  const UserData data{kHwptDataSelftest, addr(&cfg), sizeof(cfg)};
  HwptAllocArgs args;
  args.dev_id = dev_->id();
  args.pt_id = *v;
  args.flags = kHwptAllocNestParent;
  args.data = data;
  EXPECT_EQ(HwPagetable::alloc(*ctx_, args).error(), EOPNOTSUPP);
  args.flags = 0;
  args.data = {};
  EXPECT_EQ(HwPagetable::alloc(*ctx_, args).error(), EOPNOTSUPP);
  const std::uint32_t nested = alloc_hwpt(*v, 0, data);
  EXPECT_EQ(ctx_->destroy(*v).error(), EBUSY);
  EXPECT_EQ(dev_->replace(nested).error(), ENOENT);
  auto vdev = Vdevice::alloc(*ctx_, *v, dev_->id(), 0x99);
  ASSERT_TRUE(vdev.ok());
  ASSERT_TRUE(dev_->replace(nested).ok());
  EXPECT_EQ(ctx_->destroy(nested).error(), EBUSY);
  ASSERT_TRUE(dev_->replace(ioas_).ok());
  EXPECT_TRUE(ctx_->destroy(nested).ok());
  EXPECT_TRUE(ctx_->destroy(*vdev).ok());
  EXPECT_TRUE(ctx_->destroy(*v).ok());
}

TEST_F(ViommuTest, VdevicesAreOnePerDeviceAndPerVirtualId) {
  auto v = viommu(parent_);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(Vdevice::alloc(*ctx_, kNoSuchId, dev_->id(), 1).error(), ENOENT);
  EXPECT_EQ(Vdevice::alloc(*ctx_, *v, kNoSuchId, 1).error(), ENOENT);
  auto sw = Device::create(*ctx_, Device::Kind::kSoftware);
  EXPECT_EQ(Vdevice::alloc(*ctx_, *v, *sw, 1).error(), EINVAL);
  auto first = Vdevice::alloc(*ctx_, *v, dev_->id(), 0x99);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(Vdevice::alloc(*ctx_, *v, dev_->id(), 0x98).error(), EEXIST);
  auto other = Device::create(*ctx_, Device::Kind::kMock);
  EXPECT_EQ(Vdevice::alloc(*ctx_, *v, *other, 0x99).error(), EEXIST);
  auto second = Vdevice::alloc(*ctx_, *v, *other, 0x88);
  ASSERT_TRUE(second.ok());
  auto viommu_ref = ctx_->get<Viommu>(*v, ObjectType::kViommu);
  EXPECT_EQ(*(*viommu_ref)->virt_id_of(*dev_), 0x99u);
  EXPECT_EQ((*viommu_ref)->device_of(0x88)->get()->id(), *other);
  EXPECT_EQ((*viommu_ref)->device_of(0x77).error(), ENOENT);
  viommu_ref->reset();
  EXPECT_EQ(ctx_->destroy(*v).error(), EBUSY);
  // The device is held by its vDEVICE.
  EXPECT_EQ(ctx_->destroy(*other).error(), EBUSY);
  EXPECT_TRUE(ctx_->destroy(*second).ok());
  EXPECT_TRUE(ctx_->destroy(*other).ok());
}

TEST_F(ViommuTest, AVdeviceWhoseDeviceGoesFirstLeavesATombstone) {
  auto v = viommu(parent_);
  auto vdev = Vdevice::alloc(*ctx_, *v, dev_->id(), 0x99);
  ASSERT_TRUE(vdev.ok());
  Device::unbind(std::move(dev_));
  EXPECT_EQ(ctx_->destroy(*vdev).error(), ENOENT);
  // The id is never handed out again; the virtual id is free.
  for (int i = 0; i < 4; ++i) EXPECT_NE(*Ioas::create(*ctx_), *vdev);
  auto other = Device::create(*ctx_, Device::Kind::kMock);
  EXPECT_TRUE(Vdevice::alloc(*ctx_, *v, *other, 0x99).ok());
  // A context with tombstones still counts as holding objects.
  EXPECT_NE(ctx_->object_count(), 0u);
}

TEST_F(ViommuTest, InvalidationClearsTheNamedDevicesCache) {
  auto v = viommu(parent_);
  ASSERT_TRUE(Vdevice::alloc(*ctx_, *v, dev_->id(), 0x99).ok());
  std::uint32_t done = 7;
  InvalidateEntry e[2] = {};
  EXPECT_TRUE(invalidate(*v, e, 0, &done).ok());
  EXPECT_EQ(done, 0u);
  EXPECT_EQ(invalidate(*v, e, 0, &done, sizeof(e[0]), 0x1234).error(), EINVAL);
  e[0] = {0, 0x9, 0};
  EXPECT_EQ(invalidate(*v, e, 1, &done).error(), EINVAL);
  EXPECT_EQ(done, 0u);
  e[0] = {0, 0x99, 0};
  e[1] = {0xffffffff, 0x99, 1};
  EXPECT_EQ(invalidate(*v, e, 2, &done).error(), EOPNOTSUPP);
  EXPECT_EQ(done, 1u);
  EXPECT_TRUE(dev_->check_cache(0, 0).ok());
  EXPECT_TRUE(dev_->check_cache(1, kTestDevCacheDefault).ok());
  e[0] = {kTestInvalidateFlagAll, 0x99, 0};
  EXPECT_TRUE(invalidate(*v, e, 1, &done).ok());
  for (std::uint32_t i = 0; i < Device::kCacheNum; ++i) EXPECT_TRUE(dev_->check_cache(i, 0).ok());
  // A longer entry with a non-zero tail is E2BIG before any entry runs.
  struct {
    InvalidateEntry e;
    std::uint32_t tail;
  } longer[1] = {{{0, 0x99, 0}, 1}};
  EXPECT_EQ(invalidate(*v, longer, 1, &done, sizeof(longer[0])).error(), E2BIG);
  EXPECT_EQ(done, 0u);
  // Only nested HWPTs and vIOMMUs take invalidations.
  EXPECT_EQ(invalidate(parent_, e, 1, &done).error(), EINVAL);
}

TEST_F(ViommuTest, HardwareQueuesPinTheirMemoryAndFillSlotsInOrder) {
  auto v = viommu(parent_);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(queue(*v, 0, kBase, kPageSize).error(), ENOENT);
  ASSERT_TRUE(map(kBase, 0, kPageSize).ok());
  ASSERT_TRUE(map(kBase + kPageSize, kPageSize, kPageSize).ok());
  EXPECT_EQ(queue(*v, 1, kBase, kPageSize).error(), EIO);
  EXPECT_EQ(queue(*v, kTestHwQueueMax, kBase, kPageSize).error(), EINVAL);
  const std::uint64_t pinned = Pages::total_pinned_pages();
  auto q0 = queue(*v, 0, kBase, kPageSize);
  ASSERT_TRUE(q0.ok());
  EXPECT_GE(Pages::total_pinned_pages(), pinned);
  EXPECT_EQ(queue(*v, 0, kBase, kPageSize).error(), EEXIST);
  EXPECT_EQ(unmap(kBase, kPageSize).error(), EBUSY);
  EXPECT_TRUE(unmap(kBase + kPageSize, kPageSize).ok());
  auto q1 = queue(*v, 1, kBase + kPageSize / 2, kPageSize / 2);
  ASSERT_TRUE(q1.ok());
  EXPECT_EQ(ctx_->destroy(*q0).error(), EBUSY);
  EXPECT_EQ(ctx_->destroy(*v).error(), EBUSY);
  EXPECT_TRUE(ctx_->destroy(*q1).ok());
  EXPECT_TRUE(ctx_->destroy(*q0).ok());
  EXPECT_TRUE(unmap(kBase, kPageSize).ok());
}

TEST_F(ViommuTest, HardwareQueueMemoryMustBePhysicallyContiguous) {
  auto v = viommu(parent_);
  ASSERT_TRUE(map(kBase, 0, 4 * kPageSize).ok());
  // Ordinary pages are not known to be contiguous, so only a queue within one page is.
  EXPECT_EQ(queue(*v, 0, kBase, 2 * kPageSize).error(), EFAULT);
  EXPECT_EQ(queue(*v, 0, kBase + 100, kPageSize).error(), EFAULT);
  EXPECT_TRUE(queue(*v, 0, kBase + 100, kPageSize - 100).ok());
  EXPECT_EQ(queue(*v, 1, kBase, ~std::uint64_t{0} - 0x100).error(), EOVERFLOW);
  EXPECT_EQ(queue(*v, 1, 0x800, ~std::uint64_t{0} - 0x1000).error(), ERANGE);
}

// Every allocation, failed at each fault site in turn, leaves no object, pin or region behind.
TEST_F(ViommuTest, FaultSweepsLeaveNothingBehind) {
  ASSERT_TRUE(map(kBase, 0, kPageSize).ok());
  const std::size_t objects = ctx_->object_count();
  const std::uint64_t pinned = Pages::total_pinned_pages();
  ViommuSelftest data{5, 0, 0, 0};
  std::uint32_t made = 0;
  SweepResult r = sweep_fail_nth([] {},
                                 [&]() -> Status {
                                   auto v = viommu(parent_, &data, sizeof(data));
                                   if (!v.ok()) return v.status();
                                   made = *v;
                                   auto vdev = Vdevice::alloc(*ctx_, *v, dev_->id(), 0x42);
                                   Status st = vdev.status();
                                   Result<std::uint32_t> q =
                                       st.ok() ? queue(*v, 0, kBase, kPageSize) : Result<std::uint32_t>(st);
                                   st = q.status();
                                   if (st.ok()) {
                                     InvalidateEntry e{kTestInvalidateFlagAll, 0x42, 0};
                                     std::uint32_t done = 0;
                                     st = invalidate(*v, &e, 1, &done);
                                   }
                                   if (q.ok()) {
                                     EXPECT_TRUE(ctx_->destroy(*q).ok());
                                   }
                                   if (vdev.ok()) {
                                     EXPECT_TRUE(ctx_->destroy(*vdev).ok());
                                   }
                                   EXPECT_TRUE(ctx_->destroy(*v).ok());
                                   return st;
                                 },
                                 [&](unsigned, Status) {
                                   EXPECT_EQ(ctx_->object_count(), objects);
                                   EXPECT_EQ(Pages::total_pinned_pages(), pinned);
                                   EXPECT_EQ(ctx_->get_mmap(kPageSize, 2 * kPageSize).error(), ENXIO);
                                 });
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_FALSE(r.hit_cap);
  const std::vector<std::string>& sites = r.fired_sites;
  for (const char* want :
       {"objects.alloc", "viommu.alloc", "objects.mmap", "viommu.hw_queue", "viommu.invalidate"})
    EXPECT_NE(std::find(sites.begin(), sites.end(), want), sites.end()) << want;
  EXPECT_NE(made, 0u);
}

// ---- vEVENT queues ----------------------------------------------------------------------------------

class VeventTest : public ViommuTest {
 protected:
  void SetUp() override {
    ViommuTest::SetUp();
    auto v = viommu(parent_);
    ASSERT_TRUE(v.ok());
    viommu_ = std::move(*ctx_->get<Viommu>(*v, ObjectType::kViommu));
  }
  void TearDown() override {
    viommu_.reset();
    ViommuTest::TearDown();
  }
  Status report(std::uint32_t virt_id, std::uint32_t type = kVeventqTypeSelftest) {
    return viommu_->report_event(type, &virt_id, sizeof(virt_id));
  }
  // Reads into buf_; returns the bytes or the error.
  Result<std::size_t> read(VeventQueue& q, std::size_t count) { return q.read(addr(buf_), count); }
  VeventHeader header(std::size_t at) const {
    VeventHeader h;
    std::memcpy(&h, buf_ + at, sizeof(h));
    return h;
  }
  std::uint32_t payload(std::size_t at) const {
    std::uint32_t v;
    std::memcpy(&v, buf_ + at + sizeof(VeventHeader), sizeof(v));
    return v;
  }
  VeventQueue& queue(std::uint32_t id) { return *ctx_->get<VeventQueue>(id, ObjectType::kVeventq)->get(); }

  static constexpr std::size_t kRec = sizeof(VeventHeader) + sizeof(std::uint32_t);
  ObjectRef<Viommu> viommu_;
  unsigned char buf_[512] = {};
};

TEST_F(VeventTest, CreationChecksFlagsTypeDepthAndOneQueuePerType) {
  EXPECT_EQ(VeventQueue::create_reserved(*viommu_, 1, kVeventqTypeSelftest, 1).error(), EOPNOTSUPP);
  EXPECT_EQ(VeventQueue::create(*viommu_, kVeventqTypeDefault, 1).error(), EOPNOTSUPP);
  EXPECT_EQ(VeventQueue::create(*viommu_, kVeventqTypeSelftest, 0).error(), EINVAL);
  EXPECT_EQ(VeventQueue::create(*viommu_, kVeventqTypeSelftest, kVeventqMaxDepth + 1).error(), EINVAL);
  auto q = VeventQueue::create(*viommu_, kVeventqTypeSelftest, kVeventqMaxDepth);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(VeventQueue::create(*viommu_, kVeventqTypeSelftest, 1).error(), EEXIST);
  EXPECT_TRUE(VeventQueue::create(*viommu_, 0x1234, 1).ok());
  EXPECT_EQ(ctx_->destroy(viommu_->id()).error(), EBUSY);
  // A queue being made is not reported to; an aborted one leaves its type free.
  EXPECT_TRUE(ctx_->destroy(*q).ok());
  auto reserved = VeventQueue::create_reserved(*viommu_, 0, kVeventqTypeSelftest, 1);
  ASSERT_TRUE(reserved.ok());
  EXPECT_EQ(report(1).error(), EOPNOTSUPP);
  (*reserved)->abort_reserved();
  EXPECT_TRUE(VeventQueue::create(*viommu_, kVeventqTypeSelftest, 1).ok());
}

// A queue whose creation fails at any site gives its user of the vIOMMU back.
TEST_F(VeventTest, FailedCreationsLeaveTheViommuDestroyable) {
  const std::size_t objects = ctx_->object_count();
  SweepResult r = sweep_fail_nth([] {},
                                 [&]() -> Status {
                                   Result<std::uint32_t> q =
                                       VeventQueue::create(*viommu_, kVeventqTypeSelftest, 2);
                                   if (q.ok()) {
                                     EXPECT_TRUE(ctx_->destroy(*q).ok());
                                   }
                                   return q.status();
                                 },
                                 [&](unsigned, Status) {
                                   EXPECT_EQ(ctx_->object_count(), objects);
                                   EXPECT_EQ(viommu_->users(), 2u);  // the table's and the test's
                                 });
  EXPECT_TRUE(r.final_status.ok());
  EXPECT_GE(r.sites_failed, 1u);
}

TEST_F(VeventTest, OverflowQueuesOneLostHeaderAndSequencesCountEveryReport) {
  EXPECT_EQ(report(1).error(), EOPNOTSUPP);
  auto id = VeventQueue::create(*viommu_, kVeventqTypeSelftest, 2);
  ASSERT_TRUE(id.ok());
  VeventQueue& q = queue(*id);
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_TRUE(report(0x99 + i).ok());
  EXPECT_EQ(q.event_count(), 2u);
  ASSERT_EQ(*read(q, sizeof(buf_)), 2 * kRec + sizeof(VeventHeader));
  EXPECT_EQ(header(0).sequence, 0u);
  EXPECT_EQ(payload(0), 0x99u);
  EXPECT_EQ(header(kRec).sequence, 1u);
  EXPECT_EQ(header(2 * kRec).flags, kVeventqFlagLostEvents);
  EXPECT_EQ(header(2 * kRec).sequence, 3u);  // the second overflow moved the one header
  EXPECT_EQ(*read(q, sizeof(buf_)), 0u);
  // After an overflow and one read, the next event takes the header's place at the tail.
  for (std::uint32_t i = 0; i < 3; ++i) EXPECT_TRUE(report(7).ok());
  ASSERT_EQ(*read(q, kRec), kRec);
  EXPECT_TRUE(report(8).ok());
  ASSERT_EQ(*read(q, sizeof(buf_)), 2 * kRec);
  EXPECT_EQ(header(0).sequence, 5u);
  EXPECT_EQ(header(kRec).sequence, 7u);
  EXPECT_EQ(header(kRec).flags, 0u);
}

TEST_F(VeventTest, ReadsFollowTheShortBufferAndFaultRules) {
  auto id = VeventQueue::create(*viommu_, kVeventqTypeSelftest, 4);
  VeventQueue& q = queue(*id);
  EXPECT_EQ(read(q, 7).error(), EINVAL);
  EXPECT_EQ(*read(q, 8), 0u);
  ASSERT_TRUE(report(3).ok());
  EXPECT_EQ(read(q, 8).error(), EINVAL);
  EXPECT_EQ(read(q, kRec - 1).error(), EINVAL);
  EXPECT_EQ(q.read(0x1000, kRec).error(), EFAULT);
  EXPECT_TRUE(q.readable());
  ASSERT_TRUE(report(4).ok());
  EXPECT_EQ(*read(q, kRec + 10), kRec);  // the second does not fit: the first alone
  EXPECT_EQ(payload(0), 3u);
  EXPECT_EQ(*read(q, kRec), kRec);
  EXPECT_EQ(payload(0), 4u);
  EXPECT_FALSE(q.readable());
}

TEST_F(VeventTest, ReadinessAndHandlerFollowTheQueue) {
  auto id = VeventQueue::create(*viommu_, kVeventqTypeSelftest, 4);
  VeventQueue& q = queue(*id);
  auto ready = EventfdReadiness::create();
  ASSERT_TRUE(ready.ok());
  q.set_readiness(*ready);
  pollfd p{(*ready)->fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0);
  std::vector<std::uint32_t> seen;
  q.set_handler([&](VeventQueue& self) {
    unsigned char b[64];
    Result<std::size_t> n = self.read(addr(b), sizeof(b));
    ASSERT_TRUE(n.ok());
    for (std::size_t at = 0; at + kRec <= *n; at += kRec) {
      std::uint32_t v;
      std::memcpy(&v, b + at + sizeof(VeventHeader), sizeof(v));
      seen.push_back(v);
    }
  });
  ASSERT_TRUE(report(11).ok());
  ASSERT_TRUE(report(12).ok());
  EXPECT_EQ(seen, (std::vector<std::uint32_t>{11, 12}));
  q.set_handler(nullptr);
  ASSERT_TRUE(report(13).ok());
  EXPECT_EQ(poll(&p, 1, 0), 1);
  q.set_readiness(nullptr);
}

TEST_F(VeventTest, TriggerGoesThroughTheDevicesNestedHwpt) {
  auto id = VeventQueue::create(*viommu_, kVeventqTypeSelftest, 4);
  VeventQueue& q = queue(*id);
  EXPECT_EQ(dev_->event_target().error(), ENOENT);
  HwptSelftest cfg{kTestIotlbDefault, 0};
  const std::uint32_t nested = alloc_hwpt(viommu_->id(), 0, {kHwptDataSelftest, addr(&cfg), sizeof(cfg)});
  ASSERT_TRUE(Vdevice::alloc(*ctx_, viommu_->id(), dev_->id(), 0x42).ok());
  ASSERT_TRUE(dev_->replace(nested).ok());
  auto target = dev_->event_target();
  ASSERT_TRUE(target.ok());
  EXPECT_EQ(target->first.get(), viommu_.get());
  EXPECT_EQ(target->second, 0x42u);
  target->first.reset();
  ASSERT_TRUE(dev_->replace(ioas_).ok());
  EXPECT_EQ(dev_->event_target().error(), ENOENT);
  EXPECT_EQ(q.event_count(), 0u);
}

TEST_F(VeventTest, FailedAllocationsAreCountedAsLost) {
  auto id = VeventQueue::create(*viommu_, kVeventqTypeSelftest, 4);
  VeventQueue& q = queue(*id);
  SweepResult r = sweep_fail_nth([] {},
                                 [&]() -> Status {
                                   Status st = report(5);
                                   Result<std::size_t> n = read(q, sizeof(buf_));
                                   if (!st.ok()) {
                                     // The report's record was the failure: the lost header stands for it.
                                     EXPECT_TRUE(n.ok());
                                     EXPECT_EQ(header(0).flags, kVeventqFlagLostEvents);
                                     return st;
                                   }
                                   if (!n.ok()) return n.status();
                                   return Status();
                                 },
                                 [&](unsigned, Status) { (void)read(q, sizeof(buf_)); });
  EXPECT_TRUE(r.final_status.ok());
  const std::vector<std::string>& sites = r.fired_sites;
  EXPECT_NE(std::find(sites.begin(), sites.end(), "vevent.alloc"), sites.end());
  EXPECT_EQ(q.event_count(), 0u);
}

}  // namespace
}  // namespace uiommufd
