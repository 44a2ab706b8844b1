// uiommufd: the command-line tool. Its commands, options and environment are described once, in kCommands
// and kEnvironment below, which `uiommufd help [COMMAND]` prints; man/uiommufd.1 is the manual page, kept
// in step by a test (man/check_man.py).
//
// Exit codes: 0 success; 1 the command ran and failed (lockdep-graph: also when Graphviz is not installed);
// 2 usage error; 77 demo skipped (validator compiled out: the engine part ran and passed, the buggy-driver
// part cannot be reported). `run` and `trace` exec the program, so their exit code is the program's; 126 /
// 127 when it cannot be executed / found, as a shell reports them.

#include <cstdio>
#include <string>
#include <string_view>

#include "demo_access.h"
#include "lockdep_graph.h"
#include "run.h"
#include "trace.h"

// Set by tools/uiommufd/CMakeLists.txt from the CMake project version.
#ifndef UIOMMUFD_VERSION
#define UIOMMUFD_VERSION "unknown (built outside CMake)"
#endif

namespace {

struct Command {
  const char* name;
  const char* synopsis;  // what follows the name
  const char* text;      // indented lines
};

constexpr Command kCommands[] = {
    {"run", "[--lockdep=off|report|abort] [--shared | --server=ADDR] [--dump-...] -- program [args...]",
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
     "            standard error)  --dump-svg=DIR (one picture per IOAS)\n"},
    {"trace",
     "[--json] [-o FILE] [-e NAME,...] [--hide-addresses] [--passthrough]\n"
     "            [run options] -- program [args...]",
     "            run the program as `run` does and print every /dev/iommu call it makes\n"
     "            (open, close, dup, every iommufd, VFIO and selftest ioctl), decoded, with\n"
     "            its result: to stderr, or to FILE; records of every process of the run\n"
     "            go through shared memory to this process, which writes them out;\n"
     "            --json: one JSON object per line; -e: only these calls (IOAS_MAP,\n"
     "            IOMMU_TEST_CMD, ACCESS_RW, open, close, dup, ...);\n"
     "            --hide-addresses: the program's addresses print as <addr>, so traces of\n"
     "            two runs compare line by line; --passthrough: emulate nothing, trace the\n"
     "            calls the program makes to this machine's own /dev/iommu (docs/trace.md)\n"},
    {"serve", "[--lockdep=off|report|abort] ADDR",
     "            serve /dev/iommu on the unix socket ADDR (@name: abstract) until\n"
     "            SIGTERM or SIGINT\n"},
    {"demo", "",
     "            an emulated device pins, reads and writes guest memory through an IOAS and\n"
     "            survives an unmap; then a driver holding its lock across access destroy is\n"
     "            caught by the lock validator (in a child process, so nothing hangs); ends\n"
     "            by writing a picture of each part and saying where\n"
     "            (exit 0 when both went as expected)\n"},
    {"lockdep-graph", "FILE.dot [-o FILE.svg]",
     "            render the lock class graph that UIOMMUFD_LOCKDEP_DOT wrote as SVG with\n"
     "            Graphviz's dot (Debian package graphviz); reports' chains are red;\n"
     "            -o -: standard output (default: FILE.svg beside FILE.dot)\n"},
    {"version", "", "            print the version\n"},
    {"help", "[COMMAND]", "            print this help, or one command's\n"},
};

constexpr const char* kEnvironment =
    "environment:\n"
    "  UIOMMUFD_LOCKDEP=off|report|abort   lock validator mode (default: report)\n"
    "  UIOMMUFD_LOCKDEP_DOT=FILE           write the lock class graph (Graphviz DOT) to FILE at\n"
    "                                      exit and after each report; %p: the process id\n"
    "  UIOMMUFD_SERVER=ADDR                the preload asks the server at ADDR (shared mode)\n"
    "  UIOMMUFD_LOG=error|warn|info|debug  log threshold (default: warn)\n"
    "  UIOMMUFD_TRACE=FILE|-               trace /dev/iommu calls to FILE or stderr (`trace` sets it)\n"
    "  UIOMMUFD_TRACE_FORMAT=json          ... as JSON lines\n"
    "  UIOMMUFD_TRACE_FILTER=NAME,...      ... only these calls\n"
    "  UIOMMUFD_TRACE_ADDRESSES=hide       ... with the program's addresses as <addr>\n"
    "  UIOMMUFD_TRACE_PASSTHROUGH=1        ... of the kernel's /dev/iommu, emulating nothing\n"
    "  UIOMMUFD_DUMP=exit,signal           when to dump (set by --dump-*): exit implies signal\n"
    "  UIOMMUFD_DUMP_FORMAT=text|json      the dump's format (--dump-format)\n"
    "  UIOMMUFD_DUMP_FILE=FILE             where dumps go (--dump-file; %p: the pid)\n"
    "  UIOMMUFD_DUMP_SVG=DIR               SVG pictures of each IOAS (--dump-svg)\n";

std::string command_help(const Command& c) {
  std::string out = "  ";
  out += c.name;
  if (*c.synopsis) {
    // A long name puts the synopsis on a line of its own, as the short ones fit beside theirs.
    out += std::string_view(c.name).size() + 3 > 12 ? "\n            "
                                                    : std::string(10 - std::string_view(c.name).size(), ' ');
    out += c.synopsis;
  }
  out += "\n";
  out += c.text;
  return out;
}

std::string usage() {
  std::string out = "usage: uiommufd <command>\n\ncommands:\n";
  for (const Command& c : kCommands) out += command_help(c);
  out += "\n";
  out += kEnvironment;
  out += "\nman uiommufd (man/uiommufd.1 in the source tree) has it all.\n";
  return out;
}

int usage_error(const char* fmt, const char* arg) {
  std::fprintf(stderr, fmt, arg);
  std::fputs(usage().c_str(), stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage_error("uiommufd: missing command%s\n", "");
  const std::string_view command = argv[1];
  const std::string text = usage();

  if (command == "help" || command == "--help" || command == "-h") {
    if (argc == 2) {
      std::fputs(text.c_str(), stdout);
      return 0;
    }
    if (argc > 3) return usage_error("uiommufd help: one command at most%s\n", "");
    for (const Command& c : kCommands) {
      if (argv[2] != std::string_view(c.name)) continue;
      std::printf("usage: uiommufd %s %s\n%s", c.name, c.synopsis, c.text);
      return 0;
    }
    return usage_error("uiommufd help: unknown command '%s'\n", argv[2]);
  }
  if (command == "run") return uiommufd::tools::run_program(argc - 2, argv + 2, text.c_str());
  if (command == "serve") return uiommufd::tools::serve(argc - 2, argv + 2, text.c_str());
  if (command == "trace") return uiommufd::tools::trace_program(argc - 2, argv + 2, text.c_str());
  if (command == "lockdep-graph") return uiommufd::tools::lockdep_graph(argc - 2, argv + 2, text.c_str());
  if (argc > 2) return usage_error("uiommufd %s: unexpected arguments\n", argv[1]);
  if (command == "version" || command == "--version") {
    std::printf("uiommufd %s\n", UIOMMUFD_VERSION);
    return 0;
  }
  if (command == "demo") return uiommufd::tools::run_demo();
  return usage_error("uiommufd: unknown command '%s'\n", argv[1]);
}
