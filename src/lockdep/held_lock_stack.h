// The per-thread stack of held locks, the validator's view of "what this thread holds right now".
#pragma once

#include <cstdint>

#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lockdep {

class LockdepMap;

struct HeldLock {
  const LockdepMap* instance;
  const LockdepMap* nest_lock;
  const void* acquire_ip;
  // The chain key of the stack up to and including this entry.
  std::uint64_t chain_key;
  std::uint32_t class_id;
  // Instances of this class merged into this entry under a nest lock; 0 when the entry is one instance.
  std::uint32_t references;
  detail::Read read;
  bool trylock;
};

// Trivially constructible so that the thread_local costs no initialisation guard on the hot path.
struct HeldLockStack {
  HeldLock locks[kMaxLockDepth];
  unsigned depth;
  // Set while the validator itself runs on this thread, so that nothing it calls can re-enter it.
  bool busy;
};

HeldLockStack& current_held_locks();

}  // namespace uiommufd::lockdep
