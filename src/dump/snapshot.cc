#include "uiommufd/dump/snapshot.h"

#include <algorithm>
#include <map>
#include <new>
#include <utility>

#include <unistd.h>

#include "uiommufd/base/fault.h"
#include "uiommufd/domain/domain.h"
#include "uiommufd/iopt/area.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/access.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/selftest_object.h"
#include "uiommufd/objects/viommu.h"

namespace uiommufd::dump {

const char* area_state_name(AreaState state) {
  switch (state) {
    case AreaState::kBuilding:
      return "building";
    case AreaState::kUnmapping:
      return "unmapping";
    case AreaState::kMapped:
      return "mapped";
    case AreaState::kPartlyPinned:
      return "partly_pinned";
    case AreaState::kPinned:
      return "pinned";
    case AreaState::kDmaBuf:
      return "dmabuf";
    case AreaState::kRevoked:
      return "revoked";
  }
  return "?";
}

const char* pages_kind_name(PagesKind kind) {
  switch (kind) {
    case PagesKind::kUser:
      return "user";
    case PagesKind::kFile:
      return "file";
    case PagesKind::kDmaBuf:
      return "dmabuf";
  }
  return "?";
}

const char* account_mode_name(AccountMode mode) {
  switch (mode) {
    case AccountMode::kNone:
      return "none";
    case AccountMode::kUser:
      return "user";
    case AccountMode::kMm:
      return "mm";
  }
  return "?";
}

const char* reserved_owner_name(ReservedOwner owner) {
  switch (owner) {
    case ReservedOwner::kUser:
      return "user";
    case ReservedOwner::kDomain:
      return "domain";
    case ReservedOwner::kOther:
      return "other";
  }
  return "?";
}

const char* reason_name(Reason reason) {
  switch (reason) {
    case Reason::kRequest:
      return "request";
    case Reason::kSignal:
      return "signal";
    case Reason::kExit:
      return "exit";
  }
  return "?";
}

namespace {

// The fail-nth counter of this thread, set aside while the dump looks objects up, so that a dump neither
// consumes a count armed for the program's next call nor fails because of one.
class FaultPause {
 public:
  FaultPause() : saved_(fail_nth_get()) { fail_nth_set(0); }
  ~FaultPause() { fail_nth_set(saved_); }
  FaultPause(const FaultPause&) = delete;
  FaultPause& operator=(const FaultPause&) = delete;

 private:
  const std::uint32_t saved_;
};

pid_t pid_of(const Mm& mm) { return mm.remote() ? mm.pid() : getpid(); }

// How far `domain` maps `range` from its first byte on, run by run (one per physically contiguous piece,
// so usually one per area). Stops at a hole, or after kMaxRuns runs (then it under-reports).
std::uint64_t filled_prefix(const Domain& domain, Interval range) {
  constexpr int kMaxRuns = 1 << 16;
  const std::uint64_t total = range.is_full() ? ~std::uint64_t{0} : range.length();
  std::uint64_t done = 0;
  for (int i = 0; i < kMaxRuns && done < total; ++i) {
    const Domain::Run run = domain.read_run(range.start + done, total - done);
    if (run.length == 0) break;
    done += run.length;
  }
  return done;
}

struct HwptInfo {
  const Domain* domain;
  std::uint32_t id;
  bool auto_domain, nest_parent, dirty_tracking;
};

class Builder;

// Reads one IOAS's I/O page table (IoPagetable::inspect()), with the IOAS's HWPTs known.
class IoasReader final : public IoPagetable::Inspector {
 public:
  IoasReader(Builder& builder, IoasSnapshot& out, const std::vector<HwptInfo>& hwpts)
      : builder_(builder), out_(out), hwpts_(hwpts) {}

  void domains(const std::vector<Domain*>& domains, std::uint64_t iova_alignment, bool large_pages,
               std::size_t accesses) override;
  void area(const Area& area, Pages* backing) override;
  void reserved(Interval range, const void* owner) override;
  void allowed(Interval range) override { out_.allowed.push_back(range); }

 private:
  std::uint32_t hwpt_of(const void* domain) const {
    for (const HwptInfo& h : hwpts_)
      if (h.domain == domain) return h.id;
    return 0;
  }

  Builder& builder_;
  IoasSnapshot& out_;
  const std::vector<HwptInfo>& hwpts_;
  std::vector<const Domain*> domains_;
};

class Builder {
 public:
  Builder(Context& ctx, std::uint64_t number) : ctx_(ctx) { out_.number = number; }

  ContextSnapshot build() {
    out_.account_mode = ctx_.account_mode();
    out_.mm_account_mode = ctx_.mm_account_mode();
    if (Result<std::uint32_t> vfio = ctx_.vfio_ioas_id(); vfio.ok()) out_.vfio_ioas = *vfio;
    // The ids first, each object's user given back at once; then each object is looked up again while it
    // is read, so that the dump holds no more than one of them at a time.
    std::vector<std::uint32_t> ids;
    {
      Result<std::vector<ObjectRef<Object>>> live = ctx_.live_objects(ObjectType::kAny);
      if (!live.ok()) throw std::bad_alloc();
      for (const ObjectRef<Object>& ref : *live) ids.push_back(ref->id());
    }
    for (std::uint32_t id : ids) {
      Result<ObjectRef<Object>> ref = ctx_.get<Object>(id, ObjectType::kAny);
      if (ref.ok()) read_object(**ref);  // else destroyed meanwhile
    }
    link_attachments();
    for (const PagesSnapshot& p : out_.pages) {
      out_.pinned_pages += p.npinned;
      if (p.account_mode != AccountMode::kNone) out_.charged_pages += p.npinned;
    }
    for (const RefPtr<Mm>& mm : mms_) {
      out_.mms.push_back({pid_of(*mm), mm->uid(), account_locked_pages(*mm, AccountMode::kUser),
                          account_locked_pages(*mm, AccountMode::kMm), account_pinned_vm(*mm)});
    }
    return std::move(out_);
  }

  // The snapshot id of `pages`, read now if it is new. Its mutex is held.
  std::uint32_t pages_id(Pages& pages) REQUIRES(pages.mutex()) {
    auto [it, added] = pages_ids_.try_emplace(&pages, 0);
    if (!added) return it->second;
    PagesSnapshot p;
    p.id = static_cast<std::uint32_t>(out_.pages.size() + 1);
    it->second = p.id;
    p.kind = pages.kind();
    p.source_addr = pages.source_addr();
    switch (pages.kind()) {
      case PagesKind::kUser:
        p.pid = pid_of(pages.mm());
        break;
      case PagesKind::kFile: {
        const PageIdentity first = pages.file_identity(0);
        p.file_dev = first.dev;
        p.file_ino = first.ino;
        break;
      }
      case PagesKind::kDmaBuf:
        p.dmabuf = dmabuf_ids_.try_emplace(pages.dmabuf(), dmabuf_ids_.size() + 1).first->second;
        p.revoked = pages.revoked_locked();
        break;
    }
    p.start_offset = pages.start_offset();
    p.length = pages.length();
    p.npages = pages.npages();
    p.writable = pages.writable();
    p.lock_pinned = pages.lock_pinned();
    p.account_mode = pages.account_mode();
    p.npinned = pages.npinned_locked();
    if (pages.pins_pages()) {
      if (const RefPtr<Mm>& mm = pages.account_mm_locked()) {
        p.account_pid = pid_of(*mm);
        if (std::find(mms_.begin(), mms_.end(), mm) == mms_.end()) mms_.push_back(mm);
      }
    }
    if (p.npages > 0) {
      const PinRuns& runs = pages.pin_runs_locked();
      std::vector<Interval> stored;
      runs.pinned_in(0, p.npages - 1, &stored);
      for (const Interval& r : stored) {
        if (p.pin_runs.size() == kMaxRunsPerPages) {
          ++p.pin_runs_omitted;
          continue;
        }
        p.pin_runs.push_back({r.start, r.last, runs.users(r.start)});
      }
    }
    for (const auto& [range, users] : pages.access_records_locked()) {
      if (p.access_records.size() == kMaxRunsPerPages) {
        ++p.access_records_omitted;
        continue;
      }
      p.access_records.push_back({range.start, range.last, users});
    }
    out_.pages.push_back(std::move(p));
    return it->second;
  }

  const PagesSnapshot& pages(std::uint32_t id) const { return out_.pages[id - 1]; }

 private:
  void read_object(Object& obj) {
    ObjectSnapshot s;
    s.id = obj.id();
    s.type = obj.type();
    s.users = obj.users() - 1;  // without this snapshot's reference
    auto link = [&s](const char* role, std::uint32_t id) {
      if (id != 0) s.links.push_back({role, id});
    };
    switch (obj.type()) {
      case ObjectType::kIoas:
        read_ioas(static_cast<Ioas&>(obj));
        break;
      case ObjectType::kHwptPaging: {
        auto& hwpt = static_cast<HwptPaging&>(obj);
        link("ioas", hwpt.ioas().id());
        if (hwpt.fault()) link("fault", hwpt.fault()->id());
        break;
      }
      case ObjectType::kHwptNested: {
        auto& hwpt = static_cast<HwptNested&>(obj);
        link("parent", hwpt.parent().id());
        if (hwpt.viommu()) link("viommu", hwpt.viommu()->id());
        if (hwpt.fault()) link("fault", hwpt.fault()->id());
        break;
      }
      case ObjectType::kDevice:
        for (const auto& [pasid, hwpt] : static_cast<Device&>(obj).attachments()) {
          s.links.push_back({"hwpt", hwpt, true, pasid});
          device_attachments_.push_back({hwpt, {obj.id(), pasid}});
        }
        break;
      case ObjectType::kAccess:
        if (const std::uint32_t ioas = static_cast<Access&>(obj).ioas_id(); ioas != 0) {
          link("ioas", ioas);
          access_attachments_.emplace_back(ioas, obj.id());
        }
        break;
      case ObjectType::kViommu:
        link("hwpt", static_cast<Viommu&>(obj).hwpt().id());
        break;
      case ObjectType::kVdevice: {
        auto& vdev = static_cast<Vdevice&>(obj);
        link("viommu", vdev.viommu().id());
        link("device", vdev.device().id());
        break;
      }
      case ObjectType::kSelftest:
        if (Device* dev = static_cast<SelftestObject&>(obj).device()) link("device", dev->id());
        break;
      default:
        break;
    }
    out_.objects.push_back(std::move(s));
  }

  void read_ioas(Ioas& ioas) {
    IoasSnapshot s;
    s.id = ioas.id();
    s.lock_pinned = ioas.lock_pinned();
    {
      // ioas.mutex before the I/O page-table locks, as the engine's order has it: the HWPT list then
      // matches the domains inspect() reports.
      lockdep::MutexGuard g(ioas.mutex());
      std::vector<HwptInfo> hwpts;
      for (HwptPaging* h : ioas.hwpts_locked())
        hwpts.push_back({&h->domain(), h->id(), h->auto_domain(), h->nest_parent(), h->dirty_tracking()});
      IoasReader reader(*this, s, hwpts);
      ioas.iopt().inspect(reader);
      for (DomainSnapshot& d : s.domains) {
        for (const HwptInfo& h : hwpts) {
          if (h.id != d.hwpt || d.hwpt == 0) continue;
          d.auto_domain = h.auto_domain;
          d.nest_parent = h.nest_parent;
          d.dirty_tracking = h.dirty_tracking;
        }
      }
    }
    out_.ioases.push_back(std::move(s));
  }

  // Devices onto their HWPTs' domains, accesses onto their IOASes (both read from the device and access
  // side, under their own locks).
  void link_attachments() {
    for (IoasSnapshot& ioas : out_.ioases) {
      for (DomainSnapshot& d : ioas.domains)
        for (const auto& [hwpt, att] : device_attachments_)
          if (d.hwpt != 0 && hwpt == d.hwpt) d.devices.push_back(att);
      for (const auto& [id, access] : access_attachments_)
        if (id == ioas.id) ioas.access_ids.push_back(access);
    }
  }

  Context& ctx_;
  ContextSnapshot out_;
  std::map<const Pages*, std::uint32_t> pages_ids_;
  std::map<const DmaBuf*, std::uint32_t> dmabuf_ids_;
  std::vector<RefPtr<Mm>> mms_;
  std::vector<std::pair<std::uint32_t, DeviceAttachment>> device_attachments_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> access_attachments_;  // (IOAS, access)
};

void IoasReader::domains(const std::vector<Domain*>& domains, std::uint64_t iova_alignment, bool large_pages,
                         std::size_t accesses) {
  out_.iova_alignment = iova_alignment;
  out_.large_pages = large_pages;
  out_.accesses = static_cast<std::uint32_t>(accesses);
  for (const Domain* d : domains) {
    DomainSnapshot s;
    s.hwpt = hwpt_of(d);
    s.granule = d->granule();
    s.aperture = d->aperture();
    s.mapped_bytes = d->mapped_bytes();
    s.table_bytes = d->table_bytes();
    out_.domains.push_back(std::move(s));
    domains_.push_back(d);
  }
}

// The caller (IoPagetable::inspect) holds the IOVA lock for reading and the backing's mutex; the analysis
// cannot see either through the Inspector interface, so both are asserted.
void IoasReader::area(const Area& area, Pages* backing) {
  area.iova_lock().assert_shared_held();
  AreaSnapshot a;
  a.iova = area.node.range;
  a.start_byte = area.start_byte();
  a.first_index = area.first_index();
  a.last_index = area.last_index();
  a.readable = (area.prot() & kIommuRead) != 0;
  a.writeable = (area.prot() & kIommuWrite) != 0;
  a.access_pins = area.num_accesses();
  a.locks = area.num_locks();
  a.prevent_access = area.prevent_access;
  bool dmabuf = false, revoked = false;
  if (backing) {
    backing->mutex().assert_held();
    a.pages = builder_.pages_id(*backing);
    const PagesSnapshot& p = builder_.pages(a.pages);
    dmabuf = p.kind == PagesKind::kDmaBuf;
    revoked = p.revoked;
    // Page 0 of the backing starts start_offset bytes before its first mapped byte.
    a.source_addr = p.source_addr - p.start_offset + a.start_byte;
    std::vector<Interval> pinned;
    backing->pin_runs_locked().pinned_in(a.first_index, a.last_index, &pinned);
    for (const Interval& r : pinned) a.pinned_pages += r.last - r.start + 1;
  }
  const std::uint64_t npages = a.last_index - a.first_index + 1;
  if (!area.pages())
    a.state = backing ? AreaState::kBuilding : AreaState::kUnmapping;
  else if (a.prevent_access)
    a.state = AreaState::kUnmapping;
  else if (dmabuf)
    a.state = revoked ? AreaState::kRevoked : AreaState::kDmaBuf;
  else if (a.pinned_pages == 0)
    a.state = AreaState::kMapped;
  else
    a.state = a.pinned_pages == npages ? AreaState::kPinned : AreaState::kPartlyPinned;
  for (const Domain* d : domains_) a.filled.push_back(filled_prefix(*d, a.iova));
  out_.areas.push_back(std::move(a));
}

void IoasReader::reserved(Interval range, const void* owner) {
  ReservedSnapshot r;
  r.iova = range;
  if (owner == nullptr) {
    r.owner = ReservedOwner::kUser;
  } else if (std::find(domains_.begin(), domains_.end(), owner) != domains_.end()) {
    r.owner = ReservedOwner::kDomain;
    r.hwpt = hwpt_of(owner);
  } else {
    r.owner = ReservedOwner::kOther;
  }
  out_.reserved.push_back(r);
}

// The IOVA that backing pages [first, last] of `a` occupy, clipped to the area (Area::iova_of_pages()).
Interval iova_of_pages(const AreaSnapshot& a, std::uint64_t first, std::uint64_t last) {
  const std::uint64_t start =
      first == a.first_index ? a.iova.start : a.iova.start + ((first << kPageShift) - a.start_byte);
  const std::uint64_t end =
      last == a.last_index ? a.iova.last : a.iova.start + (((last + 1) << kPageShift) - a.start_byte) - 1;
  return {start, end};
}

std::vector<IovaRun> iova_runs(const ContextSnapshot& ctx, const IoasSnapshot& ioas,
                               std::vector<PageRun> PagesSnapshot::*runs) {
  std::vector<IovaRun> out;
  for (const AreaSnapshot& a : ioas.areas) {
    const PagesSnapshot* backing = backing_of(ctx, a);
    if (!backing) continue;
    const std::vector<PageRun>& list = backing->*runs;
    // Every record is looked at (they are capped per backing): access records may overlap, so the list is
    // not ordered by its last index.
    for (const PageRun& r : list) {
      if (r.last < a.first_index || r.first > a.last_index) continue;
      const std::uint64_t first = std::max(r.first, a.first_index);
      const std::uint64_t last = std::min(r.last, a.last_index);
      out.push_back({iova_of_pages(a, first, last), a.pages, r.users});
    }
  }
  return out;
}

}  // namespace

const PagesSnapshot* backing_of(const ContextSnapshot& ctx, const AreaSnapshot& area) {
  return area.pages != 0 && area.pages <= ctx.pages.size() ? &ctx.pages[area.pages - 1] : nullptr;
}

std::vector<IovaRun> pinned_iova_runs(const ContextSnapshot& ctx, const IoasSnapshot& ioas) {
  return iova_runs(ctx, ioas, &PagesSnapshot::pin_runs);
}

std::vector<IovaRun> access_iova_runs(const ContextSnapshot& ctx, const IoasSnapshot& ioas) {
  return iova_runs(ctx, ioas, &PagesSnapshot::access_records);
}

Result<ContextSnapshot> snapshot_context(Context& ctx, std::uint64_t number) {
  const FaultPause pause;
  try {
    return Builder(ctx, number).build();
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
}

std::vector<Leak> leaks(const Dump& dump) {
  std::vector<Leak> out;
  if (dump.reason != Reason::kExit) return out;
  for (const ContextSnapshot& ctx : dump.contexts) {
    Leak l;
    l.context = ctx.number;
    l.objects = ctx.objects.size();
    for (const ObjectSnapshot& o : ctx.objects) {
      if (!l.object_summary.empty()) l.object_summary += ", ";
      l.object_summary += std::string(object_type_name(o.type)) + " " + std::to_string(o.id);
    }
    l.pinned_pages = ctx.pinned_pages;
    l.charged_pages = ctx.charged_pages;
    if (l.objects != 0 || l.pinned_pages != 0 || l.charged_pages != 0) out.push_back(std::move(l));
  }
  return out;
}

std::string leak_line(const Leak& leak) {
  std::string s = "LEAK: context " + std::to_string(leak.context) + " still holds " +
                  std::to_string(leak.objects) + (leak.objects == 1 ? " object" : " objects");
  if (!leak.object_summary.empty()) s += " (" + leak.object_summary + ")";
  s += ", " + std::to_string(leak.pinned_pages) + " pinned pages, " + std::to_string(leak.charged_pages) +
       " pages charged";
  return s;
}

}  // namespace uiommufd::dump
