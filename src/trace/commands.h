// The decoder's tables (commands.cc): for every command the decoder knows, its struct's fields by name,
// offset, width, how each prints and whether the kernel reads it, writes it or both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace uiommufd::trace::tables {

// How a field's value prints.
enum class Kind : std::uint8_t {
  kDec,       // a count or size
  kHex,       // a length, an IOVA, a mask
  kAddr,      // an address in the calling program's memory (hex, or "<addr>" when the style hides them)
  kId,        // an object id
  kFd,        // an fd number (signed)
  kFlags,     // bit names joined by '|', bits without a name in hex
  kEnum,      // the value's name, else the number
  kReserved,  // printed only when not 0 (a non-zero reserved field is the usual bug)
  kArray,     // a pointer to `count` elements, decoded (Field::array)
  kOp,        // IOMMU_TEST_CMD's op: picks the union member (Command::ops)
};

inline constexpr std::uint8_t kIn = 1, kOut = 2, kInOut = kIn | kOut;

// How many elements of an array a record shows (the rest are counted).
inline constexpr std::uint64_t kArrayShown = 8;

struct Name {
  std::uint64_t value;
  std::string_view name;
};

struct Field;

// An array a field points at: its element's fields, the element size, and the field of the same struct that
// holds the element count (by index into that struct's fields).
struct Array {
  std::span<const Field> element;
  std::uint16_t element_size;
  std::uint8_t count_field;
};

struct Field {
  std::string_view name;
  std::uint16_t offset;
  std::uint8_t size;  // 1, 2, 4 or 8
  Kind kind;
  std::uint8_t dir;
  std::span<const Name> names = {};  // kFlags, kEnum
  const Array* array = nullptr;      // kArray
};

// A selftest op: its name and the fields of its union member (offsets from the start of the command).
struct Op {
  std::uint32_t op;
  std::string_view name;
  std::span<const Field> fields;
};

enum class Arg : std::uint8_t {
  kStruct,  // a pointer to a struct that starts with its size
  kValue,   // an integer argument (names: Command::values)
  kNone,    // no argument
};

struct Command {
  unsigned long cmd;
  std::string_view name;
  Arg arg;
  std::span<const Field> fields;      // kStruct
  std::uint16_t struct_size;          // the newest layout's size: at most this much is read
  std::span<const Name> values = {};  // kValue
  std::span<const Op> ops = {};       // IOMMU_TEST_CMD
  bool returns_fd = false;            // a successful call's value is a new fd
};

// A field's value in a copy of its struct (little-endian: the low bytes).
inline std::uint64_t load(const unsigned char* bytes, const Field& f) {
  std::uint64_t v = 0;
  std::memcpy(&v, bytes + f.offset, f.size);
  return v;
}

std::span<const Command> commands();
const Command* find(unsigned long cmd);
const Op* find_op(const Command& c, std::uint32_t op);

}  // namespace uiommufd::trace::tables
