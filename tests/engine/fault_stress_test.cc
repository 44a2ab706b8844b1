// Concurrency stress of fault queues (docs/semantics.md#fault-queues), through the dispatcher and queue
// files of a TestFdHost, for a bounded time:
//   - two threads raise page requests on a mock device, one with TRIGGER_IOPF and one with
//     Device::report_page_fault() and a responder that counts the answers;
//   - two threads poll the queue's fd (the real FIFO behind it), read whatever groups wait and answer them;
//   - one thread moves the device between two fault-capable HWPTs on the queue and its IOAS, so that
//     attachments end under the readers (their groups answered INVALID);
//   - one thread makes a second queue with its own fd, HWPT and device, raises and reads a fault there, and
//     tears it all down again (close the fd, detach, destroy the HWPT, destroy the queue), in a loop.
// At the end every group reported with a responder has been answered exactly once, the queue is empty, the
// object count is back to the start, and the lock validator reported nothing.
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <poll.h>

#include "dispatch_fixture.h"
#include "stress_baseline.h"
#include "testing/test_fd_host.h"

#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/fault_queue.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd {
namespace {

using uapi::testing::make_test_cmd;
constexpr auto kRunTime = std::chrono::milliseconds(1500);

struct Counter {
  std::atomic<std::uint64_t> answered{0};
  static void answer(void* arg, const PageRequest&, PageResponseCode) {
    static_cast<Counter*>(arg)->answered.fetch_add(1, std::memory_order_relaxed);
  }
};

class FaultStressTest : public DispatchFixture {
 protected:
  std::uint32_t alloc_queue(int* qfd) {
    uapi::iommu_fault_alloc a{sizeof(a), 0, 0, 0};
    EXPECT_EQ(call(uapi::IOMMU_FAULT_QUEUE_ALLOC, &a), 0);
    *qfd = static_cast<int>(a.out_fault_fd);
    return a.out_fault_id;
  }
  std::uint32_t alloc_hwpt(std::uint32_t idev, std::uint32_t fault) {
    uapi::iommu_hwpt_alloc a{};
    a.size = sizeof(a);
    a.flags = kHwptFaultIdValid;
    a.dev_id = idev;
    a.pt_id = ioas_;
    a.fault_id = fault;
    EXPECT_EQ(call(uapi::IOMMU_HWPT_ALLOC, &a), 0);
    return a.out_hwpt_id;
  }
  // A mock device on the IOAS: its selftest id and device id.
  void mock_domain(std::uint32_t* stdev, std::uint32_t* idev) {
    uapi::iommu_test_cmd c = make_test_cmd(uapi::IOMMU_TEST_OP_MOCK_DOMAIN, ioas_);
    ASSERT_EQ(test(c), 0);
    *stdev = c.mock_domain.out_stdev_id;
    *idev = c.mock_domain.out_idev_id;
  }
  int trigger(std::uint32_t idev, std::uint32_t grpid) {
    uapi::iommu_test_cmd c = make_test_cmd(uapi::IOMMU_TEST_OP_TRIGGER_IOPF, 0);
    c.trigger_iopf.dev_id = idev;
    c.trigger_iopf.grpid = grpid;
    return test(c);
  }
  // Reads what waits on `file` and answers each group; the number of groups answered.
  static int drain(uapi::OpenFile& file) {
    uapi::iommu_hwpt_pgfault m[8];
    const long n = file.read(reinterpret_cast<std::uint64_t>(m), sizeof m);
    if (n <= 0) return 0;
    int answered = 0;
    for (long i = 0; i < n / static_cast<long>(sizeof m[0]); ++i) {
      uapi::iommu_hwpt_page_response r{m[i].cookie, uapi::IOMMUFD_PAGE_RESP_SUCCESS};
      // EINVAL when a replace answered it first.
      if (file.write(reinterpret_cast<std::uint64_t>(&r), sizeof r) == static_cast<long>(sizeof r))
        ++answered;
    }
    return answered;
  }

  std::uint32_t ioas_ = 0;
};

TEST_F(FaultStressTest, RaiseReadAnswerReplaceAndCloseConcurrently) {
  const StressBaseline baseline;
  ioas_ = open_with_ioas();
  ASSERT_NE(ioas_, 0u);
  const std::size_t objects0 = ctx().object_count();

  int qfd = -1;
  const std::uint32_t fault = alloc_queue(&qfd);
  std::uint32_t stdev = 0, idev = 0;
  mock_domain(&stdev, &idev);
  const std::uint32_t h1 = alloc_hwpt(idev, fault), h2 = alloc_hwpt(idev, fault);
  ASSERT_EQ(replace(stdev, h1), 0);
  std::shared_ptr<uapi::OpenFile> qfile = host_.lookup(qfd);
  ObjectRef<Device> dev = *ctx().get<Device>(idev, ObjectType::kDevice);
  ObjectRef<FaultQueue> queue = *ctx().get<FaultQueue>(fault, ObjectType::kFault);

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> reported{0}, read_answered{0}, loops{0};
  Counter counter;
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    for (std::uint32_t g = 0; !stop.load(); ++g) EXPECT_EQ(trigger(idev, g), 0);
  });
  threads.emplace_back([&] {
    for (std::uint32_t g = 0; !stop.load(); ++g) {
      PageRequest r{kPgfaultFlagLastPage, 0, g, kPgfaultPermRead, 0x1000};
      // EINVAL while the device sits on its IOAS between replaces: answered INVALID there and then.
      (void)dev->report_page_fault(&r, 1, PageResponder{&Counter::answer, &counter});
      reported.fetch_add(1, std::memory_order_relaxed);
    }
  });
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        pollfd p{qfd, POLLIN, 0};
        if (poll(&p, 1, 1) == 1) read_answered.fetch_add(drain(*qfile), std::memory_order_relaxed);
      }
    });
  }
  threads.emplace_back([&] {
    const std::uint32_t targets[] = {h2, ioas_, h1};
    for (int i = 0; !stop.load(); ++i) EXPECT_EQ(replace(stdev, targets[i % 3]), 0);
  });
  threads.emplace_back([&] {
    std::uint32_t stdev2 = 0, idev2 = 0;
    mock_domain(&stdev2, &idev2);
    while (!stop.load()) {
      int q2fd = -1;
      const std::uint32_t f2 = alloc_queue(&q2fd);
      const std::uint32_t h = alloc_hwpt(idev2, f2);
      EXPECT_EQ(replace(stdev2, h), 0);
      EXPECT_EQ(trigger(idev2, 1), 0);
      std::shared_ptr<uapi::OpenFile> f = host_.lookup(q2fd);
      EXPECT_EQ(drain(*f), 1);
      EXPECT_EQ(trigger(idev2, 2), 0);  // left waiting: the replace below answers it
      f.reset();
      host_.close(q2fd);
      EXPECT_EQ(destroy(f2), EBUSY);  // the HWPT holds it
      EXPECT_EQ(replace(stdev2, ioas_), 0);
      EXPECT_EQ(destroy(h), 0);
      EXPECT_EQ(destroy(f2), 0);
      loops.fetch_add(1, std::memory_order_relaxed);
    }
    EXPECT_EQ(destroy(stdev2), 0);
  });
  std::this_thread::sleep_for(kRunTime);
  stop.store(true);
  for (auto& t : threads) t.join();

  // Everything still waiting or read goes with the device's attachment.
  ASSERT_EQ(replace(stdev, ioas_), 0);
  EXPECT_EQ(queue->waiting_count(), 0u);
  EXPECT_EQ(queue->outstanding_count(), 0u);
  EXPECT_EQ(counter.answered.load(), reported.load());
  EXPECT_FALSE(queue->readable());
  pollfd p{qfd, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0);
  std::printf("reported %llu with a responder, %llu answered by readers, %llu second-queue loops\n",
              static_cast<unsigned long long>(reported.load()),
              static_cast<unsigned long long>(read_answered.load()),
              static_cast<unsigned long long>(loops.load()));
  EXPECT_GT(read_answered.load(), 0u);
  EXPECT_GT(loops.load(), 0u);

  queue.reset();
  dev.reset();
  qfile.reset();
  host_.close(qfd);
  EXPECT_EQ(destroy(h1), 0);
  EXPECT_EQ(destroy(h2), 0);
  EXPECT_EQ(destroy(fault), 0);
  EXPECT_EQ(destroy(stdev), 0);
  EXPECT_EQ(ctx().object_count(), objects0);
  host_.close(fd_);
  baseline.expect_back();
}

}  // namespace
}  // namespace uiommufd
