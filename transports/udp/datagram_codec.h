// One Locus frame per UDP datagram: the check a datagram from a peer passes
// before the runtime sees it (header fields, lengths that add up exactly to
// the datagram, size limits).
//
// Example:
//   Frame frame;
//   switch (DecodeDatagram(bytes, kDefaultMaxMetaSize, max_payload, &frame, &error)) {
//     case DatagramKind::kFrame: sink->OnFrame(frame); break;
//     case DatagramKind::kOversize: sink->OnOversizeFrame(frame.header); break;
//     case DatagramKind::kMalformed: Close(error); break;
//   }
#ifndef LOCUS_TRANSPORTS_UDP_DATAGRAM_CODEC_H_
#define LOCUS_TRANSPORTS_UDP_DATAGRAM_CODEC_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "locus/frame.h"

namespace locus::internal {

// The largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP); IPv6 allows 20
// more, but one limit keeps behaviour the same on both.
inline constexpr size_t kMaxDatagramBytes = 65507;

enum class DatagramKind { kFrame, kOversize, kMalformed };

// Decodes `datagram` into `*frame` (meta and payload borrowed from
// `datagram`: valid while its bytes are). kOversize: a
// well-formed frame whose payload exceeds `max_payload` (only the header is
// set). kMalformed: anything else that is not exactly one valid frame;
// `*error` says what.
DatagramKind DecodeDatagram(absl::string_view datagram, uint32_t max_meta, uint64_t max_payload,
                            Frame* frame, absl::Status* error);

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_UDP_DATAGRAM_CODEC_H_
