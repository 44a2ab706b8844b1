// The selftest's mock dma-buf exporter (drivers/iommu/iommufd/selftest.c: iommufd_test_dmabuf_get(),
// iommufd_test_dmabuf_revoke(), iommufd_test_dmabuf_ops; docs/semantics.md#dma-buf).
//
// MockDmaBuf is the exporter: a zeroed, page-aligned buffer allocated in this process (its address is the
// "physical" address a domain maps, docs/design.md#memory) and a revoked flag guarded by the buffer's
// resv. DmaBufFile is the open file DMABUF_GET puts behind a new fd; it holds the buffer, as the kernel's
// dma-buf file does, so the buffer lives while the fd is open or an IOAS still maps it, whichever is
// longer. The file does not hold the iommufd: the fd may outlive the context that made it.
#pragma once

#include <cstdint>
#include <memory>

#include "uiommufd/base/ref_ptr.h"
#include "uiommufd/base/result.h"
#include "uiommufd/pages/dma_buf.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {

class MockDmaBuf final : public DmaBuf {
 public:
  // DMABUF_GET's largest buffer (the kernel's limit).
  static constexpr std::uint64_t kMaxLength = 512 * kPageSize;

  // A zeroed buffer of `length` bytes (page aligned, 1 .. kMaxLength: precondition). ENOMEM from fault
  // site "selftest.alloc", hit twice (the kernel's private struct and its buffer).
  static Result<RefPtr<MockDmaBuf>> create(std::uint64_t length);

  // ENODEV while revoked (iommufd_test_dma_buf_iommufd_map()).
  Result<Phys> physical() override REQUIRES(resv_);
  // DMABUF_REVOKE: sets the flag and invalidates every importer, under resv, even when the flag does not
  // change (the kernel does the same).
  void set_revoked(bool revoked) EXCLUDES(resv_);
  // The buffer's bytes in this process.
  void* memory() const { return memory_; }

 private:
  MockDmaBuf(std::uint64_t length, void* memory) : DmaBuf(length), memory_(memory) {}
  ~MockDmaBuf() override;

  void* const memory_;
  bool revoked_ GUARDED_BY(resv_) = false;
};

class DmaBufFile final : public OpenFile {
 public:
  // ENOMEM from fault site "dmabuf.export" (the kernel's dma_buf_export() allocations).
  static Result<std::shared_ptr<DmaBufFile>> create(RefPtr<MockDmaBuf> buf);

  // The kernel's dma-buf ioctls (DMA_BUF_IOCTL_SYNC and others) are not served: ENOTTY.
  long ioctl(unsigned long cmd, std::uint64_t arg) override;

  const RefPtr<MockDmaBuf>& buffer() const { return buf_; }

 private:
  explicit DmaBufFile(RefPtr<MockDmaBuf> buf) : OpenFile(Kind::kDmaBuf), buf_(std::move(buf)) {}
  const RefPtr<MockDmaBuf> buf_;
};

// The kernel's dma_buf_get() on an fd of `host`: the buffer behind `fd`. EBADF when `fd` is not an open
// descriptor; EINVAL when it is one but not a dma-buf of ours.
Result<RefPtr<MockDmaBuf>> lookup_dmabuf(FdHost& host, int fd);

}  // namespace uiommufd::uapi
