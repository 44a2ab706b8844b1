// Shared mode (docs/shared.md), run as `uiommufd run --shared -- preload_shared_test`: one iommufd shared by
// several processes as the kernel's open file is. A forked child's calls on the inherited fd act on the
// parent's context; an fd passed over a unix socket, or kept across exec, names the same context; the
// server hands out fds (a test access, a fault queue) during a call; a context's objects stay until the
// last fd anywhere closes; a client killed in the middle of its calls leaves the server serving the rest.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "preload_test_util.h"

namespace preload_test {
namespace {

using namespace uiommufd::uapi;

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kIova = MOCK_APERTURE_START;

// A page of this process's memory, filled with `seed`.
std::uint8_t* page(std::uint8_t seed) {
  void* p = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  std::memset(p, seed, kPage);
  return static_cast<std::uint8_t*>(p);
}

// Reads `len` bytes at `iova` of `ioas` through a new test access (an fd the server installs during the
// call and looks up in the next ones) into `out`. 0, or the step that failed.
int read_through_access(int fd, std::uint32_t ioas, std::uint64_t iova, void* out, std::uint64_t len) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_CREATE_ACCESS, ioas);
  if (ioctl_rc(fd, IOMMU_TEST_CMD, &c) != 0) return 1;
  const int access_fd = static_cast<int>(c.create_access.out_access_fd);
  if (fcntl(access_fd, F_GETFD) != FD_CLOEXEC) return 2;
  c = test_cmd(IOMMU_TEST_OP_ACCESS_RW, static_cast<std::uint32_t>(access_fd));
  c.access_rw = {iova, len, reinterpret_cast<std::uintptr_t>(out), 0};
  const int failed = ioctl_rc(fd, IOMMU_TEST_CMD, &c) != 0 ? 3 : 0;
  if (close(access_fd) != 0) return 4;
  return failed;
}

// Sends `fd` over `sock`.
bool send_fd(int sock, int fd) {
  char byte = 'f';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl;
  m.msg_controllen = sizeof ctl;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  return sendmsg(sock, &m, 0) == 1;
}

// Receives an fd from `sock`, through libc's recvmsg (interposed) or the raw system call (not seen by the
// preload). -1 on failure.
int recv_fd(int sock, bool raw) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl;
  m.msg_controllen = sizeof ctl;
  const long n = raw ? syscall(SYS_recvmsg, sock, &m, 0) : recvmsg(sock, &m, 0);
  if (n != 1) return -1;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

// --- fork ---

TEST(SharedFork, ChildActsOnTheParentsContext) {
  const int fd = open("/dev/iommu", O_RDWR);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(ioas_alloc(fd), 1);
  std::uint8_t* mem = page(0x5a);
  ASSERT_NE(mem, nullptr);
  const int rc = in_child([&] {
    std::uint8_t* own = page(0xc3);
    if (!own) return 1;
    if (ioas_alloc(fd) != 2) return 2;  // the parent's context: id 1 is taken
    if (map_fixed(fd, 1, own, kPage, kIova) != 0) return 3;
    return 0;
  });
  EXPECT_EQ(rc, 0);
  // The child's IOAS and area are in the parent's context.
  EXPECT_EQ(ioas_alloc(fd), 3);
  EXPECT_EQ(destroy(fd, 2), 0);
  EXPECT_EQ(unmap(fd, 1, kIova, kPage), static_cast<long long>(kPage));
  // And the parent's own mapping, read back through an access the server installs in this process.
  ASSERT_EQ(map_fixed(fd, 1, mem, kPage, kIova), 0);
  std::uint8_t out[64] = {};
  EXPECT_EQ(read_through_access(fd, 1, kIova + 16, out, sizeof out), 0);
  EXPECT_EQ(out[0], 0x5a);
  EXPECT_EQ(out[63], 0x5a);
  EXPECT_EQ(close(fd), 0);
  munmap(mem, kPage);
}

TEST(SharedFork, ChildCanOpenItsOwnContext) {
  const int fd = open("/dev/iommu", O_RDWR);
  ASSERT_EQ(ioas_alloc(fd), 1);
  const int rc = in_child([&] {
    const int own = open("/dev/iommu", O_RDWR);
    if (own < 0) return 1;
    if (ioas_alloc(own) != 1) return 2;
    return close(own) == 0 ? 0 : 3;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(ioas_alloc(fd), 2);
  close(fd);
}

// --- dup and close ---

TEST(SharedClose, DupKeepsTheContextAfterTheOriginalCloses) {
  const int fd = open("/dev/iommu", O_RDWR);
  ASSERT_EQ(ioas_alloc(fd), 1);
  const int copy = dup(fd);
  ASSERT_GE(copy, 0);
  EXPECT_EQ(close(fd), 0);
  EXPECT_EQ(ioas_alloc(copy), 2);
  EXPECT_EQ(close(copy), 0);
}

// A fault queue's fd holds one user of the queue: IOMMU_DESTROY of it is EBUSY until the last copy of the
// fd, in any process, has closed.
TEST(SharedClose, LastCloseAnywhereReleasesTheFile) {
  const int fd = open("/dev/iommu", O_RDWR);
  ASSERT_GE(fd, 0);
  iommu_fault_alloc fa{};
  fa.size = sizeof fa;
  ASSERT_EQ(ioctl_rc(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa), 0);
  const int qfd = static_cast<int>(fa.out_fault_fd);
  int go[2], done[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(done), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char c;
    if (read(go[0], &c, 1) != 1) _exit(1);
    if (close(qfd) != 0) _exit(2);
    if (write(done[1], "d", 1) != 1) _exit(3);
    pause();
    _exit(0);
  }
  EXPECT_EQ(close(qfd), 0);
  EXPECT_EQ(destroy(fd, fa.out_fault_id), -EBUSY);  // the child's copy is open
  ASSERT_EQ(write(go[1], "g", 1), 1);
  char c = 0;
  ASSERT_EQ(read(done[0], &c, 1), 1);
  EXPECT_EQ(destroy(fd, fa.out_fault_id), 0);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  for (int p : {go[0], go[1], done[0], done[1]}) close(p);
  close(fd);
}

// --- fd passing ---

void pass_context(bool raw_recv) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Another process opens a context, makes two IOASes and passes the fd on, then exits.
    const int own = open("/dev/iommu", O_RDWR | O_CLOEXEC);
    if (own < 0 || ioas_alloc(own) != 1 || ioas_alloc(own) != 2) _exit(1);
    _exit(send_fd(sv[1], own) ? 0 : 2);
  }
  const int got = recv_fd(sv[0], raw_recv);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_GE(got, 0);
  // The sender's context, alive through the fd it passed.
  EXPECT_EQ(ioas_alloc(got), 3);
  std::uint8_t* mem = page(0x77);
  ASSERT_EQ(map_fixed(got, 2, mem, kPage, kIova), 0);
  std::uint8_t out[8] = {};
  EXPECT_EQ(read_through_access(got, 2, kIova, out, sizeof out), 0);
  EXPECT_EQ(out[7], 0x77);
  EXPECT_EQ(unmap(got, 2, kIova, kPage), static_cast<long long>(kPage));
  EXPECT_EQ(close(got), 0);
  munmap(mem, kPage);
  close(sv[0]);
  close(sv[1]);
}

TEST(SharedPass, ScmRightsGivesTheSendersContext) { pass_context(/*raw_recv=*/false); }

// Received past the preload's recvmsg: recognised on its first iommufd ioctl.
TEST(SharedPass, FdReceivedUnseenIsRecognisedOnItsFirstIoctl) { pass_context(/*raw_recv=*/true); }

// --- exec ---

// The exec'd image (see main below): maps a page of its own at kIova in IOAS 1 of the inherited fd.
int exec_child(int fd) {
  std::uint8_t* own = page(0x42);
  if (!own) return 10;
  if (ioas_alloc(fd) != 2) return 11;
  if (map_fixed(fd, 1, own, kPage, kIova) != 0) return 12;
  return 0;
}

TEST(SharedExec, FdWithoutCloexecNamesTheContextAfterExec) {
  const int fd = open("/dev/iommu", O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ioas_alloc(fd), 1);
  const std::string arg = std::to_string(fd);
  const int rc = in_child([&] {
    setenv("SHARED_TEST_EXEC_FD", arg.c_str(), 1);
    execl("/proc/self/exe", "preload_shared_test", static_cast<char*>(nullptr));
    return 99;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(ioas_alloc(fd), 3);
  EXPECT_EQ(unmap(fd, 1, kIova, kPage), static_cast<long long>(kPage));
  close(fd);
}

TEST(SharedExec, CloexecFdIsGoneAfterExec) {
  const int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
  EXPECT_EQ(fcntl(fd, F_GETFD), FD_CLOEXEC);
  const std::string script = "test -e /proc/self/fd/" + std::to_string(fd);
  EXPECT_NE(in_child([&] {
              execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
              return 99;
            }),
            0);
  close(fd);
}

// --- robustness ---

// A client killed by SIGKILL while it calls in a loop (often in the middle of a call): the server goes on
// serving everyone else, and the objects the dead client made in a shared context stay usable.
TEST(SharedRobustness, ServerSurvivesAClientKilledMidCall) {
  const int fd = open("/dev/iommu", O_RDWR);
  ASSERT_EQ(ioas_alloc(fd), 1);
  for (int round = 0; round < 5; ++round) {
    int started[2];
    ASSERT_EQ(pipe(started), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::uint8_t* own = page(0x11);
      const int mine = open("/dev/iommu", O_RDWR);
      if (!own || mine < 0 || ioas_alloc(mine) != 1) _exit(1);
      const std::uint64_t iova = kIova + (static_cast<std::uint64_t>(round) + 1) * 16 * kPage;
      bool told = false;
      for (;;) {
        (void)map_fixed(fd, 1, own, kPage, iova);
        (void)map_fixed(mine, 1, own, kPage, kIova);
        if (!told) told = write(started[1], "s", 1) == 1;
        (void)unmap(mine, 1, kIova, kPage);
        (void)unmap(fd, 1, iova, kPage);
      }
    }
    char c = 0;
    ASSERT_EQ(read(started[0], &c, 1), 1);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    close(started[0]);
    close(started[1]);
    // The shared context serves on: whatever the child left mapped can be unmapped.
    const long long left = unmap(fd, 1, 0, UINT64_MAX);
    EXPECT_TRUE(left == 0 || left == static_cast<long long>(kPage)) << left;
    const int fresh = open("/dev/iommu", O_RDWR);
    EXPECT_EQ(ioas_alloc(fresh), 1);
    EXPECT_EQ(close(fresh), 0);
  }
  EXPECT_EQ(ioas_alloc(fd), 2);
  close(fd);
}

}  // namespace
}  // namespace preload_test

// The exec'd image of SharedExec: does its part before gtest starts, and leaves with its result.
namespace {
[[gnu::constructor]] void exec_child_main() {
  if (const char* fd = std::getenv("SHARED_TEST_EXEC_FD")) _exit(preload_test::exec_child(std::atoi(fd)));
}
}  // namespace
