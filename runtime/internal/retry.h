// Retries of calls: transparent ones (the server never saw the call), those
// a method's retry policy allows (locus/retry_policy.h), and the waits of
// wait_for_ready calls for a connection. The rules live in RetryState; the
// drivers below apply them to any channel that can make one attempt of a
// call at a time (AttemptingChannel): the single-server channel
// (runtime/channel.cc), also as a backend of a balanced channel, which
// retries calls no server saw across its backends itself
// (internal/balanced_channel.h).
//
// Example (a Channel built on an AttemptingChannel):
//   absl::Status MyChannel::CallUnary(const RpcMethod& method, const MessageLite& request,
//                                     MessageLite* response, const CallOptions& options) {
//     return CallUnaryWithRetries(*this, method, request, response, options);
//   }
//
// Thread-safety: the drivers are thread-safe as far as the channel is.
// Hazards: an attempt must fill its AttemptReport truthfully: a call
// reported as never seen by the server is sent again.
#ifndef LOCUS_RUNTIME_INTERNAL_RETRY_H_
#define LOCUS_RUNTIME_INTERNAL_RETRY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "absl/functional/any_invocable.h"
#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "internal/attempt_report.h"
#include "locus/call_options.h"
#include "locus/cancellation.h"
#include "locus/retry_policy.h"
#include "locus/service.h"
#include "locus/stream.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace locus::internal {

// A call that the server never saw is sent again at most this many times
// (a server that refuses every call with GOAWAY must not keep a call
// without a deadline going round for ever).
inline constexpr int kMaxTransparentRetries = 5;

// A channel that makes one attempt of a call at a time and says in an
// AttemptReport whether the server saw it.
//
// Calls that outlive the call to the driver that started them (an
// asynchronous call with attempts to come, a stream with a retry policy)
// hold the channel weakly: dropping the channel ends them (CANCELLED), as
// it ends the calls in progress on its connections. Such a call watches
// dropped() to end its waits between attempts.
class AttemptingChannel : public std::enable_shared_from_this<AttemptingChannel> {
 public:
  virtual ~AttemptingChannel() { dropped_->Cancel(); }

  // Cancelled when the channel is destroyed.
  const std::shared_ptr<CancellationState>& dropped() const { return dropped_; }

  // One attempt of a unary call.
  virtual absl::Status AttemptUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                                    google::protobuf::MessageLite* response, const CallOptions& options,
                                    AttemptReport* report) = 0;
  // One attempt of an asynchronous unary call: OK if it started (`done`
  // taken; it runs once, when the attempt ends, after `later` (if set) is
  // filled, which must stay valid until then), else why not, with `done`
  // untouched and `refusal` filled.
  virtual absl::Status TryStartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                                     google::protobuf::MessageLite* response, const CallOptions& options,
                                     absl::AnyInvocable<void(absl::Status) &&>& done,
                                     AttemptReport* refusal, AttemptReport* later) = 0;
  // One attempt of a streaming call (Channel::OpenStream): the stream, or
  // why it could not start. `report` is filled before the stream ends (or
  // before this returns a failure).
  virtual absl::StatusOr<std::unique_ptr<ClientCallStream>> AttemptStream(
      const RpcMethod& method, const google::protobuf::MessageLite* request,
      google::protobuf::MessageLite* response, const CallOptions& options,
      std::shared_ptr<AttemptReport> report) = 0;
  // When a call that found no connection (report.no_route) may find one:
  // the next connection attempt the backoff allows (InfinitePast: now).
  virtual absl::Time NextConnectAttempt() = 0;
  // The retry policy for `method` on this channel, or nullptr.
  virtual const RetryPolicy* RetryPolicyFor(const RpcMethod& method) = 0;
  // Whether unary calls the server never saw are retried (or wait for a
  // connection) here. False for a backend of a balanced channel: such a
  // call ends at once, marked not seen (call_not_seen.h), and the balancer
  // sends it to another backend, so that the two layers never both retry
  // it. (The balancer does not retry streams: their backend does.)
  virtual bool RetriesNotSeenUnaryCalls() const { return true; }

  // Retries made, by kind (tests, diagnostics).
  struct RetryStats {
    uint64_t transparent = 0;  // the server never saw the attempt
    uint64_t by_policy = 0;    // after a retryable status
    uint64_t waits = 0;        // wait_for_ready waits for a connection
  };
  RetryStats retry_stats() const {
    return RetryStats{transparent_.load(std::memory_order_relaxed), by_policy_.load(std::memory_order_relaxed),
                      waits_.load(std::memory_order_relaxed)};
  }

 private:
  friend class RetryState;
  const std::shared_ptr<CancellationState> dropped_ = std::make_shared<CancellationState>();
  std::atomic<uint64_t> transparent_{0};
  std::atomic<uint64_t> by_policy_{0};
  std::atomic<uint64_t> waits_{0};
};

// The rules: whether a failed attempt is tried again, and when.
//   * The call's deadline or its cancellation ended it: never.
//   * The server never saw it (the report, or the status's not-seen mark,
//     call_not_seen.h; either implies the other in the outcome) and the
//     channel leaves such unary calls to a layer above
//     (RetriesNotSeenUnaryCalls()): never.
//   * The server never saw it (report.not_processed): again at once, up to
//     kMaxTransparentRetries times; it counts as no attempt of the policy.
//   * No connection (report.no_route): with wait_for_ready, again at the
//     next connection attempt if that comes before the deadline (else
//     DEADLINE_EXCEEDED); without, only as the policy allows.
//   * Otherwise, if the policy lists the status code and attempts remain:
//     after RetryDelay, if that ends before the deadline.
// `committed` (streams): messages were exchanged that another attempt
// could not repeat; then nothing is retried.
class RetryState {
 public:
  // `policy` may be null (transparent retries and waits only); it is
  // ignored for oneway methods.
  RetryState(AttemptingChannel* channel, const RpcMethod& method, const RetryPolicy* policy,
             const CallOptions& options);
  RetryState(RetryState&&) = default;

  struct Decision {
    bool retry = false;
    absl::Time not_before = absl::InfinitePast();  // when the next attempt may start
    absl::Status status;                           // the call's outcome if !retry
  };
  Decision OnFailure(const absl::Status& status, const AttemptReport& report, bool committed,
                     absl::Time now, absl::BitGenRef random);
  // Attempts made so far that count against the policy.
  int attempts() const { return attempts_; }

 private:
  AttemptingChannel* channel_;
  const RetryPolicy* policy_;
  absl::Time deadline_;
  bool wait_for_ready_;
  std::optional<Cancellation> cancellation_;
  int attempts_ = 1;
  int transparent_ = 0;
  bool leaves_not_seen_;  // !RetriesNotSeenUnaryCalls() and a unary method
};

// Something that ends a wait between attempts early; Wake() from any
// thread, any number of times.
class Wakeup {
 public:
  void Wake() {
    absl::MutexLock lock(&mu_);
    woken_ = true;
  }
  // Until woken or `until`; whether woken.
  bool WaitUntil(absl::Time until) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithDeadline(absl::Condition(&woken_), until);
    return woken_;
  }

 private:
  absl::Mutex mu_;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
};

// Waits until `until`, the cancellation or `wake` (if set); false if
// ended early.
bool SleepUntil(absl::Time until, const std::optional<Cancellation>& cancellation,
                std::shared_ptr<Wakeup> wake = nullptr);

// The drivers: a call over `channel` with every retry its rules allow.
// The final status is the last attempt's (or DEADLINE_EXCEEDED / CANCELLED
// while waiting between attempts).
absl::Status CallUnaryWithRetries(AttemptingChannel& channel, const RpcMethod& method,
                                  const google::protobuf::MessageLite& request,
                                  google::protobuf::MessageLite* response, const CallOptions& options);
// Asynchronous: attempts the call at once; retries after the first
// attempt need the request later, so they copy it: only for methods with a
// retry policy and without attachments (whose descriptors the caller may
// close once this returns), and for wait_for_ready calls that found no
// connection. Attempts after a wait run on a runtime pool thread, never on
// the timer thread nor on the thread that read a failed attempt's reply.
void StartUnaryWithRetries(AttemptingChannel& channel, const RpcMethod& method,
                           const google::protobuf::MessageLite& request,
                           google::protobuf::MessageLite* response, const CallOptions& options,
                           absl::AnyInvocable<void(absl::Status) &&> done);
// Streams: opened with waits for a connection and transparent retries;
// for a method with a retry policy, reopened after a retryable failure
// until committed (a client-streaming or bidirectional call once its first
// message was sent, any once a message was received; the request of a
// server-streaming call is kept for that).
std::unique_ptr<ClientCallStream> OpenStreamWithRetries(AttemptingChannel& channel, const RpcMethod& method,
                                                        const google::protobuf::MessageLite* request,
                                                        google::protobuf::MessageLite* response,
                                                        const CallOptions& options);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_RETRY_H_
