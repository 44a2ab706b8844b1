#include "uiommufd/trace/decoder.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/ioctl.h>

#include "commands.h"

#include "uiommufd/uapi/abi.h"

namespace uiommufd::trace {

using tables::Arg;
using tables::Command;
using tables::Field;
using tables::Kind;
using tables::load;
using tables::Op;

// ---- Line ------------------------------------------------------------------------------------------------

namespace {
constexpr char kCut[] = " ...";
}  // namespace

void Line::append_cut(std::string_view s) {
  cut_ = true;
  s = s.substr(0, kCapacity - kReserve - len_);
  std::memcpy(buf_ + len_, s.data(), s.size());
  len_ += s.size();
}

void Line::append_udec(std::uint64_t v) {
  if (kCapacity - kReserve - len_ < 20) [[unlikely]] {
    char tmp[20];
    std::size_t n = 0;
    do tmp[sizeof tmp - 1 - n++] = static_cast<char>('0' + v % 10);
    while ((v /= 10) != 0);
    return append({tmp + sizeof tmp - n, n});
  }
  if (v < 10) {
    buf_[len_++] = static_cast<char>('0' + v);
    return;
  }
  std::size_t digits = 1;
  for (std::uint64_t t = v; t >= 10; t /= 10) ++digits;
  char* p = buf_ + len_ + digits;
  do *--p = static_cast<char>('0' + v % 10);
  while ((v /= 10) != 0);
  len_ += digits;
}

void Line::append_dec(std::int64_t v) {
  if (v < 0) {
    append_char('-');
    append_udec(0 - static_cast<std::uint64_t>(v));
  } else {
    append_udec(static_cast<std::uint64_t>(v));
  }
}

void Line::append_hex(std::uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  if (kCapacity - kReserve - len_ < 18) [[unlikely]] {
    cut_ = true;
    return;
  }
  // Digits from the highest set nibble down, written in place.
  const std::size_t digits = v == 0 ? 1 : (67 - static_cast<std::size_t>(__builtin_clzll(v))) / 4;
  buf_[len_] = '0';
  buf_[len_ + 1] = 'x';
  char* p = buf_ + len_ + 2 + digits;
  for (std::size_t i = 0; i < digits; ++i, v >>= 4) *--p = kDigits[v & 15];
  len_ += 2 + digits;
}

void Line::append_json_escaped(std::string_view s) {
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      append_char('\\');
      append_char(ch);
    } else if (c < 0x20) {
      static constexpr char kDigits[] = "0123456789abcdef";
      const char esc[] = {'\\', 'u', '0', '0', kDigits[c >> 4], kDigits[c & 15]};
      append({esc, sizeof esc});
    } else {
      append_char(ch);
    }
  }
}

std::string_view Line::finish() {
  if (cut_) {
    std::memcpy(buf_ + len_, kCut, sizeof kCut - 1);
    len_ += sizeof kCut - 1;
  }
  buf_[len_++] = '\n';
  return {buf_, len_};
}

// ---- names -----------------------------------------------------------------------------------------------

const char* command_name(unsigned long cmd) {
  const Command* c = tables::find(cmd);
  return c ? c->name.data() : nullptr;
}

const char* test_op_name(std::uint32_t op) {
  const Command* c = tables::find(uapi::IOMMU_TEST_CMD);
  const Op* o = c ? tables::find_op(*c, op) : nullptr;
  return o ? o->name.data() : nullptr;
}

void for_each_name(void (*fn)(void* ctx, const char* name, bool is_test_op), void* ctx) {
  for (const Command& c : tables::commands()) {
    fn(ctx, c.name.data(), false);
    for (const Op& o : c.ops) fn(ctx, o.name.data(), true);
  }
}

// ---- filter ----------------------------------------------------------------------------------------------

namespace {

// Filter keys: an ioctl's command number (cmd), a selftest op (kOpKey | op), an fd call (kCallKey | index).
constexpr std::uint32_t kOpKey = 1u << 20, kCallKey = 1u << 21;
constexpr const char* kCalls[] = {"open", "close", "dup"};

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(x) == std::toupper(y);
         });
}

// `want` names `name` with or without the given prefix ("IOMMU_" for commands, "TEST_OP_" for ops).
bool names(std::string_view want, std::string_view name, std::string_view prefix) {
  if (same_name(want, name)) return true;
  if (name.starts_with(prefix) && same_name(want, name.substr(prefix.size()))) return true;
  return want.size() > prefix.size() && same_name(want.substr(0, prefix.size()), prefix) &&
         same_name(want.substr(prefix.size()), name);
}

}  // namespace

bool Filter::parse(std::string_view list, std::string_view* bad) {
  count_ = 0;
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) continue;
    std::uint32_t key = 0;
    bool found = false;
    for (std::size_t i = 0; i < std::size(kCalls) && !found; ++i)
      if (same_name(item, kCalls[i])) key = kCallKey | static_cast<std::uint32_t>(i), found = true;
    for (const Command& c : tables::commands()) {
      if (found) break;
      if (names(item, c.name, "IOMMU_")) key = static_cast<std::uint32_t>(c.cmd), found = true;
      for (const Op& o : c.ops)
        if (!found && names(item, o.name, "TEST_OP_")) key = kOpKey | o.op, found = true;
    }
    if (!found || count_ == kMax) {
      if (bad) *bad = item;
      return false;
    }
    keys_[count_++] = key;
  }
  return true;
}

bool Filter::shows_call(std::string_view call) const {
  if (count_ == 0) return true;
  for (std::size_t i = 0; i < std::size(kCalls); ++i) {
    if (call != kCalls[i]) continue;
    return std::find(keys_, keys_ + count_, kCallKey | static_cast<std::uint32_t>(i)) != keys_ + count_;
  }
  return false;
}

bool Filter::shows_ioctl(unsigned long cmd, std::uint32_t test_op, bool has_op) const {
  if (count_ == 0) return true;
  const auto* end = keys_ + count_;
  if (std::find(keys_, end, static_cast<std::uint32_t>(cmd)) != end) return true;
  return has_op && std::find(keys_, end, kOpKey | test_op) != end;
}

// ---- records ---------------------------------------------------------------------------------------------

namespace {

// Writes fields and values in one format: `key=value, …` or `"key":value,…`.
class Out {
 public:
  Out(Style s, Line& l) : s_(s), l_(l) {}
  bool json() const { return s_.format == Format::kJson; }
  Style style() const { return s_; }
  void key(std::string_view name) {
    if (!first_) l_.append(json() ? "," : ", ");
    first_ = false;
    if (json()) {
      l_.append_char('"');
      l_.append(name);
      l_.append("\":");
    } else {
      l_.append(name);
      l_.append_char('=');
    }
  }
  void open_object() {
    l_.append_char('{');
    first_ = true;
  }
  void close_object() {
    l_.append_char('}');
    first_ = false;
  }
  void hex(std::uint64_t v) {
    if (json()) l_.append_char('"');
    l_.append_hex(v);
    if (json()) l_.append_char('"');
  }
  // An address in the program's memory.
  void addr(std::uint64_t v) {
    if (!s_.hide_addresses) return hex(v);
    l_.append(json() ? "\"<addr>\"" : "<addr>");
  }
  void str(std::string_view s) {
    if (json()) {
      l_.append_char('"');
      l_.append_json_escaped(s);
      l_.append_char('"');
    } else {
      l_.append(s);
    }
  }
  Line& line() { return l_; }
  void set_first(bool f) { first_ = f; }

 private:
  const Style s_;
  Line& l_;
  bool first_ = true;
};

std::string_view name_of(std::span<const tables::Name> names, std::uint64_t v) {
  for (const tables::Name& n : names)
    if (n.value == v) return n.name;
  return {};
}

void flags_value(Out& o, std::span<const tables::Name> names, std::uint64_t v) {
  Line& l = o.line();
  if (o.json()) {
    l.append_char('[');
    bool first = true;
    for (const tables::Name& n : names) {
      if (!(v & n.value)) continue;
      l.append(first ? "\"" : ",\"");
      l.append(n.name);
      l.append_char('"');
      v &= ~n.value;
      first = false;
    }
    if (v) {
      if (!first) l.append_char(',');
      o.hex(v);
    }
    l.append_char(']');
    return;
  }
  if (v == 0) {
    l.append_char('0');
    return;
  }
  bool first = true;
  for (const tables::Name& n : names) {
    if (!(v & n.value)) continue;
    if (!first) l.append_char('|');
    l.append(n.name);
    v &= ~n.value;
    first = false;
  }
  if (v) {
    if (!first) l.append_char('|');
    l.append_hex(v);
  }
}

using tables::kArrayShown;

void fields(Out& o, std::span<const Field> fs, const unsigned char* bytes, std::uint32_t size,
            std::uint8_t dir, const Reader& mem, std::uint64_t array_cap);

void array_value(Out& o, const Field& f, std::uint64_t ptr, std::uint64_t count, const Reader& mem) {
  Line& l = o.line();
  o.addr(ptr);
  if (count == 0) return;
  if (o.json()) {
    // The elements under a key of their own, "<field>_entries", beside the pointer's.
    l.append(",\"");
    l.append(f.name);
    l.append("_entries\":");
  } else {
    l.append_char(' ');
  }
  l.append_char('[');
  const std::uint64_t shown = std::min(count, kArrayShown);
  unsigned char elem[64];
  const std::size_t esize = std::min<std::size_t>(f.array->element_size, sizeof elem);
  for (std::uint64_t i = 0; i < shown; ++i) {
    if (i) l.append(o.json() ? "," : ", ");
    if (!mem.read(ptr + i * f.array->element_size, elem, esize)) {
      if (o.json())
        l.append("null");
      else
        l.append("<unreadable>");
      break;
    }
    Out inner(o.style(), l);
    inner.open_object();
    fields(inner, f.array->element, elem, static_cast<std::uint32_t>(esize), tables::kInOut, mem, 0);
    inner.close_object();
  }
  if (count > shown) {
    if (o.json()) {
      l.append(",\"+");
      l.append_udec(count - shown);
      l.append_char('"');
    } else {
      l.append(", ...+");
      l.append_udec(count - shown);
    }
  }
  l.append_char(']');
}

// The fields of `fs` that lie inside the first `size` bytes and go in direction `dir`.
void fields(Out& o, std::span<const Field> fs, const unsigned char* bytes, std::uint32_t size,
            std::uint8_t dir, const Reader& mem, std::uint64_t array_cap) {
  for (const Field& f : fs) {
    if (!(f.dir & dir) || f.offset + f.size > size) continue;
    const std::uint64_t v = load(bytes, f);
    switch (f.kind) {
      case Kind::kReserved:
        if (v == 0) continue;
        o.key(f.name);
        o.hex(v);
        break;
      case Kind::kDec:
      case Kind::kId:
        o.key(f.name);
        o.line().append_udec(v);
        break;
      case Kind::kFd:
        o.key(f.name);
        o.line().append_dec(static_cast<std::int32_t>(v));
        break;
      case Kind::kHex:
        o.key(f.name);
        o.hex(v);
        break;
      case Kind::kAddr:
        o.key(f.name);
        o.addr(v);
        break;
      case Kind::kFlags:
        o.key(f.name);
        flags_value(o, f.names, v);
        break;
      case Kind::kEnum:
      case Kind::kOp: {
        o.key(f.name);
        const char* op = f.kind == Kind::kOp ? test_op_name(static_cast<std::uint32_t>(v)) : nullptr;
        const std::string_view n = op ? std::string_view(op) : name_of(f.names, v);
        if (!n.empty())
          o.str(n);
        else
          o.line().append_udec(v);
        break;
      }
      case Kind::kArray: {
        o.key(f.name);
        const Field& count_field = fs[f.array->count_field];
        std::uint64_t count = count_field.offset + count_field.size <= size ? load(bytes, count_field) : 0;
        if (dir == tables::kOut) count = std::min(count, array_cap);
        array_value(o, f, v, count, mem);
        break;
      }
    }
  }
}

// Seconds with six decimals: "12.000345".
void append_seconds(Line& l, std::uint64_t ns) {
  const std::uint64_t us = ns / 1000;
  l.append_udec(us / 1000000);
  l.append_char('.');
  char frac[6];
  std::uint64_t f = us % 1000000;
  for (int i = 5; i >= 0; --i, f /= 10) frac[i] = static_cast<char>('0' + f % 10);
  l.append({frac, 6});
}

void head(Out& o, const Origin& origin, const char* call) {
  Line& l = o.line();
  if (o.json()) {
    l.append("{\"t\":");
    append_seconds(l, origin.ns);
    l.append(",\"pid\":");
    l.append_dec(origin.pid);
    l.append(",\"tid\":");
    l.append_dec(origin.tid);
    l.append(",\"call\":\"");
    l.append(call);
    l.append_char('"');
    o.set_first(false);
    return;
  }
  l.append_char('+');
  append_seconds(l, origin.ns);
  l.append_char(' ');
  l.append_dec(origin.pid);
  l.append_char('/');
  l.append_dec(origin.tid);
  l.append_char(' ');
  l.append(call);
  l.append_char('(');
}

void result(Out& o, long rc) {
  Line& l = o.line();
  if (o.json()) {
    l.append(",\"ret\":");
    l.append_dec(rc < 0 ? -1 : rc);
    if (rc < 0) {
      l.append(",\"errno\":\"");
      const char* n = strerrorname_np(static_cast<int>(-rc));
      if (n)
        l.append(n);
      else
        l.append_dec(-rc);
      l.append_char('"');
    }
    return;
  }
  l.append(" = ");
  if (rc >= 0) {
    l.append_dec(rc);
    return;
  }
  l.append("-1 ");
  const char* n = strerrorname_np(static_cast<int>(-rc));
  if (n)
    l.append(n);
  else
    l.append_dec(-rc);
  if (const char* d = strerrordesc_np(static_cast<int>(-rc))) {
    l.append(" (");
    l.append(d);
    l.append_char(')');
  }
}

void raw_cmd(Out& o, unsigned long cmd) {
  Line& l = o.line();
  if (o.json()) l.append_char('"');
  l.append("_IOC(");
  l.append_hex(_IOC_DIR(cmd));
  l.append(", ");
  l.append_hex(_IOC_TYPE(cmd));
  l.append(", ");
  l.append_hex(_IOC_NR(cmd));
  l.append(", ");
  l.append_hex(_IOC_SIZE(cmd));
  l.append_char(')');
  if (o.json()) l.append_char('"');
}

}  // namespace

IoctlState begin_ioctl(Style f, Line& line, const Origin& origin, const Filter& filter, int fd,
                       unsigned long cmd, std::uint64_t arg, const Reader& mem) {
  IoctlState st;
  const Command* c = tables::find(cmd);
  st.command = c;
  // The struct as the kernel would read it: its leading size, then that much (at most the newest layout).
  unsigned char bytes[256] = {};
  std::uint32_t op = 0;
  if (c && c->arg == Arg::kStruct) {
    std::uint32_t size = 0;
    if (mem.read(arg, &size, sizeof size)) {
      st.size = std::min<std::uint32_t>(size, std::min<std::uint32_t>(c->struct_size, sizeof bytes));
      st.readable = mem.read(arg, bytes, st.size);
      if (!st.readable) st.size = 0;
    }
    if (st.readable && !c->ops.empty() && st.size >= 8) {
      std::memcpy(&op, bytes + 4, sizeof op);
      st.sub = tables::find_op(*c, op);
    }
  }
  st.shown = filter.shows_ioctl(cmd, op, !c || !c->ops.empty());
  if (!st.shown) return st;
  line.clear();
  Out o(f, line);
  head(o, origin, "ioctl");
  if (o.json()) {
    o.key("fd");
    line.append_dec(fd);
    o.key("cmd");
    if (c)
      o.str(c->name);
    else
      raw_cmd(o, cmd);
    if (st.sub) {
      o.key("op");
      o.str(static_cast<const Op*>(st.sub)->name);
    }
    o.key("arg");
    o.addr(arg);
  } else {
    line.append_dec(fd);
    line.append(", ");
    if (c)
      line.append(c->name);
    else
      raw_cmd(o, cmd);
    line.append(", ");
  }
  if (!c || c->arg == Arg::kNone) {
    if (!o.json() && !c) o.addr(arg);  // a command we do not know may take an address
    if (!o.json() && c) line.append_char('0');
    return st;
  }
  if (c->arg == Arg::kValue) {
    const std::string_view n = name_of(c->values, arg);
    if (o.json()) {
      o.key("value");
      if (!n.empty())
        o.str(n);
      else
        line.append_udec(arg);
    } else if (!n.empty()) {
      line.append(n);
    } else {
      line.append_udec(arg);
    }
    return st;
  }
  if (!st.readable) {
    if (o.json()) {
      o.key("in");
      line.append("null,\"unreadable\":true");
    } else {
      o.addr(arg);
      line.append(" <unreadable>");
    }
    return st;
  }
  if (o.json()) o.key("in");
  Out in(f, line);
  in.open_object();
  fields(in, c->fields, bytes, st.size, tables::kIn, mem, 0);
  if (st.sub) fields(in, static_cast<const Op*>(st.sub)->fields, bytes, st.size, tables::kIn, mem, 0);
  in.close_object();
  // The capacity an output array was given (IOMMU_IOAS_IOVA_RANGES' num_iovas), for end_ioctl().
  for (const Field& fld : c->fields)
    if (fld.kind == Kind::kArray && fld.dir == tables::kOut && fld.offset + fld.size <= st.size) {
      const Field& count = c->fields[fld.array->count_field];
      st.array_cap = load(bytes, count);
    }
  return st;
}

void end_ioctl(Style f, Line& line, const IoctlState& st, unsigned long cmd, std::uint64_t arg, long rc,
               const Reader& mem) {
  (void)cmd;
  if (!st.shown) return;
  Out o(f, line);
  o.set_first(false);
  if (!o.json()) line.append_char(')');
  result(o, rc);
  const auto* c = static_cast<const Command*>(st.command);
  if (rc < 0 || !c || c->arg != Arg::kStruct || !st.readable) {
    if (o.json()) line.append_char('}');
    return;
  }
  unsigned char bytes[256] = {};
  if (!mem.read(arg, bytes, st.size)) {
    if (o.json())
      line.append(",\"out\":null}");
    else
      line.append(" => <unreadable>");
    return;
  }
  // Only commands that write something back have an out part.
  bool any = false;
  for (const Field& fld : c->fields)
    any = any || ((fld.dir & tables::kOut) && fld.offset + fld.size <= st.size);
  if (st.sub)
    for (const Field& fld : static_cast<const Op*>(st.sub)->fields)
      any = any || ((fld.dir & tables::kOut) && fld.offset + fld.size <= st.size);
  if (any) {
    if (o.json())
      o.key("out");
    else
      line.append(" => ");
    Out out(f, line);
    out.open_object();
    fields(out, c->fields, bytes, st.size, tables::kOut, mem, st.array_cap);
    if (st.sub) fields(out, static_cast<const Op*>(st.sub)->fields, bytes, st.size, tables::kOut, mem, 0);
    out.close_object();
  }
  if (o.json()) line.append_char('}');
}

namespace {

void open_flags(Out& o, int flags) {
  static constexpr tables::Name kFlags[] = {{O_NONBLOCK, "O_NONBLOCK"}, {O_CLOEXEC, "O_CLOEXEC"},
                                            {O_APPEND, "O_APPEND"},     {O_CREAT, "O_CREAT"},
                                            {O_EXCL, "O_EXCL"},         {O_TRUNC, "O_TRUNC"}};
  const int acc = flags & O_ACCMODE;
  const char* mode = acc == O_RDONLY   ? "O_RDONLY"
                     : acc == O_WRONLY ? "O_WRONLY"
                     : acc == O_RDWR   ? "O_RDWR"
                                       : "3";
  Line& l = o.line();
  std::uint64_t rest =
      static_cast<std::uint64_t>(flags) & ~static_cast<std::uint64_t>(O_ACCMODE | O_LARGEFILE);
  if (o.json()) {
    l.append("[\"");
    l.append(mode);
    l.append_char('"');
    for (const tables::Name& n : kFlags) {
      if (!(rest & n.value)) continue;
      l.append(",\"");
      l.append(n.name);
      l.append_char('"');
      rest &= ~n.value;
    }
    if (rest) {
      l.append_char(',');
      o.hex(rest);
    }
    l.append_char(']');
    return;
  }
  l.append(mode);
  for (const tables::Name& n : kFlags) {
    if (!(rest & n.value)) continue;
    l.append_char('|');
    l.append(n.name);
    rest &= ~n.value;
  }
  if (rest) {
    l.append_char('|');
    l.append_hex(rest);
  }
}

void end_record(Out& o) {
  if (o.json()) o.line().append_char('}');
}

}  // namespace

void open_call(Style f, Line& line, const Origin& origin, std::string_view path, int flags, long rc) {
  line.clear();
  Out o(f, line);
  head(o, origin, "open");
  if (o.json()) {
    o.key("path");
    o.str(path);
    o.key("flags");
    open_flags(o, flags);
  } else {
    line.append_char('"');
    line.append(path);
    line.append("\", ");
    open_flags(o, flags);
    line.append_char(')');
  }
  result(o, rc);
  end_record(o);
}

void close_call(Style f, Line& line, const Origin& origin, int fd, long rc) {
  line.clear();
  Out o(f, line);
  head(o, origin, "close");
  if (o.json()) {
    o.key("fd");
    line.append_dec(fd);
  } else {
    line.append_dec(fd);
    line.append_char(')');
  }
  result(o, rc);
  end_record(o);
}

void dup_call(Style f, Line& line, const Origin& origin, std::string_view call, int oldfd, int newfd,
              long rc) {
  line.clear();
  Out o(f, line);
  char name[8] = {};
  std::memcpy(name, call.data(), std::min(call.size(), sizeof name - 1));
  head(o, origin, name);
  if (o.json()) {
    o.key("fd");
    line.append_dec(oldfd);
    if (newfd >= 0) {
      o.key("newfd");
      line.append_dec(newfd);
    }
  } else {
    line.append_dec(oldfd);
    if (newfd >= 0) {
      line.append(", ");
      line.append_dec(newfd);
    }
    line.append_char(')');
  }
  result(o, rc);
  end_record(o);
}

}  // namespace uiommufd::trace
