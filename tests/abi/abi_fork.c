/* One iommufd shared by several processes, as the kernel's open file is (the selftest's fork_gone and
 * fork_present, iommufd.c, and an fd passed over a unix socket):
 *  - a forked child maps its memory through the inherited fd and exits; the parent sees the area, and
 *    pinning it now (a mock domain) is EFAULT: the memory's process is gone;
 *  - the same with a domain attached before the child maps: what the domain pinned outlives the child, so
 *    a second domain and an access reach it (the kernel pins struct pages; --shared copies the pinned
 *    pages out in the child's exit path, docs/shared.md#exit), until nothing pins it any more;
 *  - a child that is still alive: the parent's domain pins the child's memory and an access reads and
 *    writes it, the child seeing the parent's write;
 *  - a process given the fd with SCM_RIGHTS maps into the same IOAS, and the parent unmaps it;
 *  - a vIOMMU's mmap region mapped before a fork holds the vIOMMU in the child too, until the child has
 *    unmapped all of it or exited.
 * Only the kernel and `uiommufd run --shared` give these answers; in-process mode gives each process a copy
 * of the context (docs/shared.md), so CTest runs this program under --shared only. */
#define _GNU_SOURCE /* before any system header, as abi.h needs it */
#include <sys/mman.h>
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

  /* fork_gone with a domain: the domain pinned what the child mapped before it left, and pinned pages
   * outlive their process. A second domain copies them from the first, the access reads and writes them,
   * and once the domains are gone (nothing pinned) they are out of reach again. The child leaves with
   * exit(), as the selftest's. */
  uint32_t ioas2 = 0, stdev2 = 0, stdev3 = 0;
  int acc2 = -1;
  require("ioas2_alloc", check_rc("ioas2_alloc", ioas_alloc(fd, &ioas2), OK));
  check_rc("gone_domain_first", mock_domain(fd, ioas2, &stdev2, NULL, NULL), OK);
  require("create_access2", check_rc("create_access2", create_access(fd, ioas2, 0, &acc2), OK));
  memset(buf, 0x11, BUF_SZ);
  fflush(stdout);
  child = fork();
  if (child == 0) {
    memset(buf, 0xc4, BUF_SZ);
    uint64_t iova = MOCK_APERTURE_START;
    exit(ioas_map(fd, ioas2, buf, BUF_SZ, &iova, 1) == 0 ? 0 : 1);
  }
  check_u64("gone_domain_child", "exit", (uint64_t)child_exit_status(child), 0);
  check_rc("gone_domain_second", mock_domain(fd, ioas2, &stdev3, NULL, NULL), OK);
  check_rc("gone_domain_read", access_rw(fd, acc2, 0, MOCK_APERTURE_START + 100, got, sizeof(got)), OK);
  check_u64("gone_domain_read", "byte", got[0], 0xc4);
  uint8_t gone_mark = 0x6b;
  check_rc("gone_domain_write",
           access_rw(fd, acc2, MOCK_ACCESS_RW_WRITE, MOCK_APERTURE_START + 200, &gone_mark, 1), OK);
  check_rc("gone_domain_read_slow",
           access_rw(fd, acc2, MOCK_ACCESS_RW_SLOW_PATH, MOCK_APERTURE_START + 200, got, 1), OK);
  check_u64("gone_domain_read_slow", "byte", got[0], 0x6b);
  check_u64("gone_domain_parent_copy", "byte", buf[200], 0x11);
  check_rc("gone_domain_destroy_second", destroy_id(fd, stdev3), OK);
  check_rc("gone_domain_read_one_left", access_rw(fd, acc2, 0, MOCK_APERTURE_START + 200, got, 1), OK);
  check_u64("gone_domain_read_one_left", "byte", got[0], 0x6b);
  check_rc("gone_domain_destroy_first", destroy_id(fd, stdev2), OK);
  check_rc("gone_domain_read_unpinned", access_rw(fd, acc2, 0, MOCK_APERTURE_START + 200, got, 1),
           ERR(EFAULT));
  check_rc("gone_domain_unmap", ioas_unmap(fd, ioas2, MOCK_APERTURE_START, BUF_SZ, &unmapped), OK);
  check_u64("gone_domain_unmap", "length", unmapped, BUF_SZ);
  close(acc2);

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

  /* A vIOMMU's mmap region across fork: the child's copy of the mapping holds the vIOMMU as the parent's
   * does (the kernel's vma open), and lets go of it when the child unmaps, or exits. */
  uint32_t ioas4 = 0, idev4 = 0, parent4 = 0, viommu4 = 0;
  require("ioas4_alloc", check_rc("ioas4_alloc", ioas_alloc(fd, &ioas4), OK));
  require("mock_domain4", check_rc("mock_domain4", mock_domain(fd, ioas4, NULL, NULL, &idev4), OK));
  require("parent4",
          check_rc("parent4", hwpt_alloc(fd, idev4, ioas4, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent4), OK));
  struct iommu_viommu_selftest vdata = {.in_data = 0xf00d};
  require("viommu4",
          check_rc("viommu4", viommu_alloc(fd, idev4, parent4, &vdata, sizeof(vdata), &viommu4), OK));
  void* region = mmap(NULL, vdata.out_mmap_length, PROT_READ, MAP_SHARED, fd, (off_t)vdata.out_mmap_offset);
  require("region_mmap", check_rc("region_mmap", region == MAP_FAILED ? -errno : 0, OK));
  int go2[2], ready2[2];
  require("pipes2", pipe(go2) == 0 && pipe(ready2) == 0);
  fflush(stdout);
  child = fork();
  if (child == 0) {
    char c = 0;
    close(go2[1]);
    close(ready2[0]);
    /* First the mapping as inherited; told to, the child unmaps half of it, then leaves with the rest. */
    c = *(volatile uint32_t*)region == 0xf00d ? 'y' : 'n';
    if (write(ready2[1], &c, 1) != 1 || read(go2[0], &c, 1) != 1) _exit(2);
    if (munmap(region, PAGE_SZ) != 0) _exit(3);
    if (write(ready2[1], "u", 1) != 1 || read(go2[0], &c, 1) != 1) _exit(4);
    exit(0);
  }
  close(go2[0]);
  close(ready2[1]);
  check_u64("region_child_sees", "ok", read(ready2[0], &ok, 1) == 1 && ok == 'y', 1);
  check_rc("region_munmap_parent", munmap(region, vdata.out_mmap_length) == 0 ? 0 : -errno, OK);
  check_rc("destroy_viommu_child_maps", destroy_id(fd, viommu4), ERR(EBUSY));
  require("go2", write(go2[1], "g", 1) == 1);
  check_u64("region_child_unmapped_half", "ok", read(ready2[0], &ok, 1) == 1 && ok == 'u', 1);
  check_rc("destroy_viommu_child_maps_half", destroy_id(fd, viommu4), ERR(EBUSY));
  require("go2_again", write(go2[1], "g", 1) == 1);
  check_u64("region_child", "exit", (uint64_t)child_exit_status(child), 0);
  check_rc("destroy_viommu_child_gone", destroy_id(fd, viommu4), OK);
  return abi_finish();
}
