// A copy of the lock class graph taken under the validator's graph lock, and its Graphviz DOT text.
//
// The copy is plain data, so formatting and writing happen after the graph lock is released (or, for the
// picture written on a report, with it still held but without touching the live graph again), and so the
// formatter can be tested on graphs built by hand. Both are compiled whether or not the validator is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "uiommufd/base/status.h"
#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lockdep {

// What one report named: the classes along its chain and the class pairs of its hops.
struct ReportMark {
  std::size_t number = 0;  // 1, 2, ... in the order the reports were made since start-up or reset
  ReportKind kind = ReportKind::kLimitReached;
  // One line, e.g. "possible circular locking dependency: b -> a -> b"; class names are not escaped.
  std::string summary;
  std::vector<std::uint32_t> classes;
  // Hops "from was held while to was acquired". A hop the graph has is drawn as that edge; one it lacks
  // is the acquisition that the report stopped from being recorded (it closed the cycle), drawn apart.
  struct Hop {
    std::uint32_t from;
    std::uint32_t to;
  };
  std::vector<Hop> hops;
  // Whether `hops` form a chain (circular, recursive) or the report names single locks (bad unlock, held
  // lock freed, nest lock, assertion), which are drawn in another colour.
  bool chain = false;
};

// Reports kept for pictures, beyond which only their number is: a process that keeps failing one
// assertion would otherwise grow the picture without bound.
inline constexpr std::size_t kMaxReportMarks = 64;

struct DotGraph {
  struct Class {
    std::string name;
    std::uint8_t kinds = 0;  // LockKind bits of its key; 0: no lock of the class constructed yet
  };
  struct Edge {
    std::uint32_t from;
    std::uint32_t to;
    std::uint8_t kinds;  // DependencyKind bits (dependency_graph.h)
  };

  bool compiled_out = false;
  Mode mode = Mode::kReport;
  std::string program;  // the process's short name, for the title
  long pid = 0;
  std::vector<Class> classes;  // indexed by class id; [0] is unused
  std::vector<Edge> edges;
  std::vector<ReportMark> marks;
  std::size_t reports = 0;  // reports made, including those beyond kMaxReportMarks
};

// The graph as a DOT digraph "lockdep": one node per class (id "cN", labelled with its name), one edge
// per dependency, and every report's chain in red (nodes a report names without a chain in orange), with
// the reports listed in the graph's label. Deterministic: classes and edges in id order.
std::string format_dot(const DotGraph& graph);

// Appends `text` as the inside of a DOT double-quoted string that Graphviz shows exactly as `text`:
// quote and backslash escaped (so no escString sequence such as \n or \N is interpreted), '&' written as
// "&amp;" (Graphviz decodes entities in every string), valid UTF-8 kept, and each control character or
// byte that is not part of valid UTF-8 shown as the four characters \xHH.
void append_dot_escaped(std::string& out, std::string_view text);

// The path that the pattern of UIOMMUFD_LOCKDEP_DOT names for process `pid`: "%p" becomes the pid and
// "%%" a '%', as in core_pattern; any other '%' is kept as it is.
std::string expand_dot_pattern(std::string_view pattern, long pid);

// The pattern of UIOMMUFD_LOCKDEP_DOT as the process started with it, or null when unset or empty.
// Read once; later changes to the environment are not seen.
const char* dot_pattern_from_environment();

// Writes `text` to `path`, replacing it atomically: a temporary file beside it, then rename(2). A reader
// sees the old picture or the new one, never a part. ENOENT, EACCES, ENOSPC, EISDIR, ... from the system.
Status write_text_file_atomically(const std::string& path, std::string_view text);

// Prints one line to stderr naming the UIOMMUFD_LOCKDEP_DOT file that could not be written and why.
void report_dot_write_failure(const std::string& path, Status status);

// Writes the current graph to the file UIOMMUFD_LOCKDEP_DOT names (nothing when unset); a failure is
// reported with report_dot_write_failure().
void write_dot_to_environment_file();

// Registers write_dot_to_environment_file() with atexit() when UIOMMUFD_LOCKDEP_DOT is set; once, however
// often it is called. Called during static initialisation by the validator (or compiled_out.cc).
void install_dot_at_exit();

// ---- provided by validator.cc, or by compiled_out.cc ----

// The graph as it is now: takes the graph lock for the copy (compiled out: an empty graph that says so).
// Must not be called with the graph lock held. Throws std::bad_alloc.
DotGraph lock_graph_snapshot();

// Marks the calling thread as inside the validator for the scope, so that locks taken meanwhile (by the
// C library or an interposed system call while a picture is written) are neither validated nor recorded,
// and cannot re-enter the validator. Restores the previous state, so scopes nest.
class ValidatorQuietScope {
 public:
  ValidatorQuietScope();
  ~ValidatorQuietScope();
  ValidatorQuietScope(const ValidatorQuietScope&) = delete;
  ValidatorQuietScope& operator=(const ValidatorQuietScope&) = delete;

 private:
  bool saved_;
};

}  // namespace uiommufd::lockdep
