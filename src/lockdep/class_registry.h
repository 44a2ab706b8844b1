// Lock classes: one per (key, subclass). Ids are dense, from 1; 0 means "not registered yet".
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "uiommufd/lockdep/lock_class_key.h"

namespace uiommufd::lockdep {

struct LockClass {
  const LockClassKey* key = nullptr;
  unsigned subclass = 0;
  std::string name;  // the key's name, with "/<subclass>" for subclasses other than 0
  // Dependencies "this class held, then the other acquired", as indices into the DependencyGraph.
  std::vector<std::uint32_t> after;
};

// Not thread-safe except cached_id(): the validator registers classes under its graph lock.
class ClassRegistry {
 public:
  ClassRegistry();

  // The hot-path lookup: one acquire load from the key.
  static std::uint32_t cached_id(const LockClassKey& key, unsigned subclass) {
    return key.class_ids_[subclass].load(std::memory_order_acquire);
  }

  // Registers (key, subclass) if it is new and returns its id; 0 when kMaxLockClasses is reached.
  std::uint32_t register_class(LockClassKey& key, unsigned subclass);

  LockClass& operator[](std::uint32_t id) { return classes_[id]; }
  const LockClass& operator[](std::uint32_t id) const { return classes_[id]; }
  // Number of registered classes; valid ids are 1 .. size().
  std::size_t size() const { return classes_.size() - 1; }

 private:
  std::vector<LockClass> classes_;
};

}  // namespace uiommufd::lockdep
