// Exponential backoff with jitter, for retrying something that failed (a
// backend of a balanced channel, internal/balanced_channel.h): the first
// wait is `initial`, each next one `multiplier` times the last, at most
// `max`; each wait handed out is spread uniformly by +/- `jitter` (a
// fraction) so that many clients retrying the same server do not stay in
// step (gRPC's connection backoff).
//
// Example:
//   Backoff backoff(BackoffPolicy{absl::Seconds(1), absl::Seconds(120), 1.6, 0.2});
//   retry_at = absl::Now() + backoff.NextDelay();   // ~1 s, then ~1.6 s, ~2.56 s, ...
//   backoff.Reset();                                 // it worked: start over
//
// Thread-safety: a Backoff is not thread-safe (its owner's lock guards it).
#ifndef LOCUS_RUNTIME_INTERNAL_BACKOFF_H_
#define LOCUS_RUNTIME_INTERNAL_BACKOFF_H_

#include <algorithm>
#include <random>

#include "absl/time/time.h"

namespace locus::internal {

struct BackoffPolicy {
  absl::Duration initial = absl::Seconds(1);
  absl::Duration max = absl::Seconds(120);
  double multiplier = 1.6;
  double jitter = 0.2;
};

class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy) : policy_(Sanitized(policy)) {}

  // The wait before the next attempt, after one more failure.
  absl::Duration NextDelay() {
    current_ = current_ == absl::ZeroDuration()
                   ? policy_.initial
                   : std::min(policy_.max, current_ * policy_.multiplier);
    if (policy_.jitter == 0) return current_;
    thread_local std::minstd_rand random(std::random_device{}());
    std::uniform_real_distribution<double> spread(1 - policy_.jitter, 1 + policy_.jitter);
    return current_ * spread(random);
  }
  // After a success: the next failure waits `initial` again.
  void Reset() { current_ = absl::ZeroDuration(); }

 private:
  // Bounds that keep the arithmetic meaningful whatever the options say.
  static BackoffPolicy Sanitized(BackoffPolicy policy) {
    policy.initial = std::max(policy.initial, absl::Milliseconds(1));
    policy.max = std::max(policy.max, policy.initial);
    policy.multiplier = std::max(policy.multiplier, 1.0);
    // At most half: a wait is never near zero.
    policy.jitter = std::clamp(policy.jitter, 0.0, 0.5);
    return policy;
  }

  BackoffPolicy policy_;
  absl::Duration current_ = absl::ZeroDuration();
};

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_BACKOFF_H_
