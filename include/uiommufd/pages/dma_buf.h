// DmaBuf: an exporter's buffer of device memory, shared with the engine the way a Linux dma-buf is shared
// with iommufd (include/linux/dma-buf.h; drivers/iommu/iommufd/pages.c, iopt_map_dmabuf() and
// iopt_revoke_notify(); docs/semantics.md#dma-buf).
//
// The exporter subclasses DmaBuf and answers physical(): the one contiguous range its memory occupies, as
// the address a domain stores (docs/design.md#memory: for memory of this process, its host address; an
// exporter of memory the engine never touches may name any address, since only domains read it), or
// ENODEV while the memory is revoked. To revoke the memory, or to give it back, the exporter changes its
// state with resv() held and calls invalidate_mappings(): every importer then drops whatever it mapped. An
// importer that was told so stays revoked for its life, as in the kernel, where the importer's notify
// empties its copy of the range and never reads it again; only a new import (a new MAP_FILE) sees memory
// that was given back.
//
// The importers are the engine's Pages objects (pages/pages.h, PagesKind::kDmaBuf): an IOMMU_IOAS_MAP_FILE
// of the buffer attaches one, asks physical() once, and detaches when the last area using it goes. The
// buffer is kept alive by RefPtr: by the exporter's handle (the selftest's dma-buf fd), and by each
// importer until it detaches.
//
// Locking: resv() is "dmabuf.resv" (the kernel's dma_resv lock of the buffer), above pages.mutex in the
// engine's order (lockdep/engine_lock_order.h): an importer's invalidate runs with resv held and takes its
// pages.mutex inside it. The exporter may hold its own locks around resv(), never an engine lock.
#pragma once

#include <cstdint>

#include "uiommufd/base/page.h"
#include "uiommufd/base/ref_ptr.h"
#include "uiommufd/base/result.h"
#include "uiommufd/base/status.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"

namespace uiommufd {

class DmaBuf : public RefCounted<DmaBuf> {
 public:
  // Where the memory is: [addr, addr + length).
  struct Phys {
    PhysAddr addr;
    std::uint64_t length;
  };

  // One importer attached to the buffer (the kernel's dma_buf_attachment with its importer ops). Linked
  // into the buffer's list while attached; the importer removes itself with detach().
  class Importer {
   public:
    // The kernel's invalidate_mappings importer op: the exporter has changed what physical() answers.
    // Runs with the buffer's resv() held; must not take resv() again.
    virtual void invalidate() = 0;

   protected:
    ~Importer() = default;

   private:
    friend class DmaBuf;
    Importer* prev_ = nullptr;
    Importer* next_ = nullptr;
  };

  DmaBuf(const DmaBuf&) = delete;
  DmaBuf& operator=(const DmaBuf&) = delete;

  // Bytes, fixed at creation (the kernel's dmabuf->size).
  std::uint64_t size() const { return size_; }

  lockdep::Mutex& resv() RETURN_CAPABILITY(resv_) { return resv_; }

  // Exporter side: tells every attached importer that physical() changed (the kernel's
  // dma_buf_invalidate_mappings()). Each importer's invalidate() runs here, on this thread.
  void invalidate_mappings() REQUIRES(resv_);

  // Importer side. attach() adds `importer` to the list: ENOMEM from fault site "dmabuf.attach" (the
  // kernel's allocation of the attachment). detach() removes it; never fails.
  Status attach(Importer* importer) REQUIRES(resv_);
  void detach(Importer* importer) REQUIRES(resv_);
  // Where the memory is now (the kernel's iommufd map op of the exporter): ENODEV while revoked; other
  // errors are the exporter's.
  virtual Result<Phys> physical() REQUIRES(resv_) = 0;

  // How many importers are attached; for tests.
  std::size_t importers() EXCLUDES(resv_);

 protected:
  explicit DmaBuf(std::uint64_t size) : size_(size) {}
  // Runs when the last reference goes: no importer is attached then (each holds a reference).
  virtual ~DmaBuf();

  // Protected so that an exporter can name it in its own annotations (GUARDED_BY(resv_)).
  lockdep::Mutex resv_{lock_order::kDmaBufResv};

 private:
  friend class RefCounted<DmaBuf>;

  const std::uint64_t size_;
  Importer* importers_ GUARDED_BY(resv_) = nullptr;
};

}  // namespace uiommufd
