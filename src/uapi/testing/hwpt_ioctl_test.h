// HwptIoctlTest: the fixture of the page-table ioctl tests (hwpt_ioctls_test.cc, dirty_ioctls_test.cc), for
// tests only. Each test gets a fresh iommufd behind a TestFdHost with one empty IOAS, a 16-page buffer
// `mem_`, a two-page buffer `edge_` whose second page is inaccessible, and helpers that issue the ioctls
// and return their errno (0 on success). TearDown checks that no pin outlives the iommufd.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "test_fd_host.h"

#include "uiommufd/base/page.h"
#include "uiommufd/base/status.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/pages/pages.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi::testing {

inline constexpr std::uint64_t kIova = MOCK_APERTURE_START;
inline constexpr std::uint32_t kMapRW =
    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
// Below mmap_min_addr: never mapped in any process.
inline constexpr std::uint64_t kUnmapped = 0x1000;
inline constexpr std::uint32_t kNoSuchId = 9999;

// struct iommu_hwpt_selftest, struct iommu_hwpt_invalidate_selftest.
struct HwptSelftest {
  std::uint32_t iotlb;
  std::uint32_t pagetable_type;
};
struct InvalidateEntry {
  std::uint32_t flags;
  std::uint32_t iotlb_id;
};

inline std::uint64_t addr(const void* p) { return reinterpret_cast<std::uint64_t>(p); }
inline Status as_status(int e) { return e ? Status::error(e) : Status(); }

// A request with room past the struct, for the size rules.
template <typename T>
union Padded {
  T c;
  std::uint8_t bytes[64];
};

class HwptIoctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pinned_before_ = Pages::total_pinned_pages();
    mem_ =
        static_cast<char*>(mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(mem_, MAP_FAILED);
    // Two pages, the second inaccessible: for buffers that run into unmapped memory.
    edge_ = static_cast<char*>(
        mmap(nullptr, 2 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(edge_, MAP_FAILED);
    ASSERT_EQ(mprotect(edge_ + kPageSize, kPageSize, PROT_NONE), 0);
    fd_ = host_.open_iommufd();
    ASSERT_GE(fd_, 0);
    ioas_ = ioas_alloc();
  }
  void TearDown() override {
    host_.close(fd_);
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "pins leaked";
    munmap(mem_, kLen);
    munmap(edge_, 2 * kPageSize);
    for (void* p : extra_pages_) munmap(p, kPageSize);
  }

  Context& ctx() { return static_cast<IommufdFile&>(*host_.lookup(fd_)).context(); }
  // The ioctl's errno, 0 on success.
  int call(unsigned long cmd, const void* arg) { return host_.ioctl(fd_, cmd, arg) == 0 ? 0 : errno; }
  int test(iommu_test_cmd& c) { return call(IOMMU_TEST_CMD, &c); }

  std::uint32_t ioas_alloc() {
    iommu_ioas_alloc a{sizeof(a), 0, 0};
    EXPECT_EQ(call(IOMMU_IOAS_ALLOC, &a), 0);
    return a.out_ioas_id;
  }
  int map(std::uint32_t ioas, std::uint64_t iova, std::uint64_t off, std::uint64_t len) {
    iommu_ioas_map m{sizeof(m), kMapRW, ioas, 0, addr(mem_ + off), len, iova};
    return call(IOMMU_IOAS_MAP, &m);
  }
  int destroy(std::uint32_t id) {
    iommu_destroy d{sizeof(d), id};
    return call(IOMMU_DESTROY, &d);
  }
  // The id the next object gets (taken and given back).
  std::uint32_t next_id() {
    const std::uint32_t id = ioas_alloc();
    EXPECT_EQ(destroy(id), 0);
    return id;
  }
  int check_refs(std::uint64_t off, std::uint64_t len, std::uint32_t refs) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MD_CHECK_REFS, 0);
    c.check_refs.uptr = addr(mem_ + off);
    c.check_refs.length = len;
    c.check_refs.refs = refs;
    return test(c);
  }
  int check_map(std::uint32_t hwpt, std::uint64_t iova, std::uint64_t off, std::uint64_t len) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MD_CHECK_MAP, hwpt);
    c.check_map.iova = iova;
    c.check_map.length = len;
    c.check_map.uptr = addr(mem_ + off);
    return test(c);
  }

  struct MockIds {
    std::uint32_t stdev = 0, hwpt = 0, idev = 0;
  };
  // MOCK_DOMAIN_FLAGS on `pt_id`; the errno, with the ids in *ids.
  int mock_domain_flags(std::uint32_t pt_id, std::uint32_t dev_flags, MockIds* ids) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, pt_id);
    c.mock_domain_flags.dev_flags = dev_flags;
    const int e = test(c);
    *ids = {c.mock_domain_flags.out_stdev_id, c.mock_domain_flags.out_hwpt_id,
            c.mock_domain_flags.out_idev_id};
    return e;
  }
  MockIds mock(std::uint32_t pt_id, std::uint32_t dev_flags = 0) {
    MockIds ids;
    EXPECT_EQ(mock_domain_flags(pt_id, dev_flags, &ids), 0);
    return ids;
  }
  int mock_replace(std::uint32_t stdev, std::uint32_t pt_id, std::uint32_t* out = nullptr) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev);
    c.mock_domain_replace.pt_id = pt_id;
    const int e = test(c);
    if (out) *out = c.mock_domain_replace.pt_id;
    return e;
  }

  // IOMMU_HWPT_ALLOC with every field given; the errno, the new id in *out.
  int hwpt_alloc(std::uint32_t flags, std::uint32_t dev_id, std::uint32_t pt_id, std::uint32_t data_type,
                 const void* data, std::uint32_t data_len, std::uint32_t fault_id, std::uint32_t* out) {
    iommu_hwpt_alloc c{};
    c.size = sizeof(c);
    c.flags = flags;
    c.dev_id = dev_id;
    c.pt_id = pt_id;
    c.data_type = data_type;
    c.data_len = data_len;
    c.data_uptr = addr(data);
    c.fault_id = fault_id;
    const int e = call(IOMMU_HWPT_ALLOC, &c);
    *out = c.out_hwpt_id;
    return e;
  }
  int hwpt_alloc(std::uint32_t dev_id, std::uint32_t pt_id, std::uint32_t flags, std::uint32_t* out) {
    return hwpt_alloc(flags, dev_id, pt_id, kHwptDataNone, nullptr, 0, 0, out);
  }
  std::uint32_t hwpt_ok(std::uint32_t dev_id, std::uint32_t pt_id, std::uint32_t flags = 0) {
    std::uint32_t id = 0;
    EXPECT_EQ(hwpt_alloc(dev_id, pt_id, flags, &id), 0);
    return id;
  }
  int nested(std::uint32_t dev_id, std::uint32_t parent, std::uint32_t flags, std::uint32_t iotlb,
             std::uint32_t* out) {
    const HwptSelftest s{iotlb, 0};
    return hwpt_alloc(flags, dev_id, parent, kHwptDataSelftest, &s, sizeof(s), 0, out);
  }
  std::uint32_t nested_ok(std::uint32_t dev_id, std::uint32_t parent, std::uint32_t flags = 0,
                          std::uint32_t iotlb = kTestIotlbDefault) {
    std::uint32_t id = 0;
    EXPECT_EQ(nested(dev_id, parent, flags, iotlb, &id), 0);
    return id;
  }

  // IOMMU_HWPT_INVALIDATE; *num is entry_num in and out.
  int invalidate(std::uint32_t hwpt, const void* entries, std::uint32_t* num,
                 std::uint32_t entry_len = sizeof(InvalidateEntry),
                 std::uint32_t type = kHwptInvalidateDataSelftest) {
    iommu_hwpt_invalidate c{sizeof(c), hwpt, addr(entries), type, entry_len, *num, 0};
    const int e = call(IOMMU_HWPT_INVALIDATE, &c);
    *num = c.entry_num;
    return e;
  }
  int check_iotlb(std::uint32_t hwpt, std::uint32_t id, std::uint32_t value) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MD_CHECK_IOTLB, hwpt);
    c.check_iotlb.id = id;
    c.check_iotlb.iotlb = value;
    return test(c);
  }
  // The four IOTLB entries hold `value`.
  void expect_iotlb(std::uint32_t hwpt, std::uint32_t value) {
    for (std::uint32_t i = 0; i < 4; ++i) EXPECT_EQ(check_iotlb(hwpt, i, value), 0) << "entry " << i;
  }
  int dev_check_cache(std::uint32_t dev, std::uint32_t id, std::uint32_t value) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DEV_CHECK_CACHE, dev);
    c.check_dev_cache.id = id;
    c.check_dev_cache.cache = value;
    return test(c);
  }
  // PASID_ATTACH or PASID_REPLACE; *out gets the pt_id written back.
  int pasid_op(std::uint32_t op, std::uint32_t stdev, std::uint32_t pasid, std::uint32_t pt_id,
               std::uint32_t* out = nullptr) {
    iommu_test_cmd c = make_test_cmd(op, stdev);
    c.pasid_attach.pasid = pasid;
    c.pasid_attach.pt_id = pt_id;
    const int e = test(c);
    if (out) *out = c.pasid_attach.pt_id;
    return e;
  }
  int pasid_attach(std::uint32_t stdev, std::uint32_t pasid, std::uint32_t pt_id,
                   std::uint32_t* out = nullptr) {
    return pasid_op(IOMMU_TEST_OP_PASID_ATTACH, stdev, pasid, pt_id, out);
  }
  int pasid_replace(std::uint32_t stdev, std::uint32_t pasid, std::uint32_t pt_id,
                    std::uint32_t* out = nullptr) {
    return pasid_op(IOMMU_TEST_OP_PASID_REPLACE, stdev, pasid, pt_id, out);
  }
  int pasid_detach(std::uint32_t stdev, std::uint32_t pasid) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_PASID_DETACH, stdev);
    c.pasid_attach.pasid = pasid;
    return test(c);
  }
  int pasid_check(std::uint32_t stdev, std::uint32_t pasid, std::uint32_t hwpt) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_PASID_CHECK_HWPT, stdev);
    c.pasid_check.pasid = pasid;
    c.pasid_check.hwpt_id = hwpt;
    return test(c);
  }

  // A copy of `v` on a page of its own that the caller may read but not write.
  template <typename T>
  T* read_only_copy(const T& v) {
    void* p = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    extra_pages_.push_back(p);
    std::memcpy(p, &v, sizeof(v));
    EXPECT_EQ(mprotect(p, kPageSize, PROT_READ), 0);
    return static_cast<T*>(p);
  }

  static inline constexpr std::size_t kLen = 16 * kPageSize;
  testing::TestFdHost host_;
  int fd_ = -1;
  std::uint32_t ioas_ = 0;
  char* mem_ = nullptr;
  char* edge_ = nullptr;
  std::vector<void*> extra_pages_;
  std::uint64_t pinned_before_ = 0;
};

}  // namespace uiommufd::uapi::testing
