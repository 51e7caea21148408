// Channels to several servers (locus/balancing.h): round-robin spreads
// calls over every backend, pick-first sticks to one and fails over, a
// backend that goes away under load loses no call, a call a server may have
// seen is not sent twice (unless retry_sent_calls), streams and remote
// objects stay on their backend, dns:/// targets resolve, and each backend
// ends on the transport where its server lives.
//
// BalanceTest runs three servers in this process, for every transport kind
// of the conformance suite (each channel forced onto the kind, as there);
// the tests after it run servers in processes of their own
// (balance_backend_main.cc), to kill one or to have one whose only way in is
// TCP.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "balance_services.h"
#include "conformance_fixture.h"
#include "gtest/gtest.h"
#include "locus/balancing.h"
#include "locus/locus.h"
#include "internal/balanced_channel.h"
#include "internal/interception.h"
#include "locus/object.h"
#include "tests/testing/test_util.h"

namespace locus::callmodel {
namespace {

using ::locus::conformance::CallOutcomes;
using ::locus::conformance::ConfigNames;
using ::locus::conformance::HasIpv6Loopback;
using ::locus::conformance::SiblingAddress;
using ::locus::testing::ChildProcess;
using ::locus::testing::kWatchdog;
using ::locus::testing::TempDir;
using State = BackendInfo::State;

CallOptions Watchdog() { return CallOptions::WithTimeout(kWatchdog); }

const char* const kNames[] = {"a", "b", "c"};
constexpr int kServers = 3;

// Counts calls from several threads and lets a thread wait for a count.
class CallCounter {
 public:
  void Add(const absl::Status& status, const std::string& server) {
    absl::MutexLock lock(&mu_);
    ++calls_;
    if (!status.ok()) {
      if (first_failure_.ok()) first_failure_ = status;
      ++failures_;
      return;
    }
    ++by_server_[server];
  }
  // Waits (bounded by the watchdog) until `count` calls ended.
  bool WaitFor(int64_t count) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return calls_ >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), kWatchdog);
  }
  int64_t calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  int64_t failures() const {
    absl::MutexLock lock(&mu_);
    return failures_;
  }
  absl::Status first_failure() const {
    absl::MutexLock lock(&mu_);
    return first_failure_;
  }
  std::map<std::string, int64_t> by_server() const {
    absl::MutexLock lock(&mu_);
    return by_server_;
  }

 private:
  mutable absl::Mutex mu_;
  int64_t calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status first_failure_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> by_server_ ABSL_GUARDED_BY(mu_);
};

template <typename ConfigT>
class BalanceTest : public ::testing::Test {
 protected:
  using Kind = typename ConfigT::TransportKind;

  void SetUp() override {
    if constexpr (Kind::kIpv6) {
      LOCUS_SKIP_UNLESS_MACHINE(HasIpv6Loopback(), "no IPv6 loopback (::1) on this machine");
    }
    for (int i = 0; i < kServers; ++i) StartServer(i);
  }

  void StartServer(int i) {
    backends_[i] = std::make_unique<BackendImpl>(kNames[i]);
    ServerOptions options;
    options.handler_threads = ConfigT::handler_threads;
    options.bootstrap = std::make_shared<CounterImpl>(kNames[i]);
    servers_[i] = std::make_unique<Server>(options);
    ASSERT_TRUE(servers_[i]->RegisterService(backends_[i].get()).ok());
    const std::string listen = SiblingAddress(Kind::ListenAddress(dir_), dir_, kNames[i]);
    ASSERT_TRUE(servers_[i]->AddListeningAddress(listen).ok());
    absl::Status started = servers_[i]->Start();
    ASSERT_TRUE(started.ok()) << started;
    addresses_[i] = servers_[i]->listening_addresses()[0];
  }

  std::string Target() const { return absl::StrJoin(addresses_, ","); }

  ChannelOptions Options(LoadBalancingPolicy policy) const {
    ChannelOptions options;
    options.allowed_transports = Kind::kTransport;
    options.balancing.policy = policy;
    if (!ConfigT::spin) {
      options.socket_spin = absl::ZeroDuration();
      options.shm_spin = absl::ZeroDuration();
    }
    return options;
  }

  std::shared_ptr<Channel> ConnectAll(const ChannelOptions& options) {
    absl::StatusOr<std::shared_ptr<Channel>> channel = Connect(Target(), options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    return channel.ok() ? *channel : nullptr;
  }

  // The server `name` answered, as each reply says.
  int Index(const std::string& name) const {
    for (int i = 0; i < kServers; ++i) {
      if (name == kNames[i]) return i;
    }
    return -1;
  }

  TempDir dir_;
  std::unique_ptr<BackendImpl> backends_[kServers];
  std::unique_ptr<Server> servers_[kServers];
  std::string addresses_[kServers];
};

template <typename ConfigT>
class ReliableBalanceTest : public BalanceTest<ConfigT> {
  static_assert(ConfigT::TransportKind::kReliable, "needs connections and streams");
};
template <typename ConfigT>
class WireBalanceTest : public BalanceTest<ConfigT> {
  static_assert(ConfigT::TransportKind::kReliable && ConfigT::TransportKind::kHasWire,
                "needs a connection a server can close under a call");
};

using ::locus::conformance::InProcessInline;
using ::locus::conformance::InProcessPool;
using ::locus::conformance::ShmAbstractInline;
using ::locus::conformance::ShmInline;
using ::locus::conformance::ShmPool;
using ::locus::conformance::Tcp4Inline;
using ::locus::conformance::Tcp4InlineNoSpin;
using ::locus::conformance::Tcp4Pool;
using ::locus::conformance::Tcp6Inline;
using ::locus::conformance::Udp4Inline;
using ::locus::conformance::Udp4Pool;
using ::locus::conformance::UnixAbstractInline;
using ::locus::conformance::UnixInline;
using ::locus::conformance::UnixPool;
using BalanceKinds = ::testing::Types<UnixInline, UnixAbstractInline, Tcp4Inline, Tcp6Inline, ShmInline,
                                      ShmAbstractInline, InProcessInline, Udp4Inline, UnixPool, Tcp4Pool,
                                      ShmPool, InProcessPool, Udp4Pool, Tcp4InlineNoSpin>;
using ReliableBalanceKinds =
    ::testing::Types<UnixInline, UnixAbstractInline, Tcp4Inline, Tcp6Inline, ShmInline, ShmAbstractInline,
                     InProcessInline, UnixPool, Tcp4Pool, ShmPool, InProcessPool, Tcp4InlineNoSpin>;
using WireBalanceKinds = ::testing::Types<UnixInline, Tcp4Inline, ShmInline, UnixPool, Tcp4Pool, ShmPool>;

TYPED_TEST_SUITE(BalanceTest, BalanceKinds, ConfigNames);
TYPED_TEST_SUITE(ReliableBalanceTest, ReliableBalanceKinds, ConfigNames);
TYPED_TEST_SUITE(WireBalanceTest, WireBalanceKinds, ConfigNames);

// Round-robin gave each server its share of `calls`: exactly on reliable
// kinds; on datagram kinds a call whose request was lost never reached its
// server (CallOutcomes allows a few), so at most the share, and in all at
// least the calls that succeeded less those lost.
void ExpectEvenShares(const std::unique_ptr<BackendImpl> (&backends)[kServers], bool reliable, int calls) {
  int64_t served = 0;
  for (int i = 0; i < kServers; ++i) {
    const int64_t got = backends[i]->calls();
    served += got;
    if (reliable) {
      EXPECT_EQ(got, calls / kServers) << kNames[i];
    } else {
      EXPECT_LE(got, calls / kServers) << kNames[i];
    }
  }
  // At most 1% lost (CallOutcomes::Check).
  if (!reliable) {
    EXPECT_GE(served * 100, calls * 99 - 100);
  }
}

TYPED_TEST(BalanceTest, RoundRobinSpreadsCallsOverEveryBackend) {
  using Kind = typename TestFixture::Kind;
  std::shared_ptr<Channel> channel = this->ConnectAll(this->Options(LoadBalancingPolicy::kRoundRobin));
  ASSERT_NE(channel, nullptr);
  // Connect returns once every backend connected: each on the kind.
  std::vector<BackendInfo> backends = DescribeBackends(*channel);
  ASSERT_EQ(backends.size(), kServers);
  for (int i = 0; i < kServers; ++i) {
    EXPECT_EQ(backends[i].address, this->addresses_[i]);
    EXPECT_EQ(backends[i].state, State::kReady) << backends[i].last_error;
    EXPECT_EQ(backends[i].transport, Kind::kTransport);
  }
  EXPECT_EQ(channel->transport_name(), Kind::kTransport);
  EXPECT_EQ(channel->target(), this->Target());

  Backend::Stub stub(channel);
  CallOutcomes outcomes(Kind::kReliable);
  constexpr int kCalls = 30;
  for (int i = 0; i < kCalls; ++i) {
    WhoRequest request;
    request.set_data(absl::StrCat("call ", i));
    absl::StatusOr<WhoReply> reply = stub.Who(request, outcomes.Options());
    if (!outcomes.Record(reply.status())) continue;
    EXPECT_EQ(reply->data(), request.data());
    EXPECT_EQ(reply->transport(), Kind::kTransport);
    // The rotation: a, b, c, a, ...
    EXPECT_EQ(reply->server(), kNames[i % kServers]);
  }
  outcomes.Check();
  ExpectEvenShares(this->backends_, Kind::kReliable, kCalls);
}

TYPED_TEST(BalanceTest, RoundRobinSpreadsAsynchronousCalls) {
  using Kind = typename TestFixture::Kind;
  std::shared_ptr<Channel> channel = this->ConnectAll(this->Options(LoadBalancingPolicy::kRoundRobin));
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  CallOutcomes outcomes(Kind::kReliable);
  constexpr int kCalls = 30;
  std::vector<Future<WhoReply>> pending;
  for (int i = 0; i < kCalls; ++i) {
    WhoRequest request;
    request.set_data(absl::StrCat("call ", i));
    pending.push_back(stub.AsyncWho(request, outcomes.Options()));
  }
  std::map<std::string, int> by_server;
  for (int i = 0; i < kCalls; ++i) {
    absl::StatusOr<WhoReply> reply = pending[i].Get();
    if (!outcomes.Record(reply.status())) continue;
    EXPECT_EQ(reply->data(), absl::StrCat("call ", i));
    ++by_server[reply->server()];
  }
  outcomes.Check();
  ExpectEvenShares(this->backends_, Kind::kReliable, kCalls);
}

// Counts the calls interceptors see, and the status each ended with.
class CountingInterceptorFactory final : public ClientInterceptorFactory {
 public:
  std::unique_ptr<ClientInterceptor> Create(const ClientCallInfo&) override {
    return std::make_unique<Counter>(this);
  }
  int started() const { return started_.load(); }
  int finished_ok() const { return finished_ok_.load(); }

 private:
  class Counter final : public ClientInterceptor {
   public:
    explicit Counter(CountingInterceptorFactory* factory) : factory_(factory) {}
    absl::Status OnStart(ClientCallInfo&) override {
      factory_->started_.fetch_add(1);
      return absl::OkStatus();
    }
    void OnFinish(ClientCallInfo&, absl::Status& status) override {
      if (status.ok()) factory_->finished_ok_.fetch_add(1);
    }

   private:
    CountingInterceptorFactory* factory_;
  };
  std::atomic<int> started_{0};
  std::atomic<int> finished_ok_{0};
};

// Interceptors wrap the balanced channel once: each call is seen once,
// whichever backend runs it, and the channel still describes its backends.
TYPED_TEST(BalanceTest, InterceptorsSeeEachCallOnceAboveTheBackends) {
  using Kind = typename TestFixture::Kind;
  auto counting = std::make_shared<CountingInterceptorFactory>();
  ChannelOptions options = this->Options(LoadBalancingPolicy::kRoundRobin);
  options.interceptors.push_back(counting);
  std::shared_ptr<Channel> channel = this->ConnectAll(options);
  ASSERT_NE(channel, nullptr);
  EXPECT_EQ(DescribeBackends(*channel).size(), kServers);

  Backend::Stub stub(channel);
  CallOutcomes outcomes(Kind::kReliable);
  constexpr int kCalls = 12;
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    WhoRequest request;
    request.set_data(absl::StrCat("call ", i));
    absl::StatusOr<WhoReply> reply =
        i % 2 == 0 ? stub.Who(request, outcomes.Options()) : stub.AsyncWho(request, outcomes.Options()).Get();
    if (outcomes.Record(reply.status())) ++ok;
  }
  outcomes.Check();
  EXPECT_EQ(counting->started(), kCalls);
  EXPECT_EQ(counting->finished_ok(), ok);
  int served = 0;
  for (int i = 0; i < kServers; ++i) served += this->backends_[i]->calls();
  // A datagram reply can be lost after its server ran the call.
  if (Kind::kReliable) {
    EXPECT_EQ(served, ok);
  } else {
    EXPECT_GE(served, ok);
  }
}

TYPED_TEST(BalanceTest, PickFirstIsTheDefaultAndSticksToTheFirstBackend) {
  using Kind = typename TestFixture::Kind;
  ChannelOptions options = this->Options(LoadBalancingPolicy::kPickFirst);
  EXPECT_EQ(ChannelOptions().balancing.policy, LoadBalancingPolicy::kPickFirst);
  std::shared_ptr<Channel> channel = this->ConnectAll(options);
  ASSERT_NE(channel, nullptr);
  // Only the first was connected; the others wait until it fails.
  std::vector<BackendInfo> backends = DescribeBackends(*channel);
  ASSERT_EQ(backends.size(), kServers);
  EXPECT_EQ(backends[0].state, State::kReady);
  EXPECT_EQ(backends[0].transport, Kind::kTransport);
  EXPECT_EQ(backends[1].state, State::kIdle);
  EXPECT_EQ(backends[2].state, State::kIdle);
  EXPECT_EQ(channel->transport_name(), Kind::kTransport);

  Backend::Stub stub(channel);
  CallOutcomes outcomes(Kind::kReliable);
  constexpr int kCalls = 20;
  for (int i = 0; i < kCalls; ++i) {
    absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), outcomes.Options());
    if (outcomes.Record(reply.status())) {
      EXPECT_EQ(reply->server(), "a");
    }
  }
  std::vector<Future<WhoReply>> pending;
  for (int i = 0; i < kCalls; ++i) pending.push_back(stub.AsyncWho(WhoRequest(), outcomes.Options()));
  for (auto& future : pending) {
    absl::StatusOr<WhoReply> reply = future.Get();
    if (outcomes.Record(reply.status())) {
      EXPECT_EQ(reply->server(), "a");
    }
  }
  outcomes.Check();
  EXPECT_EQ(this->backends_[0]->calls(), 2 * kCalls);
  EXPECT_EQ(this->backends_[1]->calls(), 0);
  EXPECT_EQ(this->backends_[2]->calls(), 0);
}

TYPED_TEST(ReliableBalanceTest, PickFirstFailsOverWhenItsBackendGoesAway) {
  using Kind = typename TestFixture::Kind;
  std::shared_ptr<Channel> channel = this->ConnectAll(this->Options(LoadBalancingPolicy::kPickFirst));
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  for (int gone = 0; gone < kServers - 1; ++gone) {
    for (int i = 0; i < 5; ++i) {
      absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
      ASSERT_TRUE(reply.ok()) << reply.status();
      EXPECT_EQ(reply->server(), kNames[gone]);
    }
    this->servers_[gone]->Shutdown();
    // Every call succeeds: the first after the shutdown was refused before
    // the server saw it (its GOAWAY, a closed connection, a refused
    // connection) and went to the next backend, where the others follow.
    for (int i = 0; i < 5; ++i) {
      absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
      ASSERT_TRUE(reply.ok()) << reply.status();
      EXPECT_EQ(reply->server(), kNames[gone + 1]);
      EXPECT_EQ(reply->transport(), Kind::kTransport);
    }
    std::vector<BackendInfo> backends = DescribeBackends(*channel);
    EXPECT_NE(backends[gone].state, State::kReady);
    EXPECT_FALSE(backends[gone].last_error.ok());
    EXPECT_EQ(backends[gone + 1].state, State::kReady);
  }
  // The last one goes too: nothing is left, and calls fail at once,
  // UNAVAILABLE, naming why.
  this->servers_[kServers - 1]->Shutdown();
  absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
  EXPECT_TRUE(absl::IsUnavailable(reply.status())) << reply.status();
  EXPECT_NE(reply.status().message().find("no backend"), std::string::npos) << reply.status();
  ClientReaderWriter<WhoRequest, WhoReply> chat = stub.Chat(Watchdog());
  EXPECT_TRUE(absl::IsUnavailable(chat.Finish()));
}

// A steady load of calls with deadlines (a window of asynchronous calls
// and synchronous ones between them) while one of the three servers shuts
// down: no call fails. Calls it was running finish (graceful shutdown);
// those it refused (GOAWAY) and those that find it gone go to the others.
// One thread issues every call, so each connection carries its call ids in
// increasing order, which GOAWAY's last processed id needs to be exact
// (docs/architecture.md, "Channels to several servers").
TYPED_TEST(ReliableBalanceTest, NoCallFailsWhileABackendShutsDownUnderLoad) {
  std::shared_ptr<Channel> channel = this->ConnectAll(this->Options(LoadBalancingPolicy::kRoundRobin));
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  CallCounter counter;
  absl::Notification shut_down;
  int64_t served_by_b = 0;
  std::thread stopper([&] {
    if (!counter.WaitFor(60)) return;
    this->servers_[1]->Shutdown(absl::Now() + kWatchdog);
    served_by_b = this->backends_[1]->calls();
    shut_down.Notify();
  });
  constexpr int kWindow = 6;
  std::vector<Future<WhoReply>> window;
  int64_t calls_after_shutdown = 0;
  while (calls_after_shutdown < 60) {
    if (shut_down.HasBeenNotified()) ++calls_after_shutdown;
    if (window.size() == kWindow) {
      absl::StatusOr<WhoReply> reply = window.front().Get();
      counter.Add(reply.status(), reply.ok() ? reply->server() : "");
      window.erase(window.begin());
    }
    window.push_back(stub.AsyncWho(WhoRequest(), Watchdog()));
    absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
    counter.Add(reply.status(), reply.ok() ? reply->server() : "");
    if (counter.calls() > 100000) break;  // the stopper gave up (watchdog)
  }
  for (Future<WhoReply>& pending : window) {
    absl::StatusOr<WhoReply> reply = pending.Get();
    counter.Add(reply.status(), reply.ok() ? reply->server() : "");
  }
  stopper.join();
  ASSERT_TRUE(shut_down.HasBeenNotified());
  EXPECT_EQ(counter.failures(), 0) << "of " << counter.calls() << "; the first: " << counter.first_failure();
  EXPECT_EQ(this->backends_[1]->calls(), served_by_b) << "b served calls after its shutdown";
  EXPECT_GT(served_by_b, 0);
  const std::map<std::string, int64_t> by_server = counter.by_server();
  EXPECT_GT(by_server.count("a") ? by_server.at("a") : 0, 0);
  EXPECT_GT(by_server.count("c") ? by_server.at("c") : 0, 0);
  EXPECT_NE(DescribeBackends(*channel)[1].state, State::kReady);
}

// A backend that is down when the channel connects is skipped; once it
// is back, it is tried again when its backoff is over and gets its share.
TYPED_TEST(ReliableBalanceTest, AFailingBackendIsTriedAgainAfterItsBackoff) {
  this->servers_[1]->Shutdown();
  ChannelOptions options = this->Options(LoadBalancingPolicy::kRoundRobin);
  options.balancing.backoff.initial_backoff = absl::Milliseconds(20);
  options.balancing.backoff.max_backoff = absl::Milliseconds(100);
  std::shared_ptr<Channel> channel = this->ConnectAll(options);
  ASSERT_NE(channel, nullptr);
  std::vector<BackendInfo> backends = DescribeBackends(*channel);
  EXPECT_EQ(backends[0].state, State::kReady);
  EXPECT_EQ(backends[1].state, State::kFailing);
  EXPECT_FALSE(backends[1].last_error.ok());
  EXPECT_EQ(backends[1].transport, "none");
  EXPECT_EQ(backends[2].state, State::kReady);
  Backend::Stub stub(channel);
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_NE(reply->server(), "b");
  }
  // b again, on the same address.
  this->backends_[1] = std::make_unique<BackendImpl>("b");
  ServerOptions server_options;
  server_options.handler_threads = TypeParam::handler_threads;
  this->servers_[1] = std::make_unique<Server>(server_options);
  ASSERT_TRUE(this->servers_[1]->RegisterService(this->backends_[1].get()).ok());
  ASSERT_TRUE(this->servers_[1]->AddListeningAddress(this->addresses_[1]).ok());
  absl::Status started = this->servers_[1]->Start();
  ASSERT_TRUE(started.ok()) << started;
  // Calls go on until one reaches b (its next try comes with a call).
  const absl::Time until = absl::Now() + kWatchdog;
  bool reached = false;
  while (!reached && absl::Now() < until) {
    absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
    ASSERT_TRUE(reply.ok()) << reply.status();
    reached = reply->server() == "b";
  }
  ASSERT_TRUE(reached);
  EXPECT_EQ(DescribeBackends(*channel)[1].state, State::kReady);
  EXPECT_TRUE(DescribeBackends(*channel)[1].last_error.ok());
}

// A call the server was running when its connection went away may have
// had its effect: it fails (UNAVAILABLE) rather than run again elsewhere.
TYPED_TEST(WireBalanceTest, ACallTheServerMayHaveSeenIsNotSentAgain) {
  std::shared_ptr<Channel> channel = this->ConnectAll(this->Options(LoadBalancingPolicy::kPickFirst));
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  WhoRequest request;
  request.set_hold_on("a");
  Future<WhoReply> held = stub.AsyncHold(request, Watchdog());
  this->backends_[0]->holding().WaitForNotification();
  this->servers_[0]->Shutdown();  // closes the connection under the call
  absl::StatusOr<WhoReply> reply = held.Get();
  EXPECT_TRUE(absl::IsUnavailable(reply.status())) << reply.status();
  EXPECT_EQ(this->backends_[1]->calls(), 0);
  EXPECT_EQ(this->backends_[2]->calls(), 0);
  // The next call finds the backend gone before any server saw it.
  absl::StatusOr<WhoReply> next = stub.Who(WhoRequest(), Watchdog());
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->server(), "b");
}

TYPED_TEST(WireBalanceTest, RetrySentCallsSendsSuchACallToAnotherBackend) {
  ChannelOptions options = this->Options(LoadBalancingPolicy::kPickFirst);
  options.balancing.retry_sent_calls = true;
  std::shared_ptr<Channel> channel = this->ConnectAll(options);
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  WhoRequest request;
  request.set_hold_on("a");
  Future<WhoReply> held = stub.AsyncHold(request, Watchdog());
  this->backends_[0]->holding().WaitForNotification();
  this->servers_[0]->Shutdown();
  absl::StatusOr<WhoReply> reply = held.Get();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->server(), "b");
  // Synchronously too.
  request.set_hold_on("b");
  absl::Notification done;
  absl::StatusOr<WhoReply> sync_reply;
  std::thread caller([&] {
    sync_reply = stub.Hold(request, Watchdog());
    done.Notify();
  });
  this->backends_[1]->holding().WaitForNotification();
  this->servers_[1]->Shutdown();
  done.WaitForNotification();
  caller.join();
  ASSERT_TRUE(sync_reply.ok()) << sync_reply.status();
  EXPECT_EQ(sync_reply->server(), "c");
}

TYPED_TEST(ReliableBalanceTest, StreamsStayOnTheirBackend) {
  using Kind = typename TestFixture::Kind;
  std::shared_ptr<Channel> channel = this->ConnectAll(this->Options(LoadBalancingPolicy::kRoundRobin));
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  std::vector<ClientReaderWriter<WhoRequest, WhoReply>> chats;
  std::vector<std::string> servers;
  for (int s = 0; s < kServers; ++s) chats.push_back(stub.Chat(Watchdog()));
  for (int s = 0; s < kServers; ++s) {
    for (int m = 0; m < 5; ++m) {
      WhoRequest request;
      request.set_data(absl::StrCat(s, "/", m));
      ASSERT_TRUE(chats[s].Write(request));
      // Unary calls in between rotate on; the stream does not move.
      ASSERT_TRUE(stub.Who(WhoRequest(), Watchdog()).ok());
      WhoReply reply;
      ASSERT_TRUE(chats[s].Read(&reply));
      EXPECT_EQ(reply.data(), request.data());
      EXPECT_EQ(reply.transport(), Kind::kTransport);
      if (m == 0) servers.push_back(reply.server());
      EXPECT_EQ(reply.server(), servers[s]);
    }
  }
  EXPECT_EQ(std::set<std::string>(servers.begin(), servers.end()).size(), kServers) << "one stream per backend";
  // The server of the first stream goes away: that stream ends, the others
  // go on.
  const int gone = this->Index(servers[0]);
  ASSERT_GE(gone, 0);
  this->servers_[gone]->Shutdown();
  WhoReply reply;
  EXPECT_FALSE(chats[0].Read(&reply));
  EXPECT_FALSE(chats[0].Finish().ok());
  for (int s = 1; s < kServers; ++s) {
    WhoRequest request;
    request.set_data("still here");
    ASSERT_TRUE(chats[s].Write(request));
    ASSERT_TRUE(chats[s].Read(&reply));
    EXPECT_EQ(reply.server(), servers[s]);
    ASSERT_TRUE(chats[s].WritesDone());
    EXPECT_FALSE(chats[s].Read(&reply));
    EXPECT_TRUE(chats[s].Finish().ok());
  }
  // New streams avoid the backend that went away.
  ClientReaderWriter<WhoRequest, WhoReply> chat = stub.Chat(Watchdog());
  ASSERT_TRUE(chat.Write(WhoRequest()));
  ASSERT_TRUE(chat.Read(&reply));
  EXPECT_NE(reply.server(), servers[0]);
  ASSERT_TRUE(chat.WritesDone());
  EXPECT_TRUE(chat.Finish().ok());
}

TYPED_TEST(ReliableBalanceTest, RemoteObjectsStayWithTheServerThatHandedThemOut) {
  std::shared_ptr<Channel> channel = this->ConnectAll(this->Options(LoadBalancingPolicy::kRoundRobin));
  ASSERT_NE(channel, nullptr);
  Backend::Stub stub(channel);
  std::set<std::string> owners;
  for (int i = 0; i < kServers; ++i) {
    absl::StatusOr<OpenReply> opened = stub.Open(OpenRequest(), Watchdog());
    ASSERT_TRUE(opened.ok()) << opened.status();
    absl::StatusOr<Remote<Counter>> counter = Remote<Counter>::From(opened->counter());
    ASSERT_TRUE(counter.ok()) << counter.status();
    std::string owner;
    for (int value = 1; value <= 3; ++value) {
      // Calls on the channel in between rotate over the backends.
      ASSERT_TRUE(stub.Who(WhoRequest(), Watchdog()).ok());
      absl::StatusOr<NextReply> next = (*counter)->Next(OpenRequest(), Watchdog());
      ASSERT_TRUE(next.ok()) << next.status();
      EXPECT_EQ(next->value(), value);
      if (value == 1) owner = next->server();
      EXPECT_EQ(next->server(), owner);
    }
    owners.insert(owner);
  }
  EXPECT_EQ(owners.size(), kServers);
  // The bootstrap object of one of the servers.
  absl::StatusOr<Remote<Counter>> bootstrap = Remote<Counter>::Bootstrap(channel);
  ASSERT_TRUE(bootstrap.ok()) << bootstrap.status();
  absl::StatusOr<NextReply> next = (*bootstrap)->Next(OpenRequest(), Watchdog());
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_GE(this->Index(next->server()), 0);
}

// ---------------------------------------------------------------------------
// Targets

TEST(BalancedTarget, DnsNameResolvesToItsAddresses) {
  BackendImpl backend("a");
  Server server;
  ASSERT_TRUE(server.RegisterService(&backend).ok());
  ASSERT_TRUE(server.AddListeningAddress("tcp://127.0.0.1:0").ok());
  ASSERT_TRUE(server.Start().ok());
  const std::string address = server.listening_addresses()[0];
  const std::string port = address.substr(address.rfind(':') + 1);
  for (LoadBalancingPolicy policy : {LoadBalancingPolicy::kPickFirst, LoadBalancingPolicy::kRoundRobin}) {
    ChannelOptions options;
    options.allowed_transports = "tcp";
    options.balancing.policy = policy;
    absl::StatusOr<std::shared_ptr<Channel>> channel = Connect("dns:///localhost:" + port, options);
    ASSERT_TRUE(channel.ok()) << channel.status();
    // localhost may also resolve to ::1, where nothing listens.
    bool found = false;
    for (const BackendInfo& info : DescribeBackends(**channel)) {
      if (info.address != address) continue;
      found = true;
      EXPECT_EQ(info.state, State::kReady) << info.last_error;
      EXPECT_EQ(info.transport, "tcp");
    }
    EXPECT_TRUE(found) << address << " is not among the backends of localhost";
    Backend::Stub stub(*channel);
    for (int i = 0; i < 4; ++i) {
      absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
      ASSERT_TRUE(reply.ok()) << reply.status();
      EXPECT_EQ(reply->server(), "a");
      EXPECT_EQ(reply->transport(), "tcp");
    }
  }
  // The short form resolves too.
  absl::StatusOr<std::shared_ptr<Channel>> channel = Connect("dns:localhost:" + port);
  ASSERT_TRUE(channel.ok()) << channel.status();
}

// Resolving again keeps the backends whose address is still named, with
// their connections: each server sees one client connection throughout.
TEST(BalancedTarget, ResolvingAgainKeepsTheBackendsItStillNames) {
  BackendImpl backend("a");
  Server server;
  ASSERT_TRUE(server.RegisterService(&backend).ok());
  ASSERT_TRUE(server.AddListeningAddress("tcp://127.0.0.1:0").ok());
  ASSERT_TRUE(server.Start().ok());
  const std::string address = server.listening_addresses()[0];
  ChannelOptions options;
  options.allowed_transports = "tcp";
  options.balancing.policy = LoadBalancingPolicy::kRoundRobin;
  options.balancing.resolve_interval = absl::Milliseconds(1);
  absl::StatusOr<std::shared_ptr<Channel>> channel =
      Connect("dns:///localhost:" + address.substr(address.rfind(':') + 1), options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  Backend::Stub stub(*channel);
  const auto* balanced =
      dynamic_cast<const internal::BalancedChannel*>(&internal::UninterceptedChannel(**channel));
  ASSERT_NE(balanced, nullptr);
  // Calls go on until several resolutions finished (bounded by the watchdog).
  std::set<std::string> clients;
  const absl::Time until = absl::Now() + kWatchdog;
  int calls = 0;
  while ((balanced->resolutions() < 3 || calls < 20) && absl::Now() < until) {
    absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
    ASSERT_TRUE(reply.ok()) << reply.status();
    clients.insert(reply->client());
    ++calls;
  }
  EXPECT_GE(balanced->resolutions(), 3u);
  EXPECT_EQ(clients.size(), 1u) << absl::StrJoin(clients, ", ");
}

TEST(BalancedTarget, BadTargetsAreRefusedClearly) {
  for (const char* target : {"tcp://127.0.0.1:1,", ",tcp://127.0.0.1:1", "nonsense:1,tcp://127.0.0.1:1",
                             "dns://8.8.8.8/localhost:80", "dns:///localhost", "dns:///localhost:0",
                             "dns:///localhost:http", "fd:3,fd:4", "tcp://127.0.0.1:1,localhost",
                             "tcp://127.0.0.1:1,127.0.0.1:0", "dns:///fe80::1:80"}) {
    absl::StatusOr<std::shared_ptr<Channel>> channel = Connect(target);
    EXPECT_TRUE(absl::IsInvalidArgument(channel.status())) << target << ": " << channel.status();
  }
  // Nothing listens: UNAVAILABLE, naming each backend.
  absl::StatusOr<std::shared_ptr<Channel>> channel = Connect("unix:/nonexistent/a.sock,unix:/nonexistent/b.sock");
  EXPECT_TRUE(absl::IsUnavailable(channel.status())) << channel.status();
  EXPECT_NE(channel.status().message().find("unix:/nonexistent/a.sock"), std::string::npos) << channel.status();
  EXPECT_NE(channel.status().message().find("unix:/nonexistent/b.sock"), std::string::npos) << channel.status();
  ChannelOptions round_robin;
  round_robin.balancing.policy = LoadBalancingPolicy::kRoundRobin;
  channel = Connect("unix:/nonexistent/a.sock,unix:/nonexistent/b.sock", round_robin);
  EXPECT_TRUE(absl::IsUnavailable(channel.status())) << channel.status();
}

// ---------------------------------------------------------------------------
// Servers in processes of their own

std::string PortOf(const std::string& address) { return address.substr(address.rfind(':') + 1); }

// A backend on this host is reached over shared memory; two whose only way
// in is TCP (they listen on no Unix socket, like servers on other hosts)
// stay on TCP. Each backend of one channel chose its own transport.
TEST(BalancedProcesses, EachBackendEndsWhereItsServerLives) {
  TempDir dir;
  ChildProcess a(LOCUS_BALANCE_BACKEND_PATH, {"a", "shm:" + dir.path() + "/a.sock", "tcp://127.0.0.1:0"});
  ChildProcess b(LOCUS_BALANCE_BACKEND_PATH, {"b", "tcp://127.0.0.1:0"});
  ChildProcess c(LOCUS_BALANCE_BACKEND_PATH, {"c", "tcp://127.0.0.1:0"});
  ASSERT_TRUE(a.ready() && b.ready() && c.ready());
  ASSERT_EQ(a.addresses().size(), 2u);
  // One scheme for the list: the elements after the first take it.
  const std::string target = absl::StrCat(a.addresses()[1], ",127.0.0.1:", PortOf(b.addresses()[0]),
                                          ",127.0.0.1:", PortOf(c.addresses()[0]));
  ChannelOptions options;
  options.balancing.policy = LoadBalancingPolicy::kRoundRobin;
  absl::StatusOr<std::shared_ptr<Channel>> channel = Connect(target, options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  std::vector<BackendInfo> backends = DescribeBackends(**channel);
  ASSERT_EQ(backends.size(), 3u);
  EXPECT_EQ(backends[0].transport, "shm");
  EXPECT_EQ(backends[1].transport, "tcp");
  EXPECT_EQ(backends[2].transport, "tcp");
  EXPECT_EQ(backends[1].address, b.addresses()[0]);
  EXPECT_EQ((*channel)->transport_name(), "shm,tcp");
  Backend::Stub stub(*channel);
  std::map<std::string, std::string> transports;
  for (int i = 0; i < 9; ++i) {
    absl::StatusOr<WhoReply> reply = stub.Who(WhoRequest(), Watchdog());
    ASSERT_TRUE(reply.ok()) << reply.status();
    transports[reply->server()] = reply->transport();
  }
  EXPECT_EQ(transports["a"], "shm");
  EXPECT_EQ(transports["b"], "tcp");
  EXPECT_EQ(transports["c"], "tcp");
}

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

class KillTest : public ::testing::TestWithParam<ProcessKind> {
 protected:
  std::string Listen(const std::string& name) const {
    std::string listen = GetParam().listen;
    if (size_t at = listen.find("%s"); at != std::string::npos) listen.replace(at, 2, dir_.path());
    if (size_t at = listen.find("%n"); at != std::string::npos) listen.replace(at, 2, name);
    return listen;
  }
  TempDir dir_;
};

// Three servers, steady calls with deadlines from three threads, and one
// server killed mid-run: every call succeeds. The methods may run twice
// (retry_sent_calls), so the calls the killed server was running are sent
// to the others as well as those that find it gone.
TEST_P(KillTest, KillingOneOfThreeServersMidRunLosesNoCall) {
  std::vector<std::unique_ptr<ChildProcess>> children;
  std::vector<std::string> addresses;
  for (const char* name : kNames) {
    children.push_back(std::make_unique<ChildProcess>(LOCUS_BALANCE_BACKEND_PATH,
                                                      std::vector<std::string>{name, Listen(name)}));
    ASSERT_TRUE(children.back()->ready());
    addresses.push_back(children.back()->addresses()[0]);
  }
  ChannelOptions options;
  options.allowed_transports = GetParam().transport;
  options.balancing.policy = LoadBalancingPolicy::kRoundRobin;
  options.balancing.retry_sent_calls = true;
  absl::StatusOr<std::shared_ptr<Channel>> channel = Connect(absl::StrJoin(addresses, ","), options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  for (const BackendInfo& info : DescribeBackends(**channel)) EXPECT_EQ(info.transport, GetParam().transport);
  Backend::Stub stub(*channel);
  CallCounter counter;
  std::atomic<bool> stop{false};
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t) {
    callers.emplace_back([&, t] {
      while (!stop.load()) {
        const CallOptions call_options = CallOptions::WithTimeout(absl::Seconds(20));
        absl::StatusOr<WhoReply> reply = t == 2 ? stub.AsyncWho(WhoRequest(), call_options).Get()
                                                : stub.Who(WhoRequest(), call_options);
        counter.Add(reply.status(), reply.ok() ? reply->server() : "");
      }
    });
  }
  ASSERT_TRUE(counter.WaitFor(90));
  children[1]->Kill();
  const int64_t by_b = counter.by_server()["b"];
  const int64_t after = counter.calls() + 90;
  EXPECT_TRUE(counter.WaitFor(after));
  stop = true;
  for (std::thread& caller : callers) caller.join();
  EXPECT_EQ(counter.failures(), 0) << "of " << counter.calls() << "; the first: " << counter.first_failure();
  std::map<std::string, int64_t> by_server = counter.by_server();
  EXPECT_GT(by_b, 0);
  // Replies from b after the kill can only be calls it had answered already.
  EXPECT_LE(by_server["b"], by_b + 3);
  EXPECT_GT(by_server["a"], 0);
  EXPECT_GT(by_server["c"], 0);
  std::vector<BackendInfo> backends = DescribeBackends(**channel);
  EXPECT_NE(backends[1].state, State::kReady);
  EXPECT_FALSE(backends[1].last_error.ok());
  EXPECT_EQ(backends[0].state, State::kReady);
  EXPECT_EQ(backends[2].state, State::kReady);
}

// The default (retry_sent_calls = false): killing one of three servers
// mid-run fails only calls that server had in flight (each thread has one
// at a time), and no request runs twice: calls it never saw go to the
// others, the others fail. Each server logs the requests it ran.
TEST_P(KillTest, KillingOneOfThreeServersFailsOnlyTheCallsItHadInFlight) {
  std::vector<std::unique_ptr<ChildProcess>> children;
  std::vector<std::string> addresses;
  for (const char* name : kNames) {
    children.push_back(std::make_unique<ChildProcess>(
        LOCUS_BALANCE_BACKEND_PATH, std::vector<std::string>{name, Listen(name)},
        std::vector<std::string>{absl::StrCat("LOCUS_BALANCE_LOG=", dir_.path(), "/", name, ".log")}));
    ASSERT_TRUE(children.back()->ready());
    addresses.push_back(children.back()->addresses()[0]);
  }
  ChannelOptions options;
  options.allowed_transports = GetParam().transport;
  options.balancing.policy = LoadBalancingPolicy::kRoundRobin;
  absl::StatusOr<std::shared_ptr<Channel>> channel = Connect(absl::StrJoin(addresses, ","), options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  Backend::Stub stub(*channel);
  CallCounter counter;
  absl::Mutex mu;
  std::vector<std::string> failed_ids;
  std::vector<std::string> answered_ids;
  std::atomic<bool> stop{false};
  constexpr int kThreads = 3;
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      for (int n = 0; !stop.load(); ++n) {
        WhoRequest request;
        request.set_data(absl::StrCat("t", t, "-", n));
        const CallOptions call_options = CallOptions::WithTimeout(absl::Seconds(20));
        absl::StatusOr<WhoReply> reply = t == 2 ? stub.AsyncWho(request, call_options).Get()
                                                : stub.Who(request, call_options);
        counter.Add(reply.status(), reply.ok() ? reply->server() : "");
        absl::MutexLock lock(&mu);
        if (reply.ok()) {
          answered_ids.push_back(request.data());
        } else {
          EXPECT_TRUE(absl::IsUnavailable(reply.status())) << reply.status();
          failed_ids.push_back(request.data());
        }
      }
    });
  }
  ASSERT_TRUE(counter.WaitFor(90));
  children[1]->Kill();
  const int64_t after = counter.calls() + 90;
  EXPECT_TRUE(counter.WaitFor(after));
  stop = true;
  for (std::thread& caller : callers) caller.join();
  EXPECT_LE(counter.failures(), kThreads) << "of " << counter.calls() << "; the first: " << counter.first_failure();
  // Who ran what: no request twice, each answered one once, and no failed
  // one on a server still running.
  std::map<std::string, int> runs;
  std::map<std::string, std::string> ran_on;
  for (const char* name : kNames) {
    std::ifstream log(absl::StrCat(dir_.path(), "/", name, ".log"));
    for (std::string line; std::getline(log, line);) {
      ++runs[line];
      ran_on[line] = name;
    }
  }
  for (const auto& [id, count] : runs) EXPECT_EQ(count, 1) << id << " ran " << count << " times";
  for (const std::string& id : answered_ids) EXPECT_EQ(runs[id], 1) << id;
  for (const std::string& id : failed_ids) {
    if (runs.count(id) != 0) {
      EXPECT_EQ(ran_on[id], "b") << id << " failed, but " << ran_on[id] << " ran it";
    }
  }
  const std::map<std::string, int64_t> by_server = counter.by_server();
  EXPECT_GT(by_server.count("a") ? by_server.at("a") : 0, 0);
  EXPECT_GT(by_server.count("c") ? by_server.at("c") : 0, 0);
}

INSTANTIATE_TEST_SUITE_P(EveryTransport, KillTest, ::testing::ValuesIn(kProcessKinds),
                         [](const ::testing::TestParamInfo<ProcessKind>& info) { return info.param.name; });

}  // namespace
}  // namespace locus::callmodel
