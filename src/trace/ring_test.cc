// The trace ring (docs/trace.md#ring): order, every record exactly once under many producer threads and
// processes, a producer killed at any point never stops the consumer for good, and a full ring with no
// consumer gives the record back.
#include "uiommufd/trace/ring.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace uiommufd::trace {
namespace {

std::vector<std::string> drain_all(Ring& r, std::uint64_t stuck_ns = 1000000000) {
  std::vector<std::string> got;
  r.drain(
      [](void* ctx, std::string_view rec) { static_cast<std::vector<std::string>*>(ctx)->emplace_back(rec); },
      &got, stuck_ns);
  return got;
}

TEST(TraceRingTest, RecordsComeOutInTheOrderTheyWentIn) {
  Result<Ring> r = Ring::create();
  ASSERT_TRUE(r.ok());
  for (int i = 0; i < 3 * static_cast<int>(Ring::kSlots) / 2; ++i) {
    ASSERT_EQ(r->put("record " + std::to_string(i)), Ring::Put::kOk);
    if (i % 1000 == 999) {
      const std::vector<std::string> got = drain_all(*r);
      ASSERT_EQ(got.size(), 1000u);
      EXPECT_EQ(got.front(), "record " + std::to_string(i - 999));
      EXPECT_EQ(got.back(), "record " + std::to_string(i));
    }
  }
  EXPECT_EQ(r->put(std::string(Ring::kMaxRecord + 1, 'x')), Ring::Put::kTooLong);
  EXPECT_EQ(r->put(std::string(Ring::kMaxRecord, 'x')), Ring::Put::kOk);
}

// Producers on several threads while the consumer drains: each record arrives once, each thread's in order.
TEST(TraceRingTest, ManyThreadsEveryRecordOnceAndInTheirOrder) {
  Result<Ring> r = Ring::create();
  ASSERT_TRUE(r.ok());
  constexpr int kThreads = 4, kEach = 20000;
  std::atomic<int> done{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t)
    producers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        char buf[32];
        const int n = std::snprintf(buf, sizeof buf, "%d %d", t, i);
        while (r->put({buf, static_cast<std::size_t>(n)}) != Ring::Put::kOk) {
        }
      }
      done.fetch_add(1);
    });
  std::vector<int> next(kThreads, 0);
  std::size_t total = 0;
  bool ordered = true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while ((done.load() < kThreads || total < std::size_t{kThreads} * kEach) &&
         std::chrono::steady_clock::now() < deadline) {
    for (const std::string& rec : drain_all(*r)) {
      int t = -1, i = -1;
      std::sscanf(rec.c_str(), "%d %d", &t, &i);
      ordered = ordered && t >= 0 && t < kThreads && i == next[t];
      if (t >= 0 && t < kThreads) ++next[t];
      ++total;
    }
  }
  for (std::thread& p : producers) p.join();
  for (const std::string& rec : drain_all(*r)) (void)rec, ++total;
  EXPECT_TRUE(ordered);
  EXPECT_EQ(total, std::size_t{kThreads} * kEach);
}

// Forked producers share the ring through the mapping; one is killed while putting. The consumer gets
// every record of the others, and gets past the slot the killed one may have left half-written.
TEST(TraceRingTest, AProducerKilledMidRecordDoesNotStopTheConsumer) {
  Result<Ring> r = Ring::create();
  ASSERT_TRUE(r.ok());
  const pid_t victim = fork();
  if (victim == 0) {
    for (;;) (void)r->put("victim");
  }
  usleep(20000);
  kill(victim, SIGKILL);
  waitpid(victim, nullptr, 0);
  // A fresh producer after it: its records must come out.
  std::size_t mine = 0;
  const pid_t other = fork();
  if (other == 0) {
    for (int i = 0; i < 1000; ++i)
      while (r->put("other") != Ring::Put::kOk) {
      }
    _exit(0);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int status = 0;
  bool other_done = false;
  while (mine < 1000 && std::chrono::steady_clock::now() < deadline) {
    for (const std::string& rec : drain_all(*r, /*stuck_ns=*/10000000)) mine += rec == "other";
    if (!other_done && waitpid(other, &status, WNOHANG) == other) other_done = true;
  }
  if (!other_done) waitpid(other, &status, 0);
  EXPECT_EQ(mine, 1000u);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(TraceRingTest, AFullRingWithNoConsumerGivesTheRecordBack) {
  Result<Ring> r = Ring::create();
  ASSERT_TRUE(r.ok());
  for (std::size_t i = 0; i < Ring::kSlots; ++i) ASSERT_EQ(r->put("x"), Ring::Put::kOk);
  EXPECT_EQ(r->put("one too many"), Ring::Put::kNoSlot);  // after waiting a second for the consumer
}

TEST(TraceRingTest, AttachChecksTheFile) {
  Result<Ring> r = Ring::create();
  ASSERT_TRUE(r.ok());
  Result<Ring> again = Ring::attach(dup(r->fd()));
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->put("through the other mapping"), Ring::Put::kOk);
  EXPECT_EQ(drain_all(*r), std::vector<std::string>{"through the other mapping"});
  const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(Ring::attach(devnull).error(), EINVAL);
}

}  // namespace
}  // namespace uiommufd::trace
