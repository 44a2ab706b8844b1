// TableCache: where PageTableDomain gets and returns its 4 KiB tables.
//
// Freed tables are kept in a per-thread cache of at most kMaxCached tables (4 MiB) instead of going back
// to malloc at once. Reason: glibc returns freed memory at the top of the heap to the kernel, so a domain
// that unmaps and maps again (the engine's map/unmap churn, a fill after an unfill) would page-fault and
// zero every table anew; measured on 1 GiB of 4 KiB entries that was ~10 ns per mapped page, several times
// the cost of writing the entries. Per-thread, so no lock: a domain runs under the engine's locks on
// whatever thread calls it, and a table freed on one thread and reused on another is just memory.
//
// Only all-zero tables are cached (put_zeroed), so a cached table is handed out without clearing it.
// Nothing here counts toward a domain's table_bytes(); the cache is process overhead, bounded per thread
// and released at thread exit.
#pragma once

#include <cstdint>

#include "uiommufd/base/result.h"

namespace uiommufd {

class TableCache {
 public:
  static constexpr std::uint64_t kTableBytes = 4096;
  static constexpr unsigned kMaxCached = 1024;

  // A zeroed, 4 KiB aligned table of kTableBytes. Errors: ENOMEM when malloc fails. (The fault site is
  // the caller's, so injected failures do not depend on the cache's state.)
  static Result<std::uint64_t*> get();
  // Returns a table whose entries are all zero; it may be handed out again by get().
  static void put_zeroed(std::uint64_t* table);
  // Returns a table with arbitrary contents; it is freed, not cached.
  static void put_dirty(std::uint64_t* table);
  // Tables cached on the calling thread (for tests).
  static unsigned cached_on_this_thread();
};

}  // namespace uiommufd
