// iommufd's own ioctls through the dispatcher, on real structs: every errno and out-value of
// docs/abi.md#extensible-structs and #exact-behaviours and of the IOAS sections of docs/semantics.md (#ioas),
// the order of checks, and fail-nth sweeps proving that nothing leaks.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testing/sweep_checked.h"
#include "testing/test_fd_host.h"

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/base/page.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/pages/pages.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {
namespace {

constexpr std::uint32_t kRW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
constexpr std::uint64_t k2M = 2ull << 20;
// Below mmap_min_addr: never mapped in any process.
constexpr std::uint64_t kUnmapped = 0x1000;
constexpr std::uint32_t kNoSuchId = 99;

class IoctlTest : public ::testing::Test {
 protected:
  static constexpr std::size_t kMemLen = 64 * kPageSize;

  void SetUp() override {
    pinned_before_ = Pages::total_pinned_pages();
    pinned_vm_before_ = account_pinned_vm();
    fd_ = host_.open_iommufd();
    ASSERT_GE(fd_, 0);
    // 2 MiB-aligned memory, so that automatic IOVA alignment depends only on the length
    // (docs/abi.md#auto-iova-alignment).
    raw_ = mmap(nullptr, kMemLen + k2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(raw_, MAP_FAILED);
    base_ = (reinterpret_cast<std::uint64_t>(raw_) + k2M - 1) & ~(k2M - 1);
    for (std::size_t i = 0; i < kMemLen; ++i)
      reinterpret_cast<unsigned char*>(base_)[i] = static_cast<unsigned char>(i * 7);
  }
  void TearDown() override {
    if (fd_ >= 0) host_.close(fd_);
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "pins leaked";
    EXPECT_EQ(account_pinned_vm(), pinned_vm_before_) << "charges leaked";
    munmap(raw_, kMemLen + k2M);
    for (auto [p, len] : extra_maps_) munmap(p, len);
  }

  Context& ctx() { return static_cast<IommufdFile&>(*host_.lookup(fd_)).context(); }
  Ioas& ioas(std::uint32_t id) {
    auto r = ctx().get<Ioas>(id, ObjectType::kIoas);
    EXPECT_TRUE(r.ok());
    return *r->get();  // the table keeps it alive
  }
  std::uint64_t va(std::uint64_t off = 0) const { return base_ + off; }

  // The ioctl's errno, 0 on success.
  int call(unsigned long cmd, const void* arg) { return host_.ioctl(fd_, cmd, arg) == 0 ? 0 : errno; }

  std::uint32_t alloc_ioas() {
    iommu_ioas_alloc a{sizeof(a), 0, 0};
    EXPECT_EQ(call(IOMMU_IOAS_ALLOC, &a), 0);
    return a.out_ioas_id;
  }
  int map(std::uint32_t id, std::uint64_t uva, std::uint64_t length, std::uint64_t* iova,
          std::uint32_t flags = kRW) {
    iommu_ioas_map m{};
    m.size = sizeof(m);
    m.flags = flags;
    m.ioas_id = id;
    m.user_va = uva;
    m.length = length;
    m.iova = *iova;
    int e = call(IOMMU_IOAS_MAP, &m);
    *iova = m.iova;
    return e;
  }
  int unmap(std::uint32_t id, std::uint64_t iova, std::uint64_t* length) {
    iommu_ioas_unmap u{sizeof(u), id, iova, *length};
    int e = call(IOMMU_IOAS_UNMAP, &u);
    *length = u.length;
    return e;
  }
  int copy(std::uint32_t dst, std::uint32_t src, std::uint64_t src_iova, std::uint64_t length,
           std::uint64_t* dst_iova, std::uint32_t flags = kRW) {
    iommu_ioas_copy c{sizeof(c), flags, dst, src, length, *dst_iova, src_iova};
    int e = call(IOMMU_IOAS_COPY, &c);
    *dst_iova = c.dst_iova;
    return e;
  }
  int allow(std::uint32_t id, const std::vector<iommu_iova_range>& ranges) {
    iommu_ioas_allow_iovas a{sizeof(a), id, static_cast<std::uint32_t>(ranges.size()), 0,
                             reinterpret_cast<std::uint64_t>(ranges.data())};
    return call(IOMMU_IOAS_ALLOW_IOVAS, &a);
  }
  int option(std::uint32_t option_id, std::uint16_t op, std::uint32_t object_id, std::uint64_t* val) {
    iommu_option o{sizeof(o), option_id, op, 0, object_id, *val};
    int e = call(IOMMU_OPTION, &o);
    *val = o.val64;
    return e;
  }
  int vfio_ioas(std::uint16_t op, std::uint32_t* id) {
    iommu_vfio_ioas v{sizeof(v), *id, op, 0};
    int e = call(IOMMU_VFIO_IOAS, &v);
    *id = v.ioas_id;
    return e;
  }
  std::uint64_t alignment_of(std::uint32_t id) {
    iommu_ioas_iova_ranges r{sizeof(r), id, 0, 0, 0, 0};
    EXPECT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), EMSGSIZE);
    return r.out_iova_alignment;
  }
  // A copy of `v` on a page of its own that the caller may read but not write.
  template <typename T>
  T* read_only_copy(const T& v) {
    void* p = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    extra_maps_.push_back({p, kPageSize});
    std::memcpy(p, &v, sizeof(v));
    EXPECT_EQ(mprotect(p, kPageSize, PROT_READ), 0);
    return static_cast<T*>(p);
  }
  std::uint32_t attach_mock_domain(std::uint32_t ioas_id) {
    auto dev = Device::create(ctx(), Device::Kind::kMock);
    EXPECT_TRUE(dev.ok());
    auto ref = ctx().get<Device>(*dev, ObjectType::kDevice);
    EXPECT_TRUE(ref.ok());
    auto hwpt = (*ref)->attach(ioas_id);
    EXPECT_TRUE(hwpt.ok());
    return *dev;
  }

  testing::TestFdHost host_;
  int fd_ = -1;
  void* raw_ = nullptr;
  std::uint64_t base_ = 0;
  std::uint64_t pinned_before_ = 0;
  std::uint64_t pinned_vm_before_ = 0;
  std::vector<std::pair<void*, std::size_t>> extra_maps_;
};

// ---- size rules and bad pointers, for every command ---------------------------------------------------

struct CmdSize {
  unsigned long cmd;
  std::uint32_t min;
  std::uint32_t size;
};
constexpr CmdSize kCmds[] = {
    {IOMMU_DESTROY, 8, 8},         {IOMMU_IOAS_ALLOC, 12, 12},       {IOMMU_IOAS_ALLOW_IOVAS, 24, 24},
    {IOMMU_IOAS_COPY, 40, 40},     {IOMMU_IOAS_IOVA_RANGES, 32, 32}, {IOMMU_IOAS_MAP, 40, 40},
    {IOMMU_IOAS_UNMAP, 24, 24},    {IOMMU_OPTION, 24, 24},           {IOMMU_VFIO_IOAS, 12, 12},
    {IOMMU_IOAS_MAP_FILE, 40, 40},
};

TEST_F(IoctlTest, SizeBelowTheMinimumIsEinvalForEveryCommand) {
  for (const CmdSize& c : kCmds) {
    alignas(8) unsigned char buf[64] = {};
    const std::uint32_t size = c.min - 1;
    std::memcpy(buf, &size, sizeof(size));
    EXPECT_EQ(call(c.cmd, buf), EINVAL) << std::hex << c.cmd;
  }
}

TEST_F(IoctlTest, NonZeroTailIsE2bigForEveryCommand) {
  for (const CmdSize& c : kCmds) {
    alignas(8) unsigned char buf[64] = {};
    const std::uint32_t size = c.size + 8;
    std::memcpy(buf, &size, sizeof(size));
    buf[c.size + 7] = 1;
    EXPECT_EQ(call(c.cmd, buf), E2BIG) << std::hex << c.cmd;
  }
}

TEST_F(IoctlTest, UnreadableStructIsEfaultForEveryCommand) {
  for (const CmdSize& c : kCmds) {
    EXPECT_EQ(call(c.cmd, nullptr), EFAULT) << std::hex << c.cmd;
    EXPECT_EQ(call(c.cmd, reinterpret_cast<void*>(kUnmapped)), EFAULT) << std::hex << c.cmd;
  }
}

TEST_F(IoctlTest, ZeroTailIsAcceptedAndLeftAlone) {
  const std::uint32_t id = alloc_ioas();
  struct {
    iommu_ioas_iova_ranges r;
    std::uint64_t tail[2];
  } ranges{};
  iommu_iova_range out{};
  ranges.r = {sizeof(ranges), id, 1, 0, reinterpret_cast<std::uint64_t>(&out), 0};
  EXPECT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &ranges), 0);
  EXPECT_EQ(ranges.r.num_iovas, 1u);
  EXPECT_EQ(ranges.tail[0], 0u);
  EXPECT_EQ(ranges.tail[1], 0u);

  struct {
    iommu_ioas_map m;
    std::uint64_t tail;
  } m{};
  m.m = {sizeof(m), kRW, id, 0, va(), kPageSize, 0};
  EXPECT_EQ(call(IOMMU_IOAS_MAP, &m), 0);
  struct {
    iommu_ioas_unmap u;
    std::uint32_t tail;
  } u{};
  u.u = {sizeof(u), id, 0, kUlongMax};
  EXPECT_EQ(call(IOMMU_IOAS_UNMAP, &u), 0);
  EXPECT_EQ(u.u.length, kPageSize);
  struct {
    iommu_option o;
    std::uint64_t tail;
  } o{};
  o.o = {sizeof(o), IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, 0, id, 0};
  EXPECT_EQ(call(IOMMU_OPTION, &o), 0);
  EXPECT_EQ(o.o.val64, 1u);
  struct {
    iommu_vfio_ioas v;
    std::uint32_t tail;
  } v{};
  v.v = {sizeof(v), id, IOMMU_VFIO_IOAS_SET, 0};
  EXPECT_EQ(call(IOMMU_VFIO_IOAS, &v), 0);
}

// ---- IOMMU_DESTROY / IOMMU_IOAS_ALLOC ------------------------------------------------------------------

TEST_F(IoctlTest, AllocWithFlagsIsEopnotsupp) {
  iommu_ioas_alloc a{sizeof(a), 1, 0};
  EXPECT_EQ(call(IOMMU_IOAS_ALLOC, &a), EOPNOTSUPP);
  EXPECT_EQ(ctx().object_count(), 0u);
}

TEST_F(IoctlTest, AllocIdsAreReusedAfterDestroy) {
  EXPECT_EQ(alloc_ioas(), 1u);
  EXPECT_EQ(alloc_ioas(), 2u);
  EXPECT_EQ(alloc_ioas(), 3u);
  iommu_destroy d{sizeof(d), 2};
  ASSERT_EQ(call(IOMMU_DESTROY, &d), 0);
  EXPECT_EQ(alloc_ioas(), 2u);
}

TEST_F(IoctlTest, AllocWhoseReplyCannotBeWrittenIsEfaultAndReleasesTheId) {
  iommu_ioas_alloc* ro = read_only_copy(iommu_ioas_alloc{sizeof(iommu_ioas_alloc), 0, 0});
  EXPECT_EQ(call(IOMMU_IOAS_ALLOC, ro), EFAULT);
  EXPECT_EQ(ctx().object_count(), 0u);
  EXPECT_EQ(alloc_ioas(), 1u);  // the aborted object's id
}

TEST_F(IoctlTest, DestroyOfAnUnknownIdIsEnoentAndOfAnIoasInUseEbusy) {
  iommu_destroy d{sizeof(d), kNoSuchId};
  EXPECT_EQ(call(IOMMU_DESTROY, &d), ENOENT);
  const std::uint32_t id = alloc_ioas();
  attach_mock_domain(id);  // its HWPT holds the IOAS
  d.id = id;
  EXPECT_EQ(call(IOMMU_DESTROY, &d), EBUSY);
}

// ---- IOMMU_IOAS_IOVA_RANGES ----------------------------------------------------------------------------

TEST_F(IoctlTest, IovaRangesOfAFreshIoasIsTheWholeSpaceWithAlignmentOne) {
  const std::uint32_t id = alloc_ioas();
  iommu_iova_range out[2] = {};
  iommu_ioas_iova_ranges r{sizeof(r), id, 2, 0, reinterpret_cast<std::uint64_t>(out), 0};
  ASSERT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), 0);
  EXPECT_EQ(r.num_iovas, 1u);
  EXPECT_EQ(r.out_iova_alignment, 1u);
  EXPECT_EQ(out[0].start, 0u);
  EXPECT_EQ(out[0].last, kUlongMax);
}

TEST_F(IoctlTest, IovaRangesWithCapacityZeroIsEmsgsizeWithTheCountAndAlignment) {
  const std::uint32_t id = alloc_ioas();
  iommu_ioas_iova_ranges r{sizeof(r), id, 0, 0, 0, 77};
  EXPECT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), EMSGSIZE);
  EXPECT_EQ(r.num_iovas, 1u);
  EXPECT_EQ(r.out_iova_alignment, 1u);
}

TEST_F(IoctlTest, IovaRangesTooSmallFillsTheFirstCapacityEntries) {
  const std::uint32_t id = alloc_ioas();
  ASSERT_TRUE(ioas(id).iopt().add_reserved({0x1000, 0x1fff}, nullptr).ok());
  ASSERT_TRUE(ioas(id).iopt().add_reserved({0x10000, 0x1ffff}, nullptr).ok());
  iommu_iova_range out[3] = {{1, 1}, {1, 1}, {1, 1}};
  iommu_ioas_iova_ranges r{sizeof(r), id, 2, 0, reinterpret_cast<std::uint64_t>(out), 0};
  EXPECT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), EMSGSIZE);
  EXPECT_EQ(r.num_iovas, 3u);
  EXPECT_EQ(out[0].start, 0u);
  EXPECT_EQ(out[0].last, 0xfffu);
  EXPECT_EQ(out[1].start, 0x2000u);
  EXPECT_EQ(out[1].last, 0xffffu);
  EXPECT_EQ(out[2].start, 1u);  // beyond the capacity: untouched
  r.num_iovas = 3;
  ASSERT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), 0);
  EXPECT_EQ(out[2].start, 0x20000u);
  EXPECT_EQ(out[2].last, kUlongMax);
}

TEST_F(IoctlTest, IovaRangesIgnoresTheAllowedListAndMappings) {
  const std::uint32_t id = alloc_ioas();
  ASSERT_EQ(allow(id, {{0x100000, 0x1fffff}}), 0);
  std::uint64_t iova = 0;
  ASSERT_EQ(map(id, va(), kPageSize, &iova), 0);
  iommu_iova_range out{};
  iommu_ioas_iova_ranges r{sizeof(r), id, 1, 0, reinterpret_cast<std::uint64_t>(&out), 0};
  ASSERT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), 0);
  EXPECT_EQ(r.num_iovas, 1u);
  EXPECT_EQ(out.start, 0u);
  EXPECT_EQ(out.last, kUlongMax);
}

TEST_F(IoctlTest, IovaRangesOfAMockDomainIsItsAperture) {
  const std::uint32_t id = alloc_ioas();
  attach_mock_domain(id);
  iommu_iova_range out{};
  iommu_ioas_iova_ranges r{sizeof(r), id, 1, 0, reinterpret_cast<std::uint64_t>(&out), 0};
  ASSERT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), 0);
  EXPECT_EQ(r.num_iovas, 1u);
  EXPECT_EQ(out.start, 1u << 24);
  EXPECT_EQ(out.last, (1u << 31) - 1);
  EXPECT_EQ(r.out_iova_alignment, kPageSize / 2);
}

TEST_F(IoctlTest, IovaRangesWithAnUnwritableArrayIsEfaultAndWritesNoHeader) {
  const std::uint32_t id = alloc_ioas();
  iommu_ioas_iova_ranges r{sizeof(r), id, 1, 0, kUnmapped, 0};
  EXPECT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), EFAULT);
  r.allowed_iovas = 0;
  EXPECT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), EFAULT);
  EXPECT_EQ(r.num_iovas, 1u);
  EXPECT_EQ(r.out_iova_alignment, 0u);
}

TEST_F(IoctlTest, IovaRangesChecksReservedThenTheIoas) {
  iommu_ioas_iova_ranges r{sizeof(r), kNoSuchId, 0, 1, 0, 0};
  EXPECT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), EOPNOTSUPP);
  r.__reserved = 0;
  EXPECT_EQ(call(IOMMU_IOAS_IOVA_RANGES, &r), ENOENT);
}

// ---- IOMMU_IOAS_ALLOW_IOVAS ----------------------------------------------------------------------------

TEST_F(IoctlTest, AllowIovasChecksReservedThenTheIoas) {
  iommu_ioas_allow_iovas a{sizeof(a), kNoSuchId, 0, 1, 0};
  EXPECT_EQ(call(IOMMU_IOAS_ALLOW_IOVAS, &a), EOPNOTSUPP);
  a.__reserved = 0;
  EXPECT_EQ(call(IOMMU_IOAS_ALLOW_IOVAS, &a), ENOENT);
}

TEST_F(IoctlTest, AllowIovasRejectsAOneByteRange) {
  const std::uint32_t id = alloc_ioas();
  EXPECT_EQ(allow(id, {{0x1000, 0x1000}}), EINVAL);
  EXPECT_EQ(allow(id, {{0x2000, 0x1000}}), EINVAL);
}

TEST_F(IoctlTest, AllowIovasRejectsOverlappingRanges) {
  const std::uint32_t id = alloc_ioas();
  EXPECT_EQ(allow(id, {{0x10000, 0x1ffff}, {0x1f000, 0x2ffff}}), EINVAL);
  EXPECT_EQ(allow(id, {{0x10000, 0x1ffff}, {0x0, 0x10000}}), EINVAL);
  EXPECT_EQ(allow(id, {{0x10000, 0x1ffff}, {0x20000, 0x2ffff}}), 0);
}

TEST_F(IoctlTest, AllowIovasOverAReservedRangeIsEaddrinuse) {
  const std::uint32_t id = alloc_ioas();
  ASSERT_TRUE(ioas(id).iopt().add_reserved({0x10000, 0x1ffff}, nullptr).ok());
  EXPECT_EQ(allow(id, {{0x1f000, 0x2ffff}}), EADDRINUSE);
}

TEST_F(IoctlTest, ReservingOverAnAllowedRangeIsEaddrinuse) {
  const std::uint32_t id = alloc_ioas();
  ASSERT_EQ(allow(id, {{0x10000, 0x1ffff}}), 0);
  EXPECT_EQ(ioas(id).iopt().add_reserved({0x1f000, 0x2ffff}, nullptr).error(), EADDRINUSE);
}

TEST_F(IoctlTest, AllowIovasWithAnUnreadableArrayIsEfault) {
  const std::uint32_t id = alloc_ioas();
  iommu_ioas_allow_iovas a{sizeof(a), id, 1, 0, 0};
  EXPECT_EQ(call(IOMMU_IOAS_ALLOW_IOVAS, &a), EFAULT);
  a.allowed_iovas = kUnmapped;
  EXPECT_EQ(call(IOMMU_IOAS_ALLOW_IOVAS, &a), EFAULT);
}

TEST_F(IoctlTest, AllowIovasReportsABadEntryBeforeAnUnreadableOne) {
  const std::uint32_t id = alloc_ioas();
  // The second entry lies on an unmapped page right after the first.
  auto* page = static_cast<unsigned char*>(
      mmap(nullptr, 2 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(page, MAP_FAILED);
  extra_maps_.push_back({page, 2 * kPageSize});
  ASSERT_EQ(munmap(page + kPageSize, kPageSize), 0);
  auto* first = reinterpret_cast<iommu_iova_range*>(page + kPageSize - sizeof(iommu_iova_range));
  *first = {0x5000, 0x5000};
  iommu_ioas_allow_iovas a{sizeof(a), id, 2, 0, reinterpret_cast<std::uint64_t>(first)};
  EXPECT_EQ(call(IOMMU_IOAS_ALLOW_IOVAS, &a), EINVAL);
  *first = {0x5000, 0x5fff};
  EXPECT_EQ(call(IOMMU_IOAS_ALLOW_IOVAS, &a), EFAULT);
}

TEST_F(IoctlTest, AllowIovasConfinesAutomaticIovasAndZeroRangesClearsTheList) {
  const std::uint32_t id = alloc_ioas();
  ASSERT_EQ(allow(id, {{0x40000000, 0x4fffffff}}), 0);
  std::uint64_t iova = 0;
  ASSERT_EQ(map(id, va(), kPageSize, &iova), 0);
  EXPECT_GE(iova, 0x40000000u);
  EXPECT_LE(iova + kPageSize - 1, 0x4fffffffu);
  ASSERT_EQ(allow(id, {}), 0);
  ASSERT_EQ(map(id, va(), kPageSize, &iova), 0);
  EXPECT_LT(iova, 0x40000000u);
}

TEST_F(IoctlTest, AFailedAllowIovasKeepsTheOldList) {
  const std::uint32_t id = alloc_ioas();
  ASSERT_EQ(allow(id, {{0x40000000, 0x4fffffff}}), 0);
  ASSERT_TRUE(ioas(id).iopt().add_reserved({0x10000, 0x1ffff}, nullptr).ok());
  EXPECT_EQ(allow(id, {{0x10000, 0x2ffff}}), EADDRINUSE);
  std::uint64_t iova = 0;
  ASSERT_EQ(map(id, va(), kPageSize, &iova), 0);
  EXPECT_GE(iova, 0x40000000u);
}

// ---- IOMMU_IOAS_MAP ------------------------------------------------------------------------------------

TEST_F(IoctlTest, MapChecksFlagsAndReservedFirst) {
  std::uint64_t iova = kUlongMax;
  EXPECT_EQ(map(kNoSuchId, va(), kUlongMax, &iova, 1u << 3), EOPNOTSUPP);
  iommu_ioas_map m{sizeof(m), kRW, kNoSuchId, 1, va(), kUlongMax, kUlongMax};
  EXPECT_EQ(call(IOMMU_IOAS_MAP, &m), EOPNOTSUPP);
}

TEST_F(IoctlTest, MapChecksOverflowBeforePermissionAndTheIoas) {
  std::uint64_t iova = kUlongMax;
  EXPECT_EQ(map(kNoSuchId, va(), kPageSize, &iova, 0), EOVERFLOW);
  iova = 0;
  EXPECT_EQ(map(kNoSuchId, va(), kUlongMax, &iova, 0), EOVERFLOW);
}

TEST_F(IoctlTest, MapChecksPermissionBeforeTheIoas) {
  std::uint64_t iova = 0;
  EXPECT_EQ(map(kNoSuchId, va(), kPageSize, &iova, IOMMU_IOAS_MAP_FIXED_IOVA), EINVAL);
  EXPECT_EQ(map(kNoSuchId, va(), kPageSize, &iova), ENOENT);
}

TEST_F(IoctlTest, MapOfZeroBytesIsEinvalAndAWrappingSourceEoverflow) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t iova = 0;
  EXPECT_EQ(map(id, va(), 0, &iova), EINVAL);
  EXPECT_EQ(map(id, kUlongMax - 10, kPageSize, &iova), EOVERFLOW);
  EXPECT_EQ(ioas(id).iopt().area_count(), 0u);
}

TEST_F(IoctlTest, FixedMapWritesTheIovaBackAndOverlapIsEexist) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t iova = 0x100000;
  ASSERT_EQ(map(id, va(), 4 * kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
  EXPECT_EQ(iova, 0x100000u);
  iova = 0x100000 + 3 * kPageSize;
  EXPECT_EQ(map(id, va(), kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), EEXIST);
}

TEST_F(IoctlTest, FixedMapIntoAReservedRangeIsEinval) {
  const std::uint32_t id = alloc_ioas();
  ASSERT_TRUE(ioas(id).iopt().add_reserved({0x100000, 0x1fffff}, nullptr).ok());
  std::uint64_t iova = 0x1ff000;
  EXPECT_EQ(map(id, va(), 2 * kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), EINVAL);
}

TEST_F(IoctlTest, AutomaticIovaIsAlignedToTheLengthsPowerOfTwo) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t iova = 0;
  ASSERT_EQ(map(id, va(), 0x5000, &iova), 0);
  EXPECT_EQ(iova, 0x8000u);  // roundup_pow_of_two(0x5000), the lowest fitting multiple
  std::uint64_t second = 0;
  ASSERT_EQ(map(id, va(), 0x3000, &second), 0);
  EXPECT_EQ(second % 0x4000, 0u);
  EXPECT_NE(second, 0u);
}

TEST_F(IoctlTest, AutomaticIovaKeepsTheSourcesOffsetInItsPage) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t iova = 0;
  ASSERT_EQ(map(id, va(0x800), 0x1000, &iova), 0);
  EXPECT_EQ(iova % kPageSize, 0x800u);
}

TEST_F(IoctlTest, AutomaticIovaAlignmentIsCappedAtTwoMegabytes) {
  const std::uint32_t id = alloc_ioas();
  ASSERT_TRUE(ioas(id).iopt().add_reserved({0x1000, 0x3fffff}, nullptr).ok());
  std::uint64_t iova = 0;
  // roundup_pow_of_two(0x400001) is 8 MiB; the cap keeps the candidate at 4 MiB.
  void* big =
      mmap(nullptr, 16 * k2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(big, MAP_FAILED);
  extra_maps_.push_back({big, 16 * k2M});
  const std::uint64_t src = (reinterpret_cast<std::uint64_t>(big) + 8 * k2M - 1) & ~(8 * k2M - 1);
  ASSERT_EQ(map(id, src, 0x400001, &iova), 0);
  EXPECT_EQ(iova, 0x400000u);
}

TEST_F(IoctlTest, MapOfALengthThatIsNotAPageMultipleWorksWithAlignmentOne) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t iova = 0;
  ASSERT_EQ(map(id, va(3), 1000, &iova), 0);
  std::uint64_t len = 1000;
  EXPECT_EQ(unmap(id, iova, &len), 0);
  EXPECT_EQ(len, 1000u);
}

TEST_F(IoctlTest, AutomaticMapThatFitsNoHoleIsEnospc) {
  const std::uint32_t id = alloc_ioas();
  // An aligned candidate in the top hole would wrap past U64_MAX.
  ASSERT_TRUE(ioas(id).iopt().add_reserved({6, 0xffffffffffff8006}, nullptr).ok());
  std::uint64_t iova = 0;
  EXPECT_EQ(map(id, va(), 0x5000, &iova), ENOSPC);
  EXPECT_EQ(ioas(id).iopt().area_count(), 0u);
}

TEST_F(IoctlTest, MapWhoseReplyCannotBeWrittenIsEfaultButStaysMapped) {
  const std::uint32_t id = alloc_ioas();
  iommu_ioas_map* ro = read_only_copy(iommu_ioas_map{sizeof(iommu_ioas_map), kRW, id, 0, va(), kPageSize, 0});
  EXPECT_EQ(call(IOMMU_IOAS_MAP, ro), EFAULT);
  EXPECT_EQ(ioas(id).iopt().area_count(), 1u);
}

TEST_F(IoctlTest, MapWithADomainPinsAndUnmapReleases) {
  const std::uint32_t id = alloc_ioas();
  attach_mock_domain(id);
  std::uint64_t iova = 0;
  ASSERT_EQ(map(id, va(), 16 * kPageSize, &iova), 0);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 16);
  std::uint64_t len = 16 * kPageSize;
  ASSERT_EQ(unmap(id, iova, &len), 0);
  EXPECT_EQ(len, 16 * kPageSize);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
}

TEST_F(IoctlTest, MapOfAnUnmappedSourceWithADomainIsEfault) {
  const std::uint32_t id = alloc_ioas();
  attach_mock_domain(id);
  std::uint64_t iova = 0;
  EXPECT_EQ(map(id, kUnmapped, kPageSize, &iova), EFAULT);
  EXPECT_EQ(ioas(id).iopt().area_count(), 0u);
}

// ---- IOMMU_IOAS_MAP_FILE -------------------------------------------------------------------------------

TEST_F(IoctlTest, MapFileChecksInTheKernelsOrder) {
  iommu_ioas_map_file m{sizeof(m), 1u << 3, kNoSuchId, -1, 0, kUlongMax, 0};
  EXPECT_EQ(call(IOMMU_IOAS_MAP_FILE, &m), EOPNOTSUPP);
  m.flags = 0;
  EXPECT_EQ(call(IOMMU_IOAS_MAP_FILE, &m), EOVERFLOW);
  m.length = kPageSize;
  EXPECT_EQ(call(IOMMU_IOAS_MAP_FILE, &m), EINVAL);
  m.flags = kRW;
  EXPECT_EQ(call(IOMMU_IOAS_MAP_FILE, &m), ENOENT);
  m.ioas_id = alloc_ioas();
  EXPECT_EQ(call(IOMMU_IOAS_MAP_FILE, &m), EBADF);
}

// iopt_map_file_pages() checks the length and the end of the file range before it looks the fd up (seen on
// Linux 7.2 by tools/reference: a zero length with a bad fd is EINVAL there).
TEST_F(IoctlTest, MapFileChecksItsFileRangeBeforeTheFd) {
  iommu_ioas_map_file m{sizeof(m), kRW, alloc_ioas(), -1, 0, 0, 0};
  EXPECT_EQ(call(IOMMU_IOAS_MAP_FILE, &m), EINVAL);
  m.start = kUlongMax - kPageSize;
  m.length = 2 * kPageSize;
  EXPECT_EQ(call(IOMMU_IOAS_MAP_FILE, &m), EOVERFLOW);
}

TEST_F(IoctlTest, MapFileOfAMemfdMapsAndWritesTheIovaBack) {
  const std::uint32_t id = alloc_ioas();
  int mfd = memfd_create("ioctl-test", 0);
  ASSERT_GE(mfd, 0);
  ASSERT_EQ(ftruncate(mfd, 4 * kPageSize), 0);
  iommu_ioas_map_file m{sizeof(m), kRW | IOMMU_IOAS_MAP_FIXED_IOVA, id, mfd, 0, 4 * kPageSize, 0x200000};
  EXPECT_EQ(call(IOMMU_IOAS_MAP_FILE, &m), 0);
  EXPECT_EQ(m.iova, 0x200000u);
  m.flags = kRW;
  m.start = 0;
  m.length = 0;
  EXPECT_EQ(call(IOMMU_IOAS_MAP_FILE, &m), EINVAL);
  close(mfd);
  EXPECT_EQ(ioas(id).iopt().area_count(), 1u);
}

// ---- IOMMU_IOAS_UNMAP ----------------------------------------------------------------------------------

TEST_F(IoctlTest, UnmapLooksUpTheIoasBeforeCheckingTheRange) {
  std::uint64_t len = kUlongMax;
  EXPECT_EQ(unmap(kNoSuchId, kUlongMax, &len), ENOENT);
}

TEST_F(IoctlTest, UnmapRangeErrors) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t len = 0;
  EXPECT_EQ(unmap(id, 0x1000, &len), EINVAL);
  len = 1;
  EXPECT_EQ(unmap(id, kUlongMax, &len), EOVERFLOW);
  len = kUlongMax;
  EXPECT_EQ(unmap(id, 1, &len), EOVERFLOW);
  len = 4;
  EXPECT_EQ(unmap(id, kUlongMax - 1, &len), EOVERFLOW);
}

TEST_F(IoctlTest, UnmapOfAnEmptyRangeIsEnoentAndWritesNothingBack) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t len = 0x1000;
  EXPECT_EQ(unmap(id, 0x1000, &len), ENOENT);
  EXPECT_EQ(len, 0x1000u);
}

TEST_F(IoctlTest, UnmapOfPartOfAnAreaIsEnoent) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t iova = 0x100000;
  ASSERT_EQ(map(id, va(), 4 * kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
  std::uint64_t len = kPageSize;
  EXPECT_EQ(unmap(id, 0x100000, &len), ENOENT);
  EXPECT_EQ(len, kPageSize);
  EXPECT_EQ(ioas(id).iopt().area_count(), 1u);
}

TEST_F(IoctlTest, UnmapOfASupersetRemovesEveryAreaInsideAndReportsTheBytes) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t iova = 0x100000;
  ASSERT_EQ(map(id, va(), 2 * kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
  iova = 0x200000;
  ASSERT_EQ(map(id, va(), 3 * kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
  std::uint64_t len = 0x200000;
  ASSERT_EQ(unmap(id, 0x100000, &len), 0);
  EXPECT_EQ(len, 5 * kPageSize);
  EXPECT_EQ(ioas(id).iopt().area_count(), 0u);
}

TEST_F(IoctlTest, UnmapAllOfAnEmptyIoasSucceedsWithZero) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t len = kUlongMax;
  EXPECT_EQ(unmap(id, 0, &len), 0);
  EXPECT_EQ(len, 0u);
}

TEST_F(IoctlTest, UnmapAllReportsTheBytesUnmapped) {
  const std::uint32_t id = alloc_ioas();
  attach_mock_domain(id);
  std::uint64_t iova = 0;
  ASSERT_EQ(map(id, va(), 4 * kPageSize, &iova), 0);
  ASSERT_EQ(map(id, va(8 * kPageSize), 6 * kPageSize, &iova), 0);
  std::uint64_t len = kUlongMax;
  ASSERT_EQ(unmap(id, 0, &len), 0);
  EXPECT_EQ(len, 10 * kPageSize);
  EXPECT_EQ(ioas(id).iopt().area_count(), 0u);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
}

// ---- IOMMU_IOAS_COPY -----------------------------------------------------------------------------------

TEST_F(IoctlTest, CopyChecksFlagsThenOverflowThenPermission) {
  std::uint64_t dst = 0;
  EXPECT_EQ(copy(kNoSuchId, kNoSuchId, 0, kPageSize, &dst, 1u << 3), EOPNOTSUPP);
  EXPECT_EQ(copy(kNoSuchId, kNoSuchId, kUlongMax, kPageSize, &dst, 0), EOVERFLOW);
  EXPECT_EQ(copy(kNoSuchId, kNoSuchId, 0, kUlongMax, &dst, 0), EOVERFLOW);
  dst = kUlongMax;
  EXPECT_EQ(copy(kNoSuchId, kNoSuchId, 0, kPageSize, &dst, 0), EOVERFLOW);
  dst = 0;
  EXPECT_EQ(copy(kNoSuchId, kNoSuchId, 0, kPageSize, &dst, 0), EINVAL);
  EXPECT_EQ(copy(kNoSuchId, kNoSuchId, 0, kPageSize, &dst), ENOENT);
}

TEST_F(IoctlTest, CopyChecksTheSourceRangeBeforeTheDestination) {
  const std::uint32_t src = alloc_ioas();
  std::uint64_t dst = 0;
  EXPECT_EQ(copy(kNoSuchId, src, 0x1000, 0, &dst), EINVAL);          // length 0
  EXPECT_EQ(copy(kNoSuchId, src, 0x1000, kPageSize, &dst), ENOENT);  // nothing mapped there
  std::uint64_t iova = 0x100000;
  ASSERT_EQ(map(src, va(), 4 * kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
  EXPECT_EQ(copy(kNoSuchId, src, 0x100000, kPageSize, &dst), ENOENT);  // now the destination
}

TEST_F(IoctlTest, CopyOfARangeWithAByteOutsideTheAreasIsEnoent) {
  const std::uint32_t src = alloc_ioas();
  const std::uint32_t dst_id = alloc_ioas();
  std::uint64_t iova = 0x100000;
  ASSERT_EQ(map(src, va(), 4 * kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
  std::uint64_t dst = 0;
  EXPECT_EQ(copy(dst_id, src, 0x100000 + 1, 4 * kPageSize, &dst), ENOENT);
  EXPECT_EQ(copy(dst_id, src, 0x100000 - 1, 2, &dst), ENOENT);
  EXPECT_EQ(ioas(dst_id).iopt().area_count(), 0u);
}

TEST_F(IoctlTest, CopyIsByteGranularAndSharesTheSourceData) {
  const std::uint32_t src = alloc_ioas();
  const std::uint32_t dst_id = alloc_ioas();
  std::uint64_t iova = 0x100000;
  ASSERT_EQ(map(src, va(), 16 * kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
  for (std::uint64_t off = 0; off + 1000 <= 16 * kPageSize; off += 511 * 13) {
    std::uint64_t dst = 0;
    ASSERT_EQ(copy(dst_id, src, 0x100000 + off, 1000, &dst), 0) << off;
    unsigned char got[1000];
    ASSERT_TRUE(ioas(dst_id).iopt().access_rw(dst, got, sizeof(got), false, false).ok());
    EXPECT_EQ(std::memcmp(got, reinterpret_cast<const void*>(va(off)), sizeof(got)), 0) << off;
  }
}

TEST_F(IoctlTest, CopyAcrossContiguousAreasWithADomainPinsNothingTwice) {
  const std::uint32_t src = alloc_ioas();
  const std::uint32_t dst_id = alloc_ioas();
  attach_mock_domain(src);
  attach_mock_domain(dst_id);
  std::uint64_t iova = 1u << 24;
  ASSERT_EQ(map(src, va(), 4 * kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
  iova = (1u << 24) + 4 * kPageSize;
  ASSERT_EQ(map(src, va(4 * kPageSize), 4 * kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 8);
  std::uint64_t dst = (1u << 24) + 0x100000;
  ASSERT_EQ(copy(dst_id, src, (1u << 24) + kPageSize, 6 * kPageSize, &dst, kRW | IOMMU_IOAS_MAP_FIXED_IOVA),
            0);
  EXPECT_EQ(dst, (1u << 24) + 0x100000u);
  EXPECT_EQ(ioas(dst_id).iopt().area_count(), 2u);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 8);
}

TEST_F(IoctlTest, CopyOfWriteOverReadOnlyPagesIsEperm) {
  const std::uint32_t src = alloc_ioas();
  std::uint64_t iova = 0x100000;
  ASSERT_EQ(map(src, va(), kPageSize, &iova, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
  std::uint64_t dst = 0;
  EXPECT_EQ(copy(src, src, 0x100000, kPageSize, &dst), EPERM);
  EXPECT_EQ(copy(src, src, 0x100000, kPageSize, &dst, IOMMU_IOAS_MAP_READABLE), 0);
}

// ---- IOMMU_OPTION --------------------------------------------------------------------------------------

TEST_F(IoctlTest, OptionWithReservedOrAnUnknownOptionIsEopnotsupp) {
  iommu_option o{sizeof(o), IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 1, 0, 0};
  EXPECT_EQ(call(IOMMU_OPTION, &o), EOPNOTSUPP);
  std::uint64_t val = 0;
  EXPECT_EQ(option(2, IOMMU_OPTION_OP_GET, 0, &val), EOPNOTSUPP);
}

TEST_F(IoctlTest, RlimitModeWithAnObjectIdOrAnUnknownOpIsEopnotsupp) {
  std::uint64_t val = 0;
  EXPECT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 1, &val), EOPNOTSUPP);
  EXPECT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, 2, 0, &val), EOPNOTSUPP);
}

TEST_F(IoctlTest, RlimitModeGetIsZeroForIommuAndOneForVfio) {
  std::uint64_t val = 7;
  ASSERT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, &val), 0);
  EXPECT_EQ(val, 0u);
  const int vfd = host_.open_iommufd(/*vfio_compat=*/true);
  ASSERT_GE(vfd, 0);
  iommu_option o{sizeof(o), IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, 0, 7};
  EXPECT_EQ(host_.ioctl(vfd, IOMMU_OPTION, &o), 0);
  EXPECT_EQ(o.val64, 1u);
  host_.close(vfd);
}

TEST_F(IoctlTest, RlimitModeSetNeedsCapSysResource) {
  if (has_capability(CAP_SYS_RESOURCE)) GTEST_SKIP() << "this process has CAP_SYS_RESOURCE";
  std::uint64_t val = 1;
  EXPECT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &val), EPERM);
  val = 2;  // the capability is checked before the value
  EXPECT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &val), EPERM);
}

TEST_F(IoctlTest, RlimitModeSetChangesTheMode) {
  if (!has_capability(CAP_SYS_RESOURCE)) GTEST_SKIP() << "needs CAP_SYS_RESOURCE";
  std::uint64_t val = 1;
  ASSERT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &val), 0);
  val = 0;
  ASSERT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, &val), 0);
  EXPECT_EQ(val, 1u);
  val = 0;
  ASSERT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &val), 0);
  ASSERT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, &val), 0);
  EXPECT_EQ(val, 0u);
}

TEST_F(IoctlTest, RlimitModeSetWithObjectsIsEbusyEvenForABadValue) {
  if (!has_capability(CAP_SYS_RESOURCE)) GTEST_SKIP() << "needs CAP_SYS_RESOURCE";
  alloc_ioas();
  std::uint64_t val = 1;
  EXPECT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &val), EBUSY);
  val = 2;
  EXPECT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &val), EBUSY);
}

TEST_F(IoctlTest, RlimitModeSetOfAnUnknownValueIsEinval) {
  if (!has_capability(CAP_SYS_RESOURCE)) GTEST_SKIP() << "needs CAP_SYS_RESOURCE";
  std::uint64_t val = 2;
  EXPECT_EQ(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &val), EINVAL);
  EXPECT_FALSE(ctx().mm_account_mode());
}

TEST_F(IoctlTest, OptionWritesBackOnlyVal64) {
  // The struct straddles a page boundary: everything but val64 lies on a read-only page.
  auto* pages = static_cast<unsigned char*>(
      mmap(nullptr, 2 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(pages, MAP_FAILED);
  extra_maps_.push_back({pages, 2 * kPageSize});
  auto* o = reinterpret_cast<iommu_option*>(pages + kPageSize - offsetof(iommu_option, val64));
  *o = {sizeof(iommu_option), IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, 0, 7};
  ASSERT_EQ(mprotect(pages, kPageSize, PROT_READ), 0);
  EXPECT_EQ(call(IOMMU_OPTION, o), 0);
  EXPECT_EQ(o->val64, 0u);
}

TEST_F(IoctlTest, OptionWhoseVal64CannotBeWrittenIsEfault) {
  iommu_option* ro = read_only_copy(
      iommu_option{sizeof(iommu_option), IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, 0, 7});
  EXPECT_EQ(call(IOMMU_OPTION, ro), EFAULT);
}

TEST_F(IoctlTest, HugePagesOfAnUnknownIoasIsEnoentBeforeTheOp) {
  std::uint64_t val = 0;
  EXPECT_EQ(option(IOMMU_OPTION_HUGE_PAGES, 7, kNoSuchId, &val), ENOENT);
  EXPECT_EQ(option(IOMMU_OPTION_HUGE_PAGES, 7, alloc_ioas(), &val), EOPNOTSUPP);
}

TEST_F(IoctlTest, HugePagesIsOneOnAFreshIoas) {
  std::uint64_t val = 7;
  ASSERT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, alloc_ioas(), &val), 0);
  EXPECT_EQ(val, 1u);
}

TEST_F(IoctlTest, HugePagesSetOfAnUnknownValueIsEinval) {
  std::uint64_t val = 2;
  EXPECT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, alloc_ioas(), &val), EINVAL);
}

TEST_F(IoctlTest, HugePagesZeroRaisesTheAlignmentToAPageAndOneLowersIt) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t val = 0;
  ASSERT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, id, &val), 0);
  EXPECT_EQ(alignment_of(id), kPageSize);
  ASSERT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, id, &val), 0);
  EXPECT_EQ(val, 0u);
  val = 0;
  EXPECT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, id, &val), 0);  // repeating is fine
  val = 1;
  ASSERT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, id, &val), 0);
  EXPECT_EQ(alignment_of(id), 1u);
}

TEST_F(IoctlTest, HugePagesZeroWithAMisalignedAreaIsEaddrinuseAndChangesNothing) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t iova = 0;
  ASSERT_EQ(map(id, va(0x800), kPageSize, &iova), 0);
  std::uint64_t val = 0;
  EXPECT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, id, &val), EADDRINUSE);
  ASSERT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, id, &val), 0);
  EXPECT_EQ(val, 1u);
  EXPECT_EQ(alignment_of(id), 1u);
}

TEST_F(IoctlTest, HugePagesZeroAcceptsPageAlignedAreas) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t iova = 0;
  ASSERT_EQ(map(id, va(), 2 * kPageSize, &iova), 0);
  std::uint64_t val = 0;
  EXPECT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, id, &val), 0);
}

TEST_F(IoctlTest, WithHugePagesZeroMapNeedsPageAlignment) {
  const std::uint32_t id = alloc_ioas();
  std::uint64_t val = 0;
  ASSERT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, id, &val), 0);
  std::uint64_t iova = 0;
  EXPECT_EQ(map(id, va(0x800), kPageSize, &iova), EINVAL);  // source 2 KiB into a page
  EXPECT_EQ(map(id, va(), kPageSize + 1, &iova), EINVAL);   // not a page multiple
  iova = 0x100800;
  EXPECT_EQ(map(id, va(), kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), EINVAL);
  EXPECT_EQ(map(id, va(), kPageSize, &(iova = 0)), 0);
}

TEST_F(IoctlTest, HugePagesZeroWithADomainAndAnAreaIsEinval) {
  const std::uint32_t id = alloc_ioas();
  attach_mock_domain(id);
  std::uint64_t val = 0;
  ASSERT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, id, &val), 0);  // no area yet
  val = 1;
  ASSERT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, id, &val), 0);
  std::uint64_t iova = 0;
  ASSERT_EQ(map(id, va(), kPageSize, &iova), 0);
  val = 0;
  EXPECT_EQ(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, id, &val), EINVAL);
}

// ---- IOMMU_VFIO_IOAS -----------------------------------------------------------------------------------

TEST_F(IoctlTest, VfioIoasGetWithNoneIsEnodev) {
  std::uint32_t id = 0;
  EXPECT_EQ(vfio_ioas(IOMMU_VFIO_IOAS_GET, &id), ENODEV);
}

TEST_F(IoctlTest, VfioIoasSetOfABadIdIsEnoent) {
  std::uint32_t id = kNoSuchId;
  EXPECT_EQ(vfio_ioas(IOMMU_VFIO_IOAS_SET, &id), ENOENT);
  id = attach_mock_domain(alloc_ioas());  // a device, not an IOAS
  EXPECT_EQ(vfio_ioas(IOMMU_VFIO_IOAS_SET, &id), ENOENT);
}

TEST_F(IoctlTest, VfioIoasSetGetAndClear) {
  alloc_ioas();
  std::uint32_t id = alloc_ioas();
  ASSERT_EQ(vfio_ioas(IOMMU_VFIO_IOAS_SET, &id), 0);
  std::uint32_t got = 0;
  ASSERT_EQ(vfio_ioas(IOMMU_VFIO_IOAS_GET, &got), 0);
  EXPECT_EQ(got, id);
  ASSERT_EQ(vfio_ioas(IOMMU_VFIO_IOAS_CLEAR, &got), 0);
  EXPECT_EQ(vfio_ioas(IOMMU_VFIO_IOAS_GET, &got), ENODEV);
}

TEST_F(IoctlTest, DestroyingTheVfioIoasClearsIt) {
  std::uint32_t id = alloc_ioas();
  ASSERT_EQ(vfio_ioas(IOMMU_VFIO_IOAS_SET, &id), 0);
  iommu_destroy d{sizeof(d), id};
  ASSERT_EQ(call(IOMMU_DESTROY, &d), 0);
  EXPECT_EQ(vfio_ioas(IOMMU_VFIO_IOAS_GET, &id), ENODEV);
}

TEST_F(IoctlTest, VfioIoasWithReservedOrAnUnknownOpIsEopnotsupp) {
  iommu_vfio_ioas v{sizeof(v), 0, IOMMU_VFIO_IOAS_GET, 1};
  EXPECT_EQ(call(IOMMU_VFIO_IOAS, &v), EOPNOTSUPP);
  std::uint32_t id = 0;
  EXPECT_EQ(vfio_ioas(3, &id), EOPNOTSUPP);
}

// ---- fail-nth sweeps through the dispatcher -------------------------------------------------------------

// Each run starts from a fresh iommufd: an IOAS `src_` with a mock domain and, when `premapped`, 16 pages
// mapped at the aperture start; `dst_` is a second, empty IOAS with its own mock domain. After every run the
// pins and charges must match the areas that exist, and the areas must be consistent with the domains.
class IoctlSweepTest : public IoctlTest {
 protected:
  static constexpr std::uint64_t kAperture = 1u << 24;

  void reset(bool premapped) {
    if (fd_ >= 0) host_.close(fd_);
    ASSERT_EQ(Pages::total_pinned_pages(), pinned_before_);
    ASSERT_EQ(account_pinned_vm(), pinned_vm_before_);
    fd_ = host_.open_iommufd();
    src_ = alloc_ioas();
    attach_mock_domain(src_);
    dst_ = alloc_ioas();
    attach_mock_domain(dst_);
    if (premapped) {
      std::uint64_t iova = kAperture;
      ASSERT_EQ(map(src_, va(), 16 * kPageSize, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
    }
    objects_ = ctx().object_count();
  }
  // Pins exist exactly for the distinct source pages still mapped somewhere.
  void expect_consistent(std::uint64_t pinned_pages) {
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + pinned_pages);
    EXPECT_EQ(account_pinned_vm(), pinned_vm_before_ + pinned_pages);
    EXPECT_EQ(ioas(src_).iopt().check_invariants(), "");
    EXPECT_EQ(ioas(dst_).iopt().check_invariants(), "");
  }

  std::size_t objects_ = 0;
  std::uint32_t src_ = 0;
  std::uint32_t dst_ = 0;
};

TEST_F(IoctlSweepTest, AllocUnwindsAtEveryFaultSite) {
  SweepResult r =
      sweep_fail_nth([&] { reset(false); },
                     [&] {
                       iommu_ioas_alloc a{sizeof(a), 0, 0};
                       return host_.ioctl(fd_, IOMMU_IOAS_ALLOC, &a) == 0 ? Status() : Status::error(errno);
                     },
                     [&](unsigned, Status st) {
                       EXPECT_EQ(ctx().object_count(), objects_ + (st.ok() ? 1 : 0)) << st.to_string();
                       if (!st.ok()) {
                         EXPECT_EQ(alloc_ioas(), objects_ + 1);  // ids are dense here: the next one came back
                       }
                     });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok());
  EXPECT_GE(r.sites_failed, 3u);  // struct read (one user-copy check, as the kernel's), allocation, reply
}

TEST_F(IoctlSweepTest, MapUnwindsAtEveryFaultSite) {
  SweepResult r = sweep_fail_nth([&] { reset(false); },
                                 [&] {
                                   std::uint64_t iova = 0;
                                   int e = map(src_, va(), 16 * kPageSize, &iova);
                                   return e ? Status::error(e) : Status();
                                 },
                                 [&](unsigned, Status st) {
                                   // The reply is the last step: a failure there leaves the mapping, as the
                                   // kernel does.
                                   const std::size_t areas = ioas(src_).iopt().area_count();
                                   if (!st.ok() && st.error() != EFAULT) {
                                     EXPECT_EQ(areas, 0u) << st.to_string();
                                   }
                                   expect_consistent(16 * areas);
                                 });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok());
  EXPECT_GT(r.sites_failed, 4u);
}

TEST_F(IoctlSweepTest, CopyUnwindsAtEveryFaultSite) {
  SweepResult r = sweep_fail_nth([&] { reset(true); },
                                 [&] {
                                   std::uint64_t dst = 0;
                                   int e = copy(dst_, src_, kAperture + kPageSize, 8 * kPageSize, &dst);
                                   return e ? Status::error(e) : Status();
                                 },
                                 [&](unsigned, Status st) {
                                   const std::size_t areas = ioas(dst_).iopt().area_count();
                                   if (!st.ok() && st.error() != EFAULT) {
                                     EXPECT_EQ(areas, 0u) << st.to_string();
                                   }
                                   EXPECT_EQ(ioas(src_).iopt().area_count(), 1u);
                                   expect_consistent(16);  // the copy shares the source's pins
                                 });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok());
  EXPECT_GT(r.sites_failed, 4u);
}

TEST_F(IoctlSweepTest, UnmapUnwindsAtEveryFaultSite) {
  SweepResult r = sweep_fail_nth([&] { reset(true); },
                                 [&] {
                                   std::uint64_t len = kUlongMax;
                                   int e = unmap(src_, 0, &len);
                                   return e ? Status::error(e) : Status();
                                 },
                                 [&](unsigned, Status st) {
                                   const std::size_t areas = ioas(src_).iopt().area_count();
                                   if (st.ok()) {
                                     EXPECT_EQ(areas, 0u);
                                   }
                                   expect_consistent(16 * areas);
                                 });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok());
  EXPECT_GE(r.sites_failed, 3u);
}

// ---- fail-nth sweeps of the page-table commands ---------------------------------------------------------

// The mock driver's IOMMU_HWPT_DATA_SELFTEST struct and its invalidation entry (the kernel's
// iommufd_test.h struct iommu_hwpt_selftest and struct iommu_hwpt_invalidate_selftest).
struct HwptSelftestData {
  std::uint32_t iotlb;
  std::uint32_t pagetable_type;
};
struct InvalidateEntry {
  std::uint32_t flags;
  std::uint32_t iotlb_id;
};

enum class HwptData { kNone, kDefault, kHuge };

using testing::make_test_cmd;
using testing::SweepRun;

// Each run starts from a fresh iommufd: an IOAS `ioas_` with two 8-page areas back to back from the mock
// aperture start and (unless asked for) no domain, so that a new paging HWPT's fill pins every page; and a
// mock device `dev_` on a second, empty IOAS through its automatic HWPT. The state a run must leave as it
// found it when it fails: the objects, pins and charges, the IOAS's areas, domains, ranges and alignment,
// and the device's attachment.
class HwptSweepTest : public IoctlTest {
 protected:
  static constexpr std::uint64_t kAperture = MOCK_APERTURE_START;
  static constexpr std::uint64_t kMapped = 16 * kPageSize;

  struct State {
    std::size_t objects = 0;
    std::uint64_t pinned = 0, charged = 0;
    std::size_t areas = 0, domains = 0;
    std::vector<Interval> ranges;
    std::uint64_t alignment = 0;
    std::uint32_t dev_hwpt = 0;
    bool operator==(const State&) const = default;
    std::string to_string() const {
      std::string s = "objects " + std::to_string(objects) + ", pinned " + std::to_string(pinned) +
                      ", charged " + std::to_string(charged) + ", areas " + std::to_string(areas) +
                      ", domains " + std::to_string(domains) + ", alignment " + std::to_string(alignment) +
                      ", device on " + std::to_string(dev_hwpt) + ", ranges";
      for (Interval r : ranges) s += " [" + std::to_string(r.start) + ", " + std::to_string(r.last) + "]";
      return s;
    }
  };

  void reset(bool ioas_domain = false) {
    if (fd_ >= 0) host_.close(fd_);
    ASSERT_EQ(Pages::total_pinned_pages(), pinned_before_) << "pins leaked";
    ASSERT_EQ(account_pinned_vm(), pinned_vm_before_) << "charges leaked";
    fd_ = host_.open_iommufd();
    ASSERT_GE(fd_, 0);
    ioas_ = alloc_ioas();
    std::uint64_t iova = kAperture;
    ASSERT_EQ(map(ioas_, va(), kMapped / 2, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
    iova = kAperture + kMapped / 2;
    ASSERT_EQ(map(ioas_, va(kMapped / 2), kMapped / 2, &iova, kRW | IOMMU_IOAS_MAP_FIXED_IOVA), 0);
    if (ioas_domain) attach_mock_domain(ioas_);
    dev_ = attach_mock_domain(alloc_ioas());
  }

  State state() {
    State s;
    s.objects = ctx().object_count();
    s.pinned = Pages::total_pinned_pages() - pinned_before_;
    s.charged = account_pinned_vm() - pinned_vm_before_;
    IoPagetable& iopt = ioas(ioas_).iopt();
    EXPECT_EQ(iopt.check_invariants(), "");
    s.areas = iopt.area_count();
    s.domains = iopt.domain_count();
    s.ranges = iopt.iova_ranges();
    s.alignment = iopt.iova_alignment();
    auto dev = ctx().get<Device>(dev_, ObjectType::kDevice);
    EXPECT_TRUE(dev.ok());
    if (dev.ok()) s.dev_hwpt = (*dev)->hwpt_id();
    return s;
  }

  int hwpt_alloc(std::uint32_t flags, std::uint32_t pt_id, HwptData data, std::uint32_t* out,
                 std::uint32_t fault_id = 0) {
    HwptSelftestData d{kTestIotlbDefault, data == HwptData::kHuge ? kMockIommuptHuge : kMockIommuptDefault};
    iommu_hwpt_alloc a{};
    a.size = sizeof(a);
    a.flags = flags;
    a.dev_id = dev_;
    a.pt_id = pt_id;
    if (data != HwptData::kNone) {
      a.data_type = kHwptDataSelftest;
      a.data_len = sizeof(d);
      a.data_uptr = reinterpret_cast<std::uint64_t>(&d);
    }
    a.fault_id = fault_id;
    const int e = call(IOMMU_HWPT_ALLOC, &a);
    *out = a.out_hwpt_id;
    return e;
  }
  int check_map(std::uint32_t hwpt, std::uint64_t iova, std::uint64_t length, std::uint64_t uptr) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MD_CHECK_MAP, hwpt);
    c.check_map = {iova, length, uptr};
    return call(IOMMU_TEST_CMD, &c);
  }
  NestedDomain* nested(std::uint32_t id) {
    auto h = ctx().get<HwptNested>(id, ObjectType::kHwptNested);
    EXPECT_TRUE(h.ok()) << id;
    return h.ok() ? &(*h)->domain() : nullptr;  // the table keeps it alive
  }

  // The id the next object gets: ids are handed out lowest first, so an IOAS allocated and destroyed again
  // shows it. A failed allocation must give its id back.
  std::uint32_t next_id() {
    const std::uint32_t id = alloc_ioas();
    iommu_destroy d{sizeof(d), id};
    EXPECT_EQ(call(IOMMU_DESTROY, &d), 0);
    return id;
  }
  void expect_unchanged(const SweepRun& run, const State& now) {
    EXPECT_EQ(now, before_) << "run " << run.n << ", " << run.site << ": " << std::strerror(run.err)
                            << "\n  before: " << before_.to_string() << "\n  after:  " << now.to_string();
    EXPECT_EQ(next_id(), next_id_) << "run " << run.n << ", " << run.site << ": the id was not given back";
  }
  void snapshot() {
    before_ = state();
    next_id_ = next_id();
  }

  // HWPT_ALLOC looks up the device, then pt_id; the kernel turns a failed lookup of pt_id into EINVAL
  // (hw_pagetable.c iommufd_hwpt_alloc()), also an injected one.
  static int alloc_errno(const SweepRun& run) {
    if (run.site == "objects.lookup" && run.ordinal == 2) return EINVAL;
    return testing::fault_site_errno(run.site);
  }

  std::uint32_t ioas_ = 0;
  std::uint32_t dev_ = 0;
  std::uint32_t out_ = 0;
  State before_;
  std::uint32_t next_id_ = 0;
};

struct PagingCase {
  const char* name;
  std::uint32_t flags;
  HwptData data;
  bool ioas_domain;  // the IOAS already has a domain: its pages are pinned before the fill
};

class HwptAllocPagingSweepTest : public HwptSweepTest, public ::testing::WithParamInterface<PagingCase> {};

// IOMMU_HWPT_ALLOC of a paging HWPT on an IOAS with areas: the new domain is filled from them before the
// reply, and every failure on the way (the struct, the lookups, the table, the object, each pin, charge and
// domain map of the fill, the reply) undoes it all.
TEST_P(HwptAllocPagingSweepTest, UnwindsAtEveryFaultSite) {
  const PagingCase& c = GetParam();
  SweepResult r = testing::sweep_checked(
      [&] {
        reset(c.ioas_domain);
        snapshot();
      },
      [&] { return hwpt_alloc(c.flags, ioas_, c.data, &out_); },
      [&](const SweepRun& run) {
        const State now = state();
        if (run.err != 0) {
          expect_unchanged(run, now);
          return;
        }
        EXPECT_EQ(now.objects, before_.objects + 1);
        EXPECT_EQ(now.domains, before_.domains + 1);
        EXPECT_EQ(now.pinned, kMapped / kPageSize);
        EXPECT_EQ(now.dev_hwpt, before_.dev_hwpt);
        EXPECT_EQ(check_map(out_, kAperture, kMapped, va()), 0) << "the new domain was not filled";
      },
      0, alloc_errno);
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  ASSERT_FALSE(r.fired_sites.empty());
  EXPECT_EQ(r.fired_sites.back(), "mm.copy_to_user") << "the reply is the last step";
  EXPECT_TRUE(testing::has_site(r, "mock.domain_map"));
  if (!c.ioas_domain) {
    EXPECT_TRUE(testing::has_site(r, "pages.pin"));  // (no "pages.account": a root test run charges nothing)
  }
  // The struct, and the driver data when there is some.
  EXPECT_EQ(std::count(r.fired_sites.begin(), r.fired_sites.end(), "mm.copy_from_user"),
            c.data == HwptData::kNone ? 1 : 2);
}

INSTANTIATE_TEST_SUITE_P(
    Hwpt, HwptAllocPagingSweepTest,
    ::testing::Values(PagingCase{"NoFlags", 0, HwptData::kNone, false},
                      PagingCase{"NestParent", kHwptAllocNestParent, HwptData::kNone, false},
                      PagingCase{"DirtyTracking", kHwptAllocDirtyTracking, HwptData::kNone, false},
                      PagingCase{"Pasid", kHwptAllocPasid, HwptData::kNone, false},
                      PagingCase{"AllFlags", kHwptAllocNestParent | kHwptAllocDirtyTracking | kHwptAllocPasid,
                                 HwptData::kNone, false},
                      PagingCase{"SelftestData", 0, HwptData::kDefault, false},
                      PagingCase{"SelftestDataHuge", 0, HwptData::kHuge, false},
                      PagingCase{"PasidSelftestDataHuge", kHwptAllocPasid, HwptData::kHuge, false},
                      PagingCase{"OnAnIoasWithADomain", 0, HwptData::kNone, true},
                      PagingCase{"NestParentOnAnIoasWithADomain", kHwptAllocNestParent, HwptData::kDefault,
                                 true}),
    [](const ::testing::TestParamInfo<PagingCase>& info) { return std::string(info.param.name); });

// A nested HWPT on a NEST_PARENT parent: the mock's stage-1 domain, then the object, then the reply.
TEST_F(HwptSweepTest, NestedAllocUnwindsAtEveryFaultSite) {
  for (std::uint32_t flags : {0u, std::uint32_t{kHwptAllocPasid}}) {
    SCOPED_TRACE(flags);
    std::uint32_t parent = 0;
    SweepResult r = testing::sweep_checked(
        [&] {
          reset();
          ASSERT_EQ(hwpt_alloc(kHwptAllocNestParent, ioas_, HwptData::kNone, &parent), 0);
          snapshot();
        },
        [&] { return hwpt_alloc(flags, parent, HwptData::kDefault, &out_); },
        [&](const SweepRun& run) {
          const State now = state();
          if (run.err != 0) {
            expect_unchanged(run, now);
            return;
          }
          EXPECT_EQ(now.objects, before_.objects + 1);
          EXPECT_EQ(now.domains, before_.domains);  // a stage-1 table adds no domain to the IOAS
          EXPECT_EQ(now.pinned, before_.pinned);
          if (NestedDomain* d = nested(out_)) {
            for (std::uint32_t i = 0; i < NestedDomain::kIotlbNum; ++i)
              EXPECT_EQ(d->iotlb(i), kTestIotlbDefault);
          }
          iommu_destroy dp{sizeof(dp), parent};
          EXPECT_EQ(call(IOMMU_DESTROY, &dp), EBUSY) << "the nested HWPT holds its parent";
        },
        0, alloc_errno);
    EXPECT_FALSE(r.hit_cap);
    EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
    EXPECT_TRUE(testing::has_site(r, "mock.alloc"));
    EXPECT_TRUE(testing::has_site(r, "objects.alloc"));
    ASSERT_FALSE(r.fired_sites.empty());
    EXPECT_EQ(r.fired_sites.back(), "mm.copy_to_user");
  }
}

// FAULT_ID_VALID: the fault object is looked up only after the HWPT was built (and, for a paging one,
// filled), and there is none: ENOENT, with everything undone, whichever step fails on the way.
TEST_F(HwptSweepTest, FaultIdValidIsEnoentAfterTheBuildAndUnwindsAtEveryFaultSite) {
  for (bool nest : {false, true}) {
    SCOPED_TRACE(nest ? "nested" : "paging");
    std::uint32_t parent = 0;
    SweepResult r = testing::sweep_checked(
        [&] {
          reset();
          if (nest) {
            ASSERT_EQ(hwpt_alloc(kHwptAllocNestParent, ioas_, HwptData::kNone, &parent), 0);
          }
          snapshot();
        },
        [&] {
          return nest ? hwpt_alloc(kHwptFaultIdValid, parent, HwptData::kDefault, &out_, kNoSuchId)
                      : hwpt_alloc(kHwptFaultIdValid, ioas_, HwptData::kNone, &out_, kNoSuchId);
        },
        [&](const SweepRun& run) { expect_unchanged(run, state()); }, ENOENT, alloc_errno);
    EXPECT_FALSE(r.hit_cap);
    EXPECT_EQ(r.final_status.error(), ENOENT);
    // The build came first: its own sites fired before the missing fault object was noticed.
    EXPECT_TRUE(testing::has_site(r, nest ? "mock.alloc" : "pages.pin"));
    EXPECT_TRUE(testing::has_site(r, "objects.alloc"));
    EXPECT_FALSE(testing::has_site(r, "mm.copy_to_user")) << "no reply for a failed allocation";
  }
}

// IOMMU_GET_HW_INFO into a buffer larger than the mock's struct: the struct, the lookup, the mock's
// allocation, the data copy, the zeroing of the rest and the reply. It changes nothing in the iommufd; a
// failure before the reply leaves the caller's struct as it was.
TEST_F(HwptSweepTest, GetHwInfoFailsWithTheInjectedErrnoAtEveryFaultSite) {
  for (std::uint32_t flags : {0u, IOMMU_HW_INFO_FLAG_INPUT_TYPE}) {
    SCOPED_TRACE(flags);
    iommu_hw_info info{}, orig{};
    alignas(64) std::uint32_t data[16];  // within one page: the zeros take one copy
    SweepResult r = testing::sweep_checked(
        [&] {
          reset();
          snapshot();
          std::memset(data, 0xa5, sizeof(data));
          info = {};
          info.size = sizeof(info);
          info.flags = flags;
          info.dev_id = dev_;
          info.data_len = sizeof(data);
          info.data_uptr = reinterpret_cast<std::uint64_t>(data);
          info.data_type = flags ? kHwInfoTypeSelftest : 0;
          orig = info;
        },
        [&] { return call(IOMMU_GET_HW_INFO, &info); },
        [&](const SweepRun& run) {
          const State now = state();
          EXPECT_EQ(now, before_) << "run " << run.n << ", " << run.site;
          if (run.err != 0) {
            // The struct is written back last, in one piece: a failure anywhere leaves it as it was.
            EXPECT_EQ(std::memcmp(&info, &orig, sizeof(info)), 0) << "run " << run.n << ": struct written";
            return;
          }
          EXPECT_EQ(info.data_len, 8u);
          EXPECT_EQ(info.data_type, kHwInfoTypeSelftest);
          EXPECT_EQ(info.out_capabilities, kHwCapDirtyTracking | kHwCapPciAtsNotSupported);
          EXPECT_EQ(info.out_max_pasid_log2, 0u);
          EXPECT_EQ(data[0], 0u);
          EXPECT_EQ(data[1], kHwInfoSelftestRegval);
          for (std::size_t i = 2; i < std::size(data); ++i) EXPECT_EQ(data[i], 0u) << i;
        });
    EXPECT_FALSE(r.hit_cap);
    EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
    EXPECT_TRUE(testing::has_site(r, "objects.lookup"));
    EXPECT_TRUE(testing::has_site(r, "mock.alloc"));
    // The data, the zeros after it, the reply.
    EXPECT_EQ(std::count(r.fired_sites.begin(), r.fired_sites.end(), "mm.copy_to_user"), 3);
  }
}

// IOMMU_HWPT_INVALIDATE with a three-entry array on a nested HWPT. Entries are handled in order and the
// call stops at the first failure, so a failure part-way leaves the earlier entries invalidated and says
// how many in entry_num (the kernel's partial progress); nothing else changes.
TEST_F(HwptSweepTest, InvalidateStopsAtTheInjectedFailureAndReportsTheEntriesHandled) {
  const InvalidateEntry entries[3] = {{0, 1}, {0, 3}, {0, 0}};
  std::uint32_t parent = 0, hwpt = 0;
  iommu_hwpt_invalidate inv{};
  SweepResult r = testing::sweep_checked(
      [&] {
        reset();
        ASSERT_EQ(hwpt_alloc(kHwptAllocNestParent, ioas_, HwptData::kNone, &parent), 0);
        ASSERT_EQ(hwpt_alloc(0, parent, HwptData::kDefault, &hwpt), 0);
        snapshot();
        inv = {};
        inv.size = sizeof(inv);
        inv.hwpt_id = hwpt;
        inv.data_uptr = reinterpret_cast<std::uint64_t>(entries);
        inv.data_type = kHwptInvalidateDataSelftest;
        inv.entry_len = sizeof(InvalidateEntry);
        inv.entry_num = 3;
      },
      [&] { return call(IOMMU_HWPT_INVALIDATE, &inv); },
      [&](const SweepRun& run) {
        EXPECT_EQ(state(), before_) << "run " << run.n << ", " << run.site;
        // How far the call got, and the entry_num the caller then holds (3 where no reply was written).
        std::uint32_t handled = 3, reported = 3;
        if (run.site == "mm.copy_from_user" && run.ordinal == 1) {
          handled = 0;  // the struct itself: nothing done, nothing written back
        } else if (run.site == "objects.lookup") {
          handled = reported = 0;
        } else if (run.site == "mm.copy_from_user") {
          handled = reported = run.ordinal - 2;  // entry ordinal - 2 could not be read
        }
        EXPECT_EQ(inv.entry_num, reported) << "run " << run.n << ", " << run.site;
        NestedDomain* d = nested(hwpt);
        if (!d) return;
        std::uint32_t want[NestedDomain::kIotlbNum];
        std::fill(std::begin(want), std::end(want), kTestIotlbDefault);
        for (std::uint32_t i = 0; i < handled; ++i) want[entries[i].iotlb_id] = 0;
        for (std::uint32_t i = 0; i < NestedDomain::kIotlbNum; ++i)
          EXPECT_EQ(d->iotlb(i), want[i]) << "run " << run.n << ", " << run.site << ", iotlb " << i;
      });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  // The struct and each of the three entries.
  EXPECT_EQ(std::count(r.fired_sites.begin(), r.fired_sites.end(), "mm.copy_from_user"), 4);
  ASSERT_FALSE(r.fired_sites.empty());
  EXPECT_EQ(r.fired_sites.back(), "mm.copy_to_user");
}

}  // namespace
}  // namespace uiommufd::uapi
