// dma-buf backings in the I/O page table (docs/semantics.md#dma-buf): an exporter's DmaBuf imported as a
// Pages of kind kDmaBuf, mapped into every domain, never pinned, unmapped everywhere by a revoke and kept out
// of domains attached afterwards; refused by access pins, rw and cuts. One behaviour per test, with the I/O
// page table's invariants checked after every change.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/base/try.h"
#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/pages/dma_buf.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd {
namespace {

constexpr int kRW = kIommuRead | kIommuWrite;
constexpr std::uint64_t kBufPages = 4;
constexpr std::uint64_t kBufSize = kBufPages * kPageSize;

// The smallest exporter: page-aligned memory of this process and a revoked flag.
class TestDmaBuf final : public DmaBuf {
 public:
  static RefPtr<TestDmaBuf> make(std::uint64_t size = kBufSize) {
    return RefPtr<TestDmaBuf>(new TestDmaBuf(size));
  }
  Result<Phys> physical() override REQUIRES(resv_) {
    resv_.assert_held();
    ++physical_calls;
    if (revoked_) return Status::error(ENODEV);
    return Phys{reinterpret_cast<PhysAddr>(mem_), size()};
  }
  void revoke(bool revoked) {
    lockdep::MutexGuard g(resv_);
    revoked_ = revoked;
    invalidate_mappings();
  }
  PhysAddr addr(std::uint64_t offset = 0) const { return reinterpret_cast<PhysAddr>(mem_) + offset; }
  int physical_calls = 0;

 private:
  explicit TestDmaBuf(std::uint64_t size) : DmaBuf(size), mem_(std::aligned_alloc(kPageSize, size)) {}
  ~TestDmaBuf() override { std::free(mem_); }
  void* mem_;
  bool revoked_ GUARDED_BY(resv_) = false;
};

std::unique_ptr<MockDomain> mock_domain() {
  auto r = MockDomain::create({});
  EXPECT_TRUE(r.ok());
  return std::move(*r);
}

std::unique_ptr<PageTableDomain> software_domain() {
  auto r = PageTableDomain::create({});
  EXPECT_TRUE(r.ok());
  return std::move(*r);
}

class DmaBufTest : public ::testing::Test {
 protected:
  void SetUp() override { pinned_before_ = Pages::total_pinned_pages(); }
  void TearDown() override {
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "a dma-buf map pinned something";
  }
  Result<RefPtr<Pages>> import(std::uint64_t start = 0, std::uint64_t length = kBufSize,
                               bool writable = true) {
    return Pages::create_dmabuf(buf_, start, length, writable);
  }
  Status map(IoPagetable& iopt, std::uint64_t* iova, std::uint64_t start = 0, std::uint64_t length = kBufSize,
             int prot = kRW) {
    RefPtr<Pages> pages = TRY(import(start, length, prot & kIommuWrite));
    return iopt.map_pages(std::move(pages), iova, prot, /*fixed_iova=*/true);
  }
  static bool mapped(const Domain& d, std::uint64_t iova) { return d.iova_to_phys(iova).has_value(); }
  static void expect_invariants(IoPagetable& iopt) { EXPECT_EQ(iopt.check_invariants(), ""); }

  RefPtr<TestDmaBuf> buf_ = TestDmaBuf::make();
  std::uint64_t pinned_before_ = 0;
};

constexpr std::uint64_t kIova = 0x1000000;

TEST_F(DmaBufTest, ImportEndingPastTheBufferIsEinval) {
  EXPECT_EQ(import(0, kBufSize + 1).status().error(), EINVAL);
  EXPECT_EQ(import(kBufSize, 1).status().error(), EINVAL);
  EXPECT_EQ(import(kPageSize, kBufSize - kPageSize + 1).status().error(), EINVAL);
  EXPECT_EQ(buf_->importers(), 0u);
}

TEST_F(DmaBufTest, ImportUpToTheLastByteSucceeds) {
  auto p = import(kBufSize - 1, 1);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ((*p)->npages(), 1u);
  EXPECT_EQ((*p)->start_offset(), kPageSize - 1);
  EXPECT_EQ((*p)->source_addr(), kBufSize - 1);
}

TEST_F(DmaBufTest, ImportOfRevokedBufferIsEnodevAndLeavesNoImporter) {
  buf_->revoke(true);
  EXPECT_EQ(import().status().error(), ENODEV);
  EXPECT_EQ(buf_->importers(), 0u);
}

TEST_F(DmaBufTest, ImportAttachesUntilThePagesGo) {
  {
    auto p = import();
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(buf_->importers(), 1u);
    EXPECT_EQ(buf_->physical_calls, 1);
    EXPECT_EQ((*p)->account_mode(), AccountMode::kNone);
    EXPECT_FALSE((*p)->pins_pages());
    EXPECT_EQ((*p)->dmabuf(), buf_.get());
  }
  EXPECT_EQ(buf_->importers(), 0u);
}

TEST_F(DmaBufTest, ImportFaultSitesUnwind) {
  SweepResult r =
      sweep_fail_nth([] {}, [&] { return import().status(); },
                     [&](unsigned, Status st) {
                       if (!st.ok()) {
                         EXPECT_EQ(st.error(), ENOMEM);
                       }
                       EXPECT_EQ(buf_->importers(), 0u);  // the Pages of a successful run is gone again too
                     });
  EXPECT_TRUE(r.final_status.ok());
  EXPECT_EQ(r.fired_sites, (std::vector<std::string>{"pages.alloc", "dmabuf.attach"}));
}

TEST_F(DmaBufTest, MapFillsEveryDomainWithTheExporterAddress) {
  IoPagetable iopt;
  auto d1 = mock_domain();
  auto d2 = software_domain();
  ASSERT_TRUE(iopt.add_domain(d1.get()).ok());
  ASSERT_TRUE(iopt.add_domain(d2.get()).ok());
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova, kPageSize, 2 * kPageSize).ok());
  for (const Domain* d : {static_cast<const Domain*>(d1.get()), static_cast<const Domain*>(d2.get())}) {
    EXPECT_EQ(d->iova_to_phys(kIova), buf_->addr(kPageSize));
    EXPECT_EQ(d->iova_to_phys(kIova + 2 * kPageSize - 1), buf_->addr(3 * kPageSize - 1));
  }
  expect_invariants(iopt);
  iopt.remove_domain(d2.get());
  iopt.remove_domain(d1.get());
}

TEST_F(DmaBufTest, MapPinsAndChargesNothing) {
  IoPagetable iopt;
  auto d = mock_domain();
  ASSERT_TRUE(iopt.add_domain(d.get()).ok());
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  auto areas = iopt.areas();
  ASSERT_EQ(areas.size(), 1u);
  Pages& pages = const_cast<Pages&>(*areas[0].pages);
  {
    lockdep::MutexGuard g(pages.mutex());
    EXPECT_EQ(pages.npinned_locked(), 0u);
    EXPECT_EQ(pages.tracks_locked(), 1u);
  }
  iopt.remove_domain(d.get());
}

TEST_F(DmaBufTest, RevokeUnmapsTheAreaFromEveryDomain) {
  IoPagetable iopt;
  auto d1 = mock_domain();
  auto d2 = mock_domain();
  ASSERT_TRUE(iopt.add_domain(d1.get()).ok());
  ASSERT_TRUE(iopt.add_domain(d2.get()).ok());
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova).ok());
  buf_->revoke(true);
  EXPECT_FALSE(mapped(*d1, kIova));
  EXPECT_FALSE(mapped(*d2, kIova + kBufSize - 1));
  EXPECT_EQ(d1->mapped_bytes(), 0u);
  EXPECT_EQ(iopt.area_count(), 1u);  // the area stays
  expect_invariants(iopt);
  iopt.remove_domain(d1.get());
  iopt.remove_domain(d2.get());
}

TEST_F(DmaBufTest, DomainAddedAfterRevokeGetsNothing) {
  IoPagetable iopt;
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova).ok());
  buf_->revoke(true);
  auto d = mock_domain();
  ASSERT_TRUE(iopt.add_domain(d.get()).ok());
  EXPECT_FALSE(mapped(*d, kIova));
  expect_invariants(iopt);
  iopt.remove_domain(d.get());
}

TEST_F(DmaBufTest, RestoringTheBufferLeavesAnOldImportRevoked) {
  IoPagetable iopt;
  auto d = mock_domain();
  ASSERT_TRUE(iopt.add_domain(d.get()).ok());
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova).ok());
  buf_->revoke(true);
  buf_->revoke(false);
  EXPECT_FALSE(mapped(*d, kIova));
  std::uint64_t again = kIova + kBufSize;
  ASSERT_TRUE(map(iopt, &again).ok());
  EXPECT_TRUE(mapped(*d, again));
  expect_invariants(iopt);
  iopt.remove_domain(d.get());
}

TEST_F(DmaBufTest, UnmapOfARevokedAreaSucceedsAndDetaches) {
  IoPagetable iopt;
  auto d = mock_domain();
  ASSERT_TRUE(iopt.add_domain(d.get()).ok());
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova).ok());
  buf_->revoke(true);
  std::uint64_t unmapped = 0;
  ASSERT_TRUE(iopt.unmap_range({kIova, kIova + kBufSize - 1}, &unmapped).ok());
  EXPECT_EQ(unmapped, kBufSize);
  EXPECT_EQ(buf_->importers(), 0u);
  EXPECT_EQ(d->boundary_violations(), 0u);
  iopt.remove_domain(d.get());
}

TEST_F(DmaBufTest, RemovingADomainDropsItsRecords) {
  IoPagetable iopt;
  auto d1 = mock_domain();
  auto d2 = mock_domain();
  ASSERT_TRUE(iopt.add_domain(d1.get()).ok());
  ASSERT_TRUE(iopt.add_domain(d2.get()).ok());
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova).ok());
  iopt.remove_domain(d2.get());
  EXPECT_FALSE(mapped(*d2, kIova));
  Pages& pages = const_cast<Pages&>(*iopt.areas()[0].pages);
  {
    lockdep::MutexGuard g(pages.mutex());
    EXPECT_EQ(pages.tracks_locked(), 1u);
  }
  // The revoke now reaches only the domain still attached (d2 is gone from its records).
  buf_->revoke(true);
  EXPECT_FALSE(mapped(*d1, kIova));
  iopt.remove_domain(d1.get());
}

TEST_F(DmaBufTest, CopySharesTheImportAndTheRevokeReachesIt) {
  IoPagetable src, dst;
  auto d1 = mock_domain();
  auto d2 = mock_domain();
  ASSERT_TRUE(src.add_domain(d1.get()).ok());
  ASSERT_TRUE(dst.add_domain(d2.get()).ok());
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(src, &iova).ok());
  auto chunks = src.get_chunks(kIova, kBufSize);
  ASSERT_TRUE(chunks.ok());
  std::uint64_t dst_iova = kIova;
  ASSERT_TRUE(dst.map_chunks(*chunks, &dst_iova, kRW, true).ok());
  EXPECT_EQ(buf_->importers(), 1u);
  EXPECT_TRUE(mapped(*d2, kIova));
  buf_->revoke(true);
  EXPECT_FALSE(mapped(*d1, kIova));
  EXPECT_FALSE(mapped(*d2, kIova));
  expect_invariants(src);
  expect_invariants(dst);
  src.remove_domain(d1.get());
  dst.remove_domain(d2.get());
}

TEST_F(DmaBufTest, AccessPinIsEinval) {
  IoPagetable iopt;
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova).ok());
  std::vector<AccessPage> out;
  EXPECT_EQ(iopt.access_pin(kIova, kPageSize, false, &out).error(), EINVAL);
  EXPECT_EQ(iopt.access_pin(kIova, kPageSize, true, &out).error(), EINVAL);
  expect_invariants(iopt);
}

TEST_F(DmaBufTest, AccessWriteOnReadOnlyAreaIsEpermFirst) {
  IoPagetable iopt;
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova, 0, kBufSize, kIommuRead).ok());
  std::vector<AccessPage> out;
  EXPECT_EQ(iopt.access_pin(kIova, kPageSize, true, &out).error(), EPERM);
  char byte = 0;
  EXPECT_EQ(iopt.access_rw(kIova, &byte, 1, /*write=*/true, false).error(), EPERM);
}

TEST_F(DmaBufTest, AccessRwIsEinval) {
  IoPagetable iopt;
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova).ok());
  char bytes[16] = {};
  EXPECT_EQ(iopt.access_rw(kIova + 8, bytes, sizeof(bytes), false, false).error(), EINVAL);
  EXPECT_EQ(iopt.access_rw(kIova + 8, bytes, sizeof(bytes), true, false).error(), EINVAL);
  EXPECT_EQ(iopt.access_rw(kIova + 8, bytes, sizeof(bytes), false, true).error(), EINVAL);
}

TEST_F(DmaBufTest, CutIsEopnotsupp) {
  IoPagetable iopt;
  ASSERT_TRUE(iopt.set_large_pages(false).ok());
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova).ok());
  EXPECT_EQ(iopt.cut_iova({kIova + kPageSize - 1}).error(), EOPNOTSUPP);
  // A cut at an end is nothing to do, for any area.
  EXPECT_TRUE(iopt.cut_iova({kIova + kBufSize - 1}).ok());
  EXPECT_EQ(iopt.area_count(), 1u);
}

TEST_F(DmaBufTest, UnmapWithLargePagesOffUsesTheMapBoundaries) {
  IoPagetable iopt;
  ASSERT_TRUE(iopt.set_large_pages(false).ok());
  auto d = mock_domain();
  ASSERT_TRUE(iopt.add_domain(d.get()).ok());
  std::uint64_t iova = kIova;
  ASSERT_TRUE(map(iopt, &iova).ok());
  buf_->revoke(true);  // page by page, as mapped
  EXPECT_EQ(d->boundary_violations(), 0u);
  EXPECT_EQ(d->mapped_bytes(), 0u);
  iopt.remove_domain(d.get());
}

// Every site of a map into two domains and of an attach of a third, failed in turn: nothing is left behind
// (no area, no record, no importer, nothing mapped).
TEST_F(DmaBufTest, FaultSweepOverMapAndAttachUnwinds) {
  std::unique_ptr<IoPagetable> iopt;
  std::unique_ptr<MockDomain> d1, d2, d3;
  auto setup = [&] {
    if (iopt) {
      if (iopt->domain_count() == 3) iopt->remove_domain(d3.get());
      iopt->remove_domain(d2.get());
      iopt->remove_domain(d1.get());
    }
    iopt = std::make_unique<IoPagetable>();
    d1 = mock_domain();
    d2 = mock_domain();
    d3 = mock_domain();
    ASSERT_TRUE(iopt->add_domain(d1.get()).ok());
    ASSERT_TRUE(iopt->add_domain(d2.get()).ok());
  };
  auto op = [&]() -> Status {
    std::uint64_t iova = kIova;
    TRY(map(*iopt, &iova));
    return iopt->add_domain(d3.get());
  };
  SweepResult r = sweep_fail_nth(setup, op, [&](unsigned, Status st) {
    EXPECT_EQ(iopt->check_invariants(), "");
    if (st.ok()) return;
    EXPECT_EQ(d3->mapped_bytes(), 0u);
    if (iopt->area_count() == 0) {
      EXPECT_EQ(d1->mapped_bytes(), 0u);
      EXPECT_EQ(buf_->importers(), 0u);
    }
  });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_GE(r.sites_failed, 4u);
  bool saw_track = false;
  for (const std::string& s : r.fired_sites) saw_track |= s == "iopt.alloc_track";
  EXPECT_TRUE(saw_track);
  iopt->remove_domain(d3.get());
  iopt->remove_domain(d2.get());
  iopt->remove_domain(d1.get());
}

}  // namespace
}  // namespace uiommufd
