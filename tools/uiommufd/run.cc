#include "run.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <link.h>
#include <unistd.h>

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

}  // namespace

int run_program(int argc, char** args, const char* usage) {
  int i = 0;
  const char* lockdep = nullptr;
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
    return usage_error("expected [--lockdep=MODE] -- program [args...]", usage);
  }
  if (i >= argc) return usage_error("no program given (after --)", usage);

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

  execvp(args[i], args + i);
  const int err = errno;
  std::fprintf(stderr, "uiommufd run: %s: %s\n", args[i], std::strerror(err));
  return err == ENOENT ? 127 : 126;
}

}  // namespace uiommufd::tools
