#include "uiommufd/objects/context.h"

#include <linux/capability.h>

#include <chrono>
#include <thread>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/fault.h"
#include "uiommufd/base/try.h"

namespace uiommufd {

namespace {
UIOMMUFD_FAULT_SITE(g_fault_lookup, "objects.lookup", ENOENT);
UIOMMUFD_FAULT_SITE(g_fault_alloc, "objects.alloc", ENOMEM);
// Ids are 31-bit, as in the kernel since the negative ids were reserved.
constexpr std::uint32_t kMaxId = 0x7fffffff;
}  // namespace

const char* object_type_name(ObjectType type) {
  switch (type) {
    case ObjectType::kAny: return "any";
    case ObjectType::kDevice: return "device";
    case ObjectType::kHwptPaging: return "hwpt_paging";
    case ObjectType::kIoas: return "ioas";
    case ObjectType::kAccess: return "access";
    case ObjectType::kSelftest: return "selftest";
  }
  return "?";
}

Result<std::unique_ptr<Context>> Context::create(bool vfio_compat) {
  TRY(inject(g_fault_alloc));
  std::unique_ptr<Context> ctx(new Context());
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
  lockdep::MutexGuard g(mu_);
  std::uint32_t id = 1;
  while (id < slots_.size() && slots_[id].obj) ++id;
  if (id > kMaxId) return Status::error(ENOSPC);
  if (id >= slots_.size()) slots_.resize(id + 1);
  obj->id_ = id;
  slots_[id].obj = std::move(obj);
  slots_[id].published = false;
  return id;
}

void Context::finalize(std::uint32_t id) {
  lockdep::MutexGuard g(mu_);
  UIOMMUFD_ASSERT(id < slots_.size() && slots_[id].obj && !slots_[id].published);
  slots_[id].published = true;
}

void Context::abort(std::uint32_t id) {
  std::unique_ptr<Object> obj;
  {
    lockdep::MutexGuard g(mu_);
    UIOMMUFD_ASSERT(id < slots_.size() && slots_[id].obj && !slots_[id].published);
    obj = std::move(slots_[id].obj);
  }
}

Result<Object*> Context::lookup(std::uint32_t id, ObjectType type) {
  TRY(inject(g_fault_lookup));
  lockdep::MutexGuard g(mu_);
  if (id >= slots_.size() || !slots_[id].obj || !slots_[id].published) return Status::error(ENOENT);
  Object* obj = slots_[id].obj.get();
  if (type != ObjectType::kAny && obj->type() != type) return Status::error(ENOENT);
  // users is 0 only for an object being removed; it must not come back to life.
  std::uint32_t users = obj->users_.load();
  do {
    if (users == 0) return Status::error(ENOENT);
  } while (!obj->users_.compare_exchange_weak(users, users + 1));
  return obj;
}

bool Context::remove_if_users(Object* obj, std::uint32_t expected_users) {
  lockdep::MutexGuard g(mu_);
  std::uint32_t expected = expected_users;
  if (!obj->users_.compare_exchange_strong(expected, 0)) return false;
  // The slot keeps the object until free_object(); clearing `published` hides it now.
  slots_[obj->id_].published = false;
  if (vfio_ioas_id_ == obj->id_) vfio_ioas_id_ = 0;
  return true;
}

void Context::free_object(Object* obj) {
  obj->destroy();
  std::unique_ptr<Object> owned;
  lockdep::MutexGuard g(mu_);
  owned = std::move(slots_[obj->id_].obj);
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

void Context::destroy_user(Object* obj) {
  // The caller's user plus the table's. Operations in flight hold more; they finish quickly (none waits
  // for the caller), so waiting here cannot deadlock.
  while (!remove_if_users(obj, 2)) std::this_thread::sleep_for(std::chrono::microseconds(20));
  free_object(obj);
}

Status Context::set_mm_account_mode(bool mm) {
  if (!has_capability(CAP_SYS_RESOURCE)) return Status::error(EPERM);
  lockdep::MutexGuard g(mu_);
  for (const Slot& s : slots_)
    if (s.obj) return Status::error(EBUSY);
  mm_mode_.store(mm);
  return {};
}

std::size_t Context::object_count() {
  lockdep::MutexGuard g(mu_);
  std::size_t n = 0;
  for (const Slot& s : slots_) n += s.obj != nullptr;
  return n;
}

}  // namespace uiommufd
