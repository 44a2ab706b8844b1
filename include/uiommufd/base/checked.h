// Overflow-checked 64-bit arithmetic and power-of-two alignment, for IOVA, user-address and length
// computations where a wrap would turn a bad request into a valid-looking one.
//
// Alignments are powers of two (1, 2, 4, …, 2^63); passing anything else is a precondition violation
// (checked in debug builds). Everything is constexpr except align_up_checked, which returns a Result.
#pragma once

#include <cerrno>
#include <cstdint>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/result.h"

namespace uiommufd {

constexpr bool is_power_of_2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// *out = a + b. Returns false (leaving *out with the wrapped value) if the sum does not fit.
constexpr bool checked_add(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

// *out = a * b. Returns false (leaving *out with the wrapped value) if the product does not fit.
constexpr bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

// Whether v is a multiple of `alignment` (a power of two).
constexpr bool is_aligned(uint64_t v, uint64_t alignment) {
  UIOMMUFD_DCHECK(is_power_of_2(alignment));
  return (v & (alignment - 1)) == 0;
}

// The largest multiple of `alignment` (a power of two) that is <= v. Cannot overflow.
constexpr uint64_t align_down(uint64_t v, uint64_t alignment) {
  UIOMMUFD_DCHECK(is_power_of_2(alignment));
  return v & ~(alignment - 1);
}

// The smallest multiple of `alignment` (a power of two) that is >= v.
// Errors: EOVERFLOW if that multiple is 2^64 or more (v above the last aligned value).
inline Result<uint64_t> align_up_checked(uint64_t v, uint64_t alignment) {
  UIOMMUFD_DCHECK(is_power_of_2(alignment));
  uint64_t sum = 0;
  if (!checked_add(v, alignment - 1, &sum)) return Status::error(EOVERFLOW);
  return align_down(sum, alignment);
}

}  // namespace uiommufd
