// A lock class key: the identity shared by every lock that plays the same role. The validator reasons
// about classes, not instances, so "some IOAS lock held while some pages lock is taken" is one edge however
// many IOAS exist.
//
// A key must have static storage duration. Three ways to get one:
//   - per construction site (the default): an instrumented lock constructed without a key interns one
//     from its SourceSite (file, line, column) and name, as the kernel's mutex_init() does with a hidden
//     static key;
//   - per type or role: declare `static LockClassKey key{"ioas.mutex"};` and pass it to the constructor;
//   - per template instantiation: a static member of the template.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#if __has_include(<source_location>)
#include <source_location>
#endif

#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lockdep {

// Where a lock was constructed. std::source_location where the standard library provides it; clang 14
// with libstdc++ 12 does not, and the compiler builtins behind it serve there (they too evaluate at the
// caller when used in a default argument).
struct SourceSite {
  const char* file;
  unsigned line;
  unsigned column;
#if defined(__cpp_lib_source_location)
  static constexpr SourceSite current(std::source_location l = std::source_location::current()) {
    return {l.file_name(), static_cast<unsigned>(l.line()), static_cast<unsigned>(l.column())};
  }
#else
  static constexpr SourceSite current(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE(),
                                      unsigned column = __builtin_COLUMN()) {
    return {file, line, column};
  }
#endif
};

// What kind of lock uses a key, for pictures of the class graph (lockdep/dot.h); the validator's verdicts
// do not depend on it. Bits, since a key can be shared by locks of several kinds; none while no lock of
// the key has been constructed (a key known only from a declared order).
enum class LockKind : std::uint8_t {
  kMutex = 1 << 0,         // lockdep::Mutex
  kSharedMutex = 1 << 1,   // lockdep::SharedMutex (an rwsem)
  kMap = 1 << 2,           // a LockdepMap of its own: a pseudo-lock (a callback barrier, a drained refcount)
  kObservedLock = 1 << 3,  // a real lock of another type that a LockdepMap stands for (base's locks)
};

class LockClassKey {
 public:
  explicit constexpr LockClassKey(const char* name) : name_(name) {}
  // A key whose kind is known where it is defined: a key with static storage whose maps are constant
  // (constinit) and so cannot note their kind as they are constructed.
  constexpr LockClassKey(const char* name, LockKind kind)
      : name_(name), kinds_(static_cast<std::uint8_t>(kind)) {}
  LockClassKey(const LockClassKey&) = delete;
  LockClassKey& operator=(const LockClassKey&) = delete;

  const char* name() const { return name_; }

  // Records that a lock of `kind` uses this key. Called when a lock is constructed (LockdepMap's
  // constructors), never when it is taken; after the first lock of a kind it is one relaxed load, so the
  // key's cache line is not written again.
  void note_kind(LockKind kind) {
    const auto bit = static_cast<std::uint8_t>(kind);
    if (!(kinds_.load(std::memory_order_relaxed) & bit)) kinds_.fetch_or(bit, std::memory_order_relaxed);
  }
  // The LockKind bits noted so far.
  std::uint8_t kinds() const { return kinds_.load(std::memory_order_relaxed); }

  // The key interned for a construction site; `name` names the class when the site is first seen (null:
  // "file:line").
  static LockClassKey& for_site(const SourceSite& site, const char* name);

 private:
  friend class ClassRegistry;
  const char* name_;
  // Class ids registered for each subclass, 0 until first use; the cache that makes lookups free.
  std::array<std::atomic<std::uint32_t>, kMaxSubclasses> class_ids_{};
  std::atomic<std::uint8_t> kinds_{0};
};

}  // namespace uiommufd::lockdep
