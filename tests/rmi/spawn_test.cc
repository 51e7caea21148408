// Parent and child processes (locus/spawn.h) end to end: a child started by
// SpawnChild (locus_spawn_child, spawn_child_main.cc) and this process
// exchange their root objects over an inherited socketpair, on shared memory
// and, where shm is forbidden, on the socket; what each side sees when the
// other dies; and the "fd:N" addresses underneath.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "locus/locus.h"
#include "locus/spawn.h"
#include "spawn_services.h"
#include "tests/testing/test_util.h"

namespace spawntest {
namespace {

using ::locus::testing::kWatchdog;

locus::CallOptions Watchdog() { return locus::CallOptions::WithTimeout(kWatchdog); }

absl::StatusOr<locus::Remote<Peer>> NoOtherRoot() {
  return absl::UnimplementedError("the parent's root does not call back");
}

struct Kind {
  const char* name;
  const char* allowed_transports;  // SpawnOptions::channel
  const char* transport;           // where the connection must end
};

void PrintTo(const Kind& kind, std::ostream* out) { *out << kind.name; }

const Kind kKinds[] = {
    {"shm", "", "shm"},
    {"unix", "unix", "unix"},
};

class SpawnTest : public ::testing::TestWithParam<Kind> {
 protected:
  // Starts locus_spawn_child in child mode with `flags`, offering root_.
  absl::StatusOr<std::unique_ptr<locus::ChildProcess>> Spawn(std::vector<std::string> flags = {},
                                                             std::vector<std::string> environment = {}) {
    std::vector<std::string> argv = {LOCUS_SPAWN_CHILD_PATH, "child"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    locus::SpawnOptions options;
    options.root = root_;
    options.channel.allowed_transports = GetParam().allowed_transports;
    options.channel.connect_timeout = kWatchdog;
    options.environment = std::move(environment);
    return locus::SpawnChild(std::move(argv), std::move(options));
  }

  std::shared_ptr<PeerImpl> root_ = std::make_shared<PeerImpl>(&NoOtherRoot);
};

TEST_P(SpawnTest, TheParentCallsTheChildsRootAndTheChildCallsTheParents) {
  auto child = Spawn({}, {"SPAWN_TEST_GREETING=from the child"});
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ((*child)->channel()->transport_name(), GetParam().transport);
  auto theirs = (*child)->Root<Peer>();
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  EXPECT_EQ(theirs->channel()->transport_name(), GetParam().transport);

  Text text;
  text.set_text("hi");
  absl::StatusOr<Said> said = (*theirs)->Say(text, Watchdog());
  ASSERT_TRUE(said.ok()) << said.status();
  EXPECT_EQ(said->text(), "from the child: hi");  // SpawnOptions::environment reached it
  EXPECT_EQ(said->pid(), (*child)->pid());
  EXPECT_EQ(said->transport(), GetParam().transport);
  // The child sees its parent's credentials.
  EXPECT_TRUE(said->caller_has_credentials());
  EXPECT_EQ(said->caller_pid(), getpid());

  // The child calls this process's root from inside the call.
  text.set_text("back");
  absl::StatusOr<Said> back = (*theirs)->AskBack(text, Watchdog());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->text(), "back");
  EXPECT_EQ(back->pid(), getpid());
  EXPECT_EQ(back->transport(), GetParam().transport);
  // The parent's end of the pair has no credentials of the child's.
  EXPECT_FALSE(back->caller_has_credentials());
  EXPECT_TRUE(root_->WaitToHear("back", absl::Now() + kWatchdog));
}

TEST_P(SpawnTest, TheChildCallsAnObjectOfTheParentWhileTheParentsCallIsInFlight) {
  auto child = Spawn();
  ASSERT_TRUE(child.ok()) << child.status();
  auto theirs = (*child)->Root<Peer>();
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  auto progress = std::make_shared<ProgressImpl>();
  WorkRequest request;
  request.set_steps(3);
  ASSERT_TRUE(locus::SetRef(request.mutable_progress(), progress).ok());
  absl::StatusOr<Said> done = (*theirs)->Work(request, Watchdog());
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->pid(), (*child)->pid());
  EXPECT_EQ(progress->steps(), (std::vector<int>{1, 2, 3}));
}

TEST_P(SpawnTest, TheChildCallsTheParentsRootOnItsOwn) {
  auto child = Spawn({"--hello"});
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_TRUE(root_->WaitToHear("hello from the child", absl::Now() + kWatchdog));
}

TEST_P(SpawnTest, AChildWithoutARootCanStillCallTheParents) {
  auto child = Spawn({"--no-root", "--hello"});
  ASSERT_TRUE(child.ok()) << child.status();
  // No call of the parent is in flight to read the child's request: the
  // connection must be read because the parent offers a root.
  EXPECT_TRUE(root_->WaitToHear("hello from the child", absl::Now() + kWatchdog));
  EXPECT_EQ((*child)->Root<Peer>().status().code(), absl::StatusCode::kNotFound);
}

// The inode numbers of the sockets process `pid` has open.
std::vector<std::string> SocketInodes(pid_t pid) {
  std::vector<std::string> inodes;
  const std::string dir = absl::StrCat("/proc/", pid, "/fd");
  DIR* fds = opendir(dir.c_str());
  if (fds == nullptr) return inodes;
  while (dirent* entry = readdir(fds)) {
    char target[256];
    const ssize_t n = readlink((dir + "/" + entry->d_name).c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    const std::string link(target, static_cast<size_t>(n));
    if (absl::StartsWith(link, "socket:[")) inodes.push_back(link.substr(8, link.size() - 9));
  }
  closedir(fds);
  return inodes;
}

TEST_P(SpawnTest, NoSocketHasAPathAndNoneListens) {
  auto child = Spawn();
  ASSERT_TRUE(child.ok()) << child.status();
  auto theirs = (*child)->Root<Peer>();
  ASSERT_TRUE(theirs.ok());
  Text text;
  ASSERT_TRUE((*theirs)->Say(text, Watchdog()).ok());
  absl::flat_hash_set<std::string> ours;
  for (pid_t pid : {getpid(), (*child)->pid()}) {
    for (const std::string& inode : SocketInodes(pid)) ours.insert(inode);
  }
  // /proc/net/unix: "Num RefCount Protocol Flags Type St Inode [Path]";
  // Flags 00010000 is a listening socket.
  std::ifstream table("/proc/net/unix");
  std::string line;
  std::getline(table, line);
  int seen = 0;
  while (std::getline(table, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() < 7 || !ours.contains(fields[6])) continue;
    ++seen;
    EXPECT_EQ(fields.size(), 7u) << "a socket with a path: " << line;
    EXPECT_NE(fields[3], "00010000") << "a listening socket: " << line;
  }
  // At least the two ends of the pair.
  EXPECT_GE(seen, 2);
}

TEST_P(SpawnTest, WhenTheChildDiesCallsFailUnavailableAndTheParentIsTold) {
  auto child = Spawn();
  ASSERT_TRUE(child.ok()) << child.status();
  auto theirs = (*child)->Root<Peer>();
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  const pid_t pid = (*child)->pid();
  absl::Notification exited, disconnected;
  absl::StatusOr<locus::ExitStatus> exit_status;
  absl::Status why;
  (*child)->OnExit([&](absl::StatusOr<locus::ExitStatus> status) {
    exit_status = status;
    exited.Notify();
  });
  locus::NotifyOnDisconnect(theirs->channel(), [&](absl::Status status) {
    why = status;
    disconnected.Notify();
  });
  ASSERT_TRUE((*child)->Kill(SIGKILL).ok());
  ASSERT_TRUE(exited.WaitForNotificationWithTimeout(kWatchdog));
  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  EXPECT_EQ(exit_status->signal, SIGKILL);
  ASSERT_TRUE(disconnected.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_EQ(why.code(), absl::StatusCode::kUnavailable) << why;

  Text text;
  EXPECT_EQ((*theirs)->Say(text, Watchdog()).status().code(), absl::StatusCode::kUnavailable);
  // A fresh handle, and a reconnect of the channel, fail alike.
  EXPECT_EQ((*child)->Root<Peer>().status().code(), absl::StatusCode::kUnavailable);
  absl::StatusOr<locus::ExitStatus> waited = (*child)->Wait();
  ASSERT_TRUE(waited.ok());
  EXPECT_EQ(waited->signal, SIGKILL);
  EXPECT_EQ((*child)->Kill(SIGTERM).code(), absl::StatusCode::kFailedPrecondition);
  // Reaped: no zombie left.
  EXPECT_NE(access(absl::StrCat("/proc/", pid).c_str(), F_OK), 0);
  // OnExit after the fact runs too.
  absl::Notification late;
  (*child)->OnExit([&](absl::StatusOr<locus::ExitStatus>) { late.Notify(); });
  EXPECT_TRUE(late.WaitForNotificationWithTimeout(kWatchdog));
}

TEST_P(SpawnTest, DisconnectingEndsTheChildsLinkAndItExitsByItself) {
  auto child = Spawn({"--exit-code=7"});
  ASSERT_TRUE(child.ok()) << child.status();
  auto theirs = (*child)->Root<Peer>();
  ASSERT_TRUE(theirs.ok());
  (*child)->Disconnect();
  absl::StatusOr<locus::ExitStatus> waited = (*child)->Wait(absl::Now() + kWatchdog);
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->exit_code, 7) << waited->ToString();
  Text text;
  EXPECT_EQ((*theirs)->Say(text, Watchdog()).status().code(), absl::StatusCode::kUnavailable);
}

TEST_P(SpawnTest, DestroyingTheHandleKillsAndReapsTheChild) {
  pid_t pid = 0;
  {
    auto child = Spawn();
    ASSERT_TRUE(child.ok()) << child.status();
    pid = (*child)->pid();
  }
  EXPECT_NE(access(absl::StrCat("/proc/", pid).c_str(), F_OK), 0);
}

INSTANTIATE_TEST_SUITE_P(Transports, SpawnTest, ::testing::ValuesIn(kKinds),
                         [](const ::testing::TestParamInfo<Kind>& info) { return std::string(info.param.name); });

// Reads lines from `fd` until EOF (bounded by the watchdog).
std::vector<std::string> ReadLines(int fd) {
  std::string all;
  const absl::Time until = absl::Now() + kWatchdog;
  for (;;) {
    const absl::Duration left = until - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    pollfd readable{fd, POLLIN, 0};
    const int ready = poll(&readable, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buffer[512];
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    all.append(buffer, static_cast<size_t>(n));
  }
  return absl::StrSplit(all, '\n', absl::SkipEmpty());
}

TEST(SpawnParentDeath, AChildWhoseParentDiesSeesItsLinkEnd) {
  // The child reports on a pipe it inherits through its parent, which this
  // test kills; EOF comes once both are gone.
  int report[2];
  ASSERT_EQ(pipe2(report, O_CLOEXEC), 0);
  ASSERT_EQ(fcntl(report[1], F_SETFD, 0), 0);
  auto middle = std::make_unique<locus::testing::ChildProcess>(
      LOCUS_SPAWN_CHILD_PATH, std::vector<std::string>{"middle", std::to_string(report[1])});
  close(report[1]);
  ASSERT_TRUE(middle->ready());
  middle->Kill();  // SIGKILL, no destructor runs
  const std::vector<std::string> lines = ReadLines(report[0]);
  close(report[0]);
  ASSERT_EQ(lines.size(), 2u) << absl::StrJoin(lines, " | ");
  EXPECT_TRUE(absl::StartsWith(lines[0], "connected ")) << lines[0];
  EXPECT_TRUE(absl::StartsWith(lines[1], "ended UNAVAILABLE")) << lines[1];
}

TEST(SpawnErrors, AProgramThatCannotStartOrNeverConnectsFails) {
  auto missing = locus::SpawnChild({"/nonexistent/locus-helper"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  auto quitter = locus::SpawnChild({"/bin/sh", "-c", "exit 5"});
  ASSERT_FALSE(quitter.ok());
  EXPECT_TRUE(absl::StrContains(quitter.status().message(), "exit code 5")) << quitter.status();
  locus::SpawnOptions options;
  options.channel.allowed_transports = "tcp";
  auto nowhere = locus::SpawnChild({LOCUS_SPAWN_CHILD_PATH, "child"}, std::move(options));
  EXPECT_EQ(nowhere.status().code(), absl::StatusCode::kFailedPrecondition) << nowhere.status();
  EXPECT_EQ(locus::SpawnChild({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SpawnErrors, ConnectToParentOutsideASpawnedChildFails) {
  ASSERT_EQ(getenv(locus::kParentFdVariable), nullptr);
  auto link = locus::ConnectToParent(nullptr);
  EXPECT_EQ(link.status().code(), absl::StatusCode::kFailedPrecondition) << link.status();
}

// "fd:N" within one process: a server on one end of a socketpair, a
// channel on the other.
class DescriptorAddressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair_), 0);
    server_ = std::make_unique<locus::Server>();
    ASSERT_TRUE(server_->RegisterService(&service_).ok());
    ASSERT_TRUE(server_->AddListeningAddress(absl::StrCat("fd:", pair_[1])).ok());
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override { server_->Shutdown(); }

  // Without "inproc": a server in this process would be called directly.
  absl::StatusOr<std::shared_ptr<locus::Channel>> Connect(const std::string& scheme,
                                                          const std::string& allowed) {
    locus::ChannelOptions options;
    options.allowed_transports = allowed;
    return locus::Connect(absl::StrCat(scheme, pair_[0]), options);
  }

  int pair_[2] = {-1, -1};
  PeerImpl service_{&NoOtherRoot};
  std::unique_ptr<locus::Server> server_;
};

TEST_F(DescriptorAddressTest, CallsGoOverTheSocketOnceAndNeverReconnect) {
  auto channel = Connect("fd:", "unix");
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_EQ((*channel)->transport_name(), "unix");
  Peer::Stub stub(*channel);
  Text text;
  text.set_text("over fd");
  absl::StatusOr<Said> said = stub.Say(text, Watchdog());
  ASSERT_TRUE(said.ok()) << said.status();
  EXPECT_EQ(said->transport(), "unix");
  // Both ends are this process's: the kernel's credentials are its own,
  // not the peer's, and none are reported.
  EXPECT_FALSE(said->caller_has_credentials());
  // The address was used: the descriptor is gone.
  auto again = Connect("fd:", "unix");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kInvalidArgument) << again.status();
  // The number is free again, unless another thread of this process (a
  // sanitizer's symbolizer pipe) took it meanwhile.
  EXPECT_TRUE(absl::StrContains(again.status().message(), "not open") ||
              absl::StrContains(again.status().message(), "not a socket"))
      << again.status();
  // References to this process's objects do not name the descriptor.
  locus::ObjectRef ref;
  ASSERT_TRUE(locus::SetRef(&ref, std::make_shared<ProgressImpl>()).ok());
  for (const std::string& endpoint : ref.endpoints()) EXPECT_FALSE(absl::StrContains(endpoint, "fd:")) << endpoint;
  // Once the connection is gone, calls fail and the channel does not redial
  // (the number may name another socket by then).
  server_->Shutdown();
  absl::Status after = stub.Say(text, Watchdog()).status();
  EXPECT_EQ(after.code(), absl::StatusCode::kUnavailable) << after;
  after = stub.Say(text, Watchdog()).status();
  EXPECT_EQ(after.code(), absl::StatusCode::kUnavailable) << after;
  EXPECT_TRUE(absl::StrContains(after.message(), "connects once")) << after;
}

TEST_F(DescriptorAddressTest, ShmFdMovesTheConnectionToSharedMemory) {
  auto channel = Connect("shm-fd:", "shm");
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_EQ((*channel)->transport_name(), "shm");
  Peer::Stub stub(*channel);
  absl::StatusOr<Said> said = stub.Say(Text(), Watchdog());
  ASSERT_TRUE(said.ok()) << said.status();
  EXPECT_EQ(said->transport(), "shm");
}

// Whether the peer of `fd` has closed its end (bounded by the watchdog).
bool PeerClosed(int fd) {
  pollfd hangup{fd, POLLIN | POLLRDHUP, 0};
  if (poll(&hangup, 1, static_cast<int>(absl::ToInt64Milliseconds(kWatchdog))) != 1) return false;
  char byte;
  return recv(fd, &byte, 1, MSG_DONTWAIT) == 0;
}

TEST(DescriptorAddress, AListenerDestroyedBeforeTheFirstFrameClosesTheSocketAndDeliversNothing) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  locus::Transport* transport = locus::DefaultTransportRegistry().Find("fd");
  ASSERT_NE(transport, nullptr);
  std::atomic<bool> delivered{false};
  auto listener = transport->Listen(absl::StrCat("fd:", pair[1]), {},
                                    [&](std::unique_ptr<locus::Connection>) { delivered = true; });
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_EQ((*listener)->address(), absl::StrCat("fd:", pair[1]));
  listener->reset();
  EXPECT_TRUE(PeerClosed(pair[0]));
  EXPECT_FALSE(delivered.load());
  close(pair[0]);
}

TEST(DescriptorAddress, ConnectToParentGivesUpWhenTheParentSendsNothing) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  ASSERT_EQ(setenv(locus::kParentFdVariable, std::to_string(pair[1]).c_str(), 1), 0);
  locus::ParentLinkOptions options;
  options.connect_timeout = absl::Milliseconds(50);
  auto link = locus::ConnectToParent(nullptr, options);
  unsetenv(locus::kParentFdVariable);
  EXPECT_EQ(link.status().code(), absl::StatusCode::kDeadlineExceeded) << link.status();
  // It took the descriptor and let it go.
  EXPECT_TRUE(PeerClosed(pair[0]));
  close(pair[0]);
}

TEST(DescriptorAddress, WhatIsNotAConnectedUnixStreamSocketFailsClearly) {
  auto connect = [](const std::string& address) {
    locus::ChannelOptions options;
    options.allowed_transports = "unix";
    return locus::Connect(address, options).status();
  };
  auto expect = [](const absl::Status& status, const std::string& text) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_TRUE(absl::StrContains(status.message(), text)) << status;
  };
  expect(connect("fd:abc"), "expected fd:N");
  expect(connect("fd:"), "expected fd:N");
  expect(connect("fd:-1"), "expected fd:N");
  expect(connect("fd:1000000"), "not open");
  int pipe_ends[2];
  ASSERT_EQ(pipe2(pipe_ends, O_CLOEXEC), 0);
  expect(connect(absl::StrCat("fd:", pipe_ends[0])), "a pipe, not a socket");
  // Left alone: still open.
  EXPECT_EQ(fcntl(pipe_ends[0], F_GETFD), FD_CLOEXEC);
  close(pipe_ends[0]);
  close(pipe_ends[1]);
  int datagrams[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, datagrams), 0);
  expect(connect(absl::StrCat("fd:", datagrams[0])), "not a stream socket");
  close(datagrams[0]);
  close(datagrams[1]);
  const int unconnected = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  expect(connect(absl::StrCat("fd:", unconnected)), "not connected");
  const sa_family_t autobind = AF_UNIX;  // an abstract name the kernel picks
  ASSERT_EQ(bind(unconnected, reinterpret_cast<const sockaddr*>(&autobind), sizeof(autobind)), 0);
  ASSERT_EQ(listen(unconnected, 1), 0);
  expect(connect(absl::StrCat("fd:", unconnected)), "listening socket");
  close(unconnected);
  const int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  expect(connect(absl::StrCat("fd:", tcp)), "not a Unix-domain socket");
  close(tcp);
}

}  // namespace
}  // namespace spawntest
