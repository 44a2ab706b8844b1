// sweep_checked: sweep_fail_nth() (base/fault_sweep.h) with the checks every ioctl sweep of the uapi tests
// makes, for tests only.
//
// Each run's op returns the ioctl's errno (0 on success). A run in which the armed site fired must return
// that site's own errno (FaultSite::error()), unless `expected` says otherwise for it (a site the kernel
// turns into another errno, or an optional one that the op survives: 0); the run that completes with no
// failure left to inject must return `final_errno`. `check(run)` then looks at the state the run left.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"

namespace uiommufd::uapi::testing {

struct SweepRun {
  unsigned n = 0;
  bool fired = false;  // the armed site fired in this run
  std::string site;    // its name; empty when none fired
  // How many runs so far, this one included, failed this same site: the run failed the ordinal-th check
  // of it that the op makes (runs are deterministic, so run n repeats the checks of runs 1..n-1).
  unsigned ordinal = 0;
  int err = 0;  // the op's errno, 0 on success
};

// The errno a site's injected failure returns; 0 for an unknown name.
inline int fault_site_errno(const std::string& name) {
  for (const FaultSite* s : fault_sites())
    if (name == s->name()) return s->error();
  return 0;
}

inline SweepResult sweep_checked(const std::function<void()>& setup, const std::function<int()>& op,
                                 const std::function<void(const SweepRun&)>& check, int final_errno = 0,
                                 const std::function<int(const SweepRun&)>& expected = {},
                                 unsigned cap = 1000) {
  std::map<std::string, unsigned> seen;
  bool fired = false;
  int err = 0;
  auto run_op = [&] {
    const std::uint64_t before = injected_on_this_thread();
    err = op();
    fired = injected_on_this_thread() != before;
    return err ? Status::error(err) : Status();
  };
  return sweep_fail_nth(
      setup, run_op,
      [&](unsigned n, Status) {
        SweepRun run;
        run.n = n;
        run.fired = fired;
        run.err = err;
        if (fired) {
          const char* site = last_injected_fault();
          run.site = site ? site : "?";
          run.ordinal = ++seen[run.site];
          const int want = expected ? expected(run) : fault_site_errno(run.site);
          EXPECT_EQ(err, want) << "run " << n << ", site " << run.site << " #" << run.ordinal << ": got "
                               << std::strerror(err) << ", want " << std::strerror(want);
        } else {
          EXPECT_EQ(err, final_errno)
              << "run " << n << " (no failure left to inject): got " << std::strerror(err);
        }
        if (std::getenv("SWEEP_TRACE"))
          std::fprintf(stderr, "  run %u: %s #%u -> %s\n", n, run.fired ? run.site.c_str() : "(none)",
                       run.ordinal, err ? std::strerror(err) : "ok");
        check(run);
      },
      cap);
}

// Whether `sites` holds `name`.
inline bool has_site(const SweepResult& r, const std::string& name) {
  for (const std::string& s : r.fired_sites)
    if (s == name) return true;
  return false;
}

}  // namespace uiommufd::uapi::testing
