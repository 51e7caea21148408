// Balanced channels (locus/balancing.h) when backends fail in the ways that
// hurt: a backend that never answers (a listening socket nobody accepts on,
// as a host whose packets vanish), a backend whose host goes dark while it
// is the one calls go to, every backend restarting under more asynchronous
// calls than the balancer has threads, calls cancelled while they wait for
// a backend, wait_for_ready calls while every backend is failing, failures
// no retry follows, and bootstrap objects of channels that mix an
// in-process backend with remote ones.
//
// FailoverTest runs its servers in this process, for every transport kind
// of the conformance suite where the failure applies (each channel forced
// onto the kind); BootstrapTest runs remote servers in processes of their
// own (balance_backend_main.cc).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "balance_services.h"
#include "conformance_fixture.h"
#include "gtest/gtest.h"
#include "locus/balancing.h"
#include "locus/locus.h"
#include "locus/object.h"
#include "tests/testing/test_util.h"

namespace locus::callmodel {
namespace {

using ::locus::conformance::ConfigNames;
using ::locus::conformance::Eventually;
using ::locus::conformance::HasIpv6Loopback;
using ::locus::conformance::SiblingAddress;
using ::locus::testing::ChildProcess;
using ::locus::testing::kWatchdog;
using ::locus::testing::TempDir;
using State = BackendInfo::State;

CallOptions Watchdog() { return CallOptions::WithTimeout(kWatchdog); }

// Longer than any call's deadline here: a connection attempt to a backend
// that never answers outlives the calls that wait for it.
constexpr absl::Duration kConnectTimeout = absl::Seconds(30);
// Deadlines of the calls of a backend that went dark: shorter than
// kConnectTimeout, long enough for the balancer to try another backend.
constexpr absl::Duration kShortCall = absl::Seconds(5);

// A socket bound where a server would listen that never accepts, reads or
// answers: connecting to it hangs in the handshake until the deadline, as
// connecting to a host whose packets are dropped does. Closed (connections
// to it then fail) when destroyed.
class BlackHole {
 public:
  // `like`: an address as a server would listen on ("unix:<path>",
  // "unix-abstract:<name>", "shm:<path>", "shm-abstract:<name>",
  // "tcp://127.0.0.1:0", "tcp://[::1]:0", "udp://..."; port 0 picks one).
  explicit BlackHole(const std::string& like) {
    for (const char* scheme : {"unix:", "shm:", "unix-abstract:", "shm-abstract:"}) {
      if (!absl::StartsWith(like, scheme)) continue;
      const std::string name = like.substr(std::strlen(scheme));
      const bool abstract = absl::StrContains(scheme, "abstract");
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      if (name.size() + 1 >= sizeof(addr.sun_path)) return;
      socklen_t length;
      if (abstract) {
        std::memcpy(addr.sun_path + 1, name.data(), name.size());
        length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
      } else {
        unlink(name.c_str());
        std::memcpy(addr.sun_path, name.data(), name.size());
        length = static_cast<socklen_t>(sizeof(addr));
      }
      fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), length) != 0 || listen(fd_, SOMAXCONN) != 0) {
        Close();
        return;
      }
      address_ = like;
      return;
    }
    const bool udp = absl::StartsWith(like, "udp://");
    if (!udp && !absl::StartsWith(like, "tcp://")) return;
    std::string host = like.substr(6, like.rfind(':') - 6);
    uint32_t port = 0;
    if (!absl::SimpleAtoi(like.substr(like.rfind(':') + 1), &port)) return;
    const bool v6 = absl::StartsWith(host, "[");
    sockaddr_storage storage{};
    socklen_t length;
    if (v6) {
      auto* addr = reinterpret_cast<sockaddr_in6*>(&storage);
      addr->sin6_family = AF_INET6;
      addr->sin6_port = htons(static_cast<uint16_t>(port));
      if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &addr->sin6_addr) != 1) return;
      length = sizeof(sockaddr_in6);
    } else {
      auto* addr = reinterpret_cast<sockaddr_in*>(&storage);
      addr->sin_family = AF_INET;
      addr->sin_port = htons(static_cast<uint16_t>(port));
      if (inet_pton(AF_INET, host.c_str(), &addr->sin_addr) != 1) return;
      length = sizeof(sockaddr_in);
    }
    fd_ = socket(storage.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    const int one = 1;
    if (fd_ < 0 || setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd_, reinterpret_cast<sockaddr*>(&storage), length) != 0 || (!udp && listen(fd_, SOMAXCONN) != 0) ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
      Close();
      return;
    }
    const uint16_t bound = v6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                              : reinterpret_cast<sockaddr_in*>(&storage)->sin_port;
    address_ = absl::StrCat(udp ? "udp://" : "tcp://", host, ":", ntohs(bound));
  }
  ~BlackHole() { Close(); }
  BlackHole(const BlackHole&) = delete;
  BlackHole& operator=(const BlackHole&) = delete;

  bool ok() const { return fd_ >= 0; }
  // Where it is bound (the port filled in).
  const std::string& address() const { return address_; }

 private:
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
  std::string address_;
};

template <typename ConfigT>
class FailoverTest : public ::testing::Test {
 public:
  using Kind = typename ConfigT::TransportKind;

  void SetUp() override {
    if constexpr (Kind::kIpv6) {
      LOCUS_SKIP_UNLESS_MACHINE(HasIpv6Loopback(), "no IPv6 loopback (::1) on this machine");
    }
  }

  // An address of the kind for `name` (tcp and udp: port 0).
  std::string Listen(const std::string& name) const {
    return SiblingAddress(Kind::ListenAddress(dir_), dir_, name);
  }

  // Starts server `name` on `address` (Listen(name) if empty): returns
  // where it listens.
  std::string StartServer(const std::string& name, std::string address = "") {
    backends_[name] = std::make_unique<BackendImpl>(name);
    ServerOptions options;
    options.handler_threads = ConfigT::handler_threads;
    servers_[name] = std::make_unique<Server>(options);
    EXPECT_TRUE(servers_[name]->RegisterService(backends_[name].get()).ok());
    EXPECT_TRUE(servers_[name]->AddListeningAddress(address.empty() ? Listen(name) : address).ok());
    absl::Status started = servers_[name]->Start();
    EXPECT_TRUE(started.ok()) << started;
    return started.ok() ? servers_[name]->listening_addresses()[0] : "";
  }

  ChannelOptions Options(LoadBalancingPolicy policy) const {
    ChannelOptions options;
    options.allowed_transports = Kind::kTransport;
    options.balancing.policy = policy;
    options.connect_timeout = kConnectTimeout;
    // A backend that failed stays failing for the test's length.
    options.balancing.backoff.initial_backoff = kWatchdog;
    options.balancing.backoff.max_backoff = kWatchdog;
    if (!ConfigT::spin) {
      options.socket_spin = absl::ZeroDuration();
      options.shm_spin = absl::ZeroDuration();
    }
    return options;
  }

  std::shared_ptr<Channel> ConnectTo(const std::vector<std::string>& addresses, const ChannelOptions& options) {
    absl::StatusOr<std::shared_ptr<Channel>> channel = Connect(absl::StrJoin(addresses, ","), options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    return channel.ok() ? *channel : nullptr;
  }

  // Calls Who with `deadline`s of `timeout` until one succeeds (bounded by
  // the watchdog): the server that answered, or "" if none did. Every
  // failure must be one of a call that found no backend in time.
  std::string CallUntilAnswered(Backend::Stub& stub, absl::Duration timeout) {
    const absl::Time until = absl::Now() + kWatchdog;
    while (absl::Now() < until) {
      absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), CallOptions::WithTimeout(timeout));
      if (reply.ok()) return reply->server();
      EXPECT_TRUE(absl::IsDeadlineExceeded(reply.status()) || absl::IsUnavailable(reply.status()))
          << reply.status();
    }
    return "";
  }

  TempDir dir_;
  std::map<std::string, std::unique_ptr<BackendImpl>> backends_;
  std::map<std::string, std::unique_ptr<Server>> servers_;
};

template <typename ConfigT>
class ReliableFailoverTest : public FailoverTest<ConfigT> {
  static_assert(ConfigT::TransportKind::kReliable, "needs connections a server can close");
};

using ::locus::conformance::InProcessInline;
using ::locus::conformance::InProcessPool;
using ::locus::conformance::ShmAbstractInline;
using ::locus::conformance::ShmInline;
using ::locus::conformance::ShmPool;
using ::locus::conformance::Tcp4Inline;
using ::locus::conformance::Tcp4Pool;
using ::locus::conformance::Tcp6Inline;
using ::locus::conformance::Udp4Inline;
using ::locus::conformance::UnixAbstractInline;
using ::locus::conformance::UnixInline;
using ::locus::conformance::UnixPool;
using FailoverKinds = ::testing::Types<UnixInline, UnixAbstractInline, Tcp4Inline, Tcp6Inline, ShmInline,
                                       ShmAbstractInline, InProcessInline, Udp4Inline, UnixPool, Tcp4Pool,
                                       ShmPool, InProcessPool>;
using ReliableFailoverKinds =
    ::testing::Types<UnixInline, UnixAbstractInline, Tcp4Inline, Tcp6Inline, ShmInline, ShmAbstractInline,
                     InProcessInline, UnixPool, Tcp4Pool, ShmPool, InProcessPool>;
// Servers whose handlers hold calls: on a pool (an inline handler that
// waits would hold up the thread that reads its cancellation).
template <typename ConfigT>
class PoolFailoverTest : public FailoverTest<ConfigT> {
  static_assert(ConfigT::TransportKind::kReliable && ConfigT::handler_threads > 0, "handlers that wait");
};
using PoolFailoverKinds = ::testing::Types<UnixPool, Tcp4Pool, ShmPool, InProcessPool>;
TYPED_TEST_SUITE(FailoverTest, FailoverKinds, ConfigNames);
TYPED_TEST_SUITE(PoolFailoverTest, PoolFailoverKinds, ConfigNames);
TYPED_TEST_SUITE(ReliableFailoverTest, ReliableFailoverKinds, ConfigNames);


// ---------------------------------------------------------------------------
// A failure no server saw marks its backend failing, retried or not

// With one attempt per call nothing is retried; the call that found its
// backend gone still marks it failing, and round-robin leaves it out.
TYPED_TEST(ReliableFailoverTest, AFailureNoServerSawMarksItsBackendFailingWithoutARetry) {
  std::vector<std::string> addresses;
  for (const char* name : {"a", "b", "c"}) addresses.push_back(this->StartServer(name));
  ChannelOptions options = this->Options(LoadBalancingPolicy::kRoundRobin);
  options.balancing.max_attempts = 1;
  std::shared_ptr<Channel> channel = this->ConnectTo(addresses, options);
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(stub.Who(WhoRequest(), Watchdog()).ok());
  this->servers_["b"]->Shutdown();
  // Calls go on until b is failing (a call on it failed, or the balancer
  // saw its connection gone first; bounded by the watchdog): each call that
  // fails is one b never saw, and fails at most once.
  int failures = 0;
  const absl::Time until = absl::Now() + kWatchdog;
  while (DescribeBackends(*channel)[1].state != State::kFailing && absl::Now() < until) {
    absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
    if (!reply.ok()) {
      ++failures;
      EXPECT_TRUE(absl::IsUnavailable(reply.status())) << reply.status();
    }
  }
  EXPECT_EQ(DescribeBackends(*channel)[1].state, State::kFailing);
  EXPECT_LE(failures, 1);
  // The rotation skips it: every call succeeds.
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_NE(reply->server(), "b");
  }
}

// ---------------------------------------------------------------------------
// Waiting for a backend: cancellation, and asynchronous calls

// A channel whose only backend left (after a) never answers: calls wait for
// it to connect.
template <typename Fixture>
std::shared_ptr<Channel> ChannelLeftWithABlackHole(Fixture* test, BlackHole& hole) {
  std::shared_ptr<Channel> channel =
      test->ConnectTo({test->StartServer("a"), hole.address()}, test->Options(LoadBalancingPolicy::kPickFirst));
  if (channel == nullptr) return nullptr;
  Backend::Stub stub(channel);
  absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
  EXPECT_TRUE(reply.ok()) << reply.status();
  test->servers_["a"]->Shutdown();
  return channel;
}

TYPED_TEST(ReliableFailoverTest, CancellingACallWaitingForABackendEndsItAtOnce) {
  BlackHole hole(this->Listen("hole"));
  ASSERT_TRUE(hole.ok());
  std::shared_ptr<Channel> channel = ChannelLeftWithABlackHole(this, hole);
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  // Synchronous: cancelled while it waits for the black hole.
  Cancellation cancel;
  CallOptions options = Watchdog();
  options.cancellation = cancel;
  absl::StatusOr<WhoReply> reply;
  std::atomic<pid_t> caller_tid{0};
  std::thread caller([&] {
    caller_tid = ::locus::testing::ThisThreadId();
    reply = stub.Who(WhoRequest(), options);
  });
  ASSERT_TRUE(Eventually([&] { return DescribeBackends(*channel)[1].state == State::kConnecting; }));
  ASSERT_TRUE(Eventually([&] { return caller_tid.load() != 0; }));
  ASSERT_TRUE(::locus::testing::WaitUntilThreadBlocks(caller_tid.load()));
  cancel.Cancel();
  caller.join();
  EXPECT_TRUE(absl::IsCancelled(reply.status())) << reply.status();
  // Asynchronous: the same.
  Cancellation cancel_async;
  options.cancellation = cancel_async;
  Future<WhoReply> pending = stub.AsyncWho(WhoRequest(), options);
  cancel_async.Cancel();
  absl::StatusOr<WhoReply> async_reply = pending.Get();
  EXPECT_TRUE(absl::IsCancelled(async_reply.status())) << async_reply.status();
  // A call cancelled before it starts never waits.
  absl::StatusOr<WhoReply> late = stub.Who(WhoRequest(), options);
  EXPECT_TRUE(absl::IsCancelled(late.status())) << late.status();
}

// An asynchronous call that finds no backend ready returns at once (its
// caller may be a transport's reader thread) and completes when a backend
// comes up, or with its deadline or cancellation.
TYPED_TEST(ReliableFailoverTest, StartingAnAsynchronousCallNeverWaitsForABackend) {
  BlackHole hole(this->Listen("hole"));
  ASSERT_TRUE(hole.ok());
  std::shared_ptr<Channel> channel = ChannelLeftWithABlackHole(this, hole);
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  std::vector<Cancellation> cancels(8);
  std::vector<Future<WhoReply>> pending;
  for (Cancellation& cancel : cancels) {
    CallOptions options = Watchdog();
    options.cancellation = cancel;
    pending.push_back(stub.AsyncWho(WhoRequest(), options));
    // Started: nothing can have completed it, only the black hole is left.
    EXPECT_FALSE(pending.back().ready());
  }
  for (Cancellation& cancel : cancels) cancel.Cancel();
  for (Future<WhoReply>& call : pending) {
    absl::StatusOr<WhoReply> reply = call.Get();
    EXPECT_TRUE(absl::IsCancelled(reply.status())) << reply.status();
  }
}

// wait_for_ready: calls that find every backend failing wait for one to
// come back instead of failing, each a waiter (not a thread): more of them
// than the balancer's call pool has threads (64) leave it free, so a call
// cancelled meanwhile ends at once, CANCELLED. The others answer once a
// server is back on its address.
TYPED_TEST(ReliableFailoverTest, WaitForReadyCallsOutnumberingThePoolWaitForABackendToComeBack) {
  const std::vector<std::string> addresses = {this->StartServer("a"), this->StartServer("b")};
  ChannelOptions options = this->Options(LoadBalancingPolicy::kRoundRobin);
  // Backends come back to be tried again (and fail again) while calls wait.
  options.balancing.backoff.initial_backoff = absl::Milliseconds(5);
  options.balancing.backoff.max_backoff = absl::Milliseconds(50);
  std::shared_ptr<Channel> channel = this->ConnectTo(addresses, options);
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  ASSERT_TRUE(stub.Who(WhoRequest(), Watchdog()).ok());
  this->servers_["a"]->Shutdown();
  this->servers_["b"]->Shutdown();
  // Without wait_for_ready a call fails.
  EXPECT_EQ(stub.Who(WhoRequest(), Watchdog()).status().code(), absl::StatusCode::kUnavailable);

  CallOptions patient = Watchdog();
  patient.wait_for_ready = true;
  constexpr int kCalls = 100;
  std::vector<Future<WhoReply>> pending;
  for (int i = 0; i < kCalls; ++i) pending.push_back(stub.AsyncWho(WhoRequest(), patient));
  Cancellation cancel;
  CallOptions cancellable = patient;
  cancellable.cancellation = cancel;
  Future<WhoReply> cancelled = stub.AsyncWho(WhoRequest(), cancellable);
  absl::StatusOr<WhoReply> sync_reply;
  absl::Notification sync_done;
  std::thread caller([&] {
    sync_reply = stub.Who(WhoRequest(), patient);
    sync_done.Notify();
  });
  cancel.Cancel();
  absl::StatusOr<WhoReply> cancelled_reply = cancelled.Get();
  EXPECT_TRUE(absl::IsCancelled(cancelled_reply.status())) << cancelled_reply.status();
  // No server is up: nothing else can have ended but with a failure.
  int ended = 0;
  for (const Future<WhoReply>& call : pending) ended += call.ready() ? 1 : 0;
  EXPECT_EQ(ended, 0);
  EXPECT_FALSE(sync_done.HasBeenNotified());

  this->StartServer("a", addresses[0]);
  for (Future<WhoReply>& call : pending) {
    absl::StatusOr<WhoReply> reply = call.Get();
    EXPECT_TRUE(reply.ok()) << reply.status();
  }
  caller.join();
  ASSERT_TRUE(sync_reply.ok()) << sync_reply.status();
  EXPECT_EQ(sync_reply->server(), "a");
}

// ---------------------------------------------------------------------------
// Backends that never answer

// Pick-first: a backend that never answers, and calls whose deadlines end
// before its connection attempt does. The attempt goes on without them
// (bounded by connect_timeout), and the calls move on to the next backend.
TYPED_TEST(FailoverTest, PickFirstMovesOnFromABackendThatNeverAnswers) {
  BlackHole hole(this->Listen("hole"));
  ASSERT_TRUE(hole.ok());
  const std::string a = this->StartServer("a");
  const std::string c = this->StartServer("c");
  const ChannelOptions options = this->Options(LoadBalancingPolicy::kPickFirst);
  // Connecting: the first backend never answers; Connect ends on c.
  {
    std::shared_ptr<Channel> channel = this->ConnectTo({hole.address(), c}, options);
    ASSERT_NE(channel, nullptr);
    Backend::Stub stub(channel);
    EXPECT_EQ(this->CallUntilAnswered(stub, kShortCall), "c");
  }
  // Calling: a goes away, the next backend never answers, c works. (A
  // datagram server that goes away sends nothing: its calls just time
  // out, which says nothing of the backend.)
  if constexpr (!TestFixture::Kind::kReliable) return;
  std::shared_ptr<Channel> channel = this->ConnectTo({a, hole.address(), c}, options);
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->server(), "a");
  this->servers_["a"]->Shutdown();
  EXPECT_EQ(this->CallUntilAnswered(stub, kShortCall), "c");
  // And the calls stay there.
  for (int i = 0; i < 5; ++i) {
    reply = stub.Who(WhoRequest(), CallOptions::WithTimeout(kShortCall));
    if (!TestFixture::Kind::kReliable && absl::IsDeadlineExceeded(reply.status())) continue;  // a lost datagram
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->server(), "c");
  }
  EXPECT_NE(DescribeBackends(*channel)[1].state, State::kReady);
}

// Pick-first: the backend calls go to goes dark (its server is gone and its
// address never answers). Its reconnection outlives the calls that wait for
// it, and they move on.
TYPED_TEST(ReliableFailoverTest, PickFirstLeavesABackendWhoseHostWentDark) {
  const std::string a = this->StartServer("a");
  const std::string c = this->StartServer("c");
  std::shared_ptr<Channel> channel = this->ConnectTo({a, c}, this->Options(LoadBalancingPolicy::kPickFirst));
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->server(), "a");
  this->servers_["a"]->Shutdown();
  BlackHole dark(a);
  ASSERT_TRUE(dark.ok()) << a;
  EXPECT_EQ(this->CallUntilAnswered(stub, kShortCall), "c");
  reply = stub.Who(WhoRequest(), CallOptions::WithTimeout(kShortCall));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->server(), "c");
  EXPECT_NE(DescribeBackends(*channel)[0].state, State::kReady);
}

// ---------------------------------------------------------------------------
// The balancer's threads

// A backend that holds each Hold call until the call is cancelled (its
// connection closed) while `hold`, and answers every call at once
// otherwise.
class Holder final : public Backend::Service {
 public:
  Holder(std::string name, bool hold) : name_(std::move(name)), hold_(hold) {}
  absl::Status Who(ServerContext*, const WhoRequest*, WhoReply* reply) override {
    reply->set_server(name_);
    return absl::OkStatus();
  }
  absl::Status Hold(ServerContext* context, const WhoRequest*, WhoReply* reply) override {
    reply->set_server(name_);
    if (!hold_) return absl::OkStatus();
    {
      absl::MutexLock lock(&mu_);
      ++held_;
    }
    // Bounded: a call nobody cancels ends with the test's watchdog.
    const absl::Time until = absl::Now() + kWatchdog;
    while (!context->IsCancelled() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
    return absl::CancelledError("held until cancelled");
  }
  // Waits (bounded by the watchdog) until it holds a call.
  bool WaitUntilHolding() {
    absl::MutexLock lock(&mu_);
    auto holding = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return held_ > 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&holding), kWatchdog);
  }

 private:
  const std::string name_;
  const bool hold_;
  absl::Mutex mu_;
  int held_ ABSL_GUARDED_BY(mu_) = 0;
};

// More asynchronous calls than the balancer has threads (64) are running
// when every server restarts: they are sent again (retry_sent_calls) and
// wait for backends that reconnect. None may wait for work queued behind
// the others: each ends before its deadline (a watchdog), and the channel
// works on every backend afterwards.
TYPED_TEST(PoolFailoverTest, AsyncCallsOutnumberingThePoolSurviveEveryBackendRestarting) {
  const char* const names[] = {"a", "b", "c"};
  std::vector<std::unique_ptr<Holder>> holders;
  std::vector<std::unique_ptr<Server>> servers;
  std::vector<std::string> addresses;
  auto start = [&](int i, bool hold, const std::string& address) {
    holders[i] = std::make_unique<Holder>(names[i], hold);
    ServerOptions server_options;
    server_options.handler_threads = TypeParam::handler_threads;
    servers[i] = std::make_unique<Server>(server_options);
    ASSERT_TRUE(servers[i]->RegisterService(holders[i].get()).ok());
    ASSERT_TRUE(servers[i]->AddListeningAddress(address).ok());
    absl::Status started = servers[i]->Start();
    ASSERT_TRUE(started.ok()) << started;
    addresses[i] = servers[i]->listening_addresses()[0];
  };
  holders.resize(3);
  servers.resize(3);
  addresses.resize(3);
  for (int i = 0; i < 3; ++i) start(i, /*hold=*/true, this->Listen(names[i]));
  ChannelOptions options = this->Options(LoadBalancingPolicy::kRoundRobin);
  options.balancing.retry_sent_calls = true;
  options.balancing.max_attempts = 1000;
  options.balancing.backoff.initial_backoff = absl::Milliseconds(2);
  options.balancing.backoff.max_backoff = absl::Milliseconds(20);
  std::shared_ptr<Channel> channel = this->ConnectTo(addresses, options);
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  constexpr int kCalls = 240;
  std::vector<Future<WhoReply>> pending;
  for (int i = 0; i < kCalls; ++i) pending.push_back(stub.AsyncHold(WhoRequest(), Watchdog()));
  for (const auto& holder : holders) ASSERT_TRUE(holder->WaitUntilHolding());
  // Every server restarts, on its address; the new ones answer at once.
  for (auto& server : servers) server->Shutdown();
  for (int i = 0; i < 3; ++i) start(i, /*hold=*/false, addresses[i]);
  int answered = 0;
  for (Future<WhoReply>& call : pending) {
    absl::StatusOr<WhoReply> reply = call.Get();
    if (reply.ok()) {
      ++answered;
      continue;
    }
    // Found no backend while every server was down: not a hang.
    EXPECT_TRUE(absl::IsUnavailable(reply.status())) << reply.status();
  }
  std::set<std::string> reached;
  const absl::Time until = absl::Now() + kWatchdog;
  while (reached.size() < 3 && absl::Now() < until) {
    absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
    if (reply.ok()) reached.insert(reply->server());
  }
  EXPECT_EQ(reached.size(), 3u) << answered << " of " << kCalls << " held calls answered";
}

// ---------------------------------------------------------------------------
// Bootstrap objects of a channel to several servers

struct ProcessKind {
  const char* name;
  const char* listen;  // "%s": a temp dir; "%n": the server's name
  const char* transport;
};

const ProcessKind kProcessKinds[] = {
    {"unix", "unix:%s/%n.sock", "unix"},
    {"shm", "shm:%s/%n.sock", "shm"},
    {"tcp", "tcp://127.0.0.1:0", "tcp"},
};

class BootstrapTest : public ::testing::TestWithParam<ProcessKind> {
 protected:
  std::string Listen(const std::string& name) const {
    std::string listen = GetParam().listen;
    if (size_t at = listen.find("%s"); at != std::string::npos) listen.replace(at, 2, dir_.path());
    if (size_t at = listen.find("%n"); at != std::string::npos) listen.replace(at, 2, name);
    return listen;
  }
  TempDir dir_;
};

// Round-robin over a remote server and one in this process (its backend
// calls it in-process): each bootstrap object comes from the one backend
// picked for it, whichever that is.
TEST_P(BootstrapTest, EachBootstrapObjectComesFromOneBackend) {
  ChildProcess remote(LOCUS_BALANCE_BACKEND_PATH, {"remote", Listen("remote")});
  ASSERT_TRUE(remote.ready());
  BackendImpl local_backend("local");
  ServerOptions server_options;
  server_options.bootstrap = std::make_shared<CounterImpl>("local");
  Server local(server_options);
  ASSERT_TRUE(local.RegisterService(&local_backend).ok());
  ASSERT_TRUE(local.AddListeningAddress(Listen("local")).ok());
  ASSERT_TRUE(local.Start().ok());
  ChannelOptions options;
  options.allowed_transports = absl::StrCat("inproc,", GetParam().transport);
  options.balancing.policy = LoadBalancingPolicy::kRoundRobin;
  absl::StatusOr<std::shared_ptr<Channel>> channel =
      Connect(absl::StrCat(remote.addresses()[0], ",", local.listening_addresses()[0]), options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  std::vector<BackendInfo> backends = DescribeBackends(**channel);
  ASSERT_EQ(backends.size(), 2u);
  EXPECT_EQ(backends[0].transport, GetParam().transport);
  EXPECT_EQ(backends[1].transport, "inproc");
  std::set<std::string> owners;
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<Remote<Counter>> bootstrap = Remote<Counter>::Bootstrap(*channel);
    ASSERT_TRUE(bootstrap.ok()) << bootstrap.status();
    absl::StatusOr<NextReply> next = (*bootstrap)->Next(OpenRequest(), Watchdog());
    ASSERT_TRUE(next.ok()) << next.status();
    owners.insert(next->server());
  }
  // The rotation moved one backend per bootstrap object: both served.
  EXPECT_EQ(owners, (std::set<std::string>{"local", "remote"}));
}

INSTANTIATE_TEST_SUITE_P(EveryTransport, BootstrapTest, ::testing::ValuesIn(kProcessKinds),
                         [](const ::testing::TestParamInfo<ProcessKind>& info) { return info.param.name; });
}  // namespace
}  // namespace locus::callmodel
