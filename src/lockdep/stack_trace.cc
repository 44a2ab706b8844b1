#include "stack_trace.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lockdep {

std::vector<void*> capture_stack_trace() {
  void* frames[kMaxStackDepth + 8];
  int n = backtrace(frames, static_cast<int>(sizeof frames / sizeof frames[0]));
  // Drop this function's own frame.
  return std::vector<void*>(frames + (n > 0 ? 1 : 0), frames + n);
}

namespace {

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : name;
  std::free(d);
  return out;
}

const char* basename_of(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

// The symbol of a frame, or empty when dladdr knows none.
std::string symbol_name(const void* address) {
  Dl_info info{};
  if (!dladdr(address, &info) || !info.dli_sname) return {};
  return demangle(info.dli_sname);
}

bool is_validator_frame(const void* address) {
  std::string name = symbol_name(address);
  return name.rfind("uiommufd::lockdep::", 0) == 0 || name.rfind("backtrace", 0) == 0;
}

}  // namespace

std::string symbolize(const void* address) {
  Dl_info info{};
  char buf[64];
  if (!dladdr(address, &info)) {
    std::snprintf(buf, sizeof buf, "%p", address);
    return buf;
  }
  const char* object = info.dli_fname ? basename_of(info.dli_fname) : "?";
  if (info.dli_sname) {
    std::snprintf(buf, sizeof buf, "+0x%zx",
                  static_cast<std::size_t>(static_cast<const char*>(address) -
                                           static_cast<const char*>(info.dli_saddr)));
    return demangle(info.dli_sname) + buf + " (" + object + ")";
  }
  std::snprintf(buf, sizeof buf, "%p (%s+0x%zx)", address, object,
                static_cast<std::size_t>(static_cast<const char*>(address) -
                                         static_cast<const char*>(info.dli_fbase)));
  return buf;
}

void format_stack_trace(std::string& out, const void* const* frames, std::size_t count) {
  std::size_t first = 0;
  while (first + 1 < count && is_validator_frame(frames[first])) ++first;
  std::size_t printed = 0;
  for (std::size_t i = first; i < count && printed < kMaxStackDepth; ++i, ++printed) {
    out += "       ";
    out += symbolize(frames[i]);
    out += '\n';
  }
}

bool StackTraceStore::save(const std::vector<void*>& frames, StackTraceRef* ref) {
  if (frames_.size() + frames.size() > kMaxStackTraceEntries) return false;
  ref->offset = static_cast<std::uint32_t>(frames_.size());
  ref->length = static_cast<std::uint32_t>(frames.size());
  frames_.insert(frames_.end(), frames.begin(), frames.end());
  return true;
}

void StackTraceStore::format(std::string& out, StackTraceRef ref) const {
  format_stack_trace(out, frames_.data() + ref.offset, ref.length);
}

}  // namespace uiommufd::lockdep
