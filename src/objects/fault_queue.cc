#include "uiommufd/objects/fault_queue.h"

#include <algorithm>
#include <cerrno>
#include <limits>
#include <new>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/try.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/context.h"

namespace uiommufd {

namespace {
// The IOMMU core's group allocation (io-pgfault.c iopf_group_alloc()).
UIOMMUFD_FAULT_SITE(g_fault_deliver, "fault.deliver", ENOMEM);
// The response entry a read allocates per group (eventq.c xa_alloc() in iommufd_fault_fops_read()).
UIOMMUFD_FAULT_SITE(g_fault_response, "fault.response", ENOMEM);

// Records composed under the lock per batch of a read; a larger first group gets a buffer of its own.
constexpr std::size_t kBatchMessages = 16;
// Responses copied in per step of a write.
constexpr std::size_t kBatchResponses = 64;
}  // namespace

struct FaultQueue::Group : QueueRecord {
  std::uint64_t serial = 0;  // tells a group from a later one at the same address, for a read's restore
  std::uint64_t handle = 0;
  std::uint32_t dev_id = 0;
  std::uint32_t cookie = 0;  // meaningful while the group is in the response table
  std::uint32_t count = 0;
  PageRequest one;                         // count == 1
  std::unique_ptr<PageRequest[]> several;  // count > 1
  PageResponder responder;

  const PageRequest* requests() const { return count == 1 ? &one : several.get(); }
  const PageRequest& last() const { return requests()[count - 1]; }
  std::size_t bytes() const { return std::size_t{count} * kMessageSize; }
  void compose(FaultMessage* out) const {
    const PageRequest* r = requests();
    for (std::uint32_t i = 0; i < count; ++i) {
      out[i] = FaultMessage{r[i].flags, dev_id, r[i].pasid, r[i].grpid, r[i].perm, 0, r[i].addr, 0, cookie};
    }
  }
};

Result<FaultQueue*> FaultQueue::create_reserved(Context& ctx) {
  auto* q = new (std::nothrow) FaultQueue(ctx);
  if (!q) return Status::error(ENOMEM);
  TRY(ctx.reserve(std::unique_ptr<Object>(q)));
  return q;
}

Result<std::uint32_t> FaultQueue::create(Context& ctx) {
  FaultQueue* q = TRY(create_reserved(ctx));
  const std::uint32_t id = q->id();
  ctx.finalize(id);
  return id;
}

// ---- the response table -------------------------------------------------------------------------------

Result<std::uint32_t> FaultQueue::alloc_cookie_locked(Group* g) {
  lock_.assert_held();
  TRY(inject(g_fault_response));
  try {
    if (table_.empty()) table_.push_back(nullptr);  // index 0
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  std::uint32_t c = 0;
  if (zero_ != ZeroCookie::kFree) {
    c = std::max<std::uint32_t>(lowest_free_, 1);
    while (c < table_.size() && table_[c] != nullptr) ++c;
    if (c >= table_.size()) {
      // Cookies are 32-bit (xa_limit_32b): the kernel's xa_alloc is EBUSY when none is free.
      if (table_.size() > std::numeric_limits<std::uint32_t>::max()) return Status::error(EBUSY);
      try {
        table_.push_back(nullptr);
      } catch (const std::bad_alloc&) {
        return Status::error(ENOMEM);
      }
      c = static_cast<std::uint32_t>(table_.size() - 1);
    }
    lowest_free_ = c + 1;
  } else {
    zero_ = ZeroCookie::kUsed;
  }
  table_[c] = g;
  ++outstanding_;
  return c;
}

void FaultQueue::free_cookie_locked(std::uint32_t cookie) {
  lock_.assert_held();
  table_[cookie] = nullptr;
  --outstanding_;
  if (cookie == 0)
    zero_ = ZeroCookie::kFree;
  else
    lowest_free_ = std::min(lowest_free_, cookie);
  while (table_.size() > 1 && table_.back() == nullptr) table_.pop_back();
}

FaultQueue::Group* FaultQueue::lookup_cookie_locked(std::uint32_t cookie) const {
  lock_.assert_held();
  return cookie < table_.size() ? table_[cookie] : nullptr;
}

void FaultQueue::erase_missing_locked(std::uint32_t cookie) {
  lock_.assert_held();
  // Only index 0 holds something that is not a group: the placeholder, present while other cookies are
  // out (an empty array has none to erase).
  if (cookie == 0 && zero_ == ZeroCookie::kPlaceholder && outstanding_ > 0) zero_ = ZeroCookie::kFree;
}

void FaultQueue::answer_all(QueueRecord* chain, PageResponseCode code) {
  while (chain) {
    auto* g = static_cast<Group*>(chain);
    chain = g->next;
    g->responder(g->last(), code);
    delete g;
  }
}

// ---- delivery -----------------------------------------------------------------------------------------

Status FaultQueue::deliver(std::uint32_t dev_id, std::uint64_t handle, const PageRequest* reqs, std::size_t n,
                           PageResponder responder) {
  if (n == 0 || n > std::numeric_limits<std::uint32_t>::max()) return Status::error(EINVAL);
  TRY(inject(g_fault_deliver));
  std::unique_ptr<Group> g(new (std::nothrow) Group);
  if (!g) return Status::error(ENOMEM);
  g->handle = handle;
  g->dev_id = dev_id;
  g->count = static_cast<std::uint32_t>(n);
  g->responder = responder;
  if (n == 1) {
    g->one = reqs[0];
  } else {
    g->several.reset(new (std::nothrow) PageRequest[n]);
    if (!g->several) return Status::error(ENOMEM);
    std::copy(reqs, reqs + n, g->several.get());
  }
  lockdep::MutexGuard lk(lock_);
  g->serial = next_serial_++;
  push_back_locked(g.release());
  return {};
}

// ---- read ---------------------------------------------------------------------------------------------

Result<std::size_t> FaultQueue::read(std::uint64_t uptr, std::size_t count) {
  if (count % kMessageSize) return Status::error(ESPIPE);
  const Mm& mm = Mm::current_ref();
  std::size_t done = 0;
  Status rc;
  bool stop = false;
  while (!stop) {
    // A batch: groups taken off the list, given cookies and composed under the lock; copied after it.
    struct Taken {
      std::uint32_t cookie;
      std::uint64_t serial;
      std::size_t offset;  // into the composed messages
      std::size_t bytes;
    };
    Taken taken[kBatchMessages];
    FaultMessage inline_msgs[kBatchMessages];
    std::unique_ptr<FaultMessage[]> big;
    FaultMessage* msgs = inline_msgs;
    std::size_t n = 0, nmsgs = 0, batch_bytes = 0;
    {
      lockdep::MutexGuard lk(lock_);
      while (n < kBatchMessages) {
        auto* g = static_cast<Group*>(front_locked());
        if (!g) {
          stop = true;
          break;
        }
        const std::size_t used = done + batch_bytes;
        if (used >= count || g->bytes() > count - used) {
          if (used == 0) rc = Status::error(EINVAL);  // not even the first group fits
          stop = true;
          break;
        }
        if (nmsgs + g->count > kBatchMessages) {
          if (n != 0) break;  // the next batch starts with it
          big.reset(new (std::nothrow) FaultMessage[g->count]);
          if (!big) {
            rc = Status::error(ENOMEM);
            stop = true;
            break;
          }
          msgs = big.get();
        }
        Result<std::uint32_t> cookie = alloc_cookie_locked(g);
        if (!cookie.ok()) {
          rc = cookie.status();
          stop = true;
          break;
        }
        remove_locked(g);
        g->cookie = *cookie;
        g->compose(msgs + nmsgs);
        taken[n++] = Taken{*cookie, g->serial, nmsgs, g->bytes()};
        nmsgs += g->count;
        batch_bytes += g->bytes();
        if (msgs == big.get()) break;  // a group of its own
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      Status st = mm.copy_to_user(uptr + done, msgs + taken[i].offset, taken[i].bytes);
      if (st.ok()) {
        done += taken[i].bytes;
        continue;
      }
      // Groups from this one on go back to the head, in order, unless answered meanwhile (a writer that
      // guessed the cookie, or a detach): those are gone already.
      lockdep::MutexGuard lk(lock_);
      for (std::size_t j = n; j-- > i;) {
        Group* g = lookup_cookie_locked(taken[j].cookie);
        if (!g || g->serial != taken[j].serial) continue;
        free_cookie_locked(g->cookie);
        g->cookie = 0;
        push_front_locked(g);
      }
      rc = st;
      stop = true;
      break;
    }
  }
  if (done == 0 && !rc.ok()) return rc;
  return done;
}

// ---- write --------------------------------------------------------------------------------------------

Result<std::size_t> FaultQueue::write(std::uint64_t uptr, std::size_t count) {
  if (count % kResponseSize) return Status::error(ESPIPE);
  const Mm& mm = Mm::current_ref();
  std::size_t done = 0;
  Status rc;
  while (done < count && rc.ok()) {
    FaultResponse resp[kBatchResponses];
    std::size_t n = std::min(kBatchResponses, (count - done) / kResponseSize);
    Status copy = mm.copy_from_user(resp, uptr + done, n * kResponseSize);
    if (!copy.ok()) {
      // Find the first record that cannot be read; those before it are handled first, as the kernel reads
      // and handles them one at a time.
      std::size_t good = 0;
      while (good < n &&
             mm.copy_from_user(&resp[good], uptr + done + good * kResponseSize, kResponseSize).ok())
        ++good;
      n = good;
    }
    QueueRecord* answered = nullptr;
    QueueRecord** tail = &answered;
    std::uint32_t codes[kBatchResponses];
    {
      lockdep::MutexGuard lk(lock_);
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t code = resp[i].code;
        if (code != static_cast<std::uint32_t>(PageResponseCode::kSuccess) &&
            code != static_cast<std::uint32_t>(PageResponseCode::kInvalid)) {
          rc = Status::error(EINVAL);
          break;
        }
        Group* g = lookup_cookie_locked(resp[i].cookie);
        if (!g) {
          erase_missing_locked(resp[i].cookie);
          rc = Status::error(EINVAL);
          break;
        }
        free_cookie_locked(resp[i].cookie);
        codes[i] = code;
        g->next = nullptr;
        *tail = g;
        tail = &g->next;
        done += kResponseSize;
      }
    }
    // Answered outside the lock, in order, each with its own code.
    std::size_t i = 0;
    for (QueueRecord* r = answered; r;) {
      auto* g = static_cast<Group*>(r);
      r = r->next;
      g->responder(g->last(), static_cast<PageResponseCode>(codes[i++]));
      delete g;
    }
    if (rc.ok() && !copy.ok()) rc = copy;
  }
  if (done == 0 && !rc.ok()) return rc;
  return done;
}

// ---- endings ------------------------------------------------------------------------------------------

void FaultQueue::auto_respond(std::uint64_t handle) {
  QueueRecord* chain = nullptr;
  {
    lockdep::MutexGuard lk(lock_);
    for (QueueRecord* r = front_locked(); r;) {
      QueueRecord* next = next_locked(r);
      if (static_cast<Group*>(r)->handle == handle) {
        remove_locked(r);
        r->next = chain;
        chain = r;
      }
      r = next;
    }
    for (std::uint32_t c = 0; c < table_.size(); ++c) {
      Group* g = table_[c];
      if (!g || g->handle != handle) continue;
      free_cookie_locked(c);
      g->next = chain;
      chain = g;
    }
  }
  answer_all(chain, PageResponseCode::kInvalid);
}

void FaultQueue::destroy() {
  // Nothing else can reach the queue now (no user is left but the table's, which is going), yet the lock
  // is taken so that the analysis and the validator see the fields as they are everywhere else.
  QueueRecord* chain = nullptr;
  {
    lockdep::MutexGuard lk(lock_);
    while (QueueRecord* r = pop_front_locked()) {
      r->next = chain;
      chain = r;
    }
    for (std::uint32_t c = 0; c < table_.size(); ++c) {
      Group* g = table_[c];
      if (!g) continue;
      g->next = chain;
      chain = g;
    }
    table_.clear();
    outstanding_ = 0;
    lowest_free_ = 1;
    zero_ = ZeroCookie::kPlaceholder;
  }
  answer_all(chain, PageResponseCode::kInvalid);
  set_readiness(nullptr);
}

// ---- the C++ face -------------------------------------------------------------------------------------

void FaultQueue::set_handler(Handler handler) {
  std::shared_ptr<const Handler> h;
  if (handler) h = std::make_shared<const Handler>(std::move(handler));
  lockdep::MutexGuard lk(lock_);
  handler_.swap(h);
}

void FaultQueue::run_handler() {
  std::shared_ptr<const Handler> h;
  {
    lockdep::MutexGuard lk(lock_);
    h = handler_;
  }
  if (h) (*h)(*this);
}

std::size_t FaultQueue::waiting_count() {
  lockdep::MutexGuard lk(lock_);
  std::size_t n = 0;
  for (QueueRecord* r = front_locked(); r; r = next_locked(r)) ++n;
  return n;
}

std::size_t FaultQueue::outstanding_count() {
  lockdep::MutexGuard lk(lock_);
  return outstanding_;
}

}  // namespace uiommufd
