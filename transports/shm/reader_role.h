// The right to read a connection's incoming ring: held by at most one thread
// at a time (the connection's reader thread, or a synchronous caller reading
// its own reply). A futex-based lock tuned for the per-call hot path:
// uncontended acquire and release are one atomic operation each, and release
// makes a system call only when another thread sleeps waiting for the role.
//
// Example:
//   ReaderRole role;
//   if (role.TryAcquire() || role.AcquireWithin(absl::Microseconds(200))) {
//     ...drain the ring...
//     role.Release();
//   }
//
// Thread-safe. Not reentrant. Process-private (never placed in shared memory).
#ifndef LOCUS_TRANSPORTS_SHM_READER_ROLE_H_
#define LOCUS_TRANSPORTS_SHM_READER_ROLE_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "transports/common/spin_budget.h"
#include "transports/shm/futex.h"

namespace locus::internal {

class ABSL_LOCKABLE ReaderRole {
 public:
  bool TryAcquire() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    uint32_t expected = kFree;
    return state_.compare_exchange_strong(expected, kHeld, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }

  // Waits until the role is free or `timeout` passes; true if acquired.
  // Spins briefly first: a holder that sees a caller waiting lets go within
  // a few of its polling iterations, far sooner than a futex wake-up.
  bool AcquireWithin(absl::Duration timeout) ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    for (int i = 0; i < kSpinIterations; ++i) {
      CpuRelax();
      if (state_.load(std::memory_order_relaxed) == kFree && TryAcquire()) return true;
    }
    const absl::Time until = absl::Now() + timeout;
    for (;;) {
      // Announce a sleeper so that Release() wakes us; acquiring from the
      // contended state keeps the announcement for the others (as in
      // Drepper's "futexes are tricky" mutex).
      uint32_t seen = state_.load(std::memory_order_relaxed);
      if (seen == kFree) {
        if (state_.compare_exchange_strong(seen, kHeldWithSleepers, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
          return true;
        }
        continue;
      }
      if (seen == kHeld &&
          !state_.compare_exchange_strong(seen, kHeldWithSleepers, std::memory_order_relaxed)) {
        continue;
      }
      const absl::Time now = absl::Now();
      if (now >= until) return false;
      FutexWait(&state_, kHeldWithSleepers, until - now);
    }
  }

  void Acquire() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    while (!TryAcquire() && !AcquireWithin(absl::Seconds(1))) {
    }
  }

  void Release() ABSL_UNLOCK_FUNCTION() {
    if (state_.exchange(kFree, std::memory_order_release) == kHeldWithSleepers) {
      FutexWakeAll(&state_);
    }
  }

 private:
  static constexpr int kSpinIterations = 2048;
  static constexpr uint32_t kFree = 0;
  static constexpr uint32_t kHeld = 1;
  static constexpr uint32_t kHeldWithSleepers = 2;
  std::atomic<uint32_t> state_{kFree};
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SHM_READER_ROLE_H_
