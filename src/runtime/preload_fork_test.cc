// fork() while other threads are inside the engine: worker threads map, check, pin through a test access,
// read through it and unmap on one iommufd while the main thread forks again and again. Each child gets
// a copy of the engine at rest (runtime/engine_gate.h) and works on it through the inherited fd: maps,
// checks, pins and unmaps there, and unmaps whatever the workers had mapped at the instant of the fork.
// Bounded in time; it checks that every call succeeds, that no child hangs or fails, and (run with the
// validator in abort mode, and under ThreadSanitizer in the tsan preset) that nothing is reported.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>

#include "preload_test_util.h"

namespace preload_test {
namespace {

using namespace uiommufd::uapi;

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kRegion = 16 * kPage;  // one worker's (or a child's) part of the buffer
constexpr unsigned kWorkers = 3;
constexpr unsigned kRegions = kWorkers + 1;  // the last one is the children's
constexpr std::uint64_t kIovaBase = MOCK_APERTURE_START;
constexpr auto kForkFor = std::chrono::seconds(2);
constexpr unsigned kMinForks = 8;
// How long a child may take before it counts as hung: a liveness bound, far above any child's run.
constexpr auto kChildHung = std::chrono::seconds(60);

long check_map(int fd, std::uint32_t hwpt, std::uint64_t iova, const void* va, std::uint64_t len) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_MD_CHECK_MAP, hwpt);
  c.check_map = {iova, len, reinterpret_cast<std::uintptr_t>(va)};
  return ioctl_rc(fd, IOMMU_TEST_CMD, &c);
}

long check_refs(int fd, const void* va, std::uint64_t len, std::uint32_t refs) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_MD_CHECK_REFS, 0);
  c.check_refs = {len, reinterpret_cast<std::uintptr_t>(va), refs};
  return ioctl_rc(fd, IOMMU_TEST_CMD, &c);
}

// Pins `len` bytes at `iova` through a new test access on `ioas`, reads them back through it and closes
// the access (which unpins). 0, or the step that failed (1-4).
int pin_and_read(int fd, std::uint32_t ioas, std::uint64_t iova, const std::uint8_t* va, std::uint64_t len) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_CREATE_ACCESS, ioas);
  c.create_access.flags = MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES;
  if (ioctl_rc(fd, IOMMU_TEST_CMD, &c) != 0) return 1;
  const int access_fd = static_cast<int>(c.create_access.out_access_fd);
  c = test_cmd(IOMMU_TEST_OP_ACCESS_PAGES, static_cast<std::uint32_t>(access_fd));
  c.access_pages = {0, 0, iova, len, reinterpret_cast<std::uintptr_t>(va)};
  int failed = ioctl_rc(fd, IOMMU_TEST_CMD, &c) != 0 ? 2 : 0;
  std::uint8_t out[64];
  c = test_cmd(IOMMU_TEST_OP_ACCESS_RW, static_cast<std::uint32_t>(access_fd));
  c.access_rw = {iova + 8, sizeof out, reinterpret_cast<std::uintptr_t>(out), 0};
  if (!failed && (ioctl_rc(fd, IOMMU_TEST_CMD, &c) != 0 || std::memcmp(out, va + 8, sizeof out) != 0))
    failed = 3;
  if (close(access_fd) != 0 && !failed) failed = 4;
  return failed;
}

// One round on `region` at `iova`: map, check the mock domain's entries, pin and read, unmap. 0, or the
// step that failed (10 and up).
int round_trip(int fd, std::uint32_t ioas, std::uint32_t hwpt, const std::uint8_t* region,
               std::uint64_t iova) {
  if (map_fixed(fd, ioas, region, kRegion, iova) != 0) return 10;
  if (check_map(fd, hwpt, iova, region, kRegion) != 0) return 11;
  if (const int f = pin_and_read(fd, ioas, iova + kPage, region + kPage, 2 * kPage); f != 0) return 11 + f;
  if (unmap(fd, ioas, iova, kRegion) != static_cast<long long>(kRegion)) return 16;
  return 0;
}

// The child: the inherited fd names its own copy of the context. It does a round of its own, then unmaps
// everything the workers had mapped when it was forked; nothing stays pinned.
int child_main(int fd, std::uint32_t ioas, std::uint32_t hwpt, const std::uint8_t* buf) {
  const std::uint64_t mine = kIovaBase + kWorkers * kRegion;
  if (const int f = round_trip(fd, ioas, hwpt, buf + kWorkers * kRegion, mine); f != 0) return f;
  if (unmap(fd, ioas, 0, ~0ull) < 0) return 20;
  if (check_refs(fd, buf, kRegions * kRegion, 0) != 0) return 21;
  if (close(fd) != 0) return 22;
  return 0;
}

// Waits for `pid`; its exit status, or a description of how it did not exit.
std::string wait_child(pid_t pid) {
  const auto give_up = std::chrono::steady_clock::now() + kChildHung;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
      return "signal " + std::to_string(WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    if (r < 0) return std::string("waitpid: ") + std::strerror(errno);
    if (std::chrono::steady_clock::now() > give_up) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return "hung (killed)";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

TEST(PreloadForkStress, ChildrenForkedWhileThreadsCallIoctlsUseTheInheritedFd) {
  const int fd = open("/dev/iommu", O_RDWR);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const long ioas = ioas_alloc(fd);
  ASSERT_GT(ioas, 0);
  iommu_test_cmd md = test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, static_cast<std::uint32_t>(ioas));
  ASSERT_EQ(ioctl_rc(fd, IOMMU_TEST_CMD, &md), 0);
  const std::uint32_t hwpt = md.mock_domain.out_hwpt_id;

  void* mem = mmap(nullptr, kRegions * kRegion, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  auto* buf = static_cast<std::uint8_t*>(mem);
  for (std::uint64_t i = 0; i < kRegions * kRegion; ++i)
    buf[i] = static_cast<std::uint8_t>(i * 13 + i / 4099);

  std::atomic<bool> stop{false};
  std::atomic<unsigned> worker_failures{0};
  std::atomic<int> first_failure{0};
  std::vector<unsigned> rounds(kWorkers, 0);
  std::vector<std::thread> workers;
  for (unsigned w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      // At least one round each, however soon the forks end.
      do {
        const int f = round_trip(fd, static_cast<std::uint32_t>(ioas), hwpt, buf + w * kRegion,
                                 kIovaBase + w * kRegion);
        if (f != 0) {
          worker_failures.fetch_add(1);
          int none = 0;
          first_failure.compare_exchange_strong(none, f);
        }
        ++rounds[w];
      } while (!stop.load(std::memory_order_relaxed));
    });
  }

  std::vector<std::string> bad_children;
  unsigned forks = 0;
  const auto until = std::chrono::steady_clock::now() + kForkFor;
  while (forks < kMinForks || std::chrono::steady_clock::now() < until) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) _exit(child_main(fd, static_cast<std::uint32_t>(ioas), hwpt, buf));
    ++forks;
    if (std::string how = wait_child(pid); how != "exit 0") bad_children.push_back(how);
  }
  stop = true;
  for (std::thread& t : workers) t.join();
  unsigned total_rounds = 0;
  for (unsigned r : rounds) total_rounds += r;
  std::printf("%u forks, %u worker rounds\n", forks, total_rounds);

  EXPECT_TRUE(bad_children.empty()) << bad_children.size() << " of " << forks
                                    << " children failed, first: " << bad_children.front();
  EXPECT_EQ(worker_failures.load(), 0u) << "first failed step " << first_failure.load();
  for (unsigned w = 0; w < kWorkers; ++w) EXPECT_GE(rounds[w], 1u);
  // The children's work was on their copies: the parent has nothing mapped or pinned.
  EXPECT_EQ(unmap(fd, static_cast<std::uint32_t>(ioas), 0, ~0ull), 0);
  EXPECT_EQ(check_refs(fd, buf, kRegions * kRegion, 0), 0);
  EXPECT_EQ(close(fd), 0);
  munmap(mem, kRegions * kRegion);
}

}  // namespace
}  // namespace preload_test
