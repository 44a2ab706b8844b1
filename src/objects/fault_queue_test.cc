// Fault queues at the library face: FaultQueue (delivery, read and write with the kernel's errnos, cookies,
// readiness, the handler), HWPTs allocated with a fault queue, and the device side (report_page_fault's
// routing, the answers on detach, replace and destroy, the mock's iopf enable). The kernel's rules are in
// drivers/iommu/iommufd/eventq.c, hw_pagetable.c, device.c, io-pgfault.c and selftest.c;
// tests/abi/abi_fault.c checks the same against Linux 7.2.
#include "uiommufd/objects/fault_queue.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/fault_sweep.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/ioas.h"

namespace uiommufd {
namespace {

constexpr std::uint32_t kNoSuchId = 9999;
constexpr std::uint64_t kHandle = 77;  // a made-up attachment for queues fed directly

std::uint64_t addr(const void* p) { return reinterpret_cast<std::uint64_t>(p); }

// What a responder saw.
struct Answers {
  std::vector<std::pair<std::uint32_t, PageResponseCode>> got;  // (grpid of the last request, code)
  static void record(void* arg, const PageRequest& last, PageResponseCode code) {
    static_cast<Answers*>(arg)->got.emplace_back(last.grpid, code);
  }
  PageResponder responder() { return PageResponder{&Answers::record, this}; }
};

// Records every readiness signal.
struct RecordingReadiness final : QueueReadiness {
  std::vector<bool> signals;
  void set_readable(bool r) override { signals.push_back(r); }
};

PageRequest request(std::uint32_t grpid, std::uint32_t pasid = 0) {
  PageRequest r;
  r.flags = kPgfaultFlagLastPage | (pasid ? kPgfaultFlagPasidValid : 0);
  r.pasid = pasid;
  r.grpid = grpid;
  r.perm = kPgfaultPermRead | kPgfaultPermWrite;
  r.addr = 0xdeadbeaf;
  return r;
}

class FaultQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Context::create();
    ASSERT_TRUE(c.ok());
    ctx_ = std::move(*c);
    auto ioas = Ioas::create(*ctx_);
    ASSERT_TRUE(ioas.ok());
    ioas_id_ = *ioas;
    auto dev = Device::create(*ctx_, Device::Kind::kMock, Device::kFlagPasid);
    ASSERT_TRUE(dev.ok());
    dev_id_ = *dev;
    auto q = FaultQueue::create(*ctx_);
    ASSERT_TRUE(q.ok());
    fault_id_ = *q;
    auto d = ctx_->get<Device>(dev_id_, ObjectType::kDevice);
    ASSERT_TRUE(d.ok());
    dev_ = d->get();
    dev_ref_ = std::move(*d);
    auto f = ctx_->get<FaultQueue>(fault_id_, ObjectType::kFault);
    ASSERT_TRUE(f.ok());
    queue_ = std::move(*f);
  }
  void TearDown() override {
    queue_.reset();
    dev_ref_.reset();
    ctx_.reset();
  }

  Result<std::uint32_t> alloc_hwpt(std::uint32_t flags, std::uint32_t fault_id, std::uint32_t pt_id = 0) {
    HwptAllocArgs a;
    a.flags = flags;
    a.dev_id = dev_id_;
    a.pt_id = pt_id ? pt_id : ioas_id_;
    a.fault_id = fault_id;
    return HwPagetable::alloc(*ctx_, a);
  }
  // An HWPT on the queue with the device's RID attached to it.
  std::uint32_t attach_fault_hwpt(std::uint32_t extra_flags = 0) {
    auto h = alloc_hwpt(kHwptFaultIdValid | extra_flags, fault_id_);
    EXPECT_TRUE(h.ok()) << h.status().error();
    EXPECT_TRUE(dev_->attach(*h).ok());
    return *h;
  }
  Status report(std::uint32_t grpid, Answers* a = nullptr, std::uint32_t pasid = 0) {
    PageRequest r = request(grpid, pasid);
    return dev_->report_page_fault(&r, 1, a ? a->responder() : PageResponder{});
  }
  Result<std::size_t> read(FaultMessage* msgs, std::size_t n) {
    return queue_->read(addr(msgs), n * sizeof(FaultMessage));
  }
  Result<std::size_t> respond(std::uint32_t cookie, std::uint32_t code = 0) {
    FaultResponse r{cookie, code};
    return queue_->write(addr(&r), sizeof r);
  }

  // First, so that it outlives the context: groups still queued at the end are answered as it goes.
  Answers answers_;
  std::unique_ptr<Context> ctx_;
  std::uint32_t ioas_id_ = 0, dev_id_ = 0, fault_id_ = 0;
  Device* dev_ = nullptr;
  ObjectRef<Device> dev_ref_;
  ObjectRef<FaultQueue> queue_;
};

// ---- the object and HWPT_ALLOC ------------------------------------------------------------------------

TEST_F(FaultQueueTest, QueueIsAFaultObject) {
  EXPECT_EQ(queue_->type(), ObjectType::kFault);
  EXPECT_EQ(ctx_->get<Object>(fault_id_, ObjectType::kIoas).status().error(), ENOENT);
}

TEST_F(FaultQueueTest, HwptAllocWithUnknownFaultIdIsEnoent) {
  EXPECT_EQ(alloc_hwpt(kHwptFaultIdValid, kNoSuchId).status().error(), ENOENT);
}

TEST_F(FaultQueueTest, HwptAllocWithFaultIdOfAnotherTypeIsEnoent) {
  EXPECT_EQ(alloc_hwpt(kHwptFaultIdValid, ioas_id_).status().error(), ENOENT);
}

TEST_F(FaultQueueTest, HwptAllocWithFaultAndNestParentIsEopnotsupp) {
  EXPECT_EQ(alloc_hwpt(kHwptFaultIdValid | kHwptAllocNestParent, fault_id_).status().error(), EOPNOTSUPP);
}

TEST_F(FaultQueueTest, HwptAllocWithoutFlagIgnoresFaultId) {
  auto h = alloc_hwpt(0, kNoSuchId);
  ASSERT_TRUE(h.ok());
  auto hw = ctx_->get<HwPagetable>(*h, ObjectType::kHwptPaging);
  ASSERT_TRUE(hw.ok());
  EXPECT_EQ((*hw)->fault(), nullptr);
}

TEST_F(FaultQueueTest, HwptHoldsItsQueueUntilDestroyed) {
  auto h = alloc_hwpt(kHwptFaultIdValid, fault_id_);
  ASSERT_TRUE(h.ok());
  queue_.reset();
  EXPECT_EQ(ctx_->destroy(fault_id_).error(), EBUSY);
  ASSERT_TRUE(ctx_->destroy(*h).ok());
  EXPECT_TRUE(ctx_->destroy(fault_id_).ok());
}

TEST_F(FaultQueueTest, FailedHwptAllocGivesTheQueueBack) {
  const std::uint32_t users = queue_->users();
  auto h =
      HwPagetable::alloc(*ctx_, HwptAllocArgs{kHwptFaultIdValid, dev_id_, ioas_id_, UserData{}, fault_id_},
                         [](std::uint32_t) { return Status::error(EFAULT); });
  EXPECT_EQ(h.status().error(), EFAULT);
  EXPECT_EQ(queue_->users(), users);
}

TEST_F(FaultQueueTest, NestedHwptTakesAFaultQueue) {
  auto parent = alloc_hwpt(kHwptAllocNestParent, 0);
  ASSERT_TRUE(parent.ok());
  struct {
    std::uint32_t iotlb = kTestIotlbDefault, pagetable_type = 0;
  } data;
  HwptAllocArgs a{kHwptFaultIdValid, dev_id_, *parent, UserData{kHwptDataSelftest, addr(&data), sizeof data},
                  kNoSuchId};
  EXPECT_EQ(HwPagetable::alloc(*ctx_, a).status().error(), ENOENT);
  a.fault_id = fault_id_;
  auto h = HwPagetable::alloc(*ctx_, a);
  ASSERT_TRUE(h.ok());
  auto hw = ctx_->get<HwPagetable>(*h, ObjectType::kHwptNested);
  ASSERT_TRUE(hw.ok());
  EXPECT_EQ((*hw)->fault(), queue_.get());
}

// ---- delivery and routing -----------------------------------------------------------------------------

TEST_F(FaultQueueTest, FaultWithoutQueueIsAnsweredInvalid) {
  ASSERT_TRUE(dev_->attach(ioas_id_).ok());
  Answers& a = answers_;
  EXPECT_EQ(report(1, &a).error(), EINVAL);
  ASSERT_EQ(a.got.size(), 1u);
  EXPECT_EQ(a.got[0].second, PageResponseCode::kInvalid);
  EXPECT_EQ(queue_->waiting_count(), 0u);
}

TEST_F(FaultQueueTest, FaultOfDetachedDeviceIsAnsweredInvalid) {
  Answers& a = answers_;
  EXPECT_EQ(report(1, &a).error(), EINVAL);
  EXPECT_EQ(a.got.size(), 1u);
}

TEST_F(FaultQueueTest, DeliveredFaultReadsAsOneRecord) {
  attach_fault_hwpt();
  ASSERT_TRUE(report(5).ok());
  FaultMessage m[2] = {};
  auto n = read(m, 2);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, sizeof(FaultMessage));
  EXPECT_EQ(m[0].flags, kPgfaultFlagLastPage);
  EXPECT_EQ(m[0].dev_id, dev_id_);
  EXPECT_EQ(m[0].pasid, 0u);
  EXPECT_EQ(m[0].grpid, 5u);
  EXPECT_EQ(m[0].perm, kPgfaultPermRead | kPgfaultPermWrite);
  EXPECT_EQ(m[0].addr, 0xdeadbeafu);
  EXPECT_EQ(m[0].length, 0u);
  EXPECT_EQ(m[0].cookie, 1u);
}

TEST_F(FaultQueueTest, PasidFaultGoesToThePasidsHwpt) {
  // The RID is not attached, so the PASID's own attachment must be the one used.
  const std::uint32_t h = *alloc_hwpt(kHwptFaultIdValid | kHwptAllocPasid, fault_id_);
  ASSERT_TRUE(dev_->attach(2048, h).ok());
  ASSERT_TRUE(report(3, nullptr, 2048).ok());
  FaultMessage m{};
  ASSERT_EQ(*read(&m, 1), sizeof m);
  EXPECT_EQ(m.pasid, 2048u);
  EXPECT_EQ(m.flags, kPgfaultFlagLastPage | kPgfaultFlagPasidValid);
}

TEST_F(FaultQueueTest, UnattachedPasidFaultGoesToANestedRid) {
  auto parent = alloc_hwpt(kHwptAllocNestParent, 0);
  ASSERT_TRUE(parent.ok());
  struct {
    std::uint32_t iotlb = kTestIotlbDefault, pagetable_type = 0;
  } data;
  auto h = HwPagetable::alloc(
      *ctx_, HwptAllocArgs{kHwptFaultIdValid, dev_id_, *parent,
                           UserData{kHwptDataSelftest, addr(&data), sizeof data}, fault_id_});
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(dev_->attach(*h).ok());
  ASSERT_TRUE(report(4, nullptr, 1).ok());
  EXPECT_EQ(queue_->waiting_count(), 1u);
}

TEST_F(FaultQueueTest, UnattachedPasidFaultDoesNotGoToAPagingRid) {
  attach_fault_hwpt();
  Answers& a = answers_;
  EXPECT_EQ(report(4, &a, 1).error(), EINVAL);
  EXPECT_EQ(queue_->waiting_count(), 0u);
  EXPECT_EQ(a.got.size(), 1u);
}

TEST_F(FaultQueueTest, DeliveryFailureIsAnsweredFailure) {
  attach_fault_hwpt();
  Answers& a = answers_;
  fail_nth_set(1);  // the first site: the group's allocation
  EXPECT_EQ(report(1, &a).error(), ENOMEM);
  fail_nth_set(0);
  ASSERT_EQ(a.got.size(), 1u);
  EXPECT_EQ(a.got[0].second, PageResponseCode::kFailure);
  EXPECT_EQ(queue_->waiting_count(), 0u);
}

TEST_F(FaultQueueTest, EmptyGroupIsEinval) {
  attach_fault_hwpt();
  EXPECT_EQ(dev_->report_page_fault(nullptr, 0).error(), EINVAL);
}

// ---- read ---------------------------------------------------------------------------------------------

TEST_F(FaultQueueTest, ReadOfEmptyQueueIsZero) {
  FaultMessage m{};
  EXPECT_EQ(*read(&m, 1), 0u);
  EXPECT_EQ(*queue_->read(addr(&m), 0), 0u);
}

TEST_F(FaultQueueTest, ReadOfPartialRecordIsEspipe) {
  FaultMessage m{};
  EXPECT_EQ(queue_->read(addr(&m), sizeof m - 1).status().error(), ESPIPE);
}

TEST_F(FaultQueueTest, ReadOfZeroBytesWithFaultsWaitingIsEinval) {
  attach_fault_hwpt();
  ASSERT_TRUE(report(1).ok());
  FaultMessage m{};
  EXPECT_EQ(queue_->read(addr(&m), 0).status().error(), EINVAL);
}

TEST_F(FaultQueueTest, GroupIsReadWholeOrNotAtAll) {
  attach_fault_hwpt();
  PageRequest g[2] = {request(9), request(9)};
  g[0].flags = 0;  // not the last of its group
  ASSERT_TRUE(dev_->report_page_fault(g, 2).ok());
  ASSERT_TRUE(report(10).ok());
  FaultMessage m[3] = {};
  EXPECT_EQ(read(m, 1).status().error(), EINVAL);  // the first group does not fit
  auto n = read(m, 2);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2 * sizeof(FaultMessage));
  EXPECT_EQ(m[0].cookie, 1u);
  EXPECT_EQ(m[1].cookie, 1u);  // one cookie per group
  EXPECT_EQ(m[0].flags, 0u);
  EXPECT_EQ(m[1].flags, kPgfaultFlagLastPage);
  EXPECT_EQ(*read(m, 3), sizeof(FaultMessage));  // the next group only
  EXPECT_EQ(m[0].grpid, 10u);
  EXPECT_EQ(m[0].cookie, 2u);
}

TEST_F(FaultQueueTest, ReadStopsBeforeAGroupThatDoesNotFitAfterOthers) {
  attach_fault_hwpt();
  ASSERT_TRUE(report(1).ok());
  PageRequest g[2] = {request(2), request(2)};
  ASSERT_TRUE(dev_->report_page_fault(g, 2).ok());
  FaultMessage m[2] = {};
  EXPECT_EQ(*read(m, 2), sizeof(FaultMessage));
  EXPECT_EQ(queue_->waiting_count(), 1u);
}

TEST_F(FaultQueueTest, ReadIntoBadBufferIsEfaultAndKeepsTheGroup) {
  attach_fault_hwpt();
  ASSERT_TRUE(report(1).ok());
  void* bad = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(bad, MAP_FAILED);
  EXPECT_EQ(queue_->read(addr(bad), sizeof(FaultMessage)).status().error(), EFAULT);
  munmap(bad, 4096);
  EXPECT_EQ(queue_->waiting_count(), 1u);
  EXPECT_EQ(queue_->outstanding_count(), 0u);
  FaultMessage m{};
  ASSERT_EQ(*read(&m, 1), sizeof m);
  EXPECT_EQ(m.cookie, 1u);
}

TEST_F(FaultQueueTest, ReadCopiesWhatFitBeforeABadPage) {
  attach_fault_hwpt();
  ASSERT_TRUE(report(1).ok());
  ASSERT_TRUE(report(2).ok());
  // Two records across a page boundary, the second page inaccessible.
  auto* p =
      static_cast<char*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  ASSERT_EQ(mprotect(p + 4096, 4096, PROT_NONE), 0);
  auto n = queue_->read(addr(p + 4096 - sizeof(FaultMessage)), 2 * sizeof(FaultMessage));
  munmap(p, 8192);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, sizeof(FaultMessage));
  EXPECT_EQ(queue_->waiting_count(), 1u);
  EXPECT_EQ(queue_->outstanding_count(), 1u);
}

TEST_F(FaultQueueTest, ResponseEntryFailureIsEnomemAndKeepsTheGroup) {
  attach_fault_hwpt();
  ASSERT_TRUE(report(1).ok());
  FaultMessage m{};
  fail_nth_set(1);  // the first site: the cookie's entry
  EXPECT_EQ(read(&m, 1).status().error(), ENOMEM);
  fail_nth_set(0);
  EXPECT_EQ(queue_->waiting_count(), 1u);
}

TEST_F(FaultQueueTest, CookiesAreTheLowestFreeFromOne) {
  attach_fault_hwpt();
  for (std::uint32_t g = 1; g <= 3; ++g) ASSERT_TRUE(report(g).ok());
  FaultMessage m[3] = {};
  ASSERT_EQ(*read(m, 3), 3 * sizeof(FaultMessage));
  EXPECT_EQ(m[2].cookie, 3u);
  ASSERT_TRUE(respond(2).ok());
  ASSERT_TRUE(report(4).ok());
  ASSERT_EQ(*read(m, 1), sizeof(FaultMessage));
  EXPECT_EQ(m[0].cookie, 2u);
}

// The kernel's XA_FLAGS_ALLOC1 response table: index 0 is busy until it is erased while a node exists.
TEST_F(FaultQueueTest, CookieZeroIsHandedOutOnceAResponseToItFreedIt) {
  attach_fault_hwpt();
  ASSERT_TRUE(report(1).ok());
  FaultMessage m[2] = {};
  ASSERT_EQ(*read(m, 1), sizeof(FaultMessage));
  EXPECT_EQ(m[0].cookie, 1u);
  EXPECT_EQ(respond(0).status().error(), EINVAL);  // no group, but the placeholder goes
  ASSERT_TRUE(respond(1).ok());
  ASSERT_TRUE(report(2).ok());
  ASSERT_TRUE(report(3).ok());
  ASSERT_EQ(*read(m, 2), 2 * sizeof(FaultMessage));
  EXPECT_EQ(m[0].cookie, 0u);
  EXPECT_EQ(m[1].cookie, 1u);
  EXPECT_TRUE(respond(0).ok());  // cookie 0 now names the group
}

TEST_F(FaultQueueTest, ResponseWithCookieZeroOnAnEmptyTableChangesNothing) {
  attach_fault_hwpt();
  EXPECT_EQ(respond(0).status().error(), EINVAL);
  ASSERT_TRUE(report(1).ok());
  FaultMessage m{};
  ASSERT_EQ(*read(&m, 1), sizeof m);
  EXPECT_EQ(m.cookie, 1u);
}

TEST_F(FaultQueueTest, ManyGroupsInOneRead) {
  attach_fault_hwpt();
  constexpr std::uint32_t kN = 40;  // more than one batch
  for (std::uint32_t g = 0; g < kN; ++g) ASSERT_TRUE(report(g).ok());
  std::vector<FaultMessage> m(kN);
  ASSERT_EQ(*read(m.data(), kN), kN * sizeof(FaultMessage));
  for (std::uint32_t g = 0; g < kN; ++g) {
    EXPECT_EQ(m[g].grpid, g);
    EXPECT_EQ(m[g].cookie, g + 1);
  }
}

TEST_F(FaultQueueTest, LargeGroupIsReadWhole) {
  attach_fault_hwpt();
  std::vector<PageRequest> g(20, request(3));
  ASSERT_TRUE(dev_->report_page_fault(g.data(), g.size()).ok());
  std::vector<FaultMessage> m(20);
  ASSERT_EQ(*read(m.data(), 20), 20 * sizeof(FaultMessage));
  EXPECT_EQ(m[19].cookie, 1u);
}

// ---- write --------------------------------------------------------------------------------------------

TEST_F(FaultQueueTest, ResponseAnswersTheGroupWithItsCode) {
  attach_fault_hwpt();
  Answers& a = answers_;
  ASSERT_TRUE(report(6, &a).ok());
  FaultMessage m{};
  ASSERT_EQ(*read(&m, 1), sizeof m);
  EXPECT_EQ(*respond(m.cookie, 1), sizeof(FaultResponse));
  ASSERT_EQ(a.got.size(), 1u);
  EXPECT_EQ(a.got[0], std::make_pair(6u, PageResponseCode::kInvalid));
  EXPECT_EQ(queue_->outstanding_count(), 0u);
}

TEST_F(FaultQueueTest, ResponseWithUnknownCodeIsEinval) {
  attach_fault_hwpt();
  ASSERT_TRUE(report(1).ok());
  FaultMessage m{};
  ASSERT_EQ(*read(&m, 1), sizeof m);
  EXPECT_EQ(respond(m.cookie, 2).status().error(), EINVAL);
  EXPECT_EQ(queue_->outstanding_count(), 1u);
}

TEST_F(FaultQueueTest, ResponseToUnknownCookieIsEinval) {
  EXPECT_EQ(respond(0).status().error(), EINVAL);
  EXPECT_EQ(respond(1).status().error(), EINVAL);
}

TEST_F(FaultQueueTest, ResponseToUnreadGroupIsEinval) {
  attach_fault_hwpt();
  ASSERT_TRUE(report(1).ok());
  EXPECT_EQ(respond(1).status().error(), EINVAL);
}

TEST_F(FaultQueueTest, ResponseOfPartialRecordIsEspipe) {
  FaultResponse r{1, 0};
  EXPECT_EQ(queue_->write(addr(&r), sizeof r - 1).status().error(), ESPIPE);
}

TEST_F(FaultQueueTest, ResponseFromBadBufferIsEfault) {
  EXPECT_EQ(queue_->write(0x1000, sizeof(FaultResponse)).status().error(), EFAULT);
}

TEST_F(FaultQueueTest, ResponsesStopAtTheFirstBadOneAndCountWhatWasDone) {
  attach_fault_hwpt();
  ASSERT_TRUE(report(1).ok());
  ASSERT_TRUE(report(2).ok());
  FaultMessage m[2] = {};
  ASSERT_EQ(*read(m, 2), 2 * sizeof(FaultMessage));
  FaultResponse r[3] = {{1, 0}, {7, 0}, {2, 0}};
  EXPECT_EQ(*queue_->write(addr(r), sizeof r), sizeof(FaultResponse));
  EXPECT_EQ(queue_->outstanding_count(), 1u);
}

TEST_F(FaultQueueTest, ResponsesBeforeAnUnreadablePageAreDone) {
  attach_fault_hwpt();
  ASSERT_TRUE(report(1).ok());
  FaultMessage m{};
  ASSERT_EQ(*read(&m, 1), sizeof m);
  auto* p =
      static_cast<char*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  auto* r = reinterpret_cast<FaultResponse*>(p + 4096 - sizeof(FaultResponse));
  *r = FaultResponse{1, 0};
  ASSERT_EQ(mprotect(p + 4096, 4096, PROT_NONE), 0);
  auto n = queue_->write(addr(r), 2 * sizeof(FaultResponse));
  munmap(p, 8192);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, sizeof(FaultResponse));
}

// ---- the ends of a group ------------------------------------------------------------------------------

TEST_F(FaultQueueTest, DetachAnswersWaitingAndReadGroupsInvalid) {
  attach_fault_hwpt();
  Answers& a = answers_;
  ASSERT_TRUE(report(1, &a).ok());
  ASSERT_TRUE(report(2, &a).ok());
  FaultMessage m{};
  ASSERT_EQ(*read(&m, 1), sizeof m);
  ASSERT_TRUE(dev_->detach().ok());
  ASSERT_EQ(a.got.size(), 2u);
  EXPECT_EQ(a.got[0].second, PageResponseCode::kInvalid);
  EXPECT_EQ(a.got[1].second, PageResponseCode::kInvalid);
  EXPECT_EQ(queue_->waiting_count(), 0u);
  EXPECT_EQ(queue_->outstanding_count(), 0u);
  EXPECT_EQ(respond(m.cookie).status().error(), EINVAL);
}

TEST_F(FaultQueueTest, ReplaceAnswersTheOldAttachmentsGroupsOnly) {
  const std::uint32_t h1 = attach_fault_hwpt();
  const std::uint32_t h2 = *alloc_hwpt(kHwptFaultIdValid, fault_id_);
  Answers& a = answers_;
  ASSERT_TRUE(report(1, &a).ok());
  ASSERT_TRUE(dev_->replace(h2).ok());
  ASSERT_TRUE(report(2, &a).ok());
  ASSERT_EQ(a.got.size(), 1u);
  EXPECT_EQ(a.got[0].first, 1u);
  EXPECT_EQ(queue_->waiting_count(), 1u);
  (void)h1;
}

TEST_F(FaultQueueTest, ReplaceOntoTheSameHwptAnswersNothing) {
  const std::uint32_t h = attach_fault_hwpt();
  Answers& a = answers_;
  ASSERT_TRUE(report(1, &a).ok());
  ASSERT_TRUE(dev_->replace(h).ok());
  EXPECT_TRUE(a.got.empty());
  EXPECT_EQ(queue_->waiting_count(), 1u);
}

TEST_F(FaultQueueTest, DestroyingTheQueueAnswersItsGroups) {
  Answers& a = answers_;
  PageRequest r = request(1);
  ASSERT_TRUE(queue_->deliver(dev_id_, kHandle, &r, 1, a.responder()).ok());
  r.grpid = 2;
  ASSERT_TRUE(queue_->deliver(dev_id_, kHandle, &r, 1, a.responder()).ok());
  FaultMessage m{};
  ASSERT_EQ(*read(&m, 1), sizeof m);
  queue_.reset();
  ASSERT_TRUE(ctx_->destroy(fault_id_).ok());
  ASSERT_EQ(a.got.size(), 2u);
  EXPECT_EQ(a.got[0].second, PageResponseCode::kInvalid);
}

TEST_F(FaultQueueTest, ClosingTheContextAnswersEverything) {
  attach_fault_hwpt();
  Answers& a = answers_;
  ASSERT_TRUE(report(1, &a).ok());
  queue_.reset();
  dev_ref_.reset();
  ctx_.reset();
  EXPECT_EQ(a.got.size(), 1u);
}

TEST_F(FaultQueueTest, AutoRespondLeavesOtherHandlesAlone) {
  Answers& a = answers_;
  PageRequest r = request(1);
  ASSERT_TRUE(queue_->deliver(dev_id_, kHandle, &r, 1, a.responder()).ok());
  ASSERT_TRUE(queue_->deliver(dev_id_, kHandle + 1, &r, 1, a.responder()).ok());
  queue_->auto_respond(kHandle);
  EXPECT_EQ(a.got.size(), 1u);
  EXPECT_EQ(queue_->waiting_count(), 1u);
}

// ---- readiness, the handler, iopf enable --------------------------------------------------------------

TEST_F(FaultQueueTest, ReadinessFollowsTheDeliverList) {
  auto r = std::make_shared<RecordingReadiness>();
  queue_->set_readiness(r);
  PageRequest req = request(1);
  ASSERT_TRUE(queue_->deliver(dev_id_, kHandle, &req, 1, {}).ok());
  ASSERT_TRUE(queue_->deliver(dev_id_, kHandle, &req, 1, {}).ok());  // no second signal
  FaultMessage m[2] = {};
  ASSERT_EQ(*read(m, 2), 2 * sizeof(FaultMessage));
  EXPECT_EQ(r->signals, (std::vector<bool>{false, true, false}));
  EXPECT_FALSE(queue_->readable());
}

TEST_F(FaultQueueTest, AttachingReadinessSignalsTheCurrentState) {
  PageRequest req = request(1);
  ASSERT_TRUE(queue_->deliver(dev_id_, kHandle, &req, 1, {}).ok());
  auto r = std::make_shared<RecordingReadiness>();
  queue_->set_readiness(r);
  EXPECT_EQ(r->signals, (std::vector<bool>{true}));
  queue_->set_readiness(nullptr);
  EXPECT_EQ(r.use_count(), 1);
}

TEST_F(FaultQueueTest, EventfdReadinessPollsAsTheQueue) {
  auto r = EventfdReadiness::create();
  ASSERT_TRUE(r.ok());
  queue_->set_readiness(*r);
  pollfd p{(*r)->fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0);
  PageRequest req = request(1);
  ASSERT_TRUE(queue_->deliver(dev_id_, kHandle, &req, 1, {}).ok());
  EXPECT_EQ(poll(&p, 1, 0), 1);
  FaultMessage m{};
  ASSERT_EQ(*read(&m, 1), sizeof m);
  EXPECT_EQ(poll(&p, 1, 0), 0);
  queue_->set_readiness(nullptr);
}

TEST_F(FaultQueueTest, HandlerRunsAfterDeliveryAndMayAnswer) {
  attach_fault_hwpt();
  Answers& a = answers_;
  int calls = 0;
  queue_->set_handler([&](FaultQueue& q) {
    ++calls;
    FaultMessage m{};
    ASSERT_EQ(*q.read(addr(&m), sizeof m), sizeof m);
    FaultResponse r{m.cookie, 0};
    ASSERT_EQ(*q.write(addr(&r), sizeof r), sizeof r);
  });
  ASSERT_TRUE(report(1, &a).ok());
  EXPECT_EQ(calls, 1);
  ASSERT_EQ(a.got.size(), 1u);
  EXPECT_EQ(a.got[0].second, PageResponseCode::kSuccess);
  queue_->set_handler(nullptr);
  ASSERT_TRUE(report(2, &a).ok());
  EXPECT_EQ(calls, 1);
}

TEST_F(FaultQueueTest, IopfIsEnabledPerFaultCapableAttachment) {
  const std::uint32_t h = *alloc_hwpt(kHwptFaultIdValid | kHwptAllocPasid, fault_id_);
  ASSERT_TRUE(dev_->attach(h).ok());
  ASSERT_TRUE(dev_->attach(5, h).ok());
  EXPECT_EQ(dev_->iopf_count(), 2u);
  dev_->detach(5);
  EXPECT_EQ(dev_->iopf_count(), 1u);
  ASSERT_TRUE(dev_->replace(ioas_id_).ok());
  EXPECT_EQ(dev_->iopf_count(), 0u);
}

TEST_F(FaultQueueTest, IopfEnableFailureLeavesTheDeviceDetached) {
  const std::uint32_t h = *alloc_hwpt(kHwptFaultIdValid, fault_id_);
  std::vector<std::string> fired;
  SweepResult res =
      sweep_fail_nth([&] { dev_->detach(Device::kNoPasid); }, [&] { return dev_->attach(h).status(); },
                     [&](unsigned, Status st) {
                       if (st.ok()) return;
                       EXPECT_EQ(dev_->hwpt_id(), 0u);
                       EXPECT_EQ(dev_->iopf_count(), 0u);
                     });
  EXPECT_TRUE(res.final_status.ok());
  EXPECT_NE(std::find(res.fired_sites.begin(), res.fired_sites.end(), "device.iopf_enable"),
            res.fired_sites.end());
}

}  // namespace
}  // namespace uiommufd
