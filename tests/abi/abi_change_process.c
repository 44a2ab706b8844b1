/* IOMMU_IOAS_CHANGE_PROCESS: the caller takes over the memory accounting of every area of every IOAS of the
 * iommufd, which only works when every area is file-backed (IOMMU_IOAS_MAP_FILE). The steps cover the
 * argument checks, the EINVAL of user memory and dma-buf-free contexts, the command repeated, a forked
 * child taking over through the inherited fd, the parent taking back, and that mappings, pins and domain
 * contents are untouched by every call, failed or not. */
#define _GNU_SOURCE /* before any system header, as abi.h needs it */
#include <sys/syscall.h>
#include <sys/wait.h>

#include "abi.h"

#define BUF_PAGES 4
#define BUF_SZ (BUF_PAGES * PAGE_SZ)

static int change_process(int fd, uint32_t size, uint32_t reserved) {
  struct {
    struct iommu_ioas_change_process cmd;
    uint64_t tail;
  } c = {.cmd = {.size = size, .__reserved = reserved}};
  return abi_ioctl(fd, IOMMU_IOAS_CHANGE_PROCESS, &c);
}

int main(void) {
  int fd = open_iommufd();
  const uint32_t sz = sizeof(struct iommu_ioas_change_process);

  /* Without any IOAS there is nothing to move. */
  check_rc("empty_context", change_process(fd, sz, 0), OK);
  check_rc("reserved", change_process(fd, sz, 1), ERR(EOPNOTSUPP));
  check_rc("short_size", change_process(fd, sz - 1, 0), ERR(EINVAL));
  check_rc("longer_size_zero_tail", change_process(fd, sz + 8, 0), OK);

  uint32_t ioas = 0, other = 0, hwpt = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  require("other_alloc", check_rc("other_alloc", ioas_alloc(fd, &other), OK));
  check_rc("empty_ioases", change_process(fd, sz, 0), OK);
  require("mock_domain", check_rc("mock_domain", mock_domain(fd, ioas, NULL, &hwpt, NULL), OK));

  /* User memory cannot follow a process: EINVAL, whichever IOAS holds it. */
  uint8_t* buf = (uint8_t*)alloc_buffer(BUF_SZ);
  uint64_t user_iova = 0;
  check_rc("map_user_other", ioas_map(fd, other, buf, PAGE_SZ, &user_iova, 0), OK);
  check_rc("user_area", change_process(fd, sz, 0), ERR(EINVAL));
  check_rc("unmap_user_other", ioas_unmap(fd, other, user_iova, PAGE_SZ, NULL), OK);
  check_rc("after_user_unmapped", change_process(fd, sz, 0), OK);

  int mfd = (int)syscall(SYS_memfd_create, "abi_change_process", 0);
  require("memfd", mfd >= 0 && ftruncate(mfd, (off_t)BUF_SZ) == 0);
  uint8_t* view = (uint8_t*)mmap(NULL, BUF_SZ, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  require("mmap", view != MAP_FAILED);
  uint64_t file_iova = 0;
  require("map_file", check_rc("map_file", ioas_map_file(fd, ioas, MAP_RW, mfd, 0, BUF_SZ, &file_iova), OK));
  uint64_t copy_iova = 0;
  struct iommu_ioas_copy cp = {.size = sizeof(cp),
                               .flags = MAP_RW,
                               .dst_ioas_id = other,
                               .src_ioas_id = ioas,
                               .length = BUF_SZ,
                               .src_iova = file_iova};
  check_rc("copy_file_area", abi_ioctl(fd, IOMMU_IOAS_COPY, &cp), OK);
  copy_iova = cp.dst_iova;
  check_rc("file_areas", change_process(fd, sz, 0), OK);
  check_rc("file_areas_again", change_process(fd, sz, 0), OK);
  check_rc("check_map_after", check_map(fd, hwpt, file_iova, view, BUF_SZ), OK);
  check_rc("refs_after", check_refs(fd, view, BUF_SZ, 1), OK);

  /* A user area beside the file ones fails the whole command and changes nothing. */
  user_iova = 0;
  check_rc("map_user_beside", ioas_map(fd, ioas, buf, PAGE_SZ, &user_iova, 0), OK);
  check_rc("mixed_areas", change_process(fd, sz, 0), ERR(EINVAL));
  check_rc("mixed_check_map", check_map(fd, hwpt, file_iova, view, BUF_SZ), OK);
  check_rc("unmap_user_beside", ioas_unmap(fd, ioas, user_iova, PAGE_SZ, NULL), OK);

  /* A forked child takes over through the inherited fd; its exit leaves the mappings usable. */
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    int r = change_process(fd, sz, 0);
    _exit(r == 0 ? 0 : 10 + (-r & 0x7f));
  }
  int status = -1;
  require("waitpid", waitpid(child, &status, 0) == child);
  check_u64("child_change_process", "exit", WIFEXITED(status) ? (uint64_t)WEXITSTATUS(status) : 255, 0);
  uint32_t hwpt2 = 0;
  check_rc("attach_after_child", mock_domain(fd, ioas, NULL, &hwpt2, NULL), OK);
  check_rc("check_map_after_child", check_map(fd, hwpt2, file_iova, view, BUF_SZ), OK);
  check_rc("parent_takes_back", change_process(fd, sz, 0), OK);

  check_rc("unmap_copy", ioas_unmap(fd, other, copy_iova, BUF_SZ, NULL), OK);
  check_rc("unmap_file", ioas_unmap(fd, ioas, file_iova, BUF_SZ, NULL), OK);
  check_rc("refs_end", check_refs(fd, view, BUF_SZ, 0), OK);
  check_rc("end_empty", change_process(fd, sz, 0), OK);
  return abi_finish();
}
