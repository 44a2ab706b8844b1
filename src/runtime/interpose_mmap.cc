// mmap() of an iommufd, and the munmap() that gives such a mapping back (docs/semantics.md#viommu-mmap).
//
// An object may offer a region of memory for mmap() of the iommufd (the mock vIOMMU's page); the kernel's
// iommufd_fops_mmap() maps it when the offset and length name the region exactly. Here the region's pages
// are a memfd of the object, which the real mmap() maps at the caller's address with the caller's
// protection. What the kernel keeps in the vma is kept in a table of pieces here: each piece holds a user of
// the region's owner (so IOMMU_DESTROY of a mapped vIOMMU is EBUSY, as the vma's reference makes it) and a
// reference to the iommufd's file (the vma holds the file, so closing the fd does not release the context
// while a mapping is left). munmap() splits pieces as the kernel splits vmas: each piece is one user.
//
// In shared mode (docs/shared.md#mmap) the region is the server's: the server passes its memfd, and the user
// a piece holds is one of the server's mapping (a message per split, unmap and fork instead of a count
// here); the server drops a process's users when it exits or execs.
//
// Every other mmap and munmap pays one relaxed load: munmap looks at the table only while it has pieces.
// The table's lock is taken only inside the engine gate, which fork closes, so no thread holds it across a
// fork. mremap() of such a mapping is not followed (the moved mapping keeps its user until the context goes).

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <map>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine_gate.h"
#include "fd_table.h"
#include "shared_client.h"

#include "uiommufd/base/page.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::runtime {
namespace {

using MmapFn = void* (*)(void*, size_t, int, int, int, off_t);
using MunmapFn = int (*)(void*, size_t);

template <typename Fn>
Fn next_fn(std::atomic<Fn>& slot, const char* name) {
  Fn f = slot.load(std::memory_order_acquire);
  if (!f) {
    f = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
    slot.store(f, std::memory_order_release);
  }
  return f;
}
std::atomic<MmapFn> g_mmap{nullptr};
std::atomic<MmapFn> g_mmap64{nullptr};
std::atomic<MunmapFn> g_munmap{nullptr};

// One mapped piece of a region.
struct Piece {
  std::uint64_t end;  // exclusive
  Object* owner;      // in-process: holds one user
  std::shared_ptr<uapi::OpenFile> file;
  std::uint64_t remote = 0;  // shared mode: the server's mapping, of which the piece holds one user
};

void add_user(const Piece& p) {
  if (p.remote)
    shared_client::map_users(p.remote, 1);
  else
    p.owner->add_user();
}
void drop_user(const Piece& p) {
  if (p.remote)
    shared_client::map_users(p.remote, -1);
  else
    p.owner->drop_user();
}

lockdep::LockClassKey g_pieces_key{"runtime.iommufd_mmaps"};
struct Table {
  lockdep::Mutex mu{g_pieces_key};
  std::map<std::uint64_t, Piece> pieces GUARDED_BY(mu);  // by start address
};
Table& table() {
  static Table* t = new Table;  // never destroyed: munmap may run during and after static destruction
  return *t;
}
std::atomic<std::size_t> g_piece_count{0};
// Set while this thread holds the table's lock: a munmap that malloc makes meanwhile (a heap being given
// back) goes straight to the kernel instead of waiting for the lock this thread holds.
thread_local bool t_in_table = false;
struct InTable {
  InTable() { t_in_table = true; }
  ~InTable() { t_in_table = false; }
};

int fail(int err) {
  errno = err;
  return -1;
}

// A forked child has a copy of every mapping, and so (the kernel's vma open) a user of each piece's owner.
// In-process the child's engine is a copy too, users included; in shared mode the child asks the server.
// The table is consistent here: its lock is taken only inside the engine gate, which fork closes.
void child_inherits_remote_pieces() {
  if (g_piece_count.load(std::memory_order_relaxed) == 0) return;
  Table& t = table();
  lockdep::MutexGuard g(t.mu);
  const InTable in_table;
  for (const auto& [start, piece] : t.pieces)
    if (piece.remote) shared_client::map_users(piece.remote, 1);
}

// Set on the first mapping of a served region, so that the handler runs after shared_client's own (which
// gives the child channels of its own first): fork handlers of the child run in the order they were set.
void watch_forks() {
  static std::atomic<bool> set{false};
  if (!set.exchange(true)) pthread_atfork(nullptr, nullptr, child_inherits_remote_pieces);
}

void cut_pieces_locked(Table& t, std::uint64_t start, std::uint64_t end, std::vector<Piece>* released)
    REQUIRES(t.mu);
void drop_pieces(std::vector<Piece>& released);

void* do_mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset, std::atomic<MmapFn>& next,
              const char* name) {
  MmapFn real_mmap = next_fn(next, name);
  if ((flags & MAP_ANONYMOUS) || !FdTable::maybe_ours(fd)) [[likely]]
    return real_mmap(addr, length, prot, flags, fd, offset);
  const EngineGate::Scope gate;
  std::shared_ptr<Node> node = FdTable::get().find(fd);
  if (!node || node->kind != Node::Kind::kFile || node->file->kind() != uapi::OpenFile::Kind::kIommufd)
    return real_mmap(addr, length, prot, flags, fd, offset);
  // The checks of the mmap system call itself, then iommufd_fops_mmap()'s.
  if (length == 0 || (offset & (kPageSize - 1))) return (fail(EINVAL), MAP_FAILED);
  const int type = flags & MAP_TYPE;
  const bool shared = type == MAP_SHARED || type == MAP_SHARED_VALIDATE;
  if (shared && (prot & PROT_WRITE) && node->accmode == O_RDONLY) return (fail(EACCES), MAP_FAILED);
  if (!shared) return (fail(EINVAL), MAP_FAILED);
  if (prot & PROT_EXEC) return (fail(EPERM), MAP_FAILED);
  const std::uint64_t len = page_align_down(length + kPageSize - 1);
  // The region, with a user taken for this mapping: the engine's here, or the server's (shared mode).
  Piece piece{0, nullptr, nullptr, 0};
  int memfd = -1;
  if (auto* local = dynamic_cast<uapi::IommufdFile*>(node->file.get())) {
    Result<Context::MmapRegion> region = local->context().get_mmap(static_cast<std::uint64_t>(offset), len);
    if (!region.ok()) return (fail(region.error()), MAP_FAILED);
    piece.owner = region->owner;
    piece.file = node->file;
    memfd = region->memfd;
  } else {
    const long rc = shared_client::mmap_region(fd, *node->file, static_cast<std::uint64_t>(offset), len,
                                               &memfd, &piece.remote);
    if (rc < 0) return (fail(static_cast<int>(-rc)), MAP_FAILED);
    watch_forks();
  }
  Table& t = table();
  std::vector<Piece> replaced;
  void* at;
  {
    lockdep::MutexGuard g(t.mu);
    const InTable in_table;
    at = real_mmap(addr, len, prot, flags, memfd, 0);
    const int err = errno;
    if (piece.remote) ::close(memfd);  // the server's copy, passed for this mapping only
    if (at == MAP_FAILED) {
      drop_user(piece);
      return (fail(err), MAP_FAILED);
    }
    const auto start = reinterpret_cast<std::uint64_t>(at);
    // A MAP_FIXED mapping may have replaced pieces of ours: they are gone as if unmapped.
    cut_pieces_locked(t, start, start + len, &replaced);
    piece.end = start + len;
    try {
      t.pieces.emplace(start, piece);
      g_piece_count.fetch_add(1, std::memory_order_relaxed);
    } catch (const std::bad_alloc&) {
      next_fn(g_munmap, "munmap")(at, len);
      drop_user(piece);
      at = MAP_FAILED;
    }
  }
  drop_pieces(replaced);
  if (at == MAP_FAILED) errno = ENOMEM;
  return at;
}

// After the kernel has unmapped [start, end): each piece it covered is cut, keeping one user per fragment
// left, as vma splits and closes do. What was released is returned to the caller to drop unlocked.
void cut_pieces_locked(Table& t, std::uint64_t start, std::uint64_t end, std::vector<Piece>* released)
    REQUIRES(t.mu) {
  auto it = t.pieces.lower_bound(start);
  if (it != t.pieces.begin() && std::prev(it)->second.end > start) --it;
  while (it != t.pieces.end() && it->first < end) {
    const std::uint64_t p_start = it->first;
    Piece piece = std::move(it->second);
    it = t.pieces.erase(it);
    g_piece_count.fetch_sub(1, std::memory_order_relaxed);
    // Fragments left before and after the hole; each keeps (or takes) one user and a file reference.
    bool kept = false;
    const std::uint64_t fragments[2][2] = {{p_start, start}, {end, piece.end}};
    for (const auto& f : fragments) {
      if (f[0] >= f[1]) continue;
      try {
        t.pieces.emplace(f[0], Piece{f[1], piece.owner, piece.file, piece.remote});
      } catch (const std::bad_alloc&) {
        continue;  // unreachable in practice (one node); the fragment then holds nothing
      }
      if (kept) add_user(piece);
      g_piece_count.fetch_add(1, std::memory_order_relaxed);
      kept = true;
    }
    if (!kept) {
      try {
        released->push_back(std::move(piece));
      } catch (const std::bad_alloc&) {
        drop_user(piece);  // the file reference goes here, with the lock held: never the last one
      }
    }
    it = t.pieces.lower_bound(end);
  }
}

// Gives back what cut_pieces_locked() released: the owners' users, then the file references (the last of
// which tears the context down), with no lock held.
void drop_pieces(std::vector<Piece>& released) {
  for (Piece& p : released) drop_user(p);
  released.clear();
}

}  // namespace
}  // namespace uiommufd::runtime

extern "C" {

[[gnu::visibility("default")]] void* mmap(void* addr, size_t length, int prot, int flags, int fd,
                                          off_t offset) {
  return uiommufd::runtime::do_mmap(addr, length, prot, flags, fd, offset, uiommufd::runtime::g_mmap, "mmap");
}

[[gnu::visibility("default")]] void* mmap64(void* addr, size_t length, int prot, int flags, int fd,
                                            off_t offset) {
  return uiommufd::runtime::do_mmap(addr, length, prot, flags, fd, offset, uiommufd::runtime::g_mmap64,
                                    "mmap64");
}

[[gnu::visibility("default")]] int munmap(void* addr, size_t length) {
  using namespace uiommufd::runtime;
  MunmapFn real_munmap = next_fn(g_munmap, "munmap");
  if (g_piece_count.load(std::memory_order_relaxed) == 0 || t_in_table) [[likely]]
    return real_munmap(addr, length);
  const EngineGate::Scope gate;
  std::vector<Piece> released;
  {
    Table& t = table();
    // The kernel's unmap and the table's cut in one step, so a concurrent mmap cannot land in between.
    uiommufd::lockdep::MutexGuard g(t.mu);
    const InTable in_table;
    const int rc = real_munmap(addr, length);
    if (rc != 0) return rc;
    const auto start = reinterpret_cast<std::uint64_t>(addr);
    cut_pieces_locked(t, start, start + uiommufd::page_align_down(length + uiommufd::kPageSize - 1),
                      &released);
  }
  drop_pieces(released);  // inside the gate: the last file reference tears the context down
  return 0;
}

}  // extern "C"
