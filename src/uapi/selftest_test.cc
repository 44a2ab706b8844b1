// IOMMU_TEST_CMD: both layouts, every op and errno, the access fd's lifetime, and fail-nth sweeps.
#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testing/sweep_checked.h"
#include "testing/test_fd_host.h"

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/base/page.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/objects/selftest_object.h"
#include "uiommufd/pages/pages.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::uapi {
namespace {

constexpr std::uint64_t kIova = MOCK_APERTURE_START;
constexpr std::uint32_t kMapRW =
    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

using testing::make_test_cmd;

class SelftestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pinned_before_ = Pages::total_pinned_pages();
    mem_ =
        static_cast<char*>(mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(mem_, MAP_FAILED);
    for (std::size_t i = 0; i < kLen; ++i) mem_[i] = static_cast<char>(i * 13);
    fd_ = host_.open_iommufd();
    ASSERT_GE(fd_, 0);
    ioas_ = ioas_alloc(fd_);
  }
  void TearDown() override {
    for (int fd : access_fds_) host_.close(fd);
    host_.close(fd_);
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "pins leaked";
    munmap(mem_, kLen);
  }

  int test(iommu_test_cmd& c, int fd = -1) { return host_.ioctl(fd < 0 ? fd_ : fd, IOMMU_TEST_CMD, &c); }
  // The errno of a failing call, 0 for success.
  int err(int rc) { return rc < 0 ? errno : 0; }
  int run(iommu_test_cmd c) { return err(test(c)); }

  std::uint32_t ioas_alloc(int fd) {
    iommu_ioas_alloc a{sizeof(a), 0, 0};
    EXPECT_EQ(host_.ioctl(fd, IOMMU_IOAS_ALLOC, &a), 0);
    return a.out_ioas_id;
  }
  int map(std::uint32_t ioas, std::uint64_t iova, std::uint64_t off, std::uint64_t len, int fd = -1) {
    iommu_ioas_map m{sizeof(m), kMapRW, ioas, 0, uptr(off), len, iova};
    return err(host_.ioctl(fd < 0 ? fd_ : fd, IOMMU_IOAS_MAP, &m));
  }
  int unmap(std::uint32_t ioas, std::uint64_t iova, std::uint64_t len) {
    iommu_ioas_unmap u{sizeof(u), ioas, iova, len};
    return err(host_.ioctl(fd_, IOMMU_IOAS_UNMAP, &u));
  }
  int destroy(std::uint32_t id) {
    iommu_destroy d{sizeof(d), id};
    return err(host_.ioctl(fd_, IOMMU_DESTROY, &d));
  }
  iommu_test_mock_domain mock_domain(std::uint32_t pt_id) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, pt_id);
    EXPECT_EQ(test(c), 0) << strerror(errno);
    return c.mock_domain;
  }
  int create_access(std::uint32_t ioas, std::uint32_t flags = MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_CREATE_ACCESS, ioas);
    c.create_access.flags = flags;
    EXPECT_EQ(test(c), 0) << strerror(errno);
    access_fds_.push_back(static_cast<int>(c.create_access.out_access_fd));
    return static_cast<int>(c.create_access.out_access_fd);
  }
  void close_access(int fd) {
    EXPECT_EQ(host_.close(fd), 0);
    std::erase(access_fds_, fd);
  }
  // ACCESS_PAGES; the errno, with the record id in *id.
  int access_pages(int afd, std::uint64_t iova, std::uint64_t len, std::uint64_t up,
                   std::uint32_t* id = nullptr, std::uint32_t flags = 0) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_ACCESS_PAGES, static_cast<std::uint32_t>(afd));
    c.access_pages.flags = flags;
    c.access_pages.iova = iova;
    c.access_pages.length = len;
    c.access_pages.uptr = up;
    int e = run_keep(c);
    if (id) *id = c.access_pages.out_access_pages_id;
    return e;
  }
  int run_keep(iommu_test_cmd& c) { return err(test(c)); }
  int access_rw(int afd, std::uint64_t iova, void* buf, std::uint64_t len, std::uint32_t flags) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_ACCESS_RW, static_cast<std::uint32_t>(afd));
    c.access_rw.iova = iova;
    c.access_rw.length = len;
    c.access_rw.uptr = reinterpret_cast<std::uint64_t>(buf);
    c.access_rw.flags = flags;
    return run(c);
  }
  int check_refs(std::uint64_t off, std::uint64_t len, std::uint32_t refs, int fd = -1) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MD_CHECK_REFS, 0);
    c.check_refs.uptr = uptr(off);
    c.check_refs.length = len;
    c.check_refs.refs = refs;
    return err(test(c, fd));
  }
  int check_map(std::uint32_t hwpt, std::uint64_t iova, std::uint64_t len, std::uint64_t up) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MD_CHECK_MAP, hwpt);
    c.check_map.iova = iova;
    c.check_map.length = len;
    c.check_map.uptr = up;
    return run(c);
  }
  std::uint64_t uptr(std::uint64_t off = 0) const { return reinterpret_cast<std::uint64_t>(mem_) + off; }

  static constexpr std::size_t kLen = 64 * kPageSize;
  testing::TestFdHost host_;
  int fd_ = -1;
  std::uint32_t ioas_ = 0;
  char* mem_ = nullptr;
  std::vector<int> access_fds_;
  std::uint64_t pinned_before_ = 0;
};

// ---- sizes and layouts ----

TEST_F(SelftestTest, SizeBelowTheV62MinimumIsEinval) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT, 0);
  c.memory_limit.limit = 65536;
  c.size = 51;
  EXPECT_EQ(run(c), EINVAL);
}

TEST_F(SelftestTest, V62SizeNeedsZeroBytesBeyond56) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT, 0);
  c.memory_limit.limit = 65536;
  c.size = 60;
  EXPECT_EQ(run(c), 0);
  reinterpret_cast<unsigned char*>(&c)[57] = 1;
  EXPECT_EQ(run(c), E2BIG);
}

TEST_F(SelftestTest, V62LayoutHasOnlyOpsOneToNine) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, 1);
  c.size = kTestCmdV62Size;
  EXPECT_EQ(run(c), EOPNOTSUPP);
  c.op = IOMMU_TEST_OP_ACCESS_REPLACE_IOAS;
  EXPECT_EQ(run(c), EOPNOTSUPP);
}

TEST_F(SelftestTest, NewestLayoutLargerThanKnownNeedsAZeroTail) {
  struct {
    iommu_test_cmd c;
    std::uint64_t tail;
  } big{make_test_cmd(IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT, 0), 0};
  big.c.size = sizeof(big);
  big.c.memory_limit.limit = 65536;
  EXPECT_EQ(host_.ioctl(fd_, IOMMU_TEST_CMD, &big), 0);
  big.tail = 1;
  EXPECT_EQ(err(host_.ioctl(fd_, IOMMU_TEST_CMD, &big)), E2BIG);
}

TEST_F(SelftestTest, UnknownOpIsEopnotsupp) { EXPECT_EQ(run(make_test_cmd(99, 0)), EOPNOTSUPP); }

TEST_F(SelftestTest, BadArgumentPointerIsEfault) {
  EXPECT_EQ(err(host_.ioctl(fd_, IOMMU_TEST_CMD, nullptr)), EFAULT);
}

// ---- ADD_RESERVED ----

TEST_F(SelftestTest, AddReservedKeepsMapsOutOfTheRange) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_ADD_RESERVED, ioas_);
  c.add_reserved.start = kIova;
  c.add_reserved.length = 4 * kPageSize;
  ASSERT_EQ(run(c), 0);
  EXPECT_EQ(map(ioas_, kIova, 0, kPageSize), EINVAL);  // a fixed IOVA in a reserved range
}

TEST_F(SelftestTest, AddReservedOverAnAreaIsEaddrinuse) {
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_ADD_RESERVED, ioas_);
  c.add_reserved.start = kIova + kPageSize;
  c.add_reserved.length = kPageSize;
  EXPECT_EQ(run(c), EADDRINUSE);
}

TEST_F(SelftestTest, AddReservedOnAnUnknownIoasIsEnoent) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_ADD_RESERVED, 77);
  c.add_reserved.length = kPageSize;
  EXPECT_EQ(run(c), ENOENT);
}

// ---- MOCK_DOMAIN ----

TEST_F(SelftestTest, MockDomainReturnsStdevThenIdevThenHwptIds) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  EXPECT_EQ(md.out_stdev_id, ioas_ + 1);
  EXPECT_EQ(md.out_idev_id, ioas_ + 2);
  EXPECT_EQ(md.out_hwpt_id, ioas_ + 3);
}

TEST_F(SelftestTest, MockDomainDeviceAndHwptAreHeldUntilTheStdevGoes) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  EXPECT_EQ(destroy(md.out_idev_id), EBUSY);
  EXPECT_EQ(destroy(md.out_hwpt_id), EBUSY);
  EXPECT_EQ(destroy(ioas_), EBUSY);
  ASSERT_EQ(destroy(md.out_stdev_id), 0);
  // The device is unbound and its automatic HWPT went with it.
  EXPECT_EQ(destroy(md.out_idev_id), ENOENT);
  EXPECT_EQ(destroy(md.out_hwpt_id), ENOENT);
  EXPECT_EQ(destroy(ioas_), 0);
}

TEST_F(SelftestTest, MockDomainsOnOneIoasShareItsAutomaticHwpt) {
  iommu_test_mock_domain a = mock_domain(ioas_);
  iommu_test_mock_domain b = mock_domain(ioas_);
  EXPECT_EQ(a.out_hwpt_id, b.out_hwpt_id);
}

TEST_F(SelftestTest, MockDomainOnAnUnknownIdIsEnoentAndLeavesNoObject) {
  EXPECT_EQ(run(make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, 99)), ENOENT);
  EXPECT_EQ(mock_domain(ioas_).out_stdev_id, ioas_ + 1);  // ids reused: nothing was left behind
}

TEST_F(SelftestTest, MockDomainOnAnIdThatIsNeitherAnIoasNorAnHwptIsEinvalAndLeavesNoObject) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  EXPECT_EQ(run(make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, md.out_idev_id)), EINVAL);
  EXPECT_EQ(run(make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, md.out_stdev_id)), EINVAL);
  EXPECT_EQ(mock_domain(ioas_).out_stdev_id, md.out_hwpt_id + 1);  // ids reused: nothing was left behind
}

TEST_F(SelftestTest, MockDomainWhoseReplyCannotBeWrittenLeavesNothing) {
  ASSERT_EQ(map(ioas_, kIova, 0, 8 * kPageSize), 0);
  void* page = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  *static_cast<iommu_test_cmd*>(page) = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, ioas_);
  ASSERT_EQ(mprotect(page, kPageSize, PROT_READ), 0);
  EXPECT_EQ(err(host_.ioctl(fd_, IOMMU_TEST_CMD, page)), EFAULT);
  munmap(page, kPageSize);
  EXPECT_EQ(check_refs(0, 8 * kPageSize, 0), 0);  // the domain's fill was undone
  EXPECT_EQ(mock_domain(ioas_).out_stdev_id, ioas_ + 1);
}

TEST_F(SelftestTest, MockDomainGivesTheIoasTheMockGeometry) {
  mock_domain(ioas_);
  EXPECT_EQ(map(ioas_, MOCK_APERTURE_START - kPageSize, 0, kPageSize), EINVAL);  // below the aperture
  EXPECT_EQ(map(ioas_, kIova, 0, kPageSize), 0);
}

TEST_F(SelftestTest, V62MockDomainReturnsDeviceAndHwptIdsWithTheV62Model) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, ioas_);
  c.size = kTestCmdV62Size;
  c.mock_domain.out_idev_id = 0xabcd;  // not an output in this layout
  ASSERT_EQ(test(c), 0) << strerror(errno);
  EXPECT_EQ(c.mock_domain.out_stdev_id, ioas_ + 1);
  EXPECT_EQ(c.mock_domain.out_hwpt_id, ioas_ + 2);
  EXPECT_EQ(c.mock_domain.out_idev_id, 0xabcdu);
}

TEST_F(SelftestTest, V62MockDomainHwptIsDestroyedSeparatelyAfterTheDevice) {
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, ioas_);
  c.size = kTestCmdV62Size;
  ASSERT_EQ(test(c), 0);
  const std::uint32_t dev = c.mock_domain.out_stdev_id, hwpt = c.mock_domain.out_hwpt_id;
  EXPECT_EQ(check_map(hwpt, kIova, 4 * kPageSize, uptr()), 0);
  EXPECT_EQ(destroy(hwpt), EBUSY);
  ASSERT_EQ(destroy(dev), 0);
  // The domain left the IOAS (and unpinned), the HWPT object is still there until destroyed.
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 0), 0);
  EXPECT_EQ(check_map(hwpt, kIova, 2048, uptr()), EINVAL);
  EXPECT_EQ(destroy(hwpt), 0);
  EXPECT_EQ(destroy(ioas_), 0);
}

TEST_F(SelftestTest, V62MockDomainOnAnHwptIdIsEnoent) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, md.out_hwpt_id);
  c.size = kTestCmdV62Size;
  EXPECT_EQ(run(c), ENOENT);
}

// ---- MOCK_DOMAIN_REPLACE ----

TEST_F(SelftestTest, MockDomainReplaceMovesTheDeviceAndReturnsTheNewHwpt) {
  const std::uint32_t other = ioas_alloc(fd_);
  iommu_test_mock_domain md = mock_domain(ioas_);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, md.out_stdev_id);
  c.mock_domain_replace.pt_id = other;
  ASSERT_EQ(test(c), 0) << strerror(errno);
  EXPECT_NE(c.mock_domain_replace.pt_id, md.out_hwpt_id);
  EXPECT_EQ(destroy(md.out_hwpt_id), ENOENT);  // the old automatic HWPT went with its last device
  EXPECT_EQ(destroy(ioas_), 0);
}

TEST_F(SelftestTest, MockDomainReplaceNeedsASelftestObject) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, md.out_idev_id);
  c.mock_domain_replace.pt_id = ioas_;
  EXPECT_EQ(run(c), ENOENT);
}

TEST_F(SelftestTest, MockDomainReplaceToAnUnknownIdIsEnoent) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, md.out_stdev_id);
  c.mock_domain_replace.pt_id = 99;
  EXPECT_EQ(run(c), ENOENT);
}

TEST_F(SelftestTest, MockDomainReplaceOfAV62DeviceIsEinval) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, ioas_);
  c.size = kTestCmdV62Size;
  ASSERT_EQ(test(c), 0);
  iommu_test_cmd r = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, c.mock_domain.out_stdev_id);
  r.mock_domain_replace.pt_id = ioas_;
  EXPECT_EQ(run(r), EINVAL);
}

// ---- MD_CHECK_MAP ----

TEST_F(SelftestTest, MdCheckMapAcceptsTheMappedUserRange) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  ASSERT_EQ(map(ioas_, kIova, 0, 8 * kPageSize), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, 8 * kPageSize, uptr()), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova + 2048, 2048, uptr(2048)), 0);
}

TEST_F(SelftestTest, MdCheckMapOfOtherMemoryOrAHoleIsEinval) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, kPageSize, uptr(kPageSize)), EINVAL);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova + 4 * kPageSize, kPageSize, uptr(4 * kPageSize)), EINVAL);
}

TEST_F(SelftestTest, MdCheckMapNeeds2KiBAlignment) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova + 1, 2048, uptr()), EINVAL);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, 100, uptr()), EINVAL);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, 2048, uptr(8)), EINVAL);
}

TEST_F(SelftestTest, MdCheckMapOfANonHwptIdIsEnoent) {
  EXPECT_EQ(check_map(ioas_, kIova, 2048, uptr()), ENOENT);
}

TEST_F(SelftestTest, MdCheckMapOfANonHwptIdIsEnoentBeforeTheAlignmentIsLookedAt) {
  EXPECT_EQ(check_map(ioas_, kIova + 1, 2048, uptr()), ENOENT);
}

// The kernel faults in and compares one page at a time: whichever problem comes first in the range wins.
TEST_F(SelftestTest, MdCheckMapReportsTheFirstProblemInTheRange) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  ASSERT_EQ(map(ioas_, kIova, 60 * kPageSize, 3 * kPageSize), 0);
  ASSERT_EQ(mprotect(mem_ + 63 * kPageSize, kPageSize, PROT_NONE), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova + kPageSize, 3 * kPageSize, uptr(60 * kPageSize)), EINVAL);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, 4 * kPageSize, uptr(60 * kPageSize)), EFAULT);
  ASSERT_EQ(mprotect(mem_ + 63 * kPageSize, kPageSize, PROT_READ | PROT_WRITE), 0);
}

// ---- MD_CHECK_REFS ----

TEST_F(SelftestTest, MdCheckRefsCountsADomainsPinOnce) {
  mock_domain(ioas_);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 0), 0);
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 1), 0);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 0), EIO);
  ASSERT_EQ(unmap(ioas_, kIova, 4 * kPageSize), 0);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 0), 0);
}

TEST_F(SelftestTest, MdCheckRefsCountsTwoMapsOfTheSameMemoryTwice) {
  const std::uint32_t other = ioas_alloc(fd_);
  mock_domain(ioas_);
  mock_domain(other);
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  ASSERT_EQ(map(other, kIova, 0, 4 * kPageSize), 0);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 2), 0);
}

TEST_F(SelftestTest, MdCheckRefsCountsACopyOnce) {
  const std::uint32_t other = ioas_alloc(fd_);
  mock_domain(ioas_);
  mock_domain(other);
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  iommu_ioas_copy cp{
      sizeof(cp), IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE, other, ioas_, 4 * kPageSize, kIova,
      kIova};
  ASSERT_EQ(host_.ioctl(fd_, IOMMU_IOAS_COPY, &cp), 0) << strerror(errno);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 1), 0);
}

TEST_F(SelftestTest, MdCheckRefsNeedsPageAlignment) {
  EXPECT_EQ(check_refs(100, kPageSize, 0), EINVAL);
  EXPECT_EQ(check_refs(0, 100, 0), EINVAL);
}

TEST_F(SelftestTest, MdCheckRefsReportsTheFirstProblemInTheRange) {
  mock_domain(ioas_);
  ASSERT_EQ(map(ioas_, kIova, 61 * kPageSize, 2 * kPageSize), 0);
  ASSERT_EQ(mprotect(mem_ + 63 * kPageSize, kPageSize, PROT_NONE), 0);
  EXPECT_EQ(check_refs(61 * kPageSize, 3 * kPageSize, 0), EIO);
  EXPECT_EQ(check_refs(61 * kPageSize, 3 * kPageSize, 1), EFAULT);
  ASSERT_EQ(mprotect(mem_ + 63 * kPageSize, kPageSize, PROT_READ | PROT_WRITE), 0);
}

TEST_F(SelftestTest, MdCheckRefsOfUnmappedMemoryIsEfault) {
  void* hole = mmap(nullptr, kPageSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(hole, MAP_FAILED);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MD_CHECK_REFS, 0);
  c.check_refs.uptr = reinterpret_cast<std::uint64_t>(hole);
  c.check_refs.length = kPageSize;
  EXPECT_EQ(run(c), EFAULT);
  munmap(hole, kPageSize);
}

// ---- page identity of file-backed memory (the kernel's mfd tests) ----

// A memfd with two shared mmaps of it, as the kernel selftest's mfd_buffer: MAP_FILE of the fd and MAP of
// either mmap reach the same pages, and the checks compare through the other mmap.
class SelftestFileTest : public SelftestTest {
 protected:
  void SetUp() override {
    SelftestTest::SetUp();
    mfd_ = memfd_create("selftest_test", MFD_CLOEXEC);
    ASSERT_GE(mfd_, 0);
    ASSERT_EQ(ftruncate(mfd_, kFileLen), 0);
    for (char*& m : mmaps_) {
      m = static_cast<char*>(mmap(nullptr, kFileLen, PROT_READ | PROT_WRITE, MAP_SHARED, mfd_, 0));
      ASSERT_NE(m, MAP_FAILED);
    }
  }
  void TearDown() override {
    SelftestTest::TearDown();
    for (char* m : mmaps_) munmap(m, kFileLen);
    close(mfd_);
  }
  int map_file(std::uint32_t ioas, std::uint64_t iova, std::uint64_t start, std::uint64_t len) {
    iommu_ioas_map_file m{sizeof(m), kMapRW, ioas, mfd_, start, len, iova};
    return err(host_.ioctl(fd_, IOMMU_IOAS_MAP_FILE, &m));
  }
  int map_va(std::uint32_t ioas, std::uint64_t iova, std::uint64_t va, std::uint64_t len) {
    iommu_ioas_map m{sizeof(m), kMapRW, ioas, 0, va, len, iova};
    return err(host_.ioctl(fd_, IOMMU_IOAS_MAP, &m));
  }
  int check_refs_at(std::uint64_t va, std::uint64_t len, std::uint32_t refs) {
    return check_refs(va - uptr(), len, refs);
  }
  std::uint64_t view(int i, std::uint64_t off = 0) const {
    return reinterpret_cast<std::uint64_t>(mmaps_[i]) + off;
  }

  static constexpr std::size_t kFileLen = 16 * kPageSize;
  int mfd_ = -1;
  char* mmaps_[2] = {};
};

TEST_F(SelftestFileTest, MdCheckMapOfAMapFileAcceptsAnMmapOfTheFile) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  ASSERT_EQ(map_file(ioas_, kIova, 0, 4 * kPageSize), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, 4 * kPageSize, view(0)), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova + kPageSize + 2048, 2048, view(1, kPageSize + 2048)), 0);
}

TEST_F(SelftestFileTest, MdCheckMapOfAnUnalignedMapFileAcceptsTheMatchingMmapOffset) {
  // As the kernel's all_aligns: MAP_FILE at a 2 KiB file offset, checked at the same offset of the mmap.
  iommu_test_mock_domain md = mock_domain(ioas_);
  ASSERT_EQ(map_file(ioas_, kIova + 2048, 3 * kPageSize + 2048, 3 * kPageSize), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova + 2048, 3 * kPageSize, view(0, 3 * kPageSize + 2048)), 0);
}

TEST_F(SelftestFileTest, MdCheckMapOfAMapFileRejectsAnotherFileOffsetOrPrivateMemory) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  ASSERT_EQ(map_file(ioas_, kIova, kPageSize, 2 * kPageSize), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, 2 * kPageSize, view(0)), EINVAL);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, kPageSize, uptr()), EINVAL);
}

TEST_F(SelftestFileTest, MdCheckMapOfAMapOfAnMmapAcceptsAnotherMmapOfTheFile) {
  iommu_test_mock_domain md = mock_domain(ioas_);
  ASSERT_EQ(map_va(ioas_, kIova, view(0), 4 * kPageSize), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, 4 * kPageSize, view(1)), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, 4 * kPageSize, view(0)), 0);
}

TEST_F(SelftestFileTest, MdCheckRefsCountsAMapFileThroughAnMmap) {
  mock_domain(ioas_);
  EXPECT_EQ(check_refs_at(view(0), kFileLen, 0), 0);
  ASSERT_EQ(map_file(ioas_, kIova, 2 * kPageSize, 4 * kPageSize), 0);
  EXPECT_EQ(check_refs_at(view(0, 2 * kPageSize), 4 * kPageSize, 1), 0);
  EXPECT_EQ(check_refs_at(view(1, 2 * kPageSize), 4 * kPageSize, 0), EIO);
  EXPECT_EQ(check_refs_at(view(1), 2 * kPageSize, 0), 0);
  ASSERT_EQ(unmap(ioas_, kIova, 4 * kPageSize), 0);
  EXPECT_EQ(check_refs_at(view(0), kFileLen, 0), 0);
}

TEST_F(SelftestFileTest, MdCheckRefsCountsAMapFileAndAMapOfItsMmapAsTwoPins) {
  mock_domain(ioas_);
  ASSERT_EQ(map_file(ioas_, kIova, 0, 2 * kPageSize), 0);
  ASSERT_EQ(map_va(ioas_, kIova + 4 * kPageSize, view(0), 2 * kPageSize), 0);
  EXPECT_EQ(check_refs_at(view(1), 2 * kPageSize, 2), 0);
  EXPECT_EQ(check_refs_at(view(0), 2 * kPageSize, 2), 0);
}

TEST_F(SelftestFileTest, AccessPagesOfAMapFileComparesWithAnMmapOfTheFile) {
  ASSERT_EQ(map_file(ioas_, kIova, 0, kFileLen), 0);
  const int afd = create_access(ioas_);
  std::uint32_t id = 0;
  EXPECT_EQ(access_pages(afd, kIova + kPageSize, 2 * kPageSize, view(0, kPageSize), &id), 0);
  EXPECT_EQ(check_refs_at(view(1, kPageSize), 2 * kPageSize, 1), 0);
  EXPECT_EQ(access_pages(afd, kIova, kPageSize, view(0, kPageSize)), EBADE);
  EXPECT_EQ(access_pages(afd, kIova, kPageSize, uptr()), EBADE);
}

TEST_F(SelftestFileTest, CopyOfAnAccessPinnedMapFileChecksThroughTheMmap) {
  // The kernel's user_copy with a file: pin in a domainless IOAS, COPY into one with a domain.
  const std::uint32_t src = ioas_alloc(fd_);
  ASSERT_EQ(map_file(src, kIova, 0, kFileLen), 0);
  const int afd = create_access(src);
  ASSERT_EQ(access_pages(afd, kIova, kFileLen, view(0)), 0);
  iommu_test_mock_domain md = mock_domain(ioas_);
  iommu_ioas_copy cp{sizeof(cp), kMapRW, ioas_, src, kFileLen, kIova, kIova};
  ASSERT_EQ(host_.ioctl(fd_, IOMMU_IOAS_COPY, &cp), 0) << strerror(errno);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, kFileLen, view(1)), 0);
  EXPECT_EQ(check_refs_at(view(1), kFileLen, 1), 0);
}

TEST_F(SelftestFileTest, AWritableMapOfAPrivateFileMappingPinsTheProcesssCopy) {
  // Kernel rule: a writable pin breaks copy-on-write, so the domain holds an anonymous page, not the
  // file's; the private VA reaches that copy and a shared mmap of the file does not.
  char* priv = static_cast<char*>(mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd_, 0));
  ASSERT_NE(priv, MAP_FAILED);
  const std::uint64_t pva = reinterpret_cast<std::uint64_t>(priv);
  iommu_test_mock_domain md = mock_domain(ioas_);
  ASSERT_EQ(map_va(ioas_, kIova, pva, kPageSize), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, kPageSize, pva), 0);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, kPageSize, view(0)), EINVAL);
  EXPECT_EQ(check_refs_at(pva, kPageSize, 1), 0);
  EXPECT_EQ(check_refs_at(view(0), kPageSize, 0), 0);
  ASSERT_EQ(unmap(ioas_, kIova, kPageSize), 0);
  munmap(priv, kPageSize);
}

TEST_F(SelftestFileTest, AReadOnlyMapOfAnUnwrittenPrivateFileMappingPinsTheFilesPage) {
  char* priv = static_cast<char*>(mmap(nullptr, kPageSize, PROT_READ, MAP_PRIVATE, mfd_, 0));
  ASSERT_NE(priv, MAP_FAILED);
  const std::uint64_t pva = reinterpret_cast<std::uint64_t>(priv);
  iommu_test_mock_domain md = mock_domain(ioas_);
  iommu_ioas_map m{sizeof(m), IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE, ioas_, 0, pva, kPageSize,
                   kIova};
  ASSERT_EQ(host_.ioctl(fd_, IOMMU_IOAS_MAP, &m), 0) << strerror(errno);
  EXPECT_EQ(check_map(md.out_hwpt_id, kIova, kPageSize, view(0)), 0);
  EXPECT_EQ(check_refs_at(view(1), kPageSize, 1), 0);
  ASSERT_EQ(unmap(ioas_, kIova, kPageSize), 0);
  munmap(priv, kPageSize);
}

// ---- CREATE_ACCESS ----

TEST_F(SelftestTest, CreateAccessReturnsARealFd) {
  const int afd = create_access(ioas_);
  EXPECT_GE(afd, 0);
  EXPECT_NE(afd, fd_);
  EXPECT_EQ(destroy(ioas_), EBUSY);  // the access holds its IOAS
}

TEST_F(SelftestTest, CreateAccessWithUnknownFlagsIsEopnotsupp) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_CREATE_ACCESS, ioas_);
  c.create_access.flags = 2;
  EXPECT_EQ(run(c), EOPNOTSUPP);
}

TEST_F(SelftestTest, CreateAccessOnAnUnknownIoasIsEnoentAndLeavesNothing) {
  EXPECT_EQ(run(make_test_cmd(IOMMU_TEST_OP_CREATE_ACCESS, 99)), ENOENT);
  EXPECT_EQ(destroy(ioas_), 0);
  EXPECT_EQ(ioas_alloc(fd_), ioas_);  // the access's id was released too
}

TEST_F(SelftestTest, CreateAccessWhoseReplyCannotBeWrittenTakesTheFdBack) {
  void* page = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_CREATE_ACCESS, ioas_);
  c.create_access.flags = MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES;
  *static_cast<iommu_test_cmd*>(page) = c;
  ASSERT_EQ(mprotect(page, kPageSize, PROT_READ), 0);
  EXPECT_EQ(err(host_.ioctl(fd_, IOMMU_TEST_CMD, page)), EFAULT);
  munmap(page, kPageSize);
  EXPECT_EQ(destroy(ioas_), 0);  // the access is gone
  const int afd = create_access(ioas_alloc(fd_));
  EXPECT_GE(afd, 0);
}

// ---- ACCESS_PAGES / DESTROY_ACCESS_PAGES ----

TEST_F(SelftestTest, AccessPagesPinsAndDestroyAccessPagesUnpins) {
  ASSERT_EQ(map(ioas_, kIova, 0, 8 * kPageSize), 0);
  const int afd = create_access(ioas_);
  std::uint32_t id = 99;
  ASSERT_EQ(access_pages(afd, kIova + kPageSize, 2 * kPageSize, uptr(kPageSize), &id), 0);
  EXPECT_EQ(id, 0u);
  EXPECT_EQ(check_refs(kPageSize, 2 * kPageSize, 1), 0);
  EXPECT_EQ(check_refs(0, kPageSize, 0), 0);
  iommu_test_cmd d = make_test_cmd(IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, static_cast<std::uint32_t>(afd));
  d.destroy_access_pages.access_pages_id = id;
  ASSERT_EQ(run(d), 0);
  EXPECT_EQ(check_refs(0, 8 * kPageSize, 0), 0);
  EXPECT_EQ(run(d), ENOENT);
}

TEST_F(SelftestTest, AccessPagesIdsCountUp) {
  ASSERT_EQ(map(ioas_, kIova, 0, 8 * kPageSize), 0);
  const int afd = create_access(ioas_);
  std::uint32_t a = 0, b = 0;
  ASSERT_EQ(access_pages(afd, kIova, kPageSize, 0, &a), 0);
  ASSERT_EQ(access_pages(afd, kIova, kPageSize, 0, &b), 0);
  EXPECT_EQ(b, a + 1);
}

TEST_F(SelftestTest, AccessPagesComparedWithOtherMemoryIsEbadeAndPinsNothing) {
  ASSERT_EQ(map(ioas_, kIova, 0, 8 * kPageSize), 0);
  const int afd = create_access(ioas_);
  EXPECT_EQ(access_pages(afd, kIova, 2 * kPageSize, uptr(4 * kPageSize)), EBADE);
  EXPECT_EQ(check_refs(0, 8 * kPageSize, 0), 0);
}

// As in the kernel's page-by-page compare: a mismatch before an unreadable page is EBADE, a match up to it
// EFAULT; neither leaves a pin.
TEST_F(SelftestTest, AccessPagesReportsTheFirstProblemOfTheCompare) {
  mock_domain(ioas_);  // pins at map time, so the access pins succeed after the mprotect below
  ASSERT_EQ(map(ioas_, kIova, 60 * kPageSize, 3 * kPageSize), 0);
  const int afd = create_access(ioas_);
  ASSERT_EQ(mprotect(mem_ + 62 * kPageSize, 2 * kPageSize, PROT_NONE), 0);
  EXPECT_EQ(access_pages(afd, kIova + kPageSize, 2 * kPageSize, uptr(60 * kPageSize)), EBADE);
  EXPECT_EQ(access_pages(afd, kIova, 3 * kPageSize, uptr(60 * kPageSize)), EFAULT);
  ASSERT_EQ(mprotect(mem_ + 62 * kPageSize, 2 * kPageSize, PROT_READ | PROT_WRITE), 0);
  EXPECT_EQ(check_refs(60 * kPageSize, 3 * kPageSize, 1), 0);  // the domain's pin only
}

TEST_F(SelftestTest, AccessPagesOver16MiBIsEnomem) {
  const int afd = create_access(ioas_);
  EXPECT_EQ(access_pages(afd, kIova, 16 * 1024 * 1024 + 1, 0), ENOMEM);
}

TEST_F(SelftestTest, AccessPagesWithUnknownFlagsIsEopnotsupp) {
  const int afd = create_access(ioas_);
  EXPECT_EQ(access_pages(afd, kIova, kPageSize, 0, nullptr, 2), EOPNOTSUPP);
}

TEST_F(SelftestTest, AccessPagesOnAnFdThatIsNoAccessIsEbadfd) {
  EXPECT_EQ(access_pages(fd_, kIova, kPageSize, 0), EBADFD);
  EXPECT_EQ(access_pages(100000, kIova, kPageSize, 0), EBADFD);
}

TEST_F(SelftestTest, AccessPagesOnAnAccessThatDoesNotPinIsEopnotsupp) {
  ASSERT_EQ(map(ioas_, kIova, 0, 8 * kPageSize), 0);
  const int afd = create_access(ioas_, 0);
  EXPECT_EQ(access_pages(afd, kIova, kPageSize, 0), EOPNOTSUPP);
}

TEST_F(SelftestTest, AccessPagesOfAHoleIsEnoent) {
  const int afd = create_access(ioas_);
  EXPECT_EQ(access_pages(afd, kIova, kPageSize, 0), ENOENT);
}

TEST_F(SelftestTest, AccessPagesInSyzModeTakesTheNthArea) {
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  ASSERT_EQ(map(ioas_, kIova + 8 * kPageSize, 8 * kPageSize, 4 * kPageSize), 0);
  const int afd = create_access(ioas_);
  // {nth_area = 1, offset = one page}
  const std::uint64_t syz = 1 | (std::uint64_t{kPageSize} << 32);
  ASSERT_EQ(access_pages(afd, syz, kPageSize, uptr(9 * kPageSize), nullptr, MOCK_FLAGS_ACCESS_SYZ), 0);
  EXPECT_EQ(check_refs(9 * kPageSize, kPageSize, 1), 0);
}

TEST_F(SelftestTest, DestroyAccessPagesOnAnFdThatIsNoAccessIsEbadfd) {
  iommu_test_cmd d = make_test_cmd(IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, static_cast<std::uint32_t>(fd_));
  EXPECT_EQ(run(d), EBADFD);
}

// ---- ACCESS_RW ----

TEST_F(SelftestTest, AccessRwReadsAndWritesOnBothPaths) {
  ASSERT_EQ(map(ioas_, kIova, 0, 8 * kPageSize), 0);
  const int afd = create_access(ioas_, 0);
  for (std::uint32_t slow : {0u, MOCK_ACCESS_RW_SLOW_PATH}) {
    std::vector<char> buf(kPageSize + 77);
    ASSERT_EQ(access_rw(afd, kIova + 100, buf.data(), buf.size(), slow), 0);
    EXPECT_EQ(std::memcmp(buf.data(), mem_ + 100, buf.size()), 0);
    std::memset(buf.data(), 0x40 + static_cast<int>(slow), buf.size());
    ASSERT_EQ(access_rw(afd, kIova + 100, buf.data(), buf.size(), MOCK_ACCESS_RW_WRITE | slow), 0);
    EXPECT_EQ(mem_[100 + kPageSize], static_cast<char>(0x40 + slow));
  }
  EXPECT_EQ(check_refs(0, 8 * kPageSize, 0), 0);
}

TEST_F(SelftestTest, AccessRwOver16MiBIsEnomem) {
  const int afd = create_access(ioas_, 0);
  EXPECT_EQ(access_rw(afd, kIova, mem_, 16 * 1024 * 1024 + 1, 0), ENOMEM);
}

TEST_F(SelftestTest, AccessRwWithUnknownFlagsIsEopnotsupp) {
  const int afd = create_access(ioas_, 0);
  EXPECT_EQ(access_rw(afd, kIova, mem_, 1, 2), EOPNOTSUPP);
}

TEST_F(SelftestTest, AccessRwOnAnFdThatIsNoAccessIsEbadfd) {
  EXPECT_EQ(access_rw(fd_, kIova, mem_, 1, 0), EBADFD);
}

TEST_F(SelftestTest, AccessRwOfAHoleIsEnoentAndOfLengthZeroEinval) {
  const int afd = create_access(ioas_, 0);
  EXPECT_EQ(access_rw(afd, kIova, mem_, 8, 0), ENOENT);
  ASSERT_EQ(map(ioas_, kIova, 0, kPageSize), 0);
  EXPECT_EQ(access_rw(afd, kIova, mem_, 0, 0), EINVAL);
}

TEST_F(SelftestTest, AccessRwIntoABadUserBufferIsEfault) {
  ASSERT_EQ(map(ioas_, kIova, 0, kPageSize), 0);
  const int afd = create_access(ioas_, 0);
  EXPECT_EQ(access_rw(afd, kIova, nullptr, 8, 0), EFAULT);
  EXPECT_EQ(access_rw(afd, kIova, nullptr, 8, MOCK_ACCESS_RW_WRITE), EFAULT);
}

// ---- SET_TEMP_MEMORY_LIMIT ----

TEST_F(SelftestTest, SetTempMemoryLimitBelow12IsEinval) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT, 0);
  c.memory_limit.limit = 11;
  EXPECT_EQ(run(c), EINVAL);
  c.memory_limit.limit = 12;
  EXPECT_EQ(run(c), 0);
  EXPECT_EQ(Pages::temp_memory_limit(), 12u);
  c.memory_limit.limit = 65536;
  EXPECT_EQ(run(c), 0);
}

// ---- ACCESS_REPLACE_IOAS ----

TEST_F(SelftestTest, AccessReplaceIoasUnpinsAndMovesTheAccess) {
  const std::uint32_t other = ioas_alloc(fd_);
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  const int afd = create_access(ioas_);
  ASSERT_EQ(access_pages(afd, kIova, kPageSize, uptr()), 0);
  iommu_test_cmd r = make_test_cmd(IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, static_cast<std::uint32_t>(afd));
  r.access_replace_ioas.ioas_id = other;
  ASSERT_EQ(run(r), 0);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 0), 0);
  EXPECT_EQ(destroy(ioas_), 0);  // no longer held by the access
  EXPECT_EQ(destroy(other), EBUSY);
  EXPECT_EQ(access_pages(afd, kIova, kPageSize, 0), ENOENT);  // nothing mapped in the new IOAS
}

TEST_F(SelftestTest, AccessReplaceIoasToAnUnknownIoasIsEnoent) {
  const int afd = create_access(ioas_);
  iommu_test_cmd r = make_test_cmd(IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, static_cast<std::uint32_t>(afd));
  r.access_replace_ioas.ioas_id = 99;
  EXPECT_EQ(run(r), ENOENT);
}

TEST_F(SelftestTest, AccessReplaceIoasOnAnFdThatIsNoAccessIsEbadfd) {
  iommu_test_cmd r = make_test_cmd(IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, static_cast<std::uint32_t>(fd_));
  r.access_replace_ioas.ioas_id = ioas_;
  EXPECT_EQ(run(r), EBADFD);
}

// ---- lifetimes ----

TEST_F(SelftestTest, ClosingTheAccessFdUnpinsAndDestroysTheAccess) {
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  const int afd = create_access(ioas_);
  ASSERT_EQ(access_pages(afd, kIova, 2 * kPageSize, uptr()), 0);
  close_access(afd);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 0), 0);
  ASSERT_EQ(unmap(ioas_, kIova, 4 * kPageSize), 0);
  EXPECT_EQ(destroy(ioas_), 0);
}

TEST_F(SelftestTest, TheContextStaysAliveWhileAnAccessFdIsOpen) {
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  const int afd = create_access(ioas_);
  ASSERT_EQ(access_pages(afd, kIova, 2 * kPageSize, uptr()), 0);
  const int other_fd = host_.open_iommufd();
  ASSERT_GE(other_fd, 0);
  host_.close(fd_);
  fd_ = other_fd;
  // The first context still exists: the access's pin is still there.
  EXPECT_EQ(check_refs(0, 2 * kPageSize, 1), 0);
  close_access(afd);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 0), 0);
}

TEST_F(SelftestTest, IoasUnmapMakesTheAccessUnpin) {
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  const int afd = create_access(ioas_);
  std::uint32_t id = 0;
  ASSERT_EQ(access_pages(afd, kIova + kPageSize, kPageSize, uptr(kPageSize), &id), 0);
  ASSERT_EQ(unmap(ioas_, kIova, 4 * kPageSize), 0);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 0), 0);
  iommu_test_cmd d = make_test_cmd(IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, static_cast<std::uint32_t>(afd));
  d.destroy_access_pages.access_pages_id = id;
  EXPECT_EQ(run(d), ENOENT);  // the unmap callback dropped the record
}

TEST_F(SelftestTest, PinsSharedByADomainAndAnAccessCountOnce) {
  mock_domain(ioas_);
  ASSERT_EQ(map(ioas_, kIova, 0, 4 * kPageSize), 0);
  const int afd = create_access(ioas_);
  ASSERT_EQ(access_pages(afd, kIova, 4 * kPageSize, uptr()), 0);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 1), 0);
  ASSERT_EQ(unmap(ioas_, kIova, 4 * kPageSize), 0);
  EXPECT_EQ(check_refs(0, 4 * kPageSize, 0), 0);
}

// ---- fail-nth sweeps: every injected failure leaves no pin, object or fd behind ----

class SelftestSweepTest : public SelftestTest {
 protected:
  Status as_status(int e) { return e ? Status::error(e) : Status(); }
  // Fresh state as a sweep iteration starts it: a new iommufd with an IOAS and a mapping.
  void fresh() {
    for (int fd : access_fds_) host_.close(fd);
    access_fds_.clear();
    host_.close(fd_);
    ASSERT_EQ(Pages::total_pinned_pages(), pinned_before_)
        << "pins leaked: " << (last_injected_fault() ?: "");
    fd_ = host_.open_iommufd();
    ASSERT_GE(fd_, 0);
    ioas_ = ioas_alloc(fd_);
    ASSERT_EQ(map(ioas_, kIova, 0, 16 * kPageSize), 0);
  }
  // After a run: everything the run created is closed, and the context is then empty of pins.
  void after(unsigned n, Status st, std::size_t objects_if_failed) {
    Context& ctx = static_cast<IommufdFile&>(*host_.lookup(fd_)).context();
    if (!st.ok()) {
      EXPECT_EQ(ctx.object_count(), objects_if_failed) << "fault " << n << " " << st.to_string();
    }
    for (int fd : access_fds_) host_.close(fd);
    access_fds_.clear();
    EXPECT_EQ(unmap(ioas_, 0, kUlongMax), 0) << "fault " << n;
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "fault " << n;
  }
};

TEST_F(SelftestSweepTest, MockDomainUnwindsEveryInjectedFailure) {
  auto op = [&] {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, ioas_);
    return as_status(run(c));
  };
  SweepResult r = sweep_fail_nth([&] { fresh(); }, op, [&](unsigned n, Status st) { after(n, st, 1); });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_GE(r.sites_failed, 3u);
}

TEST_F(SelftestSweepTest, V62MockDomainUnwindsEveryInjectedFailure) {
  auto op = [&] {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, ioas_);
    c.size = kTestCmdV62Size;
    return as_status(run(c));
  };
  SweepResult r = sweep_fail_nth([&] { fresh(); }, op, [&](unsigned n, Status st) { after(n, st, 1); });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_GE(r.sites_failed, 3u);
}

TEST_F(SelftestSweepTest, AccessPagesUnwindsEveryInjectedFailure) {
  int afd = -1;
  auto setup = [&] {
    fresh();
    afd = create_access(ioas_);
  };
  auto op = [&] { return as_status(access_pages(afd, kIova + kPageSize, 4 * kPageSize, uptr(kPageSize))); };
  SweepResult r = sweep_fail_nth(setup, op, [&](unsigned n, Status st) {
    // No domain: a failed pin leaves every page unpinned.
    if (!st.ok()) {
      EXPECT_EQ(check_refs(0, 16 * kPageSize, 0), 0) << "fault " << n;
    }
    after(n, st, 2);
  });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_GE(r.sites_failed, 3u);
}

TEST_F(SelftestSweepTest, AccessRwUnwindsEveryInjectedFailure) {
  int afd = -1;
  auto setup = [&] {
    fresh();
    afd = create_access(ioas_, 0);
  };
  std::vector<char> buf(3 * kPageSize);
  auto op = [&] {
    if (int e = access_rw(afd, kIova + 100, buf.data(), buf.size(), MOCK_ACCESS_RW_SLOW_PATH))
      return as_status(e);
    return as_status(access_rw(afd, kIova + 100, buf.data(), buf.size(), MOCK_ACCESS_RW_WRITE));
  };
  SweepResult r = sweep_fail_nth(setup, op, [&](unsigned n, Status st) {
    EXPECT_EQ(check_refs(0, 16 * kPageSize, 0), 0) << "fault " << n;
    after(n, st, 2);
  });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_GE(r.sites_failed, 3u);
}

// ---- fail-nth sweeps of the newest device ops: MOCK_DOMAIN_FLAGS, PASID_*, MOCK_DOMAIN_REPLACE ----

using testing::SweepRun;

TEST_F(SelftestSweepTest, MockDomainFlagsUnwindsEveryInjectedFailure) {
  iommu_test_cmd c{};
  SweepResult r = testing::sweep_checked(
      [&] {
        fresh();
        c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, ioas_);
        c.mock_domain_flags.dev_flags = Device::kFlagNoDirty | Device::kFlagPasid;
      },
      [&] { return run_keep(c); },
      [&](const SweepRun& run) {
        if (run.err == 0) {
          EXPECT_EQ(c.mock_domain_flags.out_stdev_id, ioas_ + 1);
          EXPECT_EQ(check_refs(0, 16 * kPageSize, 1), 0) << "the new domain was not filled";
        }
        after(run.n, run.err ? Status::error(run.err) : Status(), 1);
      });
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  EXPECT_TRUE(testing::has_site(r, "device.attach"));
  EXPECT_TRUE(testing::has_site(r, "pages.pin"));
  ASSERT_FALSE(r.fired_sites.empty());
  EXPECT_EQ(r.fired_sites.back(), "mm.copy_to_user");
}

// A PASID-capable mock device on an IOAS with 16 pages mapped, with the page tables the PASID and replace
// ops move it between: a PASID-capable paging HWPT `s2_`, a NEST_PARENT one `parent_`, and on it a
// PASID-capable nested HWPT `n0_`. The device's RID is on `s2_` (the automatic HWPT it started on went
// with it), or, with `rid_on_auto`, still on that automatic HWPT `auto_`.
class PasidSweepTest : public SelftestSweepTest {
 protected:
  static constexpr std::uint32_t kPasid = 100;

  struct State {
    std::size_t objects = 0;
    std::uint64_t pinned = 0;
    std::uint32_t rid = 0, pasid = 0;  // the HWPTs the RID and kPasid are attached to, 0 for none
    bool operator==(const State&) const = default;
    std::string to_string() const {
      return "objects " + std::to_string(objects) + ", pinned " + std::to_string(pinned) + ", RID on " +
             std::to_string(rid) + ", PASID on " + std::to_string(pasid);
    }
  };

  void build(bool rid_on_auto = false) {
    fresh();
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, ioas_);
    c.mock_domain_flags.dev_flags = Device::kFlagPasid;
    ASSERT_EQ(test(c), 0) << strerror(errno);
    stdev_ = c.mock_domain_flags.out_stdev_id;
    idev_ = c.mock_domain_flags.out_idev_id;
    auto_ = c.mock_domain_flags.out_hwpt_id;
    ASSERT_EQ(hwpt_alloc(kHwptAllocPasid, ioas_, false, &s2_), 0);
    ASSERT_EQ(hwpt_alloc(kHwptAllocNestParent, ioas_, false, &parent_), 0);
    ASSERT_EQ(hwpt_alloc(kHwptAllocPasid, parent_, true, &n0_), 0);
    if (!rid_on_auto) {
      std::uint32_t pt = 0;
      ASSERT_EQ(pasid_op(IOMMU_TEST_OP_PASID_REPLACE, Device::kNoPasid, s2_, &pt), 0);
      ASSERT_EQ(pt, s2_);
    }
  }

  int hwpt_alloc(std::uint32_t flags, std::uint32_t pt_id, bool selftest_data, std::uint32_t* out) {
    const std::uint32_t data[2] = {kTestIotlbDefault, 0};  // struct iommu_hwpt_selftest
    iommu_hwpt_alloc a{};
    a.size = sizeof(a);
    a.flags = flags;
    a.dev_id = idev_;
    a.pt_id = pt_id;
    if (selftest_data) {
      a.data_type = kHwptDataSelftest;
      a.data_len = sizeof(data);
      a.data_uptr = reinterpret_cast<std::uint64_t>(data);
    }
    const int e = err(host_.ioctl(fd_, IOMMU_HWPT_ALLOC, &a));
    *out = a.out_hwpt_id;
    return e;
  }
  // PASID_ATTACH, PASID_REPLACE or PASID_DETACH of the device; *out receives the HWPT id the op reports.
  int pasid_op(std::uint32_t op, std::uint32_t pasid, std::uint32_t pt_id, std::uint32_t* out = nullptr) {
    iommu_test_cmd c = make_test_cmd(op, stdev_);
    c.pasid_attach = {pasid, pt_id};
    const int e = run_keep(c);
    if (out) *out = c.pasid_attach.pt_id;
    return e;
  }
  int pasid_check(std::uint32_t pasid, std::uint32_t hwpt) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_PASID_CHECK_HWPT, stdev_);
    c.pasid_check = {pasid, hwpt};
    return run(c);
  }
  int mock_domain_replace(std::uint32_t pt_id) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev_);
    c.mock_domain_replace.pt_id = pt_id;
    return run(c);
  }

  // The HWPT `pasid` is attached to (0: none), read from the device itself.
  std::uint32_t state_of(std::uint32_t pasid) {
    Context& ctx = static_cast<IommufdFile&>(*host_.lookup(fd_)).context();
    auto sobj = ctx.get<SelftestObject>(stdev_, ObjectType::kSelftest);
    EXPECT_TRUE(sobj.ok() && (*sobj)->device());
    return sobj.ok() && (*sobj)->device() ? (*sobj)->device()->hwpt_id(pasid) : ~0u;
  }

  // The state, the attachments read from the device itself and confirmed by PASID_CHECK_HWPT.
  State state() {
    Context& ctx = static_cast<IommufdFile&>(*host_.lookup(fd_)).context();
    State s;
    s.objects = ctx.object_count();
    s.pinned = Pages::total_pinned_pages() - pinned_before_;
    auto sobj = ctx.get<SelftestObject>(stdev_, ObjectType::kSelftest);
    EXPECT_TRUE(sobj.ok());
    if (!sobj.ok() || !(*sobj)->device()) return s;
    s.rid = (*sobj)->device()->hwpt_id(Device::kNoPasid);
    s.pasid = (*sobj)->device()->hwpt_id(kPasid);
    EXPECT_EQ(pasid_check(Device::kNoPasid, s.rid), 0);
    EXPECT_EQ(pasid_check(kPasid, s.pasid), 0);
    return s;
  }

  // Runs the sweep of `op` from `setup`. A failed run must leave the state as it was, except a replace
  // whose reply failed: the kernel does not undo it, so that run must leave `replaced(now)`; a run that
  // succeeds must leave `done(now)` (`now` is what the run left, for ids the caller cannot know).
  using Expect = std::function<State(const State& now)>;
  SweepResult sweep(const std::function<void()>& setup, const std::function<int()>& op, const Expect& done,
                    int final_errno = 0, const Expect& replaced = {}) {
    return testing::sweep_checked(
        [&] {
          setup();
          before_ = state();
          next_id_ = next_id();
        },
        op,
        [&](const SweepRun& run) {
          const State now = state();
          State want = before_;
          if (run.err == 0)
            want = done(now);
          else if (run.site == "mm.copy_to_user" && replaced)
            want = replaced(now);
          EXPECT_EQ(now, want) << "run " << run.n << ", " << run.site << ": " << std::strerror(run.err)
                               << "\n  before: " << before_.to_string() << "\n  after:  " << now.to_string()
                               << "\n  want:   " << want.to_string();
          if (run.err != 0 && want == before_) {
            EXPECT_EQ(next_id(), next_id_)
                << "run " << run.n << ", " << run.site << ": an id was not given back";
          }
        },
        final_errno);
  }

  // The id the next object gets (ids are handed out lowest first): an IOAS allocated and destroyed again.
  std::uint32_t next_id() {
    const std::uint32_t id = ioas_alloc(fd_);
    EXPECT_EQ(destroy(id), 0);
    return id;
  }

  // before_ with the RID or kPasid on the HWPT `*hwpt` (read when the run is checked: build() sets the
  // ids) and `objects` more objects.
  Expect moved(bool rid, const std::uint32_t* hwpt, int objects = 0) {
    return [this, rid, hwpt, objects](const State&) {
      State s = before_;
      (rid ? s.rid : s.pasid) = *hwpt;
      s.objects += objects;
      return s;
    };
  }
  // before_ with the RID on a new automatic HWPT of the IOAS (one object more).
  State rid_on_new_auto(const State& now) {
    Context& ctx = static_cast<IommufdFile&>(*host_.lookup(fd_)).context();
    auto hwpt = ctx.get<HwptPaging>(now.rid, ObjectType::kHwptPaging);
    EXPECT_TRUE(hwpt.ok() && (*hwpt)->auto_domain()) << "the RID is not on an automatic HWPT: " << now.rid;
    EXPECT_NE(now.rid, before_.rid);
    State s = before_;
    s.rid = now.rid;
    s.objects += 1;
    return s;
  }

  void expect_complete(const SweepResult& r, int final_errno = 0) {
    EXPECT_FALSE(r.hit_cap);
    EXPECT_EQ(r.final_status.error(), final_errno) << r.final_status.to_string();
    EXPECT_GE(r.sites_failed, 3u);
  }

  std::uint32_t stdev_ = 0, idev_ = 0, auto_ = 0, s2_ = 0, parent_ = 0, n0_ = 0;
  const std::uint32_t detached_ = 0;
  State before_;
  std::uint32_t next_id_ = 0;
};

TEST_F(PasidSweepTest, AttachToAUserPagingHwptUnwindsEveryInjectedFailure) {
  // A failed reply detaches again (selftest.c iommufd_test_pasid_attach()): every failure leaves kPasid
  // detached.
  SweepResult r = sweep([&] { build(); }, [&] { return pasid_op(IOMMU_TEST_OP_PASID_ATTACH, kPasid, s2_); },
                        moved(false, &s2_));
  expect_complete(r);
  EXPECT_TRUE(testing::has_site(r, "device.attach"));
  EXPECT_EQ(r.fired_sites.back(), "mm.copy_to_user");
}

TEST_F(PasidSweepTest, AttachToANestedHwptUnwindsEveryInjectedFailure) {
  SweepResult r = sweep([&] { build(); }, [&] { return pasid_op(IOMMU_TEST_OP_PASID_ATTACH, kPasid, n0_); },
                        moved(false, &n0_));
  expect_complete(r);
  EXPECT_TRUE(testing::has_site(r, "device.attach"));
  EXPECT_EQ(r.fired_sites.back(), "mm.copy_to_user");
}

// A PASID onto an IOAS: the automatic HWPT made for it is never PASID-capable, so the attach is EINVAL
// once that HWPT exists (it is checked before the fill) and the HWPT is discarded; every earlier failure
// unwinds as well.
TEST_F(PasidSweepTest, AttachToAnIoasIsEinvalAndUnwindsEveryInjectedFailure) {
  SweepResult r = sweep([&] { build(); }, [&] { return pasid_op(IOMMU_TEST_OP_PASID_ATTACH, kPasid, ioas_); },
                        moved(false, &detached_), EINVAL);
  expect_complete(r, EINVAL);
  EXPECT_TRUE(testing::has_site(r, "objects.alloc"));
  EXPECT_FALSE(testing::has_site(r, "mm.copy_to_user"));
}

// PASID 0 is the RID: once detached, PASID_ATTACH of it onto the IOAS makes and fills a new automatic
// HWPT (no automatic HWPT is left on the IOAS to share).
TEST_F(PasidSweepTest, RidAttachToAnIoasUnwindsEveryInjectedFailure) {
  SweepResult r = sweep(
      [&] {
        build();
        ASSERT_EQ(pasid_op(IOMMU_TEST_OP_PASID_DETACH, Device::kNoPasid, 0), 0);
      },
      [&] { return pasid_op(IOMMU_TEST_OP_PASID_ATTACH, Device::kNoPasid, ioas_); },
      [&](const State& now) { return rid_on_new_auto(now); });
  expect_complete(r);
  EXPECT_TRUE(testing::has_site(r, "mock.domain_map"));
  EXPECT_TRUE(testing::has_site(r, "device.attach"));
  EXPECT_EQ(r.fired_sites.back(), "mm.copy_to_user");
}

TEST_F(PasidSweepTest, ReplaceToANestedHwptUnwindsEveryInjectedFailure) {
  SweepResult r = sweep(
      [&] {
        build();
        ASSERT_EQ(pasid_op(IOMMU_TEST_OP_PASID_ATTACH, kPasid, s2_), 0);
      },
      [&] { return pasid_op(IOMMU_TEST_OP_PASID_REPLACE, kPasid, n0_); }, moved(false, &n0_), 0,
      moved(false, &n0_));
  expect_complete(r);
  EXPECT_TRUE(testing::has_site(r, "device.attach"));
  EXPECT_EQ(r.fired_sites.back(), "mm.copy_to_user");
}

// A PASID replaced onto an IOAS: the new automatic HWPT is made and filled first, then refused (never
// PASID-capable) and discarded; the PASID stays where it was.
TEST_F(PasidSweepTest, ReplaceToAnIoasIsEinvalAndUnwindsEveryInjectedFailure) {
  SweepResult r = sweep(
      [&] {
        build();
        ASSERT_EQ(pasid_op(IOMMU_TEST_OP_PASID_ATTACH, kPasid, s2_), 0);
      },
      [&] { return pasid_op(IOMMU_TEST_OP_PASID_REPLACE, kPasid, ioas_); }, moved(false, &s2_), EINVAL);
  expect_complete(r, EINVAL);
  EXPECT_TRUE(testing::has_site(r, "mock.domain_map")) << "the automatic HWPT was not filled";
  EXPECT_FALSE(testing::has_site(r, "device.attach")) << "the PASID rule comes before the attach record";
}

// The RID (PASID 0) replaced onto the IOAS with no PASID attached: a new automatic HWPT, filled; its
// reply failing leaves the replace done.
TEST_F(PasidSweepTest, RidReplaceToAnIoasUnwindsEveryInjectedFailure) {
  auto to_auto = [&](const State& now) { return rid_on_new_auto(now); };
  SweepResult r =
      sweep([&] { build(); }, [&] { return pasid_op(IOMMU_TEST_OP_PASID_REPLACE, Device::kNoPasid, ioas_); },
            to_auto, 0, to_auto);
  expect_complete(r);
  EXPECT_TRUE(testing::has_site(r, "mock.domain_map"));
  EXPECT_TRUE(testing::has_site(r, "device.attach"));
  EXPECT_EQ(r.fired_sites.back(), "mm.copy_to_user");
}

// PASID_DETACH cannot fail once it has its arguments and the device: only the struct and the lookup can.
TEST_F(PasidSweepTest, DetachFailsOnlyBeforeItDetaches) {
  SweepResult r = sweep(
      [&] {
        build();
        ASSERT_EQ(pasid_op(IOMMU_TEST_OP_PASID_ATTACH, kPasid, n0_), 0);
      },
      [&] { return pasid_op(IOMMU_TEST_OP_PASID_DETACH, kPasid, 0); }, moved(false, &detached_));
  EXPECT_FALSE(r.hit_cap);
  EXPECT_TRUE(r.final_status.ok()) << r.final_status.to_string();
  ASSERT_FALSE(r.fired_sites.empty());
  for (const std::string& site : r.fired_sites)
    EXPECT_TRUE(site == "mm.copy_from_user" || site == "objects.lookup") << site;
  EXPECT_EQ(r.fired_sites.back(), "objects.lookup");
}

// MOCK_DOMAIN_REPLACE of a device on its automatic HWPT onto a user paging HWPT and onto a nested one: the
// automatic HWPT goes with its last device once the replace is done, and a failed reply leaves it done.
TEST_F(PasidSweepTest, MockDomainReplaceToAUserHwptUnwindsEveryInjectedFailure) {
  for (bool nest : {false, true}) {
    SCOPED_TRACE(nest ? "nested" : "paging");
    auto done = [&](const State&) {
      State s = before_;
      s.rid = nest ? n0_ : s2_;
      s.objects -= 1;
      return s;
    };
    SweepResult r = sweep([&] { build(/*rid_on_auto=*/true); },
                          [&] { return mock_domain_replace(nest ? n0_ : s2_); }, done, 0, done);
    expect_complete(r);
    EXPECT_TRUE(testing::has_site(r, "device.attach"));
    EXPECT_EQ(r.fired_sites.back(), "mm.copy_to_user");
  }
}

// MOCK_DOMAIN_REPLACE from a user HWPT back onto the IOAS: a new automatic HWPT, filled.
TEST_F(PasidSweepTest, MockDomainReplaceToAnIoasUnwindsEveryInjectedFailure) {
  auto to_auto = [&](const State& now) { return rid_on_new_auto(now); };
  SweepResult r = sweep([&] { build(); }, [&] { return mock_domain_replace(ioas_); }, to_auto, 0, to_auto);
  expect_complete(r);
  EXPECT_TRUE(testing::has_site(r, "mock.domain_map"));
  EXPECT_EQ(r.fired_sites.back(), "mm.copy_to_user");
}

// PASID 1024 is where the mock fails every second set_dev_pasid (selftest.c
// mock_domain_set_dev_pasid_nop(), for the core's rollback). Whatever step of an attach of it fails, the
// mock's toggle must be as before the call (a failed reply detaches, which resets it): the next attach
// succeeds and the replace after it is the mock's ENOMEM, leaving the PASID where it was. A replace of it
// while the toggle is set is that ENOMEM by design; every earlier failure leaves the toggle set.
TEST_F(PasidSweepTest, Pasid1024KeepsTheMockFakeErrorToggleAcrossInjectedFailures) {
  constexpr std::uint32_t kP1024 = 1024;
  auto on = [&](std::uint32_t pasid) { return state_of(pasid); };
  // Attach: the toggle starts clear.
  SweepResult r = testing::sweep_checked(
      [&] { build(); }, [&] { return pasid_op(IOMMU_TEST_OP_PASID_ATTACH, kP1024, s2_); },
      [&](const SweepRun& run) {
        if (run.err != 0) {
          EXPECT_EQ(on(kP1024), 0u) << "run " << run.n << ", " << run.site;
          ASSERT_EQ(pasid_op(IOMMU_TEST_OP_PASID_ATTACH, kP1024, s2_), 0)
              << "run " << run.n << ", " << run.site;
        }
        EXPECT_EQ(on(kP1024), s2_);
        EXPECT_EQ(pasid_op(IOMMU_TEST_OP_PASID_REPLACE, kP1024, n0_), ENOMEM)
            << "run " << run.n << ", " << run.site;
        EXPECT_EQ(pasid_check(kP1024, s2_), 0) << "run " << run.n << ": the failed replace moved the PASID";
        EXPECT_EQ(pasid_op(IOMMU_TEST_OP_PASID_DETACH, kP1024, 0), 0);
      });
  expect_complete(r);
  EXPECT_TRUE(testing::has_site(r, "device.attach"));
  // Replace with the toggle set: every injected failure comes before the mock's own, which then ends the
  // complete run; the toggle survives every earlier failure.
  r = testing::sweep_checked(
      [&] {
        build();
        ASSERT_EQ(pasid_op(IOMMU_TEST_OP_PASID_ATTACH, kP1024, s2_), 0);
      },
      [&] { return pasid_op(IOMMU_TEST_OP_PASID_REPLACE, kP1024, n0_); },
      [&](const SweepRun& run) {
        EXPECT_EQ(on(kP1024), s2_) << "run " << run.n << ", " << run.site;
        if (run.fired) {
          EXPECT_EQ(pasid_op(IOMMU_TEST_OP_PASID_REPLACE, kP1024, n0_), ENOMEM)
              << "run " << run.n << ", " << run.site << ": the toggle was lost";
        }
        // Cleared now: the third call succeeds.
        EXPECT_EQ(pasid_op(IOMMU_TEST_OP_PASID_REPLACE, kP1024, n0_), 0) << "run " << run.n;
        EXPECT_EQ(pasid_op(IOMMU_TEST_OP_PASID_DETACH, kP1024, 0), 0);
      },
      ENOMEM);
  expect_complete(r, ENOMEM);
}

}  // namespace
}  // namespace uiommufd::uapi
