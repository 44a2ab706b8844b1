#include "uiommufd/base/fault_sweep.h"

#include "uiommufd/base/fault.h"

namespace uiommufd {

SweepResult sweep_fail_nth(const std::function<void()>& setup, const std::function<Status()>& op,
                           const std::function<void(unsigned n, Status status)>& after_each, unsigned cap) {
  SweepResult result;
  for (unsigned n = 1; n <= cap; ++n) {
    setup();
    fail_nth_set(n);
    Status st = op();
    uint32_t left = fail_nth_get();
    fail_nth_set(0);

    if (left != 0) {
      // Fewer than n sites on the way: the operation ran to completion.
      result.final_status = st;
      after_each(n, st);
      return result;
    }
    ++result.sites_failed;
    const char* site = last_injected_fault();
    result.fired_sites.emplace_back(site ? site : "?");
    if (n == cap) {
      result.hit_cap = true;
      result.final_status = st;
    }
    after_each(n, st);
  }
  return result;
}

}  // namespace uiommufd
