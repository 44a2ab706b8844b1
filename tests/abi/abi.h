/* The /dev/iommu ABI as a plain C program sees it, written from the kernel's uapi headers
 * (include/uapi/linux/iommufd.h, include/uapi/linux/vfio.h, drivers/iommu/iommufd/iommufd_test.h), plus
 * the small reporting harness every conformance program shares.
 *
 * Deliberately independent of the project's C++ headers: these programs must check the ABI the way an
 * unmodified program uses it, so a wrong layout in our own definitions cannot hide itself here.
 *
 * Output is one line per step, stable across runs and diffable against a real kernel:
 *   step <name>: ret=<r> errno=<NAME> [<field>=<value> ...]
 * A mismatch adds `FAIL <name>: expected ..., got ...`; abi_finish() exits non-zero if any step failed. */
#ifndef UIOMMUFD_TESTS_ABI_ABI_H
#define UIOMMUFD_TESTS_ABI_ABI_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- encoding: every command is _IO(';', nr) ---------------------------------------------------------- */
#define ABI_IO(nr) ((unsigned long)((';' << 8) | (nr)))

#define IOMMU_DESTROY ABI_IO(0x80)
#define IOMMU_IOAS_ALLOC ABI_IO(0x81)
#define IOMMU_IOAS_ALLOW_IOVAS ABI_IO(0x82)
#define IOMMU_IOAS_COPY ABI_IO(0x83)
#define IOMMU_IOAS_IOVA_RANGES ABI_IO(0x84)
#define IOMMU_IOAS_MAP ABI_IO(0x85)
#define IOMMU_IOAS_UNMAP ABI_IO(0x86)
#define IOMMU_OPTION ABI_IO(0x87)
#define IOMMU_VFIO_IOAS ABI_IO(0x88)
#define IOMMU_HWPT_ALLOC ABI_IO(0x89)
#define IOMMU_GET_HW_INFO ABI_IO(0x8a)
#define IOMMU_HWPT_SET_DIRTY_TRACKING ABI_IO(0x8b)
#define IOMMU_HWPT_GET_DIRTY_BITMAP ABI_IO(0x8c)
#define IOMMU_HWPT_INVALIDATE ABI_IO(0x8d)
#define IOMMU_IOAS_MAP_FILE ABI_IO(0x8f)
#define IOMMU_IOAS_CHANGE_PROCESS ABI_IO(0x92)
#define IOMMU_TEST_CMD ABI_IO(0xa0)

#define VFIO_GET_API_VERSION ABI_IO(100)
#define VFIO_CHECK_EXTENSION ABI_IO(101)
#define VFIO_SET_IOMMU ABI_IO(102)
#define VFIO_IOMMU_GET_INFO ABI_IO(112)
#define VFIO_IOMMU_MAP_DMA ABI_IO(113)
#define VFIO_IOMMU_UNMAP_DMA ABI_IO(114)
#define VFIO_IOMMU_DIRTY_PAGES ABI_IO(117)

/* ---- iommufd structs ---------------------------------------------------------------------------------- */
struct iommu_destroy {
  uint32_t size;
  uint32_t id;
};

struct iommu_ioas_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t out_ioas_id;
};

struct iommu_iova_range {
  uint64_t start;
  uint64_t last;
};

struct iommu_ioas_allow_iovas {
  uint32_t size;
  uint32_t ioas_id;
  uint32_t num_iovas;
  uint32_t __reserved;
  uint64_t allowed_iovas;
};

enum {
  IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
  IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
  IOMMU_IOAS_MAP_READABLE = 1 << 2,
};
#define MAP_RW (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)

struct iommu_ioas_copy {
  uint32_t size;
  uint32_t flags;
  uint32_t dst_ioas_id;
  uint32_t src_ioas_id;
  uint64_t length;
  uint64_t dst_iova;
  uint64_t src_iova;
};

struct iommu_ioas_iova_ranges {
  uint32_t size;
  uint32_t ioas_id;
  uint32_t num_iovas;
  uint32_t __reserved;
  uint64_t allowed_iovas;
  uint64_t out_iova_alignment;
};

struct iommu_ioas_map {
  uint32_t size;
  uint32_t flags;
  uint32_t ioas_id;
  uint32_t __reserved;
  uint64_t user_va;
  uint64_t length;
  uint64_t iova;
};

struct iommu_ioas_map_file {
  uint32_t size;
  uint32_t flags;
  uint32_t ioas_id;
  int32_t fd;
  uint64_t start;
  uint64_t length;
  uint64_t iova;
};

struct iommu_ioas_change_process {
  uint32_t size;
  uint32_t __reserved;
};

struct iommu_ioas_unmap {
  uint32_t size;
  uint32_t ioas_id;
  uint64_t iova;
  uint64_t length;
};

enum { IOMMU_OPTION_RLIMIT_MODE = 0, IOMMU_OPTION_HUGE_PAGES = 1 };
enum { IOMMU_OPTION_OP_SET = 0, IOMMU_OPTION_OP_GET = 1 };

struct iommu_option {
  uint32_t size;
  uint32_t option_id;
  uint16_t op;
  uint16_t __reserved;
  uint32_t object_id;
  uint64_t val64;
};

enum { IOMMU_VFIO_IOAS_GET = 0, IOMMU_VFIO_IOAS_SET = 1, IOMMU_VFIO_IOAS_CLEAR = 2 };

struct iommu_vfio_ioas {
  uint32_t size;
  uint32_t ioas_id;
  uint16_t op;
  uint16_t __reserved;
};

/* ---- IOMMU_TEST_CMD ----------------------------------------------------------------------------------- */
enum {
  IOMMU_TEST_OP_ADD_RESERVED = 1,
  IOMMU_TEST_OP_MOCK_DOMAIN = 2,
  IOMMU_TEST_OP_MD_CHECK_MAP = 3,
  IOMMU_TEST_OP_MD_CHECK_REFS = 4,
  IOMMU_TEST_OP_CREATE_ACCESS = 5,
  IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6,
  IOMMU_TEST_OP_ACCESS_PAGES = 7,
  IOMMU_TEST_OP_ACCESS_RW = 8,
  IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9,
  IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10,
  IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11,
  IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12,
  IOMMU_TEST_OP_DIRTY = 13,
  IOMMU_TEST_OP_MD_CHECK_IOTLB = 14,
  IOMMU_TEST_OP_TRIGGER_IOPF = 15,
  IOMMU_TEST_OP_DEV_CHECK_CACHE = 16,
  IOMMU_TEST_OP_TRIGGER_VEVENT = 17,
  IOMMU_TEST_OP_PASID_ATTACH = 18,
  IOMMU_TEST_OP_PASID_REPLACE = 19,
  IOMMU_TEST_OP_PASID_DETACH = 20,
  IOMMU_TEST_OP_PASID_CHECK_HWPT = 21,
};
#define MOCK_APERTURE_START (1ULL << 24)
#define MOCK_APERTURE_LAST ((1ULL << 31) - 1)
enum { MOCK_FLAGS_ACCESS_WRITE = 1 << 0, MOCK_FLAGS_ACCESS_SYZ = 1 << 16 };
enum { MOCK_ACCESS_RW_WRITE = 1 << 0, MOCK_ACCESS_RW_SLOW_PATH = 1 << 2 };
enum { MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0 };

/* The union members shared by both layouts (all of the v6.2 ops fit in its 32 bytes). */
union iommu_test_cmd_args {
  struct {
    uint64_t start;
    uint64_t length;
  } add_reserved;
  struct {
    uint32_t out_stdev_id; /* v6.2: out_device_id */
    uint32_t out_hwpt_id;
    uint32_t out_idev_id; /* newest only */
  } mock_domain;
  struct {
    uint64_t iova;
    uint64_t length;
    uint64_t uptr;
  } check_map;
  struct {
    uint64_t length;
    uint64_t uptr;
    uint32_t refs;
  } check_refs;
  struct {
    uint32_t out_access_fd;
    uint32_t flags;
  } create_access;
  struct {
    uint32_t access_pages_id;
  } destroy_access_pages;
  struct {
    uint32_t flags;
    uint32_t out_access_pages_id;
    uint64_t iova;
    uint64_t length;
    uint64_t uptr;
  } access_pages;
  struct {
    uint64_t iova;
    uint64_t length;
    uint64_t uptr;
    uint32_t flags;
  } access_rw;
  struct {
    uint32_t limit;
  } memory_limit;
  struct {
    uint32_t pt_id;
  } mock_domain_replace;
  struct {
    uint32_t ioas_id;
  } access_replace_ioas;
  struct {
    uint32_t out_stdev_id;
    uint32_t out_hwpt_id;
    uint32_t out_idev_id;
    uint32_t dev_flags;
  } mock_domain_flags;
  struct {
    uint32_t id;
    uint32_t iotlb;
  } check_iotlb;
  struct {
    uint32_t id;
    uint32_t cache;
  } check_dev_cache;
  struct {
    uint32_t pasid;
    uint32_t pt_id; /* in: an IOAS or HWPT; out: the HWPT attached */
  } pasid_attach;   /* also PASID_REPLACE */
  struct {
    uint32_t pasid;
  } pasid_detach;
  struct {
    uint32_t pasid;
    uint32_t hwpt_id; /* 0: check that the PASID is detached */
  } pasid_check;
};

/* IOMMU_TEST_OP_DIRTY: the member that made the newest union 48 bytes. Bit i of the bitmap at `uptr` asks
 * for the mock PTE at iova + i * page_size to be marked dirty; out_nr_dirty is how many bits were set. */
struct iommu_test_cmd_dirty {
  uint32_t flags;
  uint32_t __pad;
  uint64_t iova;
  uint64_t length;
  uint64_t page_size;
  uint64_t uptr;
  uint64_t out_nr_dirty;
};

/* Newest layout: the union grew to 48 bytes (the dirty-tracking member). */
struct iommu_test_cmd {
  uint32_t size;
  uint32_t op;
  uint32_t id;
  uint32_t __reserved;
  union {
    union iommu_test_cmd_args a;
    struct iommu_test_cmd_dirty dirty;
    uint8_t newest_union[48];
  };
  uint32_t last;
};

/* The v6.2 layout: a 32-byte union. */
struct iommu_test_cmd_v62 {
  uint32_t size;
  uint32_t op;
  uint32_t id;
  uint32_t __reserved;
  union iommu_test_cmd_args a;
  uint32_t last;
};

/* ---- newest page-table ABI (include/uapi/linux/iommufd.h, iommufd_test.h) ------------------------------ */
enum {
  MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0,
  MOCK_FLAGS_DEVICE_PASID = 1 << 2,
};
enum { MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3, MOCK_NESTED_DOMAIN_IOTLB_NUM = 4 };
enum { MOCK_DEV_CACHE_ID_MAX = 3, MOCK_DEV_CACHE_NUM = 4 };
enum { MOCK_IOMMUPT_DEFAULT = 0, MOCK_IOMMUPT_HUGE = 1 };
#define MOCK_PASID_WIDTH 20
#define IOMMU_TEST_PASID_RESERVED 1024
#define IOMMU_HW_INFO_TYPE_SELFTEST 0xfeedbeefu
#define IOMMU_HW_INFO_SELFTEST_REGVAL 0xdeadbeefu
#define IOMMU_HWPT_DATA_SELFTEST 0xdeadu
#define IOMMU_TEST_IOTLB_DEFAULT 0xbadbeefu
#define IOMMU_TEST_DEV_CACHE_DEFAULT 0xbaddadu
#define IOMMU_HWPT_INVALIDATE_DATA_SELFTEST 0xdeadbeefu
#define IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID 0xdadbeefu
#define IOMMU_TEST_INVALIDATE_FLAG_ALL (1u << 0)
#define IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX (1u << 19)

enum {
  IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1,
  IOMMU_HWPT_FAULT_ID_VALID = 1 << 2,
  IOMMU_HWPT_ALLOC_PASID = 1 << 3,
};
enum { IOMMU_HWPT_DATA_NONE = 0, IOMMU_HWPT_DATA_VTD_S1 = 1, IOMMU_HWPT_DATA_ARM_SMMUV3 = 2 };

struct iommu_hwpt_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t dev_id;
  uint32_t pt_id;
  uint32_t out_hwpt_id;
  uint32_t __reserved;
  uint32_t data_type;
  uint32_t data_len;
  uint64_t data_uptr;
  uint32_t fault_id;
  uint32_t __reserved2;
};

struct iommu_hwpt_selftest {
  uint32_t iotlb;
  uint32_t pagetable_type;
};

enum { IOMMU_HW_INFO_TYPE_NONE = 0, IOMMU_HW_INFO_TYPE_DEFAULT = 0 };
enum { IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0 };
enum {
  IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0,
  IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1,
  IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2,
  IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1 << 3,
};

struct iommu_hw_info {
  uint32_t size;
  uint32_t flags;
  uint32_t dev_id;
  uint32_t data_len;
  uint64_t data_uptr;
  uint32_t in_data_type; /* out_data_type on return */
  uint8_t out_max_pasid_log2;
  uint8_t __reserved[3];
  uint64_t out_capabilities;
};

struct iommu_test_hw_info {
  uint32_t flags;
  uint32_t test_reg;
};

struct iommu_hwpt_invalidate {
  uint32_t size;
  uint32_t hwpt_id;
  uint64_t data_uptr;
  uint32_t data_type;
  uint32_t entry_len;
  uint32_t entry_num;
  uint32_t __reserved;
};

struct iommu_hwpt_invalidate_selftest {
  uint32_t flags;
  uint32_t iotlb_id;
};

enum { IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1 };
enum { IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1 };

struct iommu_hwpt_set_dirty_tracking {
  uint32_t size;
  uint32_t flags;
  uint32_t hwpt_id;
  uint32_t __reserved;
};

struct iommu_hwpt_get_dirty_bitmap {
  uint32_t size;
  uint32_t hwpt_id;
  uint32_t flags;
  uint32_t __reserved;
  uint64_t iova;
  uint64_t length;
  uint64_t page_size;
  uint64_t data;
};

_Static_assert(sizeof(struct iommu_hwpt_alloc) == 48, "hwpt_alloc");
_Static_assert(offsetof(struct iommu_hwpt_alloc, data_uptr) == 32, "hwpt_alloc.data_uptr");
_Static_assert(sizeof(struct iommu_hw_info) == 40, "hw_info");
_Static_assert(offsetof(struct iommu_hw_info, out_max_pasid_log2) == 28, "hw_info.out_max_pasid_log2");
_Static_assert(offsetof(struct iommu_hw_info, out_capabilities) == 32, "hw_info.out_capabilities");
_Static_assert(sizeof(struct iommu_hwpt_invalidate) == 32, "hwpt_invalidate");
_Static_assert(sizeof(struct iommu_hwpt_set_dirty_tracking) == 16, "hwpt_set_dirty_tracking");
_Static_assert(sizeof(struct iommu_hwpt_get_dirty_bitmap) == 48, "hwpt_get_dirty_bitmap");
_Static_assert(offsetof(struct iommu_hwpt_get_dirty_bitmap, data) == 40, "hwpt_get_dirty_bitmap.data");
_Static_assert(sizeof(struct iommu_test_cmd_dirty) == 48, "test cmd dirty member is 48 bytes");
_Static_assert(offsetof(struct iommu_test_cmd, dirty.iova) == 24, "test cmd dirty.iova at 24");
_Static_assert(offsetof(struct iommu_test_cmd, dirty.out_nr_dirty) == 56,
               "test cmd dirty.out_nr_dirty at 56");

_Static_assert(sizeof(struct iommu_test_cmd) == 72, "newest test cmd is 72 bytes");
_Static_assert(offsetof(struct iommu_test_cmd, last) == 64, "newest test cmd last at 64");
_Static_assert(sizeof(struct iommu_test_cmd_v62) == 56, "v6.2 test cmd is 56 bytes");
_Static_assert(offsetof(struct iommu_test_cmd_v62, last) == 48, "v6.2 test cmd last at 48");
_Static_assert(sizeof(struct iommu_ioas_map) == 40, "map");
_Static_assert(sizeof(struct iommu_ioas_iova_ranges) == 32, "iova_ranges");
_Static_assert(sizeof(struct iommu_option) == 24, "option");

/* ---- VFIO container structs --------------------------------------------------------------------------- */
enum {
  VFIO_TYPE1_IOMMU = 1,
  VFIO_TYPE1v2_IOMMU = 3,
  VFIO_DMA_CC_IOMMU = 4,
  VFIO_TYPE1_NESTING_IOMMU = 6,
  VFIO_UNMAP_ALL = 9,
  VFIO_UPDATE_VADDR = 10,
};

struct vfio_iommu_type1_info {
  uint32_t argsz;
  uint32_t flags;
  uint64_t iova_pgsizes;
  uint32_t cap_offset;
  uint32_t pad;
};
enum { VFIO_IOMMU_INFO_PGSIZES = 1 << 0, VFIO_IOMMU_INFO_CAPS = 1 << 1 };

struct vfio_info_cap_header {
  uint16_t id;
  uint16_t version;
  uint32_t next;
};
enum { VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3 };

struct vfio_iova_range {
  uint64_t start;
  uint64_t end;
};
struct vfio_iommu_type1_info_cap_iova_range {
  struct vfio_info_cap_header header;
  uint32_t nr_iovas;
  uint32_t reserved;
  struct vfio_iova_range iova_ranges[];
};
struct vfio_iommu_type1_info_dma_avail {
  struct vfio_info_cap_header header;
  uint32_t avail;
};

struct vfio_iommu_type1_dma_map {
  uint32_t argsz;
  uint32_t flags;
  uint64_t vaddr;
  uint64_t iova;
  uint64_t size;
};
enum { VFIO_DMA_MAP_FLAG_READ = 1 << 0, VFIO_DMA_MAP_FLAG_WRITE = 1 << 1, VFIO_DMA_MAP_FLAG_VADDR = 1 << 2 };

struct vfio_iommu_type1_dma_unmap {
  uint32_t argsz;
  uint32_t flags;
  uint64_t iova;
  uint64_t size;
};
enum { VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0, VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1 };

/* ---- reporting harness -------------------------------------------------------------------------------- */
static int abi_failures;
static int abi_steps;

/* Every errno Linux defines, by number; a number outside the table prints as E<number>, so two different
 * errnos never print alike. */
/* ---- errno names: generated by tools/reference/gen-errno.py ---- */
/* from Linux's include/uapi/asm-generic/errno-base.h and errno.h */
/* clang-format off */
#define ABI_ERRNO_MAX 134
static const char* const abi_errno_names[ABI_ERRNO_MAX + 1] = {
    [1] = "EPERM", [2] = "ENOENT", [3] = "ESRCH", [4] = "EINTR", [5] = "EIO", [6] = "ENXIO", [7] = "E2BIG",
    [8] = "ENOEXEC", [9] = "EBADF", [10] = "ECHILD", [11] = "EAGAIN", [12] = "ENOMEM", [13] = "EACCES",
    [14] = "EFAULT", [15] = "ENOTBLK", [16] = "EBUSY", [17] = "EEXIST", [18] = "EXDEV", [19] = "ENODEV",
    [20] = "ENOTDIR", [21] = "EISDIR", [22] = "EINVAL", [23] = "ENFILE", [24] = "EMFILE", [25] = "ENOTTY",
    [26] = "ETXTBSY", [27] = "EFBIG", [28] = "ENOSPC", [29] = "ESPIPE", [30] = "EROFS", [31] = "EMLINK",
    [32] = "EPIPE", [33] = "EDOM", [34] = "ERANGE", [35] = "EDEADLK", [36] = "ENAMETOOLONG", [37] = "ENOLCK",
    [38] = "ENOSYS", [39] = "ENOTEMPTY", [40] = "ELOOP", [42] = "ENOMSG", [43] = "EIDRM", [44] = "ECHRNG",
    [45] = "EL2NSYNC", [46] = "EL3HLT", [47] = "EL3RST", [48] = "ELNRNG", [49] = "EUNATCH", [50] = "ENOCSI",
    [51] = "EL2HLT", [52] = "EBADE", [53] = "EBADR", [54] = "EXFULL", [55] = "ENOANO", [56] = "EBADRQC",
    [57] = "EBADSLT", [59] = "EBFONT", [60] = "ENOSTR", [61] = "ENODATA", [62] = "ETIME", [63] = "ENOSR",
    [64] = "ENONET", [65] = "ENOPKG", [66] = "EREMOTE", [67] = "ENOLINK", [68] = "EADV", [69] = "ESRMNT",
    [70] = "ECOMM", [71] = "EPROTO", [72] = "EMULTIHOP", [73] = "EDOTDOT", [74] = "EBADMSG",
    [75] = "EOVERFLOW", [76] = "ENOTUNIQ", [77] = "EBADFD", [78] = "EREMCHG", [79] = "ELIBACC",
    [80] = "ELIBBAD", [81] = "ELIBSCN", [82] = "ELIBMAX", [83] = "ELIBEXEC", [84] = "EILSEQ",
    [85] = "ERESTART", [86] = "ESTRPIPE", [87] = "EUSERS", [88] = "ENOTSOCK", [89] = "EDESTADDRREQ",
    [90] = "EMSGSIZE", [91] = "EPROTOTYPE", [92] = "ENOPROTOOPT", [93] = "EPROTONOSUPPORT",
    [94] = "ESOCKTNOSUPPORT", [95] = "EOPNOTSUPP", [96] = "EPFNOSUPPORT", [97] = "EAFNOSUPPORT",
    [98] = "EADDRINUSE", [99] = "EADDRNOTAVAIL", [100] = "ENETDOWN", [101] = "ENETUNREACH",
    [102] = "ENETRESET", [103] = "ECONNABORTED", [104] = "ECONNRESET", [105] = "ENOBUFS", [106] = "EISCONN",
    [107] = "ENOTCONN", [108] = "ESHUTDOWN", [109] = "ETOOMANYREFS", [110] = "ETIMEDOUT",
    [111] = "ECONNREFUSED", [112] = "EHOSTDOWN", [113] = "EHOSTUNREACH", [114] = "EALREADY",
    [115] = "EINPROGRESS", [116] = "ESTALE", [117] = "EUCLEAN", [118] = "ENOTNAM", [119] = "ENAVAIL",
    [120] = "EISNAM", [121] = "EREMOTEIO", [122] = "EDQUOT", [123] = "ENOMEDIUM", [124] = "EMEDIUMTYPE",
    [125] = "ECANCELED", [126] = "ENOKEY", [127] = "EKEYEXPIRED", [128] = "EKEYREVOKED",
    [129] = "EKEYREJECTED", [130] = "EOWNERDEAD", [131] = "ENOTRECOVERABLE", [132] = "ERFKILL",
    [133] = "EHWPOISON", [134] = "EFTYPE",
};
/* clang-format on */
/* ---- end of generated errno names ---- */

static inline const char* abi_errno_name(int e) {
  static char unknown[4][16];
  static unsigned next;
  if (e == 0) return "0";
  if (e > 0 && e <= ABI_ERRNO_MAX && abi_errno_names[e]) return abi_errno_names[e];
  char* s = unknown[next++ % 4];
  snprintf(s, sizeof(unknown[0]), "E%d", e);
  return s;
}

/* An expectation for ioctl(): a return value ≥ 0, or −errno for a failure. */
#define OK 0
#define ERR(e) (-(e))

/* ioctl() folded into one int: its return value, or −errno. */
static inline int abi_ioctl(int fd, unsigned long cmd, void* arg) {
  errno = 0;
  int r = ioctl(fd, cmd, arg);
  return r < 0 ? -errno : r;
}

static inline void abi_fail(const char* step, const char* fmt, ...) {
  va_list ap;
  abi_failures++;
  printf("FAIL %s: ", step);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
}

/* Prints the step line for an ioctl-like result `got` (value or −errno) and checks it against `want`.
 * Returns 1 when it matched. */
static inline int check_rc(const char* step, int got, int want) {
  abi_steps++;
  printf("step %s: ret=%d errno=%s\n", step, got < 0 ? -1 : got, abi_errno_name(got < 0 ? -got : 0));
  fflush(stdout);
  if (got == want) return 1;
  abi_fail(step, "expected ret=%d errno=%s, got ret=%d errno=%s", want < 0 ? -1 : want,
           abi_errno_name(want < 0 ? -want : 0), got < 0 ? -1 : got, abi_errno_name(got < 0 ? -got : 0));
  return 0;
}

/* An out-value of the previous step. */
static inline int check_u64(const char* step, const char* field, uint64_t got, uint64_t want) {
  printf("step %s: %s=0x%llx\n", step, field, (unsigned long long)got);
  fflush(stdout);
  if (got == want) return 1;
  abi_fail(step, "expected %s=0x%llx, got 0x%llx", field, (unsigned long long)want, (unsigned long long)got);
  return 0;
}

/* For set-up that the rest of a program depends on: a failure here makes the rest meaningless. */
static inline void require(const char* step, int ok) {
  if (ok) return;
  printf("FATAL %s: cannot continue\n", step);
  printf("result: FAIL (%d of %d steps failed, aborted)\n", abi_failures + 1, abi_steps);
  exit(1);
}

static inline int abi_finish(void) {
  printf("result: %s\n", abi_failures ? "FAIL" : "PASS");
  fflush(stdout);
  return abi_failures ? 1 : 0;
}

/* ---- helpers ------------------------------------------------------------------------------------------ */
#define PAGE_SZ 4096UL
#define MOCK_PAGE_SZ (PAGE_SZ / 2)
#define HUGE_SZ (2UL << 20)

static inline int open_iommufd(void) {
  int fd = open("/dev/iommu", O_RDWR);
  if (fd < 0) {
    printf("FATAL open /dev/iommu: errno=%s\n", abi_errno_name(errno));
    exit(1);
  }
  return fd;
}

/* Anonymous memory aligned to 2 MiB, so that the IOVAs the kernel picks automatically (which follow the
 * source alignment, docs/abi.md#auto-iova-alignment) are the same on every run. Populated and without THP, so
 * that pins count single pages. */
static inline void* alloc_buffer(size_t len) {
  size_t span = len + HUGE_SZ;
  uint8_t* raw = (uint8_t*)mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    printf("FATAL mmap\n");
    exit(1);
  }
  uint8_t* p = (uint8_t*)(((uintptr_t)raw + HUGE_SZ - 1) & ~(HUGE_SZ - 1));
  if (p > raw) munmap(raw, (size_t)(p - raw));
  size_t tail = (size_t)(raw + span - (p + len));
  if (tail) munmap(p + len, tail);
  madvise(p, len, MADV_NOHUGEPAGE);
  memset(p, 0, len);
  return p;
}

static inline int ioas_alloc(int fd, uint32_t* id) {
  struct iommu_ioas_alloc c = {.size = sizeof(c)};
  int r = abi_ioctl(fd, IOMMU_IOAS_ALLOC, &c);
  *id = c.out_ioas_id;
  return r;
}

static inline int destroy_id(int fd, uint32_t id) {
  struct iommu_destroy c = {.size = sizeof(c), .id = id};
  return abi_ioctl(fd, IOMMU_DESTROY, &c);
}

/* MAP at a fixed IOVA (fixed != 0) or an automatic one (*iova receives it). */
static inline int ioas_map(int fd, uint32_t ioas, const void* va, uint64_t len, uint64_t* iova, int fixed) {
  struct iommu_ioas_map c = {.size = sizeof(c),
                             .flags = MAP_RW | (fixed ? IOMMU_IOAS_MAP_FIXED_IOVA : 0),
                             .ioas_id = ioas,
                             .user_va = (uintptr_t)va,
                             .length = len,
                             .iova = *iova};
  int r = abi_ioctl(fd, IOMMU_IOAS_MAP, &c);
  if (r == 0) *iova = c.iova;
  return r;
}

static inline int ioas_unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len, uint64_t* out_len) {
  struct iommu_ioas_unmap c = {.size = sizeof(c), .ioas_id = ioas, .iova = iova, .length = len};
  int r = abi_ioctl(fd, IOMMU_IOAS_UNMAP, &c);
  if (out_len) *out_len = c.length;
  return r;
}

static inline int mock_domain(int fd, uint32_t ioas, uint32_t* stdev, uint32_t* hwpt, uint32_t* idev) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas};
  int r = abi_ioctl(fd, IOMMU_TEST_CMD, &c);
  if (stdev) *stdev = c.a.mock_domain.out_stdev_id;
  if (hwpt) *hwpt = c.a.mock_domain.out_hwpt_id;
  if (idev) *idev = c.a.mock_domain.out_idev_id;
  return r;
}

/* MOCK_DOMAIN_REPLACE: moves the mock device `stdev` to `pt_id` (an IOAS or an HWPT); *out_hwpt gets the
 * HWPT it ends on. */
static inline int mock_domain_replace(int fd, uint32_t stdev, uint32_t pt_id, uint32_t* out_hwpt) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = stdev};
  c.a.mock_domain_replace.pt_id = pt_id;
  int r = abi_ioctl(fd, IOMMU_TEST_CMD, &c);
  if (out_hwpt) *out_hwpt = c.a.mock_domain_replace.pt_id;
  return r;
}

static inline int check_refs(int fd, const void* p, uint64_t len, uint32_t refs) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_MD_CHECK_REFS};
  c.a.check_refs.uptr = (uintptr_t)p;
  c.a.check_refs.length = len;
  c.a.check_refs.refs = refs;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

static inline int check_map(int fd, uint32_t hwpt, uint64_t iova, const void* p, uint64_t len) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_MD_CHECK_MAP, .id = hwpt};
  c.a.check_map.iova = iova;
  c.a.check_map.length = len;
  c.a.check_map.uptr = (uintptr_t)p;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

static inline int add_reserved(int fd, uint32_t ioas, uint64_t start, uint64_t len) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_ADD_RESERVED, .id = ioas};
  c.a.add_reserved.start = start;
  c.a.add_reserved.length = len;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

/* IOVA_RANGES with room for `cap` entries; returns the ioctl result, fills *num and *align. */
static inline int iova_ranges(int fd, uint32_t ioas, struct iommu_iova_range* out, uint32_t cap,
                              uint32_t* num, uint64_t* align) {
  struct iommu_ioas_iova_ranges c = {
      .size = sizeof(c), .ioas_id = ioas, .num_iovas = cap, .allowed_iovas = (uintptr_t)out};
  int r = abi_ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &c);
  if (num) *num = c.num_iovas;
  if (align) *align = c.out_iova_alignment;
  return r;
}

static inline int create_access(int fd, uint32_t ioas, uint32_t flags, int* access_fd) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas};
  c.a.create_access.flags = flags;
  int r = abi_ioctl(fd, IOMMU_TEST_CMD, &c);
  *access_fd = r == 0 ? (int)c.a.create_access.out_access_fd : -1;
  return r;
}

static inline int access_pages(int fd, int access_fd, uint32_t flags, uint64_t iova, uint64_t len,
                               const void* p, uint32_t* pages_id) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_ACCESS_PAGES, .id = (uint32_t)access_fd};
  c.a.access_pages.flags = flags;
  c.a.access_pages.iova = iova;
  c.a.access_pages.length = len;
  c.a.access_pages.uptr = (uintptr_t)p;
  int r = abi_ioctl(fd, IOMMU_TEST_CMD, &c);
  if (pages_id) *pages_id = c.a.access_pages.out_access_pages_id;
  return r;
}

static inline int destroy_access_pages(int fd, int access_fd, uint32_t pages_id) {
  struct iommu_test_cmd c = {
      .size = sizeof(c), .op = IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, .id = (uint32_t)access_fd};
  c.a.destroy_access_pages.access_pages_id = pages_id;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

static inline int access_rw(int fd, int access_fd, uint32_t flags, uint64_t iova, void* p, uint64_t len) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_ACCESS_RW, .id = (uint32_t)access_fd};
  c.a.access_rw.flags = flags;
  c.a.access_rw.iova = iova;
  c.a.access_rw.length = len;
  c.a.access_rw.uptr = (uintptr_t)p;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

/* An address that is certainly not mapped: a reserved-then-released page. */
static inline void* unmapped_page(void) {
  void* p = mmap(NULL, PAGE_SZ, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p;
}

/* MOCK_DOMAIN_FLAGS: a mock device with MOCK_FLAGS_DEVICE_* flags, attached to `pt_id`. */
static inline int mock_domain_flags(int fd, uint32_t pt_id, uint32_t dev_flags, uint32_t* stdev,
                                    uint32_t* hwpt, uint32_t* idev) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, .id = pt_id};
  c.a.mock_domain_flags.dev_flags = dev_flags;
  int r = abi_ioctl(fd, IOMMU_TEST_CMD, &c);
  if (stdev) *stdev = c.a.mock_domain_flags.out_stdev_id;
  if (hwpt) *hwpt = c.a.mock_domain_flags.out_hwpt_id;
  if (idev) *idev = c.a.mock_domain_flags.out_idev_id;
  return r;
}

/* IOMMU_HWPT_ALLOC with every field given; *out_hwpt gets out_hwpt_id (0 on failure). */
static inline int hwpt_alloc_full(int fd, uint32_t flags, uint32_t dev_id, uint32_t pt_id, uint32_t data_type,
                                  const void* data, uint32_t data_len, uint32_t fault_id,
                                  uint32_t* out_hwpt) {
  struct iommu_hwpt_alloc c = {.size = sizeof(c),
                               .flags = flags,
                               .dev_id = dev_id,
                               .pt_id = pt_id,
                               .data_type = data_type,
                               .data_len = data_len,
                               .data_uptr = (uintptr_t)data,
                               .fault_id = fault_id};
  int r = abi_ioctl(fd, IOMMU_HWPT_ALLOC, &c);
  if (out_hwpt) *out_hwpt = r == 0 ? c.out_hwpt_id : 0;
  return r;
}

/* A paging HWPT on an IOAS, no driver data. */
static inline int hwpt_alloc(int fd, uint32_t dev_id, uint32_t pt_id, uint32_t flags, uint32_t* out_hwpt) {
  return hwpt_alloc_full(fd, flags, dev_id, pt_id, IOMMU_HWPT_DATA_NONE, NULL, 0, 0, out_hwpt);
}

/* A nested HWPT on `parent` with the mock's stage-1 data (every IOTLB entry starts at `iotlb`). */
static inline int hwpt_alloc_nested(int fd, uint32_t dev_id, uint32_t parent, uint32_t flags, uint32_t iotlb,
                                    uint32_t* out_hwpt) {
  struct iommu_hwpt_selftest data = {.iotlb = iotlb};
  return hwpt_alloc_full(fd, flags, dev_id, parent, IOMMU_HWPT_DATA_SELFTEST, &data, sizeof(data), 0,
                         out_hwpt);
}

/* IOMMU_GET_HW_INFO; `info` is in/out (size, flags, dev_id, data_len, data_uptr, in_data_type set by the
 * caller). */
static inline int get_hw_info(int fd, struct iommu_hw_info* info) {
  return abi_ioctl(fd, IOMMU_GET_HW_INFO, info);
}

/* IOMMU_HWPT_INVALIDATE; *num is entry_num in and out. */
static inline int hwpt_invalidate(int fd, uint32_t hwpt_id, const void* reqs, uint32_t data_type,
                                  uint32_t entry_len, uint32_t* num) {
  struct iommu_hwpt_invalidate c = {.size = sizeof(c),
                                    .hwpt_id = hwpt_id,
                                    .data_uptr = (uintptr_t)reqs,
                                    .data_type = data_type,
                                    .entry_len = entry_len,
                                    .entry_num = *num};
  int r = abi_ioctl(fd, IOMMU_HWPT_INVALIDATE, &c);
  *num = c.entry_num;
  return r;
}

/* MD_CHECK_IOTLB: entry `iotlb_id` of nested HWPT `hwpt` holds `want`. */
static inline int check_iotlb(int fd, uint32_t hwpt, uint32_t iotlb_id, uint32_t want) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_MD_CHECK_IOTLB, .id = hwpt};
  c.a.check_iotlb.id = iotlb_id;
  c.a.check_iotlb.iotlb = want;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

/* DEV_CHECK_CACHE: cache entry `cache_id` of the mock device `idev` (the bound device id) holds `want`. */
static inline int dev_check_cache(int fd, uint32_t idev, uint32_t cache_id, uint32_t want) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_DEV_CHECK_CACHE, .id = idev};
  c.a.check_dev_cache.id = cache_id;
  c.a.check_dev_cache.cache = want;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

/* PASID_ATTACH / PASID_REPLACE (op) of `pasid` of the mock device `stdev` to `pt_id`; *out_hwpt gets pt_id
 * as returned. */
static inline int pasid_op(int fd, uint32_t op, uint32_t stdev, uint32_t pasid, uint32_t pt_id,
                           uint32_t* out_hwpt) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = op, .id = stdev};
  c.a.pasid_attach.pasid = pasid;
  c.a.pasid_attach.pt_id = pt_id;
  int r = abi_ioctl(fd, IOMMU_TEST_CMD, &c);
  if (out_hwpt) *out_hwpt = c.a.pasid_attach.pt_id;
  return r;
}
static inline int pasid_attach(int fd, uint32_t stdev, uint32_t pasid, uint32_t pt_id) {
  return pasid_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, pasid, pt_id, NULL);
}
static inline int pasid_replace(int fd, uint32_t stdev, uint32_t pasid, uint32_t pt_id) {
  return pasid_op(fd, IOMMU_TEST_OP_PASID_REPLACE, stdev, pasid, pt_id, NULL);
}
static inline int pasid_detach(int fd, uint32_t stdev, uint32_t pasid) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_PASID_DETACH, .id = stdev};
  c.a.pasid_detach.pasid = pasid;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}
/* PASID_CHECK_HWPT: `pasid` of `stdev` is attached to `hwpt` (0: attached to nothing). */
static inline int pasid_check_hwpt(int fd, uint32_t stdev, uint32_t pasid, uint32_t hwpt) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_PASID_CHECK_HWPT, .id = stdev};
  c.a.pasid_check.pasid = pasid;
  c.a.pasid_check.hwpt_id = hwpt;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

/* IOMMU_HWPT_SET_DIRTY_TRACKING with raw flags (IOMMU_HWPT_DIRTY_TRACKING_ENABLE to enable, 0 to disable). */
static inline int hwpt_set_dirty_tracking(int fd, uint32_t hwpt_id, uint32_t flags) {
  struct iommu_hwpt_set_dirty_tracking c = {.size = sizeof(c), .flags = flags, .hwpt_id = hwpt_id};
  return abi_ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &c);
}

/* IOMMU_HWPT_GET_DIRTY_BITMAP of [iova, iova + length) at page_size granularity into `data`. */
static inline int hwpt_get_dirty_bitmap(int fd, uint32_t hwpt_id, uint32_t flags, uint64_t iova,
                                        uint64_t length, uint64_t page_size, void* data) {
  struct iommu_hwpt_get_dirty_bitmap c = {.size = sizeof(c),
                                          .hwpt_id = hwpt_id,
                                          .flags = flags,
                                          .iova = iova,
                                          .length = length,
                                          .page_size = page_size,
                                          .data = (uintptr_t)data};
  return abi_ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &c);
}

/* IOMMU_TEST_OP_DIRTY: marks dirty the mock PTE of iova + i * page_size for every bit i set in `bitmap`;
 * *out_nr gets out_nr_dirty (left alone on failure). */
static inline int mock_set_dirty(int fd, uint32_t hwpt_id, uint64_t iova, uint64_t length, uint64_t page_size,
                                 const void* bitmap, uint64_t* out_nr) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_DIRTY, .id = hwpt_id};
  c.dirty.iova = iova;
  c.dirty.length = length;
  c.dirty.page_size = page_size;
  c.dirty.uptr = (uintptr_t)bitmap;
  int r = abi_ioctl(fd, IOMMU_TEST_CMD, &c);
  if (r == 0 && out_nr) *out_nr = c.dirty.out_nr_dirty;
  return r;
}

/* ---- vIOMMUs, vDEVICEs, hardware queues (include/uapi/linux/iommufd.h, iommufd_test.h) -------------- */
#define IOMMU_VIOMMU_ALLOC ABI_IO(0x90)
#define IOMMU_VDEVICE_ALLOC ABI_IO(0x91)
#define IOMMU_HW_QUEUE_ALLOC ABI_IO(0x94)
#define IOMMU_VIOMMU_TYPE_SELFTEST 0xdeadbeefu
#define IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST 0xdeadbeefu
#define IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID 0xdadbeefu
#define IOMMU_HW_QUEUE_TYPE_SELFTEST 0xdeadbeefu
#define IOMMU_TEST_HW_QUEUE_MAX 2

struct iommu_viommu_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t type;
  uint32_t dev_id;
  uint32_t hwpt_id;
  uint32_t out_viommu_id;
  uint32_t data_len;
  uint32_t __reserved;
  uint64_t data_uptr;
};
struct iommu_vdevice_alloc {
  uint32_t size;
  uint32_t viommu_id;
  uint32_t dev_id;
  uint32_t out_vdevice_id;
  uint64_t virt_id;
};
struct iommu_hw_queue_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t viommu_id;
  uint32_t type;
  uint32_t index;
  uint32_t out_hw_queue_id;
  uint64_t nesting_parent_iova;
  uint64_t length;
};
struct iommu_viommu_selftest {
  uint32_t in_data;
  uint32_t out_data;
  uint64_t out_mmap_offset;
  uint64_t out_mmap_length;
};
struct iommu_viommu_invalidate_selftest {
  uint32_t flags;
  uint32_t vdev_id;
  uint32_t cache_id;
};

static inline int viommu_alloc_full(int fd, uint32_t size, uint32_t flags, uint32_t type, uint32_t dev,
                                    uint32_t hwpt, void* data, uint32_t data_len, uint32_t* out) {
  struct {
    struct iommu_viommu_alloc c;
    uint64_t tail;
  } b = {.c = {.size = size,
               .flags = flags,
               .type = type,
               .dev_id = dev,
               .hwpt_id = hwpt,
               .data_len = data_len,
               .data_uptr = (uintptr_t)data},
         .tail = size > sizeof(struct iommu_viommu_alloc) ? 1 : 0};
  int r = abi_ioctl(fd, IOMMU_VIOMMU_ALLOC, &b);
  if (out) *out = r == 0 ? b.c.out_viommu_id : 0;
  return r;
}
static inline int viommu_alloc(int fd, uint32_t dev, uint32_t hwpt, void* data, uint32_t data_len,
                               uint32_t* out) {
  return viommu_alloc_full(fd, sizeof(struct iommu_viommu_alloc), 0, IOMMU_VIOMMU_TYPE_SELFTEST, dev, hwpt,
                           data, data_len, out);
}
static inline int vdevice_alloc(int fd, uint32_t viommu, uint32_t dev, uint64_t virt_id, uint32_t* out) {
  struct iommu_vdevice_alloc c = {.size = sizeof(c), .viommu_id = viommu, .dev_id = dev, .virt_id = virt_id};
  int r = abi_ioctl(fd, IOMMU_VDEVICE_ALLOC, &c);
  if (out) *out = r == 0 ? c.out_vdevice_id : 0;
  return r;
}
static inline int hw_queue_alloc(int fd, uint32_t viommu, uint32_t type, uint32_t index, uint64_t iova,
                                 uint64_t len, uint32_t* out) {
  struct iommu_hw_queue_alloc c = {.size = sizeof(c),
                                   .viommu_id = viommu,
                                   .type = type,
                                   .index = index,
                                   .nesting_parent_iova = iova,
                                   .length = len};
  int r = abi_ioctl(fd, IOMMU_HW_QUEUE_ALLOC, &c);
  if (out) *out = r == 0 ? c.out_hw_queue_id : 0;
  return r;
}


/* ---- dma-buf: the selftest's mock exporter (iommufd_test.h, selftest.c) -------------------------------- */
enum { IOMMU_TEST_OP_DMABUF_GET = 22, IOMMU_TEST_OP_DMABUF_REVOKE = 23 };
/* The two members sit at the start of the union (offset 16), after the v6.2 members in size. */
struct iommu_test_cmd_dmabuf {
  uint32_t size;
  uint32_t op;
  uint32_t id;
  uint32_t __reserved;
  union {
    struct {
      uint32_t length;
      uint32_t open_flags;
    } dmabuf_get;
    struct {
      int32_t dmabuf_fd;
      uint32_t revoked;
    } dmabuf_revoke;
    uint8_t newest_union[48];
  };
  uint32_t last;
};

/* DMABUF_GET: the new fd (the ioctl's value) or −errno. */
static inline int dmabuf_get(int fd, uint32_t length, uint32_t open_flags) {
  struct iommu_test_cmd_dmabuf c = {.size = sizeof(c), .op = IOMMU_TEST_OP_DMABUF_GET};
  c.dmabuf_get.length = length;
  c.dmabuf_get.open_flags = open_flags;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

static inline int dmabuf_revoke(int fd, int dmabuf_fd, uint32_t revoked) {
  struct iommu_test_cmd_dmabuf c = {.size = sizeof(c), .op = IOMMU_TEST_OP_DMABUF_REVOKE};
  c.dmabuf_revoke.dmabuf_fd = dmabuf_fd;
  c.dmabuf_revoke.revoked = revoked;
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

/* IOAS_MAP_FILE with explicit flags (MAP_RW | FIXED_IOVA, …); *iova in/out. */
static inline int ioas_map_file(int fd, uint32_t ioas, uint32_t flags, int file_fd, uint64_t start,
                                uint64_t len, uint64_t* iova) {
  struct iommu_ioas_map_file c = {.size = sizeof(c),
                                  .flags = flags,
                                  .ioas_id = ioas,
                                  .fd = file_fd,
                                  .start = start,
                                  .length = len,
                                  .iova = *iova};
  int r = abi_ioctl(fd, IOMMU_IOAS_MAP_FILE, &c);
  if (r == 0) *iova = c.iova;
  return r;
}

/* IOAS_COPY with raw flags; *dst_iova in/out. */
static inline int ioas_copy(int fd, uint32_t flags, uint32_t dst, uint32_t src, uint64_t src_iova,
                            uint64_t len, uint64_t* dst_iova) {
  struct iommu_ioas_copy c = {.size = sizeof(c),
                              .flags = flags,
                              .dst_ioas_id = dst,
                              .src_ioas_id = src,
                              .length = len,
                              .dst_iova = *dst_iova,
                              .src_iova = src_iova};
  int r = abi_ioctl(fd, IOMMU_IOAS_COPY, &c);
  if (r == 0) *dst_iova = c.dst_iova;
  return r;
}

/* IOMMU_OPTION HUGE_PAGES SET of `ioas` to `val`. */
static inline int ioas_set_huge_pages(int fd, uint32_t ioas, uint64_t val) {
  struct iommu_option c = {.size = sizeof(c),
                           .option_id = IOMMU_OPTION_HUGE_PAGES,
                           .op = IOMMU_OPTION_OP_SET,
                           .object_id = ioas,
                           .val64 = val};
  return abi_ioctl(fd, IOMMU_OPTION, &c);
}

/* ---- fault queues (IOMMU_FAULT_QUEUE_ALLOC, its fd's records, TRIGGER_IOPF) ---------------------------- */
#define IOMMU_FAULT_QUEUE_ALLOC ABI_IO(0x8e)

struct iommu_fault_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t out_fault_id;
  uint32_t out_fault_fd;
};

struct iommu_hwpt_pgfault {
  uint32_t flags;
  uint32_t dev_id;
  uint32_t pasid;
  uint32_t grpid;
  uint32_t perm;
  uint32_t __reserved;
  uint64_t addr;
  uint32_t length;
  uint32_t cookie;
};

struct iommu_hwpt_page_response {
  uint32_t cookie;
  uint32_t code;
};

struct iommu_test_trigger_iopf {
  uint32_t dev_id;
  uint32_t pasid;
  uint32_t grpid;
  uint32_t perm;
  uint64_t addr;
};

enum { IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0, IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1 };
enum { IOMMU_PGFAULT_PERM_READ = 1 << 0, IOMMU_PGFAULT_PERM_WRITE = 1 << 1 };
enum { IOMMUFD_PAGE_RESP_SUCCESS = 0, IOMMUFD_PAGE_RESP_INVALID = 1 };

_Static_assert(sizeof(struct iommu_fault_alloc) == 16, "fault_alloc");
_Static_assert(sizeof(struct iommu_hwpt_pgfault) == 40, "hwpt_pgfault");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, cookie) == 36, "hwpt_pgfault.cookie");
_Static_assert(sizeof(struct iommu_hwpt_page_response) == 8, "page_response");
_Static_assert(offsetof(struct iommu_test_cmd, newest_union) == 16, "test cmd union at 16");

static inline int fault_alloc_sized(int fd, uint32_t size, uint32_t flags, uint32_t* id, int* qfd) {
  struct iommu_fault_alloc c = {.size = size, .flags = flags};
  int r = abi_ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &c);
  if (r == 0) {
    *id = c.out_fault_id;
    *qfd = (int)c.out_fault_fd;
  }
  return r;
}

static inline int fault_alloc(int fd, uint32_t* id, int* qfd) {
  return fault_alloc_sized(fd, sizeof(struct iommu_fault_alloc), 0, id, qfd);
}

static inline int trigger_iopf(int fd, uint32_t dev_id, uint32_t pasid, uint32_t grpid) {
  struct iommu_test_cmd c = {.size = sizeof(c), .op = IOMMU_TEST_OP_TRIGGER_IOPF};
  struct iommu_test_trigger_iopf t = {.dev_id = dev_id,
                                      .pasid = pasid,
                                      .grpid = grpid,
                                      .perm = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE,
                                      .addr = 0xdeadbeaf};
  memcpy(c.newest_union, &t, sizeof(t));
  return abi_ioctl(fd, IOMMU_TEST_CMD, &c);
}

/* ---- vEVENT queues --------------------------------------------------------------------------------- */
#define IOMMU_VEVENTQ_ALLOC ABI_IO(0x93)
#define IOMMU_VEVENTQ_TYPE_SELFTEST 0xbeefbeefu
#define IOMMU_VEVENTQ_FLAG_LOST_EVENTS 1u
#define VEVENTQ_MAX_DEPTH (1u << 19)

struct iommu_veventq_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t viommu_id;
  uint32_t type;
  uint32_t veventq_depth;
  uint32_t out_veventq_id;
  uint32_t out_veventq_fd;
  uint32_t __reserved;
};

#endif
