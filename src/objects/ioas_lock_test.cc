// The IOAS's lock-pinned option (a library feature; no ioctl sets it): what map, map_file and copy make of
// it, observed as mlock in /proc (../pages/lock_probe.h).
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../pages/lock_probe.h"

#include "uiommufd/objects/access.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"

namespace uiommufd {
namespace {

using lock_probe::locked_pages_in;
using lock_probe::vm_locked_kib;

constexpr std::uint32_t kRW = Ioas::kReadable | Ioas::kWriteable;

class IoasLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pinned_before_ = Pages::total_pinned_pages();
    vm_locked_before_ = vm_locked_kib();
    ctx_ = std::move(*Context::create());
    mem_ = mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem_, MAP_FAILED);
  }
  void TearDown() override {
    ctx_.reset();
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "the context leaked pins";
    EXPECT_EQ(vm_locked_kib(), vm_locked_before_) << "the context left memory locked";
    munmap(mem_, kLen);
  }
  std::uint64_t uptr(std::uint64_t off = 0) const { return reinterpret_cast<std::uint64_t>(mem_) + off; }
  std::uint64_t locked(std::uint64_t first_page, std::uint64_t npages) const {
    return locked_pages_in(uptr(first_page * kPageSize), npages * kPageSize);
  }
  Ioas& ioas(std::uint32_t id) {
    auto r = ctx_->get<Ioas>(id, ObjectType::kIoas);
    EXPECT_TRUE(r.ok());
    return *r->get();  // the table keeps it alive for the test
  }
  // Attaches a new software-domain device to `ioas_id`, so that every area of it is pinned into a domain.
  std::uint32_t attach_device(std::uint32_t ioas_id) {
    std::uint32_t dev = *Device::create(*ctx_, Device::Kind::kSoftware);
    auto d = ctx_->get<Device>(dev, ObjectType::kDevice);
    EXPECT_TRUE(d.ok());
    auto hwpt = (*d)->attach(ioas_id);
    EXPECT_TRUE(hwpt.ok()) << hwpt.status().to_string();
    return hwpt.ok() ? *hwpt : 0;
  }

  static constexpr std::size_t kLen = 32 * kPageSize;
  std::unique_ptr<Context> ctx_;
  void* mem_ = nullptr;
  std::uint64_t pinned_before_ = 0;
  long vm_locked_before_ = 0;
};

TEST_F(IoasLockTest, LockPinnedIsOffByDefaultAndSettable) {
  Ioas& a = ioas(*Ioas::create(*ctx_));
  EXPECT_FALSE(a.lock_pinned());
  a.set_lock_pinned(true);
  EXPECT_TRUE(a.lock_pinned());
  a.set_lock_pinned(false);
  EXPECT_FALSE(a.lock_pinned());
}

TEST_F(IoasLockTest, MapLocksNothingUntilADomainPinsAndThenLocksTheWholeArea) {
  const std::uint32_t id = *Ioas::create(*ctx_);
  ioas(id).set_lock_pinned(true);
  std::uint64_t iova = 0;
  ASSERT_TRUE(ioas(id).map(uptr(), 16 * kPageSize, &iova, kRW).ok());
  EXPECT_EQ(locked(0, 32), 0u);  // pinning is lazy: nothing to lock before a domain or access pins
  attach_device(id);
  EXPECT_EQ(locked(0, 16), 16u);
  EXPECT_EQ(locked(16, 16), 0u);
}

TEST_F(IoasLockTest, UnmapUnlocksTheArea) {
  const std::uint32_t id = *Ioas::create(*ctx_);
  ioas(id).set_lock_pinned(true);
  attach_device(id);
  std::uint64_t iova = 0, unmapped = 0;
  ASSERT_TRUE(ioas(id).map(uptr(), 16 * kPageSize, &iova, kRW).ok());
  EXPECT_EQ(locked(0, 16), 16u);
  ASSERT_TRUE(ioas(id).unmap(iova, 16 * kPageSize, &unmapped).ok());
  EXPECT_EQ(locked(0, 16), 0u);
  EXPECT_EQ(vm_locked_kib(), vm_locked_before_);
}

TEST_F(IoasLockTest, WithoutTheOptionAnAttachedIoasLocksNothing) {
  const std::uint32_t id = *Ioas::create(*ctx_);
  attach_device(id);
  std::uint64_t iova = 0;
  ASSERT_TRUE(ioas(id).map(uptr(), 16 * kPageSize, &iova, kRW).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 16);
  EXPECT_EQ(locked(0, 16), 0u);
  EXPECT_EQ(vm_locked_kib(), vm_locked_before_);
}

TEST_F(IoasLockTest, AnAccessPinLocksOnlyWhatItPins) {
  const std::uint32_t id = *Ioas::create(*ctx_);
  ioas(id).set_lock_pinned(true);
  std::uint64_t iova = 0x100000;
  ASSERT_TRUE(ioas(id).map(uptr(), 16 * kPageSize, &iova, kRW | Ioas::kFixedIova).ok());
  Access::Ops ops;
  ops.unmap = [](std::uint64_t, std::uint64_t) {};
  ObjectRef<Access> access = std::move(*Access::create(*ctx_, ops));
  ASSERT_TRUE(access->attach(id).ok());
  std::vector<AccessPage> pages;
  ASSERT_TRUE(access->pin_pages(iova + 2 * kPageSize, 3 * kPageSize, &pages, 0).ok());
  EXPECT_EQ(locked(2, 3), 3u);
  EXPECT_EQ(locked(0, 32), 3u);
  access->unpin_pages(iova + 2 * kPageSize, 3 * kPageSize);
  EXPECT_EQ(locked(0, 32), 0u);
  Access::destroy(std::move(access));
}

TEST_F(IoasLockTest, TheSettingAppliesToLaterMapsOnly) {
  const std::uint32_t id = *Ioas::create(*ctx_);
  std::uint64_t before = 0, after = 0;
  ASSERT_TRUE(ioas(id).map(uptr(), 8 * kPageSize, &before, kRW).ok());
  ioas(id).set_lock_pinned(true);
  ASSERT_TRUE(ioas(id).map(uptr(8 * kPageSize), 8 * kPageSize, &after, kRW).ok());
  attach_device(id);
  EXPECT_EQ(locked(0, 8), 0u);
  EXPECT_EQ(locked(8, 8), 8u);
}

TEST_F(IoasLockTest, CopyKeepsTheSourcesSettingNotTheDestinations) {
  const std::uint32_t locking = *Ioas::create(*ctx_), plain = *Ioas::create(*ctx_);
  ioas(locking).set_lock_pinned(true);
  std::uint64_t src_lock = 0, src_plain = 0;
  ASSERT_TRUE(ioas(locking).map(uptr(), 8 * kPageSize, &src_lock, kRW).ok());
  ASSERT_TRUE(ioas(plain).map(uptr(16 * kPageSize), 8 * kPageSize, &src_plain, kRW).ok());
  // Copies in both directions; only the destinations get a domain, so only copies pin.
  std::uint64_t dst = 0;
  ASSERT_TRUE(ioas(plain).copy_from(ioas(locking), src_lock, 8 * kPageSize, &dst, kRW).ok());
  dst = 0;
  ASSERT_TRUE(ioas(locking).copy_from(ioas(plain), src_plain, 8 * kPageSize, &dst, kRW).ok());
  attach_device(plain);
  attach_device(locking);
  EXPECT_EQ(locked(0, 8), 8u);   // mapped by the locking IOAS, pinned through its copy in the plain one
  EXPECT_EQ(locked(16, 8), 0u);  // mapped by the plain IOAS, copied into the locking one
}

TEST_F(IoasLockTest, MapFileLocksTheFilePagesAndDestroyUnlocksThem) {
  const int fd = memfd_create("ioas_lock_test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 16 * kPageSize), 0);
  const std::uint32_t id = *Ioas::create(*ctx_);
  ioas(id).set_lock_pinned(true);
  const std::uint32_t hwpt_id = attach_device(id);
  std::uint64_t iova = 0;
  ASSERT_TRUE(ioas(id).map_file(fd, 0, 16 * kPageSize, &iova, kRW).ok());
  {
    auto hwpt = ctx_->get<HwptPaging>(hwpt_id, ObjectType::kHwptPaging);
    ASSERT_TRUE(hwpt.ok());
    // The domain holds the host address of the Pages' window: the mapping that must be locked.
    auto pa = (*hwpt)->domain().iova_to_phys(iova);
    ASSERT_TRUE(pa.has_value());
    EXPECT_EQ(locked_pages_in(*pa, 16 * kPageSize), 16u);
    EXPECT_GE(vm_locked_kib() - vm_locked_before_, static_cast<long>(16 * kPageSize / 1024));
  }
  ctx_.reset();
  EXPECT_EQ(vm_locked_kib(), vm_locked_before_);
  close(fd);
}

}  // namespace
}  // namespace uiommufd
