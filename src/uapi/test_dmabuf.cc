#include "test_dmabuf.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/try.h"

namespace uiommufd::uapi {

UIOMMUFD_DECLARE_FAULT_SITE(g_fault_selftest_alloc);

namespace {
// The allocations of the kernel's dma_buf_export() (its inode, file and struct dma_buf).
UIOMMUFD_FAULT_SITE(g_fault_dmabuf_export, "dmabuf.export", ENOMEM);
}  // namespace

Result<RefPtr<MockDmaBuf>> MockDmaBuf::create(std::uint64_t length) {
  TRY(inject(g_fault_selftest_alloc));  // the private struct
  TRY(inject(g_fault_selftest_alloc));  // the buffer
  // Aligned as the kernel's kzalloc() of the size is (slab or page allocator: the power of two at or above
  // it), so that a domain forms the same contiguous entries over it as the kernel's mock does.
  std::uint64_t align = kPageSize;
  while (align < length) align <<= 1;
  void* memory = nullptr;
  if (::posix_memalign(&memory, align, length) != 0) return Status::error(ENOMEM);
  std::memset(memory, 0, length);
  auto* buf = new (std::nothrow) MockDmaBuf(length, memory);
  if (buf == nullptr) {
    std::free(memory);
    return Status::error(ENOMEM);
  }
  return RefPtr<MockDmaBuf>(buf);
}

MockDmaBuf::~MockDmaBuf() { std::free(memory_); }

Result<DmaBuf::Phys> MockDmaBuf::physical() {
  resv_.assert_held();
  if (revoked_) return Status::error(ENODEV);
  return Phys{reinterpret_cast<PhysAddr>(memory_), size()};
}

void MockDmaBuf::set_revoked(bool revoked) {
  lockdep::MutexGuard g(resv_);
  revoked_ = revoked;
  invalidate_mappings();
}

Result<std::shared_ptr<DmaBufFile>> DmaBufFile::create(RefPtr<MockDmaBuf> buf) {
  TRY(inject(g_fault_dmabuf_export));
  std::shared_ptr<DmaBufFile> file(new (std::nothrow) DmaBufFile(std::move(buf)));
  if (!file) return Status::error(ENOMEM);
  return file;
}

long DmaBufFile::ioctl(unsigned long, std::uint64_t) { return -ENOTTY; }

Result<RefPtr<MockDmaBuf>> lookup_dmabuf(FdHost& host, int fd) {
  std::shared_ptr<OpenFile> f = fd >= 0 ? host.lookup(fd) : nullptr;
  if (f && f->kind() == OpenFile::Kind::kDmaBuf) return static_cast<DmaBufFile&>(*f).buffer();
  if (fd < 0 || (!f && !host.user_file(fd).ok())) return Status::error(EBADF);
  return Status::error(EINVAL);
}

Result<int> make_standin_fd(int open_flags) {
  const bool nonblock = open_flags & O_NONBLOCK;
  int fd = -1;
  // Made close-on-exec first, so that a concurrent fork and exec never inherits it; cleared below if asked.
  switch (open_flags & O_ACCMODE) {
    case O_RDONLY:
    case O_WRONLY: {
      int ends[2];
      if (::pipe2(ends, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0)) != 0) return Status::error(errno);
      const bool read = (open_flags & O_ACCMODE) == O_RDONLY;
      fd = ends[read ? 0 : 1];
      ::close(ends[read ? 1 : 0]);
      // The kernel's dma-buf takes one fd, the lowest free: the write end moves down to the read end's.
      if (!read) {
        const int low = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (low >= 0 && low < fd) {
          ::close(fd);
          fd = low;
        } else if (low >= 0) {
          ::close(low);
        }
      }
      break;
    }
    default:
      fd = ::eventfd(0, EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0));
      if (fd < 0) return Status::error(errno);
      break;
  }
  if (!(open_flags & O_CLOEXEC)) ::fcntl(fd, F_SETFD, 0);
  return fd;
}

}  // namespace uiommufd::uapi
