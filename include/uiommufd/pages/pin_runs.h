// PinRuns: how many pin users each page index of a Pages object has, stored as runs.
//
// A run is a maximal range of page indices [first, last] (INCLUSIVE) whose indices all have the same
// non-zero user count. Indices with 0 users are not stored. Adjacent runs always have different counts
// (equal neighbours are merged after every change), so the structure's size is proportional to the number
// of distinct runs in the pin pattern, never to the number of pages: pinning 2^30 pages once is one node.
// This is the user-space stand-in for the kernel's "a page index is pinned exactly once while it is in
// either interval tree" rule (docs/semantics.md#pinned): callers count users, PinRuns reports the 0→1 and 1→0
// edges.
//
// add() is undone exactly by remove() of the same range (counts, and hence the run layout after merging,
// are back to what they were), which is how Pages rolls back a pin that failed half-way.
//
// Cost: O((k + 1) · log n) for a range overlapping k runs out of n.
//
// Memory: map nodes come from a small pool of spares. add() first makes sure the pool holds every node it
// can need (2 splits and one per gap) plus two more, and fails with ENOMEM before changing anything when
// they cannot be had; so add() has no half-done state. remove() needs at most two nodes (its two splits)
// and takes them from the pool, which every add() leaves with at least two; it refills the pool
// afterwards if it can. Nodes freed by merges go back to the pool, which is trimmed to a few.
//
// Thread safety: none; the owner serialises access (Pages guards its PinRuns with pages.mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "uiommufd/base/interval.h"
#include "uiommufd/base/status.h"

namespace uiommufd {

class PinRuns {
 public:
  PinRuns() = default;
  PinRuns(const PinRuns&) = delete;
  PinRuns& operator=(const PinRuns&) = delete;
  PinRuns(PinRuns&&) = default;
  PinRuns& operator=(PinRuns&&) = default;

  // Adds one user to every index in [first, last] (precondition first <= last; a count may not exceed
  // UINT32_MAX, checked). If `newly_pinned` is not null it is cleared and then filled, in ascending order,
  // with the maximal sub-ranges whose indices went from 0 to 1 users; none of them touch each other.
  // Errors: ENOMEM when the nodes or the output vector cannot be allocated; nothing has changed then.
  Status add(std::uint64_t first, std::uint64_t last, std::vector<Interval>* newly_pinned);

  // Removes one user from every index in [first, last]. Precondition: every index in the range has at
  // least one user (UIOMMUFD_DCHECK; in release builds a violation is undefined). Each maximal sub-range
  // that went from 1 to 0 users is passed to `on_unpinned(ctx, range)` (when not null), in ascending
  // order, while the removal runs: the sink must not use this PinRuns. Never allocates, unless a previous
  // remove() could not refill the pool (then a split allocates, and a failure throws std::bad_alloc):
  // this is the form for unpin paths.
  using RangeSink = void (*)(void* ctx, const Interval& range);
  void remove(std::uint64_t first, std::uint64_t last, RangeSink on_unpinned, void* ctx);
  // The same, collecting the sub-ranges in `newly_unpinned` (cleared first; may be null). Growing the
  // vector may throw std::bad_alloc half-way, so paths that must not fail use the sink form.
  void remove(std::uint64_t first, std::uint64_t last, std::vector<Interval>* newly_unpinned);

  // Users of `index` (0 when it is in no run).
  std::uint32_t users(std::uint64_t index) const;

  // Number of indices with at least one user (the kernel's npinned). O(1).
  std::uint64_t pinned_pages() const { return pinned_pages_; }

  // Appends to `out`, in ascending order, the indices in [first, last] with at least one user, as ranges
  // clipped to [first, last] (stored runs, not merged: touching ranges with different counts stay apart).
  // O((k + 1) · log n); for the pin-count query of the selftest (Pages::pin_count_is).
  void pinned_in(std::uint64_t first, std::uint64_t last, std::vector<Interval>* out) const;

  // Number of stored runs; for tests and statistics.
  std::size_t run_count() const { return runs_.size(); }
  bool empty() const { return runs_.empty(); }

  // Aborts (UIOMMUFD_ASSERT) unless the representation is canonical: runs ordered and disjoint, every count
  // non-zero, touching runs with different counts, pinned_pages() equal to the summed run lengths. O(n);
  // for tests.
  void check_invariants() const;

 private:
  struct Run {
    std::uint64_t last;  // inclusive
    std::uint32_t users;
  };
  using Map = std::map<std::uint64_t, Run>;  // key: first index of the run
  // The pool: node handles of a multimap fit the map (the standard makes them compatible), so a node
  // moves between the two without being allocated or freed.
  using Spares = std::multimap<std::uint64_t, Run>;
  // Nodes kept for remove(), and the most the pool keeps.
  static constexpr std::size_t kRemoveReserve = 2;
  static constexpr std::size_t kMaxSpares = 8;

  // Grows the pool to `n` nodes; ENOMEM if it cannot (the pool may have grown part of the way).
  Status reserve_nodes(std::size_t n);
  // Inserts (key, run) before `hint` with a pooled node when there is one.
  Map::iterator insert_run(Map::iterator hint, std::uint64_t key, Run run);
  // Erases `it`, keeping its node in the pool while the pool is below kMaxSpares.
  Map::iterator erase_run(Map::iterator it);

  // Makes `index` the first index of a run if some run covers it and starts before it. Returns the run
  // that starts at or after `index`.
  Map::iterator split_at(std::uint64_t index);
  // Merges the run at `it` with its predecessor if they touch and have equal counts; returns the run now
  // containing it's first index.
  Map::iterator merge_with_prev(Map::iterator it);
  // Re-establishes the merged form over the runs that may have changed in [first, last] and at its edges.
  void merge_range(std::uint64_t first, std::uint64_t last);

  Map runs_;
  Spares spares_;
  std::uint64_t pinned_pages_ = 0;
};

}  // namespace uiommufd
