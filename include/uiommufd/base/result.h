// Result<T>: either a T or an error Status (a kernel errno), in the style of SerenityOS's ErrorOr<T>.
//
// Converts implicitly from a T (or anything T is implicitly constructible from) and from an error
// Status, so a function returning Result<T> can `return value;` and `return Status::error(EINVAL);`.
// Converting an ok Status aborts: a Result never holds neither.
//
// Access: value() checks and aborts on an error (always, also in release builds); operator* and ->
// check only in debug builds, for hot paths that have just tested ok(). No exceptions are thrown.
// For functions without a value, use Status; Result<void> does not exist.
#pragma once

#include <type_traits>
#include <utility>
#include <variant>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/status.h"
#include "uiommufd/base/try.h"

namespace uiommufd {

template <typename T>
class [[nodiscard]] Result {
  static_assert(!std::is_reference_v<T>, "Result<T&>: use Result<T*> or Result<std::reference_wrapper<T>>");
  static_assert(!std::is_same_v<std::remove_cv_t<T>, Status>, "Result<Status>: use Status");
  static_assert(!std::is_void_v<T>, "Result<void>: use Status");

 public:
  template <typename U = T>
    requires(std::is_constructible_v<T, U &&> && !std::is_same_v<std::remove_cvref_t<U>, Result> &&
             !std::is_same_v<std::remove_cvref_t<U>, Status>)
  constexpr explicit(!std::is_convertible_v<U&&, T>) Result(U&& value)
      : v_(std::in_place_index<0>, std::forward<U>(value)) {}

  // `status` must be an error.
  Result(Status status) : v_(std::in_place_index<1>, status) { UIOMMUFD_ASSERT(!status.ok()); }

  constexpr bool ok() const { return v_.index() == 0; }
  // The errno, or 0 when ok().
  constexpr int error() const { return ok() ? 0 : std::get_if<1>(&v_)->error(); }
  // OK, or the error.
  constexpr Status status() const { return ok() ? Status() : *std::get_if<1>(&v_); }

  // Precondition ok(); aborts otherwise.
  constexpr T& value() & { return checked(); }
  constexpr const T& value() const& { return const_cast<Result*>(this)->checked(); }
  constexpr T&& value() && { return std::move(checked()); }

  // Precondition ok(); checked in debug builds only.
  constexpr T& operator*() & { return unchecked(); }
  constexpr const T& operator*() const& { return const_cast<Result*>(this)->unchecked(); }
  constexpr T&& operator*() && { return std::move(unchecked()); }
  constexpr T* operator->() { return &unchecked(); }
  constexpr const T* operator->() const { return &const_cast<Result*>(this)->unchecked(); }

  // The value, or `fallback` converted to T on error.
  template <typename U>
  constexpr T value_or(U&& fallback) const& {
    return ok() ? unchecked_const() : static_cast<T>(std::forward<U>(fallback));
  }
  template <typename U>
  constexpr T value_or(U&& fallback) && {
    return ok() ? std::move(unchecked()) : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  constexpr T& checked() {
    UIOMMUFD_ASSERT(ok());
    return *std::get_if<0>(&v_);
  }
  constexpr T& unchecked() {
    UIOMMUFD_DCHECK(ok());
    return *std::get_if<0>(&v_);
  }
  constexpr const T& unchecked_const() const { return *std::get_if<0>(&v_); }

  // std::get would throw on a mismatch; every access goes through get_if after a check instead.
  std::variant<T, Status> v_;
};

}  // namespace uiommufd
