// The connection attempts of one channel: one at a time, and after a failed
// one none before its backoff has passed (gRPC's connection backoff,
// ExponentialBackoff in backoff.h). Callers that find no usable connection
// ask for a turn: the first dials, later ones wait for its outcome, and
// while the backoff runs everyone is told at once why the last attempt
// failed (a fail-fast call fails with it; a wait_for_ready call waits until
// next_attempt()). So a server that is down costs one connection attempt
// per backoff period, however many calls are made meanwhile.
//
// Example (what ChannelImpl::GetRoute does):
//   for (;;) {
//     if (RouteUsable()) return route;
//     absl::StatusOr<ConnectAttempts::Turn> turn = attempts->Await(call_deadline, cancellation);
//     if (!turn.ok()) return turn.status();   // backoff, deadline, cancellation
//     if (!turn->dial) continue;              // another caller's attempt ended: look again
//     absl::StatusOr<Route> fresh = Dial(turn->deadline);
//     if (fresh.ok()) attempts->Succeeded(); else attempts->Failed(fresh.status());
//   }
//
// Thread-safety: thread-safe. A caller granted a turn must end it with
// exactly one of Succeeded, Failed or Abandoned.
#ifndef LOCUS_RUNTIME_INTERNAL_CONNECT_ATTEMPTS_H_
#define LOCUS_RUNTIME_INTERNAL_CONNECT_ATTEMPTS_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "internal/backoff.h"
#include "locus/cancellation.h"
#include "locus/retry_policy.h"

namespace locus::internal {

class ConnectAttempts : public std::enable_shared_from_this<ConnectAttempts> {
 public:
  // `min_connect_timeout`: the least time an attempt is given
  // (ChannelOptions::connect_timeout).
  static std::shared_ptr<ConnectAttempts> Create(const ConnectionBackoff& backoff,
                                                 absl::Duration min_connect_timeout);

  struct Turn {
    // True: this caller dials now, until `deadline`. False: an attempt made
    // by another caller ended: look at the connection again.
    bool dial = false;
    absl::Time deadline = absl::InfiniteFuture();
  };
  // Waits while another caller's attempt runs (until `call_deadline`:
  // DEADLINE_EXCEEDED, or the cancellation: CANCELLED). While the backoff
  // after a failed attempt runs: the failure, at once (UNAVAILABLE, or the
  // attempt's own code for a configuration error). An attempt is given
  // connect_timeout, or as long as the wait before it if that is longer,
  // never past `call_deadline`.
  absl::StatusOr<Turn> Await(absl::Time call_deadline, const std::optional<Cancellation>& cancellation);
  // Ends a turn. Succeeded: the backoff starts over. Failed: no attempt
  // before the next backoff period has passed since this one began.
  // Abandoned: the call's deadline cut the attempt short; it does not
  // count (the server was not found wanting).
  void Succeeded();
  void Failed(absl::Status failure);
  void Abandoned();

  // When the backoff allows the next attempt (InfinitePast: now).
  absl::Time next_attempt() const;

  struct Stats {
    uint64_t attempts = 0;  // turns granted to dial
    uint64_t failures = 0;
  };
  Stats stats() const;

 private:
  ConnectAttempts(const ConnectionBackoff& backoff, absl::Duration min_connect_timeout)
      : min_connect_timeout_(min_connect_timeout), backoff_(backoff) {}
  void EndTurnLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration min_connect_timeout_;
  mutable absl::Mutex mu_;
  ExponentialBackoff backoff_ ABSL_GUARDED_BY(mu_);
  absl::BitGen random_ ABSL_GUARDED_BY(mu_);
  bool dialling_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t ended_turns_ ABSL_GUARDED_BY(mu_) = 0;  // changes when a turn ends
  absl::Time started_ ABSL_GUARDED_BY(mu_);        // of the attempt running or last run
  absl::Duration last_wait_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  absl::Time next_attempt_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_CONNECT_ATTEMPTS_H_
