// Whether a socket reader busy-polls before it sleeps, learned from how its
// recent polls ended (TransportOptions::socket_spin).
//
// Polling a socket (non-blocking receives, or epoll_wait with no timeout, in
// a loop) spares the wake-up of a sleeping thread, which on a VM is most of
// a same-host round trip: a 64 B TCP loopback ping-pong between two pinned
// processes takes ~28 us with blocking receives and ~11 us polling. It pays
// only if input comes within the window. Across hosts a reply often takes
// longer than any sensible window, and a poll that always runs out burns a
// core for nothing; so after kMissesBeforeBackoff polls in a row ran out, a
// poller polls only once in kProbeInterval waits (to notice when the peer
// has become quick again) and sleeps at once otherwise.
//
// Example:
//   AdaptivePoll policy;  // one per poller
//   if (policy.ShouldPoll()) {
//     bool found = ...poll for up to the window...;
//     found ? policy.Hit() : policy.Miss();
//   }
//
// Thread-safety: none; one poller (e.g. whoever holds a connection's reader
// role, or one event-loop thread) uses an instance.
#ifndef LOCUS_TRANSPORTS_SOCKET_ADAPTIVE_POLL_H_
#define LOCUS_TRANSPORTS_SOCKET_ADAPTIVE_POLL_H_

#include <cstdint>

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

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_ADAPTIVE_POLL_H_
