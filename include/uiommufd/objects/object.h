// The objects of a Context (the kernel's iommufd_object): an id, a type, and a `users` count.
//
// users is the long-term count: 1 is the object table's own reference, and every long-term holder (an
// HWPT holding its IOAS, a device holding its HWPT) and every operation in flight (a short-term lookup)
// adds one. An object can be destroyed only while users is exactly 1.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

#include "uiommufd/base/wait_word.h"

namespace uiommufd {

class Context;

// Numeric values are internal, not ABI.
enum class ObjectType : std::uint8_t {
  kAny = 0,
  kDevice,
  kHwptPaging,
  kHwptNested,
  kIoas,
  kAccess,
  kSelftest,
  kViommu,
  kVdevice,
  kHwQueue,
  kVeventq,  // VeventQueue (objects/vevent_queue.h)
  kFault,    // FaultQueue (objects/fault_queue.h)
};

const char* object_type_name(ObjectType type);

class Object {
 public:
  Object(const Object&) = delete;
  Object& operator=(const Object&) = delete;
  virtual ~Object() = default;

  ObjectType type() const { return type_; }
  std::uint32_t id() const { return id_; }
  Context& context() const { return *ctx_; }
  std::uint32_t users() const { return users_.load(std::memory_order_acquire); }

  // A long-term reference, held by another object or a driver (released with drop_user()).
  void add_user() { users_.fetch_add(1, std::memory_order_acq_rel); }
  // A user unless the object is being destroyed (users already 0): what a short-term holder takes.
  bool try_add_user() {
    std::uint32_t u = users_.load(std::memory_order_acquire);
    do {
      if (u == 0) return false;
    } while (!users_.compare_exchange_weak(u, u + 1, std::memory_order_acq_rel));
    return true;
  }
  // Wakes a destroy waiting for this object's operations in flight (Context::destroy_user()), through
  // the Context's wait word: the object itself may be freed the moment the count drops, so nothing of it
  // is touched after that.
  void drop_user() {
    WaitWord* const destroy_wait = destroy_wait_;
    users_.fetch_sub(1, std::memory_order_seq_cst);
    if (destroy_wait) destroy_wait->notify();
  }

 protected:
  Object(Context& ctx, ObjectType type) : ctx_(&ctx), type_(type) {}
  // The type's destroy op: releases what the object holds (parents' users, domains, pins) before it is
  // freed. Runs without the object table's lock and without any iopt or pages lock; an automatic HWPT's
  // runs inside its last device's device.mutex. Never fails.
  virtual void destroy() {}

 private:
  friend class Context;
  Context* ctx_;
  ObjectType type_;
  std::uint32_t id_ = 0;
  std::atomic<std::uint32_t> users_{1};
  WaitWord* destroy_wait_ = nullptr;  // the Context's, from reserve() on
};

// A reference that drops one user when it goes: what a lookup returns.
template <typename T>
class ObjectRef {
 public:
  ObjectRef() = default;
  // Adopts a user already counted.
  explicit ObjectRef(T* obj) : obj_(obj) {}
  // Takes a new user of `obj`: a long-term hold, as a member of the holding object.
  static ObjectRef hold(T& obj) {
    obj.add_user();
    return ObjectRef(&obj);
  }
  ObjectRef(ObjectRef&& o) noexcept : obj_(std::exchange(o.obj_, nullptr)) {}
  ObjectRef& operator=(ObjectRef&& o) noexcept {
    reset();
    obj_ = std::exchange(o.obj_, nullptr);
    return *this;
  }
  ObjectRef(const ObjectRef&) = delete;
  ObjectRef& operator=(const ObjectRef&) = delete;
  ~ObjectRef() { reset(); }

  // Turns the reference into a plain pointer whose user stays counted (a long-term hold).
  T* release() { return std::exchange(obj_, nullptr); }
  void reset() {
    if (obj_) std::exchange(obj_, nullptr)->drop_user();
  }
  T* get() const { return obj_; }
  T* operator->() const { return obj_; }
  T& operator*() const { return *obj_; }
  explicit operator bool() const { return obj_ != nullptr; }

 private:
  T* obj_ = nullptr;
};

}  // namespace uiommufd
