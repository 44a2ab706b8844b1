// Intrusive reference counting for objects shared across layers (pages shared by areas, an IOAS held by
// its HWPTs). The count lives in the object, so a raw pointer from a list can be turned back into an
// owning reference, and an object can hand out references to itself.
//
//   class Pages : public RefCounted<Pages> { ... };
//   RefPtr<Pages> p = make_ref<Pages>(...);   // count 1
//   RefPtr<Pages> q = p;                      // count 2
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

namespace uiommufd {

template <typename T>
class RefCounted {
 public:
  RefCounted(const RefCounted&) = delete;
  RefCounted& operator=(const RefCounted&) = delete;

  void add_ref() const { refs_.fetch_add(1, std::memory_order_relaxed); }
  // Deletes the object when the last reference goes.
  void release() const {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete static_cast<const T*>(this);
  }
  std::uint32_t ref_count() const { return refs_.load(std::memory_order_relaxed); }

 protected:
  RefCounted() = default;
  ~RefCounted() = default;

 private:
  mutable std::atomic<std::uint32_t> refs_{0};
};

template <typename T>
class RefPtr {
 public:
  RefPtr() = default;
  RefPtr(std::nullptr_t) {}
  // Takes a new reference on `p`.
  explicit RefPtr(T* p) : p_(p) {
    if (p_) p_->add_ref();
  }
  RefPtr(const RefPtr& o) : RefPtr(o.p_) {}
  RefPtr(RefPtr&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  template <typename U>
  RefPtr(const RefPtr<U>& o) : RefPtr(o.get()) {}
  ~RefPtr() {
    if (p_) p_->release();
  }
  RefPtr& operator=(RefPtr o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }

  T* get() const { return p_; }
  T* operator->() const { return p_; }
  T& operator*() const { return *p_; }
  explicit operator bool() const { return p_ != nullptr; }
  bool operator==(const RefPtr& o) const { return p_ == o.p_; }
  bool operator==(std::nullptr_t) const { return p_ == nullptr; }
  void reset() { *this = RefPtr(); }

 private:
  T* p_ = nullptr;
};

template <typename T, typename... Args>
RefPtr<T> make_ref(Args&&... args) {
  return RefPtr<T>(new T(std::forward<Args>(args)...));
}

}  // namespace uiommufd
