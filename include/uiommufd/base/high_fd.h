// Fds that uiommufd keeps for itself (a trace output, a shared-mode channel, the duplicate that holds a
// MAP_FILE file, a vIOMMU region's memfd, a queue's internal eventfd) live in the top quarter of the fd
// table, so the program's own opens get the numbers the kernel would give them: the kernel holds such
// things as file references, which take no fd. The reference VM's trace comparison sees the difference
// (an access fd numbered one higher after an IOMMU_IOAS_MAP_FILE), docs/trace.md#passthrough.
#pragma once

namespace uiommufd {

// A close-on-exec duplicate of `fd` in the top quarter of the soft RLIMIT_NOFILE, else (that part full) at
// the lowest free number; -1 with errno as fcntl(F_DUPFD_CLOEXEC) leaves it. Raw system calls: safe inside
// the preload's interposed calls.
int dup_high(int fd);

// `fd` moved there: the duplicate, with `fd` closed, or `fd` itself when it cannot move (or is < 0).
int move_high(int fd);

}  // namespace uiommufd
