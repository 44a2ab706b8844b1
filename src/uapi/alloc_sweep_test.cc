// Real allocation failure through the dispatcher: for each operation the ABI tests exercise, the 1st, 2nd,
// … Nth heap allocation it makes is failed in turn (testing/failing_allocator.h), until the operation
// runs to completion with no failure left to inject. After every failed run the operation must have
// returned ENOMEM (or succeeded, where the allocation was optional) and left nothing behind: no object,
// pin, charge, mapped byte or heap block that the same state did not have before (docs/allocation.md).
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testing/failing_allocator.h"
#include "testing/test_fd_host.h"

#include "uiommufd/base/page.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/objects/selftest_object.h"
#include "uiommufd/pages/pages.h"
#include "uiommufd/pages/pin_runs.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {
namespace {

using testing::alloc_fail_nth_get;
using testing::alloc_fail_nth_set;
using testing::live_blocks;

constexpr std::uint64_t kIova = MOCK_APERTURE_START;
constexpr std::uint32_t kRW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
constexpr std::size_t kMemPages = 32;
// Far more than any operation here makes; reaching it fails the sweep.
constexpr unsigned kCap = 5000;

// One run's world: a fresh fd host and iommufd with what the operation's setup built on it.
struct World {
  std::unique_ptr<testing::TestFdHost> host = std::make_unique<testing::TestFdHost>();
  int fd = -1;
  std::uint32_t ioas = 0, ioas2 = 0;
  std::uint32_t stdev = 0, hwpt = 0, idev = 0;
  // The page tables of the newest ABI's worlds: a PASID-capable paging HWPT, a NEST_PARENT one, a
  // PASID-capable nested one on it; `pasid` is the PASID whose attachment the snapshot follows.
  std::uint32_t s2 = 0, parent = 0, nested = 0;
  std::uint32_t pasid = 0;
  // A paging HWPT made with DIRTY_TRACKING, whose dirty state the snapshot follows.
  std::uint32_t dirty = 0;
  int access = -1;
  std::uint32_t pages_id = 0;
  // A fault queue and its fd, and an HWPT delivering to it.
  std::uint32_t fault = 0, fault_hwpt = 0;
  int fault_fd = -1;
  char* mem = nullptr;
  int memfd = -1;
  int dmabuf = -1;  // a mock dma-buf's fd (DMABUF_GET)

  Context& ctx() { return static_cast<IommufdFile&>(*host->lookup(fd)).context(); }
  // The ioctl's errno, 0 on success.
  int call(unsigned long cmd, const void* arg, int on = -1) {
    return host->ioctl(on < 0 ? fd : on, cmd, arg) < 0 ? errno : 0;
  }
  int test(iommu_test_cmd& c) { return call(IOMMU_TEST_CMD, &c); }
  std::uint64_t va(std::size_t page = 0) const {
    return reinterpret_cast<std::uint64_t>(mem) + page * kPageSize;
  }
};

using testing::make_test_cmd;

// What must not change across a failed run.
struct Snapshot {
  std::size_t objects = 0;
  std::uint64_t pinned = 0;
  std::uint64_t charged = 0;
  std::vector<std::uint64_t> mapped;  // bytes mapped in each IOAS of the world
  // The HWPTs the mock device's RID and the world's PASID are attached to, and the nested HWPT's IOTLB.
  std::vector<std::uint32_t> attached;
  std::vector<std::uint32_t> iotlb;
  // The dirty HWPT's tracking state and the bits a NO_CLEAR read of the 16 pages at kIova returns.
  bool tracking = false;
  std::uint64_t dirty_bits = 0;

  bool operator==(const Snapshot&) const = default;
  std::string to_string() const {
    std::string s = "objects " + std::to_string(objects) + ", pinned " + std::to_string(pinned) +
                    ", charged " + std::to_string(charged) + ", mapped";
    for (std::uint64_t m : mapped) s += " " + std::to_string(m);
    s += ", attached";
    for (std::uint32_t a : attached) s += " " + std::to_string(a);
    s += ", iotlb";
    for (std::uint32_t e : iotlb) s += " " + std::to_string(e);
    s += ", tracking " + std::to_string(tracking) + ", dirty bits " + std::to_string(dirty_bits);
    return s;
  }
};

std::uint64_t mapped_bytes(Context& ctx, std::uint32_t id, std::string* invariants) {
  if (id == 0) return 0;
  Result<ObjectRef<Ioas>> ioas = ctx.get<Ioas>(id, ObjectType::kIoas);
  if (!ioas.ok()) return ~0ull;  // gone: differs from any live value
  IoPagetable& iopt = (*ioas)->iopt();
  *invariants += iopt.check_invariants();
  std::uint64_t bytes = 0;
  for (const auto& a : iopt.areas()) bytes += a.iova.last - a.iova.start + 1;
  return bytes;
}

Snapshot snapshot(World& w, std::string* invariants) {
  Snapshot s;
  s.pinned = Pages::total_pinned_pages();
  s.charged = account_pinned_vm();
  if (w.fd < 0 || !w.host->lookup(w.fd)) return s;
  Context& ctx = w.ctx();
  s.objects = ctx.object_count();
  s.mapped = {mapped_bytes(ctx, w.ioas, invariants), mapped_bytes(ctx, w.ioas2, invariants)};
  if (w.stdev != 0) {
    Result<ObjectRef<SelftestObject>> sobj = ctx.get<SelftestObject>(w.stdev, ObjectType::kSelftest);
    if (sobj.ok() && (*sobj)->device()) {
      s.attached = {(*sobj)->device()->hwpt_id(Device::kNoPasid), (*sobj)->device()->hwpt_id(w.pasid)};
    } else {
      s.attached = {~0u};  // gone: differs from any live value
    }
  }
  if (w.nested != 0) {
    Result<ObjectRef<HwptNested>> nested = ctx.get<HwptNested>(w.nested, ObjectType::kHwptNested);
    if (nested.ok()) {
      for (std::uint32_t i = 0; i < NestedDomain::kIotlbNum; ++i)
        s.iotlb.push_back((*nested)->domain().iotlb(i));
    }
  }
  if (w.dirty != 0) {
    Result<ObjectRef<HwptPaging>> hwpt = ctx.get<HwptPaging>(w.dirty, ObjectType::kHwptPaging);
    auto* table = hwpt.ok() ? dynamic_cast<PageTableDomain*>(&(*hwpt)->domain()) : nullptr;
    s.tracking = table && table->dirty_tracking();
    iommu_hwpt_get_dirty_bitmap g{
        sizeof(g),      w.dirty,   IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,          0, kIova,
        16 * kPageSize, kPageSize, reinterpret_cast<std::uint64_t>(&s.dirty_bits)};
    if (w.call(IOMMU_HWPT_GET_DIRTY_BITMAP, &g) != 0) s.dirty_bits = ~0ull;  // differs from any real value
  }
  return s;
}

struct Operation {
  const char* name;
  std::function<void(World&)> setup;
  std::function<int(World&)> op;  // the errno, 0 on success
  // A teardown operation (close, destroy, unpin) is not allowed to fail for want of memory.
  bool must_succeed = false;
  // The errno of a run with no allocation failed (0: success). An operation that fails by design (a
  // FAULT_ID_VALID allocation, a PASID onto an IOAS) must leave nothing behind on that path too.
  int final_errno = 0;
};

// ---- setup steps ----------------------------------------------------------------------------------------

void open_fd(World& w, bool vfio = false) {
  w.fd = w.host->open_iommufd(vfio);
  ASSERT_GE(w.fd, 0);
}
std::uint32_t alloc_ioas(World& w) {
  iommu_ioas_alloc a{sizeof(a), 0, 0};
  EXPECT_EQ(w.call(IOMMU_IOAS_ALLOC, &a), 0);
  return a.out_ioas_id;
}
int map(World& w, std::uint32_t ioas, std::uint64_t iova, std::size_t first_page, std::size_t pages,
        std::uint32_t flags = kRW | IOMMU_IOAS_MAP_FIXED_IOVA) {
  iommu_ioas_map m{sizeof(m), flags, ioas, 0, w.va(first_page), pages * kPageSize, iova};
  return w.call(IOMMU_IOAS_MAP, &m);
}
int mock_domain(World& w, std::uint32_t ioas, std::uint32_t size = sizeof(iommu_test_cmd)) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, ioas);
  c.size = size;
  const int e = w.test(c);
  if (e == 0) {
    w.stdev = c.mock_domain.out_stdev_id;
    w.hwpt = c.mock_domain.out_hwpt_id;
    if (size == sizeof(iommu_test_cmd)) w.idev = c.mock_domain.out_idev_id;
  }
  return e;
}
int mock_domain_flags(World& w, std::uint32_t pt_id, std::uint32_t dev_flags) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, pt_id);
  c.mock_domain_flags.dev_flags = dev_flags;
  const int e = w.test(c);
  if (e == 0) {
    w.stdev = c.mock_domain_flags.out_stdev_id;
    w.hwpt = c.mock_domain_flags.out_hwpt_id;
    w.idev = c.mock_domain_flags.out_idev_id;
  }
  return e;
}
// IOMMU_HWPT_ALLOC for the world's device; `pagetable_type` < 0: no driver data, else
// IOMMU_HWPT_DATA_SELFTEST with that page-table type.
int hwpt_alloc(World& w, std::uint32_t flags, std::uint32_t pt_id, int pagetable_type, std::uint32_t* out,
               std::uint32_t fault_id = 0) {
  const std::uint32_t data[2] = {kTestIotlbDefault, static_cast<std::uint32_t>(pagetable_type)};
  iommu_hwpt_alloc a{};
  a.size = sizeof(a);
  a.flags = flags;
  a.dev_id = w.idev;
  a.pt_id = pt_id;
  if (pagetable_type >= 0) {
    a.data_type = kHwptDataSelftest;
    a.data_len = sizeof(data);
    a.data_uptr = reinterpret_cast<std::uint64_t>(data);
  }
  a.fault_id = fault_id;
  const int e = w.call(IOMMU_HWPT_ALLOC, &a);
  if (out) *out = a.out_hwpt_id;
  return e;
}
// PASID_ATTACH, PASID_REPLACE or PASID_DETACH of the world's mock device.
int pasid_op(World& w, std::uint32_t op, std::uint32_t pasid, std::uint32_t pt_id) {
  iommu_test_cmd c = make_test_cmd(op, w.stdev);
  c.pasid_attach.pasid = pasid;
  c.pasid_attach.pt_id = pt_id;
  return w.test(c);
}
int mock_domain_replace(World& w, std::uint32_t pt_id) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, w.stdev);
  c.mock_domain_replace.pt_id = pt_id;
  return w.test(c);
}
int create_access(World& w, std::uint32_t flags = MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_CREATE_ACCESS, w.ioas);
  c.create_access.flags = flags;
  const int e = w.test(c);
  if (e == 0) w.access = static_cast<int>(c.create_access.out_access_fd);
  return e;
}
int access_pages(World& w, std::uint64_t iova, std::size_t pages, std::size_t first_page) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_ACCESS_PAGES, static_cast<std::uint32_t>(w.access));
  c.access_pages.iova = iova;
  c.access_pages.length = pages * kPageSize;
  c.access_pages.uptr = w.va(first_page);
  const int e = w.test(c);
  if (e == 0) w.pages_id = c.access_pages.out_access_pages_id;
  return e;
}
int set_compat_ioas(World& w) {
  iommu_vfio_ioas v{sizeof(v), w.ioas, IOMMU_VFIO_IOAS_SET, 0};
  return w.call(IOMMU_VFIO_IOAS, &v);
}

// An iommufd with an empty IOAS.
void ioas_world(World& w) {
  open_fd(w);
  w.ioas = alloc_ioas(w);
}
// The same with a mock domain attached.
void domain_world(World& w) {
  ioas_world(w);
  ASSERT_EQ(mock_domain(w, w.ioas), 0);
}
// An IOAS with 16 pages mapped at kIova and no domain.
void unattached_world(World& w) {
  ioas_world(w);
  ASSERT_EQ(map(w, w.ioas, kIova, 0, 16), 0);
}
// An IOAS carrying a mock domain and 16 pages mapped at kIova.
void mapped_world(World& w) {
  domain_world(w);
  ASSERT_EQ(map(w, w.ioas, kIova, 0, 16), 0);
}
// An IOAS carrying a mock domain and two areas of 8 pages each, back to back from kIova, plus an empty
// second IOAS with its own mock domain and an unattached pinning access on the first.
void two_area_world(World& w) {
  domain_world(w);
  ASSERT_EQ(map(w, w.ioas, kIova, 0, 8), 0);
  ASSERT_EQ(map(w, w.ioas, kIova + 8 * kPageSize, 8, 8), 0);
  ASSERT_EQ(create_access(w), 0);
  w.ioas2 = alloc_ioas(w);
  const std::uint32_t stdev = w.stdev;
  ASSERT_EQ(mock_domain(w, w.ioas2), 0);
  w.stdev = stdev;
}
// The same, plus a pinning access attached to the IOAS with 2 pages pinned.
void pinned_world(World& w) {
  mapped_world(w);
  ASSERT_EQ(create_access(w), 0);
  ASSERT_EQ(access_pages(w, kIova + kPageSize, 2, 1), 0);
}
// IOMMU_FAULT_QUEUE_ALLOC; the world keeps the queue and its fd.
int fault_alloc(World& w) {
  iommu_fault_alloc a{sizeof(a), 0, 0, 0};
  const int e = w.call(IOMMU_FAULT_QUEUE_ALLOC, &a);
  if (e == 0) {
    w.fault = a.out_fault_id;
    w.fault_fd = static_cast<int>(a.out_fault_fd);
  }
  return e;
}
// TRIGGER_IOPF on the world's device, then the read of the fault and the write of its answer.
int fault_round_trip(World& w) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_TRIGGER_IOPF, 0);
  c.trigger_iopf.dev_id = w.idev;
  c.trigger_iopf.grpid = 3;
  if (const int e = w.test(c)) return e;
  std::shared_ptr<OpenFile> f = w.host->lookup(w.fault_fd);
  iommu_hwpt_pgfault m{};
  const long n = f->read(reinterpret_cast<std::uint64_t>(&m), sizeof(m));
  if (n <= 0) return static_cast<int>(-n);
  iommu_hwpt_page_response r{m.cookie, IOMMUFD_PAGE_RESP_SUCCESS};
  const long k = f->write(reinterpret_cast<std::uint64_t>(&r), sizeof(r));
  return k < 0 ? static_cast<int>(-k) : 0;
}

// An IOAS with 16 pages mapped at kIova and no domain, so that a new paging HWPT's fill pins them, and a
// mock device on an empty second IOAS.
void hwpt_world(World& w) {
  unattached_world(w);
  w.ioas2 = alloc_ioas(w);
  ASSERT_EQ(mock_domain(w, w.ioas2), 0);
}
// The same with a NEST_PARENT HWPT on the first IOAS and a nested HWPT on it.
void nested_world(World& w) {
  hwpt_world(w);
  ASSERT_EQ(hwpt_alloc(w, kHwptAllocNestParent, w.ioas, -1, &w.parent), 0);
  ASSERT_EQ(hwpt_alloc(w, 0, w.parent, 0, &w.nested), 0);
}
// A PASID-capable mock device on an IOAS with 16 pages mapped, its RID on a PASID-capable user HWPT `s2`
// (the automatic HWPT it started on went with it), a NEST_PARENT HWPT and a PASID-capable nested HWPT on
// it; the snapshot follows PASID 100.
void pasid_world(World& w) {
  unattached_world(w);
  ASSERT_EQ(mock_domain_flags(w, w.ioas, Device::kFlagPasid), 0);
  ASSERT_EQ(hwpt_alloc(w, kHwptAllocPasid, w.ioas, -1, &w.s2), 0);
  ASSERT_EQ(hwpt_alloc(w, kHwptAllocNestParent, w.ioas, -1, &w.parent), 0);
  ASSERT_EQ(hwpt_alloc(w, kHwptAllocPasid, w.parent, 0, &w.nested), 0);
  ASSERT_EQ(mock_domain_replace(w, w.s2), 0);
  w.pasid = 100;
}
// The same with PASID 100 attached to `s2`.
void pasid_attached_world(World& w) {
  pasid_world(w);
  ASSERT_EQ(pasid_op(w, IOMMU_TEST_OP_PASID_ATTACH, w.pasid, w.s2), 0);
}
// A mock device whose RID is on a user HWPT that delivers to a fault queue.
void fault_world(World& w) {
  domain_world(w);
  ASSERT_EQ(fault_alloc(w), 0);
  ASSERT_EQ(hwpt_alloc(w, kHwptFaultIdValid, w.ioas, -1, &w.fault_hwpt, w.fault), 0);
  ASSERT_EQ(mock_domain_replace(w, w.fault_hwpt), 0);
}
// A mock device whose RID is on `dirty`, a DIRTY_TRACKING paging HWPT on an IOAS that has (when `mapped`) 16
// pages at kIova; the device started on a second, empty IOAS. Tracking is off.
void dirty_world(World& w, bool mapped) {
  ioas_world(w);
  if (mapped) {
    ASSERT_EQ(map(w, w.ioas, kIova, 0, 16), 0);
  }
  w.ioas2 = alloc_ioas(w);
  ASSERT_EQ(mock_domain(w, w.ioas2), 0);
  ASSERT_EQ(hwpt_alloc(w, kHwptAllocDirtyTracking, w.ioas, -1, &w.dirty), 0);
  ASSERT_EQ(mock_domain_replace(w, w.dirty), 0);
}
int set_dirty_tracking(World& w, bool on) {
  iommu_hwpt_set_dirty_tracking c{sizeof(c), on ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0u, w.dirty, 0};
  return w.call(IOMMU_HWPT_SET_DIRTY_TRACKING, &c);
}
// IOMMU_TEST_OP_DIRTY of pages 1, 5, 6 and 15 of the 16 at kIova.
int mark_dirty(World& w) {
  static const std::uint64_t kBits = 0x8062;
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DIRTY, w.dirty);
  c.dirty = {0, kIova, 16 * kPageSize, kPageSize, reinterpret_cast<std::uint64_t>(&kBits), 0};
  return w.test(c);
}
int get_dirty_bitmap(World& w, std::uint32_t flags) {
  std::uint64_t bits[2] = {};
  iommu_hwpt_get_dirty_bitmap g{sizeof(g), w.dirty,        flags,     0,
                                kIova,     16 * kPageSize, kPageSize, reinterpret_cast<std::uint64_t>(bits)};
  return w.call(IOMMU_HWPT_GET_DIRTY_BITMAP, &g);
}
// Tracking on, pages marked.
void dirty_marked_world(World& w) {
  dirty_world(w, true);
  ASSERT_EQ(set_dirty_tracking(w, true), 0);
  ASSERT_EQ(mark_dirty(w), 0);
}
// A /dev/vfio/vfio-style iommufd whose compat IOAS has a mock domain.
void vfio_world(World& w) {
  open_fd(w, true);
  w.ioas = alloc_ioas(w);
  ASSERT_EQ(set_compat_ioas(w), 0);
  ASSERT_EQ(mock_domain(w, w.ioas), 0);
}

// DMABUF_GET of 8 pages into w.dmabuf: the errno, 0 on success.
int dmabuf_get(World& w) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DMABUF_GET, 0);
  c.dmabuf_get.length = 8 * kPageSize;
  c.dmabuf_get.open_flags = O_CLOEXEC;
  const int f = w.host->ioctl(w.fd, IOMMU_TEST_CMD, &c);
  if (f < 0) return errno;
  w.dmabuf = f;
  return 0;
}
int dmabuf_map_file(World& w) {
  iommu_ioas_map_file m{sizeof(m), kRW | IOMMU_IOAS_MAP_FIXED_IOVA, w.ioas, w.dmabuf, 0, 8 * kPageSize,
                        kIova};
  return w.call(IOMMU_IOAS_MAP_FILE, &m);
}
// A mock domain, and a dma-buf mapped at kIova.
void dmabuf_world(World& w) {
  domain_world(w);
  ASSERT_EQ(dmabuf_get(w), 0);
  ASSERT_EQ(dmabuf_map_file(w), 0);
}
int dmabuf_revoke(World& w) {
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DMABUF_REVOKE, 0);
  c.dmabuf_revoke.dmabuf_fd = w.dmabuf;
  c.dmabuf_revoke.revoked = 1;
  return w.test(c);
}

// ---- the operations -------------------------------------------------------------------------------------

std::vector<Operation> operations() {
  std::vector<Operation> ops;
  ops.push_back({"open", [](World&) {},
                 [](World& w) {
                   w.fd = w.host->open_iommufd();
                   return w.fd < 0 ? -w.fd : 0;
                 }});
  ops.push_back({"ioas_alloc", [](World& w) { open_fd(w); },
                 [](World& w) {
                   iommu_ioas_alloc a{sizeof(a), 0, 0};
                   return w.call(IOMMU_IOAS_ALLOC, &a);
                 }});
  ops.push_back({"destroy_ioas",
                 [](World& w) {
                   open_fd(w);
                   w.ioas2 = alloc_ioas(w);
                 },
                 [](World& w) {
                   iommu_destroy d{sizeof(d), w.ioas2};
                   const int e = w.call(IOMMU_DESTROY, &d);
                   if (e == 0) w.ioas2 = 0;
                   return e;
                 },
                 true});
  ops.push_back({"destroy_mock_device", mapped_world,
                 [](World& w) {
                   iommu_destroy d{sizeof(d), w.stdev};
                   return w.call(IOMMU_DESTROY, &d);
                 },
                 true});
  ops.push_back({"map", domain_world, [](World& w) { return map(w, w.ioas, 0, 0, 16, kRW); }});
  ops.push_back({"map_no_domain", ioas_world, [](World& w) { return map(w, w.ioas, kIova, 0, 16); }});
  ops.push_back({"map_file", domain_world, [](World& w) {
                   iommu_ioas_map_file m{sizeof(m), kRW, w.ioas, w.memfd, 0, 8 * kPageSize, 0};
                   return w.call(IOMMU_IOAS_MAP_FILE, &m);
                 }});
  ops.push_back({"copy",
                 [](World& w) {
                   mapped_world(w);
                   w.ioas2 = alloc_ioas(w);
                   std::uint32_t stdev = w.stdev;
                   ASSERT_EQ(mock_domain(w, w.ioas2), 0);
                   w.stdev = stdev;
                 },
                 [](World& w) {
                   iommu_ioas_copy c{
                       sizeof(c), kRW, w.ioas2, w.ioas, 8 * kPageSize, 0, kIova + 4 * kPageSize};
                   return w.call(IOMMU_IOAS_COPY, &c);
                 }});
  ops.push_back({"copy_across_two_areas", two_area_world, [](World& w) {
                   iommu_ioas_copy c{
                       sizeof(c), kRW, w.ioas2, w.ioas, 8 * kPageSize, 0, kIova + 4 * kPageSize};
                   return w.call(IOMMU_IOAS_COPY, &c);
                 }});
  ops.push_back({"access_pages_across_two_areas", two_area_world,
                 [](World& w) { return access_pages(w, kIova + 6 * kPageSize, 4, 6); }});
  ops.push_back({"unmap", mapped_world, [](World& w) {
                   iommu_ioas_unmap u{sizeof(u), w.ioas, kIova, 16 * kPageSize};
                   return w.call(IOMMU_IOAS_UNMAP, &u);
                 }});
  ops.push_back({"unmap_all_with_access_pins", pinned_world, [](World& w) {
                   iommu_ioas_unmap u{sizeof(u), w.ioas, 0, kUlongMax};
                   return w.call(IOMMU_IOAS_UNMAP, &u);
                 }});
  ops.push_back({"allow_iovas", ioas_world, [](World& w) {
                   const iommu_iova_range r[3] = {{kIova, kIova + (1 << 20) - 1},
                                                  {kIova + (4 << 20), kIova + (8 << 20) - 1},
                                                  {kIova + (16 << 20), kIova + (32 << 20) - 1}};
                   iommu_ioas_allow_iovas a{sizeof(a), w.ioas, 3, 0, reinterpret_cast<std::uint64_t>(r)};
                   return w.call(IOMMU_IOAS_ALLOW_IOVAS, &a);
                 }});
  ops.push_back({"iova_ranges", mapped_world, [](World& w) {
                   iommu_iova_range r[4]{};
                   iommu_ioas_iova_ranges q{sizeof(q), w.ioas, 4, 0, reinterpret_cast<std::uint64_t>(r), 0};
                   return w.call(IOMMU_IOAS_IOVA_RANGES, &q);
                 }});
  ops.push_back({"option_huge_pages_off", domain_world, [](World& w) {
                   iommu_option o{sizeof(o), IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, 0, w.ioas, 0};
                   return w.call(IOMMU_OPTION, &o);
                 }});
  ops.push_back({"option_rlimit_mode_get", [](World& w) { open_fd(w); },
                 [](World& w) {
                   iommu_option o{sizeof(o), IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, 0, 0};
                   return w.call(IOMMU_OPTION, &o);
                 }});
  ops.push_back({"vfio_ioas_set", ioas_world, [](World& w) { return set_compat_ioas(w); }});
  ops.push_back({"mock_domain", unattached_world, [](World& w) { return mock_domain(w, w.ioas); }});
  ops.push_back({"mock_domain_v62", unattached_world,
                 [](World& w) { return mock_domain(w, w.ioas, kTestCmdV62Size); }});
  ops.push_back({"mock_domain_replace",
                 [](World& w) {
                   mapped_world(w);
                   w.ioas2 = alloc_ioas(w);
                   ASSERT_EQ(map(w, w.ioas2, kIova, 16, 8), 0);
                 },
                 [](World& w) {
                   iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, w.stdev);
                   c.mock_domain_replace.pt_id = w.ioas2;
                   return w.test(c);
                 }});
  ops.push_back({"add_reserved", mapped_world, [](World& w) {
                   iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_ADD_RESERVED, w.ioas);
                   c.add_reserved.start = kIova + (64 << 20);
                   c.add_reserved.length = 1 << 20;
                   return w.test(c);
                 }});
  ops.push_back({"md_check_map", mapped_world, [](World& w) {
                   iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MD_CHECK_MAP, w.hwpt);
                   c.check_map.iova = kIova;
                   c.check_map.length = 16 * kPageSize;
                   c.check_map.uptr = w.va();
                   return w.test(c);
                 }});
  ops.push_back({"md_check_refs", mapped_world, [](World& w) {
                   iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MD_CHECK_REFS, 0);
                   c.check_refs.length = 16 * kPageSize;
                   c.check_refs.uptr = w.va();
                   c.check_refs.refs = 1;
                   return w.test(c);
                 }});
  ops.push_back({"create_access", mapped_world, [](World& w) { return create_access(w); }});
  ops.push_back({"access_pages",
                 [](World& w) {
                   mapped_world(w);
                   ASSERT_EQ(create_access(w), 0);
                 },
                 [](World& w) { return access_pages(w, kIova + 2 * kPageSize, 4, 2); }});
  ops.push_back({"destroy_access_pages", pinned_world,
                 [](World& w) {
                   iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
                                                    static_cast<std::uint32_t>(w.access));
                   c.destroy_access_pages.access_pages_id = w.pages_id;
                   return w.test(c);
                 },
                 true});
  ops.push_back({"access_rw_slow_path", pinned_world, [](World& w) {
                   char buf[3 * 1024];
                   std::memset(buf, 0x5a, sizeof(buf));
                   iommu_test_cmd c =
                       make_test_cmd(IOMMU_TEST_OP_ACCESS_RW, static_cast<std::uint32_t>(w.access));
                   c.access_rw.iova = kIova + kPageSize - 100;
                   c.access_rw.length = sizeof(buf);
                   c.access_rw.uptr = reinterpret_cast<std::uint64_t>(buf);
                   c.access_rw.flags = MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH;
                   return w.test(c);
                 }});
  ops.push_back({"access_replace_ioas",
                 [](World& w) {
                   mapped_world(w);
                   ASSERT_EQ(create_access(w), 0);
                   w.ioas2 = alloc_ioas(w);
                 },
                 [](World& w) {
                   iommu_test_cmd c =
                       make_test_cmd(IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, static_cast<std::uint32_t>(w.access));
                   c.access_replace_ioas.ioas_id = w.ioas2;
                   return w.test(c);
                 }});
  ops.push_back({"close_access_fd", pinned_world,
                 [](World& w) {
                   const int e = w.host->close(w.access) == 0 ? 0 : errno;
                   w.access = -1;
                   return e;
                 },
                 true});
  ops.push_back({"close_iommufd", pinned_world,
                 [](World& w) {
                   // The access fd holds the iommufd's file: closing both is the kernel's last release.
                   int e = w.host->close(w.access) == 0 ? 0 : errno;
                   w.access = -1;
                   if (w.host->close(w.fd) != 0 && e == 0) e = errno;
                   w.fd = -1;
                   return e;
                 },
                 true});
  ops.push_back({"vfio_set_iommu_type1", vfio_world, [](World& w) {
                   return w.host->ioctl(w.fd, VFIO_SET_IOMMU, reinterpret_cast<void*>(VFIO_TYPE1_IOMMU)) < 0
                              ? errno
                              : 0;
                 }});
  ops.push_back({"vfio_check_extension_cc", vfio_world, [](World& w) {
                   return w.host->ioctl(w.fd, VFIO_CHECK_EXTENSION,
                                        reinterpret_cast<void*>(VFIO_DMA_CC_IOMMU)) < 0
                              ? errno
                              : 0;
                 }});
  ops.push_back({"vfio_get_info", vfio_world, [](World& w) {
                   alignas(8) unsigned char buf[256]{};
                   vfio_iommu_type1_info info{};
                   info.argsz = sizeof(buf);
                   std::memcpy(buf, &info, sizeof(info));
                   return w.call(VFIO_IOMMU_GET_INFO, buf);
                 }});
  ops.push_back({"vfio_map_dma", vfio_world, [](World& w) {
                   vfio_iommu_type1_dma_map m{sizeof(m), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                                              w.va(), kIova, 16 * kPageSize};
                   return w.call(VFIO_IOMMU_MAP_DMA, &m);
                 }});
  ops.push_back({"vfio_unmap_dma_part_type1",
                 [](World& w) {
                   vfio_world(w);
                   ASSERT_EQ(w.host->ioctl(w.fd, VFIO_SET_IOMMU, reinterpret_cast<void*>(VFIO_TYPE1_IOMMU)),
                             0);
                   vfio_iommu_type1_dma_map m{sizeof(m), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                                              w.va(), kIova, 16 * kPageSize};
                   ASSERT_EQ(w.call(VFIO_IOMMU_MAP_DMA, &m), 0);
                 },
                 [](World& w) {
                   vfio_iommu_type1_dma_unmap u{sizeof(u), 0, kIova + 4 * kPageSize, 4 * kPageSize};
                   return w.call(VFIO_IOMMU_UNMAP_DMA, &u);
                 }});
  // ---- the newest page-table ABI: HWPT_ALLOC, GET_HW_INFO, HWPT_INVALIDATE, device flags, PASIDs ----
  struct PagingVariant {
    const char* name;
    std::uint32_t flags;
    int pagetable_type;
  };
  static constexpr PagingVariant kPaging[] = {
      {"hwpt_alloc_paging", 0, -1},
      {"hwpt_alloc_nest_parent", kHwptAllocNestParent, -1},
      {"hwpt_alloc_dirty_tracking", kHwptAllocDirtyTracking, -1},
      {"hwpt_alloc_pasid", kHwptAllocPasid, -1},
      {"hwpt_alloc_selftest_data", 0, static_cast<int>(kMockIommuptDefault)},
      {"hwpt_alloc_selftest_huge", kHwptAllocPasid, static_cast<int>(kMockIommuptHuge)},
  };
  for (const PagingVariant& v : kPaging) {
    ops.push_back({v.name, hwpt_world,
                   [v](World& w) { return hwpt_alloc(w, v.flags, w.ioas, v.pagetable_type, nullptr); }});
  }
  ops.push_back({"hwpt_alloc_nested",
                 [](World& w) {
                   hwpt_world(w);
                   ASSERT_EQ(hwpt_alloc(w, kHwptAllocNestParent, w.ioas, -1, &w.parent), 0);
                 },
                 [](World& w) { return hwpt_alloc(w, kHwptAllocPasid, w.parent, 0, nullptr); }});
  // FAULT_ID_VALID: the HWPT is built (and filled) before the missing fault object makes it ENOENT.
  ops.push_back({"hwpt_alloc_fault_id_valid", hwpt_world,
                 [](World& w) { return hwpt_alloc(w, kHwptFaultIdValid, w.ioas, -1, nullptr, 99); }, false,
                 ENOENT});
  ops.push_back({"get_hw_info", hwpt_world, [](World& w) {
                   alignas(64) std::uint32_t data[16];
                   iommu_hw_info info{};
                   info.size = sizeof(info);
                   info.dev_id = w.idev;
                   info.data_len = sizeof(data);
                   info.data_uptr = reinterpret_cast<std::uint64_t>(data);
                   return w.call(IOMMU_GET_HW_INFO, &info);
                 }});
  ops.push_back({"hwpt_invalidate", nested_world, [](World& w) {
                   const std::uint32_t entries[3][2] = {{0, 1}, {0, 3}, {kTestInvalidateFlagAll, 0}};
                   iommu_hwpt_invalidate inv{};
                   inv.size = sizeof(inv);
                   inv.hwpt_id = w.nested;
                   inv.data_uptr = reinterpret_cast<std::uint64_t>(entries);
                   inv.data_type = kHwptInvalidateDataSelftest;
                   inv.entry_len = sizeof(entries[0]);
                   inv.entry_num = 3;
                   return w.call(IOMMU_HWPT_INVALIDATE, &inv);
                 }});
  ops.push_back({"mock_domain_flags", unattached_world, [](World& w) {
                   return mock_domain_flags(w, w.ioas, Device::kFlagNoDirty | Device::kFlagPasid);
                 }});
  ops.push_back({"pasid_attach_paging", pasid_world,
                 [](World& w) { return pasid_op(w, IOMMU_TEST_OP_PASID_ATTACH, w.pasid, w.s2); }});
  ops.push_back({"pasid_attach_nested", pasid_world,
                 [](World& w) { return pasid_op(w, IOMMU_TEST_OP_PASID_ATTACH, w.pasid, w.nested); }});
  // Never PASID-capable, the automatic HWPT made for it is discarded.
  ops.push_back({"pasid_attach_ioas", pasid_world,
                 [](World& w) { return pasid_op(w, IOMMU_TEST_OP_PASID_ATTACH, w.pasid, w.ioas); }, false,
                 EINVAL});
  ops.push_back({"pasid_attach_rid_ioas",
                 [](World& w) {
                   pasid_world(w);
                   ASSERT_EQ(pasid_op(w, IOMMU_TEST_OP_PASID_DETACH, Device::kNoPasid, 0), 0);
                 },
                 [](World& w) { return pasid_op(w, IOMMU_TEST_OP_PASID_ATTACH, Device::kNoPasid, w.ioas); }});
  ops.push_back({"pasid_replace_nested", pasid_attached_world,
                 [](World& w) { return pasid_op(w, IOMMU_TEST_OP_PASID_REPLACE, w.pasid, w.nested); }});
  ops.push_back({"pasid_replace_ioas", pasid_attached_world,
                 [](World& w) { return pasid_op(w, IOMMU_TEST_OP_PASID_REPLACE, w.pasid, w.ioas); }, false,
                 EINVAL});
  ops.push_back({"pasid_replace_rid_ioas", pasid_world, [](World& w) {
                   return pasid_op(w, IOMMU_TEST_OP_PASID_REPLACE, Device::kNoPasid, w.ioas);
                 }});
  ops.push_back({"pasid_detach", pasid_attached_world,
                 [](World& w) { return pasid_op(w, IOMMU_TEST_OP_PASID_DETACH, w.pasid, 0); }, true});
  ops.push_back({"mock_domain_replace_user_hwpt",
                 [](World& w) {
                   hwpt_world(w);
                   ASSERT_EQ(hwpt_alloc(w, 0, w.ioas2, -1, &w.s2), 0);
                 },
                 [](World& w) { return mock_domain_replace(w, w.s2); }});
  ops.push_back({"mock_domain_replace_nested",
                 [](World& w) {
                   hwpt_world(w);
                   ASSERT_EQ(hwpt_alloc(w, kHwptAllocNestParent, w.ioas, -1, &w.parent), 0);
                   ASSERT_EQ(hwpt_alloc(w, 0, w.parent, 0, &w.nested), 0);
                 },
                 [](World& w) { return mock_domain_replace(w, w.nested); }});
  // ---- dirty tracking: the steps of a migration's setup and loop ----
  ops.push_back({"dirty_attach",
                 [](World& w) {
                   hwpt_world(w);
                   ASSERT_EQ(hwpt_alloc(w, kHwptAllocDirtyTracking, w.ioas, -1, &w.dirty), 0);
                 },
                 [](World& w) { return mock_domain_replace(w, w.dirty); }});
  ops.push_back({"dirty_map", [](World& w) { dirty_world(w, false); },
                 [](World& w) { return map(w, w.ioas, kIova, 0, 16); }});
  // Enabling cleans the bits left from before: a failed enable must leave them.
  ops.push_back({"dirty_set_tracking_on",
                 [](World& w) {
                   dirty_marked_world(w);
                   ASSERT_EQ(set_dirty_tracking(w, false), 0);
                 },
                 [](World& w) { return set_dirty_tracking(w, true); }});
  ops.push_back(
      {"dirty_set_tracking_off", dirty_marked_world, [](World& w) { return set_dirty_tracking(w, false); }});
  ops.push_back({"dirty_test_op",
                 [](World& w) {
                   dirty_world(w, true);
                   ASSERT_EQ(set_dirty_tracking(w, true), 0);
                 },
                 mark_dirty});
  ops.push_back({"dirty_get_bitmap", dirty_marked_world, [](World& w) { return get_dirty_bitmap(w, 0); }});
  ops.push_back({"dmabuf_get", ioas_world, dmabuf_get});
  ops.push_back({"dmabuf_map_file",
                 [](World& w) {
                   domain_world(w);
                   ASSERT_EQ(dmabuf_get(w), 0);
                 },
                 dmabuf_map_file});
  ops.push_back({"dmabuf_get_and_map_file", domain_world, [](World& w) {
                   const int e = dmabuf_get(w);
                   return e ? e : dmabuf_map_file(w);
                 }});
  // A revoke cannot fail (the kernel's importer notify allocates nothing).
  ops.push_back({"dmabuf_revoke", dmabuf_world, dmabuf_revoke, true});
  ops.push_back({"dmabuf_attach_after_revoke",
                 [](World& w) {
                   dmabuf_world(w);
                   ASSERT_EQ(dmabuf_revoke(w), 0);
                 },
                 [](World& w) { return mock_domain(w, w.ioas); }});
  ops.push_back({"dmabuf_unmap_revoked",
                 [](World& w) {
                   dmabuf_world(w);
                   ASSERT_EQ(dmabuf_revoke(w), 0);
                 },
                 [](World& w) {
                   iommu_ioas_unmap u{sizeof(u), w.ioas, kIova, 8 * kPageSize};
                   return w.call(IOMMU_IOAS_UNMAP, &u);
                 },
                 true});
  ops.push_back({"dirty_get_bitmap_no_clear", dirty_marked_world,
                 [](World& w) { return get_dirty_bitmap(w, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR); }});
  // Fault queues: the object with its file and fd, an HWPT holding one, and a fault's round trip (a
  // delivery that cannot get its group is answered and dropped, so the op still succeeds).
  ops.push_back({"fault_queue_alloc", ioas_world, fault_alloc});
  ops.push_back({"hwpt_alloc_fault",
                 [](World& w) {
                   hwpt_world(w);
                   ASSERT_EQ(fault_alloc(w), 0);
                 },
                 [](World& w) { return hwpt_alloc(w, kHwptFaultIdValid, w.ioas, -1, nullptr, w.fault); }});
  ops.push_back({"fault_round_trip", fault_world, fault_round_trip});
  return ops;
}

// ---- the sweep ------------------------------------------------------------------------------------------

// One run of `op` with its nth allocation failed, checked. In a function of its own so that everything it
// allocates is gone before the caller counts the heap.
void run_once(const Operation& op, World& w, unsigned n, bool* completed, unsigned* failed,
              unsigned* succeeded_anyway) {
  std::string invariants;
  const Snapshot before = snapshot(w, &invariants);

  alloc_fail_nth_set(n);
  const int err = op.op(w);
  const bool fired = alloc_fail_nth_get() == 0;
  alloc_fail_nth_set(0);

  std::string after_invariants;
  const Snapshot after = snapshot(w, &after_invariants);
  EXPECT_EQ(after_invariants, "") << op.name << ", allocation " << n;
  if (!fired) {
    *completed = true;
    EXPECT_EQ(err, op.final_errno) << op.name << " with every allocation granted: " << std::strerror(err);
    if (err != 0) {
      EXPECT_EQ(after, before) << op.name << ", failing by design\n  before: " << before.to_string()
                               << "\n  after:  " << after.to_string();
    }
  } else {
    ++*failed;
    if (err == op.final_errno) {
      ++*succeeded_anyway;  // the failed allocation was optional: the op went on to its usual end
      if (err != 0) {
        EXPECT_EQ(after, before) << op.name << ", allocation " << n << "\n  before: " << before.to_string()
                                 << "\n  after:  " << after.to_string();
      }
    } else {
      EXPECT_FALSE(op.must_succeed) << op.name << " failed on allocation " << n << ": " << std::strerror(err);
      EXPECT_EQ(err, ENOMEM) << op.name << ", allocation " << n << ": " << std::strerror(err);
      EXPECT_EQ(after, before) << op.name << ", allocation " << n << "\n  before: " << before.to_string()
                               << "\n  after:  " << after.to_string();
    }
  }
}

class AllocSweepTest : public ::testing::TestWithParam<Operation> {
 protected:
  static void SetUpTestSuite() {
    mem_ = static_cast<char*>(
        mmap(nullptr, kMemPages * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(mem_, MAP_FAILED);
    for (std::size_t i = 0; i < kMemPages * kPageSize; ++i) mem_[i] = static_cast<char>(i * 13);
    memfd_ = memfd_create("alloc-sweep", 0);
    ASSERT_GE(memfd_, 0);
    ASSERT_EQ(ftruncate(memfd_, 8 * kPageSize), 0);
  }
  static void TearDownTestSuite() {
    munmap(mem_, kMemPages * kPageSize);
    close(memfd_);
  }

  std::unique_ptr<World> make_world() {
    auto w = std::make_unique<World>();
    w->mem = mem_;
    w->memfd = memfd_;
    return w;
  }
  static void teardown(std::unique_ptr<World> w) {
    if (w->access >= 0) w->host->close(w->access);
    if (w->fault_fd >= 0) w->host->close(w->fault_fd);
    if (w->fd >= 0) w->host->close(w->fd);
    w.reset();
  }

  static inline char* mem_ = nullptr;
  static inline int memfd_ = -1;
};

TEST_P(AllocSweepTest, EveryAllocationFailureIsEnomemAndLeavesNothingBehind) {
  const Operation& op = GetParam();
  const std::uint64_t pinned0 = Pages::total_pinned_pages();
  const std::uint64_t charged0 = account_pinned_vm();
  // No lock-order report, and the validator never ran out of memory (which would have turned it off for
  // the failure paths that follow).
  const std::size_t reports0 = lockdep::report_count();

  // Runs with nothing failed first: the operation must succeed, and every one-time allocation (lock
  // classes, validator chains, per-thread records, caches that keep a spare) is made before the heap is
  // counted.
  for (int warm = 0; warm < 2; ++warm) {
    std::unique_ptr<World> w = make_world();
    op.setup(*w);
    ASSERT_FALSE(HasFatalFailure());
    std::string invariants;
    (void)snapshot(*w, &invariants);
    ASSERT_EQ(op.op(*w), op.final_errno) << op.name << " without any allocation failure";
    (void)snapshot(*w, &invariants);
    ASSERT_EQ(invariants, "");
    teardown(std::move(w));
  }

  const auto start = std::chrono::steady_clock::now();
  unsigned failed = 0, succeeded_anyway = 0;
  bool completed = false;
  for (unsigned n = 1; n <= kCap && !completed; ++n) {
    const std::int64_t live0 = live_blocks();
    std::unique_ptr<World> w = make_world();
    op.setup(*w);
    ASSERT_FALSE(HasFatalFailure()) << "setup of run " << n;
    run_once(op, *w, n, &completed, &failed, &succeeded_anyway);
    teardown(std::move(w));
    EXPECT_EQ(Pages::total_pinned_pages(), pinned0) << op.name << ", allocation " << n << ": pins leaked";
    EXPECT_EQ(account_pinned_vm(), charged0) << op.name << ", allocation " << n << ": charges leaked";
    EXPECT_EQ(live_blocks(), live0) << op.name << ", allocation " << n << ": heap blocks leaked";
    if (HasFailure()) break;
  }
  EXPECT_EQ(lockdep::report_count(), reports0) << op.name << ": lock validator reports";
  EXPECT_TRUE(completed) << op.name << " still allocating after " << kCap << " allocations";
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("%-28s %4u allocations failed in turn (%u optional), %.0f ms\n", op.name, failed,
              succeeded_anyway, ms);
  RecordProperty("allocations_failed", static_cast<int>(failed));
}

INSTANTIATE_TEST_SUITE_P(Abi, AllocSweepTest, ::testing::ValuesIn(operations()),
                         [](const ::testing::TestParamInfo<Operation>& info) {
                           return std::string(info.param.name);
                         });

// The pin-run pool directly: remove() is on unpin paths, which cannot fail, so the splits it makes must
// come from nodes an earlier add() set aside.
TEST(PinRunsAllocationTest, RemoveTakesItsSplitNodesFromThePool) {
  PinRuns runs;
  ASSERT_TRUE(runs.add(0, 99, nullptr).ok());
  ASSERT_TRUE(runs.add(0, 99, nullptr).ok());
  alloc_fail_nth_set(1);
  runs.remove(40, 59, nullptr);  // [0, 39]x2 [40, 59]x1 [60, 99]x2: two splits
  const std::uint32_t left = alloc_fail_nth_get();
  alloc_fail_nth_set(0);
  EXPECT_EQ(left, 1u) << "remove() allocated";
  runs.check_invariants();
  EXPECT_EQ(runs.run_count(), 3u);
  EXPECT_EQ(runs.users(50), 1u);
}

TEST(PinRunsAllocationTest, AddThatCannotGetItsMemoryChangesNothing) {
  PinRuns runs;
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(runs.add(i * 10, i * 10 + 4, nullptr).ok());
  std::vector<Interval> newly;
  unsigned failures = 0;
  for (std::uint32_t n = 1;; ++n) {
    alloc_fail_nth_set(n);
    const Status st = runs.add(2, 77, &newly);
    const bool fired = alloc_fail_nth_get() == 0;
    alloc_fail_nth_set(0);
    if (!fired) {
      ASSERT_TRUE(st.ok());
      break;
    }
    ++failures;
    ASSERT_EQ(st.error(), ENOMEM);
    runs.check_invariants();
    ASSERT_EQ(runs.run_count(), 8u) << "allocation " << n;
    ASSERT_EQ(runs.pinned_pages(), 40u) << "allocation " << n;
  }
  EXPECT_GE(failures, 2u);  // the output vector and the nodes
  runs.check_invariants();
  EXPECT_EQ(runs.users(3), 2u);
  EXPECT_EQ(runs.users(5), 1u);
}

}  // namespace
}  // namespace uiommufd::uapi
