// Future<T>: the result of an asynchronous call, waited for once.
//
// Example:
//   locus::Future<SayReply> pending = stub.AsyncSay(request);
//   ...                                  // do other work; the call proceeds
//   absl::StatusOr<SayReply> reply = pending.Get();   // blocks until done
//
// A future completes exactly once: with the reply, or with the call's error
// (deadline, cancellation, transport failure). Get() waits for that; the
// call's own deadline bounds the wait. Thread-safety: one thread calls Get();
// ready() may be called from any thread.
#ifndef LOCUS_FUTURE_H_
#define LOCUS_FUTURE_H_

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace locus {
namespace internal {

// Completion state shared between a call and the thread waiting for it.
class Completion {
 public:
  // Called once by the runtime when the call ends.
  void Complete(absl::Status status) {
    absl::MutexLock lock(&mu_);
    status_ = std::move(status);
    done_ = true;
  }
  bool done() const {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  // Waits until completed or `deadline`; returns whether it completed.
  bool WaitUntil(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto is_done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return done_; };
    mu_.AwaitWithDeadline(absl::Condition(&is_done), deadline);
    return done_;
  }
  absl::Status status() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

template <typename T>
struct FutureState : Completion {
  T value;  // the reply; written by the runtime before Complete()
};

}  // namespace internal

template <typename T>
class Future {
 public:
  Future() = default;
  explicit Future(std::shared_ptr<internal::FutureState<T>> state) : state_(std::move(state)) {}

  bool valid() const { return state_ != nullptr; }
  bool ready() const { return state_ != nullptr && state_->done(); }
  // Waits until ready or `deadline`; returns ready().
  bool WaitUntil(absl::Time deadline) { return state_->WaitUntil(deadline); }

  // Blocks until the call completes; returns its reply or error. Call once.
  absl::StatusOr<T> Get() {
    state_->WaitUntil(absl::InfiniteFuture());
    absl::Status status = state_->status();
    if (!status.ok()) return status;
    return std::move(state_->value);
  }

 private:
  std::shared_ptr<internal::FutureState<T>> state_;
};

}  // namespace locus

#endif  // LOCUS_FUTURE_H_
