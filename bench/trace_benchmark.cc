// The tracer's cost (docs/trace.md), measured from a program run under `uiommufd trace -o /dev/null --`
// (`make bench` starts this binary so):
//
//   trace_overhead   IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP of one page through the interposed, traced ioctl (each
//                    call decoded, formatted and written to /dev/null) / the same two ioctls into this
//                    binary's own dispatcher (what the preload runs behind its fd table), untraced. The
//                    numerator also carries the interposer's own cost (fd table, engine gate: see
//                    ioctl_map_unmap_4k), so the figure overstates the tracer's share slightly.
//
// Paired: blocks of the traced calls alternate with blocks of the untraced ones.

#include <cstdint>
#include <cstdlib>
#include <memory>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "figures.h"
#include "map_unmap.h"
#include "testing/test_fd_host.h"

#include "uiommufd/base/page.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::bench {
namespace {

constexpr std::uint64_t kIova = 1ull << 30;

void BM_TracedIoctlMapUnmap4k(benchmark::State& state) {
  if (!std::getenv("UIOMMUFD_TRACE"))
    return skip(state, "not traced: run under `uiommufd trace -o /dev/null --`");
  void* buf =
      mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  const int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
  uapi::iommu_ioas_alloc alloc{sizeof(alloc), 0, 0};
  if (buf == MAP_FAILED || fd < 0 || ioctl(fd, uapi::IOMMU_IOAS_ALLOC, &alloc) != 0) {
    if (fd >= 0) close(fd);
    return skip(state, "/dev/iommu is not served: run this benchmark under `uiommufd trace --`");
  }
  uapi::testing::TestFdHost host;
  Result<std::shared_ptr<uapi::IommufdFile>> file = uapi::IommufdFile::open(host, false);
  uapi::iommu_ioas_alloc own{sizeof(own), 0, 0};
  if (!file.ok() || (*file)->ioctl(uapi::IOMMU_IOAS_ALLOC, reinterpret_cast<std::uintptr_t>(&own)) != 0) {
    close(fd);
    return skip(state, "the in-process dispatcher cannot allocate an IOAS");
  }
  const auto uptr = reinterpret_cast<std::uintptr_t>(buf);
  bool failed = false;
  run_paired(
      state, [&] { failed |= !map_unmap_page(fd, alloc.out_ioas_id, uptr, kIova); },
      [&] { failed |= !map_unmap_page(**file, own.out_ioas_id, uptr, kIova); });
  if (failed) state.SkipWithError("a map or unmap failed");
  close(fd);
  munmap(buf, kPageSize);
}
BENCHMARK(BM_TracedIoctlMapUnmap4k)->UseManualTime();

const FigureTable kFigures{{
    {.name = "trace_overhead", .numerator = "BM_TracedIoctlMapUnmap4k", .target = 2.0},
}};

}  // namespace
}  // namespace uiommufd::bench
