// The /dev/iommu call decoder behind `uiommufd trace` (docs/trace.md): turns an iommufd, VFIO-container or
// iommufd-selftest ioctl, and the open / close / dup of an iommufd, into one line of text or one JSON
// object, with every field of the command's struct by name.
//
// A call is decoded in two steps, as it runs: begin_*() before the call writes the line's head and the
// fields the kernel reads (struct fields, and arrays or buffers a field points at); end_*() after it
// writes the result and, on success, the fields the kernel writes back. Memory of the traced program is
// read only through the Reader it is given, so a bad pointer prints as such ("0x1 <unreadable>") and never
// faults. Nothing allocates: a Line is a fixed buffer that truncates (with a marker) rather than grow.
//
// Thread safety: the tables are constant; a Line belongs to one call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace uiommufd::trace {

enum class Format : std::uint8_t { kText, kJson };

// How records are written: the format, and whether addresses in the program's memory (an ioctl's struct
// pointer, the pointers of arrays, fields such as user_va and data_uptr) print as "<addr>" instead of their
// value. Two traces of one program, on two machines or on the kernel and on uiommufd, then compare line by
// line although their address-space layouts differ (`uiommufd trace --hide-addresses`).
struct Style {
  constexpr Style(Format f = Format::kText, bool hide = false) : format(f), hide_addresses(hide) {}  // NOLINT
  Format format;
  bool hide_addresses;
};

// Reads `len` bytes of the traced program's memory at `uaddr` into `dst`; false when any of them cannot be
// read (nothing else may be assumed about dst then).
class Reader {
 public:
  virtual ~Reader() = default;
  virtual bool read(std::uint64_t uaddr, void* dst, std::size_t len) const = 0;
};

// One output record under construction: a fixed buffer; what does not fit is cut and marked.
class Line {
 public:
  static constexpr std::size_t kCapacity = 4096;
  // Inline: a record is dozens of short appends.
  void append(std::string_view s) {
    if (s.size() > kCapacity - kReserve - len_) [[unlikely]]
      return append_cut(s);
    std::memcpy(buf_ + len_, s.data(), s.size());
    len_ += s.size();
  }
  void append_char(char c) {
    if (len_ >= kCapacity - kReserve) [[unlikely]] {
      cut_ = true;
      return;
    }
    buf_[len_++] = c;
  }
  void append_dec(std::int64_t v);
  void append_udec(std::uint64_t v);
  void append_hex(std::uint64_t v);  // "0x…", lower case, no leading zeros
  // A JSON string's body (no quotes) with the escapes JSON needs.
  void append_json_escaped(std::string_view s);
  // Ends the record with a newline (replacing the end of a cut record with a marker) and returns it.
  std::string_view finish();
  std::string_view view() const { return {buf_, len_}; }
  void clear() { len_ = 0, cut_ = false; }

 private:
  // Room kept at the end of the buffer for the cut marker and the newline.
  static constexpr std::size_t kReserve = 8;
  void append_cut(std::string_view s);
  char buf_[kCapacity];
  std::size_t len_ = 0;
  bool cut_ = false;
};

// Who made the call and when, for the head of the record.
struct Origin {
  int pid = 0;
  int tid = 0;
  std::uint64_t ns = 0;  // since the trace began
};

// What begin_ioctl() learnt that end_ioctl() needs (the command's table entry, whether the struct was read).
struct IoctlState {
  const void* command = nullptr;  // the table entry, or null for a command the decoder does not know
  const void* sub = nullptr;      // IOMMU_TEST_CMD: the op's entry
  std::uint32_t size = 0;         // bytes of the struct that were decoded
  bool readable = false;
  std::uint64_t array_cap = 0;  // how many elements an output array has room for (IOMMU_IOAS_IOVA_RANGES)
  bool shown = true;            // false when the filter leaves this call out (nothing was written)
};

// A filter on command names (`uiommufd trace -e`): a comma-separated list of names, matched without case,
// each either a command ("IOMMU_IOAS_MAP" or "IOAS_MAP"), a selftest op ("TEST_OP_ACCESS_RW" or
// "ACCESS_RW"), "IOMMU_TEST_CMD" (every op), or one of "open", "close", "dup". Empty: everything.
class Filter {
 public:
  // EINVAL for a name no command, op or call has (`bad` says which), so a typo is not a silent empty trace.
  bool parse(std::string_view list, std::string_view* bad);
  bool shows_call(std::string_view call) const;  // "open", "close", "dup"
  bool shows_ioctl(unsigned long cmd, std::uint32_t test_op, bool has_op) const;
  bool empty() const { return count_ == 0; }

 private:
  static constexpr std::size_t kMax = 64;
  std::uint32_t keys_[kMax] = {};  // table keys (see decoder.cc)
  std::size_t count_ = 0;
};

// The name of an ioctl command ("IOMMU_IOAS_MAP", "VFIO_IOMMU_MAP_DMA", "IOMMU_TEST_CMD"), or null.
const char* command_name(unsigned long cmd);
// The name of a selftest op ("ACCESS_RW"), or null.
const char* test_op_name(std::uint32_t op);
// Every command and op name the decoder knows, for tests and help texts; `fn` is called once per name.
void for_each_name(void (*fn)(void* ctx, const char* name, bool is_test_op), void* ctx);

// The record's head and the fields the command reads. `fd` is the program's fd the call was made on.
IoctlState begin_ioctl(Style s, Line& line, const Origin& o, const Filter& filter, int fd, unsigned long cmd,
                       std::uint64_t arg, const Reader& mem);
// The result (rc ≥ 0, or -errno) and, when it succeeded, the fields the kernel wrote.
void end_ioctl(Style s, Line& line, const IoctlState& st, unsigned long cmd, std::uint64_t arg, long rc,
               const Reader& mem);

// open("/dev/iommu" or "/dev/vfio/vfio", flags) = fd, or -errno.
void open_call(Style s, Line& line, const Origin& o, std::string_view path, int flags, long rc);
// close(fd) = 0 / -errno; dup-family calls: dup(old) = new, dup2/dup3(old, new) = new / -errno.
void close_call(Style s, Line& line, const Origin& o, int fd, long rc);
void dup_call(Style s, Line& line, const Origin& o, std::string_view call, int oldfd, int newfd, long rc);

}  // namespace uiommufd::trace
