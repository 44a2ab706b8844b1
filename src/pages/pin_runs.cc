#include "uiommufd/pages/pin_runs.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <new>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/try.h"

namespace uiommufd {

namespace {
constexpr std::uint64_t kMaxIndex = std::numeric_limits<std::uint64_t>::max();

// Appends [first, last] to `out`, extending the previous interval when they touch, so callers see maximal
// ranges even where the walk visited several stored runs.
void append_merged(std::vector<Interval>* out, std::uint64_t first, std::uint64_t last) {
  if (out == nullptr) return;
  if (!out->empty() && out->back().adjacent_before(Interval{first, last})) {
    out->back().last = last;
    return;
  }
  out->push_back(Interval{first, last});
}
}  // namespace

Status PinRuns::reserve_nodes(std::size_t n) {
  try {
    while (spares_.size() < n) spares_.emplace(0, Run{0, 0});
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  return {};
}

PinRuns::Map::iterator PinRuns::insert_run(Map::iterator hint, std::uint64_t key, Run run) {
  if (spares_.empty()) return runs_.emplace_hint(hint, key, run);
  Spares::node_type node = spares_.extract(spares_.begin());
  node.key() = key;
  node.mapped() = run;
  return runs_.insert(hint, std::move(node));
}

PinRuns::Map::iterator PinRuns::erase_run(Map::iterator it) {
  if (spares_.size() >= kMaxSpares) return runs_.erase(it);
  auto next = std::next(it);
  spares_.insert(runs_.extract(it));
  return next;
}

PinRuns::Map::iterator PinRuns::split_at(std::uint64_t index) {
  auto it = runs_.lower_bound(index);
  if (it != runs_.end() && it->first == index) return it;
  if (it == runs_.begin()) return it;
  auto prev = std::prev(it);
  if (prev->second.last < index) return it;  // index lies in a gap
  // prev covers index and starts before it: cut it in two.
  Run tail{prev->second.last, prev->second.users};
  prev->second.last = index - 1;
  return insert_run(it, index, tail);
}

void PinRuns::merge_range(std::uint64_t first, std::uint64_t last) {
  // The run just before `first` may now touch a run that starts at `first`, so start one run earlier.
  auto it = runs_.lower_bound(first);
  if (it != runs_.begin()) it = std::prev(it);
  while (it != runs_.end() && it->first <= last) {
    auto next = std::next(it);
    if (next != runs_.end() && it->second.last != kMaxIndex && it->second.last + 1 == next->first &&
        it->second.users == next->second.users) {
      it->second.last = next->second.last;
      erase_run(next);
      continue;  // the grown run may touch the one after as well
    }
    it = next;
  }
}

Status PinRuns::add(std::uint64_t first, std::uint64_t last, std::vector<Interval>* newly_pinned) {
  UIOMMUFD_ASSERT(first <= last);
  // Everything that can fail comes first: a node for each gap the range covers (it becomes a run), one
  // for each of the two splits, and the reserve that remove() relies on.
  std::size_t gaps = 0;
  {
    std::uint64_t cursor = first;
    bool covered_to_end = false;
    auto r = runs_.upper_bound(first);
    if (r != runs_.begin() && std::prev(r)->second.last >= first) r = std::prev(r);
    for (; r != runs_.end() && r->first <= last; ++r) {
      if (r->first > cursor) ++gaps;
      if (r->second.last >= last) {
        covered_to_end = true;
        break;
      }
      cursor = r->second.last + 1;
    }
    if (!covered_to_end) ++gaps;
  }
  if (newly_pinned != nullptr) {
    newly_pinned->clear();
    try {
      newly_pinned->reserve(gaps);
    } catch (const std::bad_alloc&) {
      return Status::error(ENOMEM);
    }
  }
  TRY(reserve_nodes(gaps + 2 + kRemoveReserve));

  auto it = split_at(first);
  if (last != kMaxIndex) split_at(last + 1);  // map iterators survive insertion, so `it` stays valid

  std::uint64_t cursor = first;
  for (;;) {
    std::uint64_t seg_last;
    if (it != runs_.end() && it->first == cursor) {
      // After the splits a run starting inside the range also ends inside it.
      UIOMMUFD_ASSERT(it->second.users != std::numeric_limits<std::uint32_t>::max());
      ++it->second.users;
      seg_last = it->second.last;
      ++it;
    } else {
      // A gap: every index in it goes 0 → 1.
      seg_last = (it != runs_.end() && it->first <= last) ? it->first - 1 : last;
      insert_run(it, cursor, Run{seg_last, 1});
      pinned_pages_ += seg_last - cursor + 1;
      append_merged(newly_pinned, cursor, seg_last);
    }
    if (seg_last == last) break;
    cursor = seg_last + 1;
  }
  merge_range(first, last);
  // A large add may have reserved many nodes that merging left unused.
  while (spares_.size() > kMaxSpares) spares_.erase(spares_.begin());
  return {};
}

void PinRuns::remove(std::uint64_t first, std::uint64_t last, RangeSink on_unpinned, void* ctx) {
  UIOMMUFD_ASSERT(first <= last);
  auto it = split_at(first);
  if (last != kMaxIndex) split_at(last + 1);

  // The 1 → 0 sub-range being grown; passed on when the next one does not touch it, and at the end.
  Interval pending{};
  bool have_pending = false;
  std::uint64_t cursor = first;
  for (;;) {
    if (it == runs_.end() || it->first != cursor) {
      // An index in the range had no user: the caller unpinned something it never pinned.
      UIOMMUFD_DCHECK(!"PinRuns::remove of an index with no users");
      break;
    }
    const std::uint64_t seg_last = it->second.last;
    if (--it->second.users == 0) {
      pinned_pages_ -= seg_last - cursor + 1;
      if (have_pending && pending.adjacent_before(Interval{cursor, seg_last})) {
        pending.last = seg_last;
      } else {
        if (have_pending && on_unpinned) on_unpinned(ctx, pending);
        pending = Interval{cursor, seg_last};
        have_pending = true;
      }
      it = erase_run(it);
    } else {
      ++it;
    }
    if (seg_last == last) break;
    cursor = seg_last + 1;
  }
  if (have_pending && on_unpinned) on_unpinned(ctx, pending);
  merge_range(first, last);
  // Best effort: the next remove() finds its two nodes in the pool unless memory is short right now.
  (void)reserve_nodes(kRemoveReserve);
}

void PinRuns::remove(std::uint64_t first, std::uint64_t last, std::vector<Interval>* newly_unpinned) {
  if (newly_unpinned == nullptr) return remove(first, last, nullptr, nullptr);
  newly_unpinned->clear();
  remove(
      first, last,
      [](void* out, const Interval& range) { static_cast<std::vector<Interval>*>(out)->push_back(range); },
      newly_unpinned);
}

std::uint32_t PinRuns::users(std::uint64_t index) const {
  auto it = runs_.upper_bound(index);
  if (it == runs_.begin()) return 0;
  --it;
  return it->second.last >= index ? it->second.users : 0;
}

void PinRuns::check_invariants() const {
  std::uint64_t total = 0;
  const std::pair<const std::uint64_t, Run>* prev = nullptr;
  for (const auto& entry : runs_) {
    UIOMMUFD_ASSERT(entry.first <= entry.second.last);
    UIOMMUFD_ASSERT(entry.second.users != 0);
    if (prev != nullptr) {
      UIOMMUFD_ASSERT(prev->second.last < entry.first);
      const bool touches = prev->second.last + 1 == entry.first;
      UIOMMUFD_ASSERT(!touches || prev->second.users != entry.second.users);
    }
    total += entry.second.last - entry.first + 1;
    prev = &entry;
  }
  UIOMMUFD_ASSERT(total == pinned_pages_);
}

void PinRuns::pinned_in(std::uint64_t first, std::uint64_t last, std::vector<Interval>* out) const {
  if (first > last) return;
  auto it = runs_.upper_bound(first);
  if (it != runs_.begin()) it = std::prev(it);  // the run that may start before `first` and cover it
  for (; it != runs_.end() && it->first <= last; ++it) {
    if (it->second.last < first) continue;
    out->push_back(Interval{std::max(it->first, first), std::min(it->second.last, last)});
  }
}

}  // namespace uiommufd
