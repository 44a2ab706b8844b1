// Test helper: observes mlock itself rather than our bookkeeping of it.
//
// /proc/self/smaps lists every VMA with its VmFlags, "lo" meaning VM_LOCKED. mlock and munlock split VMAs
// at the range they are given, so the locked pages of a range are exactly its overlap with "lo" VMAs,
// whether or not the pages are resident. VmLck in /proc/self/status is the process's total (the kernel's
// locked_vm), for checks that nothing is left locked anywhere.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "uiommufd/base/page.h"

namespace uiommufd::lock_probe {

// Pages of [addr, addr + len) that lie in a VM_LOCKED mapping of this process.
inline std::uint64_t locked_pages_in(std::uint64_t addr, std::uint64_t len) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  std::uint64_t vma_start = 0, vma_end = 0, locked = 0;
  while (std::getline(smaps, line)) {
    const std::size_t dash = line.find('-');
    const std::size_t space = line.find(' ');
    // A VMA header starts "start-end perms"; attribute lines start with a name and a colon.
    if (dash != std::string::npos && space != std::string::npos && dash < space && line.find(':') > space) {
      vma_start = std::stoull(line.substr(0, dash), nullptr, 16);
      vma_end = std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16);
      continue;
    }
    if (line.rfind("VmFlags:", 0) != 0) continue;
    std::istringstream flags(line.substr(8));
    std::string flag;
    bool lo = false;
    while (flags >> flag) lo |= flag == "lo";
    const std::uint64_t from = std::max(vma_start, addr), to = std::min(vma_end, addr + len);
    if (lo && from < to) locked += (to - from) / kPageSize;
  }
  return locked;
}

// VmLck of this process, in KiB (-1 if unreadable).
inline long vm_locked_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmLck:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

}  // namespace uiommufd::lock_probe
