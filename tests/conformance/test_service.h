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

  int waits_started() const { return waits_started_.load(); }
  int cancellations_seen() const { return cancellations_seen_.load(); }

 private:
  std::atomic<int> waits_started_{0};
  std::atomic<int> cancellations_seen_{0};
};

}  // namespace locus::conformance

#endif  // LOCUS_TESTS_CONFORMANCE_TEST_SERVICE_H_
