#include "test_access.h"

#include <cerrno>
#include <new>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/try.h"

namespace uiommufd::uapi {

// The kernel's slab allocations of the selftest (staccess, access items, bounce buffers):
// docs/fault-injection.md#sites, allocations → ENOMEM.
UIOMMUFD_FAULT_SITE(g_fault_selftest_alloc, "selftest.alloc", ENOMEM);

Result<std::shared_ptr<TestAccessFile>> TestAccessFile::create(std::shared_ptr<IommufdFile> owner,
                                                               bool needs_pin_pages) {
  TRY(inject(g_fault_selftest_alloc));
  Context& ctx = owner->context();
  std::shared_ptr<TestAccessFile> file(new (std::nothrow) TestAccessFile(std::move(owner), needs_pin_pages));
  if (!file) return Status::error(ENOMEM);
  Access::Ops ops;
  ops.needs_pin_pages = needs_pin_pages;
  // The file outlives its access (the destructor destroys the access first), so a raw pointer is safe.
  TestAccessFile* raw = file.get();
  ops.unmap = [raw](std::uint64_t iova, std::uint64_t length) {
    raw->ranges_.unmap(*raw->raw_access_, iova, length);
  };
  file->access_ = TRY(Access::create(ctx, std::move(ops)));
  file->raw_access_ = file->access_.get();
  return file;
}

TestAccessFile::~TestAccessFile() {
  if (!access_) return;
  // What the kernel's release does: drop every pin, then destroy (which calls back for the whole range
  // once more, finding nothing).
  ranges_.unmap(*raw_access_, 0, kUlongMax);
  Access::destroy(std::move(access_));
}

long TestAccessFile::ioctl(unsigned long, std::uint64_t) { return -ENOTTY; }

Result<std::shared_ptr<TestAccessFile>> lookup_test_access(FdHost& host, std::uint32_t fd) {
  if (fd > static_cast<std::uint32_t>(INT32_MAX)) return Status::error(EBADFD);
  std::shared_ptr<OpenFile> f = host.lookup(static_cast<int>(fd));
  if (!f || f->kind() != OpenFile::Kind::kTestAccess) return Status::error(EBADFD);
  return std::static_pointer_cast<TestAccessFile>(std::move(f));
}

}  // namespace uiommufd::uapi
