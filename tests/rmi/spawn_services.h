// The root objects of the parent/child tests (spawn_test.proto), shared by
// the test (the parent) and its child process.
#ifndef LOCUS_TESTS_RMI_SPAWN_SERVICES_H_
#define LOCUS_TESTS_RMI_SPAWN_SERVICES_H_

#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "locus/object.h"
#include "spawn_test.locus.h"

namespace spawntest {

// A side's root. `other_root` reaches the other side's (AskBack).
class PeerImpl final : public Peer::Service {
 public:
  using OtherRoot = std::function<absl::StatusOr<locus::Remote<Peer>>()>;
  explicit PeerImpl(OtherRoot other_root) : other_root_(std::move(other_root)) {}

  absl::Status Say(locus::ServerContext* context, const Text* request, Said* reply) override {
    const char* greeting = std::getenv("SPAWN_TEST_GREETING");
    reply->set_text(greeting == nullptr ? request->text() : std::string(greeting) + ": " + request->text());
    reply->set_pid(getpid());
    reply->set_transport(context->peer().transport);
    reply->set_caller_has_credentials(context->peer().has_credentials);
    reply->set_caller_pid(context->peer().pid);
    absl::MutexLock lock(&mu_);
    heard_.push_back(request->text());
    return absl::OkStatus();
  }

  absl::Status AskBack(locus::ServerContext*, const Text* request, Said* reply) override {
    absl::StatusOr<locus::Remote<Peer>> other = other_root_();
    if (!other.ok()) return other.status();
    absl::StatusOr<Said> said = (*other)->Say(*request);
    if (!said.ok()) return said.status();
    *reply = *said;
    return absl::OkStatus();
  }

  absl::Status Work(locus::ServerContext*, const WorkRequest* request, Said* reply) override {
    absl::StatusOr<locus::Remote<Progress>> progress = locus::Remote<Progress>::From(request->progress());
    if (!progress.ok()) return progress.status();
    for (int step = 1; step <= request->steps(); ++step) {
      Update update;
      update.set_step(step);
      absl::StatusOr<Empty> reported = (*progress)->Report(update);
      if (!reported.ok()) return reported.status();
    }
    reply->set_pid(getpid());
    return absl::OkStatus();
  }

  // Waits (until `deadline`) for a Say of `text`.
  bool WaitToHear(const std::string& text, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto heard = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      for (const std::string& said : heard_) {
        if (said == text) return true;
      }
      return false;
    };
    return mu_.AwaitWithDeadline(absl::Condition(&heard), deadline);
  }

 private:
  const OtherRoot other_root_;
  absl::Mutex mu_;
  std::vector<std::string> heard_ ABSL_GUARDED_BY(mu_);
};

class ProgressImpl final : public Progress::Service {
 public:
  absl::Status Report(locus::ServerContext*, const Update* update, Empty*) override {
    absl::MutexLock lock(&mu_);
    steps_.push_back(update->step());
    return absl::OkStatus();
  }
  std::vector<int> steps() {
    absl::MutexLock lock(&mu_);
    return steps_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int> steps_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spawntest

#endif  // LOCUS_TESTS_RMI_SPAWN_SERVICES_H_
