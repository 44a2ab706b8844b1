#include "uiommufd/objects/iommu_driver.h"

#include <cerrno>
#include <cstring>
#include <new>

#include "uiommufd/base/fault.h"
#include "uiommufd/base/try.h"
#include "uiommufd/domain/mock_domain.h"
#include "uiommufd/domain/page_table_domain.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/hw_pagetable.h"
#include "uiommufd/objects/viommu.h"

namespace uiommufd {

// The mock's own allocations: its nested domain and its hardware-info struct (kzalloc in the kernel).
UIOMMUFD_FAULT_SITE(g_fault_mock_alloc, "mock.alloc", ENOMEM);

Status copy_user_data(void* dst, std::size_t size, std::size_t min_len, const UserData& src,
                      std::uint32_t type) {
  if (src.type != type) return Status::error(EINVAL);
  // A longer struct than the driver knows is refused outright, even with a zero tail: the driver struct
  // rules differ from the ioctl struct rules here.
  if (src.len < min_len || src.len > size) return Status::error(EINVAL);
  std::memset(dst, 0, size);
  return Mm::current_ref().copy_from_user(dst, src.uptr, src.len);
}

// ---- the mock's nested domain -------------------------------------------------------------------------

NestedDomain::NestedDomain(std::uint32_t iotlb) {
  for (auto& e : iotlb_) e.store(iotlb, std::memory_order_relaxed);
}

namespace {
// struct iommu_hwpt_selftest and struct iommu_hwpt_invalidate_selftest (iommufd_test.h).
struct HwptSelftest {
  std::uint32_t iotlb;
  std::uint32_t pagetable_type;
};
constexpr std::size_t kHwptSelftestMin = sizeof(std::uint32_t);  // up to iotlb, the first version
struct InvalidateSelftest {
  std::uint32_t flags;
  std::uint32_t iotlb_id;
};
}  // namespace

Status NestedDomain::invalidate(UserDataArray& array) {
  const std::uint32_t requested = array.entry_num;
  array.entry_num = 0;
  if (array.type != kHwptInvalidateDataSelftest) return Status::error(EINVAL);
  for (std::uint32_t i = 0; i < requested; ++i) {
    InvalidateSelftest inv;
    const UserData entry{array.type, array.uptr + std::uint64_t{array.entry_len} * i, array.entry_len};
    TRY(copy_user_data(&inv, sizeof(inv), sizeof(inv), entry, kHwptInvalidateDataSelftest));
    if (inv.flags & ~kTestInvalidateFlagAll) return Status::error(EOPNOTSUPP);
    if (inv.iotlb_id >= kIotlbNum) return Status::error(EINVAL);
    if (inv.flags & kTestInvalidateFlagAll) {
      for (auto& e : iotlb_) e.store(0, std::memory_order_relaxed);
    } else {
      iotlb_[inv.iotlb_id].store(0, std::memory_order_relaxed);
    }
    array.entry_num = i + 1;
  }
  return {};
}

Status NestedDomain::check_iotlb(std::uint32_t id, std::uint32_t value) const {
  if (id >= kIotlbNum || iotlb(id) != value) return Status::error(EINVAL);
  return {};
}

// ---- the drivers --------------------------------------------------------------------------------------

namespace {

class MockDriver final : public IommuDriver {
 public:
  const char* name() const override { return "mock"; }
  bool has_alloc_flags() const override { return true; }

  Result<std::unique_ptr<Domain>> alloc_paging(const Device& dev, std::uint32_t flags,
                                               const UserData* data) const override {
    constexpr std::uint32_t kFlags = kHwptAllocDirtyTracking | kHwptAllocNestParent | kHwptAllocPasid;
    if ((flags & ~kFlags) || ((flags & kHwptAllocDirtyTracking) && !capable(dev, Cap::kDirtyTracking)))
      return Status::error(EOPNOTSUPP);
    if (data && data->type != kHwptDataSelftest && data->type != kHwptDataNone)
      return Status::error(EOPNOTSUPP);
    HwptSelftest cfg{};
    if (data) TRY(copy_user_data(&cfg, sizeof(cfg), kHwptSelftestMin, *data, kHwptDataSelftest));
    if (cfg.pagetable_type != kMockIommuptDefault && cfg.pagetable_type != kMockIommuptHuge)
      return Status::error(EOPNOTSUPP);
    MockDomain::Options options;
    options.huge_pagetable = cfg.pagetable_type == kMockIommuptHuge;
    options.dirty_capable = flags & kHwptAllocDirtyTracking;
    return std::unique_ptr<Domain>(TRY(MockDomain::create(options)).release());
  }

  bool has_nesting() const override { return true; }
  Result<std::unique_ptr<NestedDomain>> alloc_nested(std::uint32_t flags,
                                                     const UserData& data) const override {
    if (flags & ~kHwptAllocPasid) return Status::error(EOPNOTSUPP);
    if (data.type != kHwptDataSelftest) return Status::error(EOPNOTSUPP);
    HwptSelftest cfg{};
    TRY(copy_user_data(&cfg, sizeof(cfg), kHwptSelftestMin, data, kHwptDataSelftest));
    TRY(inject(g_fault_mock_alloc));
    auto* nested = new (std::nothrow) NestedDomain(cfg.iotlb);
    if (!nested) return Status::error(ENOMEM);
    return std::unique_ptr<NestedDomain>(nested);
  }

  bool capable(const Device& dev, Cap cap) const override {
    switch (cap) {
      case Cap::kDirtyTracking:
        return !(dev.flags() & Device::kFlagNoDirty);
      case Cap::kPciAtsSupported:
        return false;  // not a PCI device
    }
    return false;
  }

  Status hw_info(const Device&, std::uint32_t* type, std::vector<std::uint8_t>* data) const override {
    if (*type != kHwInfoTypeDefault && *type != kHwInfoTypeSelftest) return Status::error(EOPNOTSUPP);
    TRY(inject(g_fault_mock_alloc));
    // struct iommu_test_hw_info {flags, test_reg}.
    const std::uint32_t info[2] = {0, kHwInfoSelftestRegval};
    data->assign(reinterpret_cast<const std::uint8_t*>(info),
                 reinterpret_cast<const std::uint8_t*>(info + 2));
    *type = kHwInfoTypeSelftest;
    return {};
  }

  Status attach_dev(const Device& dev, const HwPagetable& hwpt) const override {
    // A device that cannot track dirty pages cannot use a domain that does (selftest.c
    // mock_domain_nop_attach()).
    if (hwpt.dirty_tracking() && (dev.flags() & Device::kFlagNoDirty)) return Status::error(EINVAL);
    // A nested domain of a vIOMMU serves only devices that have a virtual id there.
    if (hwpt.type() == ObjectType::kHwptNested) {
      if (Viommu* viommu = static_cast<const HwptNested&>(hwpt).viommu()) TRY(viommu->virt_id_of(dev));
    }
    return {};
  }
  bool viommu_supported(std::uint32_t type) const override { return type == kViommuTypeSelftest; }
};

class SoftwareDriver final : public IommuDriver {
 public:
  const char* name() const override { return "software"; }
  bool has_alloc_flags() const override { return false; }
  Result<std::unique_ptr<Domain>> alloc_paging(const Device&, std::uint32_t flags,
                                               const UserData* data) const override {
    if (flags || data) return Status::error(EOPNOTSUPP);
    return std::unique_ptr<Domain>(TRY(PageTableDomain::create()).release());
  }
  bool has_nesting() const override { return false; }
  Result<std::unique_ptr<NestedDomain>> alloc_nested(std::uint32_t, const UserData&) const override {
    return Status::error(EOPNOTSUPP);
  }
  bool capable(const Device&, Cap) const override { return false; }
  Status hw_info(const Device&, std::uint32_t* type, std::vector<std::uint8_t>* data) const override {
    *type = kHwInfoTypeDefault;
    data->clear();
    return {};
  }
  Status attach_dev(const Device&, const HwPagetable&) const override { return {}; }
  bool viommu_supported(std::uint32_t) const override { return false; }
};

}  // namespace

const IommuDriver& IommuDriver::mock() {
  static const MockDriver driver;
  return driver;
}

const IommuDriver& IommuDriver::software() {
  static const SoftwareDriver driver;
  return driver;
}

}  // namespace uiommufd
