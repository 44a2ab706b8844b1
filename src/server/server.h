// The shared-mode server: one engine for every process of a run (docs/shared.md).
//
// `uiommufd run --shared` forks; the parent becomes this server, the child runs the program with the
// preload in shared mode (src/runtime/shared_client.h), which opens /dev/iommu by asking the server. Each
// open file the server serves (an iommufd, and every fd the dispatcher hands out through its FdHost) is
// given to the client as a FIFO open of a pipe whose other end the server keeps, so the kernel carries the
// fd across fork, dup, SCM_RIGHTS and exec, and the server learns from its end when the last copy
// anywhere has closed: then it drops the file, as the kernel's release.
//
// Threads: the main thread (run()) accepts connections and watches the served files' ends, the program,
// and signals; every connection (a *channel*: one client thread) is served by a thread of its own, which
// runs each call into the dispatcher with the calling process's Mm current and the calling thread's
// fail-nth counter set on itself. The file table lock is never held across a call into the engine or a
// file's destruction.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "protocol.h"

#include "uiommufd/base/result.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/object.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::server {

// A fresh abstract socket address, "@uiommufd-<pid>-<random>".
std::string make_address();

class Server final : public uapi::FdHost {
 public:
  // Listens on `address` ("@name": the abstract name; anything else: a filesystem path, which must not
  // exist). The errno of socket / bind / listen (EADDRINUSE, ENAMETOOLONG, ...).
  static Result<std::unique_ptr<Server>> listen(const std::string& address);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves on the calling thread. SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT and SIGUSR2 must be blocked in
  // every thread of the process (the caller blocks them before it starts any thread or forks the program).
  // SIGUSR2 asks for a dump of the engine when dumps are on (dump/dumper.h), as does the program's exit.
  // With `child` > 0 (the program, a child of this process): serves until it has exited and no channel
  // and no served file is left, reaping every child meanwhile (the caller makes this process a
  // subreaper, so the program's orphans stay descendants), forwards SIGTERM and SIGHUP to it, ignores
  // SIGINT and SIGQUIT (a terminal sends those to the program too), and returns its wait status. With
  // `child` == 0: serves until SIGTERM or SIGINT and returns 0.
  int run(pid_t child);

  // How many files are served and channels open now (tests, diagnostics).
  std::size_t file_count() EXCLUDES(mu_);
  std::size_t channel_count() const { return channels_.load(std::memory_order_acquire); }

  // What the client's fd of a served file is (docs/shared.md#files). The server keeps the other end: the
  // write end of a pipe the client reads (EPOLLERR once no reader is left), the read end of one it only
  // writes, or the peer socket (EPOLLHUP once the client's end has closed everywhere).
  enum class Shape : std::uint8_t {
    kFifo,         // a FIFO open of a pipe, O_RDWR
    kFifoRead,     // the same, O_RDONLY
    kFifoWrite,    // the same, O_WRONLY
    kPipeRead,     // a pipe's read end (pipe2)
    kPipeWrite,    // a pipe's write end
    kSocket,       // one end of a unix stream socket pair
    kSocketQueue,  // the same, never writable (a vEVENT queue)
  };

  // uapi::FdHost: the dispatcher's fds go to the client whose call is being served on this thread, by a
  // message in the middle of the call (protocol.h, kInstall / kUninstall / kGetFd).
  Result<int> install(std::shared_ptr<uapi::OpenFile> file) override;
  Result<int> install_with_flags(std::shared_ptr<uapi::OpenFile> file, int open_flags) override;
  Result<int> install_queue(std::shared_ptr<uapi::OpenFile> file, uapi::PollFace face,
                            std::shared_ptr<QueueReadiness>* readiness) override;
  std::shared_ptr<uapi::OpenFile> lookup(int fd) override;
  void uninstall(int fd) override;
  Result<int> user_file(int fd) override;

 private:
  struct FileRecord;
  struct Channel;
  class SocketReadiness;
  struct Call;
  // A served file as the client sees it: the FIFO fd to pass, its handle, and its record.
  struct NewFile {
    int client_fd;
    std::shared_ptr<FileRecord> record;
  };
  // One client process: its address space and the handles it has proved it holds.
  struct Process {
    RefPtr<Mm> mm;
    unsigned channels = 0;
    std::unordered_set<std::uint64_t> proven;
  };

  // A region of a served iommufd that client processes map (docs/shared.md#mmap): the region's owner, with
  // one user per piece mapped anywhere (the kernel's vma references), and the file, which the mappings
  // keep alive as vmas keep theirs.
  struct Mapping {
    std::shared_ptr<uapi::OpenFile> file;
    Object* owner = nullptr;
    std::uint64_t users = 0;
  };
  // One client process's users of mappings, by mapping id. Its pidfd is watched while it holds any: a
  // process's exit drops them, as its vmas close.
  struct Mapper {
    RefPtr<Mm> mm;
    std::unordered_map<std::uint64_t, std::uint64_t> users;
  };

  // The call being served on this thread (null outside one).
  static thread_local Call* t_call;

  Server(int listen_fd, int epoll_fd, int wake_fd, std::string address);

  void accept_one();
  void serve(int sock, pid_t pid);
  void serve_open(Channel& ch, const shared::Request& req, shared::Reply* rep, int* send_fd);
  void serve_prove(Channel& ch, int fd, shared::Reply* rep);
  void serve_call(Channel& ch, const shared::Request& req, shared::Reply* rep);
  void serve_sync(std::uint64_t handle);
  // The served file `handle`, if the channel's process has proved it holds it; else rep->rc says why.
  std::shared_ptr<uapi::OpenFile> proven_file(Channel& ch, std::uint64_t handle, shared::Reply* rep)
      EXCLUDES(mu_);
  void serve_mmap(Channel& ch, const shared::Request& req, shared::Reply* rep, int* send_fd) EXCLUDES(mu_);
  void serve_map_users(Channel& ch, std::uint64_t id, std::int64_t delta, shared::Reply* rep) EXCLUDES(mu_);
  // Drops every user `mm` holds: at its exec, or (`exited`) at its exit, which the epoll loop reports by
  // address only (nothing is done unless the record there is of an exited process). The files whose last
  // mapping went are handed to *files, for the caller to let go of with no lock held.
  void drop_mapper_locked(Mm* mm, bool exited, std::vector<std::shared_ptr<uapi::OpenFile>>* files)
      REQUIRES(mu_);
  // The record of `mm`'s users, made (and its pidfd watched) on first use; null when it cannot be made.
  Mapper* mapper_locked(const RefPtr<Mm>& mm) REQUIRES(mu_);
  // Stops watching `mm` and forgets its record (which holds no user any more, or whose users were dropped).
  void forget_mapper_locked(Mm* mm) REQUIRES(mu_);
  void drop_mapper(Mm* mm, bool exited) EXCLUDES(mu_);

  // Makes the kernel objects of a new served file (`shape`; O_NONBLOCK from `open_flags`, whose access mode
  // is the one the client checks) and its record, and starts watching the server's end. `keep_byte`: one
  // byte stays queued for the client, so that its fd polls readable always (a file without a poll method,
  // docs/shared.md#poll).
  Result<NewFile> add_file(std::shared_ptr<uapi::OpenFile> file, int open_flags, Shape shape, bool keep_byte)
      EXCLUDES(mu_);
  // Gives the client of the call on this thread a new file. `readiness`: for a queue (null otherwise).
  Result<int> install_file(std::shared_ptr<uapi::OpenFile> file, int open_flags, Shape shape,
                           std::shared_ptr<QueueReadiness>* readiness);
  // Stops serving `handle` and drops the file (maybe its last reference: its release). Idempotent.
  void release(std::uint64_t handle) EXCLUDES(mu_);
  std::shared_ptr<FileRecord> find_by_fd(int fd) EXCLUDES(mu_);
  void prove(Mm* process, std::uint64_t handle) EXCLUDES(mu_);
  // The caller's fd `fd`, fetched once per call (kGetFd) and closed at the call's end.
  Result<int> fetch(int fd);
  void wake();

  const int listen_fd_;
  const int epoll_fd_;
  const int wake_fd_;  // an eventfd: a channel ended or a file was released
  const std::string address_;

  lockdep::Mutex mu_{"server.files"};
  // Held across a whole release (taking the record out and dropping it, which tears the file down), so that
  // a close's sync that finds the record already gone waits for the teardown in progress instead of
  // answering before it: the kernel's close returns after release(). Outside mu_.
  lockdep::Mutex release_mu_{"server.release"};
  std::uint64_t next_handle_ GUARDED_BY(mu_) = 1;
  std::unordered_map<std::uint64_t, std::shared_ptr<FileRecord>> files_ GUARDED_BY(mu_);
  // (st_dev, st_ino) of each served file's pipe, to the handle.
  std::map<std::pair<dev_t, ino_t>, std::uint64_t> by_inode_ GUARDED_BY(mu_);
  // Keyed by the process's Mm, which is one object per live process.
  std::unordered_map<Mm*, Process> processes_ GUARDED_BY(mu_);
  std::uint64_t next_mapping_ GUARDED_BY(mu_) = 1;
  std::unordered_map<std::uint64_t, Mapping> mappings_ GUARDED_BY(mu_);
  std::unordered_map<Mm*, Mapper> mappers_ GUARDED_BY(mu_);
  std::atomic<std::size_t> channels_{0};
  std::atomic<pid_t> program_{0};  // run()'s child: its exit is the run's end for the dump at exit
  // Channel threads not yet past their last use of this object (they are detached): the destructor waits
  // for 0, and each thread's final decrement (release) orders its last wake() before the close of the fd.
  std::atomic<std::size_t> threads_{0};
};

}  // namespace uiommufd::server
