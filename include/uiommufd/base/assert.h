// Invariant checks that do not depend on exceptions.
//
// UIOMMUFD_ASSERT is always compiled in: use it where a violated precondition would otherwise be
// silent undefined behaviour and the check is cheap next to the work around it (error paths, value()).
// UIOMMUFD_DCHECK compiles to nothing under NDEBUG (release builds); use it on hot paths.
// A failed check prints the expression and location to stderr and aborts, so sanitizers and core
// dumps see the faulting stack.
#pragma once

namespace uiommufd::detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const char* func) noexcept;
}  // namespace uiommufd::detail

#define UIOMMUFD_ASSERT(cond)                                                         \
  do {                                                                                \
    if (!(cond)) [[unlikely]]                                                         \
      ::uiommufd::detail::assert_fail(#cond, __FILE__, __LINE__, __func__);           \
  } while (0)

#ifdef NDEBUG
// sizeof keeps the expression type-checked (and its variables "used") without evaluating it.
#define UIOMMUFD_DCHECK(cond) \
  do {                        \
    (void)sizeof(!(cond));    \
  } while (0)
#else
#define UIOMMUFD_DCHECK(cond) UIOMMUFD_ASSERT(cond)
#endif
