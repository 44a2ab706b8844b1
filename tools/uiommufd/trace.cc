#include "trace.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run.h"
#include "server/protocol.h"

#include "uiommufd/trace/decoder.h"
#include "uiommufd/trace/raw.h"
#include "uiommufd/trace/ring.h"

namespace uiommufd::tools {
namespace {

int usage_error(const std::string& msg, const char* usage) {
  std::fprintf(stderr, "uiommufd trace: %s\n%s", msg.c_str(), usage);
  return 2;
}

// The file as an absolute path, so that a program that changes directory still appends to it.
std::string absolute(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[4096];
  if (!getcwd(cwd, sizeof cwd)) return path;
  return std::string(cwd) + "/" + path;
}

// The ring's fd, at a number in the top quarter of the fd table (as the preload keeps its own fds), so the
// program's fds get the numbers they would get without us; inherited across exec, not close-on-exec.
int high_fd(int fd) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return fd;
  const rlim_t cur = rl.rlim_cur == RLIM_INFINITY ? (rlim_t{1} << 20) : rl.rlim_cur;
  const int hi = ::fcntl(fd, F_DUPFD, static_cast<int>(cur - cur / 4 - 1));
  return hi < 0 ? fd : hi;
}

struct Output {
  explicit Output(int f) : fd(f) {}
  int fd;
  char buf[1 << 16];
  std::size_t len = 0;
  void flush() {
    for (std::size_t done = 0; done < len;) {
      const ssize_t n = ::write(fd, buf + done, len - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    len = 0;
  }
  void add(std::string_view rec) {
    if (len + rec.size() > sizeof buf) flush();
    if (rec.size() > sizeof buf) {
      len = 0;
      return;
    }
    std::memcpy(buf + len, rec.data(), rec.size());
    len += rec.size();
  }
};

// This process stays as the ring's consumer and the program's parent: `start` runs in a child (it execs the
// program, or becomes the shared-mode server); records are written out as they come, every few
// milliseconds, until the program and every process it left behind (we are their subreaper) have exited.
// Then exits as the program did. SIGTERM and SIGHUP are passed on; SIGINT and SIGQUIT, which a terminal
// sends the program too, are ignored here.
template <typename Start>
int consume(trace::Ring& ring, const std::string& out, trace::Style style, Start start) {
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  sigset_t set, old;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&set, sig);
  sigprocmask(SIG_BLOCK, &set, &old);
  const pid_t child = fork();
  if (child < 0) {
    std::fprintf(stderr, "uiommufd trace: fork: %s\n", std::strerror(errno));
    return 1;
  }
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, nullptr);
    _exit(start());
  }
  auto* output = new Output(out == "-" ? 2 : ::open(out.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  const int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  // Ioctls come as raw records, formatted here (docs/trace.md#raw); the rest come formatted.
  struct Sink {
    Output* output;
    trace::Style style;
    trace::Line line;
  };
  auto* sink = new Sink{output, style, {}};
  auto drain = [&] {
    ring.drain(
        [](void* ctx, std::string_view rec) {
          auto* k = static_cast<Sink*>(ctx);
          k->output->add(trace::is_raw(rec) ? trace::format_raw(k->style, k->line, rec) : rec);
        },
        sink);
    output->flush();
  };
  int status = 0;
  bool child_done = false;
  for (;;) {
    drain();
    pollfd p{sfd, POLLIN, 0};
    ::poll(&p, 1, 5);
    signalfd_siginfo si;
    while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      const int sig = static_cast<int>(si.ssi_signo);
      if ((sig == SIGTERM || sig == SIGHUP) && !child_done) ::kill(child, sig);
    }
    int st = 0;
    pid_t p2;
    while ((p2 = ::waitpid(-1, &st, WNOHANG)) > 0) {
      if (p2 == child) {
        status = st;
        child_done = true;
      }
    }
    if (child_done && p2 < 0 && errno == ECHILD) break;
  }
  drain();
  exit_like(status);
}

}  // namespace

int trace_program(int argc, char** args, const char* usage) {
  bool json = false;
  bool passthrough = false;
  bool hide_addresses = false;
  std::string out = "-";
  std::string filter;
  int i = 0;
  for (; i < argc; ++i) {
    const std::string_view a = args[i];
    if (a == "--json") {
      json = true;
    } else if (a == "--passthrough") {
      passthrough = true;
    } else if (a == "--hide-addresses") {
      hide_addresses = true;
    } else if (a == "-o" || a == "-e") {
      if (i + 1 >= argc) return usage_error(std::string(a) + " needs an argument", usage);
      (a == "-o" ? out : filter) = args[++i];
    } else if (a.starts_with("--output=")) {
      out = std::string(a.substr(9));
    } else if (a.starts_with("-o") && a.size() > 2) {
      out = std::string(a.substr(2));
    } else if (a.starts_with("-e") && a.size() > 2) {
      filter = std::string(a.substr(2));
    } else {
      break;  // run's options and the program
    }
  }
  if (passthrough) {
    // Nothing is emulated, so nothing of the engine's can be asked for.
    for (int j = i; j < argc && std::string_view(args[j]) != "--"; ++j) {
      const std::string_view a = args[j];
      if (a == "--shared" || a.starts_with("--server=") || a.starts_with("--dump-") ||
          a.starts_with("--lockdep="))
        return usage_error(
            "--passthrough traces the kernel's iommufd: " + std::string(a) + " has no meaning there", usage);
    }
    if (::access("/dev/iommu", F_OK) != 0)
      std::fprintf(stderr,
                   "uiommufd trace: --passthrough: this machine has no /dev/iommu; the program's opens of it "
                   "fail as the kernel answers them\n");
    unsetenv(shared::kServerEnv);
  }
  trace::Filter check;
  std::string_view bad;
  if (!check.parse(filter, &bad))
    return usage_error("-e: no call or command is named '" + std::string(bad) + "'", usage);
  if (out != "-") {
    out = absolute(out);
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      std::fprintf(stderr, "uiommufd trace: %s: %s\n", out.c_str(), std::strerror(errno));
      return 1;
    }
    ::close(fd);
  }
  // The ring the program's processes put records in; this process writes them out (docs/trace.md#ring).
  Result<trace::Ring> ring = trace::Ring::create();
  if (!ring.ok()) {
    std::fprintf(stderr, "uiommufd trace: cannot make the trace ring: %s\n", std::strerror(ring.error()));
    return 1;
  }
  // The program gets only the high copy: its own first fd is the number it would have had without us.
  const int ring_fd = high_fd(ring->fd());
  if (ring_fd != ring->fd()) {
    ::close(ring->fd());
    ring->release_fd();
  }
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const std::string t0 = std::to_string(static_cast<unsigned long long>(ts.tv_sec) * 1000000000ull +
                                        static_cast<unsigned long long>(ts.tv_nsec));
  setenv("UIOMMUFD_TRACE", out.c_str(), 1);
  setenv("UIOMMUFD_TRACE_T0", t0.c_str(), 1);
  if (json)
    setenv("UIOMMUFD_TRACE_FORMAT", "json", 1);
  else
    unsetenv("UIOMMUFD_TRACE_FORMAT");
  if (passthrough)
    setenv("UIOMMUFD_TRACE_PASSTHROUGH", "1", 1);
  else
    unsetenv("UIOMMUFD_TRACE_PASSTHROUGH");
  if (hide_addresses)
    setenv("UIOMMUFD_TRACE_ADDRESSES", "hide", 1);
  else
    unsetenv("UIOMMUFD_TRACE_ADDRESSES");
  if (filter.empty())
    unsetenv("UIOMMUFD_TRACE_FILTER");
  else
    setenv("UIOMMUFD_TRACE_FILTER", filter.c_str(), 1);
  setenv("UIOMMUFD_TRACE_RING", std::to_string(ring_fd).c_str(), 1);
  const trace::Style style(json ? trace::Format::kJson : trace::Format::kText, hide_addresses);
  return consume(*ring, out, style, [&] { return run_program(argc - i, args + i, usage); });
}

}  // namespace uiommufd::tools
