// How a channel tries again: the backoff between connection attempts
// (ChannelOptions::reconnect_backoff) and the retry policy of a method
// (the IDL's (locus.retry) option, or ChannelOptions::retry_policies).
//
// Example:
//   locus::ChannelOptions options;
//   options.reconnect_backoff.initial_backoff = absl::Milliseconds(100);
//   locus::RetryPolicy policy;
//   policy.max_attempts = 4;
//   policy.initial_backoff = absl::Milliseconds(50);
//   policy.max_backoff = absl::Seconds(1);
//   policy.backoff_multiplier = 2;
//   policy.retryable_codes = locus::RetryPolicy::Code(absl::StatusCode::kUnavailable) |
//                            locus::RetryPolicy::Code(absl::StatusCode::kResourceExhausted);
//   options.retry_policies["/demo.Echo/Say"] = policy;
//   auto channel = locus::Connect("tcp://localhost:7000", options);
//
// Retries never send again a call the server may have acted on unless its
// policy allows it: only after a status listed in `retryable_codes`, and a
// client-streaming or bidirectional call only until its first message has
// been sent (a server-streaming one until its first message has been
// received). Calls the server never saw (refused by GOAWAY, failed before
// they were sent) are retried transparently, policy or not (see
// locus/channel.h). Every retry stays within the call's deadline and ends at
// its Cancellation.
#ifndef LOCUS_RETRY_POLICY_H_
#define LOCUS_RETRY_POLICY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace locus {

// gRPC's connection backoff (doc/connection-backoff.md in gRPC), with its
// defaults. After a failed connection attempt the channel makes no other
// before `initial_backoff`; each further failure multiplies the wait by
// `multiplier` (at most `max_backoff`), spread by +-`jitter` of it (at
// most 0.5: a wait is never near zero). A
// successful connection starts over. Calls made meanwhile fail at once
// with UNAVAILABLE unless CallOptions::wait_for_ready.
struct ConnectionBackoff {
  absl::Duration initial_backoff = absl::Seconds(1);
  double multiplier = 1.6;
  double jitter = 0.2;
  absl::Duration max_backoff = absl::Seconds(120);
};

// The retry policy of one method (gRPC's retryPolicy, proposal A6). A
// literal type, so that generated code defines policies as constants.
struct RetryPolicy {
  // Attempts in all, the first included; at most kMaxAttempts (more count
  // as that many). 0 or 1: no retries.
  int max_attempts = 0;
  // Before retry n (1-based) the call waits a random time, uniform in
  // [0, min(initial_backoff * backoff_multiplier^(n-1), max_backoff)).
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(1);
  double backoff_multiplier = 2;
  // The status codes that may be retried: a bit per code, Code(code).
  uint32_t retryable_codes = 0;

  static constexpr int kMaxAttempts = 5;
  static constexpr uint32_t Code(absl::StatusCode code) {
    return uint32_t{1} << static_cast<int>(code);
  }
  bool Retries(absl::StatusCode code) const {
    const int bit = static_cast<int>(code);
    return bit >= 0 && bit < 32 && (retryable_codes & (uint32_t{1} << bit)) != 0;
  }
  int attempts() const {
    return max_attempts < 1 ? 1 : (max_attempts > kMaxAttempts ? kMaxAttempts : max_attempts);
  }
};

}  // namespace locus

#endif  // LOCUS_RETRY_POLICY_H_
