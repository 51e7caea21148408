// The transport contract (runtime/include/locus/transport.h, numbered there)
// checked at the level of one Connection, for every kind of connection:
// stream sockets (unix, tcp), shared memory, datagrams (udp) and the
// in-process pair. Each test names the contract items it checks. A new
// transport joins by adding a ConnectionKind below.
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "internal/inproc_connection.h"
#include "locus/transport.h"
#include "transports/socket/stream_connection.h"
#include "tests/testing/test_util.h"

namespace locus {
namespace {

using testing::kWatchdog;

// Records what a connection delivers; optionally runs a hook inside OnFrame.
class RecordingSink final : public FrameSink {
 public:
  struct Received {
    FrameHeader header;
    std::string meta;
    std::string payload;
    std::thread::id thread;
  };

  void OnFrame(Frame& frame) override {
    if (in_callback_.exchange(true)) overlapping_calls_.fetch_add(1);
    Received received{frame.header, std::string(frame.meta_bytes()), frame.TakePayload(),
                      std::this_thread::get_id()};
    std::function<void(const Received&)> hook;
    {
      absl::MutexLock lock(&mu_);
      if (closed_count_ > 0) callbacks_after_close_++;
      frames_.push_back(received);
      hook = hook_;
    }
    if (hook) hook(received);
    in_callback_.store(false);
  }
  void OnOversizeFrame(const FrameHeader& header) override {
    absl::MutexLock lock(&mu_);
    if (closed_count_ > 0) callbacks_after_close_++;
    oversize_.push_back(header);
  }
  void OnClosed(const absl::Status& reason) override {
    absl::MutexLock lock(&mu_);
    ++closed_count_;
    reason_ = reason;
  }

  void SetHook(std::function<void(const Received&)> hook) {
    absl::MutexLock lock(&mu_);
    hook_ = std::move(hook);
  }
  // Waits (watchdog-bounded) until `count` frames arrived; false on timeout.
  bool AwaitFrames(size_t count) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, count]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return frames_.size() >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kWatchdog);
  }
  bool AwaitClosed() {
    absl::MutexLock lock(&mu_);
    auto closed = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return closed_count_ > 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&closed), kWatchdog);
  }
  bool AwaitOversize(size_t count) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, count]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return oversize_.size() >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kWatchdog);
  }
  std::vector<Received> frames() {
    absl::MutexLock lock(&mu_);
    return frames_;
  }
  void ClearFrames() {
    absl::MutexLock lock(&mu_);
    frames_.clear();
  }
  int closed_count() {
    absl::MutexLock lock(&mu_);
    return closed_count_;
  }
  absl::Status reason() {
    absl::MutexLock lock(&mu_);
    return reason_;
  }
  int callbacks_after_close() {
    absl::MutexLock lock(&mu_);
    return callbacks_after_close_;
  }
  int overlapping_calls() const { return overlapping_calls_.load(); }

 private:
  absl::Mutex mu_;
  std::vector<Received> frames_ ABSL_GUARDED_BY(mu_);
  std::vector<FrameHeader> oversize_ ABSL_GUARDED_BY(mu_);
  int closed_count_ ABSL_GUARDED_BY(mu_) = 0;
  int callbacks_after_close_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status reason_ ABSL_GUARDED_BY(mu_);
  std::function<void(const Received&)> hook_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> in_callback_{false};
  std::atomic<int> overlapping_calls_{0};
};

FrameHeader Header(FrameType type, uint64_t call_id, size_t meta, size_t payload) {
  FrameHeader header = FrameHeader::Make(type, payload > 0 ? kFlagHasMessage : 0, call_id);
  header.meta_length = static_cast<uint32_t>(meta);
  header.payload_length = static_cast<uint32_t>(payload);
  return header;
}

absl::Status SendFrame(Connection& connection, uint64_t call_id, const std::string& meta,
                       const std::string& payload) {
  return connection.Send(Header(FrameType::kMessage, call_id, meta.size(), payload.size()), meta,
                         payload, absl::Now() + kWatchdog);
}

// A connected pair, both started, the opening frame (which a datagram
// listener needs to accept) already consumed.
struct Pair {
  std::unique_ptr<Listener> listener;
  std::unique_ptr<Connection> client;
  std::unique_ptr<Connection> server;
};

struct ConnectionKind {
  const char* name;
  bool reliable;
  // Whether Send queues output the peer has not taken (HasQueuedOutput can
  // be true): stream sockets and shared memory.
  bool queues_output;
  // The largest payload this kind carries in one frame.
  size_t max_payload;
  // Listen address (%s: a short temp dir) and the address to connect to,
  // "" for the in-process pair.
  const char* listen;
  const char* connect_scheme;
};

const ConnectionKind kKinds[] = {
    {"unix", true, true, 4u << 20, "unix:%s/s.sock", "unix"},
    {"tcp", true, true, 4u << 20, "tcp://127.0.0.1:0", "tcp"},
    {"shm", true, true, 4u << 20, "unix:%s/s.sock", "shm"},
    {"udp", false, false, 60000, "udp://127.0.0.1:0", "udp"},
    {"inproc", true, false, 4u << 20, "", ""},
};

class ConnectionConformance : public ::testing::TestWithParam<ConnectionKind> {
 protected:
  // Connects with `client_options` / `server_options` and starts both ends.
  void Connect(TransportOptions client_options = {}, TransportOptions server_options = {}) {
    const ConnectionKind& kind = GetParam();
    if (std::string(kind.listen).empty()) {
      auto [client, server] = internal::MakeInprocPair(
          {PeerInfo{"inproc", "client", "server"}, client_options.max_receive_message_size},
          {PeerInfo{"inproc", "server", "client"}, server_options.max_receive_message_size});
      pair_.client = std::move(client);
      pair_.server = std::move(server);
    } else {
      std::string listen = kind.listen;
      if (listen.find("%s") != std::string::npos) {
        listen.replace(listen.find("%s"), 2, dir_.path());
      }
      absl::StatusOr<Transport*> listening = DefaultTransportRegistry().ForAddress(listen);
      ASSERT_TRUE(listening.ok()) << listening.status();
      absl::StatusOr<std::unique_ptr<Listener>> listener = (*listening)->Listen(
          listen, server_options, [this](std::unique_ptr<Connection> connection) {
            absl::MutexLock lock(&accept_mu_);
            accepted_ = std::move(connection);
          });
      ASSERT_TRUE(listener.ok()) << listener.status();
      pair_.listener = *std::move(listener);
      std::string address = pair_.listener->address();
      address = absl::StrCat(kind.connect_scheme, address.substr(address.find(':')));
      absl::StatusOr<Transport*> connecting = DefaultTransportRegistry().ForAddress(address);
      ASSERT_TRUE(connecting.ok()) << connecting.status();
      absl::StatusOr<std::unique_ptr<Connection>> client =
          (*connecting)->Connect(address, client_options, absl::Now() + kWatchdog);
      ASSERT_TRUE(client.ok()) << address << ": " << client.status();
      pair_.client = *std::move(client);
    }
    pair_.client->Start(&client_sink_);
    // The opening frame: a datagram listener accepts a peer on its HELLO.
    ASSERT_TRUE(pair_.client->Send(Header(FrameType::kHello, 0, 0, 0), {}, {}, absl::Now() + kWatchdog).ok());
    if (pair_.server == nullptr) {
      absl::MutexLock lock(&accept_mu_);
      auto accepted = [this]() ABSL_SHARED_LOCKS_REQUIRED(accept_mu_) { return accepted_ != nullptr; };
      ASSERT_TRUE(accept_mu_.AwaitWithTimeout(absl::Condition(&accepted), kWatchdog));
      pair_.server = std::move(accepted_);
    }
    pair_.server->Start(&server_sink_);
    ASSERT_TRUE(server_sink_.AwaitFrames(1));
    ASSERT_EQ(server_sink_.frames()[0].header.frame_type(), FrameType::kHello);
    server_sink_.ClearFrames();
  }

  void TearDown() override {
    if (!release_.HasBeenNotified()) release_.Notify();
    if (pair_.client != nullptr) pair_.client->Close(absl::CancelledError("test over"));
    if (pair_.server != nullptr) pair_.server->Close(absl::CancelledError("test over"));
    // Destruction waits until no callback runs (contract 5).
    pair_.client.reset();
    pair_.server.reset();
  }

  // Frames a test may send without loss on this kind (a datagram socket
  // drops what its receive buffer cannot hold).
  int Burst(int reliable_count) const { return GetParam().reliable ? reliable_count : 16; }

  testing::TempDir dir_;
  // What the sinks' hooks use, and the sinks, outlive the connections
  // (declared before them; TearDown destroys the connections first too).
  absl::Notification release_;
  RecordingSink client_sink_;
  RecordingSink server_sink_;
  absl::Mutex accept_mu_;
  std::unique_ptr<Connection> accepted_ ABSL_GUARDED_BY(accept_mu_);
  Pair pair_;
};

// Contract 1, 2: whole frames, in order, meta and payload intact.
TEST_P(ConnectionConformance, FramesArriveWholeAndInOrder) {
  Connect();
  const int count = Burst(200);
  for (int i = 0; i < count; ++i) {
    const std::string meta(i % 7, static_cast<char>('a' + i % 26));
    const std::string payload((i * 131) % 5000, static_cast<char>(i));
    ASSERT_TRUE(SendFrame(*pair_.client, 2 * i + 1, meta, payload).ok());
  }
  ASSERT_TRUE(server_sink_.AwaitFrames(count));
  std::vector<RecordingSink::Received> frames = server_sink_.frames();
  if (!GetParam().reliable) {  // may be reordered (contract 2): compare as a set
    std::sort(frames.begin(), frames.end(), [](const auto& a, const auto& b) {
      return a.header.call_id < b.header.call_id;
    });
  }
  for (int i = 0; i < count; ++i) {
    EXPECT_EQ(frames[i].header.call_id, static_cast<uint64_t>(2 * i + 1));
    EXPECT_EQ(frames[i].meta, std::string(i % 7, static_cast<char>('a' + i % 26)));
    EXPECT_EQ(frames[i].payload, std::string((i * 131) % 5000, static_cast<char>(i)));
  }
  EXPECT_EQ(server_sink_.overlapping_calls(), 0);
}

// Contract 2, 3: concurrent senders' frames never interleave, each
// sender's frames keep their order, and sink callbacks never overlap.
TEST_P(ConnectionConformance, ConcurrentSendersNeverInterleave) {
  Connect();
  constexpr int kThreads = 4;
  const int per_thread = Burst(300) / (GetParam().reliable ? 1 : kThreads);
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        // Sizes that straddle socket and ring boundaries.
        const std::string payload(1 + (i * 977 + t * 31) % 20000, static_cast<char>('A' + t));
        EXPECT_TRUE(SendFrame(*pair_.client, static_cast<uint64_t>(t) << 32 | i, {}, payload).ok());
      }
    });
  }
  for (std::thread& sender : senders) sender.join();
  ASSERT_TRUE(server_sink_.AwaitFrames(kThreads * per_thread));
  std::vector<int> next(kThreads, 0);
  for (const RecordingSink::Received& frame : server_sink_.frames()) {
    const int t = static_cast<int>(frame.header.call_id >> 32);
    const int i = static_cast<int>(frame.header.call_id & 0xffffffffu);
    ASSERT_LT(t, kThreads);
    EXPECT_EQ(frame.payload, std::string(1 + (i * 977 + t * 31) % 20000, static_cast<char>('A' + t)));
    if (GetParam().reliable) {
      EXPECT_EQ(i, next[t]);
    }
    next[t] = i + 1;
  }
  EXPECT_EQ(server_sink_.overlapping_calls(), 0);
}

// Contract 4, 5: the peer's closure reaches both ends' OnClosed exactly
// once, last; a datagram kind learns of it only from its own Close.
TEST_P(ConnectionConformance, OnClosedExactlyOnceOnBothEnds) {
  Connect();
  pair_.client->Close(absl::CancelledError("client done"));
  ASSERT_TRUE(client_sink_.AwaitClosed());
  if (GetParam().reliable) {
    ASSERT_TRUE(server_sink_.AwaitClosed());
  } else {
    pair_.server->Close(absl::CancelledError("server done"));
    ASSERT_TRUE(server_sink_.AwaitClosed());
  }
  pair_.client->Close(absl::CancelledError("again"));
  pair_.server->Close(absl::CancelledError("again"));
  pair_.client.reset();  // destruction waits for callbacks: counts are final
  pair_.server.reset();
  EXPECT_EQ(client_sink_.closed_count(), 1);
  EXPECT_EQ(server_sink_.closed_count(), 1);
  EXPECT_EQ(client_sink_.callbacks_after_close(), 0);
  EXPECT_EQ(server_sink_.callbacks_after_close(), 0);
}

// Contract 5, 6: Close from many threads at once is one closure; Send
// afterwards is UNAVAILABLE.
TEST_P(ConnectionConformance, CloseFromManyThreadsIsOneClosure) {
  Connect();
  std::vector<std::thread> closers;
  for (int i = 0; i < 4; ++i) {
    closers.emplace_back([&] { pair_.server->Close(absl::CancelledError("racing close")); });
  }
  for (std::thread& closer : closers) closer.join();
  ASSERT_TRUE(server_sink_.AwaitClosed());
  EXPECT_EQ(pair_.server->Send(Header(FrameType::kMessage, 2, 0, 1), {}, "x", absl::Now() + kWatchdog).code(),
            absl::StatusCode::kUnavailable);
  pair_.server.reset();
  EXPECT_EQ(server_sink_.closed_count(), 1);
  EXPECT_EQ(server_sink_.callbacks_after_close(), 0);
}

// Contract 4, 5: Close from inside OnFrame neither deadlocks nor delivers
// anything after OnClosed.
TEST_P(ConnectionConformance, CloseFromInsideOnFrame) {
  Connect();
  server_sink_.SetHook([this](const RecordingSink::Received&) {
    pair_.server->Close(absl::CancelledError("closed from OnFrame"));
  });
  for (int i = 0; i < 4; ++i) (void)SendFrame(*pair_.client, 2 * i + 1, {}, "x");
  ASSERT_TRUE(server_sink_.AwaitClosed());
  EXPECT_EQ(server_sink_.reason().message(), "closed from OnFrame");
  pair_.server.reset();
  EXPECT_EQ(server_sink_.closed_count(), 1);
  EXPECT_EQ(server_sink_.callbacks_after_close(), 0);
  EXPECT_GE(server_sink_.frames().size(), 1u);
}

// Contract 7: an oversize payload is reported, not delivered, and the
// connection goes on.
TEST_P(ConnectionConformance, OversizeFrameIsReportedAndTheConnectionGoesOn) {
  TransportOptions server_options;
  server_options.max_receive_message_size = 1024;
  Connect({}, server_options);
  ASSERT_TRUE(SendFrame(*pair_.client, 1, {}, std::string(4096, 'o')).ok());
  ASSERT_TRUE(SendFrame(*pair_.client, 3, {}, std::string(512, 's')).ok());
  ASSERT_TRUE(server_sink_.AwaitOversize(1));
  ASSERT_TRUE(server_sink_.AwaitFrames(1));
  std::vector<RecordingSink::Received> frames = server_sink_.frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].header.call_id, 3u);
  EXPECT_EQ(frames[0].payload.size(), 512u);
  EXPECT_EQ(server_sink_.closed_count(), 0);
}

// Contract 9: DriveUntil either declines (false) or returns once done()
// holds; frames reach the sink either way.
TEST_P(ConnectionConformance, DriveUntilReturnsOnceDoneOrDeclines) {
  Connect();
  pair_.client->AdjustBackgroundReads(-1);
  ASSERT_TRUE(SendFrame(*pair_.server, 2, {}, "reply").ok());
  auto arrived = [this] { return !client_sink_.frames().empty(); };
  const bool drove = pair_.client->DriveUntil(arrived, absl::Now() + kWatchdog);
  // A transport's own thread may have delivered it first (reads at 0 need
  // not stop at once), so only the outcome is the contract, not the thread.
  if (drove) {
    EXPECT_TRUE(arrived());
  }
  pair_.client->AdjustBackgroundReads(+1);
  ASSERT_TRUE(client_sink_.AwaitFrames(1));
  EXPECT_EQ(client_sink_.frames()[0].payload, "reply");
}

// Contract 9: a caller driving the connection returns when it closes,
// without waiting for its deadline (the socket readers' own periodic
// wake-up is an hour here, so only the closure can end the wait).
TEST_P(ConnectionConformance, DriveUntilReturnsWhenTheConnectionCloses) {
  internal::SetSocketReaderSleepForTesting(absl::Hours(1));
  struct Restore {
    ~Restore() { internal::SetSocketReaderSleepForTesting(absl::Seconds(1)); }
  } restore;
  Connect();
  pair_.client->AdjustBackgroundReads(-1);
  absl::Notification returned;
  std::thread driver([&] {
    (void)pair_.client->DriveUntil([] { return false; }, absl::Now() + absl::Hours(1));
    returned.Notify();
  });
  absl::SleepFor(absl::Milliseconds(20));  // not synchronization: either order must work
  pair_.client->Close(absl::CancelledError("closed while driven"));
  const bool in_time = returned.WaitForNotificationWithTimeout(kWatchdog);
  EXPECT_TRUE(in_time) << "DriveUntil did not return after Close";
  if (!in_time) std::abort();  // the thread would block the test binary for an hour
  driver.join();
  ASSERT_TRUE(client_sink_.AwaitClosed());
}

// Kinds whose Send can accept frames it has not handed to the peer yet.
class QueuingConnectionConformance : public ConnectionConformance {};

// Contract 8: output the peer has not taken is reported until it is.
TEST_P(QueuingConnectionConformance, QueuedOutputIsReportedUntilThePeerTakesIt) {
  TransportOptions options;
  options.shm_ring_bytes = 64u << 10;
  options.shm_bulk_bytes = 0;
  Connect(options, options);
  server_sink_.SetHook([this](const RecordingSink::Received&) { release_.WaitForNotification(); });
  // The server's reader is held in its first OnFrame; the rest piles up in
  // socket buffers or the ring, then in the client's queue.
  const std::string payload(256u << 10, 'q');
  bool queued = false;
  for (int i = 0; i < 64 && !queued; ++i) {
    ASSERT_TRUE(SendFrame(*pair_.client, 2 * i + 1, {}, payload).ok());
    queued = pair_.client->HasQueuedOutput();
  }
  EXPECT_TRUE(queued);
  release_.Notify();
  const absl::Time deadline = absl::Now() + kWatchdog;
  while (pair_.client->HasQueuedOutput() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_FALSE(pair_.client->HasQueuedOutput());
}

TEST_P(ConnectionConformance, ReliableAndPeerAreStable) {
  Connect();
  EXPECT_EQ(pair_.client->reliable(), GetParam().reliable);
  EXPECT_EQ(pair_.server->reliable(), GetParam().reliable);
  const std::string transport = pair_.client->peer().transport;
  EXPECT_FALSE(transport.empty());
  pair_.client->Close(absl::CancelledError("done"));
  EXPECT_EQ(pair_.client->peer().transport, transport);
}

std::string KindName(const ::testing::TestParamInfo<ConnectionKind>& info) { return info.param.name; }

std::vector<ConnectionKind> QueuingKinds() {
  std::vector<ConnectionKind> kinds;
  for (const ConnectionKind& kind : kKinds) {
    if (kind.queues_output) kinds.push_back(kind);
  }
  return kinds;
}

INSTANTIATE_TEST_SUITE_P(AllConnections, ConnectionConformance, ::testing::ValuesIn(kKinds), KindName);
INSTANTIATE_TEST_SUITE_P(QueuingConnections, QueuingConnectionConformance,
                         ::testing::ValuesIn(QueuingKinds()), KindName);

}  // namespace
}  // namespace locus
