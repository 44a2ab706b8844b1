// FaultQueue: the kernel's IOMMUFD_OBJ_FAULT (drivers/iommu/iommufd/eventq.c), an EventQueue of I/O page
// fault groups. HWPTs allocated with IOMMU_HWPT_FAULT_ID_VALID hold one (a user) and deliver to it the page
// requests of the devices attached to them; user space reads the groups as FaultMessage records (one per
// page request, a group's records together, each carrying the group's cookie) and answers each group once
// by writing a FaultResponse with that cookie. docs/semantics.md#fault-queues has the rules.
//
// A group's life: delivered (on the deliver list, readable) → read (its cookie allocated, lowest free, as
// the kernel's xa_alloc on an XA_FLAGS_ALLOC1 array; in the response table) → answered (the device is told,
// the group freed). A group also ends, answered INVALID, when the attachment that raised it goes
// (auto_respond(), the kernel's iommufd_auto_response_faults() on detach and replace) and when the queue is
// destroyed.
//
// Thread safety: every method may be called from any thread. No lock is held across a user copy or a
// responder; the deliver lock (EventQueue::lock()) guards the list and the response table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "uiommufd/base/result.h"
#include "uiommufd/objects/event_queue.h"

namespace uiommufd {

// enum iommu_hwpt_pgfault_flags and enum iommu_hwpt_pgfault_perm (include/uapi/linux/iommufd.h).
inline constexpr std::uint32_t kPgfaultFlagPasidValid = 1u << 0;
inline constexpr std::uint32_t kPgfaultFlagLastPage = 1u << 1;
inline constexpr std::uint32_t kPgfaultPermRead = 1u << 0;
inline constexpr std::uint32_t kPgfaultPermWrite = 1u << 1;
inline constexpr std::uint32_t kPgfaultPermExec = 1u << 2;
inline constexpr std::uint32_t kPgfaultPermPriv = 1u << 3;

// One page request as the IOMMU reports it (the kernel's struct iommu_fault_page_request).
struct PageRequest {
  std::uint32_t flags = 0;  // kPgfaultFlag*
  std::uint32_t pasid = 0;
  std::uint32_t grpid = 0;
  std::uint32_t perm = 0;  // kPgfaultPerm*
  std::uint64_t addr = 0;
};

// The answer to a group (enum iommu_page_response_code). User space may write only kSuccess and kInvalid;
// kFailure is what the IOMMU core answers when it cannot queue a group.
enum class PageResponseCode : std::uint32_t { kSuccess = 0, kInvalid = 1, kFailure = 2 };

// What read() produces per page request: byte for byte struct iommu_hwpt_pgfault (pinned in uapi/abi.h).
struct FaultMessage {
  std::uint32_t flags;
  std::uint32_t dev_id;
  std::uint32_t pasid;
  std::uint32_t grpid;
  std::uint32_t perm;
  std::uint32_t reserved;
  std::uint64_t addr;
  std::uint32_t length;  // always 0: no length hint
  std::uint32_t cookie;
};
// What write() takes per group: struct iommu_hwpt_page_response.
struct FaultResponse {
  std::uint32_t cookie;
  std::uint32_t code;  // PageResponseCode: kSuccess or kInvalid
};
static_assert(sizeof(FaultMessage) == 40 && sizeof(FaultResponse) == 8);

// Where a group's answer goes (the driver's page_response). Called once per delivered group, with no
// engine lock held, on the thread that answers (a write, a detach, the queue's destroy, or the delivery
// itself when the group could not be queued). `last` is the group's last request. A plain function and
// argument, so that a group carries it without allocating.
struct PageResponder {
  void (*fn)(void* arg, const PageRequest& last, PageResponseCode code) = nullptr;
  void* arg = nullptr;
  void operator()(const PageRequest& last, PageResponseCode code) const {
    if (fn) fn(arg, last, code);
  }
};

class FaultQueue final : public EventQueue {
 public:
  static constexpr std::size_t kMessageSize = sizeof(FaultMessage);
  static constexpr std::size_t kResponseSize = sizeof(FaultResponse);

  // A queue with its id reserved but unpublished (IOMMU_FAULT_QUEUE_ALLOC publishes it after the reply);
  // the caller finalizes or aborts the id. ENOMEM, ENOSPC.
  static Result<FaultQueue*> create_reserved(Context& ctx);
  // A published queue, for library users; its id. ENOMEM, ENOSPC.
  static Result<std::uint32_t> create(Context& ctx);

  // Queues one group of page requests (`reqs[n - 1]` the last) that device `dev_id` raised through the
  // attachment `handle` (Device::attach_handle ids; auto_respond() matches them). The kernel's
  // iommufd_fault_iopf_handler() after iopf_group_alloc(). ENOMEM (fault site "fault.deliver"): nothing is
  // queued, and the caller answers the group kFailure as the IOMMU core does; EINVAL for n == 0.
  Status deliver(std::uint32_t dev_id, std::uint64_t handle, const PageRequest* reqs, std::size_t n,
                 PageResponder responder) EXCLUDES(lock_);

  // read(2) of the queue's file at position 0 into [uptr, uptr + count) of the current process (the
  // kernel's iommufd_fault_fops_read()): whole groups, in delivery order, as many as fit. Returns the
  // bytes written; 0 when nothing waits (reads never block). Errors only when nothing was written:
  //   ESPIPE   count is not a multiple of kMessageSize;
  //   EINVAL   the first waiting group does not fit in count (count 0 included);
  //   ENOMEM   its cookie cannot be allocated (fault site "fault.response"), EBUSY: all 2^32 − 1 in use;
  //   EFAULT   the buffer cannot be written; the group being copied goes back to the head of the queue.
  Result<std::size_t> read(std::uint64_t uptr, std::size_t count) EXCLUDES(lock_);
  // write(2) of FaultResponse records from [uptr, uptr + count) (iommufd_fault_fops_write()): each answers
  // and frees the group of its cookie, in order. Returns the bytes consumed; the first bad record stops the
  // call, whose error is returned only when nothing was consumed:
  //   ESPIPE   count is not a multiple of kResponseSize;
  //   EFAULT   a record cannot be read;
  //   EINVAL   a code other than kSuccess / kInvalid, or a cookie that names no group read and unanswered.
  Result<std::size_t> write(std::uint64_t uptr, std::size_t count) EXCLUDES(lock_);

  // Answers kInvalid and frees every group of attachment `handle`, waiting or read (the kernel's
  // iommufd_auto_response_faults()): run when that attachment is detached or replaced.
  void auto_respond(std::uint64_t handle) EXCLUDES(lock_);

  // The C++ face for library users. A handler, if set, runs after each delivery to this queue, on the
  // delivering thread with no engine lock held; it may read and answer (typically it calls read() on its
  // own buffer and write()s the responses). Null removes it.
  using Handler = std::function<void(FaultQueue&)>;
  void set_handler(Handler handler) EXCLUDES(lock_);
  // Runs the handler, if any (the delivering device calls this after delivering, its locks released).
  void run_handler() EXCLUDES(lock_);

  // For tests: groups waiting to be read, and groups read but not answered.
  std::size_t waiting_count() EXCLUDES(lock_);
  std::size_t outstanding_count() EXCLUDES(lock_);

 protected:
  void destroy() override;

 private:
  struct Group;
  explicit FaultQueue(Context& ctx) : EventQueue(ctx, ObjectType::kFault) {}

  // The response table (the kernel's fault->response xarray): index = cookie, lowest free first.
  Result<std::uint32_t> alloc_cookie_locked(Group* g) REQUIRES(lock_);
  void free_cookie_locked(std::uint32_t cookie) REQUIRES(lock_);
  Group* lookup_cookie_locked(std::uint32_t cookie) const REQUIRES(lock_);
  // A response with a cookie that names no group: the kernel's xa_erase() of it, which for cookie 0 can
  // free the index the array kept busy (below).
  void erase_missing_locked(std::uint32_t cookie) REQUIRES(lock_);
  // Answers and frees a chain of groups linked through their list nodes; no lock held.
  static void answer_all(QueueRecord* chain, PageResponseCode code);

  std::vector<Group*> table_ GUARDED_BY(lock_);      // null = free; [0] only while zero_ is kUsed
  std::uint32_t lowest_free_ GUARDED_BY(lock_) = 1;  // no free cookie >= 1 below it
  // Cookie 0, as the kernel's XA_FLAGS_ALLOC1 xarray treats index 0 (lib/xarray.c, XA_FLAGS_ZERO_BUSY):
  // busy while the array is as it was made (kPlaceholder: no entry, or a placeholder entry in the first
  // node), so the first cookie is 1; but erasing index 0 while a node exists (a response with cookie 0
  // while other groups are read), or erasing a group that got 0, frees the placeholder for good (kFree),
  // and 0 is then handed out like any other cookie (kUsed) until the queue goes.
  enum class ZeroCookie : std::uint8_t { kPlaceholder, kFree, kUsed };
  ZeroCookie zero_ GUARDED_BY(lock_) = ZeroCookie::kPlaceholder;
  std::size_t outstanding_ GUARDED_BY(lock_) = 0;
  std::uint64_t next_serial_ GUARDED_BY(lock_) = 1;
  std::shared_ptr<const Handler> handler_ GUARDED_BY(lock_);
};

}  // namespace uiommufd
