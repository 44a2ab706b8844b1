#include "uiommufd/domain/page_table_domain.h"

#include <algorithm>
#include <cerrno>
#include <new>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/checked.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/log.h"
#include "table_cache.h"

namespace uiommufd {

UIOMMUFD_FAULT_SITE(g_fault_domain_alloc_table, "domain.alloc_table", ENOMEM);

namespace {

// Entry bits. A zero entry is empty; every live entry has kPresent, so "non-zero" means "live".
constexpr std::uint64_t kPresent = 1u << 0;
// At level >= 1: the entry maps memory itself instead of pointing to a table. Level 0 entries always map
// memory and never carry it.
constexpr std::uint64_t kLarge = 1u << 1;
// Memory entries: IommuProt in bits 2..4, then the map-call markers.
constexpr unsigned kProtShift = 2;
constexpr std::uint64_t kProtMask = 7;
constexpr std::uint64_t kStart = 1u << 5;
constexpr std::uint64_t kLast = 1u << 6;
// Memory entries of a dirty-capable domain: written through since the last read-and-clear.
constexpr std::uint64_t kDirty = 1u << 7;
// Memory entries of a contiguous group (PageTableDomainOptions::contiguous_sizes): every item carries kGroup,
// its first item also kGroupHead. Groups are aligned powers of two inside one table and formed within one
// map() call, so the head and the members that follow it up to the next head or non-member are the group.
constexpr std::uint64_t kGroup = 1u << 8;
constexpr std::uint64_t kGroupHead = 1u << 9;
// The largest group: 2^8 items (the kernel's AMDv1 table has no contiguous entry of a whole next-level item).
constexpr unsigned kMaxGroupLg2 = 8;
// A granule is at least 2 KiB, so a memory entry's address never uses the low 11 bits.
constexpr std::uint64_t kMemAddrMask = ~std::uint64_t{0x7ff};
// Table entries: the child's live-entry count (0..512) in bits 2..11, below its 4 KiB aligned address.
constexpr unsigned kCountShift = 2;
constexpr std::uint64_t kCountMask = std::uint64_t{0x3ff} << kCountShift;
constexpr std::uint64_t kTableAddrMask = ~std::uint64_t{0xfff};
static_assert(PageTableDomain::kEntriesPerTable <= (kCountMask >> kCountShift));

constexpr std::uint64_t kOneCount = std::uint64_t{1} << kCountShift;

static_assert(PageTableDomain::kTableBytes == TableCache::kTableBytes);
static_assert(PageTableDomain::kMaxLevels * PageTableDomain::kIndexBits + 11 >= 64);

std::uint64_t* child_of(std::uint64_t table_entry) {
  return reinterpret_cast<std::uint64_t*>(table_entry & kTableAddrMask);
}
std::uint64_t count_of(std::uint64_t table_entry) { return (table_entry & kCountMask) >> kCountShift; }
bool maps_memory(std::uint64_t entry, unsigned level) {
  return entry != 0 && (level == 0 || (entry & kLarge) != 0);
}

// Levels needed so that the top table indexes the aperture's last address.
unsigned levels_for(const PageTableDomainOptions& o) {
  const unsigned bits = 64 - static_cast<unsigned>(__builtin_clzll(o.aperture.last | 1));
  if (bits <= o.granule_shift) return 1;
  return (bits - o.granule_shift + PageTableDomain::kIndexBits - 1) / PageTableDomain::kIndexBits;
}

unsigned max_large_level_for(const PageTableDomainOptions& o) {
  return o.large_pages ? std::min(o.max_large_level, levels_for(o) - 1) : 0;
}

std::uint64_t pgsize_bitmap_for(const PageTableDomainOptions& o) {
  std::uint64_t bitmap = std::uint64_t{1} << o.granule_shift;
  for (unsigned level = 1; level <= max_large_level_for(o); ++level)
    bitmap |= std::uint64_t{1} << (o.granule_shift + PageTableDomain::kIndexBits * level);
  return bitmap;
}

}  // namespace

Status PageTableDomain::validate(const Options& o) {
  // Below 11 bits the flags would collide with the address; above 30 a large entry could exceed 2^63.
  if (o.granule_shift < 11 || o.granule_shift > 30) return Status::error(EINVAL);
  if (o.aperture.start > o.aperture.last) return Status::error(EINVAL);
  const std::uint64_t granule = std::uint64_t{1} << o.granule_shift;
  if (!is_aligned(o.aperture.start, granule)) return Status::error(EINVAL);
  if (o.aperture.last != kUlongMax && !is_aligned(o.aperture.last + 1, granule)) return Status::error(EINVAL);
  return Status();
}

Result<std::uint64_t*> PageTableDomain::alloc_table() {
  TRY(inject(g_fault_domain_alloc_table));
  return TableCache::get();
}

Result<std::uint64_t*> PageTableDomain::prepare_root(const Options& options) {
  TRY(validate(options));
  return alloc_table();
}

void PageTableDomain::free_root(std::uint64_t* root) { TableCache::put_zeroed(root); }

Result<std::unique_ptr<PageTableDomain>> PageTableDomain::create(const Options& options) {
  std::uint64_t* root = TRY(prepare_root(options));
  auto* domain = new (std::nothrow) PageTableDomain(options, root);
  if (domain == nullptr) {
    free_root(root);
    return Status::error(ENOMEM);
  }
  return std::unique_ptr<PageTableDomain>(domain);
}

PageTableDomain::PageTableDomain(const Options& options, std::uint64_t* root)
    : granule_shift_(options.granule_shift),
      granule_(std::uint64_t{1} << options.granule_shift),
      aperture_(options.aperture),
      levels_(levels_for(options)),
      max_large_level_(max_large_level_for(options)),
      pgsize_bitmap_(pgsize_bitmap_for(options)),
      dcheck_boundaries_(options.dcheck_boundaries),
      dirty_capable_(options.dirty_capable),
      contiguous_sizes_(options.contiguous_sizes),
      large_within_block_(options.large_within_block),
      root_(root) {}

PageTableDomain::~PageTableDomain() {
  lockdep::MutexGuard g(mu_);  // uncontended: nothing else can reach a domain being destroyed
  free_tree(root_, levels_ - 1);
}

void PageTableDomain::free_tree(std::uint64_t* table, unsigned level) {
  mu_.assert_held();
  if (level > 0) {
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      const std::uint64_t e = table[i];
      if (e != 0 && (e & kLarge) == 0) free_tree(child_of(e), level - 1);
    }
  }
  // Live entries may remain (a domain destroyed while mapped), so the table is not known to be zero.
  TableCache::put_dirty(table);
  --tables_;
}

void PageTableDomain::free_table(std::uint64_t* table) {
  mu_.assert_held();
  // Only emptied tables come here: every entry is zero.
  TableCache::put_zeroed(table);
  --tables_;
}

unsigned PageTableDomain::pick_level(std::uint64_t va, PhysAddr pa, std::uint64_t remaining,
                                     std::uint64_t phys_block) const {
  for (unsigned level = max_large_level_; level > 0; --level) {
    const std::uint64_t size = std::uint64_t{1} << shift(level);
    if (large_within_block_ && phys_block != 0 && phys_block < size) continue;
    if (((va | pa) & (size - 1)) == 0 && remaining >= size) return level;
  }
  return 0;
}

void PageTableDomain::form_groups(std::uint64_t* slot, std::uint64_t n, unsigned level, std::uint64_t va,
                                  PhysAddr pa, std::uint64_t phys_block) const {
  mu_.assert_held();
  const unsigned s = shift(level);
  // The kernel's choice (generic_pt pt_compute_best_pgsize()) at every step: the largest allowed size
  // that IOVA and address are aligned to and that fits, here also inside the contiguous block.
  unsigned block_lg2 = 63;
  if (phys_block != 0) block_lg2 = static_cast<unsigned>(__builtin_ctzll(phys_block));
  for (std::uint64_t k = 0; k < n;) {
    const std::uint64_t mask = (va + (k << s)) | (pa + (k << s));
    unsigned lg2 =
        std::min<unsigned>(mask == 0 ? 63 : static_cast<unsigned>(__builtin_ctzll(mask)), block_lg2);
    lg2 = std::min<unsigned>(
        {lg2 < s ? 0 : lg2 - s, kMaxGroupLg2, 63 - static_cast<unsigned>(__builtin_clzll(n - k))});
    while (lg2 > 0 && (contiguous_sizes_ & (std::uint64_t{1} << (s + lg2))) == 0) --lg2;
    const std::uint64_t items = std::uint64_t{1} << lg2;
    if (lg2 > 0) {
      slot[k] |= kGroupHead;
      for (std::uint64_t j = 0; j < items; ++j) slot[k + j] |= kGroup;
    }
    k += items;
  }
}

unsigned PageTableDomain::group_first(const std::uint64_t* table, unsigned i) {
  while ((table[i] & kGroupHead) == 0) --i;
  return i;
}

unsigned PageTableDomain::group_last(const std::uint64_t* table, unsigned i) {
  while (i + 1 < kEntriesPerTable && (table[i + 1] & (kGroup | kGroupHead)) == kGroup) ++i;
  return i;
}

Result<PageTableDomain::TableRef> PageTableDomain::walk_alloc(std::uint64_t iova, unsigned level) {
  mu_.assert_held();
  std::uint64_t* table = root_;
  std::uint64_t* count_slot = &root_count_;
  for (unsigned l = levels_ - 1; l > level; --l) {
    std::uint64_t& e = table[index(iova, l)];
    if (e == 0) {
      std::uint64_t* child = TRY(alloc_table());
      ++tables_;
      e = reinterpret_cast<std::uintptr_t>(child) | kPresent;
      *count_slot += kOneCount;
    } else if (e & kLarge) {
      return Status::error(EEXIST);
    }
    count_slot = &e;
    table = child_of(e);
  }
  return TableRef{table, count_slot};
}

std::optional<PageTableDomain::Leaf> PageTableDomain::find(std::uint64_t iova) const {
  mu_.assert_held();
  // Callers check the aperture first: the top level's index would wrap above the indexable span.
  const std::uint64_t* table = root_;
  for (unsigned level = levels_ - 1;; --level) {
    const unsigned i = index(iova, level);
    const std::uint64_t e = table[i];
    if (e == 0) return std::nullopt;
    // Leaf points into the table for the marker updates of map(); const methods only read through it.
    if (maps_memory(e, level)) return Leaf{const_cast<std::uint64_t*>(table), level, i};
    table = child_of(e);
  }
}

Status PageTableDomain::check_map_args(std::uint64_t iova, PhysAddr paddr, std::uint64_t length, int prot,
                                       std::uint64_t phys_block) const {
  if (length == 0 || ((iova | paddr | length) & (granule_ - 1)) != 0) return Status::error(EINVAL);
  if (phys_block != 0 && (phys_block < granule_ || (phys_block & (phys_block - 1)) != 0))
    return Status::error(EINVAL);
  if ((prot & ~(kIommuRead | kIommuWrite | kIommuCache)) != 0) return Status::error(EINVAL);
  std::uint64_t last = 0, pa_last = 0;
  if (!checked_add(iova, length - 1, &last) || !checked_add(paddr, length - 1, &pa_last))
    return Status::error(EINVAL);
  if (!aperture_.contains(Interval{iova, last})) return Status::error(EINVAL);
  return Status();
}

Status PageTableDomain::map(std::uint64_t iova, PhysAddr paddr, std::uint64_t length, int prot,
                            std::uint64_t phys_block) {
  TRY(check_map_args(iova, paddr, length, prot, phys_block));
  return map_checked(iova, paddr, length, prot, phys_block);
}

Status PageTableDomain::map_checked(std::uint64_t iova, PhysAddr paddr, std::uint64_t length, int prot,
                                    std::uint64_t phys_block) {
  lockdep::MutexGuard g(mu_);
  const std::uint64_t prot_bits = static_cast<std::uint64_t>(prot) << kProtShift;
  std::uint64_t done = 0;
  Status status;
  // One walk from the root per table; then a cursor fills that table. A larger page size can only become
  // usable where iova crosses into the next table of this level, so running to the table's end (or the
  // end of the request) never skips a large-entry opportunity.
  while (done < length) {
    const std::uint64_t va = iova + done;
    const PhysAddr pa = paddr + done;
    const std::uint64_t remaining = length - done;
    const unsigned level = pick_level(va, pa, remaining, phys_block);
    Result<TableRef> ref = walk_alloc(va, level);
    if (!ref.ok()) {
      status = ref.status();
      break;
    }
    const unsigned s = shift(level);
    std::uint64_t* const slot = ref->table + index(va, level);
    const std::uint64_t n_max = std::min<std::uint64_t>(kEntriesPerTable - index(va, level), remaining >> s);
    const std::uint64_t flags = kPresent | prot_bits | (level > 0 ? kLarge : 0);
    // An occupied slot is a mapped granule, a large entry, or a table; tables are never empty, so each
    // case means part of the range is mapped. Find the free prefix first (eight slots per test), then
    // fill it in a loop without an exit; both passes stay in one 4 KiB table, in L1.
    std::uint64_t n = 0;
    while (n + 8 <= n_max && (slot[n] | slot[n + 1] | slot[n + 2] | slot[n + 3] | slot[n + 4] | slot[n + 5] |
                              slot[n + 6] | slot[n + 7]) == 0)
      n += 8;
    while (n < n_max && slot[n] == 0) ++n;
    std::uint64_t entry = pa | flags;
    for (std::uint64_t k = 0; k < n; ++k, entry += std::uint64_t{1} << s) slot[k] = entry;
    if (contiguous_sizes_ != 0) form_groups(slot, n, level, va, pa, phys_block);
    *ref->count_slot += n * kOneCount;
    done += n << s;
    mapped_bytes_ += n << s;
    if (level > 0) large_entries_ += n;
    if (n < n_max) {
      status = Status::error(EEXIST);
      break;
    }
  }
  if (status.ok()) {
    const Leaf first = *find(iova);
    first.table[first.index] |= kStart;
    const Leaf last = *find(iova + length - 1);
    last.table[last.index] |= kLast;
    return Status();
  }
  // Unwind: what this call mapped, then any table allocated for the step that failed.
  if (done > 0) {
    bool holes = false;
    mapped_bytes_ -= clear(root_, levels_ - 1, &root_count_, iova, iova + done - 1, &holes);
    UIOMMUFD_DCHECK(!holes);
  }
  prune(iova + done);
  return status;
}

void PageTableDomain::prune(std::uint64_t iova) {
  mu_.assert_held();
  std::uint64_t* tables[kMaxLevels];
  std::uint64_t* slots[kMaxLevels];
  unsigned depth = 0;
  std::uint64_t* table = root_;
  for (unsigned level = levels_ - 1; level > 0; --level) {
    std::uint64_t& e = table[index(iova, level)];
    if (e == 0 || (e & kLarge)) break;
    slots[depth] = &e;
    table = child_of(e);
    tables[depth++] = table;
  }
  while (depth > 0) {
    --depth;
    if (count_of(*slots[depth]) != 0) break;
    free_table(tables[depth]);
    *slots[depth] = 0;
    *(depth == 0 ? &root_count_ : slots[depth - 1]) -= kOneCount;
  }
}

std::uint64_t PageTableDomain::clear(std::uint64_t* table, unsigned level, std::uint64_t* count_slot,
                                     std::uint64_t start, std::uint64_t last, bool* holes) {
  mu_.assert_held();
  const unsigned s = shift(level);
  const unsigned first_index = index(start, level);
  const unsigned last_index = index(last, level);
  if (level == 0) {
    // Branch-free so that it vectorises: the per-granule cost of unmap is one load and one store.
    std::uint64_t n = 0;
    for (unsigned i = first_index; i <= last_index; ++i) {
      n += table[i] != 0;
      table[i] = 0;
    }
    if (n != std::uint64_t{last_index} - first_index + 1) *holes = true;
    *count_slot -= n * kOneCount;
    return n << s;
  }
  const std::uint64_t size = std::uint64_t{1} << s;
  std::uint64_t bytes = 0, removed = 0;
  std::uint64_t base = align_down(start, size);
  for (unsigned i = first_index; i <= last_index; ++i, base += size) {
    const std::uint64_t e = table[i];
    if (e == 0) {
      *holes = true;
      continue;
    }
    if (e & kLarge) {
      // unmap() refuses requests that would split a large entry before it gets here.
      UIOMMUFD_DCHECK(base >= start && base + (size - 1) <= last);
      table[i] = 0;
      ++removed;
      --large_entries_;
      bytes += size;
      continue;
    }
    std::uint64_t* child = child_of(e);
    bytes += clear(child, level - 1, &table[i], std::max(start, base), std::min(last, base + (size - 1)), holes);
    if (count_of(table[i]) == 0) {
      free_table(child);
      table[i] = 0;
      ++removed;
    }
  }
  *count_slot -= removed * kOneCount;
  return bytes;
}

void PageTableDomain::note_violation(const char* what, std::uint64_t iova, std::uint64_t length) {
  mu_.assert_held();
  ++boundary_violations_;
  if (!violation_logged_) {
    violation_logged_ = true;
    UIOMMUFD_LOG(LogLevel::kWarn,
                 "domain: unmap [0x%llx, +0x%llx) breaks the map boundaries: %s (further violations of this "
                 "domain are only counted)",
                 static_cast<unsigned long long>(iova), static_cast<unsigned long long>(length), what);
  }
  const bool unmap_matches_map_boundaries = !dcheck_boundaries_;
  UIOMMUFD_DCHECK(unmap_matches_map_boundaries);
}

std::uint64_t PageTableDomain::unmap(std::uint64_t iova, std::uint64_t length) {
  lockdep::MutexGuard g(mu_);
  std::uint64_t last = 0;
  if (length == 0 || ((iova | length) & (granule_ - 1)) != 0 || !checked_add(iova, length - 1, &last) ||
      !aperture_.contains(Interval{iova, last})) {
    note_violation("misaligned, empty or outside the aperture", iova, length);
    return 0;
  }
  const std::optional<Leaf> first = find(iova);
  const std::optional<Leaf> end = find(last);
  // A large entry can only be split at the ends: any entry strictly inside is covered whole.
  const bool splits_first = first && first->level > 0 && !is_aligned(iova, std::uint64_t{1} << shift(first->level));
  // last + 1 wraps to 0 at the top of the space, which reads as aligned: correct, nothing follows.
  const bool splits_end = end && end->level > 0 && !is_aligned(last + 1, std::uint64_t{1} << shift(end->level));
  // A group is split when the range starts after its head or ends before its last item.
  const bool splits_first_group =
      first && (first->entry() & kGroup) != 0 && (first->entry() & kGroupHead) == 0;
  const bool splits_end_group =
      end && (end->entry() & kGroup) != 0 && group_last(end->table, end->index) != end->index;
  if (splits_first || splits_end || splits_first_group || splits_end_group) {
    note_violation("it would split a large entry; nothing unmapped", iova, length);
    return 0;
  }
  const bool marked = first && (first->entry() & kStart) != 0 && end && (end->entry() & kLast) != 0;
  bool holes = false;
  const std::uint64_t bytes = clear(root_, levels_ - 1, &root_count_, iova, last, &holes);
  mapped_bytes_ -= bytes;
  if (!marked || holes)
    note_violation(holes ? "it covers unmapped granules" : "it does not start with START or end with LAST", iova,
                   length);
  return bytes;
}

std::optional<PhysAddr> PageTableDomain::iova_to_phys(std::uint64_t iova) const {
  lockdep::MutexGuard g(mu_);
  if (!aperture_.contains(iova)) return std::nullopt;
  const std::optional<Leaf> leaf = find(iova);
  if (!leaf) return std::nullopt;
  const std::uint64_t size = std::uint64_t{1} << shift(leaf->level);
  return (leaf->entry() & kMemAddrMask) + (iova & (size - 1));
}

std::optional<int> PageTableDomain::prot_at(std::uint64_t iova) const {
  lockdep::MutexGuard g(mu_);
  if (!aperture_.contains(iova)) return std::nullopt;
  const std::optional<Leaf> leaf = find(iova);
  if (!leaf) return std::nullopt;
  return static_cast<int>((leaf->entry() >> kProtShift) & kProtMask);
}

Domain::Run PageTableDomain::read_run(std::uint64_t iova, std::uint64_t max_length) const {
  lockdep::MutexGuard g(mu_);
  if (max_length == 0 || !is_aligned(iova, granule_) || !aperture_.contains(iova)) return {0, 0};
  PhysAddr start_pa = 0;
  std::uint64_t length = 0;
  std::uint64_t va = iova;
  // One walk per table, then a cursor over that table's entries while they continue the run. A table
  // pointer or a change of table ends the inner loop and the next walk resolves it.
  while (length < max_length) {
    const std::optional<Leaf> leaf = find(va);
    if (!leaf) break;
    const unsigned s = shift(leaf->level);
    const std::uint64_t offset = va & ((std::uint64_t{1} << s) - 1);
    const PhysAddr pa = (leaf->entry() & kMemAddrMask) + offset;
    if (length == 0) {
      start_pa = pa;
    } else if (pa != start_pa + length) {
      break;
    }
    length += (std::uint64_t{1} << s) - offset;
    const std::uint64_t* table = leaf->table;
    for (unsigned i = leaf->index + 1; i < kEntriesPerTable && length < max_length; ++i) {
      const std::uint64_t e = table[i];
      if (!maps_memory(e, leaf->level) || (e & kMemAddrMask) != start_pa + length) break;
      length += std::uint64_t{1} << s;
    }
    if (length >= max_length) break;
    if (!checked_add(iova, length, &va) || va > aperture_.last) break;
  }
  if (length == 0) return {0, 0};
  return {start_pa, std::min(length, max_length)};
}

// ---- dirty tracking and DMA ---------------------------------------------------------------------------

Status PageTableDomain::set_dirty_tracking(bool enable) {
  if (!dirty_capable_) return Status::error(EOPNOTSUPP);
  lockdep::MutexGuard g(mu_);
  dirty_tracking_ = enable;
  return Status();
}

bool PageTableDomain::dirty_tracking() const {
  lockdep::MutexGuard g(mu_);
  return dirty_tracking_;
}

void PageTableDomain::collect_dirty(std::uint64_t* table, unsigned level, std::uint64_t start,
                                    std::uint64_t last, std::uint64_t from, bool no_clear, DirtySink record,
                                    void* ctx) {
  mu_.assert_held();
  const unsigned s = shift(level);
  const std::uint64_t size = std::uint64_t{1} << s;
  std::uint64_t base = align_down(start, size);
  const unsigned last_index = index(last, level);
  for (unsigned i = index(start, level); i <= last_index; ++i, base += size) {
    const std::uint64_t e = table[i];
    if (level != 0 && (e & kLarge) == 0) {
      if (e != 0)
        collect_dirty(child_of(e), level - 1, std::max(start, base), std::min(last, base + (size - 1)), from,
                      no_clear, record, ctx);
      continue;
    }
    // Most entries of a collection are clean: one test skips them (and empty ones, which have no bits).
    if ((e & (kDirty | kGroup)) == 0) continue;
    if (e & kGroup) {
      // A contiguous entry is dirty when any of its items is, and is reported as the kernel's
      // record_dirty() does: from the item the walk reaches first up to (not including) the entry's last
      // item, or up to the end of the walk in this table if that comes first; so a whole entry loses its
      // last item. A walk that reaches only the last item (a request starting there) would report nothing
      // in the kernel, which then never returns; this reports that item instead.
      const unsigned first = group_first(table, i);
      const unsigned group_end = group_last(table, i);
      std::uint64_t either = 0;
      for (unsigned j = first; j <= group_end; ++j) either |= table[j];
      if (either & kDirty) {
        const unsigned upto = std::min(group_end, last_index + 1);
        record(ctx, std::max(base, from), std::uint64_t{std::max(upto - i, 1u)} << s);
        if (!no_clear)
          for (unsigned j = first; j <= group_end; ++j) table[j] &= ~kDirty;
      }
      base += std::uint64_t{group_end - i} * size;  // the rest of the group is part of this entry
      i = group_end;
      continue;
    }
    record(ctx, std::max(base, from), size);
    if (!no_clear) table[i] = e & ~kDirty;
  }
}

Status PageTableDomain::read_and_clear_dirty(std::uint64_t iova, std::uint64_t length, bool no_clear,
                                             DirtySink record, void* ctx) {
  if (!dirty_capable_) return Status::error(EOPNOTSUPP);
  if (length == 0) return Status();
  std::uint64_t last = 0;
  if (!checked_add(iova, length - 1, &last) || !aperture_.contains(Interval{iova, last}))
    return Status::error(EINVAL);
  // A bounded piece per hold of the lock, so that DMA through the domain is never held up by a whole
  // collection. Pieces end at 1 GiB boundaries: an entry never spans two of them.
  constexpr std::uint64_t kPiece = std::uint64_t{1} << 30;
  for (std::uint64_t start = iova;;) {
    const std::uint64_t piece_last = std::min(last, start | (kPiece - 1));
    {
      lockdep::MutexGuard g(mu_);
      collect_dirty(root_, levels_ - 1, start, piece_last, iova, no_clear, record, ctx);
    }
    if (piece_last == last) break;
    start = piece_last + 1;
  }
  return Status();
}

Status PageTableDomain::set_dirty(std::uint64_t iova) {
  if (!dirty_capable_) return Status::error(EOPNOTSUPP);
  lockdep::MutexGuard g(mu_);
  if (!aperture_.contains(iova)) return Status::error(ENOENT);
  const std::optional<Leaf> leaf = find(iova);
  if (!leaf) return Status::error(ENOENT);
  leaf->table[leaf->index] |= kDirty;
  return Status();
}

template <typename Visit>
Status PageTableDomain::for_each_leaf(std::uint64_t iova, std::uint64_t length, int need,
                                      Visit&& visit) const {
  mu_.assert_held();
  if (length == 0) return Status();
  std::uint64_t last = 0;
  if (!checked_add(iova, length - 1, &last) || !aperture_.contains(Interval{iova, last}))
    return Status::error(EFAULT);
  for (std::uint64_t va = iova;;) {
    const std::optional<Leaf> leaf = find(va);
    if (!leaf) return Status::error(EFAULT);
    const std::uint64_t size = std::uint64_t{1} << shift(leaf->level);
    const std::uint64_t start = align_down(va, size);
    const int prot = static_cast<int>((leaf->entry() >> kProtShift) & kProtMask);
    if ((prot & need) != need) return Status::error(EPERM);
    TRY(visit(*leaf, start, size));
    if (last - start <= size - 1) break;  // this entry reaches the end of the request
    va = start + size;
  }
  return Status();
}

Status PageTableDomain::dma(std::uint64_t iova, std::uint64_t length, bool write, DmaSegment segment,
                            void* ctx) {
  lockdep::MutexGuard g(mu_);
  const int need = write ? kIommuWrite : kIommuRead;
  // Every entry is checked before the first byte moves, so a refused DMA changes nothing.
  TRY(for_each_leaf(iova, length, need, [](const Leaf&, std::uint64_t, std::uint64_t) { return Status(); }));
  const bool mark = write && dirty_tracking_;
  return for_each_leaf(iova, length, need, [&](const Leaf& leaf, std::uint64_t start, std::uint64_t size) {
    const std::uint64_t from = std::max(start, iova);
    const std::uint64_t to_last = std::min(start + (size - 1), iova + (length - 1));
    if (mark) leaf.table[leaf.index] |= kDirty;
    return segment(ctx, (leaf.entry() & kMemAddrMask) + (from - start), from - iova, to_last - from + 1);
  });
}

}  // namespace uiommufd
