#include "kernel_pin.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

namespace uiommufd::bench {
namespace {

std::string errno_text(const char* what, int err) {
  const char* name = strerrorname_np(err);
  return std::string(what) + ": " + std::strerror(err) + " (" + (name ? name : "?") + ")";
}

}  // namespace

KernelPin::KernelPin() {
  io_uring_params params{};
  const long fd = syscall(__NR_io_uring_setup, 1, &params);
  if (fd >= 0) {
    fd_ = static_cast<int>(fd);
    return;
  }
  const int err = errno;
  reason_ = errno_text("io_uring_setup", err);
  // The sysctl explains an EPERM: 1 allows only members of kernel.io_uring_group, 2 nobody.
  std::ifstream disabled("/proc/sys/kernel/io_uring_disabled");
  int value = 0;
  if (disabled >> value && value != 0) reason_ += ", kernel.io_uring_disabled=" + std::to_string(value);
}

KernelPin::~KernelPin() {
  if (fd_ >= 0) close(fd_);
}

int KernelPin::register_unregister(void* addr, std::size_t length) {
  iovec iov{addr, length};
  if (syscall(__NR_io_uring_register, fd_, IORING_REGISTER_BUFFERS, &iov, 1) != 0) return errno;
  if (syscall(__NR_io_uring_register, fd_, IORING_UNREGISTER_BUFFERS, nullptr, 0) != 0) return errno;
  return 0;
}

std::string KernelPin::probe(void* addr, std::size_t length) {
  if (!ok()) return reason_;
  const int err = register_unregister(addr, length);
  if (err == 0) return {};
  std::string why = errno_text("IORING_REGISTER_BUFFERS", err);
  if (err == ENOMEM) why += ", RLIMIT_MEMLOCK too low for the buffer without CAP_IPC_LOCK";
  return why;
}

}  // namespace uiommufd::bench
