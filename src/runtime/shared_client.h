// The preload's shared mode: /dev/iommu served by a server process (src/server/server.h), so one iommufd
// is shared by every process that holds an fd of it, as the kernel's open file is (docs/shared.md).
//
// On when UIOMMUFD_SERVER names the server's socket at start-up (`uiommufd run --shared` sets it). Then
// open("/dev/iommu") asks the server for a new context and returns the FIFO fd the server passes back; the
// fd table records it as a RemoteFile, and every call on it (ioctl, read, write and their variants, through
// the interposers as in-process) is forwarded over this thread's channel: a connection of its own to the
// server, made on first use, closed at thread exit, and dropped in a forked child. The fds the server
// hands out during a call (access fds, queue fds, dma-bufs) arrive on the channel and are recorded the
// same way.
//
// A served fd the table does not know (inherited across exec, received over a unix socket) is *adopted*:
// its first recognition proves to the server that this process holds it and gives its handle. The
// preload adopts the FIFOs it inherits at start-up, those recvmsg / recvmmsg deliver, and any fd that gets
// an ioctl of the iommufd / VFIO type (';').
//
// Thread safety: every function may be called from any thread. A call made while this thread is already
// inside one (a signal handler, a file dropped during a call) uses a connection of its own.
#pragma once

#include <cstdint>

#include <sys/socket.h>

#include "uiommufd/uapi/file.h"

namespace uiommufd::runtime::shared_client {

namespace detail {
extern bool g_enabled;  // written once, in the preload's first constructor, before any thread exists
}  // namespace detail

// Whether this process runs in shared mode.
inline bool enabled() { return detail::g_enabled; }

// Reads UIOMMUFD_SERVER; in shared mode sets the fork handler and adopts the FIFOs this image inherited.
void init();

// open("/dev/iommu") in shared mode (`flags`: open's; O_CLOEXEC, O_NONBLOCK and the access mode take
// effect): the new fd, recorded in the fd table; or -1 with errno (ENODEV when the server cannot be
// reached, the server's open errors, ENOMEM).
int open_iommufd(int flags, bool vfio_compat);

// If `fd`, which the table does not know, stands for a served file: proves it, records it, and returns
// true. Keeps errno.
bool adopt(int fd);

// After a recvmsg that may have delivered fds (SCM_RIGHTS): adopts each one that is a FIFO or a socket.
void adopt_received(const msghdr* msg);

// The fd of the read or write about to be forwarded on this thread, for the readiness its reply may ask the
// client to take back (protocol.h, Reply::drain).
void set_rw_fd(int fd);

// A forwarded call on `fd` (standing for `file`) was answered kNeedProof: this process has not shown the
// server that it holds the file (a forked child, say). Proves it; true when the call may be made again.
bool prove_for_retry(int fd, const uapi::OpenFile& file);

// This process is about to exit (exit(), or the interposed _exit / _Exit): if it has called the server,
// tells it and waits, so that the server can copy out what pins hold of this process's memory
// (docs/shared.md#exit). Nothing for a process that never called.
void before_exit();

// mmap() of the served iommufd `fd` (docs/shared.md#mmap): the region at `offset` of exactly `length`
// bytes. On success *memfd is a file whose pages are the region, for the caller to map and close, and *id
// names the mapping, of which this process now holds one user (the kernel's vma reference on the region's
// owner, which also keeps the context alive). -errno: the kernel's mmap errors (ENXIO), ENODEV for a file
// that is not an iommufd, EIO when the server cannot be reached.
long mmap_region(int fd, const uapi::OpenFile& file, std::uint64_t offset, std::uint64_t length, int* memfd,
                 std::uint64_t* id);
// This process gains (delta > 0: a mapping split in two, or inherited by a fork) or gives back (delta < 0:
// an unmap) users of mapping `id`.
void map_users(std::uint64_t id, std::int64_t delta);

// A served file, as the table records it: calls go to the server by its handle.
class RemoteFile final : public uapi::OpenFile {
 public:
  RemoteFile(std::uint64_t handle, std::uint32_t bits);
  // Asks the server to release the file now if this was its last fd anywhere (protocol.h, kSync), so that
  // what the program does next sees it gone, as after the kernel's close.
  ~RemoteFile() override;

  long ioctl(unsigned long cmd, std::uint64_t arg) override;
  long read(std::uint64_t uptr, std::size_t count) override;
  long write(std::uint64_t uptr, std::size_t count) override;
  bool has_read() const override;
  bool has_write() const override;
  bool positional() const override;

  std::uint64_t handle() const { return handle_; }
  // The server has released it already (an install the call took back): nothing to sync.
  void forget() { forgotten_ = true; }

 private:
  long forward(std::uint32_t op, std::uint64_t cmd, std::uint64_t arg, std::uint64_t count);
  const std::uint64_t handle_;
  const std::uint32_t bits_;
  bool forgotten_ = false;
};

}  // namespace uiommufd::runtime::shared_client
