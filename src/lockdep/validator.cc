#include "validator.h"

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <pthread.h>
#include <unistd.h>

#include "uiommufd/base/fork.h"

namespace uiommufd::lockdep {

namespace {

constinit std::atomic<int> g_mode{static_cast<int>(Mode::kReport)};
// Set when a limit was hit: validation stays off until reset_for_testing().
constinit std::atomic<bool> g_disabled_by_limit{false};
constinit std::atomic<bool> g_print_reports{true};

void update_validating() {
  detail::g_validating.store(g_mode.load() != static_cast<int>(Mode::kOff) && !g_disabled_by_limit.load(),
                             std::memory_order_relaxed);
}

// The environment chooses the initial mode, before main() and before most static constructors run.
const bool g_mode_from_environment = [] {
  if (const char* env = std::getenv("UIOMMUFD_LOCKDEP")) {
    if (!std::strcmp(env, "off")) set_mode(Mode::kOff);
    else if (!std::strcmp(env, "abort")) set_mode(Mode::kAbort);
    else if (!std::strcmp(env, "report")) set_mode(Mode::kReport);
    else std::fprintf(stderr, "uiommufd: UIOMMUFD_LOCKDEP=%s not understood (off|report|abort); using report\n", env);
  }
  return true;
}();

std::mutex g_reports_mu;
std::vector<Report>& stored_reports() {
  static std::vector<Report> reports;
  return reports;
}

// initial-exec: one fs-relative access, never a __tls_get_addr call, on the hot path. The library is
// linked into executables or preloaded at start-up, both of which have static TLS room for it.
__attribute__((tls_model("initial-exec"))) thread_local constinit HeldLockStack t_held{};

// The validator's fork handlers (base/fork.h, level kValidator, the innermost): its own plain mutexes are
// held across fork, so that a child never inherits one held by a thread that was inside the validator.
// They are taken after every other level, whose acquisitions the validator checks under them. In the
// child the forking thread's copy releases them; the validator's state belongs to no thread.
void lock_validator_before_fork() {
  site_keys_mutex().lock();
  Validator::get().lock_for_fork();
  g_reports_mu.lock();
}
void unlock_validator_after_fork() {
  g_reports_mu.unlock();
  Validator::get().unlock_after_fork();
  site_keys_mutex().unlock();
}

// During static initialisation: the observer of base's locks (an acquisition before it is installed is
// simply not recorded, like one made while validation is off), and the fork handlers.
[[maybe_unused]] const bool g_started = [] {
  install_base_lock_observer();
  install_dot_at_exit();
  set_fork_handlers(ForkLevel::kValidator,
                    {lock_validator_before_fork, unlock_validator_after_fork, unlock_validator_after_fork});
  return true;
}();

const char* read_name(detail::Read read) {
  switch (read) {
    case detail::Read::kExclusive: return "write";
    case detail::Read::kShared: return "read";
    case detail::Read::kRecursiveShared: return "recursive read";
  }
  return "?";
}

// Marks the thread as inside the validator for a scope. The report paths run with the graph lock held
// (limit_reached() and out_of_memory() take it; limit_reached_locked() is for callers that hold it).
class BusyScope {
 public:
  explicit BusyScope(HeldLockStack& t) : t_(t) { t_.busy = true; }
  ~BusyScope() { t_.busy = false; }

 private:
  HeldLockStack& t_;
};

}  // namespace

namespace detail {
constinit std::atomic<bool> g_validating{true};
}

constinit ChainCache g_chains;

HeldLockStack& current_held_locks() { return t_held; }

ValidatorQuietScope::ValidatorQuietScope() : saved_(t_held.busy) { t_held.busy = true; }
ValidatorQuietScope::~ValidatorQuietScope() { t_held.busy = saved_; }

DotGraph lock_graph_snapshot() { return Validator::get().dot_graph(); }

void set_mode(Mode mode) {
  g_mode.store(static_cast<int>(mode));
  update_validating();
}

Mode mode() { return static_cast<Mode>(g_mode.load()); }

std::vector<Report> reports() {
  std::lock_guard lock(g_reports_mu);
  return stored_reports();
}

std::size_t report_count() {
  std::lock_guard lock(g_reports_mu);
  return stored_reports().size();
}

void clear_reports() {
  std::lock_guard lock(g_reports_mu);
  stored_reports().clear();
}

void set_print_reports(bool print) { g_print_reports.store(print); }

Stats stats() { return Validator::get().stats(); }

void reset_for_testing() { Validator::get().reset(); }

void declare_order(std::initializer_list<LockClassKey*> keys) { Validator::get().declare_order(keys); }

std::string current_thread_label() {
  char name[32] = "?";
  pthread_getname_np(pthread_self(), name, sizeof name);
  return std::string(name) + "/" + std::to_string(gettid());
}

// ---- hot paths ----

namespace detail {

// Out-of-line parts of acquire() and release(); named (not file-local) so that traces can tell them apart
// from the caller's frames.

// Everything but the plain cached acquisition: subclasses, nest locks, trylocks, first use of a class,
// a full stack, and re-entry from the validator itself.
__attribute__((noinline)) bool acquire_slow(const LockdepMap& map, Read read, bool trylock,
                                            const AcquireOptions& options, const void* ip) {
  HeldLockStack& t = t_held;
  if (t.busy) return false;
  if (options.subclass >= kMaxSubclasses) {
    Validator::get().limit_reached("kMaxSubclasses", kMaxSubclasses);
    return false;
  }
  std::uint32_t cls = ClassRegistry::cached_id(map.key(), options.subclass);
  if (cls == 0 && (cls = Validator::get().class_id(map.key(), options.subclass)) == 0) return false;

  unsigned depth = t.depth;
  // Under a nest lock, further instances of the class on top of the stack fold into its entry: the
  // nest lock orders them, so neither their order nor their number matters.
  if (options.nest_lock && depth && t.locks[depth - 1].class_id == cls) {
    HeldLock& top = t.locks[depth - 1];
    top.references = top.references ? top.references + 1 : 2;
    return true;
  }
  if (depth >= kMaxLockDepth) {
    Validator::get().limit_reached("kMaxLockDepth", kMaxLockDepth);
    return false;
  }
  std::uint64_t key = ChainCache::extend(depth ? t.locks[depth - 1].chain_key : ChainCache::kInitialKey, cls,
                                         read, trylock);
  t.locks[depth] = {&map, options.nest_lock, ip, key, cls, 0, read, trylock};
  t.depth = depth + 1;

  if (options.nest_lock) {
    bool nest_held = false;
    for (unsigned i = 0; i < depth; ++i) nest_held |= t.locks[i].instance == options.nest_lock;
    if (!nest_held) Validator::get().report_nest_lock_not_held(t, depth);
  }
  // A trylock cannot wait, so it can close no cycle: it is held, and the locks taken under it depend on
  // it, but it adds no dependency of its own.
  if (trylock || g_chains.contains(key)) return true;
  Validator::get().validate(t, depth, ip);
  return true;
}

__attribute__((noinline)) void validate_new_chain(unsigned index, const void* ip) {
  Validator::get().validate(t_held, index, ip);
}

bool acquire(const LockdepMap& map, Read read, bool trylock, const AcquireOptions& options) {
  return acquire_slow(map, read, trylock, options, __builtin_return_address(0));
}

bool acquire(const LockdepMap& map, Read read) {
  const void* ip = __builtin_return_address(0);
  HeldLockStack& t = t_held;
  unsigned depth = t.depth;
  std::uint32_t cls = ClassRegistry::cached_id(map.key(), 0);
  // Kept free of calls so that it needs no stack frame: a known class and room on the stack.
  if ((cls == 0) | (depth >= kMaxLockDepth) | t.busy) [[unlikely]]
    return acquire_slow(map, read, false, {}, ip);
  std::uint64_t key =
      ChainCache::extend(depth ? t.locks[depth - 1].chain_key : ChainCache::kInitialKey, cls, read, false);
  t.locks[depth] = {&map, nullptr, ip, key, cls, 0, read, false};
  t.depth = depth + 1;
  if (!g_chains.contains(key)) [[unlikely]]
    validate_new_chain(depth, ip);
  return true;
}

__attribute__((noinline)) void release_slow(const LockdepMap& map, const void* ip) {
  HeldLockStack& t = t_held;
  if (t.busy) return;
  unsigned depth = t.depth;
  // Not on top: search down, then re-key the entries above it.
  for (unsigned i = depth; i-- > 0;) {
    HeldLock& h = t.locks[i];
    // An entry that folds several instances under a nest lock stands for any instance of its key.
    bool match = h.instance == &map || (h.references && &h.instance->key() == &map.key());
    if (!match) continue;
    if (h.references > 1) {
      --h.references;
      return;
    }
    for (unsigned j = i; j + 1 < depth; ++j) {
      t.locks[j] = t.locks[j + 1];
      std::uint64_t below = j ? t.locks[j - 1].chain_key : ChainCache::kInitialKey;
      t.locks[j].chain_key = ChainCache::extend(below, t.locks[j].class_id, t.locks[j].read, t.locks[j].trylock);
    }
    t.depth = depth - 1;
    return;
  }
  if (validating()) Validator::get().report_bad_unlock(t, map, ip);
}

void release(const LockdepMap& map) {
  HeldLockStack& t = t_held;
  unsigned depth = t.depth;
  if (depth && t.locks[depth - 1].instance == &map && t.locks[depth - 1].references == 0 && !t.busy) [[likely]] {
    t.depth = depth - 1;
    return;
  }
  release_slow(map, __builtin_return_address(0));
}

}  // namespace detail

// ---- slow paths ----

Validator::Validator() = default;

Validator& Validator::get() {
  // Never destroyed: locks in other static objects may be used after this file's destructors run.
  static Validator* v = new Validator();
  return *v;
}

std::uint32_t Validator::class_id(LockClassKey& key, unsigned subclass) {
  std::uint32_t id;
  try {
    std::lock_guard lock(mu_);
    id = classes_.register_class(key, subclass);
  } catch (const std::bad_alloc&) {
    out_of_memory();
    return 0;
  }
  if (id == 0) limit_reached("kMaxLockClasses", kMaxLockClasses);
  return id;
}

void Validator::validate(HeldLockStack& t, unsigned index, const void* ip) {
  // Called from lock acquisition, which cannot fail: running out of memory turns the validator off, as
  // running out of any of its fixed tables does (the kernel's lockdep does the same).
  try {
    check_new_chain(t, index, ip);
  } catch (const std::bad_alloc&) {
    out_of_memory();
  }
}

void Validator::out_of_memory() {
  if (g_disabled_by_limit.exchange(true)) return;
  update_validating();
  static constexpr char kText[] =
      "\nBUG: lock validator out of memory!\nturning off the locking correctness validator.\n";
  ValidatorQuietScope quiet;
  std::lock_guard lock(mu_);
  try {
    ReportMark mark;
    mark.summary = "lock validator out of memory; validation turned off";
    emit(ReportKind::kLimitReached, kText, std::move(mark));
  } catch (const std::bad_alloc&) {
    std::fwrite(kText, 1, sizeof(kText) - 1, stderr);  // printed at least, if not stored
  }
}

void Validator::check_new_chain(HeldLockStack& t, unsigned index, const void* ip) {
  BusyScope busy(t);
  std::lock_guard lock(mu_);
  const HeldLock& next = t.locks[index];
  // Another thread may have validated the same chain while this one waited for the lock.
  if (g_chains.contains(next.chain_key)) return;
  if (check_recursion(t, index) == 0) {
    StackTraceRef trace{};
    bool have_trace = false;
    for (unsigned i = index; i-- > 0;) {
      const HeldLock& prev = t.locks[i];
      if (!have_trace) {
        // One trace serves every dependency this acquisition adds.
        std::vector<void*> frames = capture_stack_trace(ip);
        if (!traces_.save(frames, &trace)) {
          limit_reached_locked("kMaxStackTraceEntries", kMaxStackTraceEntries);
          return;
        }
        have_trace = true;
      }
      check_prev(t, prev, next, &trace);
      // The nearest lock taken by a blocking acquisition already depends on everything below it, so
      // the new lock depends on those through it. Trylocked entries have no such edges: look past them.
      if (!prev.trylock) break;
    }
  }
  if (!g_chains.insert(next.chain_key)) {
    limit_reached_locked("kMaxChains", kMaxChains);
  }
}

int Validator::check_recursion(const HeldLockStack& t, unsigned index) {
  const HeldLock& next = t.locks[index];
  bool under_nest_lock = false;
  for (unsigned i = 0; i < index; ++i) {
    const HeldLock& prev = t.locks[i];
    if (next.nest_lock && prev.instance == next.nest_lock) under_nest_lock = true;
    if (prev.class_id != next.class_id) continue;
    // A recursive reader never waits for another reader.
    if (next.read == detail::Read::kRecursiveShared && prev.read != detail::Read::kExclusive) continue;
    if (under_nest_lock) return 2;
    report_recursive(t, prev, next);
    return 1;
  }
  return 0;
}

void Validator::check_prev(const HeldLockStack& t, const HeldLock& prev, const HeldLock& next,
                           StackTraceRef* trace) {
  std::vector<std::uint32_t> path;
  if (graph_.find_conflict(next.class_id, next.read, prev.class_id, prev.read, &path)) {
    if (reported_.insert({prev.class_id, next.class_id}).second) report_circular(t, prev, next, path);
    return;
  }
  std::uint8_t kinds = dependency_kind(prev.read, next.read);
  if (Dependency* d = graph_.find(prev.class_id, next.class_id)) {
    d->kinds |= kinds;
    return;
  }
  if (!graph_.add(prev.class_id, next.class_id, kinds, *trace)) {
    limit_reached_locked("kMaxDependencies", kMaxDependencies);
  }
}

// ---- reports ----

std::string Validator::describe(const HeldLock& h) const {
  char addr[32];
  std::snprintf(addr, sizeof addr, "%p", static_cast<const void*>(h.instance));
  std::string out = addr;
  // The instance's own name, when it has one besides its class's: which of several IOAS locks, say.
  const std::string& cls = classes_[h.class_id].name;
  if (cls.compare(0, cls.find('/'), h.instance->name()) != 0) out += std::string(" ") + h.instance->name();
  out += " (" + cls + "){" + read_name(h.read) + (h.trylock ? ", trylock" : "") + "}";
  if (h.references > 1) out += " x" + std::to_string(h.references);
  out += ", at: " + symbolize(h.acquire_ip);
  return out;
}

std::string Validator::describe_map(const LockdepMap& map) const {
  char addr[32];
  std::snprintf(addr, sizeof addr, "%p", static_cast<const void*>(&map));
  return std::string(addr) + " (" + map.name() + ")";
}

void Validator::append_held_locks(std::string& out, const HeldLockStack& t, unsigned depth) const {
  std::string who = current_thread_label();
  if (depth == 0) {
    out += "no locks held by " + who + ".\n";
    return;
  }
  out += std::to_string(depth) + (depth == 1 ? " lock" : " locks") + " held by " + who + ":\n";
  for (unsigned i = 0; i < depth; ++i) out += " #" + std::to_string(i) + ": " + describe(t.locks[i]) + "\n";
}

void Validator::append_current_stack(std::string& out, const void* ip) {
  out += "\nstack backtrace:\n";
  std::vector<void*> frames = capture_stack_trace(ip);
  format_stack_trace(out, frames.data(), frames.size());
}

namespace {

std::string banner(const char* title) {
  std::string rule(std::strlen(title), '=');
  std::string dashes(std::strlen(title), '-');
  return "\n" + rule + "\n" + title + "\n" + dashes + "\n";
}

std::string lock_op(detail::Read read, const std::string& name) {
  return std::string(read == detail::Read::kExclusive ? "lock(" : "rlock(") + name + ");";
}
}  // namespace

void Validator::report_circular(const HeldLockStack& t, const HeldLock& prev, const HeldLock& next,
                                const std::vector<std::uint32_t>& path) {
  const std::string& prev_name = classes_[prev.class_id].name;
  const std::string& next_name = classes_[next.class_id].name;
  std::string out = banner("WARNING: possible circular locking dependency detected");
  std::string who = current_thread_label();
  out += who + " is trying to acquire lock:\n" + describe(next) + "\n\n";
  out += "but task is already holding lock:\n" + describe(prev) + "\n\n";
  out += "which lock already depends on the new lock.\n\n\n";
  out += "the existing dependency chain (in reverse order) is:\n";
  // The path runs next -> ... -> prev; each class is shown with the trace of the edge into it.
  for (std::size_t k = path.size(); k > 0; --k) {
    const Dependency& d = graph_[path[k - 1]];
    out += "\n-> #" + std::to_string(k) + " (" + classes_[d.to].name + "):\n";
    traces_.format(out, d.trace);
  }
  out += "\n-> #0 (" + next_name + "):\n";
  {
    std::vector<void*> frames = capture_stack_trace(next.acquire_ip);
    format_stack_trace(out, frames.data(), frames.size());
  }
  out += "\nother info that might help us debug this:\n\n";
  // The class that the other CPU holds while it waits for prev: the last hop before prev.
  std::uint32_t parent = path.empty() ? next.class_id : graph_[path.back()].from;
  detail::Read parent_read = detail::Read::kExclusive;
  detail::Read prev_again = detail::Read::kExclusive;
  if (!path.empty()) {
    std::uint8_t kinds = graph_[path.back()].kinds;
    if (!(kinds & (kDepER | kDepEN))) parent_read = detail::Read::kShared;
    if (!(kinds & (kDepSN | kDepEN))) prev_again = detail::Read::kRecursiveShared;
  }
  if (path.size() > 1) {
    out += "Chain exists of:\n  " + prev_name + " --> " + next_name;
    for (std::uint32_t e : path) out += " --> " + classes_[graph_[e].to].name;
    out += "\n\n";
  }
  const std::string& parent_name = classes_[parent].name;
  auto row = [&](const std::string& cpu0, const std::string& cpu1) {
    std::string line = "  " + cpu0;
    if (!cpu1.empty()) line = std::string(31, ' ') + cpu1;
    out += line + "\n";
  };
  out += " Possible unsafe locking scenario:\n\n";
  out += "       CPU0                    CPU1\n";
  out += "       ----                    ----\n";
  row(lock_op(prev.read, prev_name), "");
  row("", lock_op(parent_read, parent_name));
  row("", lock_op(prev_again, prev_name));
  row(lock_op(next.read, next_name), "");
  out += "\n *** DEADLOCK ***\n\n";
  append_held_locks(out, t, static_cast<unsigned>(&next - t.locks));
  append_current_stack(out, next.acquire_ip);
  // The cycle: prev -> next is the acquisition being refused, then the recorded path back to prev.
  ReportMark mark;
  mark.chain = true;
  mark.summary = "possible circular locking dependency: " + prev_name + " -> " + next_name;
  mark.classes = {prev.class_id, next.class_id};
  mark.hops.push_back({prev.class_id, next.class_id});
  for (std::uint32_t e : path) {
    mark.summary += " -> " + classes_[graph_[e].to].name;
    mark.classes.push_back(graph_[e].to);
    mark.hops.push_back({graph_[e].from, graph_[e].to});
  }
  emit(ReportKind::kCircularDependency, std::move(out), std::move(mark));
}

void Validator::report_recursive(const HeldLockStack& t, const HeldLock& prev, const HeldLock& next) {
  if (!reported_.insert({next.class_id, next.class_id}).second) return;
  const std::string& name = classes_[next.class_id].name;
  std::string out = banner("WARNING: possible recursive locking detected");
  out += current_thread_label() + " is trying to acquire lock:\n" + describe(next) + "\n\n";
  out += "but task is already holding lock:\n" + describe(prev) + "\n\n";
  out += "other info that might help us debug this:\n";
  out += " Possible unsafe locking scenario:\n\n";
  out += "       CPU0\n       ----\n";
  out += "  " + lock_op(prev.read, name) + "\n";
  out += "  " + lock_op(next.read, name) + "\n";
  out += "\n *** DEADLOCK ***\n\n";
  out += " May be due to missing lock nesting notation\n\n";
  append_held_locks(out, t, static_cast<unsigned>(&next - t.locks));
  append_current_stack(out, next.acquire_ip);
  ReportMark mark;
  mark.chain = true;
  mark.summary = "possible recursive locking: " + name + " -> " + name;
  mark.classes = {next.class_id};
  mark.hops.push_back({prev.class_id, next.class_id});
  emit(ReportKind::kRecursiveLocking, std::move(out), std::move(mark));
}

void Validator::report_bad_unlock(const HeldLockStack& t, const LockdepMap& map, const void* ip) {
  BusyScope busy(const_cast<HeldLockStack&>(t));
  std::lock_guard lock(mu_);
  std::string out = banner("WARNING: bad unlock balance detected!");
  out += current_thread_label() + " is trying to release lock " + describe_map(map) + " at:\n";
  out += symbolize(ip) + "\nbut there are no more locks to release!\n\n";
  out += "other info that might help us debug this:\n";
  append_held_locks(out, t, t.depth);
  append_current_stack(out, ip);
  ReportMark mark;
  mark.summary = std::string("bad unlock balance: ") + map.name();
  if (std::uint32_t c = class_of(map)) mark.classes = {c};
  emit(ReportKind::kBadUnlock, std::move(out), std::move(mark));
}

void Validator::report_held_lock_freed(const HeldLockStack& t, const HeldLock* held, const LockdepMap& map,
                                       bool other_thread) {
  BusyScope busy(const_cast<HeldLockStack&>(t));
  std::lock_guard lock(mu_);
  std::string out = banner("WARNING: held lock freed!");
  if (other_thread) {
    out += current_thread_label() + " is destroying lock " + describe_map(map) +
           ", which another thread holds!\n\n";
  } else {
    out += current_thread_label() + " is destroying lock " + describe_map(map) + ", which it still holds:\n";
    out += describe(*held) + "\n\n";
  }
  append_held_locks(out, t, t.depth);
  append_current_stack(out, nullptr);
  ReportMark mark;
  mark.summary = std::string("held lock freed: ") + map.name();
  if (std::uint32_t c = held ? held->class_id : class_of(map)) mark.classes = {c};
  emit(ReportKind::kHeldLockFreed, std::move(out), std::move(mark));
}

void Validator::report_nest_lock_not_held(const HeldLockStack& t, unsigned index) {
  BusyScope busy(const_cast<HeldLockStack&>(t));
  std::lock_guard lock(mu_);
  const HeldLock& h = t.locks[index];
  std::string out = banner("WARNING: Nested lock was not taken");
  out += current_thread_label() + " is trying to lock:\n" + describe(h) + "\n\n";
  out += "but this task is not holding:\n" + describe_map(*h.nest_lock) + "\n\n";
  append_held_locks(out, t, index);
  append_current_stack(out, h.acquire_ip);
  ReportMark mark;
  mark.summary =
      "nested lock was not taken: " + classes_[h.class_id].name + " without " + h.nest_lock->name();
  mark.classes = {h.class_id};
  if (std::uint32_t c = class_of(*h.nest_lock)) mark.classes.push_back(c);
  emit(ReportKind::kNestLockNotHeld, std::move(out), std::move(mark));
}

void Validator::report_assertion(const HeldLockStack& t, const LockdepMap& map, const char* what) {
  BusyScope busy(const_cast<HeldLockStack&>(t));
  std::lock_guard lock(mu_);
  std::string out = banner("WARNING: lock assertion failed");
  out += current_thread_label() + ": " + describe_map(map) + " " + what + "\n\n";
  append_held_locks(out, t, t.depth);
  append_current_stack(out, nullptr);
  ReportMark mark;
  mark.summary = std::string("lock assertion failed: ") + map.name() + " " + what;
  if (std::uint32_t c = class_of(map)) mark.classes = {c};
  emit(ReportKind::kAssertion, std::move(out), std::move(mark));
}

void Validator::limit_reached(const char* limit, std::size_t value) {
  if (g_disabled_by_limit.load()) return;
  ValidatorQuietScope quiet;
  std::lock_guard lock(mu_);
  limit_reached_locked(limit, value);
}

void Validator::limit_reached_locked(const char* limit, std::size_t value) {
  if (g_disabled_by_limit.exchange(true)) return;
  update_validating();
  std::string out = "\nBUG: lock validator limit " + std::string(limit) + " (" + std::to_string(value) +
                    ") reached!\nturning off the locking correctness validator.\n";
  if (std::strcmp(limit, "kMaxSubclasses") == 0)
    out += "(a lock was acquired with a subclass outside 0.." + std::to_string(kMaxSubclasses - 1) + ")\n";
  ReportMark mark;
  mark.summary = "lock validator limit " + std::string(limit) + " (" + std::to_string(value) +
                 ") reached; validation turned off, so the graph is incomplete";
  emit(ReportKind::kLimitReached, std::move(out), std::move(mark));
}

std::uint32_t Validator::class_of(const LockdepMap& map) { return ClassRegistry::cached_id(map.key(), 0); }

void Validator::emit(ReportKind kind, std::string text, ReportMark mark) {
  if (g_print_reports.load() || mode() == Mode::kAbort) {
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
  }
  mark.number = ++reports_made_;
  mark.kind = kind;
  if (marks_.size() < kMaxReportMarks) marks_.push_back(std::move(mark));
  // Before aborting: the picture of the report that stopped the process is the one wanted.
  write_dot_after_report_locked();
  if (mode() == Mode::kAbort) std::abort();
  std::lock_guard lock(g_reports_mu);
  stored_reports().push_back({kind, std::move(text)});
}

DotGraph Validator::dot_graph() {
  ValidatorQuietScope quiet;
  std::lock_guard lock(mu_);
  return dot_graph_locked();
}

DotGraph Validator::dot_graph_locked() const {
  DotGraph g;
  g.mode = mode();
  g.program = program_invocation_short_name;
  g.pid = static_cast<long>(getpid());
  g.classes.resize(classes_.size() + 1);
  for (std::uint32_t id = 1; id <= classes_.size(); ++id) {
    const LockClass& c = classes_[id];
    g.classes[id] = {c.name, c.key->kinds()};
  }
  g.edges.reserve(graph_.size());
  for (std::size_t i = 0; i < graph_.size(); ++i) {
    const Dependency& d = graph_[static_cast<std::uint32_t>(i)];
    g.edges.push_back({d.from, d.to, d.kinds});
  }
  g.marks = marks_;
  g.reports = reports_made_;
  return g;
}

void Validator::write_dot_after_report_locked() const {
  const char* pattern = dot_pattern_from_environment();
  if (!pattern) return;
  ValidatorQuietScope quiet;
  const std::string path = expand_dot_pattern(pattern, static_cast<long>(getpid()));
  Status status;
  try {
    status = write_text_file_atomically(path, format_dot(dot_graph_locked()));
  } catch (const std::bad_alloc&) {
    status = Status::error(ENOMEM);
  }
  if (!status.ok()) report_dot_write_failure(path, status);
}

Stats Validator::stats() {
  std::lock_guard lock(mu_);
  Stats s;
  s.classes = classes_.size();
  s.dependencies = graph_.size();
  s.chains = g_chains.size();
  s.graph_searches = graph_.searches();
  s.stack_trace_entries = traces_.entries();
  return s;
}

void Validator::declare_order(std::vector<LockClassKey*> keys) {
  std::lock_guard lock(mu_);
  add_declared_locked(keys);
  declared_.push_back(std::move(keys));
}

void Validator::add_declared_locked(const std::vector<LockClassKey*>& keys) {
  // The declaration's own stack stands for "where the dependency was first seen" in reports.
  StackTraceRef trace{};
  if (!traces_.save(capture_stack_trace(nullptr), &trace)) return;
  for (std::size_t i = 1; i < keys.size(); ++i) {
    const std::uint32_t from = classes_.register_class(*keys[i - 1], 0);
    const std::uint32_t to = classes_.register_class(*keys[i], 0);
    if (from == 0 || to == 0) return;
    if (Dependency* d = graph_.find(from, to)) {
      d->kinds |= kDepEN;
      continue;
    }
    if (!graph_.add(from, to, kDepEN, trace)) return;
  }
}

void Validator::reset() {
  {
    std::lock_guard lock(mu_);
    graph_.clear();
    traces_.clear();
    reported_.clear();
    marks_.clear();
    reports_made_ = 0;
    g_chains.clear();
    for (const auto& keys : declared_) add_declared_locked(keys);
  }
  clear_reports();
  g_disabled_by_limit.store(false);
  update_validating();
}

}  // namespace uiommufd::lockdep
