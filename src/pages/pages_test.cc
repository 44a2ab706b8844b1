#include "uiommufd/pages/pages.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../mm/test_region.h"
#include "pages_testing.h"

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd {
namespace {

constexpr std::uint64_t kSizeMax = std::numeric_limits<std::size_t>::max();
constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

// An anonymous mapping owned by the test.
class Region {
 public:
  explicit Region(std::uint64_t npages, int prot = PROT_READ | PROT_WRITE) : len_(npages * kPageSize) {
    addr_ = ::mmap(nullptr, len_, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(addr_, MAP_FAILED);
  }
  ~Region() { ::munmap(addr_, len_); }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  std::uint64_t uaddr() const { return reinterpret_cast<std::uint64_t>(addr_); }
  char* data() const { return static_cast<char*>(addr_); }

 private:
  std::uint64_t len_;
  void* addr_;
};

using pages_testing::Memfd;
using pages_testing::npinned;
using pages_testing::pin;
using pages_testing::unpin;
using pages_testing::users;

RefPtr<Pages> user_pages(std::uint64_t uptr, std::uint64_t length, bool writable = true,
                         AccountMode mode = AccountMode::kUser) {
  auto r = Pages::create_user(Mm::current(), uptr, length, writable, mode);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? std::move(*r) : RefPtr<Pages>();
}

// Every test starts and must end with no pins and no charges anywhere, and without lock reports.
class PagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(Pages::total_pinned_pages(), 0u);
    user_before_ = account_locked_pages(AccountMode::kUser);
    mm_before_ = account_locked_pages(AccountMode::kMm);
    reports_before_ = lockdep::report_count();
  }
  void TearDown() override {
    set_memlock_limit_for_testing(std::nullopt);
    fail_nth_set(0);
    EXPECT_EQ(Pages::total_pinned_pages(), 0u);
    EXPECT_EQ(account_locked_pages(AccountMode::kUser), user_before_);
    EXPECT_EQ(account_locked_pages(AccountMode::kMm), mm_before_);
    EXPECT_EQ(lockdep::report_count(), reports_before_);
  }
  std::uint64_t user_charged() const { return account_locked_pages(AccountMode::kUser) - user_before_; }
  std::uint64_t mm_charged() const { return account_locked_pages(AccountMode::kMm) - mm_before_; }

  std::uint64_t user_before_ = 0;
  std::uint64_t mm_before_ = 0;
  std::size_t reports_before_ = 0;
};

// ---- creation --------------------------------------------------------------------------------------------

TEST_F(PagesTest, CreateUserRejectsZeroLength) {
  Region r(1);
  EXPECT_EQ(Pages::create_user(Mm::current(), r.uaddr(), 0, true, AccountMode::kUser).error(), EINVAL);
}

TEST_F(PagesTest, CreateUserRejectsLengthAboveSizeMaxMinusPage) {
  EXPECT_EQ(Pages::create_user(Mm::current(), 0, kSizeMax - kPageSize + 1, true, AccountMode::kUser).error(), EINVAL);
  // The largest allowed length is fine: nothing is touched at creation.
  auto p = Pages::create_user(Mm::current(), 0, kSizeMax - kPageSize, true, AccountMode::kUser);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->npages(), (kSizeMax - kPageSize + kPageSize - 1) / kPageSize);
}

TEST_F(PagesTest, CreateUserRejectsUptrPlusLengthOverflow) {
  EXPECT_EQ(Pages::create_user(Mm::current(), kU64Max - 10, 11, true, AccountMode::kUser).error(), EOVERFLOW);
  // uptr + length == U64_MAX still fits.
  EXPECT_TRUE(Pages::create_user(Mm::current(), kU64Max - 10, 10, true, AccountMode::kUser).ok());
  // EINVAL is checked before EOVERFLOW, as in the kernel's iopt_alloc_pages.
  EXPECT_EQ(Pages::create_user(Mm::current(), kU64Max, 0, true, AccountMode::kUser).error(), EINVAL);
}

TEST_F(PagesTest, CreateUserFailsWithEnomemAtTheAllocSite) {
  Region r(1);
  fail_nth_set(1);
  auto p = Pages::create_user(Mm::current(), r.uaddr(), kPageSize, true, AccountMode::kUser);
  EXPECT_EQ(fail_nth_get(), 0u);
  EXPECT_EQ(p.error(), ENOMEM);
  EXPECT_STREQ(last_injected_fault(), "pages.alloc");
}

TEST_F(PagesTest, CreateFileRejectsBadFd) {
  EXPECT_EQ(Pages::create_file(-1, 0, kPageSize, true, AccountMode::kUser).error(), EBADF);
  int fd = ::memfd_create("closed", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_EQ(Pages::create_file(fd, 0, kPageSize, true, AccountMode::kUser).error(), EBADF);
  // EBADF comes first, as fget does before the length checks.
  EXPECT_EQ(Pages::create_file(fd, 0, 0, true, AccountMode::kUser).error(), EBADF);
}

TEST_F(PagesTest, CreateFileRejectsZeroLengthAndOverflow) {
  Memfd f(1);
  EXPECT_EQ(Pages::create_file(f.fd(), 0, 0, true, AccountMode::kUser).error(), EINVAL);
  EXPECT_EQ(Pages::create_file(f.fd(), kU64Max - 5, 7, true, AccountMode::kUser).error(), EOVERFLOW);
  EXPECT_EQ(Pages::create_file(f.fd(), 0, kSizeMax - kPageSize + 1, true, AccountMode::kUser).error(), EINVAL);
}

TEST_F(PagesTest, CreateFileOnAPipeIsEinval) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  EXPECT_EQ(Pages::create_file(fds[0], 0, kPageSize, false, AccountMode::kUser).error(), EINVAL);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_F(PagesTest, CreateFileWritableOnAReadOnlyFdIsEacces) {
  Memfd f(1);
  const std::string path = "/proc/self/fd/" + std::to_string(f.fd());
  const int ro = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(ro, 0);
  EXPECT_EQ(Pages::create_file(ro, 0, kPageSize, true, AccountMode::kUser).error(), EACCES);
  EXPECT_TRUE(Pages::create_file(ro, 0, kPageSize, false, AccountMode::kUser).ok());
  ::close(ro);
}

TEST_F(PagesTest, CreateFileFailsWithEnomemAtTheAllocSiteAndLeaksNoFd) {
  Memfd f(1);
  const int probe_before = ::fcntl(0, F_DUPFD_CLOEXEC, 0);
  ::close(probe_before);
  fail_nth_set(1);
  EXPECT_EQ(Pages::create_file(f.fd(), 0, kPageSize, true, AccountMode::kUser).error(), ENOMEM);
  EXPECT_EQ(fail_nth_get(), 0u);
  const int probe_after = ::fcntl(0, F_DUPFD_CLOEXEC, 0);
  ::close(probe_after);
  EXPECT_EQ(probe_after, probe_before);  // lowest free descriptor unchanged: no dup left behind
}

// ---- geometry --------------------------------------------------------------------------------------------

TEST_F(PagesTest, GeometryOfAnUnalignedUserRange) {
  Region r(4);
  auto p = user_pages(r.uaddr() + 100, kPageSize);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->kind(), PagesKind::kUser);
  EXPECT_EQ(p->npages(), 2u);  // 100 bytes into page 0, spilling 100 bytes into page 1
  EXPECT_EQ(p->start_offset(), 100u);
  EXPECT_EQ(p->length(), kPageSize);
  EXPECT_EQ(p->source_addr(), r.uaddr() + 100);
  EXPECT_EQ(p->page_phys(0), r.uaddr());
  EXPECT_EQ(p->page_phys(1), r.uaddr() + kPageSize);
  EXPECT_EQ(p->host_page(1), r.data() + kPageSize);
  EXPECT_TRUE(p->writable());
  EXPECT_EQ(p->account_mode(), AccountMode::kUser);
}

TEST_F(PagesTest, GeometryOfAnAlignedUserRange) {
  Region r(4);
  auto p = user_pages(r.uaddr(), 3 * kPageSize, false, AccountMode::kNone);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->npages(), 3u);
  EXPECT_EQ(p->start_offset(), 0u);
  EXPECT_FALSE(p->writable());
  EXPECT_EQ(p->account_mode(), AccountMode::kNone);
  // One byte more needs one page more.
  auto q = user_pages(r.uaddr(), 3 * kPageSize + 1);
  EXPECT_EQ(q->npages(), 4u);
}

// ---- lazy pinning ----------------------------------------------------------------------------------------

TEST_F(PagesTest, CreatingPagesOverProtNoneTouchesNothingAndPinningFailsCleanly) {
  Region r(4, PROT_NONE);
  auto p = user_pages(r.uaddr(), 4 * kPageSize);
  ASSERT_TRUE(p);
  EXPECT_EQ(pin(*p, 0, 3).error(), EFAULT);
  EXPECT_EQ(npinned(*p), 0u);
  EXPECT_EQ(users(*p, 0), 0u);
  EXPECT_EQ(user_charged(), 0u);
}

TEST_F(PagesTest, PinningAnUnmappedRangeFailsWithEfault) {
  const std::uint64_t hole = mm_testing::kHoleUaddr;
  ASSERT_TRUE(mm_testing::is_hole(hole, 4));
  auto p = user_pages(hole, 4 * kPageSize);
  ASSERT_TRUE(p);
  EXPECT_EQ(pin(*p, 1, 2).error(), EFAULT);
  EXPECT_EQ(npinned(*p), 0u);
}

TEST_F(PagesTest, WritablePagesOverReadOnlyMemoryFailToPin) {
  Region r(2, PROT_READ);
  auto rw = user_pages(r.uaddr(), 2 * kPageSize, /*writable=*/true);
  EXPECT_EQ(pin(*rw, 0, 1).error(), EFAULT);
  EXPECT_EQ(npinned(*rw), 0u);
  auto ro = user_pages(r.uaddr(), 2 * kPageSize, /*writable=*/false);
  EXPECT_TRUE(pin(*ro, 0, 1).ok());
  EXPECT_EQ(user_charged(), 2u);
  unpin(*ro, 0, 1);
}

TEST_F(PagesTest, PinFailureAfterSomeRunsSucceededUndoesAllOfThem) {
  // Page 2 is PROT_NONE. With index 1 already pinned, pinning [0, 3] has two fresh runs: [0, 0] is made
  // resident, then [2, 3] fails; the pin of [0, 0] and the extra user of index 1 must both be undone.
  Region r(4);
  ASSERT_EQ(::mprotect(r.data() + 2 * kPageSize, kPageSize, PROT_NONE), 0);
  auto p = user_pages(r.uaddr(), 4 * kPageSize);
  ASSERT_TRUE(pin(*p, 1, 1).ok());
  EXPECT_EQ(pin(*p, 0, 3).error(), EFAULT);
  EXPECT_EQ(npinned(*p), 1u);
  EXPECT_EQ(users(*p, 0), 0u);
  EXPECT_EQ(users(*p, 1), 1u);
  EXPECT_EQ(user_charged(), 1u);
  unpin(*p, 1, 1);
}

// ---- counting --------------------------------------------------------------------------------------------

TEST_F(PagesTest, PinRejectsRangesOutsideThePages) {
  Region r(4);
  auto p = user_pages(r.uaddr(), 4 * kPageSize);
  EXPECT_EQ(pin(*p, 0, 4).error(), EINVAL);
  EXPECT_EQ(pin(*p, 3, 2).error(), EINVAL);
  EXPECT_EQ(npinned(*p), 0u);
}

TEST_F(PagesTest, OverlappingPinsCountEachIndexOnceAndChargeOnce) {
  Region r(8);
  auto p = user_pages(r.uaddr(), 8 * kPageSize);
  ASSERT_TRUE(pin(*p, 0, 3).ok());
  ASSERT_TRUE(pin(*p, 2, 5).ok());
  EXPECT_EQ(npinned(*p), 6u);
  EXPECT_EQ(user_charged(), 6u);
  EXPECT_EQ(Pages::total_pinned_pages(), 6u);
  EXPECT_EQ(users(*p, 1), 1u);
  EXPECT_EQ(users(*p, 2), 2u);
  EXPECT_EQ(users(*p, 6), 0u);
  ASSERT_TRUE(pin(*p, 0, 5).ok());  // nothing new: no charge
  EXPECT_EQ(user_charged(), 6u);
  unpin(*p, 0, 5);

  unpin(*p, 0, 3);
  EXPECT_EQ(npinned(*p), 4u);  // 2, 3 (held by the second pin), 4, 5
  EXPECT_EQ(user_charged(), 4u);
  unpin(*p, 2, 5);
  EXPECT_EQ(npinned(*p), 0u);
  EXPECT_EQ(user_charged(), 0u);
}

TEST_F(PagesTest, PinBookkeepingScalesWithRunsNotPages) {
  Region r(1024);
  auto p = user_pages(r.uaddr(), 1024 * kPageSize);
  ASSERT_TRUE(pin(*p, 0, 1023).ok());
  ASSERT_TRUE(pin(*p, 100, 199).ok());
  {
    lockdep::MutexGuard g(p->mutex());
    EXPECT_EQ(p->pin_run_count_locked(), 3u);
    EXPECT_EQ(p->npinned_locked(), 1024u);
  }
  unpin(*p, 100, 199);
  unpin(*p, 0, 1023);
}

TEST_F(PagesTest, PinMakesThePagesResidentAndWritable) {
  Region r(4);
  auto p = user_pages(r.uaddr() + 10, 3 * kPageSize);
  ASSERT_TRUE(pin(*p, 0, p->npages() - 1).ok());
  EXPECT_EQ(p->npages(), 4u);
  std::vector<unsigned char> vec(4);
  ASSERT_EQ(::mincore(r.data(), 4 * kPageSize, vec.data()), 0);
  for (unsigned char v : vec) EXPECT_TRUE(v & 1);
  std::memcpy(p->host_page(2), "abc", 3);
  EXPECT_EQ(std::memcmp(r.data() + 2 * kPageSize, "abc", 3), 0);
  unpin(*p, 0, p->npages() - 1);
}

// ---- failure unwinding -----------------------------------------------------------------------------------

TEST_F(PagesTest, EveryFaultSiteOfAFreshPinUnwindsCompletely) {
  Region r(512);  // a 2 MiB pin: the site budget must not depend on its length
  auto p = user_pages(r.uaddr(), 512 * kPageSize);
  const std::uint64_t pinned_vm_before = account_pinned_vm();
  SweepResult res = sweep_fail_nth(
      [&] {
        if (npinned(*p) != 0) unpin(*p, 0, 511);
      },
      [&] { return pin(*p, 0, 511); },
      [&](unsigned n, Status st) {
        if (st.ok()) return;
        EXPECT_EQ(npinned(*p), 0u) << "n=" << n;
        EXPECT_EQ(user_charged(), 0u) << "n=" << n;
        EXPECT_EQ(account_pinned_vm(), pinned_vm_before) << "n=" << n;
        EXPECT_EQ(Pages::total_pinned_pages(), 0u) << "n=" << n;
      });
  EXPECT_TRUE(res.final_status.ok());
  EXPECT_FALSE(res.hit_cap);
  EXPECT_EQ(res.fired_sites, (std::vector<std::string>{"pages.pin", "pages.account"}));
  EXPECT_EQ(npinned(*p), 512u);
  unpin(*p, 0, 511);
}

TEST_F(PagesTest, EveryFaultSiteOfAPinOverExistingPinsRestoresThem) {
  Region r(16);
  auto p = user_pages(r.uaddr(), 16 * kPageSize, true, AccountMode::kMm);
  ASSERT_TRUE(pin(*p, 2, 3).ok());
  ASSERT_TRUE(pin(*p, 8, 9).ok());
  SweepResult res = sweep_fail_nth(
      [&] {
        if (npinned(*p) != 4) unpin(*p, 0, 15);
      },
      [&] { return pin(*p, 0, 15); },
      [&](unsigned n, Status st) {
        if (st.ok()) return;
        EXPECT_EQ(npinned(*p), 4u);
        EXPECT_EQ(mm_charged(), 4u);
        EXPECT_EQ(users(*p, 2), 1u);
        EXPECT_EQ(users(*p, 9), 1u);
        EXPECT_EQ(users(*p, 0), 0u);
        lockdep::MutexGuard g(p->mutex());
        EXPECT_EQ(p->pin_run_count_locked(), 2u);
      });
  EXPECT_TRUE(res.final_status.ok());
  EXPECT_EQ(res.sites_failed, 2u);
  EXPECT_EQ(mm_charged(), 16u);
  unpin(*p, 0, 15);
  unpin(*p, 2, 3);
  unpin(*p, 8, 9);
}

TEST_F(PagesTest, PinOfAlreadyPinnedIndicesHitsNoFaultSite) {
  Region r(4);
  auto p = user_pages(r.uaddr(), 4 * kPageSize);
  ASSERT_TRUE(pin(*p, 0, 3).ok());
  fail_nth_set(1);
  EXPECT_TRUE(pin(*p, 1, 2).ok());
  EXPECT_EQ(fail_nth_get(), 1u);  // still armed: no site consumed it
  fail_nth_set(0);
  unpin(*p, 1, 2);
  unpin(*p, 0, 3);
}

// ---- accounting ------------------------------------------------------------------------------------------

TEST_F(PagesTest, UserModeChargeOverTheMemlockLimitIsEnomemAndUndone) {
  Region r(16);
  set_memlock_limit_for_testing(user_before_ + 8);
  auto p = user_pages(r.uaddr(), 16 * kPageSize, true, AccountMode::kUser);
  ASSERT_TRUE(pin(*p, 0, 7).ok());
  EXPECT_EQ(pin(*p, 4, 8).error(), ENOMEM);
  EXPECT_EQ(npinned(*p), 8u);
  EXPECT_EQ(users(*p, 4), 1u);
  EXPECT_EQ(users(*p, 8), 0u);
  EXPECT_EQ(user_charged(), 8u);
  EXPECT_TRUE(pin(*p, 4, 7).ok());  // already-pinned indices need no charge
  unpin(*p, 4, 7);
  unpin(*p, 0, 7);
  EXPECT_TRUE(pin(*p, 8, 15).ok());
  unpin(*p, 8, 15);
}

TEST_F(PagesTest, MmModeChargeOverTheMemlockLimitIsEnomem) {
  Region r(16);
  set_memlock_limit_for_testing(mm_before_ + 4);
  auto p = user_pages(r.uaddr(), 16 * kPageSize, true, AccountMode::kMm);
  EXPECT_EQ(pin(*p, 0, 4).error(), ENOMEM);
  EXPECT_EQ(npinned(*p), 0u);
  EXPECT_EQ(mm_charged(), 0u);
  ASSERT_TRUE(pin(*p, 0, 3).ok());
  EXPECT_EQ(mm_charged(), 4u);
  EXPECT_EQ(user_charged(), 0u);  // modes are separate counters
  unpin(*p, 0, 3);
}

TEST_F(PagesTest, NoneModeIsNeitherLimitedNorCharged) {
  Region r(16);
  set_memlock_limit_for_testing(0);
  auto p = user_pages(r.uaddr(), 16 * kPageSize, true, AccountMode::kNone);
  const std::uint64_t pinned_vm_before = account_pinned_vm();
  ASSERT_TRUE(pin(*p, 0, 15).ok());
  EXPECT_EQ(user_charged(), 0u);
  EXPECT_EQ(mm_charged(), 0u);
  EXPECT_EQ(account_pinned_vm(), pinned_vm_before + 16);  // statistics still count it
  EXPECT_EQ(Pages::total_pinned_pages(), 16u);
  unpin(*p, 0, 15);
  EXPECT_EQ(account_pinned_vm(), pinned_vm_before);
}

// ---- file-backed pages -----------------------------------------------------------------------------------

TEST_F(PagesTest, FilePagesSeeWhatIsWrittenThroughTheFdAndTheOtherWayRound) {
  Memfd f(4);
  const char msg[] = "written via the fd";
  ASSERT_EQ(::pwrite(f.fd(), msg, sizeof(msg), kPageSize + 100), static_cast<ssize_t>(sizeof(msg)));
  auto r = Pages::create_file(f.fd(), kPageSize + 100, 2 * kPageSize, true, AccountMode::kUser);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  RefPtr<Pages> p = std::move(*r);
  f.close();  // the Pages holds its own descriptor and mapping
  EXPECT_EQ(p->kind(), PagesKind::kFile);
  EXPECT_EQ(p->npages(), 3u);
  EXPECT_EQ(p->start_offset(), 100u);
  EXPECT_EQ(p->source_addr(), kPageSize + 100);
  EXPECT_EQ(p->file_offset(), kPageSize);
  EXPECT_EQ(p->page_phys(1), p->page_phys(0) + kPageSize);
  EXPECT_EQ(reinterpret_cast<std::uint64_t>(p->host_page(2)), p->page_phys(2));

  ASSERT_TRUE(pin(*p, 0, 2).ok());
  EXPECT_EQ(user_charged(), 3u);
  EXPECT_EQ(std::memcmp(static_cast<char*>(p->host_page(0)) + 100, msg, sizeof(msg)), 0);
  std::memcpy(static_cast<char*>(p->host_page(2)) + 7, "back", 4);
  unpin(*p, 0, 2);
}

TEST_F(PagesTest, FileWritesThroughHostPageReachTheFile) {
  Memfd f(2);
  auto p = Pages::create_file(f.fd(), 0, 2 * kPageSize, true, AccountMode::kNone);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(pin(**p, 0, 1).ok());
  std::memcpy(static_cast<char*>((*p)->host_page(1)) + 5, "hello", 5);
  char buf[5] = {};
  ASSERT_EQ(::pread(f.fd(), buf, 5, kPageSize + 5), 5);
  EXPECT_EQ(std::memcmp(buf, "hello", 5), 0);
  unpin(**p, 0, 1);
}

TEST_F(PagesTest, ReadOnlyMemfdMapsAndPinsWithWritableFalse) {
  Memfd f(1);
  ASSERT_EQ(::pwrite(f.fd(), "ro", 2, 0), 2);
  const std::string path = "/proc/self/fd/" + std::to_string(f.fd());
  const int ro = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(ro, 0);
  auto p = Pages::create_file(ro, 0, kPageSize, false, AccountMode::kUser);
  ::close(ro);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE((*p)->writable());
  ASSERT_TRUE(pin(**p, 0, 0).ok());
  EXPECT_EQ(std::memcmp((*p)->host_page(0), "ro", 2), 0);
  unpin(**p, 0, 0);
}

TEST_F(PagesTest, SealedMemfdRefusesAWritableMapping) {
  const int fd = ::memfd_create("sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, kPageSize), 0);
  ASSERT_EQ(::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), 0);
  EXPECT_EQ(Pages::create_file(fd, 0, kPageSize, true, AccountMode::kUser).error(), EPERM);
  EXPECT_TRUE(Pages::create_file(fd, 0, kPageSize, false, AccountMode::kUser).ok());
  ::close(fd);
}

// The kernel's memfd_pin_folios refuses any range whose last byte is at or past the end of the file, with
// EINVAL, and reads the size when it pins.
TEST_F(PagesTest, FileWindowPastEndOfFileIsAcceptedButPinningThereIsEinval) {
  Memfd f(1);
  auto p = Pages::create_file(f.fd(), 0, 4 * kPageSize, true, AccountMode::kUser);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(pin(**p, 0, 0).ok());
  EXPECT_EQ(pin(**p, 0, 3).error(), EINVAL);
  EXPECT_EQ(npinned(**p), 1u);
  EXPECT_EQ(user_charged(), 1u);
  // A page only partly inside the file reaches past its end too.
  ASSERT_EQ(::ftruncate(f.fd(), kPageSize + 100), 0);
  EXPECT_EQ(pin(**p, 1, 1).error(), EINVAL);
  // Once the file has grown, the same pages pin.
  ASSERT_EQ(::ftruncate(f.fd(), 4 * kPageSize), 0);
  ASSERT_TRUE(pin(**p, 0, 3).ok());
  EXPECT_EQ(npinned(**p), 4u);
  unpin(**p, 0, 3);
  unpin(**p, 0, 0);
  EXPECT_EQ(user_charged(), 0u);
}

TEST_F(PagesTest, TwoFileMappingsOfOneRangeHaveDifferentAddressesButOneIdentity) {
  Memfd f(1);
  auto a = Pages::create_file(f.fd(), 0, kPageSize, true, AccountMode::kNone);
  auto b = Pages::create_file(f.fd(), 0, kPageSize, true, AccountMode::kNone);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)->page_phys(0), (*b)->page_phys(0));
  EXPECT_EQ((*a)->file_identity(0), (*b)->file_identity(0));
  EXPECT_TRUE(MapsSnapshot::take().same_pages((*a)->page_phys(0), (*b)->page_phys(0), kPageSize));
  ASSERT_TRUE(pin(**a, 0, 0).ok());
  ASSERT_TRUE(pin(**b, 0, 0).ok());
  std::memcpy((*a)->host_page(0), "x", 1);
  EXPECT_EQ(*static_cast<char*>((*b)->host_page(0)), 'x');
  unpin(**a, 0, 0);
  unpin(**b, 0, 0);
}

TEST_F(PagesTest, FilePagesRecordTheFilesDeviceInodeAndPageOffsets) {
  Memfd f(4);
  auto p = Pages::create_file(f.fd(), 2 * kPageSize + 5, kPageSize, false, AccountMode::kNone);
  ASSERT_TRUE(p.ok());
  struct stat st {};
  ASSERT_EQ(::fstat(f.fd(), &st), 0);
  EXPECT_EQ((*p)->file_identity(1), (PageIdentity{static_cast<std::uint64_t>(st.st_dev),
                                                  static_cast<std::uint64_t>(st.st_ino), 3 * kPageSize}));
  // The identity the address space gives the Pages' own window is the same.
  EXPECT_EQ(MapsSnapshot::take().identity((*p)->page_phys(1)), (*p)->file_identity(1));
}

// ---- concurrency -----------------------------------------------------------------------------------------

TEST_F(PagesTest, ConcurrentPinAndUnpinUnderTheMutexKeepCountsAndChargesEqual) {
  constexpr std::uint64_t kPages = 64;
  Region r(kPages);
  auto p = user_pages(r.uaddr(), kPages * kPageSize, true, AccountMode::kUser);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> ops{0};
  auto worker = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> mine;
    while (!stop.load(std::memory_order_relaxed)) {
      lockdep::MutexGuard g(p->mutex());
      if (mine.empty() || (mine.size() < 8 && rng() % 2 == 0)) {
        const std::uint64_t first = rng() % kPages;
        const std::uint64_t last = first + rng() % std::min<std::uint64_t>(16, kPages - first);
        if (p->pin_locked(first, last).ok()) mine.emplace_back(first, last);
      } else {
        const std::size_t k = rng() % mine.size();
        p->unpin_locked(mine[k].first, mine[k].second);
        mine[k] = mine.back();
        mine.pop_back();
      }
      // The invariant tests rely on: what is pinned is exactly what is charged.
      EXPECT_EQ(p->npinned_locked(), user_charged());
      ops.fetch_add(1, std::memory_order_relaxed);
    }
    lockdep::MutexGuard g(p->mutex());
    for (const auto& [first, last] : mine) p->unpin_locked(first, last);
  };
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 4; ++i) threads.emplace_back(worker, i + 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_GT(ops.load(), 100u);
  EXPECT_EQ(npinned(*p), 0u);
}

// ---- destruction -----------------------------------------------------------------------------------------

TEST_F(PagesTest, DestroyingPagesWithPinsIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Region r(1);
        auto p = user_pages(r.uaddr(), kPageSize);
        (void)pin(*p, 0, 0);
        p.reset();
      },
      "pins_.empty");
}

// ---- pin_count_is (MD_CHECK_REFS) ----

bool pin_count_is(std::uint64_t uaddr, std::uint64_t npages, std::uint32_t refs) {
  return Pages::pin_count_is(*Mm::current(), uaddr, npages * kPageSize, refs);
}

TEST_F(PagesTest, PinCountIsZeroForMemoryNobodyPins) {
  Region r(4);
  RefPtr<Pages> p = user_pages(r.uaddr(), 4 * kPageSize);
  EXPECT_TRUE(pin_count_is(r.uaddr(), 4, 0));
  EXPECT_FALSE(pin_count_is(r.uaddr(), 4, 1));
}

TEST_F(PagesTest, PinCountCountsEachPagesObjectOnceHoweverManyUsersItHas) {
  Region r(4);
  RefPtr<Pages> p = user_pages(r.uaddr(), 4 * kPageSize);
  ASSERT_TRUE(pin(*p, 0, 3).ok());
  ASSERT_TRUE(pin(*p, 1, 2).ok());  // a second user of the middle pages: still one pin of each
  EXPECT_TRUE(pin_count_is(r.uaddr(), 4, 1));
  unpin(*p, 1, 2);
  unpin(*p, 0, 3);
}

TEST_F(PagesTest, PinCountAddsSeparatePagesObjectsOfTheSameMemory) {
  Region r(4);
  RefPtr<Pages> a = user_pages(r.uaddr(), 4 * kPageSize);
  RefPtr<Pages> b = user_pages(r.uaddr() + kPageSize, 2 * kPageSize);
  ASSERT_TRUE(pin(*a, 0, 3).ok());
  ASSERT_TRUE(pin(*b, 0, 1).ok());
  EXPECT_TRUE(pin_count_is(r.uaddr() + kPageSize, 2, 2));
  EXPECT_TRUE(pin_count_is(r.uaddr(), 1, 1));
  EXPECT_TRUE(pin_count_is(r.uaddr() + 3 * kPageSize, 1, 1));
  // A range mixing counts matches none of them.
  EXPECT_FALSE(pin_count_is(r.uaddr(), 4, 1));
  EXPECT_FALSE(pin_count_is(r.uaddr(), 4, 2));
  unpin(*b, 0, 1);
  unpin(*a, 0, 3);
}

TEST_F(PagesTest, PinCountSeesAPartlyPinnedRangeAsMixed) {
  Region r(8);
  RefPtr<Pages> p = user_pages(r.uaddr(), 8 * kPageSize);
  ASSERT_TRUE(pin(*p, 2, 3).ok());
  EXPECT_TRUE(pin_count_is(r.uaddr() + 2 * kPageSize, 2, 1));
  EXPECT_TRUE(pin_count_is(r.uaddr() + 4 * kPageSize, 4, 0));
  EXPECT_FALSE(pin_count_is(r.uaddr(), 8, 0));
  unpin(*p, 2, 3);
}

TEST_F(PagesTest, PinCountForgetsAPagesObjectOnceItIsGone) {
  Region r(2);
  {
    RefPtr<Pages> p = user_pages(r.uaddr(), 2 * kPageSize);
    ASSERT_TRUE(pin(*p, 0, 1).ok());
    unpin(*p, 0, 1);
  }
  EXPECT_TRUE(pin_count_is(r.uaddr(), 2, 0));
}

// An mmap of a memfd, unmapped at the end of the test.
class FileMap {
 public:
  FileMap(int fd, std::uint64_t npages, int flags = MAP_SHARED, int prot = PROT_READ | PROT_WRITE)
      : len_(npages * kPageSize), addr_(::mmap(nullptr, len_, prot, flags, fd, 0)) {
    EXPECT_NE(addr_, MAP_FAILED);
  }
  ~FileMap() { ::munmap(addr_, len_); }
  FileMap(const FileMap&) = delete;
  FileMap& operator=(const FileMap&) = delete;
  std::uint64_t uaddr() const { return reinterpret_cast<std::uint64_t>(addr_); }
  char* data() const { return static_cast<char*>(addr_); }

 private:
  std::uint64_t len_;
  void* addr_;
};

TEST_F(PagesTest, PinCountSeesFilePagesThroughAnMmapOfTheFile) {
  Memfd f(4);
  FileMap m(f.fd(), 4);
  auto p = Pages::create_file(f.fd(), kPageSize, 2 * kPageSize, true, AccountMode::kNone);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(pin_count_is(m.uaddr(), 4, 0));
  ASSERT_TRUE(pin(**p, 0, 1).ok());
  EXPECT_TRUE(pin_count_is(m.uaddr() + kPageSize, 2, 1));
  EXPECT_TRUE(pin_count_is(m.uaddr(), 1, 0));
  EXPECT_TRUE(pin_count_is(m.uaddr() + 3 * kPageSize, 1, 0));
  EXPECT_FALSE(pin_count_is(m.uaddr(), 4, 1));
  unpin(**p, 0, 1);
  EXPECT_TRUE(pin_count_is(m.uaddr(), 4, 0));
}

TEST_F(PagesTest, PinCountAddsAFilePinAndAUserPinOfTheSameMemfdPages) {
  // Two iopt_pages holding one page: the kernel's count is 2.
  Memfd f(2);
  FileMap m(f.fd(), 2);
  auto file = Pages::create_file(f.fd(), 0, 2 * kPageSize, true, AccountMode::kNone);
  ASSERT_TRUE(file.ok());
  RefPtr<Pages> user = user_pages(m.uaddr(), 2 * kPageSize);
  ASSERT_TRUE(pin(**file, 0, 1).ok());
  ASSERT_TRUE(pin(*user, 1, 1).ok());
  EXPECT_TRUE(pin_count_is(m.uaddr(), 1, 1));
  EXPECT_TRUE(pin_count_is(m.uaddr() + kPageSize, 1, 2));
  unpin(*user, 1, 1);
  unpin(**file, 0, 1);
}

TEST_F(PagesTest, PinCountOfUserPagesOverAFileIsSeenThroughAnotherMappingOfIt) {
  Memfd f(2);
  FileMap pinned_through(f.fd(), 2);
  FileMap queried_through(f.fd(), 2);
  RefPtr<Pages> user = user_pages(pinned_through.uaddr(), 2 * kPageSize);
  ASSERT_TRUE(pin(*user, 0, 1).ok());
  EXPECT_TRUE(pin_count_is(queried_through.uaddr(), 2, 1));
  unpin(*user, 0, 1);
}

TEST_F(PagesTest, PinCountOfAWritablePinOfAPrivateFileMappingCountsTheCopyNotTheFile) {
  // A writable pin breaks copy-on-write: the pinned page is the process's own, not the file's.
  Memfd f(1);
  FileMap priv(f.fd(), 1, MAP_PRIVATE);
  FileMap shared(f.fd(), 1);
  RefPtr<Pages> user = user_pages(priv.uaddr(), kPageSize, /*writable=*/true);
  ASSERT_TRUE(pin(*user, 0, 0).ok());
  EXPECT_TRUE(pin_count_is(priv.uaddr(), 1, 1));
  EXPECT_TRUE(pin_count_is(shared.uaddr(), 1, 0));
  unpin(*user, 0, 0);
}

TEST_F(PagesTest, PinCountOfAReadOnlyPinOfAnUnwrittenPrivateFileMappingCountsTheFilePage) {
  Memfd f(1);
  FileMap priv(f.fd(), 1, MAP_PRIVATE);
  FileMap shared(f.fd(), 1);
  RefPtr<Pages> user = user_pages(priv.uaddr(), kPageSize, /*writable=*/false);
  ASSERT_TRUE(pin(*user, 0, 0).ok());
  EXPECT_TRUE(pin_count_is(shared.uaddr(), 1, 1));
  EXPECT_TRUE(pin_count_is(priv.uaddr(), 1, 1));
  unpin(*user, 0, 0);
}

TEST_F(PagesTest, PinCountOfPrivateMemoryIgnoresFilePins) {
  Memfd f(1);
  Region r(1);
  auto file = Pages::create_file(f.fd(), 0, kPageSize, true, AccountMode::kNone);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE(pin(**file, 0, 0).ok());
  EXPECT_TRUE(pin_count_is(r.uaddr(), 1, 0));
  unpin(**file, 0, 0);
}

TEST(PagesTempMemoryLimitTest, DefaultsTo65536AndKeepsWhatIsSet) {
  EXPECT_EQ(Pages::temp_memory_limit(), Pages::kDefaultTempMemoryLimit);
  Pages::set_temp_memory_limit(12);
  EXPECT_EQ(Pages::temp_memory_limit(), 12u);
  Pages::set_temp_memory_limit(Pages::kDefaultTempMemoryLimit);
}

TEST(PagesTempMemoryLimitTest, BatchesEndAtBackingAddressesAlignedToTheirSize) {
  Region r(40);
  auto pages = Pages::create_user(Mm::current(), r.uaddr(), 40 * kPageSize, true, AccountMode::kNone);
  ASSERT_TRUE(pages.ok());
  Pages::set_temp_memory_limit(8 * 8 + 7);  // 8 handles and a part: 8 pages a batch
  ASSERT_EQ(Pages::batch_pages(), 8u);
  const std::uint64_t page0 = r.uaddr() >> kPageShift;
  std::uint64_t batches = 0;
  for (std::uint64_t i = 0; i <= 39;) {
    const std::uint64_t last = (*pages)->batch_last(i, 39);
    ASSERT_GE(last, i);
    ASSERT_LE(last - i + 1, 8u);
    // Every batch but the last ends right before an 8-page-aligned backing page.
    if (last != 39) {
      EXPECT_EQ((page0 + last + 1) % 8, 0u);
    }
    i = last + 1;
    ++batches;
  }
  EXPECT_LE(batches, 6u);
  Pages::set_temp_memory_limit(12);
  EXPECT_EQ(Pages::batch_pages(), 1u);
  EXPECT_EQ((*pages)->batch_last(3, 39), 3u);
  // A pin at the minimum takes one batch step per page it makes resident, and pins the same pages.
  const std::uint64_t before = Pages::batch_steps();
  {
    lockdep::MutexGuard g((*pages)->mutex());
    ASSERT_TRUE((*pages)->pin_locked(2, 21).ok());
    EXPECT_EQ((*pages)->npinned_locked(), 20u);
    (*pages)->unpin_locked(2, 21);
  }
  EXPECT_EQ(Pages::batch_steps() - before, 20u);
  Pages::set_temp_memory_limit(Pages::kDefaultTempMemoryLimit);
}

}  // namespace
}  // namespace uiommufd
