// The newest page-table ABI through the dispatcher, on real structs: IOMMU_HWPT_ALLOC, IOMMU_GET_HW_INFO and
// IOMMU_HWPT_INVALIDATE (struct rules, the order of checks, what is written back and when), and the mock's
// test ops around them (MOCK_DOMAIN_FLAGS, MD_CHECK_IOTLB, DEV_CHECK_CACHE, PASID_ATTACH/REPLACE/DETACH/
// CHECK_HWPT). The expected values are Linux 7.2's, as tests/abi/abi_{hwpt_alloc,hw_info,nested,pasid}.c
// observe them (main.c iommufd_fops_ioctl(); hw_pagetable.c iommufd_hwpt_alloc(), iommufd_hwpt_invalidate();
// device.c iommufd_get_hw_info(); selftest.c).
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testing/hwpt_ioctl_test.h"
#include "testing/test_fd_host.h"

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/base/page.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/pages/pages.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {
namespace {

using testing::addr;
using testing::as_status;
using testing::HwptIoctlTest;
using testing::HwptSelftest;
using testing::InvalidateEntry;
using testing::kIova;
using testing::kMapRW;
using testing::kNoSuchId;
using testing::kUnmapped;
using testing::make_test_cmd;
using testing::Padded;

constexpr std::uint32_t kNoDirty = Device::kFlagNoDirty;
constexpr std::uint32_t kPasid = Device::kFlagPasid;
constexpr std::uint64_t kCapsNormal = kHwCapDirtyTracking | kHwCapPciAtsNotSupported;

// struct iommu_test_hw_info.
struct TestHwInfo {
  std::uint32_t flags;
  std::uint32_t test_reg;
};

// ---- IOMMU_HWPT_ALLOC ---------------------------------------------------------------------------------

class HwptAllocTest : public HwptIoctlTest {
 protected:
  void SetUp() override {
    HwptIoctlTest::SetUp();
    ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
    md_ = mock(ioas_);  // stdev 2, idev 3, hwpt 4
    ASSERT_EQ(md_.idev, 3u);
  }
  void req(Padded<iommu_hwpt_alloc>* r) {
    std::memset(r, 0, sizeof(*r));
    r->c.size = sizeof(r->c);
    r->c.dev_id = md_.idev;
    r->c.pt_id = ioas_;
  }
  MockIds md_;
};

TEST_F(HwptAllocTest, SizeBelow24IsEinval) {
  Padded<iommu_hwpt_alloc> r;
  req(&r);
  r.c.size = 23;
  EXPECT_EQ(call(IOMMU_HWPT_ALLOC, &r), EINVAL);
  EXPECT_EQ(r.c.out_hwpt_id, 0u);
  EXPECT_EQ(next_id(), 5u);
}

TEST_F(HwptAllocTest, Size24ReadsNothingPastReservedAndWritesOnly24Bytes) {
  Padded<iommu_hwpt_alloc> r;
  req(&r);
  r.c.size = 24;
  // Past the caller's struct: counted as zero, so this is not a request for driver data or a fault id.
  r.c.data_type = kHwptDataSelftest;
  r.c.flags = 0;
  r.c.fault_id = 0x77;
  ASSERT_EQ(call(IOMMU_HWPT_ALLOC, &r), 0);
  EXPECT_EQ(r.c.out_hwpt_id, 5u);
  EXPECT_EQ(r.c.data_type, kHwptDataSelftest);  // not written back
  EXPECT_EQ(r.c.fault_id, 0x77u);
  EXPECT_EQ(check_map(5, kIova, 0, 4 * kPageSize), 0);
}

TEST_F(HwptAllocTest, ALongerStructNeedsAZeroTail) {
  Padded<iommu_hwpt_alloc> r;
  req(&r);
  r.c.size = sizeof(r.bytes);
  ASSERT_EQ(call(IOMMU_HWPT_ALLOC, &r), 0);
  EXPECT_EQ(r.c.out_hwpt_id, 5u);
  EXPECT_EQ(r.bytes[sizeof(r.c)], 0);  // the tail is not written
  ASSERT_EQ(destroy(5), 0);
  req(&r);
  r.c.size = sizeof(r.bytes);
  r.bytes[60] = 1;
  EXPECT_EQ(call(IOMMU_HWPT_ALLOC, &r), E2BIG);
  EXPECT_EQ(next_id(), 5u);
}

TEST_F(HwptAllocTest, ReservedIsEopnotsuppBeforeAnythingElseAndReserved2IsNotChecked) {
  Padded<iommu_hwpt_alloc> r;
  req(&r);
  r.c.__reserved = 1;
  r.c.dev_id = kNoSuchId;
  r.c.data_len = 8;  // NONE with a length: would be EINVAL
  EXPECT_EQ(call(IOMMU_HWPT_ALLOC, &r), EOPNOTSUPP);
  req(&r);
  r.c.__reserved2 = 0xffffffffu;
  ASSERT_EQ(call(IOMMU_HWPT_ALLOC, &r), 0);
  EXPECT_EQ(r.c.out_hwpt_id, 5u);
}

TEST_F(HwptAllocTest, ChecksComeInTheKernelsOrder) {
  const HwptSelftest s{kTestIotlbDefault, 0};
  std::uint32_t out = 0;
  // data_type/data_len, then the device, then pt_id, then the flags.
  EXPECT_EQ(hwpt_alloc(0, kNoSuchId, kNoSuchId, kHwptDataNone, &s, 8, 0, &out), EINVAL);
  EXPECT_EQ(hwpt_alloc(0, kNoSuchId, kNoSuchId, kHwptDataSelftest, &s, 0, 0, &out), EINVAL);
  EXPECT_EQ(hwpt_alloc(kNoSuchId, kNoSuchId, 1u << 31, &out), ENOENT);
  EXPECT_EQ(hwpt_alloc(md_.stdev, ioas_, 0, &out), ENOENT);  // a selftest object is not a device
  EXPECT_EQ(hwpt_alloc(md_.hwpt, ioas_, 0, &out), ENOENT);
  EXPECT_EQ(hwpt_alloc(md_.idev, kNoSuchId, 1u << 31, &out), EINVAL);
  EXPECT_EQ(hwpt_alloc(md_.idev, md_.stdev, 1u << 31, &out), EINVAL);
  EXPECT_EQ(hwpt_alloc(md_.idev, ioas_, 1u << 31, &out), EOPNOTSUPP);
  EXPECT_EQ(hwpt_alloc(md_.idev, md_.hwpt, 0, &out), EOPNOTSUPP);  // nested without data
  EXPECT_EQ(next_id(), 5u);
}

TEST_F(HwptAllocTest, EachFlagAndTheMocksDataMakeAFilledHwpt) {
  for (std::uint32_t flags :
       {0u, std::uint32_t{kHwptAllocNestParent}, std::uint32_t{kHwptAllocDirtyTracking},
        std::uint32_t{kHwptAllocPasid},
        std::uint32_t{kHwptAllocNestParent | kHwptAllocDirtyTracking | kHwptAllocPasid}}) {
    SCOPED_TRACE(flags);
    std::uint32_t id = 0;
    ASSERT_EQ(hwpt_alloc(md_.idev, ioas_, flags, &id), 0);
    EXPECT_EQ(id, 5u);
    EXPECT_EQ(check_map(id, kIova, 0, 4 * kPageSize), 0);
    EXPECT_EQ(check_refs(0, 4 * kPageSize, 1), 0);  // one pin however many domains
    ASSERT_EQ(destroy(id), 0);
  }
  const HwptSelftest s{kTestIotlbDefault, kMockIommuptDefault};
  std::uint32_t id = 0;
  ASSERT_EQ(hwpt_alloc(0, md_.idev, ioas_, kHwptDataSelftest, &s, sizeof(s), 0, &id), 0);
  EXPECT_EQ(check_map(id, kIova + 2048, 2048, 2048), 0);  // a 2 KiB mock table
}

TEST_F(HwptAllocTest, RefusalsOfFlagsAndDriverData) {
  const MockIds nd = mock(ioas_, kNoDirty);
  std::uint32_t out = 0;
  const HwptSelftest s{kTestIotlbDefault, 0};
  const HwptSelftest bad{kTestIotlbDefault, 2};
  EXPECT_EQ(hwpt_alloc(md_.idev, ioas_, 1u << 4, &out), EOPNOTSUPP);
  EXPECT_EQ(hwpt_alloc(kHwptAllocNestParent | kHwptFaultIdValid, md_.idev, ioas_, kHwptDataNone, nullptr, 0,
                       0, &out),
            EOPNOTSUPP);
  EXPECT_EQ(hwpt_alloc(nd.idev, ioas_, kHwptAllocDirtyTracking, &out), EOPNOTSUPP);
  EXPECT_EQ(hwpt_alloc(0, md_.idev, ioas_, kHwptDataSelftest, &bad, sizeof(bad), 0, &out), EOPNOTSUPP);
  EXPECT_EQ(hwpt_alloc(0, md_.idev, ioas_, kHwptDataSelftest, &s, 3, 0, &out), EINVAL);
  EXPECT_EQ(hwpt_alloc(0, md_.idev, ioas_, kHwptDataSelftest, &s, 12, 0, &out), EINVAL);
  EXPECT_EQ(
      hwpt_alloc(0, md_.idev, ioas_, kHwptDataSelftest, reinterpret_cast<const void*>(kUnmapped), 8, 0, &out),
      EFAULT);
  EXPECT_EQ(hwpt_alloc(0, md_.idev, ioas_, 0x1234, &s, sizeof(s), 0, &out), EOPNOTSUPP);
  // The dirty check before the data's length; the driver before the fault lookup.
  EXPECT_EQ(hwpt_alloc(kHwptAllocDirtyTracking, nd.idev, ioas_, kHwptDataSelftest, &s, 3, 0, &out),
            EOPNOTSUPP);
  EXPECT_EQ(
      hwpt_alloc(kHwptFaultIdValid, md_.idev, ioas_, kHwptDataSelftest, &bad, sizeof(bad), kNoSuchId, &out),
      EOPNOTSUPP);
  EXPECT_EQ(next_id(), 7u);
}

TEST_F(HwptAllocTest, AFaultIdIsEnoentAndNothingIsWrittenBack) {
  Padded<iommu_hwpt_alloc> r;
  req(&r);
  r.c.flags = kHwptFaultIdValid;
  r.c.fault_id = kNoSuchId;
  r.c.out_hwpt_id = 0xdeadbeef;
  EXPECT_EQ(call(IOMMU_HWPT_ALLOC, &r), ENOENT);
  EXPECT_EQ(r.c.out_hwpt_id, 0xdeadbeefu);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 1), 0);  // the automatic HWPT's pin only
  EXPECT_EQ(next_id(), 5u);
  // Without the flag fault_id is not read.
  r.c.flags = 0;
  ASSERT_EQ(call(IOMMU_HWPT_ALLOC, &r), 0);
  EXPECT_EQ(r.c.out_hwpt_id, 5u);
}

TEST_F(HwptAllocTest, AReplyThatCannotBeWrittenIsEfaultAndLeavesNothing) {
  Padded<iommu_hwpt_alloc> r;
  req(&r);
  const std::size_t objects = ctx().object_count();
  EXPECT_EQ(call(IOMMU_HWPT_ALLOC, read_only_copy(r.c)), EFAULT);
  EXPECT_EQ(ctx().object_count(), objects);
  EXPECT_EQ(check_map(5, kIova, 0, 2048), ENOENT);
  EXPECT_EQ(next_id(), 5u);
  // The same for a nested HWPT: its parent is free again afterwards.
  const std::uint32_t parent = hwpt_ok(md_.idev, ioas_, kHwptAllocNestParent);
  const HwptSelftest s{kTestIotlbDefault, 0};
  req(&r);
  r.c.pt_id = parent;
  r.c.data_type = kHwptDataSelftest;
  r.c.data_len = sizeof(s);
  r.c.data_uptr = addr(&s);
  EXPECT_EQ(call(IOMMU_HWPT_ALLOC, read_only_copy(r.c)), EFAULT);
  EXPECT_EQ(ctx().object_count(), objects + 1);
  EXPECT_EQ(destroy(parent), 0);
}

TEST_F(HwptAllocTest, AUserHwptIsUsedByIdHeldBusyAndNeverPickedAutomatically) {
  const std::uint32_t user = hwpt_ok(md_.idev, ioas_);
  EXPECT_EQ(user, 5u);
  std::uint32_t out = 0;
  ASSERT_EQ(mock_replace(md_.stdev, user, &out), 0);
  EXPECT_EQ(out, user);
  EXPECT_EQ(destroy(user), EBUSY);
  EXPECT_EQ(destroy(ioas_), EBUSY);
  EXPECT_EQ(check_map(md_.hwpt, kIova, 0, 2048), ENOENT);  // the automatic HWPT went with its only device
  // Back by the IOAS: a new automatic HWPT, not the user one that is on the IOAS's list.
  ASSERT_EQ(mock_replace(md_.stdev, ioas_, &out), 0);
  EXPECT_NE(out, user);
  EXPECT_EQ(check_map(out, kIova, 0, 4 * kPageSize), 0);
  // A new device on the IOAS joins that automatic HWPT.
  EXPECT_EQ(mock(ioas_).hwpt, out);
  EXPECT_EQ(destroy(user), 0);
}

TEST_F(HwptAllocTest, TheHugeTableWidensTheIoasAndSets4KiBAlignment) {
  const std::uint32_t io = ioas_alloc();
  const HwptSelftest huge{kTestIotlbDefault, kMockIommuptHuge};
  std::uint32_t id = 0;
  ASSERT_EQ(hwpt_alloc(0, md_.idev, io, kHwptDataSelftest, &huge, sizeof(huge), 0, &id), 0);
  iommu_iova_range ranges[2] = {};
  iommu_ioas_iova_ranges r{sizeof(r), io, 2, 0, addr(ranges), 0};
  ASSERT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), 0);
  EXPECT_EQ(r.num_iovas, 1u);
  EXPECT_EQ(ranges[0].start, 0u);
  EXPECT_EQ(ranges[0].last, (std::uint64_t{1} << 38) - 1);
  EXPECT_EQ(r.out_iova_alignment, kPageSize);
  EXPECT_EQ(map(io, kIova, 0, 2048), EINVAL);
  ASSERT_EQ(map(io, 0x1000, 0, kPageSize), 0);
  EXPECT_EQ(check_map(id, 0x1000, 0, kPageSize), 0);
  EXPECT_EQ(destroy(id), 0);
}

// Every injected failure (lookups, copies, the mock's allocations, the table, the id, the reply) undoes
// the allocation: no object, and the area keeps the single pin of the automatic HWPT.
TEST_F(HwptAllocTest, InjectedFailuresOfAnAllocLeaveNothing) {
  const std::uint32_t parent = hwpt_ok(md_.idev, ioas_, kHwptAllocNestParent);
  const HwptSelftest s{kTestIotlbDefault, 0};
  for (std::uint32_t pt : {ioas_, parent}) {
    SCOPED_TRACE(pt);
    const std::size_t objects = ctx().object_count();
    std::uint32_t made = 0;
    auto op = [&] {
      return as_status(hwpt_alloc(0, md_.idev, pt, kHwptDataSelftest, &s, sizeof(s), 0, &made));
    };
    SweepResult r = sweep_fail_nth([] {}, op,
                                   [&](unsigned n, Status st) {
                                     if (st.ok()) return;
                                     EXPECT_EQ(ctx().object_count(), objects)
                                         << "fault " << n << " " << st.to_string();
                                     EXPECT_EQ(check_refs(0, 4 * kPageSize, 1), 0) << "fault " << n;
                                   });
    EXPECT_FALSE(r.hit_cap);
    EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
    EXPECT_GE(r.sites_failed, 3u);
    ASSERT_EQ(destroy(made), 0);
  }
}

// ---- nested HWPTs and IOMMU_HWPT_INVALIDATE -----------------------------------------------------------

class NestedIoctlTest : public HwptAllocTest {
 protected:
  void SetUp() override {
    HwptAllocTest::SetUp();
    parent_ = hwpt_ok(md_.idev, ioas_, kHwptAllocNestParent);  // 5
    n_ = nested_ok(md_.idev, parent_);                         // 6
  }
  std::uint32_t parent_ = 0, n_ = 0;
};

TEST_F(NestedIoctlTest, NestedAllocRulesThroughTheIoctl) {
  const std::uint32_t plain = hwpt_ok(md_.idev, ioas_);
  std::uint32_t out = 0;
  EXPECT_EQ(nested(md_.idev, plain, 0, kTestIotlbDefault, &out), EINVAL);
  EXPECT_EQ(nested(md_.idev, md_.hwpt, 0, kTestIotlbDefault, &out), EINVAL);  // automatic
  EXPECT_EQ(nested(md_.idev, n_, 0, kTestIotlbDefault, &out), EINVAL);
  EXPECT_EQ(nested(md_.idev, parent_, kHwptAllocNestParent, kTestIotlbDefault, &out), EOPNOTSUPP);
  EXPECT_EQ(nested(md_.idev, plain, kHwptAllocDirtyTracking, kTestIotlbDefault, &out), EOPNOTSUPP);
  EXPECT_EQ(nested(kNoSuchId, parent_, 0, kTestIotlbDefault, &out), ENOENT);
  const HwptSelftest s{0x1234, 0x77};
  ASSERT_EQ(hwpt_alloc(0, md_.idev, parent_, kHwptDataSelftest, &s, 4, 0, &out), 0);
  expect_iotlb(out, 0x1234);
  EXPECT_EQ(destroy(parent_), EBUSY);
}

TEST_F(NestedIoctlTest, InvalidateClearsEntriesAndWritesEntryNumBack) {
  const InvalidateEntry e[2] = {{0, 1}, {0, 3}};
  std::uint32_t num = 2;
  ASSERT_EQ(invalidate(n_, e, &num), 0);
  EXPECT_EQ(num, 2u);
  EXPECT_EQ(check_iotlb(n_, 0, kTestIotlbDefault), 0);
  EXPECT_EQ(check_iotlb(n_, 1, 0), 0);
  EXPECT_EQ(check_iotlb(n_, 2, kTestIotlbDefault), 0);
  EXPECT_EQ(check_iotlb(n_, 3, 0), 0);
  const InvalidateEntry all{kTestInvalidateFlagAll, 0};
  num = 1;
  ASSERT_EQ(invalidate(n_, &all, &num), 0);
  EXPECT_EQ(num, 1u);
  expect_iotlb(n_, 0);
}

TEST_F(NestedIoctlTest, APartlyHandledArrayReportsHowFarItGot) {
  const InvalidateEntry e[2] = {{0, 0}, {0xffffffffu, 1}};
  std::uint32_t num = 2;
  EXPECT_EQ(invalidate(n_, e, &num), EOPNOTSUPP);
  EXPECT_EQ(num, 1u);
  EXPECT_EQ(check_iotlb(n_, 0, 0), 0);
  EXPECT_EQ(check_iotlb(n_, 1, kTestIotlbDefault), 0);
  const InvalidateEntry e2[2] = {{0, 1}, {0, 4}};
  num = 2;
  EXPECT_EQ(invalidate(n_, e2, &num), EINVAL);
  EXPECT_EQ(num, 1u);
  EXPECT_EQ(check_iotlb(n_, 1, 0), 0);
  auto* edge = reinterpret_cast<InvalidateEntry*>(edge_ + kPageSize - sizeof(InvalidateEntry));
  *edge = {0, 2};
  num = 2;
  EXPECT_EQ(invalidate(n_, edge, &num), EFAULT);
  EXPECT_EQ(num, 1u);
  EXPECT_EQ(check_iotlb(n_, 2, 0), 0);
  EXPECT_EQ(check_iotlb(n_, 3, kTestIotlbDefault), 0);
}

TEST_F(NestedIoctlTest, InvalidateBoundsAndTargetsWriteEntryNumZero) {
  const InvalidateEntry e{0, 0};
  struct Case {
    std::uint32_t hwpt;
    const void* entries;
    std::uint32_t entry_len, num, type;
    int err;
  };
  const Case cases[] = {
      {n_, &e, 0, 1, kHwptInvalidateDataSelftest, EINVAL},
      {kNoSuchId, &e, 0, 1, kHwptInvalidateDataSelftest, EINVAL},  // bounds before the lookup
      {n_, &e, kPageSize + 1, 1, kHwptInvalidateDataSelftest, EINVAL},
      {n_, nullptr, 8, 1, kHwptInvalidateDataSelftest, EINVAL},
      {n_, &e, 8, HwPagetable::kInvalidateEntryNumMax + 1, kHwptInvalidateDataSelftest, EINVAL},
      {n_, &e, 9, 1, kHwptInvalidateDataSelftest, EINVAL},
      {n_, &e, 4, 1, kHwptInvalidateDataSelftest, EINVAL},
      {n_, &e, 8, 1, kHwptInvalidateDataSelftest + 1, EINVAL},
      {n_, reinterpret_cast<const void*>(kUnmapped), 8, 1, kHwptInvalidateDataSelftest, EFAULT},
      {kNoSuchId, &e, 8, 1, kHwptInvalidateDataSelftest, ENOENT},
      {parent_, &e, 8, 1, kHwptInvalidateDataSelftest, EINVAL},
      {ioas_, &e, 8, 1, kHwptInvalidateDataSelftest, EINVAL},
      {md_.stdev, &e, 8, 1, kHwptInvalidateDataSelftest, EINVAL},
  };
  for (const Case& c : cases) {
    std::uint32_t num = c.num;
    EXPECT_EQ(invalidate(c.hwpt, c.entries, &num, c.entry_len, c.type), c.err)
        << c.hwpt << " len " << c.entry_len << " num " << c.num;
    EXPECT_EQ(num, 0u);
  }
  expect_iotlb(n_, kTestIotlbDefault);
  // An empty array: the pointer and length are not looked at.
  std::uint32_t num = 0;
  EXPECT_EQ(invalidate(n_, nullptr, &num, 0), 0);
  EXPECT_EQ(num, 0u);
}

TEST_F(NestedIoctlTest, InvalidateStructRules) {
  const InvalidateEntry e{0, 0};
  struct {
    iommu_hwpt_invalidate c;
    std::uint64_t tail;
  } raw{{sizeof(raw.c), n_, addr(&e), kHwptInvalidateDataSelftest, sizeof(e), 1, 0}, 0};
  raw.c.size = 24;
  EXPECT_EQ(call(IOMMU_HWPT_INVALIDATE, &raw), EINVAL);
  EXPECT_EQ(raw.c.entry_num, 1u);  // not written
  raw.c.size = 31;
  EXPECT_EQ(call(IOMMU_HWPT_INVALIDATE, &raw), EINVAL);
  raw.c.size = sizeof(raw);
  raw.tail = 1;
  EXPECT_EQ(call(IOMMU_HWPT_INVALIDATE, &raw), E2BIG);
  EXPECT_EQ(raw.c.entry_num, 1u);
  expect_iotlb(n_, kTestIotlbDefault);
  raw.tail = 0;
  ASSERT_EQ(call(IOMMU_HWPT_INVALIDATE, &raw), 0);
  EXPECT_EQ(raw.c.entry_num, 1u);
  EXPECT_EQ(raw.tail, 0u);
  EXPECT_EQ(check_iotlb(n_, 0, 0), 0);
  // __reserved: EOPNOTSUPP before every other check, with entry_num written back as 0.
  raw.c.size = sizeof(raw.c);
  raw.c.__reserved = 1;
  raw.c.hwpt_id = kNoSuchId;
  raw.c.entry_len = 0;
  EXPECT_EQ(call(IOMMU_HWPT_INVALIDATE, &raw), EOPNOTSUPP);
  EXPECT_EQ(raw.c.entry_num, 0u);
}

TEST_F(NestedIoctlTest, AnInvalidateReplyThatCannotBeWrittenIsEfaultEvenAfterTheWork) {
  const InvalidateEntry e{0, 2};
  iommu_hwpt_invalidate c{sizeof(c), n_, addr(&e), kHwptInvalidateDataSelftest, sizeof(e), 1, 0};
  EXPECT_EQ(call(IOMMU_HWPT_INVALIDATE, read_only_copy(c)), EFAULT);
  EXPECT_EQ(check_iotlb(n_, 2, 0), 0);  // the invalidation itself happened
  // The reply also replaces the command's own error.
  c.hwpt_id = kNoSuchId;
  EXPECT_EQ(call(IOMMU_HWPT_INVALIDATE, read_only_copy(c)), EFAULT);
}

// ---- IOMMU_GET_HW_INFO --------------------------------------------------------------------------------

class HwInfoTest : public HwptIoctlTest {
 protected:
  void SetUp() override {
    HwptIoctlTest::SetUp();
    md_ = mock(ioas_);
  }
  void req(Padded<iommu_hw_info>* r, std::uint32_t dev_id, const void* data = nullptr,
           std::uint32_t len = 0) {
    std::memset(r, 0, sizeof(*r));
    r->c.size = sizeof(r->c);
    r->c.dev_id = dev_id;
    r->c.data_uptr = addr(data);
    r->c.data_len = len;
  }
  int query(std::uint32_t dev_id, iommu_hw_info* out, const void* data = nullptr, std::uint32_t len = 0) {
    Padded<iommu_hw_info> r;
    req(&r, dev_id, data, len);
    const int e = call(IOMMU_GET_HW_INFO, &r);
    *out = r.c;
    return e;
  }
  MockIds md_;
};

TEST_F(HwInfoTest, SizeBelow32IsEinval) {
  Padded<iommu_hw_info> r;
  req(&r, md_.idev);
  r.c.size = 31;
  EXPECT_EQ(call(IOMMU_GET_HW_INFO, &r), EINVAL);
  EXPECT_EQ(r.c.data_type, 0u);
}

TEST_F(HwInfoTest, A32ByteStructDoesNotGetOutCapabilities) {
  Padded<iommu_hw_info> r;
  req(&r, md_.idev);
  r.c.size = 32;
  r.c.out_capabilities = 0x5a5a5a5a5a5a5a5aull;
  ASSERT_EQ(call(IOMMU_GET_HW_INFO, &r), 0);
  EXPECT_EQ(r.c.data_len, 8u);
  EXPECT_EQ(r.c.data_type, kHwInfoTypeSelftest);
  EXPECT_EQ(r.c.out_max_pasid_log2, 0u);
  EXPECT_EQ(r.c.out_capabilities, 0x5a5a5a5a5a5a5a5aull);
}

TEST_F(HwInfoTest, ALongerStructNeedsAZeroTailWhichIsNotWritten) {
  Padded<iommu_hw_info> r;
  req(&r, md_.idev);
  r.c.size = sizeof(r.bytes);
  ASSERT_EQ(call(IOMMU_GET_HW_INFO, &r), 0);
  EXPECT_EQ(r.c.out_capabilities, kCapsNormal);
  for (std::size_t i = sizeof(r.c); i < sizeof(r.bytes); ++i) EXPECT_EQ(r.bytes[i], 0) << i;
  req(&r, md_.idev);
  r.c.size = sizeof(r.bytes);
  r.bytes[50] = 1;
  EXPECT_EQ(call(IOMMU_GET_HW_INFO, &r), E2BIG);
}

TEST_F(HwInfoTest, UnknownFlagsThenReservedBytesAreEopnotsuppBeforeTheDevice) {
  Padded<iommu_hw_info> r;
  for (std::uint32_t flags : {1u << 1, 1u << 31}) {
    req(&r, md_.idev);
    r.c.flags = flags;
    EXPECT_EQ(call(IOMMU_GET_HW_INFO, &r), EOPNOTSUPP);
  }
  for (int i = 0; i < 3; ++i) {
    req(&r, kNoSuchId);
    r.c.__reserved[i] = 0x80;
    EXPECT_EQ(call(IOMMU_GET_HW_INFO, &r), EOPNOTSUPP) << i;
  }
  // With an unknown type asked for, the device is still looked up first.
  req(&r, kNoSuchId);
  r.c.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
  r.c.data_type = kHwInfoTypeSelftest + 1;
  EXPECT_EQ(call(IOMMU_GET_HW_INFO, &r), ENOENT);
  // So is an unmapped buffer.
  req(&r, kNoSuchId, reinterpret_cast<const void*>(kUnmapped), 8);
  EXPECT_EQ(call(IOMMU_GET_HW_INFO, &r), ENOENT);
}

TEST_F(HwInfoTest, OnlyABoundDeviceHasHardwareInfo) {
  iommu_hw_info out{};
  for (std::uint32_t id : {kNoSuchId, 0u, ioas_, md_.stdev, md_.hwpt})
    EXPECT_EQ(query(id, &out), ENOENT) << id;
}

TEST_F(HwInfoTest, WithoutABufferOnlyTheLengthTypeAndCapabilitiesComeBack) {
  iommu_hw_info out{};
  ASSERT_EQ(query(md_.idev, &out), 0);
  EXPECT_EQ(out.data_len, 8u);
  EXPECT_EQ(out.data_type, kHwInfoTypeSelftest);
  EXPECT_EQ(out.out_capabilities, kCapsNormal);
  EXPECT_EQ(out.out_max_pasid_log2, 0u);
  // A zero length touches nothing, so even an unmapped pointer is fine.
  ASSERT_EQ(query(md_.idev, &out, reinterpret_cast<const void*>(kUnmapped), 0), 0);
  EXPECT_EQ(out.data_len, 8u);
}

TEST_F(HwInfoTest, TheDataIsCopiedToBuffersOfAnyLength) {
  iommu_hw_info out{};
  TestHwInfo exact;
  std::memset(&exact, 0xa5, sizeof(exact));
  ASSERT_EQ(query(md_.idev, &out, &exact, sizeof(exact)), 0);
  EXPECT_EQ(out.data_len, 8u);
  EXPECT_EQ(exact.flags, 0u);
  EXPECT_EQ(exact.test_reg, kHwInfoSelftestRegval);
  // Shorter: a prefix, the rest of the caller's memory untouched, data_len still the driver's.
  TestHwInfo shorter;
  std::memset(&shorter, 0xa5, sizeof(shorter));
  ASSERT_EQ(query(md_.idev, &out, &shorter, 4), 0);
  EXPECT_EQ(out.data_len, 8u);
  EXPECT_EQ(shorter.flags, 0u);
  EXPECT_EQ(shorter.test_reg, 0xa5a5a5a5u);
  // Longer: the data, then zeros up to the buffer's length, nothing beyond.
  std::uint8_t longer[24];
  std::memset(longer, 0xff, sizeof(longer));
  ASSERT_EQ(query(md_.idev, &out, longer, 16), 0);
  EXPECT_EQ(out.data_len, 8u);
  std::uint32_t reg = 0;
  std::memcpy(&reg, longer + 4, 4);
  EXPECT_EQ(reg, kHwInfoSelftestRegval);
  for (int i = 8; i < 16; ++i) EXPECT_EQ(longer[i], 0) << i;
  for (int i = 16; i < 24; ++i) EXPECT_EQ(longer[i], 0xff) << i;
  // Several pages long: all zeroed past the data.
  std::memset(mem_, 0xff, 3 * kPageSize);
  ASSERT_EQ(query(md_.idev, &out, mem_, 3 * kPageSize), 0);
  EXPECT_EQ(out.data_len, 8u);
  for (std::size_t i = 8; i < 3 * kPageSize; ++i)
    if (mem_[i] != 0) FAIL() << "byte " << i << " not zeroed";
}

TEST_F(HwInfoTest, AnUnwritableBufferIsEfaultAndDataLenIsNotWrittenBack) {
  Padded<iommu_hw_info> r;
  req(&r, md_.idev, reinterpret_cast<const void*>(kUnmapped), 8);
  EXPECT_EQ(call(IOMMU_GET_HW_INFO, &r), EFAULT);
  EXPECT_EQ(r.c.data_len, 8u);
  EXPECT_EQ(r.c.out_capabilities, 0u);
  // The data fits, the zeroing runs into the inaccessible page: EFAULT, with the data copied.
  std::memset(edge_ + kPageSize - 8, 0xff, 8);
  req(&r, md_.idev, edge_ + kPageSize - 8, 16);
  EXPECT_EQ(call(IOMMU_GET_HW_INFO, &r), EFAULT);
  EXPECT_EQ(r.c.data_len, 16u);
  std::uint32_t reg = 0;
  std::memcpy(&reg, edge_ + kPageSize - 4, 4);
  EXPECT_EQ(reg, kHwInfoSelftestRegval);
  // A reply that cannot be written.
  req(&r, md_.idev);
  EXPECT_EQ(call(IOMMU_GET_HW_INFO, read_only_copy(r.c)), EFAULT);
}

TEST_F(HwInfoTest, TheInputTypeFlagAsksForATypeWhichWithoutItIsIgnored) {
  struct Case {
    std::uint32_t flags, type;
    int err;
  };
  for (const Case c : {Case{IOMMU_HW_INFO_FLAG_INPUT_TYPE, kHwInfoTypeSelftest, 0},
                       Case{IOMMU_HW_INFO_FLAG_INPUT_TYPE, kHwInfoTypeDefault, 0},
                       Case{IOMMU_HW_INFO_FLAG_INPUT_TYPE, kHwInfoTypeSelftest + 1, EOPNOTSUPP},
                       Case{IOMMU_HW_INFO_FLAG_INPUT_TYPE, 1, EOPNOTSUPP},
                       Case{0, kHwInfoTypeSelftest + 1, 0}, Case{0, 1, 0}}) {
    SCOPED_TRACE(c.type);
    Padded<iommu_hw_info> r;
    req(&r, md_.idev);
    r.c.flags = c.flags;
    r.c.data_type = c.type;
    r.c.out_max_pasid_log2 = 0x5a;  // an output only
    EXPECT_EQ(call(IOMMU_GET_HW_INFO, &r), c.err);
    if (c.err == 0) {
      EXPECT_EQ(r.c.data_type, kHwInfoTypeSelftest);
      EXPECT_EQ(r.c.data_len, 8u);
      EXPECT_EQ(r.c.out_max_pasid_log2, 0u);
    } else {
      EXPECT_EQ(r.c.data_type, c.type);  // nothing written back
    }
  }
}

TEST_F(HwInfoTest, CapabilitiesAndPasidWidthFollowTheDeviceFlags) {
  struct Case {
    std::uint32_t flags;
    std::uint64_t caps;
    std::uint8_t log2;
  };
  for (const Case c : {Case{kNoDirty, kHwCapPciAtsNotSupported, 0}, Case{kPasid, kCapsNormal, 20},
                       Case{kNoDirty | kPasid, kHwCapPciAtsNotSupported, 20}}) {
    SCOPED_TRACE(c.flags);
    const MockIds ids = mock(ioas_, c.flags);
    iommu_hw_info out{};
    ASSERT_EQ(query(ids.idev, &out), 0);
    EXPECT_EQ(out.data_len, 8u);
    EXPECT_EQ(out.data_type, kHwInfoTypeSelftest);
    EXPECT_EQ(out.out_capabilities, c.caps);
    EXPECT_EQ(out.out_max_pasid_log2, c.log2);
  }
}

TEST_F(HwInfoTest, ASoftwareDeviceHasNoDataAndTypeNoneButItsBufferIsZeroed) {
  auto id = Device::create(ctx(), Device::Kind::kSoftware);
  ASSERT_TRUE(id.ok());
  std::uint8_t buf[16];
  std::memset(buf, 0xff, sizeof(buf));
  Padded<iommu_hw_info> r;
  req(&r, *id, buf, sizeof(buf));
  r.c.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
  r.c.data_type = kHwInfoTypeSelftest;  // no driver hook: not even looked at
  ASSERT_EQ(call(IOMMU_GET_HW_INFO, &r), 0);
  EXPECT_EQ(r.c.data_len, 0u);
  EXPECT_EQ(r.c.data_type, kHwInfoTypeDefault);
  EXPECT_EQ(r.c.out_capabilities, std::uint64_t{kHwCapPciAtsNotSupported});
  EXPECT_EQ(r.c.out_max_pasid_log2, 0u);
  for (std::uint8_t b : buf) EXPECT_EQ(b, 0);
}

// FIXME(engine): with no driver data to copy, a buffer whose end wraps past the top of the address space
// is "zeroed" by a loop that never runs, and the call succeeds; the kernel's clear_user() refuses the range
// (access_ok) and the ioctl is EFAULT. Only a device without hardware info (the software driver) gets
// there: the mock's 8-byte copy fails first. Enable once hwpt_ioctls.cc get_hw_info() checks the range.
TEST_F(HwInfoTest, ABufferThatWrapsTheAddressSpaceIsEfaultEvenWithNoDataToCopy) {
  auto id = Device::create(ctx(), Device::Kind::kSoftware);
  ASSERT_TRUE(id.ok());
  Padded<iommu_hw_info> r;
  req(&r, *id, reinterpret_cast<const void*>(0xfffffffffffff000ull), 0x2000);
  EXPECT_EQ(call(IOMMU_GET_HW_INFO, &r), EFAULT);
  req(&r, *id, reinterpret_cast<const void*>(0xfffffffffffffff8ull), 16);
  EXPECT_EQ(call(IOMMU_GET_HW_INFO, &r), EFAULT);
}

// ---- the test ops -------------------------------------------------------------------------------------

TEST_F(HwptIoctlTest, MockDomainFlagsMakesADeviceWithThoseFlags) {
  MockIds ids;
  ASSERT_EQ(mock_domain_flags(ioas_, kNoDirty | kPasid, &ids), 0);
  EXPECT_EQ(ids.stdev, 2u);
  EXPECT_EQ(ids.idev, 3u);
  EXPECT_EQ(ids.hwpt, 4u);
  auto dev = ctx().get<Device>(ids.idev, ObjectType::kDevice);
  ASSERT_TRUE(dev.ok());
  EXPECT_EQ((*dev)->flags(), kNoDirty | kPasid);
  EXPECT_EQ((*dev)->kind(), Device::Kind::kMock);
  EXPECT_EQ((*dev)->hwpt_id(), 4u);
}

TEST_F(HwptIoctlTest, MockDomainFlagsRefusesUnknownFlagsAndLeavesNothing) {
  MockIds ids;
  for (std::uint32_t flags : {1u << 1, 1u << 5, kPasid | (1u << 1)})
    EXPECT_EQ(mock_domain_flags(ioas_, flags, &ids), EINVAL);
  EXPECT_EQ(mock_domain_flags(kNoSuchId, 0, &ids), ENOENT);
  EXPECT_EQ(next_id(), 2u);
}

TEST_F(HwptIoctlTest, PlainMockDomainIgnoresTheDevFlagsField) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, ioas_);
  c.mock_domain_flags.dev_flags = 0xffffffffu;
  ASSERT_EQ(test(c), 0);
  auto dev = ctx().get<Device>(c.mock_domain.out_idev_id, ObjectType::kDevice);
  ASSERT_TRUE(dev.ok());
  EXPECT_EQ((*dev)->flags(), 0u);
}

TEST_F(HwptIoctlTest, MockDomainFlagsOnADirtyHwptRefusesANoDirtyDevice) {
  const MockIds md = mock(ioas_);
  const std::uint32_t dirty = hwpt_ok(md.idev, ioas_, kHwptAllocDirtyTracking);
  MockIds ids;
  EXPECT_EQ(mock_domain_flags(dirty, kNoDirty, &ids), EINVAL);
  ASSERT_EQ(mock_domain_flags(dirty, 0, &ids), 0);
  EXPECT_EQ(ids.hwpt, dirty);
}

TEST_F(HwptIoctlTest, MdCheckIotlbFindsOnlyNestedHwpts) {
  const MockIds md = mock(ioas_);
  const std::uint32_t parent = hwpt_ok(md.idev, ioas_, kHwptAllocNestParent);
  const std::uint32_t n = nested_ok(md.idev, parent, 0, 0x1234);
  expect_iotlb(n, 0x1234);
  EXPECT_EQ(check_iotlb(n, 4, 0x1234), EINVAL);
  EXPECT_EQ(check_iotlb(n, 0, kTestIotlbDefault), EINVAL);
  for (std::uint32_t id : {parent, md.hwpt, ioas_, md.stdev, md.idev, kNoSuchId})
    EXPECT_EQ(check_iotlb(id, 0, 0x1234), ENOENT) << id;
}

TEST_F(HwptIoctlTest, DevCheckCacheFindsOnlyDevices) {
  const MockIds md = mock(ioas_);
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_EQ(dev_check_cache(md.idev, i, kTestDevCacheDefault), 0);
  EXPECT_EQ(dev_check_cache(md.idev, 4, kTestDevCacheDefault), EINVAL);
  EXPECT_EQ(dev_check_cache(md.idev, 0, 0), EINVAL);
  for (std::uint32_t id : {ioas_, md.stdev, md.hwpt, kNoSuchId})
    EXPECT_EQ(dev_check_cache(id, 0, kTestDevCacheDefault), ENOENT) << id;
}

TEST_F(HwptIoctlTest, TheV62LayoutRefusesTheNewOps) {
  const MockIds md = mock(ioas_);
  for (std::uint32_t op :
       {IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, IOMMU_TEST_OP_MD_CHECK_IOTLB, IOMMU_TEST_OP_DEV_CHECK_CACHE,
        IOMMU_TEST_OP_PASID_ATTACH, IOMMU_TEST_OP_PASID_REPLACE, IOMMU_TEST_OP_PASID_DETACH,
        IOMMU_TEST_OP_PASID_CHECK_HWPT}) {
    iommu_test_cmd c = make_test_cmd(op, op == IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS ? ioas_ : md.stdev);
    c.size = kTestCmdV62Size;
    EXPECT_EQ(test(c), EOPNOTSUPP) << op;
  }
  EXPECT_EQ(next_id(), 5u);  // no MOCK_DOMAIN_FLAGS device was made
}

class PasidIoctlTest : public HwptIoctlTest {
 protected:
  void SetUp() override {
    HwptIoctlTest::SetUp();
    ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
    p_ = mock(ioas_, kPasid);                                 // 2, 3, 4
    np_ = mock(ioas_);                                        // 5, 6, hwpt 4
    parent_ = hwpt_ok(p_.idev, ioas_, kHwptAllocNestParent);  // 7
    s2_ = hwpt_ok(p_.idev, ioas_, kHwptAllocPasid);           // 8
    n0_ = nested_ok(p_.idev, parent_, kHwptAllocPasid);       // 9
    nnp_ = nested_ok(p_.idev, parent_);                       // 10
  }
  void TearDown() override {
    for (std::uint32_t stdev : {p_.stdev, np_.stdev})
      for (std::uint32_t pasid : {100u, 200u, 1024u}) pasid_detach(stdev, pasid);
    HwptIoctlTest::TearDown();
  }
  MockIds p_, np_;
  std::uint32_t parent_ = 0, s2_ = 0, n0_ = 0, nnp_ = 0;
};

TEST_F(PasidIoctlTest, AttachWritesTheHwptIdBackAndCheckHwptSeesIt) {
  std::uint32_t out = 0;
  ASSERT_EQ(mock_replace(p_.stdev, s2_), 0);
  ASSERT_EQ(pasid_attach(p_.stdev, 100, n0_, &out), 0);
  EXPECT_EQ(out, n0_);
  EXPECT_EQ(pasid_check(p_.stdev, 100, n0_), 0);
  EXPECT_EQ(pasid_check(p_.stdev, 100, s2_), EINVAL);
  EXPECT_EQ(pasid_check(p_.stdev, 100, 0), EINVAL);
  EXPECT_EQ(pasid_check(p_.stdev, 200, 0), 0);
  EXPECT_EQ(pasid_check(p_.stdev, 100, ioas_), EINVAL);
  EXPECT_EQ(pasid_check(p_.stdev, 100, p_.stdev), EINVAL);
  EXPECT_EQ(pasid_check(p_.stdev, 100, kNoSuchId), ENOENT);
  EXPECT_EQ(destroy(n0_), EBUSY);
  EXPECT_EQ(pasid_detach(p_.stdev, 100), 0);
  EXPECT_EQ(pasid_check(p_.stdev, 100, 0), 0);
  EXPECT_EQ(destroy(n0_), 0);
}

TEST_F(PasidIoctlTest, PasidZeroThroughTheOpsIsTheRidAndAnIoasGivesItsAutomaticHwpt) {
  EXPECT_EQ(pasid_check(p_.stdev, 0, p_.hwpt), 0);
  EXPECT_EQ(pasid_attach(p_.stdev, 0, s2_), EBUSY);
  std::uint32_t out = 0;
  ASSERT_EQ(pasid_replace(p_.stdev, 0, s2_, &out), 0);
  EXPECT_EQ(out, s2_);
  ASSERT_EQ(pasid_detach(p_.stdev, 0), 0);
  EXPECT_EQ(pasid_check(p_.stdev, 0, 0), 0);
  EXPECT_EQ(pasid_replace(p_.stdev, 0, s2_), EINVAL);
  ASSERT_EQ(pasid_attach(p_.stdev, 0, ioas_, &out), 0);
  EXPECT_EQ(out, p_.hwpt);  // the IOAS id in, the automatic HWPT's id out
}

TEST_F(PasidIoctlTest, AttachErrnos) {
  // The RID on the automatic HWPT: no PASID.
  EXPECT_EQ(pasid_attach(p_.stdev, 100, s2_), EINVAL);
  ASSERT_EQ(mock_replace(p_.stdev, s2_), 0);
  EXPECT_EQ(pasid_attach(p_.stdev, 100, parent_), EINVAL);
  EXPECT_EQ(pasid_attach(p_.stdev, 100, nnp_), EINVAL);
  EXPECT_EQ(pasid_attach(p_.stdev, 100, ioas_), EINVAL);
  EXPECT_EQ(pasid_attach(p_.stdev, 100, kNoSuchId), ENOENT);
  EXPECT_EQ(pasid_attach(p_.stdev, 100, p_.idev), EINVAL);
  EXPECT_EQ(pasid_attach(p_.stdev, 1u << 20, s2_), EINVAL);
  EXPECT_EQ(next_id(), 11u);  // no automatic HWPT was left by the IOAS attempt
  ASSERT_EQ(pasid_attach(p_.stdev, 100, s2_), 0);
  EXPECT_EQ(pasid_attach(p_.stdev, 100, n0_), EBUSY);
  EXPECT_EQ(pasid_attach(p_.stdev, 100, ioas_), EBUSY);
  // With a PASID attached the RID may not leave for an HWPT without the flag.
  EXPECT_EQ(mock_replace(p_.stdev, parent_), EINVAL);
  EXPECT_EQ(mock_replace(p_.stdev, ioas_), EINVAL);
  EXPECT_EQ(pasid_check(p_.stdev, 0, s2_), 0);
  // The device without PASIDs: only PASID 0 exists.
  ASSERT_EQ(mock_replace(np_.stdev, s2_), 0);
  EXPECT_EQ(pasid_attach(np_.stdev, 1, s2_), EINVAL);
  EXPECT_EQ(pasid_attach(np_.stdev, 1024, s2_), EINVAL);
  EXPECT_EQ(pasid_attach(np_.stdev, 0, s2_), EBUSY);
}

TEST_F(PasidIoctlTest, ReplaceWritesTheNewIdBackAndKeepsTheOldOnFailure) {
  ASSERT_EQ(mock_replace(p_.stdev, s2_), 0);
  EXPECT_EQ(pasid_replace(p_.stdev, 200, s2_), EINVAL);
  EXPECT_EQ(pasid_replace(p_.stdev, 200, kNoSuchId), ENOENT);
  ASSERT_EQ(pasid_attach(p_.stdev, 200, s2_), 0);
  EXPECT_EQ(pasid_replace(p_.stdev, 200, parent_), EINVAL);
  EXPECT_EQ(pasid_replace(p_.stdev, 200, ioas_), EINVAL);
  EXPECT_EQ(pasid_check(p_.stdev, 200, s2_), 0);
  std::uint32_t out = 0;
  ASSERT_EQ(pasid_replace(p_.stdev, 200, n0_, &out), 0);
  EXPECT_EQ(out, n0_);
  EXPECT_EQ(pasid_check(p_.stdev, 200, n0_), 0);
  // PASID 1024: the mock fails every second set.
  ASSERT_EQ(pasid_attach(p_.stdev, 1024, s2_), 0);
  EXPECT_EQ(pasid_replace(p_.stdev, 1024, n0_), ENOMEM);
  EXPECT_EQ(pasid_check(p_.stdev, 1024, s2_), 0);
  ASSERT_EQ(pasid_replace(p_.stdev, 1024, n0_, &out), 0);
  EXPECT_EQ(out, n0_);
}

TEST_F(PasidIoctlTest, DetachOfAnUnattachedPasidSucceedsAndTheOpsNeedASelftestDevice) {
  EXPECT_EQ(pasid_detach(p_.stdev, 100), 0);
  EXPECT_EQ(pasid_check(p_.stdev, 100, 0), 0);
  for (std::uint32_t id : {ioas_, p_.idev, s2_, kNoSuchId}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(pasid_attach(id, 100, s2_), ENOENT);
    EXPECT_EQ(pasid_replace(id, 100, s2_), ENOENT);
    EXPECT_EQ(pasid_detach(id, 100), ENOENT);
    EXPECT_EQ(pasid_check(id, 100, 0), ENOENT);
  }
  // A v6.2-model selftest object has no device.
  iommu_test_cmd v62 = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, ioas_);
  v62.size = kTestCmdV62Size;
  ASSERT_EQ(test(v62), 0);
  EXPECT_EQ(pasid_attach(v62.mock_domain.out_stdev_id, 100, s2_), EINVAL);
  EXPECT_EQ(pasid_check(v62.mock_domain.out_stdev_id, 100, 0), EINVAL);
  EXPECT_EQ(destroy(v62.mock_domain.out_stdev_id), 0);
  EXPECT_EQ(destroy(v62.mock_domain.out_hwpt_id), 0);
}

TEST_F(PasidIoctlTest, AnAttachWhoseReplyCannotBeWrittenIsDetachedAgain) {
  ASSERT_EQ(mock_replace(p_.stdev, s2_), 0);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_PASID_ATTACH, p_.stdev);
  c.pasid_attach.pasid = 100;
  c.pasid_attach.pt_id = n0_;
  EXPECT_EQ(test(*read_only_copy(c)), EFAULT);
  EXPECT_EQ(pasid_check(p_.stdev, 100, 0), 0);
  EXPECT_EQ(destroy(n0_), 0);  // not held
  // On PASID 1024 the undo is a detach, which resets the mock's toggle: the next attach and the replace
  // after it behave as on a fresh PASID.
  c.pasid_attach.pasid = 1024;
  c.pasid_attach.pt_id = s2_;
  EXPECT_EQ(test(*read_only_copy(c)), EFAULT);
  EXPECT_EQ(pasid_check(p_.stdev, 1024, 0), 0);
  ASSERT_EQ(pasid_attach(p_.stdev, 1024, s2_), 0);
  EXPECT_EQ(pasid_replace(p_.stdev, 1024, nnp_), EINVAL);
  const std::uint32_t n1 = nested_ok(p_.idev, parent_, kHwptAllocPasid);
  EXPECT_EQ(pasid_replace(p_.stdev, 1024, n1), ENOMEM);
}

TEST_F(PasidIoctlTest, AReplaceWhoseReplyCannotBeWrittenIsEfaultButStaysDone) {
  ASSERT_EQ(mock_replace(p_.stdev, s2_), 0);
  ASSERT_EQ(pasid_attach(p_.stdev, 100, s2_), 0);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_PASID_REPLACE, p_.stdev);
  c.pasid_attach.pasid = 100;
  c.pasid_attach.pt_id = n0_;
  EXPECT_EQ(test(*read_only_copy(c)), EFAULT);
  EXPECT_EQ(pasid_check(p_.stdev, 100, n0_), 0);  // the kernel does not undo a replace
  EXPECT_EQ(destroy(n0_), EBUSY);
}

TEST_F(PasidIoctlTest, InjectedFailuresOfAPasidAttachLeaveItDetached) {
  ASSERT_EQ(mock_replace(p_.stdev, s2_), 0);
  auto op = [&] { return as_status(pasid_attach(p_.stdev, 100, n0_)); };
  SweepResult r = sweep_fail_nth([] {}, op,
                                 [&](unsigned n, Status st) {
                                   if (st.ok()) return;
                                   EXPECT_EQ(pasid_check(p_.stdev, 100, 0), 0) << "fault " << n;
                                 });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_NE(std::find(r.fired_sites.begin(), r.fired_sites.end(), "device.attach"), r.fired_sites.end());
  EXPECT_EQ(pasid_check(p_.stdev, 100, n0_), 0);
  ASSERT_EQ(pasid_detach(p_.stdev, 100), 0);
  EXPECT_EQ(destroy(n0_), 0);  // no failed run left a hold on it
}

TEST_F(PasidIoctlTest, DestroyingTheSelftestObjectReleasesItsPasids) {
  ASSERT_EQ(mock_replace(p_.stdev, s2_), 0);
  ASSERT_EQ(pasid_attach(p_.stdev, 100, n0_), 0);
  ASSERT_EQ(pasid_attach(p_.stdev, 200, s2_), 0);
  ASSERT_EQ(destroy(p_.stdev), 0);
  EXPECT_EQ(destroy(p_.idev), ENOENT);
  EXPECT_EQ(destroy(n0_), 0);
  EXPECT_EQ(destroy(s2_), 0);
}

}  // namespace
}  // namespace uiommufd::uapi
