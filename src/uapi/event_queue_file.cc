#include "event_queue_file.h"

#include <cerrno>
#include <new>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/try.h"

namespace uiommufd::uapi {

// The queue's file (the kernel's anon_inode_getfile() in iommufd_eventq_init()).
UIOMMUFD_FAULT_SITE(g_fault_eventq_file, "eventq.file", ENOMEM);

EventQueueFile::EventQueueFile(Kind kind, std::shared_ptr<IommufdFile> owner, EventQueue& queue)
    : OpenFile(kind), owner_(std::move(owner)), queue_(ObjectRef<EventQueue>::hold(queue)) {}

EventQueueFile::~EventQueueFile() {
  // The readiness belongs to the fds, which are all closed now.
  queue_->set_readiness(nullptr);
}

long EventQueueFile::ioctl(unsigned long, std::uint64_t) { return -ENOTTY; }

Result<int> EventQueueFile::install(FdHost& host, std::shared_ptr<EventQueueFile> file, PollFace face) {
  std::shared_ptr<QueueReadiness> readiness;
  EventQueue& queue = file->queue();
  const int fd = TRY(host.install_queue(std::move(file), face, &readiness));
  queue.set_readiness(std::move(readiness));
  return fd;
}

namespace {
// Ownership of a new file, or ENOMEM: a failed allocation, or a control block that could not be had (the
// file is deleted then, giving its user of the queue back).
template <typename F>
Result<std::shared_ptr<F>> adopt(F* f) {
  if (!f) return Status::error(ENOMEM);
  try {
    return std::shared_ptr<F>(f);
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
}
}  // namespace

Result<std::shared_ptr<FaultQueueFile>> FaultQueueFile::create(std::shared_ptr<IommufdFile> owner,
                                                               FaultQueue& queue) {
  TRY(inject(g_fault_eventq_file));
  return adopt(new (std::nothrow) FaultQueueFile(std::move(owner), queue));
}

Result<std::shared_ptr<VeventQueueFile>> VeventQueueFile::create(std::shared_ptr<IommufdFile> owner,
                                                                 VeventQueue& queue) {
  TRY(inject(g_fault_eventq_file));
  return adopt(new (std::nothrow) VeventQueueFile(std::move(owner), queue));
}

long VeventQueueFile::read(std::uint64_t uptr, std::size_t count) {
  Result<std::size_t> n = vevent_->read(uptr, count);
  return n.ok() ? static_cast<long>(*n) : -static_cast<long>(n.error());
}

long FaultQueueFile::read(std::uint64_t uptr, std::size_t count) {
  Result<std::size_t> n = fault_->read(uptr, count);
  return n.ok() ? static_cast<long>(*n) : -static_cast<long>(n.error());
}

long FaultQueueFile::write(std::uint64_t uptr, std::size_t count) {
  Result<std::size_t> n = fault_->write(uptr, count);
  return n.ok() ? static_cast<long>(*n) : -static_cast<long>(n.error());
}

}  // namespace uiommufd::uapi
