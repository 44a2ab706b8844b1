#include "uiommufd/base/assert.h"

#include <cstdio>
#include <cstdlib>

namespace uiommufd::detail {

void assert_fail(const char* expr, const char* file, int line, const char* func) noexcept {
  // fprintf rather than the log sink: the sink may be the thing that is broken.
  std::fprintf(stderr, "uiommufd: assertion failed: %s (%s:%d, %s)\n", expr, file, line, func);
  std::abort();
}

}  // namespace uiommufd::detail
