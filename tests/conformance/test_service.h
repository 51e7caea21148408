// The conformance suite's service implementation, shared by the in-process
// tests and the separate server process (test_server_main.cc).
//
// Example:
//   locus::conformance::TestServiceImpl service;
//   server.RegisterService(&service);
#ifndef LOCUS_TESTS_CONFORMANCE_TEST_SERVICE_H_
#define LOCUS_TESTS_CONFORMANCE_TEST_SERVICE_H_

#include <atomic>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "conformance.locus.h"

namespace locus::conformance {

class TestServiceImpl final : public TestService::Service {
 public:
  absl::Status Echo(ServerContext* context, const EchoRequest* request, EchoReply* reply) override {
    echoes_.fetch_add(1);
    reply->set_data(request->data());
    if (request->report_context()) {
      reply->set_transport(context->peer().transport);
      reply->set_has_credentials(context->peer().has_credentials);
      reply->set_peer_pid(context->peer().pid);
      reply->set_peer_uid(context->peer().uid);
    }
    if (request->report_context() && context->deadline() != absl::InfiniteFuture()) {
      reply->set_had_deadline(true);
      reply->set_deadline_in_ms(absl::ToInt64Milliseconds(context->deadline() - absl::Now()));
    }
    if (!request->echo_metadata_key().empty()) {
      context->AddTrailingMetadata(request->echo_metadata_key(),
                                   std::string(context->client_metadata_value(request->echo_metadata_key())));
    }
    if (request->echo_all_metadata()) {
      for (const auto& [key, value] : context->client_metadata()) context->AddTrailingMetadata(key, value);
    }
    if (request->trailer_bytes() > 0) {
      context->AddTrailingMetadata("padding", std::string(static_cast<size_t>(request->trailer_bytes()), 'p'));
    }
    return absl::OkStatus();
  }

  absl::Status Fail(ServerContext*, const FailRequest* request, EchoReply*) override {
    return absl::Status(static_cast<absl::StatusCode>(request->code()), request->message());
  }

  absl::Status WaitForCancel(ServerContext* context, const WaitRequest* request,
                             WaitReply* reply) override {
    waits_started_.fetch_add(1);
    absl::Time until = absl::Now() + absl::Milliseconds(request->max_wait_ms());
    while (!context->IsCancelled() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
    reply->set_saw_cancellation(context->IsCancelled());
    if (context->IsCancelled()) cancellations_seen_.fetch_add(1);
    return absl::OkStatus();
  }

  absl::Status Generate(ServerContext* context, const GenerateRequest* request,
                        ServerWriter<EchoReply>* writer) override {
    streams_started_.fetch_add(1);
    EchoReply reply;
    for (int i = 0; i < request->count(); ++i) {
      reply.set_data(GeneratedData(i, request->size()));
      if (!writer->Write(reply)) return StreamEnded(context);
      generated_.fetch_add(1);
    }
    absl::Time until = absl::Now() + absl::Milliseconds(request->then_wait_ms());
    while (request->then_wait_ms() > 0 && !context->IsCancelled() && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    if (context->IsCancelled()) return StreamEnded(context);
    if (!request->echo_metadata_key().empty()) {
      context->AddTrailingMetadata(request->echo_metadata_key(),
                                   std::string(context->client_metadata_value(request->echo_metadata_key())));
    }
    return absl::Status(static_cast<absl::StatusCode>(request->final_code()), request->final_message());
  }

  absl::Status Sum(ServerContext* context, ServerReader<EchoRequest>* reader, SumReply* reply) override {
    streams_started_.fetch_add(1);
    EchoRequest request;
    while (reader->Read(&request)) {
      const int64_t index = reply->messages();
      reply->set_messages(index + 1);
      reply->set_bytes(reply->bytes() + static_cast<int64_t>(request.data().size()));
      if (!request.data().empty()) {
        reply->set_checksum(reply->checksum() + (index + 1) * static_cast<uint8_t>(request.data()[0]));
      }
    }
    if (context->IsCancelled()) return StreamEnded(context);
    return absl::OkStatus();
  }

  absl::Status Chat(ServerContext* context, ServerReaderWriter<EchoReply, EchoRequest>* stream) override {
    streams_started_.fetch_add(1);
    EchoRequest request;
    EchoReply reply;
    while (stream->Read(&request)) {
      reply.set_data(request.data());
      if (!stream->Write(reply)) break;
    }
    if (context->IsCancelled()) return StreamEnded(context);
    return absl::OkStatus();
  }

  // The data of the i-th message Generate sends.
  static std::string GeneratedData(int i, int size) {
    std::string data(static_cast<size_t>(size), '\0');
    for (int b = 0; b < size; ++b) data[b] = static_cast<char>((i * 31 + b) & 0xff);
    return data;
  }

  // Echo handlers that started.
  int echoes() const { return echoes_.load(); }
  int waits_started() const { return waits_started_.load(); }
  int cancellations_seen() const { return cancellations_seen_.load(); }
  int streams_started() const { return streams_started_.load(); }
  // Streaming handlers that returned because their call was cancelled.
  int stream_cancellations_seen() const { return stream_cancellations_.load(); }
  // Messages Generate has written (Write returned true).
  int64_t generated() const { return generated_.load(); }

 private:
  absl::Status StreamEnded(ServerContext* context) {
    if (context->IsCancelled()) stream_cancellations_.fetch_add(1);
    return absl::CancelledError("stream ended early");
  }

  std::atomic<int> echoes_{0};
  std::atomic<int> waits_started_{0};
  std::atomic<int> cancellations_seen_{0};
  std::atomic<int> streams_started_{0};
  std::atomic<int> stream_cancellations_{0};
  std::atomic<int64_t> generated_{0};
};

}  // namespace locus::conformance

#endif  // LOCUS_TESTS_CONFORMANCE_TEST_SERVICE_H_
