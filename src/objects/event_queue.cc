#include "uiommufd/objects/event_queue.h"

#include <cerrno>
#include <cstdint>
#include <new>

#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "uiommufd/base/high_fd.h"

namespace uiommufd {

// ---- EventfdReadiness ---------------------------------------------------------------------------------

Result<std::shared_ptr<EventfdReadiness>> EventfdReadiness::create() {
  const int fd = move_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (fd < 0) return Status::error(errno);
  auto* r = new (std::nothrow) EventfdReadiness(fd);
  if (!r) {
    ::close(fd);
    return Status::error(ENOMEM);
  }
  try {
    return std::shared_ptr<EventfdReadiness>(r);
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);  // the shared_ptr constructor deleted `r`, closing the fd
  }
}

EventfdReadiness::~EventfdReadiness() { ::close(fd_); }

void EventfdReadiness::set_readable(bool readable) {
  const int saved = errno;
  std::uint64_t v = 1;
  // Non-blocking: a counter already at 0 (or at 1) makes the call a harmless EAGAIN.
  if (readable)
    (void)!::write(fd_, &v, sizeof v);
  else
    (void)!::read(fd_, &v, sizeof v);
  errno = saved;
}

// ---- EventQueue ---------------------------------------------------------------------------------------

bool EventQueue::readable() {
  lockdep::MutexGuard g(lock_);
  return has_records_locked();
}

void EventQueue::set_readiness(std::shared_ptr<QueueReadiness> readiness) {
  {
    lockdep::MutexGuard g(lock_);
    readiness_.swap(readiness);
    if (readiness_) readiness_->set_readable(has_records_locked());
  }
  // `readiness` is now the one detached; it goes here, outside the lock.
}

void EventQueue::insert_locked(QueueRecord* r, QueueRecord* after) {
  lock_.assert_held();
  const bool was_empty = empty_locked();
  r->prev = after;
  r->next = after->next;
  after->next->prev = r;
  after->next = r;
  if (was_empty && readiness_) readiness_->set_readable(true);
}

void EventQueue::remove_locked(QueueRecord* r) {
  lock_.assert_held();
  r->prev->next = r->next;
  r->next->prev = r->prev;
  r->prev = r->next = nullptr;
  if (empty_locked() && readiness_) readiness_->set_readable(false);
}

}  // namespace uiommufd
