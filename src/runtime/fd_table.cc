#include "fd_table.h"

#include <cerrno>
#include <new>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/single_threaded.h>

#include "real_calls.h"

#include "uiommufd/base/fork.h"
#include "uiommufd/base/try.h"

namespace uiommufd::runtime {

std::atomic<std::uint64_t> FdTable::bits_[FdTable::kBitmapFds / 64];
std::atomic<std::uint32_t> FdTable::high_count_{0};
std::atomic<FdTable::Slot*> FdTable::chunks_[FdTable::kBitmapFds / FdTable::kChunkSlots];

namespace {
// The cell this thread borrows (see acquire_file), and whether its last reference went meanwhile.
// Initial-exec: read by the close path, which a signal handler may run, so no lazy TLS allocation.
__attribute__((tls_model("initial-exec"))) constinit thread_local FileCell* t_borrowed = nullptr;
__attribute__((tls_model("initial-exec"))) constinit thread_local bool t_borrowed_orphaned = false;
}  // namespace

void FileRef::recycle(FileCell* cell) { FdTable::get().recycle(cell); }

void FileRef::end_borrow(FileCell* cell) {
  t_borrowed = nullptr;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (t_borrowed_orphaned) {
    t_borrowed_orphaned = false;
    FdTable::get().recycle_now(cell);
  }
}

FdTable& FdTable::get() {
  static FdTable* table = [] {
    auto* t = new FdTable;
    set_fork_handlers(ForkLevel::kFdTable, {before_fork, after_fork_parent, after_fork_child});
    return t;
  }();
  return *table;
}

// TSA cannot follow a lock taken in one fork handler and released in another.
void FdTable::before_fork() NO_THREAD_SAFETY_ANALYSIS { get().mu_.lock(); }
void FdTable::after_fork_parent() NO_THREAD_SAFETY_ANALYSIS { get().mu_.unlock(); }
// The child's only thread is the copy of the forking one, which holds the lock there too: it releases
// it. The table belongs to no thread, and the child's table is a copy of the parent's, OpenFiles
// included: each context the parent had open is the child's own, independent, working copy from here on
// (the engine's memory was copied with the rest, at rest: see engine_gate.h).
// FIXME: the kernel shares one open file between parent and child; shared state across processes needs
// a server process and is not done.
void FdTable::after_fork_child() NO_THREAD_SAFETY_ANALYSIS {
  FdTable& t = get();
  t.refresh_queue_fds_locked();
  t.mu_.unlock();
}

void FdTable::refresh_queue_fds_locked() {
  mu_.assert_held();
  for (auto& [fd, node] : nodes_) {
    QueueFdReadiness* r = node->readiness.get();
    if (!r || r->fds_.empty() || r->fds_.front() != fd) continue;  // each file once
    Result<int> fresh = uapi::make_poll_fd(r->face_);
    if (!fresh.ok()) continue;  // left shared with the parent: readiness may then be wrong, records not
    uapi::set_poll_fd_readable(*fresh, r->face_, r->readable_);
    for (int f : r->fds_) {
      const int fd_flags = real::fcntl(f, F_GETFD, 0);
      const int fl_flags = real::fcntl(f, F_GETFL, 0);
      if (real::dup3(*fresh, f, (fd_flags >= 0 && (fd_flags & FD_CLOEXEC)) ? O_CLOEXEC : 0) < 0) continue;
      if (fl_flags >= 0) (void)real::fcntl(f, F_SETFL, static_cast<unsigned long>(fl_flags));
    }
    real::close(*fresh);
  }
}

void QueueFdReadiness::set_readable(bool readable) {
  FdTable& t = FdTable::get();
  TableGuard g(t.mu_);
  if (readable == readable_) return;  // the queue's first signal may repeat the state
  readable_ = readable;
  if (!fds_.empty()) uapi::set_poll_fd_readable(fds_.front(), face_, readable);
}

void FdTable::forget_fd_locked(Node* node, int fd) {
  if (!node || !node->readiness) return;
  std::vector<int>& fds = node->readiness->fds_;
  for (auto it = fds.begin(); it != fds.end(); ++it) {
    if (*it == fd) {
      fds.erase(it);
      return;
    }
  }
}

void FdTable::mark_locked(int fd, bool ours) {
  mu_.assert_held();
  if (static_cast<unsigned>(fd) < kBitmapFds) {
    const std::uint64_t bit = std::uint64_t{1} << (fd % 64);
    if (ours)
      bits_[fd / 64].fetch_or(bit, std::memory_order_relaxed);
    else
      bits_[fd / 64].fetch_and(~bit, std::memory_order_relaxed);
  }
}

std::shared_ptr<Node> FdTable::find(int fd) {
  TableGuard g(mu_);
  auto it = nodes_.find(fd);
  return it == nodes_.end() ? nullptr : it->second;
}

FileCell* FdTable::new_cell_locked(std::shared_ptr<uapi::OpenFile> file) {
  mu_.assert_held();
  FileCell* cell = free_cells_;
  if (cell) {
    free_cells_ = cell->next_free;
  } else {
    cell = new FileCell;
  }
  cell->file = std::move(file);
  cell->refs.store(1, std::memory_order_relaxed);  // the table's; published by the slot's release store
  return cell;
}

FileCell* FdTable::publish_locked(int fd, const Node* node) {
  mu_.assert_held();
  if (fd < 0 || static_cast<unsigned>(fd) >= kBitmapFds) return nullptr;
  std::atomic<Slot*>& chunk_ptr = chunks_[fd / kChunkSlots];
  Slot* chunk = chunk_ptr.load(std::memory_order_relaxed);
  const bool file = node && node->kind == Node::Kind::kFile && node->file;
  if (!chunk) {
    if (!file) return nullptr;
    chunk = new Slot[kChunkSlots]();
    chunk_ptr.store(chunk, std::memory_order_release);
  }
  FileCell* cell = file ? new_cell_locked(node->file) : nullptr;
  return chunk[fd % kChunkSlots].exchange(cell, std::memory_order_acq_rel);
}

void FdTable::recycle(FileCell* cell) {
  if (cell == t_borrowed) {
    t_borrowed_orphaned = true;
    return;
  }
  recycle_now(cell);
}

void FdTable::recycle_now(FileCell* cell) {
  // No reader can take a reference from 0, and the cell is not on the free list yet: the file is ours.
  std::shared_ptr<uapi::OpenFile> file = std::move(cell->file);
  {
    TableGuard g(mu_);
    cell->next_free = free_cells_;
    free_cells_ = cell;
  }
  const int saved = errno;
  file.reset();
  errno = saved;
}

FileRef FdTable::acquire_file(int fd) {
  if (fd < 0) return FileRef();
  if (static_cast<unsigned>(fd) >= kBitmapFds) {
    std::shared_ptr<Node> node = find(fd);
    return node && node->kind == Node::Kind::kFile ? FileRef(node->file) : FileRef();
  }
  Slot* chunk = chunks_[fd / kChunkSlots].load(std::memory_order_acquire);
  if (!chunk) return FileRef();
  Slot& slot = chunk[fd % kChunkSlots];
  if (__libc_single_threaded && t_borrowed == nullptr) {
    FileCell* cell = slot.load(std::memory_order_acquire);
    if (!cell) return FileRef();
    t_borrowed = cell;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    // A signal handler may have closed the fd between the load and the mark; from the mark on, a close
    // cannot recycle the cell under us.
    if (slot.load(std::memory_order_relaxed) == cell && cell->refs.load(std::memory_order_relaxed) != 0)
      return FileRef(cell, /*borrowed=*/true);
    // Closed in that window: unmark, recycling the cell if its last reference went after the mark.
    FileRef::end_borrow(cell);
  }
  for (;;) {
    FileCell* cell = slot.load(std::memory_order_acquire);
    if (!cell) return FileRef();
    std::uint32_t refs = cell->refs.load(std::memory_order_relaxed);
    while (refs != 0 &&
           !cell->refs.compare_exchange_weak(refs, refs + 1, std::memory_order_acquire, std::memory_order_relaxed)) {
    }
    // 0: the cell was unpublished and its last reference dropped meanwhile; the slot has changed.
    if (refs == 0) continue;
    // The cell may have been recycled for another fd between the two loads; the reference counts only if
    // this fd still stands for it.
    if (slot.load(std::memory_order_acquire) == cell) return FileRef(cell);
    put(cell);
  }
}

std::shared_ptr<Node> FdTable::set(int fd, std::shared_ptr<Node> node) {
  std::shared_ptr<Node> old;
  FileCell* old_cell = nullptr;
  {
    TableGuard g(mu_);
    // The two steps that allocate come first, each leaving the table as it was when it throws: the map
    // entry (taken back if publishing fails), then the slot's cell.
    bool inserted = false;
    auto it = nodes_.find(fd);
    if (it == nodes_.end() && node) {
      it = nodes_.emplace(fd, nullptr).first;
      inserted = true;
    }
    try {
      // Room for the fd in its queue's list first (the push below then cannot throw).
      if (node && node->readiness) node->readiness->fds_.reserve(node->readiness->fds_.size() + 1);
      old_cell = publish_locked(fd, node.get());
    } catch (...) {
      if (inserted) nodes_.erase(it);
      throw;
    }
    if (it != nodes_.end()) forget_fd_locked(it->second.get(), fd);
    if (node && node->readiness) node->readiness->fds_.push_back(fd);
    if (inserted) {
      it->second = std::move(node);
      if (static_cast<unsigned>(fd) >= kBitmapFds) high_count_.fetch_add(1, std::memory_order_relaxed);
    } else if (it != nodes_.end()) {
      old = std::move(it->second);
      if (!node) {
        nodes_.erase(it);
        if (static_cast<unsigned>(fd) >= kBitmapFds) high_count_.fetch_sub(1, std::memory_order_relaxed);
      } else {
        it->second = std::move(node);
      }
    }
    mark_locked(fd, nodes_.count(fd) != 0);
  }
  if (old_cell) put(old_cell);
  return old;
}

std::shared_ptr<Node> FdTable::share(int from, int fd) {
  std::shared_ptr<Node> node = find(from);
  return set(fd, std::move(node));
}

std::shared_ptr<Node> FdTable::take_one(unsigned first, unsigned last) {
  std::shared_ptr<Node> out;
  FileCell* cell = nullptr;
  {
    TableGuard g(mu_);
    for (auto it = nodes_.begin(); it != nodes_.end(); ++it) {
      const unsigned fd = static_cast<unsigned>(it->first);
      if (fd < first || fd > last) continue;
      out = std::move(it->second);
      forget_fd_locked(out.get(), it->first);
      if (fd >= kBitmapFds) high_count_.fetch_sub(1, std::memory_order_relaxed);
      cell = publish_locked(it->first, nullptr);
      mark_locked(it->first, false);
      nodes_.erase(it);
      break;
    }
  }
  if (cell) put(cell);
  return out;
}

std::vector<std::shared_ptr<Node>> FdTable::take_range(unsigned first, unsigned last) {
  std::vector<std::shared_ptr<Node>> out;
  while (std::shared_ptr<Node> n = take_one(first, last)) out.push_back(std::move(n));
  return out;
}

Result<int> FdTable::install(std::shared_ptr<uapi::OpenFile> file) {
  return install_with_flags(std::move(file), O_RDWR | O_CLOEXEC);
}

Result<int> FdTable::install_with_flags(std::shared_ptr<uapi::OpenFile> file, int open_flags) {
  const int fd = TRY(uapi::make_standin_fd(open_flags));
  return install_node(fd, std::move(file), nullptr, open_flags & O_ACCMODE);
}

Result<int> FdTable::install_queue(std::shared_ptr<uapi::OpenFile> file, uapi::PollFace face,
                                   std::shared_ptr<QueueReadiness>* readiness) {
  std::shared_ptr<QueueFdReadiness> r;
  try {
    r = std::make_shared<QueueFdReadiness>(face);
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  const int fd = TRY(uapi::make_poll_fd(face));
  TRY(install_node(fd, std::move(file), r, O_RDWR));
  *readiness = std::move(r);
  return fd;
}

Result<int> FdTable::install_node(int fd, std::shared_ptr<uapi::OpenFile> file,
                                  std::shared_ptr<QueueFdReadiness> readiness, int accmode) {
  try {
    auto node = std::make_shared<Node>();
    node->kind = Node::Kind::kFile;
    node->accmode = accmode;
    node->file = std::move(file);
    node->readiness = std::move(readiness);
    set(fd, std::move(node));
  } catch (const std::bad_alloc&) {
    real::close(fd);
    return Status::error(ENOMEM);
  }
  return fd;
}

std::shared_ptr<uapi::OpenFile> FdTable::lookup(int fd) {
  if (!maybe_ours(fd)) return nullptr;
  FileRef ref = acquire_file(fd);
  if (!ref) return nullptr;
  return ref.cell_ ? ref.cell_->file : ref.slow_;
}

void FdTable::uninstall(int fd) {
  std::shared_ptr<Node> old = set(fd, nullptr);
  const int saved = errno;
  real::close(fd);
  old.reset();
  errno = saved;
}

}  // namespace uiommufd::runtime
