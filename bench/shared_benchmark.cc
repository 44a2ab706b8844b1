// The shared mode's costs (docs/shared.md), measured from a program run under `uiommufd run --shared --`
// (`make bench` starts this binary so):
//
//   shared_ioctl_map_unmap_4k     IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP of one page on /dev/iommu, served by the
//                                 server process / the same two ioctls into an in-process dispatcher (this
//                                 binary's own engine, what the in-process preload runs behind its fd table).
//   unix_socket_round_trip        the floor of a forwarded call: one request of the protocol's size and its
//                                 reply over a SOCK_SEQPACKET pair, between this process and a forked echo
//                                 process; nanoseconds.
//   shared_ioctl_over_round_trip  the shared map + unmap / two such round trips: what the client, the server
//                                 and the engine add to the floor.
//
// All paired (figures.h): blocks of the operation alternate with blocks of its baseline.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "figures.h"
#include "map_unmap.h"
#include "server/protocol.h"
#include "testing/test_fd_host.h"

#include "uiommufd/base/page.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::bench {
namespace {

constexpr std::uint64_t kIova = 1ull << 30;
// The sizes of a request and of a reply on a channel.
constexpr std::size_t kRequestSize = sizeof(shared::Request), kReplySize = sizeof(shared::Reply);

// A forked process that answers every record on its end of a SOCK_SEQPACKET pair with a reply-sized one.
class Echo {
 public:
  Echo() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      close(sv[0]);
      char buf[std::max(kRequestSize, kReplySize)];
      while (recv(sv[1], buf, sizeof buf, 0) > 0)
        if (send(sv[1], buf, kReplySize, MSG_NOSIGNAL) != static_cast<ssize_t>(kReplySize)) break;
      _exit(0);
    }
    close(sv[1]);
    fd_ = pid_ > 0 ? sv[0] : -1;
    if (pid_ < 0) close(sv[0]);
  }
  ~Echo() {
    if (fd_ >= 0) close(fd_);
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }
  bool ok() const { return fd_ >= 0; }
  bool round_trip() {
    char buf[std::max(kRequestSize, kReplySize)] = {};
    return send(fd_, buf, kRequestSize, MSG_NOSIGNAL) == static_cast<ssize_t>(kRequestSize) &&
           recv(fd_, buf, sizeof buf, 0) == static_cast<ssize_t>(kReplySize);
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
};

// /dev/iommu as this process sees it (the server, under --shared), with an IOAS and a page to map.
struct SharedIoas {
  int fd = -1;
  std::uint32_t ioas = 0;
  void* buf = MAP_FAILED;
  bool open() {
    buf = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    fd = ::open("/dev/iommu", O_RDWR | O_CLOEXEC);
    uapi::iommu_ioas_alloc alloc{sizeof(alloc), 0, 0};
    if (buf == MAP_FAILED || fd < 0 || ioctl(fd, uapi::IOMMU_IOAS_ALLOC, &alloc) != 0) return false;
    ioas = alloc.out_ioas_id;
    return true;
  }
  ~SharedIoas() {
    if (fd >= 0) close(fd);
    if (buf != MAP_FAILED) munmap(buf, kPageSize);
  }
  bool map_unmap() { return map_unmap_page(fd, ioas, reinterpret_cast<std::uintptr_t>(buf), kIova); }
};

constexpr const char* kNotShared =
    "/dev/iommu is not served: run this benchmark under `uiommufd run --shared --`";

void BM_SharedIoctlMapUnmap4k(benchmark::State& state) {
  SharedIoas shared;
  if (!shared.open()) return skip(state, kNotShared);
  // The in-process side: this binary's own dispatcher, called as the preload's ioctl interposer calls it.
  uapi::testing::TestFdHost host;
  Result<std::shared_ptr<uapi::IommufdFile>> file = uapi::IommufdFile::open(host, false);
  uapi::iommu_ioas_alloc alloc{sizeof(alloc), 0, 0};
  if (!file.ok() || (*file)->ioctl(uapi::IOMMU_IOAS_ALLOC, reinterpret_cast<std::uintptr_t>(&alloc)) != 0)
    return skip(state, "the in-process dispatcher cannot allocate an IOAS");
  const auto uptr = reinterpret_cast<std::uintptr_t>(shared.buf);
  bool failed = false;
  run_paired(
      state, [&] { failed |= !shared.map_unmap(); },
      [&] { failed |= !map_unmap_page(**file, alloc.out_ioas_id, uptr, kIova); }, 100);
  if (failed) state.SkipWithError("a map or unmap failed");
}
BENCHMARK(BM_SharedIoctlMapUnmap4k)->UseManualTime();

void BM_UnixSocketRoundTrip(benchmark::State& state) {
  Echo echo;
  if (!echo.ok()) return skip(state, "no socket pair or fork");
  bool failed = false;
  for (auto _ : state) failed |= !echo.round_trip();
  if (failed) state.SkipWithError("a round trip failed");
}
BENCHMARK(BM_UnixSocketRoundTrip);

void BM_SharedIoctlOverRoundTrip(benchmark::State& state) {
  SharedIoas shared;
  if (!shared.open()) return skip(state, kNotShared);
  Echo echo;
  if (!echo.ok()) return skip(state, "no socket pair or fork");
  bool failed = false;
  run_paired(
      state, [&] { failed |= !shared.map_unmap(); },
      [&] { failed |= !echo.round_trip() || !echo.round_trip(); }, 100);
  if (failed) state.SkipWithError("a call failed");
}
BENCHMARK(BM_SharedIoctlOverRoundTrip)->UseManualTime();

const FigureTable kFigures{{
    {.name = "shared_ioctl_map_unmap_4k", .numerator = "BM_SharedIoctlMapUnmap4k", .target = 8.0},
    {.name = "unix_socket_round_trip",
     .numerator = "BM_UnixSocketRoundTrip",
     .direction = Direction::kInfo,
     .metric = "us",
     .scale_from_ns = 1e-3,
     .note = "(a request and a reply of the protocol's sizes, SOCK_SEQPACKET, two processes)"},
    {.name = "shared_ioctl_over_round_trip", .numerator = "BM_SharedIoctlOverRoundTrip", .target = 2.0},
}};

}  // namespace
}  // namespace uiommufd::bench
