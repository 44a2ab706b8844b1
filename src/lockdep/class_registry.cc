#include "class_registry.h"

namespace uiommufd::lockdep {

ClassRegistry::ClassRegistry() {
  // Reserved up front so that references to classes stay valid while new ones register.
  classes_.reserve(kMaxLockClasses + 1);
  classes_.emplace_back();  // id 0: none
}

std::uint32_t ClassRegistry::register_class(LockClassKey& key, unsigned subclass) {
  std::uint32_t id = cached_id(key, subclass);
  if (id != 0) return id;
  if (size() >= kMaxLockClasses) return 0;
  LockClass& c = classes_.emplace_back();
  c.key = &key;
  c.subclass = subclass;
  c.name = key.name() ? key.name() : "(unnamed)";
  if (subclass != 0) c.name += "/" + std::to_string(subclass);
  id = static_cast<std::uint32_t>(classes_.size() - 1);
  key.class_ids_[subclass].store(id, std::memory_order_release);
  return id;
}

}  // namespace uiommufd::lockdep
