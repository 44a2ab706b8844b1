// JsonWriter: a compact JSON document built front to back (RFC 8259). The writer puts the commas and
// colons; the caller opens and closes objects and arrays in order and names every member of an object.
// Strings are escaped (quote, backslash, \n \t \r, other control characters as \uXXXX); bytes of 0x80
// and above pass through, so the caller gives UTF-8. Misuse (a value without a key inside an object,
// closing what is not open) is a caller bug, checked with UIOMMUFD_DCHECK.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace uiommufd::dump {

class JsonWriter {
 public:
  void begin_object();
  void end_object();
  void begin_array();
  void end_array();
  // The name of the next member of the enclosing object.
  void key(std::string_view name);

  void string(std::string_view value);
  void number(std::uint64_t value);
  void boolean(bool value);
  void null();

  // key() then the value.
  void field(std::string_view name, std::string_view value) { key(name), string(value); }
  void field(std::string_view name, const char* value) { key(name), string(value); }
  void field_number(std::string_view name, std::uint64_t value) { key(name), number(value); }
  void field_bool(std::string_view name, bool value) { key(name), boolean(value); }

  // The document so far (complete once every object and array is closed).
  const std::string& str() const { return out_; }
  static std::string escape(std::string_view s);

 private:
  void before_value();

  std::string out_;
  // Per open container: whether it is an object, and whether it has a member yet.
  struct Level {
    bool object;
    bool has_member;
  };
  std::vector<Level> stack_;
  bool after_key_ = false;
};

}  // namespace uiommufd::dump
