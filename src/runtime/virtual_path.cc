#include "virtual_path.h"

#include <cstring>
#include <vector>

namespace uiommufd::runtime {
namespace {

// A /proc id component: decimal digits without a leading zero, as proc's own lookup accepts.
int parse_id(std::string_view s) {
  if (s.empty() || s.size() > 9 || s[0] == '0') return -1;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = i;
    while (j < path.size() && path[j] != '/') ++j;
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j;
  }
  return parts;
}

bool is_fail_entry(std::string_view name) { return name.substr(0, 4) == "fail"; }

}  // namespace

std::string normalize_path(std::string_view base, std::string_view rel) {
  std::vector<std::string_view> out;
  auto push = [&](std::string_view p) {
    for (std::string_view c : split(p)) {
      if (c == ".") continue;
      if (c == "..") {
        if (!out.empty()) out.pop_back();
        continue;
      }
      out.push_back(c);
    }
  };
  if (rel.empty() || rel[0] != '/') push(base);
  push(rel);
  std::string s;
  for (std::string_view c : out) {
    s += '/';
    s += c;
  }
  return s.empty() ? "/" : s;
}

bool may_be_virtual_absolute(const char* path) {
  if (path == nullptr || path[0] != '/') return false;
  while (path[1] == '/') ++path;
  return std::strncmp(path, "/dev/", 5) == 0 || std::strncmp(path, "/proc/", 6) == 0 ||
         std::strncmp(path, "/sys/", 5) == 0;
}

bool may_name_virtual_relative(std::string_view rel) {
  while (!rel.empty() && rel.back() == '/') rel.remove_suffix(1);
  const size_t slash = rel.rfind('/');
  const std::string_view last = slash == std::string_view::npos ? rel : rel.substr(slash + 1);
  return last == "fail-nth" || last == "iommu";
}

VirtualPath classify_path(std::string_view path, int pid, int self_tid) {
  const std::vector<std::string_view> p = split(path);
  const size_t n = p.size();
  if (n == 2 && p[0] == "dev" && p[1] == "iommu") return {VirtualKind::kIommufd, 0};

  if (n >= 3 && p[0] == "proc" && p[n - 1] == "fail-nth") {
    // The process part: "self", "thread-self", or our own pid.
    int owner = -1;
    if (p[1] == "self") owner = pid;
    if (p[1] != "thread-self" && p[1] != "self") owner = parse_id(p[1]);
    if (p[1] == "thread-self") return n == 3 ? VirtualPath{VirtualKind::kFailNth, self_tid} : VirtualPath{};
    if (owner != pid) return {};
    if (n == 3) return {VirtualKind::kFailNth, pid};  // the thread-group leader's counter
    if (n == 5 && p[2] == "task") {
      const int tid = parse_id(p[3]);
      if (tid > 0) return {VirtualKind::kFailNth, tid};
    }
    return {};
  }

  if (n >= 3 && p[0] == "sys" && p[1] == "kernel" && p[2] == "debug") {
    if (n == 3) return {VirtualKind::kDebugfsDir, 0};
    if (!is_fail_entry(p[3])) return {};
    if (n == 4) return {VirtualKind::kDebugfsDir, 0};
    if (n == 5) return {VirtualKind::kDebugfsKnob, 0};
  }
  return {};
}

}  // namespace uiommufd::runtime
