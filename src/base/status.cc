#include "uiommufd/base/status.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "uiommufd/base/assert.h"

namespace uiommufd {
namespace {

// Linux aliases; the table below lists each value once under the kernel's spelling.
static_assert(EDEADLOCK == EDEADLK);
static_assert(ENOTSUP == EOPNOTSUPP);
static_assert(EWOULDBLOCK == EAGAIN);

struct ErrnoName {
  int err;
  const char* name;
};

#define E(x) {x, #x}
constexpr ErrnoName kErrnoNames[] = {
    E(EPERM),        E(ENOENT),       E(ESRCH),        E(EINTR),        E(EIO),
    E(ENXIO),        E(E2BIG),        E(ENOEXEC),      E(EBADF),        E(ECHILD),
    E(EAGAIN),       E(ENOMEM),       E(EACCES),       E(EFAULT),       E(ENOTBLK),
    E(EBUSY),        E(EEXIST),       E(EXDEV),        E(ENODEV),       E(ENOTDIR),
    E(EISDIR),       E(EINVAL),       E(ENFILE),       E(EMFILE),       E(ENOTTY),
    E(ETXTBSY),      E(EFBIG),        E(ENOSPC),       E(ESPIPE),       E(EROFS),
    E(EMLINK),       E(EPIPE),        E(EDOM),         E(ERANGE),       E(EDEADLOCK),
    E(ENAMETOOLONG), E(ENOLCK),       E(ENOSYS),       E(ENOTEMPTY),    E(ELOOP),
    E(ENOMSG),       E(EIDRM),        E(ENODATA),      E(ETIME),        E(ENOLINK),
    E(EPROTO),       E(EBADMSG),      E(EOVERFLOW),    E(EBADFD),       E(EILSEQ),
    E(ENOTSOCK),     E(EDESTADDRREQ), E(EMSGSIZE),     E(EPROTOTYPE),   E(ENOPROTOOPT),
    E(EPROTONOSUPPORT), E(EOPNOTSUPP), E(EADDRINUSE),  E(EADDRNOTAVAIL), E(ENETDOWN),
    E(ENETUNREACH),  E(ECONNRESET),   E(ENOBUFS),      E(EISCONN),      E(ENOTCONN),
    E(ETIMEDOUT),    E(ECONNREFUSED), E(EALREADY),     E(EINPROGRESS),  E(ESTALE),
    E(EDQUOT),       E(ECANCELED),    E(EOWNERDEAD),   E(ENOTRECOVERABLE), E(EHWPOISON),
};
#undef E

}  // namespace

Status Status::error(int err) {
  // 4095 is the kernel's MAX_ERRNO: larger values cannot travel as a negative return code.
  UIOMMUFD_ASSERT(err > 0 && err <= 4095);
  return Status(err);
}

std::string Status::to_string() const {
  if (ok()) return "OK";
  std::string out = errno_name(err_);
  out += " (";
  // strerrordesc_np, unlike strerror, is thread-safe and does not depend on the locale.
  const char* desc = strerrordesc_np(err_);
  out += desc ? desc : "errno " + std::to_string(err_);
  out += ')';
  return out;
}

const char* errno_name(int err) {
  for (const ErrnoName& e : kErrnoNames) {
    if (e.err == err) return e.name;
  }
  return "E?";
}

}  // namespace uiommufd
