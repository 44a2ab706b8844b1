// VeventQueue: the kernel's IOMMUFD_OBJ_VEVENTQ (drivers/iommu/iommufd/eventq.c, driver.c
// iommufd_viommu_report_event()), an EventQueue of virtual events that a vIOMMU reports for its guest: each
// record is a header {flags, sequence} followed by the driver's payload (the mock's: the device's virtual
// id). At most `depth` events wait; one more is not queued but counted as lost, which a reader sees as a
// header with IOMMU_VEVENTQ_FLAG_LOST_EVENTS and no payload. Sequence numbers count every report, queued
// or lost, modulo 2^31, so a gap tells what was lost. docs/semantics.md#vevent-queues has the rules.
//
// A vIOMMU has at most one queue of each type; the queue holds its vIOMMU (a user) and is on its list
// until destroyed. Reports find the queue through the vIOMMU (Viommu::report_event()).
//
// Thread safety: every method may be called from any thread. No lock is held across a user copy; the
// deliver lock (EventQueue::lock()) guards the list, the count and the sequence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "uiommufd/base/result.h"
#include "uiommufd/objects/event_queue.h"

namespace uiommufd {

class Viommu;

// enum iommu_veventq_type and flags (include/uapi/linux/iommufd.h, iommufd_test.h).
inline constexpr std::uint32_t kVeventqTypeDefault = 0;
inline constexpr std::uint32_t kVeventqTypeSelftest = 0xbeefbeef;
inline constexpr std::uint32_t kVeventqFlagLostEvents = 1u << 0;
// The largest depth (the kernel's VEVENTQ_MAX_DEPTH).
inline constexpr std::uint32_t kVeventqMaxDepth = 1u << 19;

// struct iommufd_vevent_header.
struct VeventHeader {
  std::uint32_t flags;
  std::uint32_t sequence;
};
static_assert(sizeof(VeventHeader) == 8);

class VeventQueue final : public EventQueue {
 public:
  // The object part of IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc()), reserved but unpublished and already
  // on `viommu`'s list, where reports do not see it until publish(). The caller publishes it or calls
  // abort_reserved(). Errors in the kernel's order: EOPNOTSUPP flags or the DEFAULT type; EINVAL a depth of
  // 0 or above kVeventqMaxDepth; EEXIST the vIOMMU has a queue of this type; ENOMEM/ENOSPC.
  static Result<VeventQueue*> create_reserved(Viommu& viommu, std::uint32_t flags, std::uint32_t type,
                                              std::uint32_t depth);
  // A published queue, for library users; its id. Errors as create_reserved.
  static Result<std::uint32_t> create(Viommu& viommu, std::uint32_t type, std::uint32_t depth);
  void publish();
  void abort_reserved();

  // Queues one event with `len` bytes of payload, or, when `depth` events wait or the record cannot be
  // allocated (fault site "vevent.alloc", then ENOMEM), the lost-events header instead. The sequence
  // advances either way. The kernel's iommufd_viommu_report_event() after the queue lookup.
  Status report(const void* data, std::size_t len) EXCLUDES(lock_);

  // read(2) of the queue's file (iommufd_veventq_fops_read()): whole records in order, as many as fit, the
  // bytes written returned; 0 when nothing waits (reads never block). Errors only when nothing was written:
  //   EINVAL  count below a header, or the first waiting event does not fit;
  //   ENOMEM  the copy of the lost-events header (fault site "vevent.read");
  //   EFAULT  the buffer cannot be written (the record goes back to the head).
  Result<std::size_t> read(std::uint64_t uptr, std::size_t count) EXCLUDES(lock_);

  std::uint32_t queue_type() const { return type_; }
  std::uint32_t depth() const { return depth_; }
  // For tests: events waiting (the lost-events header not counted).
  std::uint32_t event_count() EXCLUDES(lock_);

  // The C++ face: a handler, if set, runs after each report to this queue, on the reporting thread with no
  // engine lock held (typically it calls read()). Null removes it. Or poll an EventfdReadiness.
  using Handler = std::function<void(VeventQueue&)>;
  void set_handler(Handler handler) EXCLUDES(lock_);
  // Runs the handler, if any (the reporting vIOMMU calls this after reporting, its locks released).
  void run_handler() EXCLUDES(lock_);

  ~VeventQueue() override;

 protected:
  void destroy() override;

 private:
  struct Event;
  static Event* as_event(QueueRecord* r);
  VeventQueue(Context& ctx, Viommu& viommu, std::uint32_t type, std::uint32_t depth);
  // Off the vIOMMU's list, every waiting event freed, the vIOMMU's user given back (iommufd_veventq_abort()).
  void unlink();
  // The kernel's iommufd_vevent_handler(): `r` at the tail with the next sequence number, the lost-events
  // header taken out first when it is the last record.
  void append_locked(QueueRecord* r, VeventHeader* header) REQUIRES(lock_);
  void free_events_locked() REQUIRES(lock_);
  bool is_lost_header(const QueueRecord* r) const { return r == &lost_.node; }

  Viommu* viommu_;  // with a user, until unlink()
  const std::uint32_t type_;
  const std::uint32_t depth_;
  struct Lost {
    QueueRecord node;
    VeventHeader header{kVeventqFlagLostEvents, 0};
  };
  Lost lost_ GUARDED_BY(lock_);
  bool lost_queued_ GUARDED_BY(lock_) = false;
  std::uint32_t num_events_ GUARDED_BY(lock_) = 0;
  std::uint32_t sequence_ GUARDED_BY(lock_) = 0;
  std::shared_ptr<const Handler> handler_ GUARDED_BY(lock_);
  bool linked_ = false;
};

}  // namespace uiommufd
