// BalancedChannel (balanced_channel.h) and locus::DescribeBackends.
#include "internal/balanced_channel.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/timer_queue.h"
#include "google/protobuf/message_lite.h"
#include "internal/call_not_seen.h"
#include "internal/channel_internal.h"
#include "internal/interception.h"
#include "internal/stream_call.h"
#include "internal/thread_pool.h"

namespace locus {
namespace internal {
namespace {

using State = BackendInfo::State;

// Pick-first: how long every earlier backend must have been connecting
// before a call also connects the next idle one (gRPC's happy eyeballs
// connection attempt delay is of this order).
constexpr absl::Duration kConnectionAttemptDelay = absl::Seconds(1);

// Connection attempts and DNS resolutions: each blocks, bounded by
// connect_timeout (or getaddrinfo), and waits for no other task. Leaked:
// tasks may still run while static destructors do.
ThreadPool& ConnectPool() {
  static ThreadPool* pool = new ThreadPool(0, ThreadPool::kUnbounded, absl::Seconds(10));
  return *pool;
}

// Later attempts of asynchronous calls and their completions: none blocks
// waiting for a backend (a call with nothing ready is a waiter, not a
// thread), so the pool's bound never starves what the calls wait for.
ThreadPool& CallPool() {
  static ThreadPool* pool = new ThreadPool(0, 64, absl::Seconds(10));
  return *pool;
}

bool Cancelled(const CallOptions& options) {
  return options.cancellation.has_value() && options.cancellation->cancelled();
}

absl::Status CancelledWaiting() { return absl::CancelledError("call cancelled"); }

// A call cancelled while an attempt failed before any server saw it (it
// would have moved to another backend) ends CANCELLED, as its caller asked.
absl::Status CancelledInstead(absl::Status status, const CallOptions& options) {
  if (absl::IsUnavailable(status) && IsNotSeen(status) && Cancelled(options)) return CancelledWaiting();
  return status;
}

// A stream on one backend: holds the backend's channel while it is open.
class PinnedStream final : public ClientCallStream {
 public:
  PinnedStream(std::shared_ptr<const void> backend, std::unique_ptr<ClientCallStream> stream)
      : backend_(std::move(backend)), stream_(std::move(stream)) {}
  bool Write(const google::protobuf::MessageLite& message) override { return stream_->Write(message); }
  bool WritesDone() override { return stream_->WritesDone(); }
  bool Read(google::protobuf::MessageLite* message) override { return stream_->Read(message); }
  absl::Status Finish() override { return stream_->Finish(); }
  void Cancel() override { stream_->Cancel(); }

 private:
  std::shared_ptr<const void> backend_;
  std::unique_ptr<ClientCallStream> stream_;  // destroyed first: before the channel it runs on
};

// The status of a call whose attempts ran out of backends: why nothing is
// left (`exhausted`, from Pick) and how the last attempt failed. It keeps
// the last failure's code and, only if that one had it, the not-seen mark.
absl::Status Exhausted(const absl::Status& exhausted, const absl::Status& last) {
  if (absl::IsDeadlineExceeded(exhausted) || absl::IsCancelled(exhausted)) return exhausted;
  absl::Status status(last.code(), absl::StrCat(exhausted.message(), "; the last attempt: ", last.message()));
  return IsNotSeen(last) ? MarkNotSeen(std::move(status)) : status;
}

// What a failed attempt left in the caller's outputs: cleared for the next.
struct Outputs {
  explicit Outputs(const CallOptions& options)
      : trailers(options.trailing_metadata != nullptr ? options.trailing_metadata->size() : 0),
        initial(options.initial_metadata != nullptr ? options.initial_metadata->size() : 0) {}
  void Reset(google::protobuf::MessageLite* response, const CallOptions& options) const {
    response->Clear();
    if (options.trailing_metadata != nullptr) options.trailing_metadata->resize(trailers);
    if (options.initial_metadata != nullptr) options.initial_metadata->resize(initial);
  }
  size_t trailers;  // entries of *options.trailing_metadata before the call
  size_t initial;   // and of *options.initial_metadata
};

// The first resolution of `elements` (ResolveEach), bounded by `deadline`
// (Connect's connect_timeout): getaddrinfo cannot be interrupted, so it runs
// on the connect pool and one that takes longer is left to finish there,
// its result dropped.
absl::StatusOr<std::vector<absl::StatusOr<std::vector<std::string>>>> ResolveWithin(
    const std::vector<TargetElement>& elements, absl::Time deadline, absl::string_view target) {
  if (!HasDnsElement(elements)) return ResolveEach(elements);
  struct Result {
    absl::Mutex mu;
    bool done ABSL_GUARDED_BY(mu) = false;
    std::vector<absl::StatusOr<std::vector<std::string>>> each ABSL_GUARDED_BY(mu);
  };
  auto result = std::make_shared<Result>();
  ConnectPool().Post([result, elements] {
    std::vector<absl::StatusOr<std::vector<std::string>>> each = ResolveEach(elements);
    absl::MutexLock lock(&result->mu);
    result->each = std::move(each);
    result->done = true;
  });
  absl::MutexLock lock(&result->mu);
  if (!result->mu.AwaitWithDeadline(absl::Condition(&result->done), deadline)) {
    return absl::UnavailableError(absl::StrCat("resolving ", target, " took longer than connect_timeout"));
  }
  return result->each;
}

// Each element's addresses that resolved (none for one that did not).
std::vector<std::vector<std::string>> Resolved(const std::vector<absl::StatusOr<std::vector<std::string>>>& each) {
  std::vector<std::vector<std::string>> resolved;
  resolved.reserve(each.size());
  for (const absl::StatusOr<std::vector<std::string>>& addresses : each) {
    resolved.push_back(addresses.ok() ? *addresses : std::vector<std::string>());
  }
  return resolved;
}

}  // namespace

// An asynchronous unary call across its attempts. Shared by the attempt in
// flight (its completion callback), the waiters list while it waits, and
// whoever starts it; one of them at a time works on it (a hand-off).
struct BalancedChannel::AsyncCall {
  explicit AsyncCall(const CallOptions& options) : options(options), outputs(options) {}
  const RpcMethod* method = nullptr;
  // The request: a copy when later attempts may run after StartUnary
  // returned, else the caller's (valid for the first attempt only).
  std::unique_ptr<google::protobuf::MessageLite> copy;
  const google::protobuf::MessageLite* request = nullptr;
  google::protobuf::MessageLite* response = nullptr;
  CallOptions options;
  Outputs outputs;
  absl::AnyInvocable<void(absl::Status) &&> done;
  Tried tried;
  int attempts = 0;
  absl::Status last_failure;
  bool resolved = false;  // this pick asked for a resolution already
  // While waiting: wakes it at its deadline or recheck time (TimerQueue id,
  // 0: none; `waits` tells a timer of an earlier wait from this one's), and
  // on its cancellation (registered at its first wait). Changed under the
  // channel's mu_ only.
  TimerQueue::Id timer = 0;
  uint64_t waits = 0;
  CancellationRegistration cancel_watch;
};

BalancedChannel::BalancedChannel(std::string target, std::vector<TargetElement> elements,
                                 std::vector<std::vector<std::string>> resolved,
                                 const std::vector<std::string>& addresses, ChannelOptions options,
                                 TransportRegistry* registry, TransportPolicy policy)
    : target_(std::move(target)),
      elements_(std::move(elements)),
      resolves_(HasDnsElement(elements_)),
      options_(std::move(options)),
      registry_(registry),
      policy_(std::move(policy)),
      backoff_policy_(options_.balancing.backoff) {
  absl::MutexLock lock(&mu_);
  element_addresses_ = std::move(resolved);
  for (const std::string& address : addresses) {
    slots_.emplace_back(std::make_shared<const Backend>(
                            Backend{address, MakeAddressChannel(address, options_, registry_, policy_)}),
                        backoff_policy_);
  }
  last_resolution_ = absl::Now();
  if (resolves_) next_resolution_ = last_resolution_ + options_.balancing.resolve_interval;
}

BalancedChannel::~BalancedChannel() {
  std::vector<Slot> slots;
  std::vector<AsyncCallRef> waiters;
  {
    absl::MutexLock lock(&mu_);
    slots.swap(slots_);
    waiters.swap(waiters_);
  }
  // Nothing will wake the waiters now.
  for (AsyncCallRef& call : waiters) {
    if (call->timer != 0) TimerQueue::Get().Cancel(call->timer);
    CallPool().Post([call = std::move(call)]() mutable {
      absl::Status status = Abandoned(*call);
      Finish(std::move(call), std::move(status));
    });
  }
  // Backends destroyed here, outside mu_ (their channels close their
  // connections), unless a call or stream on one still holds it.
}

absl::Status BalancedChannel::Start(absl::Time deadline) {
  if (options_.balancing.policy == LoadBalancingPolicy::kPickFirst) {
    return PickConnected(deadline, Tried()).status();
  }
  absl::MutexLock lock(&mu_);
  for (Slot& slot : slots_) {
    if (slot.state == State::kIdle) StartConnectingLocked(slot);
  }
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !AnyConnectingLocked(); };
  mu_.AwaitWithDeadline(absl::Condition(&settled), deadline);
  for (const Slot& slot : slots_) {
    if (slot.state == State::kReady) return absl::OkStatus();
  }
  return NoBackendLocked(Tried());
}

// ---------------------------------------------------------------------------
// Calls

bool BalancedChannel::ShouldRetry(const absl::Status& status, int attempts,
                                  const CallOptions& options) const {
  if (!absl::IsUnavailable(status) || attempts >= options_.balancing.max_attempts) return false;
  if (!IsNotSeen(status) && !options_.balancing.retry_sent_calls) return false;
  if (Cancelled(options)) return false;
  return options.deadline == absl::InfiniteFuture() || absl::Now() < options.deadline;
}

void BalancedChannel::NoteFailure(const Backend& backend, const absl::Status& status) {
  // Unmarked: a server may have run the call; its channel reconnects on the
  // next call.
  if (!IsNotSeen(status)) return;
  const bool reconnecting = absl::IsDeadlineExceeded(status);
  if (!reconnecting && !absl::IsUnavailable(status) && !absl::IsFailedPrecondition(status) &&
      !absl::IsInvalidArgument(status)) {
    return;
  }
  absl::MutexLock lock(&mu_);
  Slot* slot = FindLocked(backend);
  if (slot == nullptr || slot->state != State::kReady) return;
  if (reconnecting) {
    // The call's deadline ran out while the channel reconnected: the
    // reconnection goes on in the background, bounded by connect_timeout.
    StartConnectingLocked(*slot);
  } else {
    FailedLocked(*slot, status, absl::Now());
  }
}

absl::Status BalancedChannel::CallUnary(const RpcMethod& method,
                                        const google::protobuf::MessageLite& request,
                                        google::protobuf::MessageLite* response,
                                        const CallOptions& options) {
  Tried tried;
  absl::Status failure;
  const Outputs outputs(options);
  for (int attempts = 0;; ++attempts) {
    absl::StatusOr<BackendRef> backend = Pick(options.deadline, tried, options.cancellation, options.wait_for_ready);
    if (!backend.ok()) return attempts == 0 ? backend.status() : Exhausted(backend.status(), failure);
    failure = (*backend)->channel->CallUnary(method, request, response, options);
    if (failure.ok()) return failure;
    NoteFailure(**backend, failure);
    if (!ShouldRetry(failure, attempts + 1, options)) return CancelledInstead(std::move(failure), options);
    tried.push_back(*std::move(backend));
    // What the failed attempt left (a server's UNAVAILABLE may carry metadata).
    outputs.Reset(response, options);
  }
}

void BalancedChannel::StartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                                 google::protobuf::MessageLite* response, const CallOptions& options,
                                 absl::AnyInvocable<void(absl::Status) &&> done) {
  auto call = std::make_shared<AsyncCall>(options);
  call->method = &method;
  call->request = &request;
  // A later attempt runs after StartUnary returned: it needs a copy (so
  // does a first attempt that waits: WaitLocked).
  if (options_.balancing.max_attempts > 1) CopyRequest(*call);
  call->response = response;
  call->done = std::move(done);
  StartAttempt(std::move(call));
}

void BalancedChannel::StartAttempt(AsyncCallRef call) {
  if (Cancelled(call->options)) {
    Finish(std::move(call), CancelledWaiting());
    return;
  }
  BackendRef chosen;
  absl::Status failure;
  Tried forgotten;  // released after mu_
  {
    absl::MutexLock lock(&mu_);
    if (absl::Now() >= call->options.deadline) {
      failure = absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded waiting for a backend of ", target_, " to connect"));
    } else {
      const bool wait_for_ready = call->options.wait_for_ready;
      Choice choice = ChooseLocked(call->tried, &call->resolved, wait_for_ready);
      if (choice.forget_tried) {
        forgotten.swap(call->tried);
        choice = ChooseLocked(call->tried, &call->resolved, wait_for_ready);
      }
      if (choice.backend == nullptr && choice.failure.ok()) {
        if (WaitLocked(call, choice.recheck)) return;
        failure = CancelledWaiting();
      } else {
        chosen = std::move(choice.backend);
        failure = std::move(choice.failure);
      }
    }
  }
  if (chosen == nullptr) {
    Finish(call, call->attempts == 0 ? failure : Exhausted(failure, call->last_failure));
    return;
  }
  ++call->attempts;
  call->resolved = false;
  // `call` stays alive through this frame even if the attempt completes
  // inline (its callback drops the other reference).
  AsyncCall& attempt = *call;
  chosen->channel->StartUnary(
      *attempt.method, *attempt.request, attempt.response, attempt.options,
      [weak = weak_from_this(), call, chosen](absl::Status status) mutable {
        OnAttemptDone(std::move(weak), std::move(call), std::move(chosen), std::move(status));
      });
}

void BalancedChannel::OnAttemptDone(std::weak_ptr<BalancedChannel> weak, AsyncCallRef call, BackendRef backend,
                                    absl::Status status) {
  std::shared_ptr<BalancedChannel> self = weak.lock();
  if (self != nullptr && !status.ok()) self->NoteFailure(*backend, status);
  if (self == nullptr || !self->ShouldRetry(status, call->attempts, call->options)) {
    status = CancelledInstead(std::move(status), call->options);
    Finish(std::move(call), std::move(status));
    return;
  }
  call->tried.push_back(std::move(backend));
  call->last_failure = std::move(status);
  call->outputs.Reset(call->response, call->options);
  // Not here: this may be a transport's reader thread.
  CallPool().Post([weak = std::move(weak), call = std::move(call)]() mutable {
    if (std::shared_ptr<BalancedChannel> channel = weak.lock()) {
      channel->StartAttempt(std::move(call));
    } else {
      absl::Status last = call->last_failure;
      Finish(std::move(call), std::move(last));
    }
  });
}

void BalancedChannel::CopyRequest(AsyncCall& call) {
  if (call.copy != nullptr) return;
  call.copy.reset(call.request->New());
  call.copy->CheckTypeAndMergeFrom(*call.request);
  call.request = call.copy.get();
}

absl::Status BalancedChannel::Abandoned(const AsyncCall& call) {
  return call.last_failure.ok() ? absl::CancelledError("channel destroyed") : call.last_failure;
}

void BalancedChannel::Finish(AsyncCallRef call, absl::Status status) {
  call->cancel_watch.Reset();
  std::move(call->done)(std::move(status));
}

bool BalancedChannel::WaitLocked(const AsyncCallRef& call, absl::Time recheck) {
  if (call->options.cancellation.has_value()) {
    // Checked under mu_: a Cancel() after this finds the call a waiter.
    if (call->options.cancellation->cancelled()) return false;
    if (!call->cancel_watch.active()) {
      call->cancel_watch = CancellationRegistration::Watch(
          call->options.cancellation->state(),
          [weak = weak_from_this(), weak_call = std::weak_ptr<AsyncCall>(call)]() {
            // Never on the thread that cancels.
            CallPool().Post([weak, weak_call] {
              std::shared_ptr<BalancedChannel> self = weak.lock();
              if (self == nullptr) return;  // the destructor ends its waiters
              AsyncCallRef taken;
              {
                absl::MutexLock lock(&self->mu_);
                AsyncCallRef waiting = weak_call.lock();
                if (waiting == nullptr || !self->TakeWaiterLocked(waiting.get(), &taken)) return;
              }
              if (taken->timer != 0) TimerQueue::Get().Cancel(taken->timer);
              Finish(std::move(taken), CancelledWaiting());
            });
          });
      if (!call->cancel_watch.active()) return false;  // cancelled meanwhile
    }
  }
  // The caller's request is not valid after StartUnary returns.
  CopyRequest(*call);
  const uint64_t wait = ++call->waits;
  const absl::Time wake = std::min(recheck, call->options.deadline);
  call->timer = 0;
  if (wake != absl::InfiniteFuture()) {
    call->timer = TimerQueue::Get().Schedule(
        wake, [weak = weak_from_this(), weak_call = std::weak_ptr<AsyncCall>(call), wait] {
          // Its deadline (StartAttempt fails it) or its time to look again;
          // on the call pool, not the timer thread.
          CallPool().Post([weak, weak_call, wait] {
            std::shared_ptr<BalancedChannel> self = weak.lock();
            if (self == nullptr) return;  // the destructor ends its waiters
            AsyncCallRef taken;
            {
              absl::MutexLock lock(&self->mu_);
              AsyncCallRef waiting = weak_call.lock();
              if (waiting == nullptr || waiting->waits != wait ||
                  !self->TakeWaiterLocked(waiting.get(), &taken)) {
                return;
              }
            }
            self->StartAttempt(std::move(taken));
          });
        });
  }
  waiters_.push_back(call);
  return true;
}

bool BalancedChannel::TakeWaiterLocked(const AsyncCall* call, AsyncCallRef* taken) {
  for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
    if (it->get() != call) continue;
    *taken = std::move(*it);
    waiters_.erase(it);
    return true;
  }
  return false;
}

void BalancedChannel::ChangedLocked() {
  ++version_;
  if (waiters_.empty()) return;
  std::vector<AsyncCallRef> woken;
  woken.swap(waiters_);
  CallPool().Post([weak = weak_from_this(), woken = std::move(woken)]() mutable {
    std::shared_ptr<BalancedChannel> self = weak.lock();
    for (AsyncCallRef& call : woken) {
      if (call->timer != 0) TimerQueue::Get().Cancel(call->timer);
      if (self != nullptr) {
        self->StartAttempt(std::move(call));
      } else {
        absl::Status status = Abandoned(*call);
        Finish(std::move(call), std::move(status));
      }
    }
  });
}

std::unique_ptr<ClientCallStream> BalancedChannel::OpenStream(const RpcMethod& method,
                                                              const google::protobuf::MessageLite* request,
                                                              google::protobuf::MessageLite* response,
                                                              const CallOptions& options) {
  absl::StatusOr<BackendRef> backend =
      PickConnected(options.deadline, Tried(), options.cancellation, options.wait_for_ready);
  if (!backend.ok()) return MakeFailedClientStream(backend.status());
  std::unique_ptr<ClientCallStream> stream = (*backend)->channel->OpenStream(method, request, response, options);
  return std::make_unique<PinnedStream>(*std::move(backend), std::move(stream));
}

absl::StatusOr<std::shared_ptr<Channel>> BalancedChannel::PickBackend(absl::Time deadline) {
  absl::StatusOr<BackendRef> backend = PickConnected(deadline, Tried());
  if (!backend.ok()) return backend.status();
  return (*backend)->channel;
}

absl::StatusOr<BalancedChannel::BackendRef> BalancedChannel::PickConnected(
    absl::Time deadline, const Tried& excluded, const std::optional<Cancellation>& cancellation,
    bool wait_for_ready) {
  Tried tried = excluded;
  for (;;) {
    absl::StatusOr<BackendRef> backend = Pick(deadline, tried, cancellation, wait_for_ready);
    if (!backend.ok()) return backend;
    // Ready as last seen; its connection may have broken since.
    absl::Status connected = ConnectAddressChannel(*(*backend)->channel, deadline);
    if (connected.ok()) return backend;
    NoteFailure(**backend, connected);
    if (!absl::IsUnavailable(connected)) return connected;
    tried.push_back(*std::move(backend));
  }
}

// ---------------------------------------------------------------------------
// Picking

absl::StatusOr<BalancedChannel::BackendRef> BalancedChannel::Pick(absl::Time deadline, const Tried& tried,
                                                                  const std::optional<Cancellation>& cancellation,
                                                                  bool wait_for_ready) {
  // A cancellation wakes the wait below.
  CancellationRegistration cancel_watch;
  if (cancellation.has_value()) {
    cancel_watch = CancellationRegistration::Watch(cancellation->state(), [weak = weak_from_this()] {
      if (std::shared_ptr<BalancedChannel> self = weak.lock()) {
        absl::MutexLock lock(&self->mu_);
        ++self->version_;
      }
    });
  }
  bool resolved = false;
  // A copy a wait_for_ready call may clear under mu_: the caller's `tried`
  // still holds the backends, so none is released there.
  Tried skipped = tried;
  absl::MutexLock lock(&mu_);
  for (;;) {
    if (cancellation.has_value() && cancellation->cancelled()) return CancelledWaiting();
    Choice choice = ChooseLocked(skipped, &resolved, wait_for_ready);
    if (choice.forget_tried) {
      skipped.clear();
      continue;
    }
    if (choice.backend != nullptr) return std::move(choice.backend);
    if (!choice.failure.ok()) return choice.failure;
    const uint64_t seen = version_;
    auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return version_ != seen; };
    if (!mu_.AwaitWithDeadline(absl::Condition(&changed), std::min(deadline, choice.recheck)) &&
        absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded waiting for a backend of ", target_, " to connect"));
    }
  }
}

BalancedChannel::Choice BalancedChannel::ChooseLocked(const Tried& tried, bool* resolved, bool wait_for_ready) {
  const absl::Time now = absl::Now();
  RefreshLocked(now);
  Choice choice;
  if (BackendRef ready = ChooseReadyLocked(tried)) {
    choice.backend = std::move(ready);
    return choice;
  }
  // Nothing is up. The first idle backend in the target's order is
  // connected unless an earlier one has been connecting for less than
  // kConnectionAttemptDelay (round-robin connected every idle one above).
  auto skipped = [&tried](const Slot& slot) {
    return std::any_of(tried.begin(), tried.end(), [&slot](const BackendRef& failed) { return failed == slot.backend; });
  };
  bool connecting = false;
  for (Slot& slot : slots_) {
    if (skipped(slot)) continue;
    if (slot.state == State::kConnecting) {
      connecting = true;
      const absl::Time next_attempt = slot.connecting_since + kConnectionAttemptDelay;
      if (now < next_attempt) choice.recheck = std::min(choice.recheck, next_attempt);
      continue;
    }
    if (slot.state != State::kIdle) continue;
    if (choice.recheck != absl::InfiniteFuture()) break;  // an earlier one may still connect
    StartConnectingLocked(slot);
    connecting = true;
    // Pick-first: the next idle one, if this one is slow.
    choice.recheck = std::min(choice.recheck, slot.connecting_since + kConnectionAttemptDelay);
    break;
  }
  if (connecting || resolving_) return choice;
  // Nothing left to try: the names may point elsewhere by now.
  if (resolves_ && !*resolved && MaybeResolveLocked(now, /*periodic=*/false)) {
    *resolved = true;
    return choice;
  }
  if (wait_for_ready) {
    // Backends this call failed on may be usable again (or come back
    // first): all are candidates again.
    if (!tried.empty()) {
      choice.forget_tried = true;
      return choice;
    }
    // Every backend is failing: wait for the first backoff to end.
    if (next_retry_ != absl::InfiniteFuture()) {
      choice.recheck = next_retry_;
      return choice;
    }
  }
  choice.failure = NoBackendLocked(tried);
  return choice;
}

void BalancedChannel::RefreshLocked(absl::Time now) {
  if (now >= next_retry_) {
    next_retry_ = absl::InfiniteFuture();
    for (Slot& slot : slots_) {
      if (slot.state != State::kFailing) continue;
      if (slot.retry_at <= now) {
        slot.state = State::kIdle;
        ChangedLocked();
      } else {
        next_retry_ = std::min(next_retry_, slot.retry_at);
      }
    }
  }
  if (options_.balancing.policy == LoadBalancingPolicy::kRoundRobin) {
    for (Slot& slot : slots_) {
      if (slot.state == State::kIdle) StartConnectingLocked(slot);
    }
  }
  if (now >= next_resolution_) MaybeResolveLocked(now, /*periodic=*/true);
}

BalancedChannel::BackendRef BalancedChannel::ChooseReadyLocked(const Tried& tried) {
  auto usable = [this, &tried](Slot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (slot.state != State::kReady ||
        std::any_of(tried.begin(), tried.end(), [&slot](const BackendRef& failed) { return failed == slot.backend; })) {
      return false;
    }
    // Its connection broke (or its in-process server stopped): a call would
    // reconnect it inline, within its own deadline. Reconnected in the
    // background instead, bounded by connect_timeout.
    if (AddressChannelBroken(*slot.backend->channel)) {
      StartConnectingLocked(slot);
      return false;
    }
    return true;
  };
  const size_t count = slots_.size();
  if (count == 0) return nullptr;
  if (options_.balancing.policy == LoadBalancingPolicy::kRoundRobin) {
    for (size_t i = 0; i < count; ++i) {
      const size_t index = (next_ + i) % count;
      if (usable(slots_[index])) {
        next_ = index + 1;
        return slots_[index].backend;
      }
    }
    return nullptr;
  }
  if (selected_ >= 0 && static_cast<size_t>(selected_) < count && usable(slots_[selected_])) {
    return slots_[selected_].backend;
  }
  for (size_t index = 0; index < count; ++index) {
    if (usable(slots_[index])) {
      selected_ = static_cast<int>(index);
      return slots_[index].backend;
    }
  }
  return nullptr;
}

BalancedChannel::Slot* BalancedChannel::FindLocked(const Backend& backend) {
  for (Slot& slot : slots_) {
    if (slot.backend.get() == &backend) return &slot;
  }
  return nullptr;
}

bool BalancedChannel::AnyConnectingLocked() const {
  return std::any_of(slots_.begin(), slots_.end(),
                     [](const Slot& slot) { return slot.state == State::kConnecting; });
}

void BalancedChannel::StartConnectingLocked(Slot& slot) {
  slot.state = State::kConnecting;
  slot.connecting_since = absl::Now();
  ChangedLocked();
  ConnectPool().Post([weak = weak_from_this(), backend = slot.backend] {
    // Bounded by connect_timeout alone (running out of it is UNAVAILABLE):
    // no call's deadline cuts it short.
    absl::Status connected = ConnectAddressChannel(*backend->channel, absl::InfiniteFuture());
    if (std::shared_ptr<BalancedChannel> self = weak.lock()) {
      absl::MutexLock lock(&self->mu_);
      self->ConnectedLocked(*backend, connected);
    }
    // `backend` is released after mu_, with the task.
  });
}

void BalancedChannel::ConnectedLocked(const Backend& backend, const absl::Status& status) {
  Slot* slot = FindLocked(backend);
  if (slot == nullptr) return;  // dropped by a resolution meanwhile
  if (status.ok()) {
    slot->state = State::kReady;
    slot->backoff.Reset();
    slot->last_error = absl::OkStatus();
    ChangedLocked();
    return;
  }
  FailedLocked(*slot, status, absl::Now());
}

void BalancedChannel::FailedLocked(Slot& slot, const absl::Status& status, absl::Time now) {
  slot.state = State::kFailing;
  slot.retry_at = now + slot.backoff.NextDelay();
  slot.last_error = status;
  next_retry_ = std::min(next_retry_, slot.retry_at);
  if (selected_ >= 0 && &slots_[selected_] == &slot) selected_ = -1;
  ChangedLocked();
  if (resolves_ && std::all_of(slots_.begin(), slots_.end(),
                               [](const Slot& each) { return each.state == State::kFailing; })) {
    MaybeResolveLocked(now, /*periodic=*/false);
  }
}

absl::Status BalancedChannel::NoBackendLocked(const Tried& tried) const {
  std::vector<std::string> reasons;
  for (const Slot& slot : slots_) {
    const bool failed_this_call =
        std::any_of(tried.begin(), tried.end(), [&slot](const BackendRef& failed) { return failed == slot.backend; });
    if (slot.state == State::kFailing) {
      reasons.push_back(absl::StrCat(slot.backend->address, ": ", slot.last_error.message()));
    } else if (slot.state == State::kConnecting) {
      reasons.push_back(absl::StrCat(slot.backend->address, ": still connecting"));
    } else if (failed_this_call) {
      reasons.push_back(absl::StrCat(slot.backend->address, ": failed this call"));
    }
  }
  return MarkNotSeen(absl::UnavailableError(absl::StrCat("no backend of ", target_, " is available (",
                                                         absl::StrJoin(reasons, "; "), ")")));
}

// ---------------------------------------------------------------------------
// Resolution

bool BalancedChannel::MaybeResolveLocked(absl::Time now, bool periodic) {
  if (!resolves_) return false;
  if (resolving_) return true;
  if (!periodic && now < last_resolution_ + options_.balancing.backoff.initial_backoff) return false;
  resolving_ = true;
  last_resolution_ = now;
  next_resolution_ = absl::InfiniteFuture();  // set when it ends
  ++version_;
  ConnectPool().Post([weak = weak_from_this(), elements = elements_] {
    std::vector<absl::StatusOr<std::vector<std::string>>> each = ResolveEach(elements);
    std::shared_ptr<BalancedChannel> self = weak.lock();
    if (self == nullptr) return;
    std::vector<Slot> dropped;
    {
      absl::MutexLock lock(&self->mu_);
      // A name that failed this time keeps its last addresses.
      absl::StatusOr<std::vector<std::string>> addresses = CombineAddresses(each, &self->element_addresses_);
      for (size_t i = 0; i < each.size() && i < self->element_addresses_.size(); ++i) {
        if (each[i].ok()) self->element_addresses_[i] = *each[i];
      }
      self->ApplyResolutionLocked(addresses, &dropped);
    }
    // `dropped` destroyed here, outside mu_.
  });
  return true;
}

void BalancedChannel::ApplyResolutionLocked(const absl::StatusOr<std::vector<std::string>>& addresses,
                                            std::vector<Slot>* dropped) {
  resolving_ = false;
  ++resolutions_;
  next_resolution_ = absl::Now() + options_.balancing.resolve_interval;
  ChangedLocked();
  if (!addresses.ok()) {
    if (!logged_resolution_failure_) {
      logged_resolution_failure_ = true;  // once per channel; the backends stay as they were
      LOCUS_LOG(WARNING) << "resolving " << target_ << " again failed: " << addresses.status().message();
    }
    return;
  }
  BackendRef selected = selected_ >= 0 ? slots_[selected_].backend : nullptr;
  std::vector<Slot> slots;
  slots.reserve(addresses->size());
  for (const std::string& address : *addresses) {
    auto kept = std::find_if(slots_.begin(), slots_.end(),
                             [&address](const Slot& slot) { return slot.backend->address == address; });
    if (kept != slots_.end()) {
      slots.push_back(std::move(*kept));
      kept->backend = nullptr;
      continue;
    }
    slots.emplace_back(std::make_shared<const Backend>(
                           Backend{address, MakeAddressChannel(address, options_, registry_, policy_)}),
                       backoff_policy_);
  }
  for (Slot& slot : slots_) {
    if (slot.backend != nullptr) dropped->push_back(std::move(slot));
  }
  slots_.swap(slots);
  selected_ = -1;
  for (size_t index = 0; index < slots_.size(); ++index) {
    if (slots_[index].backend == selected) selected_ = static_cast<int>(index);
  }
  next_ = slots_.empty() ? 0 : next_ % slots_.size();
  next_retry_ = absl::InfiniteFuture();
  for (const Slot& slot : slots_) {
    if (slot.state == State::kFailing) next_retry_ = std::min(next_retry_, slot.retry_at);
  }
}

// ---------------------------------------------------------------------------
// Introspection

std::vector<BackendInfo> BalancedChannel::Describe() const {
  std::vector<BackendInfo> infos;
  std::vector<BackendRef> backends;
  {
    absl::MutexLock lock(&mu_);
    for (const Slot& slot : slots_) {
      BackendInfo info;
      info.address = slot.backend->address;
      info.state = slot.state;
      info.last_error = slot.last_error;
      infos.push_back(std::move(info));
      backends.push_back(slot.backend);
    }
  }
  // Outside mu_: each backend's channel takes its own lock (held while it
  // connects: only ready backends are asked).
  for (size_t i = 0; i < infos.size(); ++i) {
    infos[i].transport = infos[i].state == State::kReady ? backends[i]->channel->transport_name() : "none";
  }
  return infos;
}

std::string BalancedChannel::transport_name() const {
  std::vector<std::string> names;
  for (const BackendInfo& info : Describe()) {
    if (info.state != State::kReady || info.transport == "none") continue;
    if (std::find(names.begin(), names.end(), info.transport) == names.end()) names.push_back(info.transport);
  }
  return names.empty() ? "none" : absl::StrJoin(names, ",");
}

absl::StatusOr<std::shared_ptr<Channel>> ConnectBalanced(absl::string_view target,
                                                         const ChannelOptions& options,
                                                         TransportRegistry* registry,
                                                         TransportPolicy policy) {
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  absl::StatusOr<std::vector<TargetElement>> elements = ParseTarget(target, *registry);
  if (!elements.ok()) return elements.status();
  absl::StatusOr<std::vector<absl::StatusOr<std::vector<std::string>>>> each =
      ResolveWithin(*elements, deadline, target);
  if (!each.ok()) return each.status();
  absl::StatusOr<std::vector<std::string>> addresses = CombineAddresses(*each, nullptr);
  if (!addresses.ok()) return addresses.status();
  ChannelOptions balanced_options = options;
  balanced_options.balancing.max_attempts = std::max(1, options.balancing.max_attempts);
  auto channel = std::make_shared<BalancedChannel>(std::string(target), *std::move(elements), Resolved(*each),
                                                   *addresses,
                                                   std::move(balanced_options), registry, std::move(policy));
  if (absl::Status started = channel->Start(deadline); !started.ok()) {
    // As for one address: connecting that runs out of time is UNAVAILABLE.
    if (absl::IsDeadlineExceeded(started)) return absl::UnavailableError(started.message());
    return started;
  }
  return channel;
}

}  // namespace internal

std::vector<BackendInfo> DescribeBackends(const Channel& channel) {
  if (const auto* balanced =
          dynamic_cast<const internal::BalancedChannel*>(&internal::UninterceptedChannel(channel))) {
    return balanced->Describe();
  }
  BackendInfo info;
  info.address = channel.target();
  info.transport = channel.transport_name();
  info.state = info.transport == "none" ? BackendInfo::State::kIdle : BackendInfo::State::kReady;
  return {info};
}

}  // namespace locus
