#include "internal/backoff.h"

#include <algorithm>
#include <cmath>

#include "absl/random/distributions.h"
#include "absl/random/random.h"

namespace locus::internal {

ConnectionBackoff ExponentialBackoff::Sanitized(ConnectionBackoff options) {
  options.initial_backoff = std::max(options.initial_backoff, absl::Milliseconds(1));
  options.max_backoff = std::max(options.max_backoff, options.initial_backoff);
  options.multiplier = std::max(options.multiplier, 1.0);
  // At most half: a wait is never near zero.
  options.jitter = std::clamp(options.jitter, 0.0, 0.5);
  return options;
}

absl::Duration ExponentialBackoff::NextDelay(absl::BitGenRef random) {
  if (first_) {
    first_ = false;
    return current_;
  }
  current_ = std::min(current_ * options_.multiplier, options_.max_backoff);
  const double jitter = options_.jitter;
  const double factor = jitter > 0 ? absl::Uniform(random, 1.0 - jitter, 1.0 + jitter) : 1.0;
  return std::max(current_ * factor, absl::ZeroDuration());
}

absl::Duration ExponentialBackoff::NextDelay() {
  thread_local absl::InsecureBitGen random;
  return NextDelay(random);
}

absl::Duration RetryDelay(const RetryPolicy& policy, int retry, absl::BitGenRef random) {
  // initial * multiplier^(retry-1), computed in doubles of seconds so that
  // a large exponent saturates instead of overflowing a Duration.
  const double multiplier = policy.backoff_multiplier > 0 ? policy.backoff_multiplier : 1.0;
  const double seconds =
      absl::ToDoubleSeconds(policy.initial_backoff) * std::pow(multiplier, std::max(retry - 1, 0));
  const double cap = absl::ToDoubleSeconds(policy.max_backoff);
  const double bound = std::max(std::min(seconds, cap), 0.0);
  if (bound <= 0) return absl::ZeroDuration();
  return absl::Seconds(absl::Uniform(random, 0.0, bound));
}

}  // namespace locus::internal
