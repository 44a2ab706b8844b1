// WaitWord: a waiter sleeps until the word changes and is woken by the change; the deadline bounds it.
#include "uiommufd/base/wait_word.h"

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <sys/resource.h>

namespace uiommufd {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// CPU time this thread has used (getrusage of the thread, user + system).
std::chrono::microseconds thread_cpu() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  auto us = [](const timeval& tv) {
    return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
  };
  return std::chrono::duration_cast<std::chrono::microseconds>(us(ru.ru_utime) + us(ru.ru_stime));
}

TEST(WaitWordTest, AChangeBeforeTheWaitIsNotMissed) {
  WaitWord w;
  const std::uint32_t seen = w.load();
  w.bump();
  EXPECT_TRUE(w.wait_change(seen, Clock::now() + 10s));
}

TEST(WaitWordTest, TheDeadlineEndsAWaitThatNothingWakes) {
  WaitWord w(7);
  const auto start = Clock::now();
  EXPECT_FALSE(w.wait_change(7, start + 20ms));
  EXPECT_GE(Clock::now() - start, 20ms);
  EXPECT_FALSE(w.wait_change(7, start));  // already past
}

TEST(WaitWordTest, ABumpWakesEveryWaiter) {
  WaitWord w;
  const std::uint32_t seen = w.load();
  std::atomic<int> woken{0};
  std::thread a([&] { woken += w.wait_change(seen, Clock::now() + 60s); });
  std::thread b([&] { woken += w.wait_change(seen, Clock::now() + 60s); });
  std::this_thread::sleep_for(20ms);
  w.bump();
  a.join();
  b.join();
  EXPECT_EQ(woken.load(), 2);
}

TEST(WaitWordTest, AWaiterBurnsNoCpuWhileItWaits) {
  WaitWord w;
  const std::uint32_t seen = w.load();
  std::chrono::microseconds used{};
  std::thread waiter([&] {
    const auto before = thread_cpu();
    EXPECT_TRUE(w.wait_change(seen, Clock::now() + 60s));
    used = thread_cpu() - before;
  });
  std::this_thread::sleep_for(300ms);
  w.bump();
  waiter.join();
  // A sleeping thread uses a few system calls' worth of CPU; a polling one, a large part of the 300 ms.
  EXPECT_LT(used, 5ms) << used.count() << " us of CPU while waiting 300 ms";
}

TEST(WaitWordTest, AWaiterForAConditionKeptElsewhereIsWokenByNotify) {
  // The pattern of a destroy waiting for a count held by another object: announce, read, wait.
  WaitWord w;
  std::atomic<std::uint32_t> users{3};
  std::thread dropper([&] {
    std::this_thread::sleep_for(10ms);
    users.fetch_sub(1, std::memory_order_seq_cst);
    w.notify();
  });
  WaitWord::Waiter waiter(w);
  while (users.load(std::memory_order_seq_cst) != 2) ASSERT_TRUE(waiter.wait(Clock::now() + 60s));
  dropper.join();
}

TEST(WaitWordTest, NotifyWithNobodyWaitingLeavesTheWordAlone) {
  WaitWord w(5);
  w.notify();
  EXPECT_EQ(w.load(), 5u);
  WaitWord::Waiter waiter(w);
  w.notify();
  EXPECT_EQ(w.load(), 6u);
  EXPECT_TRUE(waiter.wait(Clock::now() + 60s));  // the notify after the announcement is seen
  EXPECT_FALSE(waiter.wait(Clock::now() + 10ms));
}

}  // namespace
}  // namespace uiommufd
