// The fd table's lock-free file lookup (acquire_file): what it finds, and that a file stays alive while a
// reference taken before a close is held. Entries are made with set() on fd numbers no real fd uses, so
// nothing here touches the kernel's table.
#include "fd_table.h"

#include <atomic>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <sys/single_threaded.h>

namespace uiommufd::runtime {
namespace {

class FakeFile final : public uapi::OpenFile {
 public:
  explicit FakeFile(std::atomic<int>* destroyed) : OpenFile(Kind::kIommufd), destroyed_(destroyed) {}
  ~FakeFile() override {
    alive_.store(false);
    destroyed_->fetch_add(1);
  }
  long ioctl(unsigned long, std::uint64_t) override { return alive_.load() ? 0 : -1; }

 private:
  std::atomic<int>* destroyed_;
  std::atomic<bool> alive_{true};
};

std::shared_ptr<Node> file_node(std::shared_ptr<uapi::OpenFile> file) {
  auto node = std::make_shared<Node>();
  node->kind = Node::Kind::kFile;
  node->file = std::move(file);
  return node;
}

// High fd numbers below the bitmap limit, far from anything the test process opens.
constexpr int kFd = 900001;
constexpr int kFd2 = 900002;

TEST(FdTableTest, AcquireFileFindsTheFileAnFdStandsFor) {
  std::atomic<int> destroyed{0};
  auto file = std::make_shared<FakeFile>(&destroyed);
  FdTable& t = FdTable::get();
  t.set(kFd, file_node(file));
  {
    FileRef ref = t.acquire_file(kFd);
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref.get(), file.get());
    EXPECT_EQ(t.lookup(kFd), file);
  }
  t.set(kFd, nullptr);
  EXPECT_FALSE(t.acquire_file(kFd));
  EXPECT_EQ(t.lookup(kFd), nullptr);
}

TEST(FdTableTest, FileLivesUntilTheLastReferenceTakenBeforeCloseIsDropped) {
  std::atomic<int> destroyed{0};
  FdTable& t = FdTable::get();
  t.set(kFd, file_node(std::make_shared<FakeFile>(&destroyed)));
  FileRef* ref = new FileRef(t.acquire_file(kFd));
  ASSERT_TRUE(*ref);
  t.set(kFd, nullptr);  // close: drops the node and the table's reference to the cell
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_EQ((*ref)->ioctl(0, 0), 0);
  delete ref;  // the last reference: the file goes, as at the kernel's last fput
  EXPECT_EQ(destroyed.load(), 1);
}

// In a single-threaded process the reference is borrowed; the one thing that can close the fd meanwhile
// is a signal handler on the same thread, played here by the test itself.
TEST(FdTableTest, BorrowedReferenceOutlivesACloseFromTheSameThread) {
  if (!__libc_single_threaded) GTEST_SKIP() << "another test of this process started a thread";
  std::atomic<int> destroyed{0};
  FdTable& t = FdTable::get();
  t.set(kFd, file_node(std::make_shared<FakeFile>(&destroyed)));
  {
    FileRef ref = t.acquire_file(kFd);
    ASSERT_TRUE(ref);
    EXPECT_TRUE(ref.borrowed());
    t.set(kFd, nullptr);
    EXPECT_EQ(destroyed.load(), 0);
    EXPECT_EQ(ref->ioctl(0, 0), 0);
  }
  EXPECT_EQ(destroyed.load(), 1);
  // The cell went back to the free list: the next file gets a working reference.
  auto next = std::make_shared<FakeFile>(&destroyed);
  t.set(kFd2, file_node(next));
  EXPECT_EQ(t.acquire_file(kFd2).get(), next.get());
  t.set(kFd2, nullptr);
}

TEST(FdTableTest, NestedLookupWhileBorrowingIsCountedAndTheFileGoesOnce) {
  if (!__libc_single_threaded) GTEST_SKIP() << "another test of this process started a thread";
  std::atomic<int> destroyed{0};
  FdTable& t = FdTable::get();
  t.set(kFd, file_node(std::make_shared<FakeFile>(&destroyed)));
  {
    FileRef outer = t.acquire_file(kFd);
    ASSERT_TRUE(outer.borrowed());
    {
      // As a signal handler's ioctl and close would, in the middle of the outer call.
      FileRef inner = t.acquire_file(kFd);
      ASSERT_TRUE(inner);
      EXPECT_FALSE(inner.borrowed());
      t.set(kFd, nullptr);
    }
    EXPECT_EQ(destroyed.load(), 0);
    EXPECT_EQ(outer->ioctl(0, 0), 0);
  }
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(FdTableTest, ReferencesAreCountedOnceTheProcessHasThreads) {
  std::thread([] {}).join();
  ASSERT_FALSE(__libc_single_threaded);
  std::atomic<int> destroyed{0};
  FdTable& t = FdTable::get();
  t.set(kFd, file_node(std::make_shared<FakeFile>(&destroyed)));
  {
    FileRef ref = t.acquire_file(kFd);
    EXPECT_FALSE(ref.borrowed());
    t.set(kFd, nullptr);
    EXPECT_EQ(destroyed.load(), 0);
  }
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(FdTableTest, DupedFdsShareOneFile) {
  std::atomic<int> destroyed{0};
  auto file = std::make_shared<FakeFile>(&destroyed);
  FdTable& t = FdTable::get();
  t.set(kFd, file_node(file));
  t.share(kFd, kFd2);
  file.reset();
  t.set(kFd, nullptr);
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_TRUE(t.acquire_file(kFd2));
  t.set(kFd2, nullptr);
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(FdTableTest, NodeThatIsNotAFileHasNoFile) {
  FdTable& t = FdTable::get();
  auto node = std::make_shared<Node>();
  node->kind = Node::Kind::kFailNth;
  t.set(kFd, node);
  EXPECT_TRUE(FdTable::maybe_ours(kFd));
  EXPECT_FALSE(t.acquire_file(kFd));
  EXPECT_EQ(t.lookup(kFd), nullptr);
  t.set(kFd, nullptr);
}

TEST(FdTableTest, FdAboveTheBitmapLimitIsFoundThroughTheMap) {
  std::atomic<int> destroyed{0};
  auto file = std::make_shared<FakeFile>(&destroyed);
  const int fd = static_cast<int>(FdTable::kBitmapFds) + 7;
  FdTable& t = FdTable::get();
  t.set(fd, file_node(file));
  {
    FileRef ref = t.acquire_file(fd);
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref.get(), file.get());
  }
  t.set(fd, nullptr);
  EXPECT_FALSE(t.acquire_file(fd));
}

TEST(FdTableTest, TakeRangeDropsTheFilesOfItsFds) {
  std::atomic<int> destroyed{0};
  FdTable& t = FdTable::get();
  t.set(kFd, file_node(std::make_shared<FakeFile>(&destroyed)));
  t.set(kFd2, file_node(std::make_shared<FakeFile>(&destroyed)));
  EXPECT_EQ(t.take_range(kFd, kFd2).size(), 2u);  // the nodes, dropped here
  EXPECT_EQ(destroyed.load(), 2);
  EXPECT_FALSE(t.acquire_file(kFd));
  EXPECT_FALSE(t.acquire_file(kFd2));
}

// A cell recycled for another fd must not be found through the fd it stood for before.
TEST(FdTableTest, RecycledCellIsNotFoundThroughItsOldFd) {
  std::atomic<int> destroyed{0};
  FdTable& t = FdTable::get();
  t.set(kFd, file_node(std::make_shared<FakeFile>(&destroyed)));
  t.set(kFd, nullptr);
  auto other = std::make_shared<FakeFile>(&destroyed);
  t.set(kFd2, file_node(other));
  EXPECT_FALSE(t.acquire_file(kFd));
  EXPECT_EQ(t.acquire_file(kFd2).get(), other.get());
  t.set(kFd2, nullptr);
}

// Closes and reopens race with lookups on another thread: a lookup finds a live file or none, never a
// destroyed one, and every file is destroyed exactly once.
TEST(FdTableTest, LookupRacingCloseNeverSeesADestroyedFile) {
  std::atomic<int> destroyed{0};
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0};
  FdTable& t = FdTable::get();
  std::thread reader([&] {
    while (!stop.load()) {
      for (int fd : {kFd, kFd2}) {
        FileRef ref = t.acquire_file(fd);
        if (ref && ref->ioctl(0, 0) != 0) bad.fetch_add(1);
      }
    }
  });
  constexpr int kRounds = 20000;
  for (int i = 0; i < kRounds; ++i) {
    t.set(kFd, file_node(std::make_shared<FakeFile>(&destroyed)));
    t.share(kFd, kFd2);
    t.set(kFd, nullptr);
    t.set(kFd2, nullptr);
  }
  stop.store(true);
  reader.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(destroyed.load(), kRounds);
}

}  // namespace
}  // namespace uiommufd::runtime
