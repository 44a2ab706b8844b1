// Helpers for the preload_*_test programs. These programs link neither the engine nor the runtime: they
// are ordinary programs that open /dev/iommu and call ioctl, run as `uiommufd run -- <test>`.
#pragma once

#include <cerrno>
#include <cstdint>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uiommufd/uapi/abi.h"

namespace preload_test {

using uiommufd::uapi::IOMMU_DESTROY;
using uiommufd::uapi::IOMMU_IOAS_ALLOC;

// IOMMU_IOAS_ALLOC: the new id, or -errno.
inline long ioas_alloc(int fd) {
  uiommufd::uapi::iommu_ioas_alloc cmd{};
  cmd.size = sizeof cmd;
  if (ioctl(fd, IOMMU_IOAS_ALLOC, &cmd) != 0) return -errno;
  return cmd.out_ioas_id;
}

// IOMMU_DESTROY: 0 or -errno.
inline int destroy(int fd, std::uint32_t id) {
  uiommufd::uapi::iommu_destroy cmd{};
  cmd.size = sizeof cmd;
  cmd.id = id;
  return ioctl(fd, IOMMU_DESTROY, &cmd) != 0 ? -errno : 0;
}

// Runs `child` in a forked child and returns its exit status (or -1 if it did not exit normally). The
// child leaves with _exit, so no test-framework state is flushed twice.
template <typename F>
int in_child(F child) {
  const pid_t pid = fork();
  if (pid == 0) _exit(child());
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

}  // namespace preload_test
