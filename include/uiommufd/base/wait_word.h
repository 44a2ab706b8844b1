// WaitWord: a 32-bit word that threads can sleep on until it changes, woken by whoever changes it (a
// futex). The engine's waits are of this kind, the counterpart of the kernel's wait queues: a destroy
// waiting for operations in flight on an object, an access destroy waiting for a move in another
// thread, an unmap waiting for an access that is being destroyed to let go. Nothing polls.
//
// The word is a generation or a count whose owner decides what a change means; waiters re-check their
// own condition after every wake. A change costs one extra load when nobody waits (no system call).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace uiommufd {

// Sleeps while `word` holds `expected`, until a wake or `deadline` (steady clock). Returns false only when
// the deadline passed; a wake, a changed word or a spurious return give true (the caller re-checks).
bool futex_wait_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                      std::chrono::steady_clock::time_point deadline);
// Wakes every thread sleeping on `word`.
void futex_wake_all(const std::atomic<std::uint32_t>& word);

// A word with its own waiter count, so that a change wakes only when someone sleeps. Every operation
// is sequentially consistent: a waiter announces itself, then reads the word; a changer writes the word,
// then reads the announcement; one of them always sees the other.
class WaitWord {
 public:
  explicit WaitWord(std::uint32_t initial = 0) : word_(initial) {}
  WaitWord(const WaitWord&) = delete;
  WaitWord& operator=(const WaitWord&) = delete;

  std::uint32_t load() const { return word_.load(std::memory_order_seq_cst); }
  // Adds one (a new generation) and wakes the waiters.
  void bump() {
    word_.fetch_add(1, std::memory_order_seq_cst);
    wake();
  }
  // Wakes the waiters after the owner changed the word by other means (see word()).
  void wake() {
    if (waiters_.load(std::memory_order_seq_cst) != 0) futex_wake_all(word_);
  }
  // Sleeps until the word differs from `seen` or the deadline passes; false on the deadline.
  bool wait_change(std::uint32_t seen, std::chrono::steady_clock::time_point deadline) const;
  // The word itself, for an owner that keeps a count in it (Object's users).
  std::atomic<std::uint32_t>& word() { return word_; }
  const std::atomic<std::uint32_t>& word() const { return word_; }

 private:
  std::atomic<std::uint32_t> word_{0};
  mutable std::atomic<std::uint32_t> waiters_{0};
};

}  // namespace uiommufd
