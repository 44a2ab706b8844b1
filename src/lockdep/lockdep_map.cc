#include "uiommufd/lockdep/lockdep_map.h"

#include "validator.h"

namespace uiommufd::lockdep {

namespace {
// An entry that folds several instances of one class taken under a nest lock (validator.cc) records only
// the first instance; any lock of that class counts as held by it, as the kernel's match_held_lock() has it.
const HeldLock* find_held(const HeldLockStack& t, const LockdepMap* map) {
  for (unsigned i = t.depth; i-- > 0;) {
    const HeldLock& h = t.locks[i];
    if (h.instance == map || (h.references && &h.instance->key() == &map->key())) return &h;
  }
  return nullptr;
}
}  // namespace

LockdepMap::~LockdepMap() {
  HeldLockStack& t = current_held_locks();
  const HeldLock* h = find_held(t, this);
  if (!h) return;
  if (detail::validating()) Validator::get().report_held_lock_freed(t, h, *this, false);
  // Forget it, so that the stack stays consistent after the report.
  detail::release(*this);
}

bool LockdepMap::held() const { return find_held(current_held_locks(), this) != nullptr; }

void LockdepMap::assert_held() const {
  if (!detail::validating()) return;
  const HeldLock* h = find_held(current_held_locks(), this);
  if (!h) Validator::get().report_assertion(current_held_locks(), *this, "is not held");
  else if (h->read != detail::Read::kExclusive)
    Validator::get().report_assertion(current_held_locks(), *this, "is held shared, not exclusively");
}

void LockdepMap::assert_shared_held() const {
  if (detail::validating() && !held())
    Validator::get().report_assertion(current_held_locks(), *this, "is not held");
}

void LockdepMap::assert_not_held() const {
  if (detail::validating() && held())
    Validator::get().report_assertion(current_held_locks(), *this, "is held, but must not be");
}

}  // namespace uiommufd::lockdep
