// What the RPC core's frames carry, serialized and parsed: messages into
// the transport's memory, statuses and trailers, replies, timeouts. Shared by
// the connection_core*.cc files; stateless.
//
// Example:
//   absl::Status status = ResponseStatus(frame, &trailers);
//   if (status.ok()) status = ParseReply(frame, "pkg.Svc/Method", &reply);
#ifndef LOCUS_RUNTIME_INTERNAL_CONNECTION_CORE_FRAMES_H_
#define LOCUS_RUNTIME_INTERNAL_CONNECTION_CORE_FRAMES_H_

#include <cstddef>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/message_lite.h"
#include "locus/frame.h"
#include "locus/service.h"
#include "locus/wire.pb.h"

namespace locus::internal {

// Protobuf's own limit on a serialized message (its sizes are ints).
inline constexpr size_t kMaxMessageBytes = static_cast<size_t>(std::numeric_limits<int>::max());

// The status a peer sent, with its details as payloads; UNKNOWN for a code
// outside absl::StatusCode.
inline absl::Status StatusFromWire(const wire::CallStatus& status) {
  const int code = status.code();
  if (code < 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::UnknownError(absl::StrCat("peer sent unknown status code ", code, ": ", status.message()));
  }
  absl::Status result(static_cast<absl::StatusCode>(code), status.message());
  // An OK status carries no payloads (absl ignores them).
  for (const wire::StatusDetail& detail : status.details()) {
    result.SetPayload(detail.type_url(), absl::Cord(detail.value()));
  }
  return result;
}

inline void AddMetadataEntries(const Metadata& metadata,
                               google::protobuf::RepeatedPtrField<wire::MetadataEntry>* out) {
  for (const auto& [key, value] : metadata) {
    wire::MetadataEntry* entry = out->Add();
    entry->set_key(key);
    internal::LowercaseKey(*entry->mutable_key());
    entry->set_value(value);
  }
}

// Whether `status` carries payloads (an error's details).
inline bool HasPayloads(const absl::Status& status) {
  bool any = false;
  status.ForEachPayload([&any](absl::string_view, const absl::Cord&) { any = true; });
  return any;
}

// A RESPONSE's meta: `status` (its payloads as details), trailers and the
// initial metadata not sent before (nullptr: none).
inline wire::CallStatus StatusToWire(const absl::Status& status, const Metadata& trailers,
                                     const Metadata* initial) {
  wire::CallStatus wire_status;
  wire_status.set_code(static_cast<int>(status.code()));
  wire_status.set_message(std::string(status.message()));
  AddMetadataEntries(trailers, wire_status.mutable_trailing_metadata());
  if (initial != nullptr) AddMetadataEntries(*initial, wire_status.mutable_initial_metadata());
  status.ForEachPayload([&wire_status](absl::string_view type_url, const absl::Cord& payload) {
    wire::StatusDetail* detail = wire_status.add_details();
    detail->set_type_url(std::string(type_url));
    detail->set_value(std::string(payload));
  });
  return wire_status;
}

// Serializes `message`, sized by ByteSizeLong() and unchanged since, into
// the `size` bytes at `out`. False if the message changed size meanwhile
// (e.g. another thread still modifies it).
inline bool WriteMessage(const google::protobuf::MessageLite& message, size_t size, char* out) {
  uint8_t* start = reinterpret_cast<uint8_t*>(out);
  return message.SerializeWithCachedSizesToArray(start) == start + size;
}

// Parses a frame's meta (owned or borrowed) as `message`.
inline bool ParseMeta(const Frame& frame, google::protobuf::MessageLite* message) {
  const absl::string_view meta = frame.meta_bytes();
  return message->ParseFromArray(meta.data(), static_cast<int>(meta.size()));
}

// The status of a RESPONSE, its trailers (into `*trailers` if set) and the
// initial metadata it carries (into `*initial` if set). Keys lower-cased.
inline absl::Status ResponseStatus(const Frame& frame, Metadata* trailers, Metadata* initial = nullptr) {
  if (frame.header.meta_length == 0) return absl::OkStatus();
  wire::CallStatus wire_status;
  if (!ParseMeta(frame, &wire_status)) {
    return absl::InternalError("malformed status from peer");
  }
  if (trailers != nullptr) {
    for (const wire::MetadataEntry& e : wire_status.trailing_metadata()) {
      trailers->emplace_back(e.key(), e.value());
      internal::LowercaseKey(trailers->back().first);
    }
  }
  if (initial != nullptr) {
    for (const wire::MetadataEntry& e : wire_status.initial_metadata()) {
      initial->emplace_back(e.key(), e.value());
      internal::LowercaseKey(initial->back().first);
    }
  }
  return StatusFromWire(wire_status);
}

// The reply a RESPONSE carries, parsed into `*response`.
// `method` (NUL-terminated) is only read for an error.
inline absl::Status ParseReply(const Frame& frame, const char* method,
                               google::protobuf::MessageLite* response) {
  if ((frame.header.flags & kFlagHasMessage) == 0) {
    return absl::InternalError(absl::StrCat("reply to ", method, " carried no message"));
  }
  absl::string_view payload = frame.payload_bytes();
  if (!response->ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InternalError(
        absl::StrCat("reply to ", method, " does not parse as ", response->GetTypeName()));
  }
  return absl::OkStatus();
}

// The deadline of a call whose header says `timeout_ns` (<= 0: none).
inline absl::Time DeadlineFromTimeout(int64_t timeout_ns) {
  if (timeout_ns <= 0) return absl::InfiniteFuture();
  // In nanoseconds (Time + Duration is an out-of-line call in Abseil); a
  // timeout that would overflow is no deadline, as the saturating sum was.
  const int64_t now_ns = absl::GetCurrentTimeNanos();
  if (timeout_ns > std::numeric_limits<int64_t>::max() - now_ns) return absl::InfiniteFuture();
  return absl::FromUnixNanos(now_ns + timeout_ns);
}

// The timeout to announce for `deadline` (0: none; at least 1 ns once due).
inline int64_t TimeoutFromDeadline(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return 0;
  // In nanoseconds: Time - Time is an out-of-line call in Abseil.
  const int64_t deadline_ns = absl::ToUnixNanos(deadline);
  const int64_t now_ns = absl::GetCurrentTimeNanos();
  return deadline_ns > now_ns ? deadline_ns - now_ns : 1;
}

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_CONNECTION_CORE_FRAMES_H_
