/* Virtual event queues: IOMMU_VEVENTQ_ALLOC on a vIOMMU, the selftest's TRIGGER_VEVENT, and the queue's fd:
 * read of struct iommufd_vevent_header + payload records with sequence numbers, the lost-events header when
 * the queue overflows (and how a later event takes its place), the short-buffer rules, EFAULT, no write,
 * no pread, poll / select / epoll readiness (readable only, never writable), and the lifetime rules (EBUSY
 * while the fd is open, one queue per type, the vIOMMU held).
 *
 * Kernel side: drivers/iommu/iommufd/eventq.c iommufd_veventq_alloc(), iommufd_veventq_fops_read(),
 * iommufd_veventq_deliver_fetch() / _restore(), iommufd_eventq_fops_poll(); driver.c
 * iommufd_viommu_report_event(); iommufd_private.h iommufd_vevent_handler(); selftest.c
 * iommufd_test_trigger_vevent(), mock_domain_nop_attach(). */
#define _GNU_SOURCE

#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include "abi.h"

#define HDR 8
#define REC 12 /* a header and struct iommu_viommu_event_selftest */

static int veventq_alloc_full(int fd, uint32_t flags, uint32_t reserved, uint32_t viommu, uint32_t type,
                              uint32_t depth, uint32_t* id, int* qfd) {
  struct iommu_veventq_alloc c = {.size = sizeof(c),
                                  .flags = flags,
                                  .viommu_id = viommu,
                                  .type = type,
                                  .veventq_depth = depth,
                                  .__reserved = reserved};
  int r = abi_ioctl(fd, IOMMU_VEVENTQ_ALLOC, &c);
  if (r == 0) {
    *id = c.out_veventq_id;
    *qfd = (int)c.out_veventq_fd;
  }
  return r;
}
static int veventq_alloc(int fd, uint32_t viommu, uint32_t type, uint32_t depth, uint32_t* id, int* qfd) {
  return veventq_alloc_full(fd, 0, 0, viommu, type, depth, id, qfd);
}
static int trigger_vevent(int fd, uint32_t dev_id) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_TRIGGER_VEVENT};
  memcpy(&c.a, &dev_id, sizeof(dev_id));
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}
static int rd(int qfd, void* buf, size_t n) {
  errno = 0;
  ssize_t r = read(qfd, buf, n);
  return r < 0 ? -errno : (int)r;
}
static int poll_now(int qfd) {
  /* POLLRDNORM is not asked for: the runtime's read-only fd reports POLLIN alone (docs/semantics.md). */
  struct pollfd p = {.fd = qfd, .events = POLLIN | POLLOUT};
  int r = poll(&p, 1, 0);
  return r < 0 ? -errno : p.revents;
}
/* Record i of buf: flags, sequence and (for an event) the virtual id, as step lines. */
static const uint8_t* check_rec(const char* step, const uint8_t* p, uint32_t flags, uint32_t seq,
                                uint32_t virt_id) {
  uint32_t h[3];
  memcpy(h, p, sizeof(h));
  check_u64(step, "flags", h[0], flags);
  check_u64(step, "sequence", h[1], seq);
  if (flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS) return p + HDR;
  check_u64(step, "virt_id", h[2], virt_id);
  return p + REC;
}
static void trigger_n(int fd, const char* step, uint32_t dev, int n) {
  for (int i = 0; i < n; i++) check_rc(step, trigger_vevent(fd, dev), OK);
}

int main(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0, stdev = 0, idev = 0, parent = 0, viommu = 0, nested = 0, vdev = 0, id = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  require("mock_domain", check_rc("mock_domain", mock_domain(fd, ioas, &stdev, NULL, &idev), OK));
  require("parent",
          check_rc("parent", hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent), OK));
  require("viommu", check_rc("viommu", viommu_alloc(fd, idev, parent, NULL, 0, &viommu), OK));
  require("nested",
          check_rc("nested", hwpt_alloc_nested(fd, idev, viommu, 0, IOMMU_TEST_IOTLB_DEFAULT, &nested), OK));

  /* ---- allocation refusals ------------------------------------------------------------------------- */
  const uint32_t VT = IOMMU_VEVENTQ_TYPE_SELFTEST;
  int qfd = -1, qfd2 = -1;
  check_rc("alloc_flags", veventq_alloc_full(fd, 1, 0, viommu, VT, 2, &id, &qfd), ERR(EOPNOTSUPP));
  check_rc("alloc_reserved", veventq_alloc_full(fd, 0, 1, viommu, VT, 2, &id, &qfd), ERR(EOPNOTSUPP));
  check_rc("alloc_type_default", veventq_alloc(fd, viommu, 0, 2, &id, &qfd), ERR(EOPNOTSUPP));
  check_rc("alloc_depth_0", veventq_alloc(fd, viommu, VT, 0, &id, &qfd), ERR(EINVAL));
  check_rc("alloc_depth_over_max", veventq_alloc(fd, viommu, VT, VEVENTQ_MAX_DEPTH + 1, &id, &qfd),
           ERR(EINVAL));
  check_rc("alloc_depth_0_bad_viommu", veventq_alloc(fd, 9999, VT, 0, &id, &qfd), ERR(EINVAL));
  check_rc("alloc_unknown_viommu", veventq_alloc(fd, 9999, VT, 2, &id, &qfd), ERR(ENOENT));
  check_rc("alloc_viommu_is_hwpt", veventq_alloc(fd, parent, VT, 2, &id, &qfd), ERR(ENOENT));
  require("alloc_max_depth",
          check_rc("alloc_max_depth", veventq_alloc(fd, viommu, VT, VEVENTQ_MAX_DEPTH, &id, &qfd), OK));
  check_u64("alloc_max_depth", "id", id, 8);
  check_rc("destroy_with_fd_open", destroy_id(fd, id), ERR(EBUSY));
  close(qfd);
  check_rc("destroy_max_depth", destroy_id(fd, id), OK);

  uint32_t q = 0, q_other = 0;
  require("alloc", check_rc("alloc", veventq_alloc(fd, viommu, VT, 2, &q, &qfd), OK));
  check_rc("alloc_same_type", veventq_alloc(fd, viommu, VT, 2, &id, &qfd2), ERR(EEXIST));
  /* Any other non-default type is a queue of its own: the core checks no type. */
  check_rc("alloc_other_type", veventq_alloc(fd, viommu, 0x1234, 1, &q_other, &qfd2), OK);
  check_rc("destroy_viommu_with_queues", destroy_id(fd, viommu), ERR(EBUSY));
  close(qfd2);
  check_rc("destroy_other_type", destroy_id(fd, q_other), OK);
  check_u64("fd_flags", "accmode", (uint64_t)(fcntl(qfd, F_GETFL) & O_ACCMODE), O_RDWR);
  check_u64("fd_flags", "cloexec", (uint64_t)(fcntl(qfd, F_GETFD) & FD_CLOEXEC), FD_CLOEXEC);

  /* ---- an empty queue ----------------------------------------------------------------------------- */
  uint8_t buf[256];
  check_rc("read_0_empty", rd(qfd, buf, 0), ERR(EINVAL));
  check_rc("read_7_empty", rd(qfd, buf, HDR - 1), ERR(EINVAL));
  check_rc("read_empty", rd(qfd, buf, sizeof(buf)), 0);
  check_rc("poll_empty", poll_now(qfd), 0);
  check_rc("write", write(qfd, buf, 8) < 0 ? -errno : 0, ERR(EINVAL));
  check_rc("pread", pread(qfd, buf, sizeof(buf), 0) < 0 ? -errno : 0, ERR(ESPIPE));
  check_rc("ioctl", abi_ioctl(qfd, IOMMU_DESTROY, buf), ERR(ENOTTY));

  /* ---- TRIGGER_VEVENT needs a virtual id on the vIOMMU of the RID's nested HWPT ----------------------- */
  check_rc("trigger_not_nested", trigger_vevent(fd, idev), ERR(ENOENT));
  check_rc("trigger_unknown_dev", trigger_vevent(fd, 9999), ERR(ENOENT));
  require("vdev", check_rc("vdev", vdevice_alloc(fd, viommu, idev, 0x99, &vdev), OK));
  check_rc("trigger_vdev_not_attached", trigger_vevent(fd, idev), ERR(ENOENT));
  require("attach_nested", check_rc("attach_nested", mock_domain_replace(fd, stdev, nested, NULL), OK));

  /* ---- one event ---------------------------------------------------------------------------------- */
  check_rc("trigger_1", trigger_vevent(fd, idev), OK);
  check_rc("poll_one", poll_now(qfd), POLLIN);
  check_rc("read_0_one", rd(qfd, buf, 0), ERR(EINVAL));
  check_rc("read_header_only", rd(qfd, buf, HDR), ERR(EINVAL));
  check_rc("read_one_less", rd(qfd, buf, REC - 1), ERR(EINVAL));
  check_rc("read_null", rd(qfd, NULL, REC), ERR(EFAULT));
  check_rc("poll_after_efault", poll_now(qfd), POLLIN);
  check_rc("read_one", rd(qfd, buf, sizeof(buf)), REC);
  check_rec("read_one", buf, 0, 0, 0x99);
  check_rc("poll_drained", poll_now(qfd), 0);

  /* ---- overflow: depth 2, three events ------------------------------------------------------------ */
  trigger_n(fd, "trigger_3", idev, 3);
  check_rc("read_overflow", rd(qfd, buf, sizeof(buf)), 2 * REC + HDR);
  const uint8_t* p = check_rec("overflow_0", buf, 0, 1, 0x99);
  p = check_rec("overflow_1", p, 0, 2, 0x99);
  check_rec("overflow_lost", p, IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 3, 0);
  /* The overflow is gone once read. */
  check_rc("trigger_after_overflow", trigger_vevent(fd, idev), OK);
  check_rc("read_after_overflow", rd(qfd, buf, sizeof(buf)), REC);
  check_rec("after_overflow", buf, 0, 4, 0x99);

  /* A buffer that ends inside the second record gets the first alone. */
  trigger_n(fd, "trigger_2", idev, 2);
  check_rc("read_partial", rd(qfd, buf, REC + HDR + 2), REC);
  check_rec("partial", buf, 0, 5, 0x99);
  check_rc("read_rest", rd(qfd, buf, sizeof(buf)), REC);
  check_rec("rest", buf, 0, 6, 0x99);

  /* Overflow, one event read, then a new event: it takes the lost header's place at the tail. */
  trigger_n(fd, "trigger_3b", idev, 3);
  check_rc("read_first_of_3", rd(qfd, buf, REC), REC);
  check_rec("first_of_3", buf, 0, 7, 0x99);
  check_rc("trigger_after_read", trigger_vevent(fd, idev), OK);
  check_rc("read_replaced", rd(qfd, buf, sizeof(buf)), 2 * REC);
  p = check_rec("replaced_0", buf, 0, 8, 0x99);
  check_rec("replaced_1", p, 0, 10, 0x99);

  /* Two overflows in a row: one header, with the newer sequence. The header alone fits in 8 bytes. */
  trigger_n(fd, "trigger_4", idev, 4);
  check_rc("read_two_of_4", rd(qfd, buf, 2 * REC + HDR - 1), 2 * REC);
  check_rc("poll_lost_only", poll_now(qfd), POLLIN);
  check_rc("read_lost_only", rd(qfd, buf, HDR), HDR);
  check_rec("lost_only", buf, IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 14, 0);
  check_rc("read_lost_gone", rd(qfd, buf, sizeof(buf)), 0);

  /* A lost header that cannot be written goes back when nothing else waits. */
  trigger_n(fd, "trigger_3c", idev, 3);
  check_rc("read_events_of_3c", rd(qfd, buf, 2 * REC), 2 * REC);
  check_rc("read_lost_null", rd(qfd, NULL, HDR), ERR(EFAULT));
  check_rc("read_lost_again", rd(qfd, buf, HDR), HDR);
  check_rec("lost_again", buf, IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 17, 0);

  /* ---- readiness through select and epoll ------------------------------------------------------- */
  check_rc("trigger_for_epoll", trigger_vevent(fd, idev), OK);
  {
    fd_set rs, ws;
    FD_ZERO(&rs);
    FD_ZERO(&ws);
    FD_SET(qfd, &rs);
    FD_SET(qfd, &ws);
    struct timeval tv = {0, 0};
    check_rc("select", select(qfd + 1, &rs, &ws, NULL, &tv), 1);
    check_u64("select", "readable", FD_ISSET(qfd, &rs) != 0, 1);
    check_u64("select", "writable", FD_ISSET(qfd, &ws) != 0, 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT}, out = {0};
    check_rc("epoll_ctl", epoll_ctl(ep, EPOLL_CTL_ADD, qfd, &ev) < 0 ? -errno : 0, OK);
    check_rc("epoll_wait", epoll_wait(ep, &out, 1, 0), 1);
    check_u64("epoll_wait", "events", out.events, EPOLLIN);
    check_rc("read_for_epoll", rd(qfd, buf, sizeof(buf)), REC);
    check_rc("epoll_wait_drained", epoll_wait(ep, &out, 1, 0), 0);
    close(ep);
  }

  /* ---- where events go ------------------------------------------------------------------------------- */
  check_rc("detach_nested", mock_domain_replace(fd, stdev, ioas, NULL), OK);
  check_rc("trigger_detached", trigger_vevent(fd, idev), ERR(ENOENT));
  /* A device whose virtual id is 0 reports nothing. */
  uint32_t stdev2 = 0, idev2 = 0, vdev2 = 0;
  require("mock_domain2", check_rc("mock_domain2", mock_domain(fd, ioas, &stdev2, NULL, &idev2), OK));
  check_rc("vdev_id_0", vdevice_alloc(fd, viommu, idev2, 0, &vdev2), OK);
  check_rc("attach2_nested", mock_domain_replace(fd, stdev2, nested, NULL), OK);
  check_rc("trigger_virt_id_0", trigger_vevent(fd, idev2), ERR(ENOENT));
  /* Without a queue of the selftest type: EOPNOTSUPP, and nothing is counted. */
  check_rc("reattach_nested", mock_domain_replace(fd, stdev, nested, NULL), OK);
  close(qfd);
  check_rc("destroy_queue", destroy_id(fd, q), OK);
  check_rc("trigger_no_queue", trigger_vevent(fd, idev), ERR(EOPNOTSUPP));
  require("alloc_again", check_rc("alloc_again", veventq_alloc(fd, viommu, VT, 4, &q, &qfd), OK));
  check_rc("trigger_new_queue", trigger_vevent(fd, idev), OK);
  check_rc("read_new_queue", rd(qfd, buf, sizeof(buf)), REC);
  check_rec("new_queue", buf, 0, 0, 0x99);
  /* Events left unread go with the queue; closing the iommufd with the queue's fd open keeps both. */
  trigger_n(fd, "trigger_unread", idev, 2);
  close(fd);
  check_rc("read_after_iommufd_close", rd(qfd, buf, sizeof(buf)), 2 * REC);
  close(qfd);
  return abi_finish();
}
