// The JSON format of a dump (docs/dump.md#json has the schema). Addresses are hex strings, because IOVAs
// use all 64 bits and many JSON readers keep numbers as doubles; counts and byte sizes are numbers.
#include "uiommufd/dump/format.h"
#include "uiommufd/dump/json_writer.h"

namespace uiommufd::dump {

namespace {

// Bumped when a field changes meaning or goes; new fields may be added without bumping it.
constexpr std::uint64_t kSchemaVersion = 1;

void range_fields(JsonWriter& j, Interval r) {
  j.field("start", hex(r.start));
  j.field("last", hex(r.last));
}

void runs(JsonWriter& j, const char* name, const std::vector<IovaRun>& list) {
  j.key(name);
  j.begin_array();
  for (const IovaRun& r : list) {
    j.begin_object();
    range_fields(j, r.iova);
    j.field_number("pages", r.pages);
    j.field_number("users", r.users);
    j.end_object();
  }
  j.end_array();
}

void page_runs(JsonWriter& j, const char* name, const std::vector<PageRun>& list) {
  j.key(name);
  j.begin_array();
  for (const PageRun& r : list) {
    j.begin_object();
    j.field_number("first", r.first);
    j.field_number("last", r.last);
    j.field_number("users", r.users);
    j.end_object();
  }
  j.end_array();
}

void ioas_json(JsonWriter& j, const ContextSnapshot& ctx, const IoasSnapshot& ioas) {
  j.begin_object();
  j.field_number("id", ioas.id);
  j.field("iova_alignment", hex(ioas.iova_alignment));
  j.field_bool("large_pages", ioas.large_pages);
  j.field_bool("lock_pinned", ioas.lock_pinned);
  j.field_number("accesses", ioas.accesses);
  j.key("access_ids");
  j.begin_array();
  for (std::uint32_t id : ioas.access_ids) j.number(id);
  j.end_array();

  j.key("domains");
  j.begin_array();
  for (const DomainSnapshot& d : ioas.domains) {
    j.begin_object();
    j.field_number("hwpt", d.hwpt);
    j.field_bool("auto_domain", d.auto_domain);
    j.field_bool("nest_parent", d.nest_parent);
    j.field_bool("dirty_tracking", d.dirty_tracking);
    j.field("granule", hex(d.granule));
    j.key("aperture");
    j.begin_object();
    range_fields(j, d.aperture);
    j.end_object();
    j.field_number("mapped_bytes", d.mapped_bytes);
    j.field_number("table_bytes", d.table_bytes);
    j.key("devices");
    j.begin_array();
    for (const DeviceAttachment& a : d.devices) {
      j.begin_object();
      j.field_number("device", a.device);
      j.field_number("pasid", a.pasid);
      j.end_object();
    }
    j.end_array();
    j.end_object();
  }
  j.end_array();

  j.key("areas");
  j.begin_array();
  for (const AreaSnapshot& a : ioas.areas) {
    j.begin_object();
    range_fields(j, a.iova);
    j.field("state", area_state_name(a.state));
    j.field_number("pages", a.pages);
    j.field_number("start_byte", a.start_byte);
    j.field("source_addr", hex(a.source_addr));
    j.field_number("first_index", a.first_index);
    j.field_number("last_index", a.last_index);
    j.field_bool("readable", a.readable);
    j.field_bool("writeable", a.writeable);
    j.field_number("pinned_pages", a.pinned_pages);
    j.field_number("access_pins", a.access_pins);
    j.field_number("locks", a.locks);
    j.field_bool("prevent_access", a.prevent_access);
    j.key("filled");
    j.begin_array();
    for (std::size_t i = 0; i < a.filled.size(); ++i) {
      j.begin_object();
      j.field_number("domain", i);
      j.field_number("bytes", a.filled[i]);
      j.end_object();
    }
    j.end_array();
    j.end_object();
  }
  j.end_array();

  j.key("reserved");
  j.begin_array();
  for (const ReservedSnapshot& r : ioas.reserved) {
    j.begin_object();
    range_fields(j, r.iova);
    j.field("owner", reserved_owner_name(r.owner));
    j.field_number("hwpt", r.hwpt);
    j.end_object();
  }
  j.end_array();

  j.key("allowed");
  j.begin_array();
  for (const Interval& r : ioas.allowed) {
    j.begin_object();
    range_fields(j, r);
    j.end_object();
  }
  j.end_array();

  runs(j, "pinned_runs", pinned_iova_runs(ctx, ioas));
  runs(j, "access_pins", access_iova_runs(ctx, ioas));
  j.end_object();
}

void pages_json(JsonWriter& j, const PagesSnapshot& p) {
  j.begin_object();
  j.field_number("id", p.id);
  j.field("kind", pages_kind_name(p.kind));
  j.field_number("pid", static_cast<std::uint64_t>(p.pid));
  j.field("source_addr", hex(p.source_addr));
  j.field_number("file_dev", p.file_dev);
  j.field_number("file_ino", p.file_ino);
  j.field_number("dmabuf", p.dmabuf);
  j.field_bool("revoked", p.revoked);
  j.field_number("start_offset", p.start_offset);
  j.field_number("length", p.length);
  j.field_number("npages", p.npages);
  j.field_bool("writable", p.writable);
  j.field_bool("lock_pinned", p.lock_pinned);
  j.field("account_mode", account_mode_name(p.account_mode));
  j.field_number("account_pid", static_cast<std::uint64_t>(p.account_pid));
  j.field_number("npinned", p.npinned);
  page_runs(j, "pin_runs", p.pin_runs);
  j.field_number("pin_runs_omitted", p.pin_runs_omitted);
  page_runs(j, "access_records", p.access_records);
  j.field_number("access_records_omitted", p.access_records_omitted);
  j.end_object();
}

void context_json(JsonWriter& j, const ContextSnapshot& ctx) {
  j.begin_object();
  j.field_number("context", ctx.number);
  j.field("account_mode", account_mode_name(ctx.account_mode));
  j.field_bool("mm_account_mode", ctx.mm_account_mode);
  j.field_number("vfio_ioas", ctx.vfio_ioas);
  j.field_number("pinned_pages", ctx.pinned_pages);
  j.field_number("charged_pages", ctx.charged_pages);
  j.key("objects");
  j.begin_array();
  for (const ObjectSnapshot& o : ctx.objects) {
    j.begin_object();
    j.field_number("id", o.id);
    j.field("type", object_type_name(o.type));
    j.field_number("users", o.users);
    j.key("links");
    j.begin_array();
    for (const Link& l : o.links) {
      j.begin_object();
      j.field("role", l.role);
      j.field_number("id", l.id);
      if (l.has_pasid) j.field_number("pasid", l.pasid);
      j.end_object();
    }
    j.end_array();
    j.end_object();
  }
  j.end_array();
  j.key("ioases");
  j.begin_array();
  for (const IoasSnapshot& ioas : ctx.ioases) ioas_json(j, ctx, ioas);
  j.end_array();
  j.key("pages");
  j.begin_array();
  for (const PagesSnapshot& p : ctx.pages) pages_json(j, p);
  j.end_array();
  j.key("mms");
  j.begin_array();
  for (const MmCounters& m : ctx.mms) {
    j.begin_object();
    j.field_number("pid", static_cast<std::uint64_t>(m.pid));
    j.field_number("uid", m.uid);
    j.field_number("user_locked", m.user_locked);
    j.field_number("mm_locked", m.mm_locked);
    j.field_number("pinned_vm", m.pinned_vm);
    j.end_object();
  }
  j.end_array();
  j.end_object();
}

}  // namespace

std::string format_json(const Dump& dump) {
  JsonWriter j;
  j.begin_object();
  j.field_number("uiommufd_dump", kSchemaVersion);
  j.field_number("pid", static_cast<std::uint64_t>(dump.pid));
  j.field("reason", reason_name(dump.reason));
  j.field_number("sequence", dump.sequence);
  j.field_number("process_pinned_pages", dump.process_pinned_pages);
  j.key("contexts");
  j.begin_array();
  for (const ContextSnapshot& ctx : dump.contexts) context_json(j, ctx);
  j.end_array();
  j.key("leaks");
  j.begin_array();
  for (const Leak& l : leaks(dump)) {
    j.begin_object();
    j.field_number("context", l.context);
    j.field_number("objects", l.objects);
    j.field("object_summary", l.object_summary);
    j.field_number("pinned_pages", l.pinned_pages);
    j.field_number("charged_pages", l.charged_pages);
    j.field("line", leak_line(l));
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return j.str() + "\n";
}

}  // namespace uiommufd::dump
