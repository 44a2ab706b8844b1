// The control API when the validator is compiled out (UIOMMUFD_LOCKDEP=OFF): every lock is the plain
// lock, nothing is ever recorded, and these calls keep programs that use them building and running.
#include <atomic>

#include <unistd.h>

#include "dot_graph.h"

#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lockdep {

namespace {
std::atomic<int> g_mode{static_cast<int>(Mode::kOff)};
// UIOMMUFD_LOCKDEP_DOT still names a file, which then says that the validator is compiled out.
[[maybe_unused]] const bool g_dot_at_exit = [] {
  install_dot_at_exit();
  return true;
}();
}  // namespace

void set_mode(Mode m) { g_mode.store(static_cast<int>(m)); }
Mode mode() { return static_cast<Mode>(g_mode.load()); }
std::vector<Report> reports() { return {}; }
std::size_t report_count() { return 0; }
void clear_reports() {}
void set_print_reports(bool) {}
Stats stats() { return {}; }
void reset_for_testing() {}
void declare_order(std::initializer_list<LockClassKey*>) {}

DotGraph lock_graph_snapshot() {
  DotGraph g;
  g.compiled_out = true;
  g.mode = mode();
  g.pid = static_cast<long>(getpid());
  return g;
}

// No validator to keep out of.
ValidatorQuietScope::ValidatorQuietScope() : saved_(false) {}
ValidatorQuietScope::~ValidatorQuietScope() = default;

}  // namespace uiommufd::lockdep
