// Stack traces for reports: captured cheaply (return addresses only) when a dependency is first seen,
// symbolised only when a report prints them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace uiommufd::lockdep {

// A trace stored in the StackTraceStore: a slice of its frame array.
struct StackTraceRef {
  std::uint32_t offset = 0;
  std::uint32_t length = 0;
};

// Captures the current thread's return addresses, innermost first, starting at the caller's frame: the
// frame that returns to `from_ip` (the "at:" address of an acquisition) when it is on the stack, else
// the first frame outside the validator's own functions.
std::vector<void*> capture_stack_trace(const void* from_ip);

// "name+0x1c (object)" for one code address, demangled; "0x7f… (object+0x…)" without a symbol.
std::string symbolize(const void* address);

// Prints a trace, one indented frame per line.
void format_stack_trace(std::string& out, const void* const* frames, std::size_t count);

// Append-only storage of traces, bounded by kMaxStackTraceEntries. Not thread-safe: the validator uses it
// under its graph lock.
class StackTraceStore {
 public:
  // False when the store is full.
  bool save(const std::vector<void*>& frames, StackTraceRef* ref);
  void format(std::string& out, StackTraceRef ref) const;
  std::size_t entries() const { return frames_.size(); }
  void clear() { frames_.clear(); }

 private:
  std::vector<void*> frames_;
};

}  // namespace uiommufd::lockdep
