// locus::Server: listeners, the connections they accept, and shutdown.
#include "locus/server.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "internal/channel_internal.h"
#include "internal/connection_core.h"
#include "internal/inproc_dispatcher.h"
#include "internal/interception.h"
#include "internal/object_registry.h"
#include "internal/process_setup.h"
#include "internal/service_table.h"
#include "internal/thread_pool.h"
#include "internal/transport_selection.h"

namespace locus {
namespace internal {

// A client that connects but never completes the handshake is dropped after this.
constexpr absl::Duration kHandshakeTimeout = absl::Seconds(10);
// Streaming handlers each hold a thread while their stream is open; beyond
// this many at once, new streams wait for one to end.
constexpr int kMaxStreamThreads = 1024;
// Idle stream-handler threads exit after this.
constexpr absl::Duration kStreamThreadIdle = absl::Seconds(10);

// The live connections. Shared with each connection's on_closed hook, so a
// hook running on an I/O thread never touches a destroyed server.
class ConnectionSet {
 public:
  void Add(std::shared_ptr<ConnectionCore> core) {
    absl::MutexLock lock(&mu_);
    ConnectionCore* key = core.get();
    cores_.emplace(key, std::move(core));
  }
  void Remove(ConnectionCore* core) {
    std::shared_ptr<ConnectionCore> doomed;  // released outside the lock
    absl::MutexLock lock(&mu_);
    auto it = cores_.find(core);
    if (it == cores_.end()) return;
    doomed = std::move(it->second);
    cores_.erase(it);
  }
  std::vector<std::shared_ptr<ConnectionCore>> Snapshot() {
    absl::MutexLock lock(&mu_);
    std::vector<std::shared_ptr<ConnectionCore>> out;
    for (auto& [key, core] : cores_) out.push_back(core);
    return out;
  }
  // Waits until no connection is left, or `deadline`; returns whether empty.
  bool WaitEmpty(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto empty = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return cores_.empty(); };
    return mu_.AwaitWithDeadline(absl::Condition(&empty), deadline);
  }
  size_t size() {
    absl::MutexLock lock(&mu_);
    return cores_.size();
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<ConnectionCore*, std::shared_ptr<ConnectionCore>> cores_ ABSL_GUARDED_BY(mu_);
};

class ServerImpl {
 public:
  explicit ServerImpl(ServerOptions options)
      : options_(options), connections_(std::make_shared<ConnectionSet>()) {
    EnsureProcessSetup();
    ServerInterceptors interceptors;
    for (const auto& factory : options_.interceptors) {
      if (factory != nullptr) interceptors.push_back(factory);
    }
    if (!interceptors.empty()) interceptors_ = std::make_shared<const ServerInterceptors>(std::move(interceptors));
  }

  ~ServerImpl() { Shutdown(absl::Now()); }

  absl::Status RegisterService(Service* service) {
    absl::MutexLock lock(&mu_);
    if (state_ != State::kNew) return absl::FailedPreconditionError("RegisterService after Start");
    return services_.Add(service);
  }

  absl::Status AddListeningAddress(std::string address) {
    absl::MutexLock lock(&mu_);
    if (state_ != State::kNew) return absl::FailedPreconditionError("AddListeningAddress after Start");
    addresses_.push_back(std::move(address));
    return absl::OkStatus();
  }

  absl::Status Start() {
    absl::MutexLock lock(&mu_);
    if (state_ != State::kNew) return absl::FailedPreconditionError("Start called twice");
    if (addresses_.empty()) {
      LOCUS_LOG(INFO) << "server started with no listening address: it serves only in-process "
                         "channels (Server::InProcessChannel)";
    }
    TransportRegistry& registry =
        options_.transports != nullptr ? *options_.transports : DefaultTransportRegistry();
    if (options_.handler_threads > 0) pool_ = std::make_unique<ThreadPool>(options_.handler_threads);
    stream_pool_ = std::make_unique<ThreadPool>(0, kMaxStreamThreads, kStreamThreadIdle);
    TransportOptions transport_options;
    transport_options.max_receive_message_size = options_.max_receive_message_size;
    transport_options.unix_socket_mode = options_.unix_socket_mode;
    transport_options.shm_spin = options_.shm_spin;
    transport_options.socket_spin = options_.socket_spin;
    transport_options.send_stall_timeout = options_.send_stall_timeout;
    // Set before listening (accepted connections read them): same-host
    // clients may move to our Unix sockets (and shared memory
    // over them); same-process clients call the services directly.
    for (const std::string& address : addresses_) {
      if (absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:")) {
        local_endpoints_.push_back(address);
      } else if (absl::StartsWith(address, "shm:")) {
        local_endpoints_.push_back(absl::StrCat("unix:", address.substr(4)));
      } else if (absl::StartsWith(address, "shm-abstract:")) {
        local_endpoints_.push_back(absl::StrCat("unix-abstract:", address.substr(13)));
      }
    }
    dispatcher_ = std::make_shared<InprocDispatcher>(
        &services_,
        InprocDispatcher::ServerLimits{options_.max_receive_message_size, options_.max_send_message_size},
        pool_.get());
    // In-process streaming calls arrive as in-process connections.
    dispatcher_->set_bootstrap(options_.bootstrap);
    dispatcher_->set_interceptors(interceptors_);
    dispatcher_->set_accept(
        [this](std::unique_ptr<Connection> connection) { OnAccept(std::move(connection)); });
    instance_ = InprocRegistry::Get().Add(dispatcher_);
    std::vector<std::unique_ptr<Listener>> listeners;
    for (const std::string& address : addresses_) {
      absl::StatusOr<Transport*> transport = registry.ForAddress(address);
      if (!transport.ok()) {
        InprocRegistry::Get().Remove(instance_);
        return transport.status();
      }
      auto listener = (*transport)->Listen(
          address, transport_options,
          [this](std::unique_ptr<Connection> connection) { OnAccept(std::move(connection)); });
      if (!listener.ok()) {
        InprocRegistry::Get().Remove(instance_);
        return listener.status();
      }
      listeners.push_back(std::move(*listener));
    }
    listeners_ = std::move(listeners);
    // References to this process's objects name these, for third parties
    // (not "fd:N": a descriptor of this process, meaningless elsewhere).
    for (const auto& listener : listeners_) {
      if (!IsDescriptorAddress(listener->address())) endpoints_.push_back(listener->address());
    }
    ObjectRegistry::Get().AddEndpoints(endpoints_);
    state_ = State::kRunning;
    return absl::OkStatus();
  }

  std::vector<std::string> listening_addresses() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const auto& listener : listeners_) out.push_back(listener->address());
    return out;
  }

  absl::StatusOr<std::shared_ptr<Channel>> InProcessChannel(const ChannelOptions& options) {
    std::shared_ptr<InprocDispatcher> dispatcher;
    {
      absl::MutexLock lock(&mu_);
      if (state_ == State::kNew) return absl::FailedPreconditionError("InProcessChannel before Start");
      if (state_ != State::kRunning) {
        return absl::FailedPreconditionError("InProcessChannel after Shutdown");
      }
      dispatcher = dispatcher_;
    }
    // Made outside mu_ (it may export the client's bootstrap object). A
    // Shutdown meanwhile leaves a channel whose calls fail UNAVAILABLE.
    return MakeInprocChannel(std::move(dispatcher), options);
  }

  void Shutdown(absl::Time deadline) {
    std::vector<std::unique_ptr<Listener>> listeners;
    {
      absl::MutexLock lock(&mu_);
      if (state_ == State::kShutdown || state_ == State::kStopping) {
        auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return state_ == State::kShutdown; };
        mu_.Await(absl::Condition(&done));
        return;
      }
      state_ = State::kStopping;
      listeners.swap(listeners_);
      ObjectRegistry::Get().RemoveEndpoints(endpoints_);
    }
    if (instance_ != 0) InprocRegistry::Get().Remove(instance_);  // no new in-process channels
    // No new in-process connections (in-process streams).
    if (dispatcher_ != nullptr) dispatcher_->StopAccepting();
    listeners.clear();  // stop accepting (waits for an accept in progress)
    absl::Status going_away = absl::UnavailableError("server is shutting down");
    for (const auto& core : connections_->Snapshot()) core->SendGoAway(going_away);
    // Let calls in progress finish, and their replies leave the transports'
    // queues (a large reply to a slow reader), until the deadline.
    for (;;) {
      size_t busy = 0;
      for (const auto& core : connections_->Snapshot()) {
        busy += core->active_server_calls() + (core->has_queued_output() ? 1 : 0);
      }
      if (busy == 0 || absl::Now() >= deadline) break;
      absl::SleepFor(absl::Milliseconds(1));
    }
    for (const auto& core : connections_->Snapshot()) core->Close(going_away);
    // Each connection leaves the set when its reader has seen the close,
    // i.e. after any handler running inline on it has returned.
    while (!connections_->WaitEmpty(absl::Now() + absl::Seconds(5))) {
      LOCUS_LOG(WARNING) << "shutdown waiting for " << connections_->size()
                         << " connection(s) whose handlers have not returned";
    }
    // Waits for in-process calls in progress, cancelling those that run past the deadline.
    if (dispatcher_ != nullptr) dispatcher_->Stop(deadline);
    if (pool_ != nullptr) pool_->Stop();
    if (stream_pool_ != nullptr) stream_pool_->Stop();  // streaming handlers see their calls ended
    absl::MutexLock lock(&mu_);
    state_ = State::kShutdown;
  }

  void Wait() {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return state_ == State::kShutdown; };
    mu_.Await(absl::Condition(&done));
  }

 private:
  enum class State { kNew, kRunning, kStopping, kShutdown };

  // Runs on a transport thread for each accepted connection.
  void OnAccept(std::unique_ptr<Connection> connection) {
    ConnectionCore::Options core_options;
    core_options.connecting_side = false;
    core_options.max_send_message_size = options_.max_send_message_size;
    core_options.max_receive_message_size = options_.max_receive_message_size;
    core_options.services = &services_;
    core_options.handler_pool = pool_.get();
    core_options.stream_pool = stream_pool_.get();
    core_options.stream_window_bytes = options_.stream_window_bytes;
    core_options.max_streams_from_peer = options_.max_concurrent_streams;
    core_options.server_instance = instance_;
    core_options.local_endpoints = local_endpoints_;
    core_options.allowed_uids = options_.allowed_uids;
    core_options.bootstrap = options_.bootstrap;
    core_options.keepalive_time = options_.keepalive_time;
    core_options.keepalive_timeout = options_.keepalive_timeout;
    core_options.keepalive_without_calls = options_.keepalive_without_calls;
    core_options.max_idle = options_.max_connection_idle;
    core_options.max_age = options_.max_connection_age;
    core_options.max_age_grace = options_.max_connection_age_grace;
    core_options.interceptors = interceptors_;
    std::weak_ptr<ConnectionSet> set = connections_;
    // The set holds each connection until its on_closed has run (Shutdown,
    // which the destructor runs too, waits until the set is empty).
    core_options.on_closed = [set](ConnectionCore* core) {
      if (auto live = set.lock()) live->Remove(core);
    };
    core_options.owner_holds_until_closed = true;
    auto core = ConnectionCore::Create(std::move(connection), std::move(core_options));
    connections_->Add(core);
    core->Start();
    core->ExpectHandshakeBy(absl::Now() + kHandshakeTimeout);
  }

  const ServerOptions options_;
  std::shared_ptr<const ServerInterceptors> interceptors_;  // null: none
  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kNew;
  std::vector<std::string> addresses_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Listener>> listeners_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> endpoints_ ABSL_GUARDED_BY(mu_);
  ServiceTable services_;  // written before Start only
  std::unique_ptr<ThreadPool> pool_;  // created in Start, stopped in Shutdown
  std::unique_ptr<ThreadPool> stream_pool_;  // likewise; runs streaming handlers
  // Set in Start, before any connection is accepted; read-only afterwards.
  std::vector<std::string> local_endpoints_;
  std::shared_ptr<InprocDispatcher> dispatcher_;
  uint64_t instance_ = 0;
  std::shared_ptr<ConnectionSet> connections_;
};

}  // namespace internal

Server::Server(ServerOptions options) : impl_(std::make_unique<internal::ServerImpl>(options)) {}
Server::~Server() = default;
absl::Status Server::RegisterService(Service* service) { return impl_->RegisterService(service); }
absl::Status Server::AddListeningAddress(std::string address) {
  return impl_->AddListeningAddress(std::move(address));
}
absl::Status Server::Start() { return impl_->Start(); }
std::vector<std::string> Server::listening_addresses() const { return impl_->listening_addresses(); }
absl::StatusOr<std::shared_ptr<Channel>> Server::InProcessChannel(const ChannelOptions& options) {
  return impl_->InProcessChannel(options);
}
void Server::Shutdown(absl::Time deadline) { impl_->Shutdown(deadline); }
void Server::Wait() { impl_->Wait(); }

}  // namespace locus
