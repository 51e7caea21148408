// Large payloads on shared memory travel through the bulk areas: written
// once by the sender, delivered where they lie (Frame::borrowed_payload),
// and released so that the area is reused; small ones and those that do not
// fit go through the ring (serialized straight into it when the frame fits
// in one piece). Tested on raw transport connections, below the RPC core.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "locus/transport.h"
#include "tests/testing/test_util.h"
#include "transports/shm/shm_bulk.h"
#include "transports/shm/shm_transport.h"

namespace locus {
namespace {

using ::locus::testing::kWatchdog;
using ::locus::testing::TempDir;

// Records what arrives: payload contents, whether they came from the bulk
// area, and whether they were delivered where they lay (bulk area or ring).
class RecordingSink final : public FrameSink {
 public:
  struct Arrival {
    uint64_t call_id;
    std::string payload;
    bool in_place;  // from the bulk area
    bool borrowed;  // from the bulk area, or whole in the ring
  };
  void OnFrame(Frame& frame) override {
    absl::MutexLock lock(&mu_);
    // Only payloads of kMinBulkPayload and more take the bulk area; the
    // ones these tests expect there are larger than the ring, so a
    // borrowed one cannot have lain whole in the ring.
    const bool borrowed = frame.borrowed_payload != nullptr;
    arrivals_.push_back({frame.header.call_id, std::string(frame.payload_bytes()),
                         borrowed && frame.header.payload_length >= internal::kMinBulkPayload,
                         borrowed});
  }
  // Neither happens to a well-formed stream of small frames: a torn frame
  // shows up as one of them, and ends the wait at once.
  void OnOversizeFrame(const FrameHeader& header) override {
    absl::MutexLock lock(&mu_);
    trouble_ = absl::StrCat("oversize frame announced: payload_length ", header.payload_length);
  }
  void OnClosed(const absl::Status& reason) override {
    absl::MutexLock lock(&mu_);
    if (trouble_.empty()) trouble_ = absl::StrCat("closed: ", reason.ToString());
  }

  // Waits until `count` frames have arrived: OK, or why not (the
  // connection closed, a frame was misread, the watchdog).
  absl::Status WaitFor(size_t count) {
    absl::MutexLock lock(&mu_);
    auto arrived = [this, count]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return arrivals_.size() >= count || !trouble_.empty();
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&arrived), kWatchdog)) {
      return absl::DeadlineExceededError(absl::StrCat(arrivals_.size(), " of ", count, " frames arrived"));
    }
    if (arrivals_.size() >= count) return absl::OkStatus();
    return absl::InternalError(absl::StrCat(trouble_, " after ", arrivals_.size(), " of ", count, " frames"));
  }
  std::vector<Arrival> arrivals() {
    absl::MutexLock lock(&mu_);
    return arrivals_;
  }
  Arrival last() {
    absl::MutexLock lock(&mu_);
    return arrivals_.back();
  }

 private:
  absl::Mutex mu_;
  std::vector<Arrival> arrivals_ ABSL_GUARDED_BY(mu_);
  std::string trouble_ ABSL_GUARDED_BY(mu_);
};

class ShmInPlace : public ::testing::Test {
 protected:
  void Connect(uint64_t bulk_bytes, uint64_t ring_bytes = TransportOptions().shm_ring_bytes) {
    TransportOptions options;
    options.shm_bulk_bytes = bulk_bytes;
    options.shm_ring_bytes = ring_bytes;
    const std::string address = "shm:" + dir_.path() + "/s.sock";
    auto listener = transport_.Listen(address, options, [this](std::unique_ptr<Connection> c) {
      absl::MutexLock lock(&mu_);
      accepted_ = std::move(c);
      accepted_->Start(&server_sink_);
    });
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = std::move(*listener);
    auto client = transport_.Connect(address, options, absl::Now() + kWatchdog);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    client_->Start(&client_sink_);
  }

  void TearDown() override {
    if (client_ != nullptr) client_->Close(absl::CancelledError("test over"));
    client_.reset();
    absl::MutexLock lock(&mu_);
    if (accepted_ != nullptr) accepted_->Close(absl::CancelledError("test over"));
    accepted_.reset();
  }

  // Sends `payload` as the runtime sends a message.
  absl::Status SendMessage(uint64_t call_id, const std::string& payload) {
    FrameHeader header = FrameHeader::Make(FrameType::kPing, 0, call_id);
    header.payload_length = static_cast<uint32_t>(payload.size());
    return client_->SendWithPayloadWriter(
        header, {},
        [&payload](char* out) {
          std::memcpy(out, payload.data(), payload.size());
          return true;
        },
        absl::Now() + kWatchdog);
  }

  static std::string Pattern(size_t size, int seed) {
    std::string s(size, '\0');
    for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>(i * 31 + seed);
    return s;
  }

  TempDir dir_;
  ShmTransport transport_;
  std::unique_ptr<Listener> listener_;
  RecordingSink server_sink_;
  RecordingSink client_sink_;
  std::unique_ptr<Connection> client_;
  absl::Mutex mu_;
  std::unique_ptr<Connection> accepted_ ABSL_GUARDED_BY(mu_);
};

TEST_F(ShmInPlace, LargePayloadsArriveInPlaceAndSmallOnesThroughTheRing) {
  Connect(/*bulk_bytes=*/4u << 20);
  const std::string large = Pattern(1u << 20, 1);
  const std::string small = Pattern(1000, 2);
  ASSERT_TRUE(SendMessage(1, large).ok());
  ASSERT_TRUE(SendMessage(3, small).ok());
  ASSERT_EQ(server_sink_.WaitFor(2), absl::OkStatus());
  std::vector<RecordingSink::Arrival> got = server_sink_.arrivals();
  EXPECT_EQ(got[0].payload, large);
  EXPECT_TRUE(got[0].in_place);
  EXPECT_EQ(got[1].payload, small);
  EXPECT_FALSE(got[1].in_place);
  EXPECT_TRUE(got[1].borrowed) << "a frame whole in the ring is delivered where it lies";
}

TEST_F(ShmInPlace, DeliveredPayloadsAreReleasedAndTheAreaReused) {
  // 64 payloads of 1 MiB through a 3 MiB area, one at a time: the area
  // holds two of them, so each fits only because the receiver released the
  // one before last (the one before may still be in its hands: a payload is
  // released after OnFrame returns, and this test sees it inside OnFrame).
  Connect(/*bulk_bytes=*/3u << 20);
  for (int i = 0; i < 64; ++i) {
    const std::string payload = Pattern(1u << 20, i);
    ASSERT_TRUE(SendMessage(2 * i + 1, payload).ok());
    ASSERT_EQ(server_sink_.WaitFor(i + 1), absl::OkStatus());
    RecordingSink::Arrival last = server_sink_.last();
    EXPECT_EQ(last.payload, payload) << i;
    EXPECT_TRUE(last.in_place) << "payload " << i << " was not carried in the bulk area";
  }
}

TEST_F(ShmInPlace, PayloadsThatDoNotFitTheAreaStreamThroughTheRing) {
  Connect(/*bulk_bytes=*/1u << 20);
  const std::string too_large = Pattern(3u << 20, 3);  // more than the area
  ASSERT_TRUE(SendMessage(1, too_large).ok());
  // A burst: the area holds two of these at once, the rest take the ring.
  std::vector<std::string> burst;
  for (int i = 0; i < 8; ++i) {
    burst.push_back(Pattern(400u << 10, 10 + i));
    ASSERT_TRUE(SendMessage(3 + 2 * i, burst.back()).ok());
  }
  ASSERT_EQ(server_sink_.WaitFor(9), absl::OkStatus());
  std::vector<RecordingSink::Arrival> got = server_sink_.arrivals();
  EXPECT_EQ(got[0].payload, too_large);
  EXPECT_FALSE(got[0].in_place);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(got[1 + i].payload, burst[i]) << i;  // in order, whole
}

TEST_F(ShmInPlace, SmallFramesSerializedIntoTheRingStayWholeAcrossItsEnd) {
  // A 4 KiB ring and frames of many sizes: most are serialized straight
  // into the ring, those that would wrap around its end (or find it full)
  // go through a buffer; all arrive whole and in order.
  Connect(/*bulk_bytes=*/0, /*ring_bytes=*/4096);
  std::vector<std::string> sent;
  for (int i = 0; i < 400; ++i) {
    sent.push_back(Pattern(1 + (i * 37) % 1500, i));
    ASSERT_TRUE(SendMessage(2 * i + 1, sent.back()).ok()) << i;
  }
  ASSERT_EQ(server_sink_.WaitFor(sent.size()), absl::OkStatus());
  std::vector<RecordingSink::Arrival> got = server_sink_.arrivals();
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i].payload, sent[i]) << i;
}

TEST_F(ShmInPlace, FramesCutAtTheRingsEndAreNotOvertakenByTheirOwnLaterParts) {
  // A 4 KiB ring kept nearly full by frames sent as header + meta + payload
  // parts: when a part is cut short for lack of room, the consumer may free
  // room before the next part is written, and that part must still wait
  // behind the rest of the earlier one. (A torn frame misleads the decoder:
  // a wrong call id, an absurd length, or a malformed frame.)
  Connect(/*bulk_bytes=*/0, /*ring_bytes=*/4096);
  constexpr int kFrames = 20000;
  std::vector<std::string> sent;
  sent.reserve(kFrames);
  const std::string meta(7, 'm');
  for (int i = 0; i < kFrames; ++i) {
    sent.push_back(Pattern(1 + (i * 131) % 1800, i));
    FrameHeader header = FrameHeader::Make(FrameType::kPing, 0, 2 * i + 1);
    header.meta_length = static_cast<uint32_t>(meta.size());
    header.payload_length = static_cast<uint32_t>(sent.back().size());
    ASSERT_TRUE(client_->Send(header, meta, sent.back(), absl::Now() + kWatchdog).ok()) << i;
  }
  ASSERT_EQ(server_sink_.WaitFor(sent.size()), absl::OkStatus());
  std::vector<RecordingSink::Arrival> got = server_sink_.arrivals();
  for (size_t i = 0; i < sent.size(); ++i) {
    ASSERT_EQ(got[i].call_id, 2 * i + 1) << i;
    ASSERT_EQ(got[i].payload, sent[i]) << i;
  }
}

TEST_F(ShmInPlace, NoBulkAreaMeansEverythingThroughTheRing) {
  Connect(/*bulk_bytes=*/0);
  const std::string large = Pattern(1u << 20, 4);
  ASSERT_TRUE(SendMessage(1, large).ok());
  ASSERT_EQ(server_sink_.WaitFor(1), absl::OkStatus());
  EXPECT_EQ(server_sink_.arrivals()[0].payload, large);
  EXPECT_FALSE(server_sink_.arrivals()[0].in_place);
}

}  // namespace
}  // namespace locus
