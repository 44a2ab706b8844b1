#include "uiommufd/mm/accounting.h"

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <limits>

#include "accounting_internal.h"
#include "uiommufd/base/assert.h"
#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/page.h"

namespace uiommufd {
namespace {

// The kernel's accounting fault point (pages.c, docs/fault-injection.md#kernel-sites): ENOMEM before any
// counter moves.
UIOMMUFD_FAULT_SITE(g_fault_account, "pages.account", ENOMEM);

constexpr std::uint64_t kUnlimited = std::numeric_limits<std::uint64_t>::max();

// Relaxed ordering throughout: the counters publish no other data, and each update is a single atomic
// read-modify-write, so the limit check cannot be raced past.
constinit std::atomic<std::uint64_t> g_user_locked_vm{0};
constinit std::atomic<std::uint64_t> g_mm_locked_vm{0};
constinit std::atomic<std::uint64_t> g_pinned_vm{0};

// 0: no override; otherwise the override plus one (so one atomic carries "set" and the value; an override of
// UINT64_MAX is stored as UINT64_MAX and read back as UINT64_MAX - 1, still unreachable).
constinit std::atomic<std::uint64_t> g_limit_override_plus_one{0};

std::atomic<std::uint64_t>& counter_for(AccountMode mode) {
  UIOMMUFD_ASSERT(mode == AccountMode::kUser || mode == AccountMode::kMm);
  return mode == AccountMode::kUser ? g_user_locked_vm : g_mm_locked_vm;
}

// Soft RLIMIT_MEMLOCK in pages, as the kernel's task_rlimit(task, RLIMIT_MEMLOCK) >> PAGE_SHIFT.
std::uint64_t real_memlock_limit_pages() {
  rlimit rl{};
  if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0) return 0;  // cannot fail for a valid resource; be strict if it does
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

bool has_capability(int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[CAP_TO_INDEX(cap)].effective & CAP_TO_MASK(cap)) != 0;
}

bool has_cap_ipc_lock() { return has_capability(CAP_IPC_LOCK); }

AccountMode default_account_mode(bool ctx_mm_mode) {
  return mm_internal::account_mode_for(has_cap_ipc_lock(), ctx_mm_mode);
}

Status account_charge(AccountMode mode, std::uint64_t npages) {
  if (npages == 0) return Status();
  if (mode != AccountMode::kNone) {
    TRY(inject(g_fault_account));
    const std::uint64_t override_plus_one = g_limit_override_plus_one.load(std::memory_order_relaxed);
    const bool overridden = override_plus_one != 0;
    const std::uint64_t limit = overridden ? override_plus_one - 1 : real_memlock_limit_pages();
    // kUser: the limit always applies; pages only get this mode when the task lacked CAP_IPC_LOCK.
    // kMm: account_locked_vm(..., bypass_rlim = capable(CAP_IPC_LOCK)), unless a test override is set.
    const bool cap_may_bypass = mode == AccountMode::kMm && !overridden;
    TRY(charge_counter(counter_for(mode), npages, limit, [&] { return cap_may_bypass && has_cap_ipc_lock(); }));
  }
  // pinned_vm is statistics only, never limited; a wrap would need 2^64 pinned pages.
  g_pinned_vm.fetch_add(npages, std::memory_order_relaxed);
  return Status();
}

void account_uncharge(AccountMode mode, std::uint64_t npages) {
  if (npages == 0) return;
  if (mode != AccountMode::kNone) uncharge_counter(counter_for(mode), npages);
  uncharge_counter(g_pinned_vm, npages);
}

std::uint64_t account_locked_pages(AccountMode mode) {
  if (mode == AccountMode::kNone) return 0;
  return counter_for(mode).load(std::memory_order_relaxed);
}

std::uint64_t account_pinned_vm() { return g_pinned_vm.load(std::memory_order_relaxed); }

void set_memlock_limit_for_testing(std::optional<std::uint64_t> pages) {
  std::uint64_t stored = 0;
  if (pages) stored = *pages == kUnlimited ? kUnlimited : *pages + 1;
  g_limit_override_plus_one.store(stored, std::memory_order_relaxed);
}

}  // namespace uiommufd
