// Fault injection in the model of Linux's per-thread fail-nth counter
// (lib/fault-inject.c should_fail_ex, /proc/<pid>/task/<tid>/fail-nth; docs/fault-injection.md#fail-nth-file
// and #counter to #site-budget).
//
// A fault site is a place where the kernel can be made to fail: object lookup, allocation, user copy,
// pinning, accounting, domain map. Each site checks should_fail() (or inject()) once per pass.
//
// Every thread has an unsigned 32-bit counter, 0 (disarmed) when the thread starts and in a forked
// child. fail_nth_set(N) arms it. Each site check on that thread then does: if the counter is non-zero,
// decrement it; if that made it 0, this check fails. So N = 1 fails the very next check, N = 3 the
// third, and exactly one check fails per arming; afterwards the counter is 0 again. Only our sites
// consume the counter, and only the calling thread's. Reading or setting the counter does not.
//
// Sites are defined at namespace scope in a .cc file:
//
//   UIOMMUFD_FAULT_SITE(g_fault_area_alloc, "iopt.area_alloc", ENOMEM);
//   ...
//   TRY(inject(g_fault_area_alloc));
//
// and register themselves at static-initialisation time, independent of initialisation order. Sites
// must have static storage duration and must not live in code that is unloaded (dlclose): they are
// never unregistered.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>
#include <vector>

#include "uiommufd/base/result.h"
#include "uiommufd/base/status.h"

namespace uiommufd {

class FaultSite {
 public:
  // `name` is a string literal of the form "layer.what" (e.g. "pages.pin"); `err` is the errno an
  // injected failure returns from inject() (1..4095).
  FaultSite(const char* name, int err);

  FaultSite(const FaultSite&) = delete;
  FaultSite& operator=(const FaultSite&) = delete;

  const char* name() const { return name_; }
  int error() const { return err_; }

  // Statistics over all threads since start-up, for reports; relaxed, so only eventually consistent.
  // Hits are counted per thread (a check must not pay for a shared read-modify-write) and summed here.
  uint64_t hits() const;
  uint64_t injected() const { return injected_.load(std::memory_order_relaxed); }

 private:
  friend bool should_fail(FaultSite& site);
  friend std::vector<const FaultSite*> fault_sites();
  friend struct FaultSiteAccess;

  const char* const name_;
  const int err_;
  const uint32_t index_;           // registration order; selects the per-thread hit counter
  std::atomic<uint64_t> hits_{0};  // exited threads' hits, and every hit of sites past the per-thread ones
  std::atomic<uint64_t> injected_{0};
  FaultSite* next_ = nullptr;  // registry link, written once before publication
};

// Arms (N > 0) or disarms (N = 0) the calling thread's counter, replacing any previous value.
void fail_nth_set(uint32_t n);
// The calling thread's counter. After an armed operation: 0 means the armed failure fired (or nothing
// was armed), non-zero means fewer than N sites were reached and the counter is still armed.
uint32_t fail_nth_get();

// The counter of thread `tid` of this process (gettid() numbering), for the fail-nth files of other
// threads (/proc/self/task/<tid>/fail-nth). For the calling thread's own id these are fail_nth_set /
// fail_nth_get. Safe against the target thread's concurrent checks: exactly one of them sees the count
// reach 0.
// A thread that has not yet run a check is not known by address; a value set for it is kept by id and
// taken over when it first checks or reads its counter.
// Errors: ESRCH if no thread of this process has that id; ENOMEM if the value for a thread not yet known
// cannot be kept.
Status fail_nth_set_thread(int tid, uint32_t n);
Result<uint32_t> fail_nth_get_thread(int tid);

// The check a site performs: counts a hit, consumes the calling thread's counter as described above,
// and returns true exactly when this check is the one that fails. Cheap when disarmed: thread-local
// loads and one thread-local increment, no shared read-modify-write.
bool should_fail(FaultSite& site);

// OK, or Status::error(site.error()) when should_fail(site).
inline Status inject(FaultSite& site) { return should_fail(site) ? Status::error(site.error()) : Status(); }

// How many checks have failed on the calling thread (since it started or the process forked). A caller
// that must tell an injected failure from a real one compares it before and after.
uint64_t injected_on_this_thread();

// Name of the last site that failed on the calling thread, or nullptr if none has (since the thread
// started or the process forked). Meant for sweep failure messages.
const char* last_injected_fault();

// Every registered site, sorted by name.
std::vector<const FaultSite*> fault_sites();

// Parses `text` with the rules of the kernel's kstrtouint(s, 0, &res), as a write to fail-nth does:
// optional leading '+'; base from the prefix ("0x"/"0X" followed by a hex digit: hex; other leading
// "0": octal; otherwise decimal); digits; at most one trailing '\n'; nothing else (no spaces, no
// sign '-'). A NUL ends the text, as it would the kernel's C string.
// Errors: EINVAL for empty text, no digits, or anything left over; ERANGE if the value exceeds
// UINT32_MAX (checked before leftovers, as the kernel does).
Result<uint32_t> parse_kstrtouint(std::string_view text);

}  // namespace uiommufd

// Defines a fault site `ident` (external linkage; prefix with `static` to keep it file-local).
#define UIOMMUFD_FAULT_SITE(ident, name, err) ::uiommufd::FaultSite ident(name, err)
// Declares a site defined in another file of the same layer.
#define UIOMMUFD_DECLARE_FAULT_SITE(ident) extern ::uiommufd::FaultSite ident
