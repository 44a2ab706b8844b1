#include "lockdep_graph.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace uiommufd::tools {

namespace {

constexpr const char* kPrefix = "uiommufd lockdep-graph";

int usage_error(const char* usage, const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", kPrefix, what.c_str());
  std::fputs(usage, stderr);
  return 2;
}

// The first executable regular file `name` in the directories of PATH (execvp's default path when PATH is
// unset; an empty entry is the current directory), or "".
std::string find_on_path(const char* name) {
  std::string path;
  if (const char* env = std::getenv("PATH")) {
    path = env;
  } else {
    path.resize(confstr(_CS_PATH, nullptr, 0));
    confstr(_CS_PATH, path.data(), path.size());
    path.resize(std::strlen(path.c_str()));
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t end = path.find(':', start);
    std::string dir = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + name;
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(candidate.c_str(), X_OK) == 0)
      return candidate;
    if (end == std::string::npos) return "";
    start = end + 1;
  }
}

// 0 when `path` is a regular file (or anything but a directory) this process can read; else an errno.
int check_readable(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  struct stat st;
  const int err = fstat(fd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  close(fd);
  return err;
}

std::string default_output(std::string_view input) {
  constexpr std::string_view kDot = ".dot";
  if (input.size() > kDot.size() && input.substr(input.size() - kDot.size()) == kDot)
    input.remove_suffix(kDot.size());
  return std::string(input) + ".svg";
}

}  // namespace

int lockdep_graph(int argc, char** args, const char* usage) {
  std::string input, output;
  bool have_input = false, have_output = false;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = args[i];
    if (arg == "-o") {
      if (have_output) return usage_error(usage, "-o given twice");
      if (i + 1 >= argc) return usage_error(usage, "-o needs a file name (or - for standard output)");
      output = args[++i];
      have_output = true;
    } else if (arg.size() > 1 && arg[0] == '-') {
      return usage_error(usage, "unknown option '" + std::string(arg) + "'");
    } else if (arg.empty() || arg == "-") {
      return usage_error(usage, "the input must be a DOT file (standard input is not read)");
    } else if (have_input) {
      return usage_error(usage, "more than one input file");
    } else {
      input = arg;
      have_input = true;
    }
  }
  if (!have_input) return usage_error(usage, "missing the DOT file (written by UIOMMUFD_LOCKDEP_DOT=FILE)");
  if (output.empty()) {
    if (have_output) return usage_error(usage, "-o needs a file name (or - for standard output)");
    output = default_output(input);
  }

  if (const int err = check_readable(input)) {
    std::fprintf(stderr, "%s: cannot read %s: %s\n", kPrefix, input.c_str(), std::strerror(err));
    return 1;
  }
  const std::string dot = find_on_path("dot");
  if (dot.empty()) {
    std::fprintf(stderr,
                 "%s: Graphviz's dot is not on PATH. It comes with the Debian package graphviz; install it "
                 "with:\n  %sapt-get install graphviz\n",
                 kPrefix, geteuid() == 0 ? "" : "sudo ");
    return 1;
  }

  std::vector<std::string> argv_strings = {"dot", "-Tsvg", input};
  if (output != "-") {
    argv_strings.push_back("-o");
    argv_strings.push_back(output);
  }
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid;
  if (const int err = posix_spawn(&pid, dot.c_str(), nullptr, nullptr, argv.data(), environ)) {
    std::fprintf(stderr, "%s: cannot run %s: %s\n", kPrefix, dot.c_str(), std::strerror(err));
    return 1;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      std::fprintf(stderr, "%s: waiting for %s: %s\n", kPrefix, dot.c_str(), std::strerror(errno));
      return 1;
    }
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  if (WIFSIGNALED(status)) {
    std::fprintf(stderr, "%s: %s was killed by signal %d (%s)\n", kPrefix, dot.c_str(), WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
  } else {
    std::fprintf(stderr, "%s: %s failed with exit status %d on %s\n", kPrefix, dot.c_str(),
                 WEXITSTATUS(status), input.c_str());
  }
  return 1;
}

}  // namespace uiommufd::tools
