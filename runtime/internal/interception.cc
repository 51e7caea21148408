#include "internal/interception.h"

#include <algorithm>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/message_lite.h"
#include "internal/stream_call.h"

namespace locus::internal {

// ---------------------------------------------------------------------------
// Server side

ServerInterception::ServerInterception(const ServerInterceptors& factories, const RpcMethod& method,
                                       ServerContext& context)
    : info_(method, context) {
  for (const auto& factory : factories) {
    if (std::unique_ptr<ServerInterceptor> interceptor = factory->Create(info_)) {
      interceptors_.push_back(std::move(interceptor));
    }
  }
}

absl::Status ServerInterception::Start() {
  for (const auto& interceptor : interceptors_) {
    ++started_;  // a rejecting interceptor sees its own OnFinish
    if (absl::Status status = interceptor->OnStart(info_); !status.ok()) return status;
  }
  return absl::OkStatus();
}

void ServerInterception::Received(const google::protobuf::MessageLite& message) {
  for (size_t i = 0; i < started_; ++i) interceptors_[i]->OnReceiveMessage(info_, message);
}

void ServerInterception::Sending(const google::protobuf::MessageLite& message) {
  for (size_t i = started_; i-- > 0;) interceptors_[i]->OnSendMessage(info_, message);
}

void ServerInterception::Finish(absl::Status& status) {
  if (finished_) return;
  finished_ = true;
  for (size_t i = started_; i-- > 0;) interceptors_[i]->OnFinish(info_, status);
}

bool InterceptedServerStream::Read(google::protobuf::MessageLite* message) {
  if (!stream_.Read(message)) return false;
  interception_.Received(*message);
  return true;
}

bool InterceptedServerStream::Write(const google::protobuf::MessageLite& message) {
  interception_.Sending(message);
  return stream_.Write(message);
}

void InterceptedReplySink::Finish(const absl::Status& status, const google::protobuf::MessageLite* reply) {
  if (finished_) return;
  finished_ = true;
  absl::Status outcome = status;
  if (outcome.ok() && reply != nullptr) interception_.Sending(*reply);
  interception_.Finish(outcome);
  sink_.Finish(outcome, outcome.ok() ? reply : nullptr);
}

// ---------------------------------------------------------------------------
// Client side

namespace {

using ClientFactories = std::vector<std::shared_ptr<ClientInterceptorFactory>>;

// The interceptors of one call a client makes. The caller's places for the
// server's metadata are remembered, and the call runs with the interception's
// own (ClientCallInfo's), so that interceptors see them first; Finish copies
// them over.
//
// Thread-safety (a stream's Read, Write and Finish may run on three
// threads): the read-side hooks run under read_mu_, the write-side ones
// under write_mu_, Finish under both, so OnFinish runs alone and nothing
// runs after it; Start runs before the call is shared.
class ClientInterception {
 public:
  ClientInterception(const ClientFactories& factories, const RpcMethod& method,
                     const std::string& target, const CallOptions& options)
      : info_(method, target, options),
        caller_initial_(options.initial_metadata),
        caller_trailing_(options.trailing_metadata) {
    info_.options().initial_metadata = info_.initial_metadata_storage();
    info_.options().trailing_metadata = info_.trailing_metadata_storage();
    for (const auto& factory : factories) {
      if (std::unique_ptr<ClientInterceptor> interceptor = factory->Create(info_)) {
        interceptors_.push_back(std::move(interceptor));
      }
    }
  }
  ClientInterception(const ClientInterception&) = delete;
  ClientInterception& operator=(const ClientInterception&) = delete;

  // What the call is sent with (after Start).
  const CallOptions& options() { return info_.options(); }
  absl::string_view method_name() const { return info_.method_name(); }

  absl::Status Start() {
    for (const auto& interceptor : interceptors_) {
      ++started_;
      if (absl::Status status = interceptor->OnStart(info_); !status.ok()) return status;
    }
    sent_ = true;
    return absl::OkStatus();
  }
  // Nothing once finished.
  void Sending(const google::protobuf::MessageLite& message) {
    absl::MutexLock lock(&write_mu_);
    if (finished_.load(std::memory_order_relaxed)) return;
    for (size_t i = 0; i < started_; ++i) interceptors_[i]->OnSendMessage(info_, message);
  }
  // Nothing once finished.
  void Received(const google::protobuf::MessageLite& message) {
    absl::MutexLock lock(&read_mu_);
    if (finished_.load(std::memory_order_relaxed)) return;
    ReceivedLocked(message);
  }
  // Once: the reply (`response`, if the call succeeded and has one), then
  // OnFinish last to first, then the caller's metadata.
  void Finish(absl::Status& status, const google::protobuf::MessageLite* response = nullptr) {
    absl::MutexLock read_lock(&read_mu_);
    absl::MutexLock write_lock(&write_mu_);
    if (finished_.load(std::memory_order_relaxed)) return;
    if (status.ok() && response != nullptr) ReceivedLocked(*response);
    ReceivedInitialMetadata();
    for (size_t i = started_; i-- > 0;) interceptors_[i]->OnFinish(info_, status);
    if (caller_trailing_ != nullptr) {
      for (const auto& entry : info_.trailing_metadata()) caller_trailing_->push_back(entry);
    }
    finished_.store(true, std::memory_order_release);
  }
  bool finished() const { return finished_.load(std::memory_order_acquire); }

 private:
  void ReceivedLocked(const google::protobuf::MessageLite& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_) {
    ReceivedInitialMetadata();
    for (size_t i = started_; i-- > 0;) interceptors_[i]->OnReceiveMessage(info_, message);
  }
  // Once per call that started, before the first received message or the end.
  void ReceivedInitialMetadata() ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_) {
    if (!sent_ || initial_delivered_) return;
    initial_delivered_ = true;
    for (size_t i = started_; i-- > 0;) interceptors_[i]->OnReceiveInitialMetadata(info_);
    if (caller_initial_ != nullptr) {
      for (const auto& entry : info_.initial_metadata()) caller_initial_->push_back(entry);
    }
  }

  ClientCallInfo info_;
  Metadata* const caller_initial_;
  Metadata* const caller_trailing_;
  absl::InlinedVector<std::unique_ptr<ClientInterceptor>, 4> interceptors_;
  size_t started_ = 0;
  bool sent_ = false;  // every OnStart succeeded
  absl::Mutex read_mu_;  // before write_mu_
  absl::Mutex write_mu_;
  bool initial_delivered_ ABSL_GUARDED_BY(read_mu_) = false;
  // Written under both mutexes: read under either, or without them by the
  // stream's destructor (no Read, Write or Finish runs then).
  std::atomic<bool> finished_{false};
};

// A stream whose messages and end go through the call's interception.
class InterceptedClientStream final : public ClientCallStream {
 public:
  InterceptedClientStream(std::unique_ptr<ClientInterception> call,
                          std::unique_ptr<ClientCallStream> stream,
                          google::protobuf::MessageLite* response)
      : call_(std::move(call)), stream_(std::move(stream)), response_(response) {}
  ~InterceptedClientStream() override {
    if (call_->finished()) return;
    // Abandoned unfinished: it ends CANCELLED, which the interceptors see,
    // whatever the server answered (the caller never learnt it).
    stream_->Cancel();
    (void)stream_->Finish();
    absl::Status status =
        absl::CancelledError(absl::StrCat(call_->method_name(), " dropped by the client before Finish"));
    call_->Finish(status);
  }

  bool Write(const google::protobuf::MessageLite& message) override {
    call_->Sending(message);
    return stream_->Write(message);
  }
  bool WritesDone() override { return stream_->WritesDone(); }
  bool Read(google::protobuf::MessageLite* message) override {
    if (!stream_->Read(message)) return false;
    call_->Received(*message);
    return true;
  }
  absl::Status Finish() override {
    absl::Status status = stream_->Finish();
    call_->Finish(status, response_);
    return status;
  }
  void Cancel() override { stream_->Cancel(); }

 private:
  const std::unique_ptr<ClientInterception> call_;
  const std::unique_ptr<ClientCallStream> stream_;
  google::protobuf::MessageLite* const response_;
};

class InterceptedChannel final : public Channel {
 public:
  InterceptedChannel(std::shared_ptr<Channel> channel, ClientFactories factories)
      : channel_(std::move(channel)), factories_(std::move(factories)) {}

  Channel& inner() { return *channel_; }

  absl::Status CallUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                         google::protobuf::MessageLite* response, const CallOptions& options) override {
    ClientInterception call(factories_, method, channel_->target(), options);
    absl::Status status = call.Start();
    if (status.ok()) {
      call.Sending(request);
      status = channel_->CallUnary(method, request, response, call.options());
    }
    call.Finish(status, method.oneway ? nullptr : response);
    return status;
  }

  void StartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response, const CallOptions& options,
                  absl::AnyInvocable<void(absl::Status) &&> done) override {
    // Shared by the completion and this frame: the inner channel may
    // complete the call before StartUnary returns, while it still reads the
    // options it was given.
    auto call = std::make_shared<ClientInterception>(factories_, method, channel_->target(), options);
    absl::Status started = call->Start();
    if (!started.ok()) {
      call->Finish(started);
      std::move(done)(std::move(started));
      return;
    }
    call->Sending(request);
    channel_->StartUnary(method, request, response, call->options(),
                         [call, response, oneway = method.oneway,
                          done = std::move(done)](absl::Status status) mutable {
                           call->Finish(status, oneway ? nullptr : response);
                           std::move(done)(std::move(status));
                         });
  }

  std::unique_ptr<ClientCallStream> OpenStream(const RpcMethod& method,
                                               const google::protobuf::MessageLite* request,
                                               google::protobuf::MessageLite* response,
                                               const CallOptions& options) override {
    auto call = std::make_unique<ClientInterception>(factories_, method, channel_->target(), options);
    absl::Status started = call->Start();
    if (!started.ok()) {
      call->Finish(started);
      return MakeFailedClientStream(std::move(started));
    }
    if (request != nullptr) call->Sending(*request);
    std::unique_ptr<ClientCallStream> stream =
        channel_->OpenStream(method, request, response, call->options());
    return std::make_unique<InterceptedClientStream>(std::move(call), std::move(stream), response);
  }

  std::string transport_name() const override { return channel_->transport_name(); }
  const std::string& target() const override { return channel_->target(); }

 private:
  const std::shared_ptr<Channel> channel_;
  const ClientFactories factories_;
};

}  // namespace

std::shared_ptr<Channel> InterceptChannel(std::shared_ptr<Channel> channel, ClientFactories factories) {
  factories.erase(std::remove(factories.begin(), factories.end(), nullptr), factories.end());
  if (factories.empty()) return channel;
  return std::make_shared<InterceptedChannel>(std::move(channel), std::move(factories));
}

Channel& UninterceptedChannel(Channel& channel) {
  auto* intercepted = dynamic_cast<InterceptedChannel*>(&channel);
  return intercepted != nullptr ? intercepted->inner() : channel;
}

const Channel& UninterceptedChannel(const Channel& channel) {
  return UninterceptedChannel(const_cast<Channel&>(channel));
}

}  // namespace locus::internal
