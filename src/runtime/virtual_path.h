// Which paths the preload serves itself instead of the kernel: /dev/iommu, the fail-nth files of this
// process's threads, and the fault-injection part of debugfs (docs/fault-injection.md#virtual-fail-nth,
// #virtual-debugfs).
//
// Pure functions of the path text and the process's ids, so they are unit-tested without interposition.
// Symbolic links are not followed (a link to /dev/iommu opens whatever the kernel has there).
#pragma once

#include <string>
#include <string_view>

namespace uiommufd::runtime {

enum class VirtualKind {
  kNone,         // not ours: the kernel's file
  kIommufd,      // /dev/iommu
  kFailNth,      // the fail-nth file of thread `tid` of this process
  kDebugfsDir,   // /sys/kernel/debug or one of its fail* directories
  kDebugfsKnob,  // a file inside a fail* directory of debugfs
};

struct VirtualPath {
  VirtualKind kind = VirtualKind::kNone;
  int tid = 0;  // kFailNth: the thread whose counter the file is
};

// Classifies an absolute path already in normal form (see normalize_path). `pid` is this process's id,
// `self_tid` the calling thread's. Paths of other processes' threads are kNone (not emulated). A
// kFailNth tid is not checked for existence here.
VirtualPath classify_path(std::string_view path, int pid, int self_tid);

// `rel` resolved lexically against the absolute directory `base` (ignored when `rel` is absolute):
// repeated slashes and "." removed, ".." taken back one component, no trailing slash ("/" stays "/").
std::string normalize_path(std::string_view base, std::string_view rel);

// A cheap filter for open paths: false when an absolute `path` cannot name a virtual file, so passthrough
// opens pay a few byte compares and no allocation.
bool may_be_virtual_absolute(const char* path);

// True when a relative path's last component is "fail-nth" or "iommu": only then is the path of the
// directory fd it is relative to looked up (one readlink), so other relative opens stay cheap.
bool may_name_virtual_relative(std::string_view rel);

}  // namespace uiommufd::runtime
