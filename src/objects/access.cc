#include "uiommufd/objects/access.h"

#include <chrono>
#include <new>

#include "uiommufd/base/checked.h"
#include "uiommufd/base/log.h"
#include "uiommufd/base/try.h"
#include "uiommufd/objects/context.h"

namespace uiommufd {

Result<ObjectRef<Access>> Access::create(Context& ctx, Ops ops) {
  auto* access = new (std::nothrow) Access(ctx, std::move(ops));
  if (!access) return Status::error(ENOMEM);
  std::uint32_t id = TRY(ctx.reserve(std::unique_ptr<Object>(access)));
  access->add_user();  // the driver's
  ctx.finalize(id);
  return ObjectRef<Access>(access);
}

bool Access::try_get() { return try_add_user(); }

void Access::unmap_callback(std::uint64_t iova, std::uint64_t length) {
  if (ops_.unmap) ops_.unmap(iova, length);
}

Status Access::change_ioas(Move move, Ioas* next) {
  ObjectRef<Ioas> next_ref(next);  // dropped unless the move succeeds
  Ioas* old;
  {
    lockdep::MutexGuard g(ioas_lock_);
    if (move == Move::kAttach && ioas_) {
      UIOMMUFD_LOG(LogLevel::kWarn, "access %u: attach while attached", id());
      return Status::error(EINVAL);
    }
    if (move == Move::kReplace && !ioas_) return Status::error(ENOENT);
    if (move == Move::kDetach && !ioas_ && !ioas_unpin_) return {};
    // A move away from an IOAS is still calling back in another thread.
    if (ioas_ != ioas_unpin_.get()) return Status::error(EBUSY);
    old = ioas_;
    if (old == next) return {};
    ioas_ = nullptr;  // no new pin or rw from here on; unpin still goes to ioas_unpin_
    if (next) {
      if (Status st = next->iopt().add_access(this, alignment()); !st.ok()) {
        ioas_ = old;
        return st;
      }
    }
    if (!old) {
      ioas_unpin_ = std::move(next_ref);
      ioas_ = ioas_unpin_.get();
      return {};
    }
  }
  // The driver lets go of the old IOAS from this thread, with no engine lock held: its unpin_pages() takes
  // ioas_lock. Touching access_unmap first tells the validator that this path waits for the callbacks
  // that unmaps run inside it, so a driver lock held here and taken in the callback is reported.
  old->iopt().access_unmap().touch();
  unmap_callback(0, kUlongMax);
  {
    lockdep::MutexGuard g(ioas_lock_);
    old->iopt().remove_access(this, alignment());
    ioas_unpin_ = std::move(next_ref);  // gives the old IOAS's user back
    ioas_ = ioas_unpin_.get();
    // Under the lock: a destroy waiting for this move frees the access after taking the lock itself, so
    // the wake-up is over before the access can go.
    moves_done_.bump();
  }
  return {};
}

Status Access::attach(std::uint32_t ioas_id) {
  ObjectRef<Ioas> ioas = TRY(context().get<Ioas>(ioas_id, ObjectType::kIoas));
  return change_ioas(Move::kAttach, ioas.release());
}

Status Access::replace(std::uint32_t ioas_id) {
  ObjectRef<Ioas> ioas = TRY(context().get<Ioas>(ioas_id, ObjectType::kIoas));
  return change_ioas(Move::kReplace, ioas.release());
}

void Access::detach() {
  {
    lockdep::MutexGuard g(ioas_lock_);
    if (!ioas_) {
      UIOMMUFD_LOG(LogLevel::kWarn, "access %u: detach while not attached", id());
      return;
    }
  }
  (void)change_ioas(Move::kDetach, nullptr);
}

void Access::destroy(ObjectRef<Access> access) {
  Access* a = access.release();  // the driver's user: destroy_user() expects it
  Ioas* ioas;
  {
    lockdep::MutexGuard g(a->ioas_lock_);
    ioas = a->ioas_unpin_.get();
  }
  // Waiting for callbacks in flight: what the validator must see, before anything can block.
  if (ioas) ioas->iopt().access_unmap().touch();
  a->context().destroy_user(a);
}

void Access::destroy() {
  // EBUSY means another thread of the driver is moving this access right now: a driver bug (the kernel
  // WARNs). Freeing it while it is still on an IOAS's notify list would be worse, so wait for the move.
  // The wait sleeps until that move has finished (moves_done_); it has no limit, as freeing the access
  // before would leave it on a notify list, but it says so after the kernel's 60 s.
  for (int waits = 0;; ++waits) {
    const std::uint32_t seen = moves_done_.load();
    if (change_ioas(Move::kDetach, nullptr).error() != EBUSY) return;
    if (waits == 0) UIOMMUFD_LOG(LogLevel::kWarn, "access %u: destroyed while being moved", id());
    if (!moves_done_.wait_change(seen, std::chrono::steady_clock::now() + Context::kDestroyWaitLimit))
      UIOMMUFD_LOG(LogLevel::kError, "access %u: a move in another thread has not finished", id());
  }
}

Status Access::pin_pages(std::uint64_t iova, std::uint64_t length, std::vector<AccessPage>* pages,
                         std::uint32_t flags) {
  if (!ops_.needs_pin_pages || (!ops_.unmap && !ops_.internal)) return Status::error(EINVAL);
  if (flags & ~kPinWrite) return Status::error(EINVAL);
  if (length == 0) return Status::error(EINVAL);
  std::uint64_t last;
  if (!checked_add(iova, length - 1, &last)) return Status::error(EOVERFLOW);
  lockdep::MutexGuard g(ioas_lock_);
  if (!ioas_) return Status::error(ENOENT);
  return ioas_->iopt().access_pin(iova, length, flags & kPinWrite, pages, ops_.internal);
}

void Access::unpin_pages(std::uint64_t iova, std::uint64_t length) {
  lockdep::MutexGuard g(ioas_lock_);
  if (!ioas_unpin_ || !ioas_unpin_->iopt().access_unpin(iova, length, ops_.internal)) {
    unpin_mismatches_.fetch_add(1);
    UIOMMUFD_LOG(LogLevel::kWarn,
                 "access %u: unpin of [%#llx, +%#llx] matches no pin (pins are unpinned exactly as pinned)",
                 id(), static_cast<unsigned long long>(iova), static_cast<unsigned long long>(length));
  }
}

Status Access::rw(std::uint64_t iova, void* data, std::uint64_t length, std::uint32_t flags) {
  if (length == 0) return Status::error(EINVAL);
  std::uint64_t last;
  if (!checked_add(iova, length - 1, &last)) return Status::error(EOVERFLOW);
  lockdep::MutexGuard g(ioas_lock_);
  if (!ioas_) return Status::error(ENOENT);
  return ioas_->iopt().access_rw(iova, data, length, flags & kRwWrite, flags & kRwSlowPath);
}

std::uint32_t Access::ioas_id() {
  lockdep::MutexGuard g(ioas_lock_);
  return ioas_ ? ioas_->id() : 0;
}

}  // namespace uiommufd
