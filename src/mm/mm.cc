#include "uiommufd/mm/mm.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "user_copy.h"

#include "uiommufd/base/assert.h"
#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/sanitizers.h"
#include "uiommufd/lockdep/mutex.h"

namespace uiommufd {
namespace {

// The kernel's generic usercopy fault points (docs/fault-injection.md#kernel-sites, #sites): every copy from
// or to caller memory.
UIOMMUFD_FAULT_SITE(g_fault_copy_from_user, "mm.copy_from_user", EFAULT);
UIOMMUFD_FAULT_SITE(g_fault_copy_to_user, "mm.copy_to_user", EFAULT);

void* to_ptr(std::uint64_t uaddr) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(uaddr)); }

// The kernel's access_ok(): a range whose end wraps is never valid user memory.
bool range_wraps(std::uint64_t uaddr, std::uint64_t len) {
  std::uint64_t end = 0;
  return !checked_add(uaddr, len, &end);
}

// make_resident() and lock() take whole pages; a misaligned request is a caller bug that would otherwise
// silently cover a different range than asked.
bool page_aligned(std::uint64_t uaddr, std::uint64_t len) {
  return page_offset(uaddr) == 0 && page_offset(len) == 0;
}

// mlock / munlock as raw system calls: the sanitizer runtimes intercept the libc wrappers and turn them
// into no-ops that report success, which would make ASan/TSan builds behave differently from the rest.
int sys_mlock(std::uint64_t uaddr, std::uint64_t len) {
  return static_cast<int>(syscall(SYS_mlock, to_ptr(uaddr), static_cast<std::size_t>(len)));
}
int sys_munlock(std::uint64_t uaddr, std::uint64_t len) {
  return static_cast<int>(syscall(SYS_munlock, to_ptr(uaddr), static_cast<std::size_t>(len)));
}

}  // namespace

// ---- pages pins hold, and their copies at exit ----

// A leaf: taken under pages.mutex (a pin or unpin) and under the IOVA lock (access rw), never around
// anything but this map and a copy out of the process.
constinit lockdep::LockClassKey g_held_key{"mm.held_pages"};

struct Mm::Held {
  struct Page {
    std::uint32_t holds = 0;
    // Once kept: the server's own mapping of the page when it belongs to a file (a shared mapping, so that
    // the other processes that map it and the pins keep seeing one page), else a copy (kPageSize bytes).
    unsigned char* kept = nullptr;
    bool mapped = false;
    bool writable = true;  // a mapped page may be mapped read-only

    Page() = default;
    Page(const Page&) = delete;
    Page& operator=(const Page&) = delete;
    ~Page() {
      if (mapped)
        ::munmap(kept, kPageSize);
      else
        delete[] kept;
    }
  };
  lockdep::Mutex mu{g_held_key};
  std::map<std::uint64_t, Page> pages GUARDED_BY(mu);  // by page address
  bool keeping GUARDED_BY(mu) = false;                 // the process is on its way out

  void release(std::uint64_t uaddr, std::uint64_t len) REQUIRES(mu) {
    for (std::uint64_t off = 0; off < len; off += kPageSize) {
      auto it = pages.find(uaddr + off);
      UIOMMUFD_ASSERT(it != pages.end() && it->second.holds > 0);
      if (--it->second.holds == 0) pages.erase(it);
    }
  }
};

Mm::Mm() = default;

Mm::Mm(pid_t pid, int pidfd, uid_t uid, std::uint16_t tag, std::unique_ptr<Held> held)
    : pid_(pid), pidfd_(pidfd), uid_(uid), tag_(tag), held_(std::move(held)) {}

Mm::~Mm() {
  if (pidfd_ >= 0) ::close(pidfd_);
}

Mm& Mm::local_ref() {
  // Never destroyed: objects torn down by other static destructors (or by threads still running at exit)
  // may hold references.
  static Mm* const mm = [] {
    Mm* m = new Mm();
    m->add_ref();
    return m;
  }();
  return *mm;
}

RefPtr<Mm> Mm::current() { return RefPtr<Mm>(&current_ref()); }

uid_t Mm::uid() const { return remote() ? uid_ : getuid(); }

// ---- other processes ----
//
// One Mm per live process, so that pages two calls of one client pin compare as one address space, and so
// that per-process accounting (locked_vm, pinned_vm) has one home. The registry holds a reference; an
// entry whose process has exited is replaced when the pid comes back, and dropped by prune().

namespace {

// A leaf: taken only around the map, never with an engine lock held (docs/locking.md#outside-the-order).
constinit lockdep::LockClassKey g_registry_key{"mm.registry"};

struct RemoteRegistry {
  lockdep::Mutex mu{g_registry_key};
  std::map<pid_t, RefPtr<Mm>> by_pid GUARDED_BY(mu);
  std::uint16_t next_tag GUARDED_BY(mu) = 1;
  // Mms of exited processes whose pid came back while they were still held; dropped when only this holds
  // them.
  std::vector<RefPtr<Mm>> retired GUARDED_BY(mu);
};
RemoteRegistry& registry() {
  static RemoteRegistry* const r = new RemoteRegistry();  // outlives static destructors, as local_ref()
  return *r;
}

int sys_pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// The real uid of `pid` from its status file (the first field of "Uid:").
Result<uid_t> real_uid_of(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/status", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (!f) return Status::error(errno == ENOENT ? ESRCH : errno);
  char line[256];
  long uid = -1;
  while (std::fgets(line, sizeof(line), f)) {
    if (std::sscanf(line, "Uid: %ld", &uid) == 1) break;
  }
  std::fclose(f);
  if (uid < 0) return Status::error(ESRCH);
  return static_cast<uid_t>(uid);
}

}  // namespace

Result<RefPtr<Mm>> Mm::for_process(pid_t pid) {
  if (pid <= 0) return Status::error(ESRCH);
  if (pid == getpid()) return RefPtr<Mm>(&local_ref());
  RemoteRegistry& r = registry();
  {
    lockdep::MutexGuard lock(r.mu);
    auto it = r.by_pid.find(pid);
    if (it != r.by_pid.end() && !it->second->exited()) return it->second;
  }
  const int pidfd = sys_pidfd_open(pid);
  if (pidfd < 0) return Status::error(errno);
  // Read after the pidfd is held, so the uid is that process's and not a later one's with the same pid.
  Result<uid_t> uid = real_uid_of(pid);
  if (!uid.ok()) {
    ::close(pidfd);
    return uid.status();
  }
  lockdep::MutexGuard lock(r.mu);
  if (auto it = r.by_pid.find(pid); it != r.by_pid.end() && !it->second->exited()) {
    ::close(pidfd);  // another caller registered it meanwhile
    return it->second;
  }
  // Entries of exited processes that nobody else holds go now, so the registry stays as small as the set
  // of live clients plus what pages still remember, and their tags come free.
  for (auto e = r.by_pid.begin(); e != r.by_pid.end();) {
    if (e->second->ref_count() == 1 && e->second->exited())
      e = r.by_pid.erase(e);
    else
      ++e;
  }
  std::erase_if(r.retired, [](const RefPtr<Mm>& m) { return m->ref_count() == 1; });
  // The next tag no registered Mm carries (the registry holds every remote Mm that still exists or is held).
  std::uint16_t tag = 0;
  for (unsigned tries = 0; tries < 0x7fff && tag == 0; ++tries) {
    const std::uint16_t t = r.next_tag;
    r.next_tag = static_cast<std::uint16_t>(t == 0x7fff ? 1 : t + 1);
    bool used = false;
    for (const auto& [p, m] : r.by_pid) used = used || m->tag_ == t;
    for (const RefPtr<Mm>& m : r.retired) used = used || m->tag_ == t;
    if (!used) tag = t;
  }
  if (tag == 0) {
    ::close(pidfd);
    return Status::error(ENOMEM);
  }
  std::unique_ptr<Held> held(new (std::nothrow) Held);
  RefPtr<Mm> mm(held ? new (std::nothrow) Mm(pid, pidfd, *uid, tag, std::move(held)) : nullptr);
  if (!mm) {
    ::close(pidfd);
    return Status::error(ENOMEM);
  }
  auto [it, inserted] = r.by_pid.try_emplace(pid, mm);
  if (!inserted) {
    // The entry is of an exited process of the same pid that someone still holds: it moves aside, still
    // findable by its tag and keeping the tag taken, until only the registry holds it.
    r.retired.push_back(std::move(it->second));
    it->second = mm;
  }
  return mm;
}

RefPtr<Mm> Mm::of_phys(PhysAddr p) {
  const std::uint64_t tag = p >> kPhysTagShift;
  if (tag == 0) return RefPtr<Mm>(&local_ref());
  RemoteRegistry& r = registry();
  lockdep::MutexGuard lock(r.mu);
  for (const auto& [pid, m] : r.by_pid)
    if (m->tag_ == tag) return m;
  for (const RefPtr<Mm>& m : r.retired)
    if (m->tag_ == tag) return m;
  return nullptr;
}

namespace {

// The shared mappings of a process ('s' in /proc/<pid>/maps), sorted by address: their pages belong to a
// file (shmem for MAP_SHARED | MAP_ANONYMOUS, a memfd, a regular or hugetlbfs file), which outlives the
// process while anyone else maps it or holds it open. Empty when the maps cannot be read.
struct SharedVma {
  std::uint64_t start = 0, end = 0, offset = 0;
  bool writable = false;
  int fd = -1;  // /proc/<pid>/map_files/<start>-<end>, opened on first use (-2: could not be)
};

class SharedVmas {
 public:
  explicit SharedVmas(pid_t pid) : pid_(pid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/maps", static_cast<int>(pid));
    FILE* f = std::fopen(path, "re");
    if (!f) return;
    char line[512];
    while (std::fgets(line, sizeof line, f)) {
      unsigned long long start = 0, end = 0, offset = 0;
      char perms[8] = {};
      if (std::sscanf(line, "%llx-%llx %7s %llx", &start, &end, perms, &offset) != 4 || perms[3] != 's')
        continue;
      try {
        vmas_.push_back({start, end, offset, perms[1] == 'w'});
      } catch (const std::bad_alloc&) {
        break;  // the rest is copied instead
      }
    }
    std::fclose(f);
  }
  ~SharedVmas() {
    for (const SharedVma& v : vmas_)
      if (v.fd >= 0) ::close(v.fd);
  }
  SharedVmas(const SharedVmas&) = delete;
  SharedVmas& operator=(const SharedVmas&) = delete;

  // The server's own MAP_SHARED mapping of the page at `uaddr`, or null when it is not in a shared mapping
  // or the file cannot be reached (opening map_files takes CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE) or
  // mapped one small page at a time (hugetlbfs).
  unsigned char* map(std::uint64_t uaddr, bool* writable) {
    auto it = std::upper_bound(vmas_.begin(), vmas_.end(), uaddr,
                               [](std::uint64_t a, const SharedVma& v) { return a < v.start; });
    if (it == vmas_.begin() || uaddr >= std::prev(it)->end) return nullptr;
    SharedVma& v = *std::prev(it);
    if (v.fd == -1) {
      char path[96];
      std::snprintf(path, sizeof path, "/proc/%d/map_files/%llx-%llx", static_cast<int>(pid_),
                    static_cast<unsigned long long>(v.start), static_cast<unsigned long long>(v.end));
      v.fd = ::open(path, (v.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
      if (v.fd < 0) v.fd = -2;
    }
    if (v.fd < 0) return nullptr;
    void* p = ::mmap(nullptr, kPageSize, PROT_READ | (v.writable ? PROT_WRITE : 0), MAP_SHARED, v.fd,
                     static_cast<off_t>(v.offset + (uaddr - v.start)));
    if (p == MAP_FAILED) return nullptr;
    *writable = v.writable;
    return static_cast<unsigned char*>(p);
  }

 private:
  const pid_t pid_;
  std::vector<SharedVma> vmas_;
};

// Keeps a held page of a process that is leaving (docs/shared.md#exit): the page itself when it belongs to
// a shared mapping, else a copy read out of the still living process. False when neither can be had.
bool keep_page(pid_t pid, std::uint64_t uaddr, SharedVmas& shared, unsigned char** kept, bool* mapped,
               bool* writable) {
  if (unsigned char* m = shared.map(uaddr, writable)) {
    *kept = m;
    *mapped = true;
    return true;
  }
  std::unique_ptr<unsigned char[]> buf(new (std::nothrow) unsigned char[kPageSize]);
  if (!buf) return false;
  iovec l{buf.get(), kPageSize};
  iovec r{to_ptr(uaddr), kPageSize};
  if (process_vm_readv(pid, &l, 1, &r, 1, 0) != static_cast<ssize_t>(kPageSize)) return false;
  *kept = buf.release();
  *mapped = false;
  *writable = true;
  return true;
}

}  // namespace

Status Mm::hold_pinned(std::uint64_t uaddr, std::uint64_t len) const {
  if (!held_) return {};
  UIOMMUFD_DCHECK(page_aligned(uaddr, len));
  lockdep::MutexGuard g(held_->mu);
  std::optional<SharedVmas> shared;
  std::uint64_t done = 0;
  Status st;
  for (; done < len; done += kPageSize) {
    Held::Page* page;
    try {
      page = &held_->pages[uaddr + done];
    } catch (const std::bad_alloc&) {
      st = Status::error(ENOMEM);
      break;
    }
    if (held_->keeping && !page->kept) {
      // Held while the process is leaving: kept at once.
      if (!shared) shared.emplace(pid_);
      if (!keep_page(pid_, uaddr + done, *shared, &page->kept, &page->mapped, &page->writable)) {
        if (page->holds == 0) held_->pages.erase(uaddr + done);
        st = Status::error(exited() ? EFAULT : ENOMEM);
        break;
      }
    }
    ++page->holds;
  }
  if (!st.ok()) held_->release(uaddr, done);
  return st;
}

void Mm::release_pinned(std::uint64_t uaddr, std::uint64_t len) const {
  if (!held_) return;
  lockdep::MutexGuard g(held_->mu);
  held_->release(uaddr, len);
}

Status Mm::keep_held_pages() const {
  if (!held_) return {};
  lockdep::MutexGuard g(held_->mu);
  held_->keeping = true;
  SharedVmas shared(pid_);
  Status st;
  for (auto& [addr, page] : held_->pages) {
    if (page.kept) continue;
    if (!keep_page(pid_, addr, shared, &page.kept, &page.mapped, &page.writable) && !exited())
      st = Status::error(ENOMEM);
  }
  return st;
}

std::size_t Mm::held_page_count() const {
  if (!held_) return 0;
  lockdep::MutexGuard g(held_->mu);
  return held_->pages.size();
}

std::size_t Mm::kept_page_count() const {
  if (!held_) return 0;
  lockdep::MutexGuard g(held_->mu);
  return static_cast<std::size_t>(std::count_if(held_->pages.begin(), held_->pages.end(),
                                                [](const auto& e) { return e.second.kept != nullptr; }));
}

Status Mm::kept_copy(std::uint64_t uaddr, void* local, std::size_t len, bool write) const {
  auto* bytes = static_cast<unsigned char*>(local);
  lockdep::MutexGuard g(held_->mu);
  // All or nothing: the range is checked before anything moves.
  for (std::uint64_t p = page_align_down(uaddr); p < uaddr + len; p += kPageSize) {
    auto it = held_->pages.find(p);
    if (it == held_->pages.end() || !it->second.kept || (write && !it->second.writable)) {
      if (!write) std::memset(bytes, 0, len);
      return Status::error(EFAULT);
    }
  }
  for (std::size_t done = 0; done < len;) {
    const std::uint64_t at = uaddr + done;
    const std::size_t in_page = std::min<std::size_t>(len - done, kPageSize - page_offset(at));
    unsigned char* copy = held_->pages.find(page_align_down(at))->second.kept + page_offset(at);
    if (write)
      std::memcpy(copy, bytes + done, in_page);
    else
      std::memcpy(bytes + done, copy, in_page);
    done += in_page;
  }
  return {};
}

bool Mm::exited() const {
  if (!remote()) return false;
  pollfd p{pidfd_, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

// process_vm_readv / process_vm_writev stop at the first page they cannot reach and report the bytes done
// before it; anything short is EFAULT, as a kernel copy that faulted. Pieces of at most 1 GiB keep each
// call's count well inside ssize_t.
Status Mm::remote_copy(std::uint64_t uaddr, void* local, std::size_t len, bool write) const {
  constexpr std::size_t kMaxPiece = std::size_t{1} << 30;
  auto* bytes = static_cast<unsigned char*>(local);
  std::size_t done = 0;
  while (done < len) {
    const std::size_t piece = std::min(kMaxPiece, len - done);
    iovec l{bytes + done, piece};
    iovec r{to_ptr(uaddr + done), piece};
    const ssize_t n =
        write ? process_vm_writev(pid_, &l, 1, &r, 1, 0) : process_vm_readv(pid_, &l, 1, &r, 1, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      if (exited()) return kept_copy(uaddr, local, len, write);
      if (!write) std::memset(bytes + done, 0, len - done);
      return Status::error(n < 0 && errno == ENOMEM ? ENOMEM : EFAULT);
    }
    done += static_cast<std::size_t>(n);
  }
  // A pid is only reused after its process was reaped; checking afterwards catches a copy that reached a
  // newer process of the same pid. What the process left behind is its pinned pages' copies.
  if (exited()) return kept_copy(uaddr, local, len, write);
  return Status();
}

// GUP of another process: each page is reached once with the access asked for. process_vm_readv faults a
// page in for reading; for writing, the byte just read is written back with process_vm_writev, which
// faults the page in writable and breaks copy-on-write sharing as FOLL_WRITE does. Both honour the
// mapping's protection (no FOLL_FORCE), so a read-only or PROT_NONE page is EFAULT. FIXME: the write-back
// can undo a store the client makes to the same byte between the two calls; the kernel has no such window.
Status Mm::remote_make_resident(std::uint64_t uaddr, std::uint64_t len, bool write) const {
  constexpr std::size_t kBatch = 512;  // pages per system call (IOV_MAX is 1024)
  std::vector<unsigned char> probe;
  std::vector<iovec> local, remote;
  try {
    probe.resize(kBatch);
    local.resize(kBatch);
    remote.resize(kBatch);
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  for (std::uint64_t off = 0; off < len;) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(kBatch, (len - off) >> kPageShift));
    for (std::size_t i = 0; i < n; ++i) {
      local[i] = {&probe[i], 1};
      remote[i] = {to_ptr(uaddr + off + (std::uint64_t{i} << kPageShift)), 1};
    }
    ssize_t got = process_vm_readv(pid_, local.data(), n, remote.data(), n, 0);
    if (got != static_cast<ssize_t>(n)) return Status::error(got < 0 && errno == ENOMEM ? ENOMEM : EFAULT);
    if (write) {
      got = process_vm_writev(pid_, local.data(), n, remote.data(), n, 0);
      if (got != static_cast<ssize_t>(n)) return Status::error(got < 0 && errno == ENOMEM ? ENOMEM : EFAULT);
    }
    off += std::uint64_t{n} << kPageShift;
  }
  if (exited()) return Status::error(EFAULT);
  return Status();
}

Status Mm::copy_from_user(void* dst, std::uint64_t uaddr, std::size_t len) const {
  if (len == 0) return Status();
  if (should_fail(g_fault_copy_from_user)) {
    std::memset(dst, 0, len);
    return Status::error(g_fault_copy_from_user.error());
  }
  return copy_from_user_uninjected(dst, uaddr, len);
}

Status Mm::copy_from_user_uninjected(void* dst, std::uint64_t uaddr, std::size_t len) const {
  if (len == 0) return Status();
  const bool wraps = range_wraps(uaddr, len);
  if (remote()) [[unlikely]] {
    if (wraps) {
      std::memset(dst, 0, len);
      return Status::error(EFAULT);
    }
    return windowed_copy(uaddr, dst, len, /*write=*/false);
  }
  if (!wraps && mm_internal::short_copy(/*to_user=*/false, dst, uaddr, len)) [[likely]] return Status();
  std::size_t copied = 0;
  Status st = wraps ? Status::error(EFAULT)
                    : mm_internal::copy_from_user(mm_internal::CopyMethod::kAuto, dst, uaddr, len, &copied);
  if (!st.ok()) std::memset(static_cast<char*>(dst) + copied, 0, len - copied);
  return st;
}

Status Mm::copy_to_user(std::uint64_t uaddr, const void* src, std::size_t len) const {
  if (len == 0) return Status();
  TRY(inject(g_fault_copy_to_user));
  return copy_to_user_uninjected(uaddr, src, len);
}

Status Mm::copy_to_user_uninjected(std::uint64_t uaddr, const void* src, std::size_t len) const {
  if (len == 0) return Status();
  if (range_wraps(uaddr, len)) return Status::error(EFAULT);
  // The local side is only read.
  if (remote()) [[unlikely]]
    return windowed_copy(uaddr, const_cast<void*>(src), len, /*write=*/true);
  if (mm_internal::short_copy(/*to_user=*/true, const_cast<void*>(src), uaddr, len)) [[likely]]
    return Status();
  return mm_internal::copy_to_user(mm_internal::CopyMethod::kAuto, uaddr, src, len);
}

// The part of a copy that falls in the caller's argument window (docs/shared.md#inline) uses the bytes that
// came with the call; the parts before and after it go to the process.
Status Mm::windowed_copy(std::uint64_t uaddr, void* local, std::size_t len, bool write) const {
  ArgWindow* w = tls_window_;
  const std::uint64_t end = uaddr + len;
  if (!w || w->mm != this || end <= w->uaddr || uaddr >= w->uaddr + w->len) [[likely]]
    return remote_copy(uaddr, local, len, write);
  auto* bytes = static_cast<unsigned char*>(local);
  const std::uint64_t lo = std::max(uaddr, w->uaddr), hi = std::min(end, w->uaddr + w->len);
  Status st;
  if (uaddr < lo) st = remote_copy(uaddr, bytes, lo - uaddr, write);
  if (st.ok()) {
    unsigned char* in = w->bytes + (lo - w->uaddr);
    if (!write) {
      std::memcpy(bytes + (lo - uaddr), in, hi - lo);
    } else if (!w->writable) {
      st = Status::error(EFAULT);
    } else {
      std::memcpy(in, bytes + (lo - uaddr), hi - lo);
      w->dirty_lo = std::min<std::size_t>(w->dirty_lo, lo - w->uaddr);
      w->dirty_hi = std::max<std::size_t>(w->dirty_hi, hi - w->uaddr);
    }
  }
  if (st.ok() && end > hi) st = remote_copy(hi, bytes + (hi - uaddr), end - hi, write);
  if (!st.ok() && !write) std::memset(bytes, 0, len);
  return st;
}

Status Mm::check_zeroed_user(std::uint64_t uaddr, std::size_t len) const {
  unsigned char buf[256];
  for (std::size_t off = 0; off < len;) {
    const std::size_t chunk = std::min<std::size_t>(sizeof(buf), len - off);
    TRY(copy_from_user(buf, uaddr + off, chunk));
    for (std::size_t i = 0; i < chunk; ++i) {
      if (buf[i]) return Status::error(E2BIG);
    }
    off += chunk;
  }
  return {};
}

Status Mm::copy_struct_from_user(void* dst, std::size_t known, std::uint64_t uaddr,
                                 std::size_t user_size) const {
  std::memset(dst, 0, known);
  if (user_size > known) TRY(check_zeroed_user(uaddr + known, user_size - known));
  return copy_from_user(dst, uaddr, std::min(known, user_size));
}

namespace {
std::atomic<bool> g_store_in_place_disabled{false};
}  // namespace

void Mm::set_store_in_place_disabled_for_testing(bool disabled) {
  g_store_in_place_disabled.store(disabled, std::memory_order_relaxed);
}

Status Mm::store_in_place(std::uint64_t uaddr, std::size_t len, void (*store)(void*), void* ctx) const {
#if defined(UIOMMUFD_SANITIZED)
  (void)uaddr, (void)len, (void)store, (void)ctx;
  return Status::error(EOPNOTSUPP);
#else
  if (remote() || g_store_in_place_disabled.load(std::memory_order_relaxed) || range_wraps(uaddr, len) ||
      !mm_internal::recoverable_copy_usable(uaddr, len))
    return Status::error(EOPNOTSUPP);
  return mm_internal::recoverable_run(uaddr, len, store, ctx);
#endif
}

Status Mm::make_resident(std::uint64_t uaddr, std::uint64_t len, bool write) const {
  if (!page_aligned(uaddr, len)) return Status::error(EINVAL);
  if (len == 0) return Status();
  if (range_wraps(uaddr, len)) return Status::error(EFAULT);
  if (remote()) return remote_make_resident(uaddr, len, write);
  // A short range is faulted in by touching it: for pages already resident that is a few instructions
  // instead of a system call. Longer ranges go to MADV_POPULATE, which faults many pages per call.
  constexpr std::uint64_t kTouchMaxBytes = 16 * kPageSize;
  if (len <= kTouchMaxBytes && mm_internal::recoverable_touch_supported() &&
      mm_internal::recoverable_copy_usable(uaddr, len))
    return mm_internal::recoverable_touch(uaddr, len, write);
  if (!mm_internal::madv_populate_supported()) return mm_internal::make_resident_by_probing(uaddr, len, write);

  for (;;) {
    if (madvise(to_ptr(uaddr), len, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0) return Status();
    switch (errno) {
      case EINTR:
        // Only a fatal signal interrupts populating; retrying is harmless while the process dies.
        continue;
      case ENOMEM:
        // madvise says ENOMEM both for "no VMA here" and for a real allocation failure; GUP, which we
        // model, says EFAULT for the first.
        return Status::error(mm_internal::range_is_mapped(uaddr, len) ? ENOMEM : EFAULT);
      default:
        // EINVAL: alignment was checked and support was probed, so it is "incompatible mapping or
        // permissions" (write to a read-only mapping, PROT_NONE, VM_IO / VM_PFNMAP), which GUP reports as
        // EFAULT. EFAULT / EHWPOISON: a page could not be faulted in.
        return Status::error(EFAULT);
    }
  }
}

Status Mm::lock(std::uint64_t uaddr, std::uint64_t len) const {
  if (!page_aligned(uaddr, len)) return Status::error(EINVAL);
  if (len == 0) return Status();
  if (range_wraps(uaddr, len)) return Status::error(EFAULT);
  // No system call locks another process's pages; the charge (accounting.h) is what the limit sees.
  if (remote()) return Status();
  // mlock locks VMA by VMA and stops at the first hole, so check for holes first rather than undo a
  // half-done lock in the common bad-address case.
  if (!mm_internal::range_is_mapped(uaddr, len)) return Status::error(EFAULT);
  if (sys_mlock(uaddr, len) == 0) return Status();
  const int err = errno;
  // Whatever part mlock managed before failing (a hole appearing meanwhile, or failed population after the
  // VMAs were marked) is unlocked again, so a failed lock() leaves nothing behind.
  sys_munlock(uaddr, len);
  if (err == ENOMEM && !mm_internal::range_is_mapped(uaddr, len)) return Status::error(EFAULT);
  if (err == EINVAL) return Status::error(EFAULT);
  // ENOMEM (over RLIMIT_MEMLOCK), EPERM (limit 0 without CAP_IPC_LOCK), EAGAIN (pages could not be locked):
  // all are "no more memory can be locked" to our callers.
  return Status::error(ENOMEM);
}

void Mm::unlock(std::uint64_t uaddr, std::uint64_t len) const {
  UIOMMUFD_DCHECK(page_aligned(uaddr, len));
  if (len == 0 || range_wraps(uaddr, len) || remote()) return;
  // munlock stops with ENOMEM at the first hole. Normally the pinned range is still fully mapped and one
  // call does it; otherwise go page by page so that pages past the hole are unlocked too.
  if (sys_munlock(uaddr, len) == 0) return;
  for (std::uint64_t off = 0; off < len; off += kPageSize) sys_munlock(uaddr + off, kPageSize);
}

void* Mm::host_address(std::uint64_t uaddr) const { return remote() ? nullptr : to_ptr(uaddr); }

namespace {

// /proc/<pid>/maps' PROCMAP_QUERY (include/uapi/linux/fs.h, Linux 6.11), declared here because the C
// library's headers may predate it.
struct ProcmapQuery {
  std::uint64_t size;
  std::uint64_t query_flags;
  std::uint64_t query_addr;
  std::uint64_t vma_start;
  std::uint64_t vma_end;
  std::uint64_t vma_flags;
  std::uint64_t vma_page_size;
  std::uint64_t vma_offset;
  std::uint64_t inode;
  std::uint32_t dev_major;
  std::uint32_t dev_minor;
  std::uint32_t vma_name_size;
  std::uint32_t build_id_size;
  std::uint64_t vma_name_addr;
  std::uint64_t build_id_addr;
};
constexpr unsigned long kProcmapQuery = _IOWR('f', 17, ProcmapQuery);

}  // namespace

std::uint64_t Mm::physical_block(std::uint64_t uaddr, std::uint64_t len) const {
  std::uint64_t last = 0;
  if (len == 0 || !checked_add(uaddr, len - 1, &last)) return kPageSize;
  // Opened per call: a descriptor kept open would answer for the parent after a fork.
  char path[64];
  if (remote())
    std::snprintf(path, sizeof(path), "/proc/%d/maps", static_cast<int>(pid_));
  else
    std::snprintf(path, sizeof(path), "/proc/self/maps");
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kPageSize;
  std::uint64_t block = 0;
  for (std::uint64_t addr = uaddr;;) {
    ProcmapQuery q{};
    q.size = sizeof(q);
    q.query_addr = addr;
    if (::ioctl(fd, kProcmapQuery, &q) != 0 || q.vma_start > addr || q.vma_page_size < kPageSize ||
        (q.vma_page_size & (q.vma_page_size - 1)) != 0) {
      block = kPageSize;
      break;
    }
    block = block == 0 ? q.vma_page_size : std::min(block, q.vma_page_size);
    if (block == kPageSize || q.vma_end == 0 || q.vma_end - 1 >= last) break;
    addr = q.vma_end;
  }
  ::close(fd);
  return block;
}

}  // namespace uiommufd
