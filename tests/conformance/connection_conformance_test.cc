// The transport contract (runtime/include/locus/transport.h, numbered there)
// checked at the level of one Connection, for every kind of connection:
// stream sockets (unix, tcp), shared memory, datagrams (udp) and the
// in-process pair. Each test names the contract items it checks. A new
// transport joins by adding a ConnectionKind below. The file descriptor
// tests (contract 12: names with "Fd") also run as the CTest entry
// connection_conformance_fds (labels conformance, rmi), with a Unix-socket
// peer that sends what no Locus peer would.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "internal/inproc_connection.h"
#include "locus/fd.h"
#include "locus/transport.h"
#include "transports/socket/stream_connection.h"
#include "tests/testing/fd_test_util.h"
#include "tests/testing/test_util.h"

namespace locus {
namespace {

using testing::AwaitOpenFdCount;
using testing::AwaitOpenFdCountAtMost;
using testing::FileId;
using testing::IdOf;
using testing::kWatchdog;
using testing::OpenFdCount;

// `count` distinct open files (memfds), each with its own inode.
std::vector<OwnedFd> MakeFiles(size_t count) {
  std::vector<OwnedFd> files;
  for (size_t i = 0; i < count; ++i) files.emplace_back(memfd_create("conformance-fd", MFD_CLOEXEC));
  return files;
}

std::vector<int> Raw(const std::vector<OwnedFd>& files, size_t first, size_t count) {
  std::vector<int> fds;
  for (size_t i = 0; i < count; ++i) fds.push_back(files[(first + i) % files.size()].get());
  return fds;
}

std::vector<FileId> IdsOf(const std::vector<int>& fds) {
  std::vector<FileId> ids;
  for (int fd : fds) ids.push_back(IdOf(fd));
  return ids;
}

// Records what a connection delivers; optionally runs a hook inside OnFrame.
class RecordingSink final : public FrameSink {
 public:
  struct Received {
    FrameHeader header;
    std::string meta;
    std::string payload;
    std::thread::id thread;
    std::vector<FileId> fds;   // what the frame's descriptors refer to, in order
    bool fds_cloexec = true;   // every one of them close-on-exec
  };

  void OnFrame(Frame& frame) override {
    if (in_callback_.exchange(true)) overlapping_calls_.fetch_add(1);
    Received received;
    received.header = frame.header;
    received.meta = std::string(frame.meta_bytes());
    received.payload = frame.TakePayload();
    received.thread = std::this_thread::get_id();
    for (const OwnedFd& fd : frame.fds) {
      received.fds.push_back(IdOf(fd.get()));
      if ((fcntl(fd.get(), F_GETFD) & FD_CLOEXEC) == 0) received.fds_cloexec = false;
    }
    std::function<void(const Received&)> hook;
    {
      absl::MutexLock lock(&mu_);
      if (closed_count_ > 0) callbacks_after_close_++;
      frames_.push_back(received);
      hook = hook_;
      if (take_fds_ && take_fds_(frame.header.call_id)) {
        for (OwnedFd& fd : frame.fds) taken_fds_.push_back(std::move(fd));
      }
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
  // The sink moves the descriptors of frames whose call id `take` accepts
  // out of them (they stay open until CloseTakenFds); the transport closes
  // the others' (contract 12).
  void SetTakeFds(std::function<bool(uint64_t call_id)> take) {
    absl::MutexLock lock(&mu_);
    take_fds_ = std::move(take);
  }
  size_t taken_fd_count() {
    absl::MutexLock lock(&mu_);
    return taken_fds_.size();
  }
  void CloseTakenFds() {
    absl::MutexLock lock(&mu_);
    taken_fds_.clear();
  }
  std::vector<FrameHeader> oversize() {
    absl::MutexLock lock(&mu_);
    return oversize_;
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
  std::function<bool(uint64_t)> take_fds_ ABSL_GUARDED_BY(mu_);
  std::vector<OwnedFd> taken_fds_ ABSL_GUARDED_BY(mu_);
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

// Frames with descriptors (contract 12).
FrameHeader FdFrameHeader(uint64_t call_id, size_t meta, size_t payload) {
  return Header(FrameType::kMessage, call_id, meta, payload);
}

// Sends frame `call_id` with `fds` on `connection`, a watchdog for deadline.
absl::Status SendFds(Connection& connection, uint64_t call_id, const std::string& meta,
                     const std::string& payload, const std::vector<int>& fds) {
  return connection.SendWithFds(FdFrameHeader(call_id, meta.size(), payload.size()), meta, payload,
                                fds, absl::Now() + kWatchdog);
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
  // Whether frames carry file descriptors (CanPassFds), and whether the
  // count travels in the frame's private flag bits (what a peer's Send
  // can forge).
  bool passes_fds;
  bool fd_count_on_the_wire;
};

const ConnectionKind kKinds[] = {
    {"unix", true, true, 4u << 20, "unix:%s/s.sock", "unix", true, true},
    {"tcp", true, true, 4u << 20, "tcp://127.0.0.1:0", "tcp", false, false},
    {"shm", true, true, 4u << 20, "unix:%s/s.sock", "shm", true, true},
    {"udp", false, false, 60000, "udp://127.0.0.1:0", "udp", false, false},
    {"inproc", true, false, 4u << 20, "", "", true, false},
};

// Test names and failures show the kind's name.
void PrintTo(const ConnectionKind& kind, std::ostream* os) { *os << kind.name; }

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

// Contract 6, 12: while the peer takes nothing, frames with descriptors
// pile up (in the socket, then in the sender's queue with duplicates) until
// a sender must wait; one that waits past its deadline fails
// DEADLINE_EXCEEDED with nothing sent, and the connection goes on: every
// frame accepted before arrives with its own descriptors.
TEST_P(QueuingConnectionConformance, FdsWaitWhileThePeerTakesNone) {
  if (!GetParam().passes_fds) GTEST_SKIP() << "no descriptors here";
  Connect();
  server_sink_.SetHook([this](const RecordingSink::Received& received) {
    if (received.header.call_id == 1) release_.WaitForNotification();
  });
  ASSERT_TRUE(SendFrame(*pair_.client, 1, {}, "hold").ok());
  ASSERT_TRUE(server_sink_.AwaitFrames(1));
  const std::vector<OwnedFd> files = MakeFiles(7);
  std::vector<FileId> expected;
  absl::Status refused;
  uint64_t call_id = 3;
  for (int i = 0; i < 20000 && refused.ok(); ++i, call_id += 2) {
    const std::vector<int> fds = Raw(files, i, 1);
    refused = pair_.client->SendWithFds(FdFrameHeader(call_id, 0, 1), {}, "f", fds,
                                        absl::Now() + absl::Milliseconds(200));
    if (refused.ok()) expected.push_back(IdOf(fds[0]));
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kDeadlineExceeded) << refused;
  const uint64_t refused_id = call_id - 2;
  release_.Notify();
  ASSERT_TRUE(server_sink_.AwaitFrames(1 + expected.size()));
  // What the refused send would have been: never delivered.
  ASSERT_TRUE(SendFrame(*pair_.client, call_id, {}, "last").ok());
  ASSERT_TRUE(server_sink_.AwaitFrames(2 + expected.size()));
  const std::vector<RecordingSink::Received> frames = server_sink_.frames();
  for (size_t i = 0; i < expected.size(); ++i) {
    const RecordingSink::Received& frame = frames[1 + i];
    EXPECT_EQ(frame.header.call_id, 3 + 2 * i);
    ASSERT_EQ(frame.fds.size(), 1u) << i;
    EXPECT_TRUE(frame.fds[0] == expected[i]) << i;
  }
  EXPECT_EQ(frames.back().header.call_id, call_id);
  EXPECT_NE(frames[frames.size() - 2].header.call_id, refused_id);
  EXPECT_EQ(server_sink_.closed_count(), 0);
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

// --- Contract 12: file descriptors ---

// Contract 12, 1, 2: each frame's descriptors arrive with it, in the order
// sent, open on the same files, close-on-exec, and the frame's flags as
// sent; frames with none between them get none. Sizes straddle socket
// reads and ring wrap-around, so that some frames go out in pieces and
// some wait behind queued bytes; up to the limit of 64 in one frame.
TEST_P(ConnectionConformance, FdsArriveInOrderWithTheirFrames) {
  Connect();
  EXPECT_EQ(pair_.client->CanPassFds(), GetParam().passes_fds);
  EXPECT_EQ(pair_.server->CanPassFds(), GetParam().passes_fds);
  if (!GetParam().passes_fds) GTEST_SKIP() << "no descriptors here: FdsAreRefused...";
  const std::vector<OwnedFd> files = MakeFiles(kMaxFdsPerFrame);
  constexpr int kFrames = 120;
  auto fd_count = [](int i) -> size_t {
    if (i % 10 == 4) return kMaxFdsPerFrame;
    return static_cast<size_t>((i * 7) % 5);  // 0 .. 4
  };
  std::vector<std::vector<FileId>> expected;
  for (int i = 0; i < kFrames; ++i) {
    const std::vector<int> fds = Raw(files, static_cast<size_t>(i) * 3, fd_count(i));
    expected.push_back(IdsOf(fds));
    const std::string meta(i % 5, 'm');
    const std::string payload(i % 9 == 0 ? 300000 + i : (i * 131) % 5000, static_cast<char>(i));
    ASSERT_TRUE(SendFds(*pair_.client, 2 * i + 1, meta, payload, fds).ok()) << i;
  }
  // And the other way, from the accepting side.
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(SendFds(*pair_.server, 2 * i + 2, {}, "r", Raw(files, i, i)).ok());
  }
  ASSERT_TRUE(server_sink_.AwaitFrames(kFrames));
  ASSERT_TRUE(client_sink_.AwaitFrames(8));
  const std::vector<RecordingSink::Received> frames = server_sink_.frames();
  ASSERT_EQ(frames.size(), static_cast<size_t>(kFrames));
  for (int i = 0; i < kFrames; ++i) {
    const RecordingSink::Received& frame = frames[i];
    EXPECT_EQ(frame.header.call_id, static_cast<uint64_t>(2 * i + 1));
    EXPECT_EQ(frame.header.flags, FdFrameHeader(0, 0, frame.payload.size()).flags) << i;
    EXPECT_EQ(frame.payload.size(), i % 9 == 0 ? 300000u + i : (i * 131u) % 5000) << i;
    EXPECT_TRUE(frame.fds == expected[i]) << "frame " << i << ": " << frame.fds.size()
                                          << " descriptors, " << expected[i].size() << " sent";
    EXPECT_TRUE(frame.fds_cloexec) << i;
  }
  const std::vector<RecordingSink::Received> replies = client_sink_.frames();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(replies[i].header.call_id, static_cast<uint64_t>(2 * i + 2));
    EXPECT_TRUE(replies[i].fds == IdsOf(Raw(files, i, i))) << i;
  }
}

// Contract 12: the caller's descriptors stay its own: it may close them as
// soon as SendWithFds returned, also for frames that wait behind output the
// peer has not taken (sent from inside OnFrame, where a transport must not
// block: the accepting side's reader, the event loop for a socket).
TEST_P(ConnectionConformance, FdsMayBeClosedOnReturnAlsoWhenTheirFrameWaits) {
  if (!GetParam().passes_fds) GTEST_SKIP() << "no descriptors here";
  Connect();
  // A client that drives no reads and wants none in the background: a
  // socket's event loop stops reading for it, and the server's output
  // backs up.
  pair_.client->AdjustBackgroundReads(-1);
  constexpr int kBig = 8;
  constexpr int kWithFds = 16;
  std::vector<std::vector<FileId>> expected(kWithFds);
  absl::Notification sent;
  server_sink_.SetHook([&](const RecordingSink::Received& received) {
    if (received.header.call_id != 1) return;
    for (int i = 0; i < kBig; ++i) {
      EXPECT_TRUE(SendFrame(*pair_.server, 2 * i + 2, {}, std::string(256u << 10, 'b')).ok());
    }
    for (int i = 0; i < kWithFds; ++i) {
      std::vector<OwnedFd> files = MakeFiles(1 + i % 3);
      const std::vector<int> fds = Raw(files, 0, files.size());
      expected[i] = IdsOf(fds);
      EXPECT_TRUE(SendFds(*pair_.server, 100 + 2 * i, "m", "with fds", fds).ok());
      // `files` closes here: the peer's duplicates must still be open.
    }
    sent.Notify();
  });
  const int baseline = OpenFdCount();
  ASSERT_TRUE(SendFrame(*pair_.client, 1, {}, "go").ok());
  ASSERT_TRUE(sent.WaitForNotificationWithTimeout(kWatchdog));
  pair_.client->AdjustBackgroundReads(+1);
  ASSERT_TRUE(client_sink_.AwaitFrames(kBig + kWithFds));
  const std::vector<RecordingSink::Received> frames = client_sink_.frames();
  for (int i = 0; i < kBig; ++i) {
    EXPECT_EQ(frames[i].header.call_id, static_cast<uint64_t>(2 * i + 2));
    EXPECT_TRUE(frames[i].fds.empty()) << i;
  }
  for (int i = 0; i < kWithFds; ++i) {
    const RecordingSink::Received& frame = frames[kBig + i];
    EXPECT_EQ(frame.header.call_id, static_cast<uint64_t>(100 + 2 * i));
    EXPECT_EQ(frame.payload, "with fds");
    ASSERT_EQ(frame.fds.size(), expected[i].size()) << i;
    EXPECT_TRUE(frame.fds == expected[i]) << i;
  }
  // The files were closed by the sender and their duplicates by the
  // receiving transport: nothing of them stays open.
  EXPECT_EQ(AwaitOpenFdCount(baseline), baseline);
}

// Contract 12, 6: where descriptors cannot travel (TCP, UDP), SendWithFds
// with some fails FAILED_PRECONDITION and sends nothing; without any it is
// Send.
TEST_P(ConnectionConformance, FdsAreRefusedWhereTheyCannotTravel) {
  Connect();
  const std::vector<OwnedFd> files = MakeFiles(1);
  if (!GetParam().passes_fds) {
    EXPECT_FALSE(pair_.client->CanPassFds());
    const absl::Status refused = SendFds(*pair_.client, 1, "m", "p", Raw(files, 0, 1));
    EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
    EXPECT_NE(refused.message().find("cannot carry file descriptors"), std::string::npos) << refused;
  }
  ASSERT_TRUE(SendFds(*pair_.client, 3, "m", "no fds", {}).ok());
  ASSERT_TRUE(SendFrame(*pair_.client, 5, {}, "plain").ok());
  ASSERT_TRUE(server_sink_.AwaitFrames(2));
  std::vector<uint64_t> ids;
  for (const RecordingSink::Received& frame : server_sink_.frames()) {
    ids.push_back(frame.header.call_id);
    EXPECT_TRUE(frame.fds.empty());
  }
  std::sort(ids.begin(), ids.end());  // a datagram kind may reorder (contract 2)
  EXPECT_EQ(ids, (std::vector<uint64_t>{3, 5}));
  EXPECT_EQ(server_sink_.closed_count(), 0);
}

// Contract 12: more than kMaxFdsPerFrame, a negative or a closed
// descriptor is INVALID_ARGUMENT on every kind, with nothing sent; the
// connection goes on.
TEST_P(ConnectionConformance, TooManyOrBadFdsAreInvalidArguments) {
  Connect();
  const std::vector<OwnedFd> files = MakeFiles(kMaxFdsPerFrame + 1);
  const absl::Status too_many = SendFds(*pair_.client, 1, {}, "x", Raw(files, 0, kMaxFdsPerFrame + 1));
  EXPECT_EQ(too_many.code(), absl::StatusCode::kInvalidArgument) << too_many;
  const absl::Status negative = SendFds(*pair_.client, 3, {}, "x", {files[0].get(), -1});
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument) << negative;
  // A number no descriptor has in this test (far above what it opens).
  const absl::Status closed = SendFds(*pair_.client, 5, {}, "x", {900000});
  EXPECT_EQ(closed.code(), absl::StatusCode::kInvalidArgument) << closed;
  ASSERT_TRUE(SendFrame(*pair_.client, 7, {}, "after").ok());
  ASSERT_TRUE(server_sink_.AwaitFrames(1));
  EXPECT_EQ(server_sink_.frames()[0].header.call_id, 7u);
  absl::SleepFor(absl::Milliseconds(20));  // not synchronization: a stray frame would show here
  EXPECT_EQ(server_sink_.frames().size(), 1u);
  EXPECT_EQ(server_sink_.closed_count(), 0);
}

// Contract 12: descriptors are never leaked: after 1,000 frames with
// descriptors, half of which the sink takes (and closes itself) and half
// it leaves to the transport, as many are open as before.
TEST_P(ConnectionConformance, FdsOfAThousandFramesAreAllClosed) {
  Connect();
  const std::vector<OwnedFd> files = MakeFiles(3);
  server_sink_.SetTakeFds([](uint64_t call_id) { return call_id % 4 == 1; });
  const int baseline = OpenFdCount();
  constexpr int kFrames = 1000;
  for (int i = 0; i < kFrames; ++i) {
    const absl::Status sent = SendFds(*pair_.client, 2 * i + 1, {}, std::string(i % 200, 'p'),
                                      Raw(files, i, 1 + i % 3));
    if (GetParam().passes_fds) {
      ASSERT_TRUE(sent.ok()) << i << ": " << sent;
    } else {
      ASSERT_EQ(sent.code(), absl::StatusCode::kFailedPrecondition) << i << ": " << sent;
    }
  }
  if (GetParam().passes_fds) {
    ASSERT_TRUE(server_sink_.AwaitFrames(kFrames));
    const std::vector<RecordingSink::Received> frames = server_sink_.frames();
    for (int i = 0; i < kFrames; ++i) {
      EXPECT_EQ(frames[i].fds.size(), static_cast<size_t>(1 + i % 3)) << i;
    }
    EXPECT_GT(server_sink_.taken_fd_count(), 0u);
  }
  server_sink_.CloseTakenFds();
  EXPECT_EQ(AwaitOpenFdCount(baseline), baseline);
  EXPECT_EQ(server_sink_.closed_count(), 0);
}

// Contract 7, 12: an oversize frame's descriptors are closed with it; the
// connection goes on, and the next frame brings its own.
TEST_P(ConnectionConformance, OversizeFrameWithFdsIsReportedAndItsFdsClosed) {
  if (!GetParam().passes_fds) GTEST_SKIP() << "no descriptors here";
  TransportOptions server_options;
  server_options.max_receive_message_size = 1024;
  Connect({}, server_options);
  const std::vector<OwnedFd> files = MakeFiles(3);
  const int baseline = OpenFdCount();
  ASSERT_TRUE(SendFds(*pair_.client, 1, {}, std::string(4096, 'o'), Raw(files, 0, 2)).ok());
  ASSERT_TRUE(SendFds(*pair_.client, 3, {}, std::string(512, 's'), Raw(files, 2, 1)).ok());
  ASSERT_TRUE(server_sink_.AwaitOversize(1));
  ASSERT_TRUE(server_sink_.AwaitFrames(1));
  EXPECT_EQ(server_sink_.oversize()[0].call_id, 1u);
  EXPECT_EQ(server_sink_.oversize()[0].flags, kFlagHasMessage);
  const std::vector<RecordingSink::Received> frames = server_sink_.frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].header.call_id, 3u);
  EXPECT_TRUE(frames[0].fds == IdsOf(Raw(files, 2, 1)));
  EXPECT_EQ(AwaitOpenFdCount(baseline), baseline);
  EXPECT_EQ(server_sink_.closed_count(), 0);
}

// Contract 2, 4, 12: frames with descriptors sent just before the sender
// closes still arrive with them (on shared memory the descriptors wait in
// a socket the sender has shut down).
TEST_P(ConnectionConformance, FdsSentJustBeforeClosingArrive) {
  if (!GetParam().passes_fds) GTEST_SKIP() << "no descriptors here";
  Connect();
  const std::vector<OwnedFd> files = MakeFiles(4);
  constexpr int kFrames = 10;
  for (int i = 0; i < kFrames; ++i) {
    ASSERT_TRUE(SendFds(*pair_.client, 2 * i + 1, {}, "last words", Raw(files, i, 1 + i % 4)).ok());
  }
  pair_.client->Close(absl::CancelledError("client done"));
  ASSERT_TRUE(server_sink_.AwaitFrames(kFrames));
  const std::vector<RecordingSink::Received> frames = server_sink_.frames();
  for (int i = 0; i < kFrames; ++i) {
    EXPECT_TRUE(frames[i].fds == IdsOf(Raw(files, i, 1 + i % 4))) << i;
  }
  ASSERT_TRUE(server_sink_.AwaitClosed());
}

// Contract 4, 12: a frame whose flags claim descriptors that never came
// (a peer's Send with the count bits forged) closes the connection, with
// a reason that says so.
TEST_P(ConnectionConformance, FdsClaimedButNotSentCloseTheConnection) {
  if (!GetParam().fd_count_on_the_wire) GTEST_SKIP() << "the count does not travel in the flags";
  Connect();
  FrameHeader forged = FdFrameHeader(1, 0, 1);
  forged.flags |= 3u << 25;  // "3 descriptors" (docs/wire.md)
  ASSERT_TRUE(pair_.client->Send(forged, {}, "x", absl::Now() + kWatchdog).ok());
  ASSERT_TRUE(server_sink_.AwaitClosed());
  const absl::Status reason = server_sink_.reason();
  EXPECT_FALSE(reason.ok());
  EXPECT_NE(reason.message().find("claims 3 file descriptors"), std::string::npos) << reason;
  EXPECT_TRUE(server_sink_.frames().empty());
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

// Contract 4, 12 against a hostile peer: a raw Unix socket that writes
// frames and attaches descriptors as no Locus peer would. Each case must
// close the connection with a reason that names the problem, deliver none
// of the bad frames, and leave no descriptor open that was not open before.
class HostileFdPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    before_ = OpenFdCount();
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    raw_.reset(sv[1]);
    connection_ = internal::StreamConnection::Create(sv[0], PeerInfo{"unix", "local", "hostile"},
                                                     TransportOptions{});
    connection_->Start(&sink_);
    ASSERT_TRUE(connection_->CanPassFds());
    baseline_ = OpenFdCount();
  }
  void TearDown() override {
    connection_->Close(absl::CancelledError("test over"));
    connection_.reset();
    raw_.reset();
    // The event loop may close the connection's descriptors after this
    // returns; the next test's baseline must not count them.
    AwaitOpenFdCountAtMost(before_);
  }

  // One frame's bytes; `fd_count` goes in the private count bits.
  static std::string Frame(uint64_t call_id, const std::string& payload, uint32_t fd_count) {
    FrameHeader header = FdFrameHeader(call_id, 0, payload.size());
    header.flags |= fd_count << 25;
    return std::string(reinterpret_cast<const char*>(&header), sizeof(header)) + payload;
  }

  // Writes `bytes` in one sendmsg with `count` descriptors attached, all
  // duplicates of one fresh file (last_file_).
  void SendRaw(absl::string_view bytes, size_t count) {
    const int failed = testing::SendRawWithFds(raw_.get(), bytes, count, &last_file_);
    ASSERT_EQ(failed, 0) << std::strerror(failed);
  }

  // The connection closed for malformed input naming `problem`; no frame
  // was delivered with descriptors, and at most `delivered` well-formed
  // ones without (a frame is delivered as soon as it is whole: descriptors
  // that no frame claims show only after it); every descriptor received is
  // closed again.
  void ExpectClosedFor(const std::string& problem, size_t delivered = 0) {
    ASSERT_TRUE(sink_.AwaitClosed());
    const absl::Status reason = sink_.reason();
    EXPECT_EQ(reason.code(), absl::StatusCode::kInternal) << reason;
    EXPECT_NE(reason.message().find("malformed input from peer"), std::string::npos) << reason;
    EXPECT_NE(reason.message().find(problem), std::string::npos) << reason;
    const std::vector<RecordingSink::Received> frames = sink_.frames();
    EXPECT_LE(frames.size(), delivered);
    for (const RecordingSink::Received& frame : frames) EXPECT_TRUE(frame.fds.empty());
    EXPECT_EQ(AwaitOpenFdCount(baseline_), baseline_);
  }

  RecordingSink sink_;
  OwnedFd raw_;
  std::unique_ptr<Connection> connection_;
  int baseline_ = 0;
  int before_ = 0;
  FileId last_file_;
};

// More descriptors in one message than a frame may carry: the kernel cuts
// the control message short (MSG_CTRUNC) and closes the rest.
TEST_F(HostileFdPeer, MoreFdsThanAFrameMayCarryCloseTheConnection) {
  SendRaw(Frame(1, "x", kMaxFdsPerFrame), 100);
  ExpectClosedFor("MSG_CTRUNC");
}

TEST_F(HostileFdPeer, FdsWithNoFrameThatClaimsThemCloseTheConnection) {
  SendRaw(Frame(1, "x", 0), 2);
  ExpectClosedFor("2 file descriptors arrived with no frame that claims them", 1);
}

TEST_F(HostileFdPeer, FdsAttachedInsideAFrameCloseTheConnection) {
  const std::string frame = Frame(1, std::string(1000, 'b'), 0);
  SendRaw(frame.substr(0, 500), 0);
  SendRaw(frame.substr(500), 1);  // mid-body: no header of theirs follows
  ExpectClosedFor("1 file descriptors arrived with no frame that claims them", 1);
}

TEST_F(HostileFdPeer, AFrameClaimingMoreThanArrivedClosesTheConnection) {
  SendRaw(Frame(1, "x", 3), 1);
  ExpectClosedFor("a frame claims 3 file descriptors but 1 arrived with it");
}

TEST_F(HostileFdPeer, AFrameClaimingAboveTheLimitClosesTheConnection) {
  SendRaw(Frame(1, "x", 100), 0);
  ExpectClosedFor("a frame claims 100 file descriptors; at most 64");
}

// Descriptors sent with the first half of a header, and another frame's
// worth with the second half: more than the header can claim. The frame
// gets the first (those with its first byte); the rest close the
// connection.
TEST_F(HostileFdPeer, FdsOnBothHalvesOfAHeaderCloseTheConnection) {
  const std::string frame = Frame(1, "x", kMaxFdsPerFrame);
  SendRaw(frame.substr(0, 10), kMaxFdsPerFrame);
  const FileId first = last_file_;
  absl::SleepFor(absl::Milliseconds(20));  // not synchronization: two reads, or one; both fail
  SendRaw(frame.substr(10), kMaxFdsPerFrame);
  ASSERT_TRUE(sink_.AwaitClosed());
  EXPECT_NE(sink_.reason().message().find(
                "64 file descriptors arrived with no frame that claims them"),
            std::string::npos)
      << sink_.reason();
  for (const RecordingSink::Received& received : sink_.frames()) {
    EXPECT_TRUE(received.fds == std::vector<FileId>(kMaxFdsPerFrame, first));
  }
  EXPECT_EQ(AwaitOpenFdCount(baseline_), baseline_);
}

// A frame whose header claims descriptors, with more than that arriving
// while its body is still on the way.
TEST_F(HostileFdPeer, MoreFdsThanAnUnfinishedFrameClaimsCloseTheConnection) {
  const std::string frame = Frame(1, std::string(1000, 'b'), 1);
  SendRaw(frame.substr(0, 500), 1);
  absl::SleepFor(absl::Milliseconds(20));  // not synchronization: two reads, or one; both fail
  SendRaw(frame.substr(500, 100), 2);
  ExpectClosedFor("file descriptors arrived with no frame that claims them");
}

// A peer that hangs up with descriptors sent for a header it never
// finishes: they are closed with the connection.
TEST_F(HostileFdPeer, FdsOfAnUnfinishedHeaderAreClosedWhenThePeerLeaves) {
  SendRaw(Frame(1, "x", 5).substr(0, 10), 5);
  raw_.reset();
  ASSERT_TRUE(sink_.AwaitClosed());
  EXPECT_TRUE(absl::IsUnavailable(sink_.reason())) << sink_.reason();
  EXPECT_TRUE(sink_.frames().empty());
  EXPECT_EQ(AwaitOpenFdCount(baseline_ - 1), baseline_ - 1);  // raw_ is closed too
}

// What an honest peer may do: a header cut across two reads, its
// descriptors with its first byte; and frames before and after it.
TEST_F(HostileFdPeer, AHeaderCutAcrossReadsGetsItsFds) {
  const std::string frame = Frame(3, "with", 2);
  SendRaw(Frame(1, "before", 0) + frame.substr(0, 10), 2);
  const FileId sent = last_file_;
  absl::SleepFor(absl::Milliseconds(20));  // not synchronization: two reads, or one; both work
  SendRaw(frame.substr(10) + Frame(5, "after", 0), 0);
  ASSERT_TRUE(sink_.AwaitFrames(3));
  const std::vector<RecordingSink::Received> frames = sink_.frames();
  EXPECT_TRUE(frames[0].fds.empty());
  EXPECT_EQ(frames[1].header.call_id, 3u);
  EXPECT_EQ(frames[1].header.flags, kFlagHasMessage);
  EXPECT_TRUE(frames[1].fds == (std::vector<FileId>{sent, sent}));
  EXPECT_TRUE(frames[2].fds.empty());
  EXPECT_EQ(sink_.closed_count(), 0);
  EXPECT_EQ(AwaitOpenFdCount(baseline_), baseline_);
}

}  // namespace
}  // namespace locus
