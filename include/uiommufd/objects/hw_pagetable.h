// HwPagetable: a paging HWPT, a Domain that mirrors one IOAS. It holds its IOAS (a user) and is listed on
// the IOAS; destroying it removes the domain from the IOAS (unmapping, and unpinning when it was the last).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "uiommufd/base/result.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/domain/domain.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/object.h"

namespace uiommufd {

class HwPagetable : public Object {
 public:
  // Creates the HWPT and adds its domain to `ioas` (filling it from every area). The caller holds
  // ioas.mutex(). Returns the object with one extra user for the caller (the attaching device). Errors
  // are ENOMEM/ENOSPC (the object, its id, its place on the IOAS's list) and add_domain's (EINVAL,
  // EADDRINUSE, EFAULT, ENOMEM, ENOENT); on failure nothing is left.
  static Result<ObjectRef<HwPagetable>> create_locked(Ioas& ioas, std::unique_ptr<Domain> domain,
                                                      bool auto_domain) REQUIRES(ioas.mutex());

  // Takes the domain out of the IOAS (unmapping, and unpinning where it held the last pin) and off the
  // IOAS's HWPT list, leaving the object itself to be destroyed later; a second call does nothing. The v6.2
  // selftest's mock domain does this when its selftest object goes (docs/abi.md#test-cmd-layouts).
  void remove_from_ioas();

  // A device's hold on the HWPT it is attached to: one user of the HWPT and one count in its device
  // tally, taken and given back together. Move-only and released exactly once, so no path can drop one
  // without the other: a replace onto the page table the device already uses takes a second hold, then
  // drops the first, and both counts come back to where they were (the kernel's replace onto the current
  // HWPT is a no-op). The last hold of an automatic HWPT destroys it (the kernel's
  // iommufd_hw_pagetable_put()); release() then waits for operations in flight on it, so it must not run
  // under an engine lock.
  class DeviceHold {
   public:
    DeviceHold() = default;
    DeviceHold(DeviceHold&& o) noexcept : hwpt_(std::exchange(o.hwpt_, nullptr)) {}
    DeviceHold& operator=(DeviceHold&& o) noexcept {
      release();
      hwpt_ = std::exchange(o.hwpt_, nullptr);
      return *this;
    }
    DeviceHold(const DeviceHold&) = delete;
    DeviceHold& operator=(const DeviceHold&) = delete;
    ~DeviceHold() { release(); }

    HwPagetable* get() const { return hwpt_; }
    HwPagetable* operator->() const { return hwpt_; }
    explicit operator bool() const { return hwpt_ != nullptr; }
    void release();

   private:
    friend class HwPagetable;
    explicit DeviceHold(HwPagetable* hwpt) : hwpt_(hwpt) {}
    HwPagetable* hwpt_ = nullptr;
  };

  // A new device hold (its own user and device count; the caller keeps whatever reference it used to
  // reach the HWPT). ENOENT when the HWPT is on its way out (an automatic one whose last device has gone):
  // it has left the IOAS's list, and a device attaching by its id must not revive it.
  Result<DeviceHold> hold_for_device_locked() REQUIRES(ioas().mutex());

  Domain& domain() { return *domain_; }
  Ioas& ioas() const { return *ioas_; }
  bool auto_domain() const { return auto_domain_; }
  // Devices attached; for tests.
  std::uint32_t device_count() EXCLUDES(ioas().mutex());

 protected:
  void destroy() override;

 private:
  HwPagetable(Context& ctx, Ioas& ioas, std::unique_ptr<Domain> domain, bool auto_domain)
      : Object(ctx, ObjectType::kHwptPaging),
        ioas_(ObjectRef<Ioas>::hold(ioas)),
        domain_(std::move(domain)),
        auto_domain_(auto_domain) {}

  ObjectRef<Ioas> ioas_;  // a user of the IOAS, held until destroy() (or the object's freeing)
  std::unique_ptr<Domain> domain_;
  const bool auto_domain_;
  bool added_ GUARDED_BY(ioas().mutex()) = false;  // the domain is on the IOAS's IoPagetable
  // Holds of attached devices. Reaching 0 on an automatic HWPT takes it off the IOAS's list at once.
  std::uint32_t devices_ GUARDED_BY(ioas().mutex()) = 0;
  bool listed_ GUARDED_BY(ioas().mutex()) = false;  // on the IOAS's HWPT list
};

}  // namespace uiommufd
