// IOMMU_FAULT_QUEUE_ALLOC, TRIGGER_IOPF and the queue's file through the dispatcher (a TestFdHost stands in
// for the runtime's fd table): the kernel's errnos and order (drivers/iommu/iommufd/eventq.c
// iommufd_fault_alloc(), selftest.c iommufd_test_trigger_iopf()), the unwinding of a failed allocation,
// the file's lifetime rules and the readiness of its real fd.
#include <cerrno>
#include <memory>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testing/test_fd_host.h"

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/iommu_driver.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {
namespace {

using testing::make_test_cmd;

class FaultIoctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = host_.open_iommufd();
    ASSERT_GE(fd_, 0);
    iommu_ioas_alloc a{sizeof(a), 0, 0};
    ASSERT_EQ(host_.ioctl(fd_, IOMMU_IOAS_ALLOC, &a), 0);
    ioas_ = a.out_ioas_id;
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, ioas_);
    ASSERT_EQ(host_.ioctl(fd_, IOMMU_TEST_CMD, &c), 0);
    stdev_ = c.mock_domain.out_stdev_id;
    idev_ = c.mock_domain.out_idev_id;
  }
  Context& ctx() { return static_cast<IommufdFile&>(*host_.lookup(fd_)).context(); }
  int alloc(iommu_fault_alloc* a) { return host_.ioctl(fd_, IOMMU_FAULT_QUEUE_ALLOC, a); }
  // A queue; its id and fd.
  void alloc_queue(std::uint32_t* id, int* qfd) {
    iommu_fault_alloc a{sizeof(a), 0, 0, 0};
    ASSERT_EQ(alloc(&a), 0);
    *id = a.out_fault_id;
    *qfd = static_cast<int>(a.out_fault_fd);
  }
  int destroy(std::uint32_t id) {
    iommu_destroy d{sizeof(d), id};
    return host_.ioctl(fd_, IOMMU_DESTROY, &d) < 0 ? errno : 0;
  }
  int trigger(std::uint32_t dev_id, std::uint32_t grpid = 1) {
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_TRIGGER_IOPF, 0);
    c.trigger_iopf.dev_id = dev_id;
    c.trigger_iopf.grpid = grpid;
    return host_.ioctl(fd_, IOMMU_TEST_CMD, &c) < 0 ? errno : 0;
  }
  // The device's RID onto a new HWPT that delivers to queue `fault`.
  void attach_to(std::uint32_t fault) {
    iommu_hwpt_alloc a{};
    a.size = sizeof(a);
    a.flags = kHwptFaultIdValid;
    a.dev_id = idev_;
    a.pt_id = ioas_;
    a.fault_id = fault;
    ASSERT_EQ(host_.ioctl(fd_, IOMMU_HWPT_ALLOC, &a), 0);
    iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev_);
    c.mock_domain_replace.pt_id = a.out_hwpt_id;
    ASSERT_EQ(host_.ioctl(fd_, IOMMU_TEST_CMD, &c), 0);
  }
  static short revents(int qfd) {
    pollfd p{qfd, POLLIN | POLLOUT | POLLRDNORM, 0};
    return poll(&p, 1, 0) < 0 ? -1 : p.revents;
  }

  testing::TestFdHost host_;
  int fd_ = -1;
  std::uint32_t ioas_ = 0, stdev_ = 0, idev_ = 0;
};

TEST_F(FaultIoctlTest, FlagsAreEopnotsupp) {
  iommu_fault_alloc a{sizeof(a), 1, 0, 0};
  EXPECT_EQ(alloc(&a), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
}

TEST_F(FaultIoctlTest, ShortStructIsEinval) {
  iommu_fault_alloc a{12, 0, 0, 0};
  EXPECT_EQ(alloc(&a), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST_F(FaultIoctlTest, AllocReturnsAQueueFile) {
  std::uint32_t id = 0;
  int qfd = -1;
  alloc_queue(&id, &qfd);
  EXPECT_EQ(id, 5u);
  std::shared_ptr<OpenFile> f = host_.lookup(qfd);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->kind(), OpenFile::Kind::kFaultQueue);
  EXPECT_FALSE(f->positional());
  EXPECT_EQ(f->ioctl(IOMMU_IOAS_ALLOC, 0), -ENOTTY);
  EXPECT_NE(fcntl(qfd, F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(fcntl(qfd, F_GETFL) & O_ACCMODE, O_RDWR);
}

TEST_F(FaultIoctlTest, DestroyIsEbusyWhileTheFdIsOpen) {
  std::uint32_t id = 0;
  int qfd = -1;
  alloc_queue(&id, &qfd);
  EXPECT_EQ(destroy(id), EBUSY);
  host_.close(qfd);
  EXPECT_EQ(destroy(id), 0);
}

TEST_F(FaultIoctlTest, TheFdKeepsTheContextAlive) {
  std::uint32_t id = 0;
  int qfd = -1;
  alloc_queue(&id, &qfd);
  attach_to(id);
  ASSERT_EQ(trigger(idev_), 0);
  std::shared_ptr<OpenFile> f = host_.lookup(qfd);
  host_.close(fd_);
  iommu_hwpt_pgfault m{};
  EXPECT_EQ(f->read(reinterpret_cast<std::uint64_t>(&m), sizeof m), static_cast<long>(sizeof m));
  EXPECT_EQ(m.grpid, 1u);
  f.reset();
  host_.close(qfd);
}

TEST_F(FaultIoctlTest, FailedReplyTakesEverythingBack) {
  const std::size_t objects = ctx().object_count();
  // The struct on a read-only page: read in, but the reply cannot be written.
  auto* page = static_cast<iommu_fault_alloc*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(page, MAP_FAILED);
  *page = iommu_fault_alloc{sizeof(iommu_fault_alloc), 0, 0, 0};
  ASSERT_EQ(mprotect(page, 4096, PROT_READ), 0);
  EXPECT_EQ(alloc(page), -1);
  EXPECT_EQ(errno, EFAULT);
  munmap(page, 4096);
  EXPECT_EQ(ctx().object_count(), objects);
  std::uint32_t id = 0;
  int qfd = -1;
  alloc_queue(&id, &qfd);
  EXPECT_EQ(id, 5u);  // the aborted id was released (ioas 1, device 2-3, its HWPT 4)
}

TEST_F(FaultIoctlTest, EveryInjectedFailureUnwinds) {
  const std::size_t objects = ctx().object_count();
  iommu_fault_alloc a{};
  SweepResult r = sweep_fail_nth(
      [&] {
        a = iommu_fault_alloc{sizeof(a), 0, 0, 0};
      },
      [&] { return alloc(&a) == 0 ? Status() : Status::error(errno); },
      [&](unsigned, Status st) {
        if (!st.ok()) {
          EXPECT_EQ(ctx().object_count(), objects);
        }
      });
  ASSERT_TRUE(r.final_status.ok());
  EXPECT_GE(r.sites_failed, 3u);  // the struct's copy, the object, the file, the reply
  EXPECT_EQ(ctx().object_count(), objects + 1);
}

TEST_F(FaultIoctlTest, TriggerOnANonDeviceIsEnoent) {
  EXPECT_EQ(trigger(ioas_), ENOENT);
  EXPECT_EQ(trigger(9999), ENOENT);
}

TEST_F(FaultIoctlTest, TriggerWithoutAQueueSucceeds) { EXPECT_EQ(trigger(idev_), 0); }

TEST_F(FaultIoctlTest, TheFdPollsAsTheKernelsFaultFd) {
  std::uint32_t id = 0;
  int qfd = -1;
  alloc_queue(&id, &qfd);
  attach_to(id);
  EXPECT_EQ(revents(qfd), POLLOUT);
  ASSERT_EQ(trigger(idev_), 0);
  EXPECT_EQ(revents(qfd), POLLIN | POLLRDNORM | POLLOUT);
  std::shared_ptr<OpenFile> f = host_.lookup(qfd);
  iommu_hwpt_pgfault m{};
  ASSERT_EQ(f->read(reinterpret_cast<std::uint64_t>(&m), sizeof m), static_cast<long>(sizeof m));
  EXPECT_EQ(revents(qfd), POLLOUT);
  iommu_hwpt_page_response r{m.cookie, IOMMUFD_PAGE_RESP_SUCCESS};
  EXPECT_EQ(f->write(reinterpret_cast<std::uint64_t>(&r), sizeof r), static_cast<long>(sizeof r));
  EXPECT_EQ(f->write(reinterpret_cast<std::uint64_t>(&r), sizeof r), -EINVAL);
}

TEST_F(FaultIoctlTest, TriggerSetsTheRecordsFields) {
  std::uint32_t id = 0;
  int qfd = -1;
  alloc_queue(&id, &qfd);
  attach_to(id);
  iommu_test_cmd c = make_test_cmd(IOMMU_TEST_OP_TRIGGER_IOPF, 0);
  c.trigger_iopf = iommu_test_trigger_iopf{idev_, 0, 0x2, IOMMU_PGFAULT_PERM_READ, 0x1234000};
  ASSERT_EQ(host_.ioctl(fd_, IOMMU_TEST_CMD, &c), 0);
  iommu_hwpt_pgfault m{};
  ASSERT_EQ(host_.lookup(qfd)->read(reinterpret_cast<std::uint64_t>(&m), sizeof m),
            static_cast<long>(sizeof m));
  EXPECT_EQ(m.flags, IOMMU_PGFAULT_FLAGS_LAST_PAGE);
  EXPECT_EQ(m.dev_id, idev_);
  EXPECT_EQ(m.grpid, 2u);
  EXPECT_EQ(m.perm, IOMMU_PGFAULT_PERM_READ);
  EXPECT_EQ(m.addr, 0x1234000u);
  EXPECT_EQ(m.cookie, 1u);
}

TEST_F(FaultIoctlTest, ClosingTheFdLeavesPendingFaultsToTheQueue) {
  std::uint32_t id = 0;
  int qfd = -1;
  alloc_queue(&id, &qfd);
  attach_to(id);
  ASSERT_EQ(trigger(idev_), 0);
  host_.close(qfd);
  EXPECT_EQ(destroy(id), EBUSY);  // the HWPT holds it
}

}  // namespace
}  // namespace uiommufd::uapi
