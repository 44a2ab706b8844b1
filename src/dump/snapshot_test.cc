// The snapshot of a context: objects, IOASes with their areas, ranges, domains and pins, the backings and
// the accounting, read from the sample context (testing/sample_context.h).
#include "uiommufd/dump/snapshot.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <thread>

#include <gtest/gtest.h>
#include <unistd.h>

#include "testing/sample_context.h"

#include "uiommufd/base/fault.h"
#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/pages/dma_buf.h"

namespace uiommufd::dump {
namespace {

using testing::SampleContext;

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const Status st = sample_.build();
    ASSERT_TRUE(st.ok()) << st.to_string();
    Result<ContextSnapshot> snap = snapshot_context(sample_.ctx(), 7);
    ASSERT_TRUE(snap.ok()) << snap.status().to_string();
    snap_ = std::move(*snap);
  }

  const ObjectSnapshot& object(std::uint32_t id) const {
    auto it = std::find_if(snap_.objects.begin(), snap_.objects.end(),
                           [id](const ObjectSnapshot& o) { return o.id == id; });
    EXPECT_NE(it, snap_.objects.end());
    return *it;
  }

  SampleContext sample_;
  ContextSnapshot snap_;
};

TEST_F(SnapshotTest, ListsEveryObjectWithItsUsersAndLinks) {
  EXPECT_EQ(snap_.number, 7u);
  ASSERT_EQ(snap_.objects.size(), 5u);
  EXPECT_EQ(object(SampleContext::kIoas1).type, ObjectType::kIoas);
  EXPECT_EQ(object(SampleContext::kIoas1).users, 2u);  // the table and the HWPT
  EXPECT_EQ(object(SampleContext::kIoas2).users, 2u);  // the table and the access
  const ObjectSnapshot& dev = object(SampleContext::kDevice);
  EXPECT_EQ(dev.type, ObjectType::kDevice);
  ASSERT_EQ(dev.links.size(), 1u);
  EXPECT_EQ(dev.links[0].role, "hwpt");
  EXPECT_EQ(dev.links[0].id, SampleContext::kHwpt);
  EXPECT_TRUE(dev.links[0].has_pasid);
  EXPECT_EQ(dev.links[0].pasid, 0u);
  const ObjectSnapshot& hwpt = object(SampleContext::kHwpt);
  EXPECT_EQ(hwpt.type, ObjectType::kHwptPaging);
  EXPECT_EQ(hwpt.users, 2u);  // the table and the device
  ASSERT_EQ(hwpt.links.size(), 1u);
  EXPECT_EQ(hwpt.links[0].role, "ioas");
  EXPECT_EQ(hwpt.links[0].id, SampleContext::kIoas1);
  const ObjectSnapshot& access = object(SampleContext::kAccess);
  EXPECT_EQ(access.type, ObjectType::kAccess);
  ASSERT_EQ(access.links.size(), 1u);
  EXPECT_EQ(access.links[0].id, SampleContext::kIoas2);
}

TEST_F(SnapshotTest, AnIoasWithADomainHasItsAreasPinnedAndFilledAndTheApertureReserved) {
  ASSERT_EQ(snap_.ioases.size(), 2u);
  const IoasSnapshot& io = snap_.ioases[0];
  EXPECT_EQ(io.id, SampleContext::kIoas1);
  EXPECT_EQ(io.iova_alignment, MockDomain::kIoPageSize);
  ASSERT_EQ(io.domains.size(), 1u);
  const DomainSnapshot& d = io.domains[0];
  EXPECT_EQ(d.hwpt, SampleContext::kHwpt);
  EXPECT_TRUE(d.auto_domain);
  EXPECT_EQ(d.granule, MockDomain::kIoPageSize);
  EXPECT_EQ(d.aperture.start, MockDomain::kAperture.start);
  EXPECT_EQ(d.aperture.last, MockDomain::kAperture.last);
  EXPECT_EQ(d.mapped_bytes, 20 * kPageSize);
  ASSERT_EQ(d.devices.size(), 1u);
  EXPECT_EQ(d.devices[0].device, SampleContext::kDevice);

  ASSERT_EQ(io.areas.size(), 2u);
  const AreaSnapshot& a = io.areas[0];
  EXPECT_EQ(a.iova.start, SampleContext::kIovaA);
  EXPECT_EQ(a.iova.last, SampleContext::kIovaA + 16 * kPageSize - 1);
  EXPECT_EQ(a.state, AreaState::kPinned);
  EXPECT_TRUE(a.readable && a.writeable);
  EXPECT_EQ(a.pinned_pages, 16u);
  ASSERT_EQ(a.filled.size(), 1u);
  EXPECT_EQ(a.filled[0], 16 * kPageSize);
  const AreaSnapshot& b = io.areas[1];
  EXPECT_EQ(b.iova.start, SampleContext::kIovaB);
  EXPECT_TRUE(b.readable);
  EXPECT_FALSE(b.writeable);
  EXPECT_EQ(b.state, AreaState::kPinned);
  EXPECT_NE(a.pages, b.pages);

  // The user's range, and the domain's two outside its aperture.
  ASSERT_EQ(io.reserved.size(), 3u);
  EXPECT_EQ(io.reserved[0].iova.start, 0u);
  EXPECT_EQ(io.reserved[0].iova.last, MockDomain::kAperture.start - 1);
  EXPECT_EQ(io.reserved[0].owner, ReservedOwner::kDomain);
  EXPECT_EQ(io.reserved[0].hwpt, SampleContext::kHwpt);
  EXPECT_EQ(io.reserved[1].iova.start, SampleContext::kUserReserved.start);
  EXPECT_EQ(io.reserved[1].owner, ReservedOwner::kUser);
  EXPECT_EQ(io.reserved[2].iova.start, MockDomain::kAperture.last + 1);
  EXPECT_EQ(io.reserved[2].iova.last, ~std::uint64_t{0});
  EXPECT_EQ(io.reserved[2].owner, ReservedOwner::kDomain);
  EXPECT_TRUE(io.allowed.empty());

  const std::vector<IovaRun> runs = pinned_iova_runs(snap_, io);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].iova.start, a.iova.start);
  EXPECT_EQ(runs[0].iova.last, a.iova.last);
  EXPECT_EQ(runs[0].users, 1u);
  EXPECT_TRUE(access_iova_runs(snap_, io).empty());
}

TEST_F(SnapshotTest, AnIoasWithAnAccessShowsItsPinsAllowedRangeAndReservedRange) {
  const IoasSnapshot& io = snap_.ioases[1];
  EXPECT_EQ(io.id, SampleContext::kIoas2);
  EXPECT_TRUE(io.domains.empty());
  EXPECT_EQ(io.accesses, 1u);
  EXPECT_EQ(io.access_ids, std::vector<std::uint32_t>{SampleContext::kAccess});
  ASSERT_EQ(io.allowed.size(), 1u);
  EXPECT_EQ(io.allowed[0].start, SampleContext::kAllowed.start);
  EXPECT_EQ(io.allowed[0].last, SampleContext::kAllowed.last);
  ASSERT_EQ(io.reserved.size(), 1u);
  EXPECT_EQ(io.reserved[0].iova.start, SampleContext::kUserReserved2.start);
  EXPECT_EQ(io.reserved[0].owner, ReservedOwner::kUser);

  ASSERT_EQ(io.areas.size(), 2u);
  const AreaSnapshot& c = io.areas[0];
  EXPECT_EQ(c.source_addr, sample_.uptr(32 * kPageSize));
  EXPECT_EQ(c.state, AreaState::kPartlyPinned);
  EXPECT_EQ(c.pinned_pages, 2u);
  EXPECT_EQ(c.access_pins, 1u);
  EXPECT_EQ(c.locks, 0u);
  EXPECT_TRUE(c.filled.empty());
  const AreaSnapshot& d = io.areas[1];
  EXPECT_EQ(d.iova.start, SampleContext::kIovaD);
  EXPECT_EQ(d.state, AreaState::kMapped);
  EXPECT_EQ(d.pinned_pages, 0u);
  EXPECT_EQ(d.source_addr, SampleContext::kFileOffset);

  const std::vector<IovaRun> pins = pinned_iova_runs(snap_, io);
  ASSERT_EQ(pins.size(), 1u);
  EXPECT_EQ(pins[0].iova.start, SampleContext::kIovaC + 2 * kPageSize);
  EXPECT_EQ(pins[0].iova.last, SampleContext::kIovaC + 4 * kPageSize - 1);
  const std::vector<IovaRun> records = access_iova_runs(snap_, io);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].iova.start, pins[0].iova.start);
  EXPECT_EQ(records[0].users, 1u);
}

TEST_F(SnapshotTest, EachBackingIsListedOnceWithItsSourcePinsAndCharge) {
  ASSERT_EQ(snap_.pages.size(), 4u);
  for (const PagesSnapshot& p : snap_.pages) {
    if (p.id == 4) continue;  // the memfd's, below
    EXPECT_EQ(p.kind, PagesKind::kUser);
    EXPECT_EQ(p.pid, getpid());
    EXPECT_EQ(p.account_mode, AccountMode::kUser);
    EXPECT_EQ(p.account_pid, getpid());
  }
  const PagesSnapshot& c = snap_.pages[2];
  EXPECT_EQ(c.source_addr, sample_.uptr(32 * kPageSize));
  EXPECT_EQ(c.npages, 8u);
  EXPECT_EQ(c.npinned, 2u);
  ASSERT_EQ(c.pin_runs.size(), 1u);
  EXPECT_EQ(c.pin_runs[0].first, 2u);
  EXPECT_EQ(c.pin_runs[0].last, 3u);
  ASSERT_EQ(c.access_records.size(), 1u);
  EXPECT_EQ(c.access_records[0].users, 1u);

  const PagesSnapshot& file = snap_.pages[3];
  EXPECT_EQ(file.kind, PagesKind::kFile);
  EXPECT_EQ(file.file_dev, sample_.file_dev());
  EXPECT_EQ(file.file_ino, sample_.file_ino());
  EXPECT_EQ(file.source_addr, SampleContext::kFileOffset);
  EXPECT_EQ(file.npages, 4u);
  EXPECT_EQ(file.npinned, 0u);
  EXPECT_TRUE(file.pin_runs.empty());

  EXPECT_EQ(snap_.pinned_pages, 16u + 4u + 2u);
  EXPECT_EQ(snap_.charged_pages, 22u);
  EXPECT_EQ(snap_.account_mode, AccountMode::kUser);
  ASSERT_EQ(snap_.mms.size(), 1u);
  EXPECT_EQ(snap_.mms[0].pid, getpid());
  EXPECT_GE(snap_.mms[0].user_locked, 22u);
}

// An exporter of two pages of this process's memory that it can revoke.
class RevocableBuffer final : public DmaBuf {
 public:
  static constexpr std::uint64_t kSize = 2 * kPageSize;
  static RefPtr<RevocableBuffer> make() { return RefPtr<RevocableBuffer>(new RevocableBuffer()); }
  Result<Phys> physical() override REQUIRES(resv_) {
    resv_.assert_held();
    if (revoked_) return Status::error(ENODEV);
    return Phys{reinterpret_cast<PhysAddr>(mem_.get()), size()};
  }
  void revoke() {
    lockdep::MutexGuard g(resv_);
    revoked_ = true;
    invalidate_mappings();
  }

 private:
  RevocableBuffer() : DmaBuf(kSize), mem_(std::aligned_alloc(kPageSize, kSize), &std::free) {}
  std::unique_ptr<void, void (*)(void*)> mem_;
  bool revoked_ GUARDED_BY(resv_) = false;
};

TEST_F(SnapshotTest, ADmaBufAreaIsMappedWithoutPinsUntilItsExporterRevokesIt) {
  constexpr std::uint64_t kIova = 0x3000000;
  RefPtr<RevocableBuffer> buf = RevocableBuffer::make();
  ObjectRef<Ioas> ioas = *sample_.ctx().get<Ioas>(SampleContext::kIoas1, ObjectType::kIoas);
  std::uint64_t iova = kIova;
  ASSERT_TRUE(ioas->map_dmabuf(buf, 0, RevocableBuffer::kSize, &iova,
                               Ioas::kReadable | Ioas::kWriteable | Ioas::kFixedIova)
                  .ok());
  auto dmabuf_area = [&](const ContextSnapshot& s) -> const AreaSnapshot& {
    EXPECT_EQ(s.ioases[0].areas.size(), 3u);
    return s.ioases[0].areas.back();
  };
  Result<ContextSnapshot> before = snapshot_context(sample_.ctx(), 1);
  ASSERT_TRUE(before.ok());
  const AreaSnapshot& a = dmabuf_area(*before);
  EXPECT_EQ(a.iova.start, kIova);
  EXPECT_EQ(a.state, AreaState::kDmaBuf);
  EXPECT_EQ(a.pinned_pages, 0u);
  EXPECT_EQ(a.filled, std::vector<std::uint64_t>{RevocableBuffer::kSize});
  const PagesSnapshot& p = before->pages[a.pages - 1];
  EXPECT_EQ(p.kind, PagesKind::kDmaBuf);
  EXPECT_EQ(p.dmabuf, 1u);
  EXPECT_FALSE(p.revoked);
  EXPECT_EQ(p.account_mode, AccountMode::kNone);
  EXPECT_EQ(p.account_pid, 0);

  buf->revoke();
  Result<ContextSnapshot> after = snapshot_context(sample_.ctx(), 1);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(dmabuf_area(*after).state, AreaState::kRevoked);
  EXPECT_EQ(dmabuf_area(*after).filled, std::vector<std::uint64_t>{0});
  EXPECT_TRUE(after->pages[dmabuf_area(*after).pages - 1].revoked);
}

TEST_F(SnapshotTest, AnAreaBeingUnmappedShowsSoFromInsideTheAccessCallback) {
  std::optional<AreaState> seen;
  sample_.on_unmap = [&] {
    Result<ContextSnapshot> s = snapshot_context(sample_.ctx(), 1);
    ASSERT_TRUE(s.ok());
    // Unmap takes the areas in IOVA order: C, with the access's pins, first.
    seen = s->ioases[1].areas[0].state;
    EXPECT_TRUE(s->ioases[1].areas[0].prevent_access);
  };
  ObjectRef<Ioas> ioas = *sample_.ctx().get<Ioas>(SampleContext::kIoas2, ObjectType::kIoas);
  std::uint64_t unmapped = 0;
  ASSERT_TRUE(ioas->unmap(0, ~std::uint64_t{0}, &unmapped).ok());
  sample_.on_unmap = nullptr;
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(*seen, AreaState::kUnmapping);
}

// Snapshots taken while other threads map, unmap, attach and detach: every one is consistent within each
// IOAS, and the lock validator sees nothing against the engine's order.
TEST_F(SnapshotTest, SnapshotsRaceMapsUnmapsAndAttachesWithoutAReport) {
  const std::size_t reports_before = lockdep::report_count();
  Context& ctx = sample_.ctx();
  std::atomic<bool> stop{false};
  std::thread mapper([&] {
    ObjectRef<Ioas> ioas = *ctx.get<Ioas>(SampleContext::kIoas1, ObjectType::kIoas);
    while (!stop.load()) {
      std::uint64_t iova = 0x4000000, unmapped = 0;
      if (ioas->map(sample_.uptr(40 * kPageSize), 8 * kPageSize, &iova,
                    Ioas::kReadable | Ioas::kWriteable | Ioas::kFixedIova)
              .ok())
        (void)ioas->unmap(iova, 8 * kPageSize, &unmapped);
    }
  });
  std::thread attacher([&] {
    const std::uint32_t dev = *Device::create(ctx, Device::Kind::kSoftware);
    ObjectRef<Device> d = *ctx.get<Device>(dev, ObjectType::kDevice);
    while (!stop.load()) {
      if (d->attach(SampleContext::kIoas2).ok()) (void)d->detach();
    }
  });
  int snapshots = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < until) {
    Result<ContextSnapshot> s = snapshot_context(ctx, 1);
    ASSERT_TRUE(s.ok());
    ++snapshots;
    for (const IoasSnapshot& io : s->ioases) {
      for (const AreaSnapshot& a : io.areas) {
        EXPECT_LE(a.pinned_pages, a.last_index - a.first_index + 1);
        EXPECT_EQ(a.filled.size(), io.domains.size());
        // A fully built area is in every domain of its IOAS, read at the same instant.
        if (a.state == AreaState::kPinned && a.access_pins == 0) {
          for (std::uint64_t f : a.filled) EXPECT_EQ(f, a.iova.last - a.iova.start + 1);
        }
      }
    }
  }
  stop.store(true);
  mapper.join();
  attacher.join();
  EXPECT_GT(snapshots, 10);
  EXPECT_EQ(lockdep::report_count(), reports_before);
}

TEST_F(SnapshotTest, TheSnapshotHoldsNoObjectAfterwardsAndConsumesNoFaultCount) {
  // Nothing is kept: each object can go at once (the access holds IOAS 2, the driver the access).
  EXPECT_TRUE(sample_.ctx().destroy(SampleContext::kDevice).ok());
  EXPECT_TRUE(sample_.ctx().destroy(SampleContext::kIoas1).ok());
  fail_nth_set(1);
  Result<ContextSnapshot> snap = snapshot_context(sample_.ctx(), 1);
  EXPECT_EQ(fail_nth_get(), 1u);  // still armed for the caller's next operation
  fail_nth_set(0);
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->objects.size(), 2u);
}

}  // namespace
}  // namespace uiommufd::dump
