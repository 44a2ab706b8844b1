#include "testing/child_process.h"

#include <cstring>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace uiommufd::lockdep::selftest {

ChildResult run_child(const std::vector<std::string>& argv, const std::vector<std::string>& env, Stderr err) {
  ChildResult result;
  std::vector<std::string> arg_strings = argv, env_strings = env;
  std::vector<char*> args, envp;
  for (auto& s : arg_strings) args.push_back(s.data());
  args.push_back(nullptr);
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    result.spawn_error = errno;
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  if (err == Stderr::kDiscarded)
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  if (err == Stderr::kCaptured) posix_spawn_file_actions_adddup2(&actions, out[1], STDERR_FILENO);
  pid_t pid;
  result.spawn_error = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (result.spawn_error != 0) {
    close(out[0]);
    return result;
  }
  result.pid = pid;
  char buf[4096];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) result.out.append(buf, static_cast<std::size_t>(n));
  close(out[0]);
  while (waitpid(pid, &result.status, 0) < 0 && errno == EINTR) {
  }
  return result;
}

std::vector<std::string> environment_with(const std::vector<std::string>& set,
                                          const std::vector<std::string>& unset) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    bool keep = std::strncmp(*e, "GTEST_", 6) != 0;
    for (const std::string& name : unset)
      keep = keep && !(std::strncmp(*e, name.c_str(), name.size()) == 0 && (*e)[name.size()] == '=');
    if (keep) env.emplace_back(*e);
  }
  env.insert(env.end(), set.begin(), set.end());
  return env;
}

ChildResult run_probe(const std::string& probe, const std::vector<std::string>& env, Stderr err) {
  return run_child({"/proc/self/exe", "--gtest_filter=" + probe, "--gtest_also_run_disabled_tests"}, env,
                   err);
}

}  // namespace uiommufd::lockdep::selftest
