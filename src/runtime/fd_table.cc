#include "fd_table.h"

#include <cerrno>

#include <fcntl.h>
#include <sys/eventfd.h>

#include "real_calls.h"

namespace uiommufd::runtime {

std::atomic<std::uint64_t> FdTable::bits_[FdTable::kBitmapFds / 64];
std::atomic<std::uint32_t> FdTable::high_count_{0};

FdTable& FdTable::get() {
  static FdTable* table = [] {
    auto* t = new FdTable;
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    return t;
  }();
  return *table;
}

// TSA cannot follow a lock taken in one fork handler and released in another.
void FdTable::before_fork() NO_THREAD_SAFETY_ANALYSIS { get().mu_.lock(); }
void FdTable::after_fork_parent() NO_THREAD_SAFETY_ANALYSIS { get().mu_.unlock(); }
// The child's table is a copy of the parent's, OpenFiles included: each context the parent had open is
// the child's own, independent, working copy from here on (the engine's memory was copied with the rest).
// FIXME: the kernel shares one open file between parent and child; shared state across processes needs
// a server process and is not done.
void FdTable::after_fork_child() { get().mu_.reinit_in_child(); }

void FdTable::mark_locked(int fd, bool ours) {
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

std::shared_ptr<Node> FdTable::set(int fd, std::shared_ptr<Node> node) {
  TableGuard g(mu_);
  std::shared_ptr<Node> old;
  auto it = nodes_.find(fd);
  if (it != nodes_.end()) {
    old = std::move(it->second);
    if (!node) {
      nodes_.erase(it);
      if (static_cast<unsigned>(fd) >= kBitmapFds) high_count_.fetch_sub(1, std::memory_order_relaxed);
    } else {
      it->second = std::move(node);
    }
  } else if (node) {
    nodes_.emplace(fd, std::move(node));
    if (static_cast<unsigned>(fd) >= kBitmapFds) high_count_.fetch_add(1, std::memory_order_relaxed);
  }
  mark_locked(fd, nodes_.count(fd) != 0);
  return old;
}

std::shared_ptr<Node> FdTable::share(int from, int fd) {
  std::shared_ptr<Node> node = find(from);
  return set(fd, std::move(node));
}

std::vector<std::shared_ptr<Node>> FdTable::take_range(unsigned first, unsigned last) {
  std::vector<std::shared_ptr<Node>> out;
  TableGuard g(mu_);
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    const unsigned fd = static_cast<unsigned>(it->first);
    if (fd >= first && fd <= last) {
      out.push_back(std::move(it->second));
      if (fd >= kBitmapFds) high_count_.fetch_sub(1, std::memory_order_relaxed);
      mark_locked(it->first, false);
      it = nodes_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

Result<int> FdTable::install(std::shared_ptr<uapi::OpenFile> file) {
  const int fd = eventfd(0, EFD_CLOEXEC);
  if (fd < 0) return Status::error(errno);
  auto node = std::make_shared<Node>();
  node->kind = Node::Kind::kFile;
  node->accmode = O_RDWR;
  node->file = std::move(file);
  set(fd, std::move(node));
  return fd;
}

std::shared_ptr<uapi::OpenFile> FdTable::lookup(int fd) {
  if (!maybe_ours(fd)) return nullptr;
  std::shared_ptr<Node> node = find(fd);
  return node && node->kind == Node::Kind::kFile ? node->file : nullptr;
}

void FdTable::uninstall(int fd) {
  std::shared_ptr<Node> old = set(fd, nullptr);
  const int saved = errno;
  real::close(fd);
  old.reset();
  errno = saved;
}

}  // namespace uiommufd::runtime
