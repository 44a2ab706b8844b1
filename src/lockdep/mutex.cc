#include "uiommufd/lockdep/mutex.h"

#include "validator.h"

namespace uiommufd::lockdep {

void Mutex::check_not_held_on_destroy() { check_not_held_elsewhere(mu_, map_); }

}  // namespace uiommufd::lockdep
