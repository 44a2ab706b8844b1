/* VFIO container compatibility on an iommufd (docs/semantics.md#vfio-compat,
 * docs/abi.md#vfio-return-values): version, extensions, SET_IOMMU, GET_INFO with its capability chain,
 * MAP_DMA and UNMAP_DMA including UNMAP_ALL and the TYPE1 cut. The compat IOAS is set with IOMMU_VFIO_IOAS,
 * since no VFIO group exists here. */
#include "abi.h"

static int vfio_val(int fd, unsigned long cmd, unsigned long v) { return abi_ioctl(fd, cmd, (void*)v); }

static int map_dma(int fd, uint32_t flags, const void* va, uint64_t iova, uint64_t size, uint32_t argsz) {
  struct vfio_iommu_type1_dma_map m = {
      .argsz = argsz, .flags = flags, .vaddr = (uintptr_t)va, .iova = iova, .size = size};
  return abi_ioctl(fd, VFIO_IOMMU_MAP_DMA, &m);
}

static int unmap_dma(int fd, uint32_t flags, uint64_t iova, uint64_t size, uint64_t* out) {
  struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof(u), .flags = flags, .iova = iova, .size = size};
  int r = abi_ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u);
  *out = u.size;
  return r;
}

static int vfio_ioas(int fd, uint16_t op, uint32_t* id) {
  struct iommu_vfio_ioas c = {.size = sizeof(c), .ioas_id = *id, .op = op};
  int r = abi_ioctl(fd, IOMMU_VFIO_IOAS, &c);
  *id = c.ioas_id;
  return r;
}

int main(void) {
  int fd = open_iommufd();
  uint8_t* buf = (uint8_t*)alloc_buffer(0x20000);
  const uint32_t rw = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  uint64_t out = 0;
  uint32_t id = 0;

  check_rc("get_api_version", vfio_val(fd, VFIO_GET_API_VERSION, 0), 0);
  check_rc("ext_type1", vfio_val(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU), 1);
  check_rc("ext_type1v2", vfio_val(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 1);
  check_rc("ext_unmap_all", vfio_val(fd, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL), 1);
  check_rc("ext_update_vaddr", vfio_val(fd, VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR), 0);
  check_rc("ext_nesting", vfio_val(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1_NESTING_IOMMU), 0);
  check_rc("ext_unknown", vfio_val(fd, VFIO_CHECK_EXTENSION, 999), 0);
  check_rc("ext_cc_no_ioas", vfio_val(fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU), ERR(ENODEV));

  check_rc("set_iommu_bad_type", vfio_val(fd, VFIO_SET_IOMMU, 5), ERR(EINVAL));
  check_rc("set_iommu_no_ioas", vfio_val(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), ERR(ENODEV));
  check_rc("map_dma_no_ioas", map_dma(fd, rw, buf, 0x100000, 0x1000, 32), ERR(ENODEV));
  check_rc("unmap_dma_no_ioas", unmap_dma(fd, 0, 0x100000, 0x1000, &out), ERR(ENODEV));
  struct vfio_iommu_type1_info info0 = {.argsz = sizeof(info0)};
  check_rc("get_info_no_ioas", abi_ioctl(fd, VFIO_IOMMU_GET_INFO, &info0), ERR(ENODEV));
  check_rc("vfio_ioas_get_none", vfio_ioas(fd, IOMMU_VFIO_IOAS_GET, &id), ERR(ENODEV));
  check_rc("dirty_pages_unsupported", abi_ioctl(fd, ABI_IO(117), &info0), ERR(ENOTTY));

  uint32_t ioas = 0;
  require("alloc", ioas_alloc(fd, &ioas) == 0);
  id = 99;
  check_rc("vfio_ioas_set_unknown", vfio_ioas(fd, IOMMU_VFIO_IOAS_SET, &id), ERR(ENOENT));
  id = ioas;
  check_rc("vfio_ioas_set", vfio_ioas(fd, IOMMU_VFIO_IOAS_SET, &id), OK);
  id = 0;
  check_rc("vfio_ioas_get", vfio_ioas(fd, IOMMU_VFIO_IOAS_GET, &id), OK);
  check_u64("vfio_ioas_get", "ioas_id", id, ioas);
  check_rc("vfio_ioas_bad_op", vfio_ioas(fd, 3, &id), ERR(EOPNOTSUPP));
  struct iommu_vfio_ioas rsv = {.size = sizeof(rsv), .op = IOMMU_VFIO_IOAS_GET, .__reserved = 1};
  check_rc("vfio_ioas_reserved", abi_ioctl(fd, IOMMU_VFIO_IOAS, &rsv), ERR(EOPNOTSUPP));

  check_rc("ext_cc_no_hwpt", vfio_val(fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU), 1);
  check_rc("set_iommu_type1v2", vfio_val(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), 0);

  /* GET_INFO: too small, header only (argsz reports the full size), and the whole chain. */
  /* The minimum is the end of iova_pgsizes (16); only min(argsz, 24) bytes of the header are written. */
  struct vfio_iommu_type1_info small = {.argsz = 15};
  check_rc("get_info_argsz_below_min", abi_ioctl(fd, VFIO_IOMMU_GET_INFO, &small), ERR(EINVAL));
  struct vfio_iommu_type1_info min16 = {.argsz = 16, .cap_offset = 0x55};
  check_rc("get_info_argsz_min", abi_ioctl(fd, VFIO_IOMMU_GET_INFO, &min16), OK);
  check_u64("get_info_argsz_min", "argsz", min16.argsz, 72);
  check_u64("get_info_argsz_min", "cap_offset_untouched", min16.cap_offset, 0x55);
  struct vfio_iommu_type1_info hdr = {.argsz = sizeof(hdr)};
  check_rc("get_info_header_only", abi_ioctl(fd, VFIO_IOMMU_GET_INFO, &hdr), OK);
  check_u64("get_info_header_only", "argsz", hdr.argsz, 72);
  check_u64("get_info_header_only", "flags", hdr.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
  check_u64("get_info_header_only", "cap_offset", hdr.cap_offset, 0);
  check_u64("get_info_header_only", "iova_pgsizes", hdr.iova_pgsizes, ~(PAGE_SZ - 1));

  union {
    struct vfio_iommu_type1_info info;
    uint8_t raw[256];
  } u;
  memset(&u, 0, sizeof(u));
  u.info.argsz = sizeof(u);
  check_rc("get_info_full", abi_ioctl(fd, VFIO_IOMMU_GET_INFO, &u), OK);
  check_u64("get_info_full", "argsz", u.info.argsz, 72);
  check_u64("get_info_full", "cap_offset", u.info.cap_offset, 24);
  struct vfio_iommu_type1_info_dma_avail* dma = (struct vfio_iommu_type1_info_dma_avail*)(u.raw + 24);
  check_u64("get_info_full", "cap0_id", dma->header.id, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
  check_u64("get_info_full", "cap0_version", dma->header.version, 1);
  check_u64("get_info_full", "cap0_next", dma->header.next, 40);
  check_u64("get_info_full", "cap0_avail", dma->avail, 0xffffffffu);
  struct vfio_iommu_type1_info_cap_iova_range* rng =
      (struct vfio_iommu_type1_info_cap_iova_range*)(u.raw + 40);
  check_u64("get_info_full", "cap1_id", rng->header.id, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
  check_u64("get_info_full", "cap1_version", rng->header.version, 1);
  check_u64("get_info_full", "cap1_next", rng->header.next, 0);
  check_u64("get_info_full", "cap1_nr_iovas", rng->nr_iovas, 1);
  check_u64("get_info_full", "cap1_start0", rng->iova_ranges[0].start, 0);
  check_u64("get_info_full", "cap1_end0", rng->iova_ranges[0].end, ~0ULL);

  /* MAP_DMA / UNMAP_DMA (TYPE1v2: no cutting). */
  check_rc("map_dma", map_dma(fd, rw, buf, 0x100000, 0x4000, 32), OK);
  check_rc("map_dma_overlap", map_dma(fd, rw, buf, 0x102000, 0x4000, 32), ERR(EEXIST));
  check_rc("map_dma_vaddr_flag", map_dma(fd, rw | VFIO_DMA_MAP_FLAG_VADDR, buf, 0x200000, 0x1000, 32),
           ERR(EINVAL));
  check_rc("map_dma_argsz_short", map_dma(fd, rw, buf, 0x200000, 0x1000, 31), ERR(EINVAL));
  check_rc("map_dma_zero_size", map_dma(fd, rw, buf, 0x200000, 0, 32), ERR(EINVAL));
  out = 7;
  check_rc("unmap_dma_sub_range_v2", unmap_dma(fd, 0, 0x101000, 0x1000, &out), ERR(ENOENT));
  check_u64("unmap_dma_sub_range_v2", "size", out, 0);
  out = 7;
  check_rc("unmap_dma_empty", unmap_dma(fd, 0, 0x300000, 0x1000, &out), OK);
  check_u64("unmap_dma_empty", "size", out, 0);
  check_rc("unmap_dma_bad_flag", unmap_dma(fd, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, 0x100000, 0x4000, &out),
           ERR(EINVAL));
  check_rc("unmap_all_with_range", unmap_dma(fd, VFIO_DMA_UNMAP_FLAG_ALL, 0x100000, 0x4000, &out),
           ERR(EINVAL));
  out = 0;
  check_rc("unmap_dma_exact", unmap_dma(fd, 0, 0x100000, 0x4000, &out), OK);
  check_u64("unmap_dma_exact", "size", out, 0x4000);

  /* TYPE1 disables large pages and then allows unmapping any sub-range: the area is cut. */
  check_rc("set_iommu_type1", vfio_val(fd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), 0);
  check_rc("map_dma_type1", map_dma(fd, rw, buf, 0x100000, 0x8000, 32), OK);
  out = 0;
  check_rc("unmap_dma_middle_cut", unmap_dma(fd, 0, 0x102000, 0x2000, &out), OK);
  check_u64("unmap_dma_middle_cut", "size", out, 0x2000);
  out = 0;
  check_rc("unmap_dma_head_cut", unmap_dma(fd, 0, 0x100000, 0x1000, &out), OK);
  check_u64("unmap_dma_head_cut", "size", out, 0x1000);
  check_rc("remap_hole", map_dma(fd, rw, buf + 0x2000, 0x102000, 0x2000, 32), OK);
  out = 0;
  check_rc("unmap_dma_all", unmap_dma(fd, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0, &out), OK);
  check_u64("unmap_dma_all", "size", out, 0x1000 + 0x2000 + 0x4000);

  id = 0;
  check_rc("vfio_ioas_clear", vfio_ioas(fd, IOMMU_VFIO_IOAS_CLEAR, &id), OK);
  check_rc("map_dma_after_clear", map_dma(fd, rw, buf, 0x100000, 0x1000, 32), ERR(ENODEV));
  /* Destroying the compat IOAS clears the pointer too. */
  id = ioas;
  check_rc("vfio_ioas_set_again", vfio_ioas(fd, IOMMU_VFIO_IOAS_SET, &id), OK);
  check_rc("destroy_compat_ioas", destroy_id(fd, ioas), OK);
  check_rc("vfio_ioas_get_after_destroy", vfio_ioas(fd, IOMMU_VFIO_IOAS_GET, &id), ERR(ENODEV));

  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
