/* Robustness of the shared-mode server (docs/shared.md): clients killed with SIGKILL at random points of
 * random ioctl sequences. Run under `uiommufd run --shared --lockdep=abort`.
 *
 * Each round forks a victim that opens its own iommufd and loops over random operations (IOAS alloc and
 * destroy, mock domains, MAP_FILE of a shared memfd, MAP of its own memory, accesses that pin pages, unmap)
 * until it is killed after a random delay of up to 3 ms from its first call. After each kill the harness,
 * itself a client with its own iommufd, checks through MD_CHECK_REFS (which counts every live pin in the
 * server) that no page of the memfd is still pinned once the victim's last fd is gone (release after an exit
 * is asynchronous: it waits up to 5 s), and that its own context still works. Bounded in time: ROUNDS rounds
 * (default 1000) or LIMIT_S seconds (default 60), whichever comes first; at least 50 rounds must run. Exit 0
 * when every round was clean. */
#define _GNU_SOURCE /* before any system header, as abi.h needs it */
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "../abi/abi.h"

#define FILE_SZ (8 * PAGE_SZ)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The victim: never returns; everything it does may be cut short by SIGKILL at any instruction. */
static void victim(int mfd, unsigned seed, int ready) {
  int fd = open("/dev/iommu", O_RDWR);
  if (fd < 0) _exit(2);
  uint8_t* mine = (uint8_t*)alloc_buffer(FILE_SZ);
  uint32_t ioas[4] = {0};
  /* Connected and with something to release: from here on the kill lands inside the sequence. */
  ioas_alloc(fd, &ioas[0]);
  if (write(ready, "r", 1) != 1) _exit(3);
  int acc = -1;
  for (;;) {
    const unsigned op = (unsigned)rand_r(&seed) % 8, k = (unsigned)rand_r(&seed) % 4;
    uint64_t iova = 0;
    switch (op) {
      case 0:
        if (!ioas[k]) ioas_alloc(fd, &ioas[k]);
        break;
      case 1:
        if (ioas[k]) mock_domain(fd, ioas[k], NULL, NULL, NULL);
        break;
      case 2:
        if (ioas[k]) ioas_map_file(fd, ioas[k], MAP_RW, mfd, 0, FILE_SZ, &iova);
        break;
      case 3:
        if (ioas[k]) ioas_map(fd, ioas[k], mine, FILE_SZ, &iova, 0);
        break;
      case 4:
        if (ioas[k] && acc < 0) create_access(fd, ioas[k], MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &acc);
        break;
      case 5:
        if (acc >= 0) {
          uint32_t id = 0;
          access_pages(fd, acc, 0, MOCK_APERTURE_START, PAGE_SZ, mine, &id);
        }
        break;
      case 6:
        if (ioas[k]) ioas_unmap(fd, ioas[k], 0, UINT64_MAX, NULL);
        break;
      default:
        if (acc >= 0 && (k & 1)) {
          close(acc);
          acc = -1;
        }
        break;
    }
  }
}

int main(void) {
  const char* rounds_env = getenv("ROUNDS");
  const char* limit_env = getenv("LIMIT_S");
  const long rounds = rounds_env ? atol(rounds_env) : 1000;
  const double limit = limit_env ? atof(limit_env) : 60.0;
  const unsigned base_seed = (unsigned)time(NULL);
  printf("note: seed %u\n", base_seed);

  int mfd = (int)syscall(SYS_memfd_create, "kill_clients", 0);
  require("memfd", mfd >= 0 && ftruncate(mfd, (off_t)FILE_SZ) == 0);
  uint8_t* view = (uint8_t*)mmap(NULL, FILE_SZ, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  require("mmap", view != MAP_FAILED);
  int fd = open_iommufd();

  const double start = now_s();
  long done = 0, leaked = 0, broken = 0, started = 0, pinned_at_kill = 0;
  for (; done < rounds && now_s() - start < limit; done++) {
    unsigned seed = base_seed + (unsigned)done;
    int ready[2];
    require("pipe", pipe(ready) == 0);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
      close(ready[0]);
      victim(mfd, seed, ready[1]);
    }
    if (child < 0) break;
    close(ready[1]);
    char r = 0;
    if (read(ready[0], &r, 1) == 1) started++;
    close(ready[0]);
    struct timespec delay = {0, (long)(rand_r(&seed) % 3000) * 1000};
    nanosleep(&delay, NULL);
    if (check_refs(fd, view, FILE_SZ, 0) != 0) pinned_at_kill++; /* the victim holds pins of the memfd */
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    /* The victim's pins of the memfd go when the server releases its context. */
    int clean = 0;
    for (int tries = 0; tries < 500 && !clean; tries++) {
      clean = check_refs(fd, view, FILE_SZ, 0) == 0;
      if (!clean) usleep(10000);
    }
    if (!clean && leaked++ < 5)
      printf("round %ld (seed %u): pages still pinned after the victim died\n", done,
             base_seed + (unsigned)done);
    uint32_t id = 0;
    if (ioas_alloc(fd, &id) != 0 || destroy_id(fd, id) != 0) {
      if (broken++ < 5) printf("round %ld: the harness's own context failed\n", done);
    }
  }
  printf("step rounds: %s\n", done >= 50 ? "at least 50" : "too few");
  check_u64("leaked_rounds", "count", (uint64_t)leaked, 0);
  check_u64("broken_rounds", "count", (uint64_t)broken, 0);
  check_u64("victims_started", "all", (uint64_t)(started == done), 1);
  /* The kills must land while pins exist, or the check above proves nothing. */
  check_u64("pinned_at_kill", "some", (uint64_t)(pinned_at_kill > 0), 1);
  printf("note: %ld rounds in %.1f s, %ld killed while holding pins\n", done, now_s() - start,
         pinned_at_kill);
  if (done < 50) abi_failures++;
  return abi_finish();
}
