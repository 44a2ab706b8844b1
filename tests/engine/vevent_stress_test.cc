// Concurrency stress of vEVENT queues (docs/semantics.md#vevent-queues), through the dispatcher and queue
// files of a TestFdHost, for a bounded time:
//   - two threads raise events with TRIGGER_VEVENT for a mock device on a vIOMMU's nested HWPT;
//   - two threads poll the queue's fd (the real timerfd behind it) and read whatever waits;
//   - one thread moves the device between the nested HWPT and its IOAS, so that triggers come and go;
//   - one thread makes a second queue of another type on the vIOMMU with its own fd, reads it (empty),
//     closes it and destroys it, in a loop.
// At the end: no event was read twice, every event read was reported (its sequence number below the number
// of successful reports), the events read plus those lost account for every report (when fewer were read, a
// lost-events header was seen), the queue is empty and not readable, the objects are as they were and the
// lock validator reported nothing.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <poll.h>

#include "dispatch_fixture.h"
#include "stress_baseline.h"
#include "testing/test_fd_host.h"

#include "uiommufd/objects/context.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/objects/vevent_queue.h"
#include "uiommufd/objects/viommu.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd {
namespace {

using uapi::testing::make_test_cmd;
constexpr auto kRunTime = std::chrono::milliseconds(1500);
constexpr std::size_t kRecord = sizeof(VeventHeader) + sizeof(std::uint32_t);

class VeventStressTest : public DispatchFixture {
 protected:
  std::uint32_t alloc_queue(std::uint32_t type, std::uint32_t depth, int* qfd) {
    uapi::iommu_veventq_alloc a{};
    a.size = sizeof(a);
    a.viommu_id = viommu_;
    a.type = type;
    a.veventq_depth = depth;
    EXPECT_EQ(call(uapi::IOMMU_VEVENTQ_ALLOC, &a), 0);
    *qfd = static_cast<int>(a.out_veventq_fd);
    return a.out_veventq_id;
  }

  std::uint32_t viommu_ = 0;
};

TEST_F(VeventStressTest, TriggerReadReplaceAndRecreateConcurrently) {
  const StressBaseline baseline;
  const std::uint32_t ioas = open_with_ioas();
  ASSERT_NE(ioas, 0u);
  const std::size_t objects0 = ctx().object_count();
  uapi::iommu_test_cmd md = make_test_cmd(uapi::IOMMU_TEST_OP_MOCK_DOMAIN, ioas);
  ASSERT_EQ(test(md), 0);
  const std::uint32_t stdev = md.mock_domain.out_stdev_id, idev = md.mock_domain.out_idev_id;
  uapi::iommu_hwpt_alloc parent{};
  parent.size = sizeof(parent);
  parent.flags = kHwptAllocNestParent;
  parent.dev_id = idev;
  parent.pt_id = ioas;
  ASSERT_EQ(call(uapi::IOMMU_HWPT_ALLOC, &parent), 0);
  uapi::iommu_viommu_alloc va{};
  va.size = sizeof(va);
  va.type = kViommuTypeSelftest;
  va.dev_id = idev;
  va.hwpt_id = parent.out_hwpt_id;
  ASSERT_EQ(call(uapi::IOMMU_VIOMMU_ALLOC, &va), 0);
  viommu_ = va.out_viommu_id;
  std::uint32_t stage1[2] = {kTestIotlbDefault, 0};
  uapi::iommu_hwpt_alloc nested{};
  nested.size = sizeof(nested);
  nested.dev_id = idev;
  nested.pt_id = viommu_;
  nested.data_type = kHwptDataSelftest;
  nested.data_len = sizeof(stage1);
  nested.data_uptr = reinterpret_cast<std::uintptr_t>(stage1);
  ASSERT_EQ(call(uapi::IOMMU_HWPT_ALLOC, &nested), 0);
  uapi::iommu_vdevice_alloc vd{sizeof(vd), viommu_, idev, 0, 0x99};
  ASSERT_EQ(call(uapi::IOMMU_VDEVICE_ALLOC, &vd), 0);
  ASSERT_EQ(replace(stdev, nested.out_hwpt_id), 0);
  int qfd = -1;
  const std::uint32_t q = alloc_queue(kVeventqTypeSelftest, 64, &qfd);
  std::shared_ptr<uapi::OpenFile> qfile = host_.lookup(qfd);

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> reported{0}, loops{0};
  std::atomic<bool> saw_lost{false};
  std::mutex seen_mu;
  std::vector<std::uint32_t> seen;  // sequence numbers of the events read
  auto drain = [&] {
    unsigned char buf[32 * kRecord];
    const long n = qfile->read(reinterpret_cast<std::uint64_t>(buf), sizeof buf);
    if (n <= 0) return;
    std::vector<std::uint32_t> mine;
    for (long at = 0; at < n;) {
      VeventHeader h;
      std::memcpy(&h, buf + at, sizeof h);
      if (h.flags & kVeventqFlagLostEvents) {
        saw_lost.store(true);
        at += sizeof h;
        continue;
      }
      std::uint32_t virt_id;
      std::memcpy(&virt_id, buf + at + sizeof h, sizeof virt_id);
      EXPECT_EQ(virt_id, 0x99u);
      mine.push_back(h.sequence);
      at += kRecord;
    }
    // One read hands out records in order.
    EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()));
    std::lock_guard<std::mutex> g(seen_mu);
    seen.insert(seen.end(), mine.begin(), mine.end());
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      uapi::iommu_test_cmd t = make_test_cmd(uapi::IOMMU_TEST_OP_TRIGGER_VEVENT, 0);
      t.trigger_vevent.dev_id = idev;
      while (!stop.load()) {
        const int err = test(t);
        // ENOENT while the device sits on its IOAS.
        EXPECT_TRUE(err == 0 || err == ENOENT) << err;
        if (err == 0) reported.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        pollfd p{qfd, POLLIN, 0};
        if (poll(&p, 1, 1) == 1) drain();
      }
    });
  }
  threads.emplace_back([&] {
    const std::uint32_t targets[] = {ioas, nested.out_hwpt_id};
    for (int i = 0; !stop.load(); ++i) EXPECT_EQ(replace(stdev, targets[i % 2]), 0);
  });
  threads.emplace_back([&] {
    while (!stop.load()) {
      int q2fd = -1;
      const std::uint32_t q2 = alloc_queue(0x1234, 4, &q2fd);
      std::shared_ptr<uapi::OpenFile> f = host_.lookup(q2fd);
      unsigned char b[64];
      EXPECT_EQ(f->read(reinterpret_cast<std::uint64_t>(b), sizeof b), 0);
      f.reset();
      EXPECT_EQ(destroy(q2), EBUSY);  // its fd is open
      host_.close(q2fd);
      EXPECT_EQ(destroy(q2), 0);
      loops.fetch_add(1, std::memory_order_relaxed);
    }
  });
  std::this_thread::sleep_for(kRunTime);
  stop.store(true);
  for (auto& t : threads) t.join();
  drain();
  drain();

  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "an event was read twice";
  // Every report takes the next sequence number from 0, queued or lost; nothing injects failures here.
  if (!seen.empty()) {
    EXPECT_LT(seen.back(), reported.load());
  }
  EXPECT_LE(seen.size(), reported.load());
  if (seen.size() < reported.load()) {
    EXPECT_TRUE(saw_lost.load());
  }
  auto queue = ctx().get<VeventQueue>(q, ObjectType::kVeventq);
  ASSERT_TRUE(queue.ok());
  EXPECT_EQ((*queue)->event_count(), 0u);
  EXPECT_FALSE((*queue)->readable());
  pollfd p{qfd, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0);
  std::printf("reported %llu, read %zu, second-queue loops %llu\n",
              static_cast<unsigned long long>(reported.load()), seen.size(),
              static_cast<unsigned long long>(loops.load()));
  EXPECT_GT(seen.size(), 0u);
  EXPECT_GT(loops.load(), 0u);

  queue->reset();
  qfile.reset();
  host_.close(qfd);
  EXPECT_EQ(replace(stdev, ioas), 0);
  EXPECT_EQ(destroy(q), 0);
  EXPECT_EQ(destroy(vd.out_vdevice_id), 0);
  EXPECT_EQ(destroy(nested.out_hwpt_id), 0);
  EXPECT_EQ(destroy(viommu_), 0);
  EXPECT_EQ(destroy(parent.out_hwpt_id), 0);
  EXPECT_EQ(destroy(stdev), 0);
  EXPECT_EQ(ctx().object_count(), objects0);
  host_.close(fd_);
  baseline.expect_back();
}

}  // namespace
}  // namespace uiommufd
