// Minimal leveled logging.
//
// UIOMMUFD_LOG(level, fmt, ...) formats printf-style and hands one line (no trailing newline) to the
// sink. The level test is a single relaxed atomic load, and the arguments are not evaluated when the
// level is disabled, so disabled log statements may sit on hot paths.
//
// The threshold starts from the environment variable UIOMMUFD_LOG=error|warn|info|debug (read once, on
// first use; unset or unrecognised means warn). set_log_level() overrides it.
//
// The default sink writes "uiommufd: <level>: <message>\n" to stderr with a single write(2), so lines
// from different threads do not interleave. set_log_sink() replaces it. All functions are thread-safe.
// The sink is called with no lock held, on the logging thread; it may log or replace the sink itself.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string_view>

namespace uiommufd {

// Ordered from most to least severe: a message is emitted when its level <= the threshold.
enum class LogLevel : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

using LogSink = std::function<void(LogLevel, std::string_view message)>;

void set_log_level(LogLevel level);
LogLevel log_level();

// Replaces the sink; an empty function restores the default stderr sink.
void set_log_sink(LogSink sink);

// "error", "warn", "info", "debug" (exact, lower case) → the level; anything else → nullopt.
std::optional<LogLevel> parse_log_level(std::string_view text);

// "error", "warn", "info", "debug".
const char* log_level_name(LogLevel level);

namespace detail {
// The threshold as an int. Before UIOMMUFD_LOG has been read it holds kLogLevelUnset, which is above
// every level, so the fast check passes and log_write() reads the environment on the slow path. This
// keeps the fast path to one load and makes logging safe from static initialisers in any order.
inline constexpr int kLogLevelUnset = 1000;
extern constinit std::atomic<int> g_log_threshold;

void log_write(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
}  // namespace detail

inline bool log_enabled(LogLevel level) {
  return static_cast<int>(level) <= detail::g_log_threshold.load(std::memory_order_relaxed);
}

}  // namespace uiommufd

// `level` is a uiommufd::LogLevel value, e.g. UIOMMUFD_LOG(LogLevel::kWarn, "pin of %zu pages failed", n).
#define UIOMMUFD_LOG(level, ...)                                                  \
  do {                                                                            \
    const ::uiommufd::LogLevel _uiommufd_log_level = (level);                     \
    if (::uiommufd::log_enabled(_uiommufd_log_level)) [[unlikely]]               \
      ::uiommufd::detail::log_write(_uiommufd_log_level, __VA_ARGS__);            \
  } while (0)
