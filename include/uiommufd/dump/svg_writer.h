// SvgWriter: a standalone SVG 1.1 document of rectangles, lines, polylines and text, written front to
// back. No layout: every coordinate is the caller's, in user units (pixels) from the top left corner.
// Text and attribute values are XML-escaped (& < > " ') and characters XML 1.0 does not allow (control
// characters other than tab, newline and carriage return) become '?', so any string may be passed. A
// `title` becomes the element's <title>, which viewers show as a tooltip.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace uiommufd::dump {

class SvgWriter {
 public:
  SvgWriter(double width, double height);

  struct Style {
    std::string_view fill = "none";
    std::string_view stroke = "none";
    double stroke_width = 1;
    std::string_view dash = {};  // stroke-dasharray, e.g. "4 2"
    double opacity = 1;
  };
  void rect(double x, double y, double w, double h, const Style& style, std::string_view title = {});
  void line(double x1, double y1, double x2, double y2, const Style& style);
  void polyline(const std::vector<std::pair<double, double>>& points, const Style& style);

  enum class Anchor { kStart, kMiddle, kEnd };
  struct TextStyle {
    double size = 11;
    Anchor anchor = Anchor::kStart;
    std::string_view fill = "#000";
    bool bold = false;
    bool monospace = false;
    double rotate = 0;  // degrees, clockwise, about (x, y)
  };
  void text(double x, double y, std::string_view s, const TextStyle& style);

  // A pattern of diagonal stripes (for fills such as "url(#id)"); define before use.
  void stripes(std::string_view id, std::string_view color, std::string_view background, double spacing);

  // A group with a class name (for tests and style sheets); nests.
  void begin_group(std::string_view css_class);
  void end_group();

  // The document, closed. The writer is spent afterwards.
  std::string finish();

  static std::string escape(std::string_view s);
  // A number as SVG wants it: fixed, at most two decimals, no trailing zeros.
  static std::string num(double v);

 private:
  void title_or_close(std::string_view title);

  std::string out_;
  int open_groups_ = 0;
};

}  // namespace uiommufd::dump
