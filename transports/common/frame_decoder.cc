#include "transports/common/frame_decoder.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "transports/common/copy_bytes.h"

namespace locus::internal {

uint64_t FrameDecoder::body_bytes_wanted() const {
  switch (state_) {
    case State::kBody:
      return header_.body_length() - body_filled_;
    case State::kSkip:
      return skip_left_;
    case State::kHeader:
      break;
  }
  return 0;
}

void FrameDecoder::ReleaseLargeBuffers(const FrameHeader& next) {
  if (frame_.payload.capacity() > kRetainedBufferBytes && next.payload_length <= kRetainedBufferBytes) {
    std::string().swap(frame_.payload);
  }
  if (frame_.meta.capacity() > kRetainedBufferBytes && next.meta_length <= kRetainedBufferBytes) {
    std::string().swap(frame_.meta);
  }
}

absl::Status FrameDecoder::Consume(absl::string_view bytes, FrameDecoderSink& sink) {
  while (!bytes.empty()) {
    switch (state_) {
      case State::kHeader: {
        size_t take = std::min(bytes.size(), sizeof(FrameHeader) - header_filled_);
        // The header is copied once and only the copy is trusted (the bytes
        // may be in memory the peer can still write).
        std::memcpy(reinterpret_cast<char*>(&header_) + header_filled_, bytes.data(), take);
        const bool header_was_whole = header_filled_ == 0 && take == sizeof(FrameHeader);
        header_filled_ += take;
        bytes.remove_prefix(take);
        if (header_filled_ < sizeof(FrameHeader)) break;
        header_filled_ = 0;
        absl::Status valid = ValidateFrameHeader(header_, max_meta_, max_payload_, transport_flags_);
        if (!valid.ok()) {
          if (!absl::IsResourceExhausted(valid)) return valid;
          state_ = State::kSkip;
          skip_left_ = header_.body_length();
          sink.OnOversizeFrame(header_);
          break;
        }
        frame_.header = header_;
        frame_.borrowed_meta = nullptr;
        frame_.borrowed_payload = nullptr;
        // The buffers keep their capacity from earlier frames (unless a sink
        // took them), so a steady stream of calls allocates nothing here.
        ReleaseLargeBuffers(header_);
        frame_.meta.clear();
        frame_.payload.clear();
        frame_.fds.clear();  // a transport's (frame_fds.h), if it left any
        if (header_was_whole && bytes.size() >= header_.body_length()) {
          // The whole frame lies in `bytes`: the payload is delivered where
          // it lies. The meta (small) is copied: the runtime's own parsers
          // read it (method name, metadata, status) and may look at a byte
          // twice, and `bytes` may be memory the peer can still write.
          AppendBytes(&frame_.meta, bytes.data(), header_.meta_length);
          frame_.borrowed_payload = bytes.data() + header_.meta_length;
          bytes.remove_prefix(header_.body_length());
          sink.OnFrame(frame_);
          break;
        }
        body_filled_ = 0;
        if (header_.body_length() == 0) {
          sink.OnFrame(frame_);
          break;
        }
        frame_.meta.reserve(header_.meta_length);
        frame_.payload.reserve(header_.payload_length);
        state_ = State::kBody;
        break;
      }
      case State::kBody: {
        // Meta first, then payload.
        if (body_filled_ < header_.meta_length) {
          size_t take = std::min<uint64_t>(bytes.size(), header_.meta_length - body_filled_);
          AppendBytes(&frame_.meta, bytes.data(), take);
          body_filled_ += take;
          bytes.remove_prefix(take);
        }
        if (body_filled_ >= header_.meta_length) {
          uint64_t payload_filled = body_filled_ - header_.meta_length;
          size_t take = std::min<uint64_t>(bytes.size(), header_.payload_length - payload_filled);
          if (take > 0) {
            AppendBytes(&frame_.payload, bytes.data(), take);
            body_filled_ += take;
            bytes.remove_prefix(take);
          }
        }
        if (body_filled_ == header_.body_length()) {
          state_ = State::kHeader;
          sink.OnFrame(frame_);
        }
        break;
      }
      case State::kSkip: {
        size_t take = std::min<uint64_t>(bytes.size(), skip_left_);
        skip_left_ -= take;
        bytes.remove_prefix(take);
        if (skip_left_ == 0) state_ = State::kHeader;
        break;
      }
    }
  }
  // A zero-length oversize frame cannot exist (limit >= 0), but a skip that
  // consumed exactly the rest leaves kSkip with 0 left: normalise.
  if (state_ == State::kSkip && skip_left_ == 0) state_ = State::kHeader;
  return absl::OkStatus();
}

}  // namespace locus::internal
