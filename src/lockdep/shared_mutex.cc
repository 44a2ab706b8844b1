#include "uiommufd/lockdep/shared_mutex.h"

#include "validator.h"

namespace uiommufd::lockdep {

void SharedMutex::check_not_held_on_destroy() { check_not_held_elsewhere(mu_, map_); }

}  // namespace uiommufd::lockdep
