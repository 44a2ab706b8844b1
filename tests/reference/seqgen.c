/* A seeded random sequence of /dev/iommu ioctls, for differential runs against a real kernel
 * (tools/reference/reference.py fuzz). Usage: seqgen SEED [STEPS]
 *
 * The same seed gives the same sequence on every system, as long as the system answers the same way: the
 * choices depend only on the seed and on values this program prints. Each step prints one line
 *   step <n>.<op>: <arguments> -> ret=<r> errno=<NAME> [<out-value>=<v> ...]
 * with nothing that differs between runs of one system (no addresses, no fd numbers): user addresses are
 * printed as buffer+offset, file descriptors not at all. So the first line that differs between Linux and
 * uiommufd is the first step where errno or an out-value differs.
 *
 * Operations: open, close and dup of an iommufd; IOAS alloc and destroy; map, map_file on a memfd, copy,
 * unmap, allow_iovas, iova_ranges, option; the test ops (add_reserved, mock domains, MD_CHECK_MAP/REFS,
 * accesses with pin, unpin and rw, access-fd close and dup); IOMMU_VFIO_IOAS and the VFIO container ioctls on
 * the iommufd (API version, extensions, SET_IOMMU, GET_INFO, MAP_DMA, UNMAP_DMA); a checksum of every buffer.
 * The newest page-table ABI, about a quarter of the steps: IOMMU_HWPT_ALLOC (paging HWPTs on an IOAS with
 * NEST_PARENT / DIRTY_TRACKING / PASID flags and the mock's page-table type, nested HWPTs on a parent with
 * the mock's IOTLB value), IOMMU_GET_HW_INFO, IOMMU_HWPT_INVALIDATE with the mock's IOTLB entries, and the
 * test ops MOCK_DOMAIN_FLAGS (devices without dirty tracking or with PASID support), MOCK_DOMAIN_REPLACE onto
 * IOASes, paging and nested HWPTs, MD_CHECK_IOTLB, DEV_CHECK_CACHE and PASID_ATTACH / REPLACE / DETACH /
 * CHECK_HWPT. Dirty tracking, about one step in sixteen plus its set-up: IOMMU_HWPT_SET_DIRTY_TRACKING
 * (enable, disable, unknown flags; on dirty HWPTs mostly, now and then on one without dirty ops, a nested one
 * or a wrong id), IOMMU_TEST_OP_DIRTY (a bitmap of up to 128 bits, page_size 4 KiB mostly, 2, 8 or 6 KiB now
 * and then, bad arguments sometimes) and IOMMU_HWPT_GET_DIRTY_BITMAP (NO_CLEAR or not, page_size 4 KiB
 * mostly, 2, 8, 64, 0 or 3 KiB now and then, ranges in, across and between areas and the whole space; the
 * bitmap in an area of its own followed by a PROT_NONE page, filled with 0 or a pattern first; the words
 * covering the request and a checksum of the area are printed); the dirty-tracking section says what keeps
 * them deterministic (a dirty-tracking IOAS with IOMMU_OPTION_HUGE_PAGES=0, GETs only at 4 KiB aligned
 * IOVAs). An operation that needs an object the context lacks (a mock device, a NEST_PARENT or PASID-capable
 * HWPT, a nested HWPT, a dirty HWPT on the dirty-tracking IOAS and an area there) usually creates it first,
 * as steps of their own. Struct arguments are now and then passed short, long with a zero or non-zero tail,
 * with a non-zero reserved field, null or unmapped (see var_ioctl()).
 *
 * dma-buf, about one step in fifty: the selftest's mock exporter (DMABUF_GET into one of two descriptor slots
 * shared by the contexts, with good and bad lengths and several open flags, F_GETFL and close-on-exec
 * printed; DMABUF_REVOKE and un-revoke, of a slot, an iommufd or no descriptor) and IOMMU_IOAS_MAP_FILE of a
 * slot's descriptor (ranges inside and past the buffer); the areas made join the ranges other steps pick.
 *
 * The virtual IOMMU, about one step in nine (op_viommu()): VIOMMU_ALLOC on NEST_PARENT HWPTs mostly (with the
 * mock's data and its mmap region reported now and then, bad types and lengths sometimes), VDEVICE_ALLOC
 * with virtual ids that collide, nested HWPTs on a vIOMMU with the mock device moved onto them, vIOMMU
 * invalidations of the devices' caches, VEVENTQ_ALLOC into four descriptor slots, TRIGGER_VEVENT followed by
 * a read of a slot (short counts sometimes; each record printed), and HW_QUEUE_ALLOC over mapped and random
 * IOVAs (whose pins make later unmaps EBUSY). Fault queues, about one step in fifteen (op_fault()):
 * FAULT_QUEUE_ALLOC, fault-capable HWPTs with a mock device moved onto them, TRIGGER_IOPF, reads of the
 * queue's fd and responses.
 *
 * Kept out of reach: a kernel WARN. Destroying a mock device, or releasing its context, while one of its
 * PASIDs (not 0) is attached makes Linux 7.2 warn (see struct pasid_rec), so the attachments the printed
 * results show are detached first, as steps marked "(before destroy)", "(before close)" or "(before the
 * end)". VFIO_IOMMU_MAP_DMA without READ and WRITE is never sent (see op_vfio()).
 *
 * Memory layout, fixed so that results cannot depend on where mmap put things: NBUF buffers of BUF_PAGES
 * pages, each at the start of its own 2 MiB-aligned chunk whose rest is PROT_NONE (so running past a buffer
 * faults the same way everywhere, and automatic IOVAs, which follow the source alignment, are the same). THP
 * is off so pins count single pages. A memfd of BUF_PAGES pages backs MAP_FILE. */
#include <sys/syscall.h>

#include "abi.h"

#define NBUF 3
#define BUF_PAGES 16
#define BUF_LEN (BUF_PAGES * PAGE_SZ)
#define NCTX 2
#define MAX_IDS 64
#define MAX_MAPS 48
#define MAX_ACC 4
#define MAX_PAGES_IDS 8

/* K_HWPT: a paging HWPT (automatic or allocated); K_HWPT_NESTED: a nested one (IOMMU_HWPT_ALLOC on an HWPT).
 */
/* K_VIOMMU: a vIOMMU (its link: its parent HWPT); K_VDEV: a vDEVICE; K_VOBJ: a vEVENT queue or a hardware
 * queue, which only IOMMU_DESTROY and the end of the run act on. */
enum kind { K_IOAS, K_HWPT, K_STDEV, K_IDEV, K_HWPT_NESTED, K_VIOMMU, K_VDEV, K_VOBJ, K_NKINDS };

/* What the printed values say about an HWPT (id_rec.flags of K_HWPT / K_HWPT_NESTED). */
enum {
  R_NEST_PARENT = 1 << 0, /* allocated with IOMMU_HWPT_ALLOC_NEST_PARENT: may parent nested HWPTs */
  R_PASID = 1 << 1,       /* allocated with IOMMU_HWPT_ALLOC_PASID: may take PASID attachments */
  R_AUTO = 1 << 2,        /* an automatic domain (MOCK_DOMAIN or a replace onto an IOAS) */
  R_DIRTY = 1 << 3,       /* allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING */
  R_TRACKING = 1 << 4,    /* HWPT: the last SET_DIRTY_TRACKING that succeeded enabled tracking */
  R_NOHUGE = 1 << 5,      /* IOAS: IOMMU_OPTION_HUGE_PAGES=0 set before any domain or area (see op_dirty()) */
  R_DEAD = 1 << 7,        /* any kind: IOMMU_DESTROY of the id succeeded (kept for stale-use steps) */
};

struct id_rec {
  uint32_t id;
  enum kind kind;
  uint32_t
      flags; /* HWPT: R_*; STDEV and IDEV: the MOCK_FLAGS_DEVICE_* the mock device was created with; R_DEAD */
  uint32_t link; /* STDEV: its idev; IDEV: its stdev; nested HWPT: its parent */
  uint32_t cur;  /* STDEV: the HWPT its device (no PASID) was last seen attached to, 0: none */
  uint32_t
      iotlb[MOCK_NESTED_DOMAIN_IOTLB_NUM]; /* nested HWPT: its mock IOTLB, as the printed steps leave it */
};

/* A PASID (not 0) of a mock device attached as the printed results say. Destroying the device (IOMMU_DESTROY
 * of its stdev id) or releasing its context with one attached makes Linux 7.2 WARN:
 * iommufd_selftest_destroy() detaches only IOMMU_NO_PASID, then iommufd_device_unbind() finds the idev still
 * held by the PASID attachment (iommufd_device_attach() takes a users reference per attachment) and WARNs in
 * iommufd_object_destroy_user(); iommufd_fops_release() reaches the same destroy. So every recorded PASID is
 * detached, as steps of their own, before its stdev is destroyed or the last descriptor of its context closed
 * (detach_pasids()). An attachment is recorded whenever PASID_ATTACH returns 0 with a non-zero PASID, and
 * dropped only when PASID_DETACH returns 0; a failed attach leaves nothing attached (the kernel rolls back,
 * selftest.c iommufd_test_pasid_attach()), and a replace never changes whether a PASID is attached. */
#define MAX_PASIDS 32
struct pasid_rec {
  int ctx;
  uint32_t stdev, pasid, hwpt;
};

/* Where an IOVA range came from, so that later steps can name plausible ranges and the memory behind them. */
struct map_rec {
  int ctx;
  uint32_t ioas;
  uint64_t iova, length;
  int buf; /* -1: the memfd, -2: a dma-buf */
  uint64_t offset;
};

struct access_rec {
  int fd;  /* -1: closed */
  int dup; /* a second descriptor of the same access file, -1: none */
  int ctx;
  uint32_t ioas;
  uint32_t pages[MAX_PAGES_IDS];
  int npages;
};

struct ctx {
  int fd;        /* -1: closed */
  int dup;       /* a second descriptor of the same open file, -1: none */
  uint32_t vfio; /* the compat IOAS as this program last saw it set or read back, 0: none */
  struct id_rec ids[MAX_IDS];
  int nids;
};

static struct ctx ctxs[NCTX];
static struct map_rec maps[MAX_MAPS];
static int nmaps;
static struct access_rec accs[MAX_ACC];
static struct pasid_rec pasids[MAX_PASIDS];
static int npasids;
static uint8_t* bufs[NBUF];
static int memfd = -1;
/* The mock dma-bufs (DMABUF_GET): descriptors and sizes, -1: none. */
#define NDMABUF 2
static int dmabufs[NDMABUF] = {-1, -1};
static uint64_t dmabuf_size[NDMABUF];
static uint64_t rng_state;
static unsigned step_no;

/* splitmix64: tiny, and the same on every libc. */
static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static unsigned pick(unsigned n) { return (unsigned)(rnd() % n); }
static int chance(unsigned percent) { return pick(100) < percent; }

static uint32_t fnv(const uint8_t* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

/* ---- printing ------------------------------------------------------------------------------------------ */
static char line[1024];
static size_t line_len;

static void begin(const char* op) {
  line_len = (size_t)snprintf(line, sizeof(line), "step %u.%s:", step_no, op);
}

static void add(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (line_len < sizeof(line))
    line_len += (size_t)vsnprintf(line + line_len, sizeof(line) - line_len, fmt, ap);
  va_end(ap);
}

static void result(int r) { add(" -> ret=%d errno=%s", r < 0 ? -1 : r, abi_errno_name(r < 0 ? -r : 0)); }

static void end(void) {
  printf("%s\n", line);
  fflush(stdout);
}

/* ---- choosing arguments -------------------------------------------------------------------------------- */
static struct id_rec* find_id(int c, uint32_t id) {
  for (int i = 0; i < ctxs[c].nids; i++)
    if (ctxs[c].ids[i].id == id) return &ctxs[c].ids[i];
  return NULL;
}

static int is_hwpt(enum kind k) { return k == K_HWPT || k == K_HWPT_NESTED; }

/* A new object: the kernel hands out the lowest free id again, so an older record of the id is stale and is
 * replaced. NULL when the table is full (the id is then not used by later steps). */
static struct id_rec* remember_new(int c, uint32_t id, enum kind k, uint32_t flags, uint32_t link) {
  struct id_rec* r = find_id(c, id);
  if (!r) {
    if (ctxs[c].nids >= MAX_IDS) return NULL;
    r = &ctxs[c].ids[ctxs[c].nids++];
  }
  *r = (struct id_rec){.id = id, .kind = k, .flags = flags, .link = link};
  return r;
}

/* An id an operation reported that may name a known object (the HWPT MOCK_DOMAIN attached to): a known live
 * HWPT keeps its record. */
static struct id_rec* remember_id(int c, uint32_t id, enum kind k, uint32_t flags, uint32_t link) {
  struct id_rec* r = find_id(c, id);
  if (r && !(r->flags & R_DEAD) && (r->kind == k || (is_hwpt(r->kind) && is_hwpt(k)))) return r;
  return remember_new(c, id, k, flags, link);
}

/* An id of the wanted kind most of the time; sometimes any id seen, 0, or one never handed out. */
static uint32_t pick_id(int c, enum kind want) {
  struct ctx* x = &ctxs[c];
  unsigned roll = pick(100);
  if (roll < 4) return 0;
  if (roll < 8) return 1000 + pick(4);
  int n = 0;
  for (int i = 0; i < x->nids; i++) n += x->ids[i].kind == want;
  if (n && roll < 85) {
    int k = (int)pick((unsigned)n);
    for (int i = 0; i < x->nids; i++)
      if (x->ids[i].kind == want && k-- == 0) return x->ids[i].id;
  }
  if (x->nids) return x->ids[pick((unsigned)x->nids)].id;
  return 1 + pick(3);
}

/* A record of kind `k`, not destroyed, whose flags include `flags`. */
static int live_with(const struct id_rec* r, enum kind k, uint32_t flags) {
  return r->kind == k && (r->flags & (flags | R_DEAD)) == flags;
}

static int has_kind(int c, enum kind k, uint32_t flags) {
  for (int i = 0; i < ctxs[c].nids; i++)
    if (live_with(&ctxs[c].ids[i], k, flags)) return 1;
  return 0;
}
static int has_ioas(int c) { return has_kind(c, K_IOAS, 0); }

/* A live id of kind `k` whose flags include `flags`, `percent` of the time when there is one; else
 * pick_id(). */
static uint32_t pick_with(int c, enum kind k, uint32_t flags, unsigned percent) {
  struct ctx* x = &ctxs[c];
  int n = 0;
  for (int i = 0; i < x->nids; i++) n += live_with(&x->ids[i], k, flags);
  if (n && chance(percent)) {
    int j = (int)pick((unsigned)n);
    for (int i = 0; i < x->nids; i++)
      if (live_with(&x->ids[i], k, flags) && j-- == 0) return x->ids[i].id;
  }
  return pick_id(c, k);
}

/* For the newest ABI's steps: a live id of kind `k` most of the time (forced: always, when there is one), a
 * wrong one now and then (pick_id()). */
static uint32_t pick_live(int c, enum kind k, int forced) { return pick_with(c, k, 0, forced ? 100 : 65); }

/* An HWPT that may take PASID attachments (paging or nested), `percent` of the time when there is one. */
static uint32_t pick_pasid_hwpt(int c, unsigned percent) {
  int paging = has_kind(c, K_HWPT, R_PASID), nested = has_kind(c, K_HWPT_NESTED, R_PASID);
  if ((paging || nested) && chance(percent))
    return pick_with(c, paging && (!nested || chance(60)) ? K_HWPT : K_HWPT_NESTED, R_PASID, 100);
  unsigned roll = pick(100);
  return pick_live(c, roll < 60 ? K_HWPT : roll < 85 ? K_HWPT_NESTED : K_IOAS, 0);
}

static const struct map_rec* pick_map(int c) {
  int n = 0;
  for (int i = 0; i < nmaps; i++) n += maps[i].ctx == c;
  if (!n) return NULL;
  int k = (int)pick((unsigned)n);
  for (int i = 0; i < nmaps; i++)
    if (maps[i].ctx == c && k-- == 0) return &maps[i];
  return NULL;
}

/* A mapping of this IOAS when there is one, else any of the context. */
static const struct map_rec* pick_map_of(int c, uint32_t ioas) {
  int n = 0;
  for (int i = 0; i < nmaps; i++) n += maps[i].ctx == c && maps[i].ioas == ioas;
  if (!n || chance(10)) return pick_map(c);
  int k = (int)pick((unsigned)n);
  for (int i = 0; i < nmaps; i++)
    if (maps[i].ctx == c && maps[i].ioas == ioas && k-- == 0) return &maps[i];
  return NULL;
}

static void remember_map(int c, uint32_t ioas, uint64_t iova, uint64_t length, int buf, uint64_t offset) {
  struct map_rec m = {c, ioas, iova, length, buf, offset};
  if (nmaps < MAX_MAPS)
    maps[nmaps++] = m;
  else
    maps[pick(MAX_MAPS)] = m;
}

/* Drops the records of [iova, iova + length - 1] of an IOAS (ioas 0: every IOAS of the context). */
static void forget_maps(int c, uint32_t ioas, uint64_t iova, uint64_t length) {
  int j = 0;
  for (int i = 0; i < nmaps; i++) {
    const struct map_rec* m = &maps[i];
    int gone = m->ctx == c && (!ioas || m->ioas == ioas) && m->iova >= iova && m->iova - iova < length;
    if (!gone) maps[j++] = maps[i];
  }
  nmaps = j;
}

static uint64_t pick_len(void) {
  unsigned roll = pick(100);
  if (roll < 4) return 0;
  if (roll < 8) return 0x800;
  if (roll < 11) return PAGE_SZ + 0x800;
  if (roll < 14) return (BUF_PAGES + 1) * PAGE_SZ;
  return (1 + pick(6)) * PAGE_SZ;
}

/* An IOVA: mostly inside a known mapping or the mock aperture, sometimes below or above it, or unaligned. */
static uint64_t pick_iova(int c) {
  unsigned roll = pick(100);
  const struct map_rec* m = pick_map(c);
  uint64_t iova;
  if (m && roll < 50)
    iova = m->iova + (m->length > PAGE_SZ ? pick((unsigned)(m->length / PAGE_SZ)) * PAGE_SZ : 0);
  else if (roll < 85)
    iova = MOCK_APERTURE_START + pick(48) * PAGE_SZ;
  else {
    static const uint64_t odd[] = {
        0, 0x1000, 0x800000, MOCK_APERTURE_LAST + 1 - PAGE_SZ, MOCK_APERTURE_LAST + 1, 1ULL << 40};
    iova = odd[pick(sizeof(odd) / sizeof(odd[0]))];
  }
  if (chance(5)) iova += chance(50) ? 0x800 : 1;
  return iova;
}

/* A user address inside a buffer (printed as b<i>+<offset>); sometimes in the PROT_NONE rest of a chunk. */
static uint8_t* pick_va(int* buf, uint64_t* off) {
  *buf = (int)pick(NBUF);
  unsigned roll = pick(100);
  if (roll < 5)
    *off = BUF_LEN + PAGE_SZ * pick(4); /* guard */
  else
    *off = pick(BUF_PAGES) * PAGE_SZ + (roll < 9 ? 0x800 : 0);
  return bufs[*buf] + *off;
}

static uint32_t pick_map_flags(void) {
  unsigned roll = pick(100);
  if (roll < 70) return MAP_RW;
  if (roll < 80) return IOMMU_IOAS_MAP_READABLE;
  if (roll < 88) return IOMMU_IOAS_MAP_WRITEABLE;
  if (roll < 95) return 0;
  return MAP_RW | (1u << 5);
}

/* A context that is open, opening one if none is (the open is a step of its own). */
static int pick_ctx(void);

/* ---- argument variants -------------------------------------------------------------------------------
 * Most calls pass the struct as a well-behaved program does. Now and then the same call is made with a size
 * below the minimum, a larger size whose tail is zero (accepted as if it were sizeof) or not (E2BIG for the
 * iommufd structs; ignored by the VFIO argsz rules), a non-zero reserved field, a null argument or one on an
 * unmapped page. The variant is printed in the step line. `min` is the smallest size the call accepts;
 * `rsv`/`rsv_len` locate the reserved field (rsv_len 0: none). */
#define TAIL 16

static void* unmapped_arg(void) { return bufs[NBUF - 1] + BUF_LEN + PAGE_SZ; }

static int var_ioctl(int fd, unsigned long cmd, void* s, size_t len, size_t min, size_t rsv, size_t rsv_len) {
  uint8_t big[128 + TAIL];
  if (min > len || len > 128) {
    printf("FATAL var_ioctl: min %zu, len %zu\n", min, len);
    exit(2);
  }
  unsigned roll = pick(200);
  if (roll < 172 || (roll >= 196 && !rsv_len)) return abi_ioctl(fd, cmd, s);
  if (roll < 178) {
    static const uint32_t shorter[] = {0, 4};
    uint32_t size = chance(50) ? (uint32_t)min - 1 : shorter[pick(2)];
    memcpy(s, &size, sizeof(size));
    add(" size=%u(short)", size);
    return abi_ioctl(fd, cmd, s);
  }
  if (roll < 190) {
    int dirty = roll >= 184;
    uint32_t size = (uint32_t)len + (chance(50) ? 8 : TAIL);
    memcpy(big, s, len);
    memset(big + len, 0, TAIL);
    if (dirty) big[size - 1 - pick(8)] = (uint8_t)(1 + pick(255));
    memcpy(big, &size, sizeof(size));
    add(" size=%u(%s tail)", size, dirty ? "non-zero" : "zero");
    int r = abi_ioctl(fd, cmd, big);
    memcpy(s, big, len);
    return r;
  }
  if (roll < 193) {
    add(" arg=null");
    return abi_ioctl(fd, cmd, NULL);
  }
  if (roll < 196) {
    add(" arg=unmapped");
    return abi_ioctl(fd, cmd, unmapped_arg());
  }
  uint8_t v = (uint8_t)(1 + pick(255));
  ((uint8_t*)s)[rsv + pick((unsigned)rsv_len)] = v;
  add(" reserved=0x%x", v);
  return abi_ioctl(fd, cmd, s);
}
#define VAR(fd, cmd, s, min, rsv_field) \
  var_ioctl(fd, cmd, &(s), sizeof(s), min, offsetof(__typeof__(s), rsv_field), sizeof((s).rsv_field))
#define VAR_NO_RSV(fd, cmd, s, min) var_ioctl(fd, cmd, &(s), sizeof(s), min, 0, 0)

/* A pointer field: the intended address most of the time, sometimes null or an unmapped page. */
static uint64_t maybe_bad_ptr(void* p, const char* field) {
  unsigned roll = pick(100);
  if (roll < 3) {
    add(" %s=null", field);
    return 0;
  }
  if (roll < 6) {
    add(" %s=unmapped", field);
    return (uintptr_t)unmapped_arg();
  }
  return (uintptr_t)p;
}

/* An automatic domain is destroyed with its last device's attachment (device.c iommufd_hw_pagetable_put()
 * via the detach or replace): once no live stdev is seen attached to it, its record is marked dead. */
static void auto_domain_left(int c, uint32_t hwpt) {
  struct id_rec* h = hwpt ? find_id(c, hwpt) : NULL;
  if (!h || !(h->flags & R_AUTO)) return;
  for (int i = 0; i < ctxs[c].nids; i++)
    if (live_with(&ctxs[c].ids[i], K_STDEV, 0) && ctxs[c].ids[i].cur == hwpt) return;
  h->flags |= R_DEAD;
}

/* ---- PASID attachments ------------------------------------------------------------------------------- */
static int find_pasid(int c, uint32_t stdev, uint32_t pasid) {
  for (int i = 0; i < npasids; i++)
    if (pasids[i].ctx == c && pasids[i].stdev == stdev && pasids[i].pasid == pasid) return i;
  return -1;
}

static void drop_pasid(int i) { pasids[i] = pasids[--npasids]; }

static int count_pasids(int c, uint32_t stdev) {
  int n = 0;
  for (int i = 0; i < npasids; i++) n += pasids[i].ctx == c && (!stdev || pasids[i].stdev == stdev);
  return n;
}

/* Detaches, one step each, every recorded PASID of the context (stdev 0) or of one stdev: what must happen
 * before that stdev is destroyed or the context released (see struct pasid_rec). A plain call (no struct
 * variant), which succeeds whenever the stdev exists. Returns how many are still attached. */
static int detach_pasids(int c, uint32_t stdev, const char* why) {
  for (int i = 0; i < npasids;) {
    if (pasids[i].ctx != c || (stdev && pasids[i].stdev != stdev)) {
      i++;
      continue;
    }
    begin("pasid_detach");
    add(" ctx=%d stdev=%u pasid=%u (%s)", c, pasids[i].stdev, pasids[i].pasid, why);
    int r = pasid_detach(ctxs[c].fd, pasids[i].stdev, pasids[i].pasid);
    result(r);
    end();
    step_no++;
    if (r == 0)
      drop_pasid(i);
    else
      i++;
  }
  return count_pasids(c, stdev);
}

/* ---- the steps ----------------------------------------------------------------------------------------- */
static void op_open(int c) {
  begin("open");
  add(" ctx=%d", c);
  ctxs[c].fd = open("/dev/iommu", O_RDWR);
  result(ctxs[c].fd < 0 ? -errno : 0);
  end();
  ctxs[c].nids = 0;
  ctxs[c].vfio = 0;
}

static void op_close(int c) {
  /* The last descriptor: its release destroys every mock device, so their PASIDs are detached first. A
   * context kept alive by an access fd takes no new attachment afterwards (nothing can name it). */
  if (ctxs[c].dup < 0 && detach_pasids(c, 0, "before close")) {
    begin("close");
    add(" ctx=%d skipped: a PASID is still attached", c);
    end();
    return;
  }
  begin("close");
  add(" ctx=%d%s", c, ctxs[c].dup >= 0 ? " (a dup stays open)" : "");
  result(close(ctxs[c].fd) ? -errno : 0);
  end();
  /* With a dup open the file, and so the context with its objects, lives on under the other descriptor. */
  ctxs[c].fd = ctxs[c].dup;
  ctxs[c].dup = -1;
  if (ctxs[c].fd >= 0) return;
  ctxs[c].vfio = 0;
  forget_maps(c, 0, 0, ~0ULL);
  /* Access fds hold the context alive; their ids and maps stay listed for stale-use steps. */
}

static int pick_ctx(void) {
  int c = chance(80) ? 0 : 1;
  if (ctxs[c].fd < 0) {
    if (ctxs[!c].fd >= 0 && chance(70)) return !c;
    op_open(c);
    step_no++;
  }
  return c;
}

static void op_ioas_alloc(int c) {
  struct iommu_ioas_alloc a = {.size = sizeof(a), .flags = chance(5) ? 1 : 0};
  begin("ioas_alloc");
  add(" ctx=%d flags=%u", c, a.flags);
  int r = VAR_NO_RSV(ctxs[c].fd, IOMMU_IOAS_ALLOC, a, 12);
  result(r);
  add(" id=%u", a.out_ioas_id);
  end();
  if (r == 0) remember_new(c, a.out_ioas_id, K_IOAS, 0, 0);
}

static void op_destroy(int c) {
  enum kind k = (enum kind)pick(K_NKINDS);
  uint32_t id = pick_id(c, k);
  /* Whatever kind this program takes the id for: a recorded PASID attachment names a live stdev. */
  if (count_pasids(c, id) && detach_pasids(c, id, "before destroy")) {
    begin("destroy");
    add(" ctx=%d id=%u skipped: a PASID is still attached", c, id);
    end();
    return;
  }
  begin("destroy");
  add(" ctx=%d id=%u", c, id);
  struct iommu_destroy d = {.size = sizeof(d), .id = id};
  int r = VAR_NO_RSV(ctxs[c].fd, IOMMU_DESTROY, d, 8);
  result(r);
  end();
  if (r == 0 && id) forget_maps(c, id, 0, ~0ULL);
  struct id_rec* rec = find_id(c, id);
  if (r != 0 || !rec) return;
  rec->flags |= R_DEAD;
  if (rec->kind != K_STDEV) return;
  /* The stdev takes its idev along (selftest.c iommufd_selftest_destroy() unbinds it), and its attachment. */
  struct id_rec* idev = find_id(c, rec->link);
  if (idev && idev->kind == K_IDEV) idev->flags |= R_DEAD;
  auto_domain_left(c, rec->cur);
}

static void op_map(int c) {
  int buf;
  uint64_t off;
  uint8_t* va = pick_va(&buf, &off);
  struct iommu_ioas_map m = {.size = sizeof(m),
                             .flags = pick_map_flags() | (chance(60) ? IOMMU_IOAS_MAP_FIXED_IOVA : 0),
                             .ioas_id = pick_id(c, K_IOAS),
                             .user_va = (uintptr_t)va,
                             .length = pick_len(),
                             .iova = pick_iova(c)};
  begin("map");
  add(" ctx=%d ioas=%u va=b%d+0x%llx len=0x%llx iova=0x%llx flags=0x%x", c, m.ioas_id, buf,
      (unsigned long long)off, (unsigned long long)m.length, (unsigned long long)m.iova, m.flags);
  int r = VAR(ctxs[c].fd, IOMMU_IOAS_MAP, m, 40, __reserved);
  result(r);
  add(" iova=0x%llx", (unsigned long long)m.iova);
  end();
  if (r == 0) remember_map(c, m.ioas_id, m.iova, m.length, buf, off);
}

static void op_map_file(int c) {
  struct iommu_ioas_map_file m = {.size = sizeof(m),
                                  .flags = pick_map_flags() | (chance(60) ? IOMMU_IOAS_MAP_FIXED_IOVA : 0),
                                  .ioas_id = pick_id(c, K_IOAS),
                                  .fd = chance(5) ? -1 : memfd,
                                  .start = pick(BUF_PAGES) * PAGE_SZ + (chance(5) ? 0x800 : 0),
                                  .length = pick_len(),
                                  .iova = pick_iova(c)};
  begin("map_file");
  add(" ctx=%d ioas=%u fd=%s start=0x%llx len=0x%llx iova=0x%llx flags=0x%x", c, m.ioas_id,
      m.fd < 0 ? "bad" : "memfd", (unsigned long long)m.start, (unsigned long long)m.length,
      (unsigned long long)m.iova, m.flags);
  int r = VAR_NO_RSV(ctxs[c].fd, IOMMU_IOAS_MAP_FILE, m, 40);
  result(r);
  add(" iova=0x%llx", (unsigned long long)m.iova);
  end();
  if (r == 0) remember_map(c, m.ioas_id, m.iova, m.length, -1, m.start);
}

static void op_dmabuf(int c) {
  const int slot = (int)pick(NDMABUF);
  const unsigned roll = pick(100);
  if (dmabufs[slot] < 0 || roll < 15) {
    static const uint32_t flag_choices[] = {O_CLOEXEC, 0, O_RDWR | O_NONBLOCK, O_WRONLY | O_CLOEXEC};
    const uint32_t len = chance(10) ? (chance(50) ? 0u : (uint32_t)(512 * PAGE_SZ + 1))
                                    : (uint32_t)((1 + pick(8)) * PAGE_SZ - (chance(20) ? 0x100 : 0));
    const uint32_t flags = chance(70) ? O_CLOEXEC : flag_choices[pick(4)];
    if (dmabufs[slot] >= 0) close(dmabufs[slot]);
    dmabufs[slot] = -1;
    begin("dmabuf_get");
    add(" ctx=%d slot=%d len=0x%x flags=0x%x", c, slot, len, flags);
    const int r = dmabuf_get(ctxs[c].fd, len, flags);
    result(r >= 0 ? 0 : r);
    if (r >= 0)
      add(" getfl=0x%x cloexec=%d", (unsigned)fcntl(r, F_GETFL), (fcntl(r, F_GETFD) & FD_CLOEXEC) != 0);
    end();
    if (r >= 0) {
      dmabufs[slot] = r;
      dmabuf_size[slot] = (len + PAGE_SZ - 1) & ~(PAGE_SZ - 1);
    }
    return;
  }
  if (roll < 40) {
    const unsigned which = pick(20);
    const int target = which == 0 ? ctxs[c].fd : which == 1 ? -1 : dmabufs[slot];
    const uint32_t revoked = chance(60) ? 1u : 0u;
    begin("dmabuf_revoke");
    add(" ctx=%d target=%s", c, which == 0 ? "iommufd" : which == 1 ? "bad" : "slot");
    if (which > 1) add("%d", slot);
    add(" revoked=%u", revoked);
    result(dmabuf_revoke(ctxs[c].fd, target, revoked));
    end();
    return;
  }
  const uint64_t pages = dmabuf_size[slot] / PAGE_SZ;
  const uint64_t start = pick((unsigned)pages) * PAGE_SZ + (chance(5) ? 0x800 : 0);
  struct iommu_ioas_map_file m = {
      .size = sizeof(m),
      .flags = pick_map_flags() | (chance(60) ? IOMMU_IOAS_MAP_FIXED_IOVA : 0),
      .ioas_id = pick_id(c, K_IOAS),
      .fd = dmabufs[slot],
      .start = start,
      .length = chance(15) ? pick_len() : dmabuf_size[slot] - start + (chance(10) ? 1 : 0),
      .iova = pick_iova(c)};
  begin("map_dmabuf");
  add(" ctx=%d ioas=%u slot=%d start=0x%llx len=0x%llx iova=0x%llx flags=0x%x", c, m.ioas_id, slot,
      (unsigned long long)m.start, (unsigned long long)m.length, (unsigned long long)m.iova, m.flags);
  int r = VAR_NO_RSV(ctxs[c].fd, IOMMU_IOAS_MAP_FILE, m, 40);
  result(r);
  add(" iova=0x%llx", (unsigned long long)m.iova);
  end();
  if (r == 0) remember_map(c, m.ioas_id, m.iova, m.length, -2, m.start);
}

static void op_copy(int c) {
  const struct map_rec* src = pick_map(c);
  struct iommu_ioas_copy m = {.size = sizeof(m),
                              .flags = pick_map_flags() | (chance(60) ? IOMMU_IOAS_MAP_FIXED_IOVA : 0),
                              .dst_ioas_id = pick_id(c, K_IOAS),
                              .src_ioas_id = src && chance(80) ? src->ioas : pick_id(c, K_IOAS),
                              .length = src && chance(60) ? src->length : pick_len(),
                              .dst_iova = pick_iova(c),
                              .src_iova = src && chance(80) ? src->iova : pick_iova(c)};
  begin("copy");
  add(" ctx=%d dst=%u src=%u len=0x%llx dst_iova=0x%llx src_iova=0x%llx flags=0x%x", c, m.dst_ioas_id,
      m.src_ioas_id, (unsigned long long)m.length, (unsigned long long)m.dst_iova,
      (unsigned long long)m.src_iova, m.flags);
  int r = VAR_NO_RSV(ctxs[c].fd, IOMMU_IOAS_COPY, m, 40);
  result(r);
  add(" dst_iova=0x%llx", (unsigned long long)m.dst_iova);
  end();
  if (r == 0 && src && src->iova == m.src_iova) {
    struct map_rec s = *src;
    remember_map(c, m.dst_ioas_id, m.dst_iova, m.length, s.buf, s.offset);
  }
}

static void op_unmap(int c) {
  const struct map_rec* m = pick_map(c);
  struct iommu_ioas_unmap u = {.size = sizeof(u)};
  unsigned roll = pick(100);
  if (m && roll < 55) {
    u.ioas_id = m->ioas;
    u.iova = m->iova;
    u.length = m->length;
  } else if (roll < 70) {
    u.ioas_id = pick_id(c, K_IOAS);
    u.iova = 0;
    u.length = ~0ULL;
  } else {
    u.ioas_id = pick_id(c, K_IOAS);
    u.iova = pick_iova(c);
    u.length = pick_len();
  }
  begin("unmap");
  add(" ctx=%d ioas=%u iova=0x%llx len=0x%llx", c, u.ioas_id, (unsigned long long)u.iova,
      (unsigned long long)u.length);
  uint64_t want = u.length;
  int r = VAR_NO_RSV(ctxs[c].fd, IOMMU_IOAS_UNMAP, u, 24);
  result(r);
  add(" len=0x%llx", (unsigned long long)u.length);
  end();
  if (r == 0) forget_maps(c, u.ioas_id, u.iova, want);
}

static void op_allow_iovas(int c) {
  struct iommu_iova_range r[3];
  uint32_t n = pick(3);
  for (uint32_t i = 0; i < n; i++) {
    r[i].start = MOCK_APERTURE_START + pick(32) * PAGE_SZ * 4;
    r[i].last = chance(8) ? r[i].start - 1 : r[i].start + (1 + pick(64)) * PAGE_SZ - 1;
  }
  struct iommu_ioas_allow_iovas a = {.size = sizeof(a), .ioas_id = pick_id(c, K_IOAS), .num_iovas = n};
  begin("allow_iovas");
  add(" ctx=%d ioas=%u n=%u", c, a.ioas_id, n);
  a.allowed_iovas = maybe_bad_ptr(r, "ranges");
  for (uint32_t i = 0; i < n; i++)
    add(" [0x%llx,0x%llx]", (unsigned long long)r[i].start, (unsigned long long)r[i].last);
  result(VAR(ctxs[c].fd, IOMMU_IOAS_ALLOW_IOVAS, a, 24, __reserved));
  end();
}

static void op_iova_ranges(int c) {
  struct iommu_iova_range r[4];
  memset(r, 0, sizeof(r));
  uint32_t cap = pick(5);
  struct iommu_ioas_iova_ranges q = {.size = sizeof(q), .ioas_id = pick_id(c, K_IOAS), .num_iovas = cap};
  begin("iova_ranges");
  add(" ctx=%d ioas=%u cap=%u", c, q.ioas_id, cap);
  q.allowed_iovas = maybe_bad_ptr(r, "ranges");
  result(VAR(ctxs[c].fd, IOMMU_IOAS_IOVA_RANGES, q, 32, __reserved));
  add(" num=%u align=0x%llx", q.num_iovas, (unsigned long long)q.out_iova_alignment);
  for (uint32_t i = 0; i < cap; i++)
    add(" [0x%llx,0x%llx]", (unsigned long long)r[i].start, (unsigned long long)r[i].last);
  end();
}

static void op_option(int c) {
  struct iommu_option o = {.size = sizeof(o)};
  unsigned roll = pick(100);
  if (roll < 20) {
    o.option_id = IOMMU_OPTION_RLIMIT_MODE;
    o.op = IOMMU_OPTION_OP_GET;
    o.object_id = chance(80) ? 0 : pick_id(c, K_IOAS);
  } else {
    o.option_id = roll < 95 ? IOMMU_OPTION_HUGE_PAGES : 7;
    o.op = chance(50) ? IOMMU_OPTION_OP_GET : IOMMU_OPTION_OP_SET;
    o.object_id = pick_id(c, K_IOAS);
    o.val64 = o.op == IOMMU_OPTION_OP_SET ? pick(chance(90) ? 2 : 3) : 0;
    /* Large pages stay off on the dirty-tracking IOAS (op_dirty()): the mock's entries must not depend on
     * the buffers' physical contiguity. */
    const struct id_rec* rec = find_id(c, o.object_id);
    if (o.val64 == 1 && o.option_id == IOMMU_OPTION_HUGE_PAGES && rec && live_with(rec, K_IOAS, R_NOHUGE))
      o.val64 = 0;
  }
  begin("option");
  add(" ctx=%d option=%u op=%u obj=%u val=%llu", c, o.option_id, o.op, o.object_id,
      (unsigned long long)o.val64);
  result(VAR(ctxs[c].fd, IOMMU_OPTION, o, 24, __reserved));
  add(" val=%llu", (unsigned long long)o.val64);
  end();
}

static void op_add_reserved(int c) {
  uint32_t ioas = pick_id(c, K_IOAS);
  uint64_t start = MOCK_APERTURE_START + pick(48) * PAGE_SZ, len = (1 + pick(4)) * PAGE_SZ;
  begin("add_reserved");
  add(" ctx=%d ioas=%u start=0x%llx len=0x%llx", c, ioas, (unsigned long long)start, (unsigned long long)len);
  struct iommu_test_cmd cmd = {.size = sizeof(cmd), .op = IOMMU_TEST_OP_ADD_RESERVED, .id = ioas};
  cmd.a.add_reserved.start = start;
  cmd.a.add_reserved.length = len;
  /* 52, not the newest minimum of 68: sizes 52..67 are the v6.2 layout, which uiommufd accepts and the newest
   * kernel refuses (known-differences.txt, rule v62-test-cmd); random sequences stay out of that range. */
  result(VAR(ctxs[c].fd, IOMMU_TEST_CMD, cmd, 52, __reserved));
  end();
}

/* MOCK_DOMAIN, or MOCK_DOMAIN_FLAGS with device flags (no dirty tracking, PASID support): a mock device bound
 * and attached to an IOAS (an automatic domain) or an HWPT. force: a set-up step of another operation, onto
 * an IOAS (2: a device with PASID support; 3: a plain MOCK_DOMAIN, a device that can track dirty pages). */
static void op_mock_domain(int c, int force) {
  unsigned roll = force ? 0 : pick(100);
  uint32_t pt = force ? pick_live(c, K_IOAS, 1)
                      : pick_id(c, roll < 80   ? K_IOAS
                                   : roll < 92 ? K_HWPT
                                               : K_HWPT_NESTED);
  uint32_t stdev = 0, hwpt = 0, idev = 0;
  int r, with_flags = force == 2 || (force != 3 && chance(force ? 60 : 35));
  uint32_t dev_flags = 0;
  if (with_flags) {
    static const uint32_t dflags[] = {0,
                                      MOCK_FLAGS_DEVICE_NO_DIRTY,
                                      MOCK_FLAGS_DEVICE_PASID,
                                      MOCK_FLAGS_DEVICE_PASID,
                                      MOCK_FLAGS_DEVICE_PASID,
                                      MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_PASID};
    dev_flags = force == 2  ? MOCK_FLAGS_DEVICE_PASID
                : chance(4) ? 1u << (chance(50) ? 1 : 3)
                            : dflags[pick(sizeof(dflags) / sizeof(dflags[0]))];
    begin("mock_domain_flags");
    add(" ctx=%d pt=%u dev_flags=0x%x", c, pt, dev_flags);
    r = mock_domain_flags(ctxs[c].fd, pt, dev_flags, &stdev, &hwpt, &idev);
  } else {
    begin("mock_domain");
    add(" ctx=%d pt=%u", c, pt);
    r = mock_domain(ctxs[c].fd, pt, &stdev, &hwpt, &idev);
  }
  result(r);
  add(" stdev=%u hwpt=%u idev=%u", stdev, hwpt, idev);
  end();
  if (r == 0) {
    struct id_rec* rec = remember_new(c, stdev, K_STDEV, dev_flags, idev);
    if (rec) rec->cur = hwpt;
    remember_new(c, idev, K_IDEV, dev_flags, stdev);
    remember_id(c, hwpt, K_HWPT, R_AUTO, pt);
  }
}

static void op_check_map(int c) {
  const struct map_rec* m = pick_map(c);
  uint32_t hwpt = pick_id(c, K_HWPT);
  if (!m || m->buf < 0) return;
  uint64_t len = m->length > 8 * PAGE_SZ ? 8 * PAGE_SZ : m->length;
  begin("check_map");
  add(" ctx=%d hwpt=%u iova=0x%llx len=0x%llx va=b%d+0x%llx", c, hwpt, (unsigned long long)m->iova,
      (unsigned long long)len, m->buf, (unsigned long long)m->offset);
  result(check_map(ctxs[c].fd, hwpt, m->iova, bufs[m->buf] + m->offset, len));
  end();
}

static void op_check_refs(int c) {
  int buf = (int)pick(NBUF);
  uint64_t off = pick(BUF_PAGES) * PAGE_SZ, len = (1 + pick(4)) * PAGE_SZ;
  if (off + len > BUF_LEN) len = BUF_LEN - off;
  uint32_t refs = pick(3);
  begin("check_refs");
  add(" ctx=%d va=b%d+0x%llx len=0x%llx refs=%u", c, buf, (unsigned long long)off, (unsigned long long)len,
      refs);
  result(check_refs(ctxs[c].fd, bufs[buf] + off, len, refs));
  end();
}

/* ---- the newest page-table ABI: HWPT_ALLOC, GET_HW_INFO, HWPT_INVALIDATE and the mock's nested/PASID ops --
 */
/* A mock device to name, created first (a step of its own) most of the time when the context has none. */
static void ensure_idev(int c) {
  if (!has_kind(c, K_IDEV, 0) && chance(85)) {
    op_mock_domain(c, 1);
    step_no++;
  }
}

/* The mock's driver data of IOMMU_HWPT_ALLOC: data_len 8 (the whole struct) mostly; 4 (iotlb only, the
 * oldest layout), 12 (longer than the kernel's struct), 3 (below the minimum) or 0 now and then. */
static uint32_t pick_data_len(void) {
  unsigned roll = pick(100);
  return roll < 72 ? 8 : roll < 80 ? 4 : roll < 87 ? 12 : roll < 94 ? 3 : 0;
}

/* IOMMU_HWPT_ALLOC. mode 0: random, paging on an IOAS or nested on an HWPT; 1: a paging HWPT with `want`
 * flags as a set-up step; 2: a nested HWPT as a set-up step. dev: the idev to use, 0: pick one. Returns the
 * new HWPT's id, 0 on failure. */
static uint32_t op_hwpt_alloc(int c, int mode, uint32_t want, uint32_t dev, uint32_t pt) {
  int nested = mode == 2 || (mode == 0 && chance(40));
  if (mode == 0) {
    ensure_idev(c);
    /* A nested HWPT needs a NEST_PARENT paging HWPT: allocated first, a step of its own, most of the time. */
    if (nested && !has_kind(c, K_HWPT, R_NEST_PARENT) && chance(70)) {
      op_hwpt_alloc(c, 1, IOMMU_HWPT_ALLOC_NEST_PARENT | (chance(30) ? IOMMU_HWPT_ALLOC_PASID : 0), 0, 0);
      step_no++;
    }
  }
  struct iommu_hwpt_alloc a = {.size = sizeof(a), .dev_id = dev ? dev : pick_live(c, K_IDEV, mode)};
  struct {
    struct iommu_hwpt_selftest s;
    uint32_t tail[2];
  } data = {.s = {.iotlb = IOMMU_TEST_IOTLB_DEFAULT}};
  if (!nested) {
    a.pt_id = pt ? pt : pick_live(c, K_IOAS, mode);
    if (mode == 1) {
      a.flags = want;
    } else {
      a.flags = (chance(40) ? IOMMU_HWPT_ALLOC_NEST_PARENT : 0) |
                (chance(30) ? IOMMU_HWPT_ALLOC_DIRTY_TRACKING : 0) |
                (chance(35) ? IOMMU_HWPT_ALLOC_PASID : 0);
      if (chance(4)) a.flags |= IOMMU_HWPT_FAULT_ID_VALID;
      if (chance(3)) a.flags |= 1u << (4 + pick(4));
    }
    /* Driver data on a paging HWPT: the mock's page-table type (selftest.c mock_domain_alloc_paging_flags()).
     */
    unsigned roll = mode == 1 ? 0 : pick(100);
    if (roll < 65) {
      a.data_type = IOMMU_HWPT_DATA_NONE;
      a.data_len = chance(5) ? 8 : 0;
    } else {
      a.data_type = roll < 95 ? IOMMU_HWPT_DATA_SELFTEST : IOMMU_HWPT_DATA_VTD_S1;
      a.data_len = pick_data_len();
      unsigned t = pick(100);
      data.s.pagetable_type = t < 90 ? MOCK_IOMMUPT_DEFAULT : t < 95 ? MOCK_IOMMUPT_HUGE : 2;
    }
  } else {
    unsigned roll = pick(100);
    a.pt_id = mode == 2 || roll < 85 ? pick_with(c, K_HWPT, R_NEST_PARENT, mode == 2 ? 100 : 85)
              : roll < 93            ? pick_live(c, K_HWPT_NESTED, 0)
                                     : pick_live(c, K_IOAS, 0);
    a.flags = chance(30) ? IOMMU_HWPT_ALLOC_PASID : 0;
    if (mode == 0 && chance(4)) a.flags |= IOMMU_HWPT_FAULT_ID_VALID;
    if (mode == 0 && chance(3)) a.flags |= chance(50) ? IOMMU_HWPT_ALLOC_NEST_PARENT : 1u << 6;
    roll = mode == 2 ? 0 : pick(100);
    a.data_type = roll < 88   ? IOMMU_HWPT_DATA_SELFTEST
                  : roll < 94 ? IOMMU_HWPT_DATA_NONE
                              : IOMMU_HWPT_DATA_VTD_S1;
    a.data_len = a.data_type == IOMMU_HWPT_DATA_NONE ? 0 : mode == 2 ? 8 : pick_data_len();
    unsigned v = pick(100);
    data.s.iotlb = v < 60 ? IOMMU_TEST_IOTLB_DEFAULT : v < 70 ? 0 : (uint32_t)rnd();
  }
  if (a.flags & IOMMU_HWPT_FAULT_ID_VALID) a.fault_id = pick_id(c, (enum kind)pick(K_NKINDS));
  begin("hwpt_alloc");
  add(" ctx=%d %s dev=%u pt=%u flags=0x%x", c, nested ? "nested" : "paging", a.dev_id, a.pt_id, a.flags);
  if (a.flags & IOMMU_HWPT_FAULT_ID_VALID) add(" fault=%u", a.fault_id);
  if (a.data_type == IOMMU_HWPT_DATA_SELFTEST)
    add(" data=selftest len=%u iotlb=0x%x pt_type=%u", a.data_len, data.s.iotlb, data.s.pagetable_type);
  else
    add(" data_type=%u len=%u", a.data_type, a.data_len);
  a.data_uptr = maybe_bad_ptr(&data, "data");
  int r = VAR(ctxs[c].fd, IOMMU_HWPT_ALLOC, a, 24, __reserved);
  result(r);
  add(" id=%u", a.out_hwpt_id);
  end();
  if (r != 0) return 0;
  if (nested) {
    struct id_rec* rec = remember_new(c, a.out_hwpt_id, K_HWPT_NESTED,
                                      a.flags & IOMMU_HWPT_ALLOC_PASID ? R_PASID : 0, a.pt_id);
    for (int i = 0; rec && i < MOCK_NESTED_DOMAIN_IOTLB_NUM; i++) rec->iotlb[i] = data.s.iotlb;
  } else {
    uint32_t f = (a.flags & IOMMU_HWPT_ALLOC_NEST_PARENT ? R_NEST_PARENT : 0) |
                 (a.flags & IOMMU_HWPT_ALLOC_PASID ? R_PASID : 0) |
                 (a.flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING ? R_DIRTY : 0);
    remember_new(c, a.out_hwpt_id, K_HWPT, f, a.pt_id);
  }
  return a.out_hwpt_id;
}

/* A nested HWPT to name, allocated first (a step of its own, with its own set-up) some of the time when the
 * context has none. */
static void ensure_nested(int c) {
  if (has_kind(c, K_HWPT_NESTED, 0) || !chance(75)) return;
  ensure_idev(c);
  if (!has_kind(c, K_HWPT, R_NEST_PARENT)) {
    op_hwpt_alloc(c, 1, IOMMU_HWPT_ALLOC_NEST_PARENT, 0, 0);
    step_no++;
  }
  op_hwpt_alloc(c, 2, 0, 0, 0);
  step_no++;
}

/* IOMMU_GET_HW_INFO into a 16-byte buffer that starts as 0xa5 bytes (the words show what the kernel copied
 * and what it cleared). */
static void op_get_hw_info(int c) {
  ensure_idev(c);
  uint32_t buf[4];
  memset(buf, 0xa5, sizeof(buf));
  static const uint32_t lens[] = {0, 4, 8, 8, 16};
  struct iommu_hw_info h = {.size = sizeof(h), .dev_id = pick_live(c, K_IDEV, 0), .data_len = lens[pick(5)]};
  unsigned roll = pick(100);
  if (roll < 30) {
    static const uint32_t types[] = {IOMMU_HW_INFO_TYPE_SELFTEST, IOMMU_HW_INFO_TYPE_SELFTEST,
                                     IOMMU_HW_INFO_TYPE_DEFAULT, 1, 2};
    h.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
    h.in_data_type = types[pick(5)];
  } else if (roll < 36) {
    h.in_data_type = 1 + pick(3); /* ignored without the flag */
  } else if (roll < 39) {
    h.flags = 1u << 1;
  }
  begin("get_hw_info");
  add(" ctx=%d dev=%u flags=0x%x in_type=0x%x len=%u", c, h.dev_id, h.flags, h.in_data_type, h.data_len);
  h.data_uptr = maybe_bad_ptr(buf, "data");
  result(VAR(ctxs[c].fd, IOMMU_GET_HW_INFO, h, 32, __reserved));
  add(" len=%u type=0x%x caps=0x%llx max_pasid_log2=%u data=%08x,%08x,%08x,%08x", h.data_len, h.in_data_type,
      (unsigned long long)h.out_capabilities, h.out_max_pasid_log2, buf[0], buf[1], buf[2], buf[3]);
  end();
}

/* IOMMU_HWPT_INVALIDATE with 0-3 entries of the mock's iotlb invalidation, mostly on a nested HWPT. */
static void op_hwpt_invalidate(int c) {
  ensure_nested(c);
  unsigned roll = pick(100);
  uint32_t id = roll < 80   ? pick_with(c, K_HWPT_NESTED, 0, 85)
                : roll < 92 ? pick_live(c, K_HWPT, 0)
                            : pick_id(c, (enum kind)pick(K_NKINDS));
  uint32_t n = pick(4), len = chance(88) ? 8 : (uint32_t[]){0, 4, 12}[pick(3)];
  struct iommu_hwpt_invalidate_selftest e[3];
  uint8_t arr[3 * 12];
  memset(arr, 0, sizeof(arr));
  for (uint32_t i = 0; i < n; i++) {
    unsigned f = pick(100);
    e[i].flags = f < 70 ? 0 : f < 90 ? IOMMU_TEST_INVALIDATE_FLAG_ALL : 1u << (1 + pick(31));
    e[i].iotlb_id = chance(90) ? pick(4) : 4;
    if (len) memcpy(arr + i * len, &e[i], len < sizeof(e[i]) ? len : sizeof(e[i]));
  }
  unsigned t = pick(100);
  struct iommu_hwpt_invalidate inv = {.size = sizeof(inv),
                                      .hwpt_id = id,
                                      .data_type = t < 90   ? IOMMU_HWPT_INVALIDATE_DATA_SELFTEST
                                                   : t < 95 ? IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID
                                                            : 0,
                                      .entry_len = len,
                                      .entry_num = chance(3) ? IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX + 1 : n};
  begin("hwpt_invalidate");
  add(" ctx=%d hwpt=%u type=0x%x entry_len=%u num=%u", c, id, inv.data_type, len, inv.entry_num);
  for (uint32_t i = 0; i < n; i++) add(" [0x%x,%u]", e[i].flags, e[i].iotlb_id);
  inv.data_uptr = maybe_bad_ptr(arr, "data");
  int r = VAR(ctxs[c].fd, IOMMU_HWPT_INVALIDATE, inv, 32, __reserved);
  result(r);
  add(" num=%u", inv.entry_num);
  end();
  /* The model of the mock IOTLB: entries before entry_num out were applied, in order (selftest.c
   * mock_domain_cache_invalidate_user()). */
  struct id_rec* rec = find_id(c, id);
  if (!rec || rec->kind != K_HWPT_NESTED || inv.entry_num > n) return;
  for (uint32_t i = 0; i < inv.entry_num; i++) {
    if (e[i].flags & IOMMU_TEST_INVALIDATE_FLAG_ALL)
      memset(rec->iotlb, 0, sizeof(rec->iotlb));
    else if (e[i].iotlb_id < MOCK_NESTED_DOMAIN_IOTLB_NUM)
      rec->iotlb[e[i].iotlb_id] = 0;
  }
}

/* MD_CHECK_IOTLB: the value as modelled, the default, 0, or a random one. */
static void op_check_iotlb(int c) {
  ensure_nested(c);
  uint32_t id = chance(85) ? pick_with(c, K_HWPT_NESTED, 0, 85) : pick_live(c, K_HWPT, 0);
  uint32_t slot = chance(90) ? pick(4) : 4;
  const struct id_rec* rec = find_id(c, id);
  unsigned roll = pick(100);
  uint32_t want = roll < 55 && rec && rec->kind == K_HWPT_NESTED && slot < MOCK_NESTED_DOMAIN_IOTLB_NUM
                      ? rec->iotlb[slot]
                  : roll < 75 ? IOMMU_TEST_IOTLB_DEFAULT
                  : roll < 90 ? 0
                              : (uint32_t)rnd();
  begin("check_iotlb");
  add(" ctx=%d hwpt=%u iotlb_id=%u value=0x%x", c, id, slot, want);
  result(check_iotlb(ctxs[c].fd, id, slot, want));
  end();
}

/* DEV_CHECK_CACHE: nothing here clears a device cache (that takes a vIOMMU), so each entry holds the default.
 */
static void op_dev_check_cache(int c) {
  ensure_idev(c);
  uint32_t id = pick_live(c, K_IDEV, 0), slot = chance(90) ? pick(4) : 4;
  unsigned roll = pick(100);
  uint32_t want = roll < 70 ? IOMMU_TEST_DEV_CACHE_DEFAULT : roll < 85 ? 0 : (uint32_t)rnd();
  begin("dev_check_cache");
  add(" ctx=%d idev=%u cache_id=%u value=0x%x", c, id, slot, want);
  result(dev_check_cache(ctxs[c].fd, id, slot, want));
  end();
}

/* MOCK_DOMAIN_REPLACE of a mock device's attachment (no PASID) onto an IOAS, a paging or a nested HWPT.
 * stdev and pt: given by a set-up step (non-zero), else picked. */
static void op_mock_domain_replace(int c, uint32_t stdev, uint32_t pt) {
  if (!stdev) {
    ensure_idev(c);
    stdev = pick_live(c, K_STDEV, 0);
    unsigned roll = pick(100);
    pt = roll < 30   ? pick_live(c, K_IOAS, 0)
         : roll < 62 ? pick_live(c, K_HWPT, 0)
         : roll < 88 ? pick_live(c, K_HWPT_NESTED, 0)
                     : pick_id(c, (enum kind)pick(K_NKINDS));
  }
  uint32_t out = 0;
  begin("mock_domain_replace");
  add(" ctx=%d stdev=%u pt=%u", c, stdev, pt);
  int r = mock_domain_replace(ctxs[c].fd, stdev, pt, &out);
  result(r);
  add(" hwpt=%u", out);
  end();
  if (r != 0) return;
  const struct id_rec* ptr = find_id(c, pt);
  if (ptr && ptr->kind == K_IOAS) remember_id(c, out, K_HWPT, R_AUTO, pt);
  struct id_rec* rec = find_id(c, stdev);
  if (rec && rec->kind == K_STDEV) {
    uint32_t old = rec->cur;
    rec->cur = out;
    auto_domain_left(c, old);
  }
}

/* The virtual IOMMU: VIOMMU_ALLOC (with the mock's data now and then), VDEVICE_ALLOC, a nested HWPT on a
 * vIOMMU and a mock device moved onto it, an invalidation of the vIOMMU (the devices' caches), VEVENTQ_ALLOC
 * with its fd, TRIGGER_VEVENT and a read of the queue, HW_QUEUE_ALLOC over a mapped or random IOVA. */
#define NVQ 4
static int vq_fds[NVQ] = {-1, -1, -1, -1};
static void op_viommu(int c) {
  ensure_idev(c);
  const unsigned roll = pick(100);
  const int fd = ctxs[c].fd;
  uint32_t id = 0;
  if (roll < 12 || !has_kind(c, K_VIOMMU, 0)) {
    if (!has_kind(c, K_HWPT, R_NEST_PARENT) && chance(80)) {
      op_hwpt_alloc(c, 1, IOMMU_HWPT_ALLOC_NEST_PARENT, 0, 0);
      step_no++;
    }
    const uint32_t dev = pick_live(c, K_IDEV, 0), parent = pick_with(c, K_HWPT, R_NEST_PARENT, 85);
    const uint32_t type = chance(92) ? IOMMU_VIOMMU_TYPE_SELFTEST : (chance(50) ? 0 : 0xdead);
    struct iommu_viommu_selftest data = {.in_data = (uint32_t)rnd()};
    const uint32_t len = chance(60) ? 0 : (uint32_t[]){24, 8, 4, 25}[pick(4)];
    begin("viommu_alloc");
    add(" ctx=%d dev=%u hwpt=%u type=0x%x data_len=%u", c, dev, parent, type, len);
    int r = viommu_alloc_full(fd, sizeof(struct iommu_viommu_alloc), 0, type, dev, parent, &data, len, &id);
    result(r);
    add(" id=%u out_data=0x%x mmap=0x%llx+0x%llx", id, data.out_data,
        (unsigned long long)data.out_mmap_offset, (unsigned long long)data.out_mmap_length);
    end();
    if (r == 0) remember_new(c, id, K_VIOMMU, 0, parent);
    return;
  }
  const uint32_t viommu = pick_live(c, K_VIOMMU, 0);
  if (roll < 34) {
    const uint32_t dev = pick_live(c, K_IDEV, 0);
    const uint64_t virt_id = pick(4) * 0x11;
    begin("vdevice_alloc");
    add(" ctx=%d viommu=%u dev=%u virt_id=0x%llx", c, viommu, dev, (unsigned long long)virt_id);
    int r = vdevice_alloc(fd, viommu, dev, virt_id, &id);
    result(r);
    add(" id=%u", id);
    end();
    if (r == 0) remember_new(c, id, K_VDEV, 0, dev);
    return;
  }
  if (roll < 50) {
    const uint32_t dev = pick_live(c, K_IDEV, 0);
    const uint32_t flags = chance(20) ? IOMMU_HWPT_ALLOC_PASID : 0;
    begin("hwpt_alloc_on_viommu");
    add(" ctx=%d dev=%u viommu=%u flags=0x%x", c, dev, viommu, flags);
    const uint32_t r = (uint32_t)hwpt_alloc_nested(fd, dev, viommu, flags, IOMMU_TEST_IOTLB_DEFAULT, &id);
    result((int)r);
    add(" id=%u", id);
    end();
    struct id_rec* vrec = find_id(c, viommu);
    if (r != 0) return;
    struct id_rec* rec = remember_new(c, id, K_HWPT_NESTED, flags ? R_PASID : 0, vrec ? vrec->link : 0);
    if (rec)
      for (int i = 0; i < MOCK_NESTED_DOMAIN_IOTLB_NUM; i++) rec->iotlb[i] = IOMMU_TEST_IOTLB_DEFAULT;
    /* Its device onto it, mostly. */
    struct id_rec* d = find_id(c, dev);
    if (d && d->kind == K_IDEV && chance(75)) {
      step_no++;
      op_mock_domain_replace(c, d->link, id);
    }
    return;
  }
  if (roll < 62) {
    uint32_t n = pick(3);
    struct iommu_viommu_invalidate_selftest e[2];
    for (uint32_t i = 0; i < 2; i++) {
      unsigned f = pick(100);
      e[i].flags = f < 75 ? 0 : f < 92 ? IOMMU_TEST_INVALIDATE_FLAG_ALL : 1u << (1 + pick(31));
      e[i].vdev_id = pick(4) * 0x11;
      e[i].cache_id = chance(90) ? pick(4) : 4;
    }
    const uint32_t type = chance(92) ? IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST : 0;
    begin("viommu_invalidate");
    add(" ctx=%d viommu=%u type=0x%x num=%u", c, viommu, type, n);
    for (uint32_t i = 0; i < n; i++) add(" [0x%x,0x%x,%u]", e[i].flags, e[i].vdev_id, e[i].cache_id);
    int r = hwpt_invalidate(fd, viommu, e, type, sizeof(e[0]), &n);
    result(r);
    add(" num=%u", n);
    end();
    return;
  }
  if (roll < 74) {
    const int slot = (int)pick(NVQ);
    if (vq_fds[slot] >= 0) close(vq_fds[slot]);
    vq_fds[slot] = -1;
    struct iommu_veventq_alloc q = {.size = sizeof(q),
                                    .viommu_id = viommu,
                                    .type = chance(85) ? IOMMU_VEVENTQ_TYPE_SELFTEST : pick(3),
                                    .veventq_depth = chance(90) ? 1 + pick(4) : 0};
    begin("veventq_alloc");
    add(" ctx=%d viommu=%u type=0x%x depth=%u", c, viommu, q.type, q.veventq_depth);
    int r = abi_ioctl(fd, IOMMU_VEVENTQ_ALLOC, &q);
    result(r);
    add(" id=%u", r == 0 ? q.out_veventq_id : 0);
    end();
    if (r == 0) {
      vq_fds[slot] = (int)q.out_veventq_fd;
      remember_new(c, q.out_veventq_id, K_VOBJ, 0, viommu);
    }
    return;
  }
  if (roll < 90) {
    const uint32_t dev = pick_live(c, K_IDEV, 0);
    begin("trigger_vevent");
    add(" ctx=%d dev=%u", c, dev);
    struct iommu_test_cmd t = {.size = sizeof(t), .op = IOMMU_TEST_OP_TRIGGER_VEVENT};
    memcpy(&t.a, &dev, sizeof(dev));
    result(abi_ioctl(fd, IOMMU_TEST_CMD, &t));
    end();
    const int slot = (int)pick(NVQ);
    if (vq_fds[slot] < 0) return;
    uint32_t buf[3 * 8];
    const size_t want = chance(80) ? sizeof(buf) : (size_t)(pick(3) * 4 + 4);
    errno = 0;
    const ssize_t got = read(vq_fds[slot], buf, want);
    step_no++;
    begin("veventq_read");
    add(" slot=%d count=%zu -> %zd errno=%s", slot, want, got < 0 ? (ssize_t)-1 : got,
        abi_errno_name(got < 0 ? errno : 0));
    for (ssize_t at = 0; got > 0 && at + 8 <= got;) {
      add(" [0x%x,%u", buf[at / 4], buf[at / 4 + 1]);
      if (buf[at / 4] & 1) {
        add("]");
        at += 8;
      } else {
        add(",0x%x]", buf[at / 4 + 2]);
        at += 12;
      }
    }
    end();
    return;
  }
  const struct map_rec* m = chance(80) ? pick_map(c) : NULL;
  const uint64_t iova = m ? m->iova + (chance(20) ? 0x800 : 0) : pick_iova(c);
  const uint64_t len = chance(85) ? (chance(50) ? PAGE_SZ : 0x800) : pick_len();
  const uint32_t index = chance(90) ? pick(2) : 2;
  begin("hw_queue_alloc");
  add(" ctx=%d viommu=%u index=%u iova=0x%llx len=0x%llx", c, viommu, index, (unsigned long long)iova,
      (unsigned long long)len);
  int r = hw_queue_alloc(fd, viommu, chance(92) ? IOMMU_HW_QUEUE_TYPE_SELFTEST : 0, index, iova, len, &id);
  result(r);
  add(" id=%u", id);
  end();
  if (r == 0) remember_new(c, id, K_VOBJ, 0, viommu);
}

/* Fault queues: FAULT_QUEUE_ALLOC into two descriptor slots, HWPT_ALLOC with FAULT_ID_VALID (a queue's id
 * mostly, a wrong id now and then) with a mock device moved onto it, TRIGGER_IOPF, a read of a slot's fd
 * (records printed; short and unaligned counts sometimes) and the write of a response (the cookie read, or a
 * bad cookie or code now and then). */
#define NFQ 2
static int fq_fds[NFQ] = {-1, -1};
static uint32_t fq_cookie;
static void op_fault(int c) {
  ensure_idev(c);
  const int fd = ctxs[c].fd;
  const unsigned roll = pick(100);
  const int slot = (int)pick(NFQ);
  uint32_t id = 0;
  if (roll < 15 || (fq_fds[slot] < 0 && roll < 50)) {
    if (fq_fds[slot] >= 0) close(fq_fds[slot]);
    fq_fds[slot] = -1;
    int qfd = -1;
    begin("fault_alloc");
    add(" ctx=%d slot=%d", c, slot);
    const int r = fault_alloc(fd, &id, &qfd);
    result(r);
    add(" id=%u", r == 0 ? id : 0);
    end();
    if (r == 0) {
      fq_fds[slot] = qfd;
      remember_new(c, id, K_VOBJ, 0, 0);
    }
    return;
  }
  if (roll < 40) {
    const uint32_t dev = pick_live(c, K_IDEV, 0);
    const uint32_t fault = chance(85) ? pick_live(c, K_VOBJ, 0) : pick_id(c, (enum kind)pick(K_NKINDS));
    const uint32_t pt = chance(80) ? pick_live(c, K_IOAS, 0) : pick_with(c, K_HWPT, R_NEST_PARENT, 80);
    const int nested = find_id(c, pt) && find_id(c, pt)->kind == K_HWPT;
    struct iommu_hwpt_selftest data = {.iotlb = IOMMU_TEST_IOTLB_DEFAULT};
    begin("hwpt_alloc_fault");
    add(" ctx=%d dev=%u pt=%u fault=%u", c, dev, pt, fault);
    const int r = hwpt_alloc_full(fd, IOMMU_HWPT_FAULT_ID_VALID, dev, pt,
                                  nested ? IOMMU_HWPT_DATA_SELFTEST : IOMMU_HWPT_DATA_NONE,
                                  nested ? &data : NULL, nested ? sizeof(data) : 0, fault, &id);
    result(r);
    add(" id=%u", id);
    end();
    if (r != 0) return;
    struct id_rec* rec = remember_new(c, id, nested ? K_HWPT_NESTED : K_HWPT, 0, nested ? pt : 0);
    if (rec && nested)
      for (int i = 0; i < MOCK_NESTED_DOMAIN_IOTLB_NUM; i++) rec->iotlb[i] = IOMMU_TEST_IOTLB_DEFAULT;
    struct id_rec* d = find_id(c, dev);
    if (d && d->kind == K_IDEV && chance(80)) {
      step_no++;
      op_mock_domain_replace(c, d->link, id);
    }
    return;
  }
  if (roll < 65) {
    const uint32_t dev = pick_live(c, K_IDEV, 0);
    const uint32_t pasid = chance(85) ? 0 : 1;
    begin("trigger_iopf");
    add(" ctx=%d dev=%u pasid=%u", c, dev, pasid);
    result(trigger_iopf(fd, dev, pasid, pick(4)));
    end();
    return;
  }
  if (fq_fds[slot] < 0) return;
  if (roll < 85) {
    struct iommu_hwpt_pgfault f[3];
    const size_t want = chance(85) ? sizeof(f) : (chance(50) ? sizeof(f[0]) - 8 : 0);
    errno = 0;
    const ssize_t got = read(fq_fds[slot], f, want);
    begin("fault_read");
    add(" slot=%d count=%zu -> %zd errno=%s", slot, want, got < 0 ? (ssize_t)-1 : got,
        abi_errno_name(got < 0 ? errno : 0));
    for (ssize_t i = 0; got > 0 && i < got / (ssize_t)sizeof(f[0]); i++) {
      add(" [0x%x,%u,%u,%u,%u]", f[i].flags, f[i].dev_id, f[i].pasid, f[i].grpid, f[i].cookie);
      fq_cookie = f[i].cookie;
    }
    end();
    return;
  }
  struct iommu_hwpt_page_response resp = {.cookie = chance(85) ? fq_cookie : fq_cookie + 7,
                                          .code = chance(90) ? IOMMUFD_PAGE_RESP_SUCCESS : 2};
  errno = 0;
  const ssize_t put = write(fq_fds[slot], &resp, sizeof(resp));
  begin("fault_respond");
  add(" slot=%d cookie=%u code=%u -> %zd errno=%s", slot, resp.cookie, resp.code, put < 0 ? (ssize_t)-1 : put,
      abi_errno_name(put < 0 ? errno : 0));
  end();
}

static uint32_t pick_pasid(void) {
  unsigned roll = pick(100);
  return roll < 8    ? 0
         : roll < 42 ? 1
         : roll < 66 ? 100
         : roll < 88 ? IOMMU_TEST_PASID_RESERVED
                     : 1u << MOCK_PASID_WIDTH;
}

/* PASID_ATTACH / PASID_REPLACE / PASID_DETACH / PASID_CHECK_HWPT of a mock device. The attach and detach
 * results keep the record of attached PASIDs (struct pasid_rec). */
static void op_pasid(int c) {
  ensure_idev(c);
  unsigned roll = pick(100);
  int op = roll < 40 ? 0 : roll < 58 ? 1 : roll < 76 ? 2 : 3;
  int known[MAX_PASIDS], nk = 0;
  for (int i = 0; i < npasids; i++)
    if (pasids[i].ctx == c) known[nk++] = i;
  /* A replace needs an attachment: with none recorded, most replaces become attaches. */
  if (op == 1 && !nk && chance(60)) op = 0;
  if (op == 0 && npasids == MAX_PASIDS) op = 2; /* no room to record another attachment */
  const struct pasid_rec* kp =
      nk && op && chance(op == 2 ? 75 : 70) ? &pasids[known[pick((unsigned)nk)]] : NULL;
  /* A PASID attachment needs a device with PASID support (a mock device without it has a single PASID, 0:
   * its "pasid-num-bits" property is 0, iommu.c dev_iommu_get_max_pasids()), an HWPT allocated with
   * IOMMU_HWPT_ALLOC_PASID, and the device's own attachment on such an HWPT too (device.c
   * iommufd_hwpt_pasid_compat()). Most attaches set these up first, steps of their own, as far as missing. */
  int prepare = op == 0 && chance(80);
  if (prepare && !has_kind(c, K_STDEV, MOCK_FLAGS_DEVICE_PASID)) {
    op_mock_domain(c, 2);
    step_no++;
  }
  uint32_t stdev = kp        ? kp->stdev
                   : prepare ? pick_with(c, K_STDEV, MOCK_FLAGS_DEVICE_PASID, 100)
                             : pick_with(c, K_STDEV, chance(50) ? MOCK_FLAGS_DEVICE_PASID : 0, 80);
  uint32_t pasid = kp ? kp->pasid : pick_pasid();
  uint32_t pt = 0;
  if (prepare) {
    struct id_rec* rec = find_id(c, stdev);
    if (!has_kind(c, K_HWPT, R_PASID)) {
      op_hwpt_alloc(c, 1, IOMMU_HWPT_ALLOC_PASID, rec && rec->kind == K_STDEV ? rec->link : 0, 0);
      step_no++;
    }
    rec = find_id(c, stdev);
    const struct id_rec* cur = rec && rec->kind == K_STDEV && rec->cur ? find_id(c, rec->cur) : NULL;
    if (cur && !(cur->flags & R_PASID) && has_kind(c, K_HWPT, R_PASID)) {
      op_mock_domain_replace(c, stdev, pick_with(c, K_HWPT, R_PASID, 100));
      step_no++;
    }
  }
  if (op <= 1) pt = pick_pasid_hwpt(c, 80);
  struct iommu_test_cmd cmd = {.size = sizeof(cmd), .id = stdev};
  static const char* const names[] = {"pasid_attach", "pasid_replace", "pasid_detach", "pasid_check_hwpt"};
  begin(names[op]);
  add(" ctx=%d stdev=%u pasid=%u", c, stdev, pasid);
  if (op <= 1) {
    cmd.op = op == 0 ? IOMMU_TEST_OP_PASID_ATTACH : IOMMU_TEST_OP_PASID_REPLACE;
    cmd.a.pasid_attach.pasid = pasid;
    cmd.a.pasid_attach.pt_id = pt;
    add(" pt=%u", pt);
  } else if (op == 2) {
    cmd.op = IOMMU_TEST_OP_PASID_DETACH;
    cmd.a.pasid_detach.pasid = pasid;
  } else {
    unsigned h = pick(100);
    cmd.op = IOMMU_TEST_OP_PASID_CHECK_HWPT;
    cmd.a.pasid_check.pasid = pasid;
    cmd.a.pasid_check.hwpt_id = kp && h < 60 ? kp->hwpt : h < 80 ? 0 : pick_pasid_hwpt(c, 50);
    add(" hwpt=%u", cmd.a.pasid_check.hwpt_id);
  }
  /* 52 as for add_reserved: sizes 52..67 are the v6.2 layout (known-differences.txt, rule v62-test-cmd). */
  int r = VAR(ctxs[c].fd, IOMMU_TEST_CMD, cmd, 52, __reserved);
  result(r);
  if (op <= 1) add(" hwpt=%u", cmd.a.pasid_attach.pt_id);
  end();
  if (r != 0) return;
  int i = find_pasid(c, stdev, pasid);
  struct id_rec* rec = find_id(c, stdev);
  if (op == 0 && pasid && i < 0)
    pasids[npasids++] = (struct pasid_rec){c, stdev, pasid, cmd.a.pasid_attach.pt_id};
  if (op == 1 && i >= 0) pasids[i].hwpt = cmd.a.pasid_attach.pt_id;
  if (op == 2 && i >= 0) drop_pasid(i);
  if (!pasid && op <= 2 && rec && rec->kind == K_STDEV) {
    uint32_t old = rec->cur;
    rec->cur = op == 2 ? 0 : cmd.a.pasid_attach.pt_id;
    auto_domain_left(c, old);
  }
}

/* ---- dirty tracking: SET_DIRTY_TRACKING, TEST_OP_DIRTY, GET_DIRTY_BITMAP --------------------------------
 * What GET_DIRTY_BITMAP reports depends on the mock's leaf entries (docs/semantics.md#dirty). On Linux a
 * map over physically contiguous plain pages may become one larger contiguous entry, which uiommufd (every
 * page its own 4 KiB entry) does not form; whether the buffers' pages are contiguous is chance. So every
 * GET that can get as far as reading entries names an HWPT of a dirty-tracking IOAS: an IOAS given
 * IOMMU_OPTION_HUGE_PAGES=0 right after its allocation, before any domain or area (R_NOHUGE), where the
 * kernel maps every page on its own (pages.c batch_to_domain(), batch_iommu_map_small()); op_option() never
 * turns large pages back on there. Dirty HWPTs on other IOASes take SET_DIRTY_TRACKING and TEST_OP_DIRTY
 * (whose results do not depend on the entries) and only GETs that fail their argument checks first.
 * No GET ever starts at an IOVA that is not 4 KiB aligned: on Linux 7.2.13 a request that starts on the
 * second 2 KiB item of a dirty 4 KiB entry makes record_dirty() hand iova_bitmap_set() a zero length, and
 * the kernel loops forever (tests/abi/abi_dirty.c). */
static uint8_t* bm; /* the bitmap area: BM_PAGES writable pages, then a PROT_NONE one */
#define BM_PAGES 2
#define BM_LEN (BM_PAGES * PAGE_SZ)

/* The context's live dirty-tracking IOAS, 0: none. */
static uint32_t dirty_ioas(int c) {
  for (int i = 0; i < ctxs[c].nids; i++)
    if (live_with(&ctxs[c].ids[i], K_IOAS, R_NOHUGE)) return ctxs[c].ids[i].id;
  return 0;
}

/* A dirty HWPT whose entries are comparable: allocated with DIRTY_TRACKING on a dirty-tracking IOAS. */
static int comparable(int c, const struct id_rec* r) {
  if (!r || !live_with(r, K_HWPT, R_DIRTY)) return 0;
  const struct id_rec* io = find_id(c, r->link);
  return io && live_with(io, K_IOAS, R_NOHUGE);
}

static uint32_t pick_comparable(int c) {
  int n = 0;
  for (int i = 0; i < ctxs[c].nids; i++) n += comparable(c, &ctxs[c].ids[i]);
  if (!n) return 0;
  int k = (int)pick((unsigned)n);
  for (int i = 0; i < ctxs[c].nids; i++)
    if (comparable(c, &ctxs[c].ids[i]) && k-- == 0) return ctxs[c].ids[i].id;
  return 0;
}

/* A map of buffer pages onto the dirty-tracking IOAS at a fixed IOVA, a set-up step printed as op_map()'s. */
static void dirty_map(int c, uint32_t ioas) {
  int buf = (int)pick(NBUF);
  uint64_t pages = 1 + pick(8), off = pick(BUF_PAGES - (unsigned)pages + 1) * PAGE_SZ;
  struct iommu_ioas_map m = {.size = sizeof(m),
                             .flags = MAP_RW | IOMMU_IOAS_MAP_FIXED_IOVA,
                             .ioas_id = ioas,
                             .user_va = (uintptr_t)(bufs[buf] + off),
                             .length = pages * PAGE_SZ,
                             .iova = MOCK_APERTURE_START + pick(40) * PAGE_SZ};
  begin("map");
  add(" ctx=%d ioas=%u va=b%d+0x%llx len=0x%llx iova=0x%llx flags=0x%x (dirty set-up)", c, m.ioas_id, buf,
      (unsigned long long)off, (unsigned long long)m.length, (unsigned long long)m.iova, m.flags);
  int r = abi_ioctl(ctxs[c].fd, IOMMU_IOAS_MAP, &m);
  result(r);
  add(" iova=0x%llx", (unsigned long long)m.iova);
  end();
  if (r == 0) remember_map(c, m.ioas_id, m.iova, m.length, buf, off);
}

/* The set-up of dirty work, each a step of its own and each only some of the time: a dirty-tracking IOAS
 * (IOAS_ALLOC, then OPTION HUGE_PAGES=0), an area on it, a dirty HWPT on it. */
static void ensure_dirty(int c) {
  uint32_t ioas = dirty_ioas(c);
  if (!ioas && chance(85)) {
    struct iommu_ioas_alloc a = {.size = sizeof(a)};
    begin("ioas_alloc");
    add(" ctx=%d flags=0 (dirty set-up)", c);
    int r = abi_ioctl(ctxs[c].fd, IOMMU_IOAS_ALLOC, &a);
    result(r);
    add(" id=%u", a.out_ioas_id);
    end();
    step_no++;
    if (r != 0) return;
    remember_new(c, a.out_ioas_id, K_IOAS, 0, 0);
    struct iommu_option o = {.size = sizeof(o),
                             .option_id = IOMMU_OPTION_HUGE_PAGES,
                             .op = IOMMU_OPTION_OP_SET,
                             .object_id = a.out_ioas_id};
    begin("option");
    add(" ctx=%d option=%u op=%u obj=%u val=0 (dirty set-up)", c, o.option_id, o.op, o.object_id);
    r = abi_ioctl(ctxs[c].fd, IOMMU_OPTION, &o);
    result(r);
    end();
    step_no++;
    struct id_rec* rec = find_id(c, a.out_ioas_id);
    if (r == 0 && rec) rec->flags |= R_NOHUGE;
    ioas = r == 0 ? a.out_ioas_id : 0;
  }
  if (!ioas) return;
  int nm = 0;
  for (int i = 0; i < nmaps; i++) nm += maps[i].ctx == c && maps[i].ioas == ioas;
  if (nm < 3 && chance(nm ? 30 : 85)) {
    dirty_map(c, ioas);
    step_no++;
  }
  if (!pick_comparable(c) && chance(85)) {
    /* A device created with MOCK_FLAGS_DEVICE_NO_DIRTY is refused: mostly one that can track, created first
     * (a plain MOCK_DOMAIN, a step of its own) when the context has none. */
    uint32_t dev = 0;
    for (int i = 0; i < ctxs[c].nids && !dev; i++)
      if (live_with(&ctxs[c].ids[i], K_IDEV, 0) && !(ctxs[c].ids[i].flags & MOCK_FLAGS_DEVICE_NO_DIRTY))
        dev = ctxs[c].ids[i].id;
    if (!dev && chance(85)) {
      op_mock_domain(c, 3);
      step_no++;
      for (int i = 0; i < ctxs[c].nids && !dev; i++)
        if (live_with(&ctxs[c].ids[i], K_IDEV, 0) && !(ctxs[c].ids[i].flags & MOCK_FLAGS_DEVICE_NO_DIRTY))
          dev = ctxs[c].ids[i].id;
    }
    if (!dev || chance(5)) dev = pick_live(c, K_IDEV, 0);
    op_hwpt_alloc(c, 1, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, dev, ioas);
    step_no++;
  }
}

/* An HWPT for a dirty operation: mostly a comparable dirty HWPT; else another dirty one, a paging HWPT
 * without dirty ops, a nested one, an IOAS or a wrong id. `gettable`: never a dirty HWPT that is not
 * comparable (a GET on it may read entries whose size is chance). */
static uint32_t pick_dirty_hwpt(int c, int gettable) {
  unsigned roll = pick(100);
  uint32_t id = pick_comparable(c);
  if (id && roll < 72) return id;
  if (roll < 80 && has_kind(c, K_HWPT, R_DIRTY))
    id = pick_with(c, K_HWPT, R_DIRTY, 100);
  else if (roll < 88)
    id = pick_live(c, K_HWPT, 0);
  else if (roll < 94)
    id = pick_live(c, K_HWPT_NESTED, 0);
  else
    id = pick_id(c, (enum kind)pick(K_NKINDS));
  const struct id_rec* r = find_id(c, id);
  if (gettable && r && live_with(r, K_HWPT, R_DIRTY) && !comparable(c, r)) return pick_comparable(c);
  return id;
}

/* A 4 KiB aligned IOVA for dirty work: in an area of the HWPT's IOAS (the hwpt's link) mostly, at its start
 * half of those times (a GET that starts in a hole reports nothing); *room: the bytes of the area from there
 * (0: not in a known area). */
static uint64_t pick_dirty_iova(int c, uint32_t hwpt, uint64_t* room) {
  const struct id_rec* r = find_id(c, hwpt);
  const struct map_rec* m = r && r->kind == K_HWPT ? pick_map_of(c, r->link) : pick_map(c);
  uint64_t iova;
  *room = 0;
  if (m && chance(85)) {
    uint64_t k = m->length > PAGE_SZ && chance(50) ? pick((unsigned)(m->length / PAGE_SZ)) * PAGE_SZ : 0;
    iova = m->iova + k;
    if (m->length > k) *room = m->length - k;
  } else {
    iova = MOCK_APERTURE_START + pick(48) * PAGE_SZ;
  }
  if (chance(10) && iova >= MOCK_APERTURE_START + PAGE_SZ) iova -= PAGE_SZ * (1 + pick(2)), *room = 0;
  return iova & ~(uint64_t)(PAGE_SZ - 1);
}

static void op_set_dirty_tracking(int c, uint32_t hwpt, uint32_t flags, const char* why) {
  struct iommu_hwpt_set_dirty_tracking s = {.size = sizeof(s), .flags = flags, .hwpt_id = hwpt};
  begin("set_dirty_tracking");
  add(" ctx=%d hwpt=%u flags=0x%x%s", c, hwpt, flags, why);
  int r = why[0] ? abi_ioctl(ctxs[c].fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &s)
                 : VAR(ctxs[c].fd, IOMMU_HWPT_SET_DIRTY_TRACKING, s, 16, __reserved);
  result(r);
  end();
  struct id_rec* rec = find_id(c, hwpt);
  if (r == 0 && rec && is_hwpt(rec->kind)) {
    if (flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
      rec->flags |= R_TRACKING;
    else
      rec->flags &= ~(uint32_t)R_TRACKING;
  }
}

/* The last TEST_OP_DIRTY that succeeded, so that GETs often read where pages were marked. */
static struct {
  int ctx;
  uint32_t hwpt;
  uint64_t iova, length;
} last_mark = {-1, 0, 0, 0};

/* TEST_OP_DIRTY: marks the entries under the set bits of a small bitmap (printed as 64-bit words). hwpt:
 * given by GET's set-up (non-zero), else picked. */
static void op_mark_dirty(int c, uint32_t hwpt) {
  if (!hwpt) hwpt = pick_dirty_hwpt(c, 0);
  struct id_rec* rec = find_id(c, hwpt);
  /* Marking needs tracking on: enabled first, a step of its own, most of the time. */
  if (rec && live_with(rec, K_HWPT, R_DIRTY) && !(rec->flags & R_TRACKING) && chance(80)) {
    op_set_dirty_tracking(c, hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE, " (before marking)");
    step_no++;
  }
  unsigned roll = pick(100);
  uint64_t ps = roll < 70 ? PAGE_SZ : roll < 80 ? 0x800 : roll < 90 ? 2 * PAGE_SZ : 0x1800;
  uint64_t room, iova = pick_dirty_iova(c, hwpt, &room), units = 1 + pick(chance(80) ? 24 : 128);
  if (iova % ps) iova -= iova % ps;
  /* Mostly within the area, whose entries are the ones marks can reach. */
  if (room >= ps && units * ps > room && chance(75)) units = room / ps;
  uint64_t bits[2] = {0, 0};
  unsigned density = 10 + pick(50);
  for (uint64_t i = 0; i < units; i++)
    if (chance(density)) bits[i / 64] |= 1ULL << (i % 64);
  uint64_t len = units * ps;
  roll = pick(100);
  const char* bad = "";
  if (roll < 2)
    ps = 0, bad = " (page_size 0)";
  else if (roll < 4)
    len = 0, bad = " (length 0)";
  else if (roll < 6)
    iova += 0x800, bad = " (iova off)";
  else if (roll < 8)
    len += 0x400, bad = " (length off)";
  else if (roll < 9)
    len = (1ULL << 27) * ps + ps, bad = " (too many bits)";
  struct iommu_test_cmd cmd = {.size = sizeof(cmd), .op = IOMMU_TEST_OP_DIRTY, .id = hwpt};
  cmd.dirty.iova = iova;
  cmd.dirty.length = len;
  cmd.dirty.page_size = ps;
  begin("mark_dirty");
  add(" ctx=%d hwpt=%u iova=0x%llx len=0x%llx page_size=0x%llx bits=%016llx,%016llx%s", c, hwpt,
      (unsigned long long)iova, (unsigned long long)len, (unsigned long long)ps, (unsigned long long)bits[0],
      (unsigned long long)bits[1], bad);
  cmd.dirty.uptr = maybe_bad_ptr(bits, "bitmap");
  /* 52 as for add_reserved: sizes 52..67 are the v6.2 layout (known-differences.txt, rule v62-test-cmd). */
  int r = VAR(ctxs[c].fd, IOMMU_TEST_CMD, cmd, 52, __reserved);
  result(r);
  add(" nr=%llu", (unsigned long long)cmd.dirty.out_nr_dirty);
  end();
  if (r == 0) last_mark.ctx = c, last_mark.hwpt = hwpt, last_mark.iova = iova, last_mark.length = len;
}

/* GET_DIRTY_BITMAP into the bitmap area (zeroed, or a pattern now and then: bits are only ever set), then
 * the words the request covers (at most 4) and a checksum of the whole area (a report that runs past the
 * words given lands further on). */
static void op_get_dirty(int c) {
  uint32_t hwpt = pick_dirty_hwpt(c, 1);
  /* Pages marked first, a step of its own, some of the time. */
  if (hwpt && comparable(c, find_id(c, hwpt)) && chance(55)) {
    op_mark_dirty(c, hwpt);
    step_no++;
  }
  int near = last_mark.ctx == c && last_mark.hwpt == hwpt && chance(75);
  unsigned roll = pick(100);
  uint64_t ps = roll < 60   ? PAGE_SZ
                : roll < 72 ? 0x800
                : roll < 82 ? 2 * PAGE_SZ
                : roll < 90 ? 0x10000
                : roll < 95 ? 0
                            : 0xc00;
  uint64_t room, iova = pick_dirty_iova(c, hwpt, &room), len = (1 + pick(chance(80) ? 16 : 48)) * PAGE_SZ;
  if (near) {
    /* Around the last marked range: from its start (4 KiB aligned down) or a page before or after. */
    uint64_t start = last_mark.iova & ~(uint64_t)(PAGE_SZ - 1);
    unsigned w = pick(100);
    iova = w < 75 ? start : w < 90 ? start + PAGE_SZ : start - PAGE_SZ;
    uint64_t end = (last_mark.iova + last_mark.length + PAGE_SZ - 1) & ~(uint64_t)(PAGE_SZ - 1);
    len = end > iova ? end - iova : PAGE_SZ;
    if (len > 64 * PAGE_SZ) len = 64 * PAGE_SZ;
    if (chance(30)) len += PAGE_SZ * (1 + pick(4));
  }
  roll = pick(100);
  if (roll < 4)
    iova = 0, len = 0; /* the whole space */
  else if (roll < 7)
    len = 0; /* EOVERFLOW */
  else if (roll < 10)
    len += 0x800; /* the end not aligned */
  else if (roll < 12)
    len = ~0ULL - iova + 1 + PAGE_SZ; /* wraps */
  uint32_t flags = chance(45) ? IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR : 0;
  if (chance(4)) flags |= 1u << (1 + pick(3));
  uint64_t fill = chance(75) ? 0 : chance(50) ? 0xa5a5a5a5a5a5a5a5ULL : 0xf0f0f0f000000000ULL;
  for (size_t i = 0; i < BM_LEN / 8; i++) memcpy(bm + 8 * i, &fill, 8);
  /* Where the bitmap starts: the area's start mostly; its last word (a report past it meets the PROT_NONE
   * page) or its second page now and then. */
  roll = pick(100);
  uint64_t boff = roll < 80 ? 8 * pick(4) : roll < 90 ? BM_LEN - 8 : PAGE_SZ;
  struct iommu_hwpt_get_dirty_bitmap g = {
      .size = sizeof(g), .hwpt_id = hwpt, .flags = flags, .iova = iova, .length = len, .page_size = ps};
  begin("get_dirty_bitmap");
  add(" ctx=%d hwpt=%u flags=0x%x iova=0x%llx len=0x%llx page_size=0x%llx data=bm+0x%llx fill=%016llx", c,
      hwpt, flags, (unsigned long long)iova, (unsigned long long)len, (unsigned long long)ps,
      (unsigned long long)boff, (unsigned long long)fill);
  g.data = maybe_bad_ptr(bm + boff, "data");
  int r = VAR(ctxs[c].fd, IOMMU_HWPT_GET_DIRTY_BITMAP, g, 48, __reserved);
  result(r);
  uint64_t nbits = ps && len ? len / ps + 1 : 256, nwords = (nbits + 63) / 64;
  if (nwords > 4) nwords = 4;
  if (nwords > (BM_LEN - boff) / 8) nwords = (BM_LEN - boff) / 8;
  add(" words=");
  for (uint64_t i = 0; i < nwords; i++) {
    uint64_t w;
    memcpy(&w, bm + boff + 8 * i, 8);
    add("%s%016llx", i ? "," : "", (unsigned long long)w);
  }
  add(" area=%08x", fnv(bm, BM_LEN));
  end();
}

/* One dirty-tracking operation: SET_DIRTY_TRACKING, TEST_OP_DIRTY or GET_DIRTY_BITMAP, after the set-up
 * ensure_dirty() finds missing. */
static void op_dirty(int c) {
  ensure_dirty(c);
  unsigned roll = pick(100);
  if (roll < 25) {
    uint32_t hwpt = pick_dirty_hwpt(c, 0);
    unsigned f = pick(100);
    uint32_t flags = f < 60 ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : f < 92 ? 0 : f < 96 ? 2 : 3;
    op_set_dirty_tracking(c, hwpt, flags, "");
  } else if (roll < 55) {
    op_mark_dirty(c, 0);
  } else {
    op_get_dirty(c);
  }
}

static int pick_access(void) {
  int open_[MAX_ACC], n = 0;
  for (int i = 0; i < MAX_ACC; i++)
    if (accs[i].fd >= 0) open_[n++] = i;
  return n ? open_[pick((unsigned)n)] : -1;
}

static void op_create_access(int c) {
  int slot = -1;
  for (int i = 0; i < MAX_ACC && slot < 0; i++)
    if (accs[i].fd < 0) slot = i;
  uint32_t ioas = pick_id(c, K_IOAS);
  uint32_t flags = chance(80) ? MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES : 0;
  begin("create_access");
  add(" ctx=%d ioas=%u flags=0x%x", c, ioas, flags);
  if (slot < 0) {
    add(" skipped: all slots in use");
    end();
    return;
  }
  int fd = -1;
  result(create_access(ctxs[c].fd, ioas, flags, &fd));
  add(" slot=%d", fd >= 0 ? slot : -1);
  end();
  if (fd >= 0) accs[slot] = (struct access_rec){.fd = fd, .dup = -1, .ctx = c, .ioas = ioas};
}

static void op_access_pages(void) {
  int a = pick_access();
  if (a < 0) return;
  int c = accs[a].ctx;
  const struct map_rec* m = pick_map_of(c, accs[a].ioas);
  uint64_t iova, len = (1 + pick(4)) * PAGE_SZ;
  int buf;
  uint64_t off;
  uint8_t* va;
  if (m && m->buf >= 0 && chance(80)) {
    iova = m->iova;
    buf = m->buf;
    off = m->offset;
    va = bufs[buf] + off;
    if (len > m->length && chance(80)) len = m->length;
  } else {
    iova = pick_iova(c);
    va = pick_va(&buf, &off);
  }
  uint32_t flags = chance(30) ? MOCK_FLAGS_ACCESS_WRITE : 0, id = 0;
  begin("access_pages");
  add(" slot=%d iova=0x%llx len=0x%llx va=b%d+0x%llx flags=0x%x", a, (unsigned long long)iova,
      (unsigned long long)len, buf, (unsigned long long)off, flags);
  int ctx_fd = ctxs[c].fd >= 0 ? ctxs[c].fd : ctxs[!c].fd;
  int r = ctx_fd < 0 ? -EBADF : access_pages(ctx_fd, accs[a].fd, flags, iova, len, va, &id);
  result(r);
  add(" pages_id=%u", r == 0 ? id : 0);
  end();
  if (r == 0 && accs[a].npages < MAX_PAGES_IDS) accs[a].pages[accs[a].npages++] = id;
}

static void op_destroy_access_pages(void) {
  int a = pick_access();
  if (a < 0) return;
  int c = accs[a].ctx;
  uint32_t id = accs[a].npages && chance(85) ? accs[a].pages[pick((unsigned)accs[a].npages)] : pick(8);
  begin("destroy_access_pages");
  add(" slot=%d pages_id=%u", a, id);
  int ctx_fd = ctxs[c].fd >= 0 ? ctxs[c].fd : ctxs[!c].fd;
  result(ctx_fd < 0 ? -EBADF : destroy_access_pages(ctx_fd, accs[a].fd, id));
  end();
}

static void op_access_rw(void) {
  int a = pick_access();
  if (a < 0) return;
  int c = accs[a].ctx;
  const struct map_rec* m = pick_map_of(c, accs[a].ioas);
  uint64_t iova = m && chance(80) ? m->iova + pick((unsigned)(m->length ? m->length : 1)) : pick_iova(c);
  uint64_t len = 1 + pick(chance(20) ? 3 * PAGE_SZ : 64);
  uint32_t flags = (chance(40) ? MOCK_ACCESS_RW_WRITE : 0) | (chance(30) ? MOCK_ACCESS_RW_SLOW_PATH : 0);
  uint8_t data[3 * PAGE_SZ + 64];
  for (uint64_t i = 0; i < len; i++) data[i] = (uint8_t)(flags & MOCK_ACCESS_RW_WRITE ? rnd() : 0xee);
  begin("access_rw");
  add(" slot=%d iova=0x%llx len=0x%llx flags=0x%x", a, (unsigned long long)iova, (unsigned long long)len,
      flags);
  int ctx_fd = ctxs[c].fd >= 0 ? ctxs[c].fd : ctxs[!c].fd;
  result(ctx_fd < 0 ? -EBADF : access_rw(ctx_fd, accs[a].fd, flags, iova, data, len));
  if (!(flags & MOCK_ACCESS_RW_WRITE)) add(" data=%08x", fnv(data, len));
  end();
}

static void op_close_access(void) {
  int a = pick_access();
  if (a < 0) return;
  begin("close_access");
  add(" slot=%d%s", a, accs[a].dup >= 0 ? " (a dup stays open)" : "");
  result(close(accs[a].fd) ? -errno : 0);
  end();
  /* A dup keeps the access, and its pinned pages, alive. */
  accs[a].fd = accs[a].dup;
  accs[a].dup = -1;
  if (accs[a].fd < 0) accs[a].npages = 0;
}

/* dup() of a context's or an access's descriptor: the second descriptor shares the open file, so closing
 * either one alone must not tear anything down. */
static void op_dup(int c) {
  int a = pick_access();
  int *fd, *dup_fd;
  begin("dup");
  if (a >= 0 && chance(50)) {
    add(" slot=%d", a);
    fd = &accs[a].fd;
    dup_fd = &accs[a].dup;
  } else {
    add(" ctx=%d", c);
    fd = &ctxs[c].fd;
    dup_fd = &ctxs[c].dup;
  }
  if (*dup_fd >= 0) {
    /* Already two: close the older one instead, which must leave the file working through the dup. */
    add(" close-first");
    int r = close(*fd) ? -errno : 0;
    *fd = *dup_fd;
    *dup_fd = -1;
    result(r);
  } else {
    int nfd = dup(*fd);
    result(nfd < 0 ? -errno : 0);
    *dup_fd = nfd;
  }
  end();
}

/* ---- VFIO container ioctls on the iommufd (the kernel's vfio_compat.c) --------------------------------- */
/* force_set: a SET of one of the context's IOAS ids, as the set-up step of a VFIO operation. */
static void op_vfio_ioas(int c, int force_set) {
  struct iommu_vfio_ioas v = {.size = sizeof(v)};
  unsigned roll = force_set ? 50 : pick(100);
  v.op = roll < 35   ? IOMMU_VFIO_IOAS_GET
         : roll < 80 ? IOMMU_VFIO_IOAS_SET
         : roll < 95 ? IOMMU_VFIO_IOAS_CLEAR
                     : 3;
  v.ioas_id = v.op == IOMMU_VFIO_IOAS_GET && chance(80) ? 0 : pick_id(c, K_IOAS);
  begin("vfio_ioas");
  add(" ctx=%d op=%u ioas=%u", c, v.op, v.ioas_id);
  int r = VAR(ctxs[c].fd, IOMMU_VFIO_IOAS, v, 12, __reserved);
  result(r);
  add(" ioas=%u", v.ioas_id);
  end();
  if (r == 0 && v.op != IOMMU_VFIO_IOAS_CLEAR) ctxs[c].vfio = v.ioas_id;
  if (r == 0 && v.op == IOMMU_VFIO_IOAS_CLEAR) ctxs[c].vfio = 0;
}

static void op_vfio(int c) {
  int fd = ctxs[c].fd;
  unsigned roll = pick(100);
  if (roll < 8) {
    begin("vfio_api_version");
    add(" ctx=%d", c);
    result(abi_ioctl(fd, VFIO_GET_API_VERSION, NULL));
  } else if (roll < 18) {
    static const unsigned long ext[] = {VFIO_TYPE1_IOMMU,
                                        VFIO_TYPE1v2_IOMMU,
                                        VFIO_DMA_CC_IOMMU,
                                        VFIO_TYPE1_NESTING_IOMMU,
                                        VFIO_UNMAP_ALL,
                                        VFIO_UPDATE_VADDR,
                                        0,
                                        2,
                                        8};
    unsigned long e = ext[pick(sizeof(ext) / sizeof(ext[0]))];
    begin("vfio_check_extension");
    add(" ctx=%d ext=%lu", c, e);
    result(abi_ioctl(fd, VFIO_CHECK_EXTENSION, (void*)e));
  } else if (roll < 30) {
    static const unsigned long type[] = {VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_TYPE1v2_IOMMU, 0, 5, 8};
    unsigned long ty = type[pick(sizeof(type) / sizeof(type[0]))];
    begin("vfio_set_iommu");
    add(" ctx=%d type=%lu", c, ty);
    result(abi_ioctl(fd, VFIO_SET_IOMMU, (void*)ty));
  } else if (roll < 45) {
    /* The header, the capability chain, or a buffer too small for it (argsz then reports what is needed). */
    static const uint32_t argsz[] = {16, 24, 40, 56, 72, 200, 15};
    struct {
      struct vfio_iommu_type1_info h;
      uint8_t caps[200];
    } info;
    memset(&info, 0, sizeof(info));
    info.h.argsz = argsz[pick(sizeof(argsz) / sizeof(argsz[0]))];
    begin("vfio_get_info");
    add(" ctx=%d argsz=%u", c, info.h.argsz);
    unsigned bad = chance(4) ? 1 + pick(2) : 0;
    if (bad) add(" arg=%s", bad == 1 ? "null" : "unmapped");
    result(abi_ioctl(fd, VFIO_IOMMU_GET_INFO, bad == 0 ? (void*)&info : bad == 1 ? NULL : unmapped_arg()));
    add(" argsz=%u flags=0x%x pgsizes=0x%llx cap_offset=%u caps=%08x", info.h.argsz, info.h.flags,
        (unsigned long long)info.h.iova_pgsizes, info.h.cap_offset, fnv(info.caps, sizeof(info.caps)));
  } else if (roll < 78) {
    int buf;
    uint64_t off;
    uint8_t* va = pick_va(&buf, &off);
    /* Never READ and WRITE both clear: Linux 7.2 maps such an area into a mock domain (a generic page table)
     * only through a WARN_ON and EINVAL (generic_pt/iommu_pt.h, map_range()), a kernel warning that would
     * fail the run; uiommufd maps it without permissions. VADDR (4) and unknown bits are refused earlier. */
    static const uint32_t odd_flags[] = {VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE,
                                         VFIO_DMA_MAP_FLAG_VADDR,
                                         VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_VADDR, 1u << 3};
    struct vfio_iommu_type1_dma_map m = {
        .argsz = sizeof(m),
        .flags = chance(85) ? VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE : odd_flags[pick(5)],
        .vaddr = (uintptr_t)va,
        .iova = pick_iova(c),
        .size = pick_len()};
    begin("vfio_map_dma");
    add(" ctx=%d va=b%d+0x%llx iova=0x%llx size=0x%llx flags=0x%x", c, buf, (unsigned long long)off,
        (unsigned long long)m.iova, (unsigned long long)m.size, m.flags);
    int r = VAR_NO_RSV(fd, VFIO_IOMMU_MAP_DMA, m, 32);
    result(r);
    if (r == 0 && ctxs[c].vfio) remember_map(c, ctxs[c].vfio, m.iova, m.size, buf, off);
  } else {
    const struct map_rec* mr = ctxs[c].vfio ? pick_map_of(c, ctxs[c].vfio) : NULL;
    struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof(u)};
    unsigned how = pick(100);
    if (how < 15) {
      u.flags = VFIO_DMA_UNMAP_FLAG_ALL;
    } else if (mr && how < 70) {
      u.iova = mr->iova;
      u.size = mr->length;
    } else {
      u.iova = pick_iova(c);
      u.size = pick_len();
    }
    if (chance(5)) u.flags |= chance(50) ? VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP : 1u << 2;
    if (chance(4)) u.flags = VFIO_DMA_UNMAP_FLAG_ALL, u.size = PAGE_SZ; /* ALL with a range: EINVAL */
    begin("vfio_unmap_dma");
    add(" ctx=%d iova=0x%llx size=0x%llx flags=0x%x", c, (unsigned long long)u.iova,
        (unsigned long long)u.size, u.flags);
    uint64_t iova = u.iova, want = u.size;
    uint32_t flags = u.flags;
    int r = VAR_NO_RSV(fd, VFIO_IOMMU_UNMAP_DMA, u, 24);
    result(r);
    add(" size=0x%llx", (unsigned long long)u.size);
    if (r == 0 && ctxs[c].vfio) {
      if (flags & VFIO_DMA_UNMAP_FLAG_ALL)
        forget_maps(c, ctxs[c].vfio, 0, ~0ULL);
      else
        forget_maps(c, ctxs[c].vfio, iova, want);
    }
  }
  end();
}

/* The memory behind every buffer, as a checksum: shows writes through accesses land in the same place. */
static void op_buffers(void) {
  begin("buffers");
  for (int i = 0; i < NBUF; i++) add(" b%d=%08x", i, fnv(bufs[i], BUF_LEN));
  uint8_t f[BUF_LEN];
  ssize_t n = pread(memfd, f, sizeof(f), 0);
  add(" memfd=%08x", n == (ssize_t)sizeof(f) ? fnv(f, sizeof(f)) : 0);
  end();
}

static void setup(uint64_t seed) {
  const size_t chunk = HUGE_SZ;
  size_t span = (NBUF + 1) * chunk;
  uint8_t* raw = (uint8_t*)mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    printf("FATAL mmap\n");
    exit(2);
  }
  uint8_t* base = (uint8_t*)(((uintptr_t)raw + chunk - 1) & ~(uintptr_t)(chunk - 1));
  for (int i = 0; i < NBUF; i++) {
    bufs[i] = base + (size_t)i * chunk;
    if (mmap(bufs[i], BUF_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
        MAP_FAILED) {
      printf("FATAL mmap buffer\n");
      exit(2);
    }
    madvise(bufs[i], BUF_LEN, MADV_NOHUGEPAGE);
    for (size_t j = 0; j < BUF_LEN; j++) bufs[i][j] = (uint8_t)(j * 7 + (size_t)i * 31 + seed);
  }
  memfd = (int)syscall(SYS_memfd_create, "seqgen", 0u);
  uint8_t f[BUF_LEN];
  for (size_t j = 0; j < BUF_LEN; j++) f[j] = (uint8_t)(j * 13 + seed);
  if (memfd < 0 || ftruncate(memfd, BUF_LEN) || pwrite(memfd, f, sizeof(f), 0) != (ssize_t)sizeof(f)) {
    printf("FATAL memfd\n");
    exit(2);
  }
  /* The bitmap area of GET_DIRTY_BITMAP, followed by a PROT_NONE page. */
  bm = (uint8_t*)mmap(NULL, BM_LEN + PAGE_SZ, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (bm == MAP_FAILED || mprotect(bm, BM_LEN, PROT_READ | PROT_WRITE)) {
    printf("FATAL mmap bitmap\n");
    exit(2);
  }
  madvise(bm, BM_LEN, MADV_NOHUGEPAGE);
  for (int c = 0; c < NCTX; c++) ctxs[c].fd = ctxs[c].dup = -1;
  for (int a = 0; a < MAX_ACC; a++) accs[a].fd = accs[a].dup = -1;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s SEED [STEPS]\n", argv[0]);
    return 2;
  }
  uint64_t seed = strtoull(argv[1], NULL, 0);
  unsigned steps = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 60;
  rng_state = seed * 0x2545f4914f6cdd1dULL + 1;
  setup(seed);
  printf("seed %llu steps %u\n", (unsigned long long)seed, steps);

  /* Weights of the operations, in the order of the switch below. */
  static const unsigned weight[] = {2,
                                    8,
                                    6,
                                    14,
                                    5,
                                    7,
                                    8,
                                    3,
                                    5,
                                    5,
                                    2,
                                    7,
                                    4,
                                    4,
                                    5,
                                    7,
                                    3,
                                    7,
                                    2,
                                    2,
                                    3,
                                    7,
                                    2,
                                    /* the newest page-table ABI */ 5,
                                    3,
                                    4,
                                    3,
                                    2,
                                    3,
                                    7,
                                    /* dirty tracking */ 9,
                                    /* dma-buf */ 3,
                                    /* vIOMMU, vDEVICE, queues */ 8,
                                    /* fault queues */ 5};
  unsigned total = 0;
  for (size_t i = 0; i < sizeof(weight) / sizeof(weight[0]); i++) total += weight[i];

  for (step_no = 1; step_no <= steps; step_no++) {
    unsigned roll = pick(total), op = 0;
    while (roll >= weight[op]) roll -= weight[op++];
    /* 15..19 act on accesses and buffers; the rest on a context. */
    int c = op >= 15 && op < 20 ? -1 : pick_ctx();
    /* Most operations need an IOAS: a context without one gets one first, as a step of its own. */
    if (((op >= 2 && op < 15) || op == 20 || op >= 23) && !has_ioas(c)) {
      op_ioas_alloc(c);
      step_no++;
    }
    switch (op) {
      case 0:
        op_close(c);
        break;
      case 1:
        op_ioas_alloc(c);
        break;
      case 2:
        op_destroy(c);
        break;
      case 3:
        op_map(c);
        break;
      case 4:
        op_map_file(c);
        break;
      case 5:
        op_copy(c);
        break;
      case 6:
        op_unmap(c);
        break;
      case 7:
        op_allow_iovas(c);
        break;
      case 8:
        op_iova_ranges(c);
        break;
      case 9:
        op_option(c);
        break;
      case 10:
        op_add_reserved(c);
        break;
      case 11:
        op_mock_domain(c, 0);
        break;
      case 12:
        op_check_map(c);
        break;
      case 13:
        op_check_refs(c);
        break;
      case 14:
        op_create_access(c);
        break;
      case 15:
        op_close_access();
        break;
      case 16:
        op_access_pages();
        break;
      case 17:
        op_destroy_access_pages();
        break;
      case 18:
        op_access_rw();
        break;
      case 19:
        op_buffers();
        break;
      case 20:
        op_vfio_ioas(c, 0);
        break;
      case 21:
        /* Mostly on a context whose compat IOAS is set, which the VFIO calls need; set as a step of its own.
         */
        if (!ctxs[c].vfio && has_ioas(c) && chance(75)) {
          op_vfio_ioas(c, 1);
          step_no++;
        }
        op_vfio(c);
        break;
      case 22:
        op_dup(c);
        break;
      case 23:
        op_hwpt_alloc(c, 0, 0, 0, 0);
        break;
      case 24:
        op_get_hw_info(c);
        break;
      case 25:
        op_hwpt_invalidate(c);
        break;
      case 26:
        op_check_iotlb(c);
        break;
      case 27:
        op_dev_check_cache(c);
        break;
      case 28:
        op_mock_domain_replace(c, 0, 0);
        break;
      case 29:
        op_pasid(c);
        break;
      case 30:
        op_dirty(c);
        break;
      case 31:
        op_dmabuf(c);
        break;
      case 32:
        op_viommu(c);
        break;
      default:
        op_fault(c);
        break;
    }
  }
  /* Before the descriptors close: no PASID may stay attached when a context is released. */
  for (int c = 0; c < NCTX; c++)
    if (ctxs[c].fd >= 0) detach_pasids(c, 0, "before the end");
  /* The end state: everything closed must leave no page pinned. */
  for (int a = 0; a < MAX_ACC; a++) {
    if (accs[a].fd >= 0) close(accs[a].fd);
    if (accs[a].dup >= 0) close(accs[a].dup);
  }
  for (int c = 0; c < NCTX; c++) {
    if (ctxs[c].fd >= 0) close(ctxs[c].fd);
    if (ctxs[c].dup >= 0) close(ctxs[c].dup);
  }
  for (int d = 0; d < NDMABUF; d++)
    if (dmabufs[d] >= 0) close(dmabufs[d]);
  /* A vEVENT queue's fd holds its context (and the hardware queues' pins in it). */
  for (int q = 0; q < NVQ; q++)
    if (vq_fds[q] >= 0) close(vq_fds[q]);
  for (int q = 0; q < NFQ; q++)
    if (fq_fds[q] >= 0) close(fq_fds[q]);
  int fd = open("/dev/iommu", O_RDWR);
  begin("final_refs");
  int worst = 0;
  for (int i = 0; i < NBUF; i++) {
    int r = check_refs(fd, bufs[i], BUF_LEN, 0);
    if (r) worst = r;
  }
  result(worst);
  end();
  close(fd);
  return 0;
}
