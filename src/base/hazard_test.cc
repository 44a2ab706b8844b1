// Hazard pointers: what protect() returns, that a reclaimer waits for a protection in place and for no
// other, that a thread cannot nest protections, and a stress run of lock-free readers against a reclaimer
// freeing what they read (clean under ASan and TSan means no reader touched freed memory).
#include "uiommufd/base/hazard.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace uiommufd {
namespace {

struct Counted {
  std::atomic<std::uint32_t> users{1};
  std::uint64_t payload = 0x5eed;
  bool try_get() {
    std::uint32_t u = users.load();
    do {
      if (u == 0) return false;
    } while (!users.compare_exchange_weak(u, u + 1));
    return true;
  }
};

TEST(HazardTest, ProtectReturnsWhatTheSlotHolds) {
  Counted c;
  std::atomic<Counted*> slot{&c};
  HazardGuard g;
  ASSERT_TRUE(g.available());
  EXPECT_EQ(g.protect(slot), &c);
  slot.store(nullptr);
  HazardGuard empty;
  g.reset();
  EXPECT_EQ(empty.protect(slot), nullptr);
}

TEST(HazardTest, ASecondGuardOnTheSameThreadIsUnavailableWhileTheFirstProtects) {
  Counted c;
  std::atomic<Counted*> slot{&c};
  HazardGuard outer;
  ASSERT_EQ(outer.protect(slot), &c);
  HazardGuard inner;
  EXPECT_FALSE(inner.available());
  outer.reset();
  EXPECT_TRUE(inner.available());
}

TEST(HazardTest, WaitReturnsAtOnceForAPointerNobodyProtects) {
  Counted a, b;
  std::atomic<Counted*> slot{&a};
  HazardGuard g;
  ASSERT_EQ(g.protect(slot), &a);
  hazard_wait_unprotected(&b);  // a is protected, b is not: must not block
  g.reset();
  hazard_wait_unprotected(&a);
}

TEST(HazardTest, WaitBlocksUntilAnotherThreadLetsGo) {
  Counted c;
  std::atomic<Counted*> slot{&c};
  std::atomic<bool> protecting{false}, release{false}, waited{false};
  std::thread reader([&] {
    HazardGuard g;
    if (g.protect(slot) != &c) return;
    protecting.store(true);
    while (!release.load()) std::this_thread::yield();
  });
  while (!protecting.load()) std::this_thread::yield();
  slot.store(nullptr, std::memory_order_seq_cst);
  std::thread reclaimer([&] {
    hazard_wait_unprotected(&c);
    waited.store(true);
  });
  // Not a timing check: the wait may not end while the protection stands, however long we look.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(waited.load());
  release.store(true);
  reader.join();
  reclaimer.join();
  EXPECT_TRUE(waited.load());
}

TEST(HazardTest, ARecordIsReusedAfterItsThreadExits) {
  Counted c;
  std::atomic<Counted*> slot{&c};
  for (int i = 0; i < 200; ++i) {
    std::thread([&] {
      HazardGuard g;
      EXPECT_EQ(g.protect(slot), &c);
    }).join();
  }
  hazard_wait_unprotected(&c);  // every exited thread's record was retracted
}

// Readers take counted references through a slot while a writer keeps replacing its object, dropping the
// slot's reference and freeing the old object once it is unreferenced and unprotected. Bounded in time.
TEST(HazardTest, ReadersNeverTouchAFreedObject) {
  std::atomic<Counted*> slot{new Counted};
  std::atomic<bool> stop{false};
  std::atomic<long> got{0}, bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        HazardGuard g;
        Counted* c = g.protect(slot);
        if (c == nullptr || !c->try_get()) continue;
        g.reset();
        if (c->payload != 0x5eed) bad.fetch_add(1);
        got.fetch_add(1, std::memory_order_relaxed);
        c->users.fetch_sub(1);
      }
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  long replaced = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    Counted* old = slot.exchange(new Counted, std::memory_order_seq_cst);
    // Take the slot's reference away; readers that got in before hold their own.
    std::uint32_t expected = 1;
    while (!old->users.compare_exchange_weak(expected, 0)) {
      expected = 1;
      std::this_thread::yield();
    }
    hazard_wait_unprotected(old);
    old->payload = 0;
    delete old;
    ++replaced;
  }
  stop.store(true);
  for (auto& r : readers) r.join();
  delete slot.load();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(replaced, 0);
  EXPECT_GT(got.load(), 0);
}

}  // namespace
}  // namespace uiommufd
