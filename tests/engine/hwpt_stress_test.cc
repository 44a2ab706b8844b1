// Concurrency stress of HWPTs (docs/semantics.md#hwpt, #attach; docs/locking.md): for a bounded time, threads
//   - allocate user paging HWPTs (flags 0, NEST_PARENT, PASID, NEST_PARENT|PASID, DIRTY_TRACKING) on two
//     IOASes and destroy them (Context::destroy, EBUSY while anything uses them);
//   - allocate nested HWPTs on those paging HWPTs and destroy them;
//   - move mock devices (two with PASIDs, one without dirty tracking) and a software device between the
//     IOASes (automatic HWPTs), automatic HWPTs by id, user paging HWPTs and nested HWPTs: attach, replace,
//     detach of the RID, and of PASIDs;
//   - invalidate nested HWPTs' IOTLBs (single entries and ALL) while others check the IOTLB values;
//   - map and unmap on both IOASes, so that every domain is filled and emptied under the moves;
//   - query the devices' hardware info and cache.
//
// The HWPT registry: every slot holds one word, id | properties | generation, that only the slot's owner
// thread writes (the nested slots' invalidated-entries mask excepted, which invalidators set by CAS). The
// owner clears the word before it destroys the object and puts it back when the destroy is refused, so an
// operation that read the same word before and after itself ran against that very object, alive all along
// (ids are reused, so without the word's generation a stale id might name another object). Such a *stable*
// operation is judged strictly; one whose word changed may have met a destroyed, dying or reused id.
//
// At the end, after detaching every device and destroying every HWPT: the object count is back to the
// start, the IOASes and devices hold no extra users, nothing is pinned or charged, the IOAS invariants hold,
// and the lock validator reported nothing.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "stress_baseline.h"

#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd {
namespace {

constexpr std::uint32_t kMapFlags = Ioas::kReadable | Ioas::kWriteable | Ioas::kFixedIova;
// The mock domain's aperture starts here, so every area is inside every domain's aperture.
constexpr std::uint64_t kIova = 0x1000000;
constexpr std::uint64_t kSlots = 16;
constexpr std::uint64_t kSlotPages = 4;
constexpr std::uint64_t kLen = kSlots * kSlotPages * kPageSize;
constexpr int kPagingSlots = 8;  // two owner threads, four slots each
constexpr int kNestedSlots = 6;
constexpr std::uint32_t kPasids[] = {1, 2, 3};  // never 1024, the mock's fake-error PASID
constexpr auto kRunTime = std::chrono::milliseconds(1500);

struct DeviceSpec {
  Device::Kind kind;
  std::uint32_t flags;
};
constexpr DeviceSpec kDeviceSpecs[] = {
    {Device::Kind::kMock, 0},
    {Device::Kind::kMock, Device::kFlagPasid},
    {Device::Kind::kMock, Device::kFlagPasid},
    {Device::Kind::kMock, Device::kFlagNoDirty},
    {Device::Kind::kSoftware, 0},
};
constexpr int kDevices = sizeof(kDeviceSpecs) / sizeof(kDeviceSpecs[0]);
bool is_software(int d) { return kDeviceSpecs[d].kind == Device::Kind::kSoftware; }
bool has_pasids(int d) { return kDeviceSpecs[d].flags & Device::kFlagPasid; }
bool no_dirty(int d) { return kDeviceSpecs[d].flags & Device::kFlagNoDirty; }

// Slot words. Bits 0-31: the id (0: empty); bits 37-63: a generation unique to the object.
constexpr int kGenShift = 37;
std::uint32_t id_of(std::uint64_t w) { return static_cast<std::uint32_t>(w); }
std::uint64_t gen_of(std::uint64_t w) { return w >> kGenShift; }
// Paging words: the allocation's flags and owner.
constexpr std::uint64_t kPgNestParent = 1ull << 32;
constexpr std::uint64_t kPgPasid = 1ull << 33;
constexpr std::uint64_t kPgDirty = 1ull << 34;
constexpr std::uint64_t kPgSoftware = 1ull << 35;  // allocated for the software device: its driver owns it
// Nested words: bits 32-35 the IOTLB entries known invalidated, bit 36 the PASID flag.
constexpr int kNsMaskShift = 32;
constexpr std::uint64_t kNsMask = 0xfull << kNsMaskShift;
constexpr std::uint64_t kNsPasid = 1ull << 36;
std::uint32_t invalidated_of(std::uint64_t w) {
  return static_cast<std::uint32_t>((w & kNsMask) >> kNsMaskShift);
}
bool same_nested(std::uint64_t a, std::uint64_t b) { return (a & ~kNsMask) == (b & ~kNsMask); }
// The IOTLB value a nested HWPT of generation g starts with: never 0 (what invalidation writes), and
// different for every object, so that a value read from the wrong object is caught.
std::uint32_t iotlb_value(std::uint64_t gen) {
  return 0x80000000u | static_cast<std::uint32_t>(gen & 0x7fffffff);
}

// struct iommu_hwpt_selftest and struct iommu_hwpt_invalidate_selftest (iommufd_test.h), in this
// process's memory, which is what the engine's copy_from_user reads.
struct HwptSelftest {
  std::uint32_t iotlb;
  std::uint32_t pagetable_type;
};
struct InvalidateSelftest {
  std::uint32_t flags;
  std::uint32_t iotlb_id;
};

std::uint64_t uptr_of(const void* p) { return reinterpret_cast<std::uint64_t>(p); }

struct Stats {
  std::atomic<long> paging_alloc{0}, paging_refused{0}, paging_destroy{0}, paging_busy{0};
  std::atomic<long> nested_alloc{0}, nested_refused{0}, nested_destroy{0}, nested_busy{0};
  std::atomic<long> attach_ok{0}, replace_ok{0}, move_enoent{0}, move_einval{0}, move_ebusy{0};
  std::atomic<long> detach_ok{0}, detach_einval{0};
  std::atomic<long> pasid_attach_ok{0}, pasid_replace_ok{0}, pasid_detach{0}, pasid_refused{0};
  std::atomic<long> nested_attach_ok{0}, user_paging_attach_ok{0}, auto_by_id_ok{0};
  std::atomic<long> inval_ok{0}, inval_unstable{0}, inval_all{0};
  std::atomic<long> check_ok{0}, check_zero{0}, check_unstable{0};
  std::atomic<long> map_ok{0}, map_eexist{0}, unmap_ok{0}, unmap_enoent{0}, unmap_ebusy{0};
  std::atomic<long> hw_info{0};
  long total() const {
    return paging_alloc + paging_refused + paging_destroy + paging_busy + nested_alloc + nested_refused +
           nested_destroy + nested_busy + attach_ok + replace_ok + move_enoent + move_einval + move_ebusy +
           detach_ok + detach_einval + pasid_attach_ok + pasid_replace_ok + pasid_detach + pasid_refused +
           inval_ok + inval_unstable + check_ok + check_unstable + map_ok + map_eexist + unmap_ok +
           unmap_enoent + unmap_ebusy + hw_info;
  }
};

// Where a move goes.
struct Target {
  enum Kind { kIoasTarget, kPaging, kNested, kAutoById, kNotAPageTable } kind;
  std::uint32_t id;
  const std::atomic<std::uint64_t>* slot;  // kPaging, kNested: the registry word read as `word`
  std::uint64_t word;
};

TEST(HwptStressTest, AllocDestroyAttachReplacePasidInvalidateMapUnmapKeepInvariantsUnderTheLockValidator) {
  const StressBaseline baseline;

  char* buf[2];
  for (char*& b : buf) {
    b = static_cast<char*>(mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(b, MAP_FAILED);
    std::memset(b, 0x5a, kLen);
  }
  auto uptr = [&](int i, std::uint64_t off) { return reinterpret_cast<std::uint64_t>(buf[i]) + off; };

  std::unique_ptr<Context> ctx = std::move(*Context::create());
  std::uint32_t ioas_id[2];
  ObjectRef<Ioas> ioas[2];
  for (int i = 0; i < 2; ++i) {
    ioas_id[i] = *Ioas::create(*ctx);
    ioas[i] = std::move(*ctx->get<Ioas>(ioas_id[i], ObjectType::kIoas));
    for (std::uint64_t s = 0; s < kSlots; ++s) {
      std::uint64_t iova = kIova + s * kSlotPages * kPageSize;
      ASSERT_TRUE(
          ioas[i]->map(uptr(i, s * kSlotPages * kPageSize), kSlotPages * kPageSize, &iova, kMapFlags).ok());
    }
  }
  std::uint32_t dev_id[kDevices];
  ObjectRef<Device> dev[kDevices];
  for (int d = 0; d < kDevices; ++d) {
    auto id = Device::create(*ctx, kDeviceSpecs[d].kind, kDeviceSpecs[d].flags);
    ASSERT_TRUE(id.ok()) << id.status().to_string();
    dev_id[d] = *id;
    dev[d] = std::move(*ctx->get<Device>(dev_id[d], ObjectType::kDevice));
  }
  const std::size_t objects_at_start = ctx->object_count();
  const std::uint32_t ioas_users_at_start[2] = {ioas[0]->users(), ioas[1]->users()};

  std::array<std::atomic<std::uint64_t>, kPagingSlots> paging{};
  std::array<std::atomic<std::uint64_t>, kNestedSlots> nested{};
  // The last automatic HWPT id a device got from each IOAS: targets by id, possibly long gone or reused.
  std::atomic<std::uint32_t> auto_id[2] = {0, 0};
  std::atomic<std::uint64_t> next_gen{1};

  Stats st;
  std::atomic<long> failures{0};
  auto fail = [&](const std::string& what) {
    if (failures.fetch_add(1) < 30) ADD_FAILURE() << what;
  };
  auto str = [](const Status& s) { return s.ok() ? std::string("ok") : s.to_string(); };

  const auto start_time = std::chrono::steady_clock::now();
  const auto deadline = start_time + kRunTime;
  auto running = [&] { return std::chrono::steady_clock::now() < deadline; };
  auto nap = [](std::mt19937_64& rng, unsigned max_us) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % max_us));
  };

  // ---- user paging HWPTs: allocate and destroy ----
  // alloc: the device and IOAS always exist, so the outcome is decided by the arguments alone: EOPNOTSUPP
  //   for any flag on the software device (its driver has no domain_alloc_paging_flags) and for
  //   DIRTY_TRACKING on the NO_DIRTY device; otherwise it must succeed (add_domain cannot fail: every area
  //   is inside the mock aperture and aligned to both granules).
  // destroy (Context::destroy): ok, or EBUSY while a device or PASID is attached, a nested HWPT sits on it,
  //   or another thread's operation holds it (a move or nested allocation that looked it up). ENOENT never:
  //   only the owner destroys its slot's object.
  constexpr std::uint32_t kPagingFlagChoices[] = {0, kHwptAllocNestParent, kHwptAllocPasid,
                                                  kHwptAllocNestParent | kHwptAllocPasid,
                                                  kHwptAllocDirtyTracking};
  auto paging_owner = [&](unsigned seed, int first_slot) {
    std::mt19937_64 rng(seed);
    while (running()) {
      std::atomic<std::uint64_t>& slot = paging[first_slot + rng() % (kPagingSlots / 2)];
      const std::uint64_t w = slot.load();
      if (w == 0) {
        const int d = static_cast<int>(rng() % kDevices);
        HwptAllocArgs a;
        a.flags = kPagingFlagChoices[rng() % std::size(kPagingFlagChoices)];
        a.dev_id = dev_id[d];
        a.pt_id = ioas_id[rng() % 2];
        const bool refused =
            (is_software(d) && a.flags) || ((a.flags & kHwptAllocDirtyTracking) && no_dirty(d));
        Result<std::uint32_t> r = HwPagetable::alloc(*ctx, a);
        if (!r.ok()) {
          if (refused && r.error() == EOPNOTSUPP)
            st.paging_refused.fetch_add(1, std::memory_order_relaxed);
          else
            fail("paging alloc flags " + std::to_string(a.flags) + " dev " + std::to_string(d) + ": " +
                 str(r.status()));
        } else if (refused) {
          fail("paging alloc flags " + std::to_string(a.flags) + " dev " + std::to_string(d) + " succeeded");
          (void)ctx->destroy(*r);
        } else {
          std::uint64_t nw = *r | (next_gen.fetch_add(1) << kGenShift);
          if (a.flags & kHwptAllocNestParent) nw |= kPgNestParent;
          if (a.flags & kHwptAllocPasid) nw |= kPgPasid;
          if (a.flags & kHwptAllocDirtyTracking) nw |= kPgDirty;
          if (is_software(d)) nw |= kPgSoftware;
          slot.store(nw);
          st.paging_alloc.fetch_add(1, std::memory_order_relaxed);
        }
      } else {
        const std::uint64_t saved = slot.exchange(0);
        Status s = ctx->destroy(id_of(saved));
        if (s.ok()) {
          st.paging_destroy.fetch_add(1, std::memory_order_relaxed);
        } else {
          slot.store(saved);
          if (s.error() == EBUSY)
            st.paging_busy.fetch_add(1, std::memory_order_relaxed);
          else
            fail("paging destroy: " + str(s));
        }
      }
      nap(rng, 300);
    }
  };

  // ---- nested HWPTs: allocate on a paging slot's HWPT and destroy ----
  // alloc with a mock device: ok on a NEST_PARENT parent of the mock driver; EINVAL when the parent is not
  //   one (no NEST_PARENT, the software driver's, an automatic HWPT that reused the id) or is gone (a failed
  //   lookup of pt_id is EINVAL in the kernel's iommufd_hwpt_alloc()). With a stable parent word the
  //   outcome is exact. With the software device: EOPNOTSUPP (no domain_alloc_nested) once the parent is
  //   found to be a paging HWPT, EINVAL when it is gone or not a paging HWPT.
  // destroy: ok, or EBUSY while a device or PASID is attached or an invalidation, IOTLB check, or move
  //   holds it.
  auto nested_owner = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      std::atomic<std::uint64_t>& slot = nested[rng() % kNestedSlots];
      const std::uint64_t w = slot.load();
      if (w == 0) {
        const std::atomic<std::uint64_t>& parent = paging[rng() % kPagingSlots];
        const std::uint64_t p1 = parent.load();
        if (p1 == 0) {
          nap(rng, 100);
          continue;
        }
        int d = static_cast<int>(rng() % (kDevices - 1));  // a mock device
        if (rng() % 16 == 0) d = kDevices - 1;             // now and then the software one
        const std::uint64_t gen = next_gen.fetch_add(1);
        const HwptSelftest cfg{iotlb_value(gen), kMockIommuptDefault};
        HwptAllocArgs a;
        a.flags = rng() % 2 ? std::uint32_t{kHwptAllocPasid} : 0u;
        a.dev_id = dev_id[d];
        a.pt_id = id_of(p1);
        a.data = UserData{kHwptDataSelftest, uptr_of(&cfg), sizeof(cfg)};
        Result<std::uint32_t> r = HwPagetable::alloc(*ctx, a);
        const bool stable = parent.load() == p1;
        const bool good_parent = (p1 & kPgNestParent) && !(p1 & kPgSoftware);
        const std::string what = "nested alloc on paging word " + std::to_string(p1) + " (stable " +
                                 std::to_string(stable) + ") dev " + std::to_string(d) + ": ";
        if (r.ok()) {
          if (is_software(d) || (stable && !good_parent)) {
            fail(what + "succeeded");
            (void)ctx->destroy(*r);
            continue;
          }
          slot.store(*r | (a.flags & kHwptAllocPasid ? kNsPasid : 0) | (gen << kGenShift));
          st.nested_alloc.fetch_add(1, std::memory_order_relaxed);
        } else if (is_software(d)) {
          if (r.error() == EOPNOTSUPP || (!stable && r.error() == EINVAL))
            st.nested_refused.fetch_add(1, std::memory_order_relaxed);
          else
            fail(what + str(r.status()));
        } else if (r.error() == EINVAL && (!stable || !good_parent)) {
          st.nested_refused.fetch_add(1, std::memory_order_relaxed);
        } else {
          fail(what + str(r.status()));
        }
      } else {
        const std::uint64_t saved = slot.exchange(0);
        Status s = ctx->destroy(id_of(saved));
        if (s.ok()) {
          st.nested_destroy.fetch_add(1, std::memory_order_relaxed);
        } else {
          // Nothing sets invalidated bits while the word is 0, so `saved` loses none.
          slot.store(saved);
          if (s.error() == EBUSY)
            st.nested_busy.fetch_add(1, std::memory_order_relaxed);
          else
            fail("nested destroy: " + str(s));
        }
      }
      nap(rng, 300);
    }
  };

  // ---- device moves ----
  auto pick_target = [&](std::mt19937_64& rng) -> Target {
    const unsigned r = rng() % 100;
    if (r >= 25 && r < 55) {
      const auto& s = paging[rng() % kPagingSlots];
      if (const std::uint64_t w = s.load()) return {Target::kPaging, id_of(w), &s, w};
    } else if (r >= 55 && r < 80) {
      const auto& s = nested[rng() % kNestedSlots];
      if (const std::uint64_t w = s.load()) return {Target::kNested, id_of(w), &s, w};
    } else if (r >= 80 && r < 96) {
      if (const std::uint32_t id = auto_id[rng() % 2].load()) return {Target::kAutoById, id, nullptr, 0};
    } else if (r >= 96) {
      return {Target::kNotAPageTable, dev_id[rng() % kDevices], nullptr, 0};
    }
    const int i = static_cast<int>(rng() % 2);
    return {Target::kIoasTarget, ioas_id[i], nullptr, static_cast<std::uint64_t>(i)};
  };
  auto stable = [](const Target& t) {
    if (t.kind == Target::kPaging) return t.slot->load() == t.word;
    if (t.kind == Target::kNested) return same_nested(t.slot->load(), t.word);
    return t.kind == Target::kIoasTarget || t.kind == Target::kNotAPageTable;
  };
  // The outcome of attach / replace of `pasid` of device d to t. Legitimate:
  //   ok       see the success checks below;
  //   ENOENT   the target HWPT is gone: destroyed, dying (an automatic HWPT whose last device left), or
  //            reserved by an allocation in flight; never for an IOAS or a stable user HWPT;
  //   EINVAL   the PASID rules (the HWPT or the RID's HWPT lacks IOMMU_HWPT_ALLOC_PASID; automatic HWPTs
  //            never have it), a PASID beyond a device's width (no PASIDs: only PASID 0 exists), another
  //            driver's HWPT, dirty tracking on the NO_DIRTY device, an id naming no page table, or a
  //            replace of something not attached (another mover detached it);
  //   EBUSY    attach only: the PASID is already attached (another mover was first).
  // A success must fit the target when its word was stable: the returned id is the HWPT's, a PASID needs
  // a PASID-capable device and a PASID HWPT, the driver matches, and dirty tracking needs a device that can.
  auto judge_move = [&](const char* op, int d, std::uint32_t pasid, const Target& t,
                        const Result<std::uint32_t>& r, bool replace) {
    const bool stable_target = stable(t);
    const std::string what = std::string(op) + " dev " + std::to_string(d) + " pasid " +
                             std::to_string(pasid) + " to target kind " + std::to_string(t.kind) + " id " +
                             std::to_string(t.id) + " word " + std::to_string(t.word) + " (stable " +
                             std::to_string(stable_target) + "): ";
    if (r.ok()) {
      if (pasid != Device::kNoPasid && !has_pasids(d)) fail(what + "succeeded on a device without PASIDs");
      switch (t.kind) {
        case Target::kIoasTarget:
          if (pasid != Device::kNoPasid) fail(what + "a PASID got an automatic HWPT");
          auto_id[t.word].store(*r);
          break;
        case Target::kPaging:
          if (!stable_target) break;
          if (*r != t.id) fail(what + "returned HWPT " + std::to_string(*r));
          if (pasid != Device::kNoPasid && !(t.word & kPgPasid)) fail(what + "a PASID on a non-PASID HWPT");
          if (is_software(d) != bool(t.word & kPgSoftware)) fail(what + "an HWPT of another driver");
          if (pasid == Device::kNoPasid && (t.word & kPgDirty) && no_dirty(d))
            fail(what + "dirty on NO_DIRTY");
          st.user_paging_attach_ok.fetch_add(1, std::memory_order_relaxed);
          break;
        case Target::kNested:
          if (!stable_target) break;
          if (*r != t.id) fail(what + "returned HWPT " + std::to_string(*r));
          if (pasid != Device::kNoPasid && !(t.word & kNsPasid)) fail(what + "a PASID on a non-PASID HWPT");
          if (is_software(d)) fail(what + "the software device on a mock nested HWPT");
          st.nested_attach_ok.fetch_add(1, std::memory_order_relaxed);
          break;
        case Target::kAutoById:
          st.auto_by_id_ok.fetch_add(1, std::memory_order_relaxed);
          break;
        case Target::kNotAPageTable:
          fail(what + "succeeded");
          break;
      }
      return true;
    }
    switch (r.error()) {
      case ENOENT:
        if (stable_target) fail(what + str(r.status()));
        st.move_enoent.fetch_add(1, std::memory_order_relaxed);
        break;
      case EINVAL:
        st.move_einval.fetch_add(1, std::memory_order_relaxed);
        break;
      case EBUSY:
        if (replace || t.kind == Target::kNotAPageTable) fail(what + str(r.status()));
        st.move_ebusy.fetch_add(1, std::memory_order_relaxed);
        break;
      default:
        fail(what + str(r.status()));
    }
    return false;
  };

  // RID moves. Two of these run, so one device may be moved by both at once. detach(): ok, or EINVAL when
  // the RID is not attached (the other mover detached it).
  auto rid_mover = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      const int d = static_cast<int>(rng() % kDevices);
      Device& device = *dev[d];
      const bool attached = device.hwpt_id() != 0;  // a hint only: the other mover may change it
      const unsigned op = rng() % 100;
      if ((!attached && op < 90) || (attached && op < 5)) {
        const Target t = pick_target(rng);
        if (judge_move("attach", d, Device::kNoPasid, t, device.attach(t.id), false))
          st.attach_ok.fetch_add(1, std::memory_order_relaxed);
      } else if (op < 75 || !attached) {
        const Target t = pick_target(rng);
        if (judge_move("replace", d, Device::kNoPasid, t, device.replace(t.id), true))
          st.replace_ok.fetch_add(1, std::memory_order_relaxed);
      } else {
        Status s = device.detach();
        if (s.ok())
          st.detach_ok.fetch_add(1, std::memory_order_relaxed);
        else if (s.error() == EINVAL)
          st.detach_einval.fetch_add(1, std::memory_order_relaxed);
        else
          fail("detach dev " + std::to_string(d) + ": " + str(s));
      }
      nap(rng, 200);
    }
  };

  // PASID moves, mostly on the PASID-capable devices; detach(pasid) has no outcome to judge.
  auto pasid_mover = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      int d = rng() % 8 ? (rng() % 2 ? 1 : 2) : static_cast<int>(rng() % kDevices);
      Device& device = *dev[d];
      const std::uint32_t pasid = kPasids[rng() % std::size(kPasids)];
      const bool attached = device.hwpt_id(pasid) != 0;
      const unsigned op = rng() % 100;
      if ((!attached && op < 90) || (attached && op < 5)) {
        const Target t = pick_target(rng);
        if (judge_move("pasid attach", d, pasid, t, device.attach(pasid, t.id), false))
          st.pasid_attach_ok.fetch_add(1, std::memory_order_relaxed);
        else
          st.pasid_refused.fetch_add(1, std::memory_order_relaxed);
      } else if (op < 70 || !attached) {
        const Target t = pick_target(rng);
        if (judge_move("pasid replace", d, pasid, t, device.replace(pasid, t.id), true))
          st.pasid_replace_ok.fetch_add(1, std::memory_order_relaxed);
        else
          st.pasid_refused.fetch_add(1, std::memory_order_relaxed);
      } else {
        device.detach(pasid);
        st.pasid_detach.fetch_add(1, std::memory_order_relaxed);
      }
      nap(rng, 200);
    }
  };

  // ---- invalidation and IOTLB checks ----
  // invalidate on a stable nested word: must succeed with every entry handled. On a word that changed:
  //   ok (the id may now be another nested HWPT), ENOENT (gone or reserved), EINVAL (the id now names a
  //   paging HWPT). On a paging slot's id: EINVAL (not a nested HWPT) when stable; otherwise also ENOENT or
  //   ok (reused by a nested HWPT).
  auto invalidator = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      nap(rng, 100);
      if (rng() % 10 == 0) {
        const auto& slot = paging[rng() % kPagingSlots];
        const std::uint64_t w = slot.load();
        if (!w) continue;
        InvalidateSelftest e{0, static_cast<std::uint32_t>(rng() % NestedDomain::kIotlbNum)};
        UserDataArray arr{kHwptInvalidateDataSelftest, uptr_of(&e), sizeof(e), 1};
        Status s = HwPagetable::invalidate(*ctx, id_of(w), arr);
        if (slot.load() == w ? s.error() != EINVAL : !(s.ok() || s.error() == EINVAL || s.error() == ENOENT))
          fail("invalidate of paging HWPT word " + std::to_string(w) + ": " + str(s));
        continue;
      }
      std::atomic<std::uint64_t>& slot = nested[rng() % kNestedSlots];
      const std::uint64_t w1 = slot.load();
      if (!w1) continue;
      InvalidateSelftest e[3];
      const std::uint32_t n = 1 + rng() % 3;
      std::uint32_t bits = 0;
      for (std::uint32_t i = 0; i < n; ++i) {
        e[i].iotlb_id = static_cast<std::uint32_t>(rng() % NestedDomain::kIotlbNum);
        e[i].flags = rng() % 6 == 0 ? kTestInvalidateFlagAll : 0;
        bits |= e[i].flags ? 0xf : 1u << e[i].iotlb_id;
      }
      UserDataArray arr{kHwptInvalidateDataSelftest, uptr_of(e), sizeof(e[0]), n};
      Status s = HwPagetable::invalidate(*ctx, id_of(w1), arr);
      std::uint64_t w2 = slot.load();
      if (same_nested(w1, w2)) {
        if (!s.ok() || arr.entry_num != n) {
          fail("invalidate of live nested word " + std::to_string(w1) + ": " + str(s) + ", entry_num " +
               std::to_string(arr.entry_num) + " of " + std::to_string(n));
          continue;
        }
        // Record what is now known to be 0, unless the owner has cleared the word meanwhile.
        while (same_nested(w1, w2) &&
               !slot.compare_exchange_weak(w2, w2 | (std::uint64_t{bits} << kNsMaskShift))) {
        }
        st.inval_ok.fetch_add(1, std::memory_order_relaxed);
        if (bits == 0xf) st.inval_all.fetch_add(1, std::memory_order_relaxed);
      } else if (s.ok() || s.error() == ENOENT || s.error() == EINVAL) {
        st.inval_unstable.fetch_add(1, std::memory_order_relaxed);
      } else {
        fail("invalidate of nested word " + std::to_string(w1) + " (changed): " + str(s));
      }
    }
  };

  // IOTLB checks (MD_CHECK_IOTLB's lookup and check): on a stable word the lookup must succeed and every
  // entry holds the object's initial value or 0 (an invalidation may land before or after the check, never
  // anything else); an entry recorded invalidated before the check began must read 0, and an entry this
  // thread once saw 0 never reads the initial value again. An id above 3 is always EINVAL. When the word
  // changed the object may be gone (ENOENT) or another one, and nothing is judged.
  auto checker = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    std::uint64_t last_gen[kNestedSlots] = {};
    std::uint32_t seen_zero[kNestedSlots] = {};
    while (running()) {
      const int k = static_cast<int>(rng() % kNestedSlots);
      const std::uint64_t w1 = nested[k].load();
      if (!w1) {
        nap(rng, 50);
        continue;
      }
      const std::uint32_t v = iotlb_value(gen_of(w1));
      std::uint32_t got[NestedDomain::kIotlbNum] = {};
      bool other[NestedDomain::kIotlbNum] = {};
      Status lookup;
      {
        Result<ObjectRef<HwptNested>> ref = ctx->get<HwptNested>(id_of(w1), ObjectType::kHwptNested);
        lookup = ref.status();
        if (ref.ok()) {
          const NestedDomain& dom = (*ref)->domain();
          for (std::uint32_t i = 0; i < NestedDomain::kIotlbNum; ++i) {
            if (dom.check_iotlb(i, v).ok())
              got[i] = v;
            else if (dom.check_iotlb(i, 0).ok())
              got[i] = 0;
            else {
              other[i] = true;
              got[i] = dom.iotlb(i);
            }
          }
          if (dom.check_iotlb(NestedDomain::kIotlbNum, v).error() != EINVAL)
            fail("check_iotlb of id 4 accepted");
        }
      }
      const std::uint64_t w2 = nested[k].load();
      if (!same_nested(w1, w2)) {
        st.check_unstable.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (!lookup.ok()) {
        fail("lookup of live nested HWPT word " + std::to_string(w1) + ": " + str(lookup));
        continue;
      }
      if (last_gen[k] != gen_of(w1)) {
        last_gen[k] = gen_of(w1);
        seen_zero[k] = 0;
      }
      const std::uint32_t invalidated = invalidated_of(w1);
      for (std::uint32_t i = 0; i < NestedDomain::kIotlbNum; ++i) {
        const std::string what = "nested word " + std::to_string(w1) + " IOTLB " + std::to_string(i) + " ";
        if (other[i])
          fail(what + "holds " + std::to_string(got[i]) + ", neither " + std::to_string(v) + " nor 0");
        else if (got[i] == v && (invalidated >> i & 1))
          fail(what + "still holds its old value after an invalidation");
        else if (got[i] == v && (seen_zero[k] >> i & 1))
          fail(what + "went back to its old value");
        if (got[i] == 0) {
          seen_zero[k] |= 1u << i;
          st.check_zero.fetch_add(1, std::memory_order_relaxed);
        }
      }
      st.check_ok.fetch_add(1, std::memory_order_relaxed);
    }
  };

  // ---- map and unmap: fill and empty the domains ----
  // map of a slot (or two slots as one area): ok, or EEXIST when something is mapped there already.
  auto mapper = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      const int i = static_cast<int>(rng() % 2);
      const bool two = rng() % 4 == 0;
      const std::uint64_t s = rng() % (two ? kSlots - 1 : kSlots);
      const std::uint64_t off = s * kSlotPages * kPageSize;
      std::uint64_t iova = kIova + off;
      Status m = ioas[i]->map(uptr(i, off), (two ? 2 : 1) * kSlotPages * kPageSize, &iova, kMapFlags);
      if (m.ok())
        st.map_ok.fetch_add(1, std::memory_order_relaxed);
      else if (m.error() == EEXIST)
        st.map_eexist.fetch_add(1, std::memory_order_relaxed);
      else
        fail("map: " + str(m));
      nap(rng, 100);
    }
  };
  // unmap of a slot, a few slots, or everything: ok; ENOENT when nothing (or not whole areas) lies there;
  // EBUSY when an area in the range is still being built by a concurrent map. No access exists, so never
  // EDEADLOCK.
  auto unmapper = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      const int i = static_cast<int>(rng() % 2);
      std::uint64_t first, length;
      const unsigned kind = rng() % 100;
      if (kind < 3) {
        first = 0;
        length = kUlongMax;
      } else if (kind < 70) {
        first = kIova + (rng() % kSlots) * kSlotPages * kPageSize;
        length = kSlotPages * kPageSize;
      } else {
        const std::uint64_t n = 2 + rng() % 3, s = rng() % (kSlots - n + 1);
        first = kIova + s * kSlotPages * kPageSize;
        length = n * kSlotPages * kPageSize;
      }
      std::uint64_t unmapped = 0;
      Status s = ioas[i]->unmap(first, length, &unmapped);
      if (s.ok())
        st.unmap_ok.fetch_add(1, std::memory_order_relaxed);
      else if (s.error() == ENOENT)
        st.unmap_enoent.fetch_add(1, std::memory_order_relaxed);
      else if (s.error() == EBUSY)
        st.unmap_ebusy.fetch_add(1, std::memory_order_relaxed);
      else
        fail("unmap: " + str(s));
      nap(rng, 150);
    }
  };

  // ---- hardware info and the device cache: no errno is legitimate but the argument-decided ones ----
  // hw_info: the mock driver gives its struct {flags 0, test_reg} for the default and the selftest type and
  // EOPNOTSUPP for any other; the software driver reports type 0 with no data whatever was asked. The
  // capabilities and PASID width follow from the device's flags alone. check_cache: no vIOMMU invalidation
  // exists, so every entry holds its default; an id above 3 is EINVAL.
  auto info = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    const std::uint32_t selftest_info[2] = {0, kHwInfoSelftestRegval};
    while (running()) {
      const int d = static_cast<int>(rng() % kDevices);
      Result<ObjectRef<Device>> ref = ctx->get<Device>(dev_id[d], ObjectType::kDevice);
      if (!ref.ok()) {
        fail("device lookup: " + str(ref.status()));
        continue;
      }
      const std::uint32_t types[] = {kHwInfoTypeDefault, kHwInfoTypeSelftest, 0x1234};
      const std::uint32_t type = types[rng() % 3];
      Result<Device::HwInfo> hi = (*ref)->hw_info(type);
      const std::string what = "hw_info dev " + std::to_string(d) + " type " + std::to_string(type) + ": ";
      if (!is_software(d) && type == 0x1234) {
        if (hi.error() != EOPNOTSUPP) fail(what + str(hi.status()));
      } else if (!hi.ok()) {
        fail(what + str(hi.status()));
      } else {
        std::uint64_t caps = kHwCapPciAtsNotSupported;
        if (!is_software(d) && !no_dirty(d)) caps |= kHwCapDirtyTracking;
        const bool data_ok =
            is_software(d) ? hi->data.empty()
                           : hi->data.size() == sizeof(selftest_info) &&
                                 std::memcmp(hi->data.data(), selftest_info, sizeof(selftest_info)) == 0;
        if (hi->type != (is_software(d) ? kHwInfoTypeDefault : kHwInfoTypeSelftest) || !data_ok ||
            hi->capabilities != caps || hi->max_pasid_log2 != (has_pasids(d) ? Device::kMockPasidWidth : 0))
          fail(what + "type " + std::to_string(hi->type) + " caps " + std::to_string(hi->capabilities) +
               " pasid log2 " + std::to_string(hi->max_pasid_log2) + " data " +
               std::to_string(hi->data.size()));
      }
      const std::uint32_t c = static_cast<std::uint32_t>(rng() % Device::kCacheNum);
      if (Status s = (*ref)->check_cache(c, kTestDevCacheDefault); !s.ok()) fail("check_cache: " + str(s));
      if ((*ref)->check_cache(Device::kCacheNum, kTestDevCacheDefault).error() != EINVAL)
        fail("check_cache of id 4 accepted");
      st.hw_info.fetch_add(1, std::memory_order_relaxed);
      nap(rng, 200);
    }
  };

  {
    std::vector<std::thread> threads;
    threads.emplace_back(paging_owner, 1, 0);
    threads.emplace_back(paging_owner, 2, kPagingSlots / 2);
    threads.emplace_back(nested_owner, 3);
    threads.emplace_back(rid_mover, 4);
    threads.emplace_back(rid_mover, 5);
    threads.emplace_back(pasid_mover, 6);
    threads.emplace_back(invalidator, 7);
    threads.emplace_back(checker, 8);
    threads.emplace_back(mapper, 9);
    threads.emplace_back(unmapper, 10);
    threads.emplace_back(info, 11);
    for (auto& t : threads) t.join();
  }
  const long long ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start_time)
          .count();

  // Teardown: PASIDs before the RID (the kernel warns otherwise), then every HWPT, nested ones first (each
  // holds its parent). With nothing else running, every destroy must succeed: an EBUSY now is a leaked user.
  for (int d = 0; d < kDevices; ++d) {
    for (std::uint32_t p : kPasids) dev[d]->detach(p);
    (void)dev[d]->detach();
    for (std::uint32_t p : kPasids) EXPECT_EQ(dev[d]->hwpt_id(p), 0u) << "dev " << d << " pasid " << p;
    EXPECT_EQ(dev[d]->hwpt_id(), 0u) << "dev " << d;
  }
  for (auto& s : nested) {
    const std::uint64_t w = s.exchange(0);
    if (w != 0) {
      EXPECT_TRUE(ctx->destroy(id_of(w)).ok()) << "nested word " << w;
    }
  }
  for (auto& s : paging) {
    const std::uint64_t w = s.exchange(0);
    if (w != 0) {
      EXPECT_TRUE(ctx->destroy(id_of(w)).ok()) << "paging word " << w;
    }
  }
  EXPECT_EQ(ctx->object_count(), objects_at_start) << "an HWPT outlived its devices and owner";
  for (int d = 0; d < kDevices; ++d) EXPECT_EQ(dev[d]->users(), 2u) << "dev " << d;  // the table and `dev`
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(ioas[i]->users(), ioas_users_at_start[i]) << "IOAS " << i;
    EXPECT_EQ(ioas[i]->iopt().domain_count(), 0u) << "IOAS " << i;
    {
      lockdep::MutexGuard g(ioas[i]->mutex());
      EXPECT_TRUE(ioas[i]->hwpts_locked().empty()) << "IOAS " << i;
    }
    EXPECT_EQ(ioas[i]->iopt().check_invariants(), "") << "IOAS " << i;
    std::uint64_t unmapped = 0;
    Status s = ioas[i]->unmap(0, kUlongMax, &unmapped);
    EXPECT_TRUE(s.ok() || s.error() == ENOENT) << "IOAS " << i << ": " << s.to_string();
    EXPECT_EQ(ioas[i]->iopt().area_count(), 0u);
    EXPECT_EQ(ioas[i]->iopt().check_invariants(), "") << "IOAS " << i;
  }
  baseline.expect_back();
  EXPECT_EQ(failures.load(), 0);

  std::printf(
      "[ stats    ] %ld ops in %lld ms: paging alloc %ld (refused %ld) destroy %ld (EBUSY %ld); nested alloc "
      "%ld "
      "(refused %ld) destroy %ld (EBUSY %ld); RID attach %ld replace %ld detach %ld (EINVAL %ld); PASID "
      "attach "
      "%ld replace %ld detach %ld refused %ld; moves ENOENT %ld EINVAL %ld EBUSY %ld; onto user paging %ld, "
      "nested %ld, automatic by id %ld; invalidate %ld (ALL %ld, changed %ld); IOTLB checks %ld (zero "
      "entries "
      "%ld, changed %ld); map %ld / EEXIST %ld; unmap %ld / ENOENT %ld / EBUSY %ld; hw_info %ld\n",
      st.total(), ms, st.paging_alloc.load(), st.paging_refused.load(), st.paging_destroy.load(),
      st.paging_busy.load(), st.nested_alloc.load(), st.nested_refused.load(), st.nested_destroy.load(),
      st.nested_busy.load(), st.attach_ok.load(), st.replace_ok.load(), st.detach_ok.load(),
      st.detach_einval.load(), st.pasid_attach_ok.load(), st.pasid_replace_ok.load(), st.pasid_detach.load(),
      st.pasid_refused.load(), st.move_enoent.load(), st.move_einval.load(), st.move_ebusy.load(),
      st.user_paging_attach_ok.load(), st.nested_attach_ok.load(), st.auto_by_id_ok.load(),
      st.inval_ok.load(), st.inval_all.load(), st.inval_unstable.load(), st.check_ok.load(),
      st.check_zero.load(), st.check_unstable.load(), st.map_ok.load(), st.map_eexist.load(),
      st.unmap_ok.load(), st.unmap_enoent.load(), st.unmap_ebusy.load(), st.hw_info.load());
  // Every kind of operation ran and succeeded at least once.
  EXPECT_GT(st.paging_alloc.load(), 0);
  EXPECT_GT(st.paging_destroy.load(), 0);
  EXPECT_GT(st.nested_alloc.load(), 0);
  EXPECT_GT(st.nested_destroy.load(), 0);
  EXPECT_GT(st.attach_ok.load(), 0);
  EXPECT_GT(st.replace_ok.load(), 0);
  EXPECT_GT(st.detach_ok.load(), 0);
  EXPECT_GT(st.pasid_attach_ok.load(), 0);
  EXPECT_GT(st.pasid_replace_ok.load(), 0);
  EXPECT_GT(st.user_paging_attach_ok.load(), 0);
  EXPECT_GT(st.nested_attach_ok.load(), 0);
  EXPECT_GT(st.inval_ok.load(), 0);
  EXPECT_GT(st.check_ok.load(), 0);
  EXPECT_GT(st.map_ok.load(), 0);
  EXPECT_GT(st.unmap_ok.load(), 0);
  EXPECT_GT(st.hw_info.load(), 0);

  for (auto& d : dev) d.reset();
  for (std::uint32_t id : dev_id) EXPECT_TRUE(ctx->destroy(id).ok());
  for (auto& r : ioas) r.reset();
  ctx.reset();
  EXPECT_EQ(Pages::total_pinned_pages(), baseline.pinned);
  for (char* b : buf) munmap(b, kLen);
}

}  // namespace
}  // namespace uiommufd
