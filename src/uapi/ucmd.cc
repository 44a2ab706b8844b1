#include "ucmd.h"

#include <cerrno>

namespace uiommufd::uapi {

Result<std::uint32_t> read_user_size(std::uint64_t uptr) {
  std::uint32_t size = 0;
  TRY(Mm::current_ref().copy_from_user(&size, uptr, sizeof(size)));
  return size;
}

Status copy_struct_from_user(void* dst, std::size_t known, std::uint64_t uptr, std::uint32_t user_size) {
  std::memset(dst, 0, known);
  const std::size_t n = std::min<std::size_t>(known, user_size);
  if (user_size > known) {
    // The tail beyond what we know must be zero; read it in bounded pieces (it may be large).
    unsigned char buf[256];
    for (std::uint64_t off = known; off < user_size;) {
      const std::size_t chunk = std::min<std::uint64_t>(sizeof(buf), user_size - off);
      TRY(Mm::current_ref().copy_from_user(buf, uptr + off, chunk));
      for (std::size_t i = 0; i < chunk; ++i) {
        if (buf[i]) return Status::error(E2BIG);
      }
      off += chunk;
    }
  }
  return Mm::current_ref().copy_from_user(dst, uptr, n);
}

}  // namespace uiommufd::uapi
