#include "uiommufd/base/slab.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

namespace uiommufd {
namespace {

bool aligned(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

TEST(SlabTest, ObjectsAreAlignedDistinctAndWritable) {
  Slab slab(100, Slab::Source::kChunks);
  EXPECT_EQ(slab.object_size(), 128u);
  std::vector<void*> objs;
  std::set<void*> seen;
  for (int i = 0; i < 1000; ++i) {
    void* p = slab.alloc();
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(aligned(p, Slab::kAlign));
    EXPECT_TRUE(seen.insert(p).second) << "handed out twice";
    std::memset(p, i & 0xff, slab.object_size());
    objs.push_back(p);
  }
  // No object overlaps another: each still holds what was written into it.
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(static_cast<unsigned char*>(objs[i])[127], i & 0xff);
  EXPECT_EQ(slab.live_objects(), 1000u);
  for (void* p : objs) slab.free(p);
  EXPECT_EQ(slab.live_objects(), 0u);
}

TEST(SlabTest, AFreedObjectIsHandedOutAgain) {
  Slab slab(64, Slab::Source::kChunks);
  void* a = slab.alloc();
  void* b = slab.alloc();
  slab.free(a);
  void* c = slab.alloc();
  EXPECT_EQ(c, a);
  slab.free(b);
  slab.free(c);
}

TEST(SlabTest, ObjectsOfOneChunkShareItsAlignedRegion) {
  Slab slab(64, Slab::Source::kChunks);
  std::vector<void*> objs;
  for (std::size_t i = 0; i < slab.objects_per_chunk(); ++i) objs.push_back(slab.alloc());
  const auto chunk = reinterpret_cast<std::uintptr_t>(objs.front()) & ~(Slab::kChunkBytes - 1);
  for (void* p : objs) EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) & ~(Slab::kChunkBytes - 1), chunk);
  EXPECT_EQ(slab.chunks(), 1u);
  for (void* p : objs) slab.free(p);
}

TEST(SlabTest, AFullChunkMakesRoomInANewOne) {
  Slab slab(4096, Slab::Source::kChunks);
  std::vector<void*> objs;
  for (std::size_t i = 0; i < slab.objects_per_chunk() + 1; ++i) objs.push_back(slab.alloc());
  EXPECT_EQ(slab.chunks(), 2u);
  for (void* p : objs) slab.free(p);
}

TEST(SlabTest, EmptiedChunksAreGivenBackButOneSpare) {
  Slab slab(4096, Slab::Source::kChunks);
  std::vector<void*> objs;
  for (std::size_t i = 0; i < 3 * slab.objects_per_chunk(); ++i) objs.push_back(slab.alloc());
  EXPECT_EQ(slab.chunks(), 3u);
  for (void* p : objs) slab.free(p);
  EXPECT_EQ(slab.live_objects(), 0u);
  EXPECT_EQ(slab.chunks(), 1u);
  // The spare serves the next allocation without a new mapping.
  void* p = slab.alloc();
  EXPECT_EQ(slab.chunks(), 1u);
  slab.free(p);
}

// The first chunk stays on small pages (a small user touches little); later ones are advised huge.
TEST(SlabTest, ChunksAfterTheFirstAreAdvisedForHugePages) {
  Slab slab(4096, Slab::Source::kChunks);
  std::vector<void*> objs;
  for (std::size_t i = 0; i < 2 * slab.objects_per_chunk(); ++i) objs.push_back(slab.alloc());
  const auto first = reinterpret_cast<std::uintptr_t>(objs.front()) & ~(Slab::kChunkBytes - 1);
  const auto second = reinterpret_cast<std::uintptr_t>(objs.back()) & ~(Slab::kChunkBytes - 1);
  ASSERT_NE(first, second);
  // VmFlags "hg" marks a MADV_HUGEPAGE mapping.
  auto advised = [](std::uintptr_t start) {
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool in = false;
    while (std::getline(smaps, line)) {
      std::uintptr_t lo = 0, hi = 0;
      if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) {
        in = lo <= start && start < hi;
      } else if (in && line.rfind("VmFlags:", 0) == 0) {
        return line.find(" hg") != std::string::npos;
      }
    }
    return false;
  };
  EXPECT_FALSE(advised(first));
  EXPECT_TRUE(advised(second));
  for (void* p : objs) slab.free(p);
}

struct Tracked : SlabAllocated<Tracked> {
  std::uint64_t payload[10];
};

TEST(SlabTest, SlabAllocatedClassesComeFromTheirCache) {
  const std::size_t before = Tracked::slab().live_objects();
  auto* t = new Tracked();
  EXPECT_TRUE(aligned(t, Slab::kAlign));
  EXPECT_EQ(Tracked::slab().live_objects(), before + 1);
  delete t;
  EXPECT_EQ(Tracked::slab().live_objects(), before);
}

TEST(SlabTest, ConcurrentAllocAndFreeKeepTheCount) {
  Slab slab(192, Slab::Source::kChunks);
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<void*> mine;
      unsigned step = static_cast<unsigned>(t);
      while (!stop.load(std::memory_order_relaxed)) {
        step = step * 1103515245u + 12345u;
        if (mine.size() < 2000 && (mine.empty() || (step >> 16) % 3 != 0)) {
          void* p = slab.alloc();
          ASSERT_NE(p, nullptr);
          *static_cast<std::uint64_t*>(p) = reinterpret_cast<std::uintptr_t>(p);
          mine.push_back(p);
        } else {
          void* p = mine[(step >> 8) % mine.size()];
          ASSERT_EQ(*static_cast<std::uint64_t*>(p), reinterpret_cast<std::uintptr_t>(p)) << "shared object";
          std::swap(p, mine.back());
          mine.pop_back();
          slab.free(p);
        }
      }
      for (void* p : mine) slab.free(p);
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  for (auto& th : threads) th.join();
  EXPECT_EQ(slab.live_objects(), 0u);
}

// The lock is held across fork, so a child forked while another thread allocates can allocate too.
TEST(SlabTest, AChildForkedDuringAllocationCanAllocate) {
  Slab slab(64, Slab::Source::kChunks);
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load(std::memory_order_relaxed)) slab.free(slab.alloc());
  });
  for (int i = 0; i < 20; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      void* p = slab.alloc();
      slab.free(p);
      _exit(p != nullptr ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  stop = true;
  churn.join();
}

}  // namespace
}  // namespace uiommufd
