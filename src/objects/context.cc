#include "uiommufd/objects/context.h"

#include <algorithm>
#include <chrono>
#include <new>

#include <linux/capability.h>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/hazard.h"
#include "uiommufd/base/log.h"
#include "uiommufd/base/page.h"
#include "uiommufd/base/try.h"

namespace uiommufd {

namespace {
UIOMMUFD_FAULT_SITE(g_fault_lookup, "objects.lookup", ENOENT);
UIOMMUFD_FAULT_SITE(g_fault_alloc, "objects.alloc", ENOMEM);
UIOMMUFD_FAULT_SITE(g_fault_mmap, "objects.mmap", ENOMEM);
// Ids are 31-bit, as in the kernel since the negative ids were reserved.
constexpr std::uint32_t kMaxId = 0x7fffffff;
}  // namespace

const char* object_type_name(ObjectType type) {
  switch (type) {
    case ObjectType::kAny: return "any";
    case ObjectType::kDevice: return "device";
    case ObjectType::kHwptPaging: return "hwpt_paging";
    case ObjectType::kHwptNested: return "hwpt_nested";
    case ObjectType::kIoas: return "ioas";
    case ObjectType::kAccess: return "access";
    case ObjectType::kSelftest: return "selftest";
    case ObjectType::kViommu:
      return "viommu";
    case ObjectType::kVdevice:
      return "vdevice";
    case ObjectType::kHwQueue:
      return "hw_queue";
    case ObjectType::kVeventq:
      return "veventq";
    case ObjectType::kFault:
      return "fault";
  }
  return "?";
}

Result<std::unique_ptr<Context>> Context::create(bool vfio_compat) {
  TRY(inject(g_fault_alloc));
  std::unique_ptr<Context> ctx(new (std::nothrow) Context());
  if (!ctx) return Status::error(ENOMEM);
  ctx->mm_mode_.store(vfio_compat);
  return ctx;
}

Context::~Context() {
  // Passes in ascending id order; each destroys every object nothing else holds, which releases its
  // holds on parents for the next pass: leaves first (devices, accesses), then HWPTs, then IOASes.
  for (;;) {
    bool destroyed = false;
    bool live = false;
    for (std::uint32_t id = 1;; ++id) {
      Object* obj = nullptr;
      {
        lockdep::MutexGuard g(mu_);
        if (id >= slots_.size()) break;
        if (!slots_[id].obj || !slots_[id].published) continue;
        live = true;
        obj = slots_[id].obj.get();
      }
      if (remove_if_users(obj, 1)) {
        free_object(obj);
        destroyed = true;
      }
    }
    if (!live) break;
    // A pass that frees nothing while objects remain is a reference-count bug.
    UIOMMUFD_ASSERT(destroyed);
  }
}

Result<std::uint32_t> Context::reserve(std::unique_ptr<Object> obj) {
  TRY(inject(g_fault_alloc));
  obj->ctx_ = this;
  obj->destroy_wait_ = &destroy_wait_;
  lockdep::MutexGuard g(mu_);
  std::uint32_t id = 1;
  while (id < slots_.size() && (slots_[id].obj || slots_[id].tombstone)) ++id;
  if (id > kMaxId) return Status::error(ENOSPC);
  // Both tables grow here, where a failure leaves nothing to undo, so that finalize() cannot fail.
  try {
    if (id >= slots_.size()) slots_.resize(id + 1);
    grow_published_locked(id);
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  obj->id_ = id;
  slots_[id].obj = std::move(obj);
  slots_[id].published = false;
  return id;
}

void Context::finalize(std::uint32_t id) {
  lockdep::MutexGuard g(mu_);
  UIOMMUFD_ASSERT(id < slots_.size() && slots_[id].obj && !slots_[id].published);
  slots_[id].published = true;
  publish_locked(id, slots_[id].obj.get());
}

void Context::grow_published_locked(std::uint32_t id) {
  PublishedTable* t = published_.load(std::memory_order_relaxed);
  if (t != nullptr && id < t->capacity) return;
  std::uint32_t capacity = t ? t->capacity : 16;
  while (capacity <= id) capacity = capacity > kMaxId / 2 ? kMaxId + 1 : capacity * 2;
  auto grown = std::make_unique<PublishedTable>();
  grown->capacity = capacity;
  grown->objs = std::make_unique<std::atomic<Object*>[]>(capacity);
  for (std::uint32_t i = 0; i < capacity; ++i)
    grown->objs[i].store(t && i < t->capacity ? t->objs[i].load(std::memory_order_relaxed) : nullptr,
                         std::memory_order_relaxed);
  t = grown.get();
  // Strong guarantee: if the list cannot grow, `grown` is freed and the old table stays in use.
  tables_.push_back(std::move(grown));
  published_.store(t, std::memory_order_release);
}

void Context::publish_locked(std::uint32_t id, Object* obj) {
  mu_.assert_held();
  PublishedTable* t = published_.load(std::memory_order_relaxed);
  if (t == nullptr || id >= t->capacity) {
    // reserve() grew the table for every id it handed out; an id beyond it was never published.
    UIOMMUFD_ASSERT(obj == nullptr);
    return;
  }
  // Sequentially consistent: a clear must not pass the hazard scan that follows it (base/hazard.h).
  t->objs[id].store(obj, std::memory_order_seq_cst);
}

Result<std::uint32_t> Context::finish_create(Object& obj, Status st,
                                             const std::function<Status(std::uint32_t)>& respond) {
  const std::uint32_t id = obj.id();
  if (st.ok() && respond) st = respond(id);
  if (!st.ok()) {
    obj.destroy();
    abort(id);
    return st;
  }
  finalize(id);
  return id;
}

void Context::abort(std::uint32_t id) {
  std::unique_ptr<Object> obj;
  {
    lockdep::MutexGuard g(mu_);
    UIOMMUFD_ASSERT(id < slots_.size() && slots_[id].obj && !slots_[id].published);
    obj = std::move(slots_[id].obj);
  }
}

namespace {
// The end of a lookup, with `obj` (null: none) kept from being freed meanwhile: the type check and a user.
Status take_user(Object* obj, ObjectType type, Object** out) {
  if (obj == nullptr) return Status::error(ENOENT);
  if (type != ObjectType::kAny && obj->type() != type) return Status::error(ENOENT);
  // users is 0 only for an object being removed; it must not come back to life.
  if (!obj->try_add_user()) return Status::error(ENOENT);
  *out = obj;
  return Status();
}
}  // namespace

Status Context::lookup(std::uint32_t id, ObjectType type, Object** out) {
  TRY(inject(g_fault_lookup));
  HazardGuard hazard;
  if (hazard.available()) [[likely]] {
    const PublishedTable* t = published_.load(std::memory_order_acquire);
    if (t == nullptr || id >= t->capacity) return Status::error(ENOENT);
    return take_user(hazard.protect(t->objs[id]), type, out);
  }
  // This thread's hazard record is taken (a signal handler looking up while the code it interrupted is
  // inside a lookup): the table lock serves instead.
  lockdep::MutexGuard g(mu_);
  const bool published = id < slots_.size() && slots_[id].obj && slots_[id].published;
  return take_user(published ? slots_[id].obj.get() : nullptr, type, out);
}

bool Context::remove_if_users(Object* obj, std::uint32_t expected_users) {
  lockdep::MutexGuard g(mu_);
  std::uint32_t expected = expected_users;
  if (!obj->users_.compare_exchange_strong(expected, 0)) return false;
  // The slot keeps the object until free_object(); clearing `published` hides it now.
  slots_[obj->id_].published = false;
  publish_locked(obj->id_, nullptr);
  if (vfio_ioas_id_ == obj->id_) vfio_ioas_id_ = 0;
  return true;
}

void Context::free_object(Object* obj, bool tombstone) {
  obj->destroy();
  // Unpublished before this (remove_if_users, destroy): wait out lookups that read it just before.
  hazard_wait_unprotected(obj);
  std::unique_ptr<Object> owned;
  lockdep::MutexGuard g(mu_);
  owned = std::move(slots_[obj->id_].obj);
  slots_[obj->id_].tombstone = tombstone;
}

Status Context::destroy(std::uint32_t id) {
  Object* obj = nullptr;
  {
    lockdep::MutexGuard g(mu_);
    if (id >= slots_.size() || !slots_[id].obj || !slots_[id].published) return Status::error(ENOENT);
    obj = slots_[id].obj.get();
    std::uint32_t expected = 1;
    if (!obj->users_.compare_exchange_strong(expected, 0)) return Status::error(EBUSY);
    slots_[id].published = false;
    publish_locked(id, nullptr);
    if (vfio_ioas_id_ == id) vfio_ioas_id_ = 0;
  }
  free_object(obj);
  return {};
}

Result<std::uint32_t> Context::vfio_ioas_id() {
  lockdep::MutexGuard g(mu_);
  if (!vfio_ioas_id_) return Status::error(ENODEV);
  return vfio_ioas_id_;
}

void Context::set_vfio_ioas_id(std::uint32_t id) {
  lockdep::MutexGuard g(mu_);
  vfio_ioas_id_ = id;
}

void Context::clear_vfio_ioas_id() {
  lockdep::MutexGuard g(mu_);
  vfio_ioas_id_ = 0;
}

bool Context::destroy_user(Object* obj, bool tombstone) {
  // The caller's user plus the table's. Operations in flight hold more; they finish quickly (none waits
  // for the caller), and each one's drop_user() wakes this wait.
  const auto deadline = std::chrono::steady_clock::now() + kDestroyWaitLimit;
  WaitWord::Waiter waiter(destroy_wait_);  // before the first look at the count, so no drop is missed
  for (;;) {
    if (remove_if_users(obj, 2)) break;
    if (!waiter.wait(deadline)) {
      // The kernel's iommufd_object_dec_wait(): a user that never goes is a bug; the object stays for
      // close() to free, and the caller's user is given back.
      UIOMMUFD_LOG(LogLevel::kError, "%s %u: still in use after %lld s; left for close",
                   object_type_name(obj->type()), obj->id(),
                   static_cast<long long>(kDestroyWaitLimit.count()));
      obj->drop_user();
      return false;
    }
  }
  free_object(obj, tombstone);
  return true;
}

Status Context::set_mm_account_mode(bool mm) {
  if (!has_capability(CAP_SYS_RESOURCE)) return Status::error(EPERM);
  lockdep::MutexGuard g(mu_);
  // A tombstone counts: the kernel asks whether its object table is empty, and tombstones stay in it.
  for (const Slot& s : slots_)
    if (s.obj || s.tombstone) return Status::error(EBUSY);
  mm_mode_.store(mm);
  return {};
}

std::size_t Context::object_count() {
  lockdep::MutexGuard g(mu_);
  std::size_t n = 0;
  for (const Slot& s : slots_) n += s.obj != nullptr;
  return n;
}

Result<std::vector<ObjectRef<Object>>> Context::live_objects(ObjectType type) {
  std::vector<ObjectRef<Object>> out;
  lockdep::MutexGuard g(mu_);
  try {
    for (const Slot& s : slots_) {
      if (!s.obj || !s.published || (type != ObjectType::kAny && s.obj->type() != type)) continue;
      if (s.obj->try_add_user()) out.emplace_back(s.obj.get());
    }
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);  // `out` drops the users it took as it goes
  }
  return out;
}

// ---- mmap regions --------------------------------------------------------------------------------------

Result<std::uint64_t> Context::alloc_mmap(Object& owner, int memfd, std::uint64_t length) {
  if (length == 0 || length % kPageSize) return Status::error(EINVAL);
  TRY(inject(g_fault_mmap));
  lockdep::MutexGuard g(mu_);
  // Lowest fit at or above one page, as the kernel's maple-tree range allocation with a minimum of PAGE_SIZE.
  std::uint64_t at = kPageSize;
  for (const auto& [offset, region] : mmaps_) {
    if (offset >= at && offset - at >= length) break;
    at = std::max(at, offset + region.length);
  }
  try {
    mmaps_.emplace(at, MmapRegion{&owner, length, memfd});
  } catch (const std::bad_alloc&) {
    return Status::error(ENOMEM);
  }
  return at;
}

void Context::destroy_mmap(std::uint64_t offset) {
  lockdep::MutexGuard g(mu_);
  UIOMMUFD_ASSERT(mmaps_.erase(offset) == 1);
}

Result<Context::MmapRegion> Context::get_mmap(std::uint64_t offset, std::uint64_t length) {
  lockdep::MutexGuard g(mu_);
  auto it = mmaps_.find(offset);
  if (it == mmaps_.end() || it->second.length != length || !it->second.owner->try_add_user())
    return Status::error(ENXIO);
  return it->second;
}

}  // namespace uiommufd
