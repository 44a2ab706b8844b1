#include "uiommufd/pages/dma_buf.h"

#include <cerrno>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/fault.h"

namespace uiommufd {

namespace {
// The kernel's allocation of the attachment in dma_buf_dynamic_attach() (docs/fault-injection.md#sites).
UIOMMUFD_FAULT_SITE(g_fault_dmabuf_attach, "dmabuf.attach", ENOMEM);
}  // namespace

DmaBuf::~DmaBuf() {
  // Not analysed (destructor): no other reference exists, so no importer can be attached.
  UIOMMUFD_ASSERT(importers_ == nullptr);
}

void DmaBuf::invalidate_mappings() {
  resv_.assert_held();
  for (Importer* i = importers_; i != nullptr; i = i->next_) i->invalidate();
}

Status DmaBuf::attach(Importer* importer) {
  resv_.assert_held();
  if (Status st = inject(g_fault_dmabuf_attach); !st.ok()) return st;
  importer->prev_ = nullptr;
  importer->next_ = importers_;
  if (importers_) importers_->prev_ = importer;
  importers_ = importer;
  return {};
}

void DmaBuf::detach(Importer* importer) {
  resv_.assert_held();
  if (importer->prev_)
    importer->prev_->next_ = importer->next_;
  else
    importers_ = importer->next_;
  if (importer->next_) importer->next_->prev_ = importer->prev_;
  importer->prev_ = importer->next_ = nullptr;
}

std::size_t DmaBuf::importers() {
  lockdep::MutexGuard g(resv_);
  std::size_t n = 0;
  for (Importer* i = importers_; i != nullptr; i = i->next_) ++n;
  return n;
}

}  // namespace uiommufd
