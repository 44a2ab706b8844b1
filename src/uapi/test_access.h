// TestAccessFile: the fd IOMMU_TEST_OP_CREATE_ACCESS returns (the kernel selftest's staccess file). It owns
// one Access of its iommufd's Context, driven like the kernel's mock access: pins are recorded in a
// PinnedRanges, and the access's unmap callback unpins every recorded pin that intersects the range.
//
// Lifetime: the file holds its IommufdFile, so the context stays alive while the access fd is open (as the
// kernel's access holds a file reference on the iommufd). When the last reference to the file goes (the
// fd's last close, or a failed CREATE_ACCESS taking it back), its destructor unpins everything and
// destroys the access, which waits for unmap callbacks in flight. The destructor must not run with an
// engine lock or the ranges' mutex held.
#pragma once

#include <cstdint>
#include <memory>

#include "uiommufd/base/result.h"
#include "uiommufd/objects/access.h"
#include "uiommufd/objects/pinned_ranges.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {

class TestAccessFile final : public OpenFile {
 public:
  // A new, unattached access of `owner`'s context. Errors: ENOMEM (fault site "selftest.alloc", or
  // Access::create's), ENOSPC.
  static Result<std::shared_ptr<TestAccessFile>> create(std::shared_ptr<IommufdFile> owner,
                                                        bool needs_pin_pages);
  ~TestAccessFile() override;

  // The access fd takes no ioctls of its own.
  long ioctl(unsigned long cmd, std::uint64_t arg) override;

  Access& access() { return *raw_access_; }
  bool needs_pin_pages() const { return needs_pin_pages_; }
  PinnedRanges& ranges() { return ranges_; }

 private:
  TestAccessFile(std::shared_ptr<IommufdFile> owner, bool needs_pin_pages)
      : OpenFile(Kind::kTestAccess), owner_(std::move(owner)), needs_pin_pages_(needs_pin_pages) {}

  // Declared first so that it goes last: the access's context lives in it.
  const std::shared_ptr<IommufdFile> owner_;
  const bool needs_pin_pages_;
  PinnedRanges ranges_;
  ObjectRef<Access> access_;  // the driver's reference
  // The same access, for the unmap callback, which destroy runs after access_ has been handed over.
  Access* raw_access_ = nullptr;
};

// The TestAccessFile behind `fd` of `host`; EBADFD when `fd` is not one (docs/semantics.md#selftest).
Result<std::shared_ptr<TestAccessFile>> lookup_test_access(FdHost& host, std::uint32_t fd);

}  // namespace uiommufd::uapi
