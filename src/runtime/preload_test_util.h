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

// ioctl(2) as 0 or -errno.
inline long ioctl_rc(int fd, unsigned long cmd, void* arg) { return ioctl(fd, cmd, arg) == 0 ? 0 : -errno; }

// IOMMU_IOAS_MAP at a fixed IOVA, readable and writeable: 0 or -errno.
inline long map_fixed(int fd, std::uint32_t ioas, const void* va, std::uint64_t len, std::uint64_t iova) {
  uiommufd::uapi::iommu_ioas_map c{};
  c.size = sizeof c;
  c.flags = uiommufd::uapi::IOMMU_IOAS_MAP_FIXED_IOVA | uiommufd::uapi::IOMMU_IOAS_MAP_READABLE |
            uiommufd::uapi::IOMMU_IOAS_MAP_WRITEABLE;
  c.ioas_id = ioas;
  c.user_va = reinterpret_cast<std::uintptr_t>(va);
  c.length = len;
  c.iova = iova;
  return ioctl_rc(fd, uiommufd::uapi::IOMMU_IOAS_MAP, &c);
}

// The unmapped length, or -errno.
inline long long unmap(int fd, std::uint32_t ioas, std::uint64_t iova, std::uint64_t len) {
  uiommufd::uapi::iommu_ioas_unmap c{};
  c.size = sizeof c;
  c.ioas_id = ioas;
  c.iova = iova;
  c.length = len;
  const long rc = ioctl_rc(fd, uiommufd::uapi::IOMMU_IOAS_UNMAP, &c);
  return rc != 0 ? rc : static_cast<long long>(c.length);
}

// An IOMMU_TEST_CMD of `op` on object `id`.
inline uiommufd::uapi::iommu_test_cmd test_cmd(std::uint32_t op, std::uint32_t id) {
  uiommufd::uapi::iommu_test_cmd c{};
  c.size = sizeof c;
  c.op = op;
  c.id = id;
  return c;
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
