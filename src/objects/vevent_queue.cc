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
  // Also for a queue that never made it onto the list (its id could not be had): its user of the vIOMMU,
  // taken at construction, goes either way.
  if (!viommu_) return;
  if (std::exchange(linked_, false)) {
    lockdep::WriteGuard g(viommu_->veventqs_mu_);
    auto& list = viommu_->veventqs_;
    list.erase(std::remove_if(list.begin(), list.end(),
                              [this](const Viommu::VeventqSlot& s) { return s.queue == this; }),
               list.end());
  }
  {
    lockdep::MutexGuard lk(lock_);
    chunks_.clear();
    ends_.clear();
    ends_first_ = 0;
    lost_ = false;
    head_ = tail_ = 0;
    first_chunk_ = 0;
    update_readable_locked();
  }
  std::exchange(viommu_, nullptr)->drop_user();
}

void VeventQueue::destroy() { unlink(); }

void VeventQueue::update_readable_locked() {
  lock_.assert_held();
  const bool now = has_records_locked();
  if (now != signalled_) {
    signalled_ = now;
    signal_readable_locked(now);
  }
}

unsigned char* VeventQueue::at_locked(std::uint64_t pos, std::size_t* room) const {
  lock_.assert_held();
  const std::uint64_t chunk = pos / kChunk;
  *room = kChunk - pos % kChunk;
  return chunks_[chunk - first_chunk_].get() + pos % kChunk;
}

Status VeventQueue::append_bytes_locked(const void* a, std::size_t alen, const void* b, std::size_t blen) {
  lock_.assert_held();
  const std::uint64_t end = tail_ + alen + blen;
  // Room first, so that a failure leaves the stream as it was.
  std::size_t added = 0;
  while ((first_chunk_ + chunks_.size()) * kChunk < end) {
    unsigned char* c = new (std::nothrow) unsigned char[kChunk];
    if (c == nullptr) {
      for (; added; --added) chunks_.pop_back();
      return Status::error(ENOMEM);
    }
    try {
      chunks_.emplace_back(c);
    } catch (const std::bad_alloc&) {
      delete[] c;
      for (; added; --added) chunks_.pop_back();
      return Status::error(ENOMEM);
    }
    ++added;
  }
  const unsigned char* parts[2] = {static_cast<const unsigned char*>(a),
                                   static_cast<const unsigned char*>(b)};
  const std::size_t lens[2] = {alen, blen};
  for (int p = 0; p < 2; ++p) {
    for (std::size_t off = 0; off < lens[p];) {
      std::size_t room;
      unsigned char* dst = at_locked(tail_, &room);
      const std::size_t n = std::min(room, lens[p] - off);
      std::memcpy(dst, parts[p] + off, n);
      off += n;
      tail_ += n;
    }
  }
  return {};
}

void VeventQueue::drop_ends_locked(std::size_t n) {
  lock_.assert_held();
  ends_first_ += n;
  if (ends_first_ == ends_.size()) {
    ends_.clear();
    ends_first_ = 0;
  } else if (ends_first_ >= 4096 && ends_first_ * 2 >= ends_.size()) {
    ends_.erase(ends_.begin(), ends_.begin() + static_cast<std::ptrdiff_t>(ends_first_));
    ends_first_ = 0;
  }
}

void VeventQueue::consume_locked(std::uint64_t pos) {
  lock_.assert_held();
  head_ = pos;
  while (!chunks_.empty() && (first_chunk_ + 1) * kChunk <= head_) {
    chunks_.pop_front();
    ++first_chunk_;
  }
}

Status VeventQueue::report(const void* data, std::size_t len) {
  if (len == 0 || data == nullptr) return Status::error(EINVAL);
  Status st = inject(g_fault_vevent_alloc);
  lockdep::MutexGuard lk(lock_);
  if (st.ok() && waiting_locked() < depth_) {
    const VeventHeader header{0, sequence_};
    st = append_bytes_locked(&header, sizeof(header), data, len);
    if (st.ok()) {
      try {
        ends_.push_back(tail_);
      } catch (const std::bad_alloc&) {
        tail_ -= sizeof(header) + len;
        st = Status::error(ENOMEM);
      }
    }
    if (st.ok()) {
      // A new last record: the lost-events header, which was the last, gives way.
      lost_ = false;
      sequence_ = (sequence_ + 1) & INT_MAX;
      update_readable_locked();
      return st;
    }
  }
  // Full, or no memory for the record: the lost-events header moves to the tail with this sequence number.
  lost_ = true;
  lost_sequence_ = sequence_;
  sequence_ = (sequence_ + 1) & INT_MAX;
  update_readable_locked();
  return st;
}

Status VeventQueue::copy_out(std::uint64_t from, std::uint64_t to, std::uint64_t uptr) {
  const Mm& mm = Mm::current_ref();
  while (from < to) {
    unsigned char* src;
    std::size_t room;
    {
      lockdep::MutexGuard lk(lock_);
      src = at_locked(from, &room);
    }
    const std::size_t n = std::min<std::uint64_t>(room, to - from);
    TRY(mm.copy_to_user(uptr, src, n));
    uptr += n;
    from += n;
  }
  return {};
}

Result<std::size_t> VeventQueue::read(std::uint64_t uptr, std::size_t count) {
  constexpr std::size_t kHeader = sizeof(VeventHeader);
  if (count < kHeader) return Status::error(EINVAL);
  lockdep::MutexGuard reader(read_mu_);
  // Claim the records that fit, in order: events whose whole record fits, then the lost-events header
  // (always last) if its 8 bytes fit.
  std::uint64_t head, end;
  std::size_t events;
  bool lost = false;
  VeventHeader lost_header{kVeventqFlagLostEvents, 0};
  std::uint32_t claimed_at = 0;  // the sequence when the header was taken
  {
    lockdep::MutexGuard lk(lock_);
    head = head_;
    const auto first = ends_.begin() + static_cast<std::ptrdiff_t>(ends_first_);
    events = static_cast<std::size_t>(std::upper_bound(first, ends_.end(), head + count) - first);
    end = events ? first[static_cast<std::ptrdiff_t>(events - 1)] : head;
    if (events == 0 && waiting_locked() != 0) return Status::error(EINVAL);  // the first event does not fit
    if (events == waiting_locked() && lost_ && count - (end - head) >= kHeader) {
      if (Status st = inject(g_fault_vevent_read); !st.ok()) {
        if (events == 0) return st;
      } else {
        lost = true;
        lost_header.sequence = lost_sequence_;
        claimed_at = sequence_;
        lost_ = false;  // taken: a report meanwhile takes its place at the tail
      }
    }
  }
  // The events, in one copy per chunk; if that faults, record by record to find how many made it.
  std::size_t copied = events;
  Status fault;
  if (events && !copy_out(head, end, uptr).ok()) {
    copied = 0;
    std::uint64_t at = head;
    for (; copied < events; ++copied) {
      std::uint64_t rec_end;
      {
        lockdep::MutexGuard lk(lock_);
        rec_end = ends_[ends_first_ + copied];
      }
      if (!copy_out(at, rec_end, uptr + (at - head)).ok()) break;
      at = rec_end;
    }
    fault = Status::error(EFAULT);
  }
  std::size_t done = 0;
  {
    lockdep::MutexGuard lk(lock_);
    if (copied) {
      const std::uint64_t last = ends_[ends_first_ + copied - 1];
      done = last - head;
      consume_locked(last);
      drop_ends_locked(copied);
    }
    update_readable_locked();
  }
  if (lost) {
    bool put_back = !fault.ok();
    if (!put_back) {
      if (Mm::current_ref().copy_to_user(uptr + done, &lost_header, kHeader).ok()) {
        done += kHeader;
      } else {
        put_back = true;
        fault = Status::error(EFAULT);
      }
    }
    if (put_back) {
      // Not handed over (an earlier record faulted, or the header itself): it is still the last record
      // unless something was reported since, which took its place (the kernel's restore).
      lockdep::MutexGuard lk(lock_);
      if (sequence_ == claimed_at) {
        lost_ = true;
        lost_sequence_ = lost_header.sequence;
        update_readable_locked();
      }
    }
  }
  if (done == 0 && !fault.ok()) return fault;
  return done;
}

std::uint32_t VeventQueue::event_count() {
  lockdep::MutexGuard lk(lock_);
  return static_cast<std::uint32_t>(waiting_locked());
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
