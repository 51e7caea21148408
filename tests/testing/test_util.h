// Helpers shared by Locus's integration tests: short temp dirs (Unix socket
// paths are limited to 107 bytes), stderr capture that can wait for a line
// logged by another thread, and a test server in a child process.
//
// Example:
//   locus::testing::TempDir dir;
//   locus::testing::ChildServer server(LOCUS_TEST_SERVER_PATH,
//                                      {"tcp://127.0.0.1:0", "unix:" + dir.path() + "/s.sock"});
//   auto channel = locus::Connect(server.addresses()[0]);
#ifndef LOCUS_TESTS_TESTING_TEST_UTIL_H_
#define LOCUS_TESTS_TESTING_TEST_UTIL_H_

#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace locus::testing {

// Tests use deadlines only as watchdogs against hangs.
inline constexpr absl::Duration kWatchdog = absl::Seconds(60);

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/locus-XXXXXX";
    path_ = mkdtemp(pattern);
  }
  ~TempDir() {
    if (std::system(absl::StrCat("rm -rf ", path_).c_str()) != 0) {
      // Best effort: a leftover temp dir is harmless.
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Sends this process's stderr to a file while alive.
class StderrCapture {
 public:
  StderrCapture() {
    char path[] = "/tmp/locus-stderr-XXXXXX";
    file_ = mkstemp(path);
    unlink(path);
    std::fflush(stderr);
    saved_ = dup(STDERR_FILENO);
    dup2(file_, STDERR_FILENO);
  }
  ~StderrCapture() {
    std::fflush(stderr);
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    close(file_);
  }
  std::string Contents() const {
    std::string out;
    char buffer[4096];
    ssize_t n;
    for (off_t offset = 0; (n = pread(file_, buffer, sizeof(buffer), offset)) > 0; offset += n) {
      out.append(buffer, static_cast<size_t>(n));
    }
    return out;
  }
  // Waits (bounded by the watchdog) until `text` has been logged.
  bool WaitFor(const std::string& text) const {
    absl::Time until = absl::Now() + kWatchdog;
    while (Contents().find(text) == std::string::npos) {
      if (absl::Now() > until) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }
  size_t Count(const std::string& text) const {
    std::string all = Contents();
    size_t count = 0;
    for (size_t pos = all.find(text); pos != std::string::npos; pos = all.find(text, pos + 1)) ++count;
    return count;
  }

 private:
  int file_;
  int saved_;
};

// Runs tests/conformance/test_server_main.cc (locus_test_server) with the
// given listening addresses and extra environment ("NAME=value"); killed
// (SIGKILL) and reaped on destruction.
class ChildServer {
 public:
  ChildServer(const std::string& binary, const std::vector<std::string>& listen,
              const std::vector<std::string>& extra_env = {}) {
    int out[2];
    if (pipe(out) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::vector<std::string> args = {binary};
    args.insert(args.end(), listen.begin(), listen.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings = extra_env;
    for (char** e = environ; *e != nullptr; ++e) env_strings.push_back(*e);
    std::vector<char*> envp;
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    FILE* from_child = fdopen(out[0], "r");
    char line[512];
    while (pid_ > 0 && std::fgets(line, sizeof(line), from_child) != nullptr) {
      std::string text(line);
      text.erase(text.find_last_not_of("\r\n") + 1);
      if (text == "ready") break;
      if (text.rfind("listening ", 0) == 0) addresses_.push_back(text.substr(10));
    }
    std::fclose(from_child);
  }
  ~ChildServer() { Kill(); }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  pid_t pid() const { return pid_; }
  // Addresses actually bound, in the order given.
  const std::vector<std::string>& addresses() const { return addresses_; }

 private:
  pid_t pid_ = -1;
  std::vector<std::string> addresses_;
};

}  // namespace locus::testing

#endif  // LOCUS_TESTS_TESTING_TEST_UTIL_H_
