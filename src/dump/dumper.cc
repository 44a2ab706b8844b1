#include "uiommufd/dump/dumper.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>

#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uiommufd/base/log.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/dump/format.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::dump {

Options Options::from_env() {
  Options o;
  if (const char* triggers = std::getenv("UIOMMUFD_DUMP")) {
    std::string_view rest = triggers;
    while (!rest.empty()) {
      const std::size_t comma = rest.find(',');
      const std::string_view word = rest.substr(0, comma);
      if (word == "exit") o.at_exit = o.on_signal = true;
      if (word == "signal") o.on_signal = true;
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  if (const char* f = std::getenv("UIOMMUFD_DUMP_FORMAT"); f && std::strcmp(f, "json") == 0)
    o.format = Format::kJson;
  if (const char* f = std::getenv("UIOMMUFD_DUMP_FILE")) o.file = f;
  if (const char* d = std::getenv("UIOMMUFD_DUMP_SVG")) o.svg_dir = d;
  return o;
}

namespace {

// Never destroyed: a dump may run from an atexit handler after static destructors.
struct State {
  lockdep::Mutex mu{"dump.serial"};
  Options options GUARDED_BY(mu);
  bool configured GUARDED_BY(mu) = false;
  std::uint64_t sequence GUARDED_BY(mu) = 0;
};
State& state() {
  static auto* s = new State;
  return *s;
}
std::atomic<bool> g_exit_dumped{false};

// write(2) until done: a document goes out in one call where the system allows, so that dumps of several
// processes to one file or terminal do not interleave.
Status write_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::error(n < 0 ? errno : EIO);
    done += static_cast<std::size_t>(n);
  }
  return {};
}

Status write_file(const std::string& path, const std::string& data, int flags) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
  if (fd < 0) return Status::error(errno);
  Status st = write_all(fd, data);
  ::close(fd);
  return st;
}

}  // namespace

Options options() {
  State& s = state();
  lockdep::MutexGuard g(s.mu);
  if (!s.configured) {
    s.options = Options::from_env();
    s.configured = true;
  }
  return s.options;
}

void configure(const Options& options) {
  State& s = state();
  lockdep::MutexGuard g(s.mu);
  s.options = options;
  s.configured = true;
}

Result<Dump> collect(Reason reason, std::uint64_t sequence) {
  try {
    Dump d;
    d.pid = getpid();
    d.reason = reason;
    d.sequence = sequence;
    // The references taken here keep each context alive until the dump is made.
    std::vector<std::shared_ptr<uapi::IommufdFile>> files = uapi::IommufdFile::live_files();
    for (const std::shared_ptr<uapi::IommufdFile>& f : files) {
      Result<ContextSnapshot> ctx = snapshot_context(f->context(), f->serial());
      if (!ctx.ok()) return ctx.status();
      d.contexts.push_back(std::move(*ctx));
    }
    d.process_pinned_pages = Pages::total_pinned_pages();
    return d;
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
}

std::string expand_file_name(const std::string& pattern, pid_t pid) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size() && pattern[i + 1] == 'p') {
      out += std::to_string(pid);
      ++i;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

std::string svg_file_name(const Dump& dump, const ContextSnapshot& ctx, const IoasSnapshot& ioas) {
  return std::to_string(dump.pid) + "-" + std::to_string(dump.sequence) + "-ctx" +
         std::to_string(ctx.number) + "-ioas" + std::to_string(ioas.id) + ".svg";
}

Status write(const Dump& dump, const Options& options) {
  Status first;
  auto note = [&first](Status st) {
    if (first.ok() && !st.ok()) first = st;
  };
  try {
    const std::string doc = options.format == Format::kJson ? format_json(dump) : format_text(dump);
    if (options.file.empty()) {
      note(write_all(STDERR_FILENO, doc));
    } else {
      note(write_file(expand_file_name(options.file, dump.pid), doc, O_APPEND));
      // Leaks stand out even when the document goes to a file.
      std::string lines;
      for (const Leak& l : leaks(dump)) lines += "uiommufd: " + leak_line(l) + "\n";
      if (!lines.empty()) (void)write_all(STDERR_FILENO, lines);
    }
    if (!options.svg_dir.empty()) {
      if (::mkdir(options.svg_dir.c_str(), 0755) != 0 && errno != EEXIST) note(Status::error(errno));
      for (const ContextSnapshot& ctx : dump.contexts)
        for (const IoasSnapshot& ioas : ctx.ioases)
          note(write_file(options.svg_dir + "/" + svg_file_name(dump, ctx, ioas),
                          format_svg(ctx, ioas, dump.pid, dump.sequence), O_TRUNC));
    }
  } catch (const std::bad_alloc&) {
    note(Status::error(ENOMEM));
  }
  return first;
}

Status dump_now(Reason reason) {
  Status st;
  try {
    const Options opts = options();
    State& s = state();
    lockdep::MutexGuard g(s.mu);
    Result<Dump> d = collect(reason, ++s.sequence);
    st = d.ok() ? write(*d, opts) : d.status();
  } catch (const std::bad_alloc&) {
    st = Status::error(ENOMEM);
  }
  if (!st.ok()) UIOMMUFD_LOG(LogLevel::kWarn, "dump: %s", std::strerror(st.error()));
  return st;
}

void dump_at_exit() {
  if (!options().at_exit || g_exit_dumped.exchange(true)) return;
  (void)dump_now(Reason::kExit);
}

// ---- the helper thread ----------------------------------------------------------------------------------

namespace {
sem_t g_requests;
std::atomic<bool> g_started{false};
std::atomic<DumpThread::DumpFn> g_fn{nullptr};

void* thread_main(void*) {
  for (;;) {
    while (sem_wait(&g_requests) != 0) {
    }
    // One dump for a burst of requests.
    while (sem_trywait(&g_requests) == 0) {
    }
    if (DumpThread::DumpFn fn = g_fn.load()) fn(Reason::kSignal);
  }
  return nullptr;
}

Status spawn() {
  sem_init(&g_requests, 0, 0);
  // Every signal blocked in the thread (it inherits this mask), so that none of the program's is delivered
  // to it.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  const int err = pthread_create(&t, nullptr, thread_main, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (err != 0) return Status::error(err);
  pthread_detach(t);
  return {};
}
}  // namespace

Status DumpThread::start(DumpFn fn) {
  g_fn.store(fn);
  if (g_started.exchange(true)) return {};
  Status st = spawn();
  if (!st.ok()) g_started.store(false);
  return st;
}

void DumpThread::request() {
  if (g_started.load(std::memory_order_acquire)) sem_post(&g_requests);
}

// ThreadSanitizer kills a process that starts a thread after a multi-threaded fork (its die_after_fork).
#if defined(__SANITIZE_THREAD__)
#define UIOMMUFD_NO_THREAD_AFTER_FORK 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UIOMMUFD_NO_THREAD_AFTER_FORK 1
#endif
#endif

void DumpThread::restart_in_child() {
  if (!g_started.load()) return;
#ifdef UIOMMUFD_NO_THREAD_AFTER_FORK
  // FIXME: under ThreadSanitizer a forked child has no helper, so SIGUSR2 does not dump it (its exit does).
  g_started.store(false);
#else
  // The parent's thread waits on the parent's copy of the semaphore; the child's copy has no waiter, so it
  // may be set up afresh (requests made before the fork went to the parent).
  if (!spawn().ok()) g_started.store(false);
#endif
}

bool DumpThread::running() { return g_started.load(); }

}  // namespace uiommufd::dump
