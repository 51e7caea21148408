// locus::Connect and the Channel implementation. A channel holds one route
// at a time: a ConnectionCore over some transport, or an InprocDispatcher for
// a server in this process. The route is chosen by where the server lives
// (internal/transport_selection.h) and replaced (reconnected) when it breaks
// or the server sends GOAWAY; connection attempts go one at a time, with a
// backoff after a failed one (internal/connect_attempts.h). Calls are made
// by the retry drivers (internal/retry.h) as attempts of this channel
// (AttemptingChannel). A target naming several servers gets a
// BalancedChannel (internal/balanced_channel.h) over one such channel per
// server.
#include "locus/channel.h"

#include "locus/object.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "internal/balanced_channel.h"
#include "internal/call_header_codec.h"
#include "internal/call_not_seen.h"
#include "internal/connection_core.h"
#include "internal/channel_internal.h"
#include "internal/connect_attempts.h"
#include "internal/inproc_dispatcher.h"
#include "internal/interception.h"
#include "internal/process_setup.h"
#include "internal/retry.h"
#include "internal/transport_selection.h"

namespace locus {
namespace internal {
namespace {

// A call whose client metadata would make its call header larger than a
// peer accepts in a frame's meta section (kDefaultMaxMetaSize) fails with
// RESOURCE_EXHAUSTED before anything is sent, as an oversize message does:
// sent, the peer would close the connection as malformed, failing every
// call on it. On every route, so that collocated calls fail alike.
absl::Status CheckCallHeaderSize(const RpcMethod& method, const CallOptions& options) {
  if (options.metadata.empty()) return absl::OkStatus();
  // Cheap bound first: each entry's framing takes at most 12 bytes, the
  // method's and the deadline's at most 32 more.
  size_t bound = 32 + std::strlen(method.full_name);
  for (const auto& [key, value] : options.metadata) bound += 12 + key.size() + value.size();
  if (bound <= kDefaultMaxMetaSize) return absl::OkStatus();
  int64_t timeout_ns = 0;
  if (options.deadline != absl::InfiniteFuture()) {
    timeout_ns = std::max<int64_t>(1, absl::ToInt64Nanoseconds(options.deadline - absl::Now()));
  }
  const size_t size = CallHeaderSize(method.full_name, timeout_ns, options.metadata);
  if (size <= kDefaultMaxMetaSize) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("call header of ", size, " bytes (client metadata) exceeds the limit of ",
                                                   kDefaultMaxMetaSize, " bytes"));
}

struct Route {
  std::shared_ptr<ConnectionCore> core;     // remote, or
  std::shared_ptr<InprocDispatcher> inproc;  // in-process: unary calls direct,
  std::shared_ptr<ConnectionCore> inproc_streams;  // streams over an in-process connection (made on first use)
};

class ChannelImpl final : public Channel, public AttemptingChannel {
 public:
  ChannelImpl(std::string target, ChannelOptions options, TransportRegistry* registry,
              TransportPolicy policy)
      : target_(std::move(target)),
        options_(std::move(options)),
        registry_(registry),
        policy_(std::move(policy)),
        client_limits_{options_.max_send_message_size, options_.max_receive_message_size,
                       nullptr},
        attempts_(ConnectAttempts::Create(options_.reconnect_backoff, options_.connect_timeout)) {
    if (options_.bootstrap != nullptr) {
      // In-process calls reach the same object directly.
      absl::StatusOr<Exported> exported = Export(options_.bootstrap);
      if (exported.ok()) {
        bootstrap_export_ = *std::move(exported);
        client_limits_.caller_object = std::make_shared<const ObjectRef>(bootstrap_export_.ref());
      }
    }
  }

  // The connection under a remote route (connecting if needed); the
  // server's bootstrap object for an in-process one.
  absl::StatusOr<std::shared_ptr<ConnectionCore>> CurrentConnection(absl::Time deadline) {
    absl::StatusOr<Route> route = GetRoute(deadline, std::nullopt, nullptr);
    if (!route.ok()) return route.status();
    if (route->inproc != nullptr) {
      return absl::FailedPreconditionError("the channel calls its server in-process");
    }
    return route->core;
  }
  // Makes this channel call the in-process server behind `dispatcher` for
  // good (Server::InProcessChannel): it never dials its target. Right after
  // construction, before the channel is shared.
  void PinInproc(std::shared_ptr<InprocDispatcher> dispatcher) {
    absl::MutexLock lock(&mu_);
    route_.inproc = std::move(dispatcher);
    pinned_inproc_ = true;
  }

  // The in-process server's bootstrap object, or null if the route is not
  // in-process or its server has stopped (then BootstrapRef asks the route,
  // which says UNAVAILABLE).
  std::shared_ptr<Service> InprocBootstrap() {
    absl::MutexLock lock(&mu_);
    if (route_.inproc == nullptr || route_.inproc->stopped()) return nullptr;
    return route_.inproc->bootstrap();
  }

  ~ChannelImpl() override {
    absl::MutexLock lock(&mu_);
    if (route_.core != nullptr) route_.core->Close(absl::CancelledError("channel destroyed"));
    if (route_.inproc_streams != nullptr) route_.inproc_streams->Close(absl::CancelledError("channel destroyed"));
  }

  std::unique_ptr<ClientCallStream> OpenStream(const RpcMethod& method,
                                               const google::protobuf::MessageLite* request,
                                               google::protobuf::MessageLite* response,
                                               const CallOptions& options) override {
    if (absl::Status fits = CheckCallHeaderSize(method, options); !fits.ok()) {
      return MakeFailedClientStream(std::move(fits));
    }
    return OpenStreamWithRetries(*this, method, request, response, options);
  }

  absl::Status CallUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                         google::protobuf::MessageLite* response,
                         const CallOptions& options) override {
    if (absl::Status fits = CheckCallHeaderSize(method, options); !fits.ok()) return fits;
    return CallUnaryWithRetries(*this, method, request, response, options);
  }

  void StartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response, const CallOptions& options,
                  absl::AnyInvocable<void(absl::Status) &&> done) override {
    if (absl::Status fits = CheckCallHeaderSize(method, options); !fits.ok()) {
      std::move(done)(std::move(fits));
      return;
    }
    StartUnaryWithRetries(*this, method, request, response, options, std::move(done));
  }

  // --- AttemptingChannel: one attempt of a call over the current route ---

  absl::Status AttemptUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                            google::protobuf::MessageLite* response, const CallOptions& options,
                            AttemptReport* report) override {
    std::shared_ptr<ConnectionCore> core;
    std::shared_ptr<InprocDispatcher> inproc;
    absl::Status routed = GetUnaryRoute(options, report, &core, &inproc);
    if (!routed.ok()) return routed;
    if (inproc != nullptr) return inproc->CallUnary(method, request, response, options, client_limits_, report);
    return core->CallUnary(method, request, response, options, nullptr, report);
  }

  absl::Status TryStartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                             google::protobuf::MessageLite* response, const CallOptions& options,
                             absl::AnyInvocable<void(absl::Status) &&>& done, AttemptReport* refusal,
                             AttemptReport* later) override {
    std::shared_ptr<ConnectionCore> core;
    std::shared_ptr<InprocDispatcher> inproc;
    absl::Status routed = GetUnaryRoute(options, refusal, &core, &inproc);
    if (!routed.ok()) return routed;
    if (inproc != nullptr) {
      return inproc->TryStartUnary(method, request, response, options, client_limits_, done, refusal);
    }
    return core->TryStartUnary(method, request, response, options, done, nullptr, refusal, later);
  }

  absl::StatusOr<std::unique_ptr<ClientCallStream>> AttemptStream(
      const RpcMethod& method, const google::protobuf::MessageLite* request,
      google::protobuf::MessageLite* response, const CallOptions& options,
      std::shared_ptr<AttemptReport> report) override {
    absl::StatusOr<Route> route = GetRoute(options.deadline, options.cancellation, report.get());
    if (!route.ok()) return route.status();
    if (route->inproc == nullptr) {
      return route->core->TryOpenStream(method, request, response, options, nullptr, std::move(report));
    }
    absl::StatusOr<std::shared_ptr<ConnectionCore>> streams = InprocStreams(*route, options.deadline);
    if (!streams.ok()) {
      // The in-process server stopped before it saw the call.
      if (report != nullptr && absl::IsUnavailable(streams.status())) report->not_processed = true;
      return streams.status();
    }
    return (*streams)->TryOpenStream(method, request, response, options, nullptr, std::move(report));
  }

  absl::Time NextConnectAttempt() override { return attempts_->next_attempt(); }

  bool RetriesNotSeenUnaryCalls() const override { return !balanced_backend_; }
  // Makes this channel a backend of a balanced channel (MakeAddressChannel):
  // calls no server saw end here, for the balancer to send elsewhere. Right
  // after construction, before the channel is shared.
  void MakeBalancedBackend() { balanced_backend_ = true; }

  const RetryPolicy* RetryPolicyFor(const RpcMethod& method) override {
    if (ABSL_PREDICT_TRUE(options_.retry_policies.empty())) return method.retry_policy;
    const absl::string_view name(method.full_name);
    if (auto it = options_.retry_policies.find(name); it != options_.retry_policies.end()) {
      return &it->second;
    }
    // "/pkg.Service/Method": the service's entry is "/pkg.Service/".
    const size_t slash = name.find('/', 1);
    if (slash != absl::string_view::npos) {
      auto it = options_.retry_policies.find(name.substr(0, slash + 1));
      if (it != options_.retry_policies.end()) return &it->second;
    }
    return method.retry_policy;
  }

  ConnectAttempts::Stats connect_stats() const { return attempts_->stats(); }

  std::string transport_name() const override {
    absl::MutexLock lock(&mu_);
    if (route_.inproc != nullptr) return "inproc";
    return route_.core == nullptr ? "none" : TransportKind(route_.core->peer().transport);
  }

  const std::string& target() const override { return target_; }

  // The in-process connection of the in-process route `route`, connected on
  // first use (and again if it broke).
  absl::StatusOr<std::shared_ptr<ConnectionCore>> InprocStreams(const Route& route, absl::Time deadline) {
    std::shared_ptr<ConnectionCore> replaced;  // released outside mu_
    absl::MutexLock lock(&mu_);
    if (route_.inproc != route.inproc) return absl::UnavailableError("in-process server went away");
    if (route_.inproc_streams != nullptr && route_.inproc_streams->usable()) return route_.inproc_streams;
    absl::StatusOr<std::unique_ptr<Connection>> connection = route_.inproc->ConnectInproc(client_limits_);
    if (!connection.ok()) return connection.status();
    absl::StatusOr<std::shared_ptr<ConnectionCore>> core =
        StartCore(std::move(*connection), "inproc", std::min(deadline, absl::Now() + options_.connect_timeout));
    if (!core.ok()) return core.status();
    replaced = std::move(route_.inproc_streams);
    route_.inproc_streams = *core;
    return route_.inproc_streams;
  }

  // Whether the route is known to need a reconnection before the next
  // call (AddressChannelBroken). Never blocks: false while another thread
  // holds mu_ (it may be reconnecting).
  bool RouteBroken() {
    if (!mu_.TryLock()) return false;
    const bool broken = !RouteUsableLocked();
    mu_.Unlock();
    return broken;
  }

  // Whether route_ can take a call as it is: an in-process server still
  // running, or a connection still usable.
  bool RouteUsableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (route_.inproc != nullptr) return !route_.inproc->stopped();
    return route_.core != nullptr && route_.core->usable();
  }

  // What a unary call needs of a usable route (GetRoute): the in-process
  // dispatcher into `*inproc`, or else the connection into `*core`. The
  // per-call path: copies one reference, not the whole route.
  absl::Status GetUnaryRoute(const CallOptions& options, AttemptReport* report,
                             std::shared_ptr<ConnectionCore>* core,
                             std::shared_ptr<InprocDispatcher>* inproc) {
    {
      absl::MutexLock lock(&mu_);
      if (RouteUsableLocked()) {
        if (route_.inproc != nullptr) {
          *inproc = route_.inproc;
        } else {
          *core = route_.core;
        }
        return absl::OkStatus();
      }
    }
    absl::StatusOr<Route> route = GetRoute(options.deadline, options.cancellation, report);
    if (!route.ok()) return route.status();
    *core = std::move(route->core);
    *inproc = std::move(route->inproc);
    return absl::OkStatus();
  }

  // Returns a usable route, connecting (again) if needed: one attempt at a
  // time, none while the backoff after a failed one runs (the caller then
  // fails with that failure; `report`, if set, says there was no route).
  absl::StatusOr<Route> GetRoute(absl::Time call_deadline, const std::optional<Cancellation>& cancellation,
                                 AttemptReport* report) {
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (RouteUsableLocked()) return route_;
        // Both for good: no connection attempt would help (no_route unset,
        // so wait_for_ready does not wait for one).
        if (pinned_inproc_) {
          return MarkNotSeen(absl::UnavailableError("the in-process server has shut down"));
        }
        // "fd:N": the first Dial took the descriptor; dialling N again would
        // take whatever the number names now.
        if (descriptor_taken_) {
          return MarkNotSeen(absl::UnavailableError(absl::StrCat(
              "the connection over ", target_,
              " is closed; a descriptor address connects once (no reconnect)")));
        }
      }
      absl::StatusOr<ConnectAttempts::Turn> turn = attempts_->Await(call_deadline, cancellation);
      if (!turn.ok()) {
        // The call's deadline ran out while another caller's attempt ran, or
        // the last attempt's configuration error: marked, as below.
        if (absl::IsCancelled(turn.status())) return turn.status();
        if (!absl::IsUnavailable(turn.status())) return MarkNotSeen(turn.status());
        if (report != nullptr) report->no_route = true;
        return MarkNotSeen(turn.status());
      }
      if (!turn->dial) continue;  // another caller's attempt ended: look again
      {
        absl::MutexLock lock(&mu_);
        descriptor_taken_ = IsDescriptorAddress(target_);
      }
      absl::StatusOr<Route> fresh = Select(turn->deadline);
      if (!fresh.ok()) {
        // Connection failures are UNAVAILABLE to callers (as in gRPC), except
        // a deadline that ran out while connecting and configuration errors.
        // No server saw the call (internal/call_not_seen.h). The mark stays
        // on those too: a balanced channel tells a backend whose
        // reconnection ran out of the call's time, or whose configuration
        // no longer fits, from a server's own answer.
        const absl::Status& s = fresh.status();
        if (absl::IsDeadlineExceeded(s) && turn->deadline == call_deadline) {
          attempts_->Abandoned();  // the call gave up, not the server
          return MarkNotSeen(s);
        }
        absl::Status failure = absl::IsInvalidArgument(s) || absl::IsFailedPrecondition(s)
                                   ? s
                                   : absl::UnavailableError(s.message());
        attempts_->Failed(failure);
        if (!absl::IsUnavailable(failure)) return MarkNotSeen(std::move(failure));
        if (report != nullptr) report->no_route = true;
        return MarkNotSeen(std::move(failure));
      }
      // The replaced route is released after mu_ is unlocked: destroying a
      // connection waits for its reader, which may be running a completion
      // callback that calls back into this channel. A connection draining
      // after GOAWAY is not closed here: calls still running on it finish
      // (they hold it), then it goes away.
      Route replaced;
      {
        absl::MutexLock lock(&mu_);
        replaced = std::move(route_);
        route_ = *fresh;
      }
      attempts_->Succeeded();
      return *std::move(fresh);
    }
  }

 private:
  // Connects to `address` and completes the handshake.
  absl::StatusOr<std::shared_ptr<ConnectionCore>> Dial(absl::string_view address, absl::Time deadline) {
    absl::StatusOr<Transport*> transport = registry_->ForAddress(address);
    if (!transport.ok()) return transport.status();
    TransportOptions transport_options;
    transport_options.max_receive_message_size = options_.max_receive_message_size;
    transport_options.shm_ring_bytes = options_.shm_ring_bytes;
    transport_options.shm_bulk_bytes = options_.shm_bulk_bytes;
    transport_options.shm_spin = options_.shm_spin;
    transport_options.socket_spin = options_.socket_spin;
    absl::StatusOr<std::unique_ptr<Connection>> connection =
        (*transport)->Connect(address, transport_options, deadline);
    if (!connection.ok()) return connection.status();
    return StartCore(std::move(*connection), address, deadline);
  }

  // Runs the client side of the handshake on a fresh connection.
  absl::StatusOr<std::shared_ptr<ConnectionCore>> StartCore(std::unique_ptr<Connection> connection,
                                                            absl::string_view address,
                                                            absl::Time deadline) {
    ConnectionCore::Options core_options;
    core_options.connecting_side = true;
    core_options.max_send_message_size = options_.max_send_message_size;
    core_options.max_receive_message_size = options_.max_receive_message_size;
    core_options.stream_window_bytes = options_.stream_window_bytes;
    core_options.datagram_call_timeout = options_.datagram_call_timeout;
    core_options.bootstrap = options_.bootstrap;
    core_options.keepalive_time = options_.keepalive_time > absl::ZeroDuration()
                                      ? std::max(options_.keepalive_time, MinClientKeepaliveTime())
                                      : options_.keepalive_time;
    core_options.keepalive_timeout = options_.keepalive_timeout;
    core_options.keepalive_without_calls = options_.keepalive_without_calls;
    auto core = ConnectionCore::Create(std::move(connection), std::move(core_options));
    core->Start();
    absl::Status handshake = core->ClientHandshake(deadline);
    if (!handshake.ok()) {
      core->Close(handshake);
      return absl::Status(handshake.code(),
                          absl::StrCat("handshake with ", address, " failed: ", handshake.message()));
    }
    return core;
  }

  // Connects to the target, then moves as close to the server as it lives
  // and the policy allows. Each step falls back to what already works.
  absl::StatusOr<Route> Select(absl::Time deadline) {
    absl::StatusOr<std::shared_ptr<ConnectionCore>> first = Dial(target_, deadline);
    if (!first.ok()) return first.status();
    Route route;
    route.core = *first;
    const wire::Hello& hello = route.core->peer_hello();
    if (policy_.Allows("inproc") && hello.server_instance() != 0 && SameProcess(hello.host())) {
      if (auto inproc = InprocRegistry::Get().Find(hello.server_instance())) {
        route.core->Close(absl::CancelledError("moved to in-process calls"));
        return Route{nullptr, std::move(inproc), nullptr};
      }
    }
    std::string kind = TransportKind(route.core->peer().transport);
    std::vector<std::string> failures;
    if (SameHost(hello.host())) {
      for (const std::string& candidate : SameHostCandidates(hello, target_, policy_, kind)) {
        absl::StatusOr<std::shared_ptr<ConnectionCore>> closer = Dial(candidate, deadline);
        if (closer.ok()) {
          route.core->Close(absl::CancelledError(absl::StrCat("moved to ", candidate)));
          route.core = *closer;
          kind = TransportKind(route.core->peer().transport);
          break;
        }
        failures.push_back(absl::StrCat(candidate, ": ", closer.status().message()));
      }
    }
    // Once per channel, not per call or reconnect.
    if (!failures.empty() && !logged_fallback_.exchange(true, std::memory_order_relaxed)) {
      LOCUS_LOG(WARNING) << "channel to " << target_ << " stays on " << kind
                         << "; closer transports failed: " << absl::StrJoin(failures, "; ");
    }
    if (!policy_.Allows(kind)) {
      route.core->Close(absl::CancelledError("transport not allowed"));
      return absl::FailedPreconditionError(absl::StrCat(
          "channel to ", target_, " can only use ", kind, ", which the transport policy (",
          policy_.ToString(), ") does not allow",
          failures.empty() ? "" : absl::StrCat("; tried: ", absl::StrJoin(failures, "; "))));
    }
    return route;
  }

  const std::string target_;
  const ChannelOptions options_;
  TransportRegistry* const registry_;
  const TransportPolicy policy_;
  Exported bootstrap_export_;  // options_.bootstrap, for in-process calls
  InprocDispatcher::ClientLimits client_limits_;
  const std::shared_ptr<ConnectAttempts> attempts_;
  mutable absl::Mutex mu_;
  Route route_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> logged_fallback_{false};
  // The target is a descriptor address, and it was dialled.
  bool descriptor_taken_ ABSL_GUARDED_BY(mu_) = false;
  // PinInproc: the route is the in-process server's, for the channel's life.
  bool pinned_inproc_ ABSL_GUARDED_BY(mu_) = false;
  // MakeBalancedBackend: set before the channel is shared, read only after.
  bool balanced_backend_ = false;
};

}  // namespace

absl::StatusOr<std::shared_ptr<ConnectionCore>> ChannelConnection(Channel& channel, absl::Time deadline) {
  Channel& inner = UninterceptedChannel(channel);
  if (auto* balanced = dynamic_cast<BalancedChannel*>(&inner)) {
    absl::StatusOr<std::shared_ptr<Channel>> backend = balanced->PickBackend(deadline);
    if (!backend.ok()) return backend.status();
    return ChannelConnection(**backend, deadline);
  }
  auto* impl = dynamic_cast<ChannelImpl*>(&inner);
  if (impl == nullptr) return absl::InvalidArgumentError("not a channel made by locus::Connect");
  return impl->CurrentConnection(deadline);
}

absl::StatusOr<std::shared_ptr<Channel>> ChannelBackend(const std::shared_ptr<Channel>& channel) {
  if (channel == nullptr) return absl::InvalidArgumentError("null channel");
  if (auto* balanced = dynamic_cast<BalancedChannel*>(&UninterceptedChannel(*channel))) {
    return balanced->PickBackend(absl::Now() + balanced->options().connect_timeout);
  }
  return channel;
}

std::shared_ptr<Service> ChannelInprocBootstrap(Channel& channel) {
  Channel& inner = UninterceptedChannel(channel);
  if (auto* balanced = dynamic_cast<BalancedChannel*>(&inner)) {
    absl::StatusOr<std::shared_ptr<Channel>> backend =
        balanced->PickBackend(absl::Now() + balanced->options().connect_timeout);
    return backend.ok() ? ChannelInprocBootstrap(**backend) : nullptr;
  }
  auto* impl = dynamic_cast<ChannelImpl*>(&inner);
  return impl == nullptr ? nullptr : impl->InprocBootstrap();
}

namespace {
std::atomic<int64_t> min_client_keepalive_ns{absl::ToInt64Nanoseconds(kMinClientKeepaliveTime)};
}  // namespace

absl::Duration SetMinClientKeepaliveTime(absl::Duration floor) {
  return absl::Nanoseconds(min_client_keepalive_ns.exchange(absl::ToInt64Nanoseconds(floor)));
}
absl::Duration MinClientKeepaliveTime() { return absl::Nanoseconds(min_client_keepalive_ns.load()); }

absl::StatusOr<ChannelStats> GetChannelStats(Channel& channel) {
  auto* impl = dynamic_cast<ChannelImpl*>(&UninterceptedChannel(channel));
  if (impl == nullptr) return absl::InvalidArgumentError("not a channel made by locus::Connect");
  return ChannelStats{impl->connect_stats(), impl->retry_stats()};
}

std::shared_ptr<Channel> MakeInprocChannel(std::shared_ptr<InprocDispatcher> dispatcher,
                                           const ChannelOptions& options) {
  EnsureProcessSetup();
  // The transport policy only matters when a channel selects a transport.
  absl::StatusOr<TransportPolicy> everything = TransportPolicy::Parse("");
  auto channel = std::make_shared<ChannelImpl>("inproc:", options, &DefaultTransportRegistry(),
                                               *std::move(everything));
  channel->PinInproc(std::move(dispatcher));
  return channel;
}

std::shared_ptr<Channel> MakeAddressChannel(std::string address, const ChannelOptions& options,
                                            TransportRegistry* registry, TransportPolicy policy) {
  ChannelOptions backend_options = options;
  // The balancer's backoff (BalancingOptions::backoff) keeps a failing
  // backend out of use; its own channel adds no second one (a connection
  // attempt the balancer allows is made at once).
  backend_options.reconnect_backoff =
      ConnectionBackoff{absl::Milliseconds(1), 1.0, 0.0, absl::Milliseconds(1)};
  auto channel =
      std::make_shared<ChannelImpl>(std::move(address), std::move(backend_options), registry, std::move(policy));
  channel->MakeBalancedBackend();
  return channel;
}

bool AddressChannelBroken(Channel& channel) {
  auto* impl = dynamic_cast<ChannelImpl*>(&channel);
  return impl != nullptr && impl->RouteBroken();
}

absl::Status ConnectAddressChannel(Channel& channel, absl::Time deadline) {
  auto* impl = dynamic_cast<ChannelImpl*>(&channel);
  if (impl == nullptr) return absl::InvalidArgumentError("not a channel made by MakeAddressChannel");
  return impl->GetRoute(deadline, std::nullopt, nullptr).status();
}

}  // namespace internal

absl::StatusOr<std::shared_ptr<Channel>> Connect(absl::string_view address,
                                                 const ChannelOptions& options) {
  internal::EnsureProcessSetup();
  TransportRegistry& registry =
      options.transports != nullptr ? *options.transports : DefaultTransportRegistry();
  if (internal::IsBalancedTarget(address, registry)) {
    // Several servers (internal/balanced_channel.h): one channel like this
    // one per backend, under a balancer.
    absl::StatusOr<internal::TransportPolicy> policy =
        internal::TransportPolicy::ForChannel(options.allowed_transports);
    if (!policy.ok()) return policy.status();
    absl::StatusOr<std::shared_ptr<Channel>> balanced =
        internal::ConnectBalanced(address, options, &registry, *std::move(policy));
    if (!balanced.ok()) return balanced.status();
    // Interceptors see one call above the balancer, whatever backends it tries.
    return internal::InterceptChannel(*std::move(balanced), options.interceptors);
  }
  absl::StatusOr<Transport*> transport = registry.ForAddress(address);
  if (!transport.ok()) return transport.status();
  absl::StatusOr<internal::TransportPolicy> policy =
      internal::TransportPolicy::ForChannel(options.allowed_transports);
  if (!policy.ok()) return policy.status();
  auto channel = std::make_shared<internal::ChannelImpl>(std::string(address), options, &registry,
                                                         *std::move(policy));
  absl::StatusOr<internal::Route> route = channel->GetRoute(absl::InfiniteFuture(), std::nullopt, nullptr);
  if (!route.ok()) return route.status();
  return internal::InterceptChannel(std::move(channel), options.interceptors);
}

}  // namespace locus
