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
#include "internal/retry.h"
#include "internal/stream_call.h"
#include "internal/thread_pool.h"

namespace locus {
namespace internal {
namespace {

using State = BackendInfo::State;

// Connection attempts of round-robin backends, DNS resolutions and later
// attempts of asynchronous calls: each may block (connecting, getaddrinfo).
// Leaked: tasks may still run while static destructors do.
ThreadPool& BalancerPool() {
  static ThreadPool* pool = new ThreadPool(0, 64, absl::Seconds(10));
  return *pool;
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
  if (absl::IsDeadlineExceeded(exhausted)) return exhausted;
  absl::Status status(last.code(), absl::StrCat(exhausted.message(), "; the last attempt: ", last.message()));
  return IsNotSeen(last) ? MarkNotSeen(std::move(status)) : status;
}

}  // namespace

// An asynchronous unary call across its attempts. Shared by the attempt in
// flight (its completion callback) and whoever starts it.
struct BalancedChannel::AsyncCall {
  const RpcMethod* method = nullptr;
  // The request: a copy when later attempts may run after StartUnary
  // returned, else the caller's (valid for the first attempt only).
  std::unique_ptr<google::protobuf::MessageLite> copy;
  const google::protobuf::MessageLite* request = nullptr;
  google::protobuf::MessageLite* response = nullptr;
  CallOptions options;
  size_t trailers_before = 0;  // entries of *options.trailing_metadata before the call
  absl::AnyInvocable<void(absl::Status) &&> done;
  Tried tried;
  int attempts = 0;
  absl::Status last_failure;
};

BalancedChannel::BalancedChannel(std::string target, std::vector<TargetElement> elements,
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
  {
    absl::MutexLock lock(&mu_);
    slots.swap(slots_);
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
  if (options.cancellation.has_value() && options.cancellation->cancelled()) return false;
  return options.deadline == absl::InfiniteFuture() || absl::Now() < options.deadline;
}

void BalancedChannel::NoteFailure(const Backend& backend, const absl::Status& status) {
  if (!IsNotSeen(status)) return;  // its channel reconnects on the next call
  absl::MutexLock lock(&mu_);
  Slot* slot = FindLocked(backend);
  if (slot != nullptr && slot->state == State::kReady) FailedLocked(*slot, status, absl::Now());
}

absl::StatusOr<absl::Time> BalancedChannel::NextBackendChance(const absl::Status& none,
                                                              const CallOptions& options) {
  absl::Time next;
  {
    absl::MutexLock lock(&mu_);
    next = next_retry_;
  }
  if (next == absl::InfiniteFuture()) return none;
  if (next >= options.deadline) {
    return absl::DeadlineExceededError(
        absl::StrCat("deadline exceeded waiting for a backend of ", target_, ": ", none.message()));
  }
  return next;
}

absl::Status BalancedChannel::CallUnary(const RpcMethod& method,
                                        const google::protobuf::MessageLite& request,
                                        google::protobuf::MessageLite* response,
                                        const CallOptions& options) {
  Tried tried;
  absl::Status failure;
  const size_t trailers_before = options.trailing_metadata != nullptr ? options.trailing_metadata->size() : 0;
  for (int attempts = 0;; ++attempts) {
    absl::StatusOr<BackendRef> backend = Pick(options.deadline, tried);
    // wait_for_ready: every backend is failing; wait for the first whose
    // backoff ends, then try them all again.
    while (!backend.ok() && options.wait_for_ready && absl::IsUnavailable(backend.status())) {
      absl::StatusOr<absl::Time> next = NextBackendChance(backend.status(), options);
      if (!next.ok()) return next.status();
      if (!SleepUntil(*next, options.cancellation)) {
        return absl::CancelledError(absl::StrCat("call to ", method.full_name, " cancelled waiting for a backend"));
      }
      tried.clear();
      backend = Pick(options.deadline, tried);
    }
    if (!backend.ok()) return attempts == 0 ? backend.status() : Exhausted(backend.status(), failure);
    failure = (*backend)->channel->CallUnary(method, request, response, options);
    if (!ShouldRetry(failure, attempts + 1, options)) return failure;
    NoteFailure(**backend, failure);
    tried.push_back(*std::move(backend));
    // What the failed attempt left (a server's UNAVAILABLE may carry trailers).
    response->Clear();
    if (options.trailing_metadata != nullptr) options.trailing_metadata->resize(trailers_before);
  }
}

void BalancedChannel::StartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                                 google::protobuf::MessageLite* response, const CallOptions& options,
                                 absl::AnyInvocable<void(absl::Status) &&> done) {
  auto call = std::make_shared<AsyncCall>();
  call->method = &method;
  call->request = &request;
  if (options_.balancing.max_attempts > 1) {
    call->copy.reset(request.New());
    call->copy->CheckTypeAndMergeFrom(request);
    call->request = call->copy.get();
  }
  call->response = response;
  call->options = options;
  if (options.trailing_metadata != nullptr) call->trailers_before = options.trailing_metadata->size();
  call->done = std::move(done);
  StartAttempt(std::move(call));
}

void BalancedChannel::StartAttempt(std::shared_ptr<AsyncCall> call) {
  absl::StatusOr<BackendRef> backend = Pick(call->options.deadline, call->tried);
  if (!backend.ok() && call->options.wait_for_ready && absl::IsUnavailable(backend.status())) {
    absl::StatusOr<absl::Time> next = NextBackendChance(backend.status(), call->options);
    if (next.ok()) {
      call->tried.clear();
      if (call->copy == nullptr) {
        // The caller's request is only good while StartUnary runs.
        call->copy.reset(call->request->New());
        call->copy->CheckTypeAndMergeFrom(*call->request);
        call->request = call->copy.get();
      }
      StartAttemptAt(weak_from_this(), std::move(call), *next);
      return;
    }
    backend = next.status();
  }
  if (!backend.ok()) {
    std::move(call->done)(call->attempts == 0 ? backend.status()
                                              : Exhausted(backend.status(), call->last_failure));
    return;
  }
  ++call->attempts;
  // `call` stays alive through this frame even if the attempt completes
  // inline (its callback drops the other reference).
  AsyncCall& attempt = *call;
  BackendRef chosen = *backend;
  chosen->channel->StartUnary(
      *attempt.method, *attempt.request, attempt.response, attempt.options,
      [weak = weak_from_this(), call, chosen](absl::Status status) mutable {
        OnAttemptDone(std::move(weak), std::move(call), std::move(chosen), std::move(status));
      });
}

void BalancedChannel::OnAttemptDone(std::weak_ptr<BalancedChannel> weak, std::shared_ptr<AsyncCall> call,
                                    BackendRef backend, absl::Status status) {
  std::shared_ptr<BalancedChannel> self = weak.lock();
  if (self == nullptr || !self->ShouldRetry(status, call->attempts, call->options)) {
    std::move(call->done)(std::move(status));
    return;
  }
  self->NoteFailure(*backend, status);
  call->tried.push_back(std::move(backend));
  call->last_failure = std::move(status);
  call->response->Clear();
  if (Metadata* trailers = call->options.trailing_metadata) trailers->resize(call->trailers_before);
  // Not here: this may be a transport's reader thread, and the next attempt
  // may connect.
  BalancerPool().Post([weak = std::move(weak), call = std::move(call)]() mutable {
    if (std::shared_ptr<BalancedChannel> channel = weak.lock()) {
      channel->StartAttempt(std::move(call));
    } else {
      std::move(call->done)(call->last_failure);
    }
  });
}

void BalancedChannel::StartAttemptAt(std::weak_ptr<BalancedChannel> weak, std::shared_ptr<AsyncCall> call,
                                     absl::Time when) {
  // The timer thread must not connect: the attempt runs on the pool.
  TimerQueue::Get().Schedule(when, [weak = std::move(weak), call = std::move(call)]() mutable {
    BalancerPool().Post([weak = std::move(weak), call = std::move(call)]() mutable {
      std::shared_ptr<BalancedChannel> channel = weak.lock();
      if (call->options.cancellation.has_value() && call->options.cancellation->cancelled()) {
        std::move(call->done)(absl::CancelledError(
            absl::StrCat("call to ", call->method->full_name, " cancelled waiting for a backend")));
      } else if (channel == nullptr) {
        std::move(call->done)(
            MarkNotSeen(absl::UnavailableError("channel destroyed while the call waited for a backend")));
      } else {
        channel->StartAttempt(std::move(call));
      }
    });
  });
}

std::unique_ptr<ClientCallStream> BalancedChannel::OpenStream(const RpcMethod& method,
                                                              const google::protobuf::MessageLite* request,
                                                              google::protobuf::MessageLite* response,
                                                              const CallOptions& options) {
  absl::StatusOr<BackendRef> backend = PickConnected(options.deadline, Tried());
  if (!backend.ok()) return MakeFailedClientStream(backend.status());
  std::unique_ptr<ClientCallStream> stream = (*backend)->channel->OpenStream(method, request, response, options);
  return std::make_unique<PinnedStream>(*std::move(backend), std::move(stream));
}

absl::StatusOr<std::shared_ptr<Channel>> BalancedChannel::PickBackend(absl::Time deadline) {
  absl::StatusOr<BackendRef> backend = PickConnected(deadline, Tried());
  if (!backend.ok()) return backend.status();
  return (*backend)->channel;
}

absl::StatusOr<BalancedChannel::BackendRef> BalancedChannel::PickConnected(absl::Time deadline,
                                                                           const Tried& excluded) {
  Tried tried = excluded;
  for (;;) {
    absl::StatusOr<BackendRef> backend = Pick(deadline, tried);
    if (!backend.ok()) return backend;
    // Ready as last seen; its connection may have broken since.
    absl::Status connected = ConnectAddressChannel(*(*backend)->channel, deadline);
    if (connected.ok()) return backend;
    if (!absl::IsUnavailable(connected)) return connected;
    NoteFailure(**backend, connected);
    tried.push_back(*std::move(backend));
  }
}

// ---------------------------------------------------------------------------
// Picking

absl::StatusOr<BalancedChannel::BackendRef> BalancedChannel::Pick(absl::Time deadline, const Tried& tried) {
  bool resolved_for_this_pick = false;
  absl::MutexLock lock(&mu_);
  for (;;) {
    const absl::Time now = absl::Now();
    RefreshLocked(now);
    if (BackendRef ready = ChooseReadyLocked(tried)) return ready;
    // Nothing is up: the first backend in the target's order that may come
    // up is connected here, or waited for if it is being connected.
    Slot* idle = FirstLocked(State::kIdle, tried);
    Slot* connecting = FirstLocked(State::kConnecting, tried);
    if (idle != nullptr && (connecting == nullptr || idle < connecting)) {
      idle->state = State::kConnecting;
      ++version_;
      BackendRef backend = idle->backend;
      mu_.Unlock();
      absl::Status connected = ConnectAddressChannel(*backend->channel, deadline);
      mu_.Lock();
      ConnectedLocked(*backend, connected);
      if (connected.ok()) {
        if (options_.balancing.policy == LoadBalancingPolicy::kPickFirst) {
          if (Slot* slot = FindLocked(*backend)) selected_ = static_cast<int>(slot - slots_.data());
        }
        return backend;
      }
      if (absl::IsDeadlineExceeded(connected)) return connected;
      continue;
    }
    if (connecting != nullptr || resolving_) {
      const uint64_t seen = version_;
      auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return version_ != seen; };
      if (!mu_.AwaitWithDeadline(absl::Condition(&changed), deadline)) {
        return absl::DeadlineExceededError(
            absl::StrCat("deadline exceeded waiting for a backend of ", target_, " to connect"));
      }
      continue;
    }
    // Nothing left to try: the names may point elsewhere by now.
    if (resolves_ && !resolved_for_this_pick && MaybeResolveLocked(now, /*periodic=*/false)) {
      resolved_for_this_pick = true;
      continue;
    }
    return NoBackendLocked(tried);
  }
}

void BalancedChannel::RefreshLocked(absl::Time now) {
  if (now >= next_retry_) {
    next_retry_ = absl::InfiniteFuture();
    for (Slot& slot : slots_) {
      if (slot.state != State::kFailing) continue;
      if (slot.retry_at <= now) {
        slot.state = State::kIdle;
        ++version_;
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
  auto usable = [&tried](const Slot& slot) {
    return slot.state == State::kReady &&
           std::none_of(tried.begin(), tried.end(),
                        [&slot](const BackendRef& failed) { return failed == slot.backend; });
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

BalancedChannel::Slot* BalancedChannel::FirstLocked(State state, const Tried& tried) {
  for (Slot& slot : slots_) {
    if (slot.state != state) continue;
    if (std::any_of(tried.begin(), tried.end(),
                    [&slot](const BackendRef& failed) { return failed == slot.backend; })) {
      continue;
    }
    return &slot;
  }
  return nullptr;
}

bool BalancedChannel::AnyConnectingLocked() const {
  return std::any_of(slots_.begin(), slots_.end(),
                     [](const Slot& slot) { return slot.state == State::kConnecting; });
}

void BalancedChannel::StartConnectingLocked(Slot& slot) {
  slot.state = State::kConnecting;
  ++version_;
  BalancerPool().Post([weak = weak_from_this(), backend = slot.backend] {
    // Bounded by connect_timeout (running out of it is UNAVAILABLE).
    absl::Status connected = ConnectAddressChannel(*backend->channel, absl::InfiniteFuture());
    if (std::shared_ptr<BalancedChannel> self = weak.lock()) {
      absl::MutexLock lock(&self->mu_);
      self->ConnectedLocked(*backend, connected);
    }
  });
}

void BalancedChannel::ConnectedLocked(const Backend& backend, const absl::Status& status) {
  Slot* slot = FindLocked(backend);
  if (slot == nullptr) return;  // dropped by a resolution meanwhile
  if (status.ok()) {
    slot->state = State::kReady;
    slot->backoff.Reset();
    slot->last_error = absl::OkStatus();
    ++version_;
    return;
  }
  if (absl::IsDeadlineExceeded(status)) {
    // The deadline of the call that was connecting it ran out, not the
    // backend: the next call may try it again.
    slot->state = State::kIdle;
    ++version_;
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
  ++version_;
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
  BalancerPool().Post([weak = weak_from_this(), elements = elements_] {
    absl::StatusOr<std::vector<std::string>> addresses = ResolveTarget(elements);
    std::shared_ptr<BalancedChannel> self = weak.lock();
    if (self == nullptr) return;
    std::vector<Slot> dropped;
    {
      absl::MutexLock lock(&self->mu_);
      self->ApplyResolutionLocked(addresses, &dropped);
    }
    // `dropped` destroyed here, outside mu_.
  });
  return true;
}

void BalancedChannel::ApplyResolutionLocked(const absl::StatusOr<std::vector<std::string>>& addresses,
                                            std::vector<Slot>* dropped) {
  resolving_ = false;
  next_resolution_ = absl::Now() + options_.balancing.resolve_interval;
  ++version_;
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
  absl::StatusOr<std::vector<TargetElement>> elements = ParseTarget(target, *registry);
  if (!elements.ok()) return elements.status();
  absl::StatusOr<std::vector<std::string>> addresses = ResolveTarget(*elements);
  if (!addresses.ok()) return addresses.status();
  ChannelOptions balanced_options = options;
  balanced_options.balancing.max_attempts = std::max(1, options.balancing.max_attempts);
  auto channel = std::make_shared<BalancedChannel>(std::string(target), *std::move(elements), *addresses,
                                                   std::move(balanced_options), registry, std::move(policy));
  if (absl::Status started = channel->Start(absl::Now() + options.connect_timeout); !started.ok()) {
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
