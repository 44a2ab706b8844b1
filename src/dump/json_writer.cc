#include "uiommufd/dump/json_writer.h"

#include <cstdio>

#include "uiommufd/base/assert.h"

namespace uiommufd::dump {

std::string JsonWriter::escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

void JsonWriter::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  // A value straight inside an array (or the document itself), never inside an object without a key.
  UIOMMUFD_DCHECK(stack_.empty() || !stack_.back().object);
  if (!stack_.empty()) {
    if (stack_.back().has_member) out_ += ',';
    stack_.back().has_member = true;
  }
}

void JsonWriter::key(std::string_view name) {
  UIOMMUFD_DCHECK(!stack_.empty() && stack_.back().object && !after_key_);
  if (stack_.back().has_member) out_ += ',';
  stack_.back().has_member = true;
  out_ += escape(name);
  out_ += ':';
  after_key_ = true;
}

void JsonWriter::begin_object() {
  before_value();
  out_ += '{';
  stack_.push_back({true, false});
}

void JsonWriter::end_object() {
  UIOMMUFD_DCHECK(!stack_.empty() && stack_.back().object && !after_key_);
  stack_.pop_back();
  out_ += '}';
}

void JsonWriter::begin_array() {
  before_value();
  out_ += '[';
  stack_.push_back({false, false});
}

void JsonWriter::end_array() {
  UIOMMUFD_DCHECK(!stack_.empty() && !stack_.back().object);
  stack_.pop_back();
  out_ += ']';
}

void JsonWriter::string(std::string_view value) {
  before_value();
  out_ += escape(value);
}

void JsonWriter::number(std::uint64_t value) {
  before_value();
  out_ += std::to_string(value);
}

void JsonWriter::boolean(bool value) {
  before_value();
  out_ += value ? "true" : "false";
}

void JsonWriter::null() {
  before_value();
  out_ += "null";
}

}  // namespace uiommufd::dump
