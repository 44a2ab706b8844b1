// The vEVENT queue's batch read, from a program run under the preload (`make bench` starts the runtime bench
// with `uiommufd run --`):
//
//   vevent_read_batch  one read() of 1,000 queued events (each a struct iommufd_vevent_header and the mock's
//                      4-byte payload) from the queue's fd / a memcpy of the same 12,000 bytes. Per event,
//                      the ratio of the two; the target is 3.0. The read empties the queue, so it includes
//                      the one system call that clears the fd's readiness (uapi/poll_fd.h), which the
//                      kernel's read does not need and the memcpy does not pay.
//   vevent_read_batch_leaving_one  the same for 999 of the 1,000 events: the batch without that call.
//
// Paired and prepared: before each timed read, 1,000 TRIGGER_VEVENT calls fill the queue (untimed); before
// each memcpy, nothing (its source is ready). Each read must return exactly the 12,000 bytes, in order.

#include <cstdint>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "figures.h"
#include "mock_device_fd.h"

#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/objects/vevent_queue.h"
#include "uiommufd/objects/viommu.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::bench {
namespace {

constexpr int kEvents = 1000;
constexpr std::size_t kRecord = sizeof(VeventHeader) + sizeof(std::uint32_t);

// An iommufd with a mock device on a vIOMMU's nested HWPT, a virtual id, and a vEVENT queue deep enough for
// one batch; -1 when /dev/iommu is not served.
struct VeventSetup : MockDeviceFd {
  int qfd = -1;
  bool open() {
    if (!open_mock_device()) return false;
    uapi::iommu_hwpt_alloc parent{};
    parent.size = sizeof(parent);
    parent.flags = kHwptAllocNestParent;
    parent.dev_id = idev;
    parent.pt_id = ioas;
    if (ioctl(fd, uapi::IOMMU_HWPT_ALLOC, &parent) != 0) return false;
    uapi::iommu_viommu_alloc va{};
    va.size = sizeof(va);
    va.type = kViommuTypeSelftest;
    va.dev_id = idev;
    va.hwpt_id = parent.out_hwpt_id;
    if (ioctl(fd, uapi::IOMMU_VIOMMU_ALLOC, &va) != 0) return false;
    std::uint32_t stage1[2] = {kTestIotlbDefault, 0};
    uapi::iommu_hwpt_alloc nested{};
    nested.size = sizeof(nested);
    nested.dev_id = idev;
    nested.pt_id = va.out_viommu_id;
    nested.data_type = kHwptDataSelftest;
    nested.data_len = sizeof(stage1);
    nested.data_uptr = reinterpret_cast<std::uintptr_t>(stage1);
    if (ioctl(fd, uapi::IOMMU_HWPT_ALLOC, &nested) != 0) return false;
    uapi::iommu_vdevice_alloc vd{sizeof(vd), va.out_viommu_id, idev, 0, 0x99};
    if (ioctl(fd, uapi::IOMMU_VDEVICE_ALLOC, &vd) != 0) return false;
    uapi::iommu_test_cmd rep{};
    rep.size = sizeof(rep);
    rep.op = uapi::IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE;
    rep.id = stdev;
    rep.mock_domain_replace.pt_id = nested.out_hwpt_id;
    if (ioctl(fd, uapi::IOMMU_TEST_CMD, &rep) != 0) return false;
    uapi::iommu_veventq_alloc q{};
    q.size = sizeof(q);
    q.viommu_id = va.out_viommu_id;
    q.type = kVeventqTypeSelftest;
    q.veventq_depth = kEvents;
    if (ioctl(fd, uapi::IOMMU_VEVENTQ_ALLOC, &q) != 0) return false;
    qfd = static_cast<int>(q.out_veventq_fd);
    return true;
  }
  ~VeventSetup() {
    if (qfd >= 0) close(qfd);
  }
};

// Reads `read_events` of the kEvents queued before each read (the rest drained untimed by the next
// refill), against a memcpy of the same bytes.
void read_batch(benchmark::State& state, int read_events) {
  VeventSetup s;
  if (!s.open()) {
    skip(state, "/dev/iommu is not served: run this benchmark under `uiommufd run --`");
    return;
  }
  uapi::iommu_test_cmd trigger{};
  trigger.size = sizeof(trigger);
  trigger.op = uapi::IOMMU_TEST_OP_TRIGGER_VEVENT;
  trigger.trigger_vevent.dev_id = s.idev;
  const std::size_t bytes = read_events * kRecord;
  std::vector<unsigned char> out(kEvents * kRecord), src(bytes, 0x5a), dst(bytes);
  bool failed = false;
  run_paired_prepared(
      state,
      [&] {
        if (read_events < kEvents) failed |= read(s.qfd, out.data(), out.size()) < 0;  // what was left
        for (int i = 0; i < kEvents; ++i) failed |= ioctl(s.fd, uapi::IOMMU_TEST_CMD, &trigger) != 0;
      },
      [&] { failed |= read(s.qfd, out.data(), bytes) != static_cast<ssize_t>(bytes); }, [] {},
      [&] {
        std::memcpy(dst.data(), src.data(), src.size());
        benchmark::DoNotOptimize(dst.data());
      });
  // The batch came out whole and in order: consecutive sequence numbers, no lost-events header.
  VeventHeader first, last;
  std::memcpy(&first, out.data(), sizeof(first));
  std::memcpy(&last, out.data() + (read_events - 1) * kRecord, sizeof(last));
  failed |= first.flags != 0 || last.flags != 0 ||
            last.sequence - first.sequence != static_cast<std::uint32_t>(read_events - 1);
  if (failed) state.SkipWithError("a trigger or a read failed, or the batch was not whole");
}

void BM_VeventReadBatch(benchmark::State& state) { read_batch(state, kEvents); }
// A fixed count: each iteration first makes 1,000 events (untimed), which would otherwise multiply the
// iterations the short timed read asks for into minutes.
BENCHMARK(BM_VeventReadBatch)->UseManualTime()->Iterations(300);

// The same batch less its last event, so that the read leaves the queue non-empty: what the batch itself
// costs without the system call that emptying a queue makes to clear its fd's readiness.
void BM_VeventReadBatchLeavingOne(benchmark::State& state) { read_batch(state, kEvents - 1); }
BENCHMARK(BM_VeventReadBatchLeavingOne)->UseManualTime()->Iterations(300);

const FigureTable kFigures{{
    {.name = "vevent_read_batch", .numerator = "BM_VeventReadBatch", .target = 3.0},
    {.name = "vevent_read_batch_leaving_one", .numerator = "BM_VeventReadBatchLeavingOne", .target = 3.0},
}};

}  // namespace
}  // namespace uiommufd::bench
