// Liveness, on every transport with a connection: keepalive (a stopped
// server process, a half-open peer that completed the handshake and went
// silent, a stopped client process, and a busy but healthy peer), and the
// server's idle and age limits (GOAWAY, calls in progress finish, the
// grace period ends those that do not, the channel moves on).
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "connlife_fixture.h"
#include "gtest/gtest.h"
#include "locus/wire.pb.h"
#include "tests/testing/test_util.h"

namespace locus::connlife {
namespace {

using ::locus::conformance::ReliableWireKinds;
using ::locus::conformance::WaitReply;
using ::locus::conformance::WaitRequest;
using ::locus::conformance::WireKinds;
using ::locus::testing::ChildProcess;
using ::locus::testing::ChildServer;

// Runs `call` (which may never return) on a thread of its own; the
// caller learns its status, or that it did not end within the watchdog.
class CallInThread {
 public:
  explicit CallInThread(std::function<absl::Status()> call)
      : thread_([this, call = std::move(call)] {
          status_ = call();
          done_.Notify();
        }) {}
  ~CallInThread() { thread_.join(); }
  bool Ended() { return done_.WaitForNotificationWithTimeout(kWatchdog); }
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
  absl::Notification done_;
  std::thread thread_;
};

ChannelOptions QuickKeepalive() {
  ChannelOptions options;
  options.keepalive_time = absl::Milliseconds(50);
  options.keepalive_timeout = absl::Milliseconds(200);
  return options;
}

// ---------------------------------------------------------------------------
// Keepalive of a healthy connection

template <typename C>
class Keepalive : public ConnLife<C> {};
TYPED_TEST_SUITE(Keepalive, WireKinds, ConfigNames);

// Calls that keep a server busy (an inline handler holds its reader for
// the whole call) outlast many keepalive periods: each PING is answered,
// late or not, within the timeout.
TYPED_TEST(Keepalive, APeerThatAnswersKeepsItsConnection) {
  ChannelOptions options;
  options.keepalive_time = absl::Milliseconds(10);
  options.keepalive_timeout = absl::Seconds(10);
  this->Start(ServerOptions{}, options);
  std::shared_ptr<internal::ConnectionCore> core = this->Core();
  ASSERT_NE(core, nullptr);
  WaitRequest wait;
  wait.set_max_wait_ms(100);
  const absl::Time until = absl::Now() + kWatchdog;
  int calls = 0;
  while (core->keepalive_pings_sent() < 3 && absl::Now() < until) {
    absl::StatusOr<WaitReply> reply = this->echo_stub_->WaitForCancel(wait, Watchdog());
    ASSERT_TRUE(reply.ok()) << "call " << calls << ": " << reply.status();
    EXPECT_FALSE(reply->saw_cancellation());
    ++calls;
  }
  EXPECT_GE(core->keepalive_pings_sent(), 3u);
  EXPECT_TRUE(core->usable());
  EXPECT_EQ(this->Core(), core) << "the connection was replaced";
}

// A client's keepalive_time is at least ten seconds, as gRPC clamps it (a
// client cannot make its servers answer PINGs every few milliseconds);
// these tests lower that floor, this one restores it.
TYPED_TEST(Keepalive, AClientsKeepaliveTimeIsAtLeastTenSeconds) {
  const absl::Duration lowered = internal::SetMinClientKeepaliveTime(internal::kMinClientKeepaliveTime);
  ChannelOptions options;
  options.keepalive_time = absl::Milliseconds(1);
  this->Start(ServerOptions{}, options);
  std::shared_ptr<internal::ConnectionCore> core = this->Core();
  internal::SetMinClientKeepaliveTime(lowered);
  ASSERT_NE(core, nullptr);
  EXPECT_EQ(core->keepalive_time(), absl::Seconds(10));
}

// ---------------------------------------------------------------------------
// Keepalive against a server process that stopped (SIGSTOP): its sockets
// and shared memory stay, nothing answers. A call without a deadline fails
// UNAVAILABLE once the keepalive times out.

template <typename C>
class StoppedServer : public ConnLife<C> {};
using ChildServerKinds = ::testing::Types<::locus::conformance::UnixInline, ::locus::conformance::ShmInline,
                                          ::locus::conformance::Tcp4Inline, ::locus::conformance::Udp4Inline>;
TYPED_TEST_SUITE(StoppedServer, ChildServerKinds, ConfigNames);

TYPED_TEST(StoppedServer, ACallWithoutDeadlineFailsOnceKeepaliveTimesOut) {
  using Kind = typename TypeParam::TransportKind;
  ChildServer child(LOCUS_TEST_SERVER_PATH, {Kind::ListenAddress(this->dir_)});
  ASSERT_TRUE(child.ready());
  ChannelOptions options = QuickKeepalive();
  options.allowed_transports = Kind::kTransport;
  options.datagram_call_timeout = absl::Hours(1);  // udp: no deadline either
  auto channel = Connect(child.addresses()[0], options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  TestService::Stub stub(*channel);
  ASSERT_TRUE(stub.Echo(EchoRequest(), Watchdog()).ok());
  ASSERT_EQ(kill(child.pid(), SIGSTOP), 0);
  CallInThread call([&] {
    WaitRequest wait;
    wait.set_max_wait_ms(3600 * 1000);
    return stub.WaitForCancel(wait, CallOptions()).status();  // no deadline
  });
  const bool ended = call.Ended();
  kill(child.pid(), SIGCONT);
  if (!ended) {
    child.Kill();  // ends the call: the test fails, without hanging
    ADD_FAILURE() << "the call outlived the keepalive timeout by the watchdog";
    return;
  }
  EXPECT_EQ(call.status().code(), absl::StatusCode::kUnavailable) << call.status();
  EXPECT_NE(call.status().message().find("keepalive"), absl::string_view::npos) << call.status();
}

// ---------------------------------------------------------------------------
// Keepalive against a half-open peer: it completes the handshake, then
// neither reads nor writes (as a TCP peer whose host vanished, or a path
// that drops everything). Raw sockets, Unix and TCP.

class SilentPeer {
 public:
  // What the peer does with a connection: completes the handshake and goes
  // silent, or closes it at once (a server that refuses everyone).
  enum class Mode { kSilent, kHangUp };
  // Listens on a Unix socket in `dir` (at `path` if given) or on TCP
  // loopback (on `port` if given).
  SilentPeer(bool tcp, const std::string& dir, Mode mode = Mode::kSilent, const std::string& path = "",
             int port = 0)
      : mode_(mode) {
    if (tcp) {
      listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(port));
      const int reuse = 1;
      setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
      bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
      socklen_t length = sizeof(addr);
      getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &length);
      address_ = absl::StrCat("tcp://127.0.0.1:", ntohs(addr.sin_port));
    } else {
      listener_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      const std::string file = path.empty() ? dir + "/silent.sock" : path;
      std::strncpy(addr.sun_path, file.c_str(), sizeof(addr.sun_path) - 1);
      bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
      address_ = "unix:" + file;
    }
    listen(listener_, 4);
    thread_ = std::thread([this] { Serve(); });
  }
  ~SilentPeer() {
    shutdown(listener_, SHUT_RDWR);
    thread_.join();
    for (int fd : connections_) close(fd);
    close(listener_);
  }
  const std::string& address() const { return address_; }
  // Connections accepted so far.
  int accepted() const { return accepted_.load(); }

 private:
  // Reads the HELLO, answers HELLO_ACK, then goes silent on that
  // connection (kept open) and waits for the next.
  void Serve() {
    for (;;) {
      const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      accepted_.fetch_add(1);
      if (mode_ == Mode::kHangUp) {
        close(fd);
        continue;
      }
      connections_.push_back(fd);
      FrameHeader hello;
      if (!ReadAll(fd, &hello, sizeof(hello))) continue;
      std::string skip(hello.meta_length + hello.payload_length, '\0');
      if (!ReadAll(fd, skip.data(), skip.size())) continue;
      wire::Hello ack;
      ack.set_min_protocol_version(kProtocolVersion);
      ack.set_max_protocol_version(kProtocolVersion);
      const std::string meta = ack.SerializeAsString();
      FrameHeader header = FrameHeader::Make(FrameType::kHelloAck, 0, 0);
      header.meta_length = static_cast<uint32_t>(meta.size());
      std::string frame(reinterpret_cast<const char*>(&header), sizeof(header));
      frame += meta;
      if (write(fd, frame.data(), frame.size()) != static_cast<ssize_t>(frame.size())) continue;
    }
  }
  static bool ReadAll(int fd, void* out, size_t size) {
    char* at = static_cast<char*>(out);
    while (size > 0) {
      const ssize_t n = read(fd, at, size);
      if (n <= 0) return false;
      at += n;
      size -= static_cast<size_t>(n);
    }
    return true;
  }

  const Mode mode_;
  std::atomic<int> accepted_{0};
  int listener_ = -1;
  std::string address_;
  std::vector<int> connections_;  // the accepting thread's until joined
  std::thread thread_;
};

class HalfOpenPeer : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(UnixAndTcp, HalfOpenPeer, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Tcp" : "Unix"; });

TEST_P(HalfOpenPeer, ACallWithoutDeadlineFailsOnceKeepaliveTimesOut) {
  TempDir dir;
  SilentPeer peer(GetParam(), dir.path());
  auto channel = Connect(peer.address(), QuickKeepalive());
  ASSERT_TRUE(channel.ok()) << channel.status();
  TestService::Stub stub(*channel);
  CallInThread call([&] { return stub.Echo(EchoRequest(), CallOptions()).status(); });
  ASSERT_TRUE(call.Ended()) << "the call outlived the keepalive timeout by the watchdog";
  EXPECT_EQ(call.status().code(), absl::StatusCode::kUnavailable) << call.status();
  EXPECT_NE(call.status().message().find("keepalive"), absl::string_view::npos) << call.status();
  // Without keepalive the same call waits for its deadline.
  ChannelOptions no_keepalive;
  auto patient = Connect(peer.address(), no_keepalive);
  ASSERT_TRUE(patient.ok()) << patient.status();
  TestService::Stub patient_stub(*patient);
  EXPECT_EQ(patient_stub.Echo(EchoRequest(), CallOptions::WithTimeout(absl::Milliseconds(400))).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

// A server that refuses everyone (it accepts and hangs up at once), on
// the address a channel was connected to: fail-fast calls fail at once,
// and the peer sees one connection attempt per backoff period however
// many calls are made (counted by the peer, not by the channel).
TEST_P(HalfOpenPeer, ARefusingServerSeesOneConnectionAttemptPerBackoff) {
  TempDir dir;
  const bool tcp = GetParam();
  TestServiceImpl service;
  auto server = std::make_unique<Server>();
  ASSERT_TRUE(server->RegisterService(&service).ok());
  ASSERT_TRUE(server->AddListeningAddress(tcp ? "tcp://127.0.0.1:0" : "unix:" + dir.path() + "/s.sock").ok());
  ASSERT_TRUE(server->Start().ok());
  const std::string address = server->listening_addresses()[0];
  ChannelOptions options;
  options.allowed_transports = tcp ? "tcp" : "unix";
  options.reconnect_backoff.initial_backoff = absl::Milliseconds(200);
  auto channel = Connect(address, options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  TestService::Stub stub(*channel);
  ASSERT_TRUE(stub.Echo(EchoRequest(), Watchdog()).ok());
  server->Shutdown();
  const int port = tcp ? std::stoi(address.substr(address.rfind(':') + 1)) : 0;
  SilentPeer refusing(tcp, dir.path(), SilentPeer::Mode::kHangUp, dir.path() + "/s.sock", port);
  ASSERT_EQ(refusing.address(), address);
  const absl::Time start = absl::Now();
  constexpr int kCalls = 300;
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_EQ(stub.Echo(EchoRequest(), Watchdog()).status().code(), absl::StatusCode::kUnavailable) << i;
  }
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_GE(refusing.accepted(), 1);
  EXPECT_LE(refusing.accepted(), 2 + elapsed / options.reconnect_backoff.initial_backoff)
      << kCalls << " calls in " << elapsed;
}

// ---------------------------------------------------------------------------
// The server's keepalive against a client process that stopped while its
// stream was open: the server closes the connection, and the stream's
// handler learns that its call ended.

template <typename C>
class StoppedClient : public ConnLife<C> {};
using ChildClientKinds = ::testing::Types<::locus::conformance::UnixInline, ::locus::conformance::ShmInline,
                                          ::locus::conformance::Tcp4Inline>;
TYPED_TEST_SUITE(StoppedClient, ChildClientKinds, ConfigNames);

TYPED_TEST(StoppedClient, TheServersKeepaliveEndsItsCalls) {
  using Kind = typename TypeParam::TransportKind;
  ServerOptions options;
  options.keepalive_time = absl::Milliseconds(50);
  options.keepalive_timeout = absl::Milliseconds(200);
  this->Start(options);
  ChildProcess client(LOCUS_TEST_CLIENT_PATH, {this->address_, Kind::kTransport, "1", "chat"});
  ASSERT_TRUE(client.ready()) << "the test client did not open its stream";
  ASSERT_EQ(kill(client.pid(), SIGSTOP), 0);
  EXPECT_TRUE(Eventually([&] { return this->service_.stream_cancellations_seen() >= 1; }))
      << "the stopped client's stream is still open";
  kill(client.pid(), SIGCONT);
}

// ---------------------------------------------------------------------------
// Idle and age limits

template <typename C>
class IdleLimit : public ConnLife<C> {};
TYPED_TEST_SUITE(IdleLimit, ReliableWireKinds, ConfigNames);

TYPED_TEST(IdleLimit, AnIdleConnectionIsClosedAndTheNextCallMakesAnother) {
  ServerOptions options;
  options.max_connection_idle = absl::Milliseconds(50);
  this->Start(options);
  ASSERT_TRUE(this->Echo().ok());
  std::shared_ptr<internal::ConnectionCore> first = this->Core();
  ASSERT_NE(first, nullptr);
  // A plain client reads nothing between calls, but notices the hang-up.
  EXPECT_TRUE(Eventually([&] { return first->closed(); })) << "the idle connection stayed open";
  ASSERT_TRUE(this->Echo().ok());
  EXPECT_NE(this->Core(), first);
  EXPECT_GE(this->Stats().connects.attempts, 2u);
}

// Where a handler that waits (Hold) stalls no other connection: on a
// handler pool, or on a shared-memory connection (a reader thread of its
// own). An inline handler on a socket holds an event loop, which client and
// server of these tests share with other connections.
template <typename C>
class ConnectionLimits : public ConnLife<C> {};
using ::locus::conformance::ShmAbstractInline;
using ::locus::conformance::ShmInline;
using ::locus::conformance::ShmInlineNoSpin;
using ::locus::conformance::ShmPool;
using ::locus::conformance::Tcp4Pool;
using ::locus::conformance::Udp4Pool;
using ::locus::conformance::UnixPool;
using WaitingHandlerKinds =
    ::testing::Types<UnixPool, Tcp4Pool, ShmPool, Udp4Pool, ShmInline, ShmAbstractInline, ShmInlineNoSpin>;
TYPED_TEST_SUITE(ConnectionLimits, WaitingHandlerKinds, ConfigNames);

TYPED_TEST(ConnectionLimits, AnOldConnectionFinishesItsCallsWhileNewCallsGoElsewhere) {
  ServerOptions options;
  options.max_connection_age = absl::Milliseconds(50);
  this->Start(options);
  std::shared_ptr<internal::ConnectionCore> first = this->Core();
  ASSERT_NE(first, nullptr);
  // A call in progress when the GOAWAY comes (asynchronous: the channel
  // reads the connection meanwhile).
  Future<Note> held = this->flaky_stub_->AsyncHold(Note(), FlakyService::Holding("held"));
  ASSERT_TRUE(Eventually([&] { return !first->usable(); })) << "no GOAWAY";
  EXPECT_FALSE(first->closed());
  // New calls go to a new connection meanwhile.
  ASSERT_TRUE(this->Echo().ok());
  EXPECT_NE(this->Core(), first);
  this->flaky_.Release("held");
  absl::StatusOr<Note> reply = held.Get();
  EXPECT_TRUE(reply.ok()) << reply.status();
  if constexpr (TypeParam::TransportKind::kReliable) {
    EXPECT_TRUE(Eventually([&] { return first->closed(); })) << "the drained connection stayed open";
  }
}

template <typename C>
class AgeGrace : public ConnLife<C> {};
TYPED_TEST_SUITE(AgeGrace, ReliableWireKinds, ConfigNames);

TYPED_TEST(AgeGrace, CallsStillRunningWhenTheGraceEndsFail) {
  ServerOptions options;
  options.max_connection_age = absl::Milliseconds(30);
  options.max_connection_age_grace = absl::Milliseconds(100);
  this->Start(options);
  absl::StatusOr<Note> reply = this->flaky_stub_->Hold(Note(), FlakyService::Holding("never"));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable) << reply.status();
  EXPECT_TRUE(Eventually([&] { return this->flaky_.cancelled_holds() == 1; }));
  ASSERT_TRUE(this->Echo().ok());  // on a new connection
}

}  // namespace
}  // namespace locus::connlife
