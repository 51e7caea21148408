// Who reads a stream socket (stream_connection.h): nobody, the connection's
// event-loop thread, a synchronous caller reading its own reply
// (Connection::DriveUntil), or nobody ever again (closed). Exactly one party
// holds the role at a time; it alone reads the socket and feeds the
// connection's decoder.
//
// Example:
//   if (role.TryAcquire(SocketReaderRole::Reader::kLoop)) {
//     ...read and deliver...
//     role.Release(SocketReaderRole::Reader::kLoop);
//   }
//
// One atomic word, changed by compare-and-swap only (every call changes it
// twice: one atomic per change instead of a lock pair). While a caller
// reads, the loop does not read but records a hang-up it saw (edge-triggered,
// so reported once) for the caller, which then reads to the end itself.
//
// Thread-safe. A lockable for the thread-safety analysis: members marked
// ABSL_GUARDED_BY(role) belong to whoever holds it.
#ifndef LOCUS_TRANSPORTS_SOCKET_SOCKET_READER_ROLE_H_
#define LOCUS_TRANSPORTS_SOCKET_SOCKET_READER_ROLE_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "transports/common/spin_budget.h"

namespace locus::internal {

class ABSL_LOCKABLE SocketReaderRole {
 public:
  enum class Reader : uint32_t { kIdle, kLoop, kCaller, kClosed };

  // How long AcquireAsCaller waits for the loop to hand over the role it
  // holds for one non-blocking read while polling (it takes it no more
  // once a caller wants it): a read and the inline handlers of what it read.
  static constexpr absl::Duration kCallerWait = absl::Microseconds(20);

  // Idle -> `who`; false if someone else reads (or the socket is closed).
  bool TryAcquire(Reader who) ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    uint32_t idle = static_cast<uint32_t>(Reader::kIdle);
    return state_.compare_exchange_strong(idle, static_cast<uint32_t>(who),
                                          std::memory_order_seq_cst);
  }

  // Idle -> caller. The loop holds the role only briefly while it polls
  // (one non-blocking read, and the inline handlers of what came), and
  // takes it no more once a caller wants it: worth a short wait then.
  // Without polling (`socket_spin` 0, or a one-core machine) the loop holds
  // the role only while it handles events, and waiting for it would spin
  // on the core it needs: the caller falls back at once.
  bool AcquireAsCaller(absl::Duration socket_spin) ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true);

  // The loop, for events on the socket: idle -> loop. If a caller reads (or
  // the socket is closed) returns false; a `hangup` is then recorded for
  // the caller (see ReleaseAsCaller).
  bool AcquireAsLoop(bool hangup) ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true);

  // `who` -> idle, unless the socket closed meanwhile.
  void Release(Reader who) ABSL_UNLOCK_FUNCTION() {
    for (uint32_t state = state_.load(std::memory_order_seq_cst); ReaderOf(state) == who;) {
      if (state_.compare_exchange_weak(state, static_cast<uint32_t>(Reader::kIdle),
                                       std::memory_order_seq_cst)) {
        return;
      }
    }
  }

  // A caller leaving the role. Returns true (the role still held) if the
  // loop saw the peer hang up while this caller read and `closed` is
  // false: no further event will come, so the caller reads what is left and
  // the EOF itself, then calls Release(kCaller). Unchecked: the role is
  // released or kept depending on the word, in one compare-and-swap.
  bool ReleaseAsCallerUnlessHangup(bool closed) ABSL_NO_THREAD_SAFETY_ANALYSIS;

  // Nobody reads any more (the connection delivered OnClosed).
  void MarkClosed() { state_.store(static_cast<uint32_t>(Reader::kClosed), std::memory_order_seq_cst); }

  Reader reader() const { return ReaderOf(state_.load(std::memory_order_seq_cst)); }
  // Whether a caller waits in AcquireAsCaller: the loop's polls leave the
  // role alone meanwhile.
  bool caller_waiting() const { return callers_waiting_.load(std::memory_order_seq_cst) > 0; }

 private:
  static constexpr uint32_t kReaderMask = 3;
  static constexpr uint32_t kHangupSeen = 4;  // only while a caller reads
  static Reader ReaderOf(uint32_t state) { return static_cast<Reader>(state & kReaderMask); }

  // A Reader, plus kHangupSeen.
  std::atomic<uint32_t> state_{static_cast<uint32_t>(Reader::kIdle)};
  std::atomic<int> callers_waiting_{0};  // callers in AcquireAsCaller
};

inline bool SocketReaderRole::AcquireAsCaller(absl::Duration socket_spin) {
  if (TryAcquire(Reader::kCaller)) return true;
  if (socket_spin <= absl::ZeroDuration() || SpinBudget::Get().limit() == 0 ||
      ReaderOf(state_.load(std::memory_order_seq_cst)) != Reader::kLoop) {
    return false;
  }
  callers_waiting_.fetch_add(1, std::memory_order_seq_cst);
  const absl::Time give_up = absl::Now() + kCallerWait;
  bool taken = false;
  for (;;) {
    CpuRelax();
    taken = TryAcquire(Reader::kCaller);
    if (taken || absl::Now() >= give_up) break;
    // Only the loop hands the role back soon; another caller (or
    // closure) keeps it.
    const Reader reader = ReaderOf(state_.load(std::memory_order_seq_cst));
    if (reader != Reader::kLoop && reader != Reader::kIdle) break;
  }
  callers_waiting_.fetch_sub(1, std::memory_order_seq_cst);
  return taken;
}

inline bool SocketReaderRole::AcquireAsLoop(bool hangup) {
  for (uint32_t state = state_.load(std::memory_order_seq_cst);;) {
    if (ReaderOf(state) == Reader::kIdle) {
      if (state_.compare_exchange_weak(state, static_cast<uint32_t>(Reader::kLoop),
                                       std::memory_order_seq_cst)) {
        return true;
      }
      continue;
    }
    // A caller reads (or closed). Without background reads the hang-up
    // is reported once (edge-triggered): the caller handles it when it
    // stops driving, if it has not read the EOF itself.
    if (!hangup ||
        state_.compare_exchange_weak(state, state | kHangupSeen, std::memory_order_seq_cst)) {
      return false;
    }
  }
}

inline bool SocketReaderRole::ReleaseAsCallerUnlessHangup(bool closed) {
  bool read_to_end = false;
  for (uint32_t state = state_.load(std::memory_order_seq_cst);;) {
    // Closed meanwhile: nothing to hand back (a hang-up already seen by a
    // failed attempt is still read to its end, which finds the EOF).
    if (ReaderOf(state) != Reader::kCaller) return read_to_end;
    read_to_end = (state & kHangupSeen) != 0 && !closed;
    const uint32_t next = static_cast<uint32_t>(read_to_end ? Reader::kCaller : Reader::kIdle);
    if (state_.compare_exchange_weak(state, next, std::memory_order_seq_cst)) return read_to_end;
  }
}

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_SOCKET_READER_ROLE_H_
