// What a stress test must find again at its end: the process-wide pins and accounting charges, and the lock
// validator's report count. Taken at the start; expect_back() checks each and prints any new validator
// report.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd {

struct StressBaseline {
  std::uint64_t pinned = Pages::total_pinned_pages();
  std::uint64_t user = account_locked_pages(AccountMode::kUser);
  std::uint64_t mm = account_locked_pages(AccountMode::kMm);
  std::uint64_t pinned_vm = account_pinned_vm();
  std::size_t reports = lockdep::report_count();

  void expect_back() const {
    EXPECT_EQ(Pages::total_pinned_pages(), pinned);
    EXPECT_EQ(account_locked_pages(AccountMode::kUser), user);
    EXPECT_EQ(account_locked_pages(AccountMode::kMm), mm);
    EXPECT_EQ(account_pinned_vm(), pinned_vm);
    const std::vector<lockdep::Report> all = lockdep::reports();
    for (std::size_t i = reports; i < all.size(); ++i) ADD_FAILURE() << "lockdep: " << all[i].text;
    EXPECT_EQ(lockdep::report_count(), reports) << "the lock validator reported the engine";
  }
};

}  // namespace uiommufd
