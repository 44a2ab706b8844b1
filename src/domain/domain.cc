#include "uiommufd/domain/domain.h"

namespace uiommufd {

std::uint64_t Domain::granule() const {
  const std::uint64_t bitmap = pgsize_bitmap();
  return bitmap & (~bitmap + 1);
}

}  // namespace uiommufd
