// locus::Connect and the Channel implementation: one ConnectionCore at a
// time, replaced (reconnected) when it breaks or the server sends GOAWAY.
#include "locus/channel.h"

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "internal/connection_core.h"

namespace locus {
namespace internal {
namespace {

class ChannelImpl final : public Channel {
 public:
  ChannelImpl(std::string target, ChannelOptions options, Transport* transport)
      : target_(std::move(target)), options_(options), transport_(transport) {}

  ~ChannelImpl() override {
    absl::MutexLock lock(&mu_);
    if (core_ != nullptr) core_->Close(absl::CancelledError("channel destroyed"));
  }

  absl::Status CallUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                         google::protobuf::MessageLite* response,
                         const CallOptions& options) override {
    absl::StatusOr<std::shared_ptr<ConnectionCore>> core = GetCore(options.deadline);
    if (!core.ok()) return core.status();
    return (*core)->CallUnary(method, request, response, options);
  }

  void StartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response, const CallOptions& options,
                  absl::AnyInvocable<void(absl::Status) &&> done) override {
    absl::StatusOr<std::shared_ptr<ConnectionCore>> core = GetCore(options.deadline);
    if (!core.ok()) {
      std::move(done)(core.status());
      return;
    }
    (*core)->StartUnary(method, request, response, options, std::move(done));
  }

  std::string transport_name() const override {
    absl::MutexLock lock(&mu_);
    return core_ == nullptr ? "none" : core_->peer().transport;
  }

  const std::string& target() const override { return target_; }

  // Returns a usable connection, connecting (again) if needed.
  absl::StatusOr<std::shared_ptr<ConnectionCore>> GetCore(absl::Time call_deadline) {
    absl::MutexLock lock(&mu_);
    if (core_ != nullptr && core_->usable()) return core_;
    absl::Time deadline = std::min(call_deadline, absl::Now() + options_.connect_timeout);
    absl::StatusOr<std::shared_ptr<ConnectionCore>> fresh = Dial(deadline);
    if (!fresh.ok()) {
      // Connection failures are UNAVAILABLE to callers (as in gRPC), except
      // a deadline that ran out while connecting.
      if (absl::IsDeadlineExceeded(fresh.status()) && deadline == call_deadline) return fresh.status();
      if (absl::IsInvalidArgument(fresh.status())) return fresh.status();
      return absl::UnavailableError(fresh.status().message());
    }
    if (core_ != nullptr) core_->Close(absl::UnavailableError("replaced by a new connection"));
    core_ = *fresh;
    return core_;
  }

 private:
  absl::StatusOr<std::shared_ptr<ConnectionCore>> Dial(absl::Time deadline) {
    TransportOptions transport_options;
    transport_options.max_receive_message_size = options_.max_receive_message_size;
    absl::StatusOr<std::unique_ptr<Connection>> connection =
        transport_->Connect(target_, transport_options, deadline);
    if (!connection.ok()) return connection.status();
    ConnectionCore::Options core_options;
    core_options.connecting_side = true;
    core_options.max_send_message_size = options_.max_send_message_size;
    core_options.max_receive_message_size = options_.max_receive_message_size;
    auto core = ConnectionCore::Create(std::move(*connection), std::move(core_options));
    core->Start();
    absl::Status handshake = core->ClientHandshake(deadline);
    if (!handshake.ok()) {
      core->Close(handshake);
      return absl::Status(handshake.code(),
                          absl::StrCat("handshake with ", target_, " failed: ", handshake.message()));
    }
    return core;
  }

  const std::string target_;
  const ChannelOptions options_;
  Transport* const transport_;
  mutable absl::Mutex mu_;
  std::shared_ptr<ConnectionCore> core_ ABSL_GUARDED_BY(mu_);
};

}  // namespace
}  // namespace internal

absl::StatusOr<std::shared_ptr<Channel>> Connect(absl::string_view address,
                                                 const ChannelOptions& options) {
  TransportRegistry& registry =
      options.transports != nullptr ? *options.transports : DefaultTransportRegistry();
  absl::StatusOr<Transport*> transport = registry.ForAddress(address);
  if (!transport.ok()) return transport.status();
  auto channel = std::make_shared<internal::ChannelImpl>(std::string(address), options, *transport);
  absl::StatusOr<std::shared_ptr<internal::ConnectionCore>> core =
      channel->GetCore(absl::InfiniteFuture());
  if (!core.ok()) return core.status();
  return channel;
}

}  // namespace locus
