// The formats of a dump (docs/dump.md): an aligned text table for people, JSON for programs (field names
// are stable; addresses are hex strings, counts numbers), and an SVG picture of one IOAS.
#pragma once

#include <string>

#include "uiommufd/dump/snapshot.h"

namespace uiommufd::dump {

// The text table, ending with one LEAK line per leaked context when the dump was made at exit.
std::string format_text(const Dump& dump);
// One JSON document on one line, ending with a newline.
std::string format_json(const Dump& dump);
// A standalone SVG document: the IOVA space of `ioas` on a piecewise axis (dump/iova_axis.h), one row each
// for allowed ranges, reserved ranges, areas, pinned runs, access pin records and every domain, and a
// legend. `pid` and `sequence` go into the title.
std::string format_svg(const ContextSnapshot& ctx, const IoasSnapshot& ioas, pid_t pid,
                       std::uint64_t sequence);

// Byte counts as people read them, in binary units: "4K", "4095M", "16E" (the largest unit giving a whole
// number below 2^20), else rounded and marked: "~16.0E".
std::string human_size(long double bytes);
std::string hex(std::uint64_t value);
// "1 area", "2 areas".
std::string plural(std::uint64_t n, const char* one, const char* many);

}  // namespace uiommufd::dump
