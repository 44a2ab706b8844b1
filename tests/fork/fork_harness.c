/* A test program shaped like the kernel's selftests: every test case runs in its own child process, forked
 * by a small harness in the manner of tools/testing/selftests/kselftest_harness.h (__run_test forks, the
 * child runs the case and exits with its verdict, the parent waits and prints "ok" / "not ok"). Run under
 * `uiommufd run`, each child works on /dev/iommu through ioctls only: opens it, maps, pins through a mock
 * domain or a test access, copies between IOAS, reads and writes through the access, and unmaps.
 *
 * The parent opens /dev/iommu and maps a buffer before the first fork, as a harness with a global set-up
 * does, so every fork copies engine state and runs the fork handlers with the slab, the fault registry and
 * the fd table in use. In the sanitizer presets the program carries the sanitizer, so each child is checked
 * by it (ThreadSanitizer checks the children of a single-threaded parent fully).
 *
 * Exit status: 0 when every case passed; 1 otherwise. A case that crashes, is killed or exits non-zero
 * (a sanitizer report exits 66 under TSan, aborts under ASan; the validator's report aborts with
 * --lockdep=abort) fails. */
#define _GNU_SOURCE /* before any header: abi.h needs it, and the system headers come first */
#include <sys/syscall.h>
#include <sys/wait.h>

#include "../abi/abi.h"

#define BUF_LEN 0x10000UL

static uint8_t* g_buf;  /* shared by parent and children (copied at fork) */
static int g_parent_fd; /* opened by the parent; each child has its own copy of the context */
static uint32_t g_parent_ioas;
static uint64_t g_parent_iova = MOCK_APERTURE_START;

static void fill(uint8_t* p, size_t len, unsigned seed) {
  for (size_t i = 0; i < len; i++) p[i] = (uint8_t)(i * 31 + seed + i / 4093);
}

/* ---- the cases ---------------------------------------------------------------------------------------- */

static void ioas_map_unmap(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  uint64_t fixed = MOCK_APERTURE_START, automatic = 0, len = 0;
  check_rc("map_fixed", ioas_map(fd, ioas, g_buf, BUF_LEN, &fixed, 1), OK);
  check_rc("map_auto", ioas_map(fd, ioas, g_buf, BUF_LEN, &automatic, 0), OK);
  check_rc("map_fixed_again", ioas_map(fd, ioas, g_buf, BUF_LEN, &fixed, 1), ERR(EEXIST));
  check_rc("unmap_fixed", ioas_unmap(fd, ioas, fixed, BUF_LEN, &len), OK);
  check_u64("unmap_fixed", "length", len, BUF_LEN);
  check_rc("unmap_all", ioas_unmap(fd, ioas, 0, ~0ULL, &len), OK);
  check_u64("unmap_all", "length", len, BUF_LEN);
  check_rc("close", close(fd) ? -errno : 0, OK);
}

static void mock_domain_pins(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0, stdev = 0, hwpt = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  require("mock_domain", check_rc("mock_domain", mock_domain(fd, ioas, &stdev, &hwpt, NULL), OK));
  uint64_t iova = MOCK_APERTURE_START, len = 0;
  check_rc("map", ioas_map(fd, ioas, g_buf, BUF_LEN, &iova, 1), OK);
  check_rc("check_map", check_map(fd, hwpt, iova, g_buf, BUF_LEN), OK);
  check_rc("refs_pinned", check_refs(fd, g_buf, BUF_LEN, 1), OK);
  check_rc("unmap", ioas_unmap(fd, ioas, iova, BUF_LEN, &len), OK);
  check_rc("refs_unpinned", check_refs(fd, g_buf, BUF_LEN, 0), OK);
  check_rc("destroy_device", destroy_id(fd, stdev), OK);
  check_rc("close", close(fd) ? -errno : 0, OK);
}

static void access_pin_unpin(void) {
  int fd = open_iommufd(), acc = -1;
  uint32_t ioas = 0, pages_id = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  uint64_t iova = MOCK_APERTURE_START, len = 0;
  check_rc("map", ioas_map(fd, ioas, g_buf, BUF_LEN, &iova, 1), OK);
  require(
      "create_access",
      check_rc("create_access", create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &acc), OK));
  check_rc("access_pages", access_pages(fd, acc, 0, iova + PAGE_SZ, 4 * PAGE_SZ, g_buf + PAGE_SZ, &pages_id),
           OK);
  check_rc("refs_pinned", check_refs(fd, g_buf + PAGE_SZ, 4 * PAGE_SZ, 1), OK);
  check_rc("destroy_access_pages", destroy_access_pages(fd, acc, pages_id), OK);
  check_rc("refs_unpinned", check_refs(fd, g_buf, BUF_LEN, 0), OK);
  /* Pinned again, then the unmap's callback unpins. */
  check_rc("access_pages_again", access_pages(fd, acc, 0, iova, 2 * PAGE_SZ, g_buf, &pages_id), OK);
  check_rc("unmap_while_pinned", ioas_unmap(fd, ioas, 0, ~0ULL, &len), OK);
  check_u64("unmap_while_pinned", "length", len, BUF_LEN);
  check_rc("refs_after_unmap", check_refs(fd, g_buf, BUF_LEN, 0), OK);
  check_rc("close_access", close(acc) ? -errno : 0, OK);
  check_rc("close", close(fd) ? -errno : 0, OK);
}

static void copy_and_rw(void) {
  int fd = open_iommufd(), acc = -1;
  uint32_t src = 0, dst = 0;
  require("ioas_alloc", check_rc("ioas_alloc_src", ioas_alloc(fd, &src), OK) &&
                            check_rc("ioas_alloc_dst", ioas_alloc(fd, &dst), OK));
  fill(g_buf, BUF_LEN, 7);
  uint64_t iova = MOCK_APERTURE_START, dst_iova = 0x40000000, len = 0;
  check_rc("map_src", ioas_map(fd, src, g_buf, BUF_LEN, &iova, 1), OK);
  struct iommu_ioas_copy c = {.size = sizeof(c),
                              .flags = MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA,
                              .dst_ioas_id = dst,
                              .src_ioas_id = src,
                              .length = BUF_LEN / 2,
                              .dst_iova = dst_iova,
                              .src_iova = iova + BUF_LEN / 4};
  check_rc("copy", abi_ioctl(fd, IOMMU_IOAS_COPY, &c), OK);
  require("create_access", check_rc("create_access", create_access(fd, dst, 0, &acc), OK));
  uint8_t out[0x1800];
  check_rc("read_copy", access_rw(fd, acc, 0, dst_iova + 0x800, out, sizeof(out)), OK);
  check_u64("read_copy", "equal", memcmp(out, g_buf + BUF_LEN / 4 + 0x800, sizeof(out)) == 0, 1);
  memset(out, 0xa5, sizeof(out));
  check_rc("write_through_copy", access_rw(fd, acc, MOCK_ACCESS_RW_WRITE, dst_iova + 0x100, out, 0x300), OK);
  check_u64("write_through_copy", "landed", g_buf[BUF_LEN / 4 + 0x100] == 0xa5, 1);
  check_rc("close_access", close(acc) ? -errno : 0, OK);
  check_rc("unmap_dst", ioas_unmap(fd, dst, 0, ~0ULL, &len), OK);
  check_u64("unmap_dst", "length", len, BUF_LEN / 2);
  check_rc("unmap_src", ioas_unmap(fd, src, 0, ~0ULL, &len), OK);
  check_u64("unmap_src", "length", len, BUF_LEN);
  check_rc("close", close(fd) ? -errno : 0, OK);
}

/* The fd opened by the parent: the child's copy works on its own; the parent's context is left as it was
 * (the parent checks that after the child exits, in main). */
static void inherited_fd(void) {
  uint64_t iova = g_parent_iova + BUF_LEN, len = 0;
  check_rc("map_in_inherited", ioas_map(g_parent_fd, g_parent_ioas, g_buf, BUF_LEN, &iova, 1), OK);
  uint32_t stdev = 0, hwpt = 0;
  check_rc("mock_domain_on_inherited", mock_domain(g_parent_fd, g_parent_ioas, &stdev, &hwpt, NULL), OK);
  check_rc("check_map_inherited", check_map(g_parent_fd, hwpt, g_parent_iova, g_buf, BUF_LEN), OK);
  check_rc("unmap_inherited", ioas_unmap(g_parent_fd, g_parent_ioas, 0, ~0ULL, &len), OK);
  check_u64("unmap_inherited", "length", len, 2 * BUF_LEN);
  check_rc("refs_unpinned", check_refs(g_parent_fd, g_buf, BUF_LEN, 0), OK);
  check_rc("close_inherited", close(g_parent_fd) ? -errno : 0, OK);
}

/* The fault-injection registry in a child: the fail-nth counter of the child's only thread starts disarmed;
 * armed with 1 through its /proc file, it fails the first fault site the next IOAS_ALLOC reaches (the copy
 * of its argument, EFAULT) and reads 0 again after firing. */
static void fail_nth_in_child(void) {
  int fd = open_iommufd();
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%ld/fail-nth", (long)syscall(SYS_gettid));
  int nfd = open(path, O_RDWR);
  require("open_fail_nth", check_rc("open_fail_nth", nfd >= 0 ? 0 : -errno, OK));
  char text[8];
  ssize_t got = pread(nfd, text, sizeof(text) - 1, 0);
  text[got > 0 ? got : 0] = 0;
  check_u64("inherited_disarmed", "text_is_0", strcmp(text, "0\n") == 0, 1);
  check_rc("arm", write(nfd, "1", 1) == 1 ? 0 : -errno, OK);
  uint32_t ioas = 0;
  check_rc("ioas_alloc_fails", ioas_alloc(fd, &ioas), ERR(EFAULT));
  got = pread(nfd, text, sizeof(text) - 1, 0);
  text[got > 0 ? got : 0] = 0;
  check_u64("fired", "text_is_0", strcmp(text, "0\n") == 0, 1);
  check_rc("ioas_alloc_disarmed", ioas_alloc(fd, &ioas), OK);
  check_rc("close_fail_nth", close(nfd) ? -errno : 0, OK);
  check_rc("close", close(fd) ? -errno : 0, OK);
}

/* A child that forks again: the grandchild's handlers run on state that was itself forked. */
static void fork_in_child(void) {
  int fd = open_iommufd();
  uint32_t ioas = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  uint64_t iova = MOCK_APERTURE_START, len = 0;
  check_rc("map", ioas_map(fd, ioas, g_buf, BUF_LEN, &iova, 1), OK);
  fflush(stdout);
  pid_t pid = fork();
  require("fork", pid >= 0);
  if (pid == 0) {
    int ok = ioas_unmap(fd, ioas, 0, ~0ULL, &len) == 0 && len == BUF_LEN && close(fd) == 0;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  check_rc("wait_grandchild", waitpid(pid, &status, 0) == pid ? 0 : -errno, OK);
  check_u64("grandchild", "exit_status", WIFEXITED(status) ? (uint64_t)WEXITSTATUS(status) : 0x100, 0);
  /* The grandchild's unmap was its own. */
  check_rc("unmap_here", ioas_unmap(fd, ioas, 0, ~0ULL, &len), OK);
  check_u64("unmap_here", "length", len, BUF_LEN);
  check_rc("close", close(fd) ? -errno : 0, OK);
}

/* ---- the harness -------------------------------------------------------------------------------------- */

struct fork_case {
  const char* name;
  void (*fn)(void);
};

static const struct fork_case g_cases[] = {
    {"ioas_map_unmap", ioas_map_unmap},     {"mock_domain_pins", mock_domain_pins},
    {"access_pin_unpin", access_pin_unpin}, {"copy_and_rw", copy_and_rw},
    {"inherited_fd", inherited_fd},         {"fail_nth_in_child", fail_nth_in_child},
    {"fork_in_child", fork_in_child},
};
#define NUM_CASES (sizeof(g_cases) / sizeof(g_cases[0]))

/* Runs one case in a child; returns 1 when it passed. */
static int run_case(const struct fork_case* c, unsigned index) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    printf("not ok %u %s # fork: %s\n", index, c->name, abi_errno_name(errno));
    return 0;
  }
  if (pid == 0) {
    printf("# RUN %s\n", c->name);
    c->fn();
    exit(abi_finish());
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) {
    printf("not ok %u %s # waitpid: %s\n", index, c->name, abi_errno_name(errno));
    return 0;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    printf("ok %u %s\n", index, c->name);
    return 1;
  }
  if (WIFEXITED(status))
    printf("not ok %u %s # exit status %d\n", index, c->name, WEXITSTATUS(status));
  else
    printf("not ok %u %s # signal %d\n", index, c->name, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return 0;
}

int main(int argc, char** argv) {
  g_buf = (uint8_t*)alloc_buffer(BUF_LEN);
  g_parent_fd = open_iommufd();
  require("parent_ioas_alloc", ioas_alloc(g_parent_fd, &g_parent_ioas) == 0);
  require("parent_map", ioas_map(g_parent_fd, g_parent_ioas, g_buf, BUF_LEN, &g_parent_iova, 1) == 0);

  /* argv[1], when given, runs only the case of that name (for debugging one case). */
  unsigned passed = 0, run = 0;
  printf("TAP version 13\n1..%u\n", argc > 1 ? 1u : (unsigned)NUM_CASES);
  for (unsigned i = 0; i < NUM_CASES; i++) {
    if (argc > 1 && strcmp(argv[1], g_cases[i].name) != 0) continue;
    run++;
    passed += (unsigned)run_case(&g_cases[i], run);
  }

  /* The children's work on their copies of the parent's context left it untouched: only the parent's
   * own mapping is there. */
  uint64_t len = 0;
  int parent_ok = ioas_unmap(g_parent_fd, g_parent_ioas, 0, ~0ULL, &len) == 0 && len == BUF_LEN &&
                  close(g_parent_fd) == 0;
  printf("%s parent context unchanged by the children\n", parent_ok ? "#" : "# FAIL");
  printf("# totals: pass:%u fail:%u\n", passed, run - passed);
  return run > 0 && passed == run && parent_ok ? 0 : 1;
}
