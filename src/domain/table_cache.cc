#include "table_cache.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace uiommufd {
namespace {

// A singly linked stack threaded through the first word of each cached (otherwise zero) table; the word
// is cleared again when the table is handed out.
struct ThreadTables {
  std::uint64_t* head = nullptr;
  unsigned count = 0;

  ~ThreadTables() {
    while (head != nullptr) {
      std::uint64_t* next = reinterpret_cast<std::uint64_t*>(head[0]);
      std::free(head);
      head = next;
    }
  }
};

thread_local ThreadTables t_tables;

}  // namespace

Result<std::uint64_t*> TableCache::get() {
  ThreadTables& cache = t_tables;
  if (cache.head != nullptr) {
    std::uint64_t* table = cache.head;
    cache.head = reinterpret_cast<std::uint64_t*>(table[0]);
    table[0] = 0;
    --cache.count;
    return table;
  }
  // 4 KiB aligned so that a table pointer leaves its low 12 bits for flags and the count.
  void* table = std::aligned_alloc(kTableBytes, kTableBytes);
  if (table == nullptr) return Status::error(ENOMEM);
  std::memset(table, 0, kTableBytes);
  return static_cast<std::uint64_t*>(table);
}

void TableCache::put_zeroed(std::uint64_t* table) {
  ThreadTables& cache = t_tables;
  if (cache.count >= kMaxCached) {
    std::free(table);
    return;
  }
  table[0] = reinterpret_cast<std::uintptr_t>(cache.head);
  cache.head = table;
  ++cache.count;
}

void TableCache::put_dirty(std::uint64_t* table) { std::free(table); }

unsigned TableCache::cached_on_this_thread() { return t_tables.count; }

}  // namespace uiommufd
