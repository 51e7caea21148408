// Failures of calls that no server saw. A call that failed before its
// request could reach a server (connecting failed, the connection was
// closed or draining before the request was sent, the send itself failed,
// or the server's GOAWAY said it did not process the call) carries a mark
// on its status, so that a layer above (a balanced channel,
// internal/balanced_channel.h) may send it to another server without
// running it twice. A call without the mark may have run.
//
// Example:
//   if (!sent.ok()) return MarkNotSeen(std::move(sent));
//   ...
//   if (absl::IsUnavailable(status) && IsNotSeen(status)) { /* try elsewhere */ }
//
// The mark is a status payload: free on the success path; the status's
// code and message are unchanged (ToString() shows it).
#ifndef LOCUS_RUNTIME_INTERNAL_CALL_NOT_SEEN_H_
#define LOCUS_RUNTIME_INTERNAL_CALL_NOT_SEEN_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

namespace locus::internal {

inline constexpr absl::string_view kNotSeenPayload = "locus/call-not-seen-by-server";

// `status` (not OK) marked as a call failure no server saw. OK stays OK.
inline absl::Status MarkNotSeen(absl::Status status) {
  if (!status.ok()) status.SetPayload(kNotSeenPayload, absl::Cord());
  return status;
}

// Whether `status` is a failure MarkNotSeen marked.
inline bool IsNotSeen(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kNotSeenPayload).has_value();
}

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_CALL_NOT_SEEN_H_
