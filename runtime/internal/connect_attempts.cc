#include "internal/connect_attempts.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace locus::internal {

std::shared_ptr<ConnectAttempts> ConnectAttempts::Create(const ConnectionBackoff& backoff,
                                                         absl::Duration min_connect_timeout) {
  return std::shared_ptr<ConnectAttempts>(new ConnectAttempts(backoff, min_connect_timeout));
}

absl::StatusOr<ConnectAttempts::Turn> ConnectAttempts::Await(
    absl::Time call_deadline, const std::optional<Cancellation>& cancellation) {
  absl::MutexLock lock(&mu_);
  if (dialling_) {
    // Another caller's attempt runs: wait for its outcome. Cancel() wakes
    // this wait by taking mu_ once its flag is set (the callback may run
    // after this returns: it holds this object weakly).
    auto cancelled = std::make_shared<std::atomic<bool>>(false);
    CancellationRegistration registration;
    if (cancellation.has_value()) {
      std::weak_ptr<ConnectAttempts> weak = weak_from_this();
      registration = CancellationRegistration::Watch(cancellation->state(), [weak, cancelled] {
        cancelled->store(true, std::memory_order_release);
        if (std::shared_ptr<ConnectAttempts> self = weak.lock()) absl::MutexLock wake(&self->mu_);
      });
      if (!registration.active()) return absl::CancelledError("call cancelled");
    }
    const uint64_t seen = ended_turns_;
    auto ended_or_cancelled = [this, seen, &cancelled]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return ended_turns_ != seen || cancelled->load(std::memory_order_acquire);
    };
    mu_.AwaitWithDeadline(absl::Condition(&ended_or_cancelled), call_deadline);
    if (cancelled->load(std::memory_order_acquire)) return absl::CancelledError("call cancelled");
    if (ended_turns_ == seen) {
      return absl::DeadlineExceededError("deadline exceeded waiting for the connection being made");
    }
    return Turn{};
  }
  const absl::Time now = absl::Now();
  if (now < next_attempt_) {
    if (absl::IsUnavailable(failure_)) {
      return absl::UnavailableError(absl::StrCat(
          failure_.message(), " (", absl::FormatDuration(absl::Trunc(now - started_, absl::Milliseconds(1))),
          " ago; next attempt in ",
          absl::FormatDuration(absl::Ceil(next_attempt_ - now, absl::Milliseconds(1))), ")"));
    }
    return failure_;
  }
  dialling_ = true;
  started_ = now;
  ++stats_.attempts;
  return Turn{true, std::min(call_deadline, now + std::max(min_connect_timeout_, last_wait_))};
}

void ConnectAttempts::EndTurnLocked() {
  dialling_ = false;
  ++ended_turns_;
}

void ConnectAttempts::Succeeded() {
  absl::MutexLock lock(&mu_);
  EndTurnLocked();
  backoff_.Reset();
  last_wait_ = absl::ZeroDuration();
  next_attempt_ = absl::InfinitePast();
  failure_ = absl::OkStatus();
}

void ConnectAttempts::Failed(absl::Status failure) {
  absl::MutexLock lock(&mu_);
  EndTurnLocked();
  ++stats_.failures;
  last_wait_ = backoff_.NextDelay(random_);
  next_attempt_ = started_ + last_wait_;
  failure_ = std::move(failure);
}

void ConnectAttempts::Abandoned() {
  absl::MutexLock lock(&mu_);
  EndTurnLocked();
}

absl::Time ConnectAttempts::next_attempt() const {
  absl::MutexLock lock(&mu_);
  return next_attempt_;
}

ConnectAttempts::Stats ConnectAttempts::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace locus::internal
