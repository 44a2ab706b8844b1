// IoPagetable::inspect(): the table's state for the dump layer (dump/, docs/dump.md). Kept apart from
// io_pagetable.cc because nothing in the engine uses it.
#include "uiommufd/iopt/io_pagetable.h"

namespace uiommufd {

void IoPagetable::inspect(Inspector& inspector) {
  lockdep::ReadGuard d(domains_rwsem_);
  lockdep::ReadGuard g(iova_rwsem_);
  std::size_t accesses = 0;
  {
    lockdep::MutexGuard a(access_list_mu_);
    accesses = accesses_.size();
  }
  inspector.domains(domains_, iova_alignment_, large_pages_.load(), accesses);
  for (IntervalTreeNode* n = areas_.first(); n; n = areas_.next(n)) {
    const Area* area = area_of(n);
    // Published, being filled (map), or taken away by unmap, in which case nothing of it is left to read.
    Pages* backing = area->pages() ? area->pages().get() : area->pending_pages();
    if (!backing) {
      inspector.area(*area, nullptr);
      continue;
    }
    lockdep::MutexGuard pg(backing->mutex());
    inspector.area(*area, backing);
  }
  for (IntervalTreeNode* n = reserved_.first(); n; n = reserved_.next(n))
    inspector.reserved(n->range, IntervalTree::owner<Reserved, &Reserved::node>(n)->owner);
  for (IntervalTreeNode* n = allowed_.first(); n; n = allowed_.next(n)) inspector.allowed(n->range);
}

}  // namespace uiommufd
