// The fixture of the connection-life tests (connlife_*_test.cc): a server
// with the conformance TestService and the FlakyService, and a channel to
// it that stays on the configuration's transport, both with the options a
// test asks for; for every kind of the conformance suite
// (tests/conformance/conformance_fixture.h).
//
// Example:
//   template <typename C> class Retries : public ConnLife<C> {};
//   TYPED_TEST_SUITE(Retries, TransportKinds, ConfigNames);
//   TYPED_TEST(Retries, Foo) {
//     this->Start(ServerOptions{}, ChannelOptions{});
//     EXPECT_TRUE(this->flaky_stub_->Call(note, options).ok());
//   }
#ifndef LOCUS_TESTS_CALLMODEL_CONNLIFE_FIXTURE_H_
#define LOCUS_TESTS_CALLMODEL_CONNLIFE_FIXTURE_H_

#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "conformance_fixture.h"
#include "flaky_service.h"
#include "gtest/gtest.h"
#include "internal/channel_internal.h"
#include "locus/locus.h"

namespace locus::connlife {

using ::locus::conformance::ConfigNames;
using ::locus::conformance::EchoReply;
using ::locus::conformance::EchoRequest;
using ::locus::conformance::Eventually;
using ::locus::conformance::TestService;
using ::locus::conformance::TestServiceImpl;
using ::locus::conformance::Watchdog;
using ::locus::testing::kWatchdog;
using ::locus::testing::TempDir;

// A thread joined when it goes out of scope (a failed ASSERT returns early).
class ScopedThread {
 public:
  template <typename F>
  explicit ScopedThread(F body) : thread_(std::move(body)) {}
  ~ScopedThread() { thread_.join(); }

 private:
  std::thread thread_;
};

template <typename ConfigT>
class ConnLife : public ::testing::Test {
 public:
  using Kind = typename ConfigT::TransportKind;

  void SetUp() override {
    // The tests' keepalives are a few milliseconds.
    keepalive_floor_ = internal::SetMinClientKeepaliveTime(absl::ZeroDuration());
    if constexpr (Kind::kIpv6) {
      LOCUS_SKIP_UNLESS_MACHINE(::locus::conformance::HasIpv6Loopback(),
                                "no IPv6 loopback (::1) on this machine");
    }
  }
  void TearDown() override {
    echo_stub_.reset();
    flaky_stub_.reset();
    channel_.reset();
    if (server_ != nullptr) server_->Shutdown();
    internal::SetMinClientKeepaliveTime(keepalive_floor_);
  }

  // A server with `server_options` on the kind's address, and a channel
  // with `channel_options` (its transport forced to the kind's).
  void Start(ServerOptions server_options = {}, ChannelOptions channel_options = {}) {
    server_options.handler_threads = ConfigT::handler_threads;
    if (!ConfigT::spin) {
      server_options.socket_spin = absl::ZeroDuration();
      server_options.shm_spin = absl::ZeroDuration();
      channel_options.socket_spin = absl::ZeroDuration();
      channel_options.shm_spin = absl::ZeroDuration();
    }
    channel_options.allowed_transports = Kind::kTransport;
    server_options_ = server_options;
    channel_options_ = channel_options;
    StartServerOn(Kind::ListenAddress(dir_));
    if (server_ == nullptr) return;
    address_ = server_->listening_addresses()[0];
    auto channel = Connect(address_, channel_options_);
    ASSERT_TRUE(channel.ok()) << channel.status();
    channel_ = *channel;
    ASSERT_EQ(channel_->transport_name(), Kind::kTransport);
    echo_stub_ = std::make_unique<TestService::Stub>(channel_);
    flaky_stub_ = std::make_unique<Flaky::Stub>(channel_);
  }

  // After server_->Shutdown(): a server on the same address again.
  void Restart() { StartServerOn(address_); }
  // A server and a channel that tries to reconnect every 20 to 100 ms (for
  // waits for the server), then the server stopped.
  void StartThenStopTheServer() {
    ChannelOptions options;
    options.reconnect_backoff.initial_backoff = absl::Milliseconds(20);
    options.reconnect_backoff.max_backoff = absl::Milliseconds(100);
    Start(ServerOptions{}, options);
    ASSERT_TRUE(Echo().ok());
    StopServer();
  }
  // Stops the server, and makes the channel see that with a call (a
  // datagram client learns it only so; on a stream its connection may
  // otherwise still take the next call before the hang-up is noticed).
  void StopServer() {
    server_->Shutdown();
    EXPECT_EQ(Echo().code(), absl::StatusCode::kUnavailable);
  }

  // The channel's connection (not on an in-process channel, whose unary
  // calls use none).
  std::shared_ptr<internal::ConnectionCore> Core() {
    auto core = internal::ChannelConnection(*channel_, absl::Now() + kWatchdog);
    EXPECT_TRUE(core.ok()) << core.status();
    return core.ok() ? *core : nullptr;
  }
  internal::ChannelStats Stats() {
    absl::StatusOr<internal::ChannelStats> stats = internal::GetChannelStats(*channel_);
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? *stats : internal::ChannelStats{};
  }

  absl::Status Echo(const CallOptions& options = Watchdog()) {
    EchoRequest request;
    request.set_data("echo");
    return echo_stub_->Echo(request, options).status();
  }

  TempDir dir_;
  TestServiceImpl service_;
  FlakyService flaky_;
  ServerOptions server_options_;
  ChannelOptions channel_options_;
  std::unique_ptr<Server> server_;
  std::string address_;
  std::shared_ptr<Channel> channel_;
  std::unique_ptr<TestService::Stub> echo_stub_;
  std::unique_ptr<Flaky::Stub> flaky_stub_;

 private:
  absl::Duration keepalive_floor_;
  void StartServerOn(const std::string& address) {
    server_ = std::make_unique<Server>(server_options_);
    ASSERT_TRUE(server_->RegisterService(&service_).ok());
    ASSERT_TRUE(server_->RegisterService(&flaky_).ok());
    ASSERT_TRUE(server_->AddListeningAddress(address).ok());
    absl::Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;
  }
};

}  // namespace locus::connlife

#endif  // LOCUS_TESTS_CALLMODEL_CONNLIFE_FIXTURE_H_
