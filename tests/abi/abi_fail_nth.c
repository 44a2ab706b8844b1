/* A fail-nth sweep exactly as docs/fault-injection.md#sweep describes: for k = 1, 2, … arm the thread's
 * fail-nth counter with k, run map / copy / mock-domain attach / access pin / access rw, read the counter
 * back and disarm; while the k-th check fired ("0\n"), tear down (close everything, reopen, MD_CHECK_REFS
 * refs=0) and go on; the first k the sequence no longer reaches ends the sweep, and that run must have
 * succeeded. A second sweep does the same over the page-table commands: HWPT_ALLOC (a nest parent with
 * PASIDs, a nested HWPT on it), MOCK_DOMAIN_FLAGS onto the parent, PASID attach and replace, a replace of
 * the RID onto the nested HWPT, HWPT_INVALIDATE, MD_CHECK_IOTLB and GET_HW_INFO. Its teardown detaches the
 * PASID before closing (the kernel warns when a device goes with a PASID attached). A third sweeps dirty
 * tracking: HWPT_ALLOC with DIRTY_TRACKING, the device's RID onto it, a map, SET_DIRTY_TRACKING on,
 * TEST_OP_DIRTY, GET_DIRTY_BITMAP and tracking off; the IOAS maps with IOMMU_OPTION_HUGE_PAGES=0 so that
 * every page is its own entry on the kernel too, and the bitmap of the completing run is printed. A fourth
 * sweeps the virtual IOMMU: VIOMMU_ALLOC with data, a nested HWPT on it, VDEVICE_ALLOC, the device onto the
 * nested HWPT, a vIOMMU invalidation, DEV_CHECK_CACHE, HW_QUEUE_ALLOC and its destroy, VEVENTQ_ALLOC,
 * TRIGGER_VEVENT and a read of the queue. A fifth sweeps
 * dma-buf: DMABUF_GET, MAP_FILE of it into an IOAS with a mock domain, a copy into a second IOAS with a
 * domain, a revoke, a domain attached after the revoke, an un-revoke and a second import, and the unmaps;
 * its teardown also checks that no descriptor was left open (the lowest free fd is what it was).
 * A sixth sweeps fault queues: IOMMU_FAULT_QUEUE_ALLOC, HWPT_ALLOC with the queue, a replace onto it,
 * TRIGGER_IOPF, a read of the fault and the write of its response; a delivery that failed leaves nothing to
 * read, and the completing run must have read and answered one fault.
 *
 * Only deterministic results are printed: the number of sites differs between kernels and uiommufd. */
#include <sys/syscall.h>

#include "abi.h"

#define BUF_LEN 0x8000UL
#define MAX_ITERATIONS 1000

struct state {
  int fd;
  int access_fd;
  uint32_t ioas, ioas2;
  uint32_t stdev; /* the PASID sweep's device, 0 until it exists */
  int dmabuf_fd;  /* the dma-buf sweep's buffer, -1 until it exists */
  int fault_fd;   /* the fault sweep's queue fd, -1 until it exists */
  int veventq_fd; /* the vIOMMU sweep's event queue fd, -1 until it exists */
};

/* The lowest free descriptor with everything closed, while the dma-buf sweep runs (-1: not checked). */
static int fd_baseline = -1;

#define SWEEP_PASID 100

/* The set-up part that runs before arming. */
static int setup(struct state* s) {
  s->fd = open("/dev/iommu", O_RDWR);
  s->access_fd = -1;
  s->stdev = 0;
  s->dmabuf_fd = -1;
  s->fault_fd = -1;
  s->veventq_fd = -1;
  if (s->fd < 0) return -errno;
  int r = ioas_alloc(s->fd, &s->ioas);
  if (r) return r;
  return ioas_alloc(s->fd, &s->ioas2);
}

/* The swept sequence; stops at the first failing call. */
static int run(struct state* s, uint8_t* buf) {
  uint32_t stdev = 0, hwpt = 0, pages_id = 0;
  uint64_t iova = MOCK_APERTURE_START, dst = MOCK_APERTURE_START;
  int r;
  if ((r = mock_domain(s->fd, s->ioas, &stdev, &hwpt, NULL))) return r;
  if ((r = ioas_map(s->fd, s->ioas, buf, BUF_LEN, &iova, 1))) return r;
  struct iommu_ioas_copy c = {.size = sizeof(c),
                              .flags = MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA,
                              .dst_ioas_id = s->ioas2,
                              .src_ioas_id = s->ioas,
                              .length = 0x4000,
                              .dst_iova = dst,
                              .src_iova = iova};
  if ((r = abi_ioctl(s->fd, IOMMU_IOAS_COPY, &c))) return r;
  if ((r = mock_domain(s->fd, s->ioas2, NULL, NULL, NULL))) return r;
  if ((r = create_access(s->fd, s->ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &s->access_fd))) return r;
  if ((r = access_pages(s->fd, s->access_fd, 0, iova, 0x2000, buf, &pages_id))) return r;
  uint8_t data[0x30];
  memset(data, 0x5a, sizeof(data));
  if ((r = access_rw(s->fd, s->access_fd, MOCK_ACCESS_RW_WRITE, iova + 0xff8, data, sizeof(data)))) return r;
  if ((r = access_rw(s->fd, s->access_fd, MOCK_ACCESS_RW_SLOW_PATH, iova + 0x1ff8, data, sizeof(data))))
    return r;
  if ((r = destroy_access_pages(s->fd, s->access_fd, pages_id))) return r;
  uint64_t len = 0;
  return ioas_unmap(s->fd, s->ioas, 0, ~0ULL, &len);
}

/* The page-table sequence; stops at the first failing call. */
static int run_hwpt(struct state* s, uint8_t* buf) {
  uint32_t idev = 0, pidev = 0, parent = 0, nested = 0;
  uint64_t iova = MOCK_APERTURE_START;
  int r;
  if ((r = ioas_map(s->fd, s->ioas, buf, BUF_LEN, &iova, 1))) return r;
  if ((r = mock_domain(s->fd, s->ioas, NULL, NULL, &idev))) return r;
  if ((r = hwpt_alloc(s->fd, idev, s->ioas, IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID, &parent)))
    return r;
  if ((r = hwpt_alloc_nested(s->fd, idev, parent, IOMMU_HWPT_ALLOC_PASID, IOMMU_TEST_IOTLB_DEFAULT, &nested)))
    return r;
  if ((r = mock_domain_flags(s->fd, parent, MOCK_FLAGS_DEVICE_PASID, &s->stdev, NULL, &pidev))) return r;
  if ((r = pasid_attach(s->fd, s->stdev, SWEEP_PASID, nested))) return r;
  if ((r = pasid_replace(s->fd, s->stdev, SWEEP_PASID, parent))) return r;
  if ((r = mock_domain_replace(s->fd, s->stdev, nested, NULL))) return r;
  struct iommu_hwpt_invalidate_selftest inv[2] = {{.iotlb_id = 1}, {.iotlb_id = 3}};
  uint32_t num = 2;
  if ((r = hwpt_invalidate(s->fd, nested, inv, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, sizeof(inv[0]), &num)))
    return r;
  if ((r = check_iotlb(s->fd, nested, 3, 0))) return r;
  struct iommu_test_hw_info data;
  struct iommu_hw_info info = {
      .size = sizeof(info), .dev_id = pidev, .data_len = sizeof(data), .data_uptr = (uintptr_t)&data};
  if ((r = get_hw_info(s->fd, &info))) return r;
  if ((r = pasid_detach(s->fd, s->stdev, SWEEP_PASID))) return r;
  return mock_domain_replace(s->fd, s->stdev, parent, NULL);
}

/* The vIOMMU sequence; stops at the first failing call. The queue is destroyed before the end so that the
 * teardown's MD_CHECK_REFS finds nothing pinned; everything else goes with the close. */
static int run_viommu(struct state* s, uint8_t* buf) {
  uint32_t idev = 0, stdev = 0, parent = 0, viommu = 0, nested = 0, vdev = 0, queue = 0;
  uint64_t iova = MOCK_APERTURE_START;
  int r;
  if ((r = ioas_map(s->fd, s->ioas, buf, BUF_LEN, &iova, 1))) return r;
  if ((r = mock_domain(s->fd, s->ioas, &stdev, NULL, &idev))) return r;
  if ((r = hwpt_alloc(s->fd, idev, s->ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent))) return r;
  struct iommu_viommu_selftest vdata = {.in_data = 0xbeef};
  if ((r = viommu_alloc(s->fd, idev, parent, &vdata, sizeof(vdata), &viommu))) return r;
  if ((r = hwpt_alloc_nested(s->fd, idev, viommu, 0, IOMMU_TEST_IOTLB_DEFAULT, &nested))) return r;
  if ((r = vdevice_alloc(s->fd, viommu, idev, 0x99, &vdev))) return r;
  if ((r = mock_domain_replace(s->fd, stdev, nested, NULL))) return r;
  struct iommu_viommu_invalidate_selftest inv[2] = {
      {.vdev_id = 0x99, .cache_id = 1}, {.flags = IOMMU_TEST_INVALIDATE_FLAG_ALL, .vdev_id = 0x99}};
  uint32_t num = 2;
  if ((r = hwpt_invalidate(s->fd, viommu, inv, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, sizeof(inv[0]), &num)))
    return r;
  if ((r = dev_check_cache(s->fd, idev, 3, 0))) return r;
  if ((r = hw_queue_alloc(s->fd, viommu, IOMMU_HW_QUEUE_TYPE_SELFTEST, 0, iova, PAGE_SZ, &queue))) return r;
  if ((r = destroy_id(s->fd, queue))) return r;
  struct iommu_veventq_alloc q = {
      .size = sizeof(q), .viommu_id = viommu, .type = IOMMU_VEVENTQ_TYPE_SELFTEST, .veventq_depth = 2};
  if ((r = abi_ioctl(s->fd, IOMMU_VEVENTQ_ALLOC, &q))) return r;
  s->veventq_fd = (int)q.out_veventq_fd;
  struct iommu_test_cmd t = {.size = sizeof(t), .op = IOMMU_TEST_OP_TRIGGER_VEVENT};
  memcpy(&t.a, &idev, sizeof(idev));
  if ((r = abi_ioctl(s->fd, IOMMU_TEST_CMD, &t))) return r;
  uint32_t rec[3];
  /* A failed record allocation queues the lost-events header (8 bytes) instead of the event (12). */
  if (read(s->veventq_fd, rec, sizeof(rec)) < 0) return -errno;
  return mock_domain_replace(s->fd, stdev, parent, NULL);
}

/* What the dirty sequence's last GET_DIRTY_BITMAP wrote, and how many successful reads wrote something other
 * than the marked pages (uiommufd can fail a write of the bitmap, which the kernel does through
 * pinned pages that fail-nth does not reach; docs/semantics.md#dirty). */
#define DIRTY_MARKED 0xa6ULL
static uint64_t dirty_bitmap;
static int dirty_incomplete;

/* The dirty-tracking sequence; stops at the first failing call. */
static int run_dirty(struct state* s, uint8_t* buf) {
  uint32_t stdev = 0, idev = 0, hwpt = 0;
  uint64_t iova = MOCK_APERTURE_START;
  int r;
  struct iommu_option o = {.size = sizeof(o),
                           .option_id = IOMMU_OPTION_HUGE_PAGES,
                           .op = IOMMU_OPTION_OP_SET,
                           .object_id = s->ioas,
                           .val64 = 0};
  if ((r = abi_ioctl(s->fd, IOMMU_OPTION, &o))) return r;
  if ((r = mock_domain(s->fd, s->ioas2, &stdev, NULL, &idev))) return r;
  if ((r = hwpt_alloc(s->fd, idev, s->ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &hwpt))) return r;
  if ((r = mock_domain_replace(s->fd, stdev, hwpt, NULL))) return r;
  if ((r = ioas_map(s->fd, s->ioas, buf, BUF_LEN, &iova, 1))) return r;
  if ((r = hwpt_set_dirty_tracking(s->fd, hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE))) return r;
  uint64_t bits = DIRTY_MARKED, nr = 0;
  if ((r = mock_set_dirty(s->fd, hwpt, iova, BUF_LEN, PAGE_SZ, &bits, &nr))) return r;
  uint64_t bitmap[2] = {0, 0};
  if ((r = hwpt_get_dirty_bitmap(s->fd, hwpt, 0, iova, BUF_LEN, PAGE_SZ, bitmap))) return r;
  dirty_bitmap = bitmap[0];
  if (bitmap[0] != DIRTY_MARKED || bitmap[1]) dirty_incomplete++;
  return hwpt_set_dirty_tracking(s->fd, hwpt, 0);
}

/* The dma-buf sequence; stops at the first failing call. */
static int run_dmabuf(struct state* s, uint8_t* buf) {
  uint64_t iova = MOCK_APERTURE_START, dst = MOCK_APERTURE_START, again = 0, len = 0;
  int r;
  (void)buf;
  if ((r = mock_domain(s->fd, s->ioas, NULL, NULL, NULL))) return r;
  if ((r = dmabuf_get(s->fd, 4 * PAGE_SZ, O_CLOEXEC)) < 0) return r;
  s->dmabuf_fd = r;
  if ((r = ioas_map_file(s->fd, s->ioas, MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA, s->dmabuf_fd, 0, 4 * PAGE_SZ,
                         &iova)))
    return r;
  if ((r = mock_domain(s->fd, s->ioas2, NULL, NULL, NULL))) return r;
  if ((r = ioas_copy(s->fd, MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA, s->ioas2, s->ioas, iova, 4 * PAGE_SZ, &dst)))
    return r;
  if ((r = dmabuf_revoke(s->fd, s->dmabuf_fd, 1))) return r;
  if ((r = mock_domain(s->fd, s->ioas, NULL, NULL, NULL))) return r;
  if ((r = dmabuf_revoke(s->fd, s->dmabuf_fd, 0))) return r;
  if ((r = ioas_map_file(s->fd, s->ioas, MAP_RW, s->dmabuf_fd, 0, 4 * PAGE_SZ, &again))) return r;
  if ((r = ioas_unmap(s->fd, s->ioas2, 0, ~0ULL, &len))) return r;
  return ioas_unmap(s->fd, s->ioas, 0, ~0ULL, &len);
}

static int fault_answered;

/* The fault-queue sequence; stops at the first failing call. */
static int run_fault(struct state* s, uint8_t* buf) {
  uint32_t stdev = 0, idev = 0, fault = 0, hwpt = 0;
  int r;
  (void)buf;
  fault_answered = 0;
  if ((r = fault_alloc(s->fd, &fault, &s->fault_fd))) return r;
  if ((r = mock_domain(s->fd, s->ioas, &stdev, NULL, &idev))) return r;
  if ((r = hwpt_alloc_full(s->fd, IOMMU_HWPT_FAULT_ID_VALID, idev, s->ioas, IOMMU_HWPT_DATA_NONE, NULL, 0,
                           fault, &hwpt)))
    return r;
  if ((r = mock_domain_replace(s->fd, stdev, hwpt, NULL))) return r;
  if ((r = trigger_iopf(s->fd, idev, 0, 7))) return r;
  struct iommu_hwpt_pgfault f;
  ssize_t n = read(s->fault_fd, &f, sizeof(f));
  if (n < 0) return -errno;
  if (n == 0) return 0; /* the delivery failed: the group was answered and dropped */
  struct iommu_hwpt_page_response resp = {.cookie = f.cookie, .code = IOMMUFD_PAGE_RESP_SUCCESS};
  n = write(s->fault_fd, &resp, sizeof(resp));
  if (n < 0) return -errno;
  fault_answered = n == (ssize_t)sizeof(resp);
  return 0;
}

/* Teardown with injection disarmed; returns 0 when every close succeeded and no page is left pinned. */
static int teardown(struct state* s, uint8_t* buf) {
  int bad = 0;
  if (s->stdev && pasid_detach(s->fd, s->stdev, SWEEP_PASID)) bad = 1;
  if (s->access_fd >= 0 && close(s->access_fd)) bad = 1;
  if (s->dmabuf_fd >= 0 && close(s->dmabuf_fd)) bad = 1;
  if (s->fault_fd >= 0 && close(s->fault_fd)) bad = 1;
  if (s->veventq_fd >= 0 && close(s->veventq_fd)) bad = 1;
  if (close(s->fd)) bad = 1;
  if (fd_baseline >= 0) {
    int probe = open("/dev/null", O_RDONLY);
    if (probe != fd_baseline) bad = 1;
    if (probe >= 0) close(probe);
  }
  int fd = open("/dev/iommu", O_RDWR);
  if (fd < 0) return 1;
  if (check_refs(fd, buf, BUF_LEN, 0)) bad = 1;
  if (close(fd)) bad = 1;
  return bad;
}

static int write_nth(int nfd, unsigned k) {
  char text[16];
  int n = snprintf(text, sizeof(text), "%u", k);
  if (write(nfd, text, (size_t)n) == n) return 0;
  /* Harnesses retry a failed write once (the write may itself hit a user-copy check). */
  return write(nfd, text, (size_t)n) == n ? 0 : -1;
}

/* One sweep of `run` (step names prefixed with `prefix`): a clean run, then k = 1, 2, … until the k-th
 * site is no longer reached. */
static void sweep(int nfd, uint8_t* buf, const char* prefix, int (*run)(struct state*, uint8_t*)) {
  char name[64], text[32];
  ssize_t got;
  struct state s;
  snprintf(name, sizeof(name), "%ssetup_clean", prefix);
  require(name, setup(&s) == 0);
  snprintf(name, sizeof(name), "%sclean_run", prefix);
  check_rc(name, run(&s, buf), OK);
  snprintf(name, sizeof(name), "%sclean_teardown", prefix);
  check_rc(name, teardown(&s, buf), OK);

  int fired = 0, bad_teardown = 0, completed = 0, last_ok = 0;
  for (unsigned k = 1; k <= MAX_ITERATIONS; k++) {
    if (setup(&s) != 0) {
      bad_teardown++;
      break;
    }
    if (write_nth(nfd, k)) {
      bad_teardown++;
      break;
    }
    int r = run(&s, buf);
    got = pread(nfd, text, sizeof(text) - 1, 0);
    text[got > 0 ? got : 0] = 0;
    write_nth(nfd, 0);
    if (got < 2) {
      bad_teardown++;
      break;
    }
    if (teardown(&s, buf)) {
      printf("FAIL %steardown_k: k=%u left pins or a failing close (run result %s)\n", prefix, k,
             abi_errno_name(-r));
      bad_teardown++;
    }
    if (strcmp(text, "0\n") == 0) {
      fired++;
      continue;
    }
    completed = 1;
    last_ok = r == 0;
    break;
  }
  /* stderr: the number differs from a kernel by design */
  fprintf(stderr, "info %ssweep: %d sites fired\n", prefix, fired);
  snprintf(name, sizeof(name), "%ssweep", prefix);
  check_u64(name, "some_site_fired", fired > 0, 1);
  check_u64(name, "every_teardown_clean", bad_teardown == 0, 1);
  check_u64(name, "reached_end_within_cap", completed, 1);
  check_u64(name, "final_run_succeeded", last_ok, 1);
}

int main(void) {
  uint8_t* buf = (uint8_t*)alloc_buffer(BUF_LEN);
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%ld/fail-nth", (long)syscall(SYS_gettid));
  int nfd = open(path, O_RDWR);
  check_rc("open_fail_nth", nfd >= 0 ? 0 : -errno, OK);
  require("open_fail_nth", nfd >= 0);

  char text[32];
  ssize_t got = pread(nfd, text, sizeof(text) - 1, 0);
  text[got > 0 ? got : 0] = 0;
  check_rc("read_disarmed", got >= 0 ? 0 : -errno, OK);
  check_u64("read_disarmed", "text_is_0", strcmp(text, "0\n") == 0, 1);
  check_rc("write_bad_text", write(nfd, "abc", 3) < 0 ? -errno : 0, ERR(EINVAL));

  sweep(nfd, buf, "", run);
  sweep(nfd, buf, "hwpt_", run_hwpt);
  sweep(nfd, buf, "dirty_", run_dirty);
  sweep(nfd, buf, "viommu_", run_viommu);
  fd_baseline = open("/dev/null", O_RDONLY);
  close(fd_baseline);
  sweep(nfd, buf, "dmabuf_", run_dmabuf);
  fd_baseline = -1;
  sweep(nfd, buf, "fault_", run_fault);
  check_u64("fault_sweep", "final_run_answered", fault_answered, 1);
  /* The completing run read exactly the marked pages. */
  check_u64("dirty_sweep", "final_bitmap", dirty_bitmap, DIRTY_MARKED);
  fprintf(stderr, "info dirty_sweep: %d successful reads wrote other bits than the marked pages\n",
          dirty_incomplete);
  check_rc("close_fail_nth", close(nfd) ? -errno : 0, OK);
  return abi_finish();
}
