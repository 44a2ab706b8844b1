// `uiommufd run`: an unmodified program with /dev/iommu served by libuiommufd-preload.so.
#pragma once

namespace uiommufd::tools {

// args: what followed "run" on the command line: [--lockdep=off|report|abort] -- program [args...].
// Finds the preload library next to this executable (build tree) or in its install location relative to
// it, puts it in front of LD_PRELOAD (after a sanitizer runtime this tool itself runs with, which must
// come first), sets UIOMMUFD_LOCKDEP when --lockdep is given, and execs the program (searched in PATH).
// Returns only on failure: 2 usage error (printed with `usage`), 1 the library is not found, 126 the
// program cannot be executed, 127 it is not found.
//
// --shared (docs/shared.md): forks; this process becomes the server of one engine for the whole run, the
// child runs the program in the preload's shared mode (UIOMMUFD_SERVER names the server). Returns only on
// a failure before the fork; otherwise exits as the program did (its code, or its signal) once it has
// exited and no process holds a connection or a served fd.
// --server=ADDRESS: the program is a client of a server already running (`uiommufd serve ADDRESS`).
int run_program(int argc, char** args, const char* usage);

// args: what followed "serve": [--lockdep=off|report|abort] ADDRESS. Serves ADDRESS ("@name": abstract)
// until SIGTERM or SIGINT; exit code 0, 1 when it cannot listen, 2 usage error.
int serve(int argc, char** args, const char* usage);

// Exits as a program's wait status says: its exit code, or the same signal (its default action, without a
// core dump of ours), so a shell sees what it would have seen without this process in between.
[[noreturn]] void exit_like(int status);

}  // namespace uiommufd::tools
