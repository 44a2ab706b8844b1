// A context with something of everything a dump shows, for the dump's tests and its sample program:
//
//   IOAS 1: areas A (16 pages, rw, at kIovaA) and B (4 pages, read-only, at kIovaB), a user reserved range
//           kUserReserved, and mock device 3 attached, which made automatic HWPT 4: its domain is filled
//           from both areas (so every page is pinned) and reserved the IOVA outside its aperture.
//   IOAS 2: area C (8 pages, rw, at kIovaC) of which access 5 pins pages 2 and 3, area D (4 pages of a
//           memfd from file offset kFileOffset, rw, at kIovaD, nothing pinned), an allowed range kAllowed
//           and a user reserved range kUserReserved2 outside it.
//
// Pinned pages are charged to the user (CAP_IPC_LOCK is hidden for the object's life), so there is
// something to account.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uiommufd/base/page.h"
#include "uiommufd/base/status.h"
#include "uiommufd/base/try.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/objects/access.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/pinned_ranges.h"

namespace uiommufd::dump::testing {

class SampleContext {
 public:
  static constexpr std::uint64_t kIovaA = 0x1000000;
  static constexpr std::uint64_t kIovaB = 0x2000000;
  static constexpr std::uint64_t kIovaC = 0x400000;
  static constexpr std::uint64_t kIovaD = 0x800000;
  static constexpr std::uint64_t kFileOffset = 0x1000;
  static constexpr Interval kUserReserved{0x10000000, 0x1000ffff};
  static constexpr Interval kAllowed{0x100000, 0xffffffff};
  static constexpr Interval kUserReserved2{0x200000000, 0x200000fff};
  static constexpr std::uint32_t kIoas1 = 1, kIoas2 = 2, kDevice = 3, kHwpt = 4, kAccess = 5;

  SampleContext() { set_cap_ipc_lock_for_testing(false); }
  ~SampleContext() {
    if (access_) Access::destroy(std::move(access_));
    ctx_.reset();
    if (mem_ != MAP_FAILED) munmap(mem_, kLen);
    set_cap_ipc_lock_for_testing(std::nullopt);
  }
  SampleContext(const SampleContext&) = delete;
  SampleContext& operator=(const SampleContext&) = delete;

  Status build() {
    mem_ = mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem_ == MAP_FAILED) return Status::error(ENOMEM);
    ctx_ = TRY(Context::create());
    TRY(Ioas::create(*ctx_));
    TRY(Ioas::create(*ctx_));
    ObjectRef<Ioas> ioas1 = TRY(ctx_->get<Ioas>(kIoas1, ObjectType::kIoas));
    ObjectRef<Ioas> ioas2 = TRY(ctx_->get<Ioas>(kIoas2, ObjectType::kIoas));
    TRY(ioas1->iopt().add_reserved(kUserReserved, nullptr));
    std::uint64_t iova = kIovaA;
    TRY(ioas1->map(uptr(0), 16 * kPageSize, &iova, kRw | Ioas::kFixedIova));
    iova = kIovaB;
    TRY(ioas1->map(uptr(16 * kPageSize), 4 * kPageSize, &iova, Ioas::kReadable | Ioas::kFixedIova));
    const std::uint32_t dev_id = TRY(Device::create(*ctx_, Device::Kind::kMock));
    ObjectRef<Device> dev = TRY(ctx_->get<Device>(dev_id, ObjectType::kDevice));
    TRY(dev->attach(kIoas1));

    TRY(ioas2->iopt().set_allowed({kAllowed}));
    TRY(ioas2->iopt().add_reserved(kUserReserved2, nullptr));
    iova = kIovaC;
    TRY(ioas2->map(uptr(32 * kPageSize), 8 * kPageSize, &iova, kRw | Ioas::kFixedIova));
    const int memfd = memfd_create("uiommufd-dump-sample", MFD_CLOEXEC);
    if (memfd < 0) return Status::error(errno);
    struct stat st {};
    Status mapped =
        ftruncate(memfd, 8 * kPageSize) == 0 && fstat(memfd, &st) == 0 ? Status() : Status::error(errno);
    iova = kIovaD;
    if (mapped.ok())
      mapped = ioas2->map_file(memfd, kFileOffset, 4 * kPageSize, &iova, kRw | Ioas::kFixedIova);
    close(memfd);  // the backing keeps its own descriptor
    TRY(mapped);
    file_dev_ = st.st_dev;
    file_ino_ = st.st_ino;
    Access::Ops ops;
    ops.unmap = [this](std::uint64_t iova, std::uint64_t length) {
      if (on_unmap) on_unmap();
      ranges_.unmap(*access_raw_, iova, length);
    };
    access_ = TRY(Access::create(*ctx_, ops));
    access_raw_ = access_.get();
    TRY(access_->attach(kIoas2));
    TRY(ranges_.pin(*access_, kIovaC + 2 * kPageSize, 2 * kPageSize, nullptr, 0));
    return {};
  }

  Context& ctx() { return *ctx_; }
  // The memfd behind area D, as fstat() gave it.
  std::uint64_t file_dev() const { return file_dev_; }
  std::uint64_t file_ino() const { return file_ino_; }
  // The user address of byte `off` of the sample's memory.
  std::uint64_t uptr(std::uint64_t off) const { return reinterpret_cast<std::uint64_t>(mem_) + off; }
  // Run inside the access's unmap callback before it unpins (while the area shows as being unmapped).
  std::function<void()> on_unmap;

 private:
  static constexpr std::uint32_t kRw = Ioas::kReadable | Ioas::kWriteable;
  static constexpr std::size_t kLen = 64 * kPageSize;

  void* mem_ = MAP_FAILED;
  std::unique_ptr<Context> ctx_;
  PinnedRanges ranges_;
  ObjectRef<Access> access_;
  Access* access_raw_ = nullptr;  // for the callback, which may run inside destroy
  std::uint64_t file_dev_ = 0;
  std::uint64_t file_ino_ = 0;
};

}  // namespace uiommufd::dump::testing
