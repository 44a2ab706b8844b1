#include "table_cache.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <vector>

namespace uiommufd {
namespace {

TEST(TableCacheTest, GetReturnsAZeroedAlignedTable) {
  std::uint64_t* t = TableCache::get().value();
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t) % TableCache::kTableBytes, 0u);
  for (unsigned i = 0; i < TableCache::kTableBytes / 8; ++i) ASSERT_EQ(t[i], 0u);
  TableCache::put_zeroed(t);
}

TEST(TableCacheTest, ZeroedTablesAreReusedAndComeBackZeroed) {
  std::uint64_t* t = TableCache::get().value();
  const unsigned before = TableCache::cached_on_this_thread();
  TableCache::put_zeroed(t);
  EXPECT_EQ(TableCache::cached_on_this_thread(), before + 1);
  std::uint64_t* again = TableCache::get().value();
  EXPECT_EQ(again, t);
  EXPECT_EQ(again[0], 0u) << "the link word is cleared";
  TableCache::put_zeroed(again);
}

TEST(TableCacheTest, DirtyTablesAreNotCached) {
  std::uint64_t* t = TableCache::get().value();
  t[7] = 42;
  const unsigned before = TableCache::cached_on_this_thread();
  TableCache::put_dirty(t);
  EXPECT_EQ(TableCache::cached_on_this_thread(), before);
}

TEST(TableCacheTest, CacheIsBoundedAndPerThread) {
  std::thread([] {
    std::vector<std::uint64_t*> tables;
    for (unsigned i = 0; i < TableCache::kMaxCached + 10; ++i) tables.push_back(TableCache::get().value());
    for (std::uint64_t* t : tables) TableCache::put_zeroed(t);
    EXPECT_EQ(TableCache::cached_on_this_thread(), TableCache::kMaxCached);
  }).join();  // the thread's cache is freed at its exit (asan would report a leak otherwise)
}

}  // namespace
}  // namespace uiommufd
