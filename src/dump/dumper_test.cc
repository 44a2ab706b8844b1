// Whole-process dumps: the open files' contexts found in order (uapi::IommufdFile::live_files()), the
// document appended to its file, one SVG per IOAS, the dump numbers, and the helper thread.
#include "uiommufd/dump/dumper.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uiommufd/objects/context.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::dump {
namespace {

// No fd is installed by these tests; the host only has to exist.
class NoFdHost final : public uapi::FdHost {
 public:
  Result<int> install(std::shared_ptr<uapi::OpenFile>) override { return Status::error(ENOSYS); }
  Result<int> install_with_flags(std::shared_ptr<uapi::OpenFile>, int) override {
    return Status::error(ENOSYS);
  }
  Result<int> install_queue(std::shared_ptr<uapi::OpenFile>, uapi::PollFace,
                            std::shared_ptr<QueueReadiness>*) override {
    return Status::error(ENOSYS);
  }
  std::shared_ptr<uapi::OpenFile> lookup(int) override { return nullptr; }
  void uninstall(int) override {}
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class DumperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/uiommufd-dumper-test.XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    dir_ = templ;
  }
  void TearDown() override { ASSERT_EQ(std::system(("rm -rf '" + dir_ + "'").c_str()), 0); }

  std::shared_ptr<uapi::IommufdFile> open_file() {
    Result<std::shared_ptr<uapi::IommufdFile>> f = uapi::IommufdFile::open(host_, false);
    EXPECT_TRUE(f.ok());
    return f.ok() ? *f : nullptr;
  }

  NoFdHost host_;
  std::string dir_;
};

TEST_F(DumperTest, CollectFindsEveryOpenContextInTheOrderOfOpening) {
  std::shared_ptr<uapi::IommufdFile> a = open_file(), b = open_file(), c = open_file();
  ASSERT_TRUE(a && b && c);
  EXPECT_LT(a->serial(), b->serial());
  EXPECT_LT(b->serial(), c->serial());
  ASSERT_TRUE(Ioas::create(b->context()).ok());
  b.reset();  // its last reference: gone from the list
  Result<Dump> d = collect(Reason::kRequest, 5);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->pid, getpid());
  EXPECT_EQ(d->sequence, 5u);
  // Other tests' files may be open too; these two come in order and b is not among them.
  std::vector<std::uint64_t> numbers;
  for (const ContextSnapshot& ctx : d->contexts) numbers.push_back(ctx.number);
  auto pos = [&](std::uint64_t n) { return std::find(numbers.begin(), numbers.end(), n) - numbers.begin(); };
  EXPECT_LT(pos(a->serial()), pos(c->serial()));
  EXPECT_EQ(pos(c->serial()) < static_cast<long>(numbers.size()), true);
  EXPECT_EQ(pos(a->serial() + 1), static_cast<long>(numbers.size()));
}

// Files opened and closed while dumps collect them: a file on its way out is skipped, never read freed,
// and a dump's reference may be a context's last.
TEST_F(DumperTest, CollectRacesOpensAndClosesOfFiles) {
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load()) {
      std::shared_ptr<uapi::IommufdFile> f = open_file();
      if (f) (void)Ioas::create(f->context());
    }
  });
  int dumps = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  while (std::chrono::steady_clock::now() < until) {
    Result<Dump> d = collect(Reason::kRequest, 1);
    ASSERT_TRUE(d.ok());
    for (const ContextSnapshot& ctx : d->contexts) EXPECT_LE(ctx.objects.size(), 1u);
    ++dumps;
  }
  stop.store(true);
  churn.join();
  EXPECT_GT(dumps, 10);
}

TEST_F(DumperTest, WriteAppendsTheDocumentAndDrawsEveryIoas) {
  std::shared_ptr<uapi::IommufdFile> f = open_file();
  ASSERT_TRUE(f);
  ASSERT_TRUE(Ioas::create(f->context()).ok());
  ASSERT_TRUE(Ioas::create(f->context()).ok());
  Result<Dump> d = collect(Reason::kSignal, 1);
  ASSERT_TRUE(d.ok());
  Options o;
  o.format = Format::kJson;
  o.file = dir_ + "/dump-%p.json";
  o.svg_dir = dir_ + "/svg";
  ASSERT_TRUE(write(*d, o).ok());
  ASSERT_TRUE(write(*d, o).ok());
  const std::string json = read_file(dir_ + "/dump-" + std::to_string(getpid()) + ".json");
  // Two documents, one per line, each with this file's context.
  EXPECT_EQ(std::count(json.begin(), json.end(), '\n'), 2);
  EXPECT_NE(json.find("{\"context\":" + std::to_string(f->serial()) + ",\"account_mode\""),
            std::string::npos);
  for (const ContextSnapshot& ctx : d->contexts) {
    if (ctx.number != f->serial()) continue;
    ASSERT_EQ(ctx.ioases.size(), 2u);
    for (const IoasSnapshot& io : ctx.ioases) {
      const std::string svg = read_file(o.svg_dir + "/" + svg_file_name(*d, ctx, io));
      EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
      EXPECT_NE(svg.find("IOAS " + std::to_string(io.id)), std::string::npos);
    }
  }
  o.file = dir_ + "/no-such-dir/x";
  EXPECT_EQ(write(*d, o).error(), ENOENT);
}

TEST_F(DumperTest, DumpsNumberUpAndTheHelperThreadDumpsOnRequest) {
  std::shared_ptr<uapi::IommufdFile> f = open_file();
  ASSERT_TRUE(f);
  Options o;
  o.on_signal = true;
  o.file = dir_ + "/numbered.txt";
  configure(o);
  ASSERT_TRUE(dump_now(Reason::kRequest).ok());
  ASSERT_TRUE(DumpThread::start([](Reason r) { (void)dump_now(r); }).ok());
  EXPECT_TRUE(DumpThread::running());
  DumpThread::request();
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string text;
  while (std::chrono::steady_clock::now() < give_up) {
    text = read_file(o.file);
    if (text.find(", signal)") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const std::size_t first = text.find("uiommufd dump ");
  const std::size_t second = text.find("uiommufd dump ", first + 1);
  ASSERT_NE(second, std::string::npos) << text;
  const std::uint64_t n1 = std::stoull(text.substr(first + 14));
  const std::uint64_t n2 = std::stoull(text.substr(second + 14));
  EXPECT_EQ(n2, n1 + 1);
  EXPECT_NE(text.find(", signal)"), std::string::npos);
  // At exit: nothing unless asked for, and once only.
  dump_at_exit();
  EXPECT_EQ(read_file(o.file), text);
  o.at_exit = true;
  configure(o);
  dump_at_exit();
  dump_at_exit();
  const std::string after = read_file(o.file);
  std::size_t exits = 0;
  for (std::size_t at = after.find(", exit)"); at != std::string::npos; at = after.find(", exit)", at + 1))
    ++exits;
  EXPECT_EQ(exits, 1u);
  configure(Options{});
}

}  // namespace
}  // namespace uiommufd::dump
