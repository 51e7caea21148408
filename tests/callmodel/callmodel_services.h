// Implementations of the call-model test services (callmodel.proto).
//
// Example:
//   callmodel::GreeterImpl greeter;
//   locus::Server server;
//   ASSERT_TRUE(server.RegisterService(&greeter).ok());
#ifndef LOCUS_TESTS_CALLMODEL_CALLMODEL_SERVICES_H_
#define LOCUS_TESTS_CALLMODEL_CALLMODEL_SERVICES_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "callmodel.locus.h"
#include "locus/object.h"

namespace callmodel {

// A running total; thread-safe.
class CounterImpl final : public Counter::Service {
 public:
  absl::Status Add(locus::ServerContext*, const Amount* request, Amount* reply) override {
    reply->set_value(total_.fetch_add(request->value()) + request->value());
    return absl::OkStatus();
  }

 private:
  std::atomic<int64_t> total_{0};
};

class GreeterImpl final : public Greeter::Service {
 public:
  absl::Status Greet(locus::ServerContext* context, const Text* request, Text* reply) override {
    reply->set_text(absl::StrCat("hello, ", request->text()));
    absl::MutexLock lock(&mu_);
    last_transport_ = context->peer().transport;
    return absl::OkStatus();
  }

  absl::Status Repeat(locus::ServerContext*, const RepeatRequest* request,
                      locus::ServerWriter<Text>* writer) override {
    Text text;
    text.set_text(request->text());
    for (int i = 0; i < request->times(); ++i) {
      if (!writer->Write(text)) return absl::CancelledError("the client went away");
    }
    return absl::OkStatus();
  }

  absl::Status Join(locus::ServerContext*, locus::ServerReader<Text>* reader,
                    Text* reply) override {
    Text text;
    std::string joined;
    while (reader->Read(&text)) absl::StrAppend(&joined, joined.empty() ? "" : " ", text.text());
    reply->set_text(joined);
    return absl::OkStatus();
  }

  absl::Status Chat(locus::ServerContext*, locus::ServerReaderWriter<Text, Text>* stream) override {
    Text text;
    while (stream->Read(&text)) {
      if (!stream->Write(text)) break;
    }
    return absl::OkStatus();
  }

  absl::Status NewCounter(locus::ServerContext*, const Text*, CounterRef* reply) override {
    return locus::SetRef(reply->mutable_counter(), std::make_shared<CounterImpl>());
  }

  // The transport the last Greet arrived on, as its handler saw it.
  std::string last_transport() const {
    absl::MutexLock lock(&mu_);
    return last_transport_;
  }

 private:
  mutable absl::Mutex mu_;
  std::string last_transport_ ABSL_GUARDED_BY(mu_);
};

}  // namespace callmodel

#endif  // LOCUS_TESTS_CALLMODEL_CALLMODEL_SERVICES_H_
