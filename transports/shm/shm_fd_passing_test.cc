// File descriptors on a shared-memory connection (contract 12 of
// locus/transport.h) from a peer that breaks the rules: frames in the ring
// that claim descriptors, and messages on the connection's Unix socket that
// do not match them (docs/wire.md, "File descriptors"). The test plays the
// hostile peer by writing raw messages on the client's end of the socket
// and by forging the count bits of frames the client sends (Send passes a
// header's flags through as given). The honest path is in the connection
// conformance suite (tests/conformance, kind "shm").
//
// The connections are a pair over one memfd and a socketpair, set up by
// hand as in shm_connection_test.cc. Deadlines are watchdogs only.
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "locus/frame.h"
#include "locus/transport.h"
#include "transports/common/frame_fds.h"
#include "transports/shm/shm_connection.h"
#include "transports/shm/shm_layout.h"
#include "tests/testing/fd_test_util.h"

namespace locus::internal {
namespace {

using testing::AwaitOpenFdCount;
using testing::FileId;
using testing::IdOf;
using testing::OpenFdCount;

constexpr absl::Duration kWatchdog = absl::Seconds(60);
constexpr uint64_t kRingCapacity = 64 * 1024;

// Records each frame's call id and what its descriptors refer to, and the
// reason the connection closed.
class FdSink final : public FrameSink {
 public:
  struct Received {
    uint64_t call_id;
    uint32_t flags;
    std::vector<FileId> fds;
  };

  void OnFrame(Frame& frame) override {
    Received received{frame.header.call_id, frame.header.flags, {}};
    for (const OwnedFd& fd : frame.fds) received.fds.push_back(IdOf(fd.get()));
    absl::MutexLock lock(&mu_);
    frames_.push_back(received);
  }
  void OnOversizeFrame(const FrameHeader&) override {}
  void OnClosed(const absl::Status& reason) override {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    reason_ = reason;
  }

  bool AwaitFrames(size_t count) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, count]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return frames_.size() >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kWatchdog);
  }
  bool AwaitClosed() {
    absl::MutexLock lock(&mu_);
    auto closed = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return closed_; };
    return mu_.AwaitWithTimeout(absl::Condition(&closed), kWatchdog);
  }
  std::vector<Received> frames() {
    absl::MutexLock lock(&mu_);
    return frames_;
  }
  absl::Status reason() {
    absl::MutexLock lock(&mu_);
    return reason_;
  }
  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Received> frames_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status reason_ ABSL_GUARDED_BY(mu_);
};

class ShmFdPassingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const size_t size = kShmHeaderSize + 2 * kRingCapacity;
    const int memfd = memfd_create("shm_fd_passing_test", MFD_CLOEXEC);
    ASSERT_GE(memfd, 0);
    ASSERT_EQ(ftruncate(memfd, static_cast<off_t>(size)), 0);
    auto client_map = ShmMapping::Map(memfd, size);
    auto server_map = ShmMapping::Map(memfd, size);
    close(memfd);
    ASSERT_TRUE(client_map.ok() && server_map.ok());
    auto* header = new ((*client_map)->data()) ShmRegionHeader();
    header->magic = kShmMagic;
    header->version = kShmLayoutVersion;
    header->ring_capacity = kRingCapacity;
    header->region_size = size;
    header->seal_key = kShmSealKeyMark | 0xfd;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
    // The client's end, written raw by the test too (the client owns it).
    raw_ = sv[0];
    const ShmGeometry geometry{kRingCapacity, 0, header->seal_key};
    PeerInfo peer;
    peer.transport = "shm";
    client_ = ShmConnection::Create(sv[0], *std::move(client_map), /*client_side=*/true, geometry,
                                    peer, TransportOptions{});
    server_ = ShmConnection::Create(sv[1], *std::move(server_map), /*client_side=*/false,
                                    geometry, peer, TransportOptions{});
    client_->Start(&client_sink_);
    server_->Start(&server_sink_);
    baseline_ = OpenFdCount();
  }

  void TearDown() override {
    client_->Close(absl::CancelledError("test over"));
    server_->Close(absl::CancelledError("test over"));
    client_.reset();
    server_.reset();
  }

  // A raw message on the socket: `bytes` with `count` descriptors attached,
  // duplicates of one fresh file (last_file_).
  void SendRaw(absl::string_view bytes, size_t count) {
    const int failed = testing::SendRawWithFds(raw_, bytes, count, &last_file_);
    ASSERT_EQ(failed, 0) << std::strerror(failed);
  }

  // A frame through the ring whose flags claim `count` descriptors, with
  // nothing sent on the socket for them.
  void SendClaiming(uint64_t call_id, uint32_t count) {
    FrameHeader header = FrameHeader::Make(FrameType::kMessage, kFlagHasMessage, call_id);
    header.flags |= count << kFdCountShift;
    header.payload_length = 1;
    const absl::Status sent = client_->Send(header, {}, "x", absl::Now() + kWatchdog);
    ASSERT_TRUE(sent.ok()) << sent;
  }

  // The server closed the connection for malformed input naming `problem`,
  // delivered at most `delivered` frames, and every descriptor it received
  // is closed again.
  void ExpectClosedFor(const std::string& problem, size_t delivered = 0) {
    ASSERT_TRUE(server_sink_.AwaitClosed());
    const absl::Status reason = server_sink_.reason();
    EXPECT_EQ(reason.code(), absl::StatusCode::kInternal) << reason;
    EXPECT_NE(reason.message().find("malformed input from peer"), std::string::npos) << reason;
    EXPECT_NE(reason.message().find(problem), std::string::npos) << reason;
    EXPECT_LE(server_sink_.frames().size(), delivered);
    EXPECT_EQ(AwaitOpenFdCount(baseline_), baseline_);
  }

  int raw_ = -1;
  FdSink client_sink_;
  FdSink server_sink_;
  std::unique_ptr<ShmConnection> client_;
  std::unique_ptr<ShmConnection> server_;
  int baseline_ = 0;
  FileId last_file_;
};

// The wire format by hand: one byte (the count) with the descriptors, then
// the frame that claims them. What a Locus sender does, so it is delivered.
TEST_F(ShmFdPassingTest, AMessageThatMatchesItsFrameIsDelivered) {
  SendRaw("\x02", 2);
  const FileId sent = last_file_;
  SendClaiming(1, 2);
  ASSERT_TRUE(server_sink_.AwaitFrames(1));
  const FdSink::Received frame = server_sink_.frames()[0];
  EXPECT_EQ(frame.flags, kFlagHasMessage);
  EXPECT_TRUE(frame.fds == (std::vector<FileId>{sent, sent}));
  EXPECT_FALSE(server_sink_.closed());
  EXPECT_EQ(AwaitOpenFdCount(baseline_), baseline_);
}

TEST_F(ShmFdPassingTest, AFrameClaimingDescriptorsThatNeverCameClosesTheConnection) {
  SendClaiming(1, 3);
  ExpectClosedFor("a frame claims 3 file descriptors but the socket had none");
}

TEST_F(ShmFdPassingTest, AMessageAnnouncingAnotherCountClosesTheConnection) {
  SendRaw("\x03", 2);
  SendClaiming(1, 2);
  ExpectClosedFor("a frame claims 2 file descriptors but the socket carried 2 announced as 3");
}

TEST_F(ShmFdPassingTest, FewerDescriptorsThanClaimedCloseTheConnection) {
  SendRaw("\x02", 1);
  SendClaiming(1, 2);
  ExpectClosedFor("carried 1 announced as 2");
}

// More than a frame may carry: cut short by the kernel (MSG_CTRUNC), which
// closes what did not fit; the receiver closes the rest.
TEST_F(ShmFdPassingTest, MoreDescriptorsThanAFrameMayCarryCloseTheConnection) {
  SendRaw("\x40", 100);
  SendClaiming(1, kMaxFdsPerFrame);
  ExpectClosedFor("MSG_CTRUNC");
}

TEST_F(ShmFdPassingTest, AClaimAboveTheLimitClosesTheConnection) {
  SendRaw("\x64", 100);  // left unread on the socket: closed with it
  SendClaiming(1, 100);
  ExpectClosedFor("a frame claims 100 file descriptors; at most 64");
}

// Two bytes with one message's descriptors: the first claim gets them, the
// second finds a byte with none.
TEST_F(ShmFdPassingTest, AStrayByteWithoutDescriptorsClosesTheConnection) {
  SendRaw(absl::string_view("\x01\x01", 2), 1);
  SendClaiming(1, 1);
  SendClaiming(3, 1);
  ExpectClosedFor("carried 0 announced as 1", 1);
  const std::vector<FdSink::Received> frames = server_sink_.frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].fds.size(), 1u);
}

// Messages no frame claims are not received (they stay in the socket's
// buffer, outside this process's descriptors), and the connection goes on.
TEST_F(ShmFdPassingTest, MessagesNoFrameClaimsAreNotTakenIn) {
  SendRaw("\x05", 5);
  FrameHeader header = FrameHeader::Make(FrameType::kMessage, kFlagHasMessage, 1);
  header.payload_length = 1;
  ASSERT_TRUE(client_->Send(header, {}, "x", absl::Now() + kWatchdog).ok());
  ASSERT_TRUE(server_sink_.AwaitFrames(1));
  EXPECT_TRUE(server_sink_.frames()[0].fds.empty());
  EXPECT_FALSE(server_sink_.closed());
  EXPECT_EQ(AwaitOpenFdCount(baseline_), baseline_);
}

}  // namespace
}  // namespace locus::internal
