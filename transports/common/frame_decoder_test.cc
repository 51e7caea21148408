#include "transports/common/frame_decoder.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace locus::internal {
namespace {

// Keeps owned copies: borrowed bytes are valid only during OnFrame.
struct Collect : FrameDecoderSink {
  std::vector<Frame> frames;
  std::vector<bool> borrowed;  // per frame: delivered where it lay
  std::vector<FrameHeader> oversize;
  void OnFrame(Frame& frame) override {
    Frame owned;
    owned.header = frame.header;
    owned.meta = std::string(frame.meta_bytes());
    owned.payload = std::string(frame.payload_bytes());
    frames.push_back(std::move(owned));
    borrowed.push_back(frame.borrowed_payload != nullptr);
  }
  void OnOversizeFrame(const FrameHeader& header) override { oversize.push_back(header); }
};

std::string Encode(FrameType type, uint64_t id, const std::string& meta, const std::string& payload) {
  FrameHeader h = FrameHeader::Make(type, kFlagHasMessage, id);
  h.meta_length = static_cast<uint32_t>(meta.size());
  h.payload_length = static_cast<uint32_t>(payload.size());
  return std::string(reinterpret_cast<const char*>(&h), sizeof(h)) + meta + payload;
}

TEST(FrameDecoder, DecodesFramesSplitAtEveryByte) {
  std::string wire = Encode(FrameType::kRequest, 1, "meta", "payload") +
                     Encode(FrameType::kResponse, 2, "", "") + Encode(FrameType::kRequest, 3, "", "x");
  for (size_t chunk = 1; chunk <= wire.size(); ++chunk) {
    FrameDecoder decoder(1024, 1024);
    Collect sink;
    for (size_t i = 0; i < wire.size(); i += chunk) {
      ASSERT_TRUE(decoder.Consume(absl::string_view(wire).substr(i, chunk), sink).ok());
    }
    ASSERT_EQ(sink.frames.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(sink.frames[0].meta, "meta");
    EXPECT_EQ(sink.frames[0].payload, "payload");
    EXPECT_EQ(sink.frames[1].header.call_id, 2u);
    EXPECT_EQ(sink.frames[2].payload, "x");
    EXPECT_TRUE(decoder.at_frame_boundary());
  }
}

TEST(FrameDecoder, DeliversWholePayloadsWhereTheyLieAndCopiesSplitOnes) {
  const std::string first = Encode(FrameType::kRequest, 1, "meta", "payload");
  const std::string wire = first + Encode(FrameType::kRequest, 3, "m", "p");
  FrameDecoder decoder(1024, 1024);
  struct Check : FrameDecoderSink {
    const std::string* wire = nullptr;
    int in_place = 0;
    void OnFrame(Frame& frame) override {
      // The payload where it lies; the meta copied (see Consume).
      ASSERT_NE(frame.borrowed_payload, nullptr);
      EXPECT_GE(frame.borrowed_payload, wire->data());
      EXPECT_LE(frame.borrowed_payload + frame.header.payload_length, wire->data() + wire->size());
      EXPECT_EQ(frame.borrowed_meta, nullptr);
      EXPECT_EQ(frame.meta_bytes(), frame.header.call_id == 1 ? "meta" : "m");
      ++in_place;
    }
    void OnOversizeFrame(const FrameHeader&) override {}
  } check;
  check.wire = &wire;
  ASSERT_TRUE(decoder.Consume(wire, check).ok());
  EXPECT_EQ(check.in_place, 2);
  // Cut inside the second frame's body: the first is whole, the second is
  // assembled in the decoder's own buffers.
  Collect sink;
  ASSERT_TRUE(decoder.Consume(absl::string_view(wire).substr(0, first.size() + 25), sink).ok());
  ASSERT_TRUE(decoder.Consume(absl::string_view(wire).substr(first.size() + 25), sink).ok());
  ASSERT_EQ(sink.frames.size(), 2u);
  EXPECT_TRUE(sink.borrowed[0]);
  EXPECT_FALSE(sink.borrowed[1]);
  EXPECT_EQ(sink.frames[0].meta, "meta");
  EXPECT_EQ(sink.frames[0].payload, "payload");
  EXPECT_EQ(sink.frames[1].meta, "m");
  EXPECT_EQ(sink.frames[1].payload, "p");
}

TEST(FrameDecoder, ABigFrameAssembledInPiecesDoesNotPinItsBufferOnceSmallOnesFollow) {
  const std::string big = Encode(FrameType::kRequest, 1, "m", std::string(1u << 20, 'b'));
  const std::string small = Encode(FrameType::kRequest, 3, "m", "s");
  FrameDecoder decoder(1024, 2u << 20);
  struct Capacity : FrameDecoderSink {
    std::vector<size_t> payload_capacity;  // of the decoder's own buffer, per frame
    void OnFrame(Frame& frame) override { payload_capacity.push_back(frame.payload.capacity()); }
    void OnOversizeFrame(const FrameHeader&) override {}
  } sink;
  for (size_t i = 0; i < big.size(); i += 4096) {  // in pieces: assembled in its buffer
    ASSERT_TRUE(decoder.Consume(absl::string_view(big).substr(i, 4096), sink).ok());
  }
  ASSERT_TRUE(decoder.Consume(small, sink).ok());  // whole: delivered where it lies
  ASSERT_EQ(sink.payload_capacity.size(), 2u);
  EXPECT_GE(sink.payload_capacity[0], 1u << 20);
  EXPECT_LT(sink.payload_capacity[1], 1u << 20);
}

TEST(FrameDecoder, SkipsOversizePayloadAndStaysInSync) {
  std::string wire = Encode(FrameType::kRequest, 1, "m", std::string(100, 'a')) +
                     Encode(FrameType::kRequest, 3, "", "ok");
  FrameDecoder decoder(1024, 10);
  Collect sink;
  ASSERT_TRUE(decoder.Consume(wire, sink).ok());
  ASSERT_EQ(sink.oversize.size(), 1u);
  EXPECT_EQ(sink.oversize[0].call_id, 1u);
  ASSERT_EQ(sink.frames.size(), 1u);
  EXPECT_EQ(sink.frames[0].payload, "ok");
}

TEST(FrameDecoder, RejectsGarbage) {
  FrameDecoder decoder(1024, 1024);
  Collect sink;
  absl::Status s = decoder.Consume("GET / HTTP/1.1\r\nHost: x\r\n\r\n", sink);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("magic"), absl::string_view::npos) << s;
}

TEST(FrameDecoder, RejectsUnknownTypeFlagsAndHugeMeta) {
  for (int field = 0; field < 3; ++field) {
    FrameHeader h = FrameHeader::Make(FrameType::kRequest, 0, 1);
    if (field == 0) h.type = 77;
    if (field == 1) h.flags = 1u << 20;
    if (field == 2) h.meta_length = 1u << 30;
    FrameDecoder decoder(1024, 1024);
    Collect sink;
    absl::Status s = decoder.Consume(absl::string_view(reinterpret_cast<char*>(&h), sizeof(h)), sink);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
  }
}

TEST(FrameDecoder, TransportPrivateFlagsOnlyWhereTheTransportAcceptsThem) {
  constexpr uint32_t kPrivate = 1u << 24;
  std::string wire = Encode(FrameType::kRequest, 1, "", "ref");
  reinterpret_cast<FrameHeader*>(wire.data())->flags |= kPrivate;
  {
    FrameDecoder decoder(1024, 1024);  // a stream transport: no private bits
    Collect sink;
    absl::Status s = decoder.Consume(wire, sink);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("flags"), absl::string_view::npos) << s;
  }
  {
    FrameDecoder decoder(1024, 1024, kPrivate);
    Collect sink;
    ASSERT_TRUE(decoder.Consume(wire, sink).ok());
    ASSERT_EQ(sink.frames.size(), 1u);
    EXPECT_EQ(sink.frames[0].header.flags & kPrivate, kPrivate);  // left for the transport
    EXPECT_EQ(sink.frames[0].payload, "ref");
  }
  {
    FrameDecoder decoder(1024, 1024, kPrivate);  // other private bits stay unknown
    Collect sink;
    reinterpret_cast<FrameHeader*>(wire.data())->flags |= 1u << 25;
    EXPECT_FALSE(decoder.Consume(wire, sink).ok());
  }
}

TEST(Frame, BorrowedPayloadIsReadInPlaceAndCopiedWhenTaken) {
  const std::string shared = "bytes elsewhere";
  Frame frame;
  frame.header.payload_length = static_cast<uint32_t>(shared.size());
  frame.borrowed_payload = shared.data();
  EXPECT_EQ(frame.payload_bytes().data(), shared.data());
  EXPECT_EQ(frame.TakePayload(), shared);
  frame.borrowed_payload = nullptr;
  frame.payload = "owned";
  EXPECT_EQ(frame.payload_bytes(), "owned");
  EXPECT_EQ(frame.TakePayload(), "owned");
}

TEST(FrameDecoder, ReportsPartialFrame) {
  std::string wire = Encode(FrameType::kRequest, 1, "", "payload");
  FrameDecoder decoder(1024, 1024);
  Collect sink;
  ASSERT_TRUE(decoder.Consume(absl::string_view(wire).substr(0, wire.size() - 2), sink).ok());
  EXPECT_FALSE(decoder.at_frame_boundary());
  EXPECT_EQ(decoder.body_bytes_wanted(), 2u);
  EXPECT_TRUE(sink.frames.empty());
}

}  // namespace
}  // namespace locus::internal
