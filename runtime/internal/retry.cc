#include "internal/retry.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/timer_queue.h"
#include "google/protobuf/message_lite.h"
#include "internal/backoff.h"
#include "internal/call_not_seen.h"
#include "internal/thread_pool.h"

namespace locus::internal {
namespace {

// Where asynchronous calls make their attempts after a wait: an attempt
// may connect (blocking for up to a connection attempt), which neither the
// timer thread nor a thread that reads a connection may do.
ThreadPool& RetryPool() {
  static ThreadPool* pool = new ThreadPool(0, 64, absl::Seconds(10));
  return *pool;
}

absl::BitGen& Random() {
  thread_local absl::BitGen random;
  return random;
}

// What a retried call hands back: the last attempt's reply and trailers.
void ForgetAttempt(google::protobuf::MessageLite* response, Metadata* trailers, size_t trailers_before) {
  if (response != nullptr) response->Clear();
  if (trailers != nullptr && trailers->size() > trailers_before) trailers->resize(trailers_before);
}

}  // namespace

RetryState::RetryState(AttemptingChannel* channel, const RpcMethod& method, const RetryPolicy* policy,
                       const CallOptions& options)
    : channel_(channel),
      policy_(method.oneway ? nullptr : policy),
      deadline_(options.deadline),
      wait_for_ready_(options.wait_for_ready),
      cancellation_(options.cancellation),
      leaves_not_seen_(method.kind == RpcKind::kUnary && !channel->RetriesNotSeenUnaryCalls()) {}

RetryState::Decision RetryState::OnFailure(const absl::Status& status, const AttemptReport& report,
                                           bool committed, absl::Time now, absl::BitGenRef random) {
  Decision decision;
  decision.status = status;
  // One notion of "the server never saw it" (call_not_seen.h): the report
  // and the status's mark say the same, and an outcome of such an attempt
  // keeps the mark for the layer above (a balanced channel).
  const bool not_seen = absl::IsUnavailable(status) && (report.server_never_saw_it() || IsNotSeen(status));
  if (not_seen) decision.status = MarkNotSeen(status);
  const bool waits = report.no_route && wait_for_ready_ && absl::IsUnavailable(status);
  if (cancellation_.has_value() && cancellation_->cancelled()) {
    if (!absl::IsCancelled(status)) decision.status = absl::CancelledError("call cancelled");
    return decision;
  }
  if (absl::IsDeadlineExceeded(status) || committed) return decision;
  // A balanced channel's backend leaves such a call to the balancer, which
  // sends it to another backend (docs/architecture.md, "Retries").
  if (not_seen && leaves_not_seen_) return decision;
  if (now >= deadline_) {
    if (waits) {
      decision.status = absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded waiting for a connection: ", status.message()));
    }
    return decision;
  }
  if (not_seen && !report.no_route && transparent_ < kMaxTransparentRetries) {
    ++transparent_;
    channel_->transparent_.fetch_add(1, std::memory_order_relaxed);
    decision.retry = true;
    decision.not_before = now;
    return decision;
  }
  if (waits) {
    const absl::Time next = std::max(channel_->NextConnectAttempt(), now);
    if (next >= deadline_) {
      decision.status = absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded waiting for a connection: ", status.message()));
      return decision;
    }
    channel_->waits_.fetch_add(1, std::memory_order_relaxed);
    decision.retry = true;
    decision.not_before = next;
    return decision;
  }
  if (policy_ != nullptr && policy_->Retries(status.code()) && attempts_ < policy_->attempts()) {
    const absl::Time at = now + RetryDelay(*policy_, attempts_, random);
    if (at >= deadline_) return decision;
    ++attempts_;
    channel_->by_policy_.fetch_add(1, std::memory_order_relaxed);
    decision.retry = true;
    decision.not_before = at;
    return decision;
  }
  return decision;
}

bool SleepUntil(absl::Time until, const std::optional<Cancellation>& cancellation,
                std::shared_ptr<Wakeup> wake) {
  if (!cancellation.has_value() && wake == nullptr) {
    absl::SleepFor(until - absl::Now());
    return true;
  }
  if (wake == nullptr) wake = std::make_shared<Wakeup>();
  CancellationRegistration registration;
  if (cancellation.has_value()) {
    // Holds the wakeup, not this frame: the callback may run late.
    registration = CancellationRegistration::Watch(cancellation->state(), [wake] { wake->Wake(); });
    if (!registration.active()) return false;
  }
  return !wake->WaitUntil(until);
}

absl::Status CallUnaryWithRetries(AttemptingChannel& channel, const RpcMethod& method,
                                  const google::protobuf::MessageLite& request,
                                  google::protobuf::MessageLite* response, const CallOptions& options) {
  const size_t trailers_before = options.trailing_metadata != nullptr ? options.trailing_metadata->size() : 0;
  AttemptReport report;
  absl::Status status = channel.AttemptUnary(method, request, response, options, &report);
  if (ABSL_PREDICT_TRUE(status.ok())) return status;
  const RetryPolicy* policy = channel.RetryPolicyFor(method);
  if (policy == nullptr && !report.server_never_saw_it() && !IsNotSeen(status)) return status;
  RetryState state(&channel, method, policy, options);
  for (;;) {
    RetryState::Decision decision = state.OnFailure(status, report, false, absl::Now(), Random());
    if (!decision.retry) return decision.status;
    if (!SleepUntil(decision.not_before, options.cancellation)) {
      return absl::CancelledError(absl::StrCat("call to ", method.full_name, " cancelled between attempts"));
    }
    ForgetAttempt(response, options.trailing_metadata, trailers_before);
    report = AttemptReport();
    status = channel.AttemptUnary(method, request, response, options, &report);
    if (status.ok()) return status;
  }
}

namespace {

// An asynchronous call that may need attempts after StartUnary returned:
// it owns a copy of the request and the caller's `done`. Attempts end in
// OnAttemptDone (on whatever thread ended them); waits between attempts
// are a timer, then the next attempt runs on RetryPool(). Exactly one of
// the timer and a Cancel() during the wait goes on (`waiting_`).
class AsyncUnaryRetry : public std::enable_shared_from_this<AsyncUnaryRetry> {
 public:
  AsyncUnaryRetry(AttemptingChannel& channel, const RpcMethod& method,
                  const google::protobuf::MessageLite& request, google::protobuf::MessageLite* response,
                  const CallOptions& options, RetryState state,
                  absl::AnyInvocable<void(absl::Status) &&> done)
      : channel_(channel.weak_from_this()),
        dropped_(channel.dropped()),
        method_(method),
        request_(request.New()),
        response_(response),
        options_(options),
        trailers_before_(options.trailing_metadata != nullptr ? options.trailing_metadata->size() : 0),
        state_(std::move(state)),
        done_(std::move(done)) {
    request_->CheckTypeAndMergeFrom(request);
  }

  // An attempt: the first on the caller's thread, later ones on RetryPool().
  void Attempt() {
    std::shared_ptr<AttemptingChannel> channel = channel_.lock();
    if (channel == nullptr) {
      Finish(Dropped());
      return;
    }
    report_ = AttemptReport();
    AttemptReport refusal;
    std::shared_ptr<AsyncUnaryRetry> self = shared_from_this();
    absl::AnyInvocable<void(absl::Status) &&> ended = [self](absl::Status status) {
      self->OnAttemptDone(std::move(status));
    };
    absl::Status started =
        channel->TryStartUnary(method_, *request_, response_, options_, ended, &refusal, &report_);
    if (!started.ok()) {
      report_ = refusal;
      OnAttemptDone(std::move(started));
    }
  }

  // Waits until `when`, then attempts again.
  void RetryAt(absl::Time when) {
    std::shared_ptr<AsyncUnaryRetry> self = shared_from_this();
    absl::MutexLock lock(&mu_);
    waiting_ = true;
    {
      std::weak_ptr<AsyncUnaryRetry> weak = self;
      dropped_watch_ = CancellationRegistration::Watch(dropped_, [weak] {
        if (std::shared_ptr<AsyncUnaryRetry> call = weak.lock()) call->CancelWait(/*dropped=*/true);
      });
      if (!dropped_watch_.active()) {
        waiting_ = false;
        RetryPool().Post([self] { self->Finish(self->Dropped()); });
        return;
      }
    }
    if (options_.cancellation.has_value()) {
      std::weak_ptr<AsyncUnaryRetry> weak = self;
      cancel_ = CancellationRegistration::Watch(options_.cancellation->state(), [weak] {
        if (std::shared_ptr<AsyncUnaryRetry> call = weak.lock()) call->CancelWait(/*dropped=*/false);
      });
      if (!cancel_.active()) {
        waiting_ = false;
        RetryPool().Post([self] {
          self->Finish(absl::CancelledError(
              absl::StrCat("call to ", self->method_.full_name, " cancelled between attempts")));
        });
        return;
      }
    }
    timer_ = TimerQueue::Get().Schedule(when, [self] {
      {
        absl::MutexLock lock(&self->mu_);
        if (!self->waiting_) return;
        self->waiting_ = false;
        self->timer_ = 0;
      }
      RetryPool().Post([self] {
        ForgetAttempt(self->response_, self->options_.trailing_metadata, self->trailers_before_);
        self->Attempt();
      });
    });
  }

 private:
  void OnAttemptDone(absl::Status status) {
    if (status.ok()) {
      Finish(std::move(status));
      return;
    }
    RetryState::Decision decision;
    {
      // The rules consult the channel (its backoff, its policy).
      std::shared_ptr<AttemptingChannel> channel = channel_.lock();
      if (channel == nullptr) {
        Finish(Dropped());
        return;
      }
      decision = state_.OnFailure(status, report_, false, absl::Now(), Random());
    }
    if (!decision.retry) {
      Finish(std::move(decision.status));
      return;
    }
    RetryAt(decision.not_before);
  }

  absl::Status Dropped() const {
    return absl::CancelledError(absl::StrCat("call to ", method_.full_name, ": its channel was dropped"));
  }

  // Cancel() or the channel's destruction during a wait: the call ends
  // CANCELLED, on the pool (never on the canceller's thread).
  void CancelWait(bool dropped) {
    TimerQueue::Id timer = 0;
    {
      absl::MutexLock lock(&mu_);
      if (!waiting_) return;
      waiting_ = false;
      timer = std::exchange(timer_, 0);
    }
    if (timer != 0) TimerQueue::Get().Cancel(timer);
    std::shared_ptr<AsyncUnaryRetry> self = shared_from_this();
    RetryPool().Post([self, dropped] {
      self->Finish(dropped ? self->Dropped()
                           : absl::CancelledError(absl::StrCat("call to ", self->method_.full_name,
                                                               " cancelled between attempts")));
    });
  }

  void Finish(absl::Status status) {
    {
      absl::MutexLock lock(&mu_);
      cancel_.Reset();
      dropped_watch_.Reset();
    }
    std::move(done_)(std::move(status));
  }

  // Weakly: a call its user's channel no longer holds ends (Dropped()).
  const std::weak_ptr<AttemptingChannel> channel_;
  const std::shared_ptr<CancellationState> dropped_;  // the channel's dropped()
  const RpcMethod& method_;
  const std::unique_ptr<google::protobuf::MessageLite> request_;
  google::protobuf::MessageLite* const response_;
  const CallOptions options_;
  const size_t trailers_before_;
  // Touched by one attempt's end at a time (attempts never overlap); used
  // only while channel_ is locked (it points into the channel).
  RetryState state_;
  AttemptReport report_;
  absl::AnyInvocable<void(absl::Status) &&> done_;
  absl::Mutex mu_;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;
  TimerQueue::Id timer_ ABSL_GUARDED_BY(mu_) = 0;
  CancellationRegistration cancel_ ABSL_GUARDED_BY(mu_);
  CancellationRegistration dropped_watch_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

void StartUnaryWithRetries(AttemptingChannel& channel, const RpcMethod& method,
                           const google::protobuf::MessageLite& request,
                           google::protobuf::MessageLite* response, const CallOptions& options,
                           absl::AnyInvocable<void(absl::Status) &&> done) {
  const RetryPolicy* policy = channel.RetryPolicyFor(method);
  if (policy != nullptr && !method.has_attachments && !method.oneway) {
    // Any attempt may fail after this returns: the driver keeps a copy.
    auto call = std::make_shared<AsyncUnaryRetry>(channel, method, request, response,
                                                  options, RetryState(&channel, method, policy, options),
                                                  std::move(done));
    call->Attempt();
    return;
  }
  // Otherwise only what is known before this returns can be retried: a
  // call refused before it left (again at once, here) or one that found no
  // connection and waits for one (a copy of the request waits with it).
  std::optional<RetryState> state;
  for (;;) {
    AttemptReport refusal;
    absl::Status started = channel.TryStartUnary(method, request, response, options, done, &refusal, nullptr);
    if (ABSL_PREDICT_TRUE(started.ok())) return;
    if (!refusal.server_never_saw_it()) {
      std::move(done)(std::move(started));
      return;
    }
    if (!state.has_value()) state.emplace(&channel, method, nullptr, options);
    const absl::Time now = absl::Now();
    RetryState::Decision decision = state->OnFailure(started, refusal, false, now, Random());
    if (!decision.retry) {
      std::move(done)(std::move(decision.status));
      return;
    }
    if (decision.not_before <= now) continue;
    auto call = std::make_shared<AsyncUnaryRetry>(channel, method, request, response,
                                                  options, *std::move(state), std::move(done));
    call->RetryAt(decision.not_before);
    return;
  }
}

}  // namespace locus::internal
