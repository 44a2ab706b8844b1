// The preload's dump triggers (docs/dump.md): with UIOMMUFD_DUMP set (uiommufd run --dump-*), a dump of
// this process's contexts at exit and on SIGUSR2. Shared mode leaves both to the server, which owns the
// engine.
//
// SIGUSR2 belongs to the program. The preload takes it only while its disposition is the default (which
// would kill the process) and does not fight for it: a program that installs a handler of its own replaces
// ours and gets its signals, and an inherited SIG_IGN is left alone. The handler only posts a semaphore
// (async-signal-safe); the dump is made by a helper thread (dump::DumpThread), started at the process's
// first open of /dev/iommu, so a process that never opens it runs no extra thread. The dump holds the engine
// gate like any call into the engine, so a fork waits for it to finish and the child's engine is at rest.
// A forked child starts its own helper (pthread_atfork), since threads do not survive fork.
#include "dump_hook.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "engine_gate.h"
#include "shared_client.h"

#include "uiommufd/dump/dumper.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::runtime {
namespace {

// Settings, read once by the constructor below (before main, with one thread).
bool g_on_signal = false;
bool g_at_exit = false;
std::atomic<bool> g_opened{false};
// The process that first opened /dev/iommu (forked children inherit g_opened), and whether it has dumped
// at its exit.
std::atomic<pid_t> g_opener{0};
std::atomic<bool> g_exit_dumped{false};

void dump_in_gate(dump::Reason reason) {
  const EngineGate::Scope gate;
  (void)dump::dump_now(reason);
}

void on_open() {
  if (g_opened.exchange(true)) return;
  g_opener.store(getpid());
  if (g_on_signal) (void)dump::DumpThread::start(dump_in_gate);
}

void on_sigusr2(int) {
  const int saved = errno;
  dump::DumpThread::request();
  errno = saved;
}

// A process that never opened /dev/iommu has nothing to show and stays quiet (a shell or helper of the run).
void at_exit() {
  if (!g_opened.load() || g_exit_dumped.exchange(true)) return;
  const EngineGate::Scope gate;
  dump::dump_at_exit();
}

void child_after_fork() { dump::DumpThread::restart_in_child(); }

// After preload_init (priority 101), which has set shared mode up.
[[gnu::constructor(102)]] void dump_hook_init() {
  if (shared_client::enabled()) return;
  const dump::Options options = dump::options();
  if (!options.enabled()) return;
  g_on_signal = options.on_signal;
  uapi::IommufdFile::set_open_hook(on_open);
  g_at_exit = options.at_exit;
  if (options.at_exit) std::atexit(at_exit);
  if (options.on_signal) {
    struct sigaction old {};
    if (sigaction(SIGUSR2, nullptr, &old) == 0 && !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL) {
      struct sigaction sa {};
      sa.sa_handler = on_sigusr2;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESTART;  // the program's interrupted system calls go on
      sigaction(SIGUSR2, &sa, nullptr);
    }
    pthread_atfork(nullptr, nullptr, child_after_fork);
  }
}

}  // namespace

void dump_hook::before_exit() {
  if (g_at_exit && g_opener.load() == getpid()) at_exit();
}

}  // namespace uiommufd::runtime
