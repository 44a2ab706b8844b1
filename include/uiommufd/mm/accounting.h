// Accounting of pinned pages against RLIMIT_MEMLOCK, in the kernel's three modes
// (docs/semantics.md#pages-creation for the choice of mode, #accounting for the rules; kernel:
// drivers/iommu/iommufd/pages.c, incr_user_locked_vm / update_mm_locked_vm / iopt_pages_update_pinned).
//
// Units are pages of kPageSize. The caller pins first and charges after (as the kernel does, comparing
// npinned with last_npinned); when the charge fails it unpins what it just pinned. It uncharges exactly
// what it charged, in the same mode, as soon as the pin count drops.
//
// Charges go to an Mm (mm.h): the address space the pages come from, as the kernel's pages->source_mm and
// source_user. kMm and pinned_vm are counters of that Mm; kUser is one counter per user id (the Mm's
// process's real uid). The overloads without an Mm charge Mm::current_ref().
//
// Differences from the kernel, by design of a user-space engine:
// * kUser: the kernel's user->locked_vm is shared by every process of the same uid. Ours is shared by the
//   Mms of one engine: in-process mode, two processes of one user each get the full limit; the shared-mode
//   server (docs/shared.md) has one counter per uid across its clients, as the kernel.
// * kMm: the kernel's mm->locked_vm also holds the process's mlock()ed pages and the limit check sees
//   them. Ours counts only what was charged here.
// * The limit is read from the charged process's soft RLIMIT_MEMLOCK at each charge (prlimit), as the
//   kernel reads the source task's rlimit each time; a process that has exited has a limit of 0.
//
// Thread safety: all functions may be called from any thread concurrently. Counters are atomics updated
// with compare-and-swap, so the limit check and the update are one atomic step; no lock is taken, so these
// may be called with any engine lock held.
#pragma once

#include <cstdint>
#include <optional>

#include <sys/types.h>

#include "uiommufd/base/status.h"

namespace uiommufd {

enum class AccountMode : std::uint8_t {
  kNone,  // nothing limited (the pinning task has CAP_IPC_LOCK)
  kUser,  // charged to the user's locked_vm; here one counter per process (see above)
  kMm,    // charged to the process's locked_vm (VFIO-compatible mode)
};

// The mode new pages get (docs/semantics.md#pages-creation): kNone if this process has CAP_IPC_LOCK in its
// effective set, else kUser; then, if ctx_mm_mode and the result is kUser, kMm. Reads the capability on each
// call (capget).
AccountMode default_account_mode(bool ctx_mm_mode);
// Whether CAP_IPC_LOCK is in this process's effective capability set (capget; false if capget fails).
bool has_cap_ipc_lock();
// Whether this process has capability `cap` (CAP_* from <linux/capability.h>) in its effective set.
bool has_capability(int cap);
// The same for process `pid` (0: this process); false if it cannot be read.
bool process_has_capability(pid_t pid, int cap);
// For tests: what has_cap_ipc_lock() answers (and so which mode new pages get), whatever this process's
// capabilities; nullopt restores the real answer.
void set_cap_ipc_lock_for_testing(std::optional<bool> has);

class Mm;

// Charges npages already-pinned pages to `mode`'s counter.
// * kNone never fails.
// * kUser and kMm: first the fault site "pages.account" (ENOMEM). Then ENOMEM when the new total would
//   exceed the limit, soft RLIMIT_MEMLOCK / kPageSize (RLIM_INFINITY: unlimited), or would wrap.
//   In kMm mode CAP_IPC_LOCK lifts the limit; in kUser mode the limit always applies (the kernel's rule:
//   pages only get kUser when the task lacked CAP_IPC_LOCK at creation).
// * Every mode that succeeds also adds npages to the pinned_vm statistic, which has no limit.
// On error nothing changed. npages 0 succeeds without checking the fault site (nothing to charge; the
// kernel skips accounting when npinned == last_npinned).
Status account_charge(AccountMode mode, std::uint64_t npages);
Status account_charge(const Mm& mm, AccountMode mode, std::uint64_t npages);
// Undoes a successful account_charge(mode, npages) (in whole or in parts). Never fails; uncharging more
// than the counter holds is a caller bug and aborts (UIOMMUFD_ASSERT).
void account_uncharge(AccountMode mode, std::uint64_t npages);
void account_uncharge(const Mm& mm, AccountMode mode, std::uint64_t npages);
// The current total of `mode`'s counter, in pages (kNone: always 0). A snapshot: concurrent charges may
// change it at once.
std::uint64_t account_locked_pages(AccountMode mode);
std::uint64_t account_locked_pages(const Mm& mm, AccountMode mode);
// The pinned_vm statistic: pages charged in all modes, in pages.
std::uint64_t account_pinned_vm();
std::uint64_t account_pinned_vm(const Mm& mm);

// For tests: replaces the RLIMIT_MEMLOCK-derived limit (in pages) of kUser and kMm; nullopt restores the
// real limit. While an override is set, kMm also ignores CAP_IPC_LOCK, so tests running with the
// capability (as root) can reach ENOMEM. An override of UINT64_MAX pages means unlimited.
void set_memlock_limit_for_testing(std::optional<std::uint64_t> pages);

}  // namespace uiommufd
