// The connection-life tests' service (connlife.proto): its calls fail as
// their client metadata asks, so that the tests can count the attempts a
// retry policy makes.
//
// Example:
//   locus::connlife::FlakyService flaky;
//   server.RegisterService(&flaky);
//   locus::CallOptions options = FlakyService::Failing("k", 2, absl::StatusCode::kUnavailable);
//   stub.Call(note, options);           // the third attempt succeeds
//   EXPECT_EQ(flaky.attempts("k"), 3);
#ifndef LOCUS_TESTS_CALLMODEL_FLAKY_SERVICE_H_
#define LOCUS_TESTS_CALLMODEL_FLAKY_SERVICE_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "connlife.locus.h"

namespace locus::connlife {

class FlakyService final : public Flaky::Service {
 public:
  // Options whose calls fail `times` attempts with `code`, when `when`
  // says ("open" or "message"), counted under `key`.
  static CallOptions Failing(const std::string& key, int times, absl::StatusCode code,
                             const std::string& when = "open", absl::Duration timeout = absl::Seconds(60)) {
    CallOptions options = CallOptions::WithTimeout(timeout);
    options.metadata = {{"flaky-key", key},
                        {"flaky-fail", absl::StrCat(times)},
                        {"flaky-code", absl::StrCat(static_cast<int>(code))},
                        {"flaky-when", when}};
    return options;
  }

  // Attempts the server saw under `key`.
  int attempts(const std::string& key) {
    absl::MutexLock lock(&mu_);
    auto it = attempts_.find(key);
    return it == attempts_.end() ? 0 : it->second;
  }

  absl::Status Call(ServerContext* context, const Note* request, Note* reply) override {
    const Attempt attempt = Begin(context);
    if (!attempt.failure.ok()) return attempt.failure;
    reply->set_text(request->text());
    reply->set_attempt(attempt.number);
    return absl::OkStatus();
  }
  absl::Status CallOnce(ServerContext* context, const Note* request, Note* reply) override {
    return Call(context, request, reply);
  }
  absl::Status Hold(ServerContext* context, const Note* request, Note* reply) override {
    const std::string key(context->client_metadata_value("flaky-key"));
    absl::MutexLock lock(&mu_);
    ++holding_;
    auto released = [this, &key]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return released_.contains(key); };
    // Cancellation has no event to wait on: looked at every millisecond.
    while (!mu_.AwaitWithTimeout(absl::Condition(&released), absl::Milliseconds(1))) {
      if (context->IsCancelled()) {
        --holding_;
        ++cancelled_holds_;
        return absl::CancelledError("hold cancelled");
      }
    }
    --holding_;
    reply->set_text(request->text());
    return absl::OkStatus();
  }
  // Lets the Hold calls under `key` answer.
  void Release(const std::string& key) {
    absl::MutexLock lock(&mu_);
    released_.insert(key);
  }
  int holding() {
    absl::MutexLock lock(&mu_);
    return holding_;
  }
  int cancelled_holds() {
    absl::MutexLock lock(&mu_);
    return cancelled_holds_;
  }
  // Options whose Hold calls wait for Release(key).
  static CallOptions Holding(const std::string& key, absl::Duration timeout = absl::Seconds(60)) {
    CallOptions options = CallOptions::WithTimeout(timeout);
    options.metadata = {{"flaky-key", key}};
    return options;
  }
  absl::Status Watch(ServerContext* context, const Note*, ServerWriter<Note>* writer) override {
    const Attempt attempt = Begin(context);
    if (!attempt.failure.ok() && !attempt.after_message) return attempt.failure;
    for (int i = 1; i <= 3; ++i) {
      Note note;
      note.set_text(absl::StrCat(i));
      note.set_attempt(attempt.number);
      if (!writer->Write(note)) return absl::CancelledError("client went away");
      if (!attempt.failure.ok()) return attempt.failure;  // after one message
    }
    return absl::OkStatus();
  }
  absl::Status Upload(ServerContext* context, ServerReader<Note>* reader, Note* reply) override {
    const Attempt attempt = Begin(context);
    if (!attempt.failure.ok() && !attempt.after_message) return attempt.failure;
    Note note;
    int count = 0;
    while (reader->Read(&note)) {
      ++count;
      if (!attempt.failure.ok()) return attempt.failure;  // after one message
    }
    reply->set_text(absl::StrCat(count));
    reply->set_attempt(attempt.number);
    return absl::OkStatus();
  }
  absl::Status Chat(ServerContext* context, ServerReaderWriter<Note, Note>* stream) override {
    const Attempt attempt = Begin(context);
    if (!attempt.failure.ok() && !attempt.after_message) return attempt.failure;
    Note note;
    if (attempt.failure.ok()) {
      note.set_text("ready");
      note.set_attempt(attempt.number);
      if (!stream->Write(note)) return absl::CancelledError("client went away");
    }
    while (stream->Read(&note)) {
      if (!attempt.failure.ok()) return attempt.failure;  // after one message
      note.set_attempt(attempt.number);
      if (!stream->Write(note)) return absl::CancelledError("client went away");
    }
    return absl::OkStatus();
  }

 private:
  struct Attempt {
    int number = 0;
    absl::Status failure;  // OK: this attempt succeeds
    bool after_message = false;
  };

  Attempt Begin(ServerContext* context) {
    const std::string key(context->client_metadata_value("flaky-key"));
    int fail = 0;
    int code = 0;
    (void)absl::SimpleAtoi(context->client_metadata_value("flaky-fail"), &fail);
    (void)absl::SimpleAtoi(context->client_metadata_value("flaky-code"), &code);
    Attempt attempt;
    {
      absl::MutexLock lock(&mu_);
      attempt.number = ++attempts_[key];
    }
    if (attempt.number <= fail) {
      attempt.failure = absl::Status(static_cast<absl::StatusCode>(code),
                                     absl::StrCat("attempt ", attempt.number, " of ", key, " fails"));
      attempt.after_message = context->client_metadata_value("flaky-when") == "message";
    }
    return attempt;
  }

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> attempts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> released_ ABSL_GUARDED_BY(mu_);
  int holding_ ABSL_GUARDED_BY(mu_) = 0;
  int cancelled_holds_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace locus::connlife

#endif  // LOCUS_TESTS_CALLMODEL_FLAKY_SERVICE_H_
