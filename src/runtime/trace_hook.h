// The preload's side of `uiommufd trace` (docs/trace.md): every /dev/iommu call this process makes — the
// open, close and dup of an iommufd and every ioctl on one — decoded (src/trace) and written as one line
// (or one JSON object) to the trace output, whether the engine is in this process or a server's.
//
// On when UIOMMUFD_TRACE is set at start-up: "-" for this process's stderr as it was at start-up, else a
// file path, opened for appending (every process of the run appends to it, one write per record, so lines
// of several processes interleave whole). UIOMMUFD_TRACE_FORMAT=json writes JSON lines; UIOMMUFD_TRACE_FILTER
// keeps only the named calls (trace::Filter); UIOMMUFD_TRACE_T0 is the CLOCK_MONOTONIC time in ns that record
// times count from (the tool sets it once for the whole run).
//
// UIOMMUFD_TRACE_ADDRESSES=hide prints the program's addresses as "<addr>" (trace::Style).
//
// Off, each hook costs the interposer one predictable branch on a flag written before any thread exists.
#pragma once

#include <cstdint>

#include "uiommufd/trace/decoder.h"
#include "uiommufd/trace/raw.h"

namespace uiommufd::runtime::tracing {

namespace detail {
extern bool g_on;
extern bool g_passthrough;
}  // namespace detail

inline bool on() { return detail::g_on; }

// `uiommufd trace --passthrough` (UIOMMUFD_TRACE_PASSTHROUGH=1, only with a trace): nothing is emulated; the
// program's calls go to the machine's kernel and those on the kernel's iommufd files are traced.
inline bool passthrough() { return detail::g_passthrough; }

// Passthrough: whether `fd` is the kernel's /dev/iommu or /dev/vfio/vfio, told by its device number, so
// that an fd counts however it came (open, dup, fork, exec, SCM_RIGHTS). One fstat.
bool kernel_iommufd(int fd);

// Passthrough: what the tracer has seen of `fd` (an open, a dup or a close of it, an ioctl on it): whether
// it is the kernel's iommufd. Kept for the fds below 65536.
void note_fd(int fd, bool iommufd);

// Passthrough: whether an ioctl on `fd` is traced. Every ioctl of iommufd's type (';', VFIO's too) asks
// the kernel what `fd` is (kernel_iommufd()); an ioctl of another type only when `fd` was seen to be an
// iommufd, so a program's other ioctls (KVM_RUN, say) cost no fstat.
bool passthrough_traces(int fd, unsigned long cmd);

// Reads the environment (from the preload's constructor, before any thread of the program exists).
void init();

// One ioctl on a traced fd: constructed before the call (decodes what the command reads), done() after it
// with the result (rc ≥ 0, or -errno), which writes the record.
class Ioctl {
 public:
  Ioctl(int fd, unsigned long cmd, std::uint64_t arg);
  void done(long rc);
  Ioctl(const Ioctl&) = delete;
  Ioctl& operator=(const Ioctl&) = delete;

 private:
  const unsigned long cmd_;
  const std::uint64_t arg_;
  trace::Line line_;
  trace::IoctlState state_;
};

// The same as a raw record (trace/raw.h) for the trace ring: the call and copies of what the decoder will
// read, which `uiommufd trace` decodes and formats, off this thread (docs/trace.md#raw).
class RawIoctl {
 public:
  RawIoctl(int fd, unsigned long cmd, std::uint64_t arg);
  void done(long rc);
  RawIoctl(const RawIoctl&) = delete;
  RawIoctl& operator=(const RawIoctl&) = delete;

 private:
  trace::RawIoctl rec_;
  bool shown_;
};

// Whether records go to `uiommufd trace`'s ring now (then ioctls are recorded raw).
bool raw_records();

// Runs `call` (the ioctl: rc ≥ 0, or -errno) between the two halves of its record. Out of line, so that the
// record's buffer takes stack only in traced calls, not in every ioctl of the program.
template <typename Call>
[[gnu::noinline]] long traced_ioctl(int fd, unsigned long cmd, std::uint64_t arg, Call call) {
  if (raw_records()) [[likely]] {
    RawIoctl record(fd, cmd, arg);
    const long rc = call();
    record.done(rc);
    return rc;
  }
  Ioctl record(fd, cmd, arg);
  const long rc = call();
  record.done(rc);
  return rc;
}

// After an open of /dev/iommu or /dev/vfio/vfio (rc: the fd, or -errno), a close of a traced fd, a dup of
// one ("dup", "dup2", "dup3", "fcntl"; newfd -1 when the call chose it).
void opened(const char* path, int flags, long rc);
void closed(int fd, long rc);
void duped(const char* call, int oldfd, int newfd, long rc);

}  // namespace uiommufd::runtime::tracing
