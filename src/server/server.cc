#include "server.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/log.h"
#include "uiommufd/base/try.h"
#include "uiommufd/dump/dumper.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/context.h"

namespace uiommufd::server {

using shared::Msg;
using shared::Op;
using shared::Reply;
using shared::Request;

namespace {

// epoll data of the fds that are not a served file's end (a handle is never this large).
constexpr std::uint64_t kListenTag = ~std::uint64_t{0};
constexpr std::uint64_t kWakeTag = kListenTag - 1;
constexpr std::uint64_t kSignalTag = kListenTag - 2;
// A mapping process's pidfd: this bit and its Mm's address (user-space addresses stay below it).
constexpr std::uint64_t kMapperTag = std::uint64_t{1} << 62;

Result<sockaddr_un> socket_address(const std::string& address, socklen_t* len) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  const bool abstract = !address.empty() && address[0] == '@';
  if (address.empty() || address.size() >= sizeof sa.sun_path) return Status::error(ENAMETOOLONG);
  std::memcpy(sa.sun_path, address.data(), address.size());
  if (abstract) sa.sun_path[0] = '\0';
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size() + (abstract ? 0 : 1));
  return sa;
}

// Takes back the readable state of a served file's pipe: opens a reader of its own for the moment (the
// server keeps no reader, so that its end sees the last client close) and empties the pipe.
void drain(int keep_fd) {
  char path[40];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", keep_fd);
  const int r = ::open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (r < 0) return;
  char buf[64];
  while (::read(r, buf, sizeof buf) > 0) {
  }
  ::close(r);
}

// The shape of an iommufd opened with `open_flags`: a FIFO open, as the kernel's is an open() file. The
// access mode 3 (ioctl only) cannot open a FIFO: it is O_RDWR there, and 3 for the client's checks.
Server::Shape open_shape(int open_flags) {
  const int acc = open_flags & O_ACCMODE;
  return acc == O_RDONLY   ? Server::Shape::kFifoRead
         : acc == O_WRONLY ? Server::Shape::kFifoWrite
                           : Server::Shape::kFifo;
}

// The shape of a file the dispatcher creates (an anonymous-inode file or a dma-buf: no O_LARGEFILE), so
// that F_GETFL reports exactly the access mode and O_NONBLOCK: a pipe's read or write end, or for both
// directions a socket.
Server::Shape created_shape(int open_flags) {
  const int acc = open_flags & O_ACCMODE;
  return acc == O_RDONLY   ? Server::Shape::kPipeRead
         : acc == O_WRONLY ? Server::Shape::kPipeWrite
                           : Server::Shape::kSocket;
}

std::uint32_t file_bits(const uapi::OpenFile& f) {
  return (f.has_read() ? shared::kBitRead : 0) | (f.has_write() ? shared::kBitWrite : 0) |
         (f.positional() ? shared::kBitPositional : 0) |
         (static_cast<std::uint32_t>(f.kind()) << shared::kKindShift);
}

}  // namespace

// The server's end of a served file's pipe: the write end when the client's FIFO reads (its readers
// count reaching 0 makes this end EPOLLERR), the read end for a write-only client (EPOLLHUP).
struct PipeEnd {
  explicit PipeEnd(int f) : fd(f) {}
  ~PipeEnd() { ::close(fd); }
  PipeEnd(const PipeEnd&) = delete;
  PipeEnd& operator=(const PipeEnd&) = delete;
  const int fd;
};

// A queue's readiness, on the client's FIFO: a byte queued while records wait (EPOLLIN | EPOLLRDNORM, as the
// kernel's), none otherwise. The queue calls it under its lock, on transitions only.
class PipeReadiness final : public QueueReadiness {
 public:
  explicit PipeReadiness(std::shared_ptr<PipeEnd> end) : end_(std::move(end)) {}
  void set_readable(bool readable) override {
    const int saved = errno;
    if (readable) {
      const char b = 0;
      (void)!::write(end_->fd, &b, 1);
    } else {
      drain(end_->fd);
    }
    errno = saved;
  }

 private:
  const std::shared_ptr<PipeEnd> end_;
};

struct Server::FileRecord {
  std::uint64_t handle = 0;
  std::shared_ptr<uapi::OpenFile> file;
  std::shared_ptr<PipeEnd> end;
  std::pair<dev_t, ino_t> inode;
  std::uint32_t bits = 0;
  int accmode = O_RDWR;
};

// One connection, served by one thread.
struct Server::Channel {
  int sock = -1;
  pid_t pid = 0;
  RefPtr<Mm> mm;
  // The file of the handle used last, while it is served: most calls skip the table lock.
  std::uint64_t cached_handle = 0;
  std::weak_ptr<FileRecord> cached;
};

// The call being served on this thread, for the FdHost members the dispatcher calls in the middle of it.
struct Server::Call {
  Channel* ch = nullptr;
  std::vector<std::pair<int, std::uint64_t>> installed;  // client fd, handle
  std::vector<std::pair<int, int>> fetched;              // client fd, our copy
  bool broken = false;                                   // the channel failed mid-call
  std::uint32_t drain = 0;                               // Reply::drain
  ~Call() {
    for (auto& [client, local] : fetched) ::close(local);
  }
};

// A vEVENT queue's readiness, on the client's socket: a byte the server sends while records wait. Only the
// client can take it back; records leave a vEVENT queue only through a read of its fd, so the read's reply
// tells the caller how many bytes to take (Reply::drain).
class Server::SocketReadiness final : public QueueReadiness {
 public:
  explicit SocketReadiness(std::shared_ptr<PipeEnd> end) : end_(std::move(end)) {}
  void set_readable(bool readable) override {
    const int saved = errno;
    if (readable) {
      const char b = 0;
      if (::send(end_->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) ++queued_;
    } else if (Call* call = t_call) {
      call->drain += queued_;
      queued_ = 0;
    }
    errno = saved;
  }

 private:
  const std::shared_ptr<PipeEnd> end_;
  unsigned queued_ = 0;  // under the queue's lock, which serialises every call
};

thread_local Server::Call* Server::t_call = nullptr;

std::string make_address() {
  std::random_device rd;
  char buf[64];
  std::snprintf(buf, sizeof buf, "@uiommufd-%d-%08x%08x", static_cast<int>(getpid()), rd(), rd());
  return buf;
}

Result<std::unique_ptr<Server>> Server::listen(const std::string& address) {
  socklen_t len = 0;
  const sockaddr_un sa = TRY(socket_address(address, &len));
  const int s = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) return Status::error(errno);
  if (::bind(s, reinterpret_cast<const sockaddr*>(&sa), len) != 0 || ::listen(s, 128) != 0) {
    const int err = errno;
    ::close(s);
    return Status::error(err);
  }
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  const int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (ep < 0 || wake < 0) {
    const int err = errno;
    ::close(s);
    if (ep >= 0) ::close(ep);
    if (wake >= 0) ::close(wake);
    return Status::error(err);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenTag;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
  ev.data.u64 = kWakeTag;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev);
  try {
    return std::unique_ptr<Server>(new Server(s, ep, wake, address));
  } catch (const std::bad_alloc&) {
    ::close(s);
    ::close(ep);
    ::close(wake);
    return Status::error(ENOMEM);
  }
}

Server::Server(int listen_fd, int epoll_fd, int wake_fd, std::string address)
    : listen_fd_(listen_fd), epoll_fd_(epoll_fd), wake_fd_(wake_fd), address_(std::move(address)) {}

Server::~Server() {
  while (threads_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  ::close(listen_fd_);
  ::close(epoll_fd_);
  ::close(wake_fd_);
  if (!address_.empty() && address_[0] != '@') ::unlink(address_.c_str());
}

std::size_t Server::file_count() {
  lockdep::MutexGuard g(mu_);
  return files_.size();
}

void Server::wake() {
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

int Server::run(pid_t child) {
  program_.store(child, std::memory_order_relaxed);
  // Dumps of the engine on SIGUSR2, made by a thread of their own so that the loop goes on (docs/dump.md).
  if (dump::options().on_signal)
    (void)dump::DumpThread::start([](dump::Reason r) { (void)dump::dump_now(r); });
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR2}) sigaddset(&set, sig);
  const int sfd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kSignalTag;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, sfd, &ev);
  }
  // Writing to a pipe whose client has gone is EPIPE, not a signal.
  ::signal(SIGPIPE, SIG_IGN);
  bool child_done = child == 0;
  bool stop = false;
  int status = 0;
  while (!stop) {
    if (child != 0 && child_done && channel_count() == 0 && file_count() == 0) break;
    epoll_event evs[32];
    const int n = ::epoll_wait(epoll_fd_, evs, 32, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      UIOMMUFD_LOG(LogLevel::kError, "server: epoll_wait: %s", std::strerror(errno));
      break;
    }
    for (int i = 0; i < n; ++i) {
      const std::uint64_t tag = evs[i].data.u64;
      if (tag == kListenTag) {
        accept_one();
      } else if (tag == kWakeTag) {
        std::uint64_t v;
        (void)!::read(wake_fd_, &v, sizeof v);
      } else if (tag == kSignalTag) {
        signalfd_siginfo si;
        while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
          const int sig = static_cast<int>(si.ssi_signo);
          if (sig == SIGCHLD) {
            int st = 0;
            pid_t p;
            while ((p = ::waitpid(-1, &st, WNOHANG)) > 0) {
              if (p == child) {
                status = st;
                child_done = true;
              }
            }
          } else if (sig == SIGUSR2) {
            dump::DumpThread::request();
          } else if (child == 0) {
            if (sig == SIGTERM || sig == SIGINT) stop = true;
          } else if (!child_done && (sig == SIGTERM || sig == SIGHUP)) {
            ::kill(child, sig);
          }
        }
      } else if (tag & kMapperTag) {
        // A process that mapped regions has exited: its mappings are gone.
        drop_mapper(reinterpret_cast<Mm*>(static_cast<std::uintptr_t>(tag & ~kMapperTag)), /*exited=*/true);
      } else {
        // A served file's end: the last client copy has closed.
        release(tag);
      }
    }
  }
  if (sfd >= 0) ::close(sfd);
  dump::dump_at_exit();  // when the program never said it was leaving (killed, or never called)
  return status;
}

void Server::accept_one() {
  const int s = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (s < 0) return;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    ::close(s);
    return;
  }
  channels_.fetch_add(1, std::memory_order_relaxed);
  threads_.fetch_add(1, std::memory_order_relaxed);
  try {
    std::thread([this, s, pid = cred.pid] {
      serve(s, pid);
      threads_.fetch_sub(1, std::memory_order_release);  // nothing of *this is touched after this
    }).detach();
  } catch (const std::system_error&) {
    ::close(s);
    channels_.fetch_sub(1, std::memory_order_relaxed);
    threads_.fetch_sub(1, std::memory_order_relaxed);
  }
}

void Server::serve(int sock, pid_t pid) {
  Channel ch;
  ch.sock = sock;
  ch.pid = pid;
  if (Result<RefPtr<Mm>> mm = Mm::for_process(pid); mm.ok()) {
    ch.mm = std::move(*mm);
    bool registered = true;
    try {
      lockdep::MutexGuard g(mu_);
      Process& p = processes_[ch.mm.get()];
      if (!p.mm) p.mm = ch.mm;
      ++p.channels;
    } catch (const std::bad_alloc&) {
      registered = false;
    }
    for (; registered;) {
      Request req;
      int fd = -1;
      if (shared::recv_record(sock, &req, sizeof req, &fd) < 0) break;
      Reply rep{Msg::kDone, req.fail_nth, 0, 0, 0, 0, 0, 0};
      int send_fd = -1;
      switch (req.op) {
        case Op::kOpen:
          serve_open(ch, req, &rep, &send_fd);
          break;
        case Op::kProve:
          serve_prove(ch, fd, &rep);
          break;
        case Op::kIoctl:
        case Op::kRead:
        case Op::kWrite:
          serve_call(ch, req, &rep);
          break;
        case Op::kSync:
          serve_sync(req.handle);
          break;
        case Op::kMmap:
          serve_mmap(ch, req, &rep, &send_fd);
          break;
        case Op::kMapUsers:
          serve_map_users(ch, req.handle, req.rc, &rep);
          break;
        case Op::kExec:
          drop_mapper(ch.mm.get(), /*exited=*/false);
          break;
        case Op::kExit:
          // The run's program leaving: the dump at exit shows what its contexts still hold (docs/dump.md).
          if (pid == program_.load(std::memory_order_relaxed)) dump::dump_at_exit();
          // The process waits for this reply before it goes: what its pinned pages hold is copied now, and
          // its mappings are let go of now rather than when its exit is seen, so that a parent's
          // waitpid() is followed by their release, as the kernel closes the vmas before the exit is
          // reported.
          rep.rc = ch.mm->keep_held_pages().ok() ? 0 : -ENOMEM;
          drop_mapper(ch.mm.get(), /*exited=*/false);
          break;
        default:
          rep.rc = -EPROTO;
          break;
      }
      if (fd >= 0) ::close(fd);
      const long sent = shared::send_record(sock, &rep, sizeof rep, send_fd);
      if (send_fd >= 0) ::close(send_fd);
      if (sent < 0) break;
    }
    if (registered) {
      lockdep::MutexGuard g(mu_);
      auto it = processes_.find(ch.mm.get());
      if (it != processes_.end() && --it->second.channels == 0) processes_.erase(it);
    }
  }
  ::close(sock);
  ch.cached.reset();
  ch.mm = nullptr;
  channels_.fetch_sub(1, std::memory_order_release);
  wake();
}

void Server::prove(Mm* process, std::uint64_t handle) {
  lockdep::MutexGuard g(mu_);
  auto it = processes_.find(process);
  if (it == processes_.end()) return;
  try {
    it->second.proven.insert(handle);
  } catch (const std::bad_alloc&) {
    // Unproved: the client is asked to prove it again on its next call.
  }
}

void Server::serve_open(Channel& ch, const Request& req, Reply* rep, int* send_fd) {
  const int flags = static_cast<int>(req.cmd);
  const Mm::CurrentScope scope(*ch.mm);
  Result<std::shared_ptr<uapi::IommufdFile>> file = uapi::IommufdFile::open(*this, req.arg == 1);
  if (!file.ok()) {
    rep->rc = -file.error();
    return;
  }
  Result<NewFile> nf =
      add_file(std::move(*file), flags & (O_ACCMODE | O_NONBLOCK), open_shape(flags), /*keep_byte=*/true);
  if (!nf.ok()) {
    rep->rc = -nf.error();
    return;
  }
  prove(ch.mm.get(), nf->record->handle);
  rep->handle = nf->record->handle;
  rep->bits = nf->record->bits;
  rep->flags = nf->record->accmode;
  *send_fd = nf->client_fd;
}

void Server::serve_prove(Channel& ch, int fd, Reply* rep) {
  if (fd < 0) {
    rep->rc = -EBADF;
    return;
  }
  std::shared_ptr<FileRecord> rec = find_by_fd(fd);
  if (!rec) {
    rep->rc = -ENOENT;
    return;
  }
  prove(ch.mm.get(), rec->handle);
  rep->handle = rec->handle;
  rep->bits = rec->bits;
  rep->flags = rec->accmode;
}

std::shared_ptr<uapi::OpenFile> Server::proven_file(Channel& ch, std::uint64_t handle, Reply* rep) {
  if (handle == ch.cached_handle) {
    if (std::shared_ptr<FileRecord> rec = ch.cached.lock()) return rec->file;
  }
  lockdep::MutexGuard g(mu_);
  auto it = files_.find(handle);
  if (it == files_.end()) {
    rep->rc = -EBADF;
    return nullptr;
  }
  auto p = processes_.find(ch.mm.get());
  if (p == processes_.end() || !p->second.proven.count(handle)) {
    rep->rc = shared::kNeedProof;
    return nullptr;
  }
  ch.cached_handle = handle;
  ch.cached = it->second;
  return it->second->file;
}

void Server::serve_call(Channel& ch, const Request& req, Reply* rep) {
  std::shared_ptr<uapi::OpenFile> file = proven_file(ch, req.handle, rep);
  if (!file) return;
  Call call;
  call.ch = &ch;
  t_call = &call;
  // The argument's first bytes, when the client sent them (docs/shared.md#inline).
  unsigned char bytes[shared::kInlineBytes];
  Mm::ArgWindow window;
  const bool windowed = req.op == Op::kIoctl && req.inline_len > 0 && req.inline_len <= sizeof bytes;
  if (windowed) {
    std::memcpy(bytes, req.inline_bytes, req.inline_len);
    window.mm = ch.mm.get();
    window.uaddr = req.arg;
    window.bytes = bytes;
    window.len = req.inline_len;
    window.writable = req.inline_flags & shared::kInlineWritable;
  }
  {
    const Mm::CurrentScope scope(*ch.mm);
    const Mm::ArgWindowScope window_scope(window);
    fail_nth_set(req.fail_nth);
    switch (req.op) {
      case Op::kIoctl:
        rep->rc = file->ioctl(req.cmd, req.arg);
        break;
      case Op::kRead:
        rep->rc = file->read(req.arg, req.count);
        break;
      default:
        rep->rc = file->write(req.arg, req.count);
        break;
    }
    rep->fail_nth = fail_nth_get();
    rep->drain = call.drain;
    fail_nth_set(0);
    // Within the caller's scope: this may be the file's last reference.
    file.reset();
  }
  t_call = nullptr;
  if (window.dirty_lo < window.dirty_hi) {
    rep->out_off = static_cast<std::uint32_t>(window.dirty_lo);
    rep->out_len = static_cast<std::uint32_t>(window.dirty_hi - window.dirty_lo);
    std::memcpy(rep->out_bytes, bytes + window.dirty_lo, rep->out_len);
  }
}

void Server::serve_sync(std::uint64_t handle) {
  std::shared_ptr<FileRecord> rec;
  {
    lockdep::MutexGuard g(mu_);
    auto it = files_.find(handle);
    if (it != files_.end()) rec = it->second;
  }
  if (!rec) {
    // Released already, or being released by the event loop right now: wait for that to finish.
    lockdep::MutexGuard serial(release_mu_);
    return;
  }
  pollfd p{rec->end->fd, 0, 0};
  const bool last_closed = ::poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP));
  rec.reset();
  if (last_closed) release(handle);
}

// ---- mmap of a served iommufd (docs/shared.md#mmap) ----

Server::Mapper* Server::mapper_locked(const RefPtr<Mm>& mm) {
  Mapper* m;
  try {
    m = &mappers_[mm.get()];
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
  if (!m->mm) {
    m->mm = mm;
    epoll_event ev{};
    ev.events = EPOLLIN;  // a pidfd is readable once its process has exited
    ev.data.u64 = kMapperTag | reinterpret_cast<std::uintptr_t>(mm.get());
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, mm->pidfd(), &ev);
  }
  return m;
}

void Server::serve_mmap(Channel& ch, const Request& req, Reply* rep, int* send_fd) {
  std::shared_ptr<uapi::OpenFile> file = proven_file(ch, req.handle, rep);
  if (!file) return;
  auto* iommufd = dynamic_cast<uapi::IommufdFile*>(file.get());
  if (!iommufd) {
    rep->rc = -ENODEV;
    return;
  }
  Result<Context::MmapRegion> region = iommufd->context().get_mmap(req.cmd, req.count);
  if (!region.ok()) {
    rep->rc = -region.error();
    return;
  }
  // The region's user (the vma's) is the caller's from here; every failure gives it back.
  const int memfd = ::fcntl(region->memfd, F_DUPFD_CLOEXEC, 0);
  int err = memfd < 0 ? errno : 0;
  std::uint64_t id = 0;
  if (memfd >= 0) {
    lockdep::MutexGuard g(mu_);
    Mapper* m = mapper_locked(ch.mm);
    try {
      if (!m) throw std::bad_alloc();
      id = next_mapping_++;
      mappings_.emplace(id, Mapping{file, region->owner, 1});
      try {
        ++m->users[id];
      } catch (...) {
        mappings_.erase(id);
        throw;
      }
    } catch (const std::bad_alloc&) {
      err = ENOMEM;
      if (m && m->users.empty()) forget_mapper_locked(ch.mm.get());
    }
  }
  if (err != 0) {
    if (memfd >= 0) ::close(memfd);
    region->owner->drop_user();
    rep->rc = -err;
    return;
  }
  rep->handle = id;
  *send_fd = memfd;
}

void Server::serve_map_users(Channel& ch, std::uint64_t id, std::int64_t delta, Reply* rep) {
  std::shared_ptr<uapi::OpenFile> last;
  {
    lockdep::MutexGuard g(mu_);
    auto it = mappings_.find(id);
    if (it == mappings_.end()) {
      rep->rc = -ENOENT;  // gone already (a fork's child asks after its parent has unmapped the last piece)
      return;
    }
    Mapping& mapping = it->second;
    Mapper* m = mapper_locked(ch.mm);
    std::uint64_t* mine = nullptr;
    try {
      if (m) mine = &m->users[id];
    } catch (const std::bad_alloc&) {
    }
    const std::uint64_t n = static_cast<std::uint64_t>(delta < 0 ? -delta : delta);
    if (!mine) {
      rep->rc = -ENOMEM;
    } else if (delta < 0 && *mine < n) {
      rep->rc = -EINVAL;
    } else if (delta > 0) {
      for (std::uint64_t i = 0; i < n; ++i) mapping.owner->add_user();
      *mine += n;
      mapping.users += n;
    } else {
      for (std::uint64_t i = 0; i < n; ++i) mapping.owner->drop_user();
      *mine -= n;
      mapping.users -= n;
      if (mapping.users == 0) {
        last = std::move(mapping.file);
        mappings_.erase(it);
      }
    }
    if (mine && *mine == 0) m->users.erase(id);
    if (m && m->users.empty()) forget_mapper_locked(ch.mm.get());
  }
  // With no lock held: the last reference of a context closed everywhere tears it down here.
  last.reset();
}

void Server::forget_mapper_locked(Mm* mm) {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, mm->pidfd(), nullptr);
  mappers_.erase(mm);
}

void Server::drop_mapper_locked(Mm* mm, bool exited, std::vector<std::shared_ptr<uapi::OpenFile>>* files) {
  auto it = mappers_.find(mm);
  // An exit reported for an address another process's record has taken since is not that process's.
  if (it == mappers_.end() || (exited && !it->second.mm->exited())) return;
  for (const auto& [id, n] : it->second.users) {
    auto m = mappings_.find(id);
    if (m == mappings_.end()) continue;
    for (std::uint64_t i = 0; i < n; ++i) m->second.owner->drop_user();
    m->second.users -= n;
    if (m->second.users == 0) {
      files->push_back(std::move(m->second.file));
      mappings_.erase(m);
    }
  }
  forget_mapper_locked(mm);
}

void Server::drop_mapper(Mm* mm, bool exited) {
  std::vector<std::shared_ptr<uapi::OpenFile>> files;
  {
    lockdep::MutexGuard g(mu_);
    try {
      files.reserve(mappings_.size());
    } catch (const std::bad_alloc&) {
      return;  // kept until the next exit or exec of it: unreachable in practice
    }
    drop_mapper_locked(mm, exited, &files);
  }
  files.clear();
}

namespace {

// The two fds of a new served file: the client's, and the end the server keeps. -errno on failure.
struct Ends {
  int client = -1;
  int keep = -1;
};

Result<Ends> make_ends(Server::Shape shape, bool nonblock) {
  using Shape = Server::Shape;
  Ends e;
  if (shape == Shape::kSocket || shape == Shape::kSocketQueue) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Status::error(errno);
    e = {sv[0], sv[1]};
    if (shape == Shape::kSocketQueue) {
      // The client's end never polls writable: its send buffer, made as small as it goes, is filled with
      // bytes the server never reads (a unix socket is writable while under a quarter of it is in use).
      const int one = 1;
      ::setsockopt(e.client, SOL_SOCKET, SO_SNDBUF, &one, sizeof one);
      char fill[256] = {};
      while (::send(e.client, fill, sizeof fill, MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
      }
    }
  } else {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return Status::error(errno);
    const bool client_reads = shape != Shape::kPipeWrite;
    e = {p[client_reads ? 0 : 1], p[client_reads ? 1 : 0]};
    if (shape == Shape::kFifo || shape == Shape::kFifoRead || shape == Shape::kFifoWrite) {
      // A FIFO open of the pipe, through the end it shares a direction with: the only pipe file that can
      // be both read and written, and an open() file as the kernel's /dev/iommu is (O_LARGEFILE).
      char path[40];
      std::snprintf(path, sizeof path, "/proc/self/fd/%d", e.client);
      const int mode = shape == Shape::kFifo ? O_RDWR : shape == Shape::kFifoRead ? O_RDONLY : O_WRONLY;
      const int fifo = ::open(path, mode | O_CLOEXEC);
      const int err = errno;
      ::close(e.client);
      e.client = fifo;
      if (fifo < 0) {
        ::close(e.keep);
        return Status::error(err == ENOENT ? ENODEV : err);
      }
    }
  }
  ::fcntl(e.keep, F_SETFL, O_NONBLOCK);
  if (nonblock) ::fcntl(e.client, F_SETFL, O_NONBLOCK);
  return e;
}

}  // namespace

Result<Server::NewFile> Server::add_file(std::shared_ptr<uapi::OpenFile> file, int open_flags, Shape shape,
                                         bool keep_byte) {
  const Ends ends = TRY(make_ends(shape, open_flags & O_NONBLOCK));
  if (keep_byte && shape != Shape::kPipeWrite && shape != Shape::kFifoWrite) {
    const char b = 0;
    (void)!::write(ends.keep, &b, 1);
  }
  // Keyed by the client's file, which for a socket is an inode of its own.
  struct stat st {};
  ::fstat(ends.client, &st);
  std::shared_ptr<FileRecord> rec;
  try {
    rec = std::make_shared<FileRecord>();
    rec->end = std::make_shared<PipeEnd>(ends.keep);
  } catch (const std::bad_alloc&) {
    if (!rec || !rec->end) ::close(ends.keep);
    ::close(ends.client);
    return Status::error(ENOMEM);
  }
  rec->bits = file_bits(*file);
  rec->file = std::move(file);
  rec->inode = {st.st_dev, st.st_ino};
  rec->accmode = open_flags & O_ACCMODE;
  try {
    lockdep::MutexGuard g(mu_);
    rec->handle = next_handle_++;
    files_.emplace(rec->handle, rec);
    try {
      by_inode_[rec->inode] = rec->handle;
    } catch (...) {
      files_.erase(rec->handle);
      throw;
    }
  } catch (const std::bad_alloc&) {
    ::close(ends.client);
    return Status::error(ENOMEM);
  }
  epoll_event ev{};
  ev.events = 0;  // EPOLLERR and EPOLLHUP are always reported
  ev.data.u64 = rec->handle;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, ends.keep, &ev) != 0) {
    const int e = errno;
    release(rec->handle);
    ::close(ends.client);
    return Status::error(e);
  }
  return NewFile{ends.client, std::move(rec)};
}

void Server::release(std::uint64_t handle) {
  lockdep::MutexGuard serial(release_mu_);
  std::shared_ptr<FileRecord> rec;
  {
    lockdep::MutexGuard g(mu_);
    auto it = files_.find(handle);
    if (it == files_.end()) return;
    rec = std::move(it->second);
    files_.erase(it);
    by_inode_.erase(rec->inode);
    for (auto& [mm, p] : processes_) p.proven.erase(handle);
  }
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, rec->end->fd, nullptr);
  rec.reset();  // maybe the file's last reference: its release
  wake();
}

std::shared_ptr<Server::FileRecord> Server::find_by_fd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) return nullptr;
  lockdep::MutexGuard g(mu_);
  auto it = by_inode_.find({st.st_dev, st.st_ino});
  if (it == by_inode_.end()) return nullptr;
  auto f = files_.find(it->second);
  return f == files_.end() ? nullptr : f->second;
}

Result<int> Server::install(std::shared_ptr<uapi::OpenFile> file) {
  return install_with_flags(std::move(file), O_RDWR | O_CLOEXEC);
}

Result<int> Server::install_with_flags(std::shared_ptr<uapi::OpenFile> file, int open_flags) {
  return install_file(std::move(file), open_flags, created_shape(open_flags), nullptr);
}

Result<int> Server::install_queue(std::shared_ptr<uapi::OpenFile> file, uapi::PollFace face,
                                  std::shared_ptr<QueueReadiness>* readiness) {
  // The kernel's queue file is O_RDWR either way. A fault queue polls EPOLLOUT always: a FIFO open both
  // ways, which the server empties itself. A vEVENT queue never polls writable: a socket whose send buffer
  // is full (docs/shared.md#poll).
  const Shape shape = face == uapi::PollFace::kReadWrite ? Shape::kFifo : Shape::kSocketQueue;
  return install_file(std::move(file), O_RDWR | O_CLOEXEC, shape, readiness);
}

Result<int> Server::install_file(std::shared_ptr<uapi::OpenFile> file, int open_flags, Shape shape,
                                 std::shared_ptr<QueueReadiness>* readiness) {
  const bool queue = readiness != nullptr;
  Call* call = t_call;
  if (!call || call->broken) return Status::error(EPIPE);
  std::shared_ptr<QueueReadiness> r;
  try {
    call->installed.reserve(call->installed.size() + 1);
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  NewFile nf =
      TRY(add_file(std::move(file), open_flags & (O_ACCMODE | O_NONBLOCK), shape, /*keep_byte=*/!queue));
  const std::uint64_t handle = nf.record->handle;
  if (queue) {
    try {
      if (shape == Shape::kSocketQueue)
        r = std::make_shared<SocketReadiness>(nf.record->end);
      else
        r = std::make_shared<PipeReadiness>(nf.record->end);
    } catch (const std::bad_alloc&) {
      ::close(nf.client_fd);
      release(handle);
      return Status::error(ENOMEM);
    }
  }
  Reply msg{Msg::kInstall, 0, 0, handle, nf.record->bits, open_flags & (O_CLOEXEC | O_ACCMODE), 0, 0};
  nf.record.reset();
  const long sent = shared::send_record(call->ch->sock, &msg, sizeof msg, nf.client_fd);
  ::close(nf.client_fd);
  Request ans{};
  int extra = -1;
  if (sent < 0 || shared::recv_record(call->ch->sock, &ans, sizeof ans, &extra) < 0 ||
      ans.op != Op::kInstalled) {
    if (extra >= 0) ::close(extra);
    call->broken = true;
    release(handle);
    return Status::error(EPIPE);
  }
  if (extra >= 0) ::close(extra);
  if (ans.rc < 0) {
    release(handle);
    return Status::error(static_cast<int>(-ans.rc));
  }
  const int fd = static_cast<int>(ans.rc);
  call->installed.emplace_back(fd, handle);
  prove(call->ch->mm.get(), handle);
  if (readiness) *readiness = std::move(r);
  return fd;
}

void Server::uninstall(int fd) {
  Call* call = t_call;
  if (!call) return;
  for (auto it = call->installed.begin(); it != call->installed.end(); ++it) {
    if (it->first != fd) continue;
    const std::uint64_t handle = it->second;
    call->installed.erase(it);
    if (!call->broken) {
      const Reply msg{Msg::kUninstall, 0, fd, handle, 0, 0, 0, 0};
      if (shared::send_record(call->ch->sock, &msg, sizeof msg, -1) < 0) call->broken = true;
    }
    release(handle);
    return;
  }
}

Result<int> Server::fetch(int fd) {
  Call* call = t_call;
  if (!call || fd < 0) return Status::error(EBADF);
  for (auto& [client, local] : call->fetched)
    if (client == fd) return local;
  if (call->broken) return Status::error(EBADF);
  try {
    call->fetched.reserve(call->fetched.size() + 1);
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  const Reply msg{Msg::kGetFd, 0, fd, 0, 0, 0, 0, 0};
  Request ans{};
  int got = -1;
  if (shared::send_record(call->ch->sock, &msg, sizeof msg, -1) < 0 ||
      shared::recv_record(call->ch->sock, &ans, sizeof ans, &got) < 0 || ans.op != Op::kFdGiven) {
    if (got >= 0) ::close(got);
    call->broken = true;
    return Status::error(EBADF);
  }
  if (got < 0) return Status::error(EBADF);
  call->fetched.emplace_back(fd, got);
  return got;
}

std::shared_ptr<uapi::OpenFile> Server::lookup(int fd) {
  Result<int> local = fetch(fd);
  if (!local.ok()) return nullptr;
  std::shared_ptr<FileRecord> rec = find_by_fd(*local);
  if (!rec) return nullptr;
  if (t_call) prove(t_call->ch->mm.get(), rec->handle);
  return rec->file;
}

Result<int> Server::user_file(int fd) { return fetch(fd); }

}  // namespace uiommufd::server
