// Test helper for the mm layer: an anonymous private mapping that tests can punch holes into and
// re-protect, unmapped on destruction (munmap ignores holes, so partial unmaps are fine).
#pragma once

#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "uiommufd/base/page.h"

namespace uiommufd::mm_testing {

// A range that nothing maps. Unmapping a fresh region does not give one: between the munmap and the use,
// another allocation (the sanitizer runtimes' in particular) may be placed in the freed space. The kernel
// never places a mapping this low without a fixed address, so the range stays a hole; is_hole() lets a test
// assert that before relying on it.
inline constexpr std::uint64_t kHoleUaddr = 0x100000;
inline constexpr std::size_t kHolePages = 64;

inline bool is_hole(std::uint64_t uaddr, std::size_t npages) {
  unsigned char vec = 0;
  for (std::size_t i = 0; i < npages; ++i) {
    // mincore fails with ENOMEM exactly when part of the range is not mapped.
    if (mincore(reinterpret_cast<void*>(uaddr + i * kPageSize), kPageSize, &vec) == 0) return false;
  }
  return true;
}

// Drops CAP_IPC_LOCK from this thread's effective set, so that the unprivileged accounting and mlock paths
// run for real where the tests run as root. For a forked child (it cannot be raised again). False if
// capget or capset failed.
inline bool drop_cap_ipc_lock() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
  return syscall(SYS_capset, &header, data) == 0;
}

class TestRegion {
 public:
  explicit TestRegion(std::size_t npages, int prot = PROT_READ | PROT_WRITE) : len_(npages * kPageSize) {
    void* p = mmap(nullptr, len_, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : static_cast<unsigned char*>(p);
  }
  ~TestRegion() {
    if (base_) munmap(base_, len_);
  }
  TestRegion(const TestRegion&) = delete;
  TestRegion& operator=(const TestRegion&) = delete;

  bool ok() const { return base_ != nullptr; }
  unsigned char* ptr(std::size_t offset = 0) const { return base_ + offset; }
  std::uint64_t uaddr(std::size_t offset = 0) const { return reinterpret_cast<std::uintptr_t>(base_ + offset); }
  std::uint64_t page_uaddr(std::size_t page) const { return uaddr(page * kPageSize); }
  std::size_t len() const { return len_; }

  bool unmap_page(std::size_t page) const { return munmap(ptr(page * kPageSize), kPageSize) == 0; }
  bool protect_page(std::size_t page, int prot) const { return mprotect(ptr(page * kPageSize), kPageSize, prot) == 0; }
  bool protect_all(int prot) const { return mprotect(base_, len_, prot) == 0; }

 private:
  std::size_t len_;
  unsigned char* base_;
};

}  // namespace uiommufd::mm_testing
