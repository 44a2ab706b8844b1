// The engine's waits sleep until the finishing side wakes them: a destroy waiting for an operation in
// flight, an access destroy waiting for a move in another thread, an unmap waiting for an access that is
// being destroyed. Each test checks that the waiter comes back soon after the event it waits for and that
// it used (almost) no CPU while it waited, measured with getrusage() of the waiting thread.
#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "uiommufd/objects/access.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/ioas.h"

namespace uiommufd {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How long each waiter is kept waiting, and the bounds it must meet. The CPU bound is a few system calls'
// worth: a thread that polled, even with sleeps of 20 us, would spend several milliseconds of it.
constexpr auto kHeld = 300ms;
constexpr auto kMaxCpu = 5ms;
// "Soon after": far above a futex wake-up, far below what a busy machine's scheduler could excuse.
constexpr auto kMaxLatency = 100ms;

std::chrono::microseconds thread_cpu() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  auto us = [](const timeval& tv) {
    return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
  };
  return std::chrono::duration_cast<std::chrono::microseconds>(us(ru.ru_utime) + us(ru.ru_stime));
}

// Runs `wait` on its own thread and records its CPU use and the time it returned.
class Waiter {
 public:
  template <typename F>
  explicit Waiter(F wait)
      : thread_([this, wait] {
          const auto before = thread_cpu();
          wait();
          cpu_ = thread_cpu() - before;
          returned_ = Clock::now();
          done_.store(true);
        }) {}
  void join() { thread_.join(); }
  bool done() const { return done_.load(); }
  std::chrono::microseconds cpu() const { return cpu_; }
  Clock::time_point returned() const { return returned_; }

 private:
  std::chrono::microseconds cpu_{};
  Clock::time_point returned_{};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

class WaitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = std::move(*Context::create());
    mem_ = mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem_, MAP_FAILED);
    ioas_id_ = *Ioas::create(*ctx_);
  }
  void TearDown() override {
    ctx_.reset();
    munmap(mem_, kLen);
  }
  Ioas& ioas() { return *ctx_->get<Ioas>(ioas_id_, ObjectType::kIoas)->get(); }

  static constexpr std::size_t kLen = 16 * kPageSize;
  std::unique_ptr<Context> ctx_;
  void* mem_ = nullptr;
  std::uint32_t ioas_id_ = 0;
};

TEST_F(WaitTest, DestroySleepsUntilTheOperationInFlightEnds) {
  ObjectRef<Device> device = *Device::bind(*ctx_, Device::Kind::kMock);
  const std::uint32_t id = device->id();
  // An operation in flight: a short-term reference, as every ioctl on the device holds.
  ObjectRef<Device> in_flight = *ctx_->get<Device>(id, ObjectType::kDevice);
  Waiter destroyer([&] { Device::unbind(std::move(device)); });
  std::this_thread::sleep_for(kHeld);
  EXPECT_FALSE(destroyer.done());
  const auto end = Clock::now();
  in_flight.reset();
  destroyer.join();
  EXPECT_LT(destroyer.returned() - end, kMaxLatency);
  EXPECT_LT(destroyer.cpu(), kMaxCpu) << destroyer.cpu().count() << " us";
  EXPECT_EQ(ctx_->get<Device>(id, ObjectType::kDevice).error(), ENOENT);
}

TEST_F(WaitTest, AccessDestroySleepsUntilAMoveInAnotherThreadEnds) {
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> calls{0};
  Access::Ops ops;
  ops.unmap = [&](std::uint64_t, std::uint64_t) {
    // The first callback is the detach's: it holds the move open until the test lets it go.
    if (calls.fetch_add(1) == 0) {
      entered.set_value();
      released.wait();
    }
  };
  ObjectRef<Access> access = *Access::create(*ctx_, ops);
  ASSERT_TRUE(access->attach(ioas_id_).ok());
  Access* raw = access.get();
  std::thread mover([raw] { raw->detach(); });
  entered.get_future().wait();
  Waiter destroyer([&] { Access::destroy(std::move(access)); });
  std::this_thread::sleep_for(kHeld);
  EXPECT_FALSE(destroyer.done());
  const auto end = Clock::now();
  release.set_value();
  mover.join();
  destroyer.join();
  EXPECT_LT(destroyer.returned() - end, kMaxLatency);
  EXPECT_LT(destroyer.cpu(), kMaxCpu) << destroyer.cpu().count() << " us";
}

TEST_F(WaitTest, UnmapSleepsUntilAnAccessBeingDestroyedLetsGo) {
  std::uint64_t iova = 0x1000000;
  ASSERT_TRUE(ioas()
                  .map(reinterpret_cast<std::uint64_t>(mem_), kLen, &iova,
                       Ioas::kReadable | Ioas::kWriteable | Ioas::kFixedIova)
                  .ok());
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  Access* raw = nullptr;
  Access::Ops ops;
  ops.unmap = [&](std::uint64_t, std::uint64_t) {
    // Only the destroyer calls back: the unmap skips an access being destroyed. Its callback holds the pin
    // until the test lets it go, then unpins.
    entered.set_value();
    released.wait();
    raw->unpin_pages(iova, kPageSize);
  };
  ObjectRef<Access> access = *Access::create(*ctx_, ops);
  raw = access.get();
  ASSERT_TRUE(access->attach(ioas_id_).ok());
  std::vector<AccessPage> pages;
  ASSERT_TRUE(access->pin_pages(iova, kPageSize, &pages, 0).ok());
  std::thread destroyer([&] { Access::destroy(std::move(access)); });
  entered.get_future().wait();
  Status st;
  std::uint64_t unmapped = 0;
  Waiter unmapper([&] { st = ioas().unmap(0, kUlongMax, &unmapped); });
  std::this_thread::sleep_for(kHeld);
  EXPECT_FALSE(unmapper.done());
  const auto end = Clock::now();
  release.set_value();
  destroyer.join();
  unmapper.join();
  EXPECT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(unmapped, kLen);
  EXPECT_LT(unmapper.returned() - end, kMaxLatency);
  EXPECT_LT(unmapper.cpu(), kMaxCpu) << unmapper.cpu().count() << " us";
}

}  // namespace
}  // namespace uiommufd
