/* The program of trace.passthrough_here: what it gets from /dev/iommu and from its fail-nth file, which
 * `uiommufd trace --passthrough` must leave to the kernel (check_passthrough.py compares each answer with
 * the kernel's own). With an iommufd it also allocates and destroys an IOAS, dups and closes; and it makes
 * an iommufd-type ioctl on /dev/null, which is not the kernel's iommufd and must not be traced. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static const char* answer(int rc) { return rc >= 0 ? "ok" : strerrorname_np(errno); }

int main(void) {
  int fd = open("/dev/iommu", O_RDWR);
  printf("iommu: %s\n", answer(fd));
  if (fd >= 0) {
    struct {
      uint32_t size, flags, out_ioas_id;
    } alloc = {12, 0, 0};
    printf("ioas_alloc: %s\n", answer(ioctl(fd, (';' << 8) | 0x81, &alloc))); /* IOMMU_IOAS_ALLOC */
    struct {
      uint32_t size, id;
    } destroy = {8, alloc.out_ioas_id};
    printf("destroy: %s\n", answer(ioctl(fd, (';' << 8) | 0x80, &destroy))); /* IOMMU_DESTROY */
    int copy = dup(fd);
    printf("dup: %s\n", answer(copy));
    close(copy);
    close(fd);
  }
  int nth = open("/proc/thread-self/fail-nth", O_RDWR);
  printf("fail-nth: %s\n", answer(nth));
  if (nth >= 0) close(nth);
  int null = open("/dev/null", O_RDWR);
  printf("null_ioctl: %s\n", answer(ioctl(null, (';' << 8) | 0x64, 0))); /* VFIO_GET_API_VERSION */
  close(null);
  return 0;
}
