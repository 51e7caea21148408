// The two backoffs of gRPC, as pure arithmetic (no clock, no threads): the
// wait between connection attempts (doc/connection-backoff.md in gRPC;
// ConnectionBackoff) and the wait before a retry (proposal A6;
// RetryPolicy). Whoever waits (the channel's ConnectAttempts, the retry
// drivers in retry.h, a multi-server channel) asks these how long.
//
// Example:
//   ExponentialBackoff backoff(options.reconnect_backoff);
//   absl::BitGen random;
//   absl::Time next_attempt = failed_at + backoff.NextDelay(random);
//   ...
//   backoff.Reset();                      // after a successful connection
//
// Thread-safety: ExponentialBackoff is thread-compatible (its owner locks).
#ifndef LOCUS_RUNTIME_INTERNAL_BACKOFF_H_
#define LOCUS_RUNTIME_INTERNAL_BACKOFF_H_

#include "absl/random/bit_gen_ref.h"
#include "absl/time/time.h"
#include "locus/retry_policy.h"

namespace locus::internal {

class ExponentialBackoff {
 public:
  explicit ExponentialBackoff(const ConnectionBackoff& options) : options_(options) { Reset(); }

  // The wait before the next attempt after a failed one: the first time
  // initial_backoff exactly, then each time `multiplier` times the previous
  // (at most max_backoff), moved by a uniform random +-jitter of itself.
  // Never negative.
  absl::Duration NextDelay(absl::BitGenRef random);
  // After a success: the next failure waits initial_backoff again.
  void Reset() {
    current_ = options_.initial_backoff;
    first_ = true;
  }

 private:
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
