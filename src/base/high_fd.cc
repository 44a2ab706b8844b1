#include "uiommufd/base/high_fd.h"

#include <cerrno>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace uiommufd {

int dup_high(int fd) {
  rlimit rl{};
  long floor = 0;
  if (syscall(SYS_getrlimit, RLIMIT_NOFILE, &rl) == 0) {
    const rlim_t cur = rl.rlim_cur == RLIM_INFINITY ? (rlim_t{1} << 20) : rl.rlim_cur;
    floor = static_cast<long>(cur - cur / 4);
  }
  const long hi = syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, floor);
  if (hi >= 0 || floor == 0 || (errno != EMFILE && errno != EINVAL)) return static_cast<int>(hi);
  return static_cast<int>(syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 0L));
}

int move_high(int fd) {
  if (fd < 0) return fd;
  const int saved = errno;
  const int hi = dup_high(fd);
  if (hi < 0 || hi < fd) {
    if (hi >= 0) syscall(SYS_close, hi);
    errno = saved;
    return fd;
  }
  syscall(SYS_close, fd);
  errno = saved;
  return hi;
}

}  // namespace uiommufd
