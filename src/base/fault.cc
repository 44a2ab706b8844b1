#include "uiommufd/base/fault.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <unordered_map>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uiommufd/base/base_lock.h"
#include "uiommufd/base/fork.h"
#include "uiommufd/base/thread_annotations.h"

namespace uiommufd {

// What the thread registry needs of FaultSite's private counters.
struct FaultSiteAccess {
  // Adds a thread's per-thread hits to the sites' totals and zeroes them. The registry lock is held (in a
  // forked child, by the child's only thread, which resets the registry under it).
  static void fold_hits(std::atomic<uint64_t>* hits);
};

namespace {

// Per-thread state. Trivially initialised (constant initialisers, trivial destructors), so every new
// thread starts disarmed with no dynamic TLS initialisation. The counter is atomic because another
// thread of the process may set it through the registry below while this thread checks it.
// Initial-exec: inside the preload library the default model would cost a __tls_get_addr call per site
// check. The library is loaded at start-up (or linked in), so static TLS is always available to it.
#define UIOMMUFD_TLS __attribute__((tls_model("initial-exec"))) constinit thread_local
UIOMMUFD_TLS std::atomic<uint32_t> t_fail_nth{0};
UIOMMUFD_TLS bool t_registered = false;
UIOMMUFD_TLS const char* t_last_injected = nullptr;
UIOMMUFD_TLS uint64_t t_injections = 0;
// Hits of the first kLocalSites sites, by site index. Atomic only so that hits() may read them from
// another thread; this thread's increment is a plain load and store (no locked instruction).
constexpr uint32_t kLocalSites = 64;
UIOMMUFD_TLS std::atomic<uint64_t> t_hits[kLocalSites] = {};
#undef UIOMMUFD_TLS

// Sites by index, for folding a thread's hits into the sites' totals. Constant-initialised, so valid before
// the first site registers.
constinit std::atomic<uint32_t> g_site_count{0};
constinit std::atomic<FaultSite*> g_site_by_index[kLocalSites] = {};

// Registry head. A function-local static with a constant initialiser is constant-initialised, so it is
// valid before any dynamic initialiser runs: sites in other translation units can register in any
// order. Atomic because a dlopen'ed library may register sites while another thread lists them.
std::atomic<FaultSite*>& registry_head() {
  static std::atomic<FaultSite*> head{nullptr};
  return head;
}

// Which thread id owns which counter, so that one thread can arm another's (fail-nth files of other
// threads). A thread enters on its first check or counter access and leaves at exit through a pthread key
// destructor, which runs while its TLS is still valid. Values set for an id that has not entered yet wait
// in `pending`.
// FIXME: a pending value for a thread that exits without ever entering stays behind and would be taken by
// a later thread that reuses the id (after the kernel's pid space wraps).
// A BaseMutex (base/base_lock.h): base sits below the lock validator and cannot use its locks. It is
// innermost: nothing else is taken while it is held.
struct ThreadEntry {
  std::atomic<uint32_t>* counter;
  std::atomic<uint64_t>* hits;  // kLocalSites of them
};
struct ThreadRegistry {
  BaseMutex mu{BaseLockId::kFaultRegistry};
  std::unordered_map<int, ThreadEntry> threads GUARDED_BY(mu);
  std::unordered_map<int, uint32_t> pending GUARDED_BY(mu);
  pthread_key_t exit_key{};
};

// Never destroyed: threads may exit (and leave the registry) during and after static destruction.
ThreadRegistry& registry() {
  static ThreadRegistry* r = [] {
    auto* reg = new ThreadRegistry;
    pthread_key_create(&reg->exit_key, [](void* tid) {
      ThreadRegistry& rr = registry();
      BaseGuard g(rr.mu);
      rr.threads.erase(static_cast<int>(reinterpret_cast<intptr_t>(tid)));
      // Checks after this point on the exiting thread (later TLS destructors) are not counted.
      FaultSiteAccess::fold_hits(t_hits);
    });
    return reg;
  }();
  return *r;
}

void register_self() {
  ThreadRegistry& r = registry();
  const int tid = static_cast<int>(gettid());
  bool registered = true;
  {
    BaseGuard g(r.mu);
    try {
      r.threads[tid] = ThreadEntry{&t_fail_nth, t_hits};
      if (auto it = r.pending.find(tid); it != r.pending.end()) {
        t_fail_nth.store(it->second, std::memory_order_relaxed);
        r.pending.erase(it);
      }
    } catch (const std::bad_alloc&) {
      registered = false;  // a site check cannot fail for this: the next check tries again
    }
  }
  if (!registered) return;
  pthread_setspecific(r.exit_key, reinterpret_cast<void*>(static_cast<intptr_t>(tid)));
  t_registered = true;
}

inline void ensure_registered() {
  if (!t_registered) [[unlikely]]
    register_self();
}

bool thread_exists(int tid) {
  if (tid <= 0) return false;
  return syscall(SYS_tgkill, getpid(), tid, 0) == 0 || errno == EPERM;
}

// The fork handlers (base/fork.h, level kFaultRegistry). The registry lock is held across fork so that the
// child never inherits it held by another thread. In the child, the forking thread's copy holds it: it
// resets the registry under it and then releases it. The child is a copy of the forking thread, counter
// included; the kernel gives a new task a zero counter, so disarm it. The child's only thread has a new
// id and every other entry names a thread of the parent: start afresh. The analysis cannot follow a lock
// taken in one handler and released in another.
void lock_before_fork() NO_THREAD_SAFETY_ANALYSIS { registry().mu.lock(); }
void unlock_in_parent() NO_THREAD_SAFETY_ANALYSIS { registry().mu.unlock(); }
void reset_in_child() NO_THREAD_SAFETY_ANALYSIS {
  ThreadRegistry& r = registry();
  // The parent's threads are gone but their counts happened; their TLS was copied with the rest of memory.
  for (auto& [tid, entry] : r.threads) FaultSiteAccess::fold_hits(entry.hits);
  r.threads.clear();
  r.pending.clear();
  pthread_setspecific(r.exit_key, nullptr);
  t_fail_nth.store(0, std::memory_order_relaxed);
  t_registered = false;
  t_last_injected = nullptr;
  t_injections = 0;
  r.mu.unlock();
}

[[maybe_unused]] const bool g_fork_handlers_set = [] {
  registry();
  set_fork_handlers(ForkLevel::kFaultRegistry, {lock_before_fork, unlock_in_parent, reset_in_child});
  return true;
}();

}  // namespace

void FaultSiteAccess::fold_hits(std::atomic<uint64_t>* hits) {
  const uint32_t n = std::min(g_site_count.load(std::memory_order_acquire), kLocalSites);
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t v = hits[i].load(std::memory_order_relaxed);
    if (v == 0) continue;
    g_site_by_index[i].load(std::memory_order_acquire)->hits_.fetch_add(v, std::memory_order_relaxed);
    hits[i].store(0, std::memory_order_relaxed);
  }
}

FaultSite::FaultSite(const char* name, int err)
    : name_(name), err_(err), index_(g_site_count.fetch_add(1, std::memory_order_acq_rel)) {
  UIOMMUFD_ASSERT(name != nullptr && err > 0 && err <= 4095);
  if (index_ < kLocalSites) g_site_by_index[index_].store(this, std::memory_order_release);
  std::atomic<FaultSite*>& head = registry_head();
  FaultSite* old = head.load(std::memory_order_relaxed);
  do {
    next_ = old;
  } while (!head.compare_exchange_weak(old, this, std::memory_order_release, std::memory_order_relaxed));
}

void fail_nth_set(uint32_t n) {
  ensure_registered();
  t_fail_nth.store(n, std::memory_order_relaxed);
}

uint32_t fail_nth_get() {
  ensure_registered();
  return t_fail_nth.load(std::memory_order_relaxed);
}

Status fail_nth_set_thread(int tid, uint32_t n) {
  if (tid == static_cast<int>(gettid())) {
    fail_nth_set(n);
    return Status();
  }
  if (!thread_exists(tid)) return Status::error(ESRCH);
  ThreadRegistry& r = registry();
  Status st;
  BaseGuard g(r.mu);
  if (auto it = r.threads.find(tid); it != r.threads.end()) {
    it->second.counter->store(n, std::memory_order_relaxed);
  } else {
    try {
      r.pending[tid] = n;
    } catch (const std::bad_alloc&) {
      st = Status::error(ENOMEM);
    }
  }
  return st;
}

Result<uint32_t> fail_nth_get_thread(int tid) {
  if (tid == static_cast<int>(gettid())) return fail_nth_get();
  if (!thread_exists(tid)) return Status::error(ESRCH);
  ThreadRegistry& r = registry();
  uint32_t n = 0;
  BaseGuard g(r.mu);
  if (auto it = r.threads.find(tid); it != r.threads.end()) {
    n = it->second.counter->load(std::memory_order_relaxed);
  } else if (auto p = r.pending.find(tid); p != r.pending.end()) {
    n = p->second;
  }
  return n;
}

uint64_t FaultSite::hits() const {
  uint64_t total = hits_.load(std::memory_order_relaxed);
  if (index_ >= kLocalSites) return total;
  ThreadRegistry& r = registry();
  BaseGuard g(r.mu);
  for (const auto& [tid, entry] : r.threads) total += entry.hits[index_].load(std::memory_order_relaxed);
  return total;
}

bool should_fail(FaultSite& site) {
  // Registered first, so that hits() finds this thread's counters from its first hit on.
  ensure_registered();
  if (site.index_ < kLocalSites) [[likely]] {
    std::atomic<uint64_t>& h = t_hits[site.index_];
    h.store(h.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  } else {
    site.hits_.fetch_add(1, std::memory_order_relaxed);
  }
  uint32_t n = t_fail_nth.load(std::memory_order_relaxed);
  if (n == 0) [[likely]]
    return false;
  // Another thread may overwrite the counter meanwhile; only the decrement that lands decides.
  while (!t_fail_nth.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
    if (n == 0) return false;
  }
  if (n != 1) return false;
  site.injected_.fetch_add(1, std::memory_order_relaxed);
  t_last_injected = site.name_;
  ++t_injections;
  return true;
}

uint64_t injected_on_this_thread() { return t_injections; }

const char* last_injected_fault() { return t_last_injected; }

std::vector<const FaultSite*> fault_sites() {
  std::vector<const FaultSite*> out;
  for (const FaultSite* s = registry_head().load(std::memory_order_acquire); s != nullptr; s = s->next_) {
    out.push_back(s);
  }
  std::sort(out.begin(), out.end(),
            [](const FaultSite* a, const FaultSite* b) { return std::strcmp(a->name(), b->name()) < 0; });
  return out;
}

Result<uint32_t> parse_kstrtouint(std::string_view text) {
  // The kernel parses a NUL-terminated copy of the user's bytes.
  if (size_t nul = text.find('\0'); nul != std::string_view::npos) text = text.substr(0, nul);

  size_t i = 0;
  if (i < text.size() && text[i] == '+') ++i;

  // _parse_integer_fixup_radix: "0x" counts as a hex prefix only when a hex digit follows; otherwise
  // the leading 0 selects octal and the 'x' is left over (EINVAL).
  auto at = [&](size_t k) -> char { return k < text.size() ? text[k] : '\0'; };
  auto hex_value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  unsigned base = 10;
  if (at(i) == '0') {
    if ((at(i + 1) == 'x' || at(i + 1) == 'X') && hex_value(at(i + 2)) >= 0) {
      base = 16;
      i += 2;
    } else {
      base = 8;
    }
  }

  // _parse_integer: accumulate in 64 bits, remembering overflow but consuming every digit.
  uint64_t value = 0;
  bool overflow = false;
  size_t digits_start = i;
  for (; i < text.size(); ++i) {
    int d = hex_value(text[i]);
    if (d < 0 || static_cast<unsigned>(d) >= base) break;
    uint64_t next = 0;
    if (__builtin_mul_overflow(value, base, &next) ||
        __builtin_add_overflow(next, static_cast<uint64_t>(d), &next)) {
      overflow = true;
    }
    value = next;
  }
  if (overflow) return Status::error(ERANGE);
  if (i == digits_start) return Status::error(EINVAL);
  if (i < text.size() && text[i] == '\n') ++i;
  if (i != text.size()) return Status::error(EINVAL);
  if (value > UINT32_MAX) return Status::error(ERANGE);
  return static_cast<uint32_t>(value);
}

}  // namespace uiommufd
