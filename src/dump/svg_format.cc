// The SVG picture of one IOAS (docs/dump.md#svg): rows over a piecewise IOVA axis (dump/iova_axis.h), and a
// legend. Every shape has a tooltip with its exact range.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "uiommufd/dump/format.h"
#include "uiommufd/dump/iova_axis.h"
#include "uiommufd/dump/svg_writer.h"

namespace uiommufd::dump {

namespace {

constexpr double kWidth = 1200;
constexpr double kLabelWidth = 150;
constexpr double kPlotX = kLabelWidth + 10;
constexpr double kPlotWidth = kWidth - kPlotX - 70;  // room on the right for the last tick's label
constexpr double kRowsTop = 56;
constexpr double kRowHeight = 20;
constexpr double kRowGap = 8;
constexpr double kAxisLabelsHeight = 130;
constexpr double kLegendRowHeight = 18;
constexpr double kTickLabelSpacing = 12;  // px between tick labels (rotated by 60 degrees)

const char* area_color(AreaState s) {
  switch (s) {
    case AreaState::kBuilding:
      return "#fdd49e";
    case AreaState::kUnmapping:
      return "#fc8d59";
    case AreaState::kMapped:
      return "#c6dbef";
    case AreaState::kPartlyPinned:
      return "#6baed6";
    case AreaState::kPinned:
      return "#2171b5";
    case AreaState::kDmaBuf:
      return "#bcbddc";
    case AreaState::kRevoked:
      return "#e0e0e0";
  }
  return "#fff";
}

const char* reserved_fill(ReservedOwner o) {
  switch (o) {
    case ReservedOwner::kUser:
      return "#8c8c8c";
    case ReservedOwner::kDomain:
      return "url(#reserved-domain)";
    case ReservedOwner::kOther:
      return "#525252";
  }
  return "#fff";
}

const char* pin_color(std::uint32_t users) {
  return users <= 1 ? "#fdae6b" : users == 2 ? "#f16913" : "#a63603";
}

constexpr const char* kAllowedFill = "#c7e9c0";
constexpr const char* kAccessFill = "#9e9ac8";
constexpr const char* kFilledFill = "#74c476";
constexpr const char* kMissingFill = "#fcbba1";

std::string describe(Interval r) {
  return "[" + hex(r.start) + ", " + hex(r.last) + "] " +
         human_size(static_cast<long double>(r.last - r.start) + 1.0L);
}

std::string domain_label(const DomainSnapshot& d, std::size_t index) {
  return d.hwpt ? "hwpt " + std::to_string(d.hwpt) : "domain #" + std::to_string(index);
}

class Picture {
 public:
  Picture(const ContextSnapshot& ctx, const IoasSnapshot& ioas, pid_t pid, std::uint64_t sequence)
      : ctx_(ctx),
        ioas_(ioas),
        pid_(pid),
        sequence_(sequence),
        pinned_(pinned_iova_runs(ctx, ioas)),
        access_(access_iova_runs(ctx, ioas)),
        axis_(ranges(), kPlotX, kPlotWidth) {}

  std::string draw() {
    const std::size_t rows = 5 + ioas_.domains.size();
    const double rows_bottom = kRowsTop + static_cast<double>(rows) * (kRowHeight + kRowGap);
    const std::vector<std::pair<std::string, std::string>> legend = legend_items();
    const int per_line = 4;
    const double legend_top = rows_bottom + kAxisLabelsHeight;
    const double height =
        legend_top + kLegendRowHeight * static_cast<double>((legend.size() + per_line - 1) / per_line) + 10;
    SvgWriter svg(kWidth, height);
    svg.stripes("reserved-domain", "#9e9e9e", "#e8e8e8", 6);
    svg.stripes("gap", "#eeeeee", "#ffffff", 8);
    svg.rect(0, 0, kWidth, height, {.fill = "#ffffff"});
    title(svg);
    gaps(svg, rows_bottom);
    double y = kRowsTop;
    row(svg, "allowed", "allowed", y, [&](double ry) { allowed(svg, ry); });
    row(svg, "reserved", "reserved", y, [&](double ry) { reserved(svg, ry); });
    row(svg, "areas", "areas", y, [&](double ry) { areas(svg, ry); });
    row(svg, "pinned", "pinned runs", y, [&](double ry) { runs(svg, ry, pinned_, true); });
    row(svg, "access", "access pins", y, [&](double ry) { runs(svg, ry, access_, false); });
    for (std::size_t i = 0; i < ioas_.domains.size(); ++i)
      row(svg, "domain", domain_label(ioas_.domains[i], i), y, [&](double ry) { domain(svg, ry, i); });
    axis(svg, rows_bottom);
    draw_legend(svg, legend, legend_top, per_line);
    return svg.finish();
  }

 private:
  // Every range drawn, for the axis's boundaries.
  std::vector<Interval> ranges() const {
    std::vector<Interval> r;
    for (const Interval& a : ioas_.allowed) r.push_back(a);
    for (const ReservedSnapshot& a : ioas_.reserved) r.push_back(a.iova);
    for (const AreaSnapshot& a : ioas_.areas) {
      r.push_back(a.iova);
      for (std::uint64_t f : a.filled)
        if (f != 0 && f < a.iova.last - a.iova.start + 1) r.push_back({a.iova.start, a.iova.start + f - 1});
    }
    for (const IovaRun& p : pinned_) r.push_back(p.iova);
    for (const IovaRun& p : access_) r.push_back(p.iova);
    return r;
  }

  void title(SvgWriter& svg) const {
    svg.text(10, 22,
             "pid " + std::to_string(pid_) + ", dump " + std::to_string(sequence_) + ", context " +
                 std::to_string(ctx_.number) + ", IOAS " + std::to_string(ioas_.id),
             {.size = 15, .bold = true});
    std::size_t pinned = 0;
    for (const AreaSnapshot& a : ioas_.areas) pinned += a.pinned_pages;
    svg.text(10, 42,
             plural(ioas_.areas.size(), "area", "areas") + ", " + plural(pinned, "page", "pages") +
                 " pinned, " + plural(ioas_.reserved.size(), "reserved range", "reserved ranges") + ", " +
                 plural(ioas_.domains.size(), "domain", "domains") + ", " +
                 plural(ioas_.accesses, "access", "accesses") + "; alignment " + hex(ioas_.iova_alignment) +
                 "; axis: piecewise, width grows with log2(size), gaps cut",
             {.size = 11, .fill = "#444"});
  }

  template <typename Fn>
  void row(SvgWriter& svg, const char* css, const std::string& label, double& y, Fn&& body) {
    svg.begin_group(std::string("row ") + css);
    svg.text(10, y + kRowHeight - 6, label, {.size = 12});
    svg.line(kPlotX, y + kRowHeight, kPlotX + kPlotWidth, y + kRowHeight, {.stroke = "#e0e0e0"});
    svg.end_group();
    svg.begin_group(css);
    body(y);
    svg.end_group();
    y += kRowHeight + kRowGap;
  }

  void shape(SvgWriter& svg, Interval r, double y, const SvgWriter::Style& style, const std::string& title) {
    const double x0 = axis_.left(r);
    const double w = std::max(axis_.right(r) - x0, 1.0);
    svg.rect(x0, y, w, kRowHeight, style, title);
  }

  void gaps(SvgWriter& svg, double rows_bottom) const {
    svg.begin_group("gaps");
    for (const IovaAxis::Segment& s : axis_.segments())
      if (s.gap)
        svg.rect(s.x0, kRowsTop - 4, s.x1 - s.x0, rows_bottom - kRowsTop, {.fill = "url(#gap)"},
                 "gap " + describe(s.iova) + " (nothing here; drawn compressed)");
    svg.end_group();
  }

  void allowed(SvgWriter& svg, double y) {
    if (ioas_.allowed.empty())
      svg.text(kPlotX + 4, y + kRowHeight - 6, "no allowed list: every IOVA outside reserved ranges",
               {.size = 10, .fill = "#777"});
    for (const Interval& r : ioas_.allowed)
      shape(svg, r, y, {.fill = kAllowedFill, .stroke = "#41ab5d"}, "allowed " + describe(r));
  }

  void reserved(SvgWriter& svg, double y) {
    for (const ReservedSnapshot& r : ioas_.reserved) {
      std::string owner = reserved_owner_name(r.owner);
      if (r.hwpt) owner += " (hwpt " + std::to_string(r.hwpt) + " aperture)";
      shape(svg, r.iova, y, {.fill = reserved_fill(r.owner), .stroke = "#555", .stroke_width = 0.5},
            "reserved " + describe(r.iova) + ", owner " + owner);
    }
  }

  void areas(SvgWriter& svg, double y) {
    for (const AreaSnapshot& a : ioas_.areas) {
      std::string t = "area " + describe(a.iova) + ", " + (a.readable ? "r" : "-") +
                      (a.writeable ? "w" : "-") + ", " + area_state_name(a.state) + ", " +
                      std::to_string(a.pinned_pages) + "/" +
                      std::to_string(a.last_index - a.first_index + 1) + " pages pinned";
      if (const PagesSnapshot* p = backing_of(ctx_, a)) {
        t += ", pages " + std::to_string(a.pages) + " [" + std::to_string(a.first_index) + ", " +
             std::to_string(a.last_index) + "], " + pages_kind_name(p->kind) + " " + hex(a.source_addr);
      }
      if (a.access_pins) t += ", " + std::to_string(a.access_pins) + " access pins";
      const bool revoked = a.state == AreaState::kRevoked;
      shape(
          svg, a.iova, y,
          {.fill = area_color(a.state), .stroke = "#333", .stroke_width = 0.75, .dash = revoked ? "3 2" : ""},
          t);
    }
  }

  void runs(SvgWriter& svg, double y, const std::vector<IovaRun>& list, bool pins) {
    for (const IovaRun& r : list) {
      const std::string t = std::string(pins ? "pinned " : "access pin ") + describe(r.iova) + ", pages " +
                            std::to_string(r.pages) + ", " + std::to_string(r.users) + " users";
      shape(svg, r.iova, y,
            pins ? SvgWriter::Style{.fill = pin_color(r.users)}
                 : SvgWriter::Style{.fill = kAccessFill,
                                    .stroke = "#54278f",
                                    .stroke_width = 0.5,
                                    .opacity = 0.7},
            t);
    }
  }

  void domain(SvgWriter& svg, double y, std::size_t index) {
    for (const AreaSnapshot& a : ioas_.areas) {
      const std::uint64_t len = a.iova.last - a.iova.start + 1;
      const std::uint64_t filled = index < a.filled.size() ? std::min(a.filled[index], len) : 0;
      if (filled > 0) {
        const Interval f{a.iova.start, a.iova.start + filled - 1};
        shape(svg, f, y, {.fill = kFilledFill}, "filled " + describe(f));
      }
      if (filled < len) {
        const Interval m{a.iova.start + filled, a.iova.last};
        shape(svg, m, y, {.fill = kMissingFill}, "not filled " + describe(m));
      }
    }
  }

  void axis(SvgWriter& svg, double rows_bottom) const {
    svg.begin_group("axis");
    const double y = rows_bottom + 4;
    svg.line(kPlotX, y, kPlotX + kPlotWidth, y, {.stroke = "#000"});
    double last_label = -1e9;
    const auto& segs = axis_.segments();
    for (std::size_t i = 0; i <= segs.size(); ++i) {
      const bool end = i == segs.size();
      const double x = end ? segs.back().x1 : segs[i].x0;
      svg.line(x, y, x, y + 5, {.stroke = "#000"});
      if (x - last_label >= kTickLabelSpacing || end) {
        // The end of the space is 2^64, one past U64_MAX: labelled by its last byte.
        const std::string label = end ? hex(segs.back().iova.last) : hex(segs[i].iova.start);
        svg.text(x - 3, y + 10, label, {.size = 9, .monospace = true, .rotate = 60});
        last_label = x;
      }
      if (!end && segs[i].gap) {
        const double mid = (segs[i].x0 + segs[i].x1) / 2;
        for (double dx : {-3.0, 2.0})
          svg.line(mid + dx - 2, y + 4, mid + dx + 2, y - 4, {.stroke = "#000", .stroke_width = 1.5});
      }
    }
    svg.end_group();
  }

  std::vector<std::pair<std::string, std::string>> legend_items() const {
    std::vector<std::pair<std::string, std::string>> l;
    for (AreaState s : {AreaState::kMapped, AreaState::kPartlyPinned, AreaState::kPinned,
                        AreaState::kBuilding, AreaState::kUnmapping, AreaState::kDmaBuf, AreaState::kRevoked})
      l.push_back({area_color(s), std::string("area: ") + area_state_name(s)});
    for (ReservedOwner o : {ReservedOwner::kUser, ReservedOwner::kDomain, ReservedOwner::kOther})
      l.push_back({reserved_fill(o), std::string("reserved: ") + reserved_owner_name(o)});
    l.push_back({kAllowedFill, "allowed"});
    l.push_back({pin_color(1), "pinned run, 1 user"});
    l.push_back({pin_color(2), "pinned run, 2 users"});
    l.push_back({pin_color(3), "pinned run, 3+ users"});
    l.push_back({kAccessFill, "access pin record"});
    l.push_back({kFilledFill, "domain: filled"});
    l.push_back({kMissingFill, "domain: not filled"});
    l.push_back({"url(#gap)", "gap (compressed)"});
    return l;
  }

  static void draw_legend(SvgWriter& svg, const std::vector<std::pair<std::string, std::string>>& items,
                          double top, int per_line) {
    svg.begin_group("legend");
    const double column = (kWidth - 20) / per_line;
    for (std::size_t i = 0; i < items.size(); ++i) {
      const double x = 10 + column * static_cast<double>(i % per_line);
      const double y = top + kLegendRowHeight * static_cast<double>(i / per_line);
      svg.rect(x, y, 16, 11, {.fill = items[i].first, .stroke = "#333", .stroke_width = 0.5});
      svg.text(x + 22, y + 10, items[i].second, {.size = 11});
    }
    svg.end_group();
  }

  const ContextSnapshot& ctx_;
  const IoasSnapshot& ioas_;
  const pid_t pid_;
  const std::uint64_t sequence_;
  const std::vector<IovaRun> pinned_;
  const std::vector<IovaRun> access_;
  const IovaAxis axis_;
};

}  // namespace

std::string format_svg(const ContextSnapshot& ctx, const IoasSnapshot& ioas, pid_t pid,
                       std::uint64_t sequence) {
  return Picture(ctx, ioas, pid, sequence).draw();
}

}  // namespace uiommufd::dump
