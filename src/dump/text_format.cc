// The text format of a dump (docs/dump.md#text).
#include <cinttypes>
#include <cmath>
#include <cstdio>

#include <sys/sysmacros.h>

#include "text_table.h"

#include "uiommufd/dump/format.h"

namespace uiommufd::dump {

std::string hex(std::uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, value);
  return buf;
}

std::string human_size(long double bytes) {
  static const char* const kUnits[] = {"", "K", "M", "G", "T", "P", "E"};
  if (bytes == 0) return "0";
  char buf[40];
  // The largest unit in which the size is a whole number below 2^20; else one decimal in the largest
  // unit, marked as rounded.
  for (int unit = 6; unit >= 0; --unit) {
    const long double v = std::ldexp(bytes, -10 * unit);
    if (v >= 1 && v < 1048576.0L && v == std::floor(v)) {
      std::snprintf(buf, sizeof buf, "%" PRIu64 "%s", static_cast<std::uint64_t>(v), kUnits[unit]);
      return buf;
    }
  }
  int unit = 0;
  while (bytes >= 1024 && unit < 6) {
    bytes /= 1024;
    ++unit;
  }
  std::snprintf(buf, sizeof buf, "~%.1Lf%s", bytes, kUnits[unit]);
  return buf;
}

std::string plural(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

namespace {

std::string range(Interval r) { return hex(r.start) + "-" + hex(r.last); }
std::string size(Interval r) { return human_size(static_cast<long double>(r.last - r.start) + 1.0L); }
std::string on_off(bool on) { return on ? "on" : "off"; }

std::string domain_name(const DomainSnapshot& d, std::size_t index) {
  return d.hwpt ? "hwpt " + std::to_string(d.hwpt) : "domain #" + std::to_string(index);
}

std::string links(const ObjectSnapshot& o) {
  std::string s;
  for (const Link& l : o.links) {
    if (!s.empty()) s += ", ";
    s += l.role + " " + std::to_string(l.id);
    if (l.has_pasid) s += " (pasid " + std::to_string(l.pasid) + ")";
  }
  return s;
}

std::string source(const PagesSnapshot& p) {
  switch (p.kind) {
    case PagesKind::kUser:
      return "pid " + std::to_string(p.pid) + " va " + hex(p.source_addr);
    case PagesKind::kFile:
      return "file " + std::to_string(major(p.file_dev)) + ":" + std::to_string(minor(p.file_dev)) + " ino " +
             std::to_string(p.file_ino) + " off " + hex(p.source_addr);
    case PagesKind::kDmaBuf:
      return "dmabuf " + std::to_string(p.dmabuf) + " off " + hex(p.source_addr) +
             (p.revoked ? " revoked" : "");
  }
  return "?";
}

// Where an area's first byte comes from, short: the backing's kind and address of that byte.
std::string area_source(const PagesSnapshot* p, const AreaSnapshot& a) {
  if (!p) return "-";
  switch (p->kind) {
    case PagesKind::kUser:
      return "va " + hex(a.source_addr);
    case PagesKind::kFile:
      return "file off " + hex(a.source_addr);
    case PagesKind::kDmaBuf:
      return "dmabuf " + std::to_string(p->dmabuf) + " off " + hex(a.source_addr);
  }
  return "?";
}

void ioas_text(const ContextSnapshot& ctx, const IoasSnapshot& ioas, std::string& out) {
  out += "  ioas " + std::to_string(ioas.id) + ": alignment " + hex(ioas.iova_alignment) + ", large pages " +
         on_off(ioas.large_pages) + ", lock_pinned " + on_off(ioas.lock_pinned) + ", " +
         plural(ioas.domains.size(), "domain", "domains") + ", " +
         plural(ioas.accesses, "access", "accesses");
  if (!ioas.access_ids.empty()) {
    out += " (";
    for (std::size_t i = 0; i < ioas.access_ids.size(); ++i)
      out += (i ? ", " : "") + std::to_string(ioas.access_ids[i]);
    out += ")";
  }
  out += "\n";

  if (ioas.areas.empty()) {
    out += "    areas: none\n";
  } else {
    TextTable t({"IOVA", ">SIZE", "PERM", "STATE", ">PINNED", ">ACCESS", ">PAGES", "SOURCE", "DOMAINS"});
    for (const AreaSnapshot& a : ioas.areas) {
      std::string doms;
      for (std::size_t i = 0; i < a.filled.size(); ++i) {
        if (!doms.empty()) doms += ", ";
        const std::uint64_t len = a.iova.last - a.iova.start + 1;
        doms += domain_name(ioas.domains[i], i) + " " +
                (a.filled[i] == len ? std::string("full")
                 : a.filled[i] == 0 ? std::string("none")
                                    : human_size(a.filled[i]) + "/" + human_size(len));
      }
      const std::string perm = std::string(a.readable ? "r" : "-") + (a.writeable ? "w" : "-");
      const std::string access =
          std::to_string(a.access_pins) + (a.locks ? " (" + std::to_string(a.locks) + " locked)" : "");
      t.row({range(a.iova), size(a.iova), perm, area_state_name(a.state),
             std::to_string(a.pinned_pages) + "/" + std::to_string(a.last_index - a.first_index + 1), access,
             a.pages ? std::to_string(a.pages) : "-", area_source(backing_of(ctx, a), a), doms});
    }
    out += "    areas:\n" + t.render("      ");
  }

  if (ioas.reserved.empty()) {
    out += "    reserved: none\n";
  } else {
    TextTable t({"IOVA", ">SIZE", "OWNER"});
    for (const ReservedSnapshot& r : ioas.reserved) {
      std::string owner = reserved_owner_name(r.owner);
      if (r.owner == ReservedOwner::kDomain && r.hwpt) owner += " (hwpt " + std::to_string(r.hwpt) + ")";
      t.row({range(r.iova), size(r.iova), owner});
    }
    out += "    reserved:\n" + t.render("      ");
  }

  if (ioas.allowed.empty()) {
    out += "    allowed: all\n";
  } else {
    TextTable t({"IOVA", ">SIZE"});
    for (const Interval& r : ioas.allowed) t.row({range(r), size(r)});
    out += "    allowed:\n" + t.render("      ");
  }

  if (ioas.domains.empty()) {
    out += "    domains: none\n";
  } else {
    TextTable t({"DOMAIN", "FLAGS", ">GRANULE", "APERTURE", ">MAPPED", ">TABLE", "DEVICES"});
    for (std::size_t i = 0; i < ioas.domains.size(); ++i) {
      const DomainSnapshot& d = ioas.domains[i];
      std::string flags;
      for (auto [on, name] : {std::pair{d.auto_domain, "auto"}, std::pair{d.nest_parent, "nest_parent"},
                              std::pair{d.dirty_tracking, "dirty"}})
        if (on) flags += (flags.empty() ? "" : ",") + std::string(name);
      std::string devs;
      for (const DeviceAttachment& a : d.devices) {
        if (!devs.empty()) devs += ", ";
        devs += std::to_string(a.device) + (a.pasid ? " (pasid " + std::to_string(a.pasid) + ")" : "");
      }
      t.row({domain_name(d, i), flags.empty() ? "-" : flags, hex(d.granule), range(d.aperture),
             human_size(d.mapped_bytes), human_size(d.table_bytes), devs.empty() ? "-" : devs});
    }
    out += "    domains:\n" + t.render("      ");
  }

  for (auto [title, runs] : {std::pair{"pinned runs", pinned_iova_runs(ctx, ioas)},
                             std::pair{"access pins", access_iova_runs(ctx, ioas)}}) {
    if (runs.empty()) {
      out += std::string("    ") + title + ": none\n";
      continue;
    }
    TextTable t({"IOVA", ">SIZE", ">PAGES", ">USERS"});
    for (const IovaRun& r : runs)
      t.row({range(r.iova), size(r.iova), std::to_string(r.pages), std::to_string(r.users)});
    out += std::string("    ") + title + ":\n" + t.render("      ");
  }
}

void context_text(const ContextSnapshot& ctx, std::string& out) {
  out += "context " + std::to_string(ctx.number) + ": " + plural(ctx.objects.size(), "object", "objects") +
         ", new pages charged to " + account_mode_name(ctx.account_mode) + ", " +
         plural(ctx.pinned_pages, "page", "pages") + " pinned, " + std::to_string(ctx.charged_pages) +
         " charged";
  if (ctx.vfio_ioas) out += ", vfio ioas " + std::to_string(ctx.vfio_ioas);
  out += "\n";
  if (ctx.objects.empty()) {
    out += "  objects: none\n";
  } else {
    TextTable t({">ID", "TYPE", ">USERS", "LINKS"});
    for (const ObjectSnapshot& o : ctx.objects)
      t.row({std::to_string(o.id), object_type_name(o.type), std::to_string(o.users), links(o)});
    out += "  objects:\n" + t.render("    ");
  }
  for (const IoasSnapshot& ioas : ctx.ioases) ioas_text(ctx, ioas, out);
  if (!ctx.pages.empty()) {
    TextTable t({">ID", "KIND", "SOURCE", ">SIZE", ">NPAGES", ">PINNED", "CHARGED TO", "FLAGS"});
    for (const PagesSnapshot& p : ctx.pages) {
      std::string charged = account_mode_name(p.account_mode);
      if (p.account_mode != AccountMode::kNone && p.account_pid)
        charged += " pid " + std::to_string(p.account_pid);
      std::string flags = p.writable ? "rw" : "ro";
      if (p.lock_pinned) flags += ",mlock";
      if (p.pin_runs_omitted) flags += "," + std::to_string(p.pin_runs_omitted) + " runs omitted";
      t.row({std::to_string(p.id), pages_kind_name(p.kind), source(p), human_size(p.length),
             std::to_string(p.npages), std::to_string(p.npinned), charged, flags});
    }
    out += "  pages:\n" + t.render("    ");
  }
  if (!ctx.mms.empty()) {
    TextTable t({">PID", ">UID", ">USER LOCKED", ">MM LOCKED", ">PINNED_VM"});
    for (const MmCounters& m : ctx.mms)
      t.row({std::to_string(m.pid), std::to_string(m.uid), std::to_string(m.user_locked),
             std::to_string(m.mm_locked), std::to_string(m.pinned_vm)});
    out += "  accounting (pages, every context of the engine):\n" + t.render("    ");
  }
}

}  // namespace

std::string format_text(const Dump& dump) {
  std::string out = "uiommufd dump " + std::to_string(dump.sequence) + " (pid " + std::to_string(dump.pid) +
                    ", " + reason_name(dump.reason) + "): " +
                    (dump.contexts.empty() ? std::string("no context")
                                           : plural(dump.contexts.size(), "context", "contexts")) +
                    ", " + std::to_string(dump.process_pinned_pages) + " pages pinned in the process\n";
  for (const ContextSnapshot& ctx : dump.contexts) context_text(ctx, out);
  for (const Leak& l : leaks(dump)) out += leak_line(l) + "\n";
  return out;
}

}  // namespace uiommufd::dump
