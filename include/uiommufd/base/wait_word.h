// WaitWord: a 32-bit word that threads can sleep on until it changes, woken by whoever changes it (a
// futex). The engine's waits are of this kind, the counterpart of the kernel's wait queues: a destroy
// waiting for operations in flight on an object, an access destroy waiting for a move in another
// thread, an unmap waiting for an access that is being destroyed to let go. Nothing polls.
//
// The word is a generation; waiters re-check their own condition after every wake. A notify() costs one
// load when nobody waits (no system call, no write to a shared line).
//
// Lifetime: a changer touches the WaitWord after making its change, so the WaitWord must outlive every
// changer, not only the waiters: one that a waiter may free as soon as it sees the change (an object's
// own count) cannot live in that object. The engine keeps such words in the longer-lived owner (the
// Context's destroy wait), or changes them under a lock that the freeing thread must take first.
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
    if (waiters_.load(std::memory_order_seq_cst) != 0) futex_wake_all(word_);
  }
  // Tells the waiters that state outside the word changed (the caller changed it first, sequentially
  // consistent): a new generation and a wake-up if anyone waits, nothing else otherwise.
  void notify() {
    if (waiters_.load(std::memory_order_seq_cst) == 0) return;
    word_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(word_);
  }
  // Sleeps until the word differs from `seen` or the deadline passes; false on the deadline. For a
  // condition kept in the word itself (bump()); a condition kept elsewhere needs a Waiter.
  bool wait_change(std::uint32_t seen, std::chrono::steady_clock::time_point deadline) const;

  // A waiter for a condition kept outside the word (woken by notify()): announced from construction, so
  // it is made before the condition is first read; then read the condition, and wait() while it is false.
  class Waiter {
   public:
    explicit Waiter(const WaitWord& w) : w_(w) {
      w_.waiters_.fetch_add(1, std::memory_order_seq_cst);
      seen_ = w_.word_.load(std::memory_order_seq_cst);
    }
    ~Waiter() { w_.waiters_.fetch_sub(1, std::memory_order_seq_cst); }
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;
    // Sleeps until a notify() after the previous read of the word (construction or the last wait), or
    // the deadline; false on the deadline.
    bool wait(std::chrono::steady_clock::time_point deadline);

   private:
    const WaitWord& w_;
    std::uint32_t seen_;
  };

 private:
  std::atomic<std::uint32_t> word_{0};
  mutable std::atomic<std::uint32_t> waiters_{0};
};

}  // namespace uiommufd
