// A forked child process for tests that reach another process's memory (Mm::for_process): it runs a set-up
// function, then waits until the test lets it go (finish(), or the destructor) and exits 0.
#pragma once

#include <functional>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

namespace uiommufd::mm_testing {

// A forked child that runs `setup` and then waits until told to go (or until the parent dies).
class Child {
 public:
  explicit Child(const std::function<void()>& setup) {
    int ready[2], go[2];
    EXPECT_EQ(pipe2(ready, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(go, O_CLOEXEC), 0);
    pid_ = fork();
    if (pid_ == 0) {
      ::close(ready[0]);
      ::close(go[1]);
      setup();
      char c = 1;
      if (::write(ready[1], &c, 1) != 1) _exit(2);
      (void)!::read(go[0], &c, 1);
      _exit(0);
    }
    ::close(ready[1]);
    ::close(go[0]);
    go_ = go[1];
    char c = 0;
    EXPECT_EQ(::read(ready[0], &c, 1), 1);
    ::close(ready[0]);
  }
  ~Child() { finish(); }
  pid_t pid() const { return pid_; }
  // Lets the child exit and reaps it.
  void finish() {
    if (go_ < 0) return;
    ::close(go_);
    go_ = -1;
    int status = 0;
    EXPECT_EQ(waitpid(pid_, &status, 0), pid_);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }

 private:
  pid_t pid_ = -1;
  int go_ = -1;
};

}  // namespace uiommufd::mm_testing
