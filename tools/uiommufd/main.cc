// uiommufd: the command-line tool.
//
//   uiommufd run [--lockdep=off|report|abort] [--shared | --server=ADDR] [--dump-at-exit]
//                [--dump-format=text|json] [--dump-file=FILE] [--dump-svg=DIR] -- program [args...]
//                      runs the program with /dev/iommu served by libuiommufd-preload.so
//   uiommufd serve [--lockdep=off|report|abort] ADDR
//                      a shared-mode server for programs run with --server=ADDR
//   uiommufd version   "uiommufd <version>"
//   uiommufd demo      an emulated device doing DMA through the engine, then the lock validator
//                      catching the access-unmap driver bug
//   uiommufd help      usage
//
// Exit codes: 0 success; 1 the command ran and failed; 2 usage error; 77 demo skipped (validator
// compiled out: the engine part ran and passed, the buggy-driver part cannot be reported). `run` execs
// the program, so its exit code is the program's; 126 / 127 when it cannot be executed / found, as a
// shell reports them.

#include <cstdio>
#include <string_view>

#include "demo_access.h"
#include "run.h"

// Set by tools/uiommufd/CMakeLists.txt from the CMake project version.
#ifndef UIOMMUFD_VERSION
#define UIOMMUFD_VERSION "unknown (built outside CMake)"
#endif

namespace {

constexpr const char* kUsage =
    "usage: uiommufd <command>\n"
    "\n"
    "commands:\n"
    "  run [--lockdep=off|report|abort] [--shared | --server=ADDR] [--dump-...] -- program [args...]\n"
    "            run an unmodified program with /dev/iommu served by uiommufd\n"
    "            (libuiommufd-preload.so, found next to this tool or in ../lib);\n"
    "            --shared: one engine in a server process for the program and every\n"
    "            process it forks, execs or passes an iommufd to (docs/shared.md);\n"
    "            --server=ADDR: use the server `uiommufd serve ADDR` runs\n"
    "            --dump-at-exit: print the engine's state (contexts, objects, IOAS areas,\n"
    "            pins, domains, accounting; LEAK lines for what is left) at exit; this and\n"
    "            every other --dump option also dump on SIGUSR2 (in-process: to the\n"
    "            program; --shared: to this uiommufd process, the server) (docs/dump.md)\n"
    "            --dump-format=text|json  --dump-file=FILE (appended; %p: the pid; default\n"
    "            standard error)  --dump-svg=DIR (one picture per IOAS)\n"
    "  serve [--lockdep=off|report|abort] ADDR\n"
    "            serve /dev/iommu on the unix socket ADDR (@name: abstract) until\n"
    "            SIGTERM or SIGINT\n"
    "  demo      an emulated device pins, reads and writes guest memory through an IOAS and\n"
    "            survives an unmap; then a driver holding its lock across access destroy is\n"
    "            caught by the lock validator (in a child process, so nothing hangs)\n"
    "            (exit 0 when both went as expected)\n"
    "  version   print the version\n"
    "  help      print this help\n"
    "\n"
    "environment:\n"
    "  UIOMMUFD_LOCKDEP=off|report|abort   lock validator mode (default: report)\n"
    "  UIOMMUFD_SERVER=ADDR                the preload asks the server at ADDR (shared mode)\n"
    "  UIOMMUFD_LOG=error|warn|info|debug  log threshold (default: warn)\n"
    "  UIOMMUFD_DUMP=exit,signal           when to dump (set by --dump-*): exit implies signal\n"
    "  UIOMMUFD_DUMP_FORMAT=text|json      the dump's format (--dump-format)\n"
    "  UIOMMUFD_DUMP_FILE=FILE             where dumps go (--dump-file; %p: the pid)\n"
    "  UIOMMUFD_DUMP_SVG=DIR               SVG pictures of each IOAS (--dump-svg)\n";

int usage_error(const char* fmt, const char* arg) {
  std::fprintf(stderr, fmt, arg);
  std::fputs(kUsage, stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage_error("uiommufd: missing command%s\n", "");
  const std::string_view command = argv[1];

  if (command == "help" || command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "run") return uiommufd::tools::run_program(argc - 2, argv + 2, kUsage);
  if (command == "serve") return uiommufd::tools::serve(argc - 2, argv + 2, kUsage);
  if (argc > 2) return usage_error("uiommufd %s: unexpected arguments\n", argv[1]);
  if (command == "version" || command == "--version") {
    std::printf("uiommufd %s\n", UIOMMUFD_VERSION);
    return 0;
  }
  if (command == "demo") return uiommufd::tools::run_demo();
  return usage_error("uiommufd: unknown command '%s'\n", argv[1]);
}
