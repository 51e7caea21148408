#include "logging_interceptor.h"

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace locus_samples {
namespace {

class ClientLogging final : public locus::ClientInterceptor {
 public:
  explicit ClientLogging(const LogSink& sink) : sink_(sink) {}
  void OnSendMessage(locus::ClientCallInfo&, const google::protobuf::MessageLite&) override { ++sent_; }
  void OnReceiveMessage(locus::ClientCallInfo&, const google::protobuf::MessageLite&) override { ++received_; }
  void OnFinish(locus::ClientCallInfo& call, absl::Status& status) override {
    sink_(absl::StrCat("client ", call.method_name(), " -> ", call.target(), ": ",
                       absl::StatusCodeToString(status.code()), " in ",
                       absl::FormatDuration(absl::Now() - start_), ", ", sent_.load(), " sent, ",
                       received_.load(), " received, ", call.trailing_metadata().size(), " trailers"));
  }

 private:
  const LogSink sink_;  // a copy: a call may end after its channel is gone
  const absl::Time start_ = absl::Now();
  // A stream may Write on one thread and Read on another.
  std::atomic<int> sent_{0};
  std::atomic<int> received_{0};
};

class ServerLogging final : public locus::ServerInterceptor {
 public:
  explicit ServerLogging(const LogSink& sink) : sink_(sink) {}
  void OnReceiveMessage(locus::ServerCallInfo&, const google::protobuf::MessageLite&) override { ++received_; }
  void OnSendMessage(locus::ServerCallInfo&, const google::protobuf::MessageLite&) override { ++sent_; }
  void OnFinish(locus::ServerCallInfo& call, absl::Status& status) override {
    sink_(absl::StrCat("server ", call.method_name(), " <- ", call.context().peer().remote_address,
                       " (", call.context().peer().transport, "): ",
                       absl::StatusCodeToString(status.code()), " in ",
                       absl::FormatDuration(absl::Now() - start_), ", ", received_.load(), " received, ",
                       sent_.load(), " sent, ", call.context().client_metadata().size(), " metadata"));
  }

 private:
  const LogSink sink_;  // a copy: a call may end after its channel is gone
  const absl::Time start_ = absl::Now();
  std::atomic<int> sent_{0};
  std::atomic<int> received_{0};
};

}  // namespace

std::unique_ptr<locus::ClientInterceptor> LoggingClientInterceptorFactory::Create(
    const locus::ClientCallInfo&) {
  return std::make_unique<ClientLogging>(sink_);
}

std::unique_ptr<locus::ServerInterceptor> LoggingServerInterceptorFactory::Create(
    const locus::ServerCallInfo&) {
  return std::make_unique<ServerLogging>(sink_);
}

}  // namespace locus_samples
