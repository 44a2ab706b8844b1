// The decoder (docs/trace.md): golden output over every command and selftest op, in both formats, for a
// success with outputs, an error, and a bad pointer; the filter; JSON validity; lines that do not fit.
#include "uiommufd/trace/decoder.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>

#include "commands.h"

#include "uiommufd/trace/raw.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::trace {
namespace {

using namespace uapi;

// The traced program's memory for the tests: named regions at made-up addresses; anything else is
// unreadable.
class FakeMemory final : public Reader {
 public:
  std::uint64_t add(std::uint64_t at, const void* bytes, std::size_t len) {
    regions_[at].assign(static_cast<const unsigned char*>(bytes),
                        static_cast<const unsigned char*>(bytes) + len);
    return at;
  }
  unsigned char* at(std::uint64_t addr) { return regions_.at(addr).data(); }
  bool read(std::uint64_t uaddr, void* dst, std::size_t len) const override {
    for (const auto& [start, bytes] : regions_)
      if (uaddr >= start && uaddr + len <= start + bytes.size()) {
        std::memcpy(dst, bytes.data() + (uaddr - start), len);
        return true;
      }
    return false;
  }

 private:
  std::map<std::uint64_t, std::vector<unsigned char>> regions_;
};

constexpr std::uint64_t kArg = 0x7ffd0000;
constexpr std::uint64_t kArray = 0x7ffe0000;
const Origin kOrigin{100, 101, 1234567};

// A struct for `c` whose fields hold recognisable values: each field its offset + 1 (a flags field every
// known bit and one unknown one, an enum field its first name's value), the size field the struct's size,
// and array pointers at kArray with two elements.
std::vector<unsigned char> sample(const tables::Command& c, const tables::Op* op) {
  std::vector<unsigned char> bytes(c.struct_size, 0);
  if (c.arg != tables::Arg::kStruct) return bytes;
  auto fill = [&](std::span<const tables::Field> fields) {
    for (const tables::Field& f : fields) {
      std::uint64_t v = f.offset + 1;
      if (f.kind == tables::Kind::kFlags) {
        v = 1ull << 30;
        for (const tables::Name& n : f.names) v |= n.value;
      } else if (f.kind == tables::Kind::kEnum && !f.names.empty()) {
        v = f.names[0].value;
      } else if (f.kind == tables::Kind::kArray) {
        v = kArray;
      } else if (f.kind == tables::Kind::kReserved) {
        v = 0;
      }
      std::memcpy(bytes.data() + f.offset, &v, f.size);
    }
  };
  fill(c.fields);
  if (op) fill(op->fields);
  const std::uint32_t size = c.struct_size;
  std::memcpy(bytes.data(), &size, sizeof size);
  if (op) std::memcpy(bytes.data() + 4, &op->op, sizeof op->op);
  for (const tables::Field& f : c.fields)
    if (f.kind == tables::Kind::kArray) {
      const std::uint32_t two = 2;
      std::memcpy(bytes.data() + c.fields[f.array->count_field].offset, &two, sizeof two);
    }
  return bytes;
}

// Every record the decoder makes for one command (and op): a success whose outputs differ from the
// inputs, an error, an unreadable argument. `raw`: each through a raw record (raw.h), formatted afterwards
// as the consumer does, which must give the same lines.
void decode_all(Style f, const tables::Command& c, const tables::Op* op, std::string* out, bool raw) {
  Filter all;
  Line line;
  FakeMemory mem;
  const iommu_iova_range ranges[2] = {{0x1000, 0x1fff}, {0x100000, 0x1fffff}};
  mem.add(kArray, ranges, sizeof ranges);
  std::vector<unsigned char> bytes = sample(c, op);
  if (!bytes.empty()) mem.add(kArg, bytes.data(), bytes.size());
  const std::uint64_t arg = c.arg == tables::Arg::kStruct ? kArg : c.arg == tables::Arg::kValue ? 3 : 0;
  // One call: decoded before it, `kernel` runs, decoded after it with result rc.
  auto call = [&](std::uint64_t a, long rc, auto kernel) {
    if (raw) {
      auto rec = std::make_unique<RawIoctl>();
      ASSERT_TRUE(rec->begin(kOrigin, all, 3, c.cmd, a, mem));
      kernel();
      rec->end(rc, mem);
      ASSERT_FALSE(rec->record().empty());
      *out += format_raw(f, line, rec->record());
      return;
    }
    const IoctlState st = begin_ioctl(f, line, kOrigin, all, 3, c.cmd, a, mem);
    kernel();
    end_ioctl(f, line, st, c.cmd, a, rc, mem);
    *out += line.finish();
  };
  // The "kernel" writes back: every output field + 0x100.
  call(arg, 0, [&] {
    if (c.arg != tables::Arg::kStruct) return;
    auto bump = [&](std::span<const tables::Field> fields) {
      for (const tables::Field& fld : fields) {
        if (!(fld.dir & tables::kOut) || fld.kind == tables::Kind::kArray) continue;
        std::uint64_t v = 0;
        std::memcpy(&v, mem.at(kArg) + fld.offset, fld.size);
        v += 0x100;
        std::memcpy(mem.at(kArg) + fld.offset, &v, fld.size);
      }
    };
    bump(c.fields);
    if (op) bump(op->fields);
  });
  call(arg, -EINVAL, [] {});
  if (c.arg == tables::Arg::kStruct) call(0x10, -EFAULT, [] {});
}

// The ioctl records of every command and op.
std::string every_ioctl(Style f, bool raw) {
  std::string out;
  for (const tables::Command& c : tables::commands()) {
    if (c.ops.empty()) {
      decode_all(f, c, nullptr, &out, raw);
      continue;
    }
    for (const tables::Op& op : c.ops) decode_all(f, c, &op, &out, raw);
  }
  return out;
}

std::string everything(Style f) {
  std::string out = every_ioctl(f, false);
  Line line;
  FakeMemory mem;
  Filter all;
  IoctlState st = begin_ioctl(f, line, kOrigin, all, 3, 0xc0de3bff, 0x1234, mem);  // not ours
  end_ioctl(f, line, st, 0xc0de3bff, 0x1234, -ENOTTY, mem);
  out += line.finish();
  open_call(f, line, kOrigin, "/dev/iommu", O_RDWR | O_CLOEXEC, 3);
  out += line.finish();
  open_call(f, line, kOrigin, "/dev/vfio/vfio", O_RDONLY | 0x40000000, -ENOENT);
  out += line.finish();
  close_call(f, line, kOrigin, 3, 0);
  out += line.finish();
  dup_call(f, line, kOrigin, "dup", 3, -1, 4);
  out += line.finish();
  dup_call(f, line, kOrigin, "dup2", 3, 9, 9);
  out += line.finish();
  return out;
}

// Compared with tests/trace/<name>; UIOMMUFD_UPDATE_GOLDEN=1 writes it instead.
void golden(const std::string& name, const std::string& got) {
  const std::string path = std::string(UIOMMUFD_SOURCE_DIR) + "/tests/trace/" + name;
  if (std::getenv("UIOMMUFD_UPDATE_GOLDEN")) {
    std::ofstream(path) << got;
    GTEST_SKIP() << "wrote " << path;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "no golden file " << path << " (UIOMMUFD_UPDATE_GOLDEN=1 makes it)";
  std::stringstream want;
  want << in.rdbuf();
  // Line by line, so a difference names its line.
  std::istringstream a(want.str()), b(got);
  std::string la, lb;
  for (int n = 1; std::getline(a, la); ++n) {
    ASSERT_TRUE(std::getline(b, lb)) << name << ": output ends before line " << n;
    ASSERT_EQ(la, lb) << name << ":" << n;
  }
  EXPECT_FALSE(std::getline(b, lb)) << name << ": output has more lines than the golden file";
}

TEST(TraceDecoderTest, EveryCommandAsText) { golden("decoder.txt", everything(Format::kText)); }
TEST(TraceDecoderTest, EveryCommandAsJson) { golden("decoder.jsonl", everything(Format::kJson)); }
// A raw record (what the trace ring carries) formatted by the consumer is the line the traced thread would
// have written, for every command, op and outcome, in every style.
TEST(TraceDecoderTest, RawRecordsFormatAsTheLiveDecoderDoes) {
  for (const Style style :
       {Style(Format::kText), Style(Format::kJson), Style(Format::kText, true), Style(Format::kJson, true)}) {
    const std::string live = every_ioctl(style, false);
    const std::string raw = every_ioctl(style, true);
    ASSERT_GT(live.size(), 10000u);
    EXPECT_EQ(raw, live);
  }
}

TEST(TraceDecoderTest, ARawRecordOfAFilteredOutCallIsNotMade) {
  Filter only;
  std::string_view bad;
  ASSERT_TRUE(only.parse("IOAS_MAP", &bad));
  FakeMemory mem;
  iommu_ioas_alloc alloc{sizeof alloc, 0, 0};
  mem.add(kArg, &alloc, sizeof alloc);
  auto rec = std::make_unique<RawIoctl>();
  EXPECT_FALSE(rec->begin(kOrigin, only, 3, IOMMU_IOAS_ALLOC, kArg, mem));
}

// A raw record cut anywhere (the ring is writable by the traced program) formats without reading past
// its end: what is missing reads as unreadable.
TEST(TraceDecoderTest, ACutRawRecordIsReadWithinItsBounds) {
  Filter all;
  FakeMemory mem;
  const iommu_iova_range ranges[2] = {{0x1000, 0x1fff}, {0x100000, 0x1fffff}};
  mem.add(kArray, ranges, sizeof ranges);
  iommu_ioas_allow_iovas allow{sizeof allow, 5, 2, 0, kArray};
  mem.add(kArg, &allow, sizeof allow);
  auto rec = std::make_unique<RawIoctl>();
  ASSERT_TRUE(rec->begin(kOrigin, all, 3, IOMMU_IOAS_ALLOW_IOVAS, kArg, mem));
  rec->end(0, mem);
  const std::string whole(rec->record());
  Line line;
  EXPECT_NE(format_raw(Style(), line, whole).find("start=0x100000"), std::string_view::npos);
  for (std::size_t n = whole.size(); n-- > 0;) {
    // Copied, so that AddressSanitizer sees a read past the cut.
    const std::unique_ptr<char[]> cut(new char[n ? n : 1]);
    std::memcpy(cut.get(), whole.data(), n);
    format_raw(Style(), line, {cut.get(), n});
  }
}

TEST(TraceDecoderTest, AMalformedRawRecordBecomesANote) {
  Line line;
  const char junk[64] = {1};
  EXPECT_TRUE(is_raw({junk, sizeof junk}));
  EXPECT_FALSE(is_raw("+0.000001 1/1 open(...)"));
  EXPECT_NE(format_raw(Style(), line, "{\"t\":0}").find("not well formed"), std::string_view::npos);
}

// --hide-addresses: every address of the program's memory (the struct pointer, array pointers, the kAddr
// fields) and nothing else prints as <addr>.
TEST(TraceDecoderTest, EveryCommandWithAddressesHidden) {
  golden("decoder_hidden.txt", everything(Style(Format::kText, true)));
}
TEST(TraceDecoderTest, EveryCommandAsJsonWithAddressesHidden) {
  golden("decoder_hidden.jsonl", everything(Style(Format::kJson, true)));
}

// Every command and op of the tables reaches the output by its name.
TEST(TraceDecoderTest, TheGoldenFilesNameEveryCommandAndOp) {
  const std::string text = everything(Format::kText);
  for (const tables::Command& c : tables::commands()) {
    EXPECT_NE(text.find(c.name), std::string::npos) << c.name;
    for (const tables::Op& op : c.ops)
      EXPECT_NE(text.find(std::string("op=") + std::string(op.name)), std::string::npos) << op.name;
  }
}

TEST(TraceDecoderTest, TheFilterTakesNamesWithOrWithoutPrefixes) {
  Filter f;
  std::string_view bad;
  ASSERT_TRUE(f.parse("ioas_map, IOMMU_IOAS_UNMAP,access_rw,close", &bad));
  EXPECT_TRUE(f.shows_ioctl(IOMMU_IOAS_MAP, 0, false));
  EXPECT_TRUE(f.shows_ioctl(IOMMU_IOAS_UNMAP, 0, false));
  EXPECT_FALSE(f.shows_ioctl(IOMMU_IOAS_ALLOC, 0, false));
  EXPECT_TRUE(f.shows_ioctl(IOMMU_TEST_CMD, IOMMU_TEST_OP_ACCESS_RW, true));
  EXPECT_FALSE(f.shows_ioctl(IOMMU_TEST_CMD, IOMMU_TEST_OP_MOCK_DOMAIN, true));
  EXPECT_TRUE(f.shows_call("close"));
  EXPECT_FALSE(f.shows_call("open"));
  ASSERT_TRUE(f.parse("IOMMU_TEST_CMD", &bad));
  EXPECT_TRUE(f.shows_ioctl(IOMMU_TEST_CMD, IOMMU_TEST_OP_MOCK_DOMAIN, true));
  ASSERT_TRUE(f.parse("TEST_OP_MOCK_DOMAIN", &bad));
  EXPECT_TRUE(f.shows_ioctl(IOMMU_TEST_CMD, IOMMU_TEST_OP_MOCK_DOMAIN, true));
  EXPECT_FALSE(f.parse("ioas_mapp", &bad));
  EXPECT_EQ(bad, "ioas_mapp");
  ASSERT_TRUE(f.parse("", &bad));
  EXPECT_TRUE(f.empty());
  EXPECT_TRUE(f.shows_call("open"));
}

TEST(TraceDecoderTest, AFilteredOutCallWritesNothing) {
  Filter f;
  ASSERT_TRUE(f.parse("IOAS_UNMAP", nullptr));
  Line line;
  FakeMemory mem;
  iommu_ioas_alloc alloc{sizeof(alloc), 0, 0};
  mem.add(kArg, &alloc, sizeof alloc);
  line.append("untouched");
  const IoctlState st = begin_ioctl(Format::kText, line, kOrigin, f, 3, IOMMU_IOAS_ALLOC, kArg, mem);
  end_ioctl(Format::kText, line, st, IOMMU_IOAS_ALLOC, kArg, 0, mem);
  EXPECT_FALSE(st.shown);
  EXPECT_EQ(line.view(), "untouched");
}

// A struct whose size is short of a field leaves the field out; one longer than ours is read up to ours.
TEST(TraceDecoderTest, OnlyTheFieldsTheSizeCoversAreDecoded) {
  Filter all;
  Line line;
  FakeMemory mem;
  iommu_ioas_map map{16, IOMMU_IOAS_MAP_READABLE, 7, 0, 0x1000, 0x2000, 0x3000};
  mem.add(kArg, &map, sizeof map);
  const IoctlState st = begin_ioctl(Format::kText, line, kOrigin, all, 3, IOMMU_IOAS_MAP, kArg, mem);
  end_ioctl(Format::kText, line, st, IOMMU_IOAS_MAP, kArg, -EINVAL, mem);
  EXPECT_EQ(line.finish(),
            "+0.001234 100/101 ioctl(3, IOMMU_IOAS_MAP, {size=16, flags=READABLE, ioas_id=7}) = -1 EINVAL "
            "(Invalid argument)\n");
}

TEST(TraceDecoderTest, ALineThatDoesNotFitIsCutAndMarked) {
  Line line;
  for (int i = 0; i < 1000; ++i) line.append("0123456789");
  const std::string_view out = line.finish();
  EXPECT_LE(out.size(), Line::kCapacity);
  EXPECT_TRUE(out.ends_with(" ...\n"));
}

TEST(TraceDecoderTest, JsonStringsAreEscaped) {
  Line line;
  open_call(Format::kJson, line, kOrigin, "/dev/\"io\\mmu\n", O_RDWR, -ENOENT);
  EXPECT_NE(line.finish().find(R"("path":"/dev/\"io\\mmu\u000a")"), std::string_view::npos) << line.view();
}

}  // namespace
}  // namespace uiommufd::trace
