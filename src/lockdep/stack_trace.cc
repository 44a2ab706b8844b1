#include "stack_trace.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lockdep {

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

// The validator's own entry points and internals. User code in namespace uiommufd::lockdep (tests, for
// one) is not among them, so it is never cut from a trace.
bool is_validator_frame(const void* address) {
  static constexpr const char* kPrefixes[] = {
      "uiommufd::lockdep::detail::",       "uiommufd::lockdep::Validator::",
      "uiommufd::lockdep::capture_stack_trace", "uiommufd::lockdep::LockdepMap::",
      "uiommufd::lockdep::Mutex::",        "uiommufd::lockdep::SharedMutex::",
      "void uiommufd::lockdep::check_not_held_elsewhere",
  };
  std::string name = symbol_name(address);
  for (const char* p : kPrefixes)
    if (name.rfind(p, 0) == 0) return true;
  return false;
}

}  // namespace

std::vector<void*> capture_stack_trace(const void* from_ip) {
  void* frames[kMaxStackDepth + 16];
  int n = backtrace(frames, static_cast<int>(sizeof frames / sizeof frames[0]));
  int first = 0;
  while (first < n && frames[first] != from_ip) ++first;
  if (first == n) {
    // No acquisition address to cut at: skip the validator's frames by name (slow; reports only).
    first = 1;
    while (first + 1 < n && is_validator_frame(frames[first])) ++first;
  }
  int last = std::min(n, first + static_cast<int>(kMaxStackDepth));
  return std::vector<void*>(frames + first, frames + last);
}

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
  for (std::size_t i = 0; i < count; ++i) {
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
