#include "uiommufd/dump/svg_writer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "uiommufd/base/assert.h"

namespace uiommufd::dump {

std::string SvgWriter::escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += (u < 0x20 && c != '\t' && c != '\n' && c != '\r') || u == 0x7f ? '?' : c;
    }
  }
  return out;
}

std::string SvgWriter::num(double v) {
  if (!std::isfinite(v)) v = 0;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s = buf;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s == "-0" ? "0" : s;
}

SvgWriter::SvgWriter(double width, double height) {
  out_ =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" +
      num(width) + "\" height=\"" + num(height) + "\" viewBox=\"0 0 " + num(width) + " " + num(height) +
      "\" font-family=\"sans-serif\">\n";
}

namespace {
std::string style_attrs(const SvgWriter::Style& s) {
  std::string a = " fill=\"" + SvgWriter::escape(s.fill) + "\"";
  if (s.stroke != "none") {
    a += " stroke=\"" + SvgWriter::escape(s.stroke) + "\" stroke-width=\"" + SvgWriter::num(s.stroke_width) +
         "\"";
    if (!s.dash.empty()) a += " stroke-dasharray=\"" + SvgWriter::escape(s.dash) + "\"";
  }
  if (s.opacity < 1) a += " opacity=\"" + SvgWriter::num(s.opacity) + "\"";
  return a;
}
}  // namespace

void SvgWriter::title_or_close(std::string_view title) {
  if (title.empty()) {
    out_ += "/>\n";
    return;
  }
  out_ += "><title>" + escape(title) + "</title></rect>\n";
}

void SvgWriter::rect(double x, double y, double w, double h, const Style& style, std::string_view title) {
  out_ += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(std::max(w, 0.0)) +
          "\" height=\"" + num(std::max(h, 0.0)) + "\"" + style_attrs(style);
  title_or_close(title);
}

void SvgWriter::line(double x1, double y1, double x2, double y2, const Style& style) {
  out_ += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" + num(y2) +
          "\"" + style_attrs(style) + "/>\n";
}

void SvgWriter::polyline(const std::vector<std::pair<double, double>>& points, const Style& style) {
  out_ += "<polyline points=\"";
  for (std::size_t i = 0; i < points.size(); ++i)
    out_ += (i ? " " : "") + num(points[i].first) + "," + num(points[i].second);
  out_ += "\"" + style_attrs(style) + "/>\n";
}

void SvgWriter::text(double x, double y, std::string_view s, const TextStyle& style) {
  out_ += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" font-size=\"" + num(style.size) + "\"";
  if (style.anchor != Anchor::kStart)
    out_ += std::string(" text-anchor=\"") + (style.anchor == Anchor::kMiddle ? "middle" : "end") + "\"";
  if (style.fill != "#000") out_ += " fill=\"" + escape(style.fill) + "\"";
  if (style.bold) out_ += " font-weight=\"bold\"";
  if (style.monospace) out_ += " font-family=\"monospace\"";
  if (style.rotate != 0)
    out_ += " transform=\"rotate(" + num(style.rotate) + " " + num(x) + " " + num(y) + ")\"";
  out_ += ">" + escape(s) + "</text>\n";
}

void SvgWriter::stripes(std::string_view id, std::string_view color, std::string_view background,
                        double spacing) {
  const std::string sp = num(spacing);
  out_ += "<defs><pattern id=\"" + escape(id) + "\" patternUnits=\"userSpaceOnUse\" width=\"" + sp +
          "\" height=\"" + sp + "\" patternTransform=\"rotate(45)\"><rect width=\"" + sp + "\" height=\"" +
          sp + "\" fill=\"" + escape(background) + "\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"" + sp +
          "\" stroke=\"" + escape(color) + "\" stroke-width=\"" + num(spacing / 2) +
          "\"/></pattern></defs>\n";
}

void SvgWriter::begin_group(std::string_view css_class) {
  out_ += "<g class=\"" + escape(css_class) + "\">\n";
  ++open_groups_;
}

void SvgWriter::end_group() {
  UIOMMUFD_DCHECK(open_groups_ > 0);
  --open_groups_;
  out_ += "</g>\n";
}

std::string SvgWriter::finish() {
  while (open_groups_ > 0) end_group();
  out_ += "</svg>\n";
  return std::move(out_);
}

}  // namespace uiommufd::dump
