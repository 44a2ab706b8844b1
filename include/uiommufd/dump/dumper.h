// Dumps of a whole process (or shared-mode server): every live context (uapi::IommufdFile::live_files()),
// formatted and written as the settings say, and the helper thread that makes a dump when a signal asks for
// one. docs/dump.md has the triggers, the settings and the multi-process behaviour.
//
// Settings come from the environment (uiommufd run's --dump-* options set it):
//   UIOMMUFD_DUMP=exit,signal     triggers: "exit" dumps at exit (and turns "signal" on), "signal" on SIGUSR2
//   UIOMMUFD_DUMP_FORMAT=text|json
//   UIOMMUFD_DUMP_FILE=FILE       appended to ("%p" becomes the process id); default: standard error
//   UIOMMUFD_DUMP_SVG=DIR         one SVG per IOAS: DIR/<pid>-<dump>-ctx<N>-ioas<ID>.svg
//
// Thread safety: dumps are serialised (one lock, "dump.serial", taken before any engine lock). A dump takes
// the engine's locks in their order (dump/snapshot.h) and must not be called with any engine lock held.
#pragma once

#include <cstdint>
#include <string>

#include "uiommufd/base/result.h"
#include "uiommufd/base/status.h"
#include "uiommufd/dump/snapshot.h"

namespace uiommufd::dump {

enum class Format : std::uint8_t { kText, kJson };

struct Options {
  bool at_exit = false;
  bool on_signal = false;
  Format format = Format::kText;
  std::string file;     // empty: standard error
  std::string svg_dir;  // empty: no SVG

  bool enabled() const { return at_exit || on_signal; }
  // The settings the environment gives (unknown words are ignored, as unset).
  static Options from_env();
};

// The process's settings: from_env() at first use, unless configure() came first.
Options options();
void configure(const Options& options);

// Every live context of the process at one time, as dump number `sequence` (ENOMEM).
Result<Dump> collect(Reason reason, std::uint64_t sequence);

// The text, JSON or SVG files of `dump`, as `options` says: the document appended to the file (created
// 0644 if needed) or written to standard error in one write where the system allows, and each IOAS's
// picture written to the SVG directory (made if missing). When the document goes to a file, its LEAK lines
// go to standard error too ("uiommufd: LEAK: ..."). The errno of the first file that could not be
// written; the others are still tried.
Status write(const Dump& dump, const Options& options);
// "%p" in `pattern` replaced by `pid`.
std::string expand_file_name(const std::string& pattern, pid_t pid);
// The SVG file name of one IOAS of `dump` (without the directory).
std::string svg_file_name(const Dump& dump, const ContextSnapshot& ctx, const IoasSnapshot& ioas);

// collect() and write() with options(), under the dump lock; the dump number counts up per process.
Status dump_now(Reason reason);
// The dump at exit, once per process (later calls return at once): dump_now(kExit) when options().at_exit.
void dump_at_exit();

// The helper thread that makes the dumps a signal asks for (a handler may not), with every signal blocked
// in it. One per process.
class DumpThread {
 public:
  using DumpFn = void (*)(Reason reason);
  // Starts the thread, which calls `fn(Reason::kSignal)` once per burst of requests. A second call does
  // nothing. The errno of pthread_create.
  static Status start(DumpFn fn);
  // Asks for a dump; async-signal-safe (a sem_post), and a no-op before start().
  static void request();
  // For a forked child, whose copy of the thread does not exist: starts it again if the parent had one
  // (pthread_atfork's child handler).
  static void restart_in_child();
  // Whether start() has run in this process.
  static bool running();
};

}  // namespace uiommufd::dump
