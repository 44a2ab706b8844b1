// Table-driven lock scenarios for the validator's self-tests, in the manner of the kernel's
// lib/locking-selftest.c: a scenario is data (a short script), a flavour says which kind of lock every
// letter is and how an unadorned letter is taken, and a test compares the reports that come out with the
// expected verdict.
//
// Script grammar:
//   script := event ("," event)*
//   event  := token (" " token)*          acquired left to right, then released right to left
//   token  := [mode] CLASS [INSTANCE]
//   mode   := "w" exclusive | "s" shared (non-recursive reader, rwsem read)
//           | "r" recursive shared (map only) | "t" exclusive trylock
//           | (none) the flavour's default
//   CLASS  := "A".."Z"                    one static LockClassKey per letter, named after it
//   INSTANCE := "1".."9"                  default 1; "X1 X2" are two locks of one class
//
// "A B, B A" is the kernel's ABBA: LOCK(A); LOCK(B); UNLOCK(B); UNLOCK(A); LOCK(B); LOCK(A); ...
//
// Real locks (Mutex, SharedMutex) are never allowed to block: every event runs in the calling thread with
// nothing held by another thread, and a script that would take a real lock the thread already holds is
// refused (Outcome::error) instead of hanging.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "uiommufd/lockdep/lock_class_key.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/lockdep/lockdep_map.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/lockdep/shared_mutex.h"

namespace uiommufd::lockdep::selftest {

// Which lock type every letter is, and how an unadorned token takes it. The first six are the columns of
// the kernel's selftest matrix (spin/wlock ~ mutex, wsem, rsem, and rlock ~ map recursive read).
enum class Flavour {
  kMutex,              // Mutex + MutexGuard
  kRwsemWrite,         // SharedMutex + WriteGuard
  kRwsemRead,          // SharedMutex + ReadGuard (read = 1)
  kMap,                // LockdepMap + MapGuard
  kMapShared,          // LockdepMap + MapSharedGuard (read = 1)
  kMapRecursiveRead,   // LockdepMap + MapRecursiveSharedGuard (read = 2)
  kReal,               // mixed scripts on real locks: a letter ever taken "s" is a SharedMutex, else a Mutex;
                       // unadorned tokens are exclusive
};

const char* flavour_name(Flavour flavour);
bool is_map_flavour(Flavour flavour);

enum class Access : char {
  kDefault = 0,
  kExclusive = 'w',
  kShared = 's',
  kRecursiveShared = 'r',
  kTrylock = 't',
};

struct Token {
  Access access = Access::kDefault;
  char cls = 'A';
  int instance = 1;
};
using Event = std::vector<Token>;

// Parses `script`; on a syntax error returns nullopt and sets *error.
std::optional<std::vector<Event>> parse_script(std::string_view script, std::string* error);

// Owns the locks of one scenario and the guards currently held. Not thread-safe: one runner per thread.
class ScenarioRunner {
 public:
  explicit ScenarioRunner(Flavour flavour);
  ~ScenarioRunner();
  ScenarioRunner(const ScenarioRunner&) = delete;
  ScenarioRunner& operator=(const ScenarioRunner&) = delete;

  // Runs every event of `script` in order. False (and error()) on a malformed script or one that would
  // block on a real lock; locks taken so far are released either way.
  bool run(std::string_view script);
  const std::string& error() const { return error_; }

  // The map of a lock, for assertions (held(), names). Creates the lock if needed.
  const LockdepMap& dep_map(char cls, int instance = 1);

 private:
  struct Lock;
  struct Held;

  Lock& lock_for(char cls, int instance);
  bool acquire(const Token& token);
  void release_all();

  Flavour flavour_;
  std::string shared_letters_;  // kReal: letters that must be SharedMutex
  std::vector<std::unique_ptr<Lock>> locks_;
  std::vector<std::unique_ptr<Held>> held_;  // innermost last
  std::string error_;
};

// The key of one letter ('A'..'Z'), named after it. Static storage, shared by every test.
LockClassKey& key_for(char cls);

struct Outcome {
  bool ok = false;
  std::string error;
  std::vector<Report> reports;
};

// Clears every report, runs `script` under `flavour` in the calling thread and returns what was reported.
// Does not reset the dependency graph: call lockdep::reset_for_testing() first for a fresh one.
Outcome run_scenario(Flavour flavour, std::string_view script);

// Every ordering of `events` (joined by ","), labelled as the kernel does: "123", "132", ... for 3 events.
struct Permutation {
  std::string label;
  std::string script;
};
std::vector<Permutation> permutations(const std::vector<std::string>& events);

// Verdict check: nullopt expects no report; a kind expects exactly one report, of that kind.
::testing::AssertionResult verdict_is(const Outcome& outcome, std::optional<ReportKind> expected);

// All reports, kinds and texts, for failure messages.
std::string describe(const std::vector<Report>& reports);

// Prepares the validator for one test: report mode, nothing printed, empty graph, no reports.
void fresh_validator();

// gtest fixture doing fresh_validator() before and after every test.
class LockdepTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
};

}  // namespace uiommufd::lockdep::selftest
