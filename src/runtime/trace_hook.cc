#include "trace_hook.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <string_view>

#include <fcntl.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uiommufd/base/high_fd.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/trace/raw.h"
#include "uiommufd/trace/ring.h"

namespace uiommufd::runtime::tracing {

namespace detail {
bool g_on = false;
bool g_passthrough = false;
}  // namespace detail

namespace {

// Constant-initialized: init() runs from the preload's constructor, before dynamic initializers.
constinit trace::Style g_style;
trace::Filter g_filter;
int g_out = -1;
std::uint64_t g_t0 = 0;

// The program's memory, read without fault sites (the tracer's reads are not the kernel's).
class SelfReader final : public trace::Reader {
 public:
  bool read(std::uint64_t uaddr, void* dst, std::size_t len) const override {
    return Mm::local_ref().copy_from_user_uninjected(dst, uaddr, len).ok();
  }
};
const SelfReader g_reader;

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

// The process and thread ids, kept rather than asked for each record (two system calls that would be a good
// part of a traced call's cost); a fork's child forgets them (fork_child()).
int g_pid = 0;
thread_local int t_tid = 0;

void fork_child() {
  g_pid = 0;
  t_tid = 0;  // the forking thread's, which is the child's only thread
}

trace::Origin origin() {
  const std::uint64_t t = now_ns();
  if (g_pid == 0) g_pid = static_cast<int>(getpid());
  if (t_tid == 0) t_tid = static_cast<int>(gettid());
  return {g_pid, t_tid, t > g_t0 ? t - g_t0 : 0};
}

// The ring `uiommufd trace` reads (docs/trace.md#ring), when it gave one; null otherwise or once it has
// stopped taking records (its consumer gone or a whole ring behind), from when on records are written here.
trace::Ring* g_ring = nullptr;
std::atomic<bool> g_ring_ok{false};

// Into the ring; false when it did not take the record (and, when it has no slot to give, it is not asked
// again).
bool put(std::string_view rec) {
  if (!g_ring_ok.load(std::memory_order_relaxed)) return false;
  const trace::Ring::Put put = g_ring->put(rec);
  if (put == trace::Ring::Put::kOk) [[likely]]
    return true;
  if (put == trace::Ring::Put::kNoSlot) g_ring_ok.store(false, std::memory_order_relaxed);
  return false;
}

// One formatted record written to the output with one write (retried while short: a pipe reader may take
// it in pieces).
void write_out(std::string_view rec) {
  const int saved = errno;
  for (std::size_t done = 0; done < rec.size();) {
    const long n = syscall(SYS_write, g_out, rec.data() + done, rec.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  errno = saved;
}

// One formatted record: into the ring, else to the output.
void emit(trace::Line& line) {
  const std::string_view rec = line.finish();
  if (!put(rec)) write_out(rec);
}

// Passthrough: the device numbers of the kernel's iommufd files on this machine (0: there is none).
dev_t g_iommu_rdev = 0;
dev_t g_vfio_rdev = 0;

dev_t char_device(const char* path) {
  struct stat st {};
  if (syscall(SYS_newfstatat, AT_FDCWD, path, &st, 0) != 0 || !S_ISCHR(st.st_mode)) return 0;
  return st.st_rdev;
}

// /dev/iommu, and /dev/vfio/vfio: the kernel's VFIO container (iommufd's compatibility file where
// CONFIG_IOMMUFD_VFIO_CONTAINER replaces VFIO's own), whose ioctls are VFIO-compat calls either way.
void init_passthrough() {
  g_iommu_rdev = char_device("/dev/iommu");
  g_vfio_rdev = char_device("/dev/vfio/vfio");
  detail::g_passthrough = true;
}

}  // namespace

void init() {
  const char* where = std::getenv("UIOMMUFD_TRACE");
  if (!where || !*where) return;
  if (const char* fmt = std::getenv("UIOMMUFD_TRACE_FORMAT"); fmt && std::strcmp(fmt, "json") == 0)
    g_style.format = trace::Format::kJson;
  if (const char* filter = std::getenv("UIOMMUFD_TRACE_FILTER")) {
    // The tool checked it; a bad list set by hand traces everything rather than nothing.
    if (!g_filter.parse(filter, nullptr)) g_filter.parse("", nullptr);
  }
  if (const char* hide = std::getenv("UIOMMUFD_TRACE_ADDRESSES"); hide && std::strcmp(hide, "hide") == 0)
    g_style.hide_addresses = true;
  if (const char* t0 = std::getenv("UIOMMUFD_TRACE_T0")) g_t0 = std::strtoull(t0, nullptr, 10);
  if (g_t0 == 0) g_t0 = now_ns();
  const int fd = std::strcmp(where, "-") == 0
                     ? static_cast<int>(syscall(SYS_fcntl, 2, F_DUPFD_CLOEXEC, 0))
                     : static_cast<int>(syscall(SYS_openat, AT_FDCWD, where,
                                                O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  // In the top quarter of the fd table, as uiommufd's own fds are (base/high_fd.h).
  g_out = move_high(fd);
  detail::g_on = g_out >= 0;
  if (const char* ring = std::getenv("UIOMMUFD_TRACE_RING"); ring && detail::g_on) {
    // Kept open (it is not close-on-exec), so that the programs this one execs attach too.
    Result<trace::Ring> r = trace::Ring::attach(std::atoi(ring));
    if (r.ok()) {
      r->release_fd();
      g_ring = new (std::nothrow) trace::Ring(std::move(*r));  // never freed: records come until the end
      g_ring_ok.store(g_ring != nullptr, std::memory_order_relaxed);
    }
  }
  if (detail::g_on) pthread_atfork(nullptr, nullptr, fork_child);
  if (const char* pass = std::getenv("UIOMMUFD_TRACE_PASSTHROUGH");
      pass && std::strcmp(pass, "1") == 0 && detail::g_on)
    init_passthrough();
}

bool kernel_iommufd(int fd) {
  struct stat st {};
  if (syscall(SYS_fstat, fd, &st) != 0 || !S_ISCHR(st.st_mode)) return false;
  return (g_iommu_rdev != 0 && st.st_rdev == g_iommu_rdev) || (g_vfio_rdev != 0 && st.st_rdev == g_vfio_rdev);
}

namespace {
// One bit per fd below kKnownFds: seen to be the kernel's iommufd.
constexpr unsigned kKnownFds = 1u << 16;
std::atomic<std::uint64_t> g_known[kKnownFds / 64];
}  // namespace

void note_fd(int fd, bool iommufd) {
  if (fd < 0 || static_cast<unsigned>(fd) >= kKnownFds) return;
  const std::uint64_t bit = std::uint64_t{1} << (fd % 64);
  if (iommufd)
    g_known[fd / 64].fetch_or(bit, std::memory_order_relaxed);
  else if (g_known[fd / 64].load(std::memory_order_relaxed) & bit)
    g_known[fd / 64].fetch_and(~bit, std::memory_order_relaxed);
}

bool passthrough_traces(int fd, unsigned long cmd) {
  if (_IOC_TYPE(cmd) != ';') {
    if (fd < 0 || static_cast<unsigned>(fd) >= kKnownFds) return false;
    if (!(g_known[fd / 64].load(std::memory_order_relaxed) & (std::uint64_t{1} << (fd % 64)))) return false;
  }
  // A known fd may have been closed and reused behind the tracer's back (close_range, a raw system call).
  const bool is = kernel_iommufd(fd);
  note_fd(fd, is);
  return is;
}

Ioctl::Ioctl(int fd, unsigned long cmd, std::uint64_t arg) : cmd_(cmd), arg_(arg) {
  state_ = trace::begin_ioctl(g_style, line_, origin(), g_filter, fd, cmd, arg, g_reader);
}

void Ioctl::done(long rc) {
  if (!state_.shown) return;
  trace::end_ioctl(g_style, line_, state_, cmd_, arg_, rc, g_reader);
  emit(line_);
}

bool raw_records() { return g_ring_ok.load(std::memory_order_relaxed); }

RawIoctl::RawIoctl(int fd, unsigned long cmd, std::uint64_t arg) {
  shown_ = rec_.begin(origin(), g_filter, fd, cmd, arg, g_reader);
}

void RawIoctl::done(long rc) {
  if (!shown_) return;
  rec_.end(rc, g_reader);
  const std::string_view raw = rec_.record();
  if (!raw.empty() && put(raw)) [[likely]]
    return;
  // The ring is gone or the record is longer than its slots: formatted here, as records are without a ring.
  trace::Line line;
  if (raw.empty()) line.append("# uiommufd trace: an ioctl record too large to keep was left out");
  write_out(raw.empty() ? line.finish() : trace::format_raw(g_style, line, raw));
}

void opened(const char* path, int flags, long rc) {
  if (!g_filter.shows_call("open")) return;
  trace::Line line;
  trace::open_call(g_style, line, origin(), path, flags, rc);
  emit(line);
}

void closed(int fd, long rc) {
  if (!g_filter.shows_call("close")) return;
  trace::Line line;
  trace::close_call(g_style, line, origin(), fd, rc);
  emit(line);
}

void duped(const char* call, int oldfd, int newfd, long rc) {
  if (!g_filter.shows_call("dup")) return;
  trace::Line line;
  trace::dup_call(g_style, line, origin(), call, oldfd, newfd, rc);
  emit(line);
}

}  // namespace uiommufd::runtime::tracing
