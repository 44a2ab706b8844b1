// The real fds behind queue files (uapi/poll_fd.h) and the fd table's readiness (QueueFdReadiness): the
// poll results of each face, and that the readiness follows the fds that stand for the file (dups, closes)
// and is rebuilt per process across fork.
#include <memory>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fd_table.h"
#include "real_calls.h"

namespace uiommufd::runtime {
namespace {

class QueueFile final : public uapi::OpenFile {
 public:
  QueueFile() : OpenFile(Kind::kFaultQueue) {}
  long ioctl(unsigned long, std::uint64_t) override { return -ENOTTY; }
};

short revents(int fd, short events = POLLIN | POLLOUT | POLLRDNORM) {
  pollfd p{fd, events, 0};
  return poll(&p, 1, 0) < 0 ? -1 : p.revents;
}

TEST(PollFdTest, ReadWriteFaceIsWritableAndReadableOnlyWhenSignalled) {
  Result<int> fd = uapi::make_poll_fd(uapi::PollFace::kReadWrite);
  ASSERT_TRUE(fd.ok());
  EXPECT_EQ(fcntl(*fd, F_GETFL) & O_ACCMODE, O_RDWR);
  EXPECT_NE(fcntl(*fd, F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(revents(*fd), POLLOUT);
  uapi::set_poll_fd_readable(*fd, uapi::PollFace::kReadWrite, true);
  EXPECT_EQ(revents(*fd), POLLIN | POLLRDNORM | POLLOUT);
  uapi::set_poll_fd_readable(*fd, uapi::PollFace::kReadWrite, false);
  EXPECT_EQ(revents(*fd), POLLOUT);
  uapi::set_poll_fd_readable(*fd, uapi::PollFace::kReadWrite, false);  // drains nothing, never blocks
  close(*fd);
}

TEST(PollFdTest, ReadOnlyFaceIsNeverWritable) {
  Result<int> fd = uapi::make_poll_fd(uapi::PollFace::kReadOnly);
  ASSERT_TRUE(fd.ok());
  EXPECT_EQ(fcntl(*fd, F_GETFL) & O_ACCMODE, O_RDWR);
  EXPECT_EQ(revents(*fd), 0);
  uapi::set_poll_fd_readable(*fd, uapi::PollFace::kReadOnly, true);
  // With TFD_IOC_SET_TICKS at once; without it, a timer interrupt later.
  pollfd p{*fd, POLLIN | POLLOUT, 0};
  ASSERT_EQ(poll(&p, 1, 1000), 1);
  EXPECT_EQ(p.revents, POLLIN);
  uapi::set_poll_fd_readable(*fd, uapi::PollFace::kReadOnly, false);
  EXPECT_EQ(revents(*fd), 0);
  close(*fd);
}

TEST(QueueFdReadinessTest, SignalsThroughADupAfterTheFirstFdCloses) {
  FdTable& t = FdTable::get();
  std::shared_ptr<QueueReadiness> r;
  Result<int> fd = t.install_queue(std::make_shared<QueueFile>(), uapi::PollFace::kReadWrite, &r);
  ASSERT_TRUE(fd.ok());
  const int dup_fd = real::dup(*fd);
  ASSERT_GE(dup_fd, 0);
  t.share(*fd, dup_fd);
  t.set(*fd, nullptr);
  real::close(*fd);
  r->set_readable(true);
  EXPECT_EQ(revents(dup_fd), POLLIN | POLLRDNORM | POLLOUT);
  r->set_readable(false);
  EXPECT_EQ(revents(dup_fd), POLLOUT);
  t.set(dup_fd, nullptr);
  real::close(dup_fd);
  r->set_readable(true);  // no fd left: nothing to signal, nothing written anywhere
}

TEST(QueueFdReadinessTest, RepeatedStateIsSignalledOnce) {
  FdTable& t = FdTable::get();
  std::shared_ptr<QueueReadiness> r;
  Result<int> fd = t.install_queue(std::make_shared<QueueFile>(), uapi::PollFace::kReadWrite, &r);
  ASSERT_TRUE(fd.ok());
  r->set_readable(true);
  r->set_readable(true);
  r->set_readable(false);
  EXPECT_EQ(revents(*fd), POLLOUT);
  t.uninstall(*fd);
}

TEST(QueueFdReadinessTest, AForkedChildHasReadinessOfItsOwn) {
  FdTable& t = FdTable::get();
  std::shared_ptr<QueueReadiness> r;
  Result<int> fd = t.install_queue(std::make_shared<QueueFile>(), uapi::PollFace::kReadWrite, &r);
  ASSERT_TRUE(fd.ok());
  r->set_readable(true);
  const pid_t pid = fork();
  if (pid == 0) {
    // The child's fd starts in the parent's state, then follows the child's own signals only.
    int bad = revents(*fd) != (POLLIN | POLLRDNORM | POLLOUT);
    r->set_readable(false);
    bad |= (revents(*fd) != POLLOUT) << 1;
    _exit(bad);
  }
  int status = -1;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(revents(*fd), POLLIN | POLLRDNORM | POLLOUT);  // the child's drain did not reach the parent
  t.uninstall(*fd);
}

}  // namespace
}  // namespace uiommufd::runtime
