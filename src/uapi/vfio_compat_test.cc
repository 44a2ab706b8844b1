// The VFIO container ioctls on the iommufd fd (vfio_compat.cc): return values, argsz rules, errnos and
// out-values as the kernel's vfio_compat.c, one behaviour per test.
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "testing/test_fd_host.h"

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/base/page.h"
#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/pages/pages.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {
namespace {

constexpr std::uint32_t kRW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
constexpr unsigned long VFIO_IOMMU_DIRTY_PAGES = io_cmd(kNrVfioIommuDirtyPages);
// Inside the mock aperture [1 << 24, (1 << 31) − 1].
constexpr std::uint64_t kIova = std::uint64_t{1} << 24;
constexpr std::size_t kBufPages = 64;
constexpr std::uint64_t kAllOnes = ~std::uint64_t{0};
// Sizes of the capability chain GET_INFO builds: the info struct, the DMA_AVAIL cap padded to 8 bytes,
// the IOVA_RANGE cap header, one range.
constexpr std::uint32_t kInfoSize = sizeof(vfio_iommu_type1_info);
constexpr std::uint32_t kDmaAvailPadded = 16;
constexpr std::uint32_t kIovaCapHeader = sizeof(vfio_iommu_type1_info_cap_iova_range);
constexpr std::uint32_t kRangeSize = sizeof(vfio_iova_range);

// Anonymous memory: `pages` pages, page aligned.
class Mapping {
 public:
  explicit Mapping(std::size_t pages, int prot = PROT_READ | PROT_WRITE) : bytes_(pages * kPageSize) {
    void* p = mmap(nullptr, bytes_, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    base_ = static_cast<unsigned char*>(p);
  }
  ~Mapping() { munmap(base_, bytes_); }
  unsigned char* at(std::size_t offset = 0) const { return base_ + offset; }
  std::uint64_t addr(std::size_t offset = 0) const { return reinterpret_cast<std::uint64_t>(base_ + offset); }

 private:
  std::size_t bytes_;
  unsigned char* base_;
};

class VfioCompatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pinned_before_ = Pages::total_pinned_pages();
    open_fd();
  }
  void TearDown() override {
    if (fd_ >= 0) host_.close(fd_);
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "pins leaked";
  }

  void open_fd(bool vfio_compat = false) {
    if (fd_ >= 0) host_.close(fd_);
    fd_ = host_.open_iommufd(vfio_compat);
    ASSERT_GE(fd_, 0);
  }
  Context& ctx() { return static_cast<IommufdFile&>(*host_.lookup(fd_)).context(); }
  std::uint32_t alloc_ioas() {
    iommu_ioas_alloc cmd{sizeof(cmd), 0, 0};
    EXPECT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, &cmd), 0);
    return cmd.out_ioas_id;
  }
  // A fresh IOAS made the compat IOAS, as IOMMU_VFIO_IOAS SET does.
  std::uint32_t set_compat_ioas() {
    compat_id_ = alloc_ioas();
    ctx().set_vfio_ioas_id(compat_id_);
    return compat_id_;
  }
  IoPagetable& compat_iopt() {
    auto ioas = ctx().get<Ioas>(compat_id_, ObjectType::kIoas);
    EXPECT_TRUE(ioas.ok());
    return (*ioas)->iopt();  // the table keeps the IOAS alive
  }
  // Binds a device and attaches it to the compat IOAS (a domain on it).
  void attach_device(Device::Kind kind) {
    std::uint32_t dev_id = *Device::create(ctx(), kind);
    auto dev = ctx().get<Device>(dev_id, ObjectType::kDevice);
    ASSERT_TRUE(dev.ok());
    ASSERT_TRUE((*dev)->attach(compat_id_).ok());
  }

  // ioctl(2): the return value, or −errno.
  int call(unsigned long cmd, const void* arg) {
    int r = host_.ioctl(fd_, cmd, arg);
    return r < 0 ? -errno : r;
  }
  int call_value(unsigned long cmd, unsigned long value) {
    return call(cmd, reinterpret_cast<const void*>(static_cast<std::uintptr_t>(value)));
  }
  int map_dma(std::uint64_t vaddr, std::uint64_t iova, std::uint64_t size, std::uint32_t flags = kRW) {
    vfio_iommu_type1_dma_map map{sizeof(map), flags, vaddr, iova, size};
    return call(VFIO_IOMMU_MAP_DMA, &map);
  }
  // Returns the ioctl's result; *size_out gets the size field afterwards.
  int unmap_dma(std::uint64_t iova, std::uint64_t size, std::uint64_t* size_out = nullptr,
                std::uint32_t flags = 0) {
    vfio_iommu_type1_dma_unmap unmap{sizeof(unmap), flags, iova, size};
    int r = call(VFIO_IOMMU_UNMAP_DMA, &unmap);
    if (size_out) *size_out = unmap.size;
    return r;
  }

  testing::TestFdHost host_;
  int fd_ = -1;
  std::uint32_t compat_id_ = 0;
  std::uint64_t pinned_before_ = 0;
  Mapping buf_{kBufPages};  // outlives the fd: pins are dropped at close
};

// ---- GET_API_VERSION, CHECK_EXTENSION ----

TEST_F(VfioCompatTest, GetApiVersionReturnsVfioApiVersionWithOrWithoutCompatIoas) {
  EXPECT_EQ(call(VFIO_GET_API_VERSION, nullptr), VFIO_API_VERSION);
  set_compat_ioas();
  EXPECT_EQ(call(VFIO_GET_API_VERSION, nullptr), VFIO_API_VERSION);
}

TEST_F(VfioCompatTest, CheckExtensionType1Type1v2AndUnmapAllAreOneEvenWithoutCompatIoas) {
  EXPECT_EQ(call_value(VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU), 1);
  EXPECT_EQ(call_value(VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 1);
  EXPECT_EQ(call_value(VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL), 1);
}

TEST_F(VfioCompatTest, CheckExtensionNoIommuNestingUpdateVaddrAndUnknownAreZero) {
  set_compat_ioas();
  for (unsigned long ext : std::vector<unsigned long>{VFIO_NOIOMMU_IOMMU, VFIO_TYPE1_NESTING_IOMMU,
                                                      VFIO_UPDATE_VADDR, 0, 2, 5, 7, 11, 12345, ~0ul})
    EXPECT_EQ(call_value(VFIO_CHECK_EXTENSION, ext), 0) << ext;
}

TEST_F(VfioCompatTest, CheckExtensionDmaCcIommuIsOneWhenEveryHwptEnforcesCoherency) {
  set_compat_ioas();
  EXPECT_EQ(call_value(VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU), 1);
  attach_device(Device::Kind::kSoftware);
  EXPECT_EQ(call_value(VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU), 1);
}

// The kernel's mock IOMMU does not report IOMMU_CAP_ENFORCE_CACHE_COHERENCY, so its HWPTs do not enforce
// it: one of them on the compat IOAS makes the answer 0, whatever else is there.
TEST_F(VfioCompatTest, CheckExtensionDmaCcIommuIsZeroWithAMockDomainHwpt) {
  set_compat_ioas();
  attach_device(Device::Kind::kSoftware);
  attach_device(Device::Kind::kMock);
  EXPECT_EQ(call_value(VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU), 0);
}

TEST_F(VfioCompatTest, CheckExtensionDmaCcIommuWithoutCompatIoasIsEnodev) {
  EXPECT_EQ(call_value(VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU), -ENODEV);
}

// ---- SET_IOMMU ----

TEST_F(VfioCompatTest, SetIommuOfAnotherTypeIsEinvalBeforeTheIoasCheck) {
  for (unsigned long type :
       std::vector<unsigned long>{0, 2, VFIO_DMA_CC_IOMMU, VFIO_TYPE1_NESTING_IOMMU, VFIO_NOIOMMU_IOMMU, 99})
    EXPECT_EQ(call_value(VFIO_SET_IOMMU, type), -EINVAL) << type;
  set_compat_ioas();
  EXPECT_EQ(call_value(VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU), -EINVAL);
}

TEST_F(VfioCompatTest, SetIommuWithoutCompatIoasIsEnodev) {
  EXPECT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), -ENODEV);
  EXPECT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), -ENODEV);
}

TEST_F(VfioCompatTest, SetIommuType1DisablesLargePages) {
  set_compat_ioas();
  ASSERT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), 0);
  EXPECT_FALSE(compat_iopt().large_pages());
  EXPECT_EQ(compat_iopt().iova_alignment(), kPageSize);
}

TEST_F(VfioCompatTest, SetIommuType1v2KeepsLargePages) {
  set_compat_ioas();
  ASSERT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), 0);
  EXPECT_TRUE(compat_iopt().large_pages());
  EXPECT_EQ(compat_iopt().iova_alignment(), 1u);
}

TEST_F(VfioCompatTest, SetIommuType1WithADomainAndAMappingIsEinval) {
  set_compat_ioas();
  attach_device(Device::Kind::kSoftware);
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 4 * kPageSize), 0);
  EXPECT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), -EINVAL);
  EXPECT_TRUE(compat_iopt().large_pages());
}

TEST_F(VfioCompatTest, SetIommuType1AgainAfterMappingSucceeds) {
  set_compat_ioas();
  attach_device(Device::Kind::kSoftware);
  ASSERT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), 0);
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 4 * kPageSize), 0);
  EXPECT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), 0);
  EXPECT_FALSE(compat_iopt().large_pages());
}

TEST_F(VfioCompatTest, SetIommuType1WithAnUnalignedMappingIsEaddrinuse) {
  set_compat_ioas();
  ASSERT_EQ(map_dma(buf_.addr(100), kIova + 100, 1000), 0);
  EXPECT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), -EADDRINUSE);
  EXPECT_TRUE(compat_iopt().large_pages());
  EXPECT_EQ(compat_iopt().iova_alignment(), 1u);
}

// ---- GET_INFO ----

// A GET_INFO buffer: the info struct at the start, the rest filled with a sentinel so that untouched
// bytes can be told apart.
struct InfoBuffer {
  explicit InfoBuffer(std::uint32_t argsz) : bytes(4096, 0xa5) {
    std::memcpy(bytes.data(), &argsz, sizeof(argsz));
  }
  vfio_iommu_type1_info info() const {
    vfio_iommu_type1_info i;
    std::memcpy(&i, bytes.data(), sizeof(i));
    return i;
  }
  template <typename T>
  T read(std::size_t offset) const {
    T t;
    std::memcpy(&t, bytes.data() + offset, sizeof(t));
    return t;
  }
  bool untouched(std::size_t from, std::size_t to) const {
    for (std::size_t i = from; i < to; ++i)
      if (bytes[i] != 0xa5) return false;
    return true;
  }
  std::vector<unsigned char> bytes;
};

// What a VFIO user finds by walking the chain from cap_offset.
struct ParsedCaps {
  bool has_dma_avail = false;
  std::uint32_t dma_avail = 0;
  bool has_iova_range = false;
  std::vector<vfio_iova_range> ranges;
  std::vector<std::uint16_t> order;
};

ParsedCaps walk_caps(const InfoBuffer& b) {
  ParsedCaps caps;
  vfio_iommu_type1_info info = b.info();
  EXPECT_TRUE(info.flags & VFIO_IOMMU_INFO_CAPS);
  std::uint32_t off = info.cap_offset;
  for (int guard = 0; off && guard < 16; ++guard) {
    EXPECT_LT(off + sizeof(vfio_info_cap_header), b.bytes.size());
    EXPECT_EQ(off % 8, 0u) << "capabilities are 8-byte aligned";
    auto hdr = b.read<vfio_info_cap_header>(off);
    EXPECT_EQ(hdr.version, 1u);
    caps.order.push_back(hdr.id);
    if (hdr.id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
      caps.has_dma_avail = true;
      caps.dma_avail = b.read<vfio_iommu_type1_info_dma_avail>(off).avail;
    } else if (hdr.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
      caps.has_iova_range = true;
      auto cap = b.read<vfio_iommu_type1_info_cap_iova_range>(off);
      for (std::uint32_t i = 0; i < cap.nr_iovas; ++i)
        caps.ranges.push_back(b.read<vfio_iova_range>(off + sizeof(cap) + i * sizeof(vfio_iova_range)));
    }
    off = hdr.next;
  }
  return caps;
}

TEST_F(VfioCompatTest, GetInfoArgszBelowTheEndOfPgsizesIsEinval) {
  set_compat_ioas();
  InfoBuffer b(15);
  EXPECT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), -EINVAL);
  EXPECT_TRUE(b.untouched(4, 4096));
}

TEST_F(VfioCompatTest, GetInfoWithoutCompatIoasIsEnodev) {
  InfoBuffer b(4096);
  EXPECT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), -ENODEV);
}

TEST_F(VfioCompatTest, GetInfoBadPointerIsEfault) {
  set_compat_ioas();
  EXPECT_EQ(call(VFIO_IOMMU_GET_INFO, nullptr), -EFAULT);
  Mapping none(1, PROT_NONE);
  EXPECT_EQ(call(VFIO_IOMMU_GET_INFO, none.at()), -EFAULT);
}

TEST_F(VfioCompatTest, GetInfoCapabilitiesBeyondTheCallersMemoryAreEfault) {
  set_compat_ioas();
  // The struct sits at the end of a readable page; argsz claims room that lies in a PROT_NONE page.
  Mapping two(2);
  ASSERT_EQ(mprotect(two.at(kPageSize), kPageSize, PROT_NONE), 0);
  unsigned char* at = two.at(kPageSize - kInfoSize);
  std::uint32_t argsz = 4096;
  std::memcpy(at, &argsz, sizeof(argsz));
  EXPECT_EQ(call(VFIO_IOMMU_GET_INFO, at), -EFAULT);
}

TEST_F(VfioCompatTest, GetInfoWithNoDomainReportsAllSizesFromPageSizeUp) {
  set_compat_ioas();
  InfoBuffer b(kInfoSize);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), 0);
  // All ones with the sub-page bits collapsed into PAGE_SIZE.
  EXPECT_EQ(b.info().iova_pgsizes, ~(kPageSize - 1));
  EXPECT_EQ(b.info().flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
}

TEST_F(VfioCompatTest, GetInfoPgsizesAreTheDomainsBitmap) {
  set_compat_ioas();
  attach_device(Device::Kind::kSoftware);
  InfoBuffer b(kInfoSize);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), 0);
  EXPECT_EQ(b.info().iova_pgsizes, (*PageTableDomain::create({}))->pgsize_bitmap());
}

TEST_F(VfioCompatTest, GetInfoSubPageSizesAreReportedAsPageSize) {
  set_compat_ioas();
  attach_device(Device::Kind::kMock);
  ASSERT_EQ((*MockDomain::create({}))->pgsize_bitmap() & (kPageSize - 1), kPageSize / 2);
  InfoBuffer b(kInfoSize);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), 0);
  // 2 KiB folded into 4 KiB, the larger sizes kept: Linux 7.2 reports 0x1ffffff000 here.
  EXPECT_EQ(b.info().iova_pgsizes, 0x1ffffff000u);
}

TEST_F(VfioCompatTest, GetInfoPgsizesAreTheAndOfTheDomainsAndAtLeastTheIovaAlignment) {
  set_compat_ioas();
  attach_device(Device::Kind::kSoftware);
  attach_device(Device::Kind::kMock);
  // The software table's 4 KiB, 2 MiB and 1 GiB AND the mock's 2 KiB to 64 GiB.
  const std::uint64_t both =
      (*PageTableDomain::create({}))->pgsize_bitmap() & (*MockDomain::create({}))->pgsize_bitmap();
  ASSERT_EQ(both, kPageSize | (std::uint64_t{1} << 21) | (std::uint64_t{1} << 30));
  ASSERT_EQ(compat_iopt().iova_alignment(), kPageSize);
  InfoBuffer b(kInfoSize);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), 0);
  EXPECT_EQ(b.info().iova_pgsizes, both);
}

TEST_F(VfioCompatTest, GetInfoCapabilityChainIsDmaAvailThenIovaRange) {
  set_compat_ioas();
  InfoBuffer b(4096);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), 0);
  vfio_iommu_type1_info info = b.info();
  EXPECT_EQ(info.argsz, kInfoSize + kDmaAvailPadded + kIovaCapHeader + kRangeSize);
  EXPECT_EQ(info.cap_offset, kInfoSize);
  ParsedCaps caps = walk_caps(b);
  EXPECT_EQ(caps.order, (std::vector<std::uint16_t>{VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
                                                    VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE}));
  EXPECT_EQ(caps.dma_avail, 0xffffffffu);
  ASSERT_EQ(caps.ranges.size(), 1u);
  EXPECT_EQ(caps.ranges[0].start, 0u);
  EXPECT_EQ(caps.ranges[0].end, kAllOnes);
  // The last capability ends the chain.
  EXPECT_EQ(b.read<vfio_info_cap_header>(kInfoSize + kDmaAvailPadded).next, 0u);
  EXPECT_TRUE(b.untouched(info.argsz, 4096));
}

TEST_F(VfioCompatTest, GetInfoIovaRangesAreTheHolesOfTheReservedRanges) {
  set_compat_ioas();
  attach_device(Device::Kind::kMock);  // reserves all but the mock aperture
  ASSERT_TRUE(compat_iopt().add_reserved({0x2000000, 0x2ffffff}, nullptr).ok());
  InfoBuffer b(4096);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), 0);
  ParsedCaps caps = walk_caps(b);
  ASSERT_EQ(caps.ranges.size(), 2u);
  EXPECT_EQ(caps.ranges[0].start, kIova);
  EXPECT_EQ(caps.ranges[0].end, 0x1ffffffu);
  EXPECT_EQ(caps.ranges[1].start, 0x3000000u);
  EXPECT_EQ(caps.ranges[1].end, (std::uint64_t{1} << 31) - 1);
  EXPECT_EQ(b.info().argsz, kInfoSize + kDmaAvailPadded + kIovaCapHeader + 2 * kRangeSize);
  // Mappings do not change the ranges.
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 4 * kPageSize), 0);
  InfoBuffer again(4096);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, again.bytes.data()), 0);
  EXPECT_EQ(walk_caps(again).ranges.size(), 2u);
}

TEST_F(VfioCompatTest, GetInfoArgszOfTheBareStructReportsTheFullSizeAndNoCaps) {
  set_compat_ioas();
  InfoBuffer b(kInfoSize);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), 0);
  vfio_iommu_type1_info info = b.info();
  EXPECT_EQ(info.argsz, kInfoSize + kDmaAvailPadded + kIovaCapHeader + kRangeSize);
  EXPECT_EQ(info.cap_offset, 0u);
  EXPECT_EQ(info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
  EXPECT_TRUE(b.untouched(kInfoSize, 4096));
}

TEST_F(VfioCompatTest, GetInfoArgszBelowTheStructWritesOnlyArgszBytes) {
  set_compat_ioas();
  InfoBuffer b(16);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), 0);
  EXPECT_EQ(b.info().argsz, kInfoSize + kDmaAvailPadded + kIovaCapHeader + kRangeSize);
  EXPECT_EQ(b.info().iova_pgsizes, ~(kPageSize - 1));
  EXPECT_TRUE(b.untouched(16, 4096)) << "cap_offset and pad lie beyond argsz";
}

TEST_F(VfioCompatTest, GetInfoRoomForTheFirstCapWritesAndLinksItButSetsNoCapOffset) {
  set_compat_ioas();
  // Room for DMA_AVAIL only: it is written, and its `next` already names where IOVA_RANGE would go.
  InfoBuffer b(kInfoSize + kDmaAvailPadded);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), 0);
  EXPECT_EQ(b.info().cap_offset, 0u);
  EXPECT_EQ(b.info().argsz, kInfoSize + kDmaAvailPadded + kIovaCapHeader + kRangeSize);
  auto dma = b.read<vfio_iommu_type1_info_dma_avail>(kInfoSize);
  EXPECT_EQ(dma.header.id, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
  EXPECT_EQ(dma.header.next, kInfoSize + kDmaAvailPadded);
  EXPECT_EQ(dma.avail, 0xffffffffu);
  EXPECT_TRUE(b.untouched(kInfoSize + sizeof(dma), 4096));
}

TEST_F(VfioCompatTest, GetInfoRoomForPartOfTheRangeListWritesTheRangesThatFitButNoHeader) {
  set_compat_ioas();
  ASSERT_TRUE(compat_iopt().add_reserved({0x2000000, 0x2ffffff}, nullptr).ok());  // two holes
  std::uint32_t iova_cap = kInfoSize + kDmaAvailPadded;
  InfoBuffer b(iova_cap + kIovaCapHeader + kRangeSize);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), 0);
  EXPECT_EQ(b.info().cap_offset, 0u);
  EXPECT_EQ(b.info().argsz, iova_cap + kIovaCapHeader + 2 * kRangeSize);
  EXPECT_TRUE(b.untouched(iova_cap, iova_cap + kIovaCapHeader)) << "the header is written only when all fits";
  auto first = b.read<vfio_iova_range>(iova_cap + kIovaCapHeader);
  EXPECT_EQ(first.start, 0u);
  EXPECT_EQ(first.end, 0x1ffffffu);
  EXPECT_TRUE(b.untouched(iova_cap + kIovaCapHeader + kRangeSize, 4096));
  EXPECT_EQ(b.read<vfio_info_cap_header>(kInfoSize).next, iova_cap);
}

TEST_F(VfioCompatTest, GetInfoLargerArgszLeavesTheTailAlone) {
  set_compat_ioas();
  InfoBuffer b(1000);
  ASSERT_EQ(call(VFIO_IOMMU_GET_INFO, b.bytes.data()), 0);
  EXPECT_EQ(b.info().cap_offset, kInfoSize);
  EXPECT_TRUE(b.untouched(b.info().argsz, 4096));
  EXPECT_EQ(b.info().pad, 0u);
}

// ---- MAP_DMA ----

TEST_F(VfioCompatTest, MapDmaMapsAtTheFixedIova) {
  set_compat_ioas();
  attach_device(Device::Kind::kMock);
  ASSERT_EQ(map_dma(buf_.addr(), kIova + 8 * kPageSize, 4 * kPageSize), 0);
  auto areas = compat_iopt().areas();
  ASSERT_EQ(areas.size(), 1u);
  EXPECT_EQ(areas[0].iova, (Interval{kIova + 8 * kPageSize, kIova + 12 * kPageSize - 1}));
  EXPECT_EQ(areas[0].prot, kIommuRead | kIommuWrite);
  EXPECT_EQ(compat_iopt().check_invariants(), "");
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 4);
}

TEST_F(VfioCompatTest, MapDmaReadOnlyMapsWithoutWritePermission) {
  set_compat_ioas();
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 4 * kPageSize, VFIO_DMA_MAP_FLAG_READ), 0);
  auto areas = compat_iopt().areas();
  ASSERT_EQ(areas.size(), 1u);
  EXPECT_EQ(areas[0].prot, kIommuRead);
  EXPECT_FALSE(areas[0].pages->writable());
}

TEST_F(VfioCompatTest, MapDmaWithNeitherReadNorWriteIsAccepted) {
  set_compat_ioas();
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 4 * kPageSize, 0), 0);
  auto areas = compat_iopt().areas();
  ASSERT_EQ(areas.size(), 1u);
  EXPECT_EQ(areas[0].prot, 0);
}

TEST_F(VfioCompatTest, MapDmaArgszBelowTheEndOfSizeIsEinval) {
  set_compat_ioas();
  vfio_iommu_type1_dma_map map{31, kRW, buf_.addr(), kIova, kPageSize};
  EXPECT_EQ(call(VFIO_IOMMU_MAP_DMA, &map), -EINVAL);
  EXPECT_EQ(compat_iopt().area_count(), 0u);
}

TEST_F(VfioCompatTest, MapDmaLargerArgszIsAccepted) {
  set_compat_ioas();
  struct {
    vfio_iommu_type1_dma_map map;
    std::uint64_t tail;
  } big{{sizeof(big), kRW, buf_.addr(), kIova, kPageSize}, ~0ull};
  EXPECT_EQ(call(VFIO_IOMMU_MAP_DMA, &big), 0);
}

TEST_F(VfioCompatTest, MapDmaUnknownFlagsAndVaddrAreEinval) {
  set_compat_ioas();
  EXPECT_EQ(map_dma(buf_.addr(), kIova, kPageSize, kRW | VFIO_DMA_MAP_FLAG_VADDR), -EINVAL);
  EXPECT_EQ(map_dma(buf_.addr(), kIova, kPageSize, kRW | (1u << 8)), -EINVAL);
  EXPECT_EQ(compat_iopt().area_count(), 0u);
}

TEST_F(VfioCompatTest, MapDmaWithoutCompatIoasIsEnodevAfterTheFlagCheck) {
  EXPECT_EQ(map_dma(buf_.addr(), kIova, kPageSize), -ENODEV);
  EXPECT_EQ(map_dma(buf_.addr(), kIova, kPageSize, VFIO_DMA_MAP_FLAG_VADDR), -EINVAL);
}

TEST_F(VfioCompatTest, MapDmaOverAnExistingMappingIsEexist) {
  set_compat_ioas();
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 4 * kPageSize), 0);
  EXPECT_EQ(map_dma(buf_.addr(), kIova + 3 * kPageSize, 4 * kPageSize), -EEXIST);
  EXPECT_EQ(compat_iopt().area_count(), 1u);
}

TEST_F(VfioCompatTest, MapDmaOfSizeZeroIsEinval) {
  set_compat_ioas();
  EXPECT_EQ(map_dma(buf_.addr(), kIova, 0), -EINVAL);
}

TEST_F(VfioCompatTest, MapDmaThatWrapsIsEoverflow) {
  set_compat_ioas();
  EXPECT_EQ(map_dma(buf_.addr(), kAllOnes - kPageSize + 1, 2 * kPageSize), -EOVERFLOW);
  EXPECT_EQ(map_dma(kAllOnes - kPageSize + 1, kIova, 2 * kPageSize), -EOVERFLOW);
}

TEST_F(VfioCompatTest, MapDmaIntoAReservedRangeIsEinval) {
  set_compat_ioas();
  attach_device(Device::Kind::kMock);
  EXPECT_EQ(map_dma(buf_.addr(), 0x1000, kPageSize), -EINVAL);
}

TEST_F(VfioCompatTest, MapDmaBadPointersAreEfaultAndLeaveNothing) {
  set_compat_ioas();
  EXPECT_EQ(call(VFIO_IOMMU_MAP_DMA, nullptr), -EFAULT);
  // Memory that cannot be pinned fails when a domain needs the pages.
  attach_device(Device::Kind::kSoftware);
  Mapping none(4, PROT_NONE);
  EXPECT_EQ(map_dma(none.addr(), kIova, 4 * kPageSize), -EFAULT);
  EXPECT_EQ(compat_iopt().area_count(), 0u);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
}

TEST_F(VfioCompatTest, MapDmaChargesInTheContextsAccountingMode) {
  for (bool vfio_compat : {false, true}) {
    open_fd(vfio_compat);
    set_compat_ioas();
    ASSERT_EQ(map_dma(buf_.addr(), kIova, kPageSize), 0);
    auto areas = compat_iopt().areas();
    ASSERT_EQ(areas.size(), 1u);
    EXPECT_EQ(areas[0].pages->account_mode(), default_account_mode(vfio_compat)) << vfio_compat;
  }
}

// ---- UNMAP_DMA ----

TEST_F(VfioCompatTest, UnmapDmaOfWholeMappingsWritesTheBytesUnmapped) {
  set_compat_ioas();
  attach_device(Device::Kind::kSoftware);
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 4 * kPageSize), 0);
  ASSERT_EQ(map_dma(buf_.addr(4 * kPageSize), kIova + 4 * kPageSize, 2 * kPageSize), 0);
  std::uint64_t size = 0;
  ASSERT_EQ(unmap_dma(kIova, 8 * kPageSize, &size), 0);
  EXPECT_EQ(size, 6 * kPageSize);
  EXPECT_EQ(compat_iopt().area_count(), 0u);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
}

TEST_F(VfioCompatTest, UnmapDmaOfAnEmptyRangeSucceedsWithSizeZero) {
  set_compat_ioas();
  std::uint64_t size = 1;
  EXPECT_EQ(unmap_dma(kIova, 4 * kPageSize, &size), 0);
  EXPECT_EQ(size, 0u);
}

TEST_F(VfioCompatTest, UnmapDmaOfSizeZeroIsEinvalWithSizeZero) {
  set_compat_ioas();
  ASSERT_EQ(map_dma(buf_.addr(), kIova, kPageSize), 0);
  std::uint64_t size = 1;
  EXPECT_EQ(unmap_dma(kIova, 0, &size), -EINVAL);
  EXPECT_EQ(size, 0u);
}

TEST_F(VfioCompatTest, UnmapDmaThatWrapsIsEoverflow) {
  set_compat_ioas();
  std::uint64_t size = 1;
  EXPECT_EQ(unmap_dma(kAllOnes - kPageSize + 1, 2 * kPageSize, &size), -EOVERFLOW);
  EXPECT_EQ(size, 0u);
}

TEST_F(VfioCompatTest, UnmapDmaOfPartOfAMappingWithLargePagesIsEnoent) {
  set_compat_ioas();
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 4 * kPageSize), 0);
  std::uint64_t size = 1;
  EXPECT_EQ(unmap_dma(kIova, 2 * kPageSize, &size), -ENOENT);
  EXPECT_EQ(size, 0u);
  EXPECT_EQ(compat_iopt().area_count(), 1u);
}

TEST_F(VfioCompatTest, UnmapDmaFailingPartWayWritesTheBytesAlreadyUnmapped) {
  set_compat_ioas();
  ASSERT_EQ(map_dma(buf_.addr(), kIova, kPageSize), 0);
  ASSERT_EQ(map_dma(buf_.addr(), kIova + 4 * kPageSize, 4 * kPageSize), 0);
  std::uint64_t size = 0;
  EXPECT_EQ(unmap_dma(kIova, 6 * kPageSize, &size), -ENOENT);
  EXPECT_EQ(size, kPageSize);
  EXPECT_EQ(compat_iopt().area_count(), 1u);
}

TEST_F(VfioCompatTest, UnmapDmaAllUnmapsEverything) {
  set_compat_ioas();
  attach_device(Device::Kind::kMock);
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 4 * kPageSize), 0);
  ASSERT_EQ(map_dma(buf_.addr(), kIova + 0x100000, 8 * kPageSize), 0);
  std::uint64_t size = 0;
  ASSERT_EQ(unmap_dma(0, 0, &size, VFIO_DMA_UNMAP_FLAG_ALL), 0);
  EXPECT_EQ(size, 12 * kPageSize);
  EXPECT_EQ(compat_iopt().area_count(), 0u);
  EXPECT_EQ(unmap_dma(0, 0, &size, VFIO_DMA_UNMAP_FLAG_ALL), 0);
  EXPECT_EQ(size, 0u);
}

TEST_F(VfioCompatTest, UnmapDmaAllWithAnIovaOrSizeIsEinvalAndWritesNothing) {
  set_compat_ioas();
  ASSERT_EQ(map_dma(buf_.addr(), kIova, kPageSize), 0);
  std::uint64_t size = 0;
  EXPECT_EQ(unmap_dma(kIova, 0, &size, VFIO_DMA_UNMAP_FLAG_ALL), -EINVAL);
  EXPECT_EQ(size, 0u);
  EXPECT_EQ(unmap_dma(0, kPageSize, &size, VFIO_DMA_UNMAP_FLAG_ALL), -EINVAL);
  EXPECT_EQ(size, kPageSize) << "size is left as the caller wrote it";
  EXPECT_EQ(compat_iopt().area_count(), 1u);
}

TEST_F(VfioCompatTest, UnmapDmaDirtyBitmapVaddrAndUnknownFlagsAreEinval) {
  set_compat_ioas();
  ASSERT_EQ(map_dma(buf_.addr(), kIova, kPageSize), 0);
  for (std::uint32_t flags :
       {VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_DMA_UNMAP_FLAG_VADDR, VFIO_DMA_UNMAP_FLAG_ALL | (1u << 5)})
    EXPECT_EQ(unmap_dma(kIova, kPageSize, nullptr, flags), -EINVAL) << flags;
  EXPECT_EQ(compat_iopt().area_count(), 1u);
}

TEST_F(VfioCompatTest, UnmapDmaArgszBelowTheEndOfSizeIsEinval) {
  set_compat_ioas();
  ASSERT_EQ(map_dma(buf_.addr(), kIova, kPageSize), 0);
  vfio_iommu_type1_dma_unmap unmap{23, 0, kIova, kPageSize};
  EXPECT_EQ(call(VFIO_IOMMU_UNMAP_DMA, &unmap), -EINVAL);
  EXPECT_EQ(compat_iopt().area_count(), 1u);
}

TEST_F(VfioCompatTest, UnmapDmaWithoutCompatIoasIsEnodevAfterTheFlagCheck) {
  EXPECT_EQ(unmap_dma(kIova, kPageSize), -ENODEV);
  EXPECT_EQ(unmap_dma(kIova, kPageSize, nullptr, VFIO_DMA_UNMAP_FLAG_VADDR), -EINVAL);
}

TEST_F(VfioCompatTest, UnmapDmaBadPointerIsEfault) {
  set_compat_ioas();
  EXPECT_EQ(call(VFIO_IOMMU_UNMAP_DMA, nullptr), -EFAULT);
  Mapping none(1, PROT_NONE);
  EXPECT_EQ(call(VFIO_IOMMU_UNMAP_DMA, none.at()), -EFAULT);
}

TEST_F(VfioCompatTest, UnmapDmaWhoseSizeCannotBeWrittenBackIsEfaultButUnmaps) {
  set_compat_ioas();
  ASSERT_EQ(map_dma(buf_.addr(), kIova, kPageSize), 0);
  Mapping page(1);
  vfio_iommu_type1_dma_unmap unmap{sizeof(unmap), 0, kIova, kPageSize};
  std::memcpy(page.at(), &unmap, sizeof(unmap));
  ASSERT_EQ(mprotect(page.at(), kPageSize, PROT_READ), 0);
  EXPECT_EQ(call(VFIO_IOMMU_UNMAP_DMA, page.at()), -EFAULT);
  EXPECT_EQ(compat_iopt().area_count(), 0u);
}

// With TYPE1 (large pages off) part of a mapping can be unmapped: the areas are cut at both ends first.
TEST_F(VfioCompatTest, UnmapDmaWithType1UnmapsAPageAlignedPartOfAMapping) {
  set_compat_ioas();
  attach_device(Device::Kind::kSoftware);
  ASSERT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), 0);
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 8 * kPageSize), 0);
  std::uint64_t size = 0;
  ASSERT_EQ(unmap_dma(kIova + 3 * kPageSize, 2 * kPageSize, &size), 0);
  EXPECT_EQ(size, 2 * kPageSize);
  auto areas = compat_iopt().areas();
  ASSERT_EQ(areas.size(), 2u);
  EXPECT_EQ(areas[0].iova, (Interval{kIova, kIova + 3 * kPageSize - 1}));
  EXPECT_EQ(areas[1].iova, (Interval{kIova + 5 * kPageSize, kIova + 8 * kPageSize - 1}));
  EXPECT_EQ(compat_iopt().check_invariants(), "");
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + 6);
  // The halves unmap on their own too, and the rest goes with them.
  ASSERT_EQ(unmap_dma(kIova + kPageSize, kPageSize, &size), 0);
  ASSERT_EQ(unmap_dma(kIova, 8 * kPageSize, &size), 0);
  EXPECT_EQ(size, 5 * kPageSize);
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_);
}

TEST_F(VfioCompatTest, UnmapDmaWithType1AtIovaZeroCutsOnlyTheEnd) {
  set_compat_ioas();
  ASSERT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), 0);
  ASSERT_EQ(map_dma(buf_.addr(), 0, 4 * kPageSize), 0);
  std::uint64_t size = 0;
  ASSERT_EQ(unmap_dma(0, kPageSize, &size), 0);
  EXPECT_EQ(size, kPageSize);
  auto areas = compat_iopt().areas();
  ASSERT_EQ(areas.size(), 1u);
  EXPECT_EQ(areas[0].iova, (Interval{kPageSize, 4 * kPageSize - 1}));
}

TEST_F(VfioCompatTest, UnmapDmaWithType1OfAnUnalignedPartIsEinvalAndWritesNothing) {
  set_compat_ioas();
  ASSERT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), 0);
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 4 * kPageSize), 0);
  std::uint64_t size = 0;
  EXPECT_EQ(unmap_dma(kIova, kPageSize + 100, &size), -EINVAL);
  EXPECT_EQ(size, kPageSize + 100) << "a refused cut writes nothing back";
  EXPECT_EQ(compat_iopt().area_count(), 1u);
}

TEST_F(VfioCompatTest, UnmapDmaWithType1v2KeepsWholeMappingSemantics) {
  set_compat_ioas();
  ASSERT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), 0);
  ASSERT_EQ(map_dma(buf_.addr(), kIova, 4 * kPageSize), 0);
  EXPECT_EQ(unmap_dma(kIova + kPageSize, kPageSize), -ENOENT);
  EXPECT_EQ(compat_iopt().area_count(), 1u);
}

// ---- everything else ----

TEST_F(VfioCompatTest, DirtyPagesAndUnknownCommandsAreEnotty) {
  set_compat_ioas();
  std::uint64_t scratch[8] = {64};
  for (unsigned long cmd : {VFIO_IOMMU_DIRTY_PAGES, io_cmd(0), io_cmd(103), io_cmd(0x7f), io_cmd(0xff),
                            // the right nr with other type or direction bits is another command
                            VFIO_GET_API_VERSION | (1ul << 30), (0x56ul << 8) | kNrVfioIommuMapDma})
    EXPECT_EQ(call(cmd, scratch), -ENOTTY) << std::hex << cmd;
}

// ---- fault injection ----

// Every fault site MAP_DMA passes, failed in turn (with a domain, so that pinning and accounting run):
// each failure leaves no area, pin or charge.
TEST_F(VfioCompatTest, FaultSweepOverMapDmaLeavesNothingBehind) {
  auto setup = [&] {
    open_fd(true);
    set_compat_ioas();
    attach_device(Device::Kind::kSoftware);
  };
  auto op = [&]() -> Status {
    int r = map_dma(buf_.addr(), kIova, 16 * kPageSize);
    return r < 0 ? Status::error(-r) : Status();
  };
  auto after = [&](unsigned n, Status st) {
    EXPECT_EQ(compat_iopt().check_invariants(), "") << "fault " << n;
    EXPECT_EQ(compat_iopt().area_count(), st.ok() ? 1u : 0u) << "fault " << n << ": " << st.to_string();
    host_.close(fd_);
    fd_ = -1;
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "fault " << n;
    EXPECT_EQ(account_locked_pages(AccountMode::kMm), 0u) << "fault " << n;
    EXPECT_EQ(account_locked_pages(AccountMode::kUser), 0u) << "fault " << n;
  };
  SweepResult r = sweep_fail_nth(setup, op, after, 200);
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_GE(r.sites_failed, 3u);
}

// The same over a TYPE1 UNMAP_DMA of part of a mapping (cut, unmap, write-back): a failure may leave the
// mapping cut, but never half-unmapped, and nothing leaks.
TEST_F(VfioCompatTest, FaultSweepOverType1UnmapDmaLeavesNothingBehind) {
  auto setup = [&] {
    open_fd(true);
    set_compat_ioas();
    attach_device(Device::Kind::kSoftware);
    ASSERT_EQ(call_value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), 0);
    ASSERT_EQ(map_dma(buf_.addr(), kIova, 8 * kPageSize), 0);
  };
  auto op = [&]() -> Status {
    std::uint64_t size = 0;
    int r = unmap_dma(kIova + 2 * kPageSize, 4 * kPageSize, &size);
    return r < 0 ? Status::error(-r) : Status();
  };
  auto after = [&](unsigned n, Status st) {
    IoPagetable& iopt = compat_iopt();
    EXPECT_EQ(iopt.check_invariants(), "") << "fault " << n;
    std::uint64_t mapped = 0;
    for (const auto& a : iopt.areas()) mapped += a.iova.last - a.iova.start + 1;
    // The write-back comes after the unmap, so a failure there still removed the range.
    bool removed = st.ok() || std::string(last_injected_fault()) == "mm.copy_to_user";
    EXPECT_EQ(mapped, (removed ? 4 : 8) * kPageSize) << "fault " << n << ": " << st.to_string();
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_ + mapped / kPageSize) << "fault " << n;
    host_.close(fd_);
    fd_ = -1;
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "fault " << n;
  };
  SweepResult r = sweep_fail_nth(setup, op, after, 200);
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_GE(r.sites_failed, 4u);
}

}  // namespace
}  // namespace uiommufd::uapi
