// Making room before a change, so that the change itself cannot run out of memory (docs/allocation.md).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <new>
#include <stdexcept>

#include "uiommufd/base/status.h"

namespace uiommufd {

// Room in `v` (a std::vector) for `more` further elements, growing geometrically. ENOMEM when the memory
// cannot be had; `v` is unchanged then. Afterwards that many push_backs cannot throw.
template <typename Vector>
Status reserve_more(Vector& v, std::size_t more = 1) {
  if (v.capacity() - v.size() >= more) return {};
  try {
    v.reserve(std::max(v.size() + more, 2 * v.size()));
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  } catch (const std::length_error&) {
    return Status::error(ENOMEM);
  }
  return {};
}

}  // namespace uiommufd
