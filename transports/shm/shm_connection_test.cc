// ShmConnection's waking protocol, seen from the shared region: when a
// synchronous caller's polling announcement (consumer_polling) may outlive
// its call, and that it comes down once background reads are wanted again;
// and the poll-window policy (poll_window.h).
// The connections are a pair over one memfd and a socketpair, set up by
// hand (the transport's handshake is tested in the conformance suite).
//
// Tests use deadlines only as watchdogs against hangs, never to assert speed.
#include "transports/shm/shm_connection.h"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <memory>
#include <new>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "locus/frame.h"
#include "transports/common/spin_budget.h"
#include "transports/shm/futex.h"
#include "transports/shm/poll_window.h"
#include "transports/shm/shm_layout.h"
#include "transports/shm/shm_ring.h"
#include "tests/testing/machine_skip.h"

namespace locus::internal {
namespace {

constexpr absl::Duration kWatchdog = absl::Seconds(60);
constexpr uint64_t kRingCapacity = 64 * 1024;

// Counts the frames delivered to it; while held, the delivering thread
// waits in OnFrame (its reader stops consuming).
class CountingSink final : public FrameSink {
 public:
  void OnFrame(Frame&) override {
    absl::MutexLock lock(&mu_);
    ++frames_;
    auto open = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !held_; };
    mu_.Await(absl::Condition(&open));
  }
  void Hold(bool held) {
    absl::MutexLock lock(&mu_);
    held_ = held;
  }
  void OnOversizeFrame(const FrameHeader&) override {}
  void OnClosed(const absl::Status&) override {}
  size_t count() const {
    absl::MutexLock lock(&mu_);
    return frames_;
  }
  // Waits (watchdog-bounded) until `n` frames arrived.
  bool WaitFor(size_t n) const {
    absl::MutexLock lock(&mu_);
    auto arrived = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return frames_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&arrived), kWatchdog);
  }

 private:
  mutable absl::Mutex mu_;
  size_t frames_ ABSL_GUARDED_BY(mu_) = 0;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
};

class ShmConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LOCUS_SKIP_UNLESS_MACHINE(SpinBudget::Get().limit() > 0, "one core: nobody polls");
    // A caller announced for the whole test keeps both reader threads from
    // polling (they yield to callers, spin_budget.h): the client's polling
    // announcement is then only ever raised by the test's own calls.
    if (announce_caller_) {
      SpinBudget::Get().AnnounceCaller();
      announced_ = true;
    }
    const size_t size = kShmHeaderSize + 2 * kRingCapacity;
    const int memfd = memfd_create("shm_connection_test", MFD_CLOEXEC);
    ASSERT_GE(memfd, 0);
    ASSERT_EQ(ftruncate(memfd, static_cast<off_t>(size)), 0);
    // A third mapping, the test's window on the shared words.
    auto view = ShmMapping::Map(memfd, size);
    ASSERT_TRUE(view.ok()) << view.status();
    view_ = *std::move(view);
    auto* header = new (view_->data()) ShmRegionHeader();
    header->magic = kShmMagic;
    header->version = kShmLayoutVersion;
    header->ring_capacity = kRingCapacity;
    header->region_size = size;
    header->seal_key = kShmSealKeyMark | 0x7e57;
    header_ = header;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    auto client_map = ShmMapping::Map(memfd, size);
    auto server_map = ShmMapping::Map(memfd, size);
    close(memfd);
    ASSERT_TRUE(client_map.ok() && server_map.ok());
    const ShmGeometry geometry{kRingCapacity, 0, header->seal_key};
    TransportOptions client_options;
    // Callers poll until their frame comes (the test waits to see them
    // polling before the server sends).
    client_options.shm_spin = shm_spin_;
    TransportOptions server_options;
    server_options.shm_spin = server_spin_;
    PeerInfo peer;
    peer.transport = "shm";
    client_ = ShmConnection::Create(sv[0], *std::move(client_map), /*client_side=*/true, geometry,
                                    peer, client_options);
    server_ = ShmConnection::Create(sv[1], *std::move(server_map), /*client_side=*/false,
                                    geometry, peer, server_options);
    // Idle reader threads look at their rings by themselves only every
    // 50 ms, which would hide a missing wake-up: here, only wake-ups count.
    client_->SetReaderSleepForTesting(absl::Hours(1));
    server_->SetReaderSleepForTesting(absl::Hours(1));
    client_->Start(&client_sink_);
    server_->Start(server_sink_override_ != nullptr ? server_sink_override_ : &server_sink_);
    // With a caller announced, reader threads never poll: wait until both
    // have looked at their rings once and sleep, so that from now on only
    // the test's calls and wake-ups move the announcement.
    if (announce_caller_) {
      ASSERT_TRUE(WaitForReaderAsleep(1));
      ASSERT_TRUE(WaitForReaderAsleep(0));
    }
  }

  // Whether the reader thread consuming ring `ring` (1: the client's)
  // sleeps on its doorbell, waiting up to the watchdog for it.
  bool WaitForReaderAsleep(int ring) const {
    const absl::Time until = absl::Now() + kWatchdog;
    while (header_->rings[ring].consumer_sleepers.load(std::memory_order_seq_cst) == 0) {
      if (absl::Now() >= until) return false;
      absl::SleepFor(absl::Microseconds(100));
    }
    return true;
  }

  // Rings the client's doorbell (ring 1's data_seq) and wakes its sleeper,
  // retrying the wake-up until it reaches a thread asleep on it (the
  // client's reader thread: nothing else sleeps there in these tests),
  // bounded by the watchdog. The word changes once, so that a reader on
  // its way into the futex still goes to sleep and is found there.
  bool RingUntilItWakesTheClientsReader() {
    std::atomic<uint32_t>* doorbell = &header_->rings[1].data_seq;
    doorbell->fetch_add(1, std::memory_order_seq_cst);
    const absl::Time until = absl::Now() + kWatchdog;
    for (;;) {
      const long woken = syscall(SYS_futex, reinterpret_cast<uint32_t*>(doorbell), FUTEX_WAKE, INT_MAX,
                                 nullptr, nullptr, 0);
      if (woken > 0) return true;
      if (absl::Now() >= until) return false;
      absl::SleepFor(absl::Microseconds(100));
    }
  }

  void TearDown() override {
    if (client_) client_->Close(absl::CancelledError("test over"));
    if (server_) server_->Close(absl::CancelledError("test over"));
    client_.reset();
    server_.reset();
    if (announced_) SpinBudget::Get().WithdrawCaller();
  }

  // The server sends one frame to the client.
  void ServerSends(const std::string& payload) {
    FrameHeader header = FrameHeader::Make(FrameType::kPing, 0, 0);
    header.payload_length = static_cast<uint32_t>(payload.size());
    const absl::Status sent = server_->Send(header, "", payload, absl::Now() + kWatchdog);
    ASSERT_TRUE(sent.ok()) << sent;
  }

  // Whether the client announces that it polls its incoming ring (ring 1).
  uint32_t ClientPollingAnnounced() const {
    return header_->rings[1].consumer_polling.load(std::memory_order_seq_cst);
  }

  // A synchronous caller on the client waits for frame number `n`, driving
  // (DriveUntil gives up if another thread holds the reader role for long:
  // then it tries again).
  bool ClientDrivesUntil(size_t n) {
    const absl::Time until = absl::Now() + kWatchdog;
    while (absl::Now() < until) {
      if (client_->DriveUntil([&] { return client_sink_.count() >= n; }, until)) {
        return client_sink_.count() >= n;
      }
    }
    return false;
  }

  // A synchronous call: a caller polls for frame number `n`, which the
  // server sends once the caller's announcement is up.
  void Call(size_t n) {
    bool received = false;
    std::thread caller([&] { received = ClientDrivesUntil(n); });
    const absl::Time until = absl::Now() + kWatchdog;
    while (ClientPollingAnnounced() == 0 && absl::Now() < until) std::this_thread::yield();
    ServerSends("reply");
    caller.join();
    EXPECT_TRUE(received) << "call " << n;
  }

  bool announce_caller_ = true;
  bool announced_ = false;
  absl::Duration shm_spin_ = absl::Seconds(30);  // the client's
  absl::Duration server_spin_ = absl::Seconds(30);
  std::unique_ptr<ShmMapping> view_;
  ShmRegionHeader* header_ = nullptr;
  CountingSink client_sink_;
  CountingSink server_sink_;
  FrameSink* server_sink_override_ = nullptr;  // set in a derived fixture's constructor
  std::unique_ptr<ShmConnection> client_;
  std::unique_ptr<ShmConnection> server_;
};

TEST_F(ShmConnectionTest, CallerTakesItsAnnouncementDownWhileBackgroundReadsAreWanted) {
  // Connections start with background reads wanted (a serving side, or a
  // client with asynchronous calls outstanding): a caller leaving
  // DriveUntil must not leave the producer believing someone polls.
  for (size_t i = 1; i <= 20; ++i) {
    Call(i);
    EXPECT_EQ(ClientPollingAnnounced(), 0u) << "call " << i;
  }
}

TEST_F(ShmConnectionTest, AnnouncementOutlivesSynchronousCallsAndComesDownForBackgroundReads) {
  client_->AdjustBackgroundReads(-1);  // a plain client, nothing asynchronous outstanding
  size_t received = 0;
  for (int i = 0; i < 20; ++i) {
    Call(++received);
    EXPECT_EQ(ClientPollingAnnounced(), 1u) << "left up for the next call " << i;
  }
  // An asynchronous call starts: from now on frames must reach the reader
  // thread without anyone driving, so the announcement must come down.
  client_->AdjustBackgroundReads(+1);
  const absl::Time until = absl::Now() + kWatchdog;
  while (ClientPollingAnnounced() != 0 && absl::Now() < until) absl::SleepFor(absl::Microseconds(100));
  EXPECT_EQ(ClientPollingAnnounced(), 0u);
  // And the reader thread delivers what comes, with no caller driving.
  for (int i = 0; i < 20; ++i) {
    ServerSends("async reply");
    ASSERT_TRUE(client_sink_.WaitFor(++received)) << i;
  }
}

TEST_F(ShmConnectionTest, FramesArrivingBetweenSynchronousCallsAreReadByTheNextCaller) {
  client_->AdjustBackgroundReads(-1);
  Call(1);
  // Nobody waits for this one; whoever drives next delivers it with its own.
  ServerSends("unexpected");
  ServerSends("second");
  ASSERT_TRUE(ClientDrivesUntil(3));
  EXPECT_EQ(client_sink_.count(), 3u);
}

TEST_F(ShmConnectionTest, ReaderParkedBehindACallerWakesWhenBackgroundReadsAreWanted) {
  client_->AdjustBackgroundReads(-1);  // a plain client
  // A synchronous caller holds the reader role, polling for frame 1.
  bool received = false;
  std::thread caller([&] { received = ClientDrivesUntil(1); });
  const absl::Time until = absl::Now() + kWatchdog;
  while (ClientPollingAnnounced() == 0 && absl::Now() < until) std::this_thread::yield();
  // Something rings the client's doorbell: its reader thread wakes, finds
  // the role taken and nobody wanting background reads, and parks (waiting
  // for a local wake-up only, for up to its 1 h test sleep).
  header_->rings[1].data_seq.fetch_add(1, std::memory_order_seq_cst);
  FutexWakeAll(&header_->rings[1].data_seq);
  while (!client_->ReaderParkedForTesting() && absl::Now() < until) absl::SleepFor(absl::Microseconds(100));
  ASSERT_TRUE(client_->ReaderParkedForTesting());
  // An asynchronous call starts while the caller still drives: the parked
  // reader must wake up for it, and read what comes once the caller is gone.
  client_->AdjustBackgroundReads(+1);
  while (client_->ReaderParkedForTesting() && absl::Now() < until) absl::SleepFor(absl::Microseconds(100));
  EXPECT_FALSE(client_->ReaderParkedForTesting());
  ServerSends("the caller's reply");
  caller.join();
  ASSERT_TRUE(received);
  for (size_t n = 2; n <= 10; ++n) {
    ServerSends("async reply");
    ASSERT_TRUE(client_sink_.WaitFor(n)) << n;
  }
}

// What a sender queued because the peer's ring was full is reported until
// the peer has taken it (Server::Shutdown waits for it before closing).
TEST_F(ShmConnectionTest, QueuedOutputIsReportedUntilThePeerTakesIt) {
  EXPECT_FALSE(server_->HasQueuedOutput());
  client_sink_.Hold(true);  // the client's reader stops in its first OnFrame
  struct Unhold {
    CountingSink& sink;
    ~Unhold() { sink.Hold(false); }  // also on an early return: TearDown joins the reader
  } unhold{client_sink_};
  const std::string half_ring(kRingCapacity / 2, 'q');
  for (int i = 0; i < 3; ++i) ServerSends(half_ring);  // the third cannot fit
  EXPECT_TRUE(server_->HasQueuedOutput());
  client_sink_.Hold(false);
  ASSERT_TRUE(client_sink_.WaitFor(3));
  const absl::Time until = absl::Now() + kWatchdog;
  while (server_->HasQueuedOutput() && absl::Now() < until) absl::SleepFor(absl::Microseconds(100));
  EXPECT_FALSE(server_->HasQueuedOutput());
}

// The peer can write this side's published read index too: pointed back at
// an old record (still sealed for its own index), it must not keep the
// reader thread from sleeping (nor make it deliver the record again).
TEST_F(ShmConnectionTest, RewoundReadIndexDoesNotKeepTheReaderAwake) {
  ServerSends("one");
  ASSERT_TRUE(client_sink_.WaitFor(1));
  ASSERT_TRUE(WaitForReaderAsleep(1));
  header_->rings[1].read_index.store(0, std::memory_order_seq_cst);  // the first record's index
  // Each ring of the doorbell wakes the reader to look again, and must
  // find it back asleep on the doorbell sooner or later: a reader the
  // rewound index kept awake is never found there (and the watchdog ends
  // the test).
  for (int ring = 0; ring < 20; ++ring) {
    ASSERT_TRUE(RingUntilItWakesTheClientsReader()) << "the reader never slept again, ring " << ring;
  }
  EXPECT_EQ(client_sink_.count(), 1u);
}

// What arrived before the connection closed is delivered, every frame of
// it: the reader's last pass after closure drains every sealed record.
TEST_F(ShmConnectionTest, FramesThatArrivedBeforeClosureAreAllDelivered) {
  client_sink_.Hold(true);
  ServerSends("first");
  ASSERT_TRUE(client_sink_.WaitFor(1));  // the client's reader waits in OnFrame
  for (int i = 2; i <= 5; ++i) ServerSends("more");
  client_->Close(absl::CancelledError("closed with frames waiting"));
  client_sink_.Hold(false);
  EXPECT_TRUE(client_sink_.WaitFor(5));
  EXPECT_EQ(client_sink_.count(), 5u);
}

class ShmReaderThreadTest : public ShmConnectionTest {
 protected:
  ShmReaderThreadTest() {
    announce_caller_ = false;
    shm_spin_ = absl::Minutes(10);  // a reader that polls would poll past the watchdog
    // The server's reader thread must not hold the process's one spin
    // token (on two cores) that the client's would poll with.
    server_spin_ = absl::ZeroDuration();
  }
};


TEST_F(ShmReaderThreadTest, ReaderThreadPollsWhileBackgroundReadsAreWanted) {
  // An asynchronous call outstanding: the reader thread polls for its reply.
  ServerSends("first");
  ASSERT_TRUE(client_sink_.WaitFor(1));
  const absl::Time until = absl::Now() + kWatchdog;
  while (ClientPollingAnnounced() == 0 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(ClientPollingAnnounced(), 1u);
  // And delivers what comes while it polls.
  ServerSends("second");
  ASSERT_TRUE(client_sink_.WaitFor(2));
}

// A hostile client that seals the next record into the server's incoming
// ring each time the server's reader delivers one: the reader always finds
// another record waiting, and never a full ring (it is one record behind).
class SealingAheadSink final : public FrameSink {
 public:
  // Starts the flood: `limit` records in all, the first one now; the
  // reader closes `connection` itself once it has delivered `close_at`.
  void Start(ShmRegionHeader* header, char* region, size_t limit, size_t close_at,
             ShmConnection* connection) {
    absl::MutexLock lock(&mu_);
    ring_ = std::make_unique<ShmRing>(&header->rings[0], region + kShmHeaderSize, kRingCapacity,
                                      &header->rings[1].data_seq, header->seal_key);
    limit_ = limit;
    close_at_ = close_at;
    connection_ = connection;
    SealOne();
    ring_->WakeConsumerIfSleeping();
  }
  void OnFrame(Frame&) override {
    // The records arrive through a second mapping of the region, which
    // ThreadSanitizer cannot pair with Start's: mu_ orders them for it.
    absl::MutexLock lock(&mu_);
    if (frames_.fetch_add(1, std::memory_order_relaxed) + 1 == close_at_) {
      connection_->Close(absl::CancelledError("closed under a flood of records"));
    }
    SealOne();
  }
  void OnOversizeFrame(const FrameHeader&) override {}
  void OnClosed(const absl::Status&) override {}
  size_t count() const { return frames_.load(std::memory_order_relaxed); }
  bool WaitFor(size_t n) const {
    const absl::Time until = absl::Now() + kWatchdog;
    while (count() < n && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
    return count() >= n;
  }

 private:
  // On the server's reader thread (or the test's, for the first).
  void SealOne() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (sealed_ >= limit_) return;
    ++sealed_;
    const FrameHeader ping = FrameHeader::Make(FrameType::kPing, 0, 0);
    ring_->Write(reinterpret_cast<const char*>(&ping), sizeof(ping));  // room never asked for
  }

  absl::Mutex mu_;
  std::unique_ptr<ShmRing> ring_ ABSL_GUARDED_BY(mu_);
  size_t limit_ ABSL_GUARDED_BY(mu_) = 0;
  size_t close_at_ ABSL_GUARDED_BY(mu_) = 0;
  ShmConnection* connection_ ABSL_GUARDED_BY(mu_) = nullptr;
  size_t sealed_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<size_t> frames_{0};
};

class ShmSealingPeerTest : public ShmConnectionTest {
 protected:
  ShmSealingPeerTest() { server_sink_override_ = &flood_; }
  SealingAheadSink flood_;
};

// The reader gives its ring's room back, and looks at closure, callers and
// queued output, at least once per ring's worth of records, however fast
// the peer seals more.
TEST_F(ShmSealingPeerTest, APeerSealingRecordsAheadDoesNotHoldTheReaderForEver) {
  // Drain counts a record as its header and bytes (16 + a bare 24-byte
  // frame) and stops after a ring's worth of them.
  constexpr size_t kBatch = (kRingCapacity + 39) / 40;
  const size_t close_at = 3 * kBatch;
  flood_.Start(header_, reinterpret_cast<char*>(header_), 40 * kBatch, close_at, server_.get());
  ASSERT_TRUE(flood_.WaitFor(close_at));
  server_.reset();  // joins the reader thread
  // Closed by the reader itself, mid-batch: the rest of that batch, and
  // the one last pass after closure.
  EXPECT_LE(flood_.count() - close_at, 2 * kBatch);
}

TEST(ShmPollWindowTest, CallersAndWantedReadersWaitForTheReplyToALargeMessage) {
  const absl::Duration spin = absl::Microseconds(50);
  EXPECT_EQ(ShmPollWindow(spin, 64, /*reply_awaited=*/true), spin);
  EXPECT_EQ(ShmPollWindow(spin, 4096, true), spin + absl::Microseconds(1));
  EXPECT_EQ(ShmPollWindow(spin, 1 << 20, true), spin + absl::Microseconds(256));
  EXPECT_EQ(ShmPollWindow(spin, uint64_t{1} << 40, true), spin + absl::Milliseconds(2));
}

TEST(ShmPollWindowTest, ReaderNobodyNeedsPollsOnlyTheSpin) {
  const absl::Duration spin = absl::Microseconds(50);
  EXPECT_EQ(ShmPollWindow(spin, 1 << 20, /*reply_awaited=*/false), spin);
  EXPECT_EQ(ShmPollWindow(spin, 64, false), spin);
}

TEST(ShmPollWindowTest, ZeroSpinDisablesPolling) {
  EXPECT_EQ(ShmPollWindow(absl::ZeroDuration(), 1 << 20, true), absl::ZeroDuration());
  EXPECT_EQ(ShmPollWindow(-absl::Microseconds(1), 64, false), absl::ZeroDuration());
}

}  // namespace
}  // namespace locus::internal
