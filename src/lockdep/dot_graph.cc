#include "dot_graph.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <set>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include "dependency_graph.h"

#include "uiommufd/base/result.h"
#include "uiommufd/base/try.h"
#include "uiommufd/lockdep/dot.h"
#include "uiommufd/lockdep/lock_class_key.h"

namespace uiommufd::lockdep {

namespace {

// The length of the UTF-8 sequence starting at s[i] when it is valid (shortest form, no surrogates, at
// most U+10FFFF), else 0.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  std::size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // beyond U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return n;
}

std::string escaped(std::string_view text) {
  std::string out;
  append_dot_escaped(out, text);
  return out;
}

const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::kOff:
      return "off";
    case Mode::kReport:
      return "report";
    case Mode::kAbort:
      return "abort";
  }
  return "?";
}

// The kernel's notation for how a dependency was seen: S/E the held lock shared or exclusive, R/N the
// new one acquired as a recursive reader or not.
std::string dependency_kinds_text(std::uint8_t kinds) {
  std::string out;
  const std::pair<std::uint8_t, const char*> names[] = {
      {kDepEN, "EN"}, {kDepSN, "SN"}, {kDepER, "ER"}, {kDepSR, "SR"}};
  for (const auto& [bit, name] : names) {
    if (!(kinds & bit)) continue;
    if (!out.empty()) out += ",";
    out += name;
  }
  return out;
}

std::string lock_kind_text(std::uint8_t kinds) {
  if (kinds == 0) return "kind not known (no lock of this class constructed yet)";
  std::string out;
  const std::pair<LockKind, const char*> names[] = {{LockKind::kMutex, "mutex"},
                                                    {LockKind::kSharedMutex, "shared mutex (rwsem)"},
                                                    {LockKind::kMap, "pseudo-lock (LockdepMap)"},
                                                    {LockKind::kObservedLock, "lock observed through a map"}};
  for (const auto& [kind, name] : names) {
    if (!(kinds & static_cast<std::uint8_t>(kind))) continue;
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

// "#1,#3": the reports that name something.
std::string numbers_text(const std::vector<std::size_t>& numbers) {
  std::string out;
  for (std::size_t n : numbers) out += (out.empty() ? "#" : ",#") + std::to_string(n);
  return out;
}

constexpr const char* kRed = "red";
constexpr const char* kOrange = "darkorange";
constexpr const char* kGrey = "grey50";

std::string mark_line(const ReportMark& m) {
  return "report #" + std::to_string(m.number) + " " + report_kind_name(m.kind) + ": " + m.summary;
}

}  // namespace

void append_dot_escaped(std::string& out, std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      if (std::size_t n = utf8_sequence_length(text, i)) {
        out.append(text.substr(i, n));
        i += n;
        continue;
      }
    }
    if (c < 0x20 || c == 0x7F || c >= 0x80) {
      // Shown, not interpreted: the backslash itself is escaped.
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\\\x%02X", c);
      out += hex;
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '&') {
      out += "&amp;";
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
}

std::string format_dot(const DotGraph& graph) {
  std::string out;
  if (graph.compiled_out) {
    out += "// uiommufd lock validator: compiled out (UIOMMUFD_LOCKDEP=OFF), so no lock class is recorded.\n";
    out += "digraph \"lockdep\" {\n";
    out += "  graph [label=\"lock validator compiled out: no lock classes recorded\", labelloc=t];\n";
    out += "}\n";
    return out;
  }

  // Which reports name each class and each hop, for the highlighting.
  std::map<std::uint32_t, std::vector<std::size_t>> chain_classes, single_classes;
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::vector<std::size_t>> chain_hops;
  for (const ReportMark& m : graph.marks) {
    for (std::uint32_t c : m.classes) {
      auto& numbers = (m.chain ? chain_classes : single_classes)[c];
      if (numbers.empty() || numbers.back() != m.number) numbers.push_back(m.number);
    }
    for (const ReportMark::Hop& h : m.hops) {
      auto& numbers = chain_hops[{h.from, h.to}];
      if (numbers.empty() || numbers.back() != m.number) numbers.push_back(m.number);
    }
  }

  const std::size_t classes = graph.classes.empty() ? 0 : graph.classes.size() - 1;
  std::string title = "lock class graph: " + std::to_string(classes) +
                      (classes == 1 ? " class, " : " classes, ") + std::to_string(graph.edges.size()) +
                      (graph.edges.size() == 1 ? " dependency, " : " dependencies, ") +
                      std::to_string(graph.reports) + (graph.reports == 1 ? " report" : " reports");
  std::string header = "uiommufd lock validator, " +
                       (graph.program.empty() ? std::string("process") : graph.program) + " (pid " +
                       std::to_string(graph.pid) + "), mode " + mode_name(graph.mode);

  out += "// " + escaped(header) + "\n";
  out += "// " + title + "\n";
  out += "// Nodes are lock classes; an edge A -> B means B was acquired while A was held.\n";
  out += "// Red: the chain of a report; dashed red: the acquisition that closed it (never recorded).\n";
  out += "// Orange: a class that a report names without a chain.\n";
  out += "// Grey: a class no lock of which has been constructed yet (known from a declared order).\n";
  for (const ReportMark& m : graph.marks) out += "// " + escaped(mark_line(m)) + "\n";
  if (graph.reports > graph.marks.size())
    out += "// (" + std::to_string(graph.reports - graph.marks.size()) + " later reports not drawn)\n";

  out += "digraph \"lockdep\" {\n";
  out += "  graph [fontname=\"Helvetica\", labelloc=t, labeljust=l, label=\"" + escaped(header) + "\\l" +
         title + "\\l";
  for (const ReportMark& m : graph.marks) out += escaped(mark_line(m)) + "\\l";
  if (graph.reports > graph.marks.size())
    out += "(" + std::to_string(graph.reports - graph.marks.size()) + " later reports not drawn)\\l";
  out +=
      "box: mutex; double box: shared mutex (rwsem); dashed ellipse: pseudo-lock (LockdepMap); grey: no lock "
      "of the class constructed yet\\l\"];\n";
  out += "  node [fontname=\"Helvetica\", shape=box];\n";
  out += "  edge [fontname=\"Helvetica\", fontsize=10];\n";

  for (std::uint32_t id = 1; id < graph.classes.size(); ++id) {
    const DotGraph::Class& c = graph.classes[id];
    std::string attrs = "label=\"" + escaped(c.name) + "\"";
    std::string tooltip = c.name + ": " + lock_kind_text(c.kinds);
    std::vector<std::string> styles;
    const char* colour = nullptr;
    if (c.kinds == static_cast<std::uint8_t>(LockKind::kMap)) {
      attrs += ", shape=ellipse";
      styles.push_back("dashed");
    } else if (c.kinds == static_cast<std::uint8_t>(LockKind::kSharedMutex)) {
      attrs += ", peripheries=2";
    } else if (c.kinds == 0) {
      colour = kGrey;
    }
    std::vector<std::size_t> numbers;
    if (auto it = chain_classes.find(id); it != chain_classes.end()) {
      colour = kRed;
      numbers = it->second;
    }
    if (auto it = single_classes.find(id); it != single_classes.end()) {
      if (colour != kRed) colour = kOrange;
      numbers.insert(numbers.end(), it->second.begin(), it->second.end());
    }
    if (colour) attrs += std::string(", color=") + colour + ", fontcolor=" + colour;
    if (!numbers.empty()) {
      attrs += ", penwidth=2.5";
      styles.push_back("bold");
      tooltip += "; named by report " + numbers_text(numbers);
    }
    if (!styles.empty()) {
      attrs += ", style=\"";
      for (std::size_t i = 0; i < styles.size(); ++i) attrs += (i ? "," : "") + styles[i];
      attrs += "\"";
    }
    attrs += ", tooltip=\"" + escaped(tooltip) + "\"";
    out += "  c" + std::to_string(id) + " [" + attrs + "];\n";
  }

  std::set<std::pair<std::uint32_t, std::uint32_t>> recorded;
  for (const DotGraph::Edge& e : graph.edges) {
    recorded.insert({e.from, e.to});
    const std::string& from = graph.classes[e.from].name;
    const std::string& to = graph.classes[e.to].name;
    std::string tooltip = from + " -> " + to + " -(" + dependency_kinds_text(e.kinds) + ")->";
    std::string attrs;
    // Only ever acquired as a recursive reader: it cannot close a cycle through a reader.
    const bool recursive_only = !(e.kinds & (kDepEN | kDepSN));
    if (auto it = chain_hops.find({e.from, e.to}); it != chain_hops.end()) {
      attrs = std::string("color=") + kRed + ", fontcolor=" + kRed +
              ", penwidth=2.5, style=" + (recursive_only ? "\"bold,dotted\"" : "bold") + ", label=\"" +
              numbers_text(it->second) + "\"";
      tooltip += "; in the chain of report " + numbers_text(it->second);
    } else if (recursive_only) {
      attrs = "style=dotted";
    }
    attrs += (attrs.empty() ? "" : ", ") + std::string("tooltip=\"") + escaped(tooltip) + "\"";
    out += "  c" + std::to_string(e.from) + " -> c" + std::to_string(e.to) + " [" + attrs + "];\n";
  }

  // The hops the graph does not have: each report's acquisition that closed its cycle.
  for (const ReportMark& m : graph.marks) {
    for (const ReportMark::Hop& h : m.hops) {
      if (recorded.count({h.from, h.to})) continue;
      const std::string tooltip = "report #" + std::to_string(m.number) + ": " + graph.classes[h.to].name +
                                  " acquired while " + graph.classes[h.from].name +
                                  " was held (not recorded: it closed the cycle)";
      out += "  c" + std::to_string(h.from) + " -> c" + std::to_string(h.to) + " [color=" + kRed +
             ", fontcolor=" + kRed + ", penwidth=2.5, style=\"bold,dashed\", label=\"#" +
             std::to_string(m.number) + "\", tooltip=\"" + escaped(tooltip) + "\"];\n";
    }
  }
  out += "}\n";
  return out;
}

std::string expand_dot_pattern(std::string_view pattern, long pid) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size()) {
      if (pattern[i + 1] == 'p') {
        out += std::to_string(pid);
        ++i;
        continue;
      }
      if (pattern[i + 1] == '%') {
        out += '%';
        ++i;
        continue;
      }
    }
    out += pattern[i];
  }
  return out;
}

namespace {
// set_dot_file()'s pattern, which takes the place of the environment's. Never freed (see below).
std::atomic<const std::string*> g_dot_pattern_set{nullptr};
}  // namespace

const char* dot_pattern_from_environment() {
  if (const std::string* set = g_dot_pattern_set.load(std::memory_order_acquire)) return set->c_str();
  // Copied once and never freed: the exit-time writer runs after static destructors may have run.
  static const std::string* const pattern = []() -> const std::string* {
    const char* env = std::getenv("UIOMMUFD_LOCKDEP_DOT");
    return env && *env ? new std::string(env) : nullptr;
  }();
  return pattern ? pattern->c_str() : nullptr;
}

Status set_dot_file(const std::string& pattern) {
  if (pattern.empty()) return Status::error(EINVAL);
  const std::string* copy = new (std::nothrow) std::string(pattern);
  if (!copy) return Status::error(ENOMEM);
  // The previous pattern is not freed: a writer on another thread may be reading it.
  g_dot_pattern_set.store(copy, std::memory_order_release);
  static const bool at_exit = [] {
    std::atexit(write_dot_to_environment_file);
    return true;
  }();
  (void)at_exit;
  return {};
}

std::string dot_file_from_environment() {
  const char* pattern = dot_pattern_from_environment();
  return pattern ? expand_dot_pattern(pattern, static_cast<long>(getpid())) : std::string();
}

Status write_text_file_atomically(const std::string& path, std::string_view text) {
  if (path.empty()) return Status::error(EINVAL);
  // Per process and thread, so concurrent writers never share a temporary file; the last rename wins.
  const std::string temp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(gettid());
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) return Status::error(errno);
  int err = 0;
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && rename(temp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    unlink(temp.c_str());
    return Status::error(err);
  }
  return {};
}

namespace {
// The picture of the graph as it is now. Called inside a ValidatorQuietScope.
Result<std::string> current_picture() {
  try {
    return format_dot(lock_graph_snapshot());
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
}
}  // namespace

Status write_dot(std::FILE* out) {
  if (!out) return Status::error(EINVAL);
  ValidatorQuietScope quiet;
  const std::string text = TRY(current_picture());
  errno = 0;
  if (std::fwrite(text.data(), 1, text.size(), out) != text.size() || std::fflush(out) != 0)
    return Status::error(errno > 0 && errno < 4096 ? errno : EIO);
  return {};
}

Status write_dot_file(const std::string& path) {
  if (path.empty()) return Status::error(EINVAL);
  ValidatorQuietScope quiet;
  return write_text_file_atomically(path, TRY(current_picture()));
}

void report_dot_write_failure(const std::string& path, Status status) {
  std::fprintf(stderr, "uiommufd: lock validator: cannot write UIOMMUFD_LOCKDEP_DOT file %s: %s\n",
               path.c_str(), status.to_string().c_str());
}

void write_dot_to_environment_file() {
  const std::string path = dot_file_from_environment();
  if (path.empty()) return;
  if (Status s = write_dot_file(path); !s.ok()) report_dot_write_failure(path, s);
}

void install_dot_at_exit() {
  static const bool installed = [] {
    // With a pattern from the start; set_dot_file() installs the writer for one set later.
    if (dot_pattern_from_environment() && !g_dot_pattern_set.load(std::memory_order_acquire))
      std::atexit(write_dot_to_environment_file);
    return true;
  }();
  (void)installed;
}

}  // namespace uiommufd::lockdep
