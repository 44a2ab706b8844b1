// Open files of the /dev/iommu ABI, as the runtime's fd table holds them.
//
// An IommufdFile is one open of /dev/iommu (or /dev/vfio/vfio): a Context plus the ioctl dispatcher. A
// TestAccessFile is the fd the selftest's CREATE_ACCESS returns, a DmaBufFile the one DMABUF_GET returns. An
// event-queue file (kFaultQueue, and kEventQueue for the vEVENT queues) is the fd of a queue object, with
// read/write of its records and a real fd whose poll readiness mirrors the queue (PollFace,
// FdHost::install_queue()). The runtime maps real fds to shared_ptr<OpenFile>; dup'ed fds share one pointer,
// and dropping the last one is the kernel's release(): the file's destructor tears everything down
// synchronously. A TestAccessFile holds its IommufdFile, so a context stays alive while an access fd is open,
// as in the kernel.
//
// Nothing here knows about interposition: the dispatcher reads and writes caller memory through Mm (bad
// pointers are EFAULT) and asks its FdHost for the fds it hands out or is given.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "uiommufd/base/result.h"
#include "uiommufd/objects/event_queue.h"

namespace uiommufd {
class Context;
}

namespace uiommufd::uapi {

class OpenFile {
 public:
  // kDmaBuf: the selftest exporter's dma-buf (DMABUF_GET; src/uapi/test_dmabuf.h).
  enum class Kind : std::uint8_t { kIommufd, kTestAccess, kDmaBuf, kFaultQueue, kEventQueue };
  explicit OpenFile(Kind kind) : kind_(kind) {}
  virtual ~OpenFile() = default;
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;

  Kind kind() const { return kind_; }
  // ioctl(2) on this file: a value ≥ 0 is the ioctl's return value, a negative one a negated errno.
  virtual long ioctl(unsigned long cmd, std::uint64_t arg) = 0;
  // read(2) / write(2) of `count` bytes at caller address `uptr`, at file position 0 (none of these files
  // moves its position): bytes done, or a negated errno. A file without the operation is EINVAL, as the
  // kernel's vfs_read() / vfs_write() make it. `count` is at most MAX_RW_COUNT (the caller clamps it).
  virtual long read(std::uint64_t uptr, std::size_t count) {
    (void)uptr, (void)count;
    return -EINVAL;
  }
  virtual long write(std::uint64_t uptr, std::size_t count) {
    (void)uptr, (void)count;
    return -EINVAL;
  }
  // Whether the file has read / write operations at all (the kernel's FMODE_CAN_READ / FMODE_CAN_WRITE);
  // without, read / write are EINVAL after the access-mode check, readv / writev before reading the iovec.
  virtual bool has_read() const { return false; }
  virtual bool has_write() const { return false; }
  // Whether pread(2) / pwrite(2) reach read / write (the kernel's FMODE_PREAD / FMODE_PWRITE): true for a
  // device open, false for an anonymous-inode file, where they are ESPIPE whatever the offset.
  virtual bool positional() const { return true; }

 private:
  const Kind kind_;
};

// How the real fd behind a queue's file polls, as the kernel's iommufd_eventq_fops_poll() answers:
enum class PollFace : std::uint8_t {
  kReadWrite,  // fault queue: EPOLLOUT always, EPOLLIN | EPOLLRDNORM while records wait
  kReadOnly,   // vEVENT queue: EPOLLIN | EPOLLRDNORM while records wait, nothing otherwise
};

// The fd table the dispatcher hands fds out of (the runtime's; tests have their own).
class FdHost {
 public:
  virtual ~FdHost() = default;
  // Puts `file` behind a new real fd and returns it (close-on-exec as the kernel's anon inode fds).
  virtual Result<int> install(std::shared_ptr<OpenFile> file) = 0;
  // The same for a queue's file: the real fd polls as `face` says, following the QueueReadiness stored in
  // *readiness, which the caller attaches to the queue (EventQueue::set_readiness()). The readiness signals
  // whichever fds stand for the file (dup'ed ones included) and nothing once they are all closed; its
  // fd(s) report F_GETFL O_RDWR, as the kernel's anon-inode file. Errors: the real fd's (EMFILE, ENFILE,
  // ENOMEM).
  virtual Result<int> install_queue(std::shared_ptr<OpenFile> file, PollFace face,
                                    std::shared_ptr<QueueReadiness>* readiness) = 0;
  // The file behind `fd`; null when `fd` is not one of ours.
  virtual std::shared_ptr<OpenFile> lookup(int fd) = 0;
  // Takes back an fd install() returned, before the caller has seen it (a failed ioctl's unwind).
  virtual void uninstall(int fd) = 0;
  // install() with the open flags a kernel file gets from its creator (the kernel's get_unused_fd_flags()
  // and the file's f_flags, as dma_buf_fd() uses them): O_CLOEXEC makes the fd close-on-exec, and the
  // access mode and O_NONBLOCK are what fcntl(F_GETFL) reports; other bits are ignored. The real fd is
  // make_standin_fd(open_flags).
  virtual Result<int> install_with_flags(std::shared_ptr<OpenFile> file, int open_flags) = 0;
  // The caller's open file `fd` as an fd of this process, valid until the current call returns and not to
  // be closed by the dispatcher (the kernel's fget() of a user fd, for IOMMU_IOAS_MAP_FILE). Here, where
  // the caller is this process, `fd` itself; the shared-mode server (src/server) fetches the caller's file
  // over its channel. EBADF when `fd` is not open.
  virtual Result<int> user_file(int fd);
};

// A real fd to stand for a file opened with `open_flags` (see FdHost::install_with_flags): an eventfd for
// O_RDWR (and the access mode 3), the read end of a pipe for O_RDONLY and its write end for O_WRONLY (the
// other end closed), so that F_GETFL reports exactly the access mode and O_NONBLOCK. The errno of the
// system call on failure (EMFILE, ENFILE, ENOMEM).
Result<int> make_standin_fd(int open_flags);

class IommufdFile final : public OpenFile, public std::enable_shared_from_this<IommufdFile> {
 public:
  // `vfio_compat`: opened as /dev/vfio/vfio (pinned pages charged to the process).
  static Result<std::shared_ptr<IommufdFile>> open(FdHost& host, bool vfio_compat);
  ~IommufdFile() override;

  long ioctl(unsigned long cmd, std::uint64_t arg) override;

  Context& context() { return *ctx_; }
  FdHost& host() { return *host_; }

  // Diagnostics (dump/, docs/dump.md). Every open of this process (or server) still referenced, in the
  // order they were opened; the references keep them alive, so the last one dropped by the caller may tear
  // a context down. Takes a leaf lock ("uapi.live_files") that is never held across anything else.
  // Throws std::bad_alloc when the list cannot be had.
  static std::vector<std::shared_ptr<IommufdFile>> live_files();
  // 1 for the first open of the process, 2 for the next, and so on (a forked child's copies keep theirs).
  std::uint64_t serial() const { return serial_; }
  // Run on the opening thread after each open is listed, with no lock held (set once, at start-up, before
  // any open): the runtime's dump trigger starts its helper thread on the first one (docs/dump.md).
  static void set_open_hook(void (*hook)());

 private:
  IommufdFile(FdHost& host, std::unique_ptr<Context> ctx);
  // Enter and leave the list live_files() reads (file_registry.cc): open() enters it once the file is
  // owned by a shared_ptr, the destructor leaves it (a file never entered is left alone).
  void register_live();
  void unregister_live();

  FdHost* host_;
  std::unique_ptr<Context> ctx_;
  std::uint64_t serial_ = 0;
  // Links of the list live_files() reads, under its lock (file_registry.cc).
  IommufdFile* live_prev_ = nullptr;
  IommufdFile* live_next_ = nullptr;
};

}  // namespace uiommufd::uapi
