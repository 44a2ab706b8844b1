#include "uiommufd/objects/vevent_queue.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <new>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/try.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/viommu.h"

namespace uiommufd {

namespace {
// A reported event's record (kzalloc with GFP_NOWAIT in iommufd_viommu_report_event()).
UIOMMUFD_FAULT_SITE(g_fault_vevent_alloc, "vevent.alloc", ENOMEM);
// The copy of the lost-events header a read hands out (GFP_ATOMIC in iommufd_veventq_deliver_fetch()).
UIOMMUFD_FAULT_SITE(g_fault_vevent_read, "vevent.read", ENOMEM);
}  // namespace

// One queued event: its node, its header, then its payload.
struct VeventQueue::Event {
  QueueRecord node;
  VeventHeader header{0, 0};
  std::size_t len = 0;
  std::unique_ptr<unsigned char[]> data;
};

VeventQueue::Event* VeventQueue::as_event(QueueRecord* r) {
  static_assert(offsetof(Event, node) == 0);
  return reinterpret_cast<Event*>(r);
}

VeventQueue::VeventQueue(Context& ctx, Viommu& viommu, std::uint32_t type, std::uint32_t depth)
    : EventQueue(ctx, ObjectType::kVeventq), viommu_(&viommu), type_(type), depth_(depth) {
  viommu.add_user();
}

VeventQueue::~VeventQueue() {
  // An aborted queue is freed without its destroy op; unlink() is idempotent.
  unlink();
}

Result<VeventQueue*> VeventQueue::create_reserved(Viommu& viommu, std::uint32_t flags, std::uint32_t type,
                                                  std::uint32_t depth) {
  if (flags || type == kVeventqTypeDefault) return Status::error(EOPNOTSUPP);
  if (depth == 0 || depth > kVeventqMaxDepth) return Status::error(EINVAL);
  Context& ctx = viommu.context();
  lockdep::WriteGuard g(viommu.veventqs_mu_);
  for (const auto& slot : viommu.veventqs_) {
    if (slot.queue->type_ == type) return Status::error(EEXIST);
  }
  try {
    viommu.veventqs_.reserve(viommu.veventqs_.size() + 1);
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  auto* q = new (std::nothrow) VeventQueue(ctx, viommu, type, depth);
  if (!q) return Status::error(ENOMEM);
  TRY(ctx.reserve(std::unique_ptr<Object>(q)));  // on failure the queue is freed, giving its user back
  viommu.veventqs_.push_back({q, false});        // within capacity
  q->linked_ = true;
  return q;
}

Result<std::uint32_t> VeventQueue::create(Viommu& viommu, std::uint32_t type, std::uint32_t depth) {
  VeventQueue* q = TRY(create_reserved(viommu, 0, type, depth));
  q->publish();
  return q->id();
}

void VeventQueue::publish() {
  {
    lockdep::WriteGuard g(viommu_->veventqs_mu_);
    for (auto& slot : viommu_->veventqs_) {
      if (slot.queue == this) slot.live = true;
    }
  }
  context().finalize(id());
}

void VeventQueue::abort_reserved() {
  unlink();
  context().abort(id());
}

void VeventQueue::unlink() {
  if (!linked_) return;
  linked_ = false;
  {
    lockdep::WriteGuard g(viommu_->veventqs_mu_);
    auto& list = viommu_->veventqs_;
    list.erase(std::remove_if(list.begin(), list.end(),
                              [this](const Viommu::VeventqSlot& s) { return s.queue == this; }),
               list.end());
  }
  {
    lockdep::MutexGuard lk(lock_);
    free_events_locked();
  }
  std::exchange(viommu_, nullptr)->drop_user();
}

void VeventQueue::destroy() { unlink(); }

void VeventQueue::free_events_locked() {
  lock_.assert_held();
  while (QueueRecord* r = pop_front_locked()) {
    if (!is_lost_header(r)) delete as_event(r);
  }
  lost_queued_ = false;
  num_events_ = 0;
}

void VeventQueue::append_locked(QueueRecord* r, VeventHeader* header) {
  lock_.assert_held();
  // The lost-events header says "lost since the last event"; a later record (an event, or the header again
  // with a newer sequence) takes its place at the tail.
  if (lost_queued_ && next_locked(&lost_.node) == nullptr) {
    remove_locked(&lost_.node);
    lost_queued_ = false;
  }
  push_back_locked(r);
  if (is_lost_header(r)) lost_queued_ = true;
  header->sequence = sequence_;
  sequence_ = (sequence_ + 1) & INT_MAX;
}

Status VeventQueue::report(const void* data, std::size_t len) {
  if (len == 0 || data == nullptr) return Status::error(EINVAL);
  Event* ev = nullptr;
  Status st;
  if (inject(g_fault_vevent_alloc).ok()) {
    ev = new (std::nothrow) Event;
    unsigned char* bytes = ev ? new (std::nothrow) unsigned char[len] : nullptr;
    if (ev && bytes) {
      ev->data.reset(bytes);
      ev->len = len;
      std::memcpy(bytes, data, len);
    } else {
      delete ev;
      ev = nullptr;
    }
  }
  if (!ev) st = Status::error(ENOMEM);
  lockdep::MutexGuard lk(lock_);
  if (ev && num_events_ == depth_) {
    delete ev;
    ev = nullptr;
  }
  if (ev) {
    ++num_events_;
    append_locked(&ev->node, &ev->header);
  } else {
    append_locked(&lost_.node, &lost_.header);
  }
  return st;
}

Result<std::size_t> VeventQueue::read(std::uint64_t uptr, std::size_t count) {
  constexpr std::size_t kHeader = sizeof(VeventHeader);
  if (count < kHeader) return Status::error(EINVAL);
  const Mm& mm = Mm::current_ref();
  std::size_t done = 0;
  Status err;
  for (;;) {
    // Take the head record out; the lost-events header leaves as a copy, its own node going back only if
    // the copy cannot be handed over and nothing else waits.
    Event* ev = nullptr;
    VeventHeader lost_copy{};
    bool lost = false;
    {
      lockdep::MutexGuard lk(lock_);
      QueueRecord* r = front_locked();
      if (!r) break;
      if (is_lost_header(r)) {
        if (Status st = inject(g_fault_vevent_read); !st.ok()) {
          err = st;
          break;
        }
        lost_copy = lost_.header;
        lost = true;
        lost_queued_ = false;
      } else {
        ev = as_event(r);
      }
      remove_locked(r);
    }
    const VeventHeader& header = lost ? lost_copy : ev->header;
    const std::size_t payload = lost ? 0 : ev->len;
    // Put back what could not be handed over (iommufd_veventq_deliver_restore()).
    auto restore = [&] {
      lockdep::MutexGuard lk(lock_);
      if (!lost) {
        push_front_locked(&ev->node);
      } else if (empty_locked()) {
        push_front_locked(&lost_.node);
        lost_queued_ = true;
      }
    };
    if (count - done < kHeader) {
      restore();
      break;
    }
    if (!lost && kHeader + payload > count - done) {
      restore();
      if (done == 0) err = Status::error(EINVAL);
      break;
    }
    if (Status st = mm.copy_to_user(uptr + done, &header, kHeader); !st.ok()) {
      restore();
      err = Status::error(EFAULT);
      break;
    }
    if (payload) {
      if (Status st = mm.copy_to_user(uptr + done + kHeader, ev->data.get(), payload); !st.ok()) {
        restore();
        err = Status::error(EFAULT);
        break;
      }
    }
    done += kHeader + payload;
    if (!lost) {
      {
        lockdep::MutexGuard lk(lock_);
        --num_events_;
      }
      delete ev;
    }
  }
  if (done == 0 && !err.ok()) return err;
  return done;
}

std::uint32_t VeventQueue::event_count() {
  lockdep::MutexGuard lk(lock_);
  return num_events_;
}

void VeventQueue::set_handler(Handler handler) {
  std::shared_ptr<const Handler> h;
  if (handler) {
    try {
      h = std::make_shared<const Handler>(std::move(handler));
    } catch (const std::bad_alloc&) {
      return;  // the handler is left as it was
    }
  }
  lockdep::MutexGuard lk(lock_);
  handler_.swap(h);
}

// ---- reports through the vIOMMU -----------------------------------------------------------------------

void VeventQueue::run_handler() {
  std::shared_ptr<const Handler> h;
  {
    lockdep::MutexGuard lk(lock_);
    h = handler_;
  }
  if (h) (*h)(*this);
}

Status Viommu::report_event(std::uint32_t type, const void* data, std::size_t len) {
  ObjectRef<VeventQueue> queue;
  Status st;
  {
    lockdep::ReadGuard g(veventqs_mu_);
    auto it = std::find_if(veventqs_.begin(), veventqs_.end(),
                           [type](const VeventqSlot& s) { return s.live && s.queue->queue_type() == type; });
    if (it == veventqs_.end()) return Status::error(EOPNOTSUPP);
    st = it->queue->report(data, len);
    // For the handler, which runs unlocked: a queue being destroyed runs none.
    if (it->queue->try_add_user()) queue = ObjectRef<VeventQueue>(it->queue);
  }
  if (queue) queue->run_handler();
  return st;
}

}  // namespace uiommufd
