// dump_sample FORMAT [PATH]: the dump of the sample context (testing/sample_context.h), made at exit (so its
// leaks show), as FORMAT "text" or "json" on standard output, or as "svg" files into the directory PATH.
// CTest checks the JSON and the SVG with Python's parsers (check_dump.py); people can look at them.
#include <cstdio>
#include <cstring>
#include <string>

#include <unistd.h>

#include "testing/sample_context.h"

#include "uiommufd/dump/dumper.h"
#include "uiommufd/dump/format.h"

int main(int argc, char** argv) {
  using namespace uiommufd;
  if (argc < 2 || (std::strcmp(argv[1], "svg") == 0 && argc < 3)) {
    std::fprintf(stderr, "usage: dump_sample text|json|svg [DIR]\n");
    return 2;
  }
  dump::testing::SampleContext sample;
  if (Status st = sample.build(); !st.ok()) {
    std::fprintf(stderr, "dump_sample: building the sample: %s\n", st.to_string().c_str());
    return 1;
  }
  Result<dump::ContextSnapshot> ctx = dump::snapshot_context(sample.ctx(), 1);
  if (!ctx.ok()) {
    std::fprintf(stderr, "dump_sample: snapshot: %s\n", ctx.status().to_string().c_str());
    return 1;
  }
  dump::Dump d;
  d.pid = getpid();
  d.reason = dump::Reason::kExit;
  d.sequence = 1;
  d.contexts.push_back(std::move(*ctx));
  d.process_pinned_pages = Pages::total_pinned_pages();
  dump::Options o;
  o.file = "/dev/stdout";
  o.format = std::strcmp(argv[1], "json") == 0 ? dump::Format::kJson : dump::Format::kText;
  if (std::strcmp(argv[1], "svg") == 0) {
    o.file = "/dev/null";  // the text goes nowhere
    o.svg_dir = argv[2];
  }
  const Status st = dump::write(d, o);
  if (!st.ok()) {
    std::fprintf(stderr, "dump_sample: %s\n", st.to_string().c_str());
    return 1;
  }
  return 0;
}
