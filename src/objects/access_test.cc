// Accesses: pin, unpin, rw, the unmap protocol, and the lifetime rules, one test per rule.
#include "uiommufd/objects/access.h"

#include <cstring>
#include <set>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/base/try.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/pinned_ranges.h"

namespace uiommufd {
namespace {

constexpr std::uint32_t kRW = Ioas::kReadable | Ioas::kWriteable | Ioas::kFixedIova;
constexpr std::uint64_t kIova = 0x1000000;

// A driver in the manner of the kernel's test access (PinnedRanges), that also records its callbacks and
// can be told to keep its pins when called back.
class TestDriver {
 public:
  explicit TestDriver(Context& ctx, bool unpin_on_unmap = true) : unpin_on_unmap_(unpin_on_unmap) {
    Access::Ops ops;
    ops.unmap = [this](std::uint64_t iova, std::uint64_t length) { on_unmap(iova, length); };
    access_ = std::move(*Access::create(ctx, ops));
    raw_ = access_.get();
  }
  ~TestDriver() {
    if (access_) Access::destroy(std::move(access_));
  }
  Access& access() { return *access_; }
  Status pin(std::uint64_t iova, std::uint64_t length, std::vector<AccessPage>* pages, bool write = false) {
    return ranges_.pin(*access_, iova, length, pages, write ? Access::kPinWrite : 0).status();
  }
  std::size_t pins() { return ranges_.size(); }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> calls() {
    lockdep::MutexGuard g(ranges_.mutex());
    return calls_;
  }
  void destroy() { Access::destroy(std::move(access_)); }

 private:
  void on_unmap(std::uint64_t iova, std::uint64_t length) {
    lockdep::MutexGuard g(ranges_.mutex());
    calls_.push_back({iova, length});
    if (unpin_on_unmap_)
      ranges_.unmap_locked(*raw_, iova, length);  // raw_: the callback may run inside destroy()
  }

  bool unpin_on_unmap_;
  ObjectRef<Access> access_;
  Access* raw_ = nullptr;
  PinnedRanges ranges_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> calls_ GUARDED_BY(ranges_.mutex());
};

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pinned_before_ = Pages::total_pinned_pages();
    ctx_ = std::move(*Context::create());
    mem_ =
        static_cast<char*>(mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(mem_, MAP_FAILED);
    for (std::size_t i = 0; i < kLen; ++i) mem_[i] = static_cast<char>(i * 7);
    ioas_id_ = *Ioas::create(*ctx_);
    ioas_ = std::move(*ctx_->get<Ioas>(ioas_id_, ObjectType::kIoas));
  }
  void TearDown() override {
    ioas_.reset();
    ctx_.reset();
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "pins leaked";
    munmap(mem_, kLen);
  }
  std::uint64_t uptr(std::uint64_t off = 0) const { return reinterpret_cast<std::uint64_t>(mem_) + off; }
  void map(std::uint64_t iova, std::uint64_t off, std::uint64_t len, std::uint32_t flags = kRW) {
    ASSERT_TRUE(ioas_->map(uptr(off), len, &iova, flags).ok());
  }

  static constexpr std::size_t kLen = 64 * kPageSize;
  std::unique_ptr<Context> ctx_;
  char* mem_ = nullptr;
  std::uint32_t ioas_id_ = 0;
  ObjectRef<Ioas> ioas_;
  std::uint64_t pinned_before_ = 0;
};

TEST_F(AccessTest, NewAccessIsUnattachedSoPinAndRwAreEnoent) {
  TestDriver d(*ctx_);
  map(kIova, 0, 4 * kPageSize);
  EXPECT_EQ(d.pin(kIova, kPageSize, nullptr).error(), ENOENT);
  char buf[8];
  EXPECT_EQ(d.access().rw(kIova, buf, sizeof buf, 0).error(), ENOENT);
  EXPECT_EQ(d.access().ioas_id(), 0u);
}

TEST_F(AccessTest, AttachRules) {
  TestDriver d(*ctx_);
  EXPECT_EQ(d.access().attach(999).error(), ENOENT);
  EXPECT_EQ(d.access().replace(ioas_id_).error(), ENOENT);  // not attached
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  EXPECT_EQ(d.access().attach(ioas_id_).error(), EINVAL);  // already attached
  EXPECT_TRUE(d.access().replace(ioas_id_).ok());          // same IOAS: nothing happens
  EXPECT_TRUE(d.calls().empty());
  EXPECT_EQ(ctx_->destroy(ioas_id_).error(), EBUSY);  // the access holds its IOAS
}

TEST_F(AccessTest, PinReturnsOnePagePerBackingPageWithItsMemory) {
  TestDriver d(*ctx_);
  map(kIova, 0, 16 * kPageSize);
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  std::vector<AccessPage> pages;
  ASSERT_TRUE(d.pin(kIova + kPageSize, 3 * kPageSize, &pages).ok());
  ASSERT_EQ(pages.size(), 3u);
  EXPECT_EQ(pages[1].phys, uptr(2 * kPageSize));
  EXPECT_EQ(std::memcmp(pages[2].address, mem_ + 3 * kPageSize, kPageSize), 0);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 3);
  // A length that ends inside a page still returns that page.
  ASSERT_TRUE(d.pin(kIova, kPageSize + 1, &pages).ok());
  EXPECT_EQ(pages.size(), 2u);
}

// Every handle of a pin names its own page, whatever the count (handles are written several at a time).
TEST_F(AccessTest, EveryHandleOfAPinNamesItsPage) {
  TestDriver d(*ctx_);
  map(kIova, 0, 16 * kPageSize);
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  std::vector<AccessPage> pages;
  for (std::uint64_t count = 1; count <= 9; ++count) {
    const std::uint64_t first = count % 3;
    ASSERT_TRUE(d.pin(kIova + first * kPageSize, count * kPageSize, &pages).ok()) << count;
    ASSERT_EQ(pages.size(), count);
    for (std::uint64_t i = 0; i < count; ++i) {
      EXPECT_EQ(pages[i].phys, uptr((first + i) * kPageSize)) << count << " " << i;
      EXPECT_EQ(pages[i].address, mem_ + (first + i) * kPageSize) << count << " " << i;
    }
  }
}

TEST_F(AccessTest, PinErrnos) {
  TestDriver d(*ctx_);
  map(kIova, 0, 8 * kPageSize, Ioas::kReadable | Ioas::kFixedIova);
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  EXPECT_EQ(d.pin(kIova, 0, nullptr).error(), EINVAL);
  EXPECT_EQ(d.pin(kUlongMax - 10, kPageSize, nullptr).error(), EOVERFLOW);
  EXPECT_EQ(d.pin(kIova, kPageSize, nullptr, true).error(), EPERM);             // read-only area
  EXPECT_EQ(d.pin(kIova + 8 * kPageSize, kPageSize, nullptr).error(), ENOENT);  // hole
  EXPECT_EQ(d.pin(kIova + 100, kPageSize, nullptr).error(), EINVAL);  // start not page aligned in the backing
  EXPECT_TRUE(d.pin(kIova, kPageSize, nullptr).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 1);
}

TEST_F(AccessTest, PinMaySpanContiguousAreas) {
  TestDriver d(*ctx_);
  map(kIova, 0, 4 * kPageSize);
  map(kIova + 4 * kPageSize, 32 * kPageSize, 4 * kPageSize);
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  std::vector<AccessPage> pages;
  ASSERT_TRUE(d.pin(kIova + 2 * kPageSize, 4 * kPageSize, &pages).ok());
  ASSERT_EQ(pages.size(), 4u);
  EXPECT_EQ(pages[2].phys, uptr(32 * kPageSize));
}

TEST_F(AccessTest, UnpinMustMatchAPinExactly) {
  TestDriver d(*ctx_);
  map(kIova, 0, 8 * kPageSize);
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  ASSERT_TRUE(d.pin(kIova, 4 * kPageSize, nullptr).ok());
  d.access().unpin_pages(kIova, 2 * kPageSize);  // not what was pinned: reported, pin stays
  EXPECT_EQ(d.access().unpin_mismatches(), 1u);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 4);
}

TEST_F(AccessTest, UnmapCallsEveryAccessForTheWholeAreaAndWaitsForItsUnpin) {
  TestDriver a(*ctx_), b(*ctx_);
  map(kIova, 0, 8 * kPageSize);
  ASSERT_TRUE(a.access().attach(ioas_id_).ok());
  ASSERT_TRUE(b.access().attach(ioas_id_).ok());
  ASSERT_TRUE(a.pin(kIova + kPageSize, kPageSize, nullptr).ok());
  std::uint64_t unmapped = 0;
  ASSERT_TRUE(ioas_->unmap(kIova, 8 * kPageSize, &unmapped).ok());
  EXPECT_EQ(unmapped, 8 * kPageSize);
  EXPECT_EQ(a.pins(), 0u);
  // Both were told, of the whole area, though only one had pins.
  ASSERT_EQ(a.calls().size(), 1u);
  EXPECT_EQ(a.calls()[0], std::make_pair(kIova, 8 * kPageSize));
  EXPECT_EQ(b.calls().size(), 1u);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
}

TEST_F(AccessTest, UnmapWithPinsThatStayIsEdeadlockAndKeepsTheAreaBlocked) {
  TestDriver stuck(*ctx_, /*unpin_on_unmap=*/false);
  map(kIova, 0, 4 * kPageSize);
  map(kIova + 4 * kPageSize, 8 * kPageSize, 4 * kPageSize);
  ASSERT_TRUE(stuck.access().attach(ioas_id_).ok());
  ASSERT_TRUE(stuck.pin(kIova + 4 * kPageSize, kPageSize, nullptr).ok());
  std::uint64_t unmapped = 0;
  EXPECT_EQ(ioas_->unmap(kIova, 8 * kPageSize, &unmapped).error(), EDEADLOCK);
  EXPECT_EQ(unmapped, 4 * kPageSize);  // the first area went before the stuck one
  EXPECT_EQ(stuck.calls().size(), IoPagetable::kMaxUnmapNotifyRounds + 1);
  // New pins and rw on the blocked area fail; unpin still works and then unmap succeeds.
  EXPECT_EQ(stuck.pin(kIova + 5 * kPageSize, kPageSize, nullptr).error(), EINVAL);
  char c;
  EXPECT_EQ(stuck.access().rw(kIova + 5 * kPageSize, &c, 1, 0).error(), EINVAL);
  stuck.access().unpin_pages(kIova + 4 * kPageSize, kPageSize);
  EXPECT_TRUE(ioas_->unmap(kIova + 4 * kPageSize, 4 * kPageSize, &unmapped).ok());
}

TEST_F(AccessTest, DestroyCallsBackForTheWholeRangeSoNoPinSurvives) {
  auto d = std::make_unique<TestDriver>(*ctx_);
  map(kIova, 0, 8 * kPageSize);
  ASSERT_TRUE(d->access().attach(ioas_id_).ok());
  ASSERT_TRUE(d->pin(kIova, 2 * kPageSize, nullptr).ok());
  d->destroy();
  ASSERT_EQ(d->calls().size(), 1u);
  EXPECT_EQ(d->calls()[0], std::make_pair(std::uint64_t{0}, kUlongMax));
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  EXPECT_TRUE(ctx_->destroy(ioas_id_).error() == EBUSY);  // the test's own reference still holds it
}

TEST_F(AccessTest, ReplaceCallsBackAndMovesTheAccess) {
  TestDriver d(*ctx_);
  std::uint32_t other = *Ioas::create(*ctx_);
  map(kIova, 0, 8 * kPageSize);
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  ASSERT_TRUE(d.pin(kIova, kPageSize, nullptr).ok());
  ASSERT_TRUE(d.access().replace(other).ok());
  EXPECT_EQ(d.pins(), 0u);
  EXPECT_EQ(d.access().ioas_id(), other);
  EXPECT_EQ(d.pin(kIova, kPageSize, nullptr).error(), ENOENT);  // nothing mapped there
  d.access().detach();
  EXPECT_EQ(d.access().ioas_id(), 0u);
  EXPECT_EQ(d.calls().size(), 2u);
}

TEST_F(AccessTest, ADomainAndAnAccessPinTheSamePageOnce) {
  TestDriver d(*ctx_);
  std::uint32_t dev = *Device::create(*ctx_, Device::Kind::kSoftware);
  auto devref = ctx_->get<Device>(dev, ObjectType::kDevice);
  map(kIova, 0, 8 * kPageSize);
  ASSERT_TRUE((*devref)->attach(ioas_id_).ok());
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  ASSERT_TRUE(d.pin(kIova, 4 * kPageSize, nullptr).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 8);
  EXPECT_EQ(ioas_->iopt().check_invariants(), "");
  ASSERT_TRUE((*devref)->detach().ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 4);  // the access's pages stay pinned
  EXPECT_EQ(ioas_->iopt().check_invariants(), "");
}

TEST_F(AccessTest, RwAtAnyAlignmentAcrossAreasOnBothPaths) {
  TestDriver d(*ctx_);
  map(kIova, 0, 4 * kPageSize);
  map(kIova + 4 * kPageSize, 16 * kPageSize, 4 * kPageSize);
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  for (std::uint32_t slow : {0u, Access::kRwSlowPath}) {
    std::vector<char> out(2 * kPageSize + 13);
    std::uint64_t at = kIova + 3 * kPageSize - 7;
    ASSERT_TRUE(d.access().rw(at, out.data(), out.size(), slow).ok());
    EXPECT_EQ(std::memcmp(out.data(), mem_ + 3 * kPageSize - 7, 7 + kPageSize), 0);
    EXPECT_EQ(std::memcmp(out.data() + 7 + kPageSize, mem_ + 16 * kPageSize, out.size() - 7 - kPageSize), 0);
    std::vector<char> in(out.size(), static_cast<char>(0x5a + slow));
    ASSERT_TRUE(d.access().rw(at, in.data(), in.size(), Access::kRwWrite | slow).ok());
    EXPECT_EQ(mem_[3 * kPageSize - 7], static_cast<char>(0x5a + slow));
    EXPECT_EQ(mem_[16 * kPageSize + out.size() - 8 - kPageSize], static_cast<char>(0x5a + slow));
  }
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
}

TEST_F(AccessTest, RwHonoursTheAreaProtectionAndHoles) {
  TestDriver d(*ctx_);
  map(kIova, 0, 4 * kPageSize, Ioas::kReadable | Ioas::kFixedIova);
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  char c = 0;
  EXPECT_TRUE(d.access().rw(kIova, &c, 1, 0).ok());
  EXPECT_EQ(d.access().rw(kIova, &c, 1, Access::kRwWrite).error(), EPERM);
  EXPECT_EQ(d.access().rw(kIova + 4 * kPageSize, &c, 1, 0).error(), ENOENT);
  EXPECT_EQ(d.access().rw(kIova, &c, 0, 0).error(), EINVAL);
}

// The kernel walks the contiguous areas in IOVA order and reports a hole only after every area before it
// succeeded: an earlier area's error wins over the hole, and a read has already copied the earlier bytes.
TEST_F(AccessTest, RwAndPinWalkTheAreasInOrderBeforeReportingAHole) {
  TestDriver d(*ctx_);
  map(kIova, 0, 2 * kPageSize, Ioas::kReadable | Ioas::kFixedIova);  // read-only, then a hole
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  std::vector<char> buf(4 * kPageSize, 0);
  EXPECT_EQ(d.access().rw(kIova, buf.data(), buf.size(), Access::kRwWrite).error(), EPERM);
  EXPECT_EQ(d.access().rw(kIova, buf.data(), buf.size(), 0).error(), ENOENT);
  for (std::size_t i = 0; i < 2 * kPageSize; ++i) ASSERT_EQ(buf[i], mem_[i]) << i;  // copied before the hole
  EXPECT_EQ(buf[2 * kPageSize], 0);
  EXPECT_EQ(d.pin(kIova, 4 * kPageSize, nullptr, /*write=*/true).error(), EPERM);
  EXPECT_EQ(d.pin(kIova, 4 * kPageSize, nullptr).error(), ENOENT);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);  // the failed pins left nothing
}

TEST_F(AccessTest, AccessAlignmentRaisesTheIoasAlignment) {
  TestDriver d(*ctx_);
  std::uint64_t iova = kIova + 512;
  ASSERT_TRUE(ioas_->map(uptr(512), 1024, &iova, kRW).ok());
  // A pinning access needs page-aligned areas.
  EXPECT_EQ(d.access().attach(ioas_id_).error(), EADDRINUSE);
  std::uint64_t unmapped;
  ASSERT_TRUE(ioas_->unmap(0, kUlongMax, &unmapped).ok());
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  EXPECT_EQ(ioas_->iopt().iova_alignment(), kPageSize);
  d.access().detach();
  EXPECT_EQ(ioas_->iopt().iova_alignment(), 1u);
}

// Fault-site sweeps for pin and rw: every injected failure returns an errno and leaves no pin or record.
TEST_F(AccessTest, FaultSweepOverPinAndRwUnwinds) {
  TestDriver d(*ctx_);
  std::uint32_t dev = *Device::create(*ctx_, Device::Kind::kSoftware);
  auto devref = ctx_->get<Device>(dev, ObjectType::kDevice);
  map(kIova, 0, 16 * kPageSize);
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  auto setup = [] {};
  auto op = [&]() -> Status {
    std::vector<char> buf(3 * kPageSize);
    TRY(d.access().rw(kIova + 100, buf.data(), buf.size(), Access::kRwSlowPath));
    TRY(d.pin(kIova, 4 * kPageSize, nullptr));
    TRY(d.access().rw(kIova + 100, buf.data(), buf.size(), Access::kRwWrite));
    return {};
  };
  auto after = [&](unsigned n, Status) {
    EXPECT_EQ(ioas_->iopt().check_invariants(), "") << "fault " << n;
    std::uint64_t unmapped;
    // Unmapping lets the driver drop its pins; then remap for the next run.
    ASSERT_TRUE(ioas_->unmap(0, kUlongMax, &unmapped).ok()) << "fault " << n;
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "fault " << n;
    std::uint64_t iova = kIova;
    ASSERT_TRUE(ioas_->map(uptr(), 16 * kPageSize, &iova, kRW).ok());
  };
  SweepResult r = sweep_fail_nth(setup, op, after, 200);
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_GE(r.sites_failed, 3u);
}

// An access whose unmap callback is a bare PinnedRanges, attached to `ioas_id`.
struct RangesAccess {
  RangesAccess(Context& ctx, std::uint32_t ioas_id) {
    Access::Ops ops;
    ops.unmap = [this](std::uint64_t iova, std::uint64_t length) { ranges.unmap(*raw, iova, length); };
    access = std::move(*Access::create(ctx, ops));
    raw = access.get();
    EXPECT_TRUE(access->attach(ioas_id).ok());
  }
  ~RangesAccess() { Access::destroy(std::move(access)); }
  PinnedRanges ranges;
  ObjectRef<Access> access;
  Access* raw = nullptr;
};

TEST_F(AccessTest, PinnedRangesUnmapDropsEveryIntersectingPinInFull) {
  map(kIova, 0, 16 * kPageSize);
  RangesAccess d(*ctx_, ioas_id_);
  const std::uint32_t a = *d.ranges.pin(*d.raw, kIova, 2 * kPageSize, nullptr, 0);
  const std::uint32_t b = *d.ranges.pin(*d.raw, kIova + 4 * kPageSize, 2 * kPageSize, nullptr, 0);
  EXPECT_EQ(b, a + 1);
  // One byte of the first pin is enough to drop all of it; the second does not intersect.
  EXPECT_EQ(d.ranges.unmap(*d.raw, kIova + kPageSize, 1), 2 * kPageSize);
  ASSERT_EQ(d.ranges.size(), 1u);
  EXPECT_EQ(d.ranges.ranges()[0].id, b);
  EXPECT_EQ(d.ranges.unpin(*d.raw, a).error(), ENOENT);
  EXPECT_TRUE(d.ranges.unpin(*d.raw, b).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  EXPECT_EQ(d.raw->unpin_mismatches(), 0u);
}

TEST_F(AccessTest, PinnedRangesCheckFailureUnpinsAndReturnsItsError) {
  map(kIova, 0, 4 * kPageSize);
  RangesAccess d(*ctx_, ioas_id_);
  auto check = [](const std::vector<AccessPage>&) { return Status::error(EBADE); };
  EXPECT_EQ(d.ranges.pin(*d.raw, kIova, kPageSize, nullptr, 0, check).error(), EBADE);
  EXPECT_EQ(d.ranges.size(), 0u);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
}

// The seed scenarios: the driver that holds its lock across destroy while its callback takes it is
// reported, on a run where nothing blocked; the one that drops its lock first is not.
class DriverWithLock {
 public:
  DriverWithLock(Context& ctx, lockdep::LockClassKey& key) : ranges_(key) {
    Access::Ops ops;
    ops.unmap = [this](std::uint64_t iova, std::uint64_t length) { ranges_.unmap(*raw_, iova, length); };
    access_ = std::move(*Access::create(ctx, ops));
    raw_ = access_.get();
  }
  Access& access() { return *access_; }
  void pin(std::uint64_t iova, std::uint64_t length) {
    ASSERT_TRUE(ranges_.pin(*access_, iova, length, nullptr, 0).ok());
  }
  // Correct: mark closing under the lock, drop it, then destroy.
  void close() {
    { lockdep::MutexGuard g(ranges_.mutex()); }
    Access::destroy(std::move(access_));
  }
  // Buggy: destroy with the lock held. With the newest semantics destroy calls back from this thread
  // and would deadlock on the lock; the validator reports before that.
  void close_holding_lock() {
    lockdep::MutexGuard g(ranges_.mutex());
    Access::destroy(std::move(access_));
  }

 private:
  PinnedRanges ranges_;
  ObjectRef<Access> access_;
  Access* raw_ = nullptr;
};

TEST_F(AccessTest, DriverThatDropsItsLockBeforeDestroyRunsClean) {
  lockdep::set_print_reports(false);
  lockdep::reset_for_testing();
  static lockdep::LockClassKey key{"good_driver.lock"};
  DriverWithLock d(*ctx_, key);
  map(kIova, 0, 8 * kPageSize);
  ASSERT_TRUE(d.access().attach(ioas_id_).ok());
  d.pin(kIova, kPageSize);
  std::uint64_t unmapped;
  ASSERT_TRUE(ioas_->unmap(0, kUlongMax, &unmapped).ok());  // the callback takes the driver lock
  d.close();
  EXPECT_EQ(lockdep::report_count(), 0u) << (lockdep::report_count() ? lockdep::reports()[0].text : "");
  lockdep::set_print_reports(true);
}

TEST_F(AccessTest, DriverHoldingItsLockAcrossDestroyIsReported) {
  // Without the validator nothing stops the destroy from deadlocking on its own callback.
  if (!lockdep::kCompiledIn) GTEST_SKIP() << "the lock validator is compiled out";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        lockdep::set_mode(lockdep::Mode::kAbort);
        static lockdep::LockClassKey key{"bad_driver.lock"};
        DriverWithLock d(*ctx_, key);
        map(kIova, 0, 8 * kPageSize);
        if (!d.access().attach(ioas_id_).ok()) std::abort();
        d.pin(kIova, kPageSize);
        std::uint64_t unmapped;
        if (!ioas_->unmap(0, kUlongMax, &unmapped).ok()) std::abort();
        d.close_holding_lock();
      },
      "WARNING: possible circular locking dependency detected(.|\n)*bad_driver.lock(.|\n)*access_unmap");
}

}  // namespace
}  // namespace uiommufd
