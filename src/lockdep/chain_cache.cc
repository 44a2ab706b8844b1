#include "chain_cache.h"

namespace uiommufd::lockdep {

bool ChainCache::insert(std::uint64_t key) {
  for (std::size_t i = key & kMask;; i = (i + 1) & kMask) {
    std::uint64_t slot = slots_[i].load(std::memory_order_acquire);
    if (slot == key) return true;
    if (slot != 0) continue;
    if (size_.load(std::memory_order_relaxed) >= kMaxFill) return false;
    if (slots_[i].compare_exchange_strong(slot, key, std::memory_order_acq_rel)) {
      size_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    // Another thread filled this slot first; it may have inserted the same key.
    if (slot == key) return true;
  }
}

void ChainCache::clear() {
  for (std::size_t i = 0; i < kMaxChains; ++i) slots_[i].store(0, std::memory_order_relaxed);
  size_.store(0, std::memory_order_relaxed);
}

}  // namespace uiommufd::lockdep
