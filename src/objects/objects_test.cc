// Context, IOAS, HWPT and device objects: ids, users, destroy rules, teardown, and the IOAS entry points'
// argument checks.
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uiommufd/base/fault.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"

namespace uiommufd {
namespace {

class ObjectsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pinned_before_ = Pages::total_pinned_pages();
    auto c = Context::create();
    ASSERT_TRUE(c.ok());
    ctx_ = std::move(*c);
    mem_ = mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem_, MAP_FAILED);
  }
  void TearDown() override {
    ctx_.reset();
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "the context leaked pins";
    munmap(mem_, kLen);
  }
  std::uint64_t uptr(std::uint64_t off = 0) const { return reinterpret_cast<std::uint64_t>(mem_) + off; }
  Ioas& ioas(std::uint32_t id) {
    auto r = ctx_->get<Ioas>(id, ObjectType::kIoas);
    EXPECT_TRUE(r.ok());
    return *r->get();  // the table keeps it alive for the test
  }
  Device& device(std::uint32_t id) {
    auto r = ctx_->get<Device>(id, ObjectType::kDevice);
    EXPECT_TRUE(r.ok());
    return *r->get();
  }

  static constexpr std::size_t kLen = 64 * kPageSize;
  std::unique_ptr<Context> ctx_;
  void* mem_ = nullptr;
  std::uint64_t pinned_before_ = 0;
};

constexpr std::uint32_t kRW = Ioas::kReadable | Ioas::kWriteable;

TEST_F(ObjectsTest, IdsStartAtOneAndAreReusedLowestFirst) {
  auto a = Ioas::create(*ctx_), b = Ioas::create(*ctx_), c = Ioas::create(*ctx_);
  EXPECT_EQ(*a, 1u);
  EXPECT_EQ(*b, 2u);
  EXPECT_EQ(*c, 3u);
  ASSERT_TRUE(ctx_->destroy(2).ok());
  EXPECT_EQ(*Ioas::create(*ctx_), 2u);
}

TEST_F(ObjectsTest, DestroyOfAnUnknownIdIsEnoent) {
  EXPECT_EQ(ctx_->destroy(1).error(), ENOENT);
  EXPECT_EQ(ctx_->destroy(0).error(), ENOENT);
}

TEST_F(ObjectsTest, DestroyWhileInUseIsEbusy) {
  std::uint32_t id = *Ioas::create(*ctx_);
  {
    auto ref = ctx_->get<Ioas>(id, ObjectType::kIoas);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(ctx_->destroy(id).error(), EBUSY);
  }
  EXPECT_TRUE(ctx_->destroy(id).ok());
  EXPECT_EQ(ctx_->get<Ioas>(id, ObjectType::kIoas).error(), ENOENT);
}

TEST_F(ObjectsTest, LookupOfTheWrongTypeIsEnoent) {
  std::uint32_t id = *Ioas::create(*ctx_);
  EXPECT_EQ(ctx_->get<Object>(id, ObjectType::kDevice).error(), ENOENT);
  EXPECT_TRUE(ctx_->get<Object>(id, ObjectType::kAny).ok());
}

TEST_F(ObjectsTest, LookupFindsObjectsBeyondTheFirstTableAndNotDestroyedOnes) {
  // Enough objects that the lock-free lookup table grows several times.
  constexpr std::uint32_t kCount = 100;
  for (std::uint32_t i = 1; i <= kCount; ++i) ASSERT_EQ(*Ioas::create(*ctx_), i);
  for (std::uint32_t i = 1; i <= kCount; ++i) {
    auto ref = ctx_->get<Ioas>(i, ObjectType::kIoas);
    ASSERT_TRUE(ref.ok()) << i;
    EXPECT_EQ((*ref)->id(), i);
  }
  for (std::uint32_t i = 1; i <= kCount; i += 2) ASSERT_TRUE(ctx_->destroy(i).ok());
  for (std::uint32_t i = 1; i <= kCount; ++i)
    EXPECT_EQ(ctx_->get<Ioas>(i, ObjectType::kIoas).ok(), i % 2 == 0) << i;
  EXPECT_EQ(ctx_->get<Ioas>(kCount + 1, ObjectType::kIoas).error(), ENOENT);
  EXPECT_EQ(ctx_->get<Ioas>(0xffffffffu, ObjectType::kIoas).error(), ENOENT);
}

TEST_F(ObjectsTest, ReservedButUnpublishedIdIsNotFound) {
  struct Plain final : Object {
    explicit Plain(Context& c) : Object(c, ObjectType::kSelftest) {}
  };
  auto id = ctx_->reserve(std::make_unique<Plain>(*ctx_));
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(ctx_->get<Object>(*id, ObjectType::kAny).error(), ENOENT);
  ctx_->finalize(*id);
  EXPECT_TRUE(ctx_->get<Object>(*id, ObjectType::kAny).ok());
}

// Lookups on several threads race destroys and re-creations of the same ids. Every lookup finds a live
// object of the id it asked for or nothing; a destroy never frees an object a lookup is counting (clean
// under ASan and TSan); and a destroy while a lookup holds the object is EBUSY. Bounded in time.
TEST_F(ObjectsTest, LockFreeLookupsRaceDestroyAndReuse) {
  constexpr std::uint32_t kIds = 8;
  for (std::uint32_t i = 1; i <= kIds; ++i) ASSERT_EQ(*Ioas::create(*ctx_), i);
  std::atomic<bool> stop{false};
  std::atomic<long> found{0}, wrong{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::uint32_t id = 1 + t;
      while (!stop.load(std::memory_order_relaxed)) {
        id = id % kIds + 1;
        auto ref = ctx_->get<Ioas>(id, ObjectType::kIoas);
        if (!ref.ok()) continue;
        if ((*ref)->id() != id || (*ref)->type() != ObjectType::kIoas) wrong.fetch_add(1);
        found.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  long destroyed = 0, busy = 0;
  std::uint32_t id = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    id = id % kIds + 1;
    const Status st = ctx_->destroy(id);
    if (st.ok()) {
      ++destroyed;
      ASSERT_EQ(*Ioas::create(*ctx_), id);  // lowest free id first: the one just freed
    } else {
      ASSERT_EQ(st.error(), EBUSY);
      ++busy;
    }
  }
  stop.store(true);
  for (auto& r : readers) r.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(destroyed, 0);
  EXPECT_GT(found.load(), 0);
  EXPECT_EQ(ctx_->object_count(), kIds);
}

TEST_F(ObjectsTest, AbortedAllocationReleasesItsId) {
  fail_nth_set(1);  // the allocation's fault site
  EXPECT_EQ(Ioas::create(*ctx_).error(), ENOMEM);
  EXPECT_EQ(*Ioas::create(*ctx_), 1u);
}

TEST_F(ObjectsTest, MapChecksArgumentsInTheKernelsOrder) {
  Ioas& io = ioas(*Ioas::create(*ctx_));
  std::uint64_t iova = 0x100000;
  EXPECT_EQ(io.map(uptr(), kPageSize, &iova, 1u << 5).error(), EOPNOTSUPP);
  EXPECT_EQ(io.map(uptr(), kUlongMax, &iova, kRW).error(), EOVERFLOW);
  EXPECT_EQ(io.map(uptr(), kPageSize, &iova, Ioas::kFixedIova).error(), EINVAL);
  EXPECT_EQ(io.map(uptr(), 0, &iova, kRW).error(), EINVAL);
  EXPECT_EQ(io.map(kUlongMax - 10, kPageSize, &iova, kRW).error(), EOVERFLOW);
  EXPECT_TRUE(io.map(uptr(), kPageSize, &iova, kRW | Ioas::kFixedIova).ok());
  EXPECT_EQ(iova, 0x100000u);
}

TEST_F(ObjectsTest, UnmapRangeRulesAndUnmapAll) {
  Ioas& io = ioas(*Ioas::create(*ctx_));
  std::uint64_t unmapped = 0;
  EXPECT_TRUE(io.unmap(0, kUlongMax, &unmapped).ok());  // empty unmap-all succeeds
  EXPECT_EQ(unmapped, 0u);
  EXPECT_EQ(io.unmap(0x1000, 0, &unmapped).error(), EINVAL);
  EXPECT_EQ(io.unmap(kUlongMax, 1, &unmapped).error(), EOVERFLOW);
  EXPECT_EQ(io.unmap(kUlongMax - 1, 4, &unmapped).error(), EOVERFLOW);
  EXPECT_EQ(io.unmap(0x1000, 0x1000, &unmapped).error(), ENOENT);  // nothing there
  std::uint64_t iova = 0;
  ASSERT_TRUE(io.map(uptr(), 8 * kPageSize, &iova, kRW).ok());
  EXPECT_TRUE(io.unmap(0, kUlongMax, &unmapped).ok());
  EXPECT_EQ(unmapped, 8 * kPageSize);
}

TEST_F(ObjectsTest, DeviceAttachToIoasCreatesAnAutomaticHwptThatHoldsTheIoas) {
  std::uint32_t ioas_id = *Ioas::create(*ctx_);
  std::uint64_t iova = 0x1000000;
  ASSERT_TRUE(ioas(ioas_id).map(uptr(), 16 * kPageSize, &iova, kRW | Ioas::kFixedIova).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  std::uint32_t dev_id = *Device::create(*ctx_, Device::Kind::kMock);
  auto hwpt_id = device(dev_id).attach(ioas_id);
  ASSERT_TRUE(hwpt_id.ok()) << hwpt_id.status().to_string();
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 16);
  EXPECT_EQ(ctx_->destroy(ioas_id).error(), EBUSY);    // the HWPT holds it
  EXPECT_EQ(ctx_->destroy(*hwpt_id).error(), EBUSY);   // the device holds it
  EXPECT_EQ(ioas(ioas_id).iopt().check_invariants(), "");
  // A second device of the same kind shares the automatic HWPT.
  std::uint32_t dev2 = *Device::create(*ctx_, Device::Kind::kMock);
  EXPECT_EQ(*device(dev2).attach(ioas_id), *hwpt_id);
  ASSERT_TRUE(device(dev_id).detach().ok());
  EXPECT_EQ(device(dev_id).detach().error(), EINVAL);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 16);
  ASSERT_TRUE(device(dev2).detach().ok());
  // The last device took the automatic HWPT with it, and with it the pins.
  EXPECT_EQ(ctx_->get<Object>(*hwpt_id, ObjectType::kAny).error(), ENOENT);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  EXPECT_TRUE(ctx_->destroy(ioas_id).ok());
}

TEST_F(ObjectsTest, DevicesOfDifferentKindsGetDifferentDomains) {
  std::uint32_t ioas_id = *Ioas::create(*ctx_);
  std::uint32_t mock = *Device::create(*ctx_, Device::Kind::kMock);
  std::uint32_t soft = *Device::create(*ctx_, Device::Kind::kSoftware);
  auto h1 = device(mock).attach(ioas_id);
  auto h2 = device(soft).attach(ioas_id);
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_NE(*h1, *h2);
  EXPECT_EQ(ioas(ioas_id).iopt().domain_count(), 2u);
  // The strictest domain sets the alignment: the software table's 4 KiB over the mock's 2 KiB.
  EXPECT_EQ(ioas(ioas_id).iopt().iova_alignment(), kPageSize);
}

TEST_F(ObjectsTest, ReplaceMovesTheDeviceToAnotherIoas) {
  std::uint32_t a = *Ioas::create(*ctx_), b = *Ioas::create(*ctx_);
  std::uint64_t iova = 0x1000000;
  ASSERT_TRUE(ioas(b).map(uptr(), 4 * kPageSize, &iova, kRW | Ioas::kFixedIova).ok());
  std::uint32_t dev = *Device::create(*ctx_, Device::Kind::kMock);
  auto first = device(dev).attach(a);
  ASSERT_TRUE(first.ok());
  auto second = device(dev).replace(b);
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*first, *second);
  EXPECT_EQ(ctx_->get<Object>(*first, ObjectType::kAny).error(), ENOENT);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 4);
  EXPECT_EQ(device(dev).replace(999).error(), ENOENT);
  EXPECT_EQ(device(dev).hwpt_id(), *second);
}

TEST_F(ObjectsTest, ReplaceOntoTheCurrentPageTableChangesNothing) {
  std::uint32_t ioas_id = *Ioas::create(*ctx_);
  std::uint32_t dev = *Device::create(*ctx_, Device::Kind::kMock);
  std::uint32_t hwpt_id = *device(dev).attach(ioas_id);
  HwptPaging* hwpt = ctx_->get<HwptPaging>(hwpt_id, ObjectType::kHwptPaging)->get();
  const std::uint32_t users = hwpt->users();
  // By the HWPT's id and by its IOAS's (which finds the same automatic HWPT), several times.
  for (std::uint32_t pt : {hwpt_id, ioas_id, hwpt_id, ioas_id}) {
    EXPECT_EQ(*device(dev).replace(pt), hwpt_id);
    EXPECT_EQ(hwpt->device_count(), 1u);
    EXPECT_EQ(hwpt->users(), users);
  }
  // The device's going still takes the automatic HWPT with it, and the IOAS is free again.
  EXPECT_TRUE(ctx_->destroy(dev).ok());
  EXPECT_EQ(ctx_->get<Object>(hwpt_id, ObjectType::kAny).error(), ENOENT);
  EXPECT_TRUE(ctx_->destroy(ioas_id).ok());
}

TEST_F(ObjectsTest, AnAutomaticHwptWhoseLastDeviceLeftCannotBeJoinedById) {
  std::uint32_t ioas_id = *Ioas::create(*ctx_);
  std::uint32_t dev = *Device::create(*ctx_, Device::Kind::kMock);
  std::uint32_t hwpt_id = *device(dev).attach(ioas_id);
  {
    // A lookup in flight keeps the object in the table after its last device leaves; an attach by id
    // meanwhile must not revive it.
    ObjectRef<HwptPaging> ref = *ctx_->get<HwptPaging>(hwpt_id, ObjectType::kHwptPaging);
    std::thread detacher([&] { EXPECT_TRUE(device(dev).detach().ok()); });
    while (ref->device_count() != 0) std::this_thread::yield();
    std::uint32_t dev2 = *Device::create(*ctx_, Device::Kind::kMock);
    EXPECT_EQ(device(dev2).attach(hwpt_id).error(), ENOENT);
    // Attaching to the IOAS makes a new automatic HWPT rather than picking up the dying one.
    auto fresh = device(dev2).attach(ioas_id);
    ASSERT_TRUE(fresh.ok());
    EXPECT_NE(*fresh, hwpt_id);
    ref.reset();
    detacher.join();
  }
  EXPECT_EQ(ctx_->get<Object>(hwpt_id, ObjectType::kAny).error(), ENOENT);
}

TEST_F(ObjectsTest, CopyBetweenIoasesSharesThePins) {
  std::uint32_t a = *Ioas::create(*ctx_), b = *Ioas::create(*ctx_);
  std::uint32_t d1 = *Device::create(*ctx_, Device::Kind::kSoftware);
  std::uint32_t d2 = *Device::create(*ctx_, Device::Kind::kSoftware);
  ASSERT_TRUE(device(d1).attach(a).ok());
  ASSERT_TRUE(device(d2).attach(b).ok());
  std::uint64_t iova = 0;
  ASSERT_TRUE(ioas(a).map(uptr(), 32 * kPageSize, &iova, kRW).ok());
  std::uint64_t dst = 0;
  ASSERT_TRUE(ioas(b).copy_from(ioas(a), iova, 32 * kPageSize, &dst, kRW).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 32);
  std::uint64_t dst2 = 0;
  EXPECT_EQ(ioas(b).copy_from(ioas(a), iova + 40 * kPageSize, kPageSize, &dst2, kRW).error(), ENOENT);
}

TEST_F(ObjectsTest, RlimitModeNeedsCapSysResource) {
  if (has_capability(CAP_SYS_RESOURCE)) GTEST_SKIP() << "this process has CAP_SYS_RESOURCE";
  EXPECT_EQ(ctx_->set_mm_account_mode(true).error(), EPERM);
  EXPECT_FALSE(ctx_->mm_account_mode());
}

TEST_F(ObjectsTest, RlimitModeCanChangeOnlyWithNoObjects) {
  if (!has_capability(CAP_SYS_RESOURCE)) GTEST_SKIP() << "needs CAP_SYS_RESOURCE";
  EXPECT_TRUE(ctx_->set_mm_account_mode(true).ok());
  EXPECT_TRUE(ctx_->mm_account_mode());
  ASSERT_TRUE(Ioas::create(*ctx_).ok());
  EXPECT_EQ(ctx_->set_mm_account_mode(false).error(), EBUSY);
}

TEST_F(ObjectsTest, ClosingTheContextReleasesEverything) {
  std::uint32_t a = *Ioas::create(*ctx_);
  std::uint32_t dev = *Device::create(*ctx_, Device::Kind::kMock);
  ASSERT_TRUE(device(dev).attach(a).ok());
  std::uint64_t iova = 0;
  ASSERT_TRUE(ioas(a).map(uptr(), 16 * kPageSize, &iova, kRW).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 16);
  EXPECT_EQ(ctx_->object_count(), 3u);
  ctx_.reset();  // TearDown checks that no pin survives
}

}  // namespace
}  // namespace uiommufd

namespace uiommufd {
namespace {

TEST(IoasMapFileTest, MapFileOfAMemfdSharesItsDataWithTheDomain) {
  std::uint64_t pinned_before = Pages::total_pinned_pages();
  int fd = memfd_create("uiommufd-test", 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 16 * kPageSize), 0);
  ASSERT_EQ(pwrite(fd, "hello", 5, 3 * kPageSize), 5);
  {
    auto ctx = Context::create();
    ASSERT_TRUE(ctx.ok());
    std::uint32_t ioas_id = *Ioas::create(**ctx);
    std::uint32_t dev = *Device::create(**ctx, Device::Kind::kSoftware);
    auto dref = (*ctx)->get<Device>(dev, ObjectType::kDevice);
    auto iref = (*ctx)->get<Ioas>(ioas_id, ObjectType::kIoas);
    ASSERT_TRUE(dref.ok() && iref.ok());
    auto hwpt_id = (*dref)->attach(ioas_id);
    ASSERT_TRUE(hwpt_id.ok());
    std::uint64_t iova = 0;
    ASSERT_TRUE((*iref)->map_file(fd, 0, 16 * kPageSize, &iova, Ioas::kReadable | Ioas::kWriteable).ok());
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before + 16);
    auto href = (*ctx)->get<HwptPaging>(*hwpt_id, ObjectType::kHwptPaging);
    ASSERT_TRUE(href.ok());
    auto pa = (*href)->domain().iova_to_phys(iova + 3 * kPageSize);
    ASSERT_TRUE(pa.has_value());
    // The domain's page identity is the engine's mapping of the file: the data written through the fd
    // is what a DMA through the domain would see.
    EXPECT_EQ(std::memcmp(reinterpret_cast<const void*>(*pa), "hello", 5), 0);
    std::uint64_t bad_iova = 0;
    EXPECT_EQ((*iref)->map_file(-1, 0, kPageSize, &bad_iova, Ioas::kReadable).error(), EBADF);
    EXPECT_EQ((*iref)->map_file(fd, 0, 0, &bad_iova, Ioas::kReadable).error(), EINVAL);
  }
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before);
  close(fd);
}

}  // namespace
}  // namespace uiommufd
