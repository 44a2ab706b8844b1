#include "ucmd.h"

#include <cerrno>

#include "uiommufd/base/fault.h"

namespace uiommufd::uapi {

Result<std::uint32_t> read_user_size(std::uint64_t uptr) {
  std::uint32_t size = 0;
  TRY(Mm::current_ref().copy_from_user(&size, uptr, sizeof(size)));
  return size;
}

Status copy_struct_from_user(void* dst, std::size_t known, std::uint64_t uptr, std::uint32_t user_size) {
  return Mm::current_ref().copy_struct_from_user(dst, known, uptr, user_size);
}

Status copy_cmd_from_user(void* dst, std::size_t known, std::uint32_t min_size, std::uint64_t uptr,
                          std::uint32_t* user_size) {
  const std::uint64_t injected_before = injected_on_this_thread();
  Status whole = Mm::current_ref().copy_from_user(dst, uptr, known);
  if (whole.ok()) [[likely]] {
    std::uint32_t size = 0;
    std::memcpy(&size, dst, sizeof(size));
    if (size < min_size) return Status::error(EINVAL);
    if (size < known) {
      // Bytes past the caller's struct were read but are not its: the missing tail counts as zero.
      std::memset(static_cast<unsigned char*>(dst) + size, 0, known - size);
    } else if (size > known) {
      TRY(Mm::current_ref().check_zeroed_user(uptr + known, size - known));
    }
    *user_size = size;
    return Status();
  }
  // An injected failure is the copy-in failing; only a real fault may be a short struct at the end of
  // readable memory.
  if (injected_on_this_thread() != injected_before) return whole;
  const std::uint32_t size = TRY(read_user_size(uptr));
  if (size < min_size) return Status::error(EINVAL);
  TRY(copy_struct_from_user(dst, known, uptr, size));
  *user_size = size;
  return Status();
}

}  // namespace uiommufd::uapi
