// Cuts Locus frames out of a byte stream (a Unix or TCP socket, a
// shared-memory ring), validating every header before trusting a length
// from it.
//
// Example:
//   FrameDecoder decoder(kDefaultMaxMetaSize, max_message_size);
//   absl::Status status = decoder.Consume(bytes_read, sink);
//   if (!status.ok()) close_connection(status);  // malformed input
//
// Oversize payloads (well-formed header, payload_length above the limit) are
// skipped without buffering and reported to the sink; the stream stays in
// sync, so the connection stays usable. Anything else malformed is an error
// after which the decoder must not be fed again.
//
// Thread-compatible: one reader at a time.
#ifndef LOCUS_TRANSPORTS_COMMON_FRAME_DECODER_H_
#define LOCUS_TRANSPORTS_COMMON_FRAME_DECODER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "locus/frame.h"

namespace locus::internal {

class FrameDecoderSink {
 public:
  virtual ~FrameDecoderSink() = default;
  // `frame` belongs to the decoder and is reused for the next frame; its
  // payload may be borrowed from the bytes given to Consume (locus/frame.h):
  // a sink that keeps it takes it with TakePayload().
  virtual void OnFrame(Frame& frame) = 0;
  virtual void OnOversizeFrame(const FrameHeader& header) = 0;
};

class FrameDecoder {
 public:
  // `transport_flags`: the kTransportPrivateFlags bits the caller's
  // transport accepts (see ValidateFrameHeader); frames carrying them are
  // delivered with the bits still set, for the transport to resolve.
  FrameDecoder(uint32_t max_meta, uint64_t max_payload, uint32_t transport_flags = 0)
      : max_meta_(max_meta), max_payload_(max_payload), transport_flags_(transport_flags) {}

  // Consumes all of `bytes`, delivering each completed frame to `sink` in
  // order. Returns INVALID_ARGUMENT on malformed input.
  absl::Status Consume(absl::string_view bytes, FrameDecoderSink& sink);

  // True when no partial frame is buffered (a clean place for EOF).
  bool at_frame_boundary() const { return state_ == State::kHeader && header_filled_ == 0; }
  // True when part of a header is buffered: the next bytes complete it.
  bool header_partly_read() const { return state_ == State::kHeader && header_filled_ != 0; }
  // The header of the frame whose body is being read (not yet delivered),
  // if any; valid until the next Consume.
  const FrameHeader* unfinished_frame() const { return state_ == State::kBody ? &header_ : nullptr; }
  // Bytes still needed to finish the current frame's body (0 when reading a
  // header): lets a reader size its next read.
  uint64_t body_bytes_wanted() const;

 private:
  enum class State { kHeader, kBody, kSkip };

  // Receive buffers up to this size are kept for the next frame; a larger
  // one (a big message went by) is kept only while big frames follow, so
  // that a connection back to small calls does not pin it.
  static constexpr size_t kRetainedBufferBytes = 256u << 10;
  void ReleaseLargeBuffers(const FrameHeader& next);

  uint32_t max_meta_;
  uint64_t max_payload_;
  uint32_t transport_flags_;
  State state_ = State::kHeader;
  FrameHeader header_{};
  size_t header_filled_ = 0;
  Frame frame_;
  uint64_t body_filled_ = 0;  // kBody: meta then payload bytes received
  uint64_t skip_left_ = 0;    // kSkip: bytes of an oversize frame still to drop
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_COMMON_FRAME_DECODER_H_
