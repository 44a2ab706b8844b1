// Mm of another process (Mm::for_process): the shared-mode server's view of a client's memory
// (docs/shared.md#memory). Each test forks a child that holds memory the parent then reaches remotely.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_child.h"

#include "uiommufd/base/page.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/mm/mm.h"

namespace uiommufd {
namespace {

using mm_testing::Child;

struct Buffer {
  Buffer() {
    p = static_cast<unsigned char*>(
        mmap(nullptr, 4 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  }
  ~Buffer() { munmap(p, 4 * kPageSize); }
  std::uint64_t addr(std::size_t off = 0) const { return reinterpret_cast<std::uint64_t>(p) + off; }
  unsigned char* p;
};

TEST(RemoteMmTest, CopiesReachTheChildsOwnPagesNotOurs) {
  Buffer buf;
  std::memset(buf.p, 'p', 4 * kPageSize);
  Child child([&] { std::memset(buf.p, 'c', 2 * kPageSize); });
  RefPtr<Mm> mm = *Mm::for_process(child.pid());
  ASSERT_TRUE(mm->remote());
  EXPECT_EQ(mm->pid(), child.pid());
  EXPECT_EQ(mm->uid(), getuid());
  EXPECT_EQ(mm->host_address(buf.addr()), nullptr);

  unsigned char got[3 * kPageSize];
  ASSERT_TRUE(mm->copy_from_user(got, buf.addr(kPageSize), sizeof(got)).ok());
  EXPECT_EQ(got[0], 'c');
  EXPECT_EQ(got[kPageSize - 1], 'c');
  EXPECT_EQ(got[kPageSize], 'p');  // the child never wrote its third page: still the copy of ours

  const char word[] = "remote";
  ASSERT_TRUE(mm->copy_to_user(buf.addr(10), word, sizeof(word)).ok());
  ASSERT_TRUE(mm->copy_from_user(got, buf.addr(10), sizeof(word)).ok());
  EXPECT_EQ(std::memcmp(got, word, sizeof(word)), 0);
  EXPECT_EQ(buf.p[10], 'p');  // our page is untouched

  // The same live process is the same Mm.
  EXPECT_EQ(Mm::for_process(child.pid())->get(), mm.get());
}

TEST(RemoteMmTest, BadAddressesAndProtectionsAreEfault) {
  Buffer buf;
  ASSERT_EQ(mprotect(buf.p + 2 * kPageSize, kPageSize, PROT_READ), 0);
  ASSERT_EQ(mprotect(buf.p + 3 * kPageSize, kPageSize, PROT_NONE), 0);
  Child child([] {});
  RefPtr<Mm> mm = *Mm::for_process(child.pid());

  unsigned char got[2 * kPageSize];
  std::memset(got, 0xAA, sizeof(got));
  // A read that runs into the PROT_NONE page fails and zeroes everything not copied.
  EXPECT_EQ(mm->copy_from_user(got, buf.addr(3 * kPageSize - 8), 16).error(), EFAULT);
  EXPECT_EQ(got[15], 0);
  EXPECT_EQ(mm->copy_to_user(buf.addr(2 * kPageSize), got, 1).error(), EFAULT);  // read-only
  EXPECT_EQ(mm->copy_from_user(got, 0x1000, 1).error(), EFAULT);
  EXPECT_EQ(mm->copy_from_user(got, ~std::uint64_t{0} - 2, 8).error(), EFAULT);  // wraps

  EXPECT_TRUE(mm->make_resident(buf.addr(), 2 * kPageSize, /*write=*/true).ok());
  EXPECT_TRUE(mm->make_resident(buf.addr(2 * kPageSize), kPageSize, /*write=*/false).ok());
  EXPECT_EQ(mm->make_resident(buf.addr(2 * kPageSize), kPageSize, /*write=*/true).error(), EFAULT);
  EXPECT_EQ(mm->make_resident(buf.addr(), 4 * kPageSize, /*write=*/false).error(), EFAULT);
  EXPECT_EQ(mm->make_resident(buf.addr(1), kPageSize, false).error(), EINVAL);
  // Locking another process's pages is not possible; the charge is what counts (accounting.h).
  EXPECT_TRUE(mm->lock(buf.addr(), kPageSize).ok());
}

TEST(RemoteMmTest, AnExitedProcessIsEfaultAndItsPidIsNotConfused) {
  Buffer buf;
  std::memset(buf.p, 'x', kPageSize);
  RefPtr<Mm> mm;
  {
    Child child([] {});
    mm = *Mm::for_process(child.pid());
    EXPECT_FALSE(mm->exited());
  }
  EXPECT_TRUE(mm->exited());
  unsigned char got[8];
  EXPECT_EQ(mm->copy_from_user(got, buf.addr(), sizeof(got)).error(), EFAULT);
  EXPECT_EQ(mm->copy_to_user(buf.addr(), got, sizeof(got)).error(), EFAULT);
  EXPECT_EQ(mm->make_resident(buf.addr(), kPageSize, false).error(), EFAULT);
  // Asking for that pid again is ESRCH (or, had it been reused, a different Mm).
  Result<RefPtr<Mm>> again = Mm::for_process(mm->pid());
  if (again.ok())
    EXPECT_NE(again->get(), mm.get());
  else
    EXPECT_EQ(again.error(), ESRCH);
}

// What pins hold outlives the process once its exit path asked for it (keep_held_pages): held pages read
// and write from their copies, pages held no more or never are EFAULT, and holds count per page.
TEST(RemoteMmTest, HeldPagesAreKeptPastTheExit) {
  Buffer buf;
  RefPtr<Mm> mm;
  {
    Child child([&] {
      std::memset(buf.p, 'c', 4 * kPageSize);
      buf.p[kPageSize + 5] = 'k';
    });
    mm = *Mm::for_process(child.pid());
    ASSERT_TRUE(mm->hold_pinned(buf.addr(), 2 * kPageSize).ok());
    ASSERT_TRUE(mm->hold_pinned(buf.addr(kPageSize), kPageSize).ok());  // page 1 twice
    EXPECT_EQ(mm->held_page_count(), 2u);
    ASSERT_TRUE(mm->keep_held_pages().ok());
    EXPECT_EQ(mm->kept_page_count(), 2u);
    // Held while exiting: copied at once.
    ASSERT_TRUE(mm->hold_pinned(buf.addr(2 * kPageSize), kPageSize).ok());
    EXPECT_EQ(mm->kept_page_count(), 3u);
  }
  ASSERT_TRUE(mm->exited());
  std::memset(buf.p, 'p', 4 * kPageSize);  // ours: the copies are the child's
  unsigned char got[16];
  ASSERT_TRUE(mm->copy_from_user(got, buf.addr(kPageSize - 8), sizeof(got)).ok());  // across pages 0, 1
  EXPECT_EQ(got[0], 'c');
  EXPECT_EQ(got[15], 'c');
  ASSERT_TRUE(mm->copy_from_user(got, buf.addr(kPageSize + 5), 1).ok());
  EXPECT_EQ(got[0], 'k');
  const unsigned char w = 'w';
  ASSERT_TRUE(mm->copy_to_user(buf.addr(2 * kPageSize + 7), &w, 1).ok());
  ASSERT_TRUE(mm->copy_from_user(got, buf.addr(2 * kPageSize + 7), 1).ok());
  EXPECT_EQ(got[0], 'w');
  // Page 3 was never held; a range reaching it fails whole.
  EXPECT_EQ(mm->copy_from_user(got, buf.addr(3 * kPageSize - 8), sizeof(got)).error(), EFAULT);
  EXPECT_EQ(mm->copy_to_user(buf.addr(3 * kPageSize - 1), &w, 2).error(), EFAULT);
  ASSERT_TRUE(mm->copy_from_user(got, buf.addr(3 * kPageSize - 1), 1).ok());
  EXPECT_EQ(got[0], 'c');  // the failed write left nothing
  // Pinning more of a gone process fails, held or not.
  EXPECT_EQ(mm->make_resident(buf.addr(), kPageSize, false).error(), EFAULT);
  // Page 1 stays until its second hold goes; page 0 goes with its only one.
  mm->release_pinned(buf.addr(), 2 * kPageSize);
  EXPECT_EQ(mm->copy_from_user(got, buf.addr(), 1).error(), EFAULT);
  EXPECT_TRUE(mm->copy_from_user(got, buf.addr(kPageSize), 1).ok());
  mm->release_pinned(buf.addr(kPageSize), 2 * kPageSize);
  EXPECT_EQ(mm->held_page_count(), 0u);
  EXPECT_EQ(mm->copy_from_user(got, buf.addr(kPageSize), 1).error(), EFAULT);
}

// A held page of a shared mapping is kept as the page itself (the server maps the same file page), so what
// another process that maps it writes after the exit is seen, and writes through the kept page reach it.
TEST(RemoteMmTest, HeldSharedPagesAreKeptAsThePagesThemselves) {
  auto* shared = static_cast<unsigned char*>(
      mmap(nullptr, 2 * kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(shared, MAP_FAILED);
  const auto addr = reinterpret_cast<std::uint64_t>(shared);
  char path[96];
  std::snprintf(path, sizeof path, "/proc/self/map_files/%llx-%llx", static_cast<unsigned long long>(addr),
                static_cast<unsigned long long>(addr + 2 * kPageSize));
  const int probe = open(path, O_RDWR | O_CLOEXEC);
  if (probe < 0) {
    munmap(shared, 2 * kPageSize);
    GTEST_SKIP() << "map_files cannot be opened here (needs CAP_SYS_ADMIN): shared pages are copied";
  }
  close(probe);
  RefPtr<Mm> mm;
  {
    Child child([&] { shared[kPageSize + 1] = 's'; });
    mm = *Mm::for_process(child.pid());
    ASSERT_TRUE(mm->hold_pinned(addr + kPageSize, kPageSize).ok());
    ASSERT_TRUE(mm->keep_held_pages().ok());
  }
  ASSERT_TRUE(mm->exited());
  unsigned char got = 0;
  ASSERT_TRUE(mm->copy_from_user(&got, addr + kPageSize + 1, 1).ok());
  EXPECT_EQ(got, 's');
  shared[kPageSize + 2] = 'p';  // ours, after the child has gone: the same page
  ASSERT_TRUE(mm->copy_from_user(&got, addr + kPageSize + 2, 1).ok());
  EXPECT_EQ(got, 'p');
  const unsigned char w = 'w';
  ASSERT_TRUE(mm->copy_to_user(addr + kPageSize + 3, &w, 1).ok());
  EXPECT_EQ(shared[kPageSize + 3], 'w');
  EXPECT_EQ(mm->copy_from_user(&got, addr, 1).error(), EFAULT);  // the other page was never held
  mm->release_pinned(addr + kPageSize, kPageSize);
  munmap(shared, 2 * kPageSize);
}

// Without the exit path (a SIGKILL), nothing was copied: held pages are EFAULT once the process is gone.
TEST(RemoteMmTest, HeldPagesOfAProcessThatDidNotAskAreLost) {
  Buffer buf;
  RefPtr<Mm> mm;
  {
    Child child([&] { std::memset(buf.p, 'c', kPageSize); });
    mm = *Mm::for_process(child.pid());
    ASSERT_TRUE(mm->hold_pinned(buf.addr(), kPageSize).ok());
  }
  unsigned char got = 0;
  EXPECT_EQ(mm->copy_from_user(&got, buf.addr(), 1).error(), EFAULT);
  mm->release_pinned(buf.addr(), kPageSize);
}

// The argument window (docs/shared.md#inline): the part of a copy inside it uses the bytes sent with the
// call, the rest goes to the process; writes land in the window and widen its dirty range.
TEST(RemoteMmTest, CopiesThroughTheArgumentWindow) {
  Buffer buf;
  Child child([&] { std::memset(buf.p, 'c', 2 * kPageSize); });
  RefPtr<Mm> mm = *Mm::for_process(child.pid());
  unsigned char bytes[16];
  std::memset(bytes, 'w', sizeof bytes);
  Mm::ArgWindow w;
  w.mm = mm.get();
  w.uaddr = buf.addr(100);
  w.bytes = bytes;
  w.len = sizeof bytes;
  w.writable = true;
  unsigned char got[32];
  {
    const Mm::ArgWindowScope scope(w);
    ASSERT_TRUE(mm->copy_from_user(got, buf.addr(92), sizeof got).ok());  // 8 before, 16 inside, 8 after
    EXPECT_EQ(got[7], 'c');
    EXPECT_EQ(got[8], 'w');
    EXPECT_EQ(got[23], 'w');
    EXPECT_EQ(got[24], 'c');
    const unsigned char out[4] = {'1', '2', '3', '4'};
    ASSERT_TRUE(mm->copy_to_user(buf.addr(98), out, sizeof out).ok());  // 2 before, 2 inside
    EXPECT_EQ(w.dirty_lo, 0u);
    EXPECT_EQ(w.dirty_hi, 2u);
    EXPECT_EQ(bytes[0], '3');
    ASSERT_TRUE(mm->copy_from_user(got, buf.addr(98), 4).ok());
    EXPECT_EQ(std::memcmp(got, out, 4), 0);
    // Another Mm's copies never see it.
    ASSERT_TRUE(Mm::local_ref().copy_from_user(got, buf.addr(100), 1).ok());
    EXPECT_EQ(got[0], 0);  // our own buffer, untouched
    // A window the client could not store into: a write reaching it is EFAULT.
    w.writable = false;
    EXPECT_EQ(mm->copy_to_user(buf.addr(110), out, 1).error(), EFAULT);
    EXPECT_TRUE(mm->copy_to_user(buf.addr(200), out, 1).ok());  // outside: the process's memory
  }
  // Outside the scope the process's own bytes are read again: only [98, 100) and 200 were written there.
  ASSERT_TRUE(mm->copy_from_user(got, buf.addr(98), 4).ok());
  EXPECT_EQ(got[0], '1');
  EXPECT_EQ(got[2], 'c');
}

TEST(RemoteMmTest, ForOurOwnPidIsTheLocalMm) {
  EXPECT_EQ(Mm::for_process(getpid())->get(), &Mm::local_ref());
  EXPECT_EQ(Mm::for_process(0).error(), ESRCH);
}

TEST(RemoteMmTest, CurrentScopeNamesTheCallerAndNests) {
  Child child([] {});
  RefPtr<Mm> mm = *Mm::for_process(child.pid());
  EXPECT_EQ(&Mm::current_ref(), &Mm::local_ref());
  {
    Mm::CurrentScope outer(*mm);
    EXPECT_EQ(&Mm::current_ref(), mm.get());
    EXPECT_EQ(Mm::current().get(), mm.get());
    {
      Mm::CurrentScope inner(Mm::local_ref());
      EXPECT_EQ(&Mm::current_ref(), &Mm::local_ref());
    }
    EXPECT_EQ(&Mm::current_ref(), mm.get());
  }
  EXPECT_EQ(&Mm::current_ref(), &Mm::local_ref());
}

// kMm and pinned_vm are per process; kUser per user, shared by the processes of one uid.
TEST(RemoteMmTest, ChargesGoToTheProcessCharged) {
  Child child([] {});
  RefPtr<Mm> mm = *Mm::for_process(child.pid());
  Mm& local = Mm::local_ref();
  const std::uint64_t local_mm = account_locked_pages(local, AccountMode::kMm);
  const std::uint64_t user = account_locked_pages(local, AccountMode::kUser);
  set_memlock_limit_for_testing(UINT64_MAX);
  ASSERT_TRUE(account_charge(*mm, AccountMode::kMm, 3).ok());
  ASSERT_TRUE(account_charge(*mm, AccountMode::kUser, 2).ok());
  EXPECT_EQ(account_locked_pages(*mm, AccountMode::kMm), 3u);
  EXPECT_EQ(account_pinned_vm(*mm), 5u);
  EXPECT_EQ(account_locked_pages(local, AccountMode::kMm), local_mm);
  EXPECT_EQ(account_locked_pages(local, AccountMode::kUser), user + 2);  // same uid, one counter
  set_memlock_limit_for_testing(4);
  EXPECT_EQ(account_charge(*mm, AccountMode::kMm, 2).error(), ENOMEM);
  set_memlock_limit_for_testing(std::nullopt);
  account_uncharge(*mm, AccountMode::kMm, 3);
  account_uncharge(*mm, AccountMode::kUser, 2);
  EXPECT_EQ(account_pinned_vm(*mm), 0u);
  EXPECT_EQ(account_locked_pages(local, AccountMode::kUser), user);
}

}  // namespace
}  // namespace uiommufd
