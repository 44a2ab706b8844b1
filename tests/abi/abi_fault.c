/* Fault queues: IOMMU_FAULT_QUEUE_ALLOC, HWPTs allocated with IOMMU_HWPT_FAULT_ID_VALID, the selftest's
 * TRIGGER_IOPF, and the queue's fd: read of struct iommu_hwpt_pgfault records, write of struct
 * iommu_hwpt_page_response records, readv / writev, pread / pwrite, poll / select / epoll readiness, the
 * automatic answers on replace, and the lifetime rules (EBUSY while the fd is open or an HWPT holds it).
 *
 * Kernel side: drivers/iommu/iommufd/eventq.c iommufd_fault_alloc(), iommufd_fault_fops_read(),
 * iommufd_fault_fops_write(), iommufd_eventq_fops_poll(), iommufd_auto_response_faults();
 * hw_pagetable.c iommufd_hwpt_alloc() (fault_id); device.c iommufd_hwpt_replace_device();
 * selftest.c iommufd_test_trigger_iopf(); io-pgfault.c find_fault_handler(); fs/read_write.c (ESPIPE for
 * pread on an anonymous-inode file, do_loop_readv_writev()). */
/* Before any header, as abi.h would have it (the formatter puts system headers first). */
#define _GNU_SOURCE

#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "abi.h"

#define REC ((int)sizeof(struct iommu_hwpt_pgfault))
#define RESP ((int)sizeof(struct iommu_hwpt_page_response))

/* read/write-like calls folded into one int: the byte count, or −errno. */
static int rd(int qfd, void* buf, size_t n) {
  errno = 0;
  ssize_t r = read(qfd, buf, n);
  return r < 0 ? -errno : (int)r;
}
static int wr(int qfd, const void* buf, size_t n) {
  errno = 0;
  ssize_t r = write(qfd, buf, n);
  return r < 0 ? -errno : (int)r;
}

static int respond(int qfd, uint32_t cookie, uint32_t code) {
  struct iommu_hwpt_page_response r = {.cookie = cookie, .code = code};
  return wr(qfd, &r, sizeof(r));
}

/* poll() with no wait: the revents bits. */
static int poll_now(int qfd) {
  /* POLLWRNORM is not asked for: the kernel never reports it here (docs/semantics.md#fault-queues). */
  struct pollfd p = {.fd = qfd, .events = POLLIN | POLLOUT | POLLRDNORM};
  int r = poll(&p, 1, 0);
  return r < 0 ? -errno : p.revents;
}

static void check_record(const char* step, const struct iommu_hwpt_pgfault* f, uint32_t flags,
                         uint32_t dev_id, uint32_t pasid, uint32_t grpid, uint32_t cookie) {
  check_u64(step, "flags", f->flags, flags);
  check_u64(step, "dev_id", f->dev_id, dev_id);
  check_u64(step, "pasid", f->pasid, pasid);
  check_u64(step, "grpid", f->grpid, grpid);
  check_u64(step, "perm", f->perm, IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE);
  check_u64(step, "addr", f->addr, 0xdeadbeaf);
  check_u64(step, "length", f->length, 0);
  check_u64(step, "cookie", f->cookie, cookie);
}

int main(void) {
  int fd = open_iommufd();
  uint8_t* buf = (uint8_t*)alloc_buffer(0x4000);
  uint64_t iova = MOCK_APERTURE_START;
  struct iommu_hwpt_pgfault rec[4];
  const uint32_t LAST = IOMMU_PGFAULT_FLAGS_LAST_PAGE;

  uint32_t ioas = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  require("map", check_rc("map", ioas_map(fd, ioas, buf, 0x4000, &iova, 1), OK));
  uint32_t stdev = 0, auto_hwpt = 0, idev = 0;
  require("mock_domain", check_rc("mock_domain", mock_domain(fd, ioas, &stdev, &auto_hwpt, &idev), OK));

  /* ---- IOMMU_FAULT_QUEUE_ALLOC ---------------------------------------------------------------------- */
  uint32_t fault = 0, id = 0;
  int qfd = -1, qfd2 = -1;
  check_rc("alloc_flags", fault_alloc_sized(fd, sizeof(struct iommu_fault_alloc), 1, &fault, &qfd),
           ERR(EOPNOTSUPP));
  check_rc("alloc_short", fault_alloc_sized(fd, 12, 0, &fault, &qfd), ERR(EINVAL));
  require("alloc", check_rc("alloc", fault_alloc(fd, &fault, &qfd), OK));
  check_u64("alloc", "out_fault_id", fault, 5);
  check_u64("alloc", "fd_valid", qfd > 2, 1);
  check_u64("alloc", "cloexec", (fcntl(qfd, F_GETFD) & FD_CLOEXEC) != 0, 1);
  check_u64("alloc", "accmode_rdwr", (fcntl(qfd, F_GETFL) & O_ACCMODE) == O_RDWR, 1);
  check_rc("destroy_while_open", destroy_id(fd, fault), ERR(EBUSY));
  check_rc("queue_fd_ioctl", abi_ioctl(qfd, IOMMU_IOAS_ALLOC, &id), ERR(ENOTTY));

  /* ---- HWPT_ALLOC with a fault queue --------------------------------------------------------------- */
  struct iommu_hwpt_selftest data = {.iotlb = IOMMU_TEST_IOTLB_DEFAULT};
  const uint32_t FV = IOMMU_HWPT_FAULT_ID_VALID, DS = IOMMU_HWPT_DATA_SELFTEST;
  check_rc("hwpt_unknown_fault", hwpt_alloc_full(fd, FV, idev, ioas, 0, NULL, 0, 9999, &id), ERR(ENOENT));
  check_rc("hwpt_fault_is_ioas", hwpt_alloc_full(fd, FV, idev, ioas, 0, NULL, 0, ioas, &id), ERR(ENOENT));
  check_rc("hwpt_fault_nest_parent",
           hwpt_alloc_full(fd, FV | IOMMU_HWPT_ALLOC_NEST_PARENT, idev, ioas, 0, NULL, 0, fault, &id),
           ERR(EOPNOTSUPP));
  /* Without FAULT_ID_VALID the fault_id field is not looked at. */
  uint32_t plain = 0;
  check_rc("hwpt_fault_id_ignored", hwpt_alloc_full(fd, 0, idev, ioas, 0, NULL, 0, 9999, &plain), OK);
  uint32_t iopf_hwpt = 0;
  require("hwpt_iopf",
          check_rc("hwpt_iopf", hwpt_alloc_full(fd, FV, idev, ioas, 0, NULL, 0, fault, &iopf_hwpt), OK));
  check_u64("hwpt_iopf", "out_hwpt_id", iopf_hwpt, 7);
  uint32_t parent = 0, nested_iopf = 0;
  require("hwpt_parent",
          check_rc("hwpt_parent", hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent), OK));
  check_rc("nested_unknown_fault", hwpt_alloc_full(fd, FV, idev, parent, DS, &data, sizeof(data), 9999, &id),
           ERR(ENOENT));
  require("nested_iopf",
          check_rc("nested_iopf",
                   hwpt_alloc_full(fd, FV, idev, parent, DS, &data, sizeof(data), fault, &nested_iopf), OK));
  check_u64("nested_iopf", "out_hwpt_id", nested_iopf, 9);

  /* ---- an empty queue ---------------------------------------------------------------------------- */
  check_rc("read_empty", rd(qfd, rec, REC), 0);
  check_rc("read_empty_zero", rd(qfd, rec, 0), 0);
  check_rc("read_not_multiple", rd(qfd, rec, REC - 1), ERR(ESPIPE));
  check_rc("write_not_multiple", wr(qfd, rec, RESP + 1), ERR(ESPIPE));
  check_rc("write_zero", wr(qfd, rec, 0), 0);
  errno = 0;
  check_rc("pread", pread(qfd, rec, REC, 0) < 0 ? -errno : 0, ERR(ESPIPE));
  errno = 0;
  check_rc("pwrite", pwrite(qfd, rec, RESP, 0) < 0 ? -errno : 0, ERR(ESPIPE));
  errno = 0;
  check_rc("pread_negative", pread(qfd, rec, REC, -1) < 0 ? -errno : 0, ERR(EINVAL));
  check_rc("poll_empty", poll_now(qfd), POLLOUT);

  /* A fault of a device whose HWPT has no fault queue goes nowhere; the test op still succeeds. */
  check_rc("trigger_no_queue", trigger_iopf(fd, idev, 0, 1), OK);
  check_rc("trigger_no_queue_read", rd(qfd, rec, REC), 0);
  check_rc("trigger_not_device", trigger_iopf(fd, ioas, 0, 1), ERR(ENOENT));
  check_rc("trigger_unknown", trigger_iopf(fd, 9999, 0, 1), ERR(ENOENT));

  /* ---- deliver, read, answer ---------------------------------------------------------------------- */
  check_rc("replace_to_iopf", mock_domain_replace(fd, stdev, iopf_hwpt, &id), OK);
  check_rc("destroy_iopf_hwpt_busy", destroy_id(fd, iopf_hwpt), ERR(EBUSY));
  check_rc("trigger", trigger_iopf(fd, idev, 0, 2), OK);
  check_rc("poll_ready", poll_now(qfd), POLLIN | POLLRDNORM | POLLOUT);
  {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT}, out = {0};
    check_rc("epoll_ctl", epoll_ctl(ep, EPOLL_CTL_ADD, qfd, &ev) < 0 ? -errno : 0, OK);
    check_rc("epoll_wait", epoll_wait(ep, &out, 1, 0), 1);
    check_u64("epoll_wait", "events", out.events, EPOLLIN | EPOLLOUT);
    fd_set rs, ws;
    FD_ZERO(&rs);
    FD_ZERO(&ws);
    FD_SET(qfd, &rs);
    FD_SET(qfd, &ws);
    struct timeval tv = {0, 0};
    check_rc("select", select(qfd + 1, &rs, &ws, NULL, &tv), 2);
    close(ep);
  }
  check_rc("read_zero_nonempty", rd(qfd, rec, 0), ERR(EINVAL));
  check_rc("read_bad_buffer", rd(qfd, unmapped_page(), REC), ERR(EFAULT));
  check_rc("read", rd(qfd, rec, 2 * REC), REC);
  check_record("read", &rec[0], LAST, idev, 0, 2, 1);
  check_rc("poll_drained", poll_now(qfd), POLLOUT);
  check_rc("read_drained", rd(qfd, rec, REC), 0);

  struct iommu_hwpt_page_response resp[3];
  check_rc("respond_bad_code", respond(qfd, 1, 2), ERR(EINVAL));
  check_rc("respond_unknown_cookie", respond(qfd, 2, IOMMUFD_PAGE_RESP_SUCCESS), ERR(EINVAL));
  /* Cookie 0 names no group, but erasing it frees the index the kernel's ALLOC1 xarray kept busy while
   * another cookie is out: from then on 0 is handed out like any other (docs/semantics.md#fault-queues). */
  check_rc("respond_cookie_zero", respond(qfd, 0, IOMMUFD_PAGE_RESP_SUCCESS), ERR(EINVAL));
  check_rc("respond_bad_buffer", wr(qfd, unmapped_page(), RESP), ERR(EFAULT));
  resp[0] = (struct iommu_hwpt_page_response){.cookie = 1, .code = IOMMUFD_PAGE_RESP_SUCCESS};
  resp[1] = (struct iommu_hwpt_page_response){.cookie = 1, .code = IOMMUFD_PAGE_RESP_SUCCESS};
  check_rc("respond_partial", wr(qfd, resp, 2 * RESP), RESP);
  check_rc("respond_again", respond(qfd, 1, IOMMUFD_PAGE_RESP_SUCCESS), ERR(EINVAL));

  /* Several groups: each read takes whole records; cookies are the lowest free, 0 now included. */
  for (uint32_t g = 10; g < 13; g++)
    check_rc(g == 10   ? "trigger3_a"
             : g == 11 ? "trigger3_b"
                       : "trigger3_c",
             trigger_iopf(fd, idev, 0, g), OK);
  check_rc("read3_odd_size", rd(qfd, rec, REC + REC / 2), ERR(ESPIPE));
  check_rc("read3_short", rd(qfd, rec, REC), REC);
  check_record("read3_short", &rec[0], LAST, idev, 0, 10, 0);
  const uint32_t cookie10 = rec[0].cookie;
  check_rc("read3_rest", rd(qfd, rec, 4 * REC), 2 * REC);
  check_record("read3_rest_0", &rec[0], LAST, idev, 0, 11, 1);
  check_record("read3_rest_1", &rec[1], LAST, idev, 0, 12, 2);
  check_rc("respond_2", respond(qfd, 2, IOMMUFD_PAGE_RESP_INVALID), RESP);
  check_rc("trigger_reuse", trigger_iopf(fd, idev, 0, 13), OK);
  check_rc("read_reuse", rd(qfd, rec, REC), REC);
  check_record("read_reuse", &rec[0], LAST, idev, 0, 13, 2);
  resp[0] = (struct iommu_hwpt_page_response){.cookie = 1, .code = IOMMUFD_PAGE_RESP_SUCCESS};
  resp[1] = (struct iommu_hwpt_page_response){.cookie = 2, .code = IOMMUFD_PAGE_RESP_INVALID};
  resp[2] = (struct iommu_hwpt_page_response){.cookie = 3, .code = 7};
  check_rc("respond_stop_at_bad_code", wr(qfd, resp, 3 * RESP), 2 * RESP);
  check_rc("respond_3", respond(qfd, 3, IOMMUFD_PAGE_RESP_SUCCESS), ERR(EINVAL));
  check_rc("respond_cookie10", respond(qfd, cookie10, IOMMUFD_PAGE_RESP_SUCCESS), RESP);

  /* readv and writev go record-array by array, stopping at a short segment. */
  check_rc("trigger_v1", trigger_iopf(fd, idev, 0, 20), OK);
  check_rc("trigger_v2", trigger_iopf(fd, idev, 0, 21), OK);
  {
    struct iovec iov[3] = {{&rec[0], REC}, {&rec[1], REC}, {&rec[2], REC}};
    errno = 0;
    ssize_t n = readv(qfd, iov, 3);
    check_rc("readv", n < 0 ? -errno : (int)n, 2 * REC);
    check_record("readv_0", &rec[0], LAST, idev, 0, 20, 0);
    check_record("readv_1", &rec[1], LAST, idev, 0, 21, 1);
    resp[0] = (struct iommu_hwpt_page_response){.cookie = rec[0].cookie, .code = IOMMUFD_PAGE_RESP_SUCCESS};
    resp[1] = (struct iommu_hwpt_page_response){.cookie = rec[1].cookie, .code = IOMMUFD_PAGE_RESP_SUCCESS};
    struct iovec wiov[2] = {{&resp[0], RESP}, {&resp[1], RESP}};
    errno = 0;
    n = writev(qfd, wiov, 2);
    check_rc("writev", n < 0 ? -errno : (int)n, 2 * RESP);
    errno = 0;
    n = writev(qfd, wiov, 2);
    check_rc("writev_answered", n < 0 ? -errno : (int)n, ERR(EINVAL));
  }

  /* ---- replace and detach answer the attachment's faults ------------------------------------------ */
  check_rc("trigger_r1", trigger_iopf(fd, idev, 0, 30), OK);
  check_rc("trigger_r2", trigger_iopf(fd, idev, 0, 31), OK);
  check_rc("read_r1", rd(qfd, rec, REC), REC);
  check_record("read_r1", &rec[0], LAST, idev, 0, 30, 0);
  check_rc("replace_to_nested", mock_domain_replace(fd, stdev, nested_iopf, &id), OK);
  check_rc("poll_after_replace", poll_now(qfd), POLLOUT);
  check_rc("read_after_replace", rd(qfd, rec, REC), 0);
  check_rc("respond_after_replace", respond(qfd, rec[0].cookie, IOMMUFD_PAGE_RESP_SUCCESS), ERR(EINVAL));

  /* A fault with a PASID the device has not attached goes to the RID's nested HWPT (user PASID table). */
  check_rc("trigger_pasid", trigger_iopf(fd, idev, 1, 40), OK);
  check_rc("read_pasid", rd(qfd, rec, REC), REC);
  check_record("read_pasid", &rec[0], LAST | IOMMU_PGFAULT_FLAGS_PASID_VALID, idev, 1, 40, 0);
  check_rc("respond_pasid", respond(qfd, rec[0].cookie, IOMMUFD_PAGE_RESP_SUCCESS), RESP);
  /* ... but not to a paging one. */
  check_rc("replace_back_to_iopf", mock_domain_replace(fd, stdev, iopf_hwpt, &id), OK);
  check_rc("trigger_pasid_paging", trigger_iopf(fd, idev, 1, 41), OK);
  check_rc("read_pasid_paging", rd(qfd, rec, REC), 0);

  /* ---- fork: the child has the fd, and sees the faults its own triggers raise --------------------- */
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    int bad = 0;
    if (trigger_iopf(fd, idev, 0, 50) != 0) bad |= 1;
    if (!(poll_now(qfd) & POLLIN)) bad |= 2;
    struct iommu_hwpt_pgfault f;
    if (rd(qfd, &f, REC) != REC || f.grpid != 50) bad |= 4;
    if (respond(qfd, f.cookie, IOMMUFD_PAGE_RESP_SUCCESS) != RESP) bad |= 8;
    _exit(bad);
  }
  int status = -1;
  waitpid(pid, &status, 0);
  check_rc("fork_child", WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
  check_rc("fork_parent_poll", poll_now(qfd), POLLOUT);

  /* ---- lifetime ------------------------------------------------------------------------------------ */
  /* Closing the fd with faults pending leaves them to the queue; the HWPTs still hold it. */
  check_rc("trigger_before_close", trigger_iopf(fd, idev, 0, 60), OK);
  check_rc("dup", (qfd2 = dup(qfd)) > 2 ? 0 : -1, OK);
  check_rc("close_one_of_two", close(qfd), OK);
  check_rc("dup_still_reads", rd(qfd2, rec, REC), REC);
  check_record("dup_still_reads", &rec[0], LAST, idev, 0, 60, 0);
  check_rc("trigger_before_close2", trigger_iopf(fd, idev, 0, 61), OK);
  check_rc("close", close(qfd2), OK);
  check_rc("destroy_held_by_hwpt", destroy_id(fd, fault), ERR(EBUSY));
  check_rc("replace_to_ioas", mock_domain_replace(fd, stdev, ioas, &id), OK);
  check_rc("destroy_iopf_hwpt", destroy_id(fd, iopf_hwpt), OK);
  check_rc("destroy_nested_iopf", destroy_id(fd, nested_iopf), OK);
  check_rc("destroy_fault", destroy_id(fd, fault), OK);
  check_rc("destroy_fault_again", destroy_id(fd, fault), ERR(ENOENT));

  /* A queue with its fd closed and nothing holding it goes at once. */
  uint32_t fault2 = 0;
  int q2 = -1;
  require("alloc2", check_rc("alloc2", fault_alloc(fd, &fault2, &q2), OK));
  check_u64("alloc2", "out_fault_id", fault2, 5);
  check_rc("alloc2_destroy_busy", destroy_id(fd, fault2), ERR(EBUSY));
  check_rc("alloc2_close", close(q2), OK);
  check_rc("alloc2_destroy", destroy_id(fd, fault2), OK);

  (void)plain;
  (void)parent;
  return abi_finish();
}
