// dump_probe MODE [FILE]: a program that knows nothing of uiommufd, run by CTest as
// `uiommufd run --dump-... -- dump_probe MODE`, to see the dump triggers as a user meets them (docs/dump.md).
//
//   leak             an IOAS with a mapping and a mock domain (so pages are pinned), left behind at exit
//   clean            an IOAS made and destroyed, the iommufd closed: nothing left at exit
//   leak-_exit       as leak, leaving with _exit after a forked child has left with _exit: one dump, the
//                    parent's (the child holds only copies of its parent's contexts)
//   signal FILE      SIGUSR2 to itself with an IOAS live; waits for the dump to reach FILE ("%p": its pid)
//   signal-server FILE  the same, with SIGUSR2 to its parent (the server of `uiommufd run --shared`; "%p"
//                    is the parent's pid)
//   own-handler FILE installs a SIGUSR2 handler of its own: its signal reaches that handler and no dump is
//                    made (FILE stays without one)
//
// Exit 0 when the mode's expectation held, 1 otherwise (with a message on standard error).
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "preload_test_util.h"

namespace {

using namespace preload_test;
using uiommufd::uapi::IOMMU_TEST_CMD;
using uiommufd::uapi::iommu_test_cmd;
using uiommufd::uapi::IOMMU_TEST_OP_MOCK_DOMAIN;

constexpr std::uint64_t kIova = 0x1000000;
constexpr std::size_t kLen = 4 * 4096;

int fail(const char* what) {
  std::fprintf(stderr, "dump_probe: %s (errno %d: %s)\n", what, errno, std::strerror(errno));
  return 1;
}

// An iommufd with IOAS 1, 4 pages mapped at kIova and a mock domain filled from them. -1 on failure.
int populated_iommufd() {
  const int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  const long ioas = ioas_alloc(fd);
  void* mem = mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ioas <= 0 || mem == MAP_FAILED) return -1;
  std::memset(mem, 1, kLen);
  if (map_fixed(fd, static_cast<std::uint32_t>(ioas), mem, kLen, kIova) != 0) return -1;
  iommu_test_cmd md = test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, static_cast<std::uint32_t>(ioas));
  if (ioctl_rc(fd, IOMMU_TEST_CMD, &md) != 0) return -1;
  return fd;
}

std::string expand(const std::string& pattern, pid_t pid) {
  std::string out = pattern;
  if (std::size_t at = out.find("%p"); at != std::string::npos) out.replace(at, 2, std::to_string(pid));
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Waits up to 20 s for `path` to hold a whole dump (text: ends after its header line; JSON: a line).
bool wait_for_dump(const std::string& path) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < give_up) {
    const std::string s = read_file(path);
    if (s.find("uiommufd dump") != std::string::npos && s.find("ioas 1") != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::atomic<int> g_own_handler_runs{0};

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const std::string file = argc > 2 ? argv[2] : "";
  if (mode == "leak") {
    if (populated_iommufd() < 0) return fail("populating an iommufd");
    return 0;  // the fd, its IOAS, the mock domain and the pins are left to exit
  }
  if (mode == "leak-_exit") {
    if (populated_iommufd() < 0) return fail("populating an iommufd");
    const pid_t child = fork();
    if (child < 0) return fail("fork");
    if (child == 0) _exit(0);
    int status = 0;
    if (waitpid(child, &status, 0) != child || status != 0) return fail("the child");
    std::fflush(nullptr);
    _exit(0);
  }
  if (mode == "clean") {
    const int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
    if (fd < 0) return fail("open /dev/iommu");
    const long ioas = ioas_alloc(fd);
    if (ioas <= 0 || destroy(fd, static_cast<std::uint32_t>(ioas)) != 0) return fail("IOAS alloc or destroy");
    close(fd);
    return 0;
  }
  if ((mode == "signal" || mode == "signal-server") && !file.empty()) {
    const int fd = populated_iommufd();
    if (fd < 0) return fail("populating an iommufd");
    const bool server = mode == "signal-server";
    const pid_t target = server ? getppid() : getpid();
    if (kill(target, SIGUSR2) != 0) return fail("kill SIGUSR2");
    if (!wait_for_dump(expand(file, target))) return fail("no dump in the file after SIGUSR2");
    close(fd);
    return 0;
  }
  if (mode == "own-handler" && !file.empty()) {
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_own_handler_runs.fetch_add(1); };
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR2, &sa, nullptr) != 0) return fail("sigaction");
    const int fd = populated_iommufd();
    if (fd < 0) return fail("populating an iommufd");
    if (raise(SIGUSR2) != 0) return fail("raise");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    if (g_own_handler_runs.load() != 1) return fail("the program's own handler did not run");
    if (read_file(expand(file, getpid())).find("uiommufd dump") != std::string::npos)
      return fail("a dump was made although the program handles SIGUSR2");
    close(fd);
    return 0;
  }
  std::fprintf(stderr,
               "usage: dump_probe leak|leak-_exit|clean|signal FILE|signal-server FILE|own-handler FILE\n");
  return 2;
}
