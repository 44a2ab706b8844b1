// Raw ioctl records (docs/trace.md#raw): what a traced thread puts in the trace ring instead of a
// formatted line. A raw record holds the call (fd, command, argument, result, who and when) and copies of
// exactly the memory the decoder reads for it, taken before the call (what the kernel reads) and after it
// (what the kernel wrote). The consumer (`uiommufd trace`) decodes and formats it later with format_raw(),
// which gives the very line the decoder would have written in the traced thread: the formatting, most of a
// traced call's cost, leaves the traced thread.
//
// Thread safety: a RawIoctl belongs to one call; format_raw() only reads its record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "uiommufd/trace/decoder.h"

namespace uiommufd::trace {

class RawIoctl {
 public:
  static constexpr std::size_t kCapacity = 4096;

  // Before the call: the record's head and the memory the decoder reads before a call. False when the
  // filter leaves the call out (then nothing more is to be done).
  bool begin(const Origin& o, const Filter& filter, int fd, unsigned long cmd, std::uint64_t arg,
             const Reader& mem);
  // After it: the result (rc ≥ 0, or -errno) and, on success, the memory the decoder reads after a call.
  void end(long rc, const Reader& mem);
  // The finished record (valid after end()); empty when it did not fit kCapacity (not seen with the
  // current tables: their largest record is far below it).
  std::string_view record() const;

 private:
  void chunk(std::uint8_t phase, std::uint64_t addr, std::uint32_t len, const Reader& mem);
  void arrays(std::uint8_t phase, const void* command, const void* op, const unsigned char* bytes,
              std::uint32_t size, std::uint64_t cap, const Reader& mem);
  alignas(8) unsigned char buf_[kCapacity];
  std::size_t len_ = 0;
  bool overflow_ = false;
  const void* command_ = nullptr;  // the command's table entry (tables::Command), or null
  const void* op_ = nullptr;       // IOMMU_TEST_CMD: the op's (tables::Op)
  bool readable_ = false;          // the struct could be read before the call
  std::uint32_t size_ = 0;         // bytes of the struct copied before the call
  std::uint64_t array_cap_ = 0;    // an output array's room, as begin_ioctl() finds it
};

// Whether a ring record is a raw one (formatted records start with '+' or '{').
bool is_raw(std::string_view record);

// The line of a raw record in `style`, in `line` (cleared first); a record that is not well formed gives a
// note line saying so.
std::string_view format_raw(Style style, Line& line, std::string_view record);

}  // namespace uiommufd::trace
