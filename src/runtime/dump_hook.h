// The preload's dump triggers (dump_hook.cc; docs/dump.md).
#pragma once

namespace uiommufd::runtime::dump_hook {

// From the interposed _exit and _Exit: the exit dump that exit() makes from its atexit list, in the process
// that opened /dev/iommu (a forked child leaving with _exit holds only copies of its parent's contexts, so
// it stays quiet); at most once per process.
void before_exit();

}  // namespace uiommufd::runtime::dump_hook
