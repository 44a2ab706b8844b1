// Status: the outcome of an operation that returns no value, as a Linux kernel errno.
//
// The errno is the positive value the kernel would put in errno for the same condition (EINVAL, not
// -EINVAL). 0 means success. Valid errors are 1..4095, the kernel's MAX_ERRNO range; anything else is a
// programming error and aborts. Status is one int: cheap to return and compare.
#pragma once

#include <string>

namespace uiommufd {

class [[nodiscard]] Status {
 public:
  // Success.
  constexpr Status() = default;

  // An error carrying `err`, which must be in 1..4095 (aborts otherwise: an "error" of 0 would read as
  // success and silently drop the failure).
  static Status error(int err);

  constexpr bool ok() const { return err_ == 0; }
  // The errno, or 0 when ok().
  constexpr int error() const { return err_; }

  // "OK", or the symbolic name and the C library's description, e.g. "EINVAL (Invalid argument)".
  std::string to_string() const;

  friend constexpr bool operator==(Status, Status) = default;

 private:
  constexpr explicit Status(int err) : err_(err) {}

  int err_ = 0;
};

// Symbolic name of a kernel errno: "ENOENT", "EINVAL", …; "E?" for values not in the table.
// Where Linux gives two names one value, the kernel's own spelling wins: EDEADLK prints as "EDEADLOCK",
// ENOTSUP as "EOPNOTSUPP", EWOULDBLOCK as "EAGAIN". Never returns null.
const char* errno_name(int err);

}  // namespace uiommufd
