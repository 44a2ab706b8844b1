#include "fail_nth_file.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include <sys/uio.h>
#include <unistd.h>

#include "uiommufd/base/fault.h"

namespace uiommufd::runtime {
namespace {

// The kernel copies the caller's buffer with copy_{from,to}_user, so a bad pointer is EFAULT, not a
// crash. The engine's Mm copies would do that too but pass a fault site, and these files must not consume
// the counter they set, so the kernel does the access for us on our own pid. Where process_vm_* is
// unavailable (seccomp), the copy is a plain memcpy.
int copy_user(void* dst, const void* src, std::size_t len, bool to_user) {
  if (len == 0) return 0;
  iovec local{to_user ? const_cast<void*>(src) : dst, len};
  iovec remote{to_user ? dst : const_cast<void*>(src), len};
  const ssize_t n = to_user ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
                            : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(len)) return 0;
  if (n < 0 && (errno == ENOSYS || errno == EPERM)) {
    std::memcpy(dst, src, len);
    return 0;
  }
  return -EFAULT;
}

// sign, 32 binary digits, newline: the longest text kstrtouint_from_user looks at.
constexpr std::size_t kMaxText = 1 + 32 + 1;

}  // namespace

ssize_t fail_nth_write(int tid, const void* buf, std::size_t count) {
  char text[kMaxText];
  const std::size_t len = std::min(count, kMaxText);
  if (int err = copy_user(text, buf, len, false); err != 0) return err;
  Result<uint32_t> n = parse_kstrtouint(std::string_view(text, len));
  if (!n.ok()) return -n.error();
  Status st = fail_nth_set_thread(tid, *n);
  if (!st.ok()) return -st.error();
  return static_cast<ssize_t>(count);
}

ssize_t fail_nth_read(int tid, void* buf, std::size_t count, std::int64_t pos) {
  if (pos < 0) return -EINVAL;
  Result<uint32_t> n = fail_nth_get_thread(tid);
  if (!n.ok()) return -n.error();
  char text[16];
  const int len = std::snprintf(text, sizeof text, "%u\n", *n);
  if (pos >= len) return 0;
  const std::size_t copy = std::min(count, static_cast<std::size_t>(len - pos));
  if (int err = copy_user(buf, text + pos, copy, true); err != 0) return err;
  return static_cast<ssize_t>(copy);
}

}  // namespace uiommufd::runtime
