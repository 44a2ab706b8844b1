// The fault queue's round trip, from a program run under the preload (`make bench` starts the runtime bench
// with `uiommufd run --`):
//
//   iopf_round_trip  IOMMU_TEST_OP_TRIGGER_IOPF (a mock device raises one page request), read() of its
//                    struct iommu_hwpt_pgfault from the fault fd and write() of its response / an eventfd
//                    write + read + write + read through the C library: the system calls a kernel-side
//                    round trip would cost at least (the fault's wake-up, its read, the response, and the
//                    device being told).
//
// Paired: blocks of the round trip alternate with blocks of the eventfd baseline.

#include <cstdint>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "figures.h"
#include "mock_device_fd.h"

#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::bench {
namespace {

using ReadFn = ssize_t (*)(int, void*, size_t);
using WriteFn = ssize_t (*)(int, const void*, size_t);

template <typename Fn>
Fn libc_fn(const char* name) {
  void* libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
  return libc ? reinterpret_cast<Fn>(dlsym(libc, name)) : nullptr;
}

// An iommufd with a mock device whose RID is on an HWPT delivering to a fault queue; -1 when /dev/iommu is
// not served.
struct FaultSetup : MockDeviceFd {
  int qfd = -1;
  bool open() {
    if (!open_mock_device()) return false;
    uapi::iommu_fault_alloc fa{sizeof(fa), 0, 0, 0};
    if (ioctl(fd, uapi::IOMMU_FAULT_QUEUE_ALLOC, &fa) != 0) return false;
    qfd = static_cast<int>(fa.out_fault_fd);
    uapi::iommu_hwpt_alloc ha{};
    ha.size = sizeof(ha);
    ha.flags = kHwptFaultIdValid;
    ha.dev_id = idev;
    ha.pt_id = ioas;
    ha.fault_id = fa.out_fault_id;
    if (ioctl(fd, uapi::IOMMU_HWPT_ALLOC, &ha) != 0) return false;
    uapi::iommu_test_cmd rep{};
    rep.size = sizeof(rep);
    rep.op = uapi::IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE;
    rep.id = stdev;
    rep.mock_domain_replace.pt_id = ha.out_hwpt_id;
    return ioctl(fd, uapi::IOMMU_TEST_CMD, &rep) == 0;
  }
  ~FaultSetup() {
    if (qfd >= 0) close(qfd);
  }
};

void BM_IopfRoundTrip(benchmark::State& state) {
  FaultSetup s;
  const auto libc_read = libc_fn<ReadFn>("read");
  const auto libc_write = libc_fn<WriteFn>("write");
  if (!s.open()) {
    skip(state, "/dev/iommu is not served: run this benchmark under `uiommufd run --`");
    return;
  }
  if (!libc_read || !libc_write) {
    skip(state, "the C library's read/write were not found");
    return;
  }
  const int efd = eventfd(0, EFD_CLOEXEC);
  uapi::iommu_test_cmd trigger{};
  trigger.size = sizeof(trigger);
  trigger.op = uapi::IOMMU_TEST_OP_TRIGGER_IOPF;
  trigger.trigger_iopf.dev_id = s.idev;
  trigger.trigger_iopf.grpid = 1;
  trigger.trigger_iopf.perm = uapi::IOMMU_PGFAULT_PERM_READ;
  trigger.trigger_iopf.addr = 0x100000;
  bool failed = efd < 0;
  run_paired(
      state,
      [&] {
        uapi::iommu_hwpt_pgfault f;
        failed |= ioctl(s.fd, uapi::IOMMU_TEST_CMD, &trigger) != 0;
        failed |= read(s.qfd, &f, sizeof f) != static_cast<ssize_t>(sizeof f);
        uapi::iommu_hwpt_page_response r{f.cookie, uapi::IOMMUFD_PAGE_RESP_SUCCESS};
        failed |= write(s.qfd, &r, sizeof r) != static_cast<ssize_t>(sizeof r);
      },
      [&] {
        std::uint64_t v = 1;
        failed |= libc_write(efd, &v, sizeof v) != sizeof v;
        failed |= libc_read(efd, &v, sizeof v) != sizeof v;
        failed |= libc_write(efd, &v, sizeof v) != sizeof v;
        failed |= libc_read(efd, &v, sizeof v) != sizeof v;
      });
  if (failed) state.SkipWithError("a step of the round trip failed");
  if (efd >= 0) close(efd);
}
BENCHMARK(BM_IopfRoundTrip)->UseManualTime();

const FigureTable kFigures{{
    {.name = "iopf_round_trip", .numerator = "BM_IopfRoundTrip", .target = 2.0},
}};

}  // namespace
}  // namespace uiommufd::bench
