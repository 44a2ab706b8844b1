// The formats of a dump: the text table (golden), JSON and SVG (structure and escaping), the writers, and
// the IOVA axis. The Python checks of the same documents are in check_dump.py (CTest).
#include "uiommufd/dump/format.h"

#include <regex>
#include <string>

#include <gtest/gtest.h>

#include "uiommufd/dump/dumper.h"
#include "uiommufd/dump/iova_axis.h"
#include "uiommufd/dump/json_writer.h"
#include "uiommufd/dump/svg_writer.h"

namespace uiommufd::dump {
namespace {

constexpr std::uint64_t kMax = ~std::uint64_t{0};

// A dump made by hand, so that every address in it is known.
Dump synthetic(Reason reason) {
  Dump d;
  d.pid = 42;
  d.reason = reason;
  d.sequence = 3;
  d.process_pinned_pages = 6;
  ContextSnapshot c;
  c.number = 1;
  c.account_mode = AccountMode::kUser;
  c.objects = {{1, ObjectType::kIoas, 2, {}},
               {2, ObjectType::kDevice, 1, {{"hwpt", 3, true, 0}}},
               {3, ObjectType::kHwptPaging, 2, {{"ioas", 1}}}};
  IoasSnapshot io;
  io.id = 1;
  io.iova_alignment = 0x800;
  DomainSnapshot dom;
  dom.hwpt = 3;
  dom.auto_domain = true;
  dom.granule = 0x800;
  dom.aperture = {0x1000000, 0x7fffffff};
  dom.mapped_bytes = 0x6000;
  dom.table_bytes = 0x4000;
  dom.devices = {{2, 0}};
  io.domains = {dom};
  AreaSnapshot a;
  a.iova = {0x1000000, 0x1003fff};
  a.state = AreaState::kPinned;
  a.pages = 1;
  a.source_addr = 0x7f0000000000;
  a.first_index = 0;
  a.last_index = 3;
  a.readable = a.writeable = true;
  a.pinned_pages = 4;
  a.filled = {0x4000};
  AreaSnapshot b;
  b.iova = {0x2000000, 0x2003fff};
  b.state = AreaState::kPartlyPinned;
  b.pages = 2;
  b.source_addr = 0x7f0000100000;
  b.first_index = 0;
  b.last_index = 3;
  b.readable = true;
  b.pinned_pages = 2;
  b.access_pins = 1;
  b.filled = {0x2000};
  io.areas = {a, b};
  io.reserved = {{{0, 0xffffff}, ReservedOwner::kDomain, 3},
                 {{0x10000000, 0x1000ffff}, ReservedOwner::kUser, 0},
                 {{0x80000000, kMax}, ReservedOwner::kDomain, 3}};
  c.ioases = {io};
  PagesSnapshot p1;
  p1.id = 1;
  p1.pid = 42;
  p1.source_addr = 0x7f0000000000;
  p1.length = 0x4000;
  p1.npages = 4;
  p1.writable = true;
  p1.account_mode = AccountMode::kUser;
  p1.account_pid = 42;
  p1.npinned = 4;
  p1.pin_runs = {{0, 3, 1}};
  PagesSnapshot p2 = p1;
  p2.id = 2;
  p2.source_addr = 0x7f0000100000;
  p2.writable = false;
  p2.npinned = 2;
  p2.pin_runs = {{0, 1, 2}};
  p2.access_records = {{0, 1, 1}};
  c.pages = {p1, p2};
  c.pinned_pages = 6;
  c.charged_pages = 6;
  c.mms = {{42, 1000, 6, 0, 6}};
  d.contexts = {c};
  return d;
}

TEST(TextFormatTest, GoldenTable) {
  const std::string expected = R"(uiommufd dump 3 (pid 42, exit): 1 context, 6 pages pinned in the process
context 1: 3 objects, new pages charged to user, 6 pages pinned, 6 charged
  objects:
    ID  TYPE         USERS  LINKS
     1  ioas             2
     2  device           1  hwpt 3 (pasid 0)
     3  hwpt_paging      2  ioas 1
  ioas 1: alignment 0x800, large pages off, lock_pinned off, 1 domain, 0 accesses
    areas:
      IOVA                 SIZE  PERM  STATE          PINNED  ACCESS  PAGES  SOURCE             DOMAINS
      0x1000000-0x1003fff   16K  rw    pinned            4/4       0      1  va 0x7f0000000000  hwpt 3 full
      0x2000000-0x2003fff   16K  r-    partly_pinned     2/4       1      2  va 0x7f0000100000  hwpt 3 8K/16K
    reserved:
      IOVA                             SIZE  OWNER
      0x0-0xffffff                      16M  domain (hwpt 3)
      0x10000000-0x1000ffff             64K  user
      0x80000000-0xffffffffffffffff  ~16.0E  domain (hwpt 3)
    allowed: all
    domains:
      DOMAIN  FLAGS  GRANULE  APERTURE              MAPPED  TABLE  DEVICES
      hwpt 3  auto     0x800  0x1000000-0x7fffffff     24K    16K  2
    pinned runs:
      IOVA                 SIZE  PAGES  USERS
      0x1000000-0x1003fff   16K      1      1
      0x2000000-0x2001fff    8K      2      2
    access pins:
      IOVA                 SIZE  PAGES  USERS
      0x2000000-0x2001fff    8K      2      1
  pages:
    ID  KIND  SOURCE                    SIZE  NPAGES  PINNED  CHARGED TO   FLAGS
     1  user  pid 42 va 0x7f0000000000   16K       4       4  user pid 42  rw
     2  user  pid 42 va 0x7f0000100000   16K       4       2  user pid 42  ro
  accounting (pages, every context of the engine):
    PID   UID  USER LOCKED  MM LOCKED  PINNED_VM
     42  1000            6          0          6
LEAK: context 1 still holds 3 objects (ioas 1, device 2, hwpt_paging 3), 6 pinned pages, 6 pages charged
)";
  Dump d = synthetic(Reason::kExit);
  d.contexts[0].ioases[0].large_pages = false;
  EXPECT_EQ(format_text(d), expected);
}

TEST(TextFormatTest, OnlyADumpAtExitReportsLeaksAndAnEmptyContextIsNone) {
  EXPECT_EQ(format_text(synthetic(Reason::kSignal)).find("LEAK"), std::string::npos);
  Dump d = synthetic(Reason::kExit);
  d.contexts.push_back(ContextSnapshot{});
  d.contexts.back().number = 2;
  ASSERT_EQ(leaks(d).size(), 1u);
  EXPECT_EQ(leaks(d)[0].context, 1u);
  d.contexts.clear();
  EXPECT_EQ(format_text(d), "uiommufd dump 3 (pid 42, exit): no context, 6 pages pinned in the process\n");
}

TEST(TextFormatTest, SizesAreExactInTheLargestWholeUnitOrMarkedRounded) {
  EXPECT_EQ(human_size(0), "0");
  EXPECT_EQ(human_size(1000), "1000");
  EXPECT_EQ(human_size(4096), "4K");
  EXPECT_EQ(human_size(1536), "1536");
  EXPECT_EQ(human_size(0x100000000ULL - 0x100000), "4095M");
  EXPECT_EQ(human_size(18446744073709551616.0L), "16E");
  EXPECT_EQ(human_size(3 * 1024 + 1), "3073");
  EXPECT_EQ(human_size(1048577.0L * 1024 * 1024 + 1), "~1.0T");
  EXPECT_EQ(hex(0), "0x0");
  EXPECT_EQ(hex(kMax), "0xffffffffffffffff");
}

TEST(JsonFormatTest, OneDocumentOnOneLineWithStableFieldsAndHexAddresses) {
  const std::string json = format_json(synthetic(Reason::kExit));
  ASSERT_FALSE(json.empty());
  EXPECT_EQ(json.back(), '\n');
  EXPECT_EQ(json.find('\n'), json.size() - 1);
  EXPECT_EQ(json.rfind("{\"uiommufd_dump\":1,\"pid\":42,\"reason\":\"exit\",\"sequence\":3,", 0), 0u);
  EXPECT_NE(
      json.find("\"start\":\"0x80000000\",\"last\":\"0xffffffffffffffff\",\"owner\":\"domain\",\"hwpt\":3"),
      std::string::npos);
  EXPECT_NE(json.find("\"state\":\"partly_pinned\""), std::string::npos);
  EXPECT_NE(
      json.find("\"pinned_runs\":[{\"start\":\"0x1000000\",\"last\":\"0x1003fff\",\"pages\":1,\"users\":1}"),
      std::string::npos);
  EXPECT_NE(json.find("\"leaks\":[{\"context\":1,\"objects\":3,"), std::string::npos);
  EXPECT_NE(json.find("\"line\":\"LEAK: context 1 still holds 3 objects"), std::string::npos);
  EXPECT_NE(format_json(synthetic(Reason::kSignal)).find("\"leaks\":[]"), std::string::npos);
}

TEST(JsonWriterTest, EscapesAndPutsCommasWhereTheyBelong) {
  JsonWriter j;
  j.begin_object();
  j.field("a\"b\\", "line\nbreak\x01");
  j.key("list");
  j.begin_array();
  j.number(1);
  j.boolean(false);
  j.null();
  j.begin_object();
  j.end_object();
  j.end_array();
  j.field_number("n", kMax);
  j.end_object();
  EXPECT_EQ(j.str(), R"({"a\"b\\":"line\nbreak\u0001","list":[1,false,null,{}],"n":18446744073709551615})");
}

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// The text between <g class="name"> and its </g> (groups of a row hold no nested group).
std::string group(const std::string& svg, const std::string& name) {
  const std::string open = "<g class=\"" + name + "\">";
  const std::size_t at = svg.find(open);
  if (at == std::string::npos) return {};
  return svg.substr(at, svg.find("</g>", at) - at);
}

TEST(SvgFormatTest, OneShapePerRangeInEachRowAndALegend) {
  const Dump d = synthetic(Reason::kSignal);
  const std::string svg = format_svg(d.contexts[0], d.contexts[0].ioases[0], 42, 3);
  EXPECT_EQ(
      svg.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"", 0),
      0u);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  EXPECT_EQ(count(svg, "<g "), count(svg, "</g>"));
  EXPECT_EQ(count(group(svg, "areas"), "<rect"), 2u);
  EXPECT_EQ(count(group(svg, "reserved"), "<rect"), 3u);
  EXPECT_EQ(count(group(svg, "pinned"), "<rect"), 2u);
  EXPECT_EQ(count(group(svg, "access"), "<rect"), 1u);
  // The domain row: area A filled whole, area B half filled and half not.
  EXPECT_EQ(count(group(svg, "domain"), "<rect"), 3u);
  EXPECT_NE(group(svg, "domain").find("not filled [0x2002000, 0x2003fff]"), std::string::npos);
  EXPECT_NE(svg.find("<title>area [0x1000000, 0x1003fff] 16K, rw, pinned, 4/4 pages pinned"),
            std::string::npos);
  EXPECT_NE(svg.find(">hwpt 3</text>"), std::string::npos);
  EXPECT_GE(count(group(svg, "legend"), "<rect"), 18u);
  EXPECT_NE(group(svg, "axis").find(">0x1000000</text>"), std::string::npos);
  EXPECT_NE(group(svg, "axis").find(">0xffffffffffffffff</text>"), std::string::npos);
}

TEST(SvgFormatTest, ShapesFollowTheIovaOrderAndNoneIsInvisible) {
  const Dump d = synthetic(Reason::kSignal);
  const std::string areas = group(format_svg(d.contexts[0], d.contexts[0].ioases[0], 42, 3), "areas");
  const std::regex rect(R"re(<rect x="([0-9.]+)" y="[0-9.]+" width="([0-9.]+)")re");
  std::vector<std::pair<double, double>> xs;
  for (auto it = std::sregex_iterator(areas.begin(), areas.end(), rect); it != std::sregex_iterator(); ++it)
    xs.push_back({std::stod((*it)[1]), std::stod((*it)[2])});
  ASSERT_EQ(xs.size(), 2u);
  EXPECT_LT(xs[0].first + xs[0].second, xs[1].first + 0.001);
  EXPECT_GE(xs[0].second, 1.0);
  EXPECT_GE(xs[1].second, 1.0);
}

TEST(SvgWriterTest, EscapesTextAndAttributesAndDropsCharactersXmlForbids) {
  EXPECT_EQ(SvgWriter::escape("a<b>&\"c'\x01\t"), "a&lt;b&gt;&amp;&quot;c&apos;?\t");
  SvgWriter w(10, 10);
  w.rect(0, 0, 5, 5, {.fill = "red\"x"}, "<title> & co");
  w.text(1, 2, "x<y", {.anchor = SvgWriter::Anchor::kMiddle});
  const std::string svg = w.finish();
  EXPECT_NE(svg.find("fill=\"red&quot;x\"><title>&lt;title&gt; &amp; co</title></rect>"), std::string::npos);
  EXPECT_NE(svg.find("text-anchor=\"middle\">x&lt;y</text>"), std::string::npos);
  EXPECT_EQ(SvgWriter::num(1.005), "1");
  EXPECT_EQ(SvgWriter::num(2.5), "2.5");
  EXPECT_EQ(SvgWriter::num(-0.001), "0");
}

TEST(IovaAxisTest, GapsAreCompressedAndEveryRangeGetsItsMinimumWidth) {
  // A page at 4 GiB and a range of 2^62 bytes: the page is visible, the gaps between are cut.
  const std::vector<Interval> ranges{{0x100000000, 0x100000fff}, {0x4000000000000000, 0x7fffffffffffffff}};
  const IovaAxis axis(ranges, 100, 1000);
  ASSERT_EQ(axis.segments().size(), 5u);  // gap, page, gap, range, gap
  EXPECT_TRUE(axis.segments()[0].gap);
  EXPECT_FALSE(axis.segments()[1].gap);
  EXPECT_TRUE(axis.segments()[2].gap);
  EXPECT_FALSE(axis.segments()[3].gap);
  EXPECT_TRUE(axis.segments()[4].gap);
  EXPECT_DOUBLE_EQ(axis.x(0), 100);
  EXPECT_DOUBLE_EQ(axis.x_after(kMax), 1100);
  const double page = axis.right(ranges[0]) - axis.left(ranges[0]);
  const double big = axis.right(ranges[1]) - axis.left(ranges[1]);
  const double gap = axis.segments()[0].x1 - axis.segments()[0].x0;
  // Widths as documented: a page kMinWidth, 2^62 bytes 50 doublings more, a gap kGapWidth, all scaled alike.
  EXPECT_NEAR(page / gap, IovaAxis::kMinWidth / IovaAxis::kGapWidth, 1e-6);
  EXPECT_NEAR(big / page, (IovaAxis::kMinWidth + 50 * IovaAxis::kPerDoubling) / IovaAxis::kMinWidth, 1e-6);
  // Linear inside a segment, increasing throughout.
  EXPECT_NEAR(axis.x(0x100000800), (axis.left(ranges[0]) + axis.right(ranges[0])) / 2, 1e-6);
  double prev = -1;
  for (std::uint64_t a : std::initializer_list<std::uint64_t>{0, 0xfffffff, 0x100000000, 0x100000fff,
                                                              0x4000000000000000, kMax}) {
    EXPECT_GT(axis.x(a), prev);
    prev = axis.x(a);
  }
}

TEST(IovaAxisTest, OverlappingRangesShareBoundariesAndNothingIsOneGap) {
  const IovaAxis empty({}, 0, 500);
  ASSERT_EQ(empty.segments().size(), 1u);
  EXPECT_TRUE(empty.segments()[0].gap);
  EXPECT_DOUBLE_EQ(empty.x_after(kMax), 500);
  const IovaAxis axis({{0x1000, 0x4fff}, {0x2000, 0x2fff}, {0, kMax}}, 0, 100);
  // [0, 0xfff] [0x1000, 0x1fff] [0x2000, 0x2fff] [0x3000, 0x4fff] [0x5000, max]
  ASSERT_EQ(axis.segments().size(), 5u);
  for (const IovaAxis::Segment& s : axis.segments()) EXPECT_FALSE(s.gap);
}

TEST(DumpSettingsTest, FileNamesAndSettings) {
  EXPECT_EQ(expand_file_name("/tmp/d-%p.txt", 12), "/tmp/d-12.txt");
  EXPECT_EQ(expand_file_name("%%p%", 3), "%3%");
  Dump d;
  d.pid = 9;
  d.sequence = 2;
  ContextSnapshot c;
  c.number = 4;
  IoasSnapshot io;
  io.id = 7;
  EXPECT_EQ(svg_file_name(d, c, io), "9-2-ctx4-ioas7.svg");
  setenv("UIOMMUFD_DUMP", "signal", 1);
  setenv("UIOMMUFD_DUMP_FORMAT", "json", 1);
  Options o = Options::from_env();
  EXPECT_TRUE(o.on_signal);
  EXPECT_FALSE(o.at_exit);
  EXPECT_EQ(o.format, Format::kJson);
  setenv("UIOMMUFD_DUMP", "bogus,exit", 1);
  o = Options::from_env();
  EXPECT_TRUE(o.at_exit && o.on_signal);
  unsetenv("UIOMMUFD_DUMP");
  unsetenv("UIOMMUFD_DUMP_FORMAT");
  EXPECT_FALSE(Options::from_env().enabled());
}

}  // namespace
}  // namespace uiommufd::dump
