// The validator's verdicts, in the manner of the kernel's lib/locking-selftest.c: every scenario of the
// kernel's matrix for every lock kind, every event permutation of the 2- and 3-event scenarios, the
// recursive-read rules (Boqun Feng's "strong path" deadlock detection), trylock, nest locks, subclasses,
// unlock/free misuse, assertions, the chain cache and the limits.
//
// Each test starts from an empty graph (LockdepTest::SetUp) and asserts the reports that come out:
// nothing, or exactly one report of the expected kind.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "testing/scenario.h"
#include "uiommufd/lockdep/lock_class_key.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/lockdep/lockdep_map.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/lockdep/shared_mutex.h"

#if UIOMMUFD_LOCKDEP_ENABLED

namespace uiommufd::lockdep::selftest {
namespace {

constexpr std::optional<ReportKind> kNone = std::nullopt;
constexpr std::optional<ReportKind> kCircular = ReportKind::kCircularDependency;
constexpr std::optional<ReportKind> kRecursive = ReportKind::kRecursiveLocking;

constexpr Flavour kAllFlavours[] = {Flavour::kMutex, Flavour::kRwsemWrite, Flavour::kRwsemRead,
                                    Flavour::kMap,   Flavour::kMapShared,  Flavour::kMapRecursiveRead};

struct Case {
  std::string name;
  Flavour flavour;
  std::string script;
  std::optional<ReportKind> expected;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }

class ScenarioTest : public LockdepTest, public ::testing::WithParamInterface<Case> {};

TEST_P(ScenarioTest, Verdict) {
  const Case& c = GetParam();
  SCOPED_TRACE(std::string("script: ") + c.script + " (" + flavour_name(c.flavour) + ")");
  EXPECT_TRUE(verdict_is(run_scenario(c.flavour, c.script), c.expected));
}

// ---------------------------------------------------------------------------------------------------
// The kernel's scenario matrix (DO_TESTCASE_6R: every column fails except rlock, whose readers are
// recursive). AA uses two instances of one class, as the kernel's LOCK(X1); LOCK(X2) does; for maps the
// same instance is tried too (a real lock would hang).

struct Row {
  const char* name;
  const char* script;
};

constexpr Row kCycleRows[] = {
    {"ABBA", "A B, B A"},
    {"ABBCCA", "A B, B C, C A"},
    {"ABCABC", "A B, C A, B C"},
    {"ABBCCDDA", "A B, B C, C D, D A"},
    {"ABCDBDDA", "A B, C D, B D, D A"},
    {"ABCDBCDA", "A B, C D, B C, D A"},
};

std::vector<Case> matrix_cases() {
  std::vector<Case> out;
  for (Flavour f : kAllFlavours) {
    const bool recursive_read = f == Flavour::kMapRecursiveRead;
    const std::string suffix = std::string("_") + flavour_name(f);
    out.push_back({"AA" + suffix, f, "X1 X2", recursive_read ? kNone : kRecursive});
    if (is_map_flavour(f)) {
      out.push_back({"AA_same_instance" + suffix, f, "X X", recursive_read ? kNone : kRecursive});
    }
    for (const Row& row : kCycleRows) {
      out.push_back({row.name + suffix, f, row.script, recursive_read ? kNone : kCircular});
    }
    // Consistent orders never report, whatever the kind.
    out.push_back({"ABBC" + suffix, f, "A B, B C", kNone});
    out.push_back({"ABCACB_nested" + suffix, f, "A B C, A C, B C", kNone});
    out.push_back({"ABAB_repeat" + suffix, f, "A B, A B, A B", kNone});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Matrix, ScenarioTest, ::testing::ValuesIn(matrix_cases()), case_name);

// ---------------------------------------------------------------------------------------------------
// Every permutation of the events of one scenario gives the same verdict (GENERATE_PERMUTATIONS_2_EVENTS
// / _3_EVENTS): the graph, not the order the edges arrived in, decides.

std::vector<Case> permutation_cases() {
  struct Set {
    const char* name;
    std::vector<std::string> events;
    bool cyclic;
  };
  const Set sets[] = {
      {"ABBA", {"A B", "B A"}, true},
      {"ABBCCA", {"A B", "B C", "C A"}, true},
      {"ABBCAC", {"A B", "B C", "A C"}, false},  // a diamond, no cycle
  };
  std::vector<Case> out;
  for (const Set& s : sets) {
    for (Flavour f : kAllFlavours) {
      const bool recursive_read = f == Flavour::kMapRecursiveRead;
      for (const Permutation& p : permutations(s.events)) {
        out.push_back({std::string(s.name) + "_" + flavour_name(f) + "_" + p.label, f, p.script,
                       s.cyclic && !recursive_read ? kCircular : kNone});
      }
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Permutations, ScenarioTest, ::testing::ValuesIn(permutation_cases()), case_name);

// ---------------------------------------------------------------------------------------------------
// Read locks. The kernel's rlock is our recursive reader (map "r"), its rsem reader our non-recursive
// reader ("s": ReadGuard / MapSharedGuard); spin/mutex are exclusive ("w" or unadorned).
//
// check_deadlock(): a held lock of the same class is a deadlock unless the new acquisition is a
// recursive read and the held one is any read.
// check_noncircular(): an edge X -> Y records whether X was held shared (S) or exclusive (E) and whether Y
// was taken recursive-read (R) or not (N); a cycle deadlocks only if no -(*R)-> Y -(S*)-> pair occurs
// along it.

std::vector<Case> read_cases() {
  return {
      // "recursive read-lock": rlock_AA1 / rlock_AA1B succeed, rsem_AA1 / rsem_AA1B fail.
      {"rlock_AA1", Flavour::kMap, "rX rX", kNone},
      {"rlock_AA1B", Flavour::kMap, "rX1 rX2", kNone},
      {"rsem_AA1_map", Flavour::kMap, "sX sX", kRecursive},
      {"rsem_AA1B_map", Flavour::kMap, "sX1 sX2", kRecursive},
      {"rsem_AA1B", Flavour::kReal, "sX1 sX2", kRecursive},
      // "mixed read-write-lock" / "mixed write-read-lock": all fail.
      {"rlock_AA2", Flavour::kMap, "rX1 wX2", kRecursive},
      {"rsem_AA2", Flavour::kReal, "sX1 wX2", kRecursive},
      {"rlock_AA3", Flavour::kMap, "wX1 rX2", kRecursive},
      {"rsem_AA3", Flavour::kReal, "wX1 sX2", kRecursive},
      // Only the new acquisition's recursiveness matters: held S then new R is fine, held R then new S
      // is not.
      {"read_then_recursive_read", Flavour::kMap, "sX rX", kNone},
      {"read_then_recursive_read_2inst", Flavour::kMap, "sX1 rX2", kNone},
      {"recursive_read_then_read", Flavour::kMap, "rX sX", kRecursive},
      {"recursive_read_then_read_2inst", Flavour::kMap, "rX1 sX2", kRecursive},
      {"recursive_read_x3", Flavour::kMap, "rX rX rX", kNone},
      // "mixed read-lock/lock-write ABBA": X -(SN)-> Y -(EN)-> X is strong.
      {"rlock_ABBA1", Flavour::kMap, "rX Y, Y wX", kCircular},
      {"rwsem_ABBA1", Flavour::kReal, "sX Y, Y wX", kCircular},
      // "mixed read-lock/lock-read ABBA": X -(SN)-> Y -(ER)-> X has -(ER)-> X -(SN)->: not a deadlock
      // for a recursive reader; a non-recursive reader (rwsem) can queue behind a writer, so it is.
      {"rlock_ABBA2", Flavour::kMap, "rX Y, Y rX", kNone},
      {"rlock_ABBA2_reversed", Flavour::kMap, "Y rX, rX Y", kNone},
      {"rwsem_ABBA2", Flavour::kReal, "sX Y, Y sX", kCircular},
      {"rwsem_ABBA2_map", Flavour::kMap, "sX Y, Y sX", kCircular},
      // "mixed write-lock/lock-write ABBA".
      {"rlock_ABBA3", Flavour::kMap, "wX Y, Y wX", kCircular},
      {"rwsem_ABBA3", Flavour::kReal, "wX Y, Y wX", kCircular},
      // "chain cached mixed R-L/L-W ABBA": the chain Y,X cached from Y then rX must not hide Y then wX.
      {"rlock_chaincache_ABBA1", Flavour::kMap, "rX Y, Y rX, Y wX", kCircular},
      // Two recursive readers nested the other way round from a writer: Y -(ER)-> X -(SR)-> Y.
      {"rlock_ABBA_RR_W", Flavour::kMap, "rX rY, wY rX", kNone},
      // Both directions taken under a read of the outer lock and write of the inner: strong.
      {"rlock_ABBA_SN_EN", Flavour::kMap, "rX wY, wY wX", kCircular},
  };
}

INSTANTIATE_TEST_SUITE_P(ReadLocks, ScenarioTest, ::testing::ValuesIn(read_cases()), case_name);

// Boqun Feng's recursive-read cycles (lockdep/selftest: "Add more recursive read related test cases"),
// each in all six orders, as the kernel runs them (DO_TESTCASE_6x1RRB fails, 6x1RR succeeds).
std::vector<Case> boqun_cases() {
  struct Set {
    const char* name;
    std::vector<std::string> events;
    std::optional<ReportKind> expected;
  };
  const Set sets[] = {
      // X -(ER)-> Y -(ER)-> Z -(ER)-> X: deadlock even though every reader is recursive.
      {"W1R2_W2R3_W3R1", {"wX rY", "wY rZ", "wZ rX"}, kCircular},
      // X -(EN)-> Y -(SR)-> Z -(ER)-> X: deadlock.
      {"W1W2_R2R3_W3R1", {"wX wY", "rY rZ", "wZ rX"}, kCircular},
      // X -(EN)-> Y -(SR)-> Z -(SN)-> X: the -(SR)-> Z -(SN)-> pair breaks it.
      {"W1W2_R2R3_R3W1", {"wX wY", "rY rZ", "rZ wX"}, kNone},
      // X -(ER)-> Y -(SR)-> Z -(EN)-> X: the -(ER)-> Y -(SR)-> pair breaks it.
      {"W1R2_R2R3_W3W1", {"wX rY", "rY rZ", "wZ wX"}, kNone},
  };
  std::vector<Case> out;
  for (const Set& s : sets) {
    for (const Permutation& p : permutations(s.events)) {
      out.push_back({std::string(s.name) + "_" + p.label, Flavour::kMap, p.script, s.expected});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(RecursiveReadCycles, ScenarioTest, ::testing::ValuesIn(boqun_cases()), case_name);

// ---------------------------------------------------------------------------------------------------
// Trylock: a trylock cannot deadlock, so it is neither checked nor a target of new edges; but once held it
// is a source of edges, and check_prevs_add() walks past it to the lock below.

std::vector<Case> trylock_cases() {
  std::vector<Case> out;
  for (Flavour f : {Flavour::kMutex, Flavour::kRwsemWrite, Flavour::kMap}) {
    const std::string s = std::string("_") + flavour_name(f);
    out.push_back({"trylock_ABBA" + s, f, "A tB, B tA", kNone});
    out.push_back({"trylock_AA" + s, f, "X1 tX2", kNone});
    out.push_back({"trylock_held_is_edge_source" + s, f, "tA B, B A", kCircular});
    out.push_back({"trylock_walked_past" + s, f, "A tB C, C A", kCircular});
    out.push_back({"trylock_then_normal_cycle" + s, f, "A tB, B A", kNone});
    // The chain key covers the whole held stack, not just the last pair: (D, tB) acquiring C must still
    // add D -> C although (A, tB) acquiring C was validated before.
    out.push_back({"trylock_chain_whole_stack" + s, f, "A tB C, D tB C, C D", kCircular});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Trylock, ScenarioTest, ::testing::ValuesIn(trylock_cases()), case_name);

// ---------------------------------------------------------------------------------------------------
// The chain cache.

std::vector<Case> chain_cache_cases() {
  std::vector<Case> out;
  for (Flavour f : {Flavour::kMutex, Flavour::kMap, Flavour::kMapShared}) {
    const std::string s = std::string("_") + flavour_name(f);
    // A -> B cached, then B -> C and C -> A elsewhere: the cycle is caught when it closes, and repeating
    // the cached chain afterwards adds nothing.
    out.push_back({"cached_AB_then_BC_CA" + s, f, "A B, A B, B C, A B, C A, A B", kCircular});
    // A longer held stack whose prefix is cached.
    out.push_back({"cached_prefix" + s, f, "A B, A B C, A B C, C A", kCircular});
    // A sequence reported once is reported once, not on every repetition.
    out.push_back({"repeat_offender_once" + s, f, "A B, B A, B A, B A", kCircular});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(ChainCache, ScenarioTest, ::testing::ValuesIn(chain_cache_cases()), case_name);

// ---------------------------------------------------------------------------------------------------
// Hand-written cases.

class SelftestTest : public LockdepTest {};

TEST_F(SelftestTest, ChainCacheStopsGraphSearches) {
  LockdepMap a(key_for('A'), "A1");
  LockdepMap b(key_for('B'), "B1");
  const std::size_t before = stats().graph_searches;
  { MapGuard ga(a); MapGuard gb(b); }
  const Stats first = stats();
  EXPECT_GT(first.graph_searches, before) << "a new edge must be validated by a search";
  EXPECT_GE(first.dependencies, 1u);
  EXPECT_GE(first.chains, 1u);
  for (int i = 0; i < 1000; ++i) {
    MapGuard ga(a);
    MapGuard gb(b);
  }
  const Stats again = stats();
  EXPECT_EQ(again.graph_searches, first.graph_searches) << "a cached chain must not search the graph";
  EXPECT_EQ(again.dependencies, first.dependencies);
  EXPECT_EQ(again.chains, first.chains);
  EXPECT_EQ(report_count(), 0u);
}

TEST_F(SelftestTest, ResetForgetsDependenciesAndChains) {
  // B -> A cached and recorded, then forgotten: A -> B afterwards is a fresh, consistent graph. What a
  // reset keeps is the declared orders (the engine's), nothing this test added.
  reset_for_testing();
  const std::size_t declared = stats().dependencies;
  EXPECT_TRUE(verdict_is(run_scenario(Flavour::kMutex, "B A, B A"), kNone));
  EXPECT_GE(stats().dependencies, declared + 1);
  reset_for_testing();
  EXPECT_EQ(stats().dependencies, declared);
  EXPECT_EQ(stats().chains, 0u);
  EXPECT_EQ(report_count(), 0u);
  EXPECT_TRUE(verdict_is(run_scenario(Flavour::kMutex, "A B, A B"), kNone));
  // And the cache was really emptied: B then A now closes a cycle instead of hitting a stale chain.
  EXPECT_TRUE(verdict_is(run_scenario(Flavour::kMutex, "B A"), kCircular));
}

TEST_F(SelftestTest, ClassesAreSharedByKeyNotInstance) {
  // Edges are between classes: A1 -> B1 and B2 -> A2 is an ABBA.
  EXPECT_TRUE(verdict_is(run_scenario(Flavour::kMutex, "A1 B1, B2 A2"), kCircular));
}

// --- nest locks ---

TEST_F(SelftestTest, NestLockHeldAllowsSameClassInAnyOrder) {
  Mutex n(key_for('N'), "N");
  Mutex x1(key_for('X'), "X1");
  Mutex x2(key_for('X'), "X2");
  {
    MutexGuard gn(n);
    MutexGuard g1(x1, {.nest_lock = &n.dep_map()});
    MutexGuard g2(x2, {.nest_lock = &n.dep_map()});
  }
  {
    MutexGuard gn(n);
    MutexGuard g2(x2, {.nest_lock = &n.dep_map()});
    MutexGuard g1(x1, {.nest_lock = &n.dep_map()});
  }
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

// The instances folded into one entry under a nest lock are each held: an assertion on the second one, or
// on any of several SharedMutexes taken for writing that way, passes; one of the class not taken still fails.
TEST_F(SelftestTest, EveryInstanceFoldedUnderANestLockIsHeld) {
  Mutex n(key_for('N'), "N");
  Mutex x1(key_for('X'), "X1");
  Mutex x2(key_for('X'), "X2");
  Mutex x3(key_for('X'), "X3");
  {
    MutexGuard gn(n);
    MutexGuard g1(x1, {.nest_lock = &n.dep_map()});
    MutexGuard g2(x2, {.nest_lock = &n.dep_map()});
    x1.assert_held();
    x2.assert_held();
    EXPECT_EQ(report_count(), 0u) << describe(reports());
  }
  {
    MutexGuard gn(n);
    MutexGuard g1(x1, {.nest_lock = &n.dep_map()});
    x3.assert_held();  // one instance only: no folded entry, so x3 is not held
    auto r = reports();
    ASSERT_EQ(r.size(), 1u) << describe(r);
    EXPECT_EQ(r[0].kind, ReportKind::kAssertion);
  }
}

TEST_F(SelftestTest, NestLockCanBeAMap) {
  LockdepMap n(key_for('N'), "N");
  LockdepMap x1(key_for('X'), "X1");
  LockdepMap x2(key_for('X'), "X2");
  LockdepMap x3(key_for('X'), "X3");
  {
    MapGuard gn(n);
    MapGuard g3(x3, {.nest_lock = &n});
    MapGuard g1(x1, {.nest_lock = &n});
    MapGuard g2(x2, {.nest_lock = &n});
  }
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

TEST_F(SelftestTest, NestLockNotHeldIsReported) {
  Mutex n(key_for('N'), "N");
  Mutex x1(key_for('X'), "X1");
  { MutexGuard g1(x1, {.nest_lock = &n.dep_map()}); }
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kNestLockNotHeld);
}

TEST_F(SelftestTest, SameClassWithoutNestLockIsRecursiveLocking) {
  Mutex n(key_for('N'), "N");
  Mutex x1(key_for('X'), "X1");
  Mutex x2(key_for('X'), "X2");
  {
    MutexGuard gn(n);
    MutexGuard g1(x1);
    MutexGuard g2(x2);
  }
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kRecursiveLocking);
}

// --- subclasses ---

TEST_F(SelftestTest, SubclassSeparatesNestingLevels) {
  Mutex x1(key_for('X'), "X1");
  Mutex x2(key_for('X'), "X2");
  {
    MutexGuard g1(x1);
    MutexGuard g2(x2, {.subclass = 1});
  }
  {
    MutexGuard g1(x2);
    MutexGuard g2(x1, {.subclass = 1});
  }
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

TEST_F(SelftestTest, SubclassInversionIsCircular) {
  // X/0 -> X/1 and X/1 -> X/0 are two different classes taken in both orders.
  Mutex x1(key_for('X'), "X1");
  Mutex x2(key_for('X'), "X2");
  {
    MutexGuard g1(x1);
    MutexGuard g2(x2, {.subclass = 1});
  }
  {
    MutexGuard g2(x2, {.subclass = 1});
    MutexGuard g1(x1);
  }
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kCircularDependency);
}

TEST_F(SelftestTest, SameSubclassTwiceIsRecursiveLocking) {
  LockdepMap x1(key_for('X'), "X1");
  LockdepMap x2(key_for('X'), "X2");
  {
    MapGuard g1(x1, {.subclass = 2});
    MapGuard g2(x2, {.subclass = 2});
  }
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kRecursiveLocking);
}

TEST_F(SelftestTest, HighestSubclassIsUsable) {
  LockdepMap x1(key_for('X'), "X1");
  LockdepMap x2(key_for('X'), "X2");
  {
    MapGuard g1(x1);
    MapGuard g2(x2, {.subclass = static_cast<unsigned>(kMaxSubclasses - 1)});
  }
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

// --- classes per construction site ---

std::unique_ptr<Mutex> make_site_mutex() { return std::make_unique<Mutex>("selftest.site_mutex"); }

TEST_F(SelftestTest, OneConstructionSiteIsOneClass) {
  auto m1 = make_site_mutex();
  auto m2 = make_site_mutex();
  EXPECT_STREQ(m1->name(), "selftest.site_mutex");
  {
    MutexGuard g1(*m1);
    MutexGuard g2(*m2);
  }
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kRecursiveLocking);
}

TEST_F(SelftestTest, DifferentConstructionSitesAreDifferentClasses) {
  Mutex m1("selftest.site_one");
  Mutex m2("selftest.site_two");
  {
    MutexGuard g1(m1);
    MutexGuard g2(m2);
  }
  EXPECT_EQ(report_count(), 0u) << describe(reports());
  {
    MutexGuard g2(m2);
    MutexGuard g1(m1);
  }
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kCircularDependency);
}

TEST_F(SelftestTest, UnnamedSiteIsNamedFileAndLine) {
  Mutex m;
  EXPECT_NE(std::string(m.name()).find("lockdep_selftest_test.cc:"), std::string::npos) << m.name();
  LockdepMap map;
  EXPECT_NE(std::string(map.name()).find("lockdep_selftest_test.cc:"), std::string::npos) << map.name();
}

TEST_F(SelftestTest, KeyedInstanceNameIsTheInstanceName) {
  Mutex m(key_for('K'), "kay.instance");
  EXPECT_STREQ(m.name(), "kay.instance");
  LockdepMap unnamed(key_for('K'));
  EXPECT_STREQ(unnamed.name(), "K");
}

// --- might_lock ---

TEST_F(SelftestTest, MightLockAddsTheDependencyWithoutTakingTheLock) {
  Mutex a(key_for('A'), "A1");
  Mutex b(key_for('B'), "B1");
  {
    MutexGuard ga(a);
    b.might_lock();
    EXPECT_FALSE(b.dep_map().held());
    EXPECT_TRUE(a.dep_map().held());
  }
  EXPECT_EQ(report_count(), 0u);
  {
    MutexGuard gb(b);
    MutexGuard ga(a);
  }
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kCircularDependency);
}

// --- unlock and free misuse ---

TEST_F(SelftestTest, ReleaseOfUnheldLockIsBadUnlock) {
  LockdepMap m(key_for('U'), "U1");
  detail::release(m);
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kBadUnlock);
}

TEST_F(SelftestTest, DoubleUnlockIsBadUnlock) {
  LockdepMap m(key_for('U'), "U1");
  ASSERT_TRUE(detail::acquire(m, detail::Read::kExclusive, false, {}));
  detail::release(m);
  EXPECT_EQ(report_count(), 0u);
  detail::release(m);
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kBadUnlock);
  EXPECT_FALSE(m.held());
}

TEST_F(SelftestTest, OutOfOrderReleaseIsFine) {
  LockdepMap a(key_for('A'), "A1");
  LockdepMap b(key_for('B'), "B1");
  ASSERT_TRUE(detail::acquire(a, detail::Read::kExclusive, false, {}));
  ASSERT_TRUE(detail::acquire(b, detail::Read::kExclusive, false, {}));
  detail::release(a);  // not the innermost
  EXPECT_FALSE(a.held());
  EXPECT_TRUE(b.held());
  detail::release(b);
  EXPECT_FALSE(b.held());
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

TEST_F(SelftestTest, DestroyingAHeldLockIsReported) {
  // In its own thread, so a dangling held entry cannot outlive the test.
  std::thread t([] {
    auto* m = new LockdepMap(key_for('F'), "freed.map");
    ASSERT_TRUE(detail::acquire(*m, detail::Read::kExclusive, false, {}));
    delete m;
  });
  t.join();
  auto r = reports();
  ASSERT_GE(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kHeldLockFreed) << describe(r);
  EXPECT_EQ(r.size(), 1u) << describe(r);
}

TEST_F(SelftestTest, DestroyingAnUnheldLockIsSilent) {
  {
    LockdepMap m(key_for('F'), "F1");
    MapGuard g(m);
  }
  {
    Mutex mu(key_for('F'), "F2");
    MutexGuard g(mu);
  }
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

// --- assertions and held() ---

TEST_F(SelftestTest, AssertHeld) {
  LockdepMap m(key_for('H'), "H1");
  {
    MapGuard g(m);
    EXPECT_TRUE(m.held());
    m.assert_held();
    EXPECT_EQ(report_count(), 0u) << describe(reports());
    m.assert_not_held();
    auto r = reports();
    ASSERT_EQ(r.size(), 1u) << describe(r);
    EXPECT_EQ(r[0].kind, ReportKind::kAssertion);
  }
  clear_reports();
  EXPECT_FALSE(m.held());
  m.assert_not_held();
  EXPECT_EQ(report_count(), 0u) << describe(reports());
  m.assert_held();
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kAssertion);
}

TEST_F(SelftestTest, AssertSharedHeld) {
  LockdepMap m(key_for('H'), "H1");
  {
    MapSharedGuard g(m);
    m.assert_shared_held();
  }
  {
    MapGuard g(m);
    m.assert_shared_held();  // "at least shared": an exclusive hold satisfies it
  }
  {
    MapRecursiveSharedGuard g(m);
    m.assert_shared_held();
  }
  EXPECT_EQ(report_count(), 0u) << describe(reports());
  m.assert_shared_held();
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kAssertion);
}

TEST_F(SelftestTest, MutexAssertions) {
  Mutex mu(key_for('H'), "H1");
  {
    MutexGuard g(mu);
    mu.assert_held();
  }
  mu.assert_not_held();
  EXPECT_EQ(report_count(), 0u) << describe(reports());
  mu.assert_held();
  EXPECT_EQ(report_count(), 1u) << describe(reports());
}

TEST_F(SelftestTest, SharedMutexAssertions) {
  SharedMutex mu(key_for('H'), "H1");
  {
    ReadGuard g(mu);
    mu.assert_shared_held();
  }
  {
    WriteGuard g(mu);
    mu.assert_held();
    mu.assert_shared_held();
  }
  mu.assert_not_held();
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

// assert_held() promises the thread-safety analysis an exclusive hold, so a reader fails it.
TEST_F(SelftestTest, AssertHeldRejectsASharedHold) {
  SharedMutex mu(key_for('H'), "H1");
  {
    ReadGuard g(mu);
    mu.assert_held();
  }
  auto r = reports();
  ASSERT_EQ(r.size(), 1u) << describe(r);
  EXPECT_EQ(r[0].kind, ReportKind::kAssertion);
  EXPECT_NE(r[0].text.find("held shared, not exclusively"), std::string::npos) << r[0].text;
}

TEST_F(SelftestTest, TryLockSharedAdopted) {
  SharedMutex mu(key_for('H'), "H1");
  if (mu.try_lock_shared()) {
    ReadGuard g(mu, std::adopt_lock);
    EXPECT_TRUE(mu.dep_map().held());
  } else {
    ADD_FAILURE() << "try_lock_shared of a free lock failed";
  }
  EXPECT_FALSE(mu.dep_map().held());
  if (mu.try_lock()) {
    WriteGuard g(mu, std::adopt_lock);
    EXPECT_TRUE(mu.dep_map().held());
  } else {
    ADD_FAILURE() << "try_lock of a free lock failed";
  }
  EXPECT_FALSE(mu.dep_map().held());
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

// --- modes ---

TEST_F(SelftestTest, OffModeRecordsNothing) {
  set_mode(Mode::kOff);
  EXPECT_EQ(mode(), Mode::kOff);
  LockdepMap a(key_for('A'), "A1");
  LockdepMap b(key_for('B'), "B1");
  {
    MapGuard ga(a);
    EXPECT_FALSE(a.held());
    a.assert_not_held();  // silent while off
    a.assert_held();
  }
  EXPECT_TRUE(run_scenario(Flavour::kMutex, "A B, B A, X1 X2").reports.empty());
  detail::release(a);  // even a bad unlock is silent
  EXPECT_EQ(report_count(), 0u) << describe(reports());
  set_mode(Mode::kReport);
  // Nothing was recorded while off: B -> A is the first edge now.
  EXPECT_TRUE(verdict_is(run_scenario(Flavour::kMutex, "B A"), kNone));
}

TEST_F(SelftestTest, ScopedModeRestores) {
  {
    ScopedMode off(Mode::kOff);
    EXPECT_EQ(mode(), Mode::kOff);
    EXPECT_TRUE(run_scenario(Flavour::kMap, "A B, B A").reports.empty());
  }
  EXPECT_EQ(mode(), Mode::kReport);
  EXPECT_TRUE(verdict_is(run_scenario(Flavour::kMap, "A B, B A"), kCircular));
}

TEST_F(SelftestTest, LockTakenWhileOffIsNotTracked) {
  LockdepMap a(key_for('A'), "A1");
  set_mode(Mode::kOff);
  {
    MapGuard g(a);
    set_mode(Mode::kReport);
    EXPECT_FALSE(a.held());
  }  // release of an untracked acquisition: no bad unlock
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

TEST_F(SelftestTest, LockReleasedWhileOffIsForgotten) {
  LockdepMap a(key_for('A'), "A1");
  {
    MapGuard g(a);
    EXPECT_TRUE(a.held());
    set_mode(Mode::kOff);
  }
  set_mode(Mode::kReport);
  EXPECT_FALSE(a.held());
  { MapGuard g(a); }
  EXPECT_EQ(report_count(), 0u) << describe(reports());
}

// --- limits ---

TEST_F(SelftestTest, MaxLockDepth) {
  // kMaxLockDepth distinct classes (letters x 2 subclasses) may be held at once; one more turns the
  // validator off with a kLimitReached report. In its own thread, so whatever the held stack looks like
  // after validation went off cannot leak into later tests.
  std::thread t([] {
    std::vector<std::unique_ptr<LockdepMap>> maps;
    std::vector<std::unique_ptr<MapGuard>> guards;
    for (std::size_t i = 0; i <= kMaxLockDepth; ++i) {
      maps.push_back(std::make_unique<LockdepMap>(key_for(static_cast<char>('A' + i / 2)), "deep"));
    }
    auto take = [&](std::size_t i) {
      guards.push_back(
          std::make_unique<MapGuard>(*maps[i], AcquireOptions{.subclass = static_cast<unsigned>(i % 2)}));
    };
    for (std::size_t i = 0; i < kMaxLockDepth; ++i) take(i);
    EXPECT_EQ(report_count(), 0u) << describe(reports());
    take(kMaxLockDepth);
    auto r = reports();
    ASSERT_EQ(r.size(), 1u) << describe(r);
    EXPECT_EQ(r[0].kind, ReportKind::kLimitReached);
    EXPECT_FALSE(detail::validating());
    while (!guards.empty()) guards.pop_back();
    EXPECT_EQ(report_count(), 1u) << describe(reports());
  });
  t.join();
  // Validation stays off until reset_for_testing() turns it back on.
  EXPECT_TRUE(run_scenario(Flavour::kMap, "A B, B A").reports.empty());
  reset_for_testing();
  EXPECT_TRUE(detail::validating());
  EXPECT_TRUE(verdict_is(run_scenario(Flavour::kMap, "A B, B A"), kCircular));
}

TEST(SelftestHelpers, ScriptParser) {
  std::string error;
  auto events = parse_script("A B, rX2 tY", &error);
  ASSERT_TRUE(events) << error;
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[1][0].access, Access::kRecursiveShared);
  EXPECT_EQ((*events)[1][0].cls, 'X');
  EXPECT_EQ((*events)[1][0].instance, 2);
  EXPECT_EQ((*events)[1][1].access, Access::kTrylock);
  EXPECT_FALSE(parse_script("A, , B", &error));
  EXPECT_FALSE(parse_script("a", &error));
  EXPECT_EQ(permutations({"1", "2", "3"}).size(), 6u);
  EXPECT_EQ(permutations({"1", "2", "3"})[3].label, "231");
}

TEST_F(SelftestTest, RunnerRefusesARealSelfDeadlock) {
  Outcome o = run_scenario(Flavour::kMutex, "A A");
  EXPECT_FALSE(o.ok);
  EXPECT_NE(o.error.find("refused"), std::string::npos) << o.error;
}

}  // namespace
}  // namespace uiommufd::lockdep::selftest

#else  // !UIOMMUFD_LOCKDEP_ENABLED

TEST(LockdepSelftest, CompiledOut) { GTEST_SKIP() << "lock validator compiled out"; }

#endif
