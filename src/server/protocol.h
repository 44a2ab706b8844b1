// The wire protocol between the preload in shared mode (src/runtime/shared_client.h) and the server
// (src/server/server.h): docs/shared.md.
//
// A *channel* is one SOCK_SEQPACKET connection from one thread of a client process to the server; the
// server serves it on a thread of its own, one request at a time. Each call is one Request and, at its
// end, one Reply of kind kDone. In between, the server may send kInstall (a new file for the caller:
// the fd rides along), kUninstall or kGetFd, which the client answers (kInstalled, kFdGiven) or obeys
// before it reads on. Every message is one fixed-size record, so one sendmsg and one recvmsg carry a call
// that moves no fd.
//
// A *file* the server serves (an iommufd, a test access, a dma-buf, an event queue) is a pipe: the client
// holds a FIFO open of it, the server keeps the other direction's end and learns from it when the last
// copy anywhere has closed (docs/shared.md#files). It is named on the wire by a *handle* the server gives
// out; a process may use a handle once it has proved, by sending the fd over its channel, that it holds
// the file (kProve).
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace uiommufd::shared {

// The environment variable naming the server's socket: "@name" an abstract unix socket, else a path.
inline constexpr const char* kServerEnv = "UIOMMUFD_SERVER";

// Returned by the server in Reply::rc when the calling process has not proved the handle yet; the
// client proves it (kProve with the fd) and asks again. Outside every errno's range.
inline constexpr std::int64_t kNeedProof = -0x10000;

enum class Op : std::uint32_t {
  kOpen = 1,   // cmd: open(2) flags; arg: 1 for /dev/vfio/vfio. kDone: handle, bits, flags, and the fd.
  kProve,      // carries one fd. kDone: handle, bits, flags (the file's access mode), or rc = -ENOENT.
  kIoctl,      // handle, cmd, arg.
  kRead,       // handle, arg (the buffer), count.
  kWrite,      // handle, arg, count.
  kSync,       // handle: the caller closed its last fd of it here; release it now if that was the last
               // anywhere, so a call the caller makes next sees it gone (the kernel's close is synchronous).
  kInstalled,  // the answer to kInstall: rc = the new fd's number, or -errno.
  kFdGiven,    // the answer to kGetFd: carries the fd, or rc = -EBADF without one.
  kExit,       // the calling process is exiting (exit, _exit): the server copies out what pins hold of its
               // memory before it replies (docs/shared.md#exit).
  kExec,       // the first call of a new program image (after exec): its mappings of the old one are gone.
  kMmap,      // mmap() of a served iommufd: handle, cmd = the offset, count = the length. kDone: handle = the
              // mapping's id, of which the caller now holds one user, and the region's memfd.
  kMapUsers,  // handle = a mapping's id, rc = how many users the caller gains (> 0: a split, a fork) or
              // gives back (< 0: an unmap). docs/shared.md#mmap.
};

// How many bytes of an ioctl's argument travel with the call, and back (docs/shared.md#inline): every
// iommufd and VFIO struct starts with its size, and the commands' structs fit.
inline constexpr std::size_t kInlineBytes = 128;
// Request::inline_flags
inline constexpr std::uint32_t kInlineWritable = 1u << 0;  // the client could store into those bytes

struct Request {
  Op op;
  std::uint32_t fail_nth;  // the calling thread's fail-nth counter (base/fault.h)
  std::uint64_t handle;
  std::uint64_t cmd;
  std::uint64_t arg;
  std::uint64_t count;
  std::int64_t rc;
  // kIoctl: the first inline_len bytes at arg, read by the client (0: none; the server reads them itself).
  std::uint32_t inline_len = 0;
  std::uint32_t inline_flags = 0;
  unsigned char inline_bytes[kInlineBytes] = {};
};

enum class Msg : std::uint32_t {
  kDone = 1,   // the end of a call: rc (≥ 0 the result, else -errno) and the counter after it
  kInstall,    // carries a new file's fd: handle, bits, flags (O_CLOEXEC, and the access mode)
  kUninstall,  // rc: an fd kInstall gave during this call, which the call takes back (close it)
  kGetFd,      // rc: an fd number of the caller's, to send back (kFdGiven)
};

// Reply::bits: what the file can do (uapi::OpenFile), for the client's checks before it forwards.
inline constexpr std::uint32_t kBitRead = 1u << 0, kBitWrite = 1u << 1, kBitPositional = 1u << 2;
inline constexpr unsigned kKindShift = 8;  // bits >> kKindShift: uapi::OpenFile::Kind

struct Reply {
  Msg msg;
  std::uint32_t fail_nth;
  std::int64_t rc;
  std::uint64_t handle;
  std::uint32_t bits;
  std::int32_t flags;
  // kDone of a read or write: bytes the client takes off the fd it called on, which took back a readiness
  // the server cannot take back itself (a vEVENT queue's socket: docs/shared.md#poll).
  std::uint32_t drain;
  std::uint32_t reserved;
  // kDone of an ioctl that came with inline bytes: bytes [out_off, out_off + out_len) of them as the
  // command left them, for the client to store at arg + out_off (the kernel's copy_to_user of the struct).
  std::uint32_t out_off = 0;
  std::uint32_t out_len = 0;
  unsigned char out_bytes[kInlineBytes] = {};
};

// Raw system calls: in the preload, libc's names of these may be interposed.
inline long sys_close(int fd) { return syscall(SYS_close, fd); }

// Sends one record, with `fd` attached when ≥ 0. Retries EINTR. 0, or -errno.
inline long send_record(int sock, const void* rec, std::size_t len, int fd) {
  iovec iov{const_cast<void*>(rec), len};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    std::memset(ctl, 0, sizeof ctl);
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    const long n = syscall(SYS_sendmsg, sock, &m, MSG_NOSIGNAL);
    if (n == static_cast<long>(len)) return 0;
    if (n >= 0) return -EPROTO;
    if (errno != EINTR) return -errno;
  }
}

// Receives one record of exactly `len` bytes; an attached fd goes to *fd (close-on-exec), else *fd = -1.
// Retries EINTR. 0; -ECONNRESET when the peer has gone; -EPROTO for a record of another size; -errno.
inline long recv_record(int sock, void* rec, std::size_t len, int* fd) {
  *fd = -1;
  iovec iov{rec, len};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 4)];
  for (;;) {
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    const long n = syscall(SYS_recvmsg, sock, &m, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    // Every fd that came is taken; one is expected, others are closed.
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < nfds; ++i) {
        int got;
        std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
        if (*fd < 0)
          *fd = got;
        else
          sys_close(got);
      }
    }
    if (n == 0) return -ECONNRESET;
    if (static_cast<std::size_t>(n) != len || (m.msg_flags & MSG_TRUNC)) {
      if (*fd >= 0) sys_close(*fd);
      *fd = -1;
      return -EPROTO;
    }
    return 0;
  }
}

}  // namespace uiommufd::shared
