// The fixed header of every Locus frame, and the frame types and flags.
//
// A frame is `FrameHeader` (24 bytes, little-endian) followed by
// `meta_length` bytes of meta (a serialized message from idl/locus/wire.proto,
// chosen by the frame type) and `payload_length` bytes of payload (a serialized
// request or response message). docs/wire.md is the full description.
//
// Transports move whole frames; the runtime gives them meaning. Stream
// transports (Unix socket, TCP) use `internal::FrameDecoder` to cut frames out
// of a byte stream.
//
// Example:
//   locus::FrameHeader h = locus::FrameHeader::Make(locus::FrameType::kRequest,
//                                                  locus::kFlagHasMessage, 7);
//   h.meta_length = meta.size();
//   h.payload_length = payload.size();
#ifndef LOCUS_FRAME_H_
#define LOCUS_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "locus/fd.h"

namespace locus {

// Current wire protocol version. A peer accepts frames whose version lies in
// the range agreed in the handshake.
inline constexpr uint8_t kProtocolVersion = 1;
// 'L' 'C' read as a little-endian uint16.
inline constexpr uint16_t kFrameMagic = 0x434C;

enum class FrameType : uint8_t {
  kHello = 1,      // meta: wire.Hello. First frame from the connecting side.
  kHelloAck = 2,   // meta: wire.Hello. Answer from the accepting side.
  kRequest = 3,    // meta: wire.CallHeader; payload: first message if kFlagHasMessage.
  kMessage = 4,    // payload: one stream message of an open call if kFlagHasMessage.
  kResponse = 5,   // meta: wire.CallStatus (empty = OK); payload: reply if kFlagHasMessage. Ends the call.
  kCancel = 6,     // the caller abandons the call; no payload.
  kPing = 7,       // payload echoed back in kPong.
  kPong = 8,
  kGoAway = 9,     // meta: wire.GoAway. No new calls on this connection.
  // Transport-level, never seen by the RPC core: the first frame on a Unix
  // socket that asks to move the connection to shared memory (meta:
  // wire.ShmSetup, with the memfd passed as SCM_RIGHTS), and its answer
  // (meta: wire.ShmSetupReply).
  kTransportSetup = 10,
  // meta: wire.WindowUpdate. The receiver of a streaming call's messages
  // lets the sender send that many more bytes on the call (flow control).
  kWindowUpdate = 11,
  // meta: wire.InitialMetadata. The server's initial metadata of a
  // streaming call, before its first message; only to peers whose HELLO
  // lists "headers/1" (docs/wire.md).
  kHeaders = 12,
};
inline constexpr uint8_t kMaxFrameType = 12;

// Frame flags (bit set).
inline constexpr uint32_t kFlagHasMessage = 1u << 0;  // payload is a message (may be empty)
inline constexpr uint32_t kFlagEndStream = 1u << 1;   // sender sends no more messages on this call (half-close)
inline constexpr uint32_t kFlagOneway = 1u << 2;      // kRequest: no kResponse will be sent
inline constexpr uint32_t kKnownFlags = kFlagHasMessage | kFlagEndStream | kFlagOneway;
// Bits a transport may use on its own wire (e.g. shared memory marks a
// payload that lies in its bulk area; Unix sockets and shared memory hold
// the number of file descriptors a frame carries in bits 25..31,
// docs/wire.md). A transport that uses one resolves and clears it before
// the runtime sees the frame; everyone else rejects it.
inline constexpr uint32_t kTransportPrivateFlags = 0xff000000u;

// Wire layout. All fields little-endian (this implementation targets
// little-endian hosts; a static_assert in frame.cc checks it).
struct FrameHeader {
  uint16_t magic;           // kFrameMagic
  uint8_t version;          // kProtocolVersion
  uint8_t type;             // FrameType
  uint32_t flags;           // kFlag*
  uint32_t meta_length;     // bytes of meta after the header
  uint32_t payload_length;  // bytes of payload after the meta
  uint64_t call_id;         // 0 for connection-level frames; odd = started by the connecting side

  static FrameHeader Make(FrameType type, uint32_t flags, uint64_t call_id) {
    return FrameHeader{kFrameMagic, kProtocolVersion, static_cast<uint8_t>(type), flags, 0, 0, call_id};
  }
  FrameType frame_type() const { return static_cast<FrameType>(type); }
  size_t body_length() const { return size_t{meta_length} + payload_length; }
};
static_assert(sizeof(FrameHeader) == 24, "FrameHeader is a wire struct");
static_assert(alignof(FrameHeader) == 8, "FrameHeader alignment");

// Checks the fields of a header read from a peer: magic, version, type, flags
// and that meta/payload lengths fit `max_meta` / `max_payload`. Returns
// INVALID_ARGUMENT for a malformed header (the connection must be closed) and
// RESOURCE_EXHAUSTED when only the payload is too large (the frame can be
// skipped and the call failed; the connection stays usable).
// `transport_flags`: the kTransportPrivateFlags bits the caller's transport
// understands (none by default).
absl::Status ValidateFrameHeader(const FrameHeader& header, uint32_t max_meta, uint64_t max_payload,
                                 uint32_t transport_flags = 0);

// Human-readable one-line description, for logs and errors.
std::string DescribeFrameHeader(const FrameHeader& header);

// A frame received from a peer: header, meta and payload bytes.
//
// Meta and payload are either owned (`meta`, `payload`) or borrowed: a
// transport that can deliver them where they already lie sets
// `borrowed_meta` / `borrowed_payload` instead (the frame decoder borrows
// the payload of a frame whole in a socket's receive buffer or a
// shared-memory ring and copies its meta; shm borrows large messages from
// its bulk area; UDP borrows both from its private datagram buffer).
// Borrowed bytes are valid only until OnFrame returns, and may be in memory
// the peer can still write (parsers must treat them as untrusted input, as
// any bytes from a peer, and read each length once). Read them
// through meta_bytes() / payload_bytes(); keep the payload past OnFrame with
// TakePayload(), the meta by copying meta_bytes().
//
// `fds`: the file descriptors that arrived with this frame (Unix-socket,
// shared-memory and in-process connections; Connection::SendWithFds), in the
// order they were sent, already checked with fstat and close-on-exec. The
// sink may move any of them out during OnFrame; the transport closes those
// left before it reuses the frame. Move-only, as they are.
struct Frame {
  FrameHeader header{};
  std::string meta;
  std::string payload;
  const char* borrowed_meta = nullptr;     // header.meta_length bytes if set
  const char* borrowed_payload = nullptr;  // header.payload_length bytes if set
  std::vector<OwnedFd> fds;

  absl::string_view meta_bytes() const {
    return borrowed_meta != nullptr ? absl::string_view(borrowed_meta, header.meta_length)
                                    : absl::string_view(meta);
  }
  absl::string_view payload_bytes() const {
    return borrowed_payload != nullptr ? absl::string_view(borrowed_payload, header.payload_length)
                                       : absl::string_view(payload);
  }
  // The payload as an owned string: moved out if owned, copied if borrowed.
  std::string TakePayload() {
    if (borrowed_payload != nullptr) return std::string(payload_bytes());
    return std::move(payload);
  }
};

}  // namespace locus

#endif  // LOCUS_FRAME_H_
