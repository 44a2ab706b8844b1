#include "uiommufd/uapi/poll_fd.h"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, std::uint64_t)
#endif

namespace uiommufd::uapi {

// Raw system calls: inside the preload, read / write / ioctl are the interposed ones, which would route
// these fds, being ours, back to their files.
namespace {
long sys_read(int fd, void* buf, std::size_t n) { return syscall(SYS_read, fd, buf, n); }
long sys_write(int fd, const void* buf, std::size_t n) { return syscall(SYS_write, fd, buf, n); }
long sys_ioctl(int fd, unsigned long cmd, void* arg) { return syscall(SYS_ioctl, fd, cmd, arg); }
}  // namespace

// kReadWrite: a pipe reopened O_RDWR through /proc/self/fd (a FIFO open for both reading and writing), moved
// onto the number the pipe's read end had, so the caller sees the same fd number the kernel would give.
// Without /proc, an eventfd.
Result<int> make_rw_fd() {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return Status::error(errno);
  char path[40];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
  const int rw = static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CLOEXEC, 0));
  int err = errno;
  if (rw >= 0 && syscall(SYS_dup3, rw, p[0], O_CLOEXEC) < 0)
    err = errno;
  else if (rw >= 0)
    err = 0;
  if (rw >= 0) syscall(SYS_close, rw);
  syscall(SYS_close, p[1]);
  if (err == 0) return p[0];
  syscall(SYS_close, p[0]);
  const int fd = eventfd(0, EFD_CLOEXEC);
  if (fd < 0) return Status::error(errno);
  return fd;
}

Result<int> make_poll_fd(PollFace face) {
  if (face == PollFace::kReadWrite) return make_rw_fd();
  const int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  if (fd < 0) return Status::error(errno);
  return fd;
}

namespace {
// Takes back what set_readable(true) put in (a pipe's byte, an eventfd's count) without ever blocking: the
// fd is a blocking one, as the kernel's file is, and may hold nothing.
void drain(int fd) {
  pollfd p{fd, POLLIN, 0};
  std::uint64_t v;
  if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) (void)sys_read(fd, &v, sizeof v);
}
}  // namespace

void set_poll_fd_readable(int fd, PollFace face, bool readable) {
  const int saved = errno;
  if (face == PollFace::kReadWrite) {
    // Eight bytes: one eventfd count, or eight pipe bytes that one read takes back.
    if (readable) {
      const std::uint64_t one = 1;
      (void)sys_write(fd, &one, sizeof one);
    } else {
      drain(fd);
    }
  } else if (readable) {
    std::uint64_t one = 1;
    if (sys_ioctl(fd, TFD_IOC_SET_TICKS, &one) != 0) {
      itimerspec soon{};
      soon.it_value.tv_nsec = 1;
      (void)timerfd_settime(fd, 0, &soon, nullptr);
    }
  } else {
    const itimerspec off{};  // disarming also zeroes the tick count
    (void)timerfd_settime(fd, 0, &off, nullptr);
  }
  errno = saved;
}

}  // namespace uiommufd::uapi
