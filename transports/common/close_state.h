// The closing of a connection, as every transport's Connection keeps it: the
// reason, recorded once by the first Close (later ones change nothing), a
// flag that says it happened, and the once-only delivery of
// FrameSink::OnClosed.
//
// Example:
//   void Close(const absl::Status& reason) {
//     if (!close_.Close(reason)) return;  // closed already
//     ...this transport's close actions (wake readers, shut the socket)...
//   }
//   ...
//   if (close_.TakeOnClosedDelivery()) sink_->OnClosed(close_.Reason());
//
// Thread-safe. The mutex is a leaf: no lock is taken while it is held, so
// it may be taken under any of the connection's own locks.
#ifndef LOCUS_TRANSPORTS_COMMON_CLOSE_STATE_H_
#define LOCUS_TRANSPORTS_COMMON_CLOSE_STATE_H_

#include <atomic>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace locus::internal {

class CloseState {
 public:
  // Records `reason` if no Close came before, then sets closed(). Returns
  // true for that first call only: its caller runs the close actions.
  bool Close(const absl::Status& reason) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (closing_) return false;
      closing_ = true;
      reason_ = reason;
    }
    // After the reason: a thread that sees the flag finds the reason too.
    closed_.store(true, std::memory_order_seq_cst);
    return true;
  }

  // Whether a Close ran. Lock-free; hot paths pick the memory order their
  // protocol needs (e.g. relaxed inside a poll loop that re-checks).
  bool closed(std::memory_order order = std::memory_order_acquire) const {
    return closed_.load(order);
  }

  // The first Close's reason; UNAVAILABLE "connection closed" before one.
  absl::Status Reason() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return closing_ ? reason_ : absl::UnavailableError("connection closed");
  }

  // The first Close's reason, or `otherwise` if none came yet (decided
  // atomically with the Closes).
  absl::Status ReasonOr(absl::Status otherwise) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return closing_ ? reason_ : std::move(otherwise);
  }

  // What a send on the closed connection returns: UNAVAILABLE "connection
  // closed: <the reason>".
  absl::Status ClosedError() const ABSL_LOCKS_EXCLUDED(mu_) {
    return absl::UnavailableError(absl::StrCat("connection closed: ", Reason().message()));
  }

  // True for the first call only: its caller delivers FrameSink::OnClosed
  // (so it is delivered exactly once, whoever gets there first).
  bool TakeOnClosedDelivery() { return !on_closed_taken_.exchange(true, std::memory_order_seq_cst); }
  // Whether TakeOnClosedDelivery returned true to someone.
  bool on_closed_taken() const { return on_closed_taken_.load(std::memory_order_seq_cst); }

 private:
  mutable absl::Mutex mu_;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status reason_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> closed_{false};
  std::atomic<bool> on_closed_taken_{false};
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_COMMON_CLOSE_STATE_H_
