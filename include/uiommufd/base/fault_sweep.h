// sweep_fail_nth: the systematic fail-nth sweep of docs/fault-injection.md#sweep, in-process, for tests.
//
// For N = 1, 2, …, cap:
//   1. setup()                      — fresh state, disarmed; its own sites do not count;
//   2. fail_nth_set(N); st = op()   — op stops at its first failure and must unwind completely;
//   3. c = fail_nth_get(); fail_nth_set(0)
//   4. if c == 0, the N-th site fired: record last_injected_fault(), call after_each(N, st) with
//      injection disarmed (the caller checks invariants: no pins, no charges, no leaked objects,
//      usually also that st is an error), and continue with N + 1;
//      otherwise op reached fewer than N sites and ran to completion: final_status = st,
//      call after_each(N, st), and stop. The caller normally expects final_status.ok().
// If N = cap still fired, the sweep stops with hit_cap = true (a failure: an operation must hit far
// fewer sites than the cap, docs/fault-injection.md#site-budget) and final_status holds the cap-th run's
// status.
//
// Everything runs on the calling thread, whose counter must be disarmed on entry; it is disarmed on
// return. An op that swallows an injected failure (a fallback path) still counts as a firing run.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "uiommufd/base/status.h"

namespace uiommufd {

struct SweepResult {
  unsigned sites_failed = 0;              // number of N values whose injected failure fired
  std::vector<std::string> fired_sites;   // name of the site that fired, for N = 1..sites_failed
  bool hit_cap = false;                   // the cap-th run still fired
  Status final_status;                    // op's status on the last run
};

SweepResult sweep_fail_nth(const std::function<void()>& setup, const std::function<Status()>& op,
                           const std::function<void(unsigned n, Status status)>& after_each,
                           unsigned cap = 1000);

}  // namespace uiommufd
