// Concurrency stress of accesses (docs/semantics.md#access, docs/locking.md): for a bounded time, threads pin
// / unpin, rw (fast and slow path), unmap (ranges and everything), map again, move accesses between two
// IOASes (attach, detach, replace), destroy and recreate accesses, and attach / detach a software device so
// that a domain and the accesses share pins. The drivers behave like the kernel's test access: each keeps its
// pins under its own lock, held across pin_pages (rule R3, docs/semantics.md#driver-rules), and its unmap
// callback unpins every pin that intersects the range.
//
// Checked while running: every operation ends with one of the errnos legitimate for it under concurrency;
// pinned pages and rw data are the right memory; when an unmap of a range succeeds, no driver still holds a
// pin intersecting that range that was pinned before the unmap started; after destroy a driver holds no
// pin. At the end: nothing pinned or charged, the IOAS invariants hold, and the lock validator is silent.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "stress_baseline.h"

#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/lockdep/shared_mutex.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/objects/access.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd {
namespace {

constexpr std::uint32_t kMapFlags = Ioas::kReadable | Ioas::kWriteable | Ioas::kFixedIova;
constexpr std::uint64_t kIova = 0x1000000;
// Each IOAS maps its own buffer with the same identity layout: IOVA kIova + o is buffer offset o. The
// IOVA space is cut into slots that the mappers map whole, in two halves, or two at once.
constexpr std::uint64_t kSlots = 16;
constexpr std::uint64_t kSlotPages = 8;
constexpr std::uint64_t kPages = kSlots * kSlotPages;
constexpr std::uint64_t kLen = kPages * kPageSize;
// rw thread k reads and writes only slots [k * 6, k * 6 + 6); slots 12..15 are never written after the
// start, so that the pinners may read pinned pages and the rw threads read them with no data race.
constexpr std::uint64_t kRwSlotsPerThread = 6;
constexpr std::uint64_t kReadOnlyFirstPage = 2 * kRwSlotsPerThread * kSlotPages;
constexpr int kDrivers = 6;
constexpr auto kRunTime = std::chrono::milliseconds(1500);

// The content of both buffers at offset o. rw writes write exactly this, so the content never changes.
unsigned char pattern(std::uint64_t o) { return static_cast<unsigned char>(o * 131 + (o >> 12) * 17 + 1); }

struct PinRecord {
  std::uint64_t iova, length;
  int ioas;             // 0 or 1: which IOAS's buffer the pages belong to
  std::uint64_t stamp;  // clock value taken after pin_pages returned
};

// One driver slot: a driver whose access is destroyed and recreated during the run. `life` serialises the
// access's lifetime against its users (the driver's own business, not taken by the callback, so holding
// it across destroy is fine); `mu` is the driver lock the callback takes.
struct Driver {
  lockdep::SharedMutex life{"stress_driver.life"};
  ObjectRef<Access> access;  // guarded by life
  std::atomic<Access*> raw{nullptr};
  std::atomic<bool> destroying{false};
  lockdep::Mutex mu{"stress_driver.mu"};
  std::vector<PinRecord> pins;  // guarded by mu
  std::atomic<long> callbacks{0};

  Access::Ops ops() {
    Access::Ops o;
    o.unmap = [this](std::uint64_t iova, std::uint64_t length) {
      callbacks.fetch_add(1, std::memory_order_relaxed);
      const std::uint64_t last = iova + length - 1;
      lockdep::MutexGuard g(mu);
      Access* a = raw.load();
      for (auto it = pins.begin(); it != pins.end();) {
        if (it->iova <= last && it->iova + it->length - 1 >= iova) {
          a->unpin_pages(it->iova, it->length);
          it = pins.erase(it);
        } else {
          ++it;
        }
      }
    };
    return o;
  }
};

struct Stats {
  std::atomic<long> pin_ok{0}, pin_enoent{0}, pin_einval{0}, unpin{0};
  std::atomic<long> rw_ok{0}, rw_enoent{0}, rw_einval{0};
  std::atomic<long> map_ok{0}, map_eexist{0};
  std::atomic<long> unmap_ok{0}, unmap_all_ok{0}, unmap_enoent{0}, unmap_ebusy{0}, unmap_edeadlock{0};
  std::atomic<long> attach_ok{0}, replace_ok{0}, detach{0}, move_refused{0};
  std::atomic<long> destroys{0}, device_attaches{0}, invariant_checks{0};
  long total() const {
    return pin_ok + pin_enoent + pin_einval + unpin + rw_ok + rw_enoent + rw_einval + map_ok + map_eexist +
           unmap_ok + unmap_all_ok + unmap_enoent + unmap_ebusy + unmap_edeadlock + attach_ok + replace_ok +
           detach + move_refused + destroys + device_attaches;
  }
};

TEST(AccessStressTest, PinRwUnmapRemapMoveDestroyKeepInvariantsUnderTheLockValidator) {
  const StressBaseline baseline;

  char* buf[2];
  for (char*& b : buf) {
    b = static_cast<char*>(mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(b, MAP_FAILED);
    for (std::uint64_t o = 0; o < kLen; ++o) b[o] = static_cast<char>(pattern(o));
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
      ASSERT_TRUE(ioas[i]->map(uptr(i, s * kSlotPages * kPageSize), kSlotPages * kPageSize, &iova, kMapFlags).ok());
    }
  }
  const std::uint32_t dev_id = *Device::create(*ctx, Device::Kind::kSoftware);
  ObjectRef<Device> dev = std::move(*ctx->get<Device>(dev_id, ObjectType::kDevice));

  std::vector<std::unique_ptr<Driver>> drivers;
  for (int i = 0; i < kDrivers; ++i) {
    auto d = std::make_unique<Driver>();
    d->access = std::move(*Access::create(*ctx, d->ops()));
    d->raw = d->access.get();
    ASSERT_TRUE(d->access->attach(ioas_id[i % 2]).ok());
    drivers.push_back(std::move(d));
  }

  Stats st;
  std::atomic<std::uint64_t> clock{1};
  std::atomic<long> failures{0};
  std::mutex msg_mu;
  std::vector<std::string> edeadlock_reports;
  auto fail = [&](const std::string& what) {
    if (failures.fetch_add(1) < 20) ADD_FAILURE() << what;
  };
  auto errno_str = [](const Status& s) { return s.ok() ? std::string("ok") : s.to_string(); };

  const auto start_time = std::chrono::steady_clock::now();
  const auto deadline = start_time + kRunTime;
  const auto device_deadline = start_time + kRunTime * 2 / 3;
  auto running = [&] { return std::chrono::steady_clock::now() < deadline; };

  // Pins (holding the driver lock across pin_pages, as the kernel's test access does) and unpins.
  auto pinner = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    std::vector<AccessPage> pages;
    while (running()) {
      Driver& d = *drivers[rng() % kDrivers];
      lockdep::ReadGuard life(d.life);
      if (!d.access) continue;
      Access& a = *d.access;
      lockdep::MutexGuard g(d.mu);
      if (!d.pins.empty() && (d.pins.size() > 8 || rng() % 3 == 0)) {
        std::size_t i = rng() % d.pins.size();
        a.unpin_pages(d.pins[i].iova, d.pins[i].length);
        d.pins.erase(d.pins.begin() + static_cast<std::ptrdiff_t>(i));
        st.unpin.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      const std::uint64_t npages = 1 + rng() % 10;
      const std::uint64_t first = rng() % (kPages - npages + 1);
      const std::uint64_t iova = kIova + first * kPageSize;
      std::uint64_t length = npages * kPageSize;
      if (rng() % 3 == 0) length -= rng() % kPageSize;  // ends inside the last page
      Status s = a.pin_pages(iova, length, &pages, rng() % 2 ? Access::kPinWrite : 0);
      if (!s.ok()) {
        // Not attached, moving, a hole or half-built area (ENOENT); an area being unmapped (EINVAL).
        if (s.error() == ENOENT) st.pin_enoent.fetch_add(1, std::memory_order_relaxed);
        else if (s.error() == EINVAL) st.pin_einval.fetch_add(1, std::memory_order_relaxed);
        else fail("pin_pages: " + errno_str(s));
        continue;
      }
      const std::uint64_t stamp = clock.fetch_add(1);
      const int which = pages.empty() || pages[0].phys < uptr(1, 0) || pages[0].phys >= uptr(1, kLen) ? 0 : 1;
      bool good = pages.size() == npages;
      for (std::uint64_t i = 0; good && i < npages; ++i) {
        const std::uint64_t off = (first + i) * kPageSize;
        good = pages[i].phys == uptr(which, off) && pages[i].address != nullptr;
        if (good && first + i >= kReadOnlyFirstPage)
          good = std::memcmp(pages[i].address, buf[which] + off, kPageSize) == 0;
      }
      if (!good) fail("pin_pages returned the wrong pages for iova " + std::to_string(iova));
      d.pins.push_back({iova, length, which, stamp});
      st.pin_ok.fetch_add(1, std::memory_order_relaxed);
    }
  };

  // rw thread k: reads and writes its own slots, reads the read-only ones; fast and slow path.
  auto rw = [&](unsigned seed, unsigned k) {
    std::mt19937_64 rng(seed);
    std::vector<unsigned char> data;
    while (running()) {
      Driver& d = *drivers[rng() % kDrivers];
      lockdep::ReadGuard life(d.life);
      if (!d.access) continue;
      const bool own = rng() % 3 != 0;
      const std::uint64_t region = own ? k * kRwSlotsPerThread * kSlotPages * kPageSize : kReadOnlyFirstPage * kPageSize;
      const std::uint64_t region_len = own ? kRwSlotsPerThread * kSlotPages * kPageSize : kLen - region;
      const std::uint64_t off = region + rng() % region_len;
      const std::uint64_t length = std::min<std::uint64_t>(1 + rng() % (5 * kPageSize / 2), region + region_len - off);
      const bool write = own && rng() % 2;
      const std::uint32_t flags = (write ? Access::kRwWrite : 0) | (rng() % 2 ? Access::kRwSlowPath : 0);
      data.resize(length);
      if (write)
        for (std::uint64_t i = 0; i < length; ++i) data[i] = pattern(off + i);
      else
        std::fill(data.begin(), data.end(), 0);
      Status s = d.access->rw(kIova + off, data.data(), length, flags);
      if (!s.ok()) {
        if (s.error() == ENOENT) st.rw_enoent.fetch_add(1, std::memory_order_relaxed);
        else if (s.error() == EINVAL) st.rw_einval.fetch_add(1, std::memory_order_relaxed);
        else fail("rw: " + errno_str(s));
        continue;
      }
      if (!write)
        for (std::uint64_t i = 0; i < length; ++i)
          if (data[i] != pattern(off + i)) {
            fail("rw read wrong data at offset " + std::to_string(off + i) + " flags " + std::to_string(flags));
            break;
          }
      st.rw_ok.fetch_add(1, std::memory_order_relaxed);
    }
  };

  // The invariant after a successful unmap of [first, last] on IOAS i that started at clock `start`.
  auto check_after_unmap = [&](int i, std::uint64_t first, std::uint64_t last, std::uint64_t start) {
    for (int k = 0; k < kDrivers; ++k) {
      Driver& d = *drivers[k];
      lockdep::MutexGuard g(d.mu);
      for (const PinRecord& p : d.pins)
        if (p.ioas == i && p.stamp < start && p.iova <= last && p.iova + p.length - 1 >= first)
          fail("driver " + std::to_string(k) + " still holds pin [" + std::to_string(p.iova) + ", +" +
               std::to_string(p.length) + "] (stamp " + std::to_string(p.stamp) + ") after unmap of [" +
               std::to_string(first) + ", " + std::to_string(last) + "] on IOAS " + std::to_string(i) +
               " started at " + std::to_string(start) + " succeeded");
    }
    st.invariant_checks.fetch_add(1, std::memory_order_relaxed);
  };
  auto describe_edeadlock = [&](int i, std::uint64_t first, std::uint64_t last) {
    std::string r = "EDEADLOCK unmapping [" + std::to_string(first) + ", " + std::to_string(last) + "] on IOAS " +
                    std::to_string(i) + ", clock " + std::to_string(clock.load()) + ":";
    for (int k = 0; k < kDrivers; ++k) {
      Driver& d = *drivers[k];
      const bool destroying = d.destroying.load();
      lockdep::MutexGuard g(d.mu);
      for (const PinRecord& p : d.pins)
        if (p.ioas == i && p.iova <= last && p.iova + p.length - 1 >= first)
          r += " driver " + std::to_string(k) + (destroying ? " (destroying)" : "") + " pin [" +
               std::to_string(p.iova) + ", +" + std::to_string(p.length) + "] stamp " + std::to_string(p.stamp) + ";";
    }
    std::lock_guard g(msg_mu);
    edeadlock_reports.push_back(r);
  };

  auto unmapper = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      const int i = static_cast<int>(rng() % 2);
      std::uint64_t first, length;
      const unsigned kind = rng() % 100;
      if (kind < 3) {
        first = 0;
        length = kUlongMax;
      } else if (kind < 60) {  // one slot
        first = kIova + (rng() % kSlots) * kSlotPages * kPageSize;
        length = kSlotPages * kPageSize;
      } else if (kind < 80) {  // one half: ENOENT when the slot is one area
        first = kIova + (rng() % (2 * kSlots)) * (kSlotPages / 2) * kPageSize;
        length = kSlotPages / 2 * kPageSize;
      } else {  // several slots
        std::uint64_t n = 2 + rng() % 3, s = rng() % (kSlots - n + 1);
        first = kIova + s * kSlotPages * kPageSize;
        length = n * kSlotPages * kPageSize;
      }
      const std::uint64_t last = length == kUlongMax ? kUlongMax : first + length - 1;
      const std::uint64_t start = clock.fetch_add(1);
      std::uint64_t unmapped = 0;
      Status s = ioas[i]->unmap(first, length, &unmapped);
      if (s.ok()) {
        (length == kUlongMax ? st.unmap_all_ok : st.unmap_ok).fetch_add(1, std::memory_order_relaxed);
        check_after_unmap(i, first, last, start);
      } else if (s.error() == ENOENT) {
        st.unmap_enoent.fetch_add(1, std::memory_order_relaxed);
      } else if (s.error() == EBUSY) {
        st.unmap_ebusy.fetch_add(1, std::memory_order_relaxed);
      } else if (s.error() == EDEADLOCK) {
        st.unmap_edeadlock.fetch_add(1, std::memory_order_relaxed);
        describe_edeadlock(i, first, last);
      } else {
        fail("unmap: " + errno_str(s));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 100));
    }
  };

  // Maps slots again: whole, in two halves (two page-seamed areas), or two slots as one area.
  auto mapper = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      const int i = static_cast<int>(rng() % 2);
      const unsigned kind = rng() % 10;
      std::uint64_t s = rng() % (kind < 2 ? kSlots - 1 : kSlots);
      std::vector<std::pair<std::uint64_t, std::uint64_t>> pieces;  // (offset, length)
      const std::uint64_t off = s * kSlotPages * kPageSize, slot = kSlotPages * kPageSize;
      if (kind < 2) pieces = {{off, 2 * slot}};
      else if (kind < 5) pieces = {{off, slot / 2}, {off + slot / 2, slot / 2}};
      else pieces = {{off, slot}};
      for (auto [o, l] : pieces) {
        std::uint64_t iova = kIova + o;
        Status m = ioas[i]->map(uptr(i, o), l, &iova, kMapFlags);
        if (m.ok()) st.map_ok.fetch_add(1, std::memory_order_relaxed);
        else if (m.error() == EEXIST) st.map_eexist.fetch_add(1, std::memory_order_relaxed);
        else fail("map: " + errno_str(m));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 50));
    }
  };

  // Attach / replace / detach between the two IOASes; two movers may move one access at once.
  auto mover = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      const int k = static_cast<int>(rng() % kDrivers);
      Driver& d = *drivers[k];
      {
        lockdep::ReadGuard life(d.life);
        if (!d.access) continue;
        Access& a = *d.access;
        const std::uint32_t target = ioas_id[rng() % 2];
        if (a.ioas_id() == 0) {
          Status s = a.attach(target);
          if (s.ok()) st.attach_ok.fetch_add(1, std::memory_order_relaxed);
          else if (s.error() == EINVAL || s.error() == EBUSY) st.move_refused.fetch_add(1, std::memory_order_relaxed);
          else fail("attach: " + errno_str(s));
        } else if (rng() % 4 == 0) {
          a.detach();
          st.detach.fetch_add(1, std::memory_order_relaxed);
        } else {
          Status s = a.replace(target);
          if (s.ok()) st.replace_ok.fetch_add(1, std::memory_order_relaxed);
          else if (s.error() == ENOENT || s.error() == EBUSY) st.move_refused.fetch_add(1, std::memory_order_relaxed);
          else fail("replace: " + errno_str(s));
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
    }
  };

  // Destroys accesses (the destroy calls back from this thread) and creates new ones.
  auto destroyer = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 1000));
      const int k = static_cast<int>(rng() % kDrivers);
      Driver& d = *drivers[k];
      lockdep::WriteGuard life(d.life);
      if (d.access) {
        if (d.access->unpin_mismatches() != 0) fail("driver " + std::to_string(k) + ": unpin mismatches");
        d.destroying = true;
        Access::destroy(std::move(d.access));
        d.destroying = false;
        st.destroys.fetch_add(1, std::memory_order_relaxed);
        lockdep::MutexGuard g(d.mu);
        if (!d.pins.empty()) fail("driver " + std::to_string(k) + " holds pins after destroy");
      }
      auto a = Access::create(*ctx, d.ops());
      if (!a.ok()) {
        fail("Access::create: " + errno_str(a.status()));
        continue;
      }
      d.access = std::move(*a);
      d.raw = d.access.get();
      if (rng() % 4 != 0) {
        Status s = d.access->attach(ioas_id[rng() % 2]);
        if (!s.ok()) fail("attach of a new access: " + errno_str(s));
      }
    }
  };

  // A software device on IOAS 0 for the first two thirds of the run.
  auto device = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (std::chrono::steady_clock::now() < device_deadline) {
      auto h = dev->attach(ioas_id[0]);
      if (!h.ok()) {
        fail("device attach: " + errno_str(h.status()));
        return;
      }
      st.device_attaches.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
      Status s = dev->detach();
      if (!s.ok()) fail("device detach: " + errno_str(s));
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
    }
  };

  {
    std::vector<std::thread> threads;
    threads.emplace_back(pinner, 1);
    threads.emplace_back(pinner, 2);
    threads.emplace_back(rw, 3, 0);
    threads.emplace_back(rw, 4, 1);
    threads.emplace_back(unmapper, 5);
    threads.emplace_back(unmapper, 6);
    threads.emplace_back(mapper, 7);
    threads.emplace_back(mapper, 8);
    threads.emplace_back(mover, 9);
    threads.emplace_back(mover, 12);  // two movers: concurrent moves of one access (EBUSY, ENOENT, EINVAL)
    threads.emplace_back(destroyer, 10);
    threads.emplace_back(device, 11);
    for (auto& t : threads) t.join();
  }

  // Teardown: destroy every access (each callback unpins all), then unmap everything.
  long callbacks = 0;
  for (int k = 0; k < kDrivers; ++k) {
    Driver& d = *drivers[k];
    lockdep::WriteGuard life(d.life);
    if (!d.access) continue;
    EXPECT_EQ(d.access->unpin_mismatches(), 0u) << "driver " << k;
    Access::destroy(std::move(d.access));
    d.raw = nullptr;
    callbacks += d.callbacks.load();
    lockdep::MutexGuard g(d.mu);
    EXPECT_TRUE(d.pins.empty()) << "driver " << k;
  }
  EXPECT_EQ(dev->hwpt_id(), 0u);
  for (int i = 0; i < 2; ++i) {
    std::uint64_t unmapped = 0;
    Status s = ioas[i]->unmap(0, kUlongMax, &unmapped);
    EXPECT_TRUE(s.ok()) << "IOAS " << i << ": " << s.to_string();
    EXPECT_EQ(ioas[i]->iopt().area_count(), 0u);
    EXPECT_EQ(ioas[i]->iopt().check_invariants(), "") << "IOAS " << i;
  }
  baseline.expect_back();

  for (const std::string& r : edeadlock_reports) ADD_FAILURE() << r;
  EXPECT_EQ(st.unmap_edeadlock.load(), 0) << "well-behaved drivers always unpin in the callback";
  EXPECT_EQ(failures.load(), 0);

  std::printf(
      "[ stats    ] %ld ops in %lld ms: pin %ld ok / %ld ENOENT / %ld EINVAL, unpin %ld, rw %ld ok / %ld ENOENT / "
      "%ld EINVAL, map %ld ok / %ld EEXIST, unmap %ld ok + %ld all / %ld ENOENT / %ld EBUSY / %ld EDEADLOCK, "
      "attach %ld, replace %ld, detach %ld, refused moves %ld, destroys %ld, device attaches %ld, "
      "callbacks %ld, invariant checks %ld\n",
      st.total(),
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - start_time).count()),
      st.pin_ok.load(), st.pin_enoent.load(), st.pin_einval.load(), st.unpin.load(), st.rw_ok.load(),
      st.rw_enoent.load(), st.rw_einval.load(), st.map_ok.load(), st.map_eexist.load(), st.unmap_ok.load(),
      st.unmap_all_ok.load(), st.unmap_enoent.load(), st.unmap_ebusy.load(), st.unmap_edeadlock.load(),
      st.attach_ok.load(), st.replace_ok.load(), st.detach.load(), st.move_refused.load(), st.destroys.load(),
      st.device_attaches.load(), callbacks, st.invariant_checks.load());
  // Every kind of operation ran and succeeded at least once.
  EXPECT_GT(st.pin_ok.load(), 0);
  EXPECT_GT(st.rw_ok.load(), 0);
  EXPECT_GT(st.unmap_ok.load(), 0);
  EXPECT_GT(st.map_ok.load(), 0);
  EXPECT_GT(st.replace_ok.load() + st.attach_ok.load(), 0);
  EXPECT_GT(st.destroys.load(), 0);
  EXPECT_GT(st.device_attaches.load(), 0);

  dev.reset();
  EXPECT_TRUE(ctx->destroy(dev_id).ok());
  for (auto& r : ioas) r.reset();
  ctx.reset();
  EXPECT_EQ(Pages::total_pinned_pages(), baseline.pinned);
  for (char* b : buf) munmap(b, kLen);
}

}  // namespace
}  // namespace uiommufd
