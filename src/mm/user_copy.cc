#include "user_copy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include "uiommufd/base/log.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/try.h"

namespace uiommufd::mm_internal {
namespace {

// process_vm_* move at most MAX_RW_COUNT (just under 2 GiB) per call and report a short count beyond
// that; chunking keeps each call well inside it so that a short count always means a fault.
constexpr std::size_t kVmChunk = std::size_t{1} << 30;

// Set once process_vm_* has failed with ENOSYS / EPERM: seccomp filters and kernels without
// CONFIG_CROSS_MEMORY_ATTACH do not change while we run, so one failure decides for the process.
constinit std::atomic<bool> g_process_vm_unavailable{false};

void* to_ptr(std::uint64_t uaddr) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(uaddr)); }

// One process_vm copy. *done receives the number of leading bytes moved. ENOSYS means the mechanism is
// unavailable and nothing was moved.
Status vm_copy(bool to_user, void* local, std::uint64_t uaddr, std::size_t len, std::size_t* done) {
  // Read each time, not cached: after fork() the child is a different process.
  const pid_t pid = getpid();
  *done = 0;
  while (*done < len) {
    const std::size_t chunk = std::min(len - *done, kVmChunk);
    iovec l{static_cast<char*>(local) + *done, chunk};
    iovec r{to_ptr(uaddr + *done), chunk};
    const ssize_t n = to_user ? process_vm_writev(pid, &l, 1, &r, 1, 0) : process_vm_readv(pid, &l, 1, &r, 1, 0);
    if (n > 0) {
      *done += static_cast<std::size_t>(n);
      continue;
    }
    const int err = n < 0 ? errno : EFAULT;
    if (err == EINTR) continue;
    if ((err == ENOSYS || err == EPERM) && *done == 0) {
      // Our own pid always passes the ptrace access check, so EPERM here is a seccomp or LSM policy.
      if (!g_process_vm_unavailable.exchange(true, std::memory_order_relaxed))
        UIOMMUFD_LOG(LogLevel::kInfo, "process_vm_%sv unavailable (errno %d); using the pipe fallback for user copies",
                     to_user ? "write" : "read", err);
      return Status::error(ENOSYS);
    }
    // A short count stops at the first page the kernel could not access; the retry from there gives
    // EFAULT, which is what we report for everything else too (ENOMEM from the kernel's own allocations
    // is not worth a separate errno on a path whose contract is EFAULT).
    return Status::error(EFAULT);
  }
  return Status();
}

// A pipe private to one thread, for the fallback: write(2) from a user address and read(2) into one make
// the kernel access user memory on our behalf and return EFAULT for a bad page. Non-blocking, so a logic
// error can never hang a caller; per thread, so no lock and no interleaving between threads.
class ProbePipe {
 public:
  ProbePipe() = default;
  ProbePipe(const ProbePipe&) = delete;
  ProbePipe& operator=(const ProbePipe&) = delete;
  ~ProbePipe() { reset(); }

  // Creates the pipe on first use, and again in a forked child: a pipe inherited over fork is shared with
  // the parent, whose bytes could interleave with ours. False if pipe2 fails (EMFILE / ENFILE).
  bool ensure() {
    const pid_t pid = getpid();
    if (rfd_ >= 0 && pid_ == pid) return true;
    reset();
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return false;
    rfd_ = fds[0];
    wfd_ = fds[1];
    pid_ = pid;
    return true;
  }

  // Discards the pipe (after an unexpected state), so the next use starts from an empty one.
  void reset() {
    if (rfd_ >= 0) close(rfd_);
    if (wfd_ >= 0) close(wfd_);
    rfd_ = wfd_ = -1;
  }

  // Reads and discards n bytes known to be in the pipe; resets the pipe if they are not all there.
  void drain(std::size_t n) {
    unsigned char scratch[256];
    while (n > 0) {
      const ssize_t r = read(rfd_, scratch, std::min(n, sizeof scratch));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        reset();
        return;
      }
      n -= static_cast<std::size_t>(r);
    }
  }

  // Reads exactly n bytes into engine memory `dst`; false (pipe reset) if they are not there.
  bool read_exact(void* dst, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = read(rfd_, static_cast<char*>(dst) + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        reset();
        return false;
      }
      got += static_cast<std::size_t>(r);
    }
    return true;
  }

  int rfd() const { return rfd_; }
  int wfd() const { return wfd_; }

 private:
  int rfd_ = -1;
  int wfd_ = -1;
  pid_t pid_ = 0;
};

thread_local ProbePipe t_pipe;

// Chunks never cross a user page, so each chunk is either wholly accessible or faults as a unit, and a
// chunk (at most one page) always fits in an empty pipe (a pipe holds at least two pages).
std::size_t pipe_chunk(std::uint64_t uaddr, std::size_t remaining) {
  return static_cast<std::size_t>(std::min<std::uint64_t>(remaining, kPageSize - page_offset(uaddr)));
}

Status pipe_copy_from_user(void* dst, std::uint64_t uaddr, std::size_t len, std::size_t* done) {
  *done = 0;
  if (!t_pipe.ensure()) return Status::error(ENOMEM);
  while (*done < len) {
    const std::size_t chunk = pipe_chunk(uaddr + *done, len - *done);
    const ssize_t w = write(t_pipe.wfd(), to_ptr(uaddr + *done), chunk);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      // EFAULT is the expected answer for a bad page; anything else means the pipe is not in the state we
      // think, so start over with a fresh one next time.
      if (!(w < 0 && errno == EFAULT)) t_pipe.reset();
      return Status::error(EFAULT);
    }
    if (!t_pipe.read_exact(static_cast<char*>(dst) + *done, static_cast<std::size_t>(w))) return Status::error(EFAULT);
    *done += static_cast<std::size_t>(w);
  }
  return Status();
}

Status pipe_copy_to_user(std::uint64_t uaddr, const void* src, std::size_t len) {
  if (!t_pipe.ensure()) return Status::error(ENOMEM);
  std::size_t done = 0;
  while (done < len) {
    const std::size_t chunk = pipe_chunk(uaddr + done, len - done);
    const ssize_t w = write(t_pipe.wfd(), static_cast<const char*>(src) + done, chunk);
    if (w < 0 && errno == EINTR) continue;
    if (w != static_cast<ssize_t>(chunk)) {
      // src is engine memory and the pipe is empty, so a short write is a broken pipe, not a user fault.
      t_pipe.reset();
      return Status::error(EFAULT);
    }
    std::size_t got = 0;
    while (got < chunk) {
      const ssize_t r = read(t_pipe.rfd(), to_ptr(uaddr + done + got), chunk - got);
      if (r > 0) {
        got += static_cast<std::size_t>(r);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      // The kernel leaves bytes it could not copy out in the pipe; remove them so the next copy on this
      // thread does not read them.
      t_pipe.drain(chunk - got);
      return Status::error(EFAULT);
    }
    done += chunk;
  }
  return Status();
}

}  // namespace

Status copy_from_user(CopyMethod method, void* dst, std::uint64_t uaddr, std::size_t len, std::size_t* copied) {
  std::size_t done = 0;
  Status st;
  const bool recoverable = (method == CopyMethod::kAuto || method == CopyMethod::kRecoverable) &&
                           recoverable_copy_usable(uaddr, len);
  if (recoverable) {
    st = recoverable_copy(/*to_user=*/false, dst, uaddr, len, &done);
  } else if (method == CopyMethod::kProcessVm || method == CopyMethod::kRecoverable ||
      (method == CopyMethod::kAuto && !g_process_vm_unavailable.load(std::memory_order_relaxed))) {
    st = vm_copy(/*to_user=*/false, dst, uaddr, len, &done);
    if (st.error() == ENOSYS && method == CopyMethod::kAuto) st = pipe_copy_from_user(dst, uaddr, len, &done);
  } else {
    st = pipe_copy_from_user(dst, uaddr, len, &done);
  }
  if (copied) *copied = done;
  return st;
}

Status copy_to_user(CopyMethod method, std::uint64_t uaddr, const void* src, std::size_t len) {
  if ((method == CopyMethod::kAuto || method == CopyMethod::kRecoverable) && recoverable_copy_usable(uaddr, len)) {
    std::size_t done = 0;
    // The recoverable copy only reads from the local side of a copy to user.
    return recoverable_copy(/*to_user=*/true, const_cast<void*>(src), uaddr, len, &done);
  }
  if (method == CopyMethod::kProcessVm || method == CopyMethod::kRecoverable ||
      (method == CopyMethod::kAuto && !g_process_vm_unavailable.load(std::memory_order_relaxed))) {
    std::size_t done = 0;
    // process_vm_writev takes a non-const local iovec but only reads from it.
    const Status st = vm_copy(/*to_user=*/true, const_cast<void*>(src), uaddr, len, &done);
    if (st.error() != ENOSYS || method != CopyMethod::kAuto) return st;
  }
  return pipe_copy_to_user(uaddr, src, len);
}

bool process_vm_unavailable() { return g_process_vm_unavailable.load(std::memory_order_relaxed); }

void set_process_vm_unavailable_for_testing(bool unavailable) {
  g_process_vm_unavailable.store(unavailable, std::memory_order_relaxed);
}

bool madv_populate_supported() {
  enum : int { kUnknown, kYes, kNo };
  static constinit std::atomic<int> state{kUnknown};
  int s = state.load(std::memory_order_relaxed);
  if (s == kUnknown) {
    // A page of our own .bss is certainly mapped and readable, so only a kernel without MADV_POPULATE
    // (EINVAL before 5.14) or a policy forbidding madvise can make this fail. Racing first callers both
    // probe and agree.
    alignas(kPageSize) static unsigned char probe_page[kPageSize];
    s = madvise(probe_page, sizeof probe_page, MADV_POPULATE_READ) == 0 ? kYes : kNo;
    if (s == kNo) {
      const int err = errno;
      UIOMMUFD_LOG(LogLevel::kInfo, "MADV_POPULATE unavailable (errno %d); probing pages instead", err);
    }
    state.store(s, std::memory_order_relaxed);
  }
  return s == kYes;
}

Status make_resident_by_probing(std::uint64_t uaddr, std::uint64_t len, bool write) {
  for (std::uint64_t off = 0; off < len; off += kPageSize) {
    unsigned char byte;
    TRY(copy_from_user(CopyMethod::kAuto, &byte, uaddr + off, 1));
    // Writing back the byte just read faults the page in writable and breaks COW, as FOLL_WRITE would.
    if (write) TRY(copy_to_user(CopyMethod::kAuto, uaddr + off, &byte, 1));
  }
  return Status();
}

bool range_is_mapped(std::uint64_t uaddr, std::uint64_t len) {
  unsigned char vec[1024];
  constexpr std::uint64_t kMaxSpan = sizeof vec * kPageSize;
  for (std::uint64_t off = 0; off < len;) {
    const std::uint64_t span = std::min(len - off, kMaxSpan);
    if (mincore(to_ptr(uaddr + off), span, vec) != 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      // ENOMEM: a hole, or an address beyond the user address space. Other errors (EFAULT for vec cannot
      // happen) leave us unable to tell, and "mapped" then keeps the caller's ENOMEM.
      return errno != ENOMEM;
    }
    off += span;
  }
  return true;
}

}  // namespace uiommufd::mm_internal
