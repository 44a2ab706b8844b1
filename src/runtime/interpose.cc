// The interposed libc entry points of libuiommufd-preload.so.
//
// Every function here first asks the fd table's bitmap (or, for opens, a few byte compares on the path)
// whether the call can concern a virtual file; if not it goes straight to the next definition
// (real_calls.h), so a passthrough call costs one load or one short prefix compare. errno is what the
// kernel would leave: a passthrough call's own, our failure's errno, and on our success what it was
// before (the engine may set errno internally).
//
// Served here: /dev/iommu (an IommufdFile behind a /dev/null fd), the fail-nth files of this process's
// threads (fail_nth_file.h), the fault-injection part of debugfs (directories that list the real debugfs
// when it can be opened and are empty otherwise; knob files are /dev/null opens, writable and absorbing),
// and the ioctl / read / write / readv / writev / pread / pwrite / close / dup family on them. The fds of
// event queues (fault queues) are served the same way; their poll, select and epoll are not interposed at
// all: each is a kernel fd whose own readiness the queue drives (uapi/poll_fd.h).
//
// Under `uiommufd trace --passthrough` nothing is served: every call goes to the kernel, and those on its
// iommufds are traced (trace_hook.h).
//
// Not served (see src/runtime/README.md): /dev/vfio/vfio; paths relative to the working directory;
// fopen, preadv / pwritev and lseek on virtual files; exec keeps only the kernel's fd (an iommufd fd opened
// without O_CLOEXEC is a /dev/null fd in the new image).

// Our definitions must be the plain functions, not the fortified inline wrappers of <fcntl.h>.
#undef _FORTIFY_SOURCE

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dump_hook.h"
#include "engine_gate.h"
#include "fail_nth_file.h"
#include "fd_table.h"
#include "real_calls.h"
#include "server/protocol.h"
#include "shared_client.h"
#include "trace_hook.h"
#include "virtual_path.h"

#include "uiommufd/mm/mm.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::runtime {
namespace {

int fail(int err) {
  errno = err;
  return -1;
}

// O_CREAT and O_TMPFILE are the flags that make open read its third argument.
bool needs_mode(int flags) { return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE; }

// The real fd that stands for a virtual file. /dev/null polls as readable and writable, like a file
// without a poll method (iommufd has none); an eventfd serves where /dev/null cannot be opened.
int open_standin(int flags) {
  int fd = real::open("/dev/null", O_RDWR | (flags & (O_CLOEXEC | O_NONBLOCK)), 0);
  if (fd < 0)
    fd = eventfd(0, ((flags & O_CLOEXEC) ? EFD_CLOEXEC : 0) | ((flags & O_NONBLOCK) ? EFD_NONBLOCK : 0));
  return fd;
}

// An empty directory for a debugfs directory the kernel does not let us open: made, opened, removed. A
// removed directory lists as empty (glibc's readdir treats the kernel's ENOENT as the end).
int open_empty_dir(int flags) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && tmp[0] == '/' ? tmp : "/tmp") + "/uiommufd-debugfs.XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) return -1;
  const int fd = real::open(templ.c_str(), O_RDONLY | O_DIRECTORY | (flags & O_CLOEXEC), 0);
  rmdir(templ.c_str());
  return fd;
}

bool thread_of_ours(int tid) { return syscall(SYS_tgkill, getpid(), tid, 0) == 0 || errno == EPERM; }

// (dirfd, path) as an absolute normal path, when it may name a virtual file. errno is left alone.
bool resolve(int dirfd, const char* path, std::string* out) {
  if (path == nullptr) return false;
  if (path[0] == '/') {
    if (!may_be_virtual_absolute(path)) return false;
    *out = normalize_path("/", path);
    return true;
  }
  if (dirfd == AT_FDCWD) return false;
  if (FdTable::maybe_ours(dirfd)) {
    const EngineGate::Scope gate;  // the node found may be the last reference to a file
    std::shared_ptr<Node> node = FdTable::get().find(dirfd);
    if (node && node->kind == Node::Kind::kDebugfsDir) {
      *out = normalize_path(node->dir_path, path);
      return true;
    }
  }
  if (!may_name_virtual_relative(path)) return false;
  // A directory (of /proc, or /dev) opened by the program: the kernel knows its path.
  const int saved = errno;
  char link[40];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
  char target[PATH_MAX];
  const ssize_t n = readlink(link, target, sizeof target);
  errno = saved;
  if (n <= 0 || n >= static_cast<ssize_t>(sizeof target) || target[0] != '/') return false;
  *out = normalize_path(std::string_view(target, static_cast<size_t>(n)), path);
  return true;
}

// Records the new real `fd` as `node`; when the table cannot grow, closes it again and fails with ENOMEM.
int install_node(int fd, std::shared_ptr<Node> node, int saved_errno) {
  try {
    FdTable::get().set(fd, std::move(node));
  } catch (const std::bad_alloc&) {
    real::close(fd);
    return fail(ENOMEM);
  }
  errno = saved_errno;
  return fd;
}

int open_iommufd(int flags, int saved_errno) {
  if (flags & O_DIRECTORY) return fail(ENOTDIR);
  if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) return fail(EEXIST);
  if (shared_client::enabled()) {
    const int fd = shared_client::open_iommufd(flags, /*vfio_compat=*/false);
    if (fd >= 0) errno = saved_errno;
    return fd;
  }
  Result<std::shared_ptr<uapi::IommufdFile>> file = uapi::IommufdFile::open(FdTable::get(), false);
  if (!file.ok()) return fail(file.error());
  auto node = std::make_shared<Node>();
  node->kind = Node::Kind::kFile;
  node->accmode = flags & O_ACCMODE;
  node->file = std::move(*file);
  const int fd = open_standin(flags);
  if (fd < 0) return -1;
  return install_node(fd, std::move(node), saved_errno);
}

int open_fail_nth(int tid, int flags, int saved_errno) {
  if (!thread_of_ours(tid)) return fail(ENOENT);
  if (flags & O_DIRECTORY) return fail(ENOTDIR);
  if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) return fail(EEXIST);
  auto node = std::make_shared<Node>();
  node->kind = Node::Kind::kFailNth;
  node->accmode = flags & O_ACCMODE;
  node->pid = getpid();
  node->tid = tid;
  const int fd = open_standin(flags);
  if (fd < 0) return -1;
  return install_node(fd, std::move(node), saved_errno);
}

int open_debugfs_dir(const std::string& path, int flags, int saved_errno) {
  if ((flags & O_ACCMODE) != O_RDONLY) return fail(EISDIR);
  auto node = std::make_shared<Node>();
  node->kind = Node::Kind::kDebugfsDir;
  node->dir_path = path;
  // Listing the real directory is harmless; only its files are never opened.
  int fd = real::open(path.c_str(), O_RDONLY | O_DIRECTORY | (flags & (O_CLOEXEC | O_NONBLOCK)), 0);
  if (fd < 0) fd = open_empty_dir(flags);
  if (fd < 0) return -1;
  return install_node(fd, std::move(node), saved_errno);
}

int open_debugfs_knob(int flags, int saved_errno) {
  if (flags & O_DIRECTORY) return fail(ENOTDIR);
  const int fd = open_standin(flags);
  if (fd >= 0) errno = saved_errno;
  return fd;
}

// Passthrough (`uiommufd trace --passthrough`): the kernel's open; the record of one that made an iommufd,
// or that failed on /dev/iommu or /dev/vfio/vfio by name.
template <typename Pass>
int passthrough_open(int dirfd, const char* path, int flags, Pass pass) {
  const int fd = pass();
  const int err = errno;
  bool traced = false;
  if (fd >= 0) {
    traced = tracing::kernel_iommufd(fd);
    tracing::note_fd(fd, traced);
  } else if (path != nullptr && (path[0] == '/' || dirfd == AT_FDCWD)) {
    try {
      char cwd[PATH_MAX];
      const std::string abs = normalize_path(path[0] == '/' || !getcwd(cwd, sizeof cwd) ? "/" : cwd, path);
      traced = abs == "/dev/iommu" || abs == "/dev/vfio/vfio";
    } catch (const std::bad_alloc&) {
    }
  }
  if (traced) tracing::opened(path, flags, fd >= 0 ? fd : -err);
  errno = err;
  return fd;
}

// The common body of every open variant; `pass` is the next definition of the variant called.
// The allocation boundary of the open family (docs/allocation.md): what runs out of memory before a real fd
// exists fails the open with ENOMEM; install_node() closes a real fd that the table could not record.
template <typename Pass>
int do_open(int dirfd, const char* path, int flags, Pass pass) {
  if (tracing::passthrough()) [[unlikely]]
    return passthrough_open(dirfd, path, flags, pass);
  VirtualKind kind = VirtualKind::kNone;
  int result = -1;
  try {
    std::string abs;
    if (!resolve(dirfd, path, &abs)) [[likely]]
      return pass();
    const EngineGate::Scope gate;
    const int saved = errno;
    const VirtualPath vp = classify_path(abs, getpid(), static_cast<int>(gettid()));
    kind = vp.kind;
    switch (vp.kind) {
      case VirtualKind::kNone:
        break;
      case VirtualKind::kIommufd:
        result = open_iommufd(flags, saved);
        if (tracing::on()) [[unlikely]] {
          const int err = errno;
          tracing::opened(abs.c_str(), flags, result >= 0 ? result : -err);
          errno = err;
        }
        break;
      case VirtualKind::kFailNth:
        result = open_fail_nth(vp.tid, flags, saved);
        break;
      case VirtualKind::kDebugfsDir:
        result = open_debugfs_dir(abs, flags, saved);
        break;
      case VirtualKind::kDebugfsKnob:
        result = open_debugfs_knob(flags, saved);
        break;
    }
  } catch (const std::bad_alloc&) {
    return fail(ENOMEM);
  }
  return kind == VirtualKind::kNone ? pass() : result;
}

// Drops `node` (maybe the last reference to a context) keeping errno.
void drop(std::shared_ptr<Node>& node) {
  if (!node) return;
  const int saved = errno;
  node.reset();
  errno = saved;
}

// Whether a node is an iommufd (a served one included): only those are traced, as in passthrough, where the
// files an iommufd hands out (access, queue, dma-buf) are anonymous inodes the tracer does not know.
bool is_iommufd(const Node& node) { return node.file && node.file->kind() == uapi::OpenFile::Kind::kIommufd; }

// The record of a dup-family call on an fd of ours (`rc`: the call's return; errno on failure).
void trace_dup(const char* call, int oldfd, int newfd, int rc) {
  if (!tracing::on()) [[likely]]
    return;
  const std::shared_ptr<Node> node = FdTable::get().find(rc >= 0 ? rc : oldfd);
  if (!node || node->kind != Node::Kind::kFile || !is_iommufd(*node)) return;
  const int err = errno;
  tracing::duped(call, oldfd, newfd, rc >= 0 ? rc : -err);
  errno = err;
}

// Passthrough: a close or dup-family call (`call`: the kernel's) on the kernel's iommufd, with its record.
template <typename Call>
int passthrough_close(int fd, Call call) {
  const bool traced = tracing::kernel_iommufd(fd);
  const int rc = call();
  const int err = errno;
  tracing::note_fd(fd, false);
  if (traced) tracing::closed(fd, rc == 0 ? 0 : -err);
  errno = err;
  return rc;
}

template <typename Call>
int passthrough_dup(const char* name, int oldfd, int newfd, Call call) {
  const bool traced = tracing::kernel_iommufd(oldfd);
  const int rc = call();
  const int err = errno;
  if (rc >= 0) tracing::note_fd(rc, traced);
  if (traced) tracing::duped(name, oldfd, newfd, rc >= 0 ? rc : -err);
  errno = err;
  return rc;
}

// After a successful dup of `from` onto `to`: `to` now shares from's node, and what `to` stood for is
// dropped (dup2 onto one of our fds closes it). False, with `to` closed and errno ENOMEM, when the table
// cannot record `to`.
bool after_dup(int from, int to) {
  std::shared_ptr<Node> old;
  bool recorded = true;
  try {
    old = FdTable::get().share(from, to);
  } catch (const std::bad_alloc&) {
    recorded = false;
    old = FdTable::get().set(to, nullptr);  // never allocates
    real::close(to);
  }
  drop(old);
  if (!recorded) errno = ENOMEM;
  return recorded;
}

// The kernel's MAX_RW_COUNT (INT_MAX rounded down to a page): the most one read or write moves.
constexpr size_t kMaxRwCount = static_cast<size_t>(INT_MAX) & ~size_t{4095};
// The kernel's access_ok() on x86-64: the range must end at or below TASK_SIZE_MAX.
constexpr std::uint64_t kTaskSizeMax = (std::uint64_t{1} << 47) - 4096;
bool access_ok(const void* buf, size_t count) {
  const auto a = reinterpret_cast<std::uintptr_t>(buf);
  return count <= kTaskSizeMax && a <= kTaskSizeMax - count;
}

// read / pread on a file of the engine (the kernel's vfs_read()/vfs_write() checks, then the file's op).
// A positional call on a file without FMODE_PREAD is ESPIPE (ksys_pread64()); a non-positional one is at
// position 0, which a file of ours never moves.
ssize_t file_rw(int fd, int accmode, uapi::OpenFile& file, void* buf, size_t count, std::int64_t pos,
                bool positional, bool write) {
  if (positional && !file.positional()) return fail(ESPIPE);
  if (accmode == (write ? O_RDONLY : O_WRONLY)) return fail(EBADF);
  if (!(write ? file.has_write() : file.has_read())) return fail(EINVAL);
  if (!access_ok(buf, count)) return fail(EFAULT);
  if (static_cast<ssize_t>(count) < 0) return fail(EINVAL);
  if (positional && static_cast<std::int64_t>(static_cast<std::uint64_t>(pos) + count) < 0)
    return fail(EINVAL);
  count = std::min(count, kMaxRwCount);
  const int saved = errno;
  const std::uint64_t uptr = reinterpret_cast<std::uintptr_t>(buf);
  if (shared_client::enabled()) shared_client::set_rw_fd(fd);
  long rc = write ? file.write(uptr, count) : file.read(uptr, count);
  if (rc < 0) [[unlikely]] {
    // A served file this process has not yet shown the server it holds (shared mode).
    if (rc == shared::kNeedProof)
      rc = shared_client::prove_for_retry(fd, file)
               ? (write ? file.write(uptr, count) : file.read(uptr, count))
               : -EBADF;
    if (rc < 0) return fail(static_cast<int>(-rc));
  }
  errno = saved;
  return rc;
}

// read / pread on one of our fds; pos < 0 means "at the file position, and advance it".
ssize_t node_read(int fd, Node& node, void* buf, size_t count, std::int64_t pos, bool positional) {
  switch (node.kind) {
    case Node::Kind::kFailNth: {
      if (node.accmode == O_WRONLY) return fail(EBADF);
      // An fd inherited from the parent names a thread of the parent, whose counter is not ours.
      if (node.pid != getpid()) return fail(ESRCH);
      const std::int64_t at = positional ? pos : node.pos.load(std::memory_order_relaxed);
      const ssize_t n = fail_nth_read(node.tid, buf, count, at);
      if (n < 0) return fail(static_cast<int>(-n));
      if (!positional) node.pos.fetch_add(n, std::memory_order_relaxed);
      return n;
    }
    case Node::Kind::kFile:  // an iommufd has no read method; a queue file has
      return file_rw(fd, node.accmode, *node.file, buf, count, pos, positional, /*write=*/false);
    case Node::Kind::kDebugfsDir:
      return fail(EISDIR);
  }
  return fail(EINVAL);
}

ssize_t node_write(int fd, Node& node, const void* buf, size_t count, std::int64_t pos = 0,
                   bool positional = false) {
  switch (node.kind) {
    case Node::Kind::kFailNth: {
      if (node.accmode == O_RDONLY) return fail(EBADF);
      if (node.pid != getpid()) return fail(ESRCH);
      const ssize_t n = fail_nth_write(node.tid, buf, count);
      return n < 0 ? fail(static_cast<int>(-n)) : n;
    }
    case Node::Kind::kFile:
      return file_rw(fd, node.accmode, *node.file, const_cast<void*>(buf), count, pos, positional,
                     /*write=*/true);
    case Node::Kind::kDebugfsDir:
      return fail(EBADF);
  }
  return fail(EINVAL);
}

// readv / writev on one of our fds: the kernel's vfs_readv() / vfs_writev() for files with plain read and
// write ops (do_loop_readv_writev()): the op once per segment, stopping at an error or a short segment.
ssize_t node_rw_vec(int fd, Node& node, const struct iovec* uiov, int vlen, bool write) {
  constexpr int kUioMaxIov = 1024;
  // The mode checks come before the iovec is read.
  if (node.kind == Node::Kind::kFile) {
    if (node.accmode == (write ? O_RDONLY : O_WRONLY)) return fail(EBADF);
    if (!(write ? node.file->has_write() : node.file->has_read())) return fail(EINVAL);
  }
  if (vlen < 0 || vlen > kUioMaxIov) return fail(EINVAL);
  if (vlen == 0) return 0;
  struct iovec iov[kUioMaxIov];
  if (!uiommufd::Mm::current_ref()
           .copy_from_user(iov, reinterpret_cast<std::uintptr_t>(uiov),
                           sizeof(iovec) * static_cast<size_t>(vlen))
           .ok())
    return fail(EFAULT);
  size_t total = 0;
  for (int i = 0; i < vlen; ++i) {
    if (static_cast<ssize_t>(iov[i].iov_len) < 0) return fail(EINVAL);
    // The kernel cuts the vector at MAX_RW_COUNT bytes.
    iov[i].iov_len = std::min(iov[i].iov_len, kMaxRwCount - total);
    if (!access_ok(iov[i].iov_base, iov[i].iov_len)) return fail(EFAULT);
    total += iov[i].iov_len;
  }
  if (total == 0) return 0;
  ssize_t done = 0;
  for (int i = 0; i < vlen && total > 0; ++i) {
    const ssize_t n = write ? node_write(fd, node, iov[i].iov_base, iov[i].iov_len)
                            : node_read(fd, node, iov[i].iov_base, iov[i].iov_len, 0, false);
    if (n < 0) return done ? done : -1;
    done += n;
    total -= static_cast<size_t>(n);
    if (static_cast<size_t>(n) != iov[i].iov_len) break;
  }
  return done;
}

// read / write of a queue file without the table lock: the file found as ioctl finds it. Queue files are
// installed O_RDWR, so the access mode needs no look at the node. False when `fd` is not a queue file.
bool queue_rw(int fd, void* buf, size_t count, bool write, ssize_t* out) {
  const FileRef file = FdTable::get().acquire_file(fd);
  if (!file || !(write ? file->has_write() : file->has_read())) return false;
  *out = file_rw(fd, O_RDWR, *file.get(), buf, count, 0, false, write);
  return true;
}

// pread / pread64 (`next` is the variant called).
ssize_t do_pread(int fd, void* buf, size_t count, off_t offset, ssize_t (*next)(int, void*, size_t, off_t)) {
  if (!FdTable::maybe_ours(fd)) [[likely]]
    return next(fd, buf, count, offset);
  {
    const EngineGate::Scope gate;
    if (std::shared_ptr<Node> node = FdTable::get().find(fd))
      return offset < 0 ? fail(EINVAL) : node_read(fd, *node, buf, count, offset, true);
  }
  return next(fd, buf, count, offset);
}

// pwrite / pwrite64. The fail-nth file ignores the position, as the kernel's does.
ssize_t do_pwrite(int fd, const void* buf, size_t count, off_t offset,
                  ssize_t (*next)(int, const void*, size_t, off_t)) {
  if (!FdTable::maybe_ours(fd)) [[likely]]
    return next(fd, buf, count, offset);
  {
    const EngineGate::Scope gate;
    if (std::shared_ptr<Node> node = FdTable::get().find(fd))
      return offset < 0 ? fail(EINVAL) : node_write(fd, *node, buf, count, offset, true);
  }
  return next(fd, buf, count, offset);
}

// Passthrough: an ioctl on the kernel's iommufd, traced.
int passthrough_ioctl(int fd, unsigned long request, unsigned long arg) {
  const int saved = errno;
  const long rc = tracing::traced_ioctl(fd, request, arg, [&]() -> long {
    const int r = real::ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
  });
  if (rc < 0) return fail(static_cast<int>(-rc));
  errno = saved;
  return static_cast<int>(rc);
}

// Resolved before any constructor of the host program (whose init runs after every preloaded object's),
// and before most other preloaded libraries' constructors.
[[gnu::constructor(101)]] void preload_init() {
  real::resolve_all();
  FdTable::get();
  tracing::init();
  if (!tracing::passthrough()) shared_client::init();
}

}  // namespace
}  // namespace uiommufd::runtime

using uiommufd::runtime::after_dup;
using uiommufd::runtime::trace_dup;
namespace tracing = uiommufd::runtime::tracing;
using uiommufd::runtime::do_open;
using uiommufd::runtime::drop;
using uiommufd::runtime::EngineGate;
using uiommufd::runtime::FdTable;
using uiommufd::runtime::needs_mode;
using uiommufd::runtime::Node;
namespace real = uiommufd::runtime::real;

#define UIOMMUFD_MODE_ARG(flags)                 \
  mode_t mode = 0;                               \
  if (needs_mode(flags)) {                       \
    va_list ap;                                  \
    va_start(ap, flags);                         \
    mode = static_cast<mode_t>(va_arg(ap, int)); \
    va_end(ap);                                  \
  }

extern "C" {

int __open_2(const char* path, int flags);
int __open64_2(const char* path, int flags);
int __openat_2(int dirfd, const char* path, int flags);
int __openat64_2(int dirfd, const char* path, int flags);
ssize_t __read_chk(int fd, void* buf, size_t nbytes, size_t buflen);
ssize_t __pread_chk(int fd, void* buf, size_t nbytes, off_t offset, size_t buflen);
ssize_t __pread64_chk(int fd, void* buf, size_t nbytes, off_t offset, size_t buflen);
[[noreturn]] void __chk_fail(void);

[[gnu::visibility("default")]] int open(const char* path, int flags, ...) {
  UIOMMUFD_MODE_ARG(flags);
  return do_open(AT_FDCWD, path, flags, [&] { return real::open(path, flags, mode); });
}
[[gnu::visibility("default")]] int open64(const char* path, int flags, ...) {
  UIOMMUFD_MODE_ARG(flags);
  return do_open(AT_FDCWD, path, flags, [&] { return real::open64(path, flags, mode); });
}
[[gnu::visibility("default")]] int openat(int dirfd, const char* path, int flags, ...) {
  UIOMMUFD_MODE_ARG(flags);
  return do_open(dirfd, path, flags, [&] { return real::openat(dirfd, path, flags, mode); });
}
[[gnu::visibility("default")]] int openat64(int dirfd, const char* path, int flags, ...) {
  UIOMMUFD_MODE_ARG(flags);
  return do_open(dirfd, path, flags, [&] { return real::openat64(dirfd, path, flags, mode); });
}
[[gnu::visibility("default")]] int __open_2(const char* path, int flags) {
  return do_open(AT_FDCWD, path, flags, [&] { return real::open_2(path, flags); });
}
[[gnu::visibility("default")]] int __open64_2(const char* path, int flags) {
  return do_open(AT_FDCWD, path, flags, [&] { return real::open64_2(path, flags); });
}
[[gnu::visibility("default")]] int __openat_2(int dirfd, const char* path, int flags) {
  return do_open(dirfd, path, flags, [&] { return real::openat_2(dirfd, path, flags); });
}
[[gnu::visibility("default")]] int __openat64_2(int dirfd, const char* path, int flags) {
  return do_open(dirfd, path, flags, [&] { return real::openat64_2(dirfd, path, flags); });
}

// The kernel's release() runs before close returns, so the context is torn down by then.
[[gnu::visibility("default")]] int close(int fd) {
  if (!FdTable::maybe_ours(fd)) [[likely]] {
    if (tracing::passthrough()) [[unlikely]]
      return uiommufd::runtime::passthrough_close(fd, [&] { return real::close(fd); });
    return real::close(fd);
  }
  const EngineGate::Scope gate;
  std::shared_ptr<Node> old = FdTable::get().set(fd, nullptr);
  const bool old_was_file = old && old->kind == Node::Kind::kFile && uiommufd::runtime::is_iommufd(*old);
  const int rc = real::close(fd);
  const int err = errno;
  drop(old);
  if (old_was_file && tracing::on()) [[unlikely]]
    tracing::closed(fd, rc == 0 ? 0 : -err);
  errno = err;
  return rc;
}

[[gnu::visibility("default")]] int close_range(unsigned first, unsigned last, int flags) noexcept {
  const int rc = real::close_range(first, last, flags);
  if (rc == 0 && !(flags & CLOSE_RANGE_CLOEXEC)) {
    const EngineGate::Scope gate;
    while (std::shared_ptr<Node> n = FdTable::get().take_one(first, last)) drop(n);
  }
  return rc;
}

[[gnu::visibility("default")]] void closefrom(int lowfd) noexcept {
  real::closefrom(lowfd);
  if (lowfd >= 0) {
    const EngineGate::Scope gate;
    while (std::shared_ptr<Node> n = FdTable::get().take_one(static_cast<unsigned>(lowfd), UINT_MAX)) drop(n);
  }
}

[[gnu::visibility("default")]] int dup(int fd) noexcept {
  if (!FdTable::maybe_ours(fd)) [[likely]] {
    if (tracing::passthrough()) [[unlikely]]
      return uiommufd::runtime::passthrough_dup("dup", fd, -1, [&] { return real::dup(fd); });
    return real::dup(fd);
  }
  const EngineGate::Scope gate;
  const int nfd = real::dup(fd);
  if (nfd >= 0 && !after_dup(fd, nfd)) return -1;
  trace_dup("dup", fd, -1, nfd);
  return nfd;
}

[[gnu::visibility("default")]] int dup2(int oldfd, int newfd) noexcept {
  if (!FdTable::maybe_ours(oldfd) && !FdTable::maybe_ours(newfd)) [[likely]] {
    if (tracing::passthrough()) [[unlikely]]
      return uiommufd::runtime::passthrough_dup("dup2", oldfd, newfd,
                                                [&] { return real::dup2(oldfd, newfd); });
    return real::dup2(oldfd, newfd);
  }
  const EngineGate::Scope gate;
  const int rc = real::dup2(oldfd, newfd);
  if (rc >= 0 && oldfd != newfd && !after_dup(oldfd, newfd)) return -1;
  trace_dup("dup2", oldfd, newfd, rc);
  return rc;
}

[[gnu::visibility("default")]] int dup3(int oldfd, int newfd, int flags) noexcept {
  if (!FdTable::maybe_ours(oldfd) && !FdTable::maybe_ours(newfd)) [[likely]] {
    if (tracing::passthrough()) [[unlikely]]
      return uiommufd::runtime::passthrough_dup("dup3", oldfd, newfd,
                                                [&] { return real::dup3(oldfd, newfd, flags); });
    return real::dup3(oldfd, newfd, flags);
  }
  const EngineGate::Scope gate;
  const int rc = real::dup3(oldfd, newfd, flags);
  if (rc >= 0 && !after_dup(oldfd, newfd)) return -1;
  trace_dup("dup3", oldfd, newfd, rc);
  return rc;
}

}  // extern "C"

namespace {

int do_fcntl(int fd, int cmd, unsigned long arg, int (*next)(int, int, unsigned long)) {
  if ((cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC) || !FdTable::maybe_ours(fd)) [[likely]] {
    if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && tracing::passthrough()) [[unlikely]]
      return uiommufd::runtime::passthrough_dup("fcntl", fd, -1, [&] { return next(fd, cmd, arg); });
    return next(fd, cmd, arg);
  }
  const uiommufd::runtime::EngineGate::Scope gate;
  const int nfd = next(fd, cmd, arg);
  if (nfd >= 0 && !after_dup(fd, nfd)) return -1;
  trace_dup("fcntl", fd, -1, nfd);
  return nfd;
}

// Commands without an argument leave garbage in `arg`, which the kernel ignores for them.
#define UIOMMUFD_FCNTL_ARG(cmd)      \
  unsigned long arg;                 \
  {                                  \
    va_list ap;                      \
    va_start(ap, cmd);               \
    arg = va_arg(ap, unsigned long); \
    va_end(ap);                      \
  }

}  // namespace

extern "C" {

[[gnu::visibility("default")]] int fcntl(int fd, int cmd, ...) {
  UIOMMUFD_FCNTL_ARG(cmd);
  return do_fcntl(fd, cmd, arg, real::fcntl);
}
[[gnu::visibility("default")]] int fcntl64(int fd, int cmd, ...) {
  UIOMMUFD_FCNTL_ARG(cmd);
  return do_fcntl(fd, cmd, arg, real::fcntl64);
}

[[gnu::visibility("default")]] int ioctl(int fd, unsigned long request, ...) noexcept {
  va_list ap;
  va_start(ap, request);
  const unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  if (!FdTable::maybe_ours(fd)) [[likely]] {
    if (tracing::passthrough() && tracing::passthrough_traces(fd, request)) [[unlikely]]
      return uiommufd::runtime::passthrough_ioctl(fd, request, arg);
    // Shared mode: a served file this image has not seen yet (passed over by a way it does not watch) is
    // recognised on its first iommufd / VFIO ioctl.
    if (!uiommufd::runtime::shared_client::enabled() || _IOC_TYPE(request) != ';' ||
        !uiommufd::runtime::shared_client::adopt(fd)) [[likely]]
      return real::ioctl(fd, request, arg);
  }
  {
    // Entered first, left last: dropping the file reference may be the file's last.
    const EngineGate::Scope gate;
    // The reference keeps the file alive across a concurrent close, as the kernel's fdget does.
    const uiommufd::runtime::FileRef file = FdTable::get().acquire_file(fd);
    if (file) {
      const int saved = errno;
      auto call = [&]() -> long {
        const long rc = file->ioctl(request, arg);
        // A served file this process has not yet shown the server it holds (shared mode).
        if (rc == uiommufd::shared::kNeedProof) [[unlikely]]
          return uiommufd::runtime::shared_client::prove_for_retry(fd, *file.get())
                     ? file->ioctl(request, arg)
                     : -EBADF;
        return rc;
      };
      // Traced: the calls on iommufds, as on the kernel's (not those on the files they hand out).
      const long rc =
          uiommufd::runtime::tracing::on() && file->kind() == uiommufd::uapi::OpenFile::Kind::kIommufd
              ? uiommufd::runtime::tracing::traced_ioctl(fd, request, arg, call)
              : call();
      if (rc < 0) [[unlikely]] {
        errno = static_cast<int>(-rc);
        return -1;
      }
      errno = saved;
      return static_cast<int>(rc);
    }
  }
  // Not an iommufd: the kernel's, outside the gate (it may block for as long as it likes).
  return real::ioctl(fd, request, arg);
}

[[gnu::visibility("default")]] ssize_t read(int fd, void* buf, size_t count) {
  if (!FdTable::maybe_ours(fd)) [[likely]]
    return real::read(fd, buf, count);
  {
    const EngineGate::Scope gate;
    if (ssize_t n = 0; uiommufd::runtime::queue_rw(fd, buf, count, false, &n)) return n;
    if (std::shared_ptr<Node> node = FdTable::get().find(fd))
      return uiommufd::runtime::node_read(fd, *node, buf, count, 0, false);
  }
  return real::read(fd, buf, count);
}

[[gnu::visibility("default")]] ssize_t __read_chk(int fd, void* buf, size_t nbytes, size_t buflen) {
  if (nbytes > buflen) __chk_fail();
  return read(fd, buf, nbytes);
}

[[gnu::visibility("default")]] ssize_t pread(int fd, void* buf, size_t count, off_t offset) {
  return uiommufd::runtime::do_pread(fd, buf, count, offset, real::pread);
}

[[gnu::visibility("default")]] ssize_t pread64(int fd, void* buf, size_t count, off_t offset) {
  return uiommufd::runtime::do_pread(fd, buf, count, offset, real::pread64);
}

[[gnu::visibility("default")]] ssize_t __pread_chk(int fd, void* buf, size_t nbytes, off_t offset,
                                                   size_t buflen) {
  if (nbytes > buflen) __chk_fail();
  return pread(fd, buf, nbytes, offset);
}

[[gnu::visibility("default")]] ssize_t __pread64_chk(int fd, void* buf, size_t nbytes, off_t offset,
                                                     size_t buflen) {
  if (nbytes > buflen) __chk_fail();
  return pread64(fd, buf, nbytes, offset);
}

[[gnu::visibility("default")]] ssize_t write(int fd, const void* buf, size_t count) {
  if (!FdTable::maybe_ours(fd)) [[likely]]
    return real::write(fd, buf, count);
  {
    const EngineGate::Scope gate;
    if (ssize_t n = 0; uiommufd::runtime::queue_rw(fd, const_cast<void*>(buf), count, true, &n)) return n;
    if (std::shared_ptr<Node> node = FdTable::get().find(fd))
      return uiommufd::runtime::node_write(fd, *node, buf, count);
  }
  return real::write(fd, buf, count);
}

[[gnu::visibility("default")]] ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  return uiommufd::runtime::do_pwrite(fd, buf, count, offset, real::pwrite);
}

[[gnu::visibility("default")]] ssize_t pwrite64(int fd, const void* buf, size_t count, off_t offset) {
  return uiommufd::runtime::do_pwrite(fd, buf, count, offset, real::pwrite64);
}

[[gnu::visibility("default")]] ssize_t readv(int fd, const struct iovec* iov, int iovcnt) {
  if (!FdTable::maybe_ours(fd)) [[likely]]
    return real::readv(fd, iov, iovcnt);
  {
    const EngineGate::Scope gate;
    if (std::shared_ptr<Node> node = FdTable::get().find(fd))
      return uiommufd::runtime::node_rw_vec(fd, *node, iov, iovcnt, /*write=*/false);
  }
  return real::readv(fd, iov, iovcnt);
}

[[gnu::visibility("default")]] ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  if (!FdTable::maybe_ours(fd)) [[likely]]
    return real::writev(fd, iov, iovcnt);
  {
    const EngineGate::Scope gate;
    if (std::shared_ptr<Node> node = FdTable::get().find(fd))
      return uiommufd::runtime::node_rw_vec(fd, *node, iov, iovcnt, /*write=*/true);
  }
  return real::writev(fd, iov, iovcnt);
}

// glibc's opendir opens the directory internally, past our open.
[[gnu::visibility("default")]] DIR* opendir(const char* name) {
  if (!uiommufd::runtime::may_be_virtual_absolute(name) || tracing::passthrough()) [[likely]]
    return real::opendir(name);
  int fd = -1;
  try {
    const std::string abs = uiommufd::runtime::normalize_path("/", name);
    const uiommufd::runtime::VirtualPath vp =
        uiommufd::runtime::classify_path(abs, getpid(), static_cast<int>(gettid()));
    if (vp.kind != uiommufd::runtime::VirtualKind::kDebugfsDir) return real::opendir(name);
    const EngineGate::Scope gate;
    fd = uiommufd::runtime::open_debugfs_dir(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC, errno);
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;
    return nullptr;
  }
  if (fd < 0) return nullptr;
  DIR* dir = real::fdopendir(fd);
  if (dir == nullptr) {
    const int err = errno;
    close(fd);
    errno = err;
  }
  return dir;
}

// glibc's closedir closes the fd internally, past our close.
[[gnu::visibility("default")]] int closedir(DIR* dir) {
  const int fd = dirfd(dir);
  if (!FdTable::maybe_ours(fd)) [[likely]]
    return real::closedir(dir);
  const EngineGate::Scope gate;
  std::shared_ptr<Node> old = FdTable::get().set(fd, nullptr);
  const int rc = real::closedir(dir);
  drop(old);
  return rc;
}

// Shared mode: served files that arrive over a unix socket are recognised as they arrive.
[[gnu::visibility("default")]] ssize_t recvmsg(int fd, struct msghdr* msg, int flags) {
  const ssize_t n = real::recvmsg(fd, msg, flags);
  if (n >= 0 && uiommufd::runtime::shared_client::enabled()) [[unlikely]] {
    const int saved = errno;
    uiommufd::runtime::shared_client::adopt_received(msg);
    errno = saved;
  }
  return n;
}

[[gnu::visibility("default")]] int recvmmsg(int fd, struct mmsghdr* msgs, unsigned vlen, int flags,
                                            struct timespec* timeout) {
  const int n = real::recvmmsg(fd, msgs, vlen, flags, timeout);
  if (n > 0 && uiommufd::runtime::shared_client::enabled()) [[unlikely]] {
    const int saved = errno;
    for (int i = 0; i < n; ++i) uiommufd::runtime::shared_client::adopt_received(&msgs[i].msg_hdr);
    errno = saved;
  }
  return n;
}

}  // extern "C"

// Shared mode: a process that leaves with _exit (as forked children do) gives the server the chance to
// copy out what pins hold of its memory first (docs/shared.md#exit); exit() does it from its atexit list.
// In-process, --dump-at-exit's dump is made here too.
namespace {
[[noreturn]] void leave(int status, const char* name) {
  uiommufd::runtime::shared_client::before_exit();
  uiommufd::runtime::dump_hook::before_exit();
  using ExitFn = void (*)(int);
  if (auto next = reinterpret_cast<ExitFn>(dlsym(RTLD_NEXT, name))) next(status);
  for (;;) syscall(SYS_exit_group, status);
}
}  // namespace

extern "C" {
// The C library declares these noreturn (GNU attribute) and _Exit also nothrow, _exit not; the definitions
// repeat exactly that, as a redeclaration must.
__attribute__((noreturn, visibility("default"))) void _exit(int status) { leave(status, "_exit"); }
__attribute__((noreturn, visibility("default"))) void _Exit(int status) noexcept { leave(status, "_Exit"); }
}  // extern "C"
