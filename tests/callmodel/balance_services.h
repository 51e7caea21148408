// The services of the balanced-channel tests (balance_test.proto), shared by
// the tests (servers in the test process) and balance_backend_main.cc
// (servers in processes of their own).
//
// Example:
//   locus::callmodel::BackendImpl backend("a");
//   server.RegisterService(&backend);
#ifndef LOCUS_TESTS_CALLMODEL_BALANCE_SERVICES_H_
#define LOCUS_TESTS_CALLMODEL_BALANCE_SERVICES_H_

#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "balance_test.locus.h"
#include "locus/object.h"

namespace locus::callmodel {

class CounterImpl final : public Counter::Service {
 public:
  explicit CounterImpl(std::string server) : server_(std::move(server)) {}
  absl::Status Next(ServerContext*, const OpenRequest*, NextReply* reply) override {
    reply->set_server(server_);
    reply->set_value(value_.fetch_add(1) + 1);
    return absl::OkStatus();
  }

 private:
  const std::string server_;
  std::atomic<int64_t> value_{0};
};

class BackendImpl final : public Backend::Service {
 public:
  explicit BackendImpl(std::string name) : name_(std::move(name)) {}

  absl::Status Who(ServerContext* context, const WhoRequest* request, WhoReply* reply) override {
    calls_.fetch_add(1);
    if (log_fd_ >= 0 && !request->data().empty()) {
      // One write per line (O_APPEND): whole lines even from several threads.
      const std::string line = request->data() + "\n";
      if (write(log_fd_, line.data(), line.size()) < 0) return absl::InternalError("cannot log the request");
    }
    Answer(*context, *request, reply);
    return absl::OkStatus();
  }

  absl::Status Hold(ServerContext* context, const WhoRequest* request, WhoReply* reply) override {
    calls_.fetch_add(1);
    if (request->hold_on() == name_) {
      holding_.Notify();
      // Bounded: a call nobody cancels ends with the test's watchdog.
      const absl::Time until = absl::Now() + absl::Seconds(60);
      while (!context->IsCancelled() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
      return absl::CancelledError("held until cancelled");
    }
    Answer(*context, *request, reply);
    return absl::OkStatus();
  }

  absl::Status Chat(ServerContext* context, ServerReaderWriter<WhoReply, WhoRequest>* stream) override {
    streams_.fetch_add(1);
    WhoRequest request;
    WhoReply reply;
    while (stream->Read(&request)) {
      Answer(*context, request, &reply);
      if (!stream->Write(reply)) break;
    }
    return absl::OkStatus();
  }

  absl::Status Open(ServerContext*, const OpenRequest*, OpenReply* reply) override {
    return SetRef(reply->mutable_counter(), std::make_shared<CounterImpl>(name_));
  }

  const std::string& name() const { return name_; }
  // Who appends each request's data (when not empty) as a line to `fd`
  // before it answers (O_APPEND; owned by the caller).
  void set_log(int fd) { log_fd_ = fd; }
  // Unary calls (Who, Hold) that reached this server.
  int64_t calls() const { return calls_.load(); }
  int64_t streams() const { return streams_.load(); }
  // Notified when a Hold call this server holds has started.
  absl::Notification& holding() { return holding_; }

 private:
  void Answer(const ServerContext& context, const WhoRequest& request, WhoReply* reply) const {
    reply->set_server(name_);
    reply->set_transport(context.peer().transport);
    reply->set_client(context.peer().remote_address);
    reply->set_data(request.data());
  }

  const std::string name_;
  std::atomic<int64_t> calls_{0};
  std::atomic<int64_t> streams_{0};
  absl::Notification holding_;
  int log_fd_ = -1;
};

}  // namespace locus::callmodel

#endif  // LOCUS_TESTS_CALLMODEL_BALANCE_SERVICES_H_
