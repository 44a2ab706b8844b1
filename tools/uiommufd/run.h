// `uiommufd run`: an unmodified program with /dev/iommu served by libuiommufd-preload.so.
#pragma once

namespace uiommufd::tools {

// args: what followed "run" on the command line: [--lockdep=off|report|abort] -- program [args...].
// Finds the preload library next to this executable (build tree) or in its install location relative to
// it, puts it in front of LD_PRELOAD (after a sanitizer runtime this tool itself runs with, which must
// come first), sets UIOMMUFD_LOCKDEP when --lockdep is given, and execs the program (searched in PATH).
// Returns only on failure: 2 usage error (printed with `usage`), 1 the library is not found, 126 the
// program cannot be executed, 127 it is not found.
int run_program(int argc, char** args, const char* usage);

}  // namespace uiommufd::tools
