// A shared-memory peer is untrusted: a client that lies in its setup or
// corrupts the rings gets its own connection closed with a clear logged
// reason, while the server keeps serving everyone else.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <new>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "locus/locus.h"
#include "locus/wire.pb.h"
#include "test_service.h"
#include "tests/testing/test_util.h"
#include "transports/shm/shm_layout.h"
#include "transports/socket/fd_passing.h"
#include "transports/unix/unix_transport.h"

namespace locus::conformance {
namespace {

using ::locus::testing::kWatchdog;
using ::locus::testing::StderrCapture;
using ::locus::testing::TempDir;
using ::testing::HasSubstr;
using namespace ::locus::internal;  // NOLINT: test of transport internals

struct SetupLies {
  bool seal = true;
  int64_t size_delta = 0;       // the memfd is this much larger than announced
  uint32_t magic = kShmMagic;   // written into the region header
  uint64_t bulk_capacity = 0;   // not a lie: bulk areas of this size
  uint64_t seal_key = kShmSealKeyMark | 0x1234;  // written into the region header
};

// Speaks the client side of the shared-memory setup by hand.
class HandmadeShmClient {
 public:
  ~HandmadeShmClient() {
    if (region_ != nullptr) munmap(region_, size_);
    if (socket_ >= 0) close(socket_);
  }

  // Returns the server's reply error ("" = accepted) or a transport error.
  std::string Setup(const std::string& unix_address, const SetupLies& lies) {
    absl::StatusOr<int> fd = ConnectUnixSocket(unix_address, absl::Now() + kWatchdog);
    if (!fd.ok()) return "connect: " + fd.status().ToString();
    socket_ = *fd;
    capacity_ = 4096;
    size_ = kShmHeaderSize + 2 * capacity_ + 2 * lies.bulk_capacity;
    int memfd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (ftruncate(memfd, static_cast<off_t>(size_ + lies.size_delta)) != 0) return "ftruncate";
    if (lies.seal) fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    region_ = static_cast<char*>(mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0));
    auto* header = new (region_) ShmRegionHeader();
    header->magic = lies.magic;
    header->version = kShmLayoutVersion;
    header->ring_capacity = capacity_;
    header->region_size = size_;
    header->bulk_capacity = lies.bulk_capacity;
    header->seal_key = lies.seal_key;
    wire::ShmSetup setup;
    setup.set_layout_version(kShmLayoutVersion);
    setup.set_ring_capacity(capacity_);
    setup.set_region_size(size_);
    setup.set_bulk_capacity(lies.bulk_capacity);
    std::string meta = setup.SerializeAsString();
    FrameHeader frame = FrameHeader::Make(FrameType::kTransportSetup, 0, 0);
    frame.meta_length = static_cast<uint32_t>(meta.size());
    std::string bytes = std::string(reinterpret_cast<const char*>(&frame), sizeof(frame)) + meta;
    absl::Status sent = SendWithFd(socket_, bytes, memfd);
    close(memfd);
    if (!sent.ok()) return sent.ToString();
    FrameHeader reply_header{};
    absl::Status read = ReadExactly(socket_, reinterpret_cast<char*>(&reply_header), sizeof(reply_header),
                                    absl::Now() + kWatchdog);
    if (!read.ok()) return read.ToString();
    std::string reply_meta(reply_header.meta_length, '\0');
    read = ReadExactly(socket_, reply_meta.data(), reply_meta.size(), absl::Now() + kWatchdog);
    if (!read.ok()) return read.ToString();
    wire::ShmSetupReply reply;
    reply.ParseFromString(reply_meta);
    return reply.error();
  }

  ShmRegionHeader* header() { return reinterpret_cast<ShmRegionHeader*>(region_); }
  char* client_to_server_ring() { return region_ + kShmHeaderSize; }

  // Writes bytes into the client->server ring as one sealed record (by
  // hand, as shm_layout.h describes it; "" publishes no record) and rings
  // the server's doorbell.
  void Publish(const std::string& bytes) {
    uint64_t at = header()->rings[0].write_index.load();
    if (!bytes.empty()) {
      auto* record = reinterpret_cast<ShmRecordHeader*>(client_to_server_ring() + at % capacity_);
      for (size_t i = 0; i < bytes.size(); ++i) {
        client_to_server_ring()[(at + sizeof(ShmRecordHeader) + i) % capacity_] = bytes[i];
      }
      record->length.store(static_cast<uint32_t>(bytes.size()));
      record->seal.store(ShmRecordSeal(at, header()->seal_key));
      at += (sizeof(ShmRecordHeader) + bytes.size() + kShmRecordAlign - 1) & ~(kShmRecordAlign - 1);
      header()->rings[0].write_index.store(at);
    }
    header()->rings[0].data_seq.fetch_add(1);
    syscall(SYS_futex, &header()->rings[0].data_seq, 1 /*FUTEX_WAKE*/, 1 << 30, nullptr, nullptr, 0);
  }

  // Seals a record at the client->server ring's next position that claims
  // `length` bytes, whatever the ring holds.
  void PublishRecordClaiming(uint32_t length) {
    const uint64_t at = header()->rings[0].write_index.load();
    auto* record = reinterpret_cast<ShmRecordHeader*>(client_to_server_ring() + at % capacity_);
    record->length.store(length);
    record->seal.store(ShmRecordSeal(at, header()->seal_key));
    Publish("");
  }

  // True once the server has hung up on us.
  bool WaitForHangup() {
    char byte;
    absl::Status read = ReadExactly(socket_, &byte, 1, absl::Now() + kWatchdog);
    return absl::IsUnavailable(read);
  }

 private:
  int socket_ = -1;
  char* region_ = nullptr;
  uint64_t capacity_ = 0;
  size_t size_ = 0;
};

// A REQUEST frame whose payload is `ref` into the sender's bulk area.
std::string BulkRequestFrame(const ShmPayloadRef& ref) {
  FrameHeader frame = FrameHeader::Make(FrameType::kRequest, kFlagHasMessage | kFlagPayloadInBulk, 1);
  frame.payload_length = sizeof(ref);
  return std::string(reinterpret_cast<const char*>(&frame), sizeof(frame)) +
         std::string(reinterpret_cast<const char*>(&ref), sizeof(ref));
}

class ShmHostilePeer : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.RegisterService(&service_).ok());
    ASSERT_TRUE(server_.AddListeningAddress("unix:" + dir_.path() + "/s.sock").ok());
    ASSERT_TRUE(server_.Start().ok());
    address_ = server_.listening_addresses()[0];
  }

  void ExpectOthersStillServed() {
    ChannelOptions options;
    options.allowed_transports = "shm";
    auto channel = Connect(address_, options);
    ASSERT_TRUE(channel.ok()) << channel.status();
    TestService::Stub stub(*channel);
    EXPECT_TRUE(stub.Echo(EchoRequest(), CallOptions::WithTimeout(kWatchdog)).ok());
  }

  // The server hangs up on `client`, logs `reason`, and serves others.
  void ExpectHungUpOn(HandmadeShmClient& client, const StderrCapture& captured,
                      const std::string& reason) {
    EXPECT_TRUE(client.WaitForHangup());
    EXPECT_TRUE(captured.WaitFor(reason)) << captured.Contents();
    ExpectOthersStillServed();
  }

  TempDir dir_;
  TestServiceImpl service_;
  Server server_;
  std::string address_;
};

TEST_F(ShmHostilePeer, HonestHandmadeClientIsAccepted) {
  HandmadeShmClient client;
  EXPECT_EQ(client.Setup(address_, {}), "");
}

TEST_F(ShmHostilePeer, UnsealedMemfdIsRefused) {
  HandmadeShmClient client;
  SetupLies lies;
  lies.seal = false;
  EXPECT_THAT(client.Setup(address_, lies), HasSubstr("not a sealed memfd"));
  ExpectOthersStillServed();
}

TEST_F(ShmHostilePeer, WrongSizeIsRefused) {
  HandmadeShmClient client;
  SetupLies lies;
  lies.size_delta = 4096;
  EXPECT_THAT(client.Setup(address_, lies), HasSubstr("announced size"));
  ExpectOthersStillServed();
}

TEST_F(ShmHostilePeer, BadRegionHeaderIsRefused) {
  HandmadeShmClient client;
  SetupLies lies;
  lies.magic = 0xdeadbeef;
  EXPECT_THAT(client.Setup(address_, lies), HasSubstr("region header"));
  ExpectOthersStillServed();
}

TEST_F(ShmHostilePeer, BulkAreaOfAnOddSizeIsRefused) {
  HandmadeShmClient client;
  SetupLies lies;
  lies.bulk_capacity = 1000;  // not a multiple of 4 KiB
  EXPECT_THAT(client.Setup(address_, lies), HasSubstr("geometry"));
  ExpectOthersStillServed();
}

TEST_F(ShmHostilePeer, CorruptRingIndexClosesThatConnection) {
  StderrCapture captured;
  HandmadeShmClient client;
  ASSERT_EQ(client.Setup(address_, {}), "");
  // The producer's index moves, yet no record is sealed where it says.
  client.header()->rings[0].write_index.store(uint64_t{1} << 40);
  client.Publish("");
  ExpectHungUpOn(client, captured, "corrupt shared-memory ring");
}

TEST_F(ShmHostilePeer, RecordLongerThanTheRingClosesThatConnection) {
  StderrCapture captured;
  HandmadeShmClient client;
  ASSERT_EQ(client.Setup(address_, {}), "");
  client.PublishRecordClaiming(1u << 20);  // the ring holds 4 KiB
  ExpectHungUpOn(client, captured, "corrupt shared-memory ring");
}

TEST_F(ShmHostilePeer, RegionWithoutAValidSealKeyIsRefused) {
  HandmadeShmClient client;
  SetupLies lies;
  lies.seal_key = 0x1234;  // top bit clear: a seal could be 0, as unwritten memory is
  EXPECT_THAT(client.Setup(address_, lies), HasSubstr("invalid seal key"));
  ExpectOthersStillServed();
}

TEST_F(ShmHostilePeer, GarbageFramesInTheRingCloseThatConnection) {
  StderrCapture captured;
  HandmadeShmClient client;
  ASSERT_EQ(client.Setup(address_, {}), "");
  client.Publish(std::string(64, '\xff'));
  ExpectHungUpOn(client, captured, "malformed input");
}

TEST_F(ShmHostilePeer, BulkReferenceOutsideTheAreaClosesThatConnection) {
  StderrCapture captured;
  HandmadeShmClient client;
  SetupLies lies;
  lies.bulk_capacity = 64 << 10;
  ASSERT_EQ(client.Setup(address_, lies), "");
  // A request whose payload "lies" past the end of the client's bulk area.
  client.Publish(BulkRequestFrame(ShmPayloadRef{60 << 10, 8 << 10}));
  ExpectHungUpOn(client, captured, "outside the 65536-byte bulk area");
}

TEST_F(ShmHostilePeer, BulkReferenceWithoutABulkAreaClosesThatConnection) {
  StderrCapture captured;
  HandmadeShmClient client;
  ASSERT_EQ(client.Setup(address_, {}), "");
  client.Publish(BulkRequestFrame(ShmPayloadRef{0, 0}));
  ExpectHungUpOn(client, captured, "without a bulk area");
}

TEST_F(ShmHostilePeer, SilentPeerAfterSetupDoesNotDisturbOthers) {
  // A peer that sets up shared memory and then says nothing holds only its
  // own connection; others are unaffected meanwhile.
  HandmadeShmClient client;
  ASSERT_EQ(client.Setup(address_, {}), "");
  ExpectOthersStillServed();
}

}  // namespace
}  // namespace locus::conformance
