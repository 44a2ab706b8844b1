#include "uiommufd/mm/accounting.h"

#include <atomic>
#include <cerrno>
#include <limits>
#include <map>

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "accounting_internal.h"

#include "uiommufd/base/assert.h"
#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/mm/mm.h"

namespace uiommufd {
namespace {

// The kernel's accounting fault point (pages.c, docs/fault-injection.md#kernel-sites): ENOMEM before any
// counter moves.
UIOMMUFD_FAULT_SITE(g_fault_account, "pages.account", ENOMEM);

constexpr std::uint64_t kUnlimited = std::numeric_limits<std::uint64_t>::max();

// Relaxed ordering throughout: the counters publish no other data, and each update is a single atomic
// read-modify-write, so the limit check cannot be raced past.
//
// kMm and pinned_vm live in the Mm charged (mm.h). kUser counts per user id: the kernel's user_struct is
// shared by every process of that user, which the shared-mode server, charging several clients, sees as
// one counter per uid (in-process mode has the one user of the process).
constinit lockdep::LockClassKey g_users_key{"mm.accounting_users"};
struct UserCounters {
  lockdep::Mutex mu{g_users_key};
  // Nodes never move or go: a counter handed out stays valid while charges refer to it.
  std::map<uid_t, std::atomic<std::uint64_t>> by_uid GUARDED_BY(mu);
};
UserCounters& users() {
  static UserCounters* const u = new UserCounters();  // outlives static destructors that may uncharge
  return *u;
}
std::atomic<std::uint64_t>& user_counter(uid_t uid) {
  UserCounters& u = users();
  lockdep::MutexGuard g(u.mu);
  return u.by_uid[uid];  // std::bad_alloc here is a program abort, as any allocation failure of a leaf map
}

// 0: no override; otherwise the override plus one (so one atomic carries "set" and the value; an override of
// UINT64_MAX is stored as UINT64_MAX and read back as UINT64_MAX - 1, still unreachable).
constinit std::atomic<std::uint64_t> g_limit_override_plus_one{0};

std::atomic<std::uint64_t>& counter_for(const Mm& mm, AccountMode mode) {
  UIOMMUFD_ASSERT(mode == AccountMode::kUser || mode == AccountMode::kMm);
  return mode == AccountMode::kUser ? user_counter(mm.uid()) : mm.locked_vm();
}

// Soft RLIMIT_MEMLOCK of the process behind `mm` in pages, as the kernel's task_rlimit(task,
// RLIMIT_MEMLOCK) >> PAGE_SHIFT.
std::uint64_t real_memlock_limit_pages(const Mm& mm) {
  rlimit rl{};
  // prlimit on a process that has exited fails: nothing more can be charged to it.
  if (prlimit(mm.pid(), RLIMIT_MEMLOCK, nullptr, &rl) != 0) return 0;
  if (rl.rlim_cur == RLIM_INFINITY) return kUnlimited;
  return static_cast<std::uint64_t>(rl.rlim_cur) >> kPageShift;
}

// Adds npages to `counter` unless the total would exceed `limit` (or wrap). `bypass` is asked at most once,
// and only when the limit would be exceeded: the capability query is a syscall the common case skips.
template <typename Bypass>
Status charge_counter(std::atomic<std::uint64_t>& counter, std::uint64_t npages, std::uint64_t limit, Bypass bypass) {
  std::uint64_t cur = counter.load(std::memory_order_relaxed);
  bool bypassed = false;
  for (;;) {
    std::uint64_t next = 0;
    if (!checked_add(cur, npages, &next)) return Status::error(ENOMEM);
    if (next > limit && !bypassed) {
      if (!bypass()) return Status::error(ENOMEM);
      bypassed = true;
    }
    if (counter.compare_exchange_weak(cur, next, std::memory_order_relaxed)) return Status();
  }
}

// Subtracts with a check before the store, so a caller bug aborts without first corrupting the counter.
void uncharge_counter(std::atomic<std::uint64_t>& counter, std::uint64_t npages) {
  std::uint64_t cur = counter.load(std::memory_order_relaxed);
  do {
    UIOMMUFD_ASSERT(cur >= npages);
  } while (!counter.compare_exchange_weak(cur, cur - npages, std::memory_order_relaxed));
}

}  // namespace

bool has_capability(int cap) { return process_has_capability(0, cap); }

bool process_has_capability(pid_t pid, int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, pid};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[CAP_TO_INDEX(cap)].effective & CAP_TO_MASK(cap)) != 0;
}

namespace {
// 0: no override; 1: as if without CAP_IPC_LOCK; 2: as if with it.
constinit std::atomic<int> g_cap_ipc_lock_override{0};
}  // namespace

void set_cap_ipc_lock_for_testing(std::optional<bool> has) {
  g_cap_ipc_lock_override.store(has ? (*has ? 2 : 1) : 0, std::memory_order_relaxed);
}

bool has_cap_ipc_lock() {
  const int o = g_cap_ipc_lock_override.load(std::memory_order_relaxed);
  return o ? o == 2 : has_capability(CAP_IPC_LOCK);
}

AccountMode default_account_mode(bool ctx_mm_mode) {
  return mm_internal::account_mode_for(has_cap_ipc_lock(), ctx_mm_mode);
}

Status account_charge(AccountMode mode, std::uint64_t npages) {
  return account_charge(Mm::current_ref(), mode, npages);
}

Status account_charge(const Mm& mm, AccountMode mode, std::uint64_t npages) {
  if (npages == 0) return Status();
  if (mode != AccountMode::kNone) {
    TRY(inject(g_fault_account));
    const std::uint64_t override_plus_one = g_limit_override_plus_one.load(std::memory_order_relaxed);
    const bool overridden = override_plus_one != 0;
    const std::uint64_t limit = overridden ? override_plus_one - 1 : real_memlock_limit_pages(mm);
    // kUser: the limit always applies; pages only get this mode when the task lacked CAP_IPC_LOCK.
    // kMm: account_locked_vm(..., bypass_rlim = capable(CAP_IPC_LOCK)), unless a test override is set.
    const bool cap_may_bypass = mode == AccountMode::kMm && !overridden;
    TRY(charge_counter(counter_for(mm, mode), npages, limit,
                       [&] { return cap_may_bypass && process_has_capability(mm.pid(), CAP_IPC_LOCK); }));
  }
  // pinned_vm is statistics only, never limited; a wrap would need 2^64 pinned pages.
  mm.pinned_vm().fetch_add(npages, std::memory_order_relaxed);
  return Status();
}

void account_uncharge(AccountMode mode, std::uint64_t npages) {
  account_uncharge(Mm::current_ref(), mode, npages);
}

void account_uncharge(const Mm& mm, AccountMode mode, std::uint64_t npages) {
  if (npages == 0) return;
  if (mode != AccountMode::kNone) uncharge_counter(counter_for(mm, mode), npages);
  uncharge_counter(mm.pinned_vm(), npages);
}

std::uint64_t account_locked_pages(AccountMode mode) { return account_locked_pages(Mm::current_ref(), mode); }

std::uint64_t account_locked_pages(const Mm& mm, AccountMode mode) {
  if (mode == AccountMode::kNone) return 0;
  return counter_for(mm, mode).load(std::memory_order_relaxed);
}

std::uint64_t account_pinned_vm() { return account_pinned_vm(Mm::current_ref()); }

std::uint64_t account_pinned_vm(const Mm& mm) { return mm.pinned_vm().load(std::memory_order_relaxed); }

void set_memlock_limit_for_testing(std::optional<std::uint64_t> pages) {
  std::uint64_t stored = 0;
  if (pages) stored = *pages == kUnlimited ? kUnlimited : *pages + 1;
  g_limit_override_plus_one.store(stored, std::memory_order_relaxed);
}

}  // namespace uiommufd
