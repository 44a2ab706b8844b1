/* One iommufd shared by several processes, as the kernel's open file is (the selftest's fork_gone and
 * fork_present, iommufd.c, and an fd passed over a unix socket):
 *  - a forked child maps its memory through the inherited fd and exits; the parent sees the area, and
 *    pinning it now (a mock domain) is EFAULT: the memory's process is gone;
 *  - a child that is still alive: the parent's domain pins the child's memory and an access reads and
 *    writes it, the child seeing the parent's write;
 *  - a process given the fd with SCM_RIGHTS maps into the same IOAS, and the parent unmaps it.
 * Only the kernel and `uiommufd run --shared` give these answers; in-process mode gives each process a copy
 * of the context (docs/shared.md), so CTest runs this program under --shared only. */
#define _GNU_SOURCE /* before any system header, as abi.h needs it */
#include <sys/socket.h>
#include <sys/wait.h>

#include "abi.h"

#define BUF_SZ (4 * PAGE_SZ)

static int child_exit_status(pid_t child) {
  int status = -1;
  if (waitpid(child, &status, 0) != child) return 255;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 254;
}

static int send_fd(int sock, int fd) {
  char byte = 'f';
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  memset(&ctl, 0, sizeof(ctl));
  struct msghdr m = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
  struct cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(fd));
  return sendmsg(sock, &m, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock) {
  char byte = 0;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct msghdr m = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
  if (recvmsg(sock, &m, 0) != 1) return -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof(fd));
  return fd;
}

int main(void) {
  uint8_t* buf = (uint8_t*)alloc_buffer(BUF_SZ);
  int fd = open_iommufd();
  uint32_t ioas = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  int acc = -1;
  require("create_access", check_rc("create_access", create_access(fd, ioas, 0, &acc), OK));

  /* fork_gone: the child maps and exits. */
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    memset(buf, 0xc1, BUF_SZ);
    uint64_t iova = MOCK_APERTURE_START;
    _exit(ioas_map(fd, ioas, buf, BUF_SZ, &iova, 1) == 0 ? 0 : 1);
  }
  check_u64("gone_child", "exit", (uint64_t)child_exit_status(child), 0);
  uint8_t got[16] = {0};
  check_rc("gone_pin_by_domain", mock_domain(fd, ioas, NULL, NULL, NULL), ERR(EFAULT));
  uint64_t unmapped = 0;
  check_rc("gone_unmap", ioas_unmap(fd, ioas, MOCK_APERTURE_START, BUF_SZ, &unmapped), OK);
  check_u64("gone_unmap", "length", unmapped, BUF_SZ);

  /* fork_present: the child maps and stays until told to go. */
  int go[2], ready[2];
  require("pipes", pipe(go) == 0 && pipe(ready) == 0);
  fflush(stdout);
  child = fork();
  if (child == 0) {
    close(go[1]);
    close(ready[0]);
    memset(buf, 0xc2, BUF_SZ);
    uint64_t iova = MOCK_APERTURE_START;
    char ok = ioas_map(fd, ioas, buf, BUF_SZ, &iova, 1) == 0 ? 'y' : 'n';
    if (write(ready[1], &ok, 1) != 1) _exit(2);
    if (read(go[0], &ok, 1) != 1) _exit(3);
    _exit(buf[8] == 0x5a ? 0 : 4); /* the parent's write through the access reached our memory */
  }
  close(go[0]);
  close(ready[1]);
  char ok = 0;
  check_u64("present_child_mapped", "ok", read(ready[0], &ok, 1) == 1 && ok == 'y', 1);
  uint32_t hwpt = 0;
  check_rc("present_pin_by_domain", mock_domain(fd, ioas, NULL, &hwpt, NULL), OK);
  check_rc("present_read", access_rw(fd, acc, 0, MOCK_APERTURE_START, got, sizeof(got)), OK);
  check_u64("present_read", "byte", got[0], 0xc2);
  uint8_t mark = 0x5a;
  check_rc("present_write", access_rw(fd, acc, MOCK_ACCESS_RW_WRITE, MOCK_APERTURE_START + 8, &mark, 1), OK);
  check_rc("present_read_slow", access_rw(fd, acc, MOCK_ACCESS_RW_SLOW_PATH, MOCK_APERTURE_START + 8, got, 1),
           OK);
  check_u64("present_read_slow", "byte", got[0], 0x5a);
  require("go", write(go[1], "g", 1) == 1);
  check_u64("present_child", "exit", (uint64_t)child_exit_status(child), 0);
  check_rc("present_unmap", ioas_unmap(fd, ioas, MOCK_APERTURE_START, BUF_SZ, &unmapped), OK);

  /* The fd passed to a process that did not inherit it (closed in the child, received over a socket). */
  int sv[2];
  require("socketpair", socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  fflush(stdout);
  child = fork();
  if (child == 0) {
    close(sv[0]);
    close(fd);
    int got_fd = recv_fd(sv[1]);
    if (got_fd < 0) _exit(2);
    memset(buf, 0xc3, BUF_SZ);
    uint64_t iova = MOCK_APERTURE_START + BUF_SZ;
    int r = ioas_map(got_fd, ioas, buf, BUF_SZ, &iova, 1);
    _exit(r == 0 ? 0 : 10 + (-r & 0x7f));
  }
  close(sv[1]);
  check_rc("passed_send", send_fd(sv[0], fd), OK);
  check_u64("passed_child", "exit", (uint64_t)child_exit_status(child), 0);
  close(sv[0]);
  check_rc("passed_unmap", ioas_unmap(fd, ioas, MOCK_APERTURE_START + BUF_SZ, BUF_SZ, &unmapped), OK);
  check_u64("passed_unmap", "length", unmapped, BUF_SZ);
  return abi_finish();
}
