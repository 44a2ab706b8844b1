// One ioctl call as its handler sees it: the caller's struct copied in under the extensible-struct rules
// (docs/abi.md#extensible-structs), and the way back out.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "uiommufd/base/result.h"
#include "uiommufd/mm/mm.h"
#include "uiommufd/objects/context.h"

namespace uiommufd::uapi {

class IommufdFile;

struct Ucmd {
  // buf starts zeroed.
  Ucmd(IommufdFile& f, Context& c, unsigned long command, std::uint64_t arg, std::uint32_t size)
      : file(f), ctx(c), cmd(command), uptr(arg), user_size(size) {
    std::memset(buf, 0, sizeof(buf));
  }
  // buf starts undefined: for the dispatcher, whose copy-in writes every byte of the op's struct (the
  // only bytes its handler reads), and which would otherwise pay for clearing all of buf on every ioctl.
  struct Uninitialized {};
  Ucmd(Uninitialized, IommufdFile& f, Context& c, unsigned long command, std::uint64_t arg)
      : file(f), ctx(c), cmd(command), uptr(arg), user_size(0) {}

  IommufdFile& file;
  Context& ctx;
  unsigned long cmd;
  std::uint64_t uptr;       // the ioctl argument: the caller's struct
  std::uint32_t user_size;  // its `size` field, already checked against the minimum
  // The caller's struct, copied in by the dispatcher under the rules below.
  alignas(8) unsigned char buf[80];

  template <typename T>
  T& arg() {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(buf) && alignof(T) <= 8);
    return *reinterpret_cast<T*>(buf);
  }
};

// Reads the leading u32 `size` of the caller's struct. EFAULT for a bad pointer.
Result<std::uint32_t> read_user_size(std::uint64_t uptr);

// Copies `user_size` bytes of the caller's struct into `dst` (`known` bytes): a shorter caller struct is
// zero-extended; a longer one must be zero beyond `known` bytes (E2BIG otherwise; EFAULT if unreadable).
Status copy_struct_from_user(void* dst, std::size_t known, std::uint64_t uptr, std::uint32_t user_size);

// The dispatcher's copy-in: reads the caller's `size` and struct into `dst` (`known` bytes) under the rules
// above, and stores the size in *user_size (an out-parameter rather than a Result: the size is read back
// from the copy straight away, and a packed Result costs a store-forwarding stall on every ioctl). EFAULT for
// an unreadable size, EINVAL for a size below `min_size`, then as copy_struct_from_user. When the whole known
// struct is readable it is read with one copy, which is one fault-site check (the kernel's get_user of the
// size is none); otherwise the rules are applied step by step, so a short struct at the end of readable
// memory is still accepted.
Status copy_cmd_from_user(void* dst, std::size_t known, std::uint32_t min_size, std::uint64_t uptr,
                          std::uint32_t* user_size);

// Writes the result back: min(user size, known size) bytes. EFAULT if the write fails.
template <typename T>
Status copy_out(const Ucmd& ucmd, const T& in) {
  static_assert(std::is_trivially_copyable_v<T>);
  return Mm::current_ref().copy_to_user(ucmd.uptr, &in, std::min<std::size_t>(ucmd.user_size, sizeof(T)));
}

// Writes one field of the caller's struct back (IOMMU_OPTION writes only val64).
template <typename T>
Status copy_field_out(const Ucmd& ucmd, std::size_t offset, const T& value) {
  return Mm::current_ref().copy_to_user(ucmd.uptr + offset, &value, sizeof(T));
}

// A negated errno for a Status, the value ioctl handlers return.
inline long to_ret(const Status& s) { return s.ok() ? 0 : -static_cast<long>(s.error()); }

}  // namespace uiommufd::uapi
