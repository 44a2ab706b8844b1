// Randomized model test: long sequences of map / copy / unmap / attach / detach on two IOASes, each step's
// result predicted by a simple reference model, and every invariant checked after every step.
#include <map>
#include <random>

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/iopt/io_pagetable.h"
#include "uiommufd/mm/mm.h"

namespace uiommufd {
namespace {

constexpr int kRW = kIommuRead | kIommuWrite;
constexpr std::uint64_t kBufPages = 256;
constexpr std::uint64_t kIovaBase = 0x1000000;
constexpr std::uint64_t kIovaPages = 1024;

// The model of one IOAS: IOVA start -> (last, backing address of the first byte).
struct ModelArea {
  std::uint64_t last;
  std::uint64_t backing;
};
using Model = std::map<std::uint64_t, ModelArea>;

bool overlaps(const Model& m, std::uint64_t start, std::uint64_t last) {
  auto it = m.upper_bound(last);
  if (it == m.begin()) return false;
  --it;
  return it->second.last >= start;
}

// The kernel's unmap: ascending, stop with ENOENT at the first area not wholly inside; earlier ones go.
int model_unmap(Model& m, std::uint64_t start, std::uint64_t last, std::uint64_t* bytes) {
  *bytes = 0;
  auto it = m.upper_bound(start);
  if (it != m.begin() && std::prev(it)->second.last >= start) --it;
  while (it != m.end() && it->first <= last) {
    if (it->first < start || it->second.last > last) return ENOENT;
    *bytes += it->second.last - it->first + 1;
    it = m.erase(it);
  }
  return 0;
}

struct Ioas {
  IoPagetable iopt;
  Model model;
  std::vector<std::unique_ptr<PageTableDomain>> domains;
  std::vector<Interval> reserved;  // all added with this Ioas as the owner
};

bool hits_reserved(const Ioas& x, std::uint64_t start, std::uint64_t last) {
  for (const Interval& r : x.reserved) {
    if (r.overlaps({start, last})) return true;
  }
  return false;
}

class IoptModelTest : public ::testing::TestWithParam<unsigned> {};

TEST_P(IoptModelTest, RandomSequencesMatchTheModelAndKeepInvariants) {
  const unsigned seed = GetParam();
  std::mt19937_64 rng(seed);
  void* mem =
      mmap(nullptr, kBufPages * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  const std::uint64_t buf = reinterpret_cast<std::uint64_t>(mem);
  const std::uint64_t pinned_before = Pages::total_pinned_pages();
  {
    Ioas io[2];
    auto pick = [&](std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng); };
    for (int step = 0; step < 1500; ++step) {
      Ioas& a = io[pick(2)];
      Ioas& b = io[pick(2)];
      const unsigned op = static_cast<unsigned>(pick(100));
      std::string what;
      if (op < 35) {  // map at a fixed IOVA
        std::uint64_t pages = 1 + pick(16), first = pick(kBufPages - pages);
        std::uint64_t iova = kIovaBase + pick(kIovaPages - pages) * kPageSize;
        std::uint64_t last = iova + pages * kPageSize - 1;
        auto p = Pages::create_user(Mm::current(), buf + first * kPageSize, pages * kPageSize, true,
                                    AccountMode::kNone);
        ASSERT_TRUE(p.ok());
        Status st = a.iopt.map_pages(*p, &iova, kRW, true);
        int expect = hits_reserved(a, iova, last) ? EINVAL : overlaps(a.model, iova, last) ? EEXIST : 0;
        ASSERT_EQ(st.error(), expect) << "seed " << seed << " step " << step << " fixed map";
        if (st.ok()) a.model[iova] = {last, buf + first * kPageSize};
      } else if (op < 45) {  // map at an allocated IOVA
        std::uint64_t pages = 1 + pick(16), first = pick(kBufPages - pages), iova = 0;
        auto p = Pages::create_user(Mm::current(), buf + first * kPageSize, pages * kPageSize, true,
                                    AccountMode::kNone);
        ASSERT_TRUE(p.ok());
        ASSERT_TRUE(a.iopt.map_pages(*p, &iova, kRW, false).ok()) << "seed " << seed << " step " << step;
        ASSERT_FALSE(overlaps(a.model, iova, iova + pages * kPageSize - 1));
        ASSERT_FALSE(hits_reserved(a, iova, iova + pages * kPageSize - 1));
        ASSERT_NE(iova, 0u);
        a.model[iova] = {iova + pages * kPageSize - 1, buf + first * kPageSize};
      } else if (op < 60 && !a.model.empty()) {  // copy a page-aligned slice of one area
        auto it = a.model.begin();
        std::advance(it, pick(a.model.size()));
        std::uint64_t area_pages = (it->second.last - it->first + 1) / kPageSize;
        std::uint64_t off = pick(area_pages), pages = 1 + pick(area_pages - off);
        std::uint64_t dst = kIovaBase + pick(kIovaPages - pages) * kPageSize;
        auto chunks = a.iopt.get_chunks(it->first + off * kPageSize, pages * kPageSize);
        ASSERT_TRUE(chunks.ok()) << "seed " << seed << " step " << step;
        Status st = b.iopt.map_chunks(*chunks, &dst, kRW, true);
        const std::uint64_t dst_last = dst + pages * kPageSize - 1;
        int expect = hits_reserved(b, dst, dst_last) ? EINVAL : overlaps(b.model, dst, dst_last) ? EEXIST : 0;
        ASSERT_EQ(st.error(), expect) << "seed " << seed << " step " << step << " copy";
        if (st.ok()) b.model[dst] = {dst + pages * kPageSize - 1, it->second.backing + off * kPageSize};
      } else if (op < 85) {  // unmap a random range
        std::uint64_t start = kIovaBase + pick(kIovaPages) * kPageSize;
        std::uint64_t last = start + (1 + pick(64)) * kPageSize - 1;
        std::uint64_t got = 0, want = 0;
        Status st = a.iopt.unmap_range({start, last}, &got);
        int expect = model_unmap(a.model, start, last, &want);
        ASSERT_EQ(st.error(), expect) << "seed " << seed << " step " << step << " unmap";
        ASSERT_EQ(got, want);
      } else if (op < 89) {  // reserve a range amid the areas, or give this IOAS's reservations back
        if (!a.reserved.empty() && pick(2) == 0) {
          a.iopt.remove_reserved(&a);
          a.reserved.clear();
        } else {
          std::uint64_t start = kIovaBase + pick(kIovaPages) * kPageSize;
          std::uint64_t last = start + (1 + pick(8)) * kPageSize - 1;
          Status st = a.iopt.add_reserved({start, last}, &a);
          ASSERT_EQ(st.error(), overlaps(a.model, start, last) ? EADDRINUSE : 0)
              << "seed " << seed << " step " << step << " reserve";
          if (st.ok()) a.reserved.push_back({start, last});
        }
      } else if (op < 95 && a.domains.size() < 2) {  // attach a domain
        auto d = PageTableDomain::create({});
        ASSERT_TRUE(d.ok());
        ASSERT_TRUE(a.iopt.add_domain(d->get()).ok()) << "seed " << seed << " step " << step;
        a.domains.push_back(std::move(*d));
      } else if (!a.domains.empty()) {  // detach one
        std::size_t i = pick(a.domains.size());
        a.iopt.remove_domain(a.domains[i].get());
        a.domains.erase(a.domains.begin() + static_cast<std::ptrdiff_t>(i));
      }
      for (Ioas& x : io) {
        ASSERT_EQ(x.iopt.check_invariants(), "") << "seed " << seed << " step " << step;
        auto areas = x.iopt.areas();
        ASSERT_EQ(areas.size(), x.model.size()) << "seed " << seed << " step " << step;
        auto m = x.model.begin();
        for (const auto& ar : areas) {
          ASSERT_EQ(ar.iova.start, m->first);
          ASSERT_EQ(ar.iova.last, m->second.last);
          ASSERT_EQ(ar.pages->page_phys(0) + ar.start_byte, m->second.backing);
          ++m;
        }
      }
    }
    for (Ioas& x : io) {
      for (auto& d : x.domains) x.iopt.remove_domain(d.get());
    }
  }
  EXPECT_EQ(Pages::total_pinned_pages(), pinned_before);
  munmap(mem, kBufPages * kPageSize);
}

INSTANTIATE_TEST_SUITE_P(Seeds, IoptModelTest, ::testing::Range(1u, 9u));

}  // namespace
}  // namespace uiommufd
