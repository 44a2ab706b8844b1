/* A program killed by SIGKILL right after its calls: the trace still has them (the records were in the
 * trace ring, which outlives the process: docs/trace.md#ring). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void) {
  int fd = open("/dev/iommu", O_RDWR);
  if (fd < 0) return 1;
  struct {
    uint32_t size, flags, out_ioas_id;
  } alloc = {12, 0, 0};
  if (ioctl(fd, (';' << 8) | 0x81, &alloc) != 0) return 2; /* IOMMU_IOAS_ALLOC */
  struct {
    uint32_t size, id;
  } destroy = {8, alloc.out_ioas_id};
  if (ioctl(fd, (';' << 8) | 0x80, &destroy) != 0) return 3; /* IOMMU_DESTROY */
  kill(getpid(), SIGKILL);
  return 4;
}
