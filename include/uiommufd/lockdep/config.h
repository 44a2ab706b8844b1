// Whether the lock validator is compiled in. The CMake option UIOMMUFD_LOCKDEP=OFF defines
// UIOMMUFD_LOCKDEP_ENABLED=0 for every target that links the validator, and every instrumented type then
// collapses to the plain lock it wraps.
#pragma once

#ifndef UIOMMUFD_LOCKDEP_ENABLED
#define UIOMMUFD_LOCKDEP_ENABLED 1
#endif

// Guards are always inlined so that the validator's record of where a lock was taken (the return address
// of its out-of-line entry point) lands in the function that constructed the guard.
#define UIOMMUFD_LOCKDEP_INLINE inline __attribute__((always_inline))

namespace uiommufd::lockdep {
inline constexpr bool kCompiledIn = UIOMMUFD_LOCKDEP_ENABLED != 0;
}  // namespace uiommufd::lockdep
