// The preload's fd table: which real fds stand for files we serve, and what each one is.
//
// Every virtual file sits behind a real kernel fd (a /dev/null open, an eventfd, or a directory), so fd
// numbers, close-on-exec, poll, dup and fork behave as the kernel makes them. The table maps such an fd
// to a Node, the analogue of the kernel's struct file: dup'ed fds share one Node (and so one file
// position and one OpenFile), and dropping the last reference to a Node drops its OpenFile, whose
// destructor tears the context down synchronously.
//
// Fast paths: a bitmap with one bit per fd below kBitmapFds, read with a relaxed load, answers "not ours"
// for every passthrough call without a lock. The map under the table lock is the authority. For ioctl,
// every fd below kBitmapFds that stands for a kFile node also has a slot pointing to a FileCell, a
// reference-counted holder of the node's OpenFile, so acquire_file() finds the file without the lock, the
// hash map or any shared_ptr traffic: one load, one compare-and-swap to take a reference, one re-check.
// Cells are type-stable (recycled through a free list, never freed), which is what makes taking a
// reference to a cell that is being unpublished safe: the re-check of the slot decides whether the
// reference is to the cell the fd stands for now. The last reference to a cell, whoever drops it (the
// table on close, or an ioctl in flight on another thread), drops the cell's OpenFile reference, as the
// kernel's last fput after fdget does.
//
// Thread safety: every member may be called from any thread. The table lock is never held across a call
// into the engine (an ioctl, an OpenFile destructor): callers take a Node out or copy its pointer, unlock,
// then use it. It is held across fork (base/fork.h, level kFdTable), so the child's copy is consistent.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <pthread.h>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/fork_lock_order.h"
#include "uiommufd/lockdep/lockdep_map.h"
#include "uiommufd/uapi/file.h"
#include "uiommufd/uapi/poll_fd.h"

namespace uiommufd::runtime {

class FdTable;

// The readiness of a queue file's real fd (uapi/poll_fd.h): the queue signals it, and it sets the fd's
// poll state through any fd that stands for the file now. The table keeps `fds` (under its lock) as fds
// come and go, so a closed fd number, which may already name another file, is never written to, and no
// private fd is kept per queue.
class QueueFdReadiness final : public QueueReadiness {
 public:
  explicit QueueFdReadiness(uapi::PollFace face) : face_(face) {}
  void set_readable(bool readable) override;

 private:
  friend class FdTable;
  const uapi::PollFace face_;
  // Under the table lock (FdTable::mu_, which the analysis cannot name from here).
  std::vector<int> fds_;
  bool readable_ = false;  // the last state signalled: a forked child rebuilds its fd with it
};

// One open of a virtual file (the kernel's struct file), shared by dup'ed fds.
struct Node {
  enum class Kind : std::uint8_t { kFile, kFailNth, kDebugfsDir };
  Kind kind = Kind::kFile;
  int accmode = 0;                       // O_RDONLY / O_WRONLY / O_RDWR as opened
  std::shared_ptr<uapi::OpenFile> file;  // kFile
  std::shared_ptr<QueueFdReadiness> readiness;  // kFile of a queue (install_queue())
  int pid = 0, tid = 0;                  // kFailNth: the process that opened it and the thread named
  std::string dir_path;                  // kDebugfsDir: the path it stands for, for openat below it
  std::atomic<std::int64_t> pos{0};      // kFailNth: file position of read()
};

// The table lock: a pthread mutex under the lock validator (class runtime.fd_table,
// lockdep/fork_lock_order.h), with the static analysis annotations. lock() and unlock() are public for the
// fork handlers, which take it in one handler and release it in another; everything else uses TableGuard.
class CAPABILITY("mutex") TableMutex {
 public:
  void lock() ACQUIRE() {
    lockdep::detail::Acquisition acq(map_, lockdep::detail::Read::kExclusive, {});
    pthread_mutex_lock(&mu_);
    acq_ = acq;
    owner_.store(pthread_self(), std::memory_order_relaxed);
  }
  void unlock() RELEASE() {
    owner_.store(pthread_t{}, std::memory_order_relaxed);
    lockdep::detail::Acquisition acq = std::exchange(acq_, {});
    acq.end();
    pthread_mutex_unlock(&mu_);
  }
  // Checks the holder it remembers, which works with the validator off or compiled out too. In a forked
  // child the holder is the forking thread's copy, whose pthread_self() is the forking thread's.
  void assert_held() const ASSERT_CAPABILITY(this) {
    UIOMMUFD_ASSERT(pthread_equal(owner_.load(std::memory_order_relaxed), pthread_self()));
  }

 private:
  pthread_mutex_t mu_ = PTHREAD_MUTEX_INITIALIZER;
  std::atomic<pthread_t> owner_{};
  lockdep::LockdepMap map_{lock_order::kFdTable};
  // The validator's record of the current hold; touched only by the holder.
  [[no_unique_address]] lockdep::detail::Acquisition acq_;
};

class SCOPED_CAPABILITY TableGuard {
 public:
  explicit TableGuard(TableMutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~TableGuard() RELEASE() { mu_.unlock(); }
  TableGuard(const TableGuard&) = delete;
  TableGuard& operator=(const TableGuard&) = delete;

 private:
  TableMutex& mu_;
};

// See the fast paths above. Internal to FdTable and FileRef.
struct FileCell {
  std::atomic<std::uint32_t> refs{0};      // 0: on the free list
  std::shared_ptr<uapi::OpenFile> file;    // written only while refs is 0
  FileCell* next_free = nullptr;           // under the table lock
};

class FdTable;

// A counted reference to the file behind an fd, taken by FdTable::acquire_file(); the file stays alive
// while it is held, even if the fd is closed meanwhile. Move-only.
class FileRef {
 public:
  FileRef() = default;
  FileRef(FileRef&& o) noexcept
      : cell_(std::exchange(o.cell_, nullptr)),
        slow_(std::move(o.slow_)),
        file_(std::exchange(o.file_, nullptr)),
        borrowed_(std::exchange(o.borrowed_, false)) {}
  FileRef& operator=(FileRef&&) = delete;
  FileRef(const FileRef&) = delete;
  ~FileRef() {
    if (!cell_) return;
    if (borrowed_) {
      end_borrow(cell_);
    } else if (cell_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      recycle(cell_);
    }
  }

  uapi::OpenFile* get() const { return file_; }
  uapi::OpenFile* operator->() const { return file_; }
  explicit operator bool() const { return file_ != nullptr; }
  // Whether the reference is borrowed (single-threaded process) rather than counted.
  bool borrowed() const { return borrowed_; }

 private:
  friend class FdTable;
  static void recycle(FileCell* cell);
  static void end_borrow(FileCell* cell);
  explicit FileRef(FileCell* cell, bool borrowed = false)
      : cell_(cell), file_(cell->file.get()), borrowed_(borrowed) {}
  explicit FileRef(std::shared_ptr<uapi::OpenFile> f) : slow_(std::move(f)), file_(slow_.get()) {}

  FileCell* cell_ = nullptr;                 // fds below kBitmapFds
  std::shared_ptr<uapi::OpenFile> slow_;     // fds above, found in the map under the lock
  uapi::OpenFile* file_ = nullptr;
  bool borrowed_ = false;  // no reference counted: see FdTable::acquire_file
};

class FdTable final : public uapi::FdHost {
 public:
  // The process's table: created on first use, never destroyed (fds may be closed during and after static
  // destruction). Sets its fork handlers (base/fork.h, level kFdTable).
  static FdTable& get();

  // False means fd is certainly not ours: one relaxed load for fds below kBitmapFds.
  static bool maybe_ours(int fd) {
    if (fd < 0) return false;
    if (static_cast<unsigned>(fd) < kBitmapFds)
      return (bits_[fd / 64].load(std::memory_order_relaxed) >> (fd % 64)) & 1;
    return high_count_.load(std::memory_order_relaxed) != 0;
  }

  std::shared_ptr<Node> find(int fd) EXCLUDES(mu_);
  // The file behind `fd` when it stands for a kFile node; empty otherwise. Lock-free for fds below
  // kBitmapFds (callers have asked maybe_ours() first).
  //
  // In a single-threaded process the reference is borrowed rather than counted, as the kernel's fdget
  // skips the count when the file table is not shared: no other thread can close the fd meanwhile. The one
  // closer left is a signal handler on this thread; the borrowed cell is marked in thread-local state, and
  // a last reference dropped while the mark is up (a close from the handler) leaves the recycling to the
  // borrower's FileRef. The engine starts no threads; a signal handler that starts one which closes the fd
  // during the call is not supported.
  FileRef acquire_file(int fd) EXCLUDES(mu_);
  // Makes `fd` stand for `node` (null: for nothing) and returns what it stood for before, for the caller
  // to drop after the table lock is released. Throws std::bad_alloc when `fd` is new to the table and its
  // entry cannot be allocated; the table is unchanged then. Setting null never allocates.
  std::shared_ptr<Node> set(int fd, std::shared_ptr<Node> node) EXCLUDES(mu_);
  // fd now shares what `from` stands for (dup); returns what fd stood for before (dup2 onto one of ours).
  std::shared_ptr<Node> share(int from, int fd) EXCLUDES(mu_);
  // Takes out every entry with first <= fd <= last.
  std::vector<std::shared_ptr<Node>> take_range(unsigned first, unsigned last) EXCLUDES(mu_);
  // Takes out one entry with first <= fd <= last (null: none left) without allocating, for close_range
  // and closefrom, which must not fail after the kernel has closed the fds. O(entries).
  std::shared_ptr<Node> take_one(unsigned first, unsigned last) EXCLUDES(mu_);

  // uapi::FdHost. install() puts the file behind a close-on-exec eventfd, as the kernel's anon-inode fds;
  // install_with_flags() behind uapi::make_standin_fd(open_flags); install_queue() behind the fd of its
  // PollFace (uapi/poll_fd.h).
  Result<int> install(std::shared_ptr<uapi::OpenFile> file) override EXCLUDES(mu_);
  Result<int> install_with_flags(std::shared_ptr<uapi::OpenFile> file, int open_flags) override EXCLUDES(mu_);
  Result<int> install_queue(std::shared_ptr<uapi::OpenFile> file, uapi::PollFace face,
                            std::shared_ptr<QueueReadiness>* readiness) override EXCLUDES(mu_);
  std::shared_ptr<uapi::OpenFile> lookup(int fd) override EXCLUDES(mu_);
  void uninstall(int fd) override EXCLUDES(mu_);

  static constexpr unsigned kBitmapFds = 1u << 20;

 private:
  FdTable() = default;
  friend class FileRef;
  friend class QueueFdReadiness;
  // `accmode`: O_RDONLY / O_WRONLY / O_RDWR, what read and write check.
  Result<int> install_node(int fd, std::shared_ptr<uapi::OpenFile> file,
                           std::shared_ptr<QueueFdReadiness> readiness, int accmode) EXCLUDES(mu_);
  // Keeps the fd lists of queue readiness in step when `fd` stops or starts standing for a node.
  static void forget_fd_locked(Node* node, int fd);
  // A forked child's queue fds get fresh kernel objects of their own, in the state its copy of each queue
  // last signalled: the parent's and the child's queues are separate from here on, and so must their
  // readiness be.
  void refresh_queue_fds_locked() REQUIRES(mu_);
  static constexpr unsigned kChunkSlots = 1u << 12;
  using Slot = std::atomic<FileCell*>;

  void mark_locked(int fd, bool ours) REQUIRES(mu_);
  // Points fd's slot at a new cell for `node`'s file (kFile), or at nothing; returns the cell it pointed
  // to, whose table reference the caller drops with put() after unlocking.
  FileCell* publish_locked(int fd, const Node* node) REQUIRES(mu_);
  FileCell* new_cell_locked(std::shared_ptr<uapi::OpenFile> file) REQUIRES(mu_);
  // Drops one reference; the last one recycles the cell and drops its file reference (maybe the last,
  // so never call it under the table lock).
  void put(FileCell* cell) EXCLUDES(mu_) {
    if (cell->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) recycle(cell);
  }
  // After the last reference to `cell` is gone: recycles it, or, while this thread borrows it, leaves that
  // to the borrower.
  void recycle(FileCell* cell) EXCLUDES(mu_);
  void recycle_now(FileCell* cell) EXCLUDES(mu_);
  static void before_fork();
  static void after_fork_parent();
  static void after_fork_child();

  TableMutex mu_;
  std::unordered_map<int, std::shared_ptr<Node>> nodes_ GUARDED_BY(mu_);
  FileCell* free_cells_ GUARDED_BY(mu_) = nullptr;

  // Written under mu_, read without it.
  static std::atomic<std::uint64_t> bits_[kBitmapFds / 64];
  static std::atomic<std::uint32_t> high_count_;
  // Chunks of kChunkSlots slots, made on first use under mu_ and never freed; the slots are written under
  // mu_ (release) and read without it (acquire).
  static std::atomic<Slot*> chunks_[kBitmapFds / kChunkSlots];
};

}  // namespace uiommufd::runtime
