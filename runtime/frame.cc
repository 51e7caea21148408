// Validation and description of frame headers (see locus/frame.h).
#include "locus/frame.h"

#include "absl/strings/str_format.h"

namespace locus {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the wire format is little-endian and frames are used in place");

absl::Status ValidateFrameHeader(const FrameHeader& header, uint32_t max_meta,
                                 uint64_t max_payload, uint32_t transport_flags) {
  if (header.magic != kFrameMagic) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad frame magic 0x%04x (not a Locus peer?)", header.magic));
  }
  if (header.version != kProtocolVersion) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unsupported frame version %d", header.version));
  }
  if (header.type == 0 || header.type > kMaxFrameType) {
    return absl::InvalidArgumentError(absl::StrFormat("unknown frame type %d", header.type));
  }
  if ((header.flags & ~(kKnownFlags | (transport_flags & kTransportPrivateFlags))) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("unknown frame flags 0x%x", header.flags));
  }
  if (header.meta_length > max_meta) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "frame meta section of %d bytes exceeds the limit of %d", header.meta_length, max_meta));
  }
  if (header.payload_length > max_payload) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("message of %d bytes exceeds the limit of %d bytes",
                        header.payload_length, max_payload));
  }
  return absl::OkStatus();
}

std::string DescribeFrameHeader(const FrameHeader& header) {
  return absl::StrFormat("frame{type=%d flags=0x%x call=%d meta=%d payload=%d}", header.type,
                         header.flags, header.call_id, header.meta_length, header.payload_length);
}

}  // namespace locus
