#include "uiommufd/base/log.h"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace uiommufd {
namespace {

// Captures log lines and restores the previous level and the default sink afterwards.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_level_ = log_level();
    set_log_sink([this](LogLevel level, std::string_view message) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.emplace_back(level, std::string(message));
    });
  }
  void TearDown() override {
    set_log_sink(nullptr);
    set_log_level(saved_level_);
  }
  std::vector<std::pair<LogLevel, std::string>> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

  LogLevel saved_level_ = LogLevel::kWarn;
  std::mutex mu_;
  std::vector<std::pair<LogLevel, std::string>> lines_;
};

TEST_F(LogTest, FormatsPrintfStyle) {
  set_log_level(LogLevel::kInfo);
  UIOMMUFD_LOG(LogLevel::kInfo, "pinned %d pages at %#llx", 3, 0x1000ull);
  auto got = lines();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, LogLevel::kInfo);
  EXPECT_EQ(got[0].second, "pinned 3 pages at 0x1000");
}

TEST_F(LogTest, MessagesAboveThresholdAreDropped) {
  set_log_level(LogLevel::kWarn);
  UIOMMUFD_LOG(LogLevel::kError, "e");
  UIOMMUFD_LOG(LogLevel::kWarn, "w");
  UIOMMUFD_LOG(LogLevel::kInfo, "i");
  UIOMMUFD_LOG(LogLevel::kDebug, "d");
  auto got = lines();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].second, "e");
  EXPECT_EQ(got[1].second, "w");
}

TEST_F(LogTest, DisabledStatementDoesNotEvaluateArguments) {
  set_log_level(LogLevel::kError);
  int evaluated = 0;
  UIOMMUFD_LOG(LogLevel::kDebug, "%d", ++evaluated);
  EXPECT_EQ(evaluated, 0);
  EXPECT_TRUE(lines().empty());
}

TEST_F(LogTest, TrailingNewlineIsStripped) {
  set_log_level(LogLevel::kWarn);
  UIOMMUFD_LOG(LogLevel::kWarn, "line\n");
  ASSERT_EQ(lines().size(), 1u);
  EXPECT_EQ(lines()[0].second, "line");
}

TEST_F(LogTest, LongMessagesAreNotTruncated) {
  set_log_level(LogLevel::kWarn);
  std::string big(3000, 'x');
  UIOMMUFD_LOG(LogLevel::kWarn, "%s!", big.c_str());
  ASSERT_EQ(lines().size(), 1u);
  EXPECT_EQ(lines()[0].second, big + "!");
}

TEST_F(LogTest, ConcurrentLoggingDeliversEveryLine) {
  set_log_level(LogLevel::kInfo);
  constexpr int kThreads = 4, kPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kPerThread; ++i) UIOMMUFD_LOG(LogLevel::kInfo, "t%d i%d", t, i);
    });
  }
  // Changing the level and the sink concurrently must be safe too.
  set_log_level(LogLevel::kDebug);
  for (auto& th : threads) th.join();
  EXPECT_EQ(lines().size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST(LogDefaultSinkTest, WritesOnePrefixedLineToStderr) {
  LogLevel saved = log_level();
  set_log_sink(nullptr);
  set_log_level(LogLevel::kWarn);
  ::testing::internal::CaptureStderr();
  UIOMMUFD_LOG(LogLevel::kWarn, "hello %s", "world");
  std::string err = ::testing::internal::GetCapturedStderr();
  set_log_level(saved);
  EXPECT_EQ(err, "uiommufd: warn: hello world\n");
}

TEST(LogLevelTest, ParsesEnvironmentSpellings) {
  EXPECT_EQ(parse_log_level("error"), LogLevel::kError);
  EXPECT_EQ(parse_log_level("warn"), LogLevel::kWarn);
  EXPECT_EQ(parse_log_level("info"), LogLevel::kInfo);
  EXPECT_EQ(parse_log_level("debug"), LogLevel::kDebug);
  EXPECT_EQ(parse_log_level("verbose"), std::nullopt);
  EXPECT_EQ(parse_log_level(""), std::nullopt);
}

// The threshold is read from UIOMMUFD_LOG once per process, so each case runs in a forked child with
// the threshold put back to "unset".
int level_from_environment(const char* value) {
  pid_t pid = fork();
  if (pid == 0) {
    if (value) {
      setenv("UIOMMUFD_LOG", value, 1);
    } else {
      unsetenv("UIOMMUFD_LOG");
    }
    detail::g_log_threshold.store(detail::kLogLevelUnset);
    _exit(static_cast<int>(log_level()));
  }
  int wstatus = 0;
  if (waitpid(pid, &wstatus, 0) != pid || !WIFEXITED(wstatus)) return -1;
  return WEXITSTATUS(wstatus);
}

TEST(LogLevelTest, EnvironmentSetsInitialLevel) {
  EXPECT_EQ(level_from_environment("debug"), static_cast<int>(LogLevel::kDebug));
  EXPECT_EQ(level_from_environment("error"), static_cast<int>(LogLevel::kError));
}

TEST(LogLevelTest, DefaultsToWarnWhenUnsetOrUnrecognised) {
  EXPECT_EQ(level_from_environment(nullptr), static_cast<int>(LogLevel::kWarn));
  EXPECT_EQ(level_from_environment("loud"), static_cast<int>(LogLevel::kWarn));
}

}  // namespace
}  // namespace uiommufd
