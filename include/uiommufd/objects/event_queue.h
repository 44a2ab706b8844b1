// EventQueue: the common part of the objects that hand records to user space through a file (the kernel's
// struct iommufd_eventq, drivers/iommu/iommufd/eventq.c): a deliver list of records, the lock that guards
// it, and a readiness hook that mirrors "records wait" onto whatever the file polls on.
//
// Two kinds build on it: the fault queue (FaultQueue, IOMMU_FAULT_QUEUE_ALLOC: page-request groups and a
// response table) and the virtual-event queue (IOMMU_VEVENTQ_ALLOC: vEVENT headers and payloads, a depth,
// the lost-events header). The base knows neither record type: a record is an intrusive QueueRecord node
// that the derived class embeds, so delivering allocates nothing under the lock.
//
// The file face: an open file holds one user of the queue (Object::add_user(), the kernel's refcount_inc in
// iommufd_eventq_init()), so IOMMU_DESTROY of the queue's id is EBUSY while the file is open, and attaches
// a QueueReadiness, which the queue keeps in step with its deliver list. Nothing here knows about file
// descriptors: the runtime (or a library user) provides the readiness.
//
// Lock: lock() (class eventq.lock, lockdep/engine_lock_order.h) is innermost but for the readiness signal;
// it is taken under device.mutex when a device delivers a fault, and nothing of the engine is taken under
// it. It is never held across a user copy or a callback other than the readiness signal.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "uiommufd/base/result.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/objects/object.h"

namespace uiommufd {

// Whatever polls as "readable" for a queue's file. set_readable() is called with the queue's lock held,
// once when the readiness is attached (with the state then) and then exactly when the deliver list goes
// from empty to non-empty (true) or back (false). It must not call into the queue, take an engine lock, or
// block for long; it cannot fail (a readiness that cannot signal loses only wake-ups, never records).
class QueueReadiness {
 public:
  virtual ~QueueReadiness() = default;
  virtual void set_readable(bool readable) = 0;
};

// A readiness for library users: an eventfd of its own (close-on-exec, non-blocking) whose counter is
// non-zero exactly while records wait, so poll/select/epoll on fd() report POLLIN then (and POLLOUT
// always). The fd belongs to this object and is closed with it; callers only poll it.
class EventfdReadiness final : public QueueReadiness {
 public:
  // EMFILE/ENFILE/ENOMEM: the eventfd could not be made.
  static Result<std::shared_ptr<EventfdReadiness>> create();
  ~EventfdReadiness() override;
  int fd() const { return fd_; }
  void set_readable(bool readable) override;

 private:
  explicit EventfdReadiness(int fd) : fd_(fd) {}
  const int fd_;
};

// A node of a deliver list, embedded in each record. Owned by the derived queue's record type.
struct QueueRecord {
  QueueRecord* prev = nullptr;
  QueueRecord* next = nullptr;
};

class EventQueue : public Object {
 public:
  // Whether records wait (the kernel's poll: EPOLLIN | EPOLLRDNORM while the deliver list is non-empty).
  bool readable() EXCLUDES(lock_);

  // Attaches `readiness` (null: detaches), signalling it the current state at once. The one attached before
  // is dropped after the lock is released. An open file attaches its own and detaches it when it closes.
  void set_readiness(std::shared_ptr<QueueReadiness> readiness) EXCLUDES(lock_);

  // The queue's lock, for derived classes and their tests' annotations.
  lockdep::Mutex& lock() RETURN_CAPABILITY(lock_) { return lock_; }

 protected:
  EventQueue(Context& ctx, ObjectType type) : Object(ctx, type) { head_.prev = head_.next = &head_; }

  bool empty_locked() const REQUIRES(lock_) { return head_.next == &head_; }
  QueueRecord* front_locked() const REQUIRES(lock_) { return empty_locked() ? nullptr : head_.next; }
  // The record after `r`, null at the end (for walks that may unlink `r` after taking its successor).
  QueueRecord* next_locked(const QueueRecord* r) const REQUIRES(lock_) {
    return r->next == &head_ ? nullptr : r->next;
  }
  void push_back_locked(QueueRecord* r) REQUIRES(lock_) { insert_locked(r, head_.prev); }
  // Puts back a record a reader took but could not hand over (the kernel's *_deliver_restore()).
  void push_front_locked(QueueRecord* r) REQUIRES(lock_) { insert_locked(r, &head_); }
  QueueRecord* pop_front_locked() REQUIRES(lock_) {
    QueueRecord* r = front_locked();
    if (r) remove_locked(r);
    return r;
  }
  void remove_locked(QueueRecord* r) REQUIRES(lock_);
  // For a derived queue that keeps its records in storage of its own rather than on the deliver list:
  // whether any wait (the default asks the list), and the signal it gives when that changes (changes only,
  // as QueueReadiness requires).
  virtual bool has_records_locked() const REQUIRES(lock_) { return !empty_locked(); }
  void signal_readable_locked(bool readable) REQUIRES(lock_) {
    if (readiness_) readiness_->set_readable(readable);
  }

  mutable lockdep::Mutex lock_{lock_order::kEventqLock};

 private:
  void insert_locked(QueueRecord* r, QueueRecord* after) REQUIRES(lock_);

  QueueRecord head_ GUARDED_BY(lock_);  // sentinel of the circular deliver list
  std::shared_ptr<QueueReadiness> readiness_ GUARDED_BY(lock_);
};

}  // namespace uiommufd
