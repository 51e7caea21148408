#include "internal/inproc_dispatcher.h"

#include <unistd.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/message_lite.h"
#include "internal/attachments.h"
#include "internal/call_not_seen.h"
#include "internal/connection_core_frames.h"
#include "internal/inproc_connection.h"
#include "locus/server_context.h"

namespace locus::internal {
namespace {

const PeerInfo& InprocClientInfo() {
  static const PeerInfo* peer = [] {
    auto* p = new PeerInfo();
    p->transport = "inproc";
    p->local_address = "inproc:";
    p->remote_address = absl::StrCat("inproc:pid=", getpid());
    p->has_credentials = true;
    p->pid = getpid();
    p->uid = getuid();
    p->gid = getgid();
    return p;
  }();
  return *peer;
}

// What the client's end of an in-process connection sees.
const PeerInfo& InprocServerInfo() {
  static const PeerInfo* peer = [] {
    auto* p = new PeerInfo();
    p->transport = "inproc";
    p->local_address = absl::StrCat("inproc:pid=", getpid());
    p->remote_address = "inproc:server";
    return p;
  }();
  return *peer;
}

}  // namespace

InprocDispatcher::InprocDispatcher(const ServiceTable* services, ServerLimits limits, ThreadPool* pool)
    : services_(services), limits_(limits), pool_(pool) {}

bool InprocDispatcher::Enter() {
  active_.fetch_add(1, std::memory_order_seq_cst);
  if (stopped_.load(std::memory_order_seq_cst)) {
    active_.fetch_sub(1, std::memory_order_release);
    return false;
  }
  return true;
}

void InprocDispatcher::Leave() { active_.fetch_sub(1, std::memory_order_release); }

absl::StatusOr<std::unique_ptr<Connection>> InprocDispatcher::ConnectInproc(
    const ClientLimits& client) {
  absl::MutexLock lock(&accept_mu_);
  if (accept_ == nullptr || !accepting_ || stopped()) {
    return MarkNotSeen(absl::UnavailableError("server is shutting down"));
  }
  auto [client_end, server_end] =
      MakeInprocPair(InprocEnd{InprocServerInfo(), client.max_receive_message_size},
                       InprocEnd{InprocClientInfo(), limits_.max_receive_message_size});
  accept_(std::move(server_end));
  return std::move(client_end);
}

void InprocDispatcher::StopAccepting() {
  absl::MutexLock lock(&accept_mu_);
  accepting_ = false;
}

void InprocDispatcher::Stop(absl::Time deadline) {
  stopped_.store(true, std::memory_order_seq_cst);
  // Calls that entered before the flag finish on their callers' threads;
  // those still running at the deadline are cancelled, as a remote call's
  // handler is when its connection closes.
  while (active_.load(std::memory_order_acquire) != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Microseconds(100));
  }
  shut_down_.store(true, std::memory_order_release);
  shutdown_.Cancel();
  while (active_.load(std::memory_order_acquire) != 0) absl::SleepFor(absl::Microseconds(100));
}

absl::Status InprocDispatcher::CallUnary(const RpcMethod& method,
                                        const google::protobuf::MessageLite& request,
                                        google::protobuf::MessageLite* response,
                                        const CallOptions& options, const ClientLimits& client,
                                        AttemptReport* report) {
  // Entered first: Stop() waits for entered calls, so the server's tables
  // stay alive for the whole call.
  if (!Enter()) {
    if (report != nullptr) report->not_processed = true;
    return MarkNotSeen(absl::UnavailableError("server is shutting down"));
  }
  absl::Status status = CallEntered(method, request, response, options, client);
  Leave();
  return status;
}

absl::Status InprocDispatcher::CallEntered(const RpcMethod& method,
                                          const google::protobuf::MessageLite& request,
                                          google::protobuf::MessageLite* response,
                                          const CallOptions& options, const ClientLimits& client) {
  const bool has_deadline = options.deadline != absl::InfiniteFuture();
  if (has_deadline && absl::Now() >= options.deadline) {
    return absl::DeadlineExceededError(absl::StrCat("deadline passed before ", method.full_name, " started"));
  }
  const ServiceTable::Entry* entry = services_->Find(method.full_name);
  if (entry == nullptr) return absl::UnimplementedError(absl::StrCat("unknown method ", method.full_name));
  if (entry->method->kind != RpcKind::kUnary) {
    return absl::UnimplementedError(absl::StrCat("streaming method ", method.full_name, " is not supported"));
  }
  size_t request_size = request.ByteSizeLong();
  if (request_size > client.max_send_message_size) {
    return absl::ResourceExhaustedError(absl::StrCat("request of ", request_size,
                                                     " bytes exceeds the send limit of ",
                                                     client.max_send_message_size, " bytes"));
  }
  if (request_size > limits_.max_receive_message_size) {
    return absl::ResourceExhaustedError(
        absl::StrCat("request of ", request_size, " bytes exceeds the server's limit of ",
                     limits_.max_receive_message_size, " bytes"));
  }
  // The handler runs on this thread: a cancellation (the caller's, or the
  // server's shutdown) can only tell it (its IsCancelled()), and the call
  // ends CANCELLED (UNAVAILABLE) when it returns. Without a caller's
  // cancellation, the handler shares the shutdown flag (owned by this
  // dispatcher, which outlives its calls: Stop waits for them).
  if (shut_down_.load(std::memory_order_acquire)) return absl::UnavailableError("server is shutting down");
  std::shared_ptr<std::atomic<bool>> cancelled(std::shared_ptr<void>(), &shut_down_);
  CancellationRegistration cancel_registration;
  CancellationRegistration shutdown_registration;
  if (options.cancellation.has_value()) {
    cancelled = std::make_shared<std::atomic<bool>>(false);
    auto set_flag = [cancelled]() { cancelled->store(true, std::memory_order_release); };
    cancel_registration = CancellationRegistration::Watch(options.cancellation->state(), set_flag);
    if (!cancel_registration.active()) {
      return absl::CancelledError(absl::StrCat("call to ", method.full_name, " cancelled before it started"));
    }
    shutdown_registration = CancellationRegistration::Watch(shutdown_.state(), set_flag);
    if (!shutdown_registration.active()) return absl::UnavailableError("server is shutting down");
  }
  ServerContext context(method.full_name, options.deadline, options.metadata, &InprocClientInfo(), cancelled);
  // What the client offered; descriptors are duplicated as a socket would.
  // Calls made on this call's behalf get a cancellation of their own
  // (cancelling it cancels only them), which the caller's cancellation and
  // the server's shutdown cancel; made on first use, from any thread the
  // handler uses, and unregistered when the call returns.
  class Link final : public CallLink {
   public:
    Link(const ObjectRef* caller, const std::optional<Cancellation>& caller_cancellation,
         const Cancellation& shutdown)
        : caller_(caller), caller_cancellation_(caller_cancellation), shutdown_(shutdown) {}
    absl::Status ImportRequest(google::protobuf::MessageLite*) override { return absl::OkStatus(); }
    const ObjectRef* caller_object() const override { return caller_; }
    void OnCallerGone(absl::AnyInvocable<void(absl::Status) &&>) override {}
    std::optional<Cancellation> PropagatedCancellation() override {
      absl::MutexLock lock(&mu_);
      if (!propagation_.has_value()) {
        Cancellation propagation;
        auto cancel = [state = propagation.state()]() { state->Cancel(); };
        bool cancelled = false;
        if (caller_cancellation_.has_value()) {
          from_caller_ = CancellationRegistration::Watch(caller_cancellation_->state(), cancel);
          cancelled = !from_caller_.active();
        }
        from_shutdown_ = CancellationRegistration::Watch(shutdown_.state(), cancel);
        if (cancelled || !from_shutdown_.active()) propagation.Cancel();
        propagation_ = std::move(propagation);
      }
      return propagation_;
    }

   private:
    const ObjectRef* const caller_;
    const std::optional<Cancellation>& caller_cancellation_;
    const Cancellation& shutdown_;
    absl::Mutex mu_;
    std::optional<Cancellation> propagation_ ABSL_GUARDED_BY(mu_);
    CancellationRegistration from_caller_ ABSL_GUARDED_BY(mu_);
    CancellationRegistration from_shutdown_ ABSL_GUARDED_BY(mu_);
  } link(client.caller_object.get(), options.cancellation, shutdown_);
  context.set_link(&link, false);
  absl::Status status;
  if (ABSL_PREDICT_TRUE(interceptors_ == nullptr)) {
    status = CallDirect(method, *entry->handler, &context, request, response);
  } else {
    // As ConnectionCore::Serve: the hooks see the caller's own messages.
    ServerInterception interception(*interceptors_, *entry->method, context);
    status = interception.Start();
    if (status.ok()) {
      interception.Received(request);
      status = CallDirect(method, *entry->handler, &context, request, response);
      if (status.ok() && !method.oneway) interception.Sending(*response);
    }
    interception.Finish(status);
  }
  if (cancelled->load(std::memory_order_acquire)) {
    if (options.cancellation.has_value() && options.cancellation->cancelled()) {
      return absl::CancelledError(absl::StrCat("call cancelled while the server handled ", method.full_name));
    }
    return absl::UnavailableError(
        absl::StrCat("server shut down while it handled ", method.full_name));
  }
  if (has_deadline && absl::Now() >= options.deadline) {
    return absl::DeadlineExceededError(
        absl::StrCat("deadline exceeded while the server handled ", method.full_name));
  }
  if (status.ok() && !method.oneway) {
    size_t reply_size = response->ByteSizeLong();
    if (reply_size > limits_.max_send_message_size) {
      status = absl::ResourceExhaustedError(
          absl::StrCat("reply of ", reply_size, " bytes exceeds the server's send limit of ",
                       limits_.max_send_message_size, " bytes"));
    } else if (reply_size > client.max_receive_message_size) {
      status = absl::ResourceExhaustedError(absl::StrCat("reply of ", reply_size,
                                                         " bytes exceeds the limit of ",
                                                         client.max_receive_message_size, " bytes"));
    }
  }
  const bool has_details = !status.ok() && HasPayloads(status);  // an OK status carries none
  if (!context.trailing_metadata().empty() || !context.initial_metadata().empty() || has_details) {
    // The remote path's limit on a status with metadata or details (its
    // meta section), so that a call behaves the same wherever its server
    // lives: details too large go (the code and message stay), then
    // metadata too large fails the call.
    size_t meta_bytes = status.message().size();
    for (const auto& [key, value] : context.trailing_metadata()) meta_bytes += key.size() + value.size();
    for (const auto& [key, value] : context.initial_metadata()) meta_bytes += key.size() + value.size();
    size_t details_bytes = 0;
    status.ForEachPayload([&details_bytes](absl::string_view type_url, const absl::Cord& payload) {
      details_bytes += type_url.size() + payload.size();
    });
    if (meta_bytes + details_bytes > kDefaultMaxMetaSize && has_details) {
      status = absl::Status(status.code(), status.message());
    } else {
      meta_bytes += details_bytes;
    }
    if (meta_bytes > kDefaultMaxMetaSize) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the status and metadata of more than ", meta_bytes,
          " bytes exceed the limit of ", kDefaultMaxMetaSize, " bytes"));
    }
  }
  if (options.trailing_metadata != nullptr) {
    for (const auto& entry_kv : context.trailing_metadata()) options.trailing_metadata->push_back(entry_kv);
  }
  if (options.initial_metadata != nullptr) {
    for (const auto& entry_kv : context.initial_metadata()) options.initial_metadata->push_back(entry_kv);
  }
  return status;
}

void InprocDispatcher::StartUnary(const RpcMethod& method,
                                 const google::protobuf::MessageLite& request,
                                 google::protobuf::MessageLite* response, const CallOptions& options,
                                 const ClientLimits& client,
                                 absl::AnyInvocable<void(absl::Status) &&> done) {
  absl::Status started = TryStartUnary(method, request, response, options, client, done, nullptr);
  if (!started.ok()) std::move(done)(std::move(started));
}

absl::Status InprocDispatcher::TryStartUnary(const RpcMethod& method,
                                             const google::protobuf::MessageLite& request,
                                             google::protobuf::MessageLite* response,
                                             const CallOptions& options, const ClientLimits& client,
                                             absl::AnyInvocable<void(absl::Status) &&>& done,
                                             AttemptReport* report) {
  if (pool_ == nullptr) {
    AttemptReport refusal;
    absl::Status status = CallUnary(method, request, response, options, client, &refusal);
    if (refusal.not_processed) {
      if (report != nullptr) report->not_processed = true;
      return status;
    }
    std::move(done)(std::move(status));
    return absl::OkStatus();
  }
  // The request may die when StartUnary returns: the pool gets a copy. The
  // call is entered before it is queued, so Stop() waits for queued calls.
  if (!Enter()) {
    if (report != nullptr) report->not_processed = true;
    return MarkNotSeen(absl::UnavailableError("server is shutting down"));
  }
  std::shared_ptr<google::protobuf::MessageLite> copy(request.New());
  copy->CheckTypeAndMergeFrom(request);
  pool_->Post([this, &method, copy, response, options, client, done = std::move(done)]() mutable {
    absl::Status status = CallEntered(method, *copy, response, options, client);
    Leave();
    std::move(done)(std::move(status));
  });
  return absl::OkStatus();
}

InprocRegistry& InprocRegistry::Get() {
  static InprocRegistry* registry = new InprocRegistry();
  return *registry;
}

uint64_t InprocRegistry::Add(std::shared_ptr<InprocDispatcher> dispatcher) {
  absl::MutexLock lock(&mu_);
  if (next_ == 0) {
    std::random_device rd;
    next_ = ((static_cast<uint64_t>(rd()) << 32) ^ rd()) | 1;
  }
  uint64_t id = next_++;
  if (id == 0) id = next_++;
  servers_[id] = dispatcher;
  return id;
}

void InprocRegistry::Remove(uint64_t instance) {
  absl::MutexLock lock(&mu_);
  servers_.erase(instance);
}

std::shared_ptr<InprocDispatcher> InprocRegistry::Find(uint64_t instance) {
  absl::MutexLock lock(&mu_);
  auto it = servers_.find(instance);
  return it == servers_.end() ? nullptr : it->second.lock();
}

}  // namespace locus::internal
