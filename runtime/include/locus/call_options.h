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
#ifndef LOCUS_CALL_OPTIONS_H_
#define LOCUS_CALL_OPTIONS_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "locus/cancellation.h"

namespace locus {

// Key/value pairs sent with a call (client metadata) or with its status
// (trailing metadata). Keys are case-sensitive; values are bytes.
using Metadata = std::vector<std::pair<std::string, std::string>>;

struct CallOptions {
  // Absolute deadline. The call fails with DEADLINE_EXCEEDED at the client
  // when it passes, and the server sees it in ServerContext::deadline().
  absl::Time deadline = absl::InfiniteFuture();
  // Sent to the server; visible as ServerContext::client_metadata().
  Metadata metadata;
  // If set, receives the server's trailing metadata when the call ends. Must
  // stay valid until the call completes.
  Metadata* trailing_metadata = nullptr;
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
};

}  // namespace locus

#endif  // LOCUS_CALL_OPTIONS_H_
