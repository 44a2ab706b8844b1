// KernelPin: the kernel's long-term pin, pin_user_pages(FOLL_LONGTERM), as a program reaches it without a
// device: registering a fixed buffer with an io_uring (IORING_REGISTER_BUFFERS) pins every page of the
// buffer and unregistering it (IORING_UNREGISTER_BUFFERS) unpins them (io_uring/rsrc.c,
// io_sqe_buffers_register() and io_sqe_buffers_unregister()). It is the peer the engine's pin and map
// figures are measured against: what a user would do instead to keep memory pinned for I/O.
//
// Raw system calls on a ring of one entry that is never submitted to, so nothing beyond the kernel's uapi
// header is needed. The kernel caps one buffer at 1 GiB and charges it to RLIMIT_MEMLOCK unless the ring's
// creator has CAP_IPC_LOCK.
#pragma once

#include <cstddef>
#include <string>

namespace uiommufd::bench {

class KernelPin {
 public:
  // Sets up the ring. When that fails (io_uring compiled out: ENOSYS; switched off by
  // /proc/sys/kernel/io_uring_disabled or a seccomp policy: EPERM), ok() is false and unavailable() says why.
  KernelPin();
  ~KernelPin();
  KernelPin(const KernelPin&) = delete;
  KernelPin& operator=(const KernelPin&) = delete;

  bool ok() const { return fd_ >= 0; }
  // Why this machine cannot measure the kernel's pin; empty when ok().
  const std::string& unavailable() const { return reason_; }

  // Registers [addr, addr + length) as the ring's only fixed buffer (pinning its pages), then unregisters
  // it (unpinning them). Returns 0, or the errno of the step that failed: ENOMEM when the pages exceed
  // RLIMIT_MEMLOCK, EFAULT for an unmapped or file-backed range, EINVAL for more than 1 GiB. A failed
  // registration leaves nothing registered; a buffer left by a failed unregistration (not expected) is
  // released with the ring.
  int register_unregister(void* addr, std::size_t length);

  // One register_unregister() as a check before measuring: empty if it worked, else the reason to skip.
  std::string probe(void* addr, std::size_t length);

 private:
  int fd_ = -1;
  std::string reason_;
};

}  // namespace uiommufd::bench
