// Cancellation: ends calls from any thread, as gRPC's ClientContext::TryCancel
// does, for every kind of call that names it in CallOptions.
//
// Example:
//   locus::Cancellation cancel;
//   locus::CallOptions options;
//   options.cancellation = cancel;
//   std::thread watchdog([cancel] { if (UserGaveUp()) cancel.Cancel(); });
//   absl::StatusOr<Reply> reply = stub.Slow(request, options);   // CANCELLED
//
// Cancel() ends every call started with this cancellation that has not
// finished: a synchronous call returns CANCELLED, an asynchronous call's
// callback or future completes with CANCELLED (on a runtime thread, never on
// the thread that calls Cancel), and a stream ends as by its own Cancel().
// The server is told (CANCEL): its handler sees ServerContext::IsCancelled().
// Calls started after Cancel() fail with CANCELLED without reaching the
// server. An in-process unary call runs its handler on the calling thread: the
// handler sees IsCancelled(), and the call returns CANCELLED when the handler
// returns. Cancellation cannot be undone.
//
// A Cancellation is a handle: copies share one state, which lives as long as
// a copy or a call using it does. Thread-safe. One cancellation may serve
// any number of calls, in turn or at once; a finished call leaves nothing
// registered in it.
#ifndef LOCUS_CANCELLATION_H_
#define LOCUS_CANCELLATION_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace locus {
namespace internal {

// The state behind Cancellation handles. The runtime registers a callback
// per call in progress; Cancel() runs each once, outside the lock. Callbacks
// must be quick and must not block (the runtime's only schedule work).
class CancellationState {
 public:
  using Callback = absl::AnyInvocable<void() &&>;

  // Registers `on_cancel` and returns its id (never 0), or returns 0 and
  // drops `on_cancel` if already cancelled.
  uint64_t Register(Callback on_cancel) {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return 0;
    const uint64_t id = next_id_++;
    callbacks_.emplace(id, std::move(on_cancel));
    return id;
  }
  // Drops a registration. A callback already taken by Cancel() may still be
  // running on another thread: callbacks must only hold what stays valid.
  void Unregister(uint64_t id) {
    absl::MutexLock lock(&mu_);
    callbacks_.erase(id);
  }
  void Cancel() {
    std::vector<Callback> to_run;
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) return;
      cancelled_ = true;
      to_run.reserve(callbacks_.size());
      for (auto& [id, callback] : callbacks_) to_run.push_back(std::move(callback));
      callbacks_.clear();
    }
    for (Callback& callback : to_run) std::move(callback)();
  }
  bool cancelled() const {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }
  // Registered callbacks (tests).
  size_t registered() const {
    absl::MutexLock lock(&mu_);
    return callbacks_.size();
  }

 private:
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, Callback> callbacks_ ABSL_GUARDED_BY(mu_);
};

// A call's registration, dropped when the call's state is destroyed.
class CancellationRegistration {
 public:
  CancellationRegistration() = default;
  CancellationRegistration(std::shared_ptr<CancellationState> state, uint64_t id)
      : state_(std::move(state)), id_(id) {}
  CancellationRegistration(CancellationRegistration&& other) noexcept
      : state_(std::move(other.state_)), id_(std::exchange(other.id_, 0)) {}
  CancellationRegistration& operator=(CancellationRegistration&& other) noexcept {
    if (this != &other) {
      Reset();
      state_ = std::move(other.state_);
      id_ = std::exchange(other.id_, 0);
    }
    return *this;
  }
  ~CancellationRegistration() { Reset(); }

  // Registers `on_cancel` with `state`. Inactive (and `on_cancel` dropped)
  // if the state is cancelled already.
  static CancellationRegistration Watch(const std::shared_ptr<CancellationState>& state,
                                        CancellationState::Callback on_cancel) {
    const uint64_t id = state->Register(std::move(on_cancel));
    return id == 0 ? CancellationRegistration() : CancellationRegistration(state, id);
  }
  bool active() const { return id_ != 0; }

  void Reset() {
    if (state_ != nullptr && id_ != 0) state_->Unregister(id_);
    state_.reset();
    id_ = 0;
  }

 private:
  std::shared_ptr<CancellationState> state_;
  uint64_t id_ = 0;
};

}  // namespace internal

class Cancellation {
 public:
  // A new cancellation, not cancelled.
  Cancellation() : state_(std::make_shared<internal::CancellationState>()) {}

  // Ends the calls using this cancellation (see the file comment). Idempotent.
  void Cancel() const { state_->Cancel(); }
  bool cancelled() const { return state_->cancelled(); }

  // For the runtime.
  const std::shared_ptr<internal::CancellationState>& state() const { return state_; }

 private:
  std::shared_ptr<internal::CancellationState> state_;
};

}  // namespace locus

#endif  // LOCUS_CANCELLATION_H_
