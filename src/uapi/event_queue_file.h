// The files of event-queue objects (the kernel's "[iommufd-pgfault]" and "[iommufd-viommu-event]"
// anonymous-inode files, drivers/iommu/iommufd/eventq.c).
//
// EventQueueFile is the common part: it holds its iommufd (so the context stays alive while the queue's fd
// is open, the kernel's iommufd_ctx_get()) and one user of its queue (so IOMMU_DESTROY of the queue is
// EBUSY meanwhile, refcount_inc() in iommufd_eventq_init()), attaches the readiness of its real fd to the
// queue, and gives both back when its last fd closes (iommufd_eventq_fops_release()). It takes no ioctls
// (ENOTTY) and no pread / pwrite (ESPIPE). FaultQueueFile adds read / write of the fault records.
//
// A vEVENT queue's file derives from EventQueueFile the same way, with Kind::kEventQueue, its own read()
// and PollFace::kReadOnly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "uiommufd/base/result.h"
#include "uiommufd/objects/event_queue.h"
#include "uiommufd/objects/fault_queue.h"
#include "uiommufd/objects/vevent_queue.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {

class EventQueueFile : public OpenFile {
 public:
  ~EventQueueFile() override;

  long ioctl(unsigned long cmd, std::uint64_t arg) override;
  bool positional() const override { return false; }

  EventQueue& queue() const { return *queue_; }

  // Puts `file` behind a new fd of `host` that polls as `face`, and attaches that fd's readiness to the
  // queue. Errors: the host's (EMFILE, ENFILE, ENOMEM); on failure the file is dropped.
  static Result<int> install(FdHost& host, std::shared_ptr<EventQueueFile> file, PollFace face);

 protected:
  // Takes the user of `queue`. `owner` is the iommufd the queue belongs to.
  EventQueueFile(Kind kind, std::shared_ptr<IommufdFile> owner, EventQueue& queue);

 private:
  // Declared first so that it goes last: the queue's context lives in it.
  const std::shared_ptr<IommufdFile> owner_;
  ObjectRef<EventQueue> queue_;
};

class FaultQueueFile final : public EventQueueFile {
 public:
  // ENOMEM (fault site "eventq.file": the kernel's anon_inode_getfile()).
  static Result<std::shared_ptr<FaultQueueFile>> create(std::shared_ptr<IommufdFile> owner,
                                                        FaultQueue& queue);

  long read(std::uint64_t uptr, std::size_t count) override;
  long write(std::uint64_t uptr, std::size_t count) override;
  bool has_read() const override { return true; }
  bool has_write() const override { return true; }

 private:
  FaultQueueFile(std::shared_ptr<IommufdFile> owner, FaultQueue& queue)
      : EventQueueFile(Kind::kFaultQueue, std::move(owner), queue), fault_(&queue) {}
  FaultQueue* const fault_;  // the queue the base holds
};

// The "[iommufd-viommu-event]" file: read() of vEVENT records; no write method (EINVAL).
class VeventQueueFile final : public EventQueueFile {
 public:
  // ENOMEM (fault site "eventq.file").
  static Result<std::shared_ptr<VeventQueueFile>> create(std::shared_ptr<IommufdFile> owner,
                                                         VeventQueue& queue);

  long read(std::uint64_t uptr, std::size_t count) override;
  bool has_read() const override { return true; }

 private:
  VeventQueueFile(std::shared_ptr<IommufdFile> owner, VeventQueue& queue)
      : EventQueueFile(Kind::kEventQueue, std::move(owner), queue), vevent_(&queue) {}
  VeventQueue* const vevent_;  // the queue the base holds
};

}  // namespace uiommufd::uapi
