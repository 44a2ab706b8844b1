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
  // The name first: it is all that can fail (std::bad_alloc), and then no class has been added.
  std::string name = key.name() ? key.name() : "(unnamed)";
  if (subclass != 0) name += "/" + std::to_string(subclass);
  LockClass& c = classes_.emplace_back();  // within the capacity reserved up front
  c.key = &key;
  c.subclass = subclass;
  c.name = std::move(name);
  id = static_cast<std::uint32_t>(classes_.size() - 1);
  key.class_ids_[subclass].store(id, std::memory_order_release);
  return id;
}

}  // namespace uiommufd::lockdep
