// Rich error details (gRPC's google.rpc.Status model) on absl::Status.
//
// A handler's error may carry details: absl::Status payloads, each a type URL
// and bytes. Locus sends them with the status on every transport (the
// RESPONSE's CallStatus.details, docs/wire.md) and the client's status has
// the same payloads; in-process calls hand the status over as it is.
// Details too large for a status (kDefaultMaxMetaSize with the message and
// trailers) are dropped: the client gets the code and message alone. A
// detail that is a protobuf message is stored as google.protobuf.Any would
// carry it in google.rpc.Status.details: under
// "type.googleapis.com/<full message name>", its serialized bytes as the value.
//
// Example:
//   // Server
//   absl::Status status = absl::InvalidArgumentError("bad name");
//   demo::FieldViolation violation;
//   violation.set_field("name");
//   locus::SetStatusDetail(status, violation);
//   return status;
//
//   // Client
//   absl::StatusOr<demo::SayReply> reply = stub.Say(request);
//   demo::FieldViolation violation;
//   if (!reply.ok() && locus::GetStatusDetail(reply.status(), &violation)) {
//     std::cerr << "field " << violation.field() << "\n";
//   }
#ifndef LOCUS_STATUS_DETAILS_H_
#define LOCUS_STATUS_DETAILS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message_lite.h"

namespace locus {

// The prefix of type URLs of protobuf messages (as in google.protobuf.Any).
inline constexpr absl::string_view kTypeUrlPrefix = "type.googleapis.com/";

// "type.googleapis.com/<full name of `message`'s type>".
inline std::string StatusDetailTypeUrl(const google::protobuf::MessageLite& message) {
  return absl::StrCat(kTypeUrlPrefix, message.GetTypeName());
}

// Adds `detail` to `status` (replacing a detail of the same type). No effect
// on an OK status, which carries no details.
inline void SetStatusDetail(absl::Status& status, const google::protobuf::MessageLite& detail) {
  status.SetPayload(StatusDetailTypeUrl(detail), absl::Cord(detail.SerializeAsString()));
}

// Parses the detail of `*detail`'s type into it; false if `status` has none
// or it does not parse.
inline bool GetStatusDetail(const absl::Status& status, google::protobuf::MessageLite* detail) {
  auto payload = status.GetPayload(StatusDetailTypeUrl(*detail));
  return payload.has_value() && detail->ParseFromString(std::string(*payload));
}

}  // namespace locus

#endif  // LOCUS_STATUS_DETAILS_H_
