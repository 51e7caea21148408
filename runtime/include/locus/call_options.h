// Per-call options a client passes to a stub method, and call metadata.
//
// Example:
//   locus::CallOptions options = locus::CallOptions::WithTimeout(absl::Milliseconds(200));
//   options.metadata.emplace_back("request-id", "42");
//   absl::StatusOr<EchoReply> reply = stub.Say(request, options);
//
//   locus::Cancellation cancel;                  // Cancel() from any thread
//   options.cancellation = cancel;               // ends the call with CANCELLED
//   options.wait_for_ready = true;               // waits for the server to be reachable
//
//   // In a handler, a call made on behalf of the call being served: it
//   // inherits its deadline and cancellation (locus/server_context.h).
//   locus::CallOptions nested = locus::CallOptions::FromServerContext(*context);
#ifndef LOCUS_CALL_OPTIONS_H_
#define LOCUS_CALL_OPTIONS_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "locus/cancellation.h"

namespace locus {

class ServerContext;

// Key/value pairs sent with a call (client metadata), before the server's
// first message (initial metadata) or with its status (trailing metadata).
// Keys are case-insensitive, as in HTTP/2: the receiving side sees them in
// lower case (ServerContext, CallOptions::initial_metadata and
// trailing_metadata), and MetadataValue compares them ignoring case. Values
// are bytes. A call's metadata sections are bounded (kDefaultMaxMetaSize
// each, with the method name or the status message): one over it fails that
// call with RESOURCE_EXHAUSTED at the side that would send it.
using Metadata = std::vector<std::pair<std::string, std::string>>;

// The value of the first entry of `metadata` whose key is `key`, ignoring
// case; empty if there is none.
inline absl::string_view MetadataValue(const Metadata& metadata, absl::string_view key) {
  for (const auto& [k, v] : metadata) {
    if (absl::EqualsIgnoreCase(k, key)) return v;
  }
  return {};
}

namespace internal {
// Lower-cases a metadata key in place (ASCII; other bytes stay).
inline void LowercaseKey(std::string& key) {
  for (char& c : key) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
}
// Lower-cases the keys of `metadata` in place (the receiving side's view).
inline void LowercaseKeys(Metadata& metadata) {
  for (auto& entry : metadata) LowercaseKey(entry.first);
}
}  // namespace internal

struct CallOptions {
  // Absolute deadline. The call fails with DEADLINE_EXCEEDED at the client
  // when it passes, and the server sees it in ServerContext::deadline().
  absl::Time deadline = absl::InfiniteFuture();
  // Sent to the server; visible as ServerContext::client_metadata().
  Metadata metadata;
  // If set, receives the server's trailing metadata when the call ends. Must
  // stay valid until the call completes.
  Metadata* trailing_metadata = nullptr;
  // If set, receives the server's initial metadata (ServerContext::
  // AddInitialMetadata). Must stay valid until the call completes. Written
  // before a unary call completes; for a stream, readable once a Read
  // returned a message or Finish returned.
  Metadata* initial_metadata = nullptr;
  // If set, Cancel() on it (from any thread) ends the call with CANCELLED
  // and tells the server; see locus/cancellation.h.
  std::optional<Cancellation> cancellation;
  // gRPC's wait_for_ready. False (fail fast): while the channel cannot
  // connect (waiting out its backoff after a failed attempt) the call fails
  // at once with UNAVAILABLE. True: it waits for the channel to connect,
  // trying at each attempt the channel's backoff allows, until its deadline
  // (DEADLINE_EXCEEDED) or its cancellation. Either way a call that was
  // sent is not sent again because of this option (see retry_policy.h).
  bool wait_for_ready = false;

  static CallOptions WithTimeout(absl::Duration timeout) {
    CallOptions options;
    options.deadline = absl::Now() + timeout;
    return options;
  }
  static CallOptions WithDeadline(absl::Time deadline) {
    CallOptions options;
    options.deadline = deadline;
    return options;
  }
  // Options for a call a handler makes on behalf of the call it serves
  // (gRPC's ClientContext::FromServerContext): the served call's deadline;
  // a cancellation that fires when the served call is cancelled (its client
  // cancelled, went away, or the server shut down: so cancelling the outer
  // call cancels this one), the same for every call of the handler (from
  // any thread), and the handler's own: its Cancel() ends the calls made
  // with it, not the served call; and the served call's propagated metadata
  // (ServerContext::AddPropagatedMetadata: tracing context). Defined in
  // locus/server_context.h.
  static CallOptions FromServerContext(const ServerContext& context);
};

}  // namespace locus

#endif  // LOCUS_CALL_OPTIONS_H_
