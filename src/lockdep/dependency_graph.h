// The global graph of lock-class dependencies and the search that proves a new one closes no cycle.
//
// An edge X -> Y means "X was held while Y was acquired". It remembers how: X held shared (S) or
// exclusive (E), Y acquired as a recursive reader (R) or not (N). A cycle is a deadlock only along a
// strong path: one that never enters a class through -(*R)-> and leaves it through -(S*)->, because a
// recursive reader is never blocked by a reader holding the same lock.
#pragma once

#include <cstdint>
#include <vector>

#include "class_registry.h"
#include "stack_trace.h"
#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lockdep {

enum DependencyKind : std::uint8_t {
  kDepSR = 1 << 0,  // from held shared, to acquired recursive-read
  kDepER = 1 << 1,  // from held exclusive, to acquired recursive-read
  kDepSN = 1 << 2,  // from held shared, to acquired non-recursive
  kDepEN = 1 << 3,  // from held exclusive, to acquired non-recursive
};

inline std::uint8_t dependency_kind(detail::Read from_held, detail::Read to_acquired) {
  bool exclusive = from_held == detail::Read::kExclusive;
  bool recursive = to_acquired == detail::Read::kRecursiveShared;
  if (recursive) return exclusive ? kDepER : kDepSR;
  return exclusive ? kDepEN : kDepSN;
}

struct Dependency {
  std::uint32_t from;
  std::uint32_t to;
  std::uint8_t kinds;        // DependencyKind bits seen so far
  StackTraceRef trace;  // where it was first added
};

// Not thread-safe: used under the validator's graph lock.
class DependencyGraph {
 public:
  explicit DependencyGraph(ClassRegistry& classes);

  // Searches for a strong path from `from` (being acquired as `from_read`) to `target` (held as
  // `target_read`) along which `target` would conflict, i.e. whether adding target -> from closes a
  // deadlock cycle. On success fills `path` with the edges from `from` to `target`, in order (empty
  // when `from` itself conflicts).
  bool find_conflict(std::uint32_t from, detail::Read from_read, std::uint32_t target,
                     detail::Read target_read, std::vector<std::uint32_t>* path);

  // The edge from -> to, or null.
  Dependency* find(std::uint32_t from, std::uint32_t to);
  // Adds a new edge; false when kMaxDependencies is reached.
  bool add(std::uint32_t from, std::uint32_t to, std::uint8_t kinds, StackTraceRef trace);

  const Dependency& operator[](std::uint32_t id) const { return edges_[id]; }
  std::size_t size() const { return edges_.size(); }
  std::size_t searches() const { return searches_; }
  void clear();

 private:
  struct Node {
    std::uint32_t cls;
    std::uint32_t parent;  // index in queue_, or kNone for the root
    std::uint32_t edge;    // edge that reached this node
    bool only_recursive;   // reached only by -(*R)->, so it may leave only by -(E*)->
  };
  static constexpr std::uint32_t kNone = ~0u;

  ClassRegistry& classes_;
  std::vector<Dependency> edges_;
  std::vector<Node> queue_;
  // Per class, the search generation in which it was entered strongly / only recursively; reset-free.
  std::vector<std::uint32_t> seen_strong_;
  std::vector<std::uint32_t> seen_recursive_;
  std::uint32_t generation_ = 0;
  std::size_t searches_ = 0;
};

}  // namespace uiommufd::lockdep
