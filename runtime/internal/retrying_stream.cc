// OpenStreamWithRetries (retry.h): streams opened with waits for a
// connection and transparent retries, and, for methods with a retry
// policy, reopened after a retryable failure until the call is committed.
#include <atomic>
#include <memory>
#include <optional>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/message_lite.h"
#include "internal/retry.h"
#include "internal/stream_call.h"

namespace locus::internal {
namespace {

absl::Status Dropped(const RpcMethod& method) {
  return absl::CancelledError(absl::StrCat("call to ", method.full_name, ": its channel was dropped"));
}

// Attempts to open the stream until one starts or the rules end the call:
// the stream, or the call's status. `wake` (if set) ends a wait between
// attempts as a cancellation does (RetryingStream::Cancel).
// `channel` gives the channel for one attempt and its decision (null: it
// was dropped; the call ends CANCELLED); nothing holds it during a wait.
absl::StatusOr<std::unique_ptr<ClientCallStream>> OpenAttempts(
    absl::FunctionRef<std::shared_ptr<AttemptingChannel>()> channel, const RpcMethod& method,
    const google::protobuf::MessageLite* request, google::protobuf::MessageLite* response,
    const CallOptions& options, RetryState& state, std::shared_ptr<AttemptReport>* report,
    std::shared_ptr<Wakeup> wake = nullptr) {
  thread_local absl::BitGen random;
  for (;;) {
    RetryState::Decision decision;
    {
      std::shared_ptr<AttemptingChannel> now = channel();
      if (now == nullptr) return Dropped(method);
      *report = std::make_shared<AttemptReport>();
      absl::StatusOr<std::unique_ptr<ClientCallStream>> stream =
          now->AttemptStream(method, request, response, options, *report);
      if (stream.ok()) return stream;
      decision = state.OnFailure(stream.status(), **report, /*committed=*/false, absl::Now(), random);
    }
    if (!decision.retry) return decision.status;
    if (!SleepUntil(decision.not_before, options.cancellation, wake)) {
      return absl::CancelledError(absl::StrCat("call to ", method.full_name, " cancelled between attempts"));
    }
  }
}

// A stream of a method with a retry policy: the attempt in use, replaced
// after a failure the rules allow to retry (RetryState) until the call is
// committed: a message received, or (client-streaming, bidirectional) one
// sent. Committed, every operation goes straight to the attempt.
//
// Thread-safety: as ClientCallStream (a Read beside a Write; Finish and
// Cancel from anywhere). Replacing the attempt is serialized by
// `recover_mu_`; an operation that failed on an attempt already replaced
// is made again on the new one.
class RetryingStream final : public ClientCallStream {
 public:
  RetryingStream(AttemptingChannel& channel, const RpcMethod& method,
                 const google::protobuf::MessageLite* request, google::protobuf::MessageLite* response,
                 const CallOptions& options, RetryState state, std::unique_ptr<ClientCallStream> first,
                 std::shared_ptr<AttemptReport> first_report)
      : channel_(channel.weak_from_this()),
        dropped_(channel.dropped()),
        method_(method),
        request_(request != nullptr ? request->New() : nullptr),
        response_(response),
        options_(options),
        trailers_before_(options.trailing_metadata != nullptr ? options.trailing_metadata->size() : 0),
        state_(std::move(state)),
        attempt_(std::move(first)),
        report_(std::move(first_report)) {
    if (request != nullptr) request_->CheckTypeAndMergeFrom(*request);
  }

  ~RetryingStream() override = default;  // the attempt cancels itself if unfinished

  bool Write(const google::protobuf::MessageLite& message) override {
    for (;;) {
      auto [attempt, generation] = Begin();
      if (attempt == nullptr) return false;
      // The server may act on what it has: never sent again.
      const bool written = attempt->Write(message);
      End(written);
      if (written) return true;
      if (!Recover(generation, nullptr)) return false;
    }
  }

  bool WritesDone() override {
    writes_done_.store(true, std::memory_order_release);
    for (;;) {
      auto [attempt, generation] = Current();
      if (attempt == nullptr) return false;
      if (attempt->WritesDone()) return true;
      if (!Recover(generation, nullptr)) return false;
    }
  }

  bool Read(google::protobuf::MessageLite* message) override {
    for (;;) {
      auto [attempt, generation] = Begin();
      if (attempt == nullptr) return false;
      const bool read = attempt->Read(message);
      End(read);
      if (read) return true;
      // The end of the stream or a failure: Recover tells them apart.
      if (!Recover(generation, nullptr)) return false;
    }
  }

  absl::Status Finish() override {
    for (;;) {
      auto [attempt, generation] = Current();
      if (attempt == nullptr) return FinalStatus();
      absl::Status status = attempt->Finish();
      if (!Recover(generation, &status)) return FinalStatus();
    }
  }

  void Cancel() override {
    std::shared_ptr<ClientCallStream> attempt;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      attempt = attempt_;
      if (wake_ != nullptr) wake_->Wake();  // a recovery waiting to retry
    }
    if (attempt != nullptr) attempt->Cancel();
  }

 private:
  std::pair<std::shared_ptr<ClientCallStream>, uint64_t> Current() {
    absl::MutexLock lock(&mu_);
    if (final_.has_value()) return {nullptr, generation_};
    return {attempt_, generation_};
  }

  // A Write or Read begins on the current attempt: counted in flight until
  // End, which commits the call if it handed a message over or got one.
  // Recover decides only once no operation is in flight, so that an
  // operation that succeeds on the failed attempt is never followed by a
  // new attempt that lacks its message.
  std::pair<std::shared_ptr<ClientCallStream>, uint64_t> Begin() {
    absl::MutexLock lock(&mu_);
    if (final_.has_value()) return {nullptr, generation_};
    ++in_flight_;
    return {attempt_, generation_};
  }
  void End(bool committed) {
    absl::MutexLock lock(&mu_);
    --in_flight_;
    if (committed) committed_ = true;
  }

  absl::Status FinalStatus() {
    absl::MutexLock lock(&mu_);
    return final_.value_or(absl::InternalError("stream ended without a status"));
  }

  // An operation failed on attempt `generation`. Returns true if the
  // operation should be made again (the attempt was replaced), false if
  // the call is over (final_ holds its status). `finished`: the attempt's
  // status if Finish already returned it.
  bool Recover(uint64_t generation, absl::Status* finished) {
    absl::MutexLock recovering(&recover_mu_);
    std::shared_ptr<ClientCallStream> attempt;
    std::shared_ptr<AttemptReport> report;
    {
      absl::MutexLock lock(&mu_);
      if (final_.has_value()) return false;
      if (generation_ != generation) return true;  // replaced meanwhile
      attempt = attempt_;
      report = report_;
    }
    // Returns at once: the operation failed because the call is over.
    absl::Status status = finished != nullptr ? std::move(*finished) : attempt->Finish();
    bool committed;
    {
      // The attempt is over: what is in flight on it returns promptly, and
      // nothing new starts on another (only this recovery replaces it).
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](int* in_flight) { return *in_flight == 0; }, &in_flight_));
      committed = committed_ || cancelled_;
    }
    RetryState::Decision decision;
    if (status.ok()) {
      decision.status = std::move(status);
    } else {
      thread_local absl::BitGen random;
      // The rules consult the channel (its backoff, its policy).
      std::shared_ptr<AttemptingChannel> channel = channel_.lock();
      if (channel == nullptr) {
        decision.status = Dropped(method_);
      } else {
        decision = state_.OnFailure(status, *report, committed, absl::Now(), random);
      }
    }
    // Cancel() wakes both waits: the backoff, and the reopening's waits.
    auto wake = std::make_shared<Wakeup>();
    CancellationRegistration dropped;  // so does the channel's destruction
    if (decision.retry) {
      dropped = CancellationRegistration::Watch(dropped_, [wake] { wake->Wake(); });
      if (!dropped.active()) wake->Wake();
      {
        absl::MutexLock lock(&mu_);
        if (cancelled_) wake->Wake();
        wake_ = wake;
      }
      if (!SleepUntil(decision.not_before, options_.cancellation, wake)) {
        decision.retry = false;
        decision.status =
            absl::CancelledError(absl::StrCat("call to ", method_.full_name, " cancelled between attempts"));
      }
    }
    if (decision.retry) {
      if (response_ != nullptr) response_->Clear();
      if (options_.trailing_metadata != nullptr && options_.trailing_metadata->size() > trailers_before_) {
        options_.trailing_metadata->resize(trailers_before_);
      }
      absl::StatusOr<std::unique_ptr<ClientCallStream>> reopened =
          OpenAttempts([this] { return channel_.lock(); }, method_, request_.get(), response_, options_, state_,
                       &report, wake);
      {
        absl::MutexLock lock(&mu_);
        wake_ = nullptr;
      }
      if (reopened.ok()) {
        std::shared_ptr<ClientCallStream> fresh = *std::move(reopened);
        // A half-close made on the failed attempt is made again.
        if (writes_done_.load(std::memory_order_acquire)) fresh->WritesDone();
        absl::MutexLock lock(&mu_);
        if (!cancelled_) {
          attempt_ = std::move(fresh);
          report_ = std::move(report);
          ++generation_;
          return true;
        }
        decision.status = absl::CancelledError(absl::StrCat("call to ", method_.full_name, " cancelled"));
      } else {
        decision.status = reopened.status();
      }
    }
    absl::MutexLock lock(&mu_);
    wake_ = nullptr;
    final_ = std::move(decision.status);
    return false;
  }

  // Weakly: a stream its user's channel no longer holds ends CANCELLED.
  const std::weak_ptr<AttemptingChannel> channel_;
  const std::shared_ptr<CancellationState> dropped_;  // the channel's dropped()
  const RpcMethod& method_;
  const std::unique_ptr<google::protobuf::MessageLite> request_;  // server streaming: kept for reopening
  google::protobuf::MessageLite* const response_;
  const CallOptions options_;
  const size_t trailers_before_;
  std::atomic<bool> writes_done_{false};
  absl::Mutex recover_mu_;  // one recovery at a time; taken before mu_
  RetryState state_ ABSL_GUARDED_BY(recover_mu_);  // points into the channel: used while it is locked
  absl::Mutex mu_;
  std::shared_ptr<ClientCallStream> attempt_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<AttemptReport> report_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;       // Writes and Reads on attempt_ (Begin, End)
  bool committed_ ABSL_GUARDED_BY(mu_) = false;  // a message handed over or received
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<Wakeup> wake_ ABSL_GUARDED_BY(mu_);  // while a recovery waits
  std::optional<absl::Status> final_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<ClientCallStream> OpenStreamWithRetries(AttemptingChannel& channel, const RpcMethod& method,
                                                        const google::protobuf::MessageLite* request,
                                                        google::protobuf::MessageLite* response,
                                                        const CallOptions& options) {
  const RetryPolicy* policy = channel.RetryPolicyFor(method);
  RetryState state(&channel, method, policy, options);
  std::shared_ptr<AttemptReport> report;
  // The caller holds the channel throughout.
  absl::StatusOr<std::unique_ptr<ClientCallStream>> stream = OpenAttempts(
      [&channel] { return std::shared_ptr<AttemptingChannel>(std::shared_ptr<void>(), &channel); }, method,
      request, response, options, state, &report);
  if (!stream.ok()) return MakeFailedClientStream(stream.status());
  if (policy == nullptr) return *std::move(stream);
  return std::make_unique<RetryingStream>(channel, method, request, response, options,
                                          std::move(state), *std::move(stream), std::move(report));
}

}  // namespace locus::internal
