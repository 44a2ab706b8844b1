// The class graph as a Graphviz picture (uiommufd/lockdep/dot.h): what is drawn and highlighted, how names
// are escaped, where the file goes (write_dot_file, UIOMMUFD_LOCKDEP_DOT at exit and on an aborting
// report), and that Graphviz's dot reads the result.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dependency_graph.h"
#include "dot_graph.h"
#include "testing/child_process.h"
#include "testing/scenario.h"

#include "uiommufd/lockdep/dot.h"
#include "uiommufd/lockdep/fork_lock_order.h"
#include "uiommufd/lockdep/lock_class_key.h"
#include "uiommufd/lockdep/lockdep_map.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/lockdep/shared_mutex.h"

namespace uiommufd::lockdep::selftest {
namespace {

// ---- the formatter alone ----

std::string escape(std::string_view text) {
  std::string out;
  append_dot_escaped(out, text);
  return out;
}

TEST(DotEscape, SpecialCharactersAreShownNotInterpreted) {
  EXPECT_EQ(escape("plain.name/1"), "plain.name/1");
  EXPECT_EQ(escape("say \"hi\""), R"(say \"hi\")");
  // A backslash never starts an escString sequence (\n, \l, \N, ...) or a line continuation.
  EXPECT_EQ(escape(R"(a\nb\N)"), R"(a\\nb\\N)");
  EXPECT_EQ(escape("trailing\\"), R"(trailing\\)");
  EXPECT_EQ(escape("a&lt;b & c"), "a&amp;lt;b &amp; c");
  // Control characters, a newline among them, as visible hex.
  EXPECT_EQ(escape("new\nline\ttab\x7f"), R"(new\\x0Aline\\x09tab\\x7F)");
  EXPECT_EQ(escape(std::string_view("nul\0byte", 8)), R"(nul\\x00byte)");
}

TEST(DotEscape, ValidUtf8IsKeptInvalidBytesAreShown) {
  EXPECT_EQ(escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92");
  EXPECT_EQ(escape("latin1 caf\xe9"), R"(latin1 caf\\xE9)");
  EXPECT_EQ(escape("\xc0\xaf"), R"(\\xC0\\xAF)");                    // overlong '/'
  EXPECT_EQ(escape("\xed\xa0\x80"), R"(\\xED\\xA0\\x80)");           // a surrogate
  EXPECT_EQ(escape("\xf4\x90\x80\x80"), R"(\\xF4\\x90\\x80\\x80)");  // beyond U+10FFFF
  EXPECT_EQ(escape("cut \xe2\x82"), R"(cut \\xE2\\x82)");            // truncated at the end
  EXPECT_EQ(escape("\x80x"), R"(\\x80x)");                           // a lone continuation byte
}

TEST(DotPattern, PidAndPercent) {
  EXPECT_EQ(expand_dot_pattern("/tmp/g-%p.dot", 42), "/tmp/g-42.dot");
  EXPECT_EQ(expand_dot_pattern("%p%p", 7), "77");
  EXPECT_EQ(expand_dot_pattern("100%%-%p", 3), "100%-3");
  EXPECT_EQ(expand_dot_pattern("%%p", 3), "%p");
  EXPECT_EQ(expand_dot_pattern("keep %x and %", 3), "keep %x and %");
  EXPECT_EQ(expand_dot_pattern("plain.dot", 3), "plain.dot");
}

TEST(DotFormat, HandBuiltGraph) {
  DotGraph g;
  g.program = "prog";
  g.pid = 12;
  g.classes = {{},
               {"a", static_cast<std::uint8_t>(LockKind::kMutex)},
               {"b", static_cast<std::uint8_t>(LockKind::kMap)}};
  g.edges = {{1, 2, kDepEN}};
  const std::string dot = format_dot(g);
  EXPECT_NE(dot.find("digraph \"lockdep\" {"), std::string::npos) << dot;
  EXPECT_NE(dot.find("uiommufd lock validator, prog (pid 12), mode report"), std::string::npos) << dot;
  EXPECT_NE(dot.find("lock class graph: 2 classes, 1 dependency, 0 reports"), std::string::npos) << dot;
  EXPECT_NE(dot.find("  c1 -> c2 [tooltip=\"a -> b -(EN)->\"];\n"), std::string::npos) << dot;
  EXPECT_EQ(dot.find("color="), std::string::npos) << "no report, nothing highlighted:\n" << dot;
  EXPECT_EQ(dot.back(), '\n');
}

TEST(DotFormat, KindNotKnownYetIsGrey) {
  DotGraph g;
  g.classes = {{},
               {"declared.only", 0},
               {"both", static_cast<std::uint8_t>(LockKind::kMutex) |
                            static_cast<std::uint8_t>(LockKind::kSharedMutex)}};
  const std::string dot = format_dot(g);
  EXPECT_NE(
      dot.find(
          "  c1 [label=\"declared.only\", color=grey50, fontcolor=grey50, tooltip=\"declared.only: kind not "
          "known (no lock of this class constructed yet)\"];\n"),
      std::string::npos)
      << dot;
  EXPECT_NE(dot.find("  c2 [label=\"both\", tooltip=\"both: mutex, shared mutex (rwsem)\"];\n"),
            std::string::npos)
      << dot;
}

// The runtime's and base's locks behind constant maps are known from the start as real locks observed
// through a map, not drawn grey or as pseudo-locks.
TEST(DotFormat, TheForkOrderedLocksAreObservedLocks) {
  for (const lockdep::LockClassKey* key :
       {&lock_order::kEngineGate, &lock_order::kFdTable, &lock_order::kSlab, &lock_order::kFaultRegistry})
    EXPECT_EQ(key->kinds() & static_cast<std::uint8_t>(LockKind::kObservedLock),
              static_cast<std::uint8_t>(LockKind::kObservedLock))
        << key->name();
}

TEST(DotFormat, CompiledOutSaysSo) {
  DotGraph g;
  g.compiled_out = true;
  const std::string dot = format_dot(g);
  EXPECT_NE(dot.find("compiled out"), std::string::npos) << dot;
  EXPECT_NE(dot.find("digraph"), std::string::npos) << dot;
  EXPECT_EQ(dot.find(" -> "), std::string::npos) << dot;
}

#if UIOMMUFD_LOCKDEP_ENABLED

// ---- pictures of the live graph ----

constinit LockClassKey g_alpha{"dot.alpha"};
constinit LockClassKey g_beta{"dot.beta"};
constinit LockClassKey g_gamma{"dot.gamma"};
constinit LockClassKey g_rwsem{"dot.rwsem"};
constinit LockClassKey g_map{"dot.map"};
constinit LockClassKey g_recursive{"dot.recursive"};
constinit LockClassKey g_orange{"dot.orange"};
// Names that need escaping, in every way append_dot_escaped() knows.
constinit LockClassKey g_quote{"dot.quote\"back\\slash\\N"};
constinit LockClassKey g_amp{"dot.amp&lt;"};
constinit LockClassKey g_utf8{"dot.caf\xc3\xa9.\xe2\x9c\x93"};
constinit LockClassKey g_latin1{"dot.caf\xe9"};
constinit LockClassKey g_newline{"dot.new\nline"};

std::string picture() {
  char* buf = nullptr;
  std::size_t len = 0;
  std::FILE* f = open_memstream(&buf, &len);
  if (!f) return "open_memstream failed";
  const Status s = write_dot(f);
  std::fclose(f);
  std::string out(buf, len);
  std::free(buf);
  EXPECT_TRUE(s.ok()) << s.to_string();
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The node id ("c7") whose label is exactly `escaped_label`, or "" when there is none.
std::string node_id(const std::string& dot, const std::string& escaped_label) {
  for (const std::string& line : lines_of(dot)) {
    const std::size_t bracket = line.find(" [label=\"" + escaped_label + "\"");
    if (line.rfind("  c", 0) == 0 && bracket != std::string::npos && line.find(" -> ") == std::string::npos)
      return line.substr(2, bracket - 2);
  }
  return "";
}

std::string node_line(const std::string& dot, const std::string& id) {
  for (const std::string& line : lines_of(dot))
    if (line.rfind("  " + id + " [", 0) == 0) return line;
  return "";
}

// Every line drawing an edge from -> to.
std::vector<std::string> edge_lines(const std::string& dot, const std::string& from, const std::string& to) {
  std::vector<std::string> found;
  for (const std::string& line : lines_of(dot))
    if (line.rfind("  " + from + " -> " + to + " [", 0) == 0) found.push_back(line);
  return found;
}

bool has(const std::string& line, const char* what) { return line.find(what) != std::string::npos; }

class DotTest : public LockdepTest {};

// A -> B and A -> C recorded, then B -> A closes the cycle A -> B -> A.
void make_cycle() {
  Mutex a(g_alpha), b(g_beta), c(g_gamma);
  {
    MutexGuard ga(a);
    MutexGuard gb(b);
  }
  {
    MutexGuard ga(a);
    MutexGuard gc(c);
  }
  {
    MutexGuard gb(b);
    MutexGuard ga(a);
  }
}

TEST_F(DotTest, CycleOfAReportIsHighlighted) {
  make_cycle();
  ASSERT_EQ(report_count(), 1u) << describe(reports());
  const std::string dot = picture();
  const std::string a = node_id(dot, "dot.alpha"), b = node_id(dot, "dot.beta"),
                    c = node_id(dot, "dot.gamma");
  ASSERT_FALSE(a.empty()) << dot;
  ASSERT_FALSE(b.empty()) << dot;
  ASSERT_FALSE(c.empty()) << dot;

  // Both nodes of the cycle in red, the bystander not.
  EXPECT_TRUE(has(node_line(dot, a), "color=red")) << node_line(dot, a);
  EXPECT_TRUE(has(node_line(dot, b), "color=red")) << node_line(dot, b);
  EXPECT_FALSE(has(node_line(dot, c), "red")) << node_line(dot, c);

  // The recorded edge of the cycle: red, solid, labelled with the report.
  const auto ab = edge_lines(dot, a, b);
  ASSERT_EQ(ab.size(), 1u) << dot;
  EXPECT_TRUE(has(ab[0], "color=red")) << ab[0];
  EXPECT_TRUE(has(ab[0], "label=\"#1\"")) << ab[0];
  EXPECT_FALSE(has(ab[0], "dashed")) << ab[0];
  // The acquisition that closed it, never recorded: red and dashed.
  const auto ba = edge_lines(dot, b, a);
  ASSERT_EQ(ba.size(), 1u) << dot;
  EXPECT_TRUE(has(ba[0], "color=red")) << ba[0];
  EXPECT_TRUE(has(ba[0], "dashed")) << ba[0];
  EXPECT_TRUE(has(ba[0], "not recorded")) << ba[0];
  // Another edge, not part of any report.
  const auto ac = edge_lines(dot, a, c);
  ASSERT_EQ(ac.size(), 1u) << dot;
  EXPECT_FALSE(has(ac[0], "red")) << ac[0];

  // The report is named in a comment and in the graph's label.
  const char* kLine =
      "report #1 circular-dependency: possible circular locking dependency: dot.beta -> dot.alpha -> "
      "dot.beta";
  EXPECT_NE(dot.find(std::string("// ") + kLine + "\n"), std::string::npos) << dot;
  EXPECT_NE(dot.find(std::string(kLine) + "\\l"), std::string::npos) << dot;
  EXPECT_NE(dot.find(", 1 report\\l"), std::string::npos) << dot;
}

TEST_F(DotTest, ResetForgetsTheReports) {
  make_cycle();
  reset_for_testing();
  const std::string dot = picture();
  EXPECT_EQ(dot.find("color=red"), std::string::npos) << dot;
  EXPECT_EQ(dot.find("report #1"), std::string::npos) << dot;
}

TEST_F(DotTest, RecursiveLockingIsARedSelfLoop) {
  Mutex x1(g_recursive, "one"), x2(g_recursive, "two");
  {
    MutexGuard g1(x1);
    MutexGuard g2(x2);
  }
  ASSERT_EQ(report_count(), 1u) << describe(reports());
  const std::string dot = picture();
  const std::string x = node_id(dot, "dot.recursive");
  ASSERT_FALSE(x.empty()) << dot;
  const auto loop = edge_lines(dot, x, x);
  ASSERT_EQ(loop.size(), 1u) << dot;
  EXPECT_TRUE(has(loop[0], "color=red")) << loop[0];
  EXPECT_TRUE(has(loop[0], "dashed")) << loop[0];
  EXPECT_TRUE(has(node_line(dot, x), "color=red")) << node_line(dot, x);
}

TEST_F(DotTest, ReportOnOneLockIsOrange) {
  LockdepMap m(g_orange);
  { MapGuard g(m); }
  detail::release(m);  // bad unlock balance
  ASSERT_EQ(report_count(), 1u) << describe(reports());
  const std::string dot = picture();
  const std::string id = node_id(dot, "dot.orange");
  ASSERT_FALSE(id.empty()) << dot;
  EXPECT_TRUE(has(node_line(dot, id), "color=darkorange")) << node_line(dot, id);
  EXPECT_NE(dot.find("report #1 bad-unlock: bad unlock balance: dot.orange"), std::string::npos) << dot;
}

TEST_F(DotTest, LockKindsAreDrawnApart) {
  Mutex m(g_alpha);
  SharedMutex s(g_rwsem);
  LockdepMap map(g_map);
  {
    MutexGuard gm(m);
    WriteGuard gs(s);
    MapGuard gmap(map);
  }
  const std::string dot = picture();
  const std::string mutex_line = node_line(dot, node_id(dot, "dot.alpha"));
  const std::string rwsem_line = node_line(dot, node_id(dot, "dot.rwsem"));
  const std::string map_line = node_line(dot, node_id(dot, "dot.map"));
  EXPECT_FALSE(has(mutex_line, "shape=") || has(mutex_line, "peripheries")) << mutex_line;
  EXPECT_TRUE(has(mutex_line, ": mutex")) << mutex_line;
  EXPECT_TRUE(has(rwsem_line, "peripheries=2")) << rwsem_line;
  EXPECT_TRUE(has(map_line, "shape=ellipse")) << map_line;
  EXPECT_TRUE(has(map_line, "dashed")) << map_line;
  EXPECT_TRUE(has(map_line, "pseudo-lock")) << map_line;
}

// Locks whose names need escaping, nested so that they have edges too.
void take_awkward_names() {
  Mutex q(g_quote), a(g_amp), u(g_utf8), l(g_latin1), n(g_newline);
  MutexGuard gq(q);
  MutexGuard ga(a);
  MutexGuard gu(u);
  MutexGuard gl(l);
  MutexGuard gn(n);
}

// Every double-quoted string on each line is closed on that line: no name broke out of its quotes.
::testing::AssertionResult quotes_balance(const std::string& dot) {
  for (const std::string& line : lines_of(dot)) {
    if (line.rfind("//", 0) == 0) continue;
    bool inside = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
      if (inside && line[i] == '\\') {
        ++i;
        continue;
      }
      if (line[i] == '"') inside = !inside;
    }
    if (inside) return ::testing::AssertionFailure() << "unclosed string in: " << line;
  }
  return ::testing::AssertionSuccess();
}

TEST_F(DotTest, NamesAreEscaped) {
  take_awkward_names();
  const std::string dot = picture();
  EXPECT_FALSE(node_id(dot, R"(dot.quote\"back\\slash\\N)").empty()) << dot;
  EXPECT_FALSE(node_id(dot, "dot.amp&amp;lt;").empty()) << dot;
  EXPECT_FALSE(node_id(dot, "dot.caf\xc3\xa9.\xe2\x9c\x93").empty()) << dot;
  EXPECT_FALSE(node_id(dot, R"(dot.caf\\xE9)").empty()) << dot;
  EXPECT_FALSE(node_id(dot, R"(dot.new\\x0Aline)").empty()) << dot;
  EXPECT_EQ(dot.find("dot.new\nline"), std::string::npos) << "a raw newline in a name";
  EXPECT_EQ(dot.find("caf\xe9"), std::string::npos) << "a byte that is not UTF-8";
  EXPECT_TRUE(quotes_balance(dot));
}

constinit LockClassKey g_threads[4] = {LockClassKey{"dot.thread0"}, LockClassKey{"dot.thread1"},
                                       LockClassKey{"dot.thread2"}, LockClassKey{"dot.thread3"}};

// Pictures taken while other threads register classes and add dependencies: each is whole, and writing
// (here with an instrumented lock held) adds no dependency and no report of its own.
TEST_F(DotTest, WritingWhileOtherThreadsTakeLocks) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([i, &stop] {
      Mutex outer(g_threads[i]);
      Mutex inner(g_threads[i + 1]);
      do {
        for (unsigned sub = 0; sub < kMaxSubclasses; ++sub) {
          MutexGuard go(outer);
          MutexGuard gi(inner, {.subclass = sub});
        }
      } while (!stop.load());
    });
  }
  Mutex held(g_gamma);
  for (int round = 0; round < 50; ++round) {
    MutexGuard g(held);
    const std::string dot = picture();
    EXPECT_TRUE(quotes_balance(dot));
    EXPECT_EQ(dot.substr(dot.size() - 2), "}\n");
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(report_count(), 0u) << describe(reports());
  const std::string dot = picture();
  const std::string gamma = node_id(dot, "dot.gamma");
  ASSERT_FALSE(gamma.empty()) << dot;
  for (const std::string& line : lines_of(dot))
    EXPECT_NE(line.rfind("  " + gamma + " -> ", 0), 0u) << "the writer's held lock gained an edge: " << line;
  // 3 threads x kMaxSubclasses inner classes, each with its edge from the outer class.
  EXPECT_NE(node_id(dot, "dot.thread3/7"), "") << dot;
}

// ---- files ----

class DotFileTest : public DotTest {
 protected:
  void SetUp() override {
    DotTest::SetUp();
    char name[] = "/tmp/uiommufd-dot-XXXXXX";
    ASSERT_NE(mkdtemp(name), nullptr);
    dir_ = name;
  }
  void TearDown() override {
    for (const std::string& f : files()) unlink((dir_ + "/" + f).c_str());
    rmdir(dir_.c_str());
    DotTest::TearDown();
  }
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    if (DIR* d = opendir(dir_.c_str())) {
      while (dirent* e = readdir(d))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
      closedir(d);
    }
    return names;
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string dir_;
};

TEST_F(DotFileTest, WriteDotFileReplacesTheFileWhole) {
  const std::string path = dir_ + "/graph.dot";
  ASSERT_TRUE(write_dot_file(path).ok());
  EXPECT_EQ(read(path).rfind("// uiommufd lock validator", 0), 0u) << read(path);
  make_cycle();
  ASSERT_TRUE(write_dot_file(path).ok());
  EXPECT_NE(read(path).find("report #1"), std::string::npos) << read(path);
  EXPECT_EQ(read(path), picture());
  // No temporary file is left behind.
  EXPECT_EQ(files(), std::vector<std::string>{"graph.dot"});
}

TEST_F(DotFileTest, WriteErrors) {
  EXPECT_EQ(write_dot_file(dir_ + "/no/such/dir/graph.dot").error(), ENOENT);
  EXPECT_EQ(write_dot_file("").error(), EINVAL);
  EXPECT_EQ(write_dot(nullptr).error(), EINVAL);
  // Over a directory: the rename fails and the temporary file goes.
  ASSERT_EQ(mkdir((dir_ + "/sub").c_str(), 0700), 0);
  EXPECT_EQ(write_dot_file(dir_ + "/sub").error(), EISDIR);
  rmdir((dir_ + "/sub").c_str());
  EXPECT_TRUE(files().empty());
}

// --- UIOMMUFD_LOCKDEP_DOT, in fresh copies of this binary ---

constinit LockClassKey g_probe_a{"dot.probe.a"};
constinit LockClassKey g_probe_b{"dot.probe.b"};
constinit LockClassKey g_probe_after{"dot.probe.after_report"};

// A -> B, B -> A (reported; in abort mode the process ends here), then A -> after, which only a picture
// written at exit can show.
TEST(LockdepDotProbe, DISABLED_CycleThenMore) {
  set_print_reports(false);
  Mutex a(g_probe_a), b(g_probe_b), after(g_probe_after);
  {
    MutexGuard ga(a);
    MutexGuard gb(b);
  }
  {
    MutexGuard gb(b);
    MutexGuard ga(a);
  }
  {
    MutexGuard ga(a);
    MutexGuard g(after);
  }
  std::printf("probe done, %zu report(s)\n", report_count());
}

ChildResult run_dot_probe(const std::string& pattern, const char* mode, Stderr err = Stderr::kDiscarded) {
  return run_probe(
      "LockdepDotProbe.DISABLED_CycleThenMore",
      environment_with({"UIOMMUFD_LOCKDEP_DOT=" + pattern, std::string("UIOMMUFD_LOCKDEP=") + mode},
                       {"UIOMMUFD_LOCKDEP_DOT", "UIOMMUFD_LOCKDEP"}),
      err);
}

TEST_F(DotFileTest, EnvironmentFileIsWrittenAtExitWithThePid) {
  const ChildResult r = run_dot_probe(dir_ + "/graph-%p.dot", "report");
  ASSERT_EQ(r.spawn_error, 0);
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.status << "\n" << r.out;
  ASSERT_NE(r.out.find("probe done, 1 report(s)"), std::string::npos) << r.out;
  const std::string name = "graph-" + std::to_string(r.pid) + ".dot";
  ASSERT_EQ(files(), std::vector<std::string>{name});
  const std::string dot = read(dir_ + "/" + name);
  EXPECT_NE(dot.find("(pid " + std::to_string(r.pid) + ")"), std::string::npos) << dot;
  const std::string a = node_id(dot, "dot.probe.a"), b = node_id(dot, "dot.probe.b");
  const std::string after = node_id(dot, "dot.probe.after_report");
  ASSERT_FALSE(a.empty() || b.empty() || after.empty()) << dot;
  ASSERT_EQ(edge_lines(dot, a, b).size(), 1u) << dot;
  EXPECT_TRUE(has(edge_lines(dot, a, b)[0], "color=red")) << dot;
  ASSERT_EQ(edge_lines(dot, b, a).size(), 1u) << dot;
  EXPECT_TRUE(has(edge_lines(dot, b, a)[0], "dashed")) << dot;
  // Taken after the report: the file was written again at exit.
  ASSERT_EQ(edge_lines(dot, a, after).size(), 1u) << dot;
  EXPECT_FALSE(has(edge_lines(dot, a, after)[0], "red")) << dot;
}

TEST_F(DotFileTest, EnvironmentFileIsWrittenBeforeAnAbortingReport) {
  const ChildResult r = run_dot_probe(dir_ + "/graph.dot", "abort");
  ASSERT_EQ(r.spawn_error, 0);
  ASSERT_TRUE(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT) << r.status << "\n" << r.out;
  ASSERT_EQ(files(), std::vector<std::string>{"graph.dot"});
  const std::string dot = read(dir_ + "/graph.dot");
  EXPECT_NE(dot.find("mode abort"), std::string::npos) << dot;
  const std::string a = node_id(dot, "dot.probe.a"), b = node_id(dot, "dot.probe.b");
  ASSERT_FALSE(a.empty() || b.empty()) << dot;
  ASSERT_EQ(edge_lines(dot, a, b).size(), 1u) << dot;
  EXPECT_TRUE(has(edge_lines(dot, a, b)[0], "color=red")) << dot;
  ASSERT_EQ(edge_lines(dot, b, a).size(), 1u) << dot;
  EXPECT_NE(dot.find("report #1 circular-dependency"), std::string::npos) << dot;
  EXPECT_TRUE(node_id(dot, "dot.probe.after_report").empty()) << "never taken before the abort:\n" << dot;
}

TEST_F(DotFileTest, UnwritableEnvironmentFileIsReportedNotFatal) {
  const std::string path = dir_ + "/no/such/dir/graph.dot";
  const ChildResult r = run_dot_probe(path, "report", Stderr::kCaptured);
  ASSERT_EQ(r.spawn_error, 0);
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.status << "\n" << r.out;
  // Once after the report, once at exit.
  const std::string message = "cannot write UIOMMUFD_LOCKDEP_DOT file " + path + ": ENOENT";
  const std::size_t first = r.out.find(message);
  ASSERT_NE(first, std::string::npos) << r.out;
  EXPECT_NE(r.out.find(message, first + 1), std::string::npos) << r.out;
  EXPECT_TRUE(files().empty());
}

// ---- Graphviz ----

TEST_F(DotFileTest, GraphvizRendersThePicture) {
  make_cycle();
  take_awkward_names();
  const std::string path = dir_ + "/graph.dot";
  ASSERT_TRUE(write_dot_file(path).ok());
  const ChildResult r = run_child({"dot", "-Tsvg", path}, environment_with({}, {}));
  if (r.spawn_error == ENOENT) GTEST_SKIP() << "Graphviz's dot is not installed (apt-get install graphviz)";
  ASSERT_EQ(r.spawn_error, 0);
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.status;
  EXPECT_EQ(r.out.rfind("<?xml", 0), 0u) << r.out.substr(0, 200);
  EXPECT_NE(r.out.find("<svg"), std::string::npos);
  // Names come out as they are (XML-escaped in the SVG), not as DOT or entity escapes.
  EXPECT_NE(r.out.find(">dot.quote&quot;back\\slash\\N<"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(">dot.amp&amp;lt;<"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(">dot.caf\xc3\xa9.\xe2\x9c\x93<"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(">dot.caf\\xE9<"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(">dot.new\\x0Aline<"), std::string::npos) << r.out;
}

#endif  // UIOMMUFD_LOCKDEP_ENABLED

}  // namespace
}  // namespace uiommufd::lockdep::selftest
