#include "run.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <link.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/protocol.h"
#include "server/server.h"

#include "uiommufd/lockdep/lockdep.h"

// Set by tools/uiommufd/CMakeLists.txt: the library's name, and the path from the install bindir to the
// install libdir.
#ifndef UIOMMUFD_PRELOAD_NAME
#define UIOMMUFD_PRELOAD_NAME "libuiommufd-preload.so"
#endif
#ifndef UIOMMUFD_BIN_TO_LIB
#define UIOMMUFD_BIN_TO_LIB "../lib"
#endif

namespace uiommufd::tools {
namespace {

std::string self_dir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}

std::string find_preload() {
  const std::string dir = self_dir();
  for (const std::string& candidate :
       {dir + "/" UIOMMUFD_PRELOAD_NAME, dir + "/" UIOMMUFD_BIN_TO_LIB "/" UIOMMUFD_PRELOAD_NAME}) {
    if (access(candidate.c_str(), R_OK) == 0) {
      char* real = realpath(candidate.c_str(), nullptr);
      std::string out = real ? real : candidate;
      std::free(real);
      return out;
    }
  }
  return {};
}

// A sanitizer runtime loaded into this process. In a sanitizer build the preload library was built with
// the same sanitizer, and that runtime must be the first object of the program's initial library list.
std::string sanitizer_runtime() {
  std::string found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        const std::string_view path = info->dlpi_name ? info->dlpi_name : "";
        const size_t slash = path.rfind('/');
        const std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
        for (const char* rt : {"libasan.so", "libtsan.so", "liblsan.so", "libhwasan.so"}) {
          if (base.substr(0, std::strlen(rt)) == rt) {
            *static_cast<std::string*>(data) = std::string(path);
            return 1;
          }
        }
        return 0;
      },
      &found);
  return found;
}

int usage_error(const char* msg, const char* usage) {
  std::fprintf(stderr, "uiommufd run: %s\n%s", msg, usage);
  return 2;
}

// The signals the server takes through its signalfd (Server::run()): blocked before the fork, so none is
// lost in between, and unblocked again in the program's process before exec.
sigset_t server_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR2}) sigaddset(&set, sig);
  return set;
}

void set_lockdep_mode(const char* mode) {
  if (!mode) return;
  using lockdep::Mode;
  lockdep::set_mode(!std::strcmp(mode, "off")     ? Mode::kOff
                    : !std::strcmp(mode, "abort") ? Mode::kAbort
                                                  : Mode::kReport);
}

// `run --shared`: the server here, the program in a child.
int run_shared(char** prog, const char* lockdep) {
  const std::string address = server::make_address();
  Result<std::unique_ptr<server::Server>> srv = server::Server::listen(address);
  if (!srv.ok()) {
    std::fprintf(stderr, "uiommufd run: cannot listen on %s: %s\n", address.c_str(),
                 std::strerror(srv.error()));
    return 1;
  }
  set_lockdep_mode(lockdep);
  // The program's orphans become ours, so they stay descendants whose memory we may read (Yama).
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  const sigset_t set = server_signals();
  sigset_t old;
  sigprocmask(SIG_BLOCK, &set, &old);
  const pid_t child = fork();
  if (child < 0) {
    std::fprintf(stderr, "uiommufd run: fork: %s\n", std::strerror(errno));
    return 1;
  }
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, nullptr);
    setenv(shared::kServerEnv, address.c_str(), 1);
    execvp(prog[0], prog);
    const int err = errno;
    std::fprintf(stderr, "uiommufd run: %s: %s\n", prog[0], std::strerror(err));
    _exit(err == ENOENT ? 127 : 126);
  }
  const int status = (*srv)->run(child);
  srv->reset();
  exit_like(status);
}

// The --dump-* options (docs/dump.md), handed on in the environment that the preload and the server read
// (dump/dumper.h). 1: taken; 0: not a dump option; -1: a bad value. Any of them turns the SIGUSR2 trigger
// on; --dump-at-exit adds the dump at exit. Relative paths are made absolute here, as the program may
// change its directory.
int take_dump_option(std::string_view a) {
  if (a == "--dump-at-exit") return setenv("UIOMMUFD_DUMP", "exit", 1), 1;
  static constexpr std::pair<std::string_view, const char*> kValued[] = {
      {"--dump-format=", "UIOMMUFD_DUMP_FORMAT"},
      {"--dump-file=", "UIOMMUFD_DUMP_FILE"},
      {"--dump-svg=", "UIOMMUFD_DUMP_SVG"}};
  for (const auto& [prefix, env] : kValued) {
    if (a.substr(0, prefix.size()) != prefix) continue;
    std::string value(a.substr(prefix.size()));
    if (value.empty() || (prefix == kValued[0].first && value != "text" && value != "json")) return -1;
    char cwd[4096];
    if (prefix != kValued[0].first && value[0] != '/' && getcwd(cwd, sizeof cwd)) value = cwd + ("/" + value);
    setenv(env, value.c_str(), 1);
    if (!std::getenv("UIOMMUFD_DUMP")) setenv("UIOMMUFD_DUMP", "signal", 1);
    return 1;
  }
  return 0;
}

}  // namespace

[[noreturn]] void exit_like(int status) {
  std::fflush(nullptr);
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

int serve(int argc, char** args, const char* usage) {
  const char* lockdep = nullptr;
  const char* address = nullptr;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = args[i];
    if (a.substr(0, 10) == "--lockdep=") {
      lockdep = args[i] + 10;
    } else if (!address && a.substr(0, 1) != "-") {
      address = args[i];
    } else {
      std::fprintf(stderr, "uiommufd serve: expected [--lockdep=MODE] ADDRESS\n%s", usage);
      return 2;
    }
  }
  if (!address) {
    std::fprintf(stderr, "uiommufd serve: no address given\n%s", usage);
    return 2;
  }
  Result<std::unique_ptr<server::Server>> srv = server::Server::listen(address);
  if (!srv.ok()) {
    std::fprintf(stderr, "uiommufd serve: cannot listen on %s: %s\n", address, std::strerror(srv.error()));
    return 1;
  }
  set_lockdep_mode(lockdep);
  const sigset_t set = server_signals();
  sigprocmask(SIG_BLOCK, &set, nullptr);
  std::fprintf(stderr, "uiommufd serve: listening on %s (%s=%s)\n", address, shared::kServerEnv, address);
  return (*srv)->run(0);
}

int run_program(int argc, char** args, const char* usage) {
  int i = 0;
  const char* lockdep = nullptr;
  const char* server_address = nullptr;
  bool shared_mode = false;
  bool dump_options = false;
  for (; i < argc; ++i) {
    const std::string_view a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a.substr(0, 10) == "--lockdep=") {
      lockdep = args[i] + 10;
      if (std::strcmp(lockdep, "off") != 0 && std::strcmp(lockdep, "report") != 0 &&
          std::strcmp(lockdep, "abort") != 0)
        return usage_error("--lockdep takes off, report or abort", usage);
      continue;
    }
    if (a == "--shared") {
      shared_mode = true;
      continue;
    }
    if (a.substr(0, 9) == "--server=" && a.size() > 9) {
      server_address = args[i] + 9;
      continue;
    }
    if (const int taken = take_dump_option(a); taken != 0) {
      if (taken < 0)
        return usage_error("--dump-format takes text or json; --dump-file and --dump-svg a path", usage);
      dump_options = true;
      continue;
    }
    return usage_error(
        "expected [--lockdep=MODE] [--shared | --server=ADDRESS] [--dump-...] -- program [args...]", usage);
  }
  if (i >= argc) return usage_error("no program given (after --)", usage);
  if (shared_mode && server_address) return usage_error("--shared and --server exclude each other", usage);
  // The server that owns the engine dumps; one started apart takes the settings from its own environment.
  if (server_address && dump_options)
    return usage_error("--dump-... with --server: give UIOMMUFD_DUMP* to `uiommufd serve` instead", usage);

  const std::string preload = find_preload();
  if (preload.empty()) {
    std::fprintf(stderr, "uiommufd run: %s not found next to %s or in %s/%s\n", UIOMMUFD_PRELOAD_NAME,
                 self_dir().c_str(), self_dir().c_str(), UIOMMUFD_BIN_TO_LIB);
    return 1;
  }

  // LD_PRELOAD: [sanitizer runtime] preload [what was there, minus duplicates of either].
  std::vector<std::string> entries;
  if (std::string rt = sanitizer_runtime(); !rt.empty()) entries.push_back(rt);
  entries.push_back(preload);
  if (const char* old = std::getenv("LD_PRELOAD")) {
    std::string s = old;
    size_t pos = 0;
    while (pos <= s.size()) {
      size_t end = s.find_first_of(": ", pos);
      if (end == std::string::npos) end = s.size();
      std::string e = s.substr(pos, end - pos);
      bool dup = e.empty();
      for (const std::string& have : entries) dup = dup || have == e;
      if (!dup) entries.push_back(e);
      pos = end + 1;
    }
  }
  std::string value;
  for (const std::string& e : entries) value += (value.empty() ? "" : ":") + e;
  setenv("LD_PRELOAD", value.c_str(), 1);
  if (lockdep) setenv("UIOMMUFD_LOCKDEP", lockdep, 1);
  if (server_address) setenv(shared::kServerEnv, server_address, 1);
  if (shared_mode) return run_shared(args + i, lockdep);

  execvp(args[i], args + i);
  const int err = errno;
  std::fprintf(stderr, "uiommufd run: %s: %s\n", args[i], std::strerror(err));
  return err == ENOENT ? 127 : 126;
}

}  // namespace uiommufd::tools
