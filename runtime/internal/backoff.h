// The two backoffs of gRPC, as arithmetic (no clock, no threads of their
// own): the wait between connection attempts (doc/connection-backoff.md in
// gRPC; locus::ConnectionBackoff), used by a channel's ConnectAttempts and
// by a balanced channel for each backend that failed, and the wait before
// a retry (proposal A6; locus::RetryPolicy), used by the retry drivers in
// retry.h.
//
// Example:
//   ExponentialBackoff backoff(options.reconnect_backoff);
//   absl::Time next_attempt = failed_at + backoff.NextDelay();
//   ...
//   backoff.Reset();                      // after a successful connection
//
// Thread-safety: ExponentialBackoff is thread-compatible (its owner locks).
// RetryDelay is thread-safe.
#ifndef LOCUS_RUNTIME_INTERNAL_BACKOFF_H_
#define LOCUS_RUNTIME_INTERNAL_BACKOFF_H_

#include "absl/random/bit_gen_ref.h"
#include "absl/time/time.h"
#include "locus/retry_policy.h"

namespace locus::internal {

class ExponentialBackoff {
 public:
  // Options that make no sense are bounded: initial_backoff at least 1 ms,
  // max_backoff at least initial_backoff, multiplier at least 1, jitter in
  // [0, 0.5] (a wait is never near zero).
  explicit ExponentialBackoff(const ConnectionBackoff& options) : options_(Sanitized(options)) {
    Reset();
  }

  // The wait before the next attempt after a failed one: the first time
  // initial_backoff exactly, then each time `multiplier` times the previous
  // (at most max_backoff), moved by a uniform random +-jitter of itself.
  absl::Duration NextDelay(absl::BitGenRef random);
  // The same, with a generator of this thread's.
  absl::Duration NextDelay();
  // After a success: the next failure waits initial_backoff again.
  void Reset() {
    current_ = options_.initial_backoff;
    first_ = true;
  }

 private:
  static ConnectionBackoff Sanitized(ConnectionBackoff options);

  const ConnectionBackoff options_;
  absl::Duration current_;
  bool first_ = true;
};

// The wait before retry `retry` (1 for the first retry) under `policy`:
// uniform in [0, min(initial_backoff * backoff_multiplier^(retry-1),
// max_backoff)).
absl::Duration RetryDelay(const RetryPolicy& policy, int retry, absl::BitGenRef random);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_BACKOFF_H_
