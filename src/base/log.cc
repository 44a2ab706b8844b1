#include "uiommufd/base/log.h"

#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

namespace uiommufd {
namespace detail {
constinit std::atomic<int> g_log_threshold{kLogLevelUnset};
}  // namespace detail

namespace {

constexpr LogLevel kDefaultLevel = LogLevel::kWarn;

// Resolves the threshold from the environment the first time it is needed. A concurrent
// set_log_level() wins: the CAS only replaces the unset marker.
int resolve_threshold() {
  int current = detail::g_log_threshold.load(std::memory_order_relaxed);
  if (current != detail::kLogLevelUnset) return current;
  LogLevel level = kDefaultLevel;
  if (const char* env = std::getenv("UIOMMUFD_LOG")) level = parse_log_level(env).value_or(kDefaultLevel);
  int wanted = static_cast<int>(level);
  if (detail::g_log_threshold.compare_exchange_strong(current, wanted, std::memory_order_relaxed)) return wanted;
  return current;  // someone else resolved or set it first
}

void stderr_sink(LogLevel level, std::string_view message) {
  std::string line = "uiommufd: ";
  line += log_level_name(level);
  line += ": ";
  line += message;
  line += '\n';
  // One write(2), so concurrent lines do not interleave; a short write to stderr is not worth a loop
  // that could spin on a broken pipe.
  ssize_t rc = ::write(STDERR_FILENO, line.data(), line.size());
  (void)rc;
}

// Leaked on purpose: logging must keep working from static destructors and other threads at exit.
struct SinkState {
  std::mutex mu;
  std::shared_ptr<const LogSink> sink;  // null: the default stderr sink
};
SinkState& sink_state() {
  static SinkState* state = new SinkState;
  return *state;
}

}  // namespace

void set_log_level(LogLevel level) {
  detail::g_log_threshold.store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel log_level() { return static_cast<LogLevel>(resolve_threshold()); }

void set_log_sink(LogSink sink) {
  std::shared_ptr<const LogSink> next;
  if (sink) next = std::make_shared<const LogSink>(std::move(sink));
  SinkState& s = sink_state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.sink.swap(next);
  // The old sink is destroyed after the lock is released (when `next` goes out of scope), or later
  // by a thread still calling it.
}

std::optional<LogLevel> parse_log_level(std::string_view text) {
  if (text == "error") return LogLevel::kError;
  if (text == "warn") return LogLevel::kWarn;
  if (text == "info") return LogLevel::kInfo;
  if (text == "debug") return LogLevel::kDebug;
  return std::nullopt;
}

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "?";
}

namespace detail {

void log_write(LogLevel level, const char* fmt, ...) {
  // The fast check in UIOMMUFD_LOG passes while the threshold is unset; decide for real here.
  if (static_cast<int>(level) > resolve_threshold()) return;

  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  std::string heap;
  std::string_view message(buf, std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1));
  if (static_cast<size_t>(n) >= sizeof(buf)) {
    heap.resize(static_cast<size_t>(n) + 1);
    va_start(ap, fmt);
    std::vsnprintf(heap.data(), heap.size(), fmt, ap);
    va_end(ap);
    heap.resize(static_cast<size_t>(n));
    message = heap;
  }
  // The sink adds its own line ending.
  while (!message.empty() && message.back() == '\n') message.remove_suffix(1);

  std::shared_ptr<const LogSink> sink;
  {
    SinkState& s = sink_state();
    std::lock_guard<std::mutex> lock(s.mu);
    sink = s.sink;
  }
  if (sink) {
    (*sink)(level, message);
  } else {
    stderr_sink(level, message);
  }
}

}  // namespace detail
}  // namespace uiommufd
