// libFuzzer target over the /dev/iommu dispatcher: input bytes become a sequence of ioctls (fuzzed command
// numbers and structs, pointers aimed into a fuzzer-owned buffer, at nullptr or at an unmapped page),
// opens, closes of iommufds and of the access fds CREATE_ACCESS hands out, all through TestFdHost (no
// preload); now and then well-formed mock devices, HWPTs and device ops on ids earlier steps were given,
// so that the page-table commands (HWPT_ALLOC, GET_HW_INFO, HWPT_INVALIDATE) and the device test ops
// (MOCK_DOMAIN_FLAGS, MD_CHECK_IOTLB, DEV_CHECK_CACHE, PASID_*) have live objects to act on. Checked:
//   * after every step, every IOAS of every open context passes IoPagetable::check_invariants(); every
//     attachment of a device (its RID and a few PASIDs) names a live HWPT and keeps the PASID rule (with a
//     PASID attached, the RID's HWPT and the PASID's are PASID-capable); every nested HWPT's parent is a
//     user NEST_PARENT paging HWPT;
//   * after each input, once every fd is closed, no page is pinned and no accounting charge is left;
//   * throughout, the lock validator runs in abort mode: its first report ends the process.
// Any violation aborts, so libFuzzer reports it as a crash with the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testing/test_fd_host.h"

#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/pages/pages.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace {

using uiommufd::AccountMode;
using uiommufd::Device;
using uiommufd::HwPagetable;
using uiommufd::HwptNested;
using uiommufd::HwptPaging;
using uiommufd::Ioas;
using uiommufd::ObjectType;
using uiommufd::Pages;
using uiommufd::uapi::IommufdFile;
using uiommufd::uapi::OpenFile;
using uiommufd::uapi::testing::TestFdHost;

constexpr std::size_t kBufLen = 64 * 1024;
constexpr std::size_t kArgLen = 256;
constexpr std::uint32_t kMaxId = 32;
// PASIDs the test ops aim at (the RID, small ones, the mock's fake-error PASID 1024, the last of 20 bits,
// one beyond) and that the attachment invariant looks at.
constexpr std::uint32_t kPasids[] = {0, 1, 100, 1024, (1u << 20) - 1, 1u << 20};

// Memory the fuzzed pointers aim at. Created once: the engine's page identity is (Mm, address), and a
// stable buffer keeps pins comparable across inputs.
struct Arena {
  std::uint8_t* buf = nullptr;
  std::uint8_t* hole = nullptr;  // PROT_NONE: every access faults
  int memfd = -1;
  Arena() {
    buf = static_cast<std::uint8_t*>(
        mmap(nullptr, kBufLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    hole = static_cast<std::uint8_t*>(mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (buf == MAP_FAILED || hole == MAP_FAILED) abort();
    memfd = static_cast<int>(syscall(SYS_memfd_create, "uiommufd-fuzz", 0));
    if (memfd < 0 || ftruncate(memfd, kBufLen) != 0) abort();
  }
};

Arena& arena() {
  static Arena* a = new Arena();
  return *a;
}

// Commands worth aiming at; a random number is mixed in now and then.
constexpr unsigned long kCommands[] = {
    uiommufd::uapi::IOMMU_DESTROY,
    uiommufd::uapi::IOMMU_IOAS_ALLOC,
    uiommufd::uapi::IOMMU_IOAS_ALLOW_IOVAS,
    uiommufd::uapi::IOMMU_IOAS_COPY,
    uiommufd::uapi::IOMMU_IOAS_IOVA_RANGES,
    uiommufd::uapi::IOMMU_IOAS_MAP,
    uiommufd::uapi::IOMMU_IOAS_UNMAP,
    uiommufd::uapi::IOMMU_OPTION,
    uiommufd::uapi::IOMMU_VFIO_IOAS,
    uiommufd::uapi::IOMMU_IOAS_MAP_FILE,
    uiommufd::uapi::IOMMU_HWPT_ALLOC,
    uiommufd::uapi::IOMMU_GET_HW_INFO,
    uiommufd::uapi::IOMMU_HWPT_INVALIDATE,
    uiommufd::uapi::IOMMU_TEST_CMD,
    uiommufd::uapi::io_cmd(100),
    uiommufd::uapi::io_cmd(101),
    uiommufd::uapi::io_cmd(102),
    uiommufd::uapi::io_cmd(112),
    uiommufd::uapi::io_cmd(113),
    uiommufd::uapi::io_cmd(114),
};
// Typical struct sizes, so most calls get past the size rules.
constexpr std::uint32_t kSizes[] = {8, 12, 16, 24, 32, 40, 48, 52, 56, 68, 72, 80};

class Session {
 public:
  explicit Session(FuzzedDataProvider& in) : in_(in), host_(std::make_unique<TestFdHost>()) {}

  void run() {
    open_fd();
    for (int step = 0; step < 48 && in_.remaining_bytes() > 0; step++) {
      switch (in_.ConsumeIntegralInRange<int>(0, 11)) {
        case 0:
          open_fd();
          break;
        case 1:
          close_some_fd();
          break;
        case 2:
          alloc_ioas();
          break;
        case 3:
          create_access();
          break;
        case 4:
          mock_device();
          break;
        case 5:
          alloc_hwpt();
          break;
        case 6:
          device_op();
          break;
        default:
          fuzz_ioctl();
          break;
      }
      check_all_invariants();
    }
    // Dropping the host closes every fd: contexts tear down before this returns.
    fds_.clear();
    host_.reset();
  }

 private:
  void open_fd() {
    if (fds_.size() >= 4) return;
    int fd = host_->open_iommufd(in_.ConsumeBool());
    if (fd >= 0) fds_.push_back(fd);
  }

  // An iommufd or an access fd. Closing an iommufd while its accesses are open leaves the context alive
  // through them (each access holds its context's file), as in the kernel.
  void close_some_fd() {
    std::vector<int>& from = !access_fds_.empty() && (fds_.empty() || in_.ConsumeBool()) ? access_fds_ : fds_;
    if (from.empty()) return;
    std::size_t i = in_.ConsumeIntegralInRange<std::size_t>(0, from.size() - 1);
    host_->close(from[i]);
    from.erase(from.begin() + static_cast<long>(i));
  }

  // Well-formed IOAS_ALLOC and CREATE_ACCESS: fully random bytes rarely get both right in one input, and
  // the access paths (pins, unmap notifications, closes with pages pinned) need an IOAS and an access fd.
  void alloc_ioas() {
    int fd = pick_fd();
    if (fd < 0) return;
    std::uint32_t arg[3] = {12, 0, 0};
    if (host_->ioctl(fd, uiommufd::uapi::IOMMU_IOAS_ALLOC, arg) == 0) remember(ioas_ids_, arg[2]);
  }

  void create_access() {
    int fd = pick_fd();
    if (fd < 0) return;
    alignas(8) std::uint8_t arg[72] = {};
    put<std::uint32_t>(arg, 0, sizeof(arg));
    put<std::uint32_t>(arg, 4, 5);  // IOMMU_TEST_OP_CREATE_ACCESS
    put<std::uint32_t>(arg, 8, in_.ConsumeIntegralInRange<std::uint32_t>(1, 4));
    put<std::uint32_t>(arg, 20, in_.ConsumeBool() ? 1 : 0);  // MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES
    if (host_->ioctl(fd, uiommufd::uapi::IOMMU_TEST_CMD, arg) == 0) track_access(arg);
  }

  // Well-formed MOCK_DOMAIN_FLAGS (a PASID-capable or NO_DIRTY mock device on an IOAS or HWPT) and
  // HWPT_ALLOC (paging with flags and the mock's data, or nested on a parent): the PASID and nested paths
  // need a device with PASIDs, user HWPTs and a NEST_PARENT one, which random bytes seldom build.
  void mock_device() {
    int fd = pick_fd();
    if (fd < 0) return;
    alignas(8) std::uint8_t arg[72] = {};
    put<std::uint32_t>(arg, 0, sizeof(arg));
    put<std::uint32_t>(arg, 4, 12);  // IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS
    put<std::uint32_t>(arg, 8, in_.ConsumeBool() ? pick(ioas_ids_) : pick(hwpt_ids_));
    put<std::uint32_t>(arg, 28,
                       in_.PickValueInArray({0u, Device::kFlagPasid, Device::kFlagNoDirty,
                                             Device::kFlagPasid | Device::kFlagNoDirty}));
    if (host_->ioctl(fd, uiommufd::uapi::IOMMU_TEST_CMD, arg) != 0) return;
    std::uint32_t out[3];
    std::memcpy(out, arg + 16, sizeof(out));
    remember(stdev_ids_, out[0]);
    remember(hwpt_ids_, out[1]);
    remember(dev_ids_, out[2]);
  }

  void alloc_hwpt() {
    int fd = pick_fd();
    if (fd < 0) return;
    using namespace uiommufd;
    uapi::iommu_hwpt_alloc a{};
    a.size = sizeof(a);
    const bool nested = in_.ConsumeBool();
    a.dev_id = pick(dev_ids_);
    a.pt_id =
        nested ? pick(in_.ConsumeIntegralInRange<int>(0, 3) ? parent_ids_ : hwpt_ids_) : pick(ioas_ids_);
    // Flags that fit the kind, mostly: a nested HWPT takes only PASID (and FAULT_ID_VALID).
    if (in_.ConsumeIntegralInRange<int>(0, 3) == 0)
      a.flags = hwpt_flags();
    else if (nested)
      a.flags = in_.PickValueInArray({0u, std::uint32_t{kHwptAllocPasid}});
    else
      a.flags = in_.PickValueInArray({0u, std::uint32_t{kHwptAllocNestParent},
                                      std::uint32_t{kHwptAllocDirtyTracking}, std::uint32_t{kHwptAllocPasid},
                                      std::uint32_t{kHwptAllocNestParent | kHwptAllocPasid}});
    set_hwpt_data(&a.data_type, &a.data_len, &a.data_uptr);
    if (host_->ioctl(fd, uapi::IOMMU_HWPT_ALLOC, &a) != 0) return;
    remember(hwpt_ids_, a.out_hwpt_id);
    if (nested) remember(nested_ids_, a.out_hwpt_id);
    if (!nested && (a.flags & kHwptAllocNestParent)) remember(parent_ids_, a.out_hwpt_id);
  }

  // A well-formed device or nested-HWPT operation on ids the session was given: PASID attach, replace,
  // detach and check, MOCK_DOMAIN_REPLACE, an HWPT_INVALIDATE array of valid entries, MD_CHECK_IOTLB or
  // DEV_CHECK_CACHE.
  void device_op() {
    using namespace uiommufd;
    int fd = pick_fd();
    if (fd < 0) return;
    const int what = in_.ConsumeIntegralInRange<int>(0, 7);
    if (what == 5) {
      std::uint32_t entries[4][2];
      const std::uint32_t num = in_.ConsumeIntegralInRange<std::uint32_t>(1, 4);
      for (std::uint32_t i = 0; i < num; i++) {
        entries[i][0] = in_.ConsumeIntegralInRange<int>(0, 3) == 0 ? kTestInvalidateFlagAll : 0;
        entries[i][1] =
            in_.ConsumeIntegralInRange<std::uint32_t>(0, in_.ConsumeIntegralInRange<int>(0, 7) ? 3 : 4);
      }
      uapi::iommu_hwpt_invalidate inv{};
      inv.size = sizeof(inv);
      inv.hwpt_id = pick(nested_ids_);
      inv.data_uptr = reinterpret_cast<std::uintptr_t>(entries);
      inv.data_type = kHwptInvalidateDataSelftest;
      inv.entry_len = sizeof(entries[0]);
      inv.entry_num = num;
      host_->ioctl(fd, uapi::IOMMU_HWPT_INVALIDATE, &inv);
      return;
    }
    alignas(8) std::uint8_t arg[72] = {};
    put<std::uint32_t>(arg, 0, sizeof(arg));
    if (what >= 6) {
      put<std::uint32_t>(
          arg, 4, what == 6 ? uapi::IOMMU_TEST_OP_MD_CHECK_IOTLB : uapi::IOMMU_TEST_OP_DEV_CHECK_CACHE);
      put<std::uint32_t>(arg, 8, what == 6 ? pick(nested_ids_) : pick(dev_ids_));
      put<std::uint32_t>(arg, 16, in_.ConsumeIntegralInRange<std::uint32_t>(0, 4));
      put<std::uint32_t>(arg, 20,
                         in_.ConsumeBool() ? 0
                         : what == 6       ? kTestIotlbDefault
                                           : kTestDevCacheDefault);
      host_->ioctl(fd, uapi::IOMMU_TEST_CMD, arg);
      return;
    }
    put<std::uint32_t>(arg, 8, pick(stdev_ids_));
    const std::uint32_t pt = in_.ConsumeIntegralInRange<int>(0, 2) == 0 ? pick(ioas_ids_) : pick(hwpt_ids_);
    if (what == 4) {
      put<std::uint32_t>(arg, 4, uapi::IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE);
      put<std::uint32_t>(arg, 16, pt);
    } else {
      put<std::uint32_t>(arg, 4, uapi::IOMMU_TEST_OP_PASID_ATTACH + static_cast<std::uint32_t>(what));
      put<std::uint32_t>(arg, 16, in_.PickValueInArray(kPasids));
      // PASID_CHECK_HWPT: 0 asks whether the PASID is detached.
      put<std::uint32_t>(arg, 20, what == 3 && in_.ConsumeBool() ? 0 : pt);
    }
    host_->ioctl(fd, uapi::IOMMU_TEST_CMD, arg);
  }

  // Ids the well-formed steps got back (from any iommufd of the session), so that later steps name live
  // objects of the right kind far more often than chance would.
  void remember(std::vector<std::uint32_t>& ids, std::uint32_t id) {
    if (ids.size() < 16) ids.push_back(id);
  }
  std::uint32_t pick(const std::vector<std::uint32_t>& ids) {
    if (ids.empty() || in_.ConsumeIntegralInRange<int>(0, 7) == 0)
      return in_.ConsumeIntegralInRange<std::uint32_t>(0, 16);
    return ids[in_.ConsumeIntegralInRange<std::size_t>(0, ids.size() - 1)];
  }

  // HWPT_ALLOC flags: mostly valid combinations, sometimes anything.
  std::uint32_t hwpt_flags() {
    if (in_.ConsumeIntegralInRange<int>(0, 7) == 0) return in_.ConsumeIntegral<std::uint32_t>();
    return in_.ConsumeIntegralInRange<std::uint32_t>(0, 15);
  }

  // The driver data of HWPT_ALLOC: none, or IOMMU_HWPT_DATA_SELFTEST's {iotlb, pagetable_type} in this
  // session's own buffer (DEFAULT or HUGE, sometimes an unknown type or a short or long length), or a
  // pointer and length from the fuzzer.
  void set_hwpt_data(std::uint32_t* type, std::uint32_t* len, std::uint64_t* uptr) {
    switch (in_.ConsumeIntegralInRange<int>(0, 5)) {
      case 0:
        *type = 0;
        *len = 0;
        *uptr = 0;
        return;
      case 1:
        *type = in_.ConsumeBool() ? uiommufd::kHwptDataSelftest : in_.ConsumeIntegral<std::uint32_t>();
        *len = in_.ConsumeIntegralInRange<std::uint32_t>(0, 16);
        *uptr = pointer();
        return;
      default:
        hwpt_data_[0] =
            in_.ConsumeBool() ? uiommufd::kTestIotlbDefault : in_.ConsumeIntegral<std::uint32_t>();
        hwpt_data_[1] = in_.ConsumeIntegralInRange<std::uint32_t>(0, 2);
        hwpt_data_[2] = in_.ConsumeIntegralInRange<int>(0, 7) == 0 ? 1 : 0;  // a non-zero tail
        *type = uiommufd::kHwptDataSelftest;
        *len = in_.PickValueInArray({4u, 8u, 8u, 8u, 12u});
        *uptr = reinterpret_cast<std::uintptr_t>(hwpt_data_);
        return;
    }
  }

  // A buffer of `len` bytes the engine may write: in the arena (clamped to its end), the hole or null.
  std::uint64_t out_buffer(std::uint32_t* len) {
    const std::uint64_t p = pointer();
    const auto base = reinterpret_cast<std::uintptr_t>(arena().buf);
    if (p >= base && p<base + kBufLen&& * len> base + kBufLen - p)
      *len = static_cast<std::uint32_t>(base + kBufLen - p);
    return p;
  }

  void track_access(const std::uint8_t* arg) {
    std::int32_t afd = -1;
    std::memcpy(&afd, arg + 16, sizeof(afd));
    if (afd >= 0 && host_->lookup(afd)) access_fds_.push_back(afd);
  }

  int pick_fd() {
    if (fds_.empty()) return -1;
    return fds_[in_.ConsumeIntegralInRange<std::size_t>(0, fds_.size() - 1)];
  }

  // A pointer value for a pointer field: into the buffer (often page aligned), null, or the hole.
  std::uint64_t pointer() {
    Arena& a = arena();
    switch (in_.ConsumeIntegralInRange<int>(0, 7)) {
      case 0:
        return 0;
      case 1:
        return reinterpret_cast<std::uintptr_t>(a.hole) + in_.ConsumeIntegralInRange<int>(0, 4095);
      case 2:
        return reinterpret_cast<std::uintptr_t>(a.buf) +
               in_.ConsumeIntegralInRange<std::size_t>(0, kBufLen - 1);
      default:
        return reinterpret_cast<std::uintptr_t>(a.buf) +
               2048 * in_.ConsumeIntegralInRange<std::size_t>(0, 31);
    }
  }

  // A length: mostly small multiples of 2 KiB, sometimes anything.
  std::uint64_t length() {
    switch (in_.ConsumeIntegralInRange<int>(0, 5)) {
      case 0:
        return in_.ConsumeIntegral<std::uint64_t>();
      case 1:
        return in_.ConsumeIntegralInRange<std::uint64_t>(0, 9000);
      default:
        return 2048 * in_.ConsumeIntegralInRange<std::uint64_t>(1, 16);
    }
  }

  // An IOVA: low, inside the mock aperture, or anything.
  std::uint64_t iova() {
    switch (in_.ConsumeIntegralInRange<int>(0, 4)) {
      case 0:
        return in_.ConsumeIntegral<std::uint64_t>();
      case 1:
        return 2048 * in_.ConsumeIntegralInRange<std::uint64_t>(0, 64);
      default:
        return (1ULL << 24) + 2048 * in_.ConsumeIntegralInRange<std::uint64_t>(0, 64);
    }
  }

  std::uint32_t id() {
    switch (in_.ConsumeIntegralInRange<int>(0, 15)) {
      case 0:
      case 1:  // access ops take an fd in their id field
        return static_cast<std::uint32_t>(pick_fd());
      case 2:
      case 3:
      case 4:
      case 5:
      case 6:
        return in_.ConsumeIntegralInRange<std::uint32_t>(0, 8);
      case 7:
      case 8:
        return pick(ioas_ids_);
      case 9:
      case 10:
        return pick(stdev_ids_);
      case 11:
      case 12:
        return pick(dev_ids_);
      default:
        return pick(hwpt_ids_);
    }
  }

  template <typename T>
  void put(std::uint8_t* arg, std::size_t off, T v) {
    std::memcpy(arg + off, &v, sizeof(v));
  }

  void fuzz_ioctl() {
    int fd = pick_fd();
    if (fd < 0) return;
    alignas(8) std::uint8_t arg[kArgLen] = {};
    unsigned long cmd;
    if (in_.ConsumeIntegralInRange<int>(0, 15) == 0)
      cmd = in_.ConsumeIntegral<std::uint32_t>();
    else
      cmd = in_.PickValueInArray(kCommands);
    const unsigned nr = cmd & 0xff;

    // VFIO_CHECK_EXTENSION / SET_IOMMU take a value, not a pointer.
    if (cmd == uiommufd::uapi::io_cmd(101) || cmd == uiommufd::uapi::io_cmd(102) ||
        cmd == uiommufd::uapi::io_cmd(100)) {
      host_->ioctl(fd, cmd, reinterpret_cast<const void*>(in_.ConsumeIntegralInRange<std::uintptr_t>(0, 12)));
      return;
    }

    // Start from fuzzed bytes, then give the fields that matter plausible values.
    std::vector<std::uint8_t> raw =
        in_.ConsumeBytes<std::uint8_t>(in_.ConsumeIntegralInRange<std::size_t>(0, 80));
    if (!raw.empty()) std::memcpy(arg, raw.data(), raw.size());
    const bool shape = in_.ConsumeIntegralInRange<int>(0, 7) != 0;
    std::uint32_t size = in_.PickValueInArray(kSizes);
    if (in_.ConsumeIntegralInRange<int>(0, 15) == 0)
      size = in_.ConsumeIntegralInRange<std::uint32_t>(0, kArgLen);
    if (shape) shape_struct(nr, arg, size);

    const void* p = arg;
    switch (in_.ConsumeIntegralInRange<int>(0, 31)) {
      case 0:
        p = nullptr;
        break;
      case 1:
        p = arena().hole;
        break;
      default:
        break;
    }
    const int r = host_->ioctl(fd, cmd, p);
    // A new access fd (IOMMU_TEST_OP_CREATE_ACCESS writes it at offset 16): tracked so that later steps
    // use it and close it.
    std::uint32_t op = 0;
    std::memcpy(&op, arg + 4, sizeof(op));
    if (r == 0 && p == arg && nr == uiommufd::uapi::kNrTestCmd && op == 5) track_access(arg);
  }

  void shape_struct(unsigned nr, std::uint8_t* arg, std::uint32_t size) {
    using namespace uiommufd::uapi;
    put<std::uint32_t>(arg, 0, size);
    const std::uint32_t rw = Ioas::kReadable | (in_.ConsumeBool() ? Ioas::kWriteable : 0);
    const std::uint32_t fixed = in_.ConsumeBool() ? Ioas::kFixedIova : 0;
    switch (nr) {
      case kNrDestroy:
      case kNrIoasAlloc:
        put<std::uint32_t>(arg, 4, nr == kNrDestroy ? id() : 0);
        break;
      case kNrIoasAllowIovas:
      case kNrIoasIovaRanges: {
        put<std::uint32_t>(arg, 4, id());
        put<std::uint32_t>(arg, 8, in_.ConsumeIntegralInRange<std::uint32_t>(0, 4));
        put<std::uint32_t>(arg, 12, 0);
        // The range array lives in the buffer: fill it with fuzzed but ordered ranges.
        std::uint64_t ptr = pointer();
        put<std::uint64_t>(arg, 16, ptr);
        Arena& a = arena();
        auto base = reinterpret_cast<std::uintptr_t>(a.buf);
        if (nr == kNrIoasAllowIovas && ptr >= base && ptr + 64 <= base + kBufLen) {
          for (int i = 0; i < 4; i++) {
            std::uint64_t s = iova(), l = s + length();
            std::memcpy(reinterpret_cast<void*>(ptr + 16 * i), &s, 8);
            std::memcpy(reinterpret_cast<void*>(ptr + 16 * i + 8), &l, 8);
          }
        }
        break;
      }
      case kNrIoasCopy:
        put<std::uint32_t>(arg, 4, rw | fixed);
        put<std::uint32_t>(arg, 8, id());
        put<std::uint32_t>(arg, 12, id());
        put<std::uint64_t>(arg, 16, length());
        put<std::uint64_t>(arg, 24, iova());
        put<std::uint64_t>(arg, 32, iova());
        break;
      case kNrIoasMap:
        put<std::uint32_t>(arg, 4, rw | fixed);
        put<std::uint32_t>(arg, 8, id());
        put<std::uint32_t>(arg, 12, 0);
        put<std::uint64_t>(arg, 16, pointer());
        put<std::uint64_t>(arg, 24, length());
        put<std::uint64_t>(arg, 32, iova());
        break;
      case kNrIoasMapFile:
        put<std::uint32_t>(arg, 4, rw | fixed);
        put<std::uint32_t>(arg, 8, id());
        put<std::int32_t>(arg, 12, in_.ConsumeBool() ? arena().memfd : -1);
        put<std::uint64_t>(arg, 16, 2048 * in_.ConsumeIntegralInRange<std::uint64_t>(0, 40));
        put<std::uint64_t>(arg, 24, length());
        put<std::uint64_t>(arg, 32, iova());
        break;
      case kNrIoasUnmap:
        put<std::uint32_t>(arg, 4, id());
        if (in_.ConsumeBool()) {
          put<std::uint64_t>(arg, 8, 0);
          put<std::uint64_t>(arg, 16, ~0ULL);
        } else {
          put<std::uint64_t>(arg, 8, iova());
          put<std::uint64_t>(arg, 16, length());
        }
        break;
      case kNrOption:
        put<std::uint32_t>(arg, 4, in_.ConsumeIntegralInRange<std::uint32_t>(0, 2));
        put<std::uint16_t>(arg, 8, in_.ConsumeIntegralInRange<std::uint16_t>(0, 2));
        put<std::uint16_t>(arg, 10, 0);
        put<std::uint32_t>(arg, 12, id());
        put<std::uint64_t>(arg, 16, in_.ConsumeIntegralInRange<std::uint64_t>(0, 2));
        break;
      case kNrVfioIoas:
        put<std::uint32_t>(arg, 4, id());
        put<std::uint16_t>(arg, 8, in_.ConsumeIntegralInRange<std::uint16_t>(0, 3));
        put<std::uint16_t>(arg, 10, 0);
        break;
      case kNrHwptAlloc:  // size, flags, dev_id, pt_id, out, reserved, data_type, data_len, data_uptr,
                          // fault_id
        put<std::uint32_t>(arg, 4, hwpt_flags());
        put<std::uint32_t>(arg, 8, id());
        put<std::uint32_t>(arg, 12, id());
        put<std::uint32_t>(arg, 20, 0);
        {
          std::uint32_t type = 0, len = 0;
          std::uint64_t uptr = 0;
          set_hwpt_data(&type, &len, &uptr);
          put<std::uint32_t>(arg, 24, type);
          put<std::uint32_t>(arg, 28, len);
          put<std::uint64_t>(arg, 32, uptr);
        }
        put<std::uint32_t>(arg, 40, id());
        break;
      case kNrGetHwInfo: {  // size, flags, dev_id, data_len, data_uptr, data_type, pasid log2, reserved, caps
        put<std::uint32_t>(arg, 4,
                           in_.ConsumeIntegralInRange<int>(0, 7) == 0
                               ? in_.ConsumeIntegral<std::uint32_t>()
                               : in_.ConsumeIntegralInRange<std::uint32_t>(0, 1));
        put<std::uint32_t>(arg, 8, id());
        std::uint32_t len = in_.ConsumeIntegralInRange<std::uint32_t>(0, 64);
        const std::uint64_t uptr = out_buffer(&len);
        put<std::uint32_t>(arg, 12, len);
        put<std::uint64_t>(arg, 16, uptr);
        put<std::uint32_t>(arg, 24, in_.PickValueInArray({0u, uiommufd::kHwInfoTypeSelftest, 1u}));
        put<std::uint32_t>(arg, 28, 0);
        break;
      }
      case kNrHwptInvalidate: {  // size, hwpt_id, data_uptr, data_type, entry_len, entry_num, reserved
        put<std::uint32_t>(arg, 4, id());
        std::uint32_t num = in_.ConsumeIntegralInRange<std::uint32_t>(0, 4);
        if (in_.ConsumeIntegralInRange<int>(0, 15) == 0) num = in_.ConsumeIntegral<std::uint32_t>();
        const std::uint32_t entry_len = in_.PickValueInArray({8u, 8u, 8u, 0u, 4u, 12u, 16u});
        // The entries live in the arena: {flags, iotlb_id}, mostly valid.
        const std::uint64_t ptr = pointer();
        const auto base = reinterpret_cast<std::uintptr_t>(arena().buf);
        if (ptr >= base && ptr + 4 * 8 <= base + kBufLen) {
          for (std::uint32_t i = 0; i < 4; i++) {
            const std::uint32_t entry[2] = {in_.ConsumeIntegralInRange<std::uint32_t>(0, 2),
                                            in_.ConsumeIntegralInRange<std::uint32_t>(0, 4)};
            std::memcpy(reinterpret_cast<void*>(ptr + 8 * i), entry, sizeof(entry));
          }
        }
        put<std::uint64_t>(arg, 8, ptr);
        put<std::uint32_t>(
            arg, 16,
            in_.ConsumeBool() ? uiommufd::kHwptInvalidateDataSelftest : in_.ConsumeIntegral<std::uint32_t>());
        put<std::uint32_t>(arg, 20, entry_len);
        put<std::uint32_t>(arg, 24, num);
        put<std::uint32_t>(arg, 28, 0);
        break;
      }
      case kNrTestCmd:
        shape_test_cmd(arg);
        break;
      case 113:  // VFIO_IOMMU_MAP_DMA: argsz, flags, vaddr, iova, size
        put<std::uint32_t>(arg, 0, 32);
        put<std::uint32_t>(arg, 4, in_.ConsumeIntegralInRange<std::uint32_t>(0, 3));
        put<std::uint64_t>(arg, 8, pointer());
        put<std::uint64_t>(arg, 16, iova());
        put<std::uint64_t>(arg, 24, length());
        break;
      case 114:  // VFIO_IOMMU_UNMAP_DMA: argsz, flags, iova, size
        put<std::uint32_t>(arg, 0, 24);
        put<std::uint32_t>(arg, 4, in_.ConsumeBool() ? 2 : 0);
        put<std::uint64_t>(arg, 8, iova());
        put<std::uint64_t>(arg, 16, length());
        break;
      case 112:  // VFIO_IOMMU_GET_INFO: argsz
        put<std::uint32_t>(arg, 0, in_.ConsumeIntegralInRange<std::uint32_t>(0, kArgLen));
        break;
      default:
        break;
    }
  }

  void shape_test_cmd(std::uint8_t* arg) {
    const std::uint32_t op = in_.ConsumeIntegralInRange<std::uint32_t>(1, 21);
    put<std::uint32_t>(arg, 4, op);
    put<std::uint32_t>(arg, 8, id());
    put<std::uint32_t>(arg, 12, 0);
    switch (op) {
      case 1:  // ADD_RESERVED
        put<std::uint64_t>(arg, 16, iova());
        put<std::uint64_t>(arg, 24, length());
        break;
      case 3:  // MD_CHECK_MAP
        put<std::uint64_t>(arg, 16, iova());
        put<std::uint64_t>(arg, 24, length());
        put<std::uint64_t>(arg, 32, pointer());
        break;
      case 4:  // MD_CHECK_REFS
        put<std::uint64_t>(arg, 16, length());
        put<std::uint64_t>(arg, 24, pointer());
        put<std::uint32_t>(arg, 32, in_.ConsumeIntegralInRange<std::uint32_t>(0, 2));
        break;
      case 5:  // CREATE_ACCESS
        put<std::uint32_t>(arg, 20, in_.ConsumeIntegralInRange<std::uint32_t>(0, 1));
        break;
      case 6:  // DESTROY_ACCESS_PAGES
        put<std::uint32_t>(arg, 8, static_cast<std::uint32_t>(pick_fd_or_access()));
        put<std::uint32_t>(arg, 16, in_.ConsumeIntegralInRange<std::uint32_t>(0, 4));
        break;
      case 7:  // ACCESS_PAGES
        put<std::uint32_t>(arg, 8, static_cast<std::uint32_t>(pick_fd_or_access()));
        put<std::uint32_t>(arg, 16, in_.ConsumeIntegralInRange<std::uint32_t>(0, 1));
        put<std::uint64_t>(arg, 24, iova());
        put<std::uint64_t>(arg, 32, length());
        put<std::uint64_t>(arg, 40, in_.ConsumeBool() ? 0 : pointer());
        break;
      case 8:  // ACCESS_RW
        put<std::uint32_t>(arg, 8, static_cast<std::uint32_t>(pick_fd_or_access()));
        put<std::uint64_t>(arg, 16, iova());
        put<std::uint64_t>(arg, 24, in_.ConsumeIntegralInRange<std::uint64_t>(0, 9000));
        put<std::uint64_t>(arg, 32, pointer());
        put<std::uint32_t>(arg, 40, in_.ConsumeIntegralInRange<std::uint32_t>(0, 5));
        break;
      case 9:  // SET_TEMP_MEMORY_LIMIT
        put<std::uint32_t>(arg, 16, in_.ConsumeIntegralInRange<std::uint32_t>(0, 70000));
        break;
      case 10:  // MOCK_DOMAIN_REPLACE: pt_id
        put<std::uint32_t>(arg, 16, id());
        break;
      case 11:  // ACCESS_REPLACE_IOAS: ioas_id
        put<std::uint32_t>(arg, 8, static_cast<std::uint32_t>(pick_fd_or_access()));
        put<std::uint32_t>(arg, 16, id());
        break;
      case 12:  // MOCK_DOMAIN_FLAGS: three outputs, then dev_flags (bits 0 and 2 known)
        put<std::uint32_t>(arg, 28, in_.ConsumeIntegralInRange<std::uint32_t>(0, 7));
        break;
      case 14:  // MD_CHECK_IOTLB: id, iotlb
      case 16:  // DEV_CHECK_CACHE: id, cache
        put<std::uint32_t>(arg, 16, in_.ConsumeIntegralInRange<std::uint32_t>(0, 4));
        put<std::uint32_t>(
            arg, 20, in_.PickValueInArray({0u, uiommufd::kTestIotlbDefault, uiommufd::kTestDevCacheDefault}));
        break;
      case 18:  // PASID_ATTACH: pasid, pt_id
      case 19:  // PASID_REPLACE
      case 20:  // PASID_DETACH: pasid
      case 21:  // PASID_CHECK_HWPT: pasid, hwpt_id (0: detached)
        put<std::uint32_t>(arg, 16,
                           in_.ConsumeIntegralInRange<int>(0, 7) == 0 ? in_.ConsumeIntegral<std::uint32_t>()
                                                                      : in_.PickValueInArray(kPasids));
        put<std::uint32_t>(arg, 20, id());
        break;
      default:
        break;
    }
  }

  // Mostly an open access fd CREATE_ACCESS handed out; sometimes a nearby number that
  // may be an iommufd, a closed fd or nothing.
  int pick_fd_or_access() {
    if (!access_fds_.empty() && in_.ConsumeIntegralInRange<int>(0, 3) != 0)
      return access_fds_[in_.ConsumeIntegralInRange<std::size_t>(0, access_fds_.size() - 1)];
    int base = fds_.empty() ? 3 : fds_.front();
    return base + in_.ConsumeIntegralInRange<int>(-2, 8);
  }

  [[noreturn]] static void violated(const char* what, std::uint32_t id, std::uint32_t detail = 0) {
    std::fprintf(stderr, "invariant violated: %s (object %u, %u)\n", what, id, detail);
    abort();
  }

  void check_all_invariants() {
    for (int fd : fds_) {
      std::shared_ptr<OpenFile> f = host_->lookup(fd);
      if (!f || f->kind() != OpenFile::Kind::kIommufd) continue;
      auto& ctx = static_cast<IommufdFile&>(*f).context();
      for (std::uint32_t i = 1; i <= kMaxId; i++) {
        auto obj = ctx.get<uiommufd::Object>(i, ObjectType::kAny);
        if (!obj.ok()) continue;
        switch ((*obj)->type()) {
          case ObjectType::kIoas: {
            std::string problem = static_cast<Ioas&>(**obj).iopt().check_invariants();
            if (!problem.empty()) {
              std::fprintf(stderr, "invariant violated in IOAS %u: %s\n", i, problem.c_str());
              abort();
            }
            break;
          }
          case ObjectType::kDevice:
            check_device(ctx, i, static_cast<Device&>(**obj));
            break;
          case ObjectType::kHwptNested: {
            HwptPaging& parent = static_cast<HwptNested&>(**obj).parent();
            if (!parent.nest_parent() || parent.auto_domain())
              violated("nested HWPT on a non-NEST_PARENT parent", i);
            auto p = ctx.get<uiommufd::Object>(parent.id(), ObjectType::kHwptPaging);
            if (!p.ok() || p->get() != static_cast<uiommufd::Object*>(&parent))
              violated("nested HWPT's parent not live", i);
            break;
          }
          default:
            break;
        }
      }
    }
  }

  // Each attachment names a live HWPT; a PASID's HWPT is PASID-capable, and so is the RID's while a PASID
  // is attached (iommufd's pasid_compat rule, which every attach and replace checks).
  void check_device(uiommufd::Context& ctx, std::uint32_t id, Device& dev) {
    bool pasid_attached = false;
    for (std::uint32_t pasid : kPasids) {
      const std::uint32_t hwpt_id = dev.hwpt_id(pasid);
      if (hwpt_id == 0) continue;
      auto h = ctx.get<uiommufd::Object>(hwpt_id, ObjectType::kAny);
      if (!h.ok() || ((*h)->type() != ObjectType::kHwptPaging && (*h)->type() != ObjectType::kHwptNested))
        violated("device attached to something that is not a live HWPT", id, pasid);
      if (pasid != Device::kNoPasid) {
        pasid_attached = true;
        if (!static_cast<HwPagetable&>(**h).pasid_compat()) violated("PASID on a non-PASID HWPT", id, pasid);
      }
    }
    if (!pasid_attached) return;
    if (const std::uint32_t rid = dev.hwpt_id(Device::kNoPasid)) {
      auto h = ctx.get<HwPagetable>(rid, ObjectType::kAny);
      if (h.ok() && !(*h)->pasid_compat()) violated("RID on a non-PASID HWPT while a PASID is attached", id);
    }
  }

  FuzzedDataProvider& in_;
  std::unique_ptr<TestFdHost> host_;
  std::vector<int> fds_;         // open iommufds
  std::vector<int> access_fds_;  // open access fds
  std::uint32_t hwpt_data_[4] = {};  // HWPT_ALLOC's driver data, when well-formed
  std::vector<std::uint32_t> ioas_ids_, stdev_ids_, dev_ids_, hwpt_ids_, parent_ids_, nested_ids_;
};

struct Baseline {
  std::uint64_t pinned, user, mm, pinned_vm;
};

Baseline snapshot() {
  return {Pages::total_pinned_pages(), uiommufd::account_locked_pages(AccountMode::kUser),
          uiommufd::account_locked_pages(AccountMode::kMm), uiommufd::account_pinned_vm()};
}

}  // namespace

// The validator aborts on its first report, so a lock-order problem is a crash libFuzzer keeps the input
// of (an explicit UIOMMUFD_LOCKDEP in the environment still wins).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (!std::getenv("UIOMMUFD_LOCKDEP")) uiommufd::lockdep::set_mode(uiommufd::lockdep::Mode::kAbort);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  arena();
  const Baseline before = snapshot();
  {
    FuzzedDataProvider in(data, size);
    Session(in).run();
  }
  const Baseline after = snapshot();
  if (after.pinned != before.pinned || after.user != before.user || after.mm != before.mm ||
      after.pinned_vm != before.pinned_vm) {
    std::fprintf(stderr,
                 "leak after closing every fd: pinned %llu -> %llu, user %llu -> %llu, mm %llu -> %llu, "
                 "pinned_vm %llu -> %llu\n",
                 (unsigned long long)before.pinned, (unsigned long long)after.pinned,
                 (unsigned long long)before.user, (unsigned long long)after.user,
                 (unsigned long long)before.mm, (unsigned long long)after.mm,
                 (unsigned long long)before.pinned_vm, (unsigned long long)after.pinned_vm);
    abort();
  }
  return 0;
}
