// Helpers shared by Locus's integration tests: short temp dirs (Unix socket
// paths are limited to 107 bytes), stderr capture that can wait for a line
// logged by another thread, a test server (or client) in a child process,
// and whether a thread is blocked (/proc), for tests that must wait until
// another thread sleeps in a call.
//
// Example:
//   locus::testing::TempDir dir;
//   locus::testing::ChildServer server(LOCUS_TEST_SERVER_PATH,
//                                      {"tcp://127.0.0.1:0", "unix:" + dir.path() + "/s.sock"});
//   auto channel = locus::Connect(server.addresses()[0]);
#ifndef LOCUS_TESTS_TESTING_TEST_UTIL_H_
#define LOCUS_TESTS_TESTING_TEST_UTIL_H_

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace locus::testing {

// Tests use deadlines only as watchdogs against hangs.
inline constexpr absl::Duration kWatchdog = absl::Seconds(60);

// The kernel's id of the calling thread (for ThreadIsBlocked).
inline pid_t ThisThreadId() { return static_cast<pid_t>(syscall(SYS_gettid)); }

// Whether thread `tid` of this process is blocked in the kernel (state S or
// D in /proc: waiting on a futex, a socket, a timer), as opposed to running
// or runnable. A test's signal that a thread reached a wait it cannot leave
// by itself, where no event says so.
inline bool ThreadIsBlocked(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // "tid (name) S ...": the name may hold spaces and parentheses.
  const size_t name_end = line.rfind(')');
  if (name_end == std::string::npos || name_end + 2 >= line.size()) return false;
  const char state = line[name_end + 2];
  return state == 'S' || state == 'D';
}

// Waits (bounded by the watchdog) until thread `tid` blocks.
inline bool WaitUntilThreadBlocks(pid_t tid) {
  const absl::Time until = absl::Now() + kWatchdog;
  while (!ThreadIsBlocked(tid)) {
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Microseconds(100));
  }
  return true;
}

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

// Runs a binary in a child process with the given arguments and extra
// environment ("NAME=value") and reads its stdout up to a line "ready"
// (bounded by the watchdog); killed (SIGKILL) and reaped on destruction.
// Lines "listening <address>" before "ready" are collected: with
// tests/conformance/test_server_main.cc (locus_test_server) the arguments
// are listening addresses and addresses() the addresses bound.
class ChildProcess {
 public:
  ChildProcess(const std::string& binary, const std::vector<std::string>& arguments,
               const std::vector<std::string>& extra_env = {}) {
    int out[2];
    if (pipe(out) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::vector<std::string> args = {binary};
    args.insert(args.end(), arguments.begin(), arguments.end());
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
    ReadAnnouncements(out[0]);
    close(out[0]);
  }
  ~ChildProcess() { Kill(); }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  pid_t pid() const { return pid_; }
  // Whether the child said "ready" (and is not killed yet).
  bool ready() const { return ready_ && pid_ > 0; }
  // Addresses actually bound, in the order given.
  const std::vector<std::string>& addresses() const { return addresses_; }

 private:
  // Reads the child's "listening ..." lines up to "ready". Bounded by the
  // watchdog: a child that hangs before "ready" (or never writes it) is
  // killed, leaving addresses() short, instead of blocking the test for
  // ever.
  void ReadAnnouncements(int fd) {
    const absl::Time until = absl::Now() + kWatchdog;
    std::string pending;
    while (pid_ > 0) {
      const absl::Duration left = until - absl::Now();
      if (left <= absl::ZeroDuration()) {
        std::fprintf(stderr, "ChildProcess: no \"ready\" within the watchdog\n");
        Kill();
        return;
      }
      pollfd waiting{fd, POLLIN, 0};
      const int ready = poll(&waiting, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) continue;  // the deadline is checked above
      char buffer[512];
      const ssize_t n = read(fd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the child exited (or closed stdout) before "ready"
      pending.append(buffer, static_cast<size_t>(n));
      for (size_t end; (end = pending.find('\n')) != std::string::npos; pending.erase(0, end + 1)) {
        std::string text = pending.substr(0, end);
        text.erase(text.find_last_not_of("\r") + 1);
        if (text == "ready") {
          ready_ = true;
          return;
        }
        if (text.rfind("listening ", 0) == 0) addresses_.push_back(text.substr(10));
      }
    }
  }

  pid_t pid_ = -1;
  bool ready_ = false;
  std::vector<std::string> addresses_;
};

// A test server in its own process (tests/conformance/test_server_main.cc).
using ChildServer = ChildProcess;

}  // namespace locus::testing

#endif  // LOCUS_TESTS_TESTING_TEST_UTIL_H_
