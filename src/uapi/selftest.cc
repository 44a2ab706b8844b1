// IOMMU_TEST_CMD: the kernel selftest's mock domains, devices and accesses (docs/abi.md#test-cmd,
// docs/semantics.md#selftest).
//
// Two layouts, told apart by size (docs/abi.md#test-cmd-layouts): below 52 bytes EINVAL; 52..67 the v6.2
// layout (56 bytes, ops 1–9, MOCK_DOMAIN with the v6.2 object model); 68 and above the newest layout (72
// bytes). Each op checks its arguments in the kernel's order and returns its errnos.

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "handlers.h"
#include "test_access.h"
#include "test_dmabuf.h"

#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/try.h"
#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/mm/page_identity.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/selftest_object.h"
#include "uiommufd/objects/vevent_queue.h"
#include "uiommufd/objects/viommu.h"
#include "uiommufd/pages/pages.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {

UIOMMUFD_DECLARE_FAULT_SITE(g_fault_selftest_alloc);

namespace {

// TRY for ioctl handlers, which return a negated errno rather than a Status.
#define TRY_RET(expr)                                           \
  (__extension__({                                              \
    auto _uiommufd_try_ret = (expr);                            \
    if (!_uiommufd_try_ret.ok()) [[unlikely]]                   \
      return -static_cast<long>(_uiommufd_try_ret.error());     \
    ::uiommufd::detail::try_take(std::move(_uiommufd_try_ret)); \
  }))

// ACCESS_PAGES and ACCESS_RW refuse more than this (the kernel keeps syzkaller off a kvzalloc WARN).
constexpr std::uint64_t kMaxAccessLength = 16 * 1024 * 1024;
// IOMMU_TEST_OP_DIRTY refuses bitmaps of more bits than this (16 MiB of bitmap).
constexpr std::uint64_t kMaxDirtyBits = std::uint64_t{16} * 1024 * 1024 * 8;
// The smallest SET_TEMP_MEMORY_LIMIT: one PFN entry and its count (the kernel's batch element).
constexpr std::uint32_t kMinTempMemoryLimit = sizeof(std::uint64_t) + sizeof(std::uint32_t);

struct TestCmd {
  Ucmd& ucmd;
  std::uint32_t known_size;  // 56 (v6.2) or 72 (newest)
  bool v62() const { return known_size == kTestCmdV62Size; }
  iommu_test_cmd& cmd() { return ucmd.arg<iommu_test_cmd>(); }
  IommufdFile& file() { return ucmd.file; }
  Context& ctx() { return ucmd.ctx; }
  // The reply: the whole command as this layout knows it, min(size, known) bytes.
  Status respond() {
    return Mm::current()->copy_to_user(ucmd.uptr, ucmd.buf, std::min(ucmd.user_size, known_size));
  }
};

// MOCK_FLAGS_ACCESS_SYZ: the IOVA is {u32 nth_area, u32 offset} of the access's IOAS; no such area gives
// IOVA 0, which then fails as a hole would.
std::uint64_t syz_iova(Context& ctx, Access& access, std::uint64_t syz) {
  const std::uint32_t ioas_id = access.ioas_id();
  if (ioas_id == 0) return 0;
  Result<ObjectRef<Ioas>> ioas = ctx.get<Ioas>(ioas_id, ObjectType::kIoas);
  if (!ioas.ok()) return 0;
  std::uint32_t nth = 0, offset = 0;
  std::memcpy(&nth, &syz, sizeof(nth));
  std::memcpy(&offset, reinterpret_cast<const char*>(&syz) + sizeof(nth), sizeof(offset));
  std::vector<IoPagetable::AreaInfo> areas = (*ioas)->iopt().areas();
  std::sort(areas.begin(), areas.end(),
            [](const auto& a, const auto& b) { return a.iova.start < b.iova.start; });
  return nth < areas.size() ? areas[nth].iova.start + offset : 0;
}

// What the kernel's get_user_pages_fast() of each page of [uaddr, uaddr + length) would find: EFAULT when
// some page is not mapped readable. Makes the pages resident, as GUP does; no fault site (GUP has none).
Status gup_check(std::uint64_t uaddr, std::uint64_t length) {
  if (length == 0) return {};
  const std::uint64_t first = page_align_down(uaddr);
  std::uint64_t end = 0;
  if (!checked_add(uaddr, length, &end) || end > kUlongMax - kPageSize) return Status::error(EFAULT);
  return Mm::current()->make_resident(first, page_align_down(end + kPageSize - 1) - first, /*write=*/false);
}

// The kernel's MD_CHECK_MAP and MD_CHECK_REFS fault each page in just before comparing it, so a mismatch in
// an earlier page wins over a fault in a later one. Returns how many leading bytes (in `step` units) can be
// faulted in; `fault` receives the error of the first page that cannot (ok when the whole range can).
std::uint64_t faultable_prefix(std::uint64_t uptr, std::uint64_t length, std::uint64_t step, Status* fault) {
  *fault = gup_check(uptr, length);
  if (fault->ok()) return length;
  std::uint64_t good = 0;
  while (good < length) {
    Status st = gup_check(uptr + good, step);
    if (!st.ok()) {
      *fault = st;
      break;
    }
    good += step;
  }
  return good;
}

// Whether PhysAddrs a domain or a pin holds reach the same pages as the caller's range. The held side may
// be memory of any process (Mm::phys_of tags it) or a file window of this process, so each side is resolved
// in its own process's maps, each read once per check.
class IdentityCompare {
 public:
  IdentityCompare() : caller_mm_(Mm::current()), caller_(MapsSnapshot::take(*caller_mm_)) {}
  bool same(PhysAddr held, std::uint64_t uptr, std::uint64_t length) {
    RefPtr<Mm> mm = Mm::of_phys(held);
    if (!mm) return false;  // its process and every page it pinned are gone
    const MapsSnapshot* snap = &caller_;
    if (mm != caller_mm_) {
      if (!other_ || other_mm_ != mm) {
        other_mm_ = mm;
        other_ = MapsSnapshot::take(*mm);
      }
      snap = &*other_;
    }
    return MapsSnapshot::same_pages(*snap, Mm::phys_address(held), caller_, uptr, length);
  }

 private:
  RefPtr<Mm> caller_mm_;
  MapsSnapshot caller_;
  RefPtr<Mm> other_mm_;
  std::optional<MapsSnapshot> other_;
};

long add_reserved(TestCmd& t) {
  const auto& a = t.cmd().add_reserved;
  ObjectRef<Ioas> ioas = TRY_RET(t.ctx().get<Ioas>(t.cmd().id, ObjectType::kIoas));
  // FIXME: the kernel inserts [start, start + length − 1] unchecked; an empty or wrapping range is
  // refused here rather than stored inverted.
  Result<Interval> range = Interval::from_length(a.start, a.length);
  if (!range.ok()) return -EINVAL;
  return to_ret(ioas->iopt().add_reserved(*range, nullptr));
}

long mock_domain(TestCmd& t) {
  auto respond = [&t](const SelftestObject::Ids& ids) {
    auto& md = t.cmd().mock_domain;
    md.out_stdev_id = ids.stdev_id;
    md.out_hwpt_id = ids.hwpt_id;
    if (!t.v62()) md.out_idev_id = ids.idev_id;
    return t.respond();
  };
  // MOCK_DOMAIN_FLAGS is MOCK_DOMAIN with device flags after the same three outputs.
  const std::uint32_t dev_flags =
      t.cmd().op == IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS ? t.cmd().mock_domain_flags.dev_flags : 0;
  Result<SelftestObject::Ids> ids =
      t.v62() ? SelftestObject::create_mock_hwpt(t.ctx(), t.cmd().id, respond)
              : SelftestObject::create_mock_device(t.ctx(), t.cmd().id, dev_flags, respond);
  return to_ret(ids.status());
}

// The newest model's selftest object and its device: ENOENT for an id that is not a selftest object,
// EINVAL for a v6.2-model one (it has no device).
Result<ObjectRef<SelftestObject>> get_selftest_device(TestCmd& t) {
  ObjectRef<SelftestObject> sobj = TRY(t.ctx().get<SelftestObject>(t.cmd().id, ObjectType::kSelftest));
  if (!sobj->device()) return Status::error(EINVAL);
  return sobj;
}

long md_check_iotlb(TestCmd& t) {
  ObjectRef<HwptNested> hwpt = TRY_RET(t.ctx().get<HwptNested>(t.cmd().id, ObjectType::kHwptNested));
  return to_ret(hwpt->domain().check_iotlb(t.cmd().check_iotlb.id, t.cmd().check_iotlb.iotlb));
}

long dev_check_cache(TestCmd& t) {
  ObjectRef<Device> dev = TRY_RET(t.ctx().get<Device>(t.cmd().id, ObjectType::kDevice));
  return to_ret(dev->check_cache(t.cmd().check_dev_cache.id, t.cmd().check_dev_cache.cache));
}

long pasid_attach(TestCmd& t) {
  ObjectRef<SelftestObject> sobj = TRY_RET(get_selftest_device(t));
  auto& a = t.cmd().pasid_attach;
  const std::uint32_t hwpt_id = TRY_RET(sobj->device()->attach(a.pasid, a.pt_id));
  a.pt_id = hwpt_id;
  if (Status st = t.respond(); !st.ok()) {
    sobj->device()->detach(a.pasid);
    return to_ret(st);
  }
  return 0;
}

long pasid_replace(TestCmd& t) {
  ObjectRef<SelftestObject> sobj = TRY_RET(get_selftest_device(t));
  auto& a = t.cmd().pasid_attach;
  a.pt_id = TRY_RET(sobj->device()->replace(a.pasid, a.pt_id));
  return to_ret(t.respond());
}

long pasid_detach(TestCmd& t) {
  ObjectRef<SelftestObject> sobj = TRY_RET(get_selftest_device(t));
  sobj->device()->detach(t.cmd().pasid_attach.pasid);
  return 0;
}

long pasid_check_hwpt(TestCmd& t) {
  ObjectRef<SelftestObject> sobj = TRY_RET(get_selftest_device(t));
  const auto& c = t.cmd().pasid_check;
  const std::uint32_t attached = sobj->device()->hwpt_id(c.pasid);
  if (c.hwpt_id == 0) return attached ? -EINVAL : 0;
  // The id must name an HWPT of either kind (ENOENT unknown, EINVAL another type).
  ObjectRef<Object> obj = TRY_RET(t.ctx().get<Object>(c.hwpt_id, ObjectType::kAny));
  if (obj->type() != ObjectType::kHwptPaging && obj->type() != ObjectType::kHwptNested) return -EINVAL;
  return attached == c.hwpt_id ? 0 : -EINVAL;
}

long mock_domain_replace(TestCmd& t) {
  ObjectRef<SelftestObject> sobj = TRY_RET(get_selftest_device(t));
  Result<std::uint32_t> hwpt_id = sobj->replace(t.cmd().mock_domain_replace.pt_id);
  if (!hwpt_id.ok()) return -hwpt_id.error();
  t.cmd().mock_domain_replace.pt_id = *hwpt_id;
  return to_ret(t.respond());
}

long md_check_map(TestCmd& t) {
  const auto& c = t.cmd().check_map;
  // The id first: a missing or non-HWPT id is ENOENT even with misaligned arguments (as on Linux 7.2).
  ObjectRef<HwptPaging> hwpt = TRY_RET(t.ctx().get<HwptPaging>(t.cmd().id, ObjectType::kHwptPaging));
  auto* mock = dynamic_cast<MockDomain*>(&hwpt->domain());
  if (!mock) return -EINVAL;
  // The unit is the domain's smallest page: 2 KiB, or 4 KiB for the MOCK_IOMMUPT_HUGE table.
  const std::uint64_t unit = mock->granule();
  std::uint64_t end = 0;
  if (((c.iova | c.length | c.uptr) & (unit - 1)) != 0 || !checked_add(c.uptr, c.length, &end))
    return -EINVAL;
  Status fault;
  const std::uint64_t len = faultable_prefix(c.uptr, c.length, unit, &fault);
  // A domain maps host addresses of this process (pages.h). The same address is the same page, which is
  // the common case and needs no look at the address space; otherwise the two sides may still reach one
  // page (a MAP_FILE of a memfd checked through an mmap of it), so both are resolved to page identities.
  if (len == 0 || mock->check_map(c.iova, len, Mm::current_ref().phys_of(c.uptr)).ok()) return to_ret(fault);
  IdentityCompare compare;
  for (std::uint64_t done = 0; done < len;) {
    const Domain::Run run = mock->read_run(c.iova + done, len - done);
    if (run.length == 0 || !compare.same(run.paddr, c.uptr + done, run.length)) return -EINVAL;
    done += run.length;
  }
  return to_ret(fault);
}

// The kernel's IOMMU_TEST_OP_DIRTY: marks dirty, in a mock HWPT that tracks, the page_size-sized pieces
// whose bits are set in the caller's bitmap (bit i: iova + i * page_size); out_nr_dirty is the number of
// bits set, whether or not their IOVA is mapped (the mock's set_dirty result is not looked at).
long dirty(TestCmd& t) {
  auto& d = t.cmd().dirty;
  if (!d.page_size || !d.length || d.iova % d.page_size || d.length % d.page_size || !d.uptr) return -EINVAL;
  const std::uint64_t bits = d.length / d.page_size;
  if (bits > kMaxDirtyBits) return -EOVERFLOW;
  ObjectRef<HwptPaging> hwpt = TRY_RET(t.ctx().get<HwptPaging>(t.cmd().id, ObjectType::kHwptPaging));
  auto* mock = dynamic_cast<MockDomain*>(&hwpt->domain());
  if (!mock) return -EINVAL;
  if (!mock->dirty_tracking()) return -EINVAL;
  TRY_RET(inject(g_fault_selftest_alloc));  // the kernel's copy of the bitmap
  // Read whole before anything is marked, as the kernel does: a bitmap that cannot be read marks nothing.
  std::vector<std::uint8_t> bitmap((bits + 7) / 8);
  TRY_RET(Mm::current()->copy_from_user(bitmap.data(), d.uptr, bitmap.size()));
  std::uint64_t count = 0;
  for (std::uint64_t i = 0; i < bits; ++i) {
    if (!(bitmap[i / 8] & (1u << (i % 8)))) continue;
    (void)mock->set_dirty(d.iova + i * d.page_size);
    ++count;
  }
  d.out_nr_dirty = count;
  return to_ret(t.respond());
}

long md_check_refs(TestCmd& t) {
  const auto& c = t.cmd().check_refs;
  std::uint64_t end = 0;
  if (page_offset(c.length) != 0 || page_offset(c.uptr) != 0 || !checked_add(c.uptr, c.length, &end))
    return -EINVAL;
  Status fault;
  const std::uint64_t len = faultable_prefix(c.uptr, c.length, kPageSize, &fault);
  if (len != 0 && !Pages::pin_count_is(*Mm::current(), c.uptr, len, c.refs)) return -EIO;
  return to_ret(fault);
}

long create_access(TestCmd& t) {
  const std::uint32_t flags = t.cmd().create_access.flags;
  if (flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) return -EOPNOTSUPP;
  std::shared_ptr<TestAccessFile> file = TRY_RET(
      TestAccessFile::create(t.file().shared_from_this(), flags & MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES));
  TRY_RET(file->access().attach(t.cmd().id));
  FdHost& host = t.file().host();
  const int fd = TRY_RET(host.install(file));
  t.cmd().create_access.out_access_fd = static_cast<std::uint32_t>(fd);
  if (Status st = t.respond(); !st.ok()) {
    // The caller never saw the fd: take it back; the file's last reference then destroys the access.
    host.uninstall(fd);
    return to_ret(st);
  }
  return 0;
}

long destroy_access_pages(TestCmd& t) {
  std::shared_ptr<TestAccessFile> f = TRY_RET(lookup_test_access(t.file().host(), t.cmd().id));
  return to_ret(f->ranges().unpin(f->access(), t.cmd().destroy_access_pages.access_pages_id));
}

// The kernel's iommufd_test_check_pages: each pinned page must be the page GUP finds at the matching user
// address. EFAULT if that address is not mapped, EBADE on a mismatch. Pinned pages come as host addresses
// (pages.h): equal addresses are the same page; different ones are compared by page identity, so a page
// pinned through a MAP_FILE matches the same file page reached through the caller's mmap.
Status check_pages(std::uint64_t uptr, std::uint64_t npages, const std::vector<AccessPage>& pages) {
  npages = std::min<std::uint64_t>(npages, pages.size());
  const std::uint64_t base = page_align_down(uptr);
  // Page by page as in the kernel: a mismatch before the first page that cannot be faulted in is EBADE.
  Status fault;
  npages = faultable_prefix(base, npages * kPageSize, kPageSize, &fault) / kPageSize;
  std::uint64_t i = 0;
  const Mm& caller = Mm::current_ref();
  while (i < npages && pages[i].phys == caller.phys_of(base + i * kPageSize)) ++i;
  if (i == npages) return fault;
  IdentityCompare compare;
  for (; i < npages; ++i)
    if (!compare.same(pages[i].phys, base + i * kPageSize, kPageSize)) return Status::error(EBADE);
  return fault;
}

long access_pages(TestCmd& t) {
  auto& a = t.cmd().access_pages;
  if (a.length > kMaxAccessLength) return -ENOMEM;
  if (a.flags & ~(MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ)) return -EOPNOTSUPP;
  std::shared_ptr<TestAccessFile> f = TRY_RET(lookup_test_access(t.file().host(), t.cmd().id));
  if (!f->needs_pin_pages()) return -EOPNOTSUPP;
  std::uint64_t iova = a.iova;
  if (a.flags & MOCK_FLAGS_ACCESS_SYZ) iova = syz_iova(t.ctx(), f->access(), a.iova);
  std::uint64_t end = 0;
  const std::uint64_t npages =
      checked_add(iova, a.length, &end) && end <= kUlongMax - kPageSize
          ? (page_align_down(end + kPageSize - 1) - page_align_down(iova)) / kPageSize
          : 0;
  TRY_RET(inject(g_fault_selftest_alloc));  // the page array
  std::vector<AccessPage> pages;
  const std::uint64_t uptr = a.uptr;
  auto check = [&](const std::vector<AccessPage>& pinned) -> Status {
    // A null uptr skips the compare (a syzkaller aid, as in the kernel).
    if (uptr) TRY(check_pages(uptr - page_offset(iova), npages, pinned));
    return inject(g_fault_selftest_alloc);  // the record
  };
  const std::uint32_t id =
      TRY_RET(f->ranges().pin(f->access(), iova, a.length, &pages,
                              (a.flags & MOCK_FLAGS_ACCESS_WRITE) ? Access::kPinWrite : 0, check));
  a.out_access_pages_id = id;
  if (Status st = t.respond(); !st.ok()) {
    (void)f->ranges().unpin(f->access(), id);  // an unmap may have dropped it already
    return to_ret(st);
  }
  return 0;
}

long access_rw(TestCmd& t) {
  const auto& a = t.cmd().access_rw;
  if (a.length > kMaxAccessLength) return -ENOMEM;
  if (a.flags & ~(MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH | MOCK_FLAGS_ACCESS_SYZ))
    return -EOPNOTSUPP;
  std::shared_ptr<TestAccessFile> f = TRY_RET(lookup_test_access(t.file().host(), t.cmd().id));
  TRY_RET(inject(g_fault_selftest_alloc));  // the bounce buffer
  std::vector<char> buf(a.length);
  const bool write = a.flags & MOCK_ACCESS_RW_WRITE;
  if (write) TRY_RET(Mm::current()->copy_from_user(buf.data(), a.uptr, buf.size()));
  std::uint64_t iova = a.iova;
  if (a.flags & MOCK_FLAGS_ACCESS_SYZ) iova = syz_iova(t.ctx(), f->access(), a.iova);
  std::uint32_t flags =
      (write ? Access::kRwWrite : 0) | ((a.flags & MOCK_ACCESS_RW_SLOW_PATH) ? Access::kRwSlowPath : 0);
  TRY_RET(f->access().rw(iova, buf.data(), a.length, flags));
  if (!write) TRY_RET(Mm::current()->copy_to_user(a.uptr, buf.data(), buf.size()));
  return 0;
}

long set_temp_memory_limit(TestCmd& t) {
  if (t.cmd().memory_limit.limit < kMinTempMemoryLimit) return -EINVAL;
  Pages::set_temp_memory_limit(t.cmd().memory_limit.limit);
  return 0;
}

long access_replace_ioas(TestCmd& t) {
  std::shared_ptr<TestAccessFile> f = TRY_RET(lookup_test_access(t.file().host(), t.cmd().id));
  return to_ret(f->access().replace(t.cmd().access_replace_ioas.ioas_id));
}

// DMABUF_GET (iommufd_test_dmabuf_get()): the ioctl's value is the new fd. Every open flag is accepted;
// O_CLOEXEC, the access mode and O_NONBLOCK take effect (FdHost::install_with_flags).
long dmabuf_get(TestCmd& t) {
  const auto& a = t.cmd().dmabuf_get;
  const std::uint64_t length = page_align_down(std::uint64_t{a.length} + kPageSize - 1);
  if (length == 0 || length > MockDmaBuf::kMaxLength) return -EINVAL;
  RefPtr<MockDmaBuf> buf = TRY_RET(MockDmaBuf::create(length));
  std::shared_ptr<DmaBufFile> file = TRY_RET(DmaBufFile::create(std::move(buf)));
  return TRY_RET(t.file().host().install_with_flags(std::move(file), static_cast<int>(a.open_flags)));
}

// DMABUF_REVOKE (iommufd_test_dmabuf_revoke()): any non-zero `revoked` revokes.
long dmabuf_revoke(TestCmd& t) {
  const auto& a = t.cmd().dmabuf_revoke;
  RefPtr<MockDmaBuf> buf = TRY_RET(lookup_dmabuf(t.file().host(), a.dmabuf_fd));
  buf->set_revoked(a.revoked != 0);
  return 0;
}

// The kernel's iommufd_test_trigger_vevent(): an event carrying the device's virtual id, reported to the
// vIOMMU its RID's nested HWPT belongs to. ENOENT when there is none (or the virtual id is 0); then
// Viommu::report_event()'s (EOPNOTSUPP without a queue of the selftest type).
long trigger_vevent(TestCmd& t) {
  ObjectRef<Device> dev = TRY_RET(t.ctx().get<Device>(t.cmd().trigger_vevent.dev_id, ObjectType::kDevice));
  auto target = TRY_RET(dev->event_target());
  const std::uint32_t virt_id =
      static_cast<std::uint32_t>(target.second);  // struct iommu_viommu_event_selftest
  return to_ret(target.first->report_event(kVeventqTypeSelftest, &virt_id, sizeof(virt_id)));
}

// The kernel's iommufd_test_trigger_iopf(): one page request, the last of its group, from a mock device.
// Whether it reaches a fault queue is not reported: the ioctl succeeds either way. The mock's
// page_response does nothing, so the group's responder is empty.
long trigger_iopf(TestCmd& t) {
  const auto& a = t.cmd().trigger_iopf;
  ObjectRef<Device> dev = TRY_RET(t.ctx().get<Device>(a.dev_id, ObjectType::kDevice));
  if (dev->kind() != Device::Kind::kMock) return -EINVAL;
  PageRequest req;
  req.flags = kPgfaultFlagLastPage | (a.pasid != Device::kNoPasid ? kPgfaultFlagPasidValid : 0);
  req.pasid = a.pasid;
  req.grpid = a.grpid;
  req.perm = a.perm;
  req.addr = a.addr;
  (void)dev->report_page_fault(&req, 1);
  return 0;
}

#undef TRY_RET

}  // namespace

long test_cmd(IommufdFile& file, std::uint64_t uptr) {
  Result<std::uint32_t> size = read_user_size(uptr);
  if (!size.ok()) return -size.error();
  if (*size < kTestCmdV62MinSize) return -EINVAL;
  const std::uint32_t known = *size < kTestCmdMinSize ? kTestCmdV62Size : sizeof(iommu_test_cmd);
  Ucmd ucmd{file, file.context(), IOMMU_TEST_CMD, uptr, *size};
  if (Status in = copy_struct_from_user(ucmd.buf, known, uptr, *size); !in.ok()) return -in.error();
  TestCmd t{ucmd, known};
  const std::uint32_t op = t.cmd().op;
  if (t.v62() && op > IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT) return -EOPNOTSUPP;
  switch (op) {
    case IOMMU_TEST_OP_ADD_RESERVED:
      return add_reserved(t);
    case IOMMU_TEST_OP_MOCK_DOMAIN:
    case IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS:
      return mock_domain(t);
    case IOMMU_TEST_OP_MD_CHECK_MAP:
      return md_check_map(t);
    case IOMMU_TEST_OP_MD_CHECK_REFS:
      return md_check_refs(t);
    case IOMMU_TEST_OP_CREATE_ACCESS:
      return create_access(t);
    case IOMMU_TEST_OP_DESTROY_ACCESS_PAGES:
      return destroy_access_pages(t);
    case IOMMU_TEST_OP_ACCESS_PAGES:
      return access_pages(t);
    case IOMMU_TEST_OP_ACCESS_RW:
      return access_rw(t);
    case IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT:
      return set_temp_memory_limit(t);
    case IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE:
      return mock_domain_replace(t);
    case IOMMU_TEST_OP_ACCESS_REPLACE_IOAS:
      return access_replace_ioas(t);
    case IOMMU_TEST_OP_DIRTY:
      return dirty(t);
    case IOMMU_TEST_OP_MD_CHECK_IOTLB:
      return md_check_iotlb(t);
    case IOMMU_TEST_OP_DEV_CHECK_CACHE:
      return dev_check_cache(t);
    case IOMMU_TEST_OP_PASID_ATTACH:
      return pasid_attach(t);
    case IOMMU_TEST_OP_PASID_REPLACE:
      return pasid_replace(t);
    case IOMMU_TEST_OP_PASID_DETACH:
      return pasid_detach(t);
    case IOMMU_TEST_OP_PASID_CHECK_HWPT:
      return pasid_check_hwpt(t);
    case IOMMU_TEST_OP_DMABUF_GET:
      return dmabuf_get(t);
    case IOMMU_TEST_OP_DMABUF_REVOKE:
      return dmabuf_revoke(t);
    case IOMMU_TEST_OP_TRIGGER_IOPF:
      return trigger_iopf(t);
    case IOMMU_TEST_OP_TRIGGER_VEVENT:
      return trigger_vevent(t);
    default:
      return -EOPNOTSUPP;
  }
}

}  // namespace uiommufd::uapi
