// Hazard pointers: lock-free readers of a shared slot that take a counted reference to what they find,
// without the object being freed between the read and the count.
//
// The window they close: a reader loads a pointer from a slot, and before it can bump the object's count
// another thread unpublishes the object and frees it. A reader announces the pointer it is about to use
// in a per-thread record (protect()), re-reads the slot to check the object is still published, and only
// then touches it. A reclaimer clears the slot first and then waits until no record announces the pointer
// (wait_unprotected()) before freeing.
//
// The announce-then-recheck on the reader's side and the clear-then-scan on the reclaimer's side form a
// store-then-load pair on each side, which must not be reordered on either. The reader's barrier is moved
// to the reclaimer with membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), which runs a full barrier on every
// CPU running a thread of this process: readers pay a plain store and a compiler barrier, and the rare
// reclaimer pays one system call. Where membarrier is unavailable (old kernels, seccomp), and under the
// sanitizers (which do not model it), every access of the pair is sequentially consistent instead.
//
// One record per thread, taken from a process-wide list on the thread's first protect() and handed back
// at thread exit; records are never freed, so a reclaimer can walk the list at any time. A record holds
// one pointer: a thread protects one object at a time (nesting, as from a signal handler that looks up
// an object while the interrupted code is between its read and its count, is detected and falls back to
// the caller's slow path).
#pragma once

#include <atomic>

namespace uiommufd {

namespace hazard_internal {
struct Record {
  std::atomic<const void*> ptr{nullptr};
  std::atomic<bool> in_use{false};
  Record* next = nullptr;  // written once, before the record is pushed on the list
};
// Set once membarrier is registered for this process, before any record is handed out: from then on
// readers need no fence of their own.
extern constinit std::atomic<bool> g_asymmetric;
// This thread's record. Initial-exec: read on every lookup, from inside the preload library too, where
// the default model would cost a __tls_get_addr call.
extern constinit thread_local Record* t_record __attribute__((tls_model("initial-exec")));
Record* claim_record();

inline Record* this_thread_record() {
  if (t_record == nullptr) [[unlikely]]
    t_record = claim_record();
  return t_record;
}
// The reader's half of the store-then-load pair. With membarrier the reclaimer supplies the barrier, so a
// plain store that the compiler keeps before the re-read is enough; without it, a sequentially consistent
// store, which with the sequentially consistent re-read and the reclaimer's own sequentially consistent
// clear and scan cannot be reordered the wrong way (and is what the sanitizers can follow).
inline void announce(Record* r, const void* p) {
  if (g_asymmetric.load(std::memory_order_relaxed)) [[likely]] {
    r->ptr.store(p, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    r->ptr.store(p, std::memory_order_seq_cst);
  }
}
inline void retract(Record* r) { r->ptr.store(nullptr, std::memory_order_release); }
inline bool busy(const Record* r) { return r->ptr.load(std::memory_order_relaxed) != nullptr; }
}  // namespace hazard_internal

// Protects one pointer read from a slot, from protect() until the guard is reset or destroyed.
class HazardGuard {
 public:
  HazardGuard() = default;
  HazardGuard(const HazardGuard&) = delete;
  HazardGuard& operator=(const HazardGuard&) = delete;
  ~HazardGuard() { reset(); }

  // Whether this thread's record is free to use now. False while another guard of this thread (an outer
  // call interrupted by a signal handler) holds it: the caller must take its locked path instead.
  bool available() const {
    hazard_internal::Record* r = hazard_internal::this_thread_record();
    return r != nullptr && !hazard_internal::busy(r);
  }

  // Reads `slot` and returns what it held, protected: the object cannot be freed by a reclaimer that
  // cleared the slot and then called wait_unprotected() until this guard lets go. Null when the slot is
  // null. Precondition: available().
  template <typename T>
  T* protect(const std::atomic<T*>& slot) {
    record_ = hazard_internal::this_thread_record();
    T* p = slot.load(std::memory_order_acquire);
    for (;;) {
      if (p == nullptr) {
        reset();
        return nullptr;
      }
      hazard_internal::announce(record_, p);
      T* again = slot.load(std::memory_order_seq_cst);
      if (again == p) return p;
      p = again;
    }
  }

  // Stops protecting. Idempotent.
  void reset() {
    if (record_ != nullptr) {
      hazard_internal::retract(record_);
      record_ = nullptr;
    }
  }

 private:
  hazard_internal::Record* record_ = nullptr;
};

// Returns once no thread protects `p`. Call after every slot that published `p` has been cleared, each
// with a sequentially consistent store; from then on no new protection of `p` can succeed, so afterwards
// `p` may be freed.
void hazard_wait_unprotected(const void* p);

}  // namespace uiommufd
