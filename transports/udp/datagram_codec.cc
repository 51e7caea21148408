#include "transports/udp/datagram_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace locus::internal {

DatagramKind DecodeDatagram(absl::string_view datagram, uint32_t max_meta, uint64_t max_payload,
                            Frame* frame, absl::Status* error) {
  if (datagram.size() < sizeof(FrameHeader)) {
    *error = absl::InvalidArgumentError(
        absl::StrCat("datagram of ", datagram.size(), " bytes is shorter than a frame header"));
    return DatagramKind::kMalformed;
  }
  std::memcpy(&frame->header, datagram.data(), sizeof(FrameHeader));
  const FrameHeader& header = frame->header;
  absl::Status valid = ValidateFrameHeader(header, max_meta, max_payload);
  const uint64_t expected = sizeof(FrameHeader) + uint64_t{header.meta_length} + header.payload_length;
  if (!valid.ok() && !absl::IsResourceExhausted(valid)) {
    *error = valid;
    return DatagramKind::kMalformed;
  }
  if (expected != datagram.size()) {
    *error = absl::InvalidArgumentError(absl::StrCat("datagram of ", datagram.size(),
                                                     " bytes carries a frame of ", expected));
    return DatagramKind::kMalformed;
  }
  if (absl::IsResourceExhausted(valid)) return DatagramKind::kOversize;
  // Delivered where it lies: the datagram buffer outlives OnFrame.
  frame->borrowed_meta = datagram.data() + sizeof(FrameHeader);
  frame->borrowed_payload = frame->borrowed_meta + header.meta_length;
  return DatagramKind::kFrame;
}

}  // namespace locus::internal
