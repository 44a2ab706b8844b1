// Running other programs from the validator's tests: a copy of the test binary that runs one probe (for
// what happens at start-up and at exit, which a test cannot see in its own process), or a tool such as
// Graphviz's dot.
#pragma once

#include <string>
#include <vector>

namespace uiommufd::lockdep::selftest {

struct ChildResult {
  int spawn_error = 0;  // 0, or the errno posix_spawn returned (ENOENT: no such program)
  int pid = 0;          // the child's process id
  int status = 0;       // as waitpid() reports it
  std::string out;      // everything written to stdout
};

// Where the child's stderr goes: the test's, nowhere, or into ChildResult::out with its stdout.
enum class Stderr { kShown, kDiscarded, kCaptured };

// Runs argv[0] (searched on PATH when it has no '/') with `env` as its environment ("NAME=VALUE"), its
// stdout captured.
ChildResult run_child(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                      Stderr err = Stderr::kShown);

// This process's environment without the variables named in `unset` and without GTEST_* ones, plus `set`.
std::vector<std::string> environment_with(const std::vector<std::string>& set,
                                          const std::vector<std::string>& unset);

// Runs only the test `probe` (full name, e.g. "Suite.DISABLED_Probe") of this binary with `env`.
ChildResult run_probe(const std::string& probe, const std::vector<std::string>& env,
                      Stderr err = Stderr::kShown);

}  // namespace uiommufd::lockdep::selftest
