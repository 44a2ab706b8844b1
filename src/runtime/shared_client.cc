#include "shared_client.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "fd_table.h"
#include "real_calls.h"
#include "server/protocol.h"

#include "uiommufd/base/fault.h"
#include "uiommufd/base/high_fd.h"
#include "uiommufd/mm/mm.h"

namespace uiommufd::runtime::shared_client {

namespace detail {
bool g_enabled = false;
}  // namespace detail

using shared::Msg;
using shared::Op;
using shared::Reply;
using shared::Request;

namespace {

sockaddr_un g_addr{};
socklen_t g_addr_len = 0;

// Bumped in a forked child: every channel made before belongs to the parent.
std::atomic<std::uint64_t> g_generation{1};

// The fds of the live channels (fd + 1; 0 is a free slot), for the child of a fork to close: only the
// forking thread survives there, and the others' channels would stay open, keeping a server thread each.
// A thread whose channel finds no slot (more than kSlots threads) leaks that fd into forked children.
constexpr int kSlots = 1024;
std::atomic<int> g_slots[kSlots];

int fail(int err) {
  errno = err;
  return -1;
}

struct Channel {
  int fd = -1;
  int slot = -1;
  std::uint64_t generation = 0;
  bool busy = false;  // a call is in progress on it

  Channel() = default;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel() { drop(); }

  void drop() {
    if (fd >= 0 && generation == g_generation.load(std::memory_order_acquire)) {
      if (slot >= 0) {
        int expected = fd + 1;
        g_slots[slot].compare_exchange_strong(expected, 0);
      }
      shared::sys_close(fd);
    }
    fd = -1;
    slot = -1;
  }

  bool ensure() {
    if (fd >= 0 && generation == g_generation.load(std::memory_order_acquire)) return true;
    // From before a fork: the child's fork handler has closed it.
    fd = -1;
    slot = -1;
    const int s = static_cast<int>(syscall(SYS_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (s < 0) return false;
    if (syscall(SYS_connect, s, reinterpret_cast<const sockaddr*>(&g_addr), g_addr_len) != 0) {
      shared::sys_close(s);
      return false;
    }
    // Under Yama's ptrace_scope 1 only an ancestor may read our memory; the server of a program started
    // otherwise may not be one.
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) prctl(PR_SET_PTRACER, cred.pid, 0, 0, 0);
    fd = move_high(s);
    generation = g_generation.load(std::memory_order_acquire);
    for (int i = 0; i < kSlots; ++i) {
      int expected = 0;
      if (g_slots[i].compare_exchange_strong(expected, fd + 1)) {
        slot = i;
        break;
      }
    }
    return true;
  }
};

thread_local Channel t_channel;
// The process that has made a call (0: none yet): only such a process can have memory the server pins (its
// maps). A pid rather than a flag, so that a vfork child, which shares this memory, is not taken for it.
std::atomic<pid_t> g_caller{0};
// before_exit() has told the server already (exit() runs it, and a program's _exit in an atexit handler
// would run it again).
std::atomic<bool> g_exit_told{false};
thread_local int t_rw_fd = -1;  // the fd of the read or write being forwarded (set_rw_fd)

void child_after_fork() {
  g_caller.store(0, std::memory_order_relaxed);
  g_exit_told.store(false, std::memory_order_relaxed);
  for (std::atomic<int>& slot : g_slots) {
    const int v = slot.exchange(0, std::memory_order_relaxed);
    if (v > 0) shared::sys_close(v - 1);
  }
  g_generation.fetch_add(1, std::memory_order_release);
}

// Records `fd` (a served file just received) in the table. -errno when the table cannot grow (fd closed).
long record(int fd, std::uint64_t handle, std::uint32_t bits, int accmode) {
  std::shared_ptr<Node> old;
  try {
    auto node = std::make_shared<Node>();
    node->kind = Node::Kind::kFile;
    node->accmode = accmode;
    node->file = std::make_shared<RemoteFile>(handle, bits);
    old = FdTable::get().set(fd, std::move(node));
  } catch (const std::bad_alloc&) {
    shared::sys_close(fd);
    return -ENOMEM;
  }
  old.reset();
  return fd;
}

// The server's kInstall: the fd arrived close-on-exec; records it.
long on_install(const Reply& r, int fd) {
  if (fd < 0) return -EPROTO;
  if (!(r.flags & O_CLOEXEC)) syscall(SYS_fcntl, fd, F_SETFD, 0);
  return record(fd, r.handle, r.bits, r.flags & O_ACCMODE);
}

// The server's kUninstall: the call takes back an fd it gave; the server has released the file.
void on_uninstall(int fd) {
  std::shared_ptr<Node> old = FdTable::get().set(fd, nullptr);
  shared::sys_close(fd);
  if (old && old->file) {
    if (auto* remote = dynamic_cast<RemoteFile*>(old->file.get())) remote->forget();
  }
}

// Returned by exchange() when the request could not be sent at all: the channel's fd was closed under us
// (closefrom, close_range in the program), so the call may go again on a new one.
constexpr long kNotSent = -0x10001;

// One call on `sock`: the request, the server's mid-call messages, the kDone reply. -EIO when the
// channel fails, kNotSent when nothing was sent.
long exchange(int sock, const Request& req, int send_fd, Reply* done, int* got_fd) {
  if (shared::send_record(sock, &req, sizeof req, send_fd) < 0) return kNotSent;
  for (;;) {
    Reply r;
    int fd = -1;
    if (shared::recv_record(sock, &r, sizeof r, &fd) < 0) return -EIO;
    switch (r.msg) {
      case Msg::kDone:
        *done = r;
        if (got_fd)
          *got_fd = fd;
        else if (fd >= 0)
          shared::sys_close(fd);
        return 0;
      case Msg::kInstall: {
        Request ans{Op::kInstalled, 0, r.handle, 0, 0, 0, on_install(r, fd)};
        if (shared::send_record(sock, &ans, sizeof ans, -1) < 0) return -EIO;
        break;
      }
      case Msg::kUninstall:
        if (fd >= 0) shared::sys_close(fd);
        on_uninstall(static_cast<int>(r.rc));
        break;
      case Msg::kGetFd: {
        if (fd >= 0) shared::sys_close(fd);
        const int give = static_cast<int>(r.rc);
        const bool open = give >= 0 && syscall(SYS_fcntl, give, F_GETFD) >= 0;
        Request ans{Op::kFdGiven, 0, 0, 0, 0, 0, open ? 0 : -EBADF};
        if (shared::send_record(sock, &ans, sizeof ans, open ? give : -1) < 0) return -EIO;
        break;
      }
      default:
        if (fd >= 0) shared::sys_close(fd);
        return -EIO;
    }
  }
}

// One call on this thread's channel, or, nested in another call on this thread, on a connection of its
// own. 0 with *done filled, or -EIO (the server cannot be reached, or the channel broke).
long call(const Request& req, int send_fd, Reply* done, int* got_fd = nullptr) {
  const int saved = errno;
  Channel& own = t_channel;
  Channel nested;
  Channel& ch = own.busy ? nested : own;
  long rc = kNotSent;
  for (int attempt = 0; attempt < 2 && rc == kNotSent; ++attempt) {
    if (!ch.ensure()) break;
    if (g_caller.load(std::memory_order_relaxed) == 0 && req.op != Op::kExec) [[unlikely]]
      g_caller.store(static_cast<pid_t>(syscall(SYS_getpid)), std::memory_order_relaxed);
    ch.busy = true;
    rc = exchange(ch.fd, req, send_fd, done, got_fd);
    ch.busy = false;
    if (rc < 0) ch.drop();
  }
  errno = saved;
  return rc == kNotSent ? -EIO : rc;
}

}  // namespace

void before_exit() {
  const pid_t caller = enabled() ? g_caller.load(std::memory_order_relaxed) : 0;
  if (caller == 0 || caller != static_cast<pid_t>(syscall(SYS_getpid))) return;
  if (g_exit_told.exchange(true)) return;
  Request req{Op::kExit, 0, 0, 0, 0, 0, 0};
  Reply rep{};
  (void)call(req, -1, &rep);
}

void init() {
  const char* addr = std::getenv(shared::kServerEnv);
  if (!addr || !*addr) return;
  const std::size_t len = std::strlen(addr);
  if (len >= sizeof g_addr.sun_path) return;
  g_addr.sun_family = AF_UNIX;
  std::memcpy(g_addr.sun_path, addr, len);
  const bool abstract = addr[0] == '@';
  if (abstract) g_addr.sun_path[0] = '\0';
  g_addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len + (abstract ? 0 : 1));
  detail::g_enabled = true;
  pthread_atfork(nullptr, nullptr, child_after_fork);
  std::atexit(before_exit);

  // What this image inherited across exec: only the kernel's fds survive it, so served files are found by
  // asking the server about every FIFO and socket.
  const int saved = errno;
  std::vector<int> fifos;
  if (DIR* dir = real::opendir("/proc/self/fd")) {
    const int self = dirfd(dir);
    while (dirent* e = readdir(dir)) {
      char* end = nullptr;
      const long fd = std::strtol(e->d_name, &end, 10);
      if (end == e->d_name || *end || fd == self) continue;
      struct stat st {};
      if (fstat(static_cast<int>(fd), &st) == 0 && S_ISFIFO(st.st_mode))
        fifos.push_back(static_cast<int>(fd));
    }
    real::closedir(dir);
  }
  for (int fd : fifos) adopt(fd);
  // A new image: what the process mapped of the server's regions went with the old one (the kernel closes
  // those vmas at exec). Told now, before any thread of this image can map anew.
  Request req{Op::kExec, 0, 0, 0, 0, 0, 0};
  Reply rep{};
  (void)call(req, -1, &rep);
  errno = saved;
}

int open_iommufd(int flags, bool vfio_compat) {
  Request req{Op::kOpen, 0, 0, static_cast<std::uint32_t>(flags), vfio_compat ? 1u : 0u, 0, 0};
  Reply rep{};
  int fd = -1;
  if (call(req, -1, &rep, &fd) < 0) return fail(ENODEV);
  if (rep.rc < 0) {
    if (fd >= 0) shared::sys_close(fd);
    return fail(static_cast<int>(-rep.rc));
  }
  if (fd < 0) return fail(EIO);
  if (!(flags & O_CLOEXEC)) syscall(SYS_fcntl, fd, F_SETFD, 0);
  const long rc = record(fd, rep.handle, rep.bits, flags & O_ACCMODE);
  return rc < 0 ? fail(static_cast<int>(-rc)) : static_cast<int>(rc);
}

bool adopt(int fd) {
  const int saved = errno;
  struct stat st {};
  bool ours = false;
  if (fd >= 0 && fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
    Request req{Op::kProve, 0, 0, 0, 0, 0, 0};
    Reply rep{};
    if (call(req, fd, &rep) == 0 && rep.rc >= 0)
      ours = record(fd, rep.handle, rep.bits, rep.flags & O_ACCMODE) >= 0;
  }
  errno = saved;
  return ours;
}

void adopt_received(const msghdr* msg) {
  if (!msg || !msg->msg_control || msg->msg_controllen == 0) return;
  for (const cmsghdr* c = CMSG_FIRSTHDR(msg); c;
       c = CMSG_NXTHDR(const_cast<msghdr*>(msg), const_cast<cmsghdr*>(c))) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      adopt(fd);
    }
  }
}

void set_rw_fd(int fd) { t_rw_fd = fd; }

bool prove_for_retry(int fd, const uapi::OpenFile& file) {
  const auto* remote = dynamic_cast<const RemoteFile*>(&file);
  if (!remote) return false;
  Request req{Op::kProve, 0, 0, 0, 0, 0, 0};
  Reply rep{};
  return call(req, fd, &rep) == 0 && rep.rc >= 0 && rep.handle == remote->handle();
}

long mmap_region(int fd, const uapi::OpenFile& file, std::uint64_t offset, std::uint64_t length, int* memfd,
                 std::uint64_t* id) {
  const auto* remote = dynamic_cast<const RemoteFile*>(&file);
  if (!remote) return -ENODEV;
  for (int attempt = 0;; ++attempt) {
    const Request req{Op::kMmap, 0, remote->handle(), offset, 0, length, 0};
    Reply rep{};
    int got = -1;
    if (call(req, -1, &rep, &got) < 0) return -EIO;
    if (rep.rc == shared::kNeedProof && attempt == 0 && prove_for_retry(fd, file)) continue;
    if (rep.rc < 0 || got < 0) {
      if (got >= 0) shared::sys_close(got);
      return rep.rc < 0 ? (rep.rc == shared::kNeedProof ? -EBADF : rep.rc) : -EIO;
    }
    *memfd = got;
    *id = rep.handle;
    return 0;
  }
}

void map_users(std::uint64_t id, std::int64_t delta) {
  const Request req{Op::kMapUsers, 0, id, 0, 0, 0, delta};
  Reply rep{};
  (void)call(req, -1, &rep);
}

RemoteFile::RemoteFile(std::uint64_t handle, std::uint32_t bits)
    : OpenFile(static_cast<Kind>(bits >> shared::kKindShift)), handle_(handle), bits_(bits) {}

RemoteFile::~RemoteFile() {
  if (forgotten_) return;
  Request req{Op::kSync, 0, handle_, 0, 0, 0, 0};
  Reply rep{};
  (void)call(req, -1, &rep);
}

namespace {

// An ioctl's argument goes with the call (docs/shared.md#inline): as many bytes as the struct's leading size
// says, up to kInlineBytes, when they can be read here, and whether they can be stored into (found by
// storing them back unchanged), so that the server needs no system call to read the struct or to write its
// answer. Copies that fault leave the request without them: the server then reaches the memory itself
// and meets the fault as the kernel would.
void attach_argument(Request& req) {
  const Mm& self = Mm::local_ref();
  std::uint32_t size = 0;
  if (!self.copy_from_user_uninjected(&size, req.arg, sizeof size).ok()) return;
  std::size_t n = std::clamp<std::size_t>(size, sizeof size, shared::kInlineBytes);
  if (!self.copy_from_user_uninjected(req.inline_bytes, req.arg, n).ok()) {
    n = sizeof size;
    std::memcpy(req.inline_bytes, &size, n);
  }
  req.inline_len = static_cast<std::uint32_t>(n);
  if (self.copy_to_user_uninjected(req.arg, req.inline_bytes, n).ok())
    req.inline_flags = shared::kInlineWritable;
}

}  // namespace

long RemoteFile::forward(std::uint32_t op, std::uint64_t cmd, std::uint64_t arg, std::uint64_t count) {
  const std::uint32_t nth = fail_nth_get();
  Request req{static_cast<Op>(op), nth, handle_, cmd, arg, count, 0};
  if (req.op == Op::kIoctl) attach_argument(req);
  Reply rep{};
  if (call(req, -1, &rep) < 0) return -EIO;
  if (rep.fail_nth != nth) fail_nth_set(rep.fail_nth);
  if (rep.out_len != 0) {
    // What the command stored into the struct; it could be stored into when the call was sent.
    if (rep.out_off > req.inline_len || rep.out_len > req.inline_len - rep.out_off ||
        !Mm::local_ref().copy_to_user_uninjected(arg + rep.out_off, rep.out_bytes, rep.out_len).ok())
      return -EFAULT;
  }
  if (rep.drain != 0 && t_rw_fd >= 0) [[unlikely]] {
    // Readiness the read took back (a vEVENT queue's socket): bytes the server sent to this file.
    char buf[64];
    for (std::uint32_t left = rep.drain; left > 0;) {
      const long n = syscall(SYS_recvfrom, t_rw_fd, buf, std::min<std::uint32_t>(left, sizeof buf),
                             MSG_DONTWAIT, nullptr, nullptr);
      if (n <= 0) break;
      left -= static_cast<std::uint32_t>(n);
    }
  }
  return rep.rc;
}

long RemoteFile::ioctl(unsigned long cmd, std::uint64_t arg) {
  return forward(static_cast<std::uint32_t>(Op::kIoctl), cmd, arg, 0);
}
long RemoteFile::read(std::uint64_t uptr, std::size_t count) {
  return forward(static_cast<std::uint32_t>(Op::kRead), 0, uptr, count);
}
long RemoteFile::write(std::uint64_t uptr, std::size_t count) {
  return forward(static_cast<std::uint32_t>(Op::kWrite), 0, uptr, count);
}
bool RemoteFile::has_read() const { return bits_ & shared::kBitRead; }
bool RemoteFile::has_write() const { return bits_ & shared::kBitWrite; }
bool RemoteFile::positional() const { return bits_ & shared::kBitPositional; }

}  // namespace uiommufd::runtime::shared_client
