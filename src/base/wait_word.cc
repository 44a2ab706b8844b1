#include "uiommufd/base/wait_word.h"

#include <cerrno>
#include <climits>
#include <ctime>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace uiommufd {

bool futex_wait_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                      std::chrono::steady_clock::time_point deadline) {
  using namespace std::chrono;
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, which is what steady_clock reads here, so a
  // wait interrupted and resumed does not stretch the deadline.
  const auto since_epoch = deadline.time_since_epoch();
  if (deadline <= steady_clock::now()) return word.load(std::memory_order_seq_cst) != expected;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(duration_cast<seconds>(since_epoch).count());
  ts.tv_nsec = static_cast<long>((duration_cast<nanoseconds>(since_epoch) % seconds(1)).count());
  // std::atomic<std::uint32_t> is a plain 32-bit word with the same address (static_assert below).
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  const long r =
      syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word),
              FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, &ts, nullptr, FUTEX_BITSET_MATCH_ANY);
  if (r == 0) return true;
  if (errno == ETIMEDOUT) return word.load(std::memory_order_seq_cst) != expected;
  return true;  // EAGAIN (the word already changed) or EINTR: the caller re-checks
}

void futex_wake_all(const std::atomic<std::uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX,
          nullptr, nullptr, 0);
}

bool WaitWord::Waiter::wait(std::chrono::steady_clock::time_point deadline) {
  bool in_time = true;
  while (w_.word_.load(std::memory_order_seq_cst) == seen_) {
    if (!futex_wait_until(w_.word_, seen_, deadline)) {
      in_time = false;
      break;
    }
  }
  seen_ = w_.word_.load(std::memory_order_seq_cst);
  return in_time;
}

bool WaitWord::wait_change(std::uint32_t seen, std::chrono::steady_clock::time_point deadline) const {
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  bool in_time = true;
  while (word_.load(std::memory_order_seq_cst) == seen) {
    if (!futex_wait_until(word_, seen, deadline)) {
      in_time = false;
      break;
    }
  }
  waiters_.fetch_sub(1, std::memory_order_seq_cst);
  return in_time;
}

}  // namespace uiommufd
