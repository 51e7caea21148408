// Whether a socket reader busy-polls before it sleeps, learned from how its
// recent polls ended (TransportOptions::socket_spin).
//
// Polling a socket (non-blocking receives, or epoll_wait with no timeout, in
// a loop) spares the wake-up of a sleeping thread, which can be most of a
// same-host round trip (docs/performance-notes.md has the measurements). It
// pays only if input comes within the window. Across hosts a reply often takes
// longer than any sensible window, and a poll that always runs out burns a
// core for nothing; so after kMissesBeforeBackoff polls in a row ran out, a
// poller polls only once in kProbeInterval waits (to notice when the peer
// has become quick again) and sleeps at once otherwise.
//
// PollAsCaller is the poll of a caller waiting for its reply, under the
// policy and the process-wide spin budget.
//
// Example:
//   AdaptivePoll policy;  // one per poller
//   if (policy.ShouldPoll()) {
//     bool found = ...poll for up to the window...;
//     found ? policy.Hit() : policy.Miss();
//   }
//   // or, for a caller:
//   bool came = PollAsCaller(policy, options.socket_spin, deadline, [&] {
//     return recv(fd, buffer, size, MSG_DONTWAIT) >= 0 || errno != EAGAIN;
//   });
//
// Thread-safety: none; one poller (e.g. whoever holds a connection's reader
// role, or the event-loop thread it is registered with) uses an instance.
#ifndef LOCUS_TRANSPORTS_SOCKET_ADAPTIVE_POLL_H_
#define LOCUS_TRANSPORTS_SOCKET_ADAPTIVE_POLL_H_

#include <algorithm>
#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "transports/common/spin_budget.h"

namespace locus::internal {

class AdaptivePoll {
 public:
  static constexpr int kMissesBeforeBackoff = 2;
  static constexpr uint32_t kProbeInterval = 32;

  // Whether to poll at this wait. Counts the waits skipped while backed off.
  bool ShouldPoll() {
    if (misses_ < kMissesBeforeBackoff) return true;
    return ++skipped_ % kProbeInterval == 0;
  }
  // Input came while polling: poll at every wait again.
  void Hit() {
    misses_ = 0;
    skipped_ = 0;
  }
  // The window ran out without input.
  void Miss() {
    if (misses_ < kMissesBeforeBackoff) ++misses_;
  }

 private:
  int misses_ = 0;
  uint32_t skipped_ = 0;
};

// How long a caller that wants to poll waits for a slot of the spin budget:
// an I/O thread that polls gives its slot up once it sees a caller waiting,
// after its current attempt (a receive, and the inline handlers of what it
// received).
inline constexpr absl::Duration kCallerBudgetWait = absl::Microseconds(5);

// Runs `try_once` (one attempt at input that never waits: true once input,
// or its end, came) until it returns true, `window` has passed or `until`,
// if `policy` says polling pays and the spin budget has a slot. Returns
// whether input came; records the outcome in `policy` (a poll that was
// not allowed records nothing).
template <typename TryOnce>
bool PollAsCaller(AdaptivePoll& policy, absl::Duration window, absl::Time until, TryOnce try_once) {
  SpinBudget& budget = SpinBudget::Get();
  if (window <= absl::ZeroDuration() || budget.limit() == 0 || !policy.ShouldPoll()) return false;
  if (!budget.TryAcquire()) {
    budget.AnnounceCaller();
    const absl::Time give_up = absl::Now() + kCallerBudgetWait;
    bool acquired = false;
    while (!acquired && absl::Now() < give_up) {
      CpuRelax();
      acquired = budget.TryAcquire();
    }
    budget.WithdrawCaller();
    if (!acquired) return false;
  }
  until = std::min(until, absl::Now() + window);
  bool came;
  do {
    came = try_once();
  } while (!came && absl::Now() < until);
  budget.Release();
  if (came) {
    policy.Hit();
  } else {
    policy.Miss();
  }
  return came;
}

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_ADAPTIVE_POLL_H_
