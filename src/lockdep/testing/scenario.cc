#include "testing/scenario.h"

#include <algorithm>
#include <numeric>
#include <sstream>
#include <utility>

#include "uiommufd/base/thread_annotations.h"

// The self-tests compile to a skipped placeholder when the validator is compiled out; so does this.
#if UIOMMUFD_LOCKDEP_ENABLED

namespace uiommufd::lockdep::selftest {

const char* flavour_name(Flavour flavour) {
  switch (flavour) {
    case Flavour::kMutex: return "mutex";
    case Flavour::kRwsemWrite: return "wsem";
    case Flavour::kRwsemRead: return "rsem";
    case Flavour::kMap: return "map";
    case Flavour::kMapShared: return "mapread";
    case Flavour::kMapRecursiveRead: return "maprecread";
    case Flavour::kReal: return "real";
  }
  return "?";
}

bool is_map_flavour(Flavour flavour) {
  return flavour == Flavour::kMap || flavour == Flavour::kMapShared ||
         flavour == Flavour::kMapRecursiveRead;
}

LockClassKey& key_for(char cls) {
  static LockClassKey keys[26] = {
      LockClassKey("A"), LockClassKey("B"), LockClassKey("C"), LockClassKey("D"), LockClassKey("E"),
      LockClassKey("F"), LockClassKey("G"), LockClassKey("H"), LockClassKey("I"), LockClassKey("J"),
      LockClassKey("K"), LockClassKey("L"), LockClassKey("M"), LockClassKey("N"), LockClassKey("O"),
      LockClassKey("P"), LockClassKey("Q"), LockClassKey("R"), LockClassKey("S"), LockClassKey("T"),
      LockClassKey("U"), LockClassKey("V"), LockClassKey("W"), LockClassKey("X"), LockClassKey("Y"),
      LockClassKey("Z"),
  };
  return keys[cls - 'A'];
}

std::optional<std::vector<Event>> parse_script(std::string_view script, std::string* error) {
  std::vector<Event> events;
  Event current;
  std::size_t i = 0;
  auto fail = [&](const std::string& why) -> std::optional<std::vector<Event>> {
    if (error) *error = "bad script \"" + std::string(script) + "\" at " + std::to_string(i) + ": " + why;
    return std::nullopt;
  };
  while (i <= script.size()) {
    if (i == script.size() || script[i] == ',') {
      if (current.empty()) return fail("empty event");
      events.push_back(std::move(current));
      current.clear();
      ++i;
      continue;
    }
    if (script[i] == ' ') {
      ++i;
      continue;
    }
    Token t;
    char c = script[i];
    if (c == 'w' || c == 's' || c == 'r' || c == 't') {
      t.access = static_cast<Access>(c);
      ++i;
      if (i == script.size()) return fail("mode without lock");
      c = script[i];
    }
    if (c < 'A' || c > 'Z') return fail(std::string("unexpected '") + c + "'");
    t.cls = c;
    ++i;
    if (i < script.size() && script[i] >= '1' && script[i] <= '9') {
      t.instance = script[i] - '0';
      ++i;
    }
    current.push_back(t);
  }
  return events;
}

// One lock of the scenario. Exactly one of the three pointers is set.
struct ScenarioRunner::Lock {
  char cls;
  int instance;
  std::string name;  // outlives the lock: LockdepMap keeps the pointer
  std::unique_ptr<Mutex> mutex;
  std::unique_ptr<SharedMutex> rw;
  std::unique_ptr<LockdepMap> map;
  int held = 0;  // acquisitions currently held by the runner

  const LockdepMap& dep_map() const {
    if (mutex) return mutex->dep_map();
    if (rw) return rw->dep_map();
    return *map;
  }
};

struct ScenarioRunner::Held {
  explicit Held(Lock* l) : lock(l) { ++lock->held; }
  virtual ~Held() { --lock->held; }
  Lock* lock;
};

namespace {

// A heap-held scoped guard. The static analysis cannot follow guards on the heap; the validator under test
// is what checks these.
template <class Base, class G>
struct GuardHeld final : Base {
  template <class... Args>
  explicit GuardHeld(typename Base::LockPtr l, Args&&... args) NO_THREAD_SAFETY_ANALYSIS
      : Base(l), guard(std::forward<Args>(args)...) {}
  ~GuardHeld() override NO_THREAD_SAFETY_ANALYSIS {}
  G guard;
};

}  // namespace

ScenarioRunner::ScenarioRunner(Flavour flavour) : flavour_(flavour) {}

ScenarioRunner::~ScenarioRunner() {
  release_all();
  locks_.clear();
}

void ScenarioRunner::release_all() {
  while (!held_.empty()) held_.pop_back();
}

const LockdepMap& ScenarioRunner::dep_map(char cls, int instance) { return lock_for(cls, instance).dep_map(); }

ScenarioRunner::Lock& ScenarioRunner::lock_for(char cls, int instance) {
  for (auto& l : locks_) {
    if (l->cls == cls && l->instance == instance) return *l;
  }
  auto l = std::make_unique<Lock>();
  l->cls = cls;
  l->instance = instance;
  l->name = std::string(1, cls) + std::to_string(instance);
  LockClassKey& key = key_for(cls);
  switch (flavour_) {
    case Flavour::kMutex:
      l->mutex = std::make_unique<Mutex>(key, l->name.c_str());
      break;
    case Flavour::kRwsemWrite:
    case Flavour::kRwsemRead:
      l->rw = std::make_unique<SharedMutex>(key, l->name.c_str());
      break;
    case Flavour::kMap:
    case Flavour::kMapShared:
    case Flavour::kMapRecursiveRead:
      l->map = std::make_unique<LockdepMap>(key, l->name.c_str());
      break;
    case Flavour::kReal:
      if (shared_letters_.find(cls) != std::string::npos) {
        l->rw = std::make_unique<SharedMutex>(key, l->name.c_str());
      } else {
        l->mutex = std::make_unique<Mutex>(key, l->name.c_str());
      }
      break;
  }
  locks_.push_back(std::move(l));
  return *locks_.back();
}

bool ScenarioRunner::acquire(const Token& token) NO_THREAD_SAFETY_ANALYSIS {
  Lock& lock = lock_for(token.cls, token.instance);
  Access access = token.access;
  if (access == Access::kDefault) {
    switch (flavour_) {
      case Flavour::kRwsemRead:
      case Flavour::kMapShared:
        access = Access::kShared;
        break;
      case Flavour::kMapRecursiveRead:
        access = Access::kRecursiveShared;
        break;
      default:
        access = Access::kExclusive;
        break;
    }
  }
  const std::string what = std::string(1, static_cast<char>(access)) + lock.name;

  struct H : Held {
    using LockPtr = Lock*;
    using Held::Held;
  };

  if (!lock.map && lock.held > 0) {
    error_ = "refused: " + what + " would block on a real lock this thread already holds";
    return false;
  }

  if (lock.mutex) {
    switch (access) {
      case Access::kExclusive:
        held_.push_back(std::make_unique<GuardHeld<H, MutexGuard>>(&lock, *lock.mutex));
        return true;
      case Access::kTrylock:
        if (!lock.mutex->try_lock()) {
          error_ = "trylock of " + what + " failed";
          return false;
        }
        held_.push_back(std::make_unique<GuardHeld<H, MutexGuard>>(&lock, *lock.mutex, std::adopt_lock));
        return true;
      default:
        error_ = "a Mutex cannot be taken as " + what;
        return false;
    }
  }
  if (lock.rw) {
    switch (access) {
      case Access::kExclusive:
        held_.push_back(std::make_unique<GuardHeld<H, WriteGuard>>(&lock, *lock.rw));
        return true;
      case Access::kShared:
        held_.push_back(std::make_unique<GuardHeld<H, ReadGuard>>(&lock, *lock.rw));
        return true;
      case Access::kTrylock:
        if (!lock.rw->try_lock()) {
          error_ = "trylock of " + what + " failed";
          return false;
        }
        held_.push_back(std::make_unique<GuardHeld<H, WriteGuard>>(&lock, *lock.rw, std::adopt_lock));
        return true;
      default:
        error_ = "a SharedMutex cannot be taken as " + what;
        return false;
    }
  }
  switch (access) {
    case Access::kExclusive:
      held_.push_back(std::make_unique<GuardHeld<H, MapGuard>>(&lock, *lock.map));
      return true;
    case Access::kShared:
      held_.push_back(std::make_unique<GuardHeld<H, MapSharedGuard>>(&lock, *lock.map));
      return true;
    case Access::kRecursiveShared:
      held_.push_back(std::make_unique<GuardHeld<H, MapRecursiveSharedGuard>>(&lock, *lock.map));
      return true;
    case Access::kTrylock: {
      // A map has no try_lock of its own; take the validator's trylock path directly.
      struct MapTry final : H {
        MapTry(Lock* l, const LockdepMap& m)
            : H(l), map(m), tracked(detail::validating() && detail::acquire(m, detail::Read::kExclusive, true, {})) {}
        ~MapTry() override {
          if (tracked) detail::release(map);
        }
        const LockdepMap& map;
        bool tracked;
      };
      held_.push_back(std::make_unique<MapTry>(&lock, *lock.map));
      return true;
    }
    default:
      break;
  }
  error_ = "cannot take " + what;
  return false;
}

bool ScenarioRunner::run(std::string_view script) {
  error_.clear();
  auto events = parse_script(script, &error_);
  if (!events) return false;
  if (flavour_ == Flavour::kReal) {
    for (const Event& e : *events) {
      for (const Token& t : e) {
        if (t.access == Access::kShared && shared_letters_.find(t.cls) == std::string::npos) {
          shared_letters_.push_back(t.cls);
        }
      }
    }
  }
  for (const Event& e : *events) {
    for (const Token& t : e) {
      if (!acquire(t)) {
        release_all();
        return false;
      }
    }
    release_all();
  }
  return true;
}

Outcome run_scenario(Flavour flavour, std::string_view script) {
  clear_reports();
  Outcome out;
  {
    ScenarioRunner runner(flavour);
    out.ok = runner.run(script);
    out.error = runner.error();
  }
  out.reports = reports();
  return out;
}

std::vector<Permutation> permutations(const std::vector<std::string>& events) {
  std::vector<std::size_t> order(events.size());
  std::iota(order.begin(), order.end(), 0);
  std::vector<Permutation> out;
  do {
    Permutation p;
    for (std::size_t i : order) {
      p.label += static_cast<char>('1' + i);
      if (!p.script.empty()) p.script += ", ";
      p.script += events[i];
    }
    out.push_back(std::move(p));
  } while (std::next_permutation(order.begin(), order.end()));
  return out;
}

std::string describe(const std::vector<Report>& reports) {
  std::ostringstream os;
  os << reports.size() << " report(s)";
  for (const Report& r : reports) {
    os << "\n--- " << report_kind_name(r.kind) << " ---\n" << r.text;
  }
  return os.str();
}

::testing::AssertionResult verdict_is(const Outcome& outcome, std::optional<ReportKind> expected) {
  if (!outcome.ok) return ::testing::AssertionFailure() << "scenario not run: " << outcome.error;
  if (!expected) {
    if (outcome.reports.empty()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "expected no report, got " << describe(outcome.reports);
  }
  if (outcome.reports.size() == 1 && outcome.reports[0].kind == *expected) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "expected exactly one " << report_kind_name(*expected)
                                       << " report, got " << describe(outcome.reports);
}

void fresh_validator() {
  set_mode(Mode::kReport);
  set_print_reports(false);
  reset_for_testing();
  clear_reports();
}

void LockdepTest::SetUp() { fresh_validator(); }
void LockdepTest::TearDown() { fresh_validator(); }

}  // namespace uiommufd::lockdep::selftest

#endif  // UIOMMUFD_LOCKDEP_ENABLED

// This binary takes real mutexes in inverted orders on purpose (ABBA and friends, one critical section
// after another, so nothing ever blocks). ThreadSanitizer's own lock-order detector would flag each of
// them and fail the run; data-race detection stays on.
#if defined(__SANITIZE_THREAD__)
#define UIOMMUFD_SELFTEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UIOMMUFD_SELFTEST_TSAN 1
#endif
#endif
#ifdef UIOMMUFD_SELFTEST_TSAN
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }
#endif
