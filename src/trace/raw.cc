#include "uiommufd/trace/raw.h"

#include <algorithm>
#include <cstring>

#include "commands.h"

namespace uiommufd::trace {

using tables::Arg;
using tables::Command;
using tables::Field;
using tables::Kind;
using tables::load;
using tables::Op;

namespace {

constexpr unsigned char kMagic = 0x01;  // never the first byte of a formatted record ('+' or '{')

struct Head {
  unsigned char magic;
  unsigned char pad[3];
  std::int32_t pid;
  std::int32_t tid;
  std::int32_t fd;
  std::uint64_t ns;
  std::uint64_t cmd;
  std::uint64_t arg;
  std::int64_t rc;
};

// One copy of the program's memory: `len` bytes at `addr`, read before (phase 0) or after (phase 1) the
// call; the bytes follow when the read succeeded, padded to 8.
struct Chunk {
  std::uint64_t addr;
  std::uint32_t len;
  std::uint8_t phase;
  std::uint8_t ok;
  std::uint16_t pad;
};

constexpr std::size_t pad8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

// The program's memory as a raw record saw it in one phase: a read succeeds when one chunk of that phase
// that was read covers it.
class Replay final : public Reader {
 public:
  Replay(std::string_view chunks, std::uint8_t phase) : chunks_(chunks), phase_(phase) {}
  bool read(std::uint64_t uaddr, void* dst, std::size_t len) const override {
    for (std::size_t at = 0; at + sizeof(Chunk) <= chunks_.size();) {
      Chunk c;
      std::memcpy(&c, chunks_.data() + at, sizeof c);
      at += sizeof c;
      const char* bytes = chunks_.data() + at;
      // The ring is the traced program's memory too: a record may be cut or scribbled on, and is read with
      // care rather than trusted.
      if (c.ok && c.len > chunks_.size() - at) return false;
      if (c.ok) at += std::min(pad8(c.len), chunks_.size() - at);
      if (c.phase != phase_ || !c.ok || uaddr < c.addr || len > c.len || uaddr - c.addr > c.len - len)
        continue;
      std::memcpy(dst, bytes + (uaddr - c.addr), len);
      return true;
    }
    return false;
  }

 private:
  std::string_view chunks_;
  std::uint8_t phase_;
};

}  // namespace

void RawIoctl::chunk(std::uint8_t phase, std::uint64_t addr, std::uint32_t len, const Reader& mem) {
  if (len_ + sizeof(Chunk) + pad8(len) > kCapacity) {
    overflow_ = true;
    return;
  }
  Chunk c{addr, len, phase, 0, 0};
  unsigned char* bytes = buf_ + len_ + sizeof c;
  c.ok = mem.read(addr, bytes, len) ? 1 : 0;
  std::memcpy(buf_ + len_, &c, sizeof c);
  len_ += sizeof c + (c.ok ? pad8(len) : 0);
}

// The elements of the arrays the decoder shows in this phase (the fields of `dir` that the struct's first
// `size` bytes cover), as decoder.cc's array_value() reads them: one copy of all of them when it can be read
// whole, else element by element up to the first that cannot.
void RawIoctl::arrays(std::uint8_t phase, const void* command, const void* op, const unsigned char* bytes,
                      std::uint32_t size, std::uint64_t cap, const Reader& mem) {
  const std::uint8_t dir = phase == 0 ? tables::kIn : tables::kOut;
  auto each = [&](std::span<const Field> fs, std::uint64_t out_cap) {
    for (const Field& f : fs) {
      if (f.kind != Kind::kArray || !(f.dir & dir) || f.offset + f.size > size) continue;
      const Field& count_field = fs[f.array->count_field];
      std::uint64_t count = count_field.offset + count_field.size <= size ? load(bytes, count_field) : 0;
      if (dir == tables::kOut) count = std::min(count, out_cap);
      const std::uint64_t shown = std::min(count, tables::kArrayShown);
      if (shown == 0) continue;
      const std::uint64_t ptr = load(bytes, f);
      const std::uint32_t esize = f.array->element_size;
      const std::size_t mark = len_;
      chunk(phase, ptr, static_cast<std::uint32_t>(shown * esize), mem);
      Chunk whole;
      std::memcpy(&whole, buf_ + mark, sizeof whole);
      if (overflow_ || whole.ok) continue;
      len_ = mark;
      const std::uint32_t read = std::min<std::uint32_t>(esize, 64);
      for (std::uint64_t i = 0; i < shown; ++i) {
        const std::size_t at = len_;
        chunk(phase, ptr + i * esize, read, mem);
        Chunk c;
        std::memcpy(&c, buf_ + at, sizeof c);
        if (overflow_ || !c.ok) break;
      }
    }
  };
  each(static_cast<const Command*>(command)->fields, cap);
  if (op) each(static_cast<const Op*>(op)->fields, 0);
}

bool RawIoctl::begin(const Origin& o, const Filter& filter, int fd, unsigned long cmd, std::uint64_t arg,
                     const Reader& mem) {
  len_ = sizeof(Head);
  overflow_ = false;
  size_ = 0;
  array_cap_ = 0;
  command_ = tables::find(cmd);
  op_ = nullptr;
  const Head h{kMagic, {}, o.pid, o.tid, fd, o.ns, cmd, arg, 0};
  std::memcpy(buf_, &h, sizeof h);
  const auto* c = static_cast<const Command*>(command_);
  std::uint32_t op = 0;
  readable_ = false;
  unsigned char bytes[256] = {};
  if (c && c->arg == Arg::kStruct) {
    // As begin_ioctl(): the leading size, then that much of the struct (at most the newest layout).
    const std::size_t at = len_;
    chunk(0, arg, sizeof(std::uint32_t), mem);
    Chunk first;
    std::memcpy(&first, buf_ + at, sizeof first);
    if (first.ok) {
      std::uint32_t size = 0;
      std::memcpy(&size, buf_ + at + sizeof first, sizeof size);
      size_ = std::min<std::uint32_t>(size, std::min<std::uint32_t>(c->struct_size, sizeof bytes));
      const std::size_t whole = len_;
      chunk(0, arg, size_, mem);
      Chunk c2;
      std::memcpy(&c2, buf_ + whole, sizeof c2);
      readable_ = !overflow_ && c2.ok;
      if (readable_) std::memcpy(bytes, buf_ + whole + sizeof c2, size_);
    }
    if (!readable_) size_ = 0;
    if (readable_ && !c->ops.empty() && size_ >= 8) {
      std::memcpy(&op, bytes + 4, sizeof op);
      op_ = tables::find_op(*c, op);
    }
  }
  if (!filter.shows_ioctl(cmd, op, !c || !c->ops.empty())) return false;
  if (readable_) {
    arrays(0, c, op_, bytes, size_, 0, mem);
    for (const Field& f : c->fields)
      if (f.kind == Kind::kArray && f.dir == tables::kOut && f.offset + f.size <= size_)
        array_cap_ = load(bytes, c->fields[f.array->count_field]);
  }
  return true;
}

void RawIoctl::end(long rc, const Reader& mem) {
  Head h;
  std::memcpy(&h, buf_, sizeof h);
  h.rc = rc;
  std::memcpy(buf_, &h, sizeof h);
  if (rc < 0 || !readable_) return;
  // As end_ioctl(): the struct again, then the arrays the command filled.
  const std::size_t at = len_;
  chunk(1, h.arg, size_, mem);
  Chunk c;
  std::memcpy(&c, buf_ + at, sizeof c);
  if (overflow_ || !c.ok) return;
  unsigned char bytes[256] = {};
  std::memcpy(bytes, buf_ + at + sizeof c, size_);
  arrays(1, command_, op_, bytes, size_, array_cap_, mem);
}

std::string_view RawIoctl::record() const {
  if (overflow_) return {};
  return {reinterpret_cast<const char*>(buf_), len_};
}

bool is_raw(std::string_view record) {
  return record.size() >= sizeof(Head) && static_cast<unsigned char>(record[0]) == kMagic;
}

std::string_view format_raw(Style style, Line& line, std::string_view record) {
  line.clear();
  if (!is_raw(record)) {
    line.append("# uiommufd trace: a record that is not well formed was left out");
    return line.finish();
  }
  Head h;
  std::memcpy(&h, record.data(), sizeof h);
  const std::string_view chunks = record.substr(sizeof h);
  const Replay before(chunks, 0), after(chunks, 1);
  const Filter all;
  const Origin o{h.pid, h.tid, h.ns};
  const IoctlState st = begin_ioctl(style, line, o, all, h.fd, h.cmd, h.arg, before);
  end_ioctl(style, line, st, h.cmd, h.arg, h.rc, after);
  return line.finish();
}

}  // namespace uiommufd::trace
