// Areas of another process and IOMMU_IOAS_CHANGE_PROCESS (Ioas::change_process), as the shared-mode server
// serves them: a forked child stands for a client, and Mm::CurrentScope makes it the caller.
#include <cstdint>
#include <cstring>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../mm/test_child.h"

#include "uiommufd/mm/accounting.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/ioas.h"

namespace uiommufd {
namespace {

using mm_testing::Child;

constexpr std::uint32_t kRW = Ioas::kReadable | Ioas::kWriteable;
constexpr std::uint64_t kPages = 8;
constexpr std::uint64_t kLen = kPages * kPageSize;

class ChangeProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // kUser pages (as for a process without CAP_IPC_LOCK), under a limit the test controls.
    set_cap_ipc_lock_for_testing(false);
    set_memlock_limit_for_testing(UINT64_MAX);
    user_before_ = account_locked_pages(Mm::local_ref(), AccountMode::kUser);
    pinned_before_ = Pages::total_pinned_pages();
    memfd_ = memfd_create("uiommufd-change-process", 0);
    ASSERT_GE(memfd_, 0);
    ASSERT_EQ(ftruncate(memfd_, kLen), 0);
    mem_ = mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem_, MAP_FAILED);
    std::memset(mem_, 0x5a, kLen);
    ctx_ = std::move(*Context::create());
    ioas_id_ = *Ioas::create(*ctx_);
  }
  void TearDown() override {
    ctx_.reset();
    EXPECT_EQ(Pages::total_pinned_pages(), pinned_before_) << "the context leaked pins";
    EXPECT_EQ(account_locked_pages(Mm::local_ref(), AccountMode::kUser), user_before_) << "leaked charge";
    set_memlock_limit_for_testing(std::nullopt);
    set_cap_ipc_lock_for_testing(std::nullopt);
    ::close(memfd_);
    munmap(mem_, kLen);
  }
  Ioas& ioas() { return *ctx_->get<Ioas>(ioas_id_, ObjectType::kIoas)->get(); }
  Result<std::uint32_t> attach_device() {
    std::uint32_t dev = *Device::create(*ctx_, Device::Kind::kSoftware);
    auto d = ctx_->get<Device>(dev, ObjectType::kDevice);
    return (*d)->attach(ioas_id_);
  }
  std::uint64_t user_charged() const {
    return account_locked_pages(Mm::local_ref(), AccountMode::kUser) - user_before_;
  }

  std::unique_ptr<Context> ctx_;
  std::uint32_t ioas_id_ = 0;
  int memfd_ = -1;
  void* mem_ = nullptr;
  std::uint64_t user_before_ = 0;
  std::uint64_t pinned_before_ = 0;
};

// The child maps its memfd (the server fetches the child's descriptor) and a domain pins it: the child is
// charged. The caller's CHANGE_PROCESS moves pinned_vm to the caller; the per-user count is the same uid's.
TEST_F(ChangeProcessTest, TheChargeMovesToTheCallerAndBackAndFollowsUnpin) {
  Child child([] {});
  RefPtr<Mm> cmm = *Mm::for_process(child.pid());
  std::uint64_t iova = 0;
  {
    Mm::CurrentScope as_child(*cmm);
    ASSERT_TRUE(ioas().map_file(memfd_, 0, kLen, &iova, kRW).ok());
  }
  ASSERT_TRUE(attach_device().ok());  // pins, charged to the process the pages came from
  EXPECT_EQ(account_pinned_vm(*cmm), kPages);
  EXPECT_EQ(account_pinned_vm(Mm::local_ref()), 0u);
  EXPECT_EQ(user_charged(), kPages);

  ASSERT_TRUE(Ioas::change_process(*ctx_).ok());
  EXPECT_EQ(account_pinned_vm(*cmm), 0u);
  EXPECT_EQ(account_pinned_vm(Mm::local_ref()), kPages);
  EXPECT_EQ(user_charged(), kPages);
  ASSERT_TRUE(Ioas::change_process(*ctx_).ok());  // already ours: nothing moves
  EXPECT_EQ(account_pinned_vm(Mm::local_ref()), kPages);

  {
    Mm::CurrentScope as_child(*cmm);
    ASSERT_TRUE(Ioas::change_process(*ctx_).ok());
  }
  EXPECT_EQ(account_pinned_vm(*cmm), kPages);
  EXPECT_EQ(account_pinned_vm(Mm::local_ref()), 0u);

  // The child goes; its file pages stay reachable (the server's own mapping), and unmapping uncharges
  // the process that was charged, gone or not.
  child.finish();
  EXPECT_TRUE(attach_device().ok());
  std::uint64_t unmapped = 0;
  ASSERT_TRUE(ioas().iopt().unmap_range({iova, iova + kLen - 1}, &unmapped).ok());
  EXPECT_EQ(unmapped, kLen);
  EXPECT_EQ(account_pinned_vm(*cmm), 0u);
  EXPECT_EQ(user_charged(), 0u);
}

// A charge the caller cannot take fails the command and leaves every charge where it was.
TEST_F(ChangeProcessTest, AChargeOverTheLimitChangesNothing) {
  Child child([] {});
  RefPtr<Mm> cmm = *Mm::for_process(child.pid());
  std::uint64_t iova = 0;
  {
    Mm::CurrentScope as_child(*cmm);
    ASSERT_TRUE(ioas().map_file(memfd_, 0, kLen, &iova, kRW).ok());
  }
  ASSERT_TRUE(attach_device().ok());
  // The same user would hold the pages twice while they move.
  set_memlock_limit_for_testing(user_before_ + kPages + kPages / 2);
  EXPECT_EQ(Ioas::change_process(*ctx_).error(), ENOMEM);
  EXPECT_EQ(account_pinned_vm(*cmm), kPages);
  EXPECT_EQ(account_pinned_vm(Mm::local_ref()), 0u);
  EXPECT_EQ(user_charged(), kPages);
  set_memlock_limit_for_testing(UINT64_MAX);
  EXPECT_TRUE(Ioas::change_process(*ctx_).ok());
  EXPECT_EQ(account_pinned_vm(Mm::local_ref()), kPages);
}

// User memory cannot follow a process: EINVAL while any area is not file-backed, in any IOAS.
TEST_F(ChangeProcessTest, UserMemoryAnywhereIsEinval) {
  std::uint32_t other = *Ioas::create(*ctx_);
  std::uint64_t file_iova = 0, user_iova = 0;
  ASSERT_TRUE(ioas().map_file(memfd_, 0, kLen, &file_iova, kRW).ok());
  auto o = ctx_->get<Ioas>(other, ObjectType::kIoas);
  ASSERT_TRUE((*o)->map(reinterpret_cast<std::uint64_t>(mem_), kPageSize, &user_iova, kRW).ok());
  EXPECT_EQ(Ioas::change_process(*ctx_).error(), EINVAL);
  std::uint64_t unmapped = 0;
  ASSERT_TRUE((*o)->iopt().unmap_range({user_iova, user_iova + kPageSize - 1}, &unmapped).ok());
  EXPECT_TRUE(Ioas::change_process(*ctx_).ok());
}

// The kernel's fork_gone: user memory of a process that has exited cannot be pinned any more (EFAULT), while
// what a domain had pinned before it went stays mapped.
TEST_F(ChangeProcessTest, UserPagesOfAnExitedProcessCannotBePinned) {
  std::uint64_t iova = 0;
  RefPtr<Mm> cmm;
  {
    Child child([] {});
    cmm = *Mm::for_process(child.pid());
    Mm::CurrentScope as_child(*cmm);
    ASSERT_TRUE(ioas().map(reinterpret_cast<std::uint64_t>(mem_), kLen, &iova, kRW).ok());
  }
  ASSERT_TRUE(cmm->exited());
  EXPECT_EQ(attach_device().error(), EFAULT);
  EXPECT_EQ(account_pinned_vm(*cmm), 0u);
}

}  // namespace
}  // namespace uiommufd
