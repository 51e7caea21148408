// The fixture of the transport conformance suite (transport_conformance_test.cc
// for calls, stream_conformance_test.cc for streaming calls): one server and
// one channel per test, for every transport kind and handler mode.
//
// A new transport adds a traits struct (how to make a listening address) and
// its configurations to the lists below (`TransportKinds` and each narrower
// list it belongs to); nothing else changes.
//
// Example:
//   template <typename C> class MySuite : public TransportConformance<C> {};
//   TYPED_TEST_SUITE(MySuite, TransportKinds, ConfigNames);   // or a narrower list
//
// A suite is instantiated only for configurations that can run it: no test
// skips by design (a machine without an IPv6 loopback skips the IPv6 ones,
// and fails them with CI=true: tests/testing/machine_skip.h).
#ifndef LOCUS_TESTS_CONFORMANCE_CONFORMANCE_FIXTURE_H_
#define LOCUS_TESTS_CONFORMANCE_CONFORMANCE_FIXTURE_H_

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "locus/locus.h"
#include "test_service.h"
#include "tests/testing/machine_skip.h"
#include "tests/testing/test_util.h"

namespace locus::conformance {

using ::locus::testing::kWatchdog;
using ::locus::testing::TempDir;

// Each transport kind: the address a server listens on, the transport the
// channel must end on (upgrades to closer transports are forbidden so that
// each kind is tested as itself), whether bytes cross a wire (the
// in-process path has none: byte-level tests do not apply), whether every
// frame arrives (datagram transports may drop one, and have no streams and
// no connection a server can close), whether it needs the IPv6 loopback,
// and the largest message it carries.
struct KindDefaults {
  static constexpr bool kHasWire = true;
  static constexpr bool kReliable = true;
  static constexpr bool kIpv6 = false;
  static constexpr size_t kMaxMessage = kDefaultMaxMessageSize;
};
struct UnixSocket : KindDefaults {
  static std::string ListenAddress(const TempDir& dir) { return "unix:" + dir.path() + "/s.sock"; }
  static constexpr const char* kTransport = "unix";
};
struct UnixAbstract : KindDefaults {
  static std::string ListenAddress(const TempDir& dir) {
    return absl::StrCat("unix-abstract:locus-conformance", dir.path());
  }
  static constexpr const char* kTransport = "unix";
};
struct SharedMemory : KindDefaults {
  static std::string ListenAddress(const TempDir& dir) { return "shm:" + dir.path() + "/s.sock"; }
  static constexpr const char* kTransport = "shm";
};
// Shared memory set up over an abstract Unix socket (no socket file).
struct SharedMemoryAbstract : KindDefaults {
  static std::string ListenAddress(const TempDir& dir) {
    return absl::StrCat("shm-abstract:locus-conformance", dir.path());
  }
  static constexpr const char* kTransport = "shm";
};
struct InProcess : KindDefaults {
  // The client connects over the Unix socket and moves to direct calls.
  static std::string ListenAddress(const TempDir& dir) { return "unix:" + dir.path() + "/s.sock"; }
  static constexpr const char* kTransport = "inproc";
  static constexpr bool kHasWire = false;
};
struct TcpIpv4 : KindDefaults {
  static std::string ListenAddress(const TempDir&) { return "tcp://127.0.0.1:0"; }
  static constexpr const char* kTransport = "tcp";
};
struct TcpIpv6 : KindDefaults {
  static std::string ListenAddress(const TempDir&) { return "tcp://[::1]:0"; }
  static constexpr const char* kTransport = "tcp";
  static constexpr bool kIpv6 = true;
};

// Datagrams: lossy, one frame per datagram (kMaxMessage leaves room for
// the frame and call headers), no streams.
struct UdpIpv4 : KindDefaults {
  static std::string ListenAddress(const TempDir&) { return "udp://127.0.0.1:0"; }
  static constexpr const char* kTransport = "udp";
  static constexpr bool kReliable = false;
  static constexpr size_t kMaxMessage = 65000;
};
struct UdpIpv6 : UdpIpv4 {
  static std::string ListenAddress(const TempDir&) { return "udp://[::1]:0"; }
  static constexpr bool kIpv6 = true;
};

// Another address of the same kind as `listen`, for a second server.
inline std::string SiblingAddress(const std::string& listen, const TempDir& dir, const std::string& name) {
  for (const char* scheme : {"unix:", "shm:"}) {
    if (listen.rfind(scheme, 0) == 0) return scheme + dir.path() + "/" + name + ".sock";
  }
  for (const char* scheme : {"unix-abstract:", "shm-abstract:"}) {
    if (listen.rfind(scheme, 0) == 0) return listen + "-" + name;
  }
  return listen;  // tcp, udp: port 0 picks a fresh port
}

// Whether this machine has an IPv6 loopback to bind to.
inline bool HasIpv6Loopback() {
  const int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  const bool bound = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return bound;
}

// The receive buffer a UDP socket gets when it asks for the transport's
// 4 MiB (udp_transport.cc): capped by net.core.rmem_max (4 MiB here, 208 KiB
// on a default VM). Datagrams beyond it are dropped on loopback too.
inline size_t GrantedUdpReceiveBuffer() {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int bytes = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  int granted = 0;
  socklen_t length = sizeof(granted);
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &length);
  close(fd);
  return static_cast<size_t>(granted) / 2;  // Linux reports twice the payload room
}

// Runs handlers inline on I/O threads, or on a pool: both must conform.
// Readers poll (socket_spin, shm_spin) before they sleep unless kSpin is
// false: then every wait is a sleep, the paths a busy machine takes.
template <typename Transport, int kHandlerThreads, bool kSpin = true>
struct Config {
  using TransportKind = Transport;
  static constexpr int handler_threads = kHandlerThreads;
  static constexpr bool spin = kSpin;
};

// Whether a handler can learn of a cancellation while it runs: an inline
// handler occupies the thread that would read the CANCEL (use
// handler_threads for handlers that wait), a in-process one is told directly.
template <typename ConfigT>
constexpr bool HandlerSeesCancel() {
  return ConfigT::handler_threads > 0 || !ConfigT::TransportKind::kHasWire;
}

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

// Outcomes of many calls where a lost datagram is allowed: on a datagram
// transport a call whose request or reply was dropped ends at its deadline,
// here a short one (a loss costs 2 s, not the watchdog). Loopback drops
// nothing while its receive buffers have room: at most 1% of the calls may
// be lost, and no call may fail otherwise (or come back changed). On a
// reliable transport every call must succeed.
class CallOutcomes {
 public:
  explicit CallOutcomes(bool reliable) : reliable_(reliable) {}
  CallOptions Options() const {
    return reliable_ ? Watchdog() : CallOptions::WithTimeout(absl::Seconds(2));
  }
  // Records a call's status; returns whether it succeeded.
  bool Record(const absl::Status& status) {
    calls_.fetch_add(1);
    if (status.ok()) return true;
    if (!reliable_ && absl::IsDeadlineExceeded(status)) {
      lost_.fetch_add(1);
    } else {
      failed_.fetch_add(1);
      absl::MutexLock lock(&mu_);
      if (first_failure_.ok()) first_failure_ = status;
    }
    return false;
  }
  // A reply whose data is not what was sent.
  void RecordMismatch() { mismatched_.fetch_add(1); }
  int64_t calls() const { return calls_.load(); }
  void Check() const {
    absl::MutexLock lock(&mu_);
    EXPECT_EQ(failed_.load(), 0) << "of " << calls_.load() << " calls; the first: " << first_failure_;
    EXPECT_EQ(mismatched_.load(), 0) << "replies came back changed";
    EXPECT_LE(lost_.load() * 100, calls_.load())
        << lost_.load() << " of " << calls_.load() << " calls lost a datagram";
  }

 private:
  const bool reliable_;
  std::atomic<int64_t> calls_{0};
  std::atomic<int64_t> lost_{0};
  std::atomic<int64_t> failed_{0};
  std::atomic<int64_t> mismatched_{0};
  mutable absl::Mutex mu_;
  absl::Status first_failure_ ABSL_GUARDED_BY(mu_);
};

// Opens a Chat and proves it open with one round trip ("hello"); the
// server then waits for the next message, so a Read blocks.
inline ClientReaderWriter<EchoRequest, EchoReply> OpenChat(TestService::Stub& stub,
                                                           const CallOptions& options = Watchdog()) {
  ClientReaderWriter<EchoRequest, EchoReply> chat = stub.Chat(options);
  EchoRequest request;
  request.set_data("hello");
  EchoReply reply;
  EXPECT_TRUE(chat.Write(request));
  EXPECT_TRUE(chat.Read(&reply));
  EXPECT_EQ(reply.data(), "hello");
  return chat;
}

template <typename ConfigT>
class TransportConformance : public ::testing::Test {
 public:  // the free helpers below use the fixture's state
  using Config = ConfigT;
  using Kind = typename ConfigT::TransportKind;
  void SetUp() override {
    if constexpr (Kind::kIpv6) {
      LOCUS_SKIP_UNLESS_MACHINE(HasIpv6Loopback(), "no IPv6 loopback (::1) on this machine");
    }
    StartServer(ServerOptions{});
  }

  void StartServer(ServerOptions options) {
    options.handler_threads = ConfigT::handler_threads;
    if (!ConfigT::spin) {
      options.socket_spin = absl::ZeroDuration();
      options.shm_spin = absl::ZeroDuration();
      channel_options_.socket_spin = absl::ZeroDuration();
      channel_options_.shm_spin = absl::ZeroDuration();
    }
    server_ = std::make_unique<Server>(options);
    ASSERT_TRUE(server_->RegisterService(&service_).ok());
    ASSERT_TRUE(server_->AddListeningAddress(Kind::ListenAddress(dir_)).ok());
    absl::Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;
    address_ = server_->listening_addresses()[0];
    channel_options_.allowed_transports = Kind::kTransport;
    auto channel = Connect(address_, channel_options_);
    ASSERT_TRUE(channel.ok()) << channel.status();
    channel_ = *channel;
    ASSERT_EQ(channel_->transport_name(), Kind::kTransport);
    stub_ = std::make_unique<TestService::Stub>(channel_);
  }

  void RestartServer(ServerOptions options) {
    stub_.reset();
    channel_.reset();
    server_->Shutdown();
    server_.reset();
    StartServer(options);
  }

  // A server on this test's address again, after server_->Shutdown().
  void StartAgainOnTheSameAddress() {
    ServerOptions options;
    options.handler_threads = ConfigT::handler_threads;
    if (!ConfigT::spin) {
      options.socket_spin = absl::ZeroDuration();
      options.shm_spin = absl::ZeroDuration();
    }
    server_ = std::make_unique<Server>(options);
    ASSERT_TRUE(server_->RegisterService(&service_).ok());
    ASSERT_TRUE(server_->AddListeningAddress(address_).ok());
    absl::Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;
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

// Suites for what only some kinds can run: each is instantiated only with
// the configurations below that can run it (never skipped), and checks at
// compile time that it is.
template <typename ConfigT>
class ReliableTransportConformance : public TransportConformance<ConfigT> {
  static_assert(ConfigT::TransportKind::kReliable, "needs every frame to arrive, and a connection");
};
template <typename ConfigT>
class WireTransportConformance : public TransportConformance<ConfigT> {
  static_assert(ConfigT::TransportKind::kHasWire, "needs bytes that cross a wire");
};
template <typename ConfigT>
class ReliableWireTransportConformance : public TransportConformance<ConfigT> {
  static_assert(ConfigT::TransportKind::kReliable && ConfigT::TransportKind::kHasWire,
                "needs a connection whose bytes cross a wire");
};
// Cancellation as the handler sees it, and as a busy inline handler does not.
template <typename ConfigT>
class CancellationSeenByTheHandler : public TransportConformance<ConfigT> {
  static_assert(HandlerSeesCancel<ConfigT>(), "the handler must be able to see a cancellation");
};
template <typename ConfigT>
class CancellationOfABusyInlineHandler : public TransportConformance<ConfigT> {
  static_assert(!HandlerSeesCancel<ConfigT>(), "for inline handlers on a wire");
};

using UnixInline = Config<UnixSocket, 0>;
using UnixAbstractInline = Config<UnixAbstract, 0>;
using Tcp4Inline = Config<TcpIpv4, 0>;
using Tcp6Inline = Config<TcpIpv6, 0>;
using ShmInline = Config<SharedMemory, 0>;
using ShmAbstractInline = Config<SharedMemoryAbstract, 0>;
using InProcessInline = Config<InProcess, 0>;
using Udp4Inline = Config<UdpIpv4, 0>;
using Udp6Inline = Config<UdpIpv6, 0>;
using UnixPool = Config<UnixSocket, 4>;
using Tcp4Pool = Config<TcpIpv4, 4>;
using ShmPool = Config<SharedMemory, 4>;
using InProcessPool = Config<InProcess, 4>;
using Udp4Pool = Config<UdpIpv4, 4>;
using UnixInlineNoSpin = Config<UnixSocket, 0, /*kSpin=*/false>;
using Tcp4InlineNoSpin = Config<TcpIpv4, 0, /*kSpin=*/false>;
using ShmInlineNoSpin = Config<SharedMemory, 0, /*kSpin=*/false>;

// Every configuration.
using TransportKinds =
    ::testing::Types<UnixInline, UnixAbstractInline, Tcp4Inline, Tcp6Inline, ShmInline, ShmAbstractInline,
                     InProcessInline, Udp4Inline, Udp6Inline, UnixPool, Tcp4Pool, ShmPool, InProcessPool,
                     Udp4Pool, UnixInlineNoSpin, Tcp4InlineNoSpin, ShmInlineNoSpin>;
// All but the datagram ones.
using ReliableKinds =
    ::testing::Types<UnixInline, UnixAbstractInline, Tcp4Inline, Tcp6Inline, ShmInline, ShmAbstractInline,
                     InProcessInline, UnixPool, Tcp4Pool, ShmPool, InProcessPool, UnixInlineNoSpin,
                     Tcp4InlineNoSpin, ShmInlineNoSpin>;
// All but the in-process ones.
using WireKinds =
    ::testing::Types<UnixInline, UnixAbstractInline, Tcp4Inline, Tcp6Inline, ShmInline, ShmAbstractInline,
                     Udp4Inline, Udp6Inline, UnixPool, Tcp4Pool, ShmPool, Udp4Pool, UnixInlineNoSpin,
                     Tcp4InlineNoSpin, ShmInlineNoSpin>;
// Neither datagram nor in-process.
using ReliableWireKinds =
    ::testing::Types<UnixInline, UnixAbstractInline, Tcp4Inline, Tcp6Inline, ShmInline, ShmAbstractInline,
                     UnixPool, Tcp4Pool, ShmPool, UnixInlineNoSpin, Tcp4InlineNoSpin, ShmInlineNoSpin>;
// The datagram ones.
using DatagramKinds = ::testing::Types<Udp4Inline, Udp6Inline, Udp4Pool>;
// Where a handler sees a cancellation (HandlerSeesCancel), and where not.
using HandlerSeesCancelKinds =
    ::testing::Types<InProcessInline, UnixPool, Tcp4Pool, ShmPool, InProcessPool, Udp4Pool>;
using BusyInlineHandlerKinds =
    ::testing::Types<UnixInline, UnixAbstractInline, Tcp4Inline, Tcp6Inline, ShmInline, ShmAbstractInline,
                     Udp4Inline, Udp6Inline, UnixInlineNoSpin, Tcp4InlineNoSpin, ShmInlineNoSpin>;
// A handler pool on a connection whose bytes cross a wire.
using ReliableWirePoolKinds = ::testing::Types<UnixPool, Tcp4Pool, ShmPool>;

class ConfigNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    using K = typename T::TransportKind;
    std::string name;
    if (std::is_same_v<K, UnixSocket>) name = "Unix";
    if (std::is_same_v<K, UnixAbstract>) name = "UnixAbstract";
    if (std::is_same_v<K, TcpIpv4>) name = "Tcp4";
    if (std::is_same_v<K, TcpIpv6>) name = "Tcp6";
    if (std::is_same_v<K, SharedMemory>) name = "Shm";
    if (std::is_same_v<K, SharedMemoryAbstract>) name = "ShmAbstract";
    if (std::is_same_v<K, InProcess>) name = "InProcess";
    if (std::is_same_v<K, UdpIpv4>) name = "Udp4";
    if (std::is_same_v<K, UdpIpv6>) name = "Udp6";
    return name + (T::handler_threads > 0 ? "Pool" : "Inline") + (T::spin ? "" : "NoSpin");
  }
};
}  // namespace locus::conformance

#endif  // LOCUS_TESTS_CONFORMANCE_CONFORMANCE_FIXTURE_H_
