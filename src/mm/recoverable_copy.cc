// The fast user-copy mechanism: an ordinary memcpy inside a fault-recoverable region.
//
// A process-wide SIGSEGV / SIGBUS handler (installed once, lazily) looks at the faulting thread's
// thread-local region state. If that thread is inside a region and the fault address lies in the user range
// being copied, the handler siglongjmp()s back into the copy loop, which reports EFAULT and how many bytes it
// had finished. Any other fault is passed on to the handler that was installed before ours, or, if there was
// none, kills the process exactly as it would have without us.
//
// Why savemask = 0: sigsetjmp(env, 0) saves no signal mask, so a copy that does not fault makes no system
// call at all (sigsetjmp(env, 1) would cost an rt_sigprocmask per copy). Leaving a handler by longjmp skips
// sigreturn, which is what normally restores the mask from the signal frame, so the mask after the longjmp
// is whatever the handler ran with. The kernel runs a handler with blocked = (mask at the fault) | sa_mask |
// (the signal itself unless SA_NODEFER). We install with an empty sa_mask and SA_NODEFER, so our handler
// runs with exactly the mask the copy had and the longjmp leaves it as it was. Without SA_NODEFER, SIGSEGV
// would stay blocked after the longjmp, and the next fault on this thread would kill the process (a
// synchronous fault on a blocked SIGSEGV is always fatal).
//
// That argument assumes the kernel calls our handler directly. An interposer may not: ThreadSanitizer's
// sigaction interceptor installs its own wrapper with a *full* sa_mask and calls ours from it, so under TSan
// the handler runs with every signal blocked. The fault path therefore does what sigreturn would have done
// and sets the mask back from the signal frame (ucontext uc_sigmask, the mask at the fault): one system call
// per *fault*, next to the several a signal delivery costs anyway, and none per copy.
//
// The same reasoning is why a thread that has SIGSEGV or SIGBUS blocked cannot use this mechanism at all:
// the kernel force-kills on a blocked synchronous fault, no handler runs. Such threads are detected (once
// per thread) and use the process_vm path.
//
// Short copies and page touches take a cheaper road to the same guarantee, the one the kernel's exception
// table takes: the instructions that may fault are written in assembly at known addresses, and the handler,
// seeing a fault at one of them, moves the interrupted program counter to a fix-up label and returns
// normally. No sigsetjmp per call, and the return goes through sigreturn, which puts back the
// signal mask and floating-point state by itself. The fix-up only tells that a fault happened, not where: a
// short copy that faults is redone by the chunked path below, which finds exactly how far it got (and, for
// a fault on the engine side of the copy, which is a bug, faults again there and is not recovered).
//
// The other state that sigreturn would have restored and longjmp does not: the kernel starts every x86
// signal handler with a fresh FPU state (default MXCSR and x87 control word), so the handler puts the
// interrupted code's MXCSR and x87 control word back from the signal frame before jumping; otherwise a copy
// that faulted would silently reset the caller's rounding mode / FTZ / DAZ.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <ucontext.h>

#include "user_copy.h"

#include "uiommufd/base/page.h"
#include "uiommufd/base/sanitizers.h"

namespace uiommufd::mm_internal {
namespace {

// Above this, ranges go to process_vm instead. x86-64 with 4-level paging ends user space at 2^47, and an
// access to a non-canonical address raises #GP, which Linux reports as SIGSEGV with si_addr 0 — no way to
// tell it belongs to our copy. Addresses above 2^47 are only ever mapped on request (an mmap hint above it
// on a 5-level machine), so sending them to the syscall path costs nothing in practice.
constexpr std::uint64_t kUserLimit = std::uint64_t{1} << 47;

// The first pass copies in chunks of this size (aligned in user address space): few enough per-chunk
// bookkeeping stores not to show next to memcpy, small enough that glibc never picks its 4-page interleaved
// non-temporal loop (it does that only above its non_temporal_threshold, megabytes), which could write
// bytes of a later page before faulting on an earlier one. A faulting chunk is redone page by page.
constexpr std::size_t kChunk = std::size_t{64} << 10;

// Up to this many bytes, a copy is tried as one rep movsb under the fix-up mechanism first.
constexpr std::size_t kFixupCopyMax = 512;

// The region state of one thread. Read by the signal handler on the same thread, so the fields the handler
// reads are volatile and written between compiler barriers. Initial-exec TLS: no lazy allocation (and no
// __tls_get_addr) when a signal handler touches it in a thread that never copied, even if this code ends up
// in a shared library.
struct Region {
  sigjmp_buf env;
  volatile std::uintptr_t lo;  // [lo, hi): the user range of the current copy
  volatile std::uintptr_t hi;
  volatile std::size_t progress;  // bytes finished, in whole chunks
  volatile sig_atomic_t active;
  sigset_t fault_mask;  // the signal mask at the fault, from the signal frame, restored after the longjmp
};
constinit thread_local Region t_region __attribute__((tls_model("initial-exec"))) = {};

// Per thread: 0 unknown, 1 SIGSEGV and SIGBUS deliverable, 2 one of them blocked (use the syscall path).
constinit thread_local int t_mask_state __attribute__((tls_model("initial-exec"))) = 0;

// Handlers that were installed before ours, written once before our handler goes in.
struct sigaction g_prev_segv;
struct sigaction g_prev_bus;
constinit std::atomic<bool> g_installed{false};
constinit std::atomic<bool> g_disabled_for_testing{false};

inline void compiler_barrier() { asm volatile("" ::: "memory"); }

}  // namespace

#if defined(__x86_64__)
// The fix-up routines (see the top of the file). Hidden symbols: every module that links this library (the
// preload and a program linked with the engine, say) has its own copy and its own handler, and each
// handler recognises only its own instructions and chains the rest.
extern "C" {
// Copies n bytes; returns 0, or 1 if the copy faulted part way.
std::size_t uiommufd_mm_fixup_copy(void* dst, const void* src, std::size_t n)
    __attribute__((visibility("hidden")));
// Touches one byte of every page in [p, end), p page-aligned; returns 0, or 1 on a fault.
int uiommufd_mm_fixup_touch_read(std::uintptr_t p, std::uintptr_t end) __attribute__((visibility("hidden")));
int uiommufd_mm_fixup_touch_write(std::uintptr_t p, std::uintptr_t end) __attribute__((visibility("hidden")));
extern const char uiommufd_mm_copy_fixup[] __attribute__((visibility("hidden")));
extern const char uiommufd_mm_touch_read_insn[] __attribute__((visibility("hidden")));
extern const char uiommufd_mm_touch_write_insn[] __attribute__((visibility("hidden")));
extern const char uiommufd_mm_touch_fixup[] __attribute__((visibility("hidden")));
}

// The copy: eight bytes at a time, then single bytes; any of its loads or stores may fault. Plain moves
// rather than rep movsb, whose stores do not forward to the loads that read the command right after. The
// touches: a read, or
// a locked "or 0", which needs the page writable (breaking copy-on-write) yet changes nothing, so a
// concurrent write by the program cannot be lost as it could with a read and a write-back.
asm(R"(
	.pushsection .text
	.p2align 4
	.globl uiommufd_mm_fixup_copy
	.hidden uiommufd_mm_fixup_copy
	.type uiommufd_mm_fixup_copy, @function
uiommufd_mm_fixup_copy:
	.cfi_startproc
	cmpq $8, %rdx
	jb 2f
1:
	movq (%rsi), %rax
	movq %rax, (%rdi)
	addq $8, %rsi
	addq $8, %rdi
	subq $8, %rdx
	cmpq $8, %rdx
	jae 1b
2:
	testq %rdx, %rdx
	jz 4f
3:
	movzbl (%rsi), %eax
	movb %al, (%rdi)
	incq %rsi
	incq %rdi
	decq %rdx
	jnz 3b
4:
	xorl %eax, %eax
	ret
	.globl uiommufd_mm_copy_fixup
	.hidden uiommufd_mm_copy_fixup
uiommufd_mm_copy_fixup:
	movl $1, %eax
	ret
	.cfi_endproc
	.size uiommufd_mm_fixup_copy, .-uiommufd_mm_fixup_copy

	.p2align 4
	.globl uiommufd_mm_fixup_touch_read
	.hidden uiommufd_mm_fixup_touch_read
	.type uiommufd_mm_fixup_touch_read, @function
uiommufd_mm_fixup_touch_read:
	.cfi_startproc
	cmpq %rsi, %rdi
	jae 2f
1:
	.globl uiommufd_mm_touch_read_insn
	.hidden uiommufd_mm_touch_read_insn
uiommufd_mm_touch_read_insn:
	movzbl (%rdi), %eax
	addq $4096, %rdi
	cmpq %rsi, %rdi
	jb 1b
2:
	xorl %eax, %eax
	ret
	.cfi_endproc
	.size uiommufd_mm_fixup_touch_read, .-uiommufd_mm_fixup_touch_read

	.p2align 4
	.globl uiommufd_mm_fixup_touch_write
	.hidden uiommufd_mm_fixup_touch_write
	.type uiommufd_mm_fixup_touch_write, @function
uiommufd_mm_fixup_touch_write:
	.cfi_startproc
	cmpq %rsi, %rdi
	jae 2f
1:
	.globl uiommufd_mm_touch_write_insn
	.hidden uiommufd_mm_touch_write_insn
uiommufd_mm_touch_write_insn:
	lock orb $0, (%rdi)
	addq $4096, %rdi
	cmpq %rsi, %rdi
	jb 1b
2:
	xorl %eax, %eax
	ret
	.globl uiommufd_mm_touch_fixup
	.hidden uiommufd_mm_touch_fixup
uiommufd_mm_touch_fixup:
	movl $1, %eax
	ret
	.cfi_endproc
	.size uiommufd_mm_fixup_touch_write, .-uiommufd_mm_fixup_touch_write
	.popsection
)");
#endif

namespace {

// A fault at one of the fix-up instructions: resume at its fix-up label instead (see the top of the file).
bool fixed_up(void* uctx) {
#if defined(__x86_64__)
  if (uctx == nullptr) return false;
  greg_t& pc = static_cast<ucontext_t*>(uctx)->uc_mcontext.gregs[REG_RIP];
  const auto at = [&](const char* label) {
    return pc == static_cast<greg_t>(reinterpret_cast<std::uintptr_t>(label));
  };
  const auto copy_begin = reinterpret_cast<std::uintptr_t>(&uiommufd_mm_fixup_copy);
  const auto copy_fixup = reinterpret_cast<std::uintptr_t>(uiommufd_mm_copy_fixup);
  if (static_cast<std::uintptr_t>(pc) >= copy_begin && static_cast<std::uintptr_t>(pc) < copy_fixup) {
    pc = static_cast<greg_t>(reinterpret_cast<std::uintptr_t>(uiommufd_mm_copy_fixup));
    return true;
  }
  if (at(uiommufd_mm_touch_read_insn) || at(uiommufd_mm_touch_write_insn)) {
    pc = static_cast<greg_t>(reinterpret_cast<std::uintptr_t>(uiommufd_mm_touch_fixup));
    return true;
  }
#else
  (void)uctx;
#endif
  return false;
}

// Puts back the interrupted code's floating-point control state (see the top of the file).
void restore_fp_control(void* uctx) {
#if defined(__x86_64__)
  auto* uc = static_cast<ucontext_t*>(uctx);
  if (uc == nullptr || uc->uc_mcontext.fpregs == nullptr) return;
  unsigned int mxcsr = uc->uc_mcontext.fpregs->mxcsr;
  unsigned short cwd = uc->uc_mcontext.fpregs->cwd;
  asm volatile("ldmxcsr %0" : : "m"(mxcsr));
  asm volatile("fldcw %0" : : "m"(cwd));
#else
  (void)uctx;  // other architectures do not reset the FP control register for a handler
#endif
}

// A fault that is not ours: do what would have happened had we never installed a handler.
void chain(int sig, siginfo_t* info, void* uctx) {
  const struct sigaction& prev = sig == SIGSEGV ? g_prev_segv : g_prev_bus;
  if ((prev.sa_flags & SA_SIGINFO) != 0 && prev.sa_sigaction != nullptr) {
    // As the kernel would have: block the previous handler's sa_mask, and the signal unless it asked for
    // SA_NODEFER. Its return (sigreturn) restores the mask from the frame either way.
    sigset_t block = prev.sa_mask;
    if ((prev.sa_flags & SA_NODEFER) == 0) sigaddset(&block, sig);
    pthread_sigmask(SIG_BLOCK, &block, nullptr);
    prev.sa_sigaction(sig, info, uctx);
    return;
  }
  if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
    sigset_t block = prev.sa_mask;
    if ((prev.sa_flags & SA_NODEFER) == 0) sigaddset(&block, sig);
    pthread_sigmask(SIG_BLOCK, &block, nullptr);
    prev.sa_handler(sig);
    return;
  }
  // SIG_DFL, or SIG_IGN (which the kernel overrides for a synchronous fault anyway): reset to the default
  // action. A hardware fault re-executes the instruction on return and faults again, now fatally; a SIGSEGV
  // sent by kill()/tgkill() does not, so send it again (SA_NODEFER: it is not blocked here).
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  if (info == nullptr || info->si_code <= 0) raise(sig);
}

void on_fault(int sig, siginfo_t* info, void* uctx) {
  const int saved_errno = errno;
  Region& r = t_region;
  // si_code > 0: raised by the kernel for an access (SEGV_MAPERR, SEGV_ACCERR, BUS_ADRERR, ...), so si_addr
  // is meaningful. A SIGSEGV sent with kill() while a copy runs is not ours.
  if (info != nullptr && info->si_code > 0 && fixed_up(uctx)) {
    errno = saved_errno;
    return;
  }
  if (r.active && info != nullptr && info->si_code > 0) {
    const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
    if (addr >= r.lo && addr < r.hi) {
      r.active = 0;
      if (uctx != nullptr) {
        r.fault_mask = static_cast<ucontext_t*>(uctx)->uc_sigmask;
      } else {
        sigemptyset(&r.fault_mask);  // not reached on Linux: SA_SIGINFO handlers always get a context
      }
      restore_fp_control(uctx);
      siglongjmp(r.env, 1);
    }
  }
  chain(sig, info, uctx);
  errno = saved_errno;
}

void install() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sigemptyset(&sa.sa_mask);
  // SA_NODEFER: see the top of the file. SA_ONSTACK: a previous handler we chain to may rely on the
  // alternate stack (stack-overflow detection, ASan), so we must run on it when the thread has one.
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  // Record the previous handlers first: from the moment ours is in, a fault on another thread may chain.
  if (sigaction(SIGSEGV, nullptr, &g_prev_segv) != 0 || sigaction(SIGBUS, nullptr, &g_prev_bus) != 0) return;
  struct sigaction old;
  if (sigaction(SIGSEGV, &sa, &old) != 0) return;
  if (old.sa_sigaction != g_prev_segv.sa_sigaction) g_prev_segv = old;  // changed in between
  if (sigaction(SIGBUS, &sa, &old) != 0) {
    sigaction(SIGSEGV, &g_prev_segv, nullptr);
    return;
  }
  if (old.sa_sigaction != g_prev_bus.sa_sigaction) g_prev_bus = old;
  g_installed.store(true, std::memory_order_release);
}

bool thread_can_recover() {
  int s = t_mask_state;
  if (s == 0) {
    sigset_t cur;
    s = 2;
    if (pthread_sigmask(SIG_SETMASK, nullptr, &cur) == 0)
      s = sigismember(&cur, SIGSEGV) == 1 || sigismember(&cur, SIGBUS) == 1 ? 2 : 1;
    t_mask_state = s;
  }
  return s == 1;
}

// The byte mover. Under the sanitizers memcpy is intercepted and checks shadow memory of the user range
// first, which for an address outside the sanitizer's application ranges faults outside the user range (or
// reports): use an uninstrumented copy there instead.
#if defined(UIOMMUFD_SANITIZED)
__attribute__((no_sanitize_address, no_sanitize_thread)) void raw_copy(void* dst, const void* src,
                                                                       std::size_t n) {
#if defined(__x86_64__)
  asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
#else
  auto* d = static_cast<volatile unsigned char*>(dst);
  auto* s = static_cast<const volatile unsigned char*>(src);
  for (std::size_t i = 0; i < n; ++i) d[i] = s[i];
#endif
}
#else
inline void raw_copy(void* dst, const void* src, std::size_t n) { std::memcpy(dst, src, n); }
#endif

// Moves len bytes src → dst with `mover`, in chunks of `gran` bytes aligned in the user address space (which
// starts at `ulo`; it is dst for a copy to user, src for a copy from user). True when all is done; false when
// a fault in the user range stopped it, with *done = the bytes of the chunks finished before the faulting
// one.
//
// noinline and no locals used after the longjmp except those never written after sigsetjmp (dst, src, len,
// ulo, gran, done, r), so nothing depends on register contents the longjmp does not restore. GCC's
// -Wclobbered cannot tell "live across sigsetjmp" from "modified after it" and warns about the arguments;
// only the second makes a value indeterminate (C11 7.13.2.1), and `pos`, the one local that is modified,
// is not read after a longjmp (the progress comes from the thread-local state instead).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wclobbered"
#endif
using Mover = void (*)(void* dst, const void* src, std::size_t n);

__attribute__((noinline)) bool guarded_run(Mover mover, char* dst, const char* src, std::size_t len,
                                           std::uintptr_t ulo, std::size_t gran, std::size_t* done) {
  Region& r = t_region;
  r.lo = ulo;
  r.hi = ulo + len;
  r.progress = 0;
  if (sigsetjmp(r.env, 0) != 0) {
    // The handler cleared r.active before jumping. Put back the mask of the fault (see the top of the file).
    compiler_barrier();
    pthread_sigmask(SIG_SETMASK, &r.fault_mask, nullptr);
    *done = r.progress;
    return false;
  }
  compiler_barrier();
  r.active = 1;
  compiler_barrier();
  std::size_t pos = 0;
  while (pos < len) {
    const std::size_t n = std::min(len - pos, gran - static_cast<std::size_t>((ulo + pos) & (gran - 1)));
    // Integer arithmetic: a user address may be anything, and a touch has no source at all.
    mover(reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(dst) + pos),
          reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(src) + pos), n);
    pos += n;
    compiler_barrier();
    r.progress = pos;
    compiler_barrier();
  }
  r.active = 0;
  compiler_barrier();
  *done = len;
  return true;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace

namespace {
// Installs the handler once. A function-local static rather than std::call_once: libstdc++'s call_once
// keeps its state in dynamic TLS, and the first __tls_get_addr of a thread makes the sanitizer runtimes
// mmap, which must not happen lazily in the middle of a copy (or land in a hole a test just punched).
bool ensure_installed() {
  static const bool once = (install(), true);
  return once;
}
// Installed before main(), so the first copy finds everything in place.
const bool g_installed_at_start = ensure_installed();
}  // namespace

bool recoverable_copy_available() {
  if (g_disabled_for_testing.load(std::memory_order_relaxed)) return false;
  if (!g_installed.load(std::memory_order_acquire)) ensure_installed();
  return g_installed.load(std::memory_order_acquire);
}

bool recoverable_copy_usable(std::uint64_t uaddr, std::size_t len) {
  // Callers have rejected wrapping ranges. Nested use (a copy from a signal handler that interrupted a copy
  // on the same thread) would overwrite the outer region: let it take the syscall path.
  return uaddr + len <= kUserLimit && !t_region.active && recoverable_copy_available() &&
         thread_can_recover();
}

bool short_copy(bool to_user, void* local, std::uint64_t uaddr, std::size_t len) {
#if defined(__x86_64__)
  if (len > kFixupCopyMax || uaddr + len > kUserLimit || t_mask_state != 1 ||
      !g_installed.load(std::memory_order_relaxed) || g_disabled_for_testing.load(std::memory_order_relaxed))
    return false;
  void* user = reinterpret_cast<void*>(static_cast<std::uintptr_t>(uaddr));
  return (to_user ? uiommufd_mm_fixup_copy(user, local, len) : uiommufd_mm_fixup_copy(local, user, len)) == 0;
#else
  (void)to_user, (void)local, (void)uaddr, (void)len;
  return false;
#endif
}

void set_recoverable_copy_disabled_for_testing(bool disabled) {
  g_disabled_for_testing.store(disabled, std::memory_order_relaxed);
}

Status recoverable_copy(bool to_user, void* local, std::uint64_t uaddr, std::size_t len, std::size_t* done) {
  *done = 0;
  if (len == 0) return Status();
  char* user = reinterpret_cast<char*>(static_cast<std::uintptr_t>(uaddr));
  char* lp = static_cast<char*>(local);
  char* dst = to_user ? user : lp;
  const char* src = to_user ? lp : user;
  if (guarded_run(raw_copy, dst, src, len, uaddr, kChunk, done)) return Status();
  // Redo the faulting chunk (and, should the page have appeared meanwhile, the rest) page by page, so that
  // the copied prefix ends exactly at the first bad page and nothing past it is written.
  const std::size_t base = *done;
  std::size_t more = 0;
  const bool ok = guarded_run(raw_copy, dst + base, src + base, len - base, uaddr + base, kPageSize, &more);
  *done = base + more;
  return ok ? Status() : Status::error(EFAULT);
}

namespace {
struct RunCall {
  void (*fn)(void*);
  void* ctx;
};
// A Mover that runs the call it is handed as its destination.
void run_call(void* call, const void*, std::size_t) {
  const auto* c = static_cast<const RunCall*>(call);
  c->fn(c->ctx);
}
}  // namespace

Status recoverable_run(std::uint64_t uaddr, std::size_t len, void (*fn)(void*), void* ctx) {
  RunCall call{fn, ctx};
  std::size_t done = 0;
  // One chunk: a granule beyond any user address makes guarded_run() call the mover once for all of len.
  constexpr std::size_t kWhole = std::size_t{1} << 62;
  return guarded_run(run_call, reinterpret_cast<char*>(&call), nullptr, len, uaddr, kWhole, &done)
             ? Status()
             : Status::error(EFAULT);
}

#if defined(__x86_64__)
bool recoverable_touch_supported() { return true; }

Status recoverable_touch(std::uint64_t uaddr, std::size_t len, bool write) {
  const int faulted = write ? uiommufd_mm_fixup_touch_write(uaddr, uaddr + len)
                            : uiommufd_mm_fixup_touch_read(uaddr, uaddr + len);
  return faulted ? Status::error(EFAULT) : Status();
}
#else
bool recoverable_touch_supported() { return false; }
Status recoverable_touch(std::uint64_t, std::size_t, bool) { return Status::error(EFAULT); }
#endif

}  // namespace uiommufd::mm_internal
