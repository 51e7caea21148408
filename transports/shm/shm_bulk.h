// Large payloads on a shared-memory connection, carried in place.
//
// Each direction has a bulk area in the connection's memfd (shm_layout.h).
// A sender serializes a large payload straight into its outgoing bulk area
// and sends, through the ring, a frame flagged kFlagPayloadInBulk whose
// payload is a ShmPayloadRef saying where the bytes lie. The receiver hands
// those bytes to the runtime where they lie (Frame::borrowed_payload) and,
// once the frame has been delivered, releases them by counting it. Compared
// with streaming a payload through the ring, that saves a copy on each side:
// one write by the serializer, one read by the parser.
//
// Payloads are released in the order they were sent (frames are delivered
// in ring order), so the sender's allocator is a FIFO over the area (a bip
// buffer) that goes back to the lowest free offset whenever it can: the
// memory touched stays about as large as the payloads in flight, not the
// area's capacity. When the area has no room, the sender streams the
// payload through the ring instead (nothing waits for bulk space).
//
// Example (sender, holding its send lock):
//   absl::StatusOr<std::optional<uint64_t>> at = writer.Reserve(size);
//   if (at.ok() && at->has_value()) {
//     serialize_into(writer.data() + **at);
//     writer.Commit(**at, size);        // then send ShmPayloadRef{**at, size}
//   }
// Example (receiver, in frame order):
//   absl::StatusOr<absl::string_view> bytes = reader.Resolve(frame.payload);
//   ...deliver *bytes...; reader.Release();
//
// The peer is untrusted: the receiver bounds-checks every reference, the
// sender checks the peer's release count (it only grows, and never past the
// count sent). Hazard: the receiver parses a payload in memory the peer can
// still write; a peer that changes the bytes meanwhile can only change what
// is parsed (as if it had sent other bytes), because parsers check every
// length they read against the bounds Resolve validated (docs/wire.md).
// Thread-compatible: one writer and one reader thread at a time.
#ifndef LOCUS_TRANSPORTS_SHM_SHM_BULK_H_
#define LOCUS_TRANSPORTS_SHM_SHM_BULK_H_

#include <cstdint>
#include <deque>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "transports/shm/shm_layout.h"

namespace locus::internal {

// Payloads smaller than this go through the ring: copying them twice costs
// less than the bookkeeping and the cross-core read of the release count.
// The bulk area's placement also avoids glibc's slow `rep movsb` case
// (transports/common/copy_bytes.h), which the ring path works around by
// copying in chunks. The measurements behind the value:
// docs/performance-notes.md.
inline constexpr uint64_t kMinBulkPayload = 32u << 10;

class ShmBulkWriter {
 public:
  // `data` points to `capacity` bytes (a multiple of kBulkGranule, or 0
  // for no bulk area) of the mapping; `control` is the area's control block.
  ShmBulkWriter(const ShmBulkControl* control, char* data, uint64_t capacity)
      : control_(control), data_(data), capacity_(capacity) {}

  // Whether a payload of `size` bytes may go through the bulk area at all.
  bool Accepts(uint64_t size) const {
    return size >= kMinBulkPayload && ExtentSize(size) <= capacity_;
  }
  // Where a payload of `size` bytes (Accepts(size)) can be written now, or
  // nullopt if the area lacks room. INTERNAL if the peer's release count is
  // impossible (the connection must be closed).
  absl::StatusOr<std::optional<uint64_t>> Reserve(uint64_t size);
  // Records the payload of `size` bytes written at `offset` (from Reserve)
  // as sent.
  void Commit(uint64_t offset, uint64_t size);
  char* data() const { return data_; }
  // Payloads sent and not yet known to be released.
  size_t in_flight() const { return in_flight_.size(); }

 private:
  // A payload starts this far into its extent, which starts on a page:
  // glibc 2.36 copies with `rep movsb`, which AMD Zen CPUs run many times
  // slower when the destination is 1-63 bytes ahead of the source modulo
  // 4 KiB (glibc bug 30994, transports/common/copy_bytes.h), and large
  // malloc'ed buffers start 16 bytes into a page. A payload (and the field bytes a few bytes into it) at mid-page
  // keeps both the serializer's copy in and the parser's copy out clear of
  // that window.
  static constexpr uint64_t kPayloadSkew = 2048;
  static uint64_t ExtentSize(uint64_t size) {
    return (kPayloadSkew + size + kBulkGranule - 1) / kBulkGranule * kBulkGranule;
  }
  absl::Status Reclaim();

  struct Extent {
    uint64_t start;
    uint64_t end;
  };
  const ShmBulkControl* control_;
  char* data_;
  uint64_t capacity_;
  std::deque<Extent> in_flight_;  // oldest first
  uint64_t sent_ = 0;             // payloads committed
  uint64_t released_ = 0;         // the peer's release count, last read (validated)
};

class ShmBulkReader {
 public:
  ShmBulkReader(ShmBulkControl* control, const char* data, uint64_t capacity)
      : control_(control), data_(data), capacity_(capacity) {}

  // The payload that `ref` (the on-ring payload of a kFlagPayloadInBulk
  // frame) refers to. INVALID_ARGUMENT if it is not a reference to bytes
  // inside the area.
  absl::StatusOr<absl::string_view> Resolve(absl::string_view ref) const;
  // Counts one payload (the oldest not yet released) as delivered: the peer
  // may reuse its bytes.
  void Release();

 private:
  ShmBulkControl* control_;
  const char* data_;
  uint64_t capacity_;
  uint64_t released_ = 0;
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SHM_SHM_BULK_H_
