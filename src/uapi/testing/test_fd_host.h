// For the dispatcher's unit tests: an FdHost without interposition. Each installed file sits behind a
// real fd (an eventfd), so fd numbers are real and unique; close() drops the file like the runtime does.
#pragma once

#include <cerrno>
#include <map>
#include <memory>
#include <mutex>
#include <new>

#include <fcntl.h>
#include <unistd.h>

#include "uiommufd/base/try.h"
#include "uiommufd/uapi/abi.h"
#include "uiommufd/uapi/file.h"
#include "uiommufd/uapi/poll_fd.h"

namespace uiommufd::uapi::testing {

// An IOMMU_TEST_CMD of the newest layout, zeroed but for its header.
inline iommu_test_cmd make_test_cmd(std::uint32_t op, std::uint32_t id) {
  iommu_test_cmd c{};
  c.size = sizeof(c);
  c.op = op;
  c.id = id;
  return c;
}

class TestFdHost : public FdHost {
 public:
  ~TestFdHost() override {
    std::map<int, std::shared_ptr<OpenFile>> files;
    {
      std::lock_guard<std::mutex> g(mu_);
      files.swap(files_);
    }
    for (auto& [fd, f] : files) forget_readiness(fd);
    for (auto& [fd, f] : files) ::close(fd);
    // Access and queue files first: they hold their context's file.
    for (auto& [fd, f] : files)
      if (f->kind() != OpenFile::Kind::kIommufd) f.reset();
  }

  Result<int> install_queue(std::shared_ptr<OpenFile> file, PollFace face,
                            std::shared_ptr<QueueReadiness>* readiness) override {
    const int fd = TRY(make_poll_fd(face));
    try {
      auto r = std::make_shared<Readiness>(fd, face);
      std::lock_guard<std::mutex> g(mu_);
      // Both entries or neither: a file left behind by a failed install would outlive its queue.
      readiness_[fd] = r;
      try {
        files_[fd] = std::move(file);
      } catch (const std::bad_alloc&) {
        readiness_.erase(fd);
        throw;
      }
      *readiness = std::move(r);
    } catch (const std::bad_alloc&) {
      ::close(fd);
      return Status::error(ENOMEM);
    }
    return fd;
  }

  Result<int> install(std::shared_ptr<OpenFile> file) override {
    return install_with_flags(std::move(file), O_RDWR | O_CLOEXEC);
  }
  Result<int> install_with_flags(std::shared_ptr<OpenFile> file, int open_flags) override {
    Result<int> standin = make_standin_fd(open_flags);
    if (!standin.ok()) return standin;
    const int fd = *standin;
    try {
      std::lock_guard<std::mutex> g(mu_);
      files_[fd] = std::move(file);
    } catch (const std::bad_alloc&) {
      ::close(fd);
      return Status::error(ENOMEM);
    }
    return fd;
  }
  std::shared_ptr<OpenFile> lookup(int fd) override {
    std::lock_guard<std::mutex> g(mu_);
    auto it = files_.find(fd);
    return it == files_.end() ? nullptr : it->second;
  }
  void uninstall(int fd) override { close(fd); }

  // Opens an iommufd and returns its fd (−errno on failure).
  int open_iommufd(bool vfio_compat = false) {
    Result<std::shared_ptr<IommufdFile>> f = IommufdFile::open(*this, vfio_compat);
    if (!f.ok()) return -f.error();
    Result<int> fd = install(std::move(*f));
    return fd.ok() ? *fd : -fd.error();
  }
  // ioctl(2) as the runtime would serve it: the return value, or −1 with errno set.
  int ioctl(int fd, unsigned long cmd, const void* arg) {
    std::shared_ptr<OpenFile> f = lookup(fd);
    if (!f) {
      errno = ENOTTY;
      return -1;
    }
    long r = f->ioctl(cmd, reinterpret_cast<std::uintptr_t>(arg));
    if (r < 0) {
      errno = static_cast<int>(-r);
      return -1;
    }
    return static_cast<int>(r);
  }
  // Drops the fd and its file; the last reference tears the file down before this returns.
  int close(int fd) {
    forget_readiness(fd);
    std::shared_ptr<OpenFile> f;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = files_.find(fd);
      if (it == files_.end()) return ::close(fd);
      f = std::move(it->second);
      files_.erase(it);
    }
    return ::close(fd);
  }

 private:
  // Signals its fd until the fd is closed.
  struct Readiness final : QueueReadiness {
    Readiness(int f, PollFace pf) : fd(f), face(pf) {}
    void set_readable(bool readable) override {
      std::lock_guard<std::mutex> g(mu);
      if (fd >= 0) set_poll_fd_readable(fd, face, readable);
    }
    std::mutex mu;
    int fd;
    const PollFace face;
  };
  void forget_readiness(int fd) {
    std::shared_ptr<Readiness> r;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = readiness_.find(fd);
      if (it == readiness_.end()) return;
      r = std::move(it->second);
      readiness_.erase(it);
    }
    std::lock_guard<std::mutex> g(r->mu);
    r->fd = -1;
  }

  std::mutex mu_;
  std::map<int, std::shared_ptr<OpenFile>> files_;
  std::map<int, std::shared_ptr<Readiness>> readiness_;
};

}  // namespace uiommufd::uapi::testing
