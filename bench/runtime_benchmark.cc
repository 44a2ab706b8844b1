// The /dev/iommu runtime's costs, measured from a program run under the preload (`make bench` starts this
// binary with `uiommufd run --`):
//
//   ioctl_map_unmap_4k   IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP of one page through the interposed ioctl (fd
//                        table, struct copies under the size rules, dispatch) / the same two operations
//                        through the C++ API (Ioas::map + Ioas::unmap) on this binary's own engine.
//   preload_passthrough  a 1-byte read from a pipe through the interposed read() (an fd that is not
//                        ours) / the same read through the C library's own read().
//
// Both are paired: blocks of the operation alternate with blocks of its baseline.

#include <cstdio>
#include <cstdlib>
#include <memory>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "figures.h"
#include "map_unmap.h"

#include "uiommufd/objects/context.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::bench {
namespace {

using ReadFn = ssize_t (*)(int, void*, size_t);
using WriteFn = ssize_t (*)(int, const void*, size_t);

// The C library's own entry points, which the preload's interposers sit in front of.
template <typename Fn>
Fn libc_symbol(const char* name) {
  void* libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
  return libc ? reinterpret_cast<Fn>(dlsym(libc, name)) : nullptr;
}

constexpr std::uint64_t kIova = 1ull << 30;

void BM_IoctlMapUnmap4k(benchmark::State& state) {
  void* buf = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  const int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
  uapi::iommu_ioas_alloc alloc{sizeof(alloc), 0, 0};
  if (buf == MAP_FAILED || fd < 0 || ioctl(fd, uapi::IOMMU_IOAS_ALLOC, &alloc) != 0) {
    state.SkipWithError("/dev/iommu is not served: run this benchmark under `uiommufd run --`");
    if (fd >= 0) close(fd);
    return;
  }
  auto ctx = Context::create();
  std::uint32_t ioas_id = *Ioas::create(**ctx);
  ObjectRef<Ioas> ioas = *(*ctx)->get<Ioas>(ioas_id, ObjectType::kIoas);
  const auto uptr = reinterpret_cast<std::uintptr_t>(buf);
  bool failed = false;
  run_paired(
      state, [&] { failed |= !map_unmap_page(fd, alloc.out_ioas_id, uptr, kIova); },
      [&] {
        std::uint64_t iova = kIova, unmapped = 0;
        failed |= !ioas->map(uptr, kPageSize, &iova, kMapFixedRw).ok();
        failed |= !ioas->unmap(kIova, kPageSize, &unmapped).ok();
      });
  if (failed) state.SkipWithError("a map or unmap failed");
  ioas.reset();
  close(fd);
  munmap(buf, kPageSize);
}
BENCHMARK(BM_IoctlMapUnmap4k)->UseManualTime();

// Reads one byte at a time from a pipe kept non-empty; both sides refill it the same way (a real write of
// a page every page of reads), so the refill cost cancels out of the ratio.
class PipeReader {
 public:
  PipeReader(ReadFn read_fn, WriteFn refill) : read_(read_fn), refill_(refill) {
    if (pipe2(fds_, O_CLOEXEC) != 0) std::abort();
  }
  ~PipeReader() {
    close(fds_[0]);
    close(fds_[1]);
  }
  bool read_one() {
    if (left_ == 0) {
      static char page[kPageSize];
      if (refill_(fds_[1], page, sizeof(page)) != static_cast<ssize_t>(sizeof(page))) return false;
      left_ = sizeof(page);
    }
    char c;
    --left_;
    return read_(fds_[0], &c, 1) == 1;
  }

 private:
  ReadFn read_;
  WriteFn refill_;
  int fds_[2];
  std::size_t left_ = 0;
};

void BM_PreloadPassthrough(benchmark::State& state) {
  const auto libc_read = libc_symbol<ReadFn>("read");
  const auto libc_write = libc_symbol<WriteFn>("write");
  if (!libc_read || !libc_write) {
    state.SkipWithError("the C library's read/write were not found");
    return;
  }
  PipeReader interposed(&::read, libc_write), direct(libc_read, libc_write);
  bool failed = false;
  run_paired(state, [&] { failed |= !interposed.read_one(); }, [&] { failed |= !direct.read_one(); });
  if (failed) state.SkipWithError("a pipe read failed");
}
BENCHMARK(BM_PreloadPassthrough)->UseManualTime();

const FigureTable kFigures{{
    {.name = "ioctl_map_unmap_4k", .numerator = "BM_IoctlMapUnmap4k", .target = 1.3},
    {.name = "preload_passthrough", .numerator = "BM_PreloadPassthrough", .target = 1.05},
}};

}  // namespace
}  // namespace uiommufd::bench
