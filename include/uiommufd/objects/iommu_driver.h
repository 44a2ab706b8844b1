// IommuDriver: what the IOMMU behind a device can do, the user-space counterpart of the kernel's
// `struct iommu_ops` for one kind of device (docs/semantics.md#drivers).
//
// Two drivers exist, one per Device::Kind:
//   - mock: the kernel selftest's mock IOMMU (drivers/iommu/iommufd/selftest.c mock_ops): paging domains
//     with allocation flags and driver data (IOMMU_HWPT_DATA_SELFTEST), nested stage-1 domains whose four
//     IOTLB entries user space invalidates, hardware info of type IOMMU_HW_INFO_TYPE_SELFTEST, dirty
//     tracking unless the device was created without it, PASIDs on devices created with them;
//   - software: a plain 4 KiB page table with none of those extras, as a driver without
//     domain_alloc_paging_flags, domain_alloc_nested and hw_info behaves in the kernel.
//
// Driver data comes from user memory (the ioctl's pointer, or a library caller's own memory: both are
// addresses in the current process) and is copied under the kernel's rules for driver structs
// (include/linux/iommu.h __iommu_copy_struct_from_user()).
//
// Thread safety: drivers are immutable singletons; every method may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "uiommufd/base/result.h"
#include "uiommufd/base/status.h"
#include "uiommufd/domain/domain.h"

namespace uiommufd {

class Device;
class HwPagetable;

// IOMMU_HWPT_ALLOC flags (include/uapi/linux/iommufd.h enum iommufd_hwpt_alloc_flags).
enum HwptAllocFlags : std::uint32_t {
  kHwptAllocNestParent = 1u << 0,
  kHwptAllocDirtyTracking = 1u << 1,
  kHwptFaultIdValid = 1u << 2,
  kHwptAllocPasid = 1u << 3,
};

// Driver data types and values of the mock driver (drivers/iommu/iommufd/iommufd_test.h).
inline constexpr std::uint32_t kHwptDataNone = 0;
inline constexpr std::uint32_t kHwptDataSelftest = 0xdead;
inline constexpr std::uint32_t kHwInfoTypeDefault = 0;  // also "none"
inline constexpr std::uint32_t kHwInfoTypeSelftest = 0xfeedbeef;
inline constexpr std::uint32_t kHwInfoSelftestRegval = 0xdeadbeef;
inline constexpr std::uint32_t kHwptInvalidateDataSelftest = 0xdeadbeef;
inline constexpr std::uint32_t kTestInvalidateFlagAll = 1u << 0;
inline constexpr std::uint32_t kTestIotlbDefault = 0xbadbeef;
inline constexpr std::uint32_t kTestDevCacheDefault = 0xbaddad;
// MOCK_IOMMUPT_*: the paging table the mock builds from IOMMU_HWPT_DATA_SELFTEST's pagetable_type.
inline constexpr std::uint32_t kMockIommuptDefault = 0;
inline constexpr std::uint32_t kMockIommuptHuge = 1;

// IOMMU_GET_HW_INFO capability bits (enum iommufd_hw_capabilities).
enum HwCapabilities : std::uint64_t {
  kHwCapDirtyTracking = 1u << 0,
  kHwCapPciPasidExec = 1u << 1,
  kHwCapPciPasidPriv = 1u << 2,
  kHwCapPciAtsNotSupported = 1u << 3,
};

// A driver struct in user memory: the kernel's struct iommu_user_data.
struct UserData {
  std::uint32_t type = 0;
  std::uint64_t uptr = 0;
  std::uint32_t len = 0;
};

// An array of driver structs in user memory (struct iommu_user_data_array). entry_num is in/out: the
// invalidation reports how many entries it handled.
struct UserDataArray {
  std::uint32_t type = 0;
  std::uint64_t uptr = 0;
  std::uint32_t entry_len = 0;
  std::uint32_t entry_num = 0;
};

// Copies the driver struct `src` into dst[0, size), zero-filling past src.len: EINVAL for a type other
// than `type` or a length outside [min_len, size], EFAULT for unreadable memory.
Status copy_user_data(void* dst, std::size_t size, std::size_t min_len, const UserData& src,
                      std::uint32_t type);

// The mock driver's stage-1 (nested) domain: it translates nothing itself (the guest owns that table);
// what it models is the IOTLB the guest must invalidate, four entries that start at the value given at
// allocation.
class NestedDomain {
 public:
  static constexpr std::uint32_t kIotlbNum = 4;
  explicit NestedDomain(std::uint32_t iotlb);

  // IOMMU_HWPT_INVALIDATE with IOMMU_HWPT_INVALIDATE_DATA_SELFTEST entries of {flags, iotlb_id}: entries are
  // handled in order and the first bad one stops the call, whose error is returned; array.entry_num is set
  // to the number handled. EINVAL: another data type, an entry_len other than the struct's 8 bytes, an
  // iotlb_id above 3 (checked even with the ALL flag); EOPNOTSUPP: an unknown flag; EFAULT.
  Status invalidate(UserDataArray& array);
  // MD_CHECK_IOTLB: EINVAL for an id above 3 or another value.
  Status check_iotlb(std::uint32_t id, std::uint32_t value) const;
  std::uint32_t iotlb(std::uint32_t id) const { return iotlb_[id].load(std::memory_order_relaxed); }

 private:
  // Atomics, not a lock: entries are independent words that invalidations clear and checks read.
  std::array<std::atomic<std::uint32_t>, kIotlbNum> iotlb_;
};

class IommuDriver {
 public:
  enum class Cap { kDirtyTracking, kPciAtsSupported };

  static const IommuDriver& mock();
  static const IommuDriver& software();

  virtual ~IommuDriver() = default;
  virtual const char* name() const = 0;

  // Whether paging domains can be allocated with flags or driver data (the kernel's
  // domain_alloc_paging_flags); without it, any flag or data is EOPNOTSUPP.
  virtual bool has_alloc_flags() const = 0;
  // A paging domain for `dev` with HWPT flags (without FAULT_ID_VALID) and optional driver data. Errors:
  // EOPNOTSUPP (flags, data type, pagetable type), copy_user_data's, ENOMEM.
  virtual Result<std::unique_ptr<Domain>> alloc_paging(const Device& dev, std::uint32_t flags,
                                                       const UserData* data) const = 0;
  // Whether nested domains exist at all (domain_alloc_nested).
  virtual bool has_nesting() const = 0;
  // A nested domain (flags without FAULT_ID_VALID). EOPNOTSUPP, copy_user_data's, ENOMEM.
  virtual Result<std::unique_ptr<NestedDomain>> alloc_nested(std::uint32_t flags,
                                                             const UserData& data) const = 0;
  virtual bool capable(const Device& dev, Cap cap) const = 0;
  // Hardware info of the requested type (kHwInfoTypeDefault: the driver's own), which *type receives.
  // A driver without hardware info leaves data empty and reports type 0 whatever was asked.
  // EOPNOTSUPP for a type the driver does not have, ENOMEM.
  virtual Status hw_info(const Device& dev, std::uint32_t* type, std::vector<std::uint8_t>* data) const = 0;
  // The driver's own check when the device's RID is attached to `hwpt` (attach_dev): EINVAL when the
  // device cannot use it.
  virtual Status attach_dev(const Device& dev, const HwPagetable& hwpt) const = 0;
  // Whether the IOMMU can be virtualised as a vIOMMU of `type` (the kernel's get_viommu_size() being
  // non-zero); the mock's type is kViommuTypeSelftest (objects/viommu.h).
  virtual bool viommu_supported(std::uint32_t type) const = 0;
};

}  // namespace uiommufd
