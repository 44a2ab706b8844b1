// The set of validated lock chains, keyed by 64-bit chain key. Lock-free: a repeated acquisition sequence
// costs one probe of an open-addressed table, with no lock taken.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lockdep {

class ChainCache {
 public:
  constexpr ChainCache() = default;

  // The first chain key, before any lock is held; never 0, which marks an empty slot.
  static constexpr std::uint64_t kInitialKey = 0x9e3779b97f4a7c15ULL;

  // The key of a chain extended by one held lock. The lock's identity includes how it was taken, since
  // a shared and an exclusive acquisition of one class validate differently.
  static std::uint64_t extend(std::uint64_t key, std::uint32_t class_id, detail::Read read, bool trylock) {
    std::uint64_t id = static_cast<std::uint64_t>(class_id) | static_cast<std::uint64_t>(read) << 32 |
                       static_cast<std::uint64_t>(trylock) << 40;
    // For a fixed lock, multiply-by-odd and xor-shift are both bijections of the key, so two different
    // chains that end in the same lock never collide; one multiply keeps the hot path short.
    std::uint64_t x = (key ^ id) * 0x9e3779b97f4a7c15ULL;
    x ^= x >> 29;
    return x ? x : 1;
  }

  bool contains(std::uint64_t key) const {
    for (std::size_t i = key & kMask;; i = (i + 1) & kMask) {
      std::uint64_t slot = slots_[i].load(std::memory_order_acquire);
      if (slot == key) return true;
      if (slot == 0) return false;
    }
  }

  // Records a validated chain. Returns false when the table is full (kMaxChains).
  bool insert(std::uint64_t key);

  std::size_t size() const { return size_.load(std::memory_order_relaxed); }

  // Empties the table. Only while no other thread uses the validator.
  void clear();

 private:
  static constexpr std::size_t kMask = kMaxChains - 1;
  static_assert((kMaxChains & kMask) == 0, "kMaxChains must be a power of two");
  // Probing stays short only while the table has room; past this fill it reports the limit.
  static constexpr std::size_t kMaxFill = kMaxChains / 4 * 3;

  // A plain array so that the cache is constant-initialised (zero, in .bss): usable by locks taken during
  // static initialisation, and free of any initialisation check on the hot path.
  std::atomic<std::uint64_t> slots_[kMaxChains]{};
  std::atomic<std::size_t> size_{0};
};

}  // namespace uiommufd::lockdep
