// Test helpers shared by the pages tests: a memfd owned by the test, and pin / unpin / counters that take
// pages.mutex around the Locked calls.
#pragma once

#include <cstdint>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd::pages_testing {

// A memfd of `npages` pages, closed at the end of the test.
class Memfd {
 public:
  explicit Memfd(std::uint64_t npages) : fd_(::memfd_create("pages_test", MFD_CLOEXEC)) {
    EXPECT_GE(fd_, 0);
    EXPECT_EQ(::ftruncate(fd_, static_cast<off_t>(npages * kPageSize)), 0);
  }
  ~Memfd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Memfd(const Memfd&) = delete;
  Memfd& operator=(const Memfd&) = delete;
  int fd() const { return fd_; }
  void close() {
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

inline Status pin(Pages& pages, std::uint64_t first, std::uint64_t last) {
  lockdep::MutexGuard g(pages.mutex());
  return pages.pin_locked(first, last);
}
inline void unpin(Pages& pages, std::uint64_t first, std::uint64_t last) {
  lockdep::MutexGuard g(pages.mutex());
  pages.unpin_locked(first, last);
}
inline std::uint64_t npinned(Pages& pages) {
  lockdep::MutexGuard g(pages.mutex());
  return pages.npinned_locked();
}
inline std::uint32_t users(Pages& pages, std::uint64_t index) {
  lockdep::MutexGuard g(pages.mutex());
  return pages.pin_users_locked(index);
}

}  // namespace uiommufd::pages_testing
