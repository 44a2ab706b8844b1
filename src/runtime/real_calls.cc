#include "real_calls.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace uiommufd::runtime::real {
namespace {

// One slot per function: the symbol name and its resolved address. Relaxed atomics: every thread that
// resolves a slot stores the same value.
struct Slot {
  const char* name;
  std::atomic<void*> fn{nullptr};
};

// Resolves `slot` if needed. A missing symbol (an older libc without close_range, say) leaves it null;
// the callers below then fall back to the raw system call or ENOSYS.
void* get(Slot& slot) {
  void* fn = slot.fn.load(std::memory_order_relaxed);
  if (fn == nullptr) [[unlikely]] {
    fn = dlsym(RTLD_NEXT, slot.name);
    slot.fn.store(fn, std::memory_order_relaxed);
  }
  return fn;
}

template <typename F>
F fn(Slot& slot) {
  return reinterpret_cast<F>(get(slot));
}

Slot s_open{"open"}, s_open64{"open64"}, s_openat{"openat"}, s_openat64{"openat64"}, s_open_2{"__open_2"},
    s_open64_2{"__open64_2"}, s_openat_2{"__openat_2"}, s_openat64_2{"__openat64_2"}, s_close{"close"},
    s_close_range{"close_range"}, s_closefrom{"closefrom"}, s_dup{"dup"}, s_dup2{"dup2"}, s_dup3{"dup3"},
    s_fcntl{"fcntl"}, s_fcntl64{"fcntl64"}, s_ioctl{"ioctl"}, s_read{"read"}, s_write{"write"},
    s_pread{"pread"}, s_pread64{"pread64"}, s_pwrite{"pwrite"}, s_pwrite64{"pwrite64"}, s_opendir{"opendir"},
    s_fdopendir{"fdopendir"}, s_closedir{"closedir"}, s_readv{"readv"}, s_writev{"writev"},
    s_recvmsg{"recvmsg"}, s_recvmmsg{"recvmmsg"};

Slot* const kAll[] = {&s_open,      &s_open64,     &s_openat,  &s_openat64,    &s_open_2,    &s_open64_2,
                      &s_openat_2,  &s_openat64_2, &s_close,   &s_close_range, &s_closefrom, &s_dup,
                      &s_dup2,      &s_dup3,       &s_fcntl,   &s_fcntl64,     &s_ioctl,     &s_read,
                      &s_write,     &s_pread,      &s_pread64, &s_pwrite,      &s_pwrite64,  &s_opendir,
                      &s_fdopendir, &s_closedir,   &s_readv,   &s_writev,      &s_recvmsg,   &s_recvmmsg};

// A function the next object lacks: the raw system call where there is one.
[[maybe_unused]] int nosys() {
  errno = ENOSYS;
  return -1;
}

}  // namespace

void resolve_all() {
  for (Slot* s : kAll) get(*s);
}

int open(const char* path, int flags, mode_t mode) {
  auto f = fn<int (*)(const char*, int, ...)>(s_open);
  return f ? f(path, flags, mode) : static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, flags, mode));
}
int open64(const char* path, int flags, mode_t mode) {
  auto f = fn<int (*)(const char*, int, ...)>(s_open64);
  return f ? f(path, flags, mode) : open(path, flags, mode);
}
int openat(int dirfd, const char* path, int flags, mode_t mode) {
  auto f = fn<int (*)(int, const char*, int, ...)>(s_openat);
  return f ? f(dirfd, path, flags, mode) : static_cast<int>(syscall(SYS_openat, dirfd, path, flags, mode));
}
int openat64(int dirfd, const char* path, int flags, mode_t mode) {
  auto f = fn<int (*)(int, const char*, int, ...)>(s_openat64);
  return f ? f(dirfd, path, flags, mode) : openat(dirfd, path, flags, mode);
}
int open_2(const char* path, int flags) {
  auto f = fn<int (*)(const char*, int)>(s_open_2);
  return f ? f(path, flags) : open(path, flags, 0);
}
int open64_2(const char* path, int flags) {
  auto f = fn<int (*)(const char*, int)>(s_open64_2);
  return f ? f(path, flags) : open64(path, flags, 0);
}
int openat_2(int dirfd, const char* path, int flags) {
  auto f = fn<int (*)(int, const char*, int)>(s_openat_2);
  return f ? f(dirfd, path, flags) : openat(dirfd, path, flags, 0);
}
int openat64_2(int dirfd, const char* path, int flags) {
  auto f = fn<int (*)(int, const char*, int)>(s_openat64_2);
  return f ? f(dirfd, path, flags) : openat64(dirfd, path, flags, 0);
}
int close(int fd) {
  auto f = fn<int (*)(int)>(s_close);
  return f ? f(fd) : static_cast<int>(syscall(SYS_close, fd));
}
int close_range(unsigned first, unsigned last, int flags) {
  auto f = fn<int (*)(unsigned, unsigned, int)>(s_close_range);
#ifdef SYS_close_range
  return f ? f(first, last, flags) : static_cast<int>(syscall(SYS_close_range, first, last, flags));
#else
  return f ? f(first, last, flags) : nosys();
#endif
}
void closefrom(int lowfd) {
  auto f = fn<void (*)(int)>(s_closefrom);
  if (f) f(lowfd);
}
int dup(int fd) {
  auto f = fn<int (*)(int)>(s_dup);
  return f ? f(fd) : static_cast<int>(syscall(SYS_dup, fd));
}
int dup2(int oldfd, int newfd) {
  auto f = fn<int (*)(int, int)>(s_dup2);
  return f ? f(oldfd, newfd) : nosys();
}
int dup3(int oldfd, int newfd, int flags) {
  auto f = fn<int (*)(int, int, int)>(s_dup3);
  return f ? f(oldfd, newfd, flags) : static_cast<int>(syscall(SYS_dup3, oldfd, newfd, flags));
}
int fcntl(int fd, int cmd, unsigned long arg) {
  auto f = fn<int (*)(int, int, ...)>(s_fcntl);
  return f ? f(fd, cmd, arg) : static_cast<int>(syscall(SYS_fcntl, fd, cmd, arg));
}
int fcntl64(int fd, int cmd, unsigned long arg) {
  auto f = fn<int (*)(int, int, ...)>(s_fcntl64);
  return f ? f(fd, cmd, arg) : fcntl(fd, cmd, arg);
}
int ioctl(int fd, unsigned long request, unsigned long arg) {
  auto f = fn<int (*)(int, unsigned long, ...)>(s_ioctl);
  return f ? f(fd, request, arg) : static_cast<int>(syscall(SYS_ioctl, fd, request, arg));
}
ssize_t read(int fd, void* buf, size_t count) {
  auto f = fn<ssize_t (*)(int, void*, size_t)>(s_read);
  return f ? f(fd, buf, count) : syscall(SYS_read, fd, buf, count);
}
ssize_t write(int fd, const void* buf, size_t count) {
  auto f = fn<ssize_t (*)(int, const void*, size_t)>(s_write);
  return f ? f(fd, buf, count) : syscall(SYS_write, fd, buf, count);
}
ssize_t pread(int fd, void* buf, size_t count, off_t offset) {
  auto f = fn<ssize_t (*)(int, void*, size_t, off_t)>(s_pread);
  return f ? f(fd, buf, count, offset) : syscall(SYS_pread64, fd, buf, count, offset);
}
ssize_t pread64(int fd, void* buf, size_t count, off_t offset) {
  auto f = fn<ssize_t (*)(int, void*, size_t, off_t)>(s_pread64);
  return f ? f(fd, buf, count, offset) : pread(fd, buf, count, offset);
}
ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  auto f = fn<ssize_t (*)(int, const void*, size_t, off_t)>(s_pwrite);
  return f ? f(fd, buf, count, offset) : syscall(SYS_pwrite64, fd, buf, count, offset);
}
ssize_t pwrite64(int fd, const void* buf, size_t count, off_t offset) {
  auto f = fn<ssize_t (*)(int, const void*, size_t, off_t)>(s_pwrite64);
  return f ? f(fd, buf, count, offset) : pwrite(fd, buf, count, offset);
}
ssize_t readv(int fd, const struct iovec* iov, int iovcnt) {
  auto f = fn<ssize_t (*)(int, const struct iovec*, int)>(s_readv);
  return f ? f(fd, iov, iovcnt) : syscall(SYS_readv, fd, iov, iovcnt);
}
ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  auto f = fn<ssize_t (*)(int, const struct iovec*, int)>(s_writev);
  return f ? f(fd, iov, iovcnt) : syscall(SYS_writev, fd, iov, iovcnt);
}
DIR* opendir(const char* name) { return fn<DIR* (*)(const char*)>(s_opendir)(name); }
DIR* fdopendir(int fd) { return fn<DIR* (*)(int)>(s_fdopendir)(fd); }
int closedir(DIR* dir) { return fn<int (*)(DIR*)>(s_closedir)(dir); }

ssize_t recvmsg(int fd, struct msghdr* msg, int flags) {
  auto f = fn<ssize_t (*)(int, struct msghdr*, int)>(s_recvmsg);
  return f ? f(fd, msg, flags) : syscall(SYS_recvmsg, fd, msg, flags);
}
int recvmmsg(int fd, struct mmsghdr* msgs, unsigned vlen, int flags, struct timespec* timeout) {
  auto f = fn<int (*)(int, struct mmsghdr*, unsigned, int, struct timespec*)>(s_recvmmsg);
  return f ? f(fd, msgs, vlen, flags, timeout)
           : static_cast<int>(syscall(SYS_recvmmsg, fd, msgs, vlen, flags, timeout));
}

}  // namespace uiommufd::runtime::real
