// TRY(expr): early return on error, in the style of SerenityOS's TRY.
//
// `expr` is a Status or a Result<T>. On error, the enclosing function returns that error (its return
// type must be Status or some Result<U>; both convert from an error Status). On success, TRY(status)
// is a void expression and TRY(result) yields the T, moved out of the result.
//
//   Result<Area*> insert(...) {
//     TRY(check_range(iova, length));             // Status
//     auto pages = TRY(Pages::create(mm, uptr));   // Result<RefPtr<Pages>>
//     ...
//   }
//
// It uses a GNU statement expression (g++ and clang++ both accept it; __extension__ keeps -pedantic
// quiet). An lvalue argument is copied, never moved from behind the caller's back. Not usable in a
// constructor or a function returning void.
#pragma once

#include <utility>

#include "uiommufd/base/status.h"

namespace uiommufd::detail {

// The statement expression yields whatever try_take returns: nothing for Status, the value by value
// (not a reference into the temporary, which dies at the end of the statement expression) for Result.
inline void try_take(Status&&) {}

template <typename R>
auto try_take(R&& result) -> std::remove_cvref_t<decltype(*std::move(result))> {
  return std::move(*result);
}

}  // namespace uiommufd::detail

#define TRY(expr)                                                            \
  (__extension__({                                                           \
    auto _uiommufd_try_result = (expr);                                      \
    if (!_uiommufd_try_result.ok()) [[unlikely]]                             \
      return ::uiommufd::Status::error(_uiommufd_try_result.error());        \
    ::uiommufd::detail::try_take(std::move(_uiommufd_try_result));           \
  }))
