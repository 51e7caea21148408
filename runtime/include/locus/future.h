// Future<T>: the result of an asynchronous call, taken once: waited for with
// Get(), or handed to a continuation with Then().
//
// Example:
//   locus::Future<SayReply> pending = stub.AsyncSay(request);
//   ...                                  // do other work; the call proceeds
//   absl::StatusOr<SayReply> reply = pending.Get();   // blocks until done
//
// Example (continuations):
//   stub.AsyncSay(request).Then([](absl::StatusOr<SayReply> reply) {
//     if (reply.ok()) Show(reply->text());
//   });
//   locus::Future<size_t> length = stub.AsyncSay(request).Then(
//       [](absl::StatusOr<SayReply> reply) -> absl::StatusOr<size_t> {
//         if (!reply.ok()) return reply.status();
//         return reply->text().size();
//       });
//
// A future completes exactly once: with the reply, or with the call's error
// (deadline, cancellation, transport failure); the call's own deadline bounds
// the wait. Its result is taken once, by Get() or by Then(), whichever comes
// first; copies of a future share the call, so that holds over all copies.
// A future with no call (default-constructed, moved from) or whose result was
// taken is not valid(): Get() returns FAILED_PRECONDITION at once, and Then()
// runs its continuation at once with that error. Nothing dereferences null.
//
// Threading: Then()'s continuation runs exactly once, on the thread that
// completes the call (a transport I/O thread, a synchronous caller reading
// the connection, the timer thread at a deadline; for an in-process server,
// the caller's thread or the server's handler pool), or on the calling
// thread before Then() returns if the future is already complete. Like an
// asynchronous call's callback it must not block (locus/channel.h).
// Thread-safety: Get, Then and WaitUntil from one thread at a time; valid()
// and ready() from any thread.
#ifndef LOCUS_FUTURE_H_
#define LOCUS_FUTURE_H_

#include <memory>
#include <type_traits>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace locus {
namespace internal {

// Completion state shared between a call and whoever takes its result.
class Completion {
 public:
  // Called once by the runtime when the call ends; runs the continuation, if
  // one is set, on this thread, outside the lock.
  void Complete(absl::Status status) {
    absl::AnyInvocable<void() &&> continuation;
    {
      absl::MutexLock lock(&mu_);
      status_ = std::move(status);
      done_ = true;
      continuation = std::move(continuation_);
    }
    if (continuation) std::move(continuation)();
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
  // Claims the result for one taker; false if it was claimed before.
  bool Claim() {
    absl::MutexLock lock(&mu_);
    if (claimed_) return false;
    claimed_ = true;
    return true;
  }
  bool claimed() const {
    absl::MutexLock lock(&mu_);
    return claimed_;
  }
  // Runs `continuation` once completed: here, now, if it is; otherwise on
  // the thread that calls Complete. One continuation per completion (the
  // taker that claimed the result sets it).
  void OnComplete(absl::AnyInvocable<void() &&> continuation) {
    {
      absl::MutexLock lock(&mu_);
      if (!done_) {
        continuation_ = std::move(continuation);
        return;
      }
    }
    std::move(continuation)();
  }

 private:
  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool claimed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  absl::AnyInvocable<void() &&> continuation_ ABSL_GUARDED_BY(mu_);
};

template <typename T>
struct FutureState : Completion {
  // The reply; written by the runtime before Complete(), read by the one
  // taker after it.
  T value;

  // The outcome, for the taker that claimed it, once done.
  absl::StatusOr<T> Take() {
    absl::Status outcome = status();
    if (!outcome.ok()) return outcome;
    return std::move(value);
  }
};

template <typename T>
struct IsStatusOr : std::false_type {};
template <typename T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};

inline absl::Status NoCallError() {
  return absl::FailedPreconditionError(
      "locus::Future has no call (default-constructed or moved from)");
}
inline absl::Status AlreadyTakenError() {
  return absl::FailedPreconditionError(
      "locus::Future's result was already taken by Get() or Then()");
}

}  // namespace internal

template <typename T>
class Future {
 public:
  Future() = default;
  explicit Future(std::shared_ptr<internal::FutureState<T>> state) : state_(std::move(state)) {}

  // Whether the result can still be taken: the future has a call and
  // neither Get() nor Then() took its result.
  bool valid() const { return state_ != nullptr && !state_->claimed(); }
  // Whether the call has completed (false for a future without a call).
  bool ready() const { return state_ != nullptr && state_->done(); }
  // Waits until ready or `deadline`; returns ready(). Returns false at once
  // for a future without a call.
  bool WaitUntil(absl::Time deadline) { return state_ != nullptr && state_->WaitUntil(deadline); }

  // Blocks until the call completes; returns its reply or error. Takes the
  // result: later Get() or Then() calls get FAILED_PRECONDITION, as does a
  // future that is not valid().
  absl::StatusOr<T> Get() {
    if (state_ == nullptr) return internal::NoCallError();
    if (!state_->Claim()) return internal::AlreadyTakenError();
    state_->WaitUntil(absl::InfiniteFuture());
    return state_->Take();
  }

  // Takes the result and hands it to `fn`, called as
  // `std::move(fn)(absl::StatusOr<T>)` exactly once (see the threading notes
  // at the top). `fn` returns void, or absl::StatusOr<U>: then Then()
  // returns a Future<U> that completes with what `fn` returned (U must be
  // default-constructible).
  template <typename F>
  auto Then(F fn) {
    using R = std::invoke_result_t<F&&, absl::StatusOr<T>>;
    if constexpr (std::is_void_v<R>) {
      Attach(std::move(fn));
    } else {
      static_assert(internal::IsStatusOr<R>::value,
                    "a continuation returns void or absl::StatusOr<U>");
      using U = typename R::value_type;
      static_assert(std::is_default_constructible_v<U>,
                    "Future<U> needs a default-constructible U");
      auto next = std::make_shared<internal::FutureState<U>>();
      Attach([next, fn = std::move(fn)](absl::StatusOr<T> result) mutable {
        R mapped = std::move(fn)(std::move(result));
        if (!mapped.ok()) {
          next->Complete(mapped.status());
          return;
        }
        next->value = *std::move(mapped);
        next->Complete(absl::OkStatus());
      });
      return Future<U>(std::move(next));
    }
  }

 private:
  // Claims the result for `fn` (void(absl::StatusOr<T>)) and runs it with
  // the result once there is one, or at once with the error of a future
  // that is not valid().
  template <typename G>
  void Attach(G fn) {
    if (state_ == nullptr) {
      std::move(fn)(absl::StatusOr<T>(internal::NoCallError()));
      return;
    }
    if (!state_->Claim()) {
      std::move(fn)(absl::StatusOr<T>(internal::AlreadyTakenError()));
      return;
    }
    // The continuation lives in the state and runs either inside Complete(),
    // whose caller holds the state, or below while state_ holds it: a raw
    // pointer, so that the state does not own itself.
    internal::FutureState<T>* state = state_.get();
    state_->OnComplete([state, fn = std::move(fn)]() mutable { std::move(fn)(state->Take()); });
  }

  std::shared_ptr<internal::FutureState<T>> state_;
};

// A future that is already complete with `result`: for tests (a mock stub's
// AsyncFoo, see codegen/README.md) and for code that answers some requests
// without a call.
template <typename T>
Future<T> MakeReadyFuture(absl::StatusOr<T> result) {
  auto state = std::make_shared<internal::FutureState<T>>();
  if (!result.ok()) {
    state->Complete(result.status());
  } else {
    state->value = *std::move(result);
    state->Complete(absl::OkStatus());
  }
  return Future<T>(std::move(state));
}

}  // namespace locus

#endif  // LOCUS_FUTURE_H_
