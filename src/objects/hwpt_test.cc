// The newest page-table ABI at the library face: HwPagetable::alloc (paging and nested HWPTs, the mock
// and software drivers), HwPagetable::invalidate, per-PASID attach/replace/detach on Device, hw_info,
// check_cache, NestedDomain and copy_user_data. Driver data lives in this test's own memory: the engine
// reads it through Mm::current(), the process's own address space.
//
// The errno orders are Linux 7.2's (drivers/iommu/iommufd/hw_pagetable.c iommufd_hwpt_alloc(),
// iommufd_hwpt_paging_alloc(), iommufd_hwpt_nested_alloc(), iommufd_hwpt_invalidate(); device.c
// iommufd_device_change_pt(), iommufd_hwpt_pasid_compat(); iommu.c iommu_attach_device_pasid();
// selftest.c's mock driver), as tests/abi/abi_{hwpt_alloc,hw_info,nested,pasid}.c observe them.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd {
namespace {

constexpr std::uint32_t kRW = Ioas::kReadable | Ioas::kWriteable;
constexpr std::uint64_t kMockBase = MockDomain::kAperture.start;
// Below mmap_min_addr: never mapped in any process.
constexpr std::uint64_t kUnmapped = 0x1000;
constexpr std::uint32_t kNoSuchId = 9999;

// struct iommu_hwpt_selftest and struct iommu_hwpt_invalidate_selftest, as a caller lays them out.
struct HwptSelftest {
  std::uint32_t iotlb;
  std::uint32_t pagetable_type;
};
struct InvalidateEntry {
  std::uint32_t flags;
  std::uint32_t iotlb_id;
};

std::uint64_t addr(const void* p) { return reinterpret_cast<std::uint64_t>(p); }

class HwptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pinned_before_ = Pages::total_pinned_pages();
    auto c = Context::create();
    ASSERT_TRUE(c.ok());
    ctx_ = std::move(*c);
    mem_ = mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem_, MAP_FAILED);
    // Two pages, the second inaccessible: for structs that run into unmapped memory.
    edge_ = static_cast<char*>(
        mmap(nullptr, 2 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(edge_, MAP_FAILED);
    ASSERT_EQ(mprotect(edge_ + kPageSize, kPageSize, PROT_NONE), 0);
  }
  void TearDown() override {
    fail_nth_set(0);
    ctx_.reset();
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "the context leaked pins";
    munmap(mem_, kLen);
    munmap(edge_, 2 * kPageSize);
  }

  std::uint64_t uptr(std::uint64_t off = 0) const { return addr(mem_) + off; }
  Ioas& ioas(std::uint32_t id) {
    auto r = ctx_->get<Ioas>(id, ObjectType::kIoas);
    EXPECT_TRUE(r.ok());
    return *r->get();  // the table keeps it alive for the test
  }
  Device& dev(std::uint32_t id) {
    auto r = ctx_->get<Device>(id, ObjectType::kDevice);
    EXPECT_TRUE(r.ok());
    return *r->get();
  }
  HwptPaging& paging(std::uint32_t id) {
    auto r = ctx_->get<HwptPaging>(id, ObjectType::kHwptPaging);
    EXPECT_TRUE(r.ok());
    return *r->get();
  }
  HwptNested& nested_hwpt(std::uint32_t id) {
    auto r = ctx_->get<HwptNested>(id, ObjectType::kHwptNested);
    EXPECT_TRUE(r.ok());
    return *r->get();
  }
  bool exists(std::uint32_t id) { return ctx_->get<Object>(id, ObjectType::kAny).ok(); }

  std::uint32_t new_ioas() {
    auto id = Ioas::create(*ctx_);
    EXPECT_TRUE(id.ok());
    return *id;
  }
  std::uint32_t mock(std::uint32_t flags = 0) {
    auto id = Device::create(*ctx_, Device::Kind::kMock, flags);
    EXPECT_TRUE(id.ok());
    return *id;
  }
  std::uint32_t software() {
    auto id = Device::create(*ctx_, Device::Kind::kSoftware);
    EXPECT_TRUE(id.ok());
    return *id;
  }
  // Maps `len` bytes of mem_ (from `off`) at `iova`.
  Status map(std::uint32_t ioas_id, std::uint64_t iova, std::uint64_t off, std::uint64_t len) {
    return ioas(ioas_id).map(uptr(off), len, &iova, kRW | Ioas::kFixedIova);
  }
  // The id the next object gets (taken and given back).
  std::uint32_t next_id() {
    const std::uint32_t id = new_ioas();
    EXPECT_TRUE(ctx_->destroy(id).ok());
    return id;
  }

  Result<std::uint32_t> alloc(std::uint32_t dev_id, std::uint32_t pt_id, std::uint32_t flags = 0,
                              UserData data = {}, std::uint32_t fault_id = 0) {
    HwptAllocArgs args;
    args.flags = flags;
    args.dev_id = dev_id;
    args.pt_id = pt_id;
    args.data = data;
    args.fault_id = fault_id;
    return HwPagetable::alloc(*ctx_, args);
  }
  std::uint32_t alloc_ok(std::uint32_t dev_id, std::uint32_t pt_id, std::uint32_t flags = 0,
                         UserData data = {}) {
    auto r = alloc(dev_id, pt_id, flags, data);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? *r : 0;
  }
  // Driver data pointing at `s`, `len` bytes of it.
  static UserData selftest(const HwptSelftest& s, std::uint32_t len = sizeof(HwptSelftest),
                           std::uint32_t type = kHwptDataSelftest) {
    return UserData{type, addr(&s), len};
  }
  // A nested HWPT on `parent` whose IOTLB starts at `iotlb`.
  Result<std::uint32_t> nested(std::uint32_t dev_id, std::uint32_t parent, std::uint32_t flags,
                               std::uint32_t iotlb) {
    iotlb_data_ = {iotlb, 0};
    return alloc(dev_id, parent, flags, selftest(iotlb_data_));
  }
  std::uint32_t nested_ok(std::uint32_t dev_id, std::uint32_t parent, std::uint32_t flags = 0,
                          std::uint32_t iotlb = kTestIotlbDefault) {
    auto r = nested(dev_id, parent, flags, iotlb);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? *r : 0;
  }
  // HwPagetable::invalidate of `num` entries at `entries`; *out_num gets entry_num as it comes back.
  Status invalidate(std::uint32_t hwpt_id, const void* entries, std::uint32_t num, std::uint32_t* out_num,
                    std::uint32_t entry_len = sizeof(InvalidateEntry),
                    std::uint32_t type = kHwptInvalidateDataSelftest) {
    UserDataArray a{type, addr(entries), entry_len, num};
    Status st = HwPagetable::invalidate(*ctx_, hwpt_id, a);
    *out_num = a.entry_num;
    return st;
  }
  // The four IOTLB entries of a nested HWPT.
  std::vector<std::uint32_t> iotlb(std::uint32_t id) {
    std::vector<std::uint32_t> v;
    for (std::uint32_t i = 0; i < NestedDomain::kIotlbNum; ++i)
      v.push_back(nested_hwpt(id).domain().iotlb(i));
    return v;
  }

  static constexpr std::size_t kLen = 64 * kPageSize;
  std::unique_ptr<Context> ctx_;
  void* mem_ = nullptr;
  char* edge_ = nullptr;
  HwptSelftest iotlb_data_{};
  std::uint64_t pinned_before_ = 0;
};

using Iotlb = std::vector<std::uint32_t>;
const Iotlb kIotlbDefault(4, kTestIotlbDefault);

// ---- copy_user_data and the drivers ------------------------------------------------------------------

TEST_F(HwptTest, CopyUserDataCopiesTheGivenBytesAndZeroFillsTheRest) {
  const std::uint32_t src[2] = {0x11223344, 0x55667788};
  std::uint32_t dst[4] = {1, 2, 3, 4};
  ASSERT_TRUE(copy_user_data(dst, sizeof(dst), 4, UserData{7, addr(src), 4}, 7).ok());
  EXPECT_EQ(dst[0], 0x11223344u);
  EXPECT_EQ(dst[1], 0u);  // not given: zero, not the caller's stale 2
  EXPECT_EQ(dst[2], 0u);
  EXPECT_EQ(dst[3], 0u);
  ASSERT_TRUE(copy_user_data(dst, sizeof(dst), 4, UserData{7, addr(src), 8}, 7).ok());
  EXPECT_EQ(dst[1], 0x55667788u);
}

TEST_F(HwptTest, CopyUserDataRefusesAnotherTypeOrALengthOutsideTheStructAndUnreadableMemory) {
  std::uint64_t src[2] = {0, 0};  // a zero tail does not make a longer struct acceptable
  std::uint32_t dst[2] = {0xaaaa, 0xbbbb};
  EXPECT_EQ(copy_user_data(dst, 8, 4, UserData{6, addr(src), 8}, 7).error(), EINVAL);
  EXPECT_EQ(copy_user_data(dst, 8, 4, UserData{7, addr(src), 3}, 7).error(), EINVAL);
  EXPECT_EQ(copy_user_data(dst, 8, 4, UserData{7, addr(src), 9}, 7).error(), EINVAL);
  EXPECT_EQ(copy_user_data(dst, 8, 4, UserData{7, addr(src), 16}, 7).error(), EINVAL);
  // The refusals above wrote nothing.
  EXPECT_EQ(dst[0], 0xaaaau);
  EXPECT_EQ(dst[1], 0xbbbbu);
  EXPECT_EQ(copy_user_data(dst, 8, 4, UserData{7, kUnmapped, 8}, 7).error(), EFAULT);
  // Half readable: the second 4 bytes lie on the inaccessible page.
  EXPECT_EQ(copy_user_data(dst, 8, 4, UserData{7, addr(edge_ + kPageSize - 4), 8}, 7).error(), EFAULT);
}

TEST_F(HwptTest, TheMockDriverHasFlagsNestingAndDirtyTrackingUnlessTheDeviceLacksIt) {
  const IommuDriver& m = IommuDriver::mock();
  EXPECT_STREQ(m.name(), "mock");
  EXPECT_TRUE(m.has_alloc_flags());
  EXPECT_TRUE(m.has_nesting());
  Device& plain = dev(mock());
  Device& no_dirty = dev(mock(Device::kFlagNoDirty));
  EXPECT_EQ(&plain.driver(), &m);
  EXPECT_TRUE(m.capable(plain, IommuDriver::Cap::kDirtyTracking));
  EXPECT_FALSE(m.capable(no_dirty, IommuDriver::Cap::kDirtyTracking));
  EXPECT_FALSE(m.capable(plain, IommuDriver::Cap::kPciAtsSupported));  // not a PCI device
  // Its default paging domain has the mock aperture and 2 KiB granule; the HUGE table the wider one.
  auto d = m.alloc_paging(plain, 0, nullptr);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->aperture().start, MockDomain::kAperture.start);
  EXPECT_EQ((*d)->aperture().last, MockDomain::kAperture.last);
  EXPECT_EQ((*d)->granule(), 2048u);
  const HwptSelftest huge{kTestIotlbDefault, kMockIommuptHuge};
  const UserData data = selftest(huge);
  auto h = m.alloc_paging(plain, 0, &data);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ((*h)->aperture().start, 0u);
  EXPECT_EQ((*h)->aperture().last, (std::uint64_t{1} << 38) - 1);
  EXPECT_EQ((*h)->granule(), kPageSize);
  // Flags the driver does not take, and dirty tracking on a device that cannot.
  EXPECT_EQ(m.alloc_paging(plain, kHwptFaultIdValid, nullptr).status().error(), EOPNOTSUPP);
  EXPECT_EQ(m.alloc_paging(no_dirty, kHwptAllocDirtyTracking, nullptr).status().error(), EOPNOTSUPP);
  EXPECT_TRUE(m.alloc_paging(no_dirty, kHwptAllocNestParent | kHwptAllocPasid, nullptr).ok());
}

TEST_F(HwptTest, TheMockDriverNestedDomainTakesOnlyThePasidFlagAndSelftestData) {
  const IommuDriver& m = IommuDriver::mock();
  const HwptSelftest s{0x1234, 0};
  auto n = m.alloc_nested(kHwptAllocPasid, selftest(s));
  ASSERT_TRUE(n.ok());
  for (std::uint32_t i = 0; i < NestedDomain::kIotlbNum; ++i) EXPECT_EQ((*n)->iotlb(i), 0x1234u);
  EXPECT_EQ(m.alloc_nested(kHwptAllocNestParent, selftest(s)).status().error(), EOPNOTSUPP);
  EXPECT_EQ(m.alloc_nested(0, selftest(s, 8, kHwptDataSelftest + 1)).status().error(), EOPNOTSUPP);
  EXPECT_EQ(m.alloc_nested(0, selftest(s, 3)).status().error(), EINVAL);
  EXPECT_EQ(m.alloc_nested(0, UserData{kHwptDataSelftest, kUnmapped, 8}).status().error(), EFAULT);
}

TEST_F(HwptTest, TheSoftwareDriverHasNoFlagsNoNestingAndNoHardwareInfo) {
  const IommuDriver& s = IommuDriver::software();
  EXPECT_STREQ(s.name(), "software");
  EXPECT_FALSE(s.has_alloc_flags());
  EXPECT_FALSE(s.has_nesting());
  Device& d = dev(software());
  EXPECT_EQ(&d.driver(), &s);
  EXPECT_FALSE(s.capable(d, IommuDriver::Cap::kDirtyTracking));
  EXPECT_FALSE(s.capable(d, IommuDriver::Cap::kPciAtsSupported));
  auto dom = s.alloc_paging(d, 0, nullptr);
  ASSERT_TRUE(dom.ok());
  EXPECT_EQ((*dom)->granule(), kPageSize);
  const HwptSelftest data{kTestIotlbDefault, 0};
  const UserData ud = selftest(data);
  EXPECT_EQ(s.alloc_paging(d, kHwptAllocNestParent, nullptr).status().error(), EOPNOTSUPP);
  EXPECT_EQ(s.alloc_paging(d, 0, &ud).status().error(), EOPNOTSUPP);
  EXPECT_EQ(s.alloc_nested(0, ud).status().error(), EOPNOTSUPP);
  // Whatever type is asked for, a driver without hardware info answers type 0 and no data.
  std::uint32_t type = kHwInfoTypeSelftest;
  std::vector<std::uint8_t> bytes{1, 2, 3};
  ASSERT_TRUE(s.hw_info(d, &type, &bytes).ok());
  EXPECT_EQ(type, kHwInfoTypeDefault);
  EXPECT_TRUE(bytes.empty());
}

TEST_F(HwptTest, DeviceCreateRefusesUnknownFlagsAndAnyFlagOnASoftwareDevice) {
  const std::size_t before = ctx_->object_count();
  EXPECT_EQ(Device::create(*ctx_, Device::Kind::kMock, 1u << 1).error(), EINVAL);
  EXPECT_EQ(Device::create(*ctx_, Device::Kind::kMock, 1u << 5).error(), EINVAL);
  EXPECT_EQ(Device::create(*ctx_, Device::Kind::kMock, Device::kFlagPasid | (1u << 1)).error(), EINVAL);
  EXPECT_EQ(Device::create(*ctx_, Device::Kind::kSoftware, Device::kFlagNoDirty).error(), EINVAL);
  EXPECT_EQ(Device::create(*ctx_, Device::Kind::kSoftware, Device::kFlagPasid).error(), EINVAL);
  EXPECT_EQ(Device::bind(*ctx_, Device::Kind::kSoftware, Device::kFlagPasid).status().error(), EINVAL);
  EXPECT_EQ(ctx_->object_count(), before);
  EXPECT_EQ(next_id(), 1u);
  const std::uint32_t both = mock(Device::kFlagNoDirty | Device::kFlagPasid);
  EXPECT_EQ(dev(both).flags(), Device::kFlagNoDirty | Device::kFlagPasid);
  EXPECT_EQ(dev(both).kind(), Device::Kind::kMock);
}

// ---- paging HWPTs ------------------------------------------------------------------------------------

TEST_F(HwptTest, PagingAllocWithoutFlagsMakesAUserHwptFilledFromTheIoas) {
  const std::uint32_t io = new_ioas();
  ASSERT_TRUE(map(io, kMockBase, 0, 4 * kPageSize).ok());
  const std::uint32_t d = mock();
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);  // no domain yet
  const std::uint32_t id = alloc_ok(d, io);
  EXPECT_EQ(id, 3u);
  HwptPaging& h = paging(id);
  EXPECT_EQ(h.type(), ObjectType::kHwptPaging);
  EXPECT_FALSE(h.auto_domain());
  EXPECT_FALSE(h.nest_parent());
  EXPECT_FALSE(h.dirty_tracking());
  EXPECT_FALSE(h.pasid_compat());
  EXPECT_EQ(&h.owner(), &IommuDriver::mock());
  EXPECT_EQ(&h.ioas(), &ioas(io));
  EXPECT_EQ(h.device_count(), 0u);
  EXPECT_NE(dynamic_cast<MockDomain*>(&h.domain()), nullptr);
  // Filled from the area that was already there, and pinned once.
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 4);
  auto pa = h.domain().iova_to_phys(kMockBase + kPageSize);
  ASSERT_TRUE(pa.has_value());
  EXPECT_EQ(*pa, uptr(kPageSize));
  EXPECT_EQ(ioas(io).iopt().domain_count(), 1u);
  // The HWPT holds its IOAS; with no device it can be destroyed at once, taking the domain and pins.
  EXPECT_EQ(ctx_->destroy(io).error(), EBUSY);
  ASSERT_TRUE(ctx_->destroy(id).ok());
  EXPECT_EQ(ioas(io).iopt().domain_count(), 0u);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  EXPECT_TRUE(ctx_->destroy(io).ok());
}

TEST_F(HwptTest, PagingAllocFlagsBecomeTheHwptsProperties) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  struct Case {
    std::uint32_t flags;
    bool nest_parent, dirty, pasid;
  };
  for (const Case c :
       {Case{kHwptAllocNestParent, true, false, false}, Case{kHwptAllocDirtyTracking, false, true, false},
        Case{kHwptAllocPasid, false, false, true},
        Case{kHwptAllocNestParent | kHwptAllocDirtyTracking | kHwptAllocPasid, true, true, true}}) {
    SCOPED_TRACE(c.flags);
    const std::uint32_t id = alloc_ok(d, io, c.flags);
    EXPECT_EQ(id, 3u);  // the previous one's id, freed again
    HwptPaging& h = paging(id);
    EXPECT_FALSE(h.auto_domain());
    EXPECT_EQ(h.nest_parent(), c.nest_parent);
    EXPECT_EQ(h.dirty_tracking(), c.dirty);
    EXPECT_EQ(h.pasid_compat(), c.pasid);
    ASSERT_TRUE(ctx_->destroy(id).ok());
  }
}

TEST_F(HwptTest, PagingAllocRefusesUnknownFlagsAndNestParentWithAFaultId) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  EXPECT_EQ(alloc(d, io, 1u << 4).error(), EOPNOTSUPP);
  EXPECT_EQ(alloc(d, io, 1u << 31).error(), EOPNOTSUPP);
  EXPECT_EQ(alloc(d, io, kHwptAllocNestParent | kHwptFaultIdValid).error(), EOPNOTSUPP);
  EXPECT_EQ(ioas(io).iopt().domain_count(), 0u);
}

TEST_F(HwptTest, DirtyTrackingNeedsADeviceThatCanTrackButOtherFlagsDoNot) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t nd = mock(Device::kFlagNoDirty);
  EXPECT_EQ(alloc(nd, io, kHwptAllocDirtyTracking).error(), EOPNOTSUPP);
  const std::uint32_t id = alloc_ok(nd, io, kHwptAllocNestParent | kHwptAllocPasid);
  EXPECT_TRUE(paging(id).nest_parent());
  EXPECT_TRUE(paging(id).pasid_compat());
}

TEST_F(HwptTest, AFaultIdIsEnoentOnceTheHwptWasBuiltAndIsIgnoredWithoutTheFlag) {
  const std::uint32_t io = new_ioas();
  ASSERT_TRUE(map(io, kMockBase, 0, 4 * kPageSize).ok());
  const std::uint32_t d = mock();
  const std::uint32_t probe = next_id();
  for (std::uint32_t fault_id : {kNoSuchId, 0u, io}) {
    EXPECT_EQ(alloc(d, io, kHwptFaultIdValid, {}, fault_id).error(), ENOENT);
    EXPECT_EQ(ioas(io).iopt().domain_count(), 0u);
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  }
  EXPECT_EQ(next_id(), probe);
  auto id = alloc(d, io, 0, {}, kNoSuchId);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, probe);
}

TEST_F(HwptTest, DataTypeAndLengthMustAgreeBeforeAnyLookup) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  const HwptSelftest s{kTestIotlbDefault, 0};
  EXPECT_EQ(alloc(d, io, 0, selftest(s, 8, kHwptDataNone)).error(), EINVAL);
  EXPECT_EQ(alloc(d, io, 0, selftest(s, 0)).error(), EINVAL);
  // Even with an unknown device, and a bad pt_id.
  EXPECT_EQ(alloc(kNoSuchId, kNoSuchId, 0, selftest(s, 8, kHwptDataNone)).error(), EINVAL);
  EXPECT_EQ(alloc(kNoSuchId, kNoSuchId, 1u << 31, selftest(s, 0)).error(), EINVAL);
}

TEST_F(HwptTest, TheDeviceIsLookedUpBeforeThePtAndThePtBeforeTheFlags) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  const std::uint32_t auto_hwpt = *dev(mock()).attach(io);
  // dev_id must name a device: anything else is ENOENT.
  EXPECT_EQ(alloc(kNoSuchId, io).error(), ENOENT);
  EXPECT_EQ(alloc(0, io).error(), ENOENT);
  EXPECT_EQ(alloc(io, io).error(), ENOENT);
  EXPECT_EQ(alloc(auto_hwpt, io).error(), ENOENT);
  EXPECT_EQ(alloc(kNoSuchId, kNoSuchId, 1u << 31).error(), ENOENT);
  // pt_id: unknown is EINVAL (not ENOENT), as is a device; both before the flags.
  EXPECT_EQ(alloc(d, kNoSuchId).error(), EINVAL);
  EXPECT_EQ(alloc(d, 0).error(), EINVAL);
  EXPECT_EQ(alloc(d, d).error(), EINVAL);
  EXPECT_EQ(alloc(d, kNoSuchId, 1u << 31).error(), EINVAL);
  EXPECT_EQ(alloc(d, d, 1u << 31).error(), EINVAL);
  // A paging HWPT as pt_id asks for a nested HWPT, which needs data.
  EXPECT_EQ(alloc(d, auto_hwpt).error(), EOPNOTSUPP);
}

TEST_F(HwptTest, MockDriverDataSelectsThePageTableAndIsCheckedAfterTheFlags) {
  const std::uint32_t io = new_ioas();
  ASSERT_TRUE(map(io, kMockBase, 0, 4 * kPageSize).ok());
  const std::uint32_t d = mock();
  const std::uint32_t nd = mock(Device::kFlagNoDirty);
  const HwptSelftest def{kTestIotlbDefault, kMockIommuptDefault};
  const HwptSelftest bad{kTestIotlbDefault, 2};
  const std::uint32_t id = alloc_ok(d, io, 0, selftest(def));
  EXPECT_EQ(paging(id).domain().granule(), 2048u);
  EXPECT_EQ(paging(id).domain().iova_to_phys(kMockBase), std::optional<PhysAddr>(uptr()));
  ASSERT_TRUE(ctx_->destroy(id).ok());
  // Four bytes give only iotlb: the bad pagetable_type after it is not read.
  const std::uint32_t id4 = alloc_ok(d, io, 0, selftest(bad, 4));
  ASSERT_TRUE(ctx_->destroy(id4).ok());
  EXPECT_EQ(alloc(d, io, 0, selftest(bad)).error(), EOPNOTSUPP);
  EXPECT_EQ(alloc(d, io, 0, selftest(def, 3)).error(), EINVAL);
  EXPECT_EQ(alloc(d, io, 0, selftest(def, 12)).error(), EINVAL);
  EXPECT_EQ(alloc(d, io, 0, UserData{kHwptDataSelftest, kUnmapped, 8}).error(), EFAULT);
  EXPECT_EQ(alloc(d, io, 0, selftest(def, 8, 1)).error(), EOPNOTSUPP);  // IOMMU_HWPT_DATA_VTD_S1
  EXPECT_EQ(alloc(d, io, 0, selftest(def, 8, 0x1234)).error(), EOPNOTSUPP);
  // Orders: the flags (EOPNOTSUPP) before the data's length (EINVAL); the driver's refusal before the
  // fault lookup (ENOENT).
  EXPECT_EQ(alloc(nd, io, kHwptAllocDirtyTracking, selftest(def, 3)).error(), EOPNOTSUPP);
  EXPECT_EQ(alloc(d, io, 1u << 4, selftest(def, 3)).error(), EOPNOTSUPP);
  EXPECT_EQ(alloc(d, io, kHwptFaultIdValid, selftest(def, 3), kNoSuchId).error(), EINVAL);
  EXPECT_EQ(alloc(d, io, kHwptFaultIdValid, selftest(bad), kNoSuchId).error(), EOPNOTSUPP);
  EXPECT_EQ(ioas(io).iopt().domain_count(), 0u);
}

TEST_F(HwptTest, TheSoftwareDriverRefusesEveryFlagAndDriverDataWithEopnotsupp) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t s = software();
  const HwptSelftest def{kTestIotlbDefault, 0};
  for (std::uint32_t flags : {std::uint32_t{kHwptAllocNestParent}, std::uint32_t{kHwptAllocDirtyTracking},
                              std::uint32_t{kHwptAllocPasid}, std::uint32_t{kHwptFaultIdValid}, 1u << 4})
    EXPECT_EQ(alloc(s, io, flags).error(), EOPNOTSUPP) << flags;
  EXPECT_EQ(alloc(s, io, 0, selftest(def)).error(), EOPNOTSUPP);
  // Refused before the driver would read the data: a bad length or pointer does not matter.
  EXPECT_EQ(alloc(s, io, 0, selftest(def, 3)).error(), EOPNOTSUPP);
  EXPECT_EQ(alloc(s, io, 0, UserData{kHwptDataSelftest, kUnmapped, 8}).error(), EOPNOTSUPP);
  // No nesting, even on a mock NEST_PARENT parent.
  const std::uint32_t parent = alloc_ok(mock(), io, kHwptAllocNestParent);
  EXPECT_EQ(nested(s, parent, 0, kTestIotlbDefault).error(), EOPNOTSUPP);
  // Without flags or data it makes a plain 4 KiB table.
  const std::uint32_t id = alloc_ok(s, io);
  EXPECT_EQ(&paging(id).owner(), &IommuDriver::software());
  EXPECT_NE(dynamic_cast<PageTableDomain*>(&paging(id).domain()), nullptr);
  EXPECT_EQ(dynamic_cast<MockDomain*>(&paging(id).domain()), nullptr);
  EXPECT_EQ(paging(id).domain().granule(), kPageSize);
  EXPECT_EQ(ioas(io).iopt().domain_count(), 2u);
}

// ---- IOVA geometry ------------------------------------------------------------------------------------

TEST_F(HwptTest, ADefaultMockTableNarrowsTheIoasToTheMockApertureWith2KiBAlignment) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t id = alloc_ok(mock(), io);
  auto ranges = ioas(io).iopt().iova_ranges();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].start, MockDomain::kAperture.start);
  EXPECT_EQ(ranges[0].last, MockDomain::kAperture.last);
  EXPECT_EQ(ioas(io).iopt().iova_alignment(), 2048u);
  ASSERT_TRUE(ctx_->destroy(id).ok());
  ranges = ioas(io).iopt().iova_ranges();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].start, 0u);
  EXPECT_EQ(ranges[0].last, kUlongMax);
  EXPECT_EQ(ioas(io).iopt().iova_alignment(), 1u);
}

TEST_F(HwptTest, TheHugeMockTableHasA38BitApertureAnd4KiBGranule) {
  const std::uint32_t io = new_ioas();
  const HwptSelftest huge{kTestIotlbDefault, kMockIommuptHuge};
  const std::uint32_t id = alloc_ok(mock(), io, 0, selftest(huge));
  auto ranges = ioas(io).iopt().iova_ranges();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].start, 0u);
  EXPECT_EQ(ranges[0].last, (std::uint64_t{1} << 38) - 1);
  EXPECT_EQ(ioas(io).iopt().iova_alignment(), kPageSize);
  EXPECT_EQ(paging(id).domain().granule(), kPageSize);
  // 2 KiB is now too small a unit; 4 KiB maps, also below the mock's usual aperture.
  EXPECT_EQ(map(io, kMockBase, 0, 2048).error(), EINVAL);
  ASSERT_TRUE(map(io, 0x1000, 0, 4 * kPageSize).ok());
  EXPECT_EQ(paging(id).domain().iova_to_phys(0x1000 + kPageSize), std::optional<PhysAddr>(uptr(kPageSize)));
  EXPECT_EQ(map(io, std::uint64_t{1} << 38, 0, kPageSize).error(), EINVAL);  // beyond the aperture
  ASSERT_TRUE(ctx_->destroy(id).ok());
  ranges = ioas(io).iopt().iova_ranges();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].last, kUlongMax);
}

TEST_F(HwptTest, ATableJoinsAnIoasOnlyIfEveryAreaFitsIt) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  const HwptSelftest huge{kTestIotlbDefault, kMockIommuptHuge};
  // A 2 KiB area: too fine for the HUGE table, fine for the default one.
  ASSERT_TRUE(map(io, kMockBase, 0, 2048).ok());
  const std::uint32_t probe = next_id();
  EXPECT_EQ(alloc(d, io, 0, selftest(huge)).error(), EADDRINUSE);
  EXPECT_EQ(ioas(io).iopt().domain_count(), 0u);
  EXPECT_EQ(next_id(), probe);
  const std::uint32_t def = alloc_ok(d, io);
  ASSERT_TRUE(ctx_->destroy(def).ok());
  std::uint64_t unmapped = 0;
  ASSERT_TRUE(ioas(io).unmap(kMockBase, 2048, &unmapped).ok());
  // Below the mock aperture: only the HUGE table takes it.
  ASSERT_TRUE(map(io, 0x1000, 0, kPageSize).ok());
  EXPECT_EQ(alloc(d, io).error(), EADDRINUSE);
  const std::uint32_t h = alloc_ok(d, io, 0, selftest(huge));
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 1);
  ASSERT_TRUE(ctx_->destroy(h).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
}

// ---- the life of a user HWPT ------------------------------------------------------------------------

TEST_F(HwptTest, UserHwptsAreNeverPickedByAnAutomaticAttach) {
  const std::uint32_t io = new_ioas();
  ASSERT_TRUE(map(io, kMockBase, 0, 4 * kPageSize).ok());
  const std::uint32_t d = mock();
  const std::uint32_t user = alloc_ok(d, io);
  const auto auto_id = dev(d).attach(io);
  ASSERT_TRUE(auto_id.ok());
  EXPECT_NE(*auto_id, user);
  EXPECT_TRUE(paging(*auto_id).auto_domain());
  EXPECT_EQ(paging(user).device_count(), 0u);
  EXPECT_EQ(ioas(io).iopt().domain_count(), 2u);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 4);  // one pin for both domains
  // Moving by the IOAS again finds the automatic one (a replace onto it), never the user one.
  EXPECT_EQ(*dev(d).replace(io), *auto_id);
  // By its id the user HWPT is used; back by the IOAS the device gets a fresh automatic HWPT, since the
  // old one went with its last device.
  EXPECT_EQ(*dev(d).replace(user), user);
  EXPECT_FALSE(exists(*auto_id));
  EXPECT_EQ(paging(user).device_count(), 1u);
  const auto again = dev(d).replace(io);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, user);
  EXPECT_TRUE(paging(*again).auto_domain());
  EXPECT_EQ(paging(user).device_count(), 0u);
  // The user HWPT outlives the device.
  ASSERT_TRUE(ctx_->destroy(d).ok());
  EXPECT_FALSE(exists(*again));
  EXPECT_TRUE(exists(user));
  EXPECT_EQ(ctx_->destroy(io).error(), EBUSY);
  ASSERT_TRUE(ctx_->destroy(user).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  EXPECT_TRUE(ctx_->destroy(io).ok());
}

TEST_F(HwptTest, DestroyIsEbusyWhileADeviceUsesTheHwpt) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  const std::uint32_t id = alloc_ok(d, io);
  const std::uint32_t users = paging(id).users();
  EXPECT_EQ(*dev(d).attach(id), id);
  EXPECT_EQ(paging(id).device_count(), 1u);
  EXPECT_EQ(paging(id).users(), users + 1);
  EXPECT_EQ(ctx_->destroy(id).error(), EBUSY);
  EXPECT_EQ(ctx_->destroy(io).error(), EBUSY);
  ASSERT_TRUE(dev(d).detach().ok());
  EXPECT_EQ(paging(id).device_count(), 0u);
  EXPECT_EQ(paging(id).users(), users);
  EXPECT_TRUE(exists(id));  // a user HWPT does not go with its last device
  ASSERT_TRUE(ctx_->destroy(id).ok());
  EXPECT_EQ(ioas(io).iopt().domain_count(), 0u);
}

TEST_F(HwptTest, TheMockRefusesANoDirtyDeviceOnADirtyHwptAndDriversRefuseEachOthersHwpts) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  const std::uint32_t nd = mock(Device::kFlagNoDirty);
  const std::uint32_t s = software();
  const std::uint32_t dirty = alloc_ok(d, io, kHwptAllocDirtyTracking);
  EXPECT_EQ(dev(nd).attach(dirty).error(), EINVAL);
  EXPECT_EQ(dev(nd).hwpt_id(), 0u);
  EXPECT_EQ(*dev(d).attach(dirty), dirty);
  EXPECT_EQ(dev(s).attach(dirty).error(), EINVAL);
  const std::uint32_t soft = alloc_ok(s, io);
  EXPECT_EQ(dev(nd).attach(soft).error(), EINVAL);
  EXPECT_EQ(*dev(s).attach(soft), soft);
  // A replace that the driver refuses keeps the old attachment.
  EXPECT_EQ(dev(d).replace(soft).error(), EINVAL);
  EXPECT_EQ(dev(d).hwpt_id(), dirty);
}

// ---- nested HWPTs -------------------------------------------------------------------------------------

TEST_F(HwptTest, NestedAllocNeedsAUserNestParentOfTheSameDriver) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  const std::uint32_t auto_hwpt = *dev(mock()).attach(io);
  const std::uint32_t plain = alloc_ok(d, io);
  const std::uint32_t parent = alloc_ok(d, io, kHwptAllocNestParent);
  EXPECT_EQ(nested(d, plain, 0, kTestIotlbDefault).error(), EINVAL);
  EXPECT_EQ(nested(d, auto_hwpt, 0, kTestIotlbDefault).error(), EINVAL);
  // pt_id: an unknown id or a device is EINVAL; the device is looked up first.
  EXPECT_EQ(nested(d, kNoSuchId, 0, kTestIotlbDefault).error(), EINVAL);
  EXPECT_EQ(nested(d, d, 0, kTestIotlbDefault).error(), EINVAL);
  EXPECT_EQ(nested(kNoSuchId, parent, 0, kTestIotlbDefault).error(), ENOENT);
  EXPECT_EQ(nested(kNoSuchId, kNoSuchId, 0, kTestIotlbDefault).error(), ENOENT);
  // No nesting on a nested HWPT.
  const std::uint32_t n = nested_ok(d, parent);
  EXPECT_EQ(nested(d, n, 0, kTestIotlbDefault).error(), EINVAL);
  HwptNested& h = nested_hwpt(n);
  EXPECT_EQ(h.type(), ObjectType::kHwptNested);
  EXPECT_EQ(&h.parent(), &paging(parent));
  EXPECT_EQ(&h.owner(), &IommuDriver::mock());
  EXPECT_EQ(h.paging(), nullptr);
  EXPECT_FALSE(h.pasid_compat());
  EXPECT_FALSE(h.dirty_tracking());
}

TEST_F(HwptTest, NestedAllocFlagsAndDataRulesComeInTheKernelsOrder) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  const std::uint32_t plain = alloc_ok(d, io);
  const std::uint32_t parent = alloc_ok(d, io, kHwptAllocNestParent);
  const HwptSelftest s{kTestIotlbDefault, 0};
  const std::uint32_t probe = next_id();
  // Flags other than PASID and FAULT_ID_VALID, or no data: EOPNOTSUPP, before the parent is judged.
  EXPECT_EQ(nested(d, parent, kHwptAllocNestParent, kTestIotlbDefault).error(), EOPNOTSUPP);
  EXPECT_EQ(nested(d, parent, kHwptAllocDirtyTracking, kTestIotlbDefault).error(), EOPNOTSUPP);
  EXPECT_EQ(nested(d, parent, 1u << 4, kTestIotlbDefault).error(), EOPNOTSUPP);
  EXPECT_EQ(nested(d, plain, kHwptAllocNestParent, kTestIotlbDefault).error(), EOPNOTSUPP);
  EXPECT_EQ(alloc(d, parent).error(), EOPNOTSUPP);
  // The parent before the driver's type check; then the driver's type, length and copy.
  EXPECT_EQ(alloc(d, plain, 0, selftest(s, 8, kHwptDataSelftest + 1)).error(), EINVAL);
  EXPECT_EQ(alloc(d, parent, 0, selftest(s, 8, kHwptDataSelftest + 1)).error(), EOPNOTSUPP);
  EXPECT_EQ(alloc(d, parent, 0, selftest(s, 3)).error(), EINVAL);
  EXPECT_EQ(alloc(d, parent, 0, selftest(s, 9)).error(), EINVAL);
  EXPECT_EQ(alloc(d, parent, 0, UserData{kHwptDataSelftest, 0, 8}).error(), EFAULT);
  EXPECT_EQ(alloc(d, parent, 0, UserData{kHwptDataSelftest, kUnmapped, 8}).error(), EFAULT);
  // FAULT_ID_VALID: ENOENT after the nested HWPT was made (and undone); the parent check still first.
  EXPECT_EQ(alloc(d, parent, kHwptFaultIdValid, selftest(s), kNoSuchId).error(), ENOENT);
  EXPECT_EQ(alloc(d, parent, kHwptFaultIdValid, selftest(s), io).error(), ENOENT);
  EXPECT_EQ(alloc(d, plain, kHwptFaultIdValid, selftest(s), kNoSuchId).error(), EINVAL);
  EXPECT_EQ(next_id(), probe);
  // The parent is free of all those attempts.
  EXPECT_EQ(paging(parent).users(), paging(plain).users());
  // PASID is allowed and makes the nested HWPT PASID-compatible.
  const std::uint32_t np = nested_ok(d, parent, kHwptAllocPasid);
  EXPECT_EQ(np, probe);
  EXPECT_TRUE(nested_hwpt(np).pasid_compat());
}

TEST_F(HwptTest, TheNestedIotlbStartsAtTheGivenValueAndPagetableTypeIsIgnored) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  const std::uint32_t parent = alloc_ok(d, io, kHwptAllocNestParent);
  const std::uint32_t a = nested_ok(d, parent);
  EXPECT_EQ(iotlb(a), kIotlbDefault);
  const HwptSelftest s{0x1234, 0x77};
  for (std::uint32_t len : {4u, 6u, 8u}) {
    SCOPED_TRACE(len);
    const std::uint32_t id = alloc_ok(d, parent, 0, selftest(s, len));
    EXPECT_EQ(iotlb(id), Iotlb(4, 0x1234));
    ASSERT_TRUE(ctx_->destroy(id).ok());
  }
  EXPECT_TRUE(nested_hwpt(a).domain().check_iotlb(0, kTestIotlbDefault).ok());
  EXPECT_EQ(nested_hwpt(a).domain().check_iotlb(0, 0).error(), EINVAL);
  EXPECT_EQ(nested_hwpt(a).domain().check_iotlb(4, kTestIotlbDefault).error(), EINVAL);
}

TEST_F(HwptTest, DestroyIsEbusyWhileANestedChildOrItsDeviceUsesTheHwpt) {
  const std::uint32_t io = new_ioas();
  ASSERT_TRUE(map(io, kMockBase, 0, 4 * kPageSize).ok());
  const std::uint32_t d = mock();
  const std::uint32_t parent = alloc_ok(d, io, kHwptAllocNestParent);
  const std::uint32_t n0 = nested_ok(d, parent);
  const std::uint32_t n1 = nested_ok(d, parent, 0, 0x1234);
  EXPECT_EQ(ctx_->destroy(parent).error(), EBUSY);
  EXPECT_EQ(ctx_->destroy(io).error(), EBUSY);
  // A device on a nested HWPT: the nested HWPT is busy; the parent's domain stays on the IOAS.
  EXPECT_EQ(*dev(d).attach(n0), n0);
  EXPECT_EQ(ctx_->destroy(n0).error(), EBUSY);
  EXPECT_EQ(paging(parent).device_count(), 0u);  // the device uses the nested HWPT, not its parent
  EXPECT_EQ(*dev(d).replace(n1), n1);
  ASSERT_TRUE(ctx_->destroy(n0).ok());
  EXPECT_EQ(ctx_->destroy(parent).error(), EBUSY);
  ASSERT_TRUE(dev(d).detach().ok());
  ASSERT_TRUE(ctx_->destroy(n1).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 4);
  ASSERT_TRUE(ctx_->destroy(parent).ok());
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  EXPECT_TRUE(ctx_->destroy(io).ok());
}

// ---- invalidation -------------------------------------------------------------------------------------

class InvalidateTest : public HwptTest {
 protected:
  void SetUp() override {
    HwptTest::SetUp();
    io_ = new_ioas();
    d_ = mock();
    parent_ = alloc_ok(d_, io_, kHwptAllocNestParent);
    n_ = nested_ok(d_, parent_);
  }
  std::uint32_t io_ = 0, d_ = 0, parent_ = 0, n_ = 0;
};

TEST_F(InvalidateTest, OneEntryClearsOneIotlbEntry) {
  const InvalidateEntry e{0, 2};
  std::uint32_t num = 0;
  ASSERT_TRUE(invalidate(n_, &e, 1, &num).ok());
  EXPECT_EQ(num, 1u);
  EXPECT_EQ(iotlb(n_), (Iotlb{kTestIotlbDefault, kTestIotlbDefault, 0, kTestIotlbDefault}));
}

TEST_F(InvalidateTest, TheAllFlagClearsEveryEntry) {
  const InvalidateEntry e{kTestInvalidateFlagAll, 3};
  std::uint32_t num = 0;
  ASSERT_TRUE(invalidate(n_, &e, 1, &num).ok());
  EXPECT_EQ(num, 1u);
  EXPECT_EQ(iotlb(n_), Iotlb(4, 0));
}

TEST_F(InvalidateTest, SeveralEntriesAreHandledInOrder) {
  const InvalidateEntry e[3] = {{0, 0}, {0, 3}, {0, 0}};  // repeats are fine
  std::uint32_t num = 0;
  ASSERT_TRUE(invalidate(n_, e, 3, &num).ok());
  EXPECT_EQ(num, 3u);
  EXPECT_EQ(iotlb(n_), (Iotlb{0, kTestIotlbDefault, kTestIotlbDefault, 0}));
}

TEST_F(InvalidateTest, AnEmptyArrayChecksOnlyTheTypeAndTheHwpt) {
  std::uint32_t num = 77;
  EXPECT_TRUE(invalidate(n_, nullptr, 0, &num, 0).ok());
  EXPECT_EQ(num, 0u);
  EXPECT_EQ(invalidate(n_, nullptr, 0, &num, 0, kHwptInvalidateDataSelftest + 1).error(), EINVAL);
  EXPECT_EQ(invalidate(parent_, nullptr, 0, &num, 0).error(), EINVAL);
  EXPECT_EQ(iotlb(n_), kIotlbDefault);
}

TEST_F(InvalidateTest, ABadEntryStopsTheArrayAndEntryNumSaysHowManyWereHandled) {
  std::uint32_t num = 0;
  {
    const InvalidateEntry e[2] = {{0, 0}, {0xffffffffu, 1}};
    EXPECT_EQ(invalidate(n_, e, 2, &num).error(), EOPNOTSUPP);
    EXPECT_EQ(num, 1u);
    EXPECT_EQ(iotlb(n_), (Iotlb{0, kTestIotlbDefault, kTestIotlbDefault, kTestIotlbDefault}));
  }
  {
    const InvalidateEntry e[3] = {{0, 1}, {0, 4}, {0, 2}};
    EXPECT_EQ(invalidate(n_, e, 3, &num).error(), EINVAL);
    EXPECT_EQ(num, 1u);
    EXPECT_EQ(iotlb(n_), (Iotlb{0, 0, kTestIotlbDefault, kTestIotlbDefault}));
  }
  {
    // The second entry lies on the inaccessible page.
    auto* e = reinterpret_cast<InvalidateEntry*>(edge_ + kPageSize - sizeof(InvalidateEntry));
    *e = {0, 2};
    EXPECT_EQ(invalidate(n_, e, 2, &num).error(), EFAULT);
    EXPECT_EQ(num, 1u);
    EXPECT_EQ(iotlb(n_), (Iotlb{0, 0, 0, kTestIotlbDefault}));
  }
}

TEST_F(InvalidateTest, EntryFlagsAreCheckedBeforeTheIdAndTheIdEvenWithTheAllFlag) {
  std::uint32_t num = 5;
  InvalidateEntry e{1u << 1, 4};
  EXPECT_EQ(invalidate(n_, &e, 1, &num).error(), EOPNOTSUPP);
  EXPECT_EQ(num, 0u);
  e = {kTestInvalidateFlagAll, 4};
  EXPECT_EQ(invalidate(n_, &e, 1, &num).error(), EINVAL);
  EXPECT_EQ(num, 0u);
  e = {0, 4};
  EXPECT_EQ(invalidate(n_, &e, 1, &num).error(), EINVAL);
  EXPECT_EQ(iotlb(n_), kIotlbDefault);
}

TEST_F(InvalidateTest, TheEntryLengthMustBeExactlyTheDriversEightBytes) {
  const struct {
    InvalidateEntry e;
    std::uint64_t tail;
  } padded{{0, 0}, 0};
  std::uint32_t num = 0;
  for (std::uint32_t len : {1u, 4u, 7u, 9u, 12u, 16u}) {
    SCOPED_TRACE(len);
    num = 1;
    EXPECT_EQ(invalidate(n_, &padded, 1, &num, len).error(), EINVAL);
    EXPECT_EQ(num, 0u);
  }
  EXPECT_EQ(iotlb(n_), kIotlbDefault);
  EXPECT_TRUE(invalidate(n_, &padded, 1, &num, 8).ok());
  EXPECT_EQ(num, 1u);
}

TEST_F(InvalidateTest, TheArrayBoundsAreCheckedBeforeTheHwptIsLookedUp) {
  const InvalidateEntry e{0, 0};
  std::uint32_t num = 0;
  for (std::uint32_t id : {n_, kNoSuchId}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(invalidate(id, &e, 1, &num, 0).error(), EINVAL);
    EXPECT_EQ(invalidate(id, &e, 1, &num, kPageSize + 1).error(), EINVAL);
    EXPECT_EQ(invalidate(id, nullptr, 1, &num).error(), EINVAL);
    EXPECT_EQ(invalidate(id, &e, HwPagetable::kInvalidateEntryNumMax + 1, &num).error(), EINVAL);
    EXPECT_EQ(num, 0u);
  }
  // At the cap the bound passes and the entries are read: the first bad one stops the walk.
  const InvalidateEntry bad{0, 4};
  EXPECT_EQ(invalidate(n_, &bad, HwPagetable::kInvalidateEntryNumMax, &num).error(), EINVAL);
  EXPECT_EQ(num, 0u);
  // A page-long entry passes the bound and is then the driver's EINVAL.
  EXPECT_EQ(invalidate(n_, mem_, 1, &num, kPageSize).error(), EINVAL);
  EXPECT_EQ(iotlb(n_), kIotlbDefault);
}

TEST_F(InvalidateTest, OnlyANestedHwptTakesInvalidations) {
  const InvalidateEntry e{0, 0};
  std::uint32_t num = 1;
  EXPECT_EQ(invalidate(kNoSuchId, &e, 1, &num).error(), ENOENT);
  EXPECT_EQ(num, 0u);
  num = 1;
  EXPECT_EQ(invalidate(parent_, &e, 1, &num).error(), EINVAL);
  EXPECT_EQ(num, 0u);
  num = 1;
  EXPECT_EQ(invalidate(io_, &e, 1, &num).error(), EINVAL);
  EXPECT_EQ(num, 0u);
  num = 1;
  EXPECT_EQ(invalidate(d_, &e, 1, &num).error(), EINVAL);
  EXPECT_EQ(num, 0u);
  num = 1;
  EXPECT_EQ(invalidate(n_, &e, 1, &num, sizeof(e), kHwptInvalidateDataSelftest + 1).error(), EINVAL);
  EXPECT_EQ(num, 0u);
}

TEST_F(InvalidateTest, InvalidatingANestedHwptLeavesOtherHwptsAndTheDeviceCacheAlone) {
  const std::uint32_t other = nested_ok(d_, parent_, 0, 0x1234);
  const InvalidateEntry e{kTestInvalidateFlagAll, 0};
  std::uint32_t num = 0;
  ASSERT_TRUE(invalidate(n_, &e, 1, &num).ok());
  EXPECT_EQ(iotlb(other), Iotlb(4, 0x1234));
  for (std::uint32_t i = 0; i < Device::kCacheNum; ++i)
    EXPECT_TRUE(dev(d_).check_cache(i, kTestDevCacheDefault).ok());
}

TEST_F(HwptTest, TheDeviceCacheStartsAtItsDefaultAndChecksIdAndValue) {
  const std::uint32_t d = mock();
  for (std::uint32_t i = 0; i < Device::kCacheNum; ++i)
    EXPECT_TRUE(dev(d).check_cache(i, kTestDevCacheDefault).ok());
  EXPECT_EQ(dev(d).check_cache(4, kTestDevCacheDefault).error(), EINVAL);
  EXPECT_EQ(dev(d).check_cache(0, 0).error(), EINVAL);
  EXPECT_EQ(dev(d).check_cache(0, kTestDevCacheDefault + 1).error(), EINVAL);
}

// ---- PASIDs -------------------------------------------------------------------------------------------

class PasidTest : public HwptTest {
 protected:
  void SetUp() override {
    HwptTest::SetUp();
    io_ = new_ioas();
    ASSERT_TRUE(map(io_, kMockBase, 0, 4 * kPageSize).ok());
    d_ = mock(Device::kFlagPasid);
    np_ = mock();
    auto_ = *dev(d_).attach(io_);
    ASSERT_EQ(*dev(np_).attach(io_), auto_);
    parent_ = alloc_ok(d_, io_, kHwptAllocNestParent);
    s2_ = alloc_ok(d_, io_, kHwptAllocPasid);
    n0_ = nested_ok(d_, parent_, kHwptAllocPasid);
    n1_ = nested_ok(d_, parent_, kHwptAllocPasid);
    nnp_ = nested_ok(d_, parent_);
  }
  void TearDown() override {
    // PASIDs first, as a careful driver does.
    for (std::uint32_t dev_id : {d_, np_}) {
      auto ref = ctx_->get<Device>(dev_id, ObjectType::kDevice);
      if (!ref.ok()) continue;
      for (std::uint32_t p : {100u, 200u, 300u, 1024u, (1u << 20) - 1}) (*ref)->detach(p);
    }
    HwptTest::TearDown();
  }
  Device& d() { return dev(d_); }

  std::uint32_t io_ = 0, d_ = 0, np_ = 0, auto_ = 0, parent_ = 0, s2_ = 0, n0_ = 0, n1_ = 0, nnp_ = 0;
};

TEST_F(PasidTest, MaxPasidsIsTwoToTheTwentiethWithTheFlagOneWithoutAndZeroForSoftware) {
  EXPECT_EQ(d().max_pasids(), 1u << 20);
  EXPECT_EQ(dev(np_).max_pasids(), 1u);
  EXPECT_EQ(dev(software()).max_pasids(), 0u);
}

TEST_F(PasidTest, APasidNeedsAPasidCompatibleHwpt) {
  ASSERT_TRUE(d().replace(s2_).ok());
  EXPECT_EQ(d().attach(100, parent_).error(), EINVAL);
  EXPECT_EQ(d().attach(100, nnp_).error(), EINVAL);
  EXPECT_EQ(d().hwpt_id(100), 0u);
  EXPECT_EQ(*d().attach(100, s2_), s2_);
  EXPECT_EQ(d().hwpt_id(100), s2_);
  EXPECT_EQ(*d().attach(200, n0_), n0_);
  EXPECT_EQ(d().hwpt_id(200), n0_);
  EXPECT_EQ(d().hwpt_id(300), 0u);
}

TEST_F(PasidTest, ARidOnAnHwptWithoutThePasidFlagBlocksEveryPasid) {
  EXPECT_EQ(d().attach(100, s2_).error(), EINVAL);  // the RID is on the automatic HWPT
  ASSERT_TRUE(d().replace(parent_).ok());
  EXPECT_EQ(d().attach(100, s2_).error(), EINVAL);
  EXPECT_EQ(d().hwpt_id(100), 0u);
  ASSERT_TRUE(d().replace(n0_).ok());  // a PASID-compatible nested HWPT on the RID
  EXPECT_EQ(*d().attach(100, s2_), s2_);
}

TEST_F(PasidTest, WhilePasidsAreAttachedTheRidMayOnlyMoveToPasidCompatibleHwpts) {
  ASSERT_TRUE(d().replace(s2_).ok());
  ASSERT_TRUE(d().attach(100, n0_).ok());
  ASSERT_TRUE(d().attach(300, n1_).ok());
  EXPECT_EQ(d().replace(parent_).error(), EINVAL);
  EXPECT_EQ(d().replace(nnp_).error(), EINVAL);
  // An IOAS gives an automatic HWPT, which never has the flag; the one tried for it is undone.
  const std::size_t objects = ctx_->object_count();
  EXPECT_EQ(d().replace(io_).error(), EINVAL);
  EXPECT_EQ(ctx_->object_count(), objects);
  EXPECT_EQ(d().hwpt_id(), s2_);
  EXPECT_EQ(*d().replace(n0_), n0_);
  // One PASID left is enough to keep the rule; none left lifts it.
  d().detach(100);
  EXPECT_EQ(d().replace(parent_).error(), EINVAL);
  d().detach(300);
  EXPECT_EQ(*d().replace(parent_), parent_);
  // With the RID detached and a PASID attached, the RID's attach follows the same rule.
  ASSERT_TRUE(d().detach().ok());
  ASSERT_TRUE(d().attach(100, s2_).ok());
  EXPECT_EQ(d().attach(parent_).error(), EINVAL);
  EXPECT_EQ(d().attach(io_).error(), EINVAL);
  EXPECT_EQ(d().hwpt_id(), 0u);
  EXPECT_EQ(*d().attach(n0_), n0_);
}

TEST_F(PasidTest, AttachingAnAttachedPasidIsEbusyWhateverTheTarget) {
  ASSERT_TRUE(d().replace(s2_).ok());
  ASSERT_TRUE(d().attach(100, n0_).ok());
  for (std::uint32_t pt : {n0_, n1_, parent_, io_, s2_}) EXPECT_EQ(d().attach(100, pt).error(), EBUSY) << pt;
  // An unknown pt_id is looked up first.
  EXPECT_EQ(d().attach(100, kNoSuchId).error(), ENOENT);
  EXPECT_EQ(d().hwpt_id(100), n0_);
  // An HWPT a PASID uses is busy.
  EXPECT_EQ(ctx_->destroy(n0_).error(), EBUSY);
}

TEST_F(PasidTest, APasidMustBeBelowTheDevicesPasidCount) {
  ASSERT_TRUE(d().replace(s2_).ok());
  EXPECT_EQ(d().attach(1u << 20, s2_).error(), EINVAL);
  EXPECT_EQ(d().hwpt_id(1u << 20), 0u);
  EXPECT_EQ(d().attach(1u << 20, kNoSuchId).error(), ENOENT);  // the id before the bound
  EXPECT_EQ(d().attach(1u << 20, parent_).error(), EINVAL);
  EXPECT_EQ(*d().attach((1u << 20) - 1, s2_), s2_);
  // A mock device without the flag has one PASID, PASID 0, even with its RID on a compatible HWPT.
  Device& np = dev(np_);
  ASSERT_TRUE(np.replace(s2_).ok());
  for (std::uint32_t pasid : {1u, 100u, 1024u, 1u << 20}) {
    EXPECT_EQ(np.attach(pasid, s2_).error(), EINVAL) << pasid;
    EXPECT_EQ(np.hwpt_id(pasid), 0u);
  }
  EXPECT_EQ(np.attach(0, s2_).error(), EBUSY);      // PASID 0 is its RID, which is attached
  EXPECT_EQ(np.replace(100, s2_).error(), EINVAL);  // not attached
}

TEST_F(PasidTest, ASoftwareDeviceCannotAttachAPasid) {
  Device& s = dev(software());
  ASSERT_TRUE(s.attach(io_).ok());
  EXPECT_EQ(s.attach(100, s2_).error(), EINVAL);
  EXPECT_EQ(s.attach(100, io_).error(), EINVAL);
  EXPECT_EQ(s.hwpt_id(100), 0u);
}

TEST_F(PasidTest, PasidZeroIsTheRid) {
  EXPECT_EQ(d().hwpt_id(0), auto_);
  EXPECT_EQ(d().hwpt_id(Device::kNoPasid), d().hwpt_id());
  EXPECT_EQ(d().attach(0, s2_).error(), EBUSY);
  EXPECT_EQ(*d().replace(0, s2_), s2_);
  EXPECT_EQ(d().hwpt_id(), s2_);
  d().detach(0);
  EXPECT_EQ(d().hwpt_id(), 0u);
  EXPECT_EQ(d().detach().error(), EINVAL);
  EXPECT_EQ(d().replace(0, s2_).error(), EINVAL);
  EXPECT_EQ(*d().attach(0, io_), auto_);  // finds the automatic HWPT the other device keeps
  EXPECT_EQ(d().hwpt_id(), auto_);
}

TEST_F(PasidTest, DetachingAPasidThatIsNotAttachedDoesNothing) {
  ASSERT_TRUE(d().replace(s2_).ok());
  ASSERT_TRUE(d().attach(100, n0_).ok());
  const std::uint32_t users = nested_hwpt(n0_).users();
  d().detach(200);
  d().detach(1u << 20);
  EXPECT_EQ(d().hwpt_id(100), n0_);
  EXPECT_EQ(d().hwpt_id(), s2_);
  EXPECT_EQ(nested_hwpt(n0_).users(), users);
  d().detach(100);
  d().detach(100);
  EXPECT_EQ(d().hwpt_id(100), 0u);
  EXPECT_EQ(nested_hwpt(n0_).users(), users - 1);
}

TEST_F(PasidTest, APasidCannotGoOnAnIoasAndTheTriedAutomaticHwptIsUndone) {
  ASSERT_TRUE(d().replace(s2_).ok());
  const std::size_t objects = ctx_->object_count();
  const std::uint32_t probe = next_id();
  EXPECT_EQ(d().attach(100, io_).error(), EINVAL);
  EXPECT_EQ(ctx_->object_count(), objects);
  EXPECT_EQ(next_id(), probe);
  EXPECT_EQ(d().attach(100, d_).error(), EINVAL);  // neither an IOAS nor an HWPT
  EXPECT_EQ(d().attach(100, kNoSuchId).error(), ENOENT);
}

TEST_F(PasidTest, ReplaceMovesAnAttachedPasidAndKeepsTheOldHwptOnFailure) {
  ASSERT_TRUE(d().replace(s2_).ok());
  EXPECT_EQ(d().replace(200, s2_).error(), EINVAL);  // not attached
  EXPECT_EQ(d().replace(200, kNoSuchId).error(), ENOENT);
  ASSERT_TRUE(d().attach(200, s2_).ok());
  for (std::uint32_t pt : {io_, parent_, nnp_}) {
    EXPECT_EQ(d().replace(200, pt).error(), EINVAL) << pt;
    EXPECT_EQ(d().hwpt_id(200), s2_);
  }
  EXPECT_EQ(*d().replace(200, n0_), n0_);
  EXPECT_EQ(*d().replace(200, n1_), n1_);
  // Onto the same HWPT: nothing changes, not even its users.
  const std::uint32_t users = nested_hwpt(n1_).users();
  EXPECT_EQ(*d().replace(200, n1_), n1_);
  EXPECT_EQ(nested_hwpt(n1_).users(), users);
  // The old HWPT is free again, the new one held.
  EXPECT_TRUE(ctx_->destroy(n0_).ok());
  EXPECT_EQ(ctx_->destroy(n1_).error(), EBUSY);
}

TEST_F(PasidTest, TheMockFailsEverySecondSetOfPasid1024AndReplaceKeepsTheOldHwpt) {
  ASSERT_TRUE(d().replace(s2_).ok());
  EXPECT_EQ(*d().attach(1024, s2_), s2_);
  const std::uint32_t n0_users = nested_hwpt(n0_).users();
  EXPECT_EQ(d().replace(1024, n0_).error(), ENOMEM);
  EXPECT_EQ(d().hwpt_id(1024), s2_);
  EXPECT_EQ(nested_hwpt(n0_).users(), n0_users);  // no hold kept on the refused target
  EXPECT_EQ(*d().replace(1024, n0_), n0_);
  d().detach(1024);  // a detach resets the toggle
  EXPECT_EQ(*d().attach(1024, s2_), s2_);
  EXPECT_EQ(d().replace(1024, n1_).error(), ENOMEM);
  EXPECT_EQ(d().hwpt_id(1024), s2_);
  // Other PASIDs are not affected.
  EXPECT_EQ(*d().attach(1023, s2_), s2_);
  EXPECT_EQ(*d().replace(1023, n0_), n0_);
  d().detach(1023);
}

TEST_F(PasidTest, UnbindDetachesEveryPasidSoTheHwptsCanBeDestroyed) {
  auto bound = Device::bind(*ctx_, Device::Kind::kMock, Device::kFlagPasid);
  ASSERT_TRUE(bound.ok());
  const std::uint32_t id = (*bound)->id();
  EXPECT_EQ(ctx_->destroy(id).error(), EBUSY);  // the driver's reference
  ASSERT_TRUE((*bound)->attach(s2_).ok());
  ASSERT_TRUE((*bound)->attach(100, s2_).ok());
  ASSERT_TRUE((*bound)->attach(200, n0_).ok());
  ASSERT_TRUE((*bound)->attach(1024, n1_).ok());
  EXPECT_EQ(ctx_->destroy(s2_).error(), EBUSY);
  EXPECT_EQ(ctx_->destroy(n0_).error(), EBUSY);
  EXPECT_EQ(ctx_->destroy(n1_).error(), EBUSY);
  const std::size_t objects = ctx_->object_count();
  Device::unbind(std::move(*bound));
  EXPECT_FALSE(exists(id));
  EXPECT_EQ(ctx_->object_count(), objects - 1);
  EXPECT_TRUE(ctx_->destroy(n0_).ok());
  EXPECT_TRUE(ctx_->destroy(n1_).ok());
  EXPECT_TRUE(ctx_->destroy(nnp_).ok());
  EXPECT_TRUE(ctx_->destroy(s2_).ok());
  EXPECT_TRUE(ctx_->destroy(parent_).ok());
}

TEST_F(PasidTest, DestroyingADeviceWithPasidsAttachedReleasesThemToo) {
  ASSERT_TRUE(d().replace(s2_).ok());
  ASSERT_TRUE(d().attach(100, n0_).ok());
  ASSERT_TRUE(d().attach(200, s2_).ok());
  ASSERT_TRUE(ctx_->destroy(d_).ok());
  EXPECT_TRUE(ctx_->destroy(n0_).ok());
  EXPECT_TRUE(ctx_->destroy(s2_).ok());
}

// ---- hardware info ------------------------------------------------------------------------------------

// The mock's struct iommu_test_hw_info {flags = 0, test_reg = IOMMU_HW_INFO_SELFTEST_REGVAL}.
std::vector<std::uint8_t> mock_hw_info_bytes() {
  const std::uint32_t words[2] = {0, kHwInfoSelftestRegval};
  std::vector<std::uint8_t> v(sizeof(words));
  std::memcpy(v.data(), words, sizeof(words));
  return v;
}

TEST_F(HwptTest, HwInfoOfEachDeviceKindAndFlag) {
  struct Case {
    std::uint32_t id;
    std::uint32_t type;
    bool has_data;
    std::uint64_t caps;
    std::uint8_t pasid_log2;
  };
  const std::uint64_t both = kHwCapDirtyTracking | kHwCapPciAtsNotSupported;
  const Case cases[] = {
      {mock(), kHwInfoTypeSelftest, true, both, 0},
      {mock(Device::kFlagNoDirty), kHwInfoTypeSelftest, true, kHwCapPciAtsNotSupported, 0},
      {mock(Device::kFlagPasid), kHwInfoTypeSelftest, true, both, 20},
      {mock(Device::kFlagNoDirty | Device::kFlagPasid), kHwInfoTypeSelftest, true, kHwCapPciAtsNotSupported,
       20},
      {software(), kHwInfoTypeDefault, false, kHwCapPciAtsNotSupported, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.id);
    auto info = dev(c.id).hw_info(kHwInfoTypeDefault);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->type, c.type);
    EXPECT_EQ(info->data, c.has_data ? mock_hw_info_bytes() : std::vector<std::uint8_t>{});
    EXPECT_EQ(info->capabilities, c.caps);
    EXPECT_EQ(info->max_pasid_log2, c.pasid_log2);
  }
}

TEST_F(HwptTest, HwInfoOfARequestedTypeIsTheDriversOwnOrEopnotsupp) {
  Device& m = dev(mock());
  auto own = m.hw_info(kHwInfoTypeSelftest);
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->type, kHwInfoTypeSelftest);
  EXPECT_EQ(own->data, mock_hw_info_bytes());
  EXPECT_EQ(m.hw_info(kHwInfoTypeSelftest + 1).status().error(), EOPNOTSUPP);
  EXPECT_EQ(m.hw_info(1).status().error(), EOPNOTSUPP);
  // A driver without hardware info answers type 0 whatever was asked.
  auto soft = dev(software()).hw_info(kHwInfoTypeSelftest);
  ASSERT_TRUE(soft.ok());
  EXPECT_EQ(soft->type, kHwInfoTypeDefault);
  EXPECT_TRUE(soft->data.empty());
}

// ---- failures leave nothing ---------------------------------------------------------------------------

TEST_F(HwptTest, AFailedRespondOfAPagingAllocLeavesNoObjectNoDomainAndTheSameNextId) {
  const std::uint32_t io = new_ioas();
  ASSERT_TRUE(map(io, kMockBase, 0, 4 * kPageSize).ok());
  const std::uint32_t d = mock();
  const std::size_t objects = ctx_->object_count();
  const std::uint32_t probe = next_id();
  HwptAllocArgs args;
  args.dev_id = d;
  args.pt_id = io;
  args.flags = kHwptAllocNestParent;
  std::uint32_t seen = 0;
  std::size_t domains_seen = 0;
  auto r = HwPagetable::alloc(*ctx_, args, [&](std::uint32_t id) {
    seen = id;
    domains_seen = ioas(io).iopt().domain_count();
    EXPECT_FALSE(exists(id));  // not published before the reply
    return Status::error(EFAULT);
  });
  EXPECT_EQ(r.error(), EFAULT);
  EXPECT_EQ(seen, probe);
  EXPECT_EQ(domains_seen, 1u);  // filled, then undone
  EXPECT_EQ(ctx_->object_count(), objects);
  EXPECT_EQ(ioas(io).iopt().domain_count(), 0u);
  EXPECT_EQ(ioas(io).iopt().iova_ranges().size(), 1u);
  EXPECT_EQ(ioas(io).iopt().iova_ranges()[0].start, 0u);
  EXPECT_EQ(ioas(io).iopt().iova_alignment(), 1u);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
  EXPECT_EQ(next_id(), probe);
  EXPECT_TRUE(ctx_->destroy(io).ok());  // no HWPT holds it
}

TEST_F(HwptTest, AFailedRespondOfANestedAllocLeavesNoObjectAndFreesTheParent) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  const std::uint32_t parent = alloc_ok(d, io, kHwptAllocNestParent);
  const std::uint32_t users = paging(parent).users();
  const std::size_t objects = ctx_->object_count();
  const std::uint32_t probe = next_id();
  const HwptSelftest s{kTestIotlbDefault, 0};
  HwptAllocArgs args;
  args.dev_id = d;
  args.pt_id = parent;
  args.data = selftest(s);
  auto r = HwPagetable::alloc(*ctx_, args, [](std::uint32_t) { return Status::error(EFAULT); });
  EXPECT_EQ(r.error(), EFAULT);
  EXPECT_EQ(ctx_->object_count(), objects);
  EXPECT_EQ(paging(parent).users(), users);
  EXPECT_EQ(next_id(), probe);
  EXPECT_TRUE(ctx_->destroy(parent).ok());
}

TEST_F(HwptTest, ARespondThatSucceedsSeesTheIdTheAllocReturns) {
  const std::uint32_t io = new_ioas();
  const std::uint32_t d = mock();
  std::uint32_t seen = 0;
  HwptAllocArgs args;
  args.dev_id = d;
  args.pt_id = io;
  auto r = HwPagetable::alloc(*ctx_, args, [&](std::uint32_t id) {
    seen = id;
    return Status();
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, seen);
  EXPECT_TRUE(exists(seen));
}

TEST_F(HwptTest, EveryFailedAllocLeavesTheNextIdTheSame) {
  const std::uint32_t io = new_ioas();
  ASSERT_TRUE(map(io, kMockBase, 0, 2048).ok());  // refuses the HUGE table
  const std::uint32_t d = mock();
  const std::uint32_t parent = alloc_ok(d, io, kHwptAllocNestParent);
  const std::uint32_t probe = next_id();
  const HwptSelftest bad{kTestIotlbDefault, 2};
  const HwptSelftest huge{kTestIotlbDefault, kMockIommuptHuge};
  const HwptSelftest s{kTestIotlbDefault, 0};
  EXPECT_EQ(alloc(d, io, 0, selftest(bad)).error(), EOPNOTSUPP);
  EXPECT_EQ(alloc(d, io, 0, UserData{kHwptDataSelftest, kUnmapped, 8}).error(), EFAULT);
  EXPECT_EQ(alloc(d, io, 0, selftest(huge)).error(), EADDRINUSE);
  EXPECT_EQ(alloc(d, io, kHwptFaultIdValid, {}, kNoSuchId).error(), ENOENT);
  EXPECT_EQ(alloc(d, parent, 0, UserData{kHwptDataSelftest, kUnmapped, 8}).error(), EFAULT);
  EXPECT_EQ(alloc(d, parent, kHwptFaultIdValid, selftest(s), kNoSuchId).error(), ENOENT);
  EXPECT_EQ(next_id(), probe);
  EXPECT_EQ(alloc_ok(d, io), probe);
}

// Every injected failure (lookups, copies, the mock's allocations, the domain's tables, the id) makes the
// allocation fail cleanly: no object, no domain on the IOAS, no pin.
TEST_F(HwptTest, InjectedFailuresOfAnAllocLeaveNothing) {
  const std::uint32_t io = new_ioas();
  ASSERT_TRUE(map(io, kMockBase, 0, 4 * kPageSize).ok());
  const std::uint32_t d = mock();
  const std::uint32_t parent = alloc_ok(d, io, kHwptAllocNestParent);
  const std::uint32_t parent_users = paging(parent).users();
  const HwptSelftest s{kTestIotlbDefault, 0};
  std::uint32_t made = 0;
  for (bool nest : {false, true}) {
    SCOPED_TRACE(nest);
    const std::size_t objects = ctx_->object_count();
    const std::size_t domains = ioas(io).iopt().domain_count();
    auto op = [&]() -> Status {
      auto r = alloc(d, nest ? parent : io, 0, selftest(s));
      if (r.ok()) made = *r;
      return r.status();
    };
    auto after = [&](unsigned, Status st) {
      if (!st.ok()) {
        EXPECT_EQ(ctx_->object_count(), objects);
        EXPECT_EQ(ioas(io).iopt().domain_count(), domains);
        EXPECT_EQ(paging(parent).users(), parent_users);
      }
    };
    SweepResult r = sweep_fail_nth([] {}, op, after);
    EXPECT_FALSE(r.hit_cap);
    EXPECT_TRUE(r.final_status.ok());
    EXPECT_GT(r.sites_failed, 0u);
    if (nest) {
      EXPECT_NE(std::find(r.fired_sites.begin(), r.fired_sites.end(), "mock.alloc"), r.fired_sites.end());
    }
    ASSERT_TRUE(ctx_->destroy(made).ok());
  }
}

TEST_F(PasidTest, InjectedFailuresOfAPasidAttachLeaveItDetachedAndTheHwptFree) {
  ASSERT_TRUE(d().replace(s2_).ok());
  const std::uint32_t users = nested_hwpt(n0_).users();
  Device& device = d();  // looked up outside the sweep, whose lookups may fail
  auto op = [&]() -> Status { return device.attach(100, n0_).status(); };
  auto after = [&](unsigned, Status st) {
    if (st.ok()) {
      d().detach(100);
      return;
    }
    EXPECT_EQ(d().hwpt_id(100), 0u);
    EXPECT_EQ(nested_hwpt(n0_).users(), users);
  };
  SweepResult r = sweep_fail_nth([] {}, op, after);
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok());
  EXPECT_NE(std::find(r.fired_sites.begin(), r.fired_sites.end(), "device.attach"), r.fired_sites.end());
  EXPECT_TRUE(ctx_->destroy(n0_).ok());
}

TEST_F(HwptTest, InjectedFailuresOfHwInfoAreEnomem) {
  Device& m = dev(mock());
  SweepResult r = sweep_fail_nth([] {}, [&] { return m.hw_info(kHwInfoTypeDefault).status(); },
                                 [](unsigned, Status st) {
                                   if (!st.ok()) {
                                     EXPECT_EQ(st.error(), ENOMEM);
                                   }
                                 });
  EXPECT_TRUE(r.final_status.ok());
  EXPECT_EQ(r.fired_sites, std::vector<std::string>{"mock.alloc"});
}

}  // namespace
}  // namespace uiommufd
