#include "dependency_graph.h"

#include <algorithm>

namespace uiommufd::lockdep {

DependencyGraph::DependencyGraph(ClassRegistry& classes)
    : classes_(classes),
      seen_strong_(kMaxLockClasses + 1, 0),
      seen_recursive_(kMaxLockClasses + 1, 0) {}

bool DependencyGraph::find_conflict(std::uint32_t from, detail::Read from_read, std::uint32_t target,
                                    detail::Read target_read, std::vector<std::uint32_t>* path) {
  ++searches_;
  if (++generation_ == 0) {
    std::fill(seen_strong_.begin(), seen_strong_.end(), 0);
    std::fill(seen_recursive_.begin(), seen_recursive_.end(), 0);
    generation_ = 1;
  }
  // Reaching the held lock's class is a conflict when the held lock blocks us whatever way we arrived
  // (it is held exclusive), or when we arrived by a non-recursive acquisition, which a reader blocks.
  auto conflicts = [&](const Node& n) {
    return n.cls == target && (target_read == detail::Read::kExclusive || !n.only_recursive);
  };

  queue_.clear();
  bool root_recursive = from_read == detail::Read::kRecursiveShared;
  queue_.push_back({from, kNone, kNone, root_recursive});
  (root_recursive ? seen_recursive_ : seen_strong_)[from] = generation_;
  for (std::size_t head = 0; head < queue_.size(); ++head) {
    Node node = queue_[head];
    if (conflicts(node)) {
      path->clear();
      for (std::uint32_t i = static_cast<std::uint32_t>(head); queue_[i].parent != kNone; i = queue_[i].parent)
        path->push_back(queue_[i].edge);
      std::reverse(path->begin(), path->end());
      return true;
    }
    for (std::uint32_t e : classes_[node.cls].after) {
      std::uint8_t kinds = edges_[e].kinds;
      // After -(*R)->, only an exclusive hold of this class continues a strong path.
      if (node.only_recursive) kinds &= static_cast<std::uint8_t>(~(kDepSR | kDepSN));
      if (!kinds) continue;
      bool only_recursive = !(kinds & (kDepSN | kDepEN));
      std::uint32_t to = edges_[e].to;
      // A class entered strongly subsumes entering it only recursively: it may leave by any edge.
      if (seen_strong_[to] == generation_) continue;
      if (only_recursive) {
        if (seen_recursive_[to] == generation_) continue;
        seen_recursive_[to] = generation_;
      } else {
        seen_strong_[to] = generation_;
      }
      queue_.push_back({to, static_cast<std::uint32_t>(head), e, only_recursive});
    }
  }
  return false;
}

Dependency* DependencyGraph::find(std::uint32_t from, std::uint32_t to) {
  for (std::uint32_t e : classes_[from].after)
    if (edges_[e].to == to) return &edges_[e];
  return nullptr;
}

bool DependencyGraph::add(std::uint32_t from, std::uint32_t to, std::uint8_t kinds, StackTraceRef trace) {
  if (edges_.size() >= kMaxDependencies) return false;
  // Both lists or neither: an index in `after` must name an edge.
  edges_.push_back({from, to, kinds, trace});
  try {
    classes_[from].after.push_back(static_cast<std::uint32_t>(edges_.size() - 1));
  } catch (...) {
    edges_.pop_back();
    throw;
  }
  return true;
}

void DependencyGraph::clear() {
  for (std::size_t id = 1; id <= classes_.size(); ++id) classes_[static_cast<std::uint32_t>(id)].after.clear();
  edges_.clear();
  searches_ = 0;
}

}  // namespace uiommufd::lockdep
