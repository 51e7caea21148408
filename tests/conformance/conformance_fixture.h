// The fixture of the transport conformance suite (transport_conformance_test.cc
// for calls, stream_conformance_test.cc for streaming calls): one server and
// one channel per test, for every transport kind and handler mode.
//
// A new transport adds a traits struct (how to make a listening address) to
// `TransportKinds` below; nothing else changes.
//
// Example:
//   template <typename C> class MySuite : public TransportConformance<C> {};
//   TYPED_TEST_SUITE(MySuite, TransportKinds, ConfigNames);
#ifndef LOCUS_TESTS_CONFORMANCE_CONFORMANCE_FIXTURE_H_
#define LOCUS_TESTS_CONFORMANCE_CONFORMANCE_FIXTURE_H_

#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "locus/locus.h"
#include "test_service.h"
#include "tests/testing/test_util.h"

namespace locus::conformance {

using ::locus::testing::kWatchdog;
using ::locus::testing::TempDir;

// Each transport kind: the address a server listens on, the transport the
// channel must end on (upgrades to closer transports are forbidden so that
// each kind is tested as itself), whether bytes cross a wire (the
// collocated path has none: byte-level tests do not apply), whether every
// frame arrives (tests that need that under load skip datagram transports)
// and the largest message it carries.
struct UnixSocket {
  static std::string ListenAddress(const TempDir& dir) { return "unix:" + dir.path() + "/s.sock"; }
  static constexpr const char* kTransport = "unix";
  static constexpr bool kHasWire = true;
  static constexpr bool kReliable = true;
  static constexpr size_t kMaxMessage = kDefaultMaxMessageSize;
};
struct UnixAbstract {
  static std::string ListenAddress(const TempDir& dir) {
    return absl::StrCat("unix-abstract:locus-conformance", dir.path());
  }
  static constexpr const char* kTransport = "unix";
  static constexpr bool kHasWire = true;
  static constexpr bool kReliable = true;
  static constexpr size_t kMaxMessage = kDefaultMaxMessageSize;
};
struct SharedMemory {
  static std::string ListenAddress(const TempDir& dir) { return "shm:" + dir.path() + "/s.sock"; }
  static constexpr const char* kTransport = "shm";
  static constexpr bool kHasWire = true;
  static constexpr bool kReliable = true;
  static constexpr size_t kMaxMessage = kDefaultMaxMessageSize;
};
struct InProcess {
  // The client connects over the Unix socket and moves to direct calls.
  static std::string ListenAddress(const TempDir& dir) { return "unix:" + dir.path() + "/s.sock"; }
  static constexpr const char* kTransport = "inproc";
  static constexpr bool kHasWire = false;
  static constexpr bool kReliable = true;
  static constexpr size_t kMaxMessage = kDefaultMaxMessageSize;
};
struct TcpIpv4 {
  static std::string ListenAddress(const TempDir&) { return "tcp://127.0.0.1:0"; }
  static constexpr const char* kTransport = "tcp";
  static constexpr bool kHasWire = true;
  static constexpr bool kReliable = true;
  static constexpr size_t kMaxMessage = kDefaultMaxMessageSize;
};
struct TcpIpv6 {
  static std::string ListenAddress(const TempDir&) { return "tcp://[::1]:0"; }
  static constexpr const char* kTransport = "tcp";
  static constexpr bool kHasWire = true;
  static constexpr bool kReliable = true;
  static constexpr size_t kMaxMessage = kDefaultMaxMessageSize;
};

// Datagrams: lossy, one frame per datagram (kMaxMessage leaves room for
// the frame and call headers), no streams.
struct UdpIpv4 {
  static std::string ListenAddress(const TempDir&) { return "udp://127.0.0.1:0"; }
  static constexpr const char* kTransport = "udp";
  static constexpr bool kHasWire = true;
  static constexpr bool kReliable = false;
  static constexpr size_t kMaxMessage = 65000;
};

// Another address of the same kind as `listen`, for a second server.
inline std::string SiblingAddress(const std::string& listen, const TempDir& dir, const std::string& name) {
  for (const char* scheme : {"unix:", "shm:"}) {
    if (listen.rfind(scheme, 0) == 0) return scheme + dir.path() + "/" + name + ".sock";
  }
  if (listen.rfind("unix-abstract:", 0) == 0) return listen + "-" + name;
  return listen;  // tcp: port 0 picks a fresh port
}

// Runs handlers inline on I/O threads, or on a pool: both must conform.
// Socket readers poll before they sleep (socket_spin) unless kSocketSpin is
// false: then every wait is a sleep, the paths a busy machine takes.
template <typename Transport, int kHandlerThreads, bool kSocketSpin = true>
struct Config {
  using TransportKind = Transport;
  static constexpr int handler_threads = kHandlerThreads;
  static constexpr bool socket_spin = kSocketSpin;
};

// For tests that need every frame to arrive under load, or a connection the
// server can close (datagram transports have neither).
#define LOCUS_SKIP_UNLESS_RELIABLE()                                             \
  if (!TypeParam::TransportKind::kReliable)                                     \
  GTEST_SKIP() << "needs a reliable transport: datagrams may be dropped, and " \
                  "a datagram transport has no connection to close"

inline CallOptions Watchdog() { return CallOptions::WithTimeout(kWatchdog); }

// Polls `condition` until it holds or the watchdog fires.
template <typename Condition>
bool Eventually(Condition condition) {
  absl::Time until = absl::Now() + kWatchdog;
  while (!condition()) {
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

template <typename ConfigT>
class TransportConformance : public ::testing::Test {
 public:  // the free helpers below use the fixture's state
  using Config = ConfigT;
  void SetUp() override { StartServer(ServerOptions{}); }

  void StartServer(ServerOptions options) {
    options.handler_threads = ConfigT::handler_threads;
    if (!ConfigT::socket_spin) {
      options.socket_spin = absl::ZeroDuration();
      channel_options_.socket_spin = absl::ZeroDuration();
    }
    server_ = std::make_unique<Server>(options);
    ASSERT_TRUE(server_->RegisterService(&service_).ok());
    ASSERT_TRUE(server_->AddListeningAddress(ConfigT::TransportKind::ListenAddress(dir_)).ok());
    absl::Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;
    address_ = server_->listening_addresses()[0];
    channel_options_.allowed_transports = ConfigT::TransportKind::kTransport;
    auto channel = Connect(address_, channel_options_);
    ASSERT_TRUE(channel.ok()) << channel.status();
    channel_ = *channel;
    ASSERT_EQ(channel_->transport_name(), ConfigT::TransportKind::kTransport);
    stub_ = std::make_unique<TestService::Stub>(channel_);
  }

  void RestartServer(ServerOptions options) {
    stub_.reset();
    channel_.reset();
    server_->Shutdown();
    server_.reset();
    StartServer(options);
  }

  absl::StatusOr<EchoReply> Echo(TestService::Stub& stub, std::string data) {
    EchoRequest request;
    request.set_data(std::move(data));
    return stub.Echo(request, Watchdog());
  }

  TempDir dir_;
  TestServiceImpl service_;
  std::unique_ptr<Server> server_;
  std::string address_;
  ChannelOptions channel_options_;
  std::shared_ptr<Channel> channel_;
  std::unique_ptr<TestService::Stub> stub_;
};

using TransportKinds =
    ::testing::Types<Config<UnixSocket, 0>, Config<UnixAbstract, 0>, Config<TcpIpv4, 0>,
                     Config<TcpIpv6, 0>, Config<SharedMemory, 0>, Config<InProcess, 0>,
                     Config<UdpIpv4, 0>, Config<UnixSocket, 4>, Config<TcpIpv4, 4>,
                     Config<SharedMemory, 4>, Config<InProcess, 4>, Config<UdpIpv4, 4>,
                     Config<TcpIpv4, 0, /*kSocketSpin=*/false>>;

class ConfigNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    std::string name;
    if (std::is_same_v<typename T::TransportKind, UnixSocket>) name = "Unix";
    if (std::is_same_v<typename T::TransportKind, UnixAbstract>) name = "UnixAbstract";
    if (std::is_same_v<typename T::TransportKind, TcpIpv4>) name = "Tcp4";
    if (std::is_same_v<typename T::TransportKind, SharedMemory>) name = "Shm";
    if (std::is_same_v<typename T::TransportKind, InProcess>) name = "InProcess";
    if (std::is_same_v<typename T::TransportKind, TcpIpv6>) name = "Tcp6";
    if (std::is_same_v<typename T::TransportKind, UdpIpv4>) name = "Udp4";
    return name + (T::handler_threads > 0 ? "Pool" : "Inline") + (T::socket_spin ? "" : "NoSpin");
  }
};
}  // namespace locus::conformance

#endif  // LOCUS_TESTS_CONFORMANCE_CONFORMANCE_FIXTURE_H_
