#include "uiommufd/base/hazard.h"

#include <new>

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uiommufd/base/sanitizers.h"

namespace uiommufd {
namespace hazard_internal {

namespace {

constinit std::atomic<Record*> g_records{nullptr};

pthread_key_t g_exit_key;

void on_thread_exit(void* record) {
  auto* r = static_cast<Record*>(record);
  // A lookup later in this thread's exit (another destructor) claims a record afresh instead of using
  // one another thread may have taken meanwhile.
  t_record = nullptr;
  r->ptr.store(nullptr, std::memory_order_release);
  r->in_use.store(false, std::memory_order_release);
}

bool make_exit_key() { return pthread_key_create(&g_exit_key, on_thread_exit) == 0; }

bool register_membarrier() {
#if defined(UIOMMUFD_SANITIZED) || !defined(SYS_membarrier)
  return false;
#else
  const long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (cmds < 0 || (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
#endif
}

// Registered before the first record is handed out, so that readers skip their fence from the start.
bool setup_asymmetric() {
  const bool ok = register_membarrier();
  if (ok) g_asymmetric.store(true, std::memory_order_release);
  return ok;
}

}  // namespace

constinit std::atomic<bool> g_asymmetric{false};
constinit thread_local Record* t_record __attribute__((tls_model("initial-exec"))) = nullptr;

Record* claim_record() {
  static const bool key_ok = make_exit_key();
  static const bool asymmetric [[maybe_unused]] = setup_asymmetric();
  for (Record* r = g_records.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    bool expected = false;
    if (!r->in_use.load(std::memory_order_relaxed) &&
        r->in_use.compare_exchange_strong(expected, true, std::memory_order_acq_rel))
      return r;
  }
  auto* r = new (std::nothrow) Record;
  if (r == nullptr) return nullptr;
  r->in_use.store(true, std::memory_order_relaxed);
  Record* head = g_records.load(std::memory_order_relaxed);
  do {
    r->next = head;
  } while (!g_records.compare_exchange_weak(head, r, std::memory_order_acq_rel, std::memory_order_relaxed));
  // Without the key the record is never handed back; it still works, it is only not reused.
  if (key_ok) pthread_setspecific(g_exit_key, r);
  return r;
}

}  // namespace hazard_internal

void hazard_wait_unprotected(const void* p) {
  using hazard_internal::Record;
  // Set (if ever) before any record was handed out, and so before anything could be protected.
  // Without membarrier the caller's sequentially consistent clear and the sequentially consistent loads
  // below pair with the readers' announcements directly.
#if defined(SYS_membarrier)
  if (hazard_internal::g_asymmetric.load(std::memory_order_acquire))
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
#endif
  for (Record* r = hazard_internal::g_records.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    // A protection of p lasts from a lookup's first read to its count: a few instructions, unless the
    // reader was preempted. Yield rather than spin hot, which could keep that reader off the CPU.
    while (r->ptr.load(std::memory_order_seq_cst) == p) sched_yield();
  }
}

}  // namespace uiommufd
