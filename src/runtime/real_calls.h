// The next definitions (libc's, or a sanitizer runtime's) of every function the preload interposes.
//
// Each pointer is looked up with dlsym(RTLD_NEXT, ...) on first use and all of them in an early
// constructor, so calls made before our constructors run (by another preloaded library's constructor, or
// by the dynamic loader's clients) work too. Code of the preload that needs the kernel's behaviour — the
// fd table creating its stand-in fds, passthrough calls — calls these, never the interposed names, so
// nothing re-enters the table.
#pragma once

#include <cstdarg>

#include <dirent.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

namespace uiommufd::runtime::real {

int open(const char* path, int flags, mode_t mode);
int open64(const char* path, int flags, mode_t mode);
int openat(int dirfd, const char* path, int flags, mode_t mode);
int openat64(int dirfd, const char* path, int flags, mode_t mode);
int open_2(const char* path, int flags);
int open64_2(const char* path, int flags);
int openat_2(int dirfd, const char* path, int flags);
int openat64_2(int dirfd, const char* path, int flags);
int close(int fd);
int close_range(unsigned first, unsigned last, int flags);
void closefrom(int lowfd);
int dup(int fd);
int dup2(int oldfd, int newfd);
int dup3(int oldfd, int newfd, int flags);
int fcntl(int fd, int cmd, unsigned long arg);
int fcntl64(int fd, int cmd, unsigned long arg);
int ioctl(int fd, unsigned long request, unsigned long arg);
ssize_t read(int fd, void* buf, size_t count);
ssize_t write(int fd, const void* buf, size_t count);
ssize_t pread(int fd, void* buf, size_t count, off_t offset);
ssize_t pread64(int fd, void* buf, size_t count, off_t offset);
ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset);
ssize_t pwrite64(int fd, const void* buf, size_t count, off_t offset);
ssize_t readv(int fd, const struct iovec* iov, int iovcnt);
ssize_t writev(int fd, const struct iovec* iov, int iovcnt);
DIR* opendir(const char* name);
DIR* fdopendir(int fd);
int closedir(DIR* dir);
ssize_t recvmsg(int fd, struct msghdr* msg, int flags);
int recvmmsg(int fd, struct mmsghdr* msgs, unsigned vlen, int flags, struct timespec* timeout);

// Resolves every pointer now (idempotent). Called from the preload's first constructor.
void resolve_all();

}  // namespace uiommufd::runtime::real
