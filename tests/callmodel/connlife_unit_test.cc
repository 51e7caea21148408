// The pieces of a connection's life without a transport: the backoffs
// (backoff.h), the retry rules (RetryState), a channel's connection
// attempts (ConnectAttempts), and ConnectionCore's keepalive, idle and age
// limits and its reports of calls the peer never processed, against a
// scripted peer on an in-process connection pair.
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "base/timer_queue.h"
#include "conformance.locus.h"
#include "gtest/gtest.h"
#include "internal/backoff.h"
#include "internal/call_header_codec.h"
#include "internal/connect_attempts.h"
#include "internal/connection_core.h"
#include "internal/inproc_connection.h"
#include "internal/retry.h"
#include "internal/service_table.h"
#include "internal/thread_pool.h"
#include "locus/wire.pb.h"
#include "conformance_fixture.h"
#include "test_service.h"
#include "tests/testing/test_util.h"

namespace locus::internal {
namespace {

using ::locus::conformance::EchoReply;
using ::locus::conformance::EchoRequest;
using ::locus::conformance::TestService;
using ::locus::conformance::TestServiceImpl;
using ::locus::conformance::WaitReply;
using ::locus::conformance::WaitRequest;
using ::locus::testing::kWatchdog;

// Random bits that make absl::Uniform draw its lower bound, or a value
// just below its upper bound. (All zeros or all ones would make it draw
// again for ever: it rejects them.)
struct FixedBits {
  using result_type = uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<uint64_t>::max(); }
  result_type operator()() { return value; }
  result_type value;
};
FixedBits Lowest() { return FixedBits{1}; }
FixedBits Highest() { return FixedBits{0xFFFFFFFFFFFFF000ull}; }

// ---------------------------------------------------------------------------
// Backoffs

TEST(ExponentialBackoff, GrpcsSequenceWithinItsJitter) {
  ConnectionBackoff options;  // 1 s, x1.6, +-0.2, at most 120 s
  ExponentialBackoff backoff(options);
  FixedBits low = Lowest();
  FixedBits high = Highest();
  EXPECT_EQ(backoff.NextDelay(high), absl::Seconds(1));  // the first: exactly initial_backoff
  double expected = 1.0;
  for (int i = 0; i < 20; ++i) {
    expected = std::min(expected * 1.6, 120.0);
    const double seconds = absl::ToDoubleSeconds(backoff.NextDelay(i % 2 == 0 ? low : high));
    if (i % 2 == 0) {
      EXPECT_NEAR(seconds, expected * 0.8, 1e-6) << "retry " << i;
    } else {
      EXPECT_NEAR(seconds, expected * 1.2, 1e-6) << "retry " << i;
    }
  }
  EXPECT_NEAR(expected, 120.0, 1e-9);  // the cap was reached
  backoff.Reset();
  EXPECT_EQ(backoff.NextDelay(low), absl::Seconds(1));
}

TEST(RetryDelay, FullJitterBelowTheCappedExponential) {
  RetryPolicy policy;
  policy.initial_backoff = absl::Milliseconds(100);
  policy.max_backoff = absl::Seconds(1);
  policy.backoff_multiplier = 3;
  FixedBits low = Lowest();
  FixedBits high = Highest();
  EXPECT_EQ(RetryDelay(policy, 1, low), absl::ZeroDuration());
  EXPECT_NEAR(absl::ToDoubleSeconds(RetryDelay(policy, 1, high)), 0.1, 1e-6);
  EXPECT_NEAR(absl::ToDoubleSeconds(RetryDelay(policy, 2, high)), 0.3, 1e-6);
  EXPECT_NEAR(absl::ToDoubleSeconds(RetryDelay(policy, 3, high)), 0.9, 1e-6);
  EXPECT_NEAR(absl::ToDoubleSeconds(RetryDelay(policy, 4, high)), 1.0, 1e-6);    // capped
  EXPECT_NEAR(absl::ToDoubleSeconds(RetryDelay(policy, 4000, high)), 1.0, 1e-6);  // no overflow
  EXPECT_LE(RetryDelay(policy, 1, high), absl::Milliseconds(100));
}

TEST(RetryPolicy, AttemptsAreBoundedAndCodesAreBits) {
  RetryPolicy policy;
  EXPECT_EQ(policy.attempts(), 1);
  policy.max_attempts = 9;
  EXPECT_EQ(policy.attempts(), RetryPolicy::kMaxAttempts);
  policy.retryable_codes = RetryPolicy::Code(absl::StatusCode::kUnavailable);
  EXPECT_TRUE(policy.Retries(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(policy.Retries(absl::StatusCode::kAborted));
  EXPECT_FALSE(policy.Retries(static_cast<absl::StatusCode>(40)));
}

// ---------------------------------------------------------------------------
// The retry rules

// What RetryState asks of a channel: when it may connect next.
class FakeChannel final : public AttemptingChannel {
 public:
  absl::Status AttemptUnary(const RpcMethod&, const google::protobuf::MessageLite&,
                            google::protobuf::MessageLite*, const CallOptions&, AttemptReport*) override {
    return absl::UnimplementedError("not here");
  }
  absl::Status TryStartUnary(const RpcMethod&, const google::protobuf::MessageLite&,
                             google::protobuf::MessageLite*, const CallOptions&,
                             absl::AnyInvocable<void(absl::Status) &&>&, AttemptReport*,
                             AttemptReport*) override {
    return absl::UnimplementedError("not here");
  }
  absl::StatusOr<std::unique_ptr<ClientCallStream>> AttemptStream(const RpcMethod&,
                                                                  const google::protobuf::MessageLite*,
                                                                  google::protobuf::MessageLite*,
                                                                  const CallOptions&,
                                                                  std::shared_ptr<AttemptReport>) override {
    return absl::UnimplementedError("not here");
  }
  absl::Time NextConnectAttempt() override { return next_connect; }
  const RetryPolicy* RetryPolicyFor(const RpcMethod&) override { return nullptr; }

  absl::Time next_connect = absl::InfinitePast();
};

const RpcMethod kUnary = {"/t.S/M", RpcKind::kUnary, false};
const RpcMethod kOneway = {"/t.S/Fire", RpcKind::kUnary, true};

RetryPolicy ThreeAttemptsOnUnavailable() {
  RetryPolicy policy;
  policy.max_attempts = 3;
  policy.initial_backoff = absl::Milliseconds(10);
  policy.max_backoff = absl::Milliseconds(10);
  policy.retryable_codes = RetryPolicy::Code(absl::StatusCode::kUnavailable);
  return policy;
}

TEST(RetryState, ACallTheServerNeverSawIsSentAgainAtOnceABoundedNumberOfTimes) {
  FakeChannel channel;
  const absl::Time now = absl::Now();
  RetryState state(&channel, kUnary, nullptr, CallOptions::WithDeadline(now + absl::Hours(1)));
  AttemptReport refused;
  refused.not_processed = true;
  FixedBits random = Lowest();
  for (int i = 0; i < kMaxTransparentRetries; ++i) {
    RetryState::Decision decision =
        state.OnFailure(absl::UnavailableError("GOAWAY"), refused, false, now, random);
    ASSERT_TRUE(decision.retry) << i;
    EXPECT_EQ(decision.not_before, now);
  }
  RetryState::Decision last = state.OnFailure(absl::UnavailableError("GOAWAY"), refused, false, now, random);
  EXPECT_FALSE(last.retry);
  EXPECT_EQ(last.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(channel.retry_stats().transparent, static_cast<uint64_t>(kMaxTransparentRetries));
}

TEST(RetryState, ACallTheServerMaySeeIsNotSentAgainWithoutAPolicy) {
  FakeChannel channel;
  const absl::Time now = absl::Now();
  RetryState state(&channel, kUnary, nullptr, CallOptions::WithDeadline(now + absl::Hours(1)));
  FixedBits random = Lowest();
  EXPECT_FALSE(state.OnFailure(absl::UnavailableError("lost"), AttemptReport(), false, now, random).retry);
}

TEST(RetryState, NoConnectionFailsFastUnlessWaitForReady) {
  FakeChannel channel;
  const absl::Time now = absl::Now();
  channel.next_connect = now + absl::Seconds(3);
  AttemptReport no_route;
  no_route.no_route = true;
  FixedBits random = Lowest();
  CallOptions fail_fast = CallOptions::WithDeadline(now + absl::Hours(1));
  RetryState fast(&channel, kUnary, nullptr, fail_fast);
  EXPECT_FALSE(fast.OnFailure(absl::UnavailableError("refused"), no_route, false, now, random).retry);

  CallOptions waits = fail_fast;
  waits.wait_for_ready = true;
  RetryState patient(&channel, kUnary, nullptr, waits);
  RetryState::Decision decision = patient.OnFailure(absl::UnavailableError("refused"), no_route, false, now, random);
  ASSERT_TRUE(decision.retry);
  EXPECT_EQ(decision.not_before, channel.next_connect);
  // A configuration error is no reason to wait.
  EXPECT_FALSE(
      patient.OnFailure(absl::FailedPreconditionError("policy"), no_route, false, now, random).retry);

  // The next attempt comes after the deadline: the wait ends now.
  CallOptions short_wait = CallOptions::WithDeadline(now + absl::Seconds(1));
  short_wait.wait_for_ready = true;
  RetryState too_late(&channel, kUnary, nullptr, short_wait);
  RetryState::Decision expired = too_late.OnFailure(absl::UnavailableError("refused"), no_route, false, now, random);
  EXPECT_FALSE(expired.retry);
  EXPECT_EQ(expired.status.code(), absl::StatusCode::kDeadlineExceeded) << expired.status;
  EXPECT_NE(expired.status.message().find("refused"), absl::string_view::npos) << expired.status;
}

TEST(RetryState, APolicyRetriesItsCodesUpToItsAttemptsWithinTheDeadline) {
  FakeChannel channel;
  const RetryPolicy policy = ThreeAttemptsOnUnavailable();
  const absl::Time now = absl::Now();
  RetryState state(&channel, kUnary, &policy, CallOptions::WithDeadline(now + absl::Hours(1)));
  FixedBits high = Highest();
  EXPECT_FALSE(state.OnFailure(absl::InternalError("bug"), AttemptReport(), false, now, high).retry);
  for (int attempt = 2; attempt <= 3; ++attempt) {
    RetryState::Decision decision = state.OnFailure(absl::UnavailableError("busy"), AttemptReport(), false, now, high);
    ASSERT_TRUE(decision.retry) << attempt;
    EXPECT_GT(decision.not_before, now);
    EXPECT_LE(decision.not_before, now + policy.max_backoff);
    EXPECT_EQ(state.attempts(), attempt);
  }
  EXPECT_FALSE(state.OnFailure(absl::UnavailableError("busy"), AttemptReport(), false, now, high).retry);
  EXPECT_EQ(channel.retry_stats().by_policy, 2u);

  // A wait that would end past the deadline is not begun.
  RetryState hurried(&channel, kUnary, &policy, CallOptions::WithDeadline(now + absl::Milliseconds(5)));
  RetryState::Decision late = hurried.OnFailure(absl::UnavailableError("busy"), AttemptReport(), false, now, high);
  EXPECT_FALSE(late.retry);
  EXPECT_EQ(late.status.code(), absl::StatusCode::kUnavailable);
}

TEST(RetryState, NothingIsRetriedOnceCommittedCancelledOrOneway) {
  FakeChannel channel;
  const RetryPolicy policy = ThreeAttemptsOnUnavailable();
  const absl::Time now = absl::Now();
  FixedBits random = Lowest();
  AttemptReport refused;
  refused.not_processed = true;
  RetryState committed(&channel, kUnary, &policy, CallOptions::WithDeadline(now + absl::Hours(1)));
  EXPECT_FALSE(committed.OnFailure(absl::UnavailableError("x"), refused, /*committed=*/true, now, random).retry);

  Cancellation cancel;
  CallOptions cancellable = CallOptions::WithDeadline(now + absl::Hours(1));
  cancellable.cancellation = cancel;
  RetryState cancelled(&channel, kUnary, &policy, cancellable);
  cancel.Cancel();
  RetryState::Decision after_cancel = cancelled.OnFailure(absl::UnavailableError("x"), refused, false, now, random);
  EXPECT_FALSE(after_cancel.retry);
  EXPECT_EQ(after_cancel.status.code(), absl::StatusCode::kCancelled);  // whatever the attempt said

  RetryState oneway(&channel, kOneway, &policy, CallOptions::WithDeadline(now + absl::Hours(1)));
  EXPECT_FALSE(oneway.OnFailure(absl::UnavailableError("x"), AttemptReport(), false, now, random).retry);

  RetryState expired(&channel, kUnary, &policy, CallOptions::WithDeadline(now - absl::Seconds(1)));
  EXPECT_FALSE(expired.OnFailure(absl::UnavailableError("x"), refused, false, now, random).retry);
}

TEST(SleepUntil, EndsAtTheCancellationOrTheWakeup) {
  Cancellation cancel;
  std::thread canceller([cancel] { cancel.Cancel(); });
  EXPECT_FALSE(SleepUntil(absl::Now() + kWatchdog, cancel));
  canceller.join();
  auto wake = std::make_shared<Wakeup>();
  std::thread waker([wake] {
    wake->Wake();
    wake->Wake();  // any number of times
  });
  EXPECT_FALSE(SleepUntil(absl::Now() + kWatchdog, std::nullopt, wake));
  waker.join();
  EXPECT_TRUE(SleepUntil(absl::Now() + absl::Milliseconds(1), Cancellation()));
}

// ---------------------------------------------------------------------------
// A channel's connection attempts

ConnectionBackoff HourLongBackoff() {
  ConnectionBackoff backoff;
  backoff.initial_backoff = absl::Hours(1);
  return backoff;
}

TEST(ConnectAttempts, AFailedAttemptMakesCallsFailFastUntilItsBackoffPassed) {
  auto attempts = ConnectAttempts::Create(HourLongBackoff(), absl::Seconds(20));
  const absl::Time before = absl::Now();
  absl::StatusOr<ConnectAttempts::Turn> turn = attempts->Await(absl::InfiniteFuture(), std::nullopt);
  ASSERT_TRUE(turn.ok()) << turn.status();
  ASSERT_TRUE(turn->dial);
  EXPECT_GE(turn->deadline, before + absl::Seconds(20));  // min_connect_timeout
  attempts->Failed(absl::UnavailableError("connection refused"));
  EXPECT_GE(attempts->next_attempt(), before + absl::Hours(1));
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<ConnectAttempts::Turn> again = attempts->Await(absl::InfiniteFuture(), std::nullopt);
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(again.status().message().find("connection refused"), absl::string_view::npos);
  }
  EXPECT_EQ(attempts->stats().attempts, 1u);
  EXPECT_EQ(attempts->stats().failures, 1u);
  // A configuration error is given back as it is.
  auto misconfigured = ConnectAttempts::Create(HourLongBackoff(), absl::Seconds(20));
  ASSERT_TRUE(misconfigured->Await(absl::InfiniteFuture(), std::nullopt).ok());
  misconfigured->Failed(absl::FailedPreconditionError("transport not allowed"));
  EXPECT_EQ(misconfigured->Await(absl::InfiniteFuture(), std::nullopt).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ConnectAttempts, OneAttemptAtATimeOthersWaitForItsOutcome) {
  auto attempts = ConnectAttempts::Create(HourLongBackoff(), absl::Seconds(20));
  ASSERT_TRUE(attempts->Await(absl::InfiniteFuture(), std::nullopt)->dial);
  // While it runs: a short deadline ends the wait, and so does a cancellation.
  EXPECT_EQ(attempts->Await(absl::Now() + absl::Milliseconds(20), std::nullopt).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  Cancellation cancel;
  std::atomic<pid_t> waiter_tid{0};
  absl::Status cancelled;
  std::thread waiter([&] {
    waiter_tid = ::locus::testing::ThisThreadId();
    cancelled = attempts->Await(absl::InfiniteFuture(), cancel).status();
  });
  ASSERT_TRUE(::locus::conformance::Eventually([&] { return waiter_tid.load() != 0; }));
  ASSERT_TRUE(::locus::testing::WaitUntilThreadBlocks(waiter_tid.load()));  // waiting in Await
  cancel.Cancel();
  waiter.join();
  EXPECT_EQ(cancelled.code(), absl::StatusCode::kCancelled) << cancelled;
  // A waiter learns of the outcome and looks again; nobody else dials.
  absl::StatusOr<ConnectAttempts::Turn> outcome;
  std::atomic<pid_t> second_tid{0};
  std::thread second([&] {
    second_tid = ::locus::testing::ThisThreadId();
    outcome = attempts->Await(absl::InfiniteFuture(), std::nullopt);
  });
  ASSERT_TRUE(::locus::conformance::Eventually([&] { return second_tid.load() != 0; }));
  ASSERT_TRUE(::locus::testing::WaitUntilThreadBlocks(second_tid.load()));  // waiting in Await
  attempts->Succeeded();
  second.join();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_FALSE(outcome->dial);
  EXPECT_EQ(attempts->stats().attempts, 1u);
}

TEST(ConnectAttempts, AnAbandonedAttemptIsNoFailureAndSuccessStartsTheBackoffOver) {
  ConnectionBackoff backoff;
  backoff.initial_backoff = absl::Milliseconds(1);
  backoff.jitter = 0;
  backoff.multiplier = 1000;
  auto attempts = ConnectAttempts::Create(backoff, absl::Seconds(20));
  ASSERT_TRUE(attempts->Await(absl::InfiniteFuture(), std::nullopt)->dial);
  attempts->Abandoned();
  ASSERT_TRUE(attempts->Await(absl::InfiniteFuture(), std::nullopt)->dial);  // at once
  attempts->Failed(absl::UnavailableError("refused"));                   // waits 1 ms
  absl::SleepFor(attempts->next_attempt() - absl::Now());
  ASSERT_TRUE(attempts->Await(absl::InfiniteFuture(), std::nullopt)->dial);
  attempts->Failed(absl::UnavailableError("refused"));  // waits 1 s
  const absl::Time second_wait = attempts->next_attempt();
  EXPECT_GT(second_wait, absl::Now() + absl::Milliseconds(500));
  // The call's deadline bounds an attempt, which may otherwise run as long
  // as the wait before it (1 s here) or connect_timeout.
  absl::SleepFor(second_wait - absl::Now());
  const absl::Time call_deadline = absl::Now() + absl::Milliseconds(5);
  absl::StatusOr<ConnectAttempts::Turn> bounded = attempts->Await(call_deadline, std::nullopt);
  ASSERT_TRUE(bounded.ok() && bounded->dial);
  EXPECT_EQ(bounded->deadline, call_deadline);
  attempts->Succeeded();
  ASSERT_TRUE(attempts->Await(absl::InfiniteFuture(), std::nullopt)->dial);
  attempts->Failed(absl::UnavailableError("refused"));
  EXPECT_LT(attempts->next_attempt(), absl::Now() + absl::Milliseconds(500));  // 1 ms again
  EXPECT_EQ(attempts->stats().failures, 3u);
}

// ---------------------------------------------------------------------------
// RetryingStream (OpenStreamWithRetries) over scripted attempts

// One attempt of a stream, as a test scripts it: Write hands the message
// over and then, if `hold_writes`, waits for the test before it returns;
// Read and Finish report a failed attempt.
class ScriptedStream final : public ClientCallStream {
 public:
  bool Write(const google::protobuf::MessageLite&) override {
    handed_over.Notify();
    if (hold_writes) release_writes.WaitForNotification();
    return true;
  }
  bool WritesDone() override { return true; }
  bool Read(google::protobuf::MessageLite*) override { return false; }
  absl::Status Finish() override { return absl::UnavailableError("attempt failed"); }
  void Cancel() override {}

  bool hold_writes = false;
  absl::Notification handed_over;
  absl::Notification release_writes;
};

// Opens `first` as the first attempt; every later attempt finds no route
// (a server that is down) and the next connection attempt an hour away.
class StreamChannel final : public AttemptingChannel {
 public:
  explicit StreamChannel(std::shared_ptr<ScriptedStream> first) : first_(std::move(first)) {
    policy_ = ThreeAttemptsOnUnavailable();
  }
  absl::Status AttemptUnary(const RpcMethod&, const google::protobuf::MessageLite&,
                            google::protobuf::MessageLite*, const CallOptions&, AttemptReport*) override {
    return absl::UnimplementedError("not here");
  }
  absl::Status TryStartUnary(const RpcMethod&, const google::protobuf::MessageLite&,
                             google::protobuf::MessageLite*, const CallOptions&,
                             absl::AnyInvocable<void(absl::Status) &&>&, AttemptReport*,
                             AttemptReport*) override {
    return absl::UnimplementedError("not here");
  }
  absl::StatusOr<std::unique_ptr<ClientCallStream>> AttemptStream(const RpcMethod&,
                                                                  const google::protobuf::MessageLite*,
                                                                  google::protobuf::MessageLite*,
                                                                  const CallOptions&,
                                                                  std::shared_ptr<AttemptReport> report) override {
    if (opened_.fetch_add(1) == 0) return std::make_unique<Forwarding>(first_);
    report->no_route = true;
    return absl::UnavailableError("no route");
  }
  absl::Time NextConnectAttempt() override { return absl::Now() + absl::Hours(1); }
  const RetryPolicy* RetryPolicyFor(const RpcMethod&) override { return &policy_; }

  int attempts() const { return opened_.load(); }

 private:
  // The first attempt, shared with the test.
  class Forwarding final : public ClientCallStream {
   public:
    explicit Forwarding(std::shared_ptr<ScriptedStream> to) : to_(std::move(to)) {}
    bool Write(const google::protobuf::MessageLite& m) override { return to_->Write(m); }
    bool WritesDone() override { return to_->WritesDone(); }
    bool Read(google::protobuf::MessageLite* m) override { return to_->Read(m); }
    absl::Status Finish() override { return to_->Finish(); }
    void Cancel() override { to_->Cancel(); }

   private:
    std::shared_ptr<ScriptedStream> to_;
  };

  std::shared_ptr<ScriptedStream> first_;
  RetryPolicy policy_;
  std::atomic<int> opened_{0};
};

const RpcMethod kBidi = {"/t.S/Chat", RpcKind::kBidiStreaming, false};

// A Write that handed its message over commits the call, even before it
// returns: a Read failing meanwhile on another thread must not reopen the
// stream (the new attempt would never get that message).
TEST(RetryingStream, AMessageHandedOverCommitsTheCallBeforeTheWriteReturns) {
  auto first = std::make_shared<ScriptedStream>();
  first->hold_writes = true;
  auto channel = std::make_shared<StreamChannel>(first);
  std::unique_ptr<ClientCallStream> stream = OpenStreamWithRetries(*channel, kBidi, nullptr, nullptr, {});
  EchoRequest message;
  std::thread writer([&] { EXPECT_TRUE(stream->Write(message)); });
  first->handed_over.WaitForNotification();
  std::atomic<pid_t> reader_tid{0};
  std::thread reader([&] {
    reader_tid = ::locus::testing::ThisThreadId();
    EchoReply reply;
    EXPECT_FALSE(stream->Read(&reply));  // the attempt failed
  });
  // The Read failed and its recovery decided, or waits for the Write.
  ASSERT_TRUE(::locus::conformance::Eventually([&] { return reader_tid.load() != 0; }));
  ASSERT_TRUE(::locus::testing::WaitUntilThreadBlocks(reader_tid.load()));
  first->release_writes.Notify();
  writer.join();
  reader.join();
  EXPECT_EQ(channel->attempts(), 1) << "a stream was reopened after a message was handed over";
  EXPECT_EQ(stream->Finish().code(), absl::StatusCode::kUnavailable);
}

// Cancel() ends a stream whose reopening waits for a connection
// (wait_for_ready, no deadline, the server down).
TEST(RetryingStream, CancelEndsAReopenWaitingForAConnection) {
  auto channel = std::make_shared<StreamChannel>(std::make_shared<ScriptedStream>());
  CallOptions options;
  options.wait_for_ready = true;
  Cancellation watchdog;  // ends a wait Cancel() could not end, so that a failure does not hang
  options.cancellation = watchdog;
  std::unique_ptr<ClientCallStream> stream = OpenStreamWithRetries(*channel, kBidi, nullptr, nullptr, options);
  auto read_returned = std::make_shared<absl::Notification>();
  std::thread reader([&stream, read_returned] {
    EchoReply reply;
    EXPECT_FALSE(stream->Read(&reply));
    read_returned->Notify();
  });
  // The reopening found no route and waits for the next connection attempt.
  ASSERT_TRUE(::locus::conformance::Eventually([&] { return channel->attempts() >= 2; }));
  stream->Cancel();
  const bool ended = read_returned->WaitForNotificationWithTimeout(kWatchdog);
  watchdog.Cancel();
  reader.join();
  EXPECT_TRUE(ended) << "Cancel() did not end the wait for a connection";
  EXPECT_EQ(stream->Finish().code(), absl::StatusCode::kCancelled);
}

// ---------------------------------------------------------------------------
// ConnectionCore against a scripted peer on an in-process pair

struct SeenFrame {
  FrameHeader header;
  std::string meta;
  std::string payload;
};

// The other end of an in-process pair, as a test drives it: it records what
// it receives, answers the handshake as the accepting or connecting side
// would, and answers PINGs while told to.
class ScriptedPeer final : public FrameSink {
 public:
  ScriptedPeer(std::unique_ptr<Connection> end, bool accepting) : end_(std::move(end)), accepting_(accepting) {}
  ~ScriptedPeer() override {
    // Destroyed in place, end_ unchanged: a delivery still running (a
    // keepalive PING from the timer thread) reads end_ until the
    // connection's destructor has waited for it.
    std::default_delete<Connection>()(end_.get());
    (void)end_.release();
  }
  void Start() { end_->Start(this); }

  void OnFrame(Frame& frame) override {
    const FrameType type = frame.header.frame_type();
    {
      absl::MutexLock lock(&mu_);
      frames_.push_back(SeenFrame{frame.header, std::string(frame.meta_bytes()), std::string(frame.payload_bytes())});
    }
    if (type == FrameType::kHello && accepting_) SendHello(FrameType::kHelloAck);
    if (type == FrameType::kPing && answer_pings_.load()) {
      FrameHeader pong = FrameHeader::Make(FrameType::kPong, 0, 0);
      pong.payload_length = frame.header.payload_length;
      (void)end_->Send(pong, {}, frame.payload_bytes(), absl::Now() + kWatchdog);
    }
  }
  void OnOversizeFrame(const FrameHeader&) override {}
  void OnClosed(const absl::Status&) override {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

  void SendHello(FrameType type) {
    wire::Hello hello;
    hello.set_min_protocol_version(kProtocolVersion);
    hello.set_max_protocol_version(kProtocolVersion);
    Send(type, 0, 0, hello.SerializeAsString(), {});
  }
  void Send(FrameType type, uint32_t flags, uint64_t id, const std::string& meta, const std::string& payload) {
    FrameHeader header = FrameHeader::Make(type, flags, id);
    header.meta_length = static_cast<uint32_t>(meta.size());
    header.payload_length = static_cast<uint32_t>(payload.size());
    ASSERT_TRUE(end_->Send(header, meta, payload, absl::Now() + kWatchdog).ok());
  }
  // A REQUEST for `method` with `message`.
  void SendRequest(const RpcMethod& method, uint64_t id, const google::protobuf::MessageLite& message) {
    std::string meta(CallHeaderSize(method.full_name, 0, {}), '\0');
    WriteCallHeader(method.full_name, 0, {}, meta.data());
    Send(FrameType::kRequest, kFlagHasMessage | kFlagEndStream, id, meta, message.SerializeAsString());
  }
  void SendGoAway(uint64_t last_processed) {
    wire::GoAway goaway;
    goaway.set_last_processed_call_id(last_processed);
    goaway.set_code(static_cast<int>(absl::StatusCode::kUnavailable));
    Send(FrameType::kGoAway, 0, 0, goaway.SerializeAsString(), {});
  }

  // Waits (watchdog-bounded) until `count` frames of `type` arrived.
  bool AwaitFrames(FrameType type, size_t count) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return CountLocked(type) >= count; };
    return mu_.AwaitWithDeadline(absl::Condition(&enough), absl::Now() + kWatchdog);
  }
  bool AwaitClosed() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(&closed_), absl::Now() + kWatchdog);
  }
  size_t Count(FrameType type) {
    absl::MutexLock lock(&mu_);
    return CountLocked(type);
  }
  std::vector<SeenFrame> Frames(FrameType type) {
    absl::MutexLock lock(&mu_);
    std::vector<SeenFrame> out;
    for (const SeenFrame& frame : frames_) {
      if (frame.header.frame_type() == type) out.push_back(frame);
    }
    return out;
  }
  void set_answer_pings(bool answer) { answer_pings_.store(answer); }

 private:
  size_t CountLocked(FrameType type) const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    size_t n = 0;
    for (const SeenFrame& frame : frames_) n += frame.header.frame_type() == type ? 1 : 0;
    return n;
  }

  std::unique_ptr<Connection> end_;
  const bool accepting_;
  std::atomic<bool> answer_pings_{false};
  absl::Mutex mu_;
  std::vector<SeenFrame> frames_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// The core's end of the pair, passed through; it counts the GOAWAY and
// PING frames sent, and those sent with a deadline still ahead (a sender
// that may wait for room).
class CountingConnection final : public Connection {
 public:
  explicit CountingConnection(std::unique_ptr<Connection> inner) : inner_(std::move(inner)) {}
  void Start(FrameSink* sink) override { inner_->Start(sink); }
  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time deadline) override {
    Count(header, deadline);
    return inner_->Send(header, meta, payload, deadline);
  }
  absl::Status SendWithPayloadWriter(const FrameHeader& header, absl::string_view meta,
                                     PayloadWriter write_payload, absl::Time deadline) override {
    Count(header, deadline);
    return inner_->SendWithPayloadWriter(header, meta, write_payload, deadline);
  }
  bool CanPassFds() const override { return inner_->CanPassFds(); }
  absl::Status SendWithFds(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                           absl::Span<const int> fds, absl::Time deadline) override {
    Count(header, deadline);
    return inner_->SendWithFds(header, meta, payload, fds, deadline);
  }
  void Close(const absl::Status& reason) override { inner_->Close(reason); }
  bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) override {
    return inner_->DriveUntil(done, deadline);
  }
  void AdjustBackgroundReads(int delta) override { inner_->AdjustBackgroundReads(delta); }
  bool HasQueuedOutput() const override { return inner_->HasQueuedOutput(); }
  bool reliable() const override { return inner_->reliable(); }
  const PeerInfo& peer() const override { return inner_->peer(); }

  int control_frames() const { return control_frames_.load(); }
  int control_frames_that_may_wait() const { return may_wait_.load(); }

 private:
  void Count(const FrameHeader& header, absl::Time deadline) {
    const FrameType type = header.frame_type();
    if (type != FrameType::kGoAway && type != FrameType::kPing) return;
    control_frames_.fetch_add(1);
    if (deadline > absl::Now()) may_wait_.fetch_add(1);
  }

  std::unique_ptr<Connection> inner_;
  std::atomic<int> control_frames_{0};
  std::atomic<int> may_wait_{0};
};

class CoreLifeTest : public ::testing::Test {
 protected:
  // The core under test on one end, the scripted peer on the other.
  void Create(bool connecting, ConnectionCore::Options options) {
    PeerInfo info;
    info.transport = "inproc";
    info.remote_address = "inproc:scripted";
    auto [client_end, server_end] =
        MakeInprocPair({info, kDefaultMaxMessageSize}, {info, kDefaultMaxMessageSize});
    options.connecting_side = connecting;
    if (!connecting) {
      ASSERT_TRUE(services_.Add(&service_).ok());
      options.services = &services_;
      if (!inline_handlers_) options.handler_pool = &pool_;
    }
    peer_ = std::make_unique<ScriptedPeer>(std::move(connecting ? server_end : client_end), connecting);
    auto counting = std::make_unique<CountingConnection>(std::move(connecting ? client_end : server_end));
    counting_ = counting.get();
    core_ = ConnectionCore::Create(std::move(counting), std::move(options));
    peer_->Start();
    core_->Start();
    if (connecting) {
      ASSERT_TRUE(core_->ClientHandshake(absl::Now() + kWatchdog).ok());
    } else {
      peer_->SendHello(FrameType::kHello);
      ASSERT_TRUE(peer_->AwaitFrames(FrameType::kHelloAck, 1));
    }
  }
  void TearDown() override {
    if (core_ != nullptr) core_->Close(absl::CancelledError("test over"));
    pool_.Stop();
    core_.reset();
    peer_.reset();
  }

  // A server's handlers run on its reader (no handler pool) when set.
  bool inline_handlers_ = false;
  CountingConnection* counting_ = nullptr;  // owned by core_
  TestServiceImpl service_;
  ServiceTable services_;
  ThreadPool pool_{2};
  std::unique_ptr<ScriptedPeer> peer_;
  std::shared_ptr<ConnectionCore> core_;
};

TEST_F(CoreLifeTest, ACallAboveTheGoAwaysLastIdIsReportedAsNotProcessed) {
  Create(/*connecting=*/true, {});
  EchoRequest request;
  request.set_data("x");
  EchoReply first_reply, second_reply;
  AttemptReport first, second;
  absl::Status first_status, second_status;
  absl::Notification first_done, second_done;
  absl::AnyInvocable<void(absl::Status) &&> done1 = [&](absl::Status s) {
    first_status = std::move(s);
    first_done.Notify();
  };
  absl::AnyInvocable<void(absl::Status) &&> done2 = [&](absl::Status s) {
    second_status = std::move(s);
    second_done.Notify();
  };
  AttemptReport refusal;
  ASSERT_TRUE(core_->TryStartUnary(TestService::kMethodEcho, request, &first_reply, {}, done1, nullptr,
                                   &refusal, &first)
                  .ok());  // id 1
  ASSERT_TRUE(core_->TryStartUnary(TestService::kMethodEcho, request, &second_reply, {}, done2, nullptr,
                                   &refusal, &second)
                  .ok());  // id 3
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kRequest, 2));
  peer_->SendGoAway(/*last_processed=*/1);
  ASSERT_TRUE(second_done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_EQ(second_status.code(), absl::StatusCode::kUnavailable) << second_status;
  EXPECT_TRUE(second.not_processed);
  EXPECT_FALSE(first_done.HasBeenNotified());
  core_->Close(absl::UnavailableError("peer gone"));  // call 1 may have run: lost, not refused
  ASSERT_TRUE(first_done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_EQ(first_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(first.not_processed);
  EXPECT_FALSE(refusal.server_never_saw_it());
}

TEST_F(CoreLifeTest, ACallRefusedBeforeItLeftKeepsItsCallbackAndSaysSo) {
  Create(/*connecting=*/true, {});
  peer_->SendGoAway(/*last_processed=*/0);  // draining: no new call may start
  EchoRequest request;
  EchoReply reply;
  bool ran = false;
  absl::AnyInvocable<void(absl::Status) &&> done = [&ran](absl::Status) { ran = true; };
  AttemptReport refusal;
  absl::Status started = core_->TryStartUnary(TestService::kMethodEcho, request, &reply, {}, done, nullptr,
                                              &refusal, nullptr);
  EXPECT_EQ(started.code(), absl::StatusCode::kUnavailable) << started;
  EXPECT_TRUE(refusal.not_processed);
  EXPECT_FALSE(ran);
  ASSERT_TRUE(done);  // still the caller's
  AttemptReport sync;
  EXPECT_EQ(core_->CallUnary(TestService::kMethodEcho, request, &reply, CallOptions::WithTimeout(kWatchdog),
                             nullptr, &sync)
                .code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(sync.not_processed);
  auto stream_report = std::make_shared<AttemptReport>();
  absl::StatusOr<std::unique_ptr<ClientCallStream>> stream =
      core_->TryOpenStream(TestService::kMethodChat, nullptr, nullptr, CallOptions::WithTimeout(kWatchdog),
                           nullptr, stream_report);
  EXPECT_FALSE(stream.ok());
  EXPECT_TRUE(stream_report->not_processed);
}

TEST_F(CoreLifeTest, KeepaliveClosesAConnectionWhosePeerStoppedAnswering) {
  ConnectionCore::Options options;
  options.keepalive_time = absl::Milliseconds(20);
  options.keepalive_timeout = absl::Milliseconds(50);
  Create(/*connecting=*/true, options);
  // A call without a deadline, to a peer that reads it and says nothing.
  EchoRequest request;
  EchoReply reply;
  absl::Status status;
  absl::Notification done;
  core_->StartUnary(TestService::kMethodEcho, request, &reply, {}, [&](absl::Status s) {
    status = std::move(s);
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog)) << "the call was never failed";
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_NE(status.message().find("keepalive"), absl::string_view::npos) << status;
  EXPECT_GE(peer_->Count(FrameType::kPing), 1u);
  EXPECT_TRUE(core_->closed());
}

TEST_F(CoreLifeTest, KeepaliveKeepsAConnectionWhosePeerAnswers) {
  ConnectionCore::Options options;
  options.keepalive_time = absl::Milliseconds(4);
  options.keepalive_timeout = absl::Milliseconds(40);
  Create(/*connecting=*/true, options);
  peer_->set_answer_pings(true);
  EchoRequest request;
  EchoReply reply;
  absl::Status status = absl::UnknownError("pending");
  absl::Notification done;
  core_->StartUnary(TestService::kMethodEcho, request, &reply, {}, [&](absl::Status s) {
    status = std::move(s);
    done.Notify();
  });
  // Many keepalive periods and timeouts pass, each PING answered.
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kPing, 10));
  EXPECT_FALSE(done.HasBeenNotified()) << status;
  EXPECT_FALSE(core_->closed());
  EXPECT_GE(core_->keepalive_pings_sent(), 10u);
  // The call then ends as the peer answers it.
  std::vector<SeenFrame> requests = peer_->Frames(FrameType::kRequest);
  ASSERT_EQ(requests.size(), 1u);
  EchoReply answer;
  answer.set_data("late");
  peer_->Send(FrameType::kResponse, kFlagHasMessage, requests[0].header.call_id, {}, answer.SerializeAsString());
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(reply.data(), "late");
}

// An inline handler holds the server's reader, so the answer to its PING
// stays unread past the PING's deadline: the check must then look again a
// period later, never at the deadline already past (the shared timer
// thread would run it over and over, ahead of every other timer).
TEST_F(CoreLifeTest, KeepaliveBehindAnInlineHandlerLetsOtherTimersRun) {
  ConnectionCore::Options options;
  options.keepalive_time = absl::Milliseconds(4);
  options.keepalive_timeout = absl::Milliseconds(1);
  inline_handlers_ = true;
  Create(/*connecting=*/false, options);  // the peer answers no PING
  WaitRequest wait;
  wait.set_max_wait_ms(absl::ToInt64Milliseconds(kWatchdog));  // until the connection closes
  // Sent from a thread of its own: an in-process pair delivers on the
  // sending thread, which the handler then holds (the core's reader).
  std::thread sender([&] { peer_->SendRequest(TestService::kMethodWaitForCancel, 1, wait); });
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kPing, 1));
  // Later than the PING's deadline: a check rescheduled at that deadline
  // would sort ahead of this timer for as long as the handler runs.
  auto fired = std::make_shared<absl::Notification>();  // outlives a failed wait
  TimerQueue::Get().Schedule(absl::Now() + absl::Milliseconds(20), [fired] { fired->Notify(); });
  EXPECT_TRUE(fired->WaitForNotificationWithTimeout(kWatchdog)) << "the timer thread is kept busy";
  EXPECT_FALSE(core_->closed()) << "only a reader that was free may conclude the peer is gone";
  core_->Close(absl::CancelledError("test over"));  // cancels the handler
  sender.join();
}

TEST_F(CoreLifeTest, KeepaliveWithoutCallsPingsAnIdleConnectionOnlyWhenAskedTo) {
  ConnectionCore::Options options;
  options.keepalive_time = absl::Milliseconds(10);
  options.keepalive_timeout = absl::Milliseconds(30);
  options.keepalive_without_calls = true;
  Create(/*connecting=*/true, options);
  ASSERT_TRUE(peer_->AwaitClosed()) << "an idle connection to a silent peer stayed open";
  EXPECT_GE(peer_->Count(FrameType::kPing), 1u);
}

TEST_F(CoreLifeTest, AnIdleConnectionGetsGoAwayThenCloses) {
  ConnectionCore::Options options;
  options.max_idle = absl::Milliseconds(30);
  Create(/*connecting=*/false, options);
  peer_->set_answer_pings(true);
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kGoAway, 2));
  ASSERT_TRUE(peer_->AwaitClosed());
  wire::GoAway goaway;
  ASSERT_TRUE(goaway.ParseFromString(peer_->Frames(FrameType::kGoAway)[0].meta));
  EXPECT_NE(goaway.reason().find("idle"), std::string::npos) << goaway.reason();
}

TEST_F(CoreLifeTest, AnOldConnectionDrainsItsCallsThenClosesAtTheLatestAfterItsGrace) {
  ConnectionCore::Options options;
  options.max_age = absl::Milliseconds(20);
  options.max_age_grace = absl::Milliseconds(200);
  options.drain_ping_timeout = kWatchdog;
  Create(/*connecting=*/false, options);
  // A call that runs until it is cancelled (at the end of the grace).
  WaitRequest wait;
  wait.set_max_wait_ms(absl::ToInt64Milliseconds(kWatchdog));
  peer_->SendRequest(TestService::kMethodWaitForCancel, 1, wait);
  // First a GOAWAY that refuses nothing (calls may still be on their way),
  // then, once the PING after it is answered, the one naming the last call.
  // The answer follows the call (the drain may begin before it was sent).
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kGoAway, 1));
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kPing, 1));
  peer_->Send(FrameType::kPong, 0, 0, {}, peer_->Frames(FrameType::kPing)[0].payload);
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kGoAway, 2));
  std::vector<SeenFrame> goaways = peer_->Frames(FrameType::kGoAway);
  wire::GoAway first, last;
  ASSERT_TRUE(first.ParseFromString(goaways[0].meta));
  ASSERT_TRUE(last.ParseFromString(goaways[1].meta));
  EXPECT_EQ(first.last_processed_call_id(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(last.last_processed_call_id(), 1u);  // the call in progress goes on
  ASSERT_TRUE(peer_->AwaitClosed());
  EXPECT_TRUE(::locus::conformance::Eventually([&] { return service_.cancellations_seen() == 1; }));
}

// A call that arrives after the first GOAWAY (it was on its way) is served:
// the final GOAWAY comes only once the PING after the first is answered.
TEST_F(CoreLifeTest, ACallOnItsWayWhenTheDrainBeginsIsServed) {
  ConnectionCore::Options options;
  options.max_age = absl::Milliseconds(1);
  options.drain_ping_timeout = kWatchdog;  // the answer below ends the wait
  Create(/*connecting=*/false, options);
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kGoAway, 1));
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kPing, 1));
  EchoRequest late;
  late.set_data("on its way");
  peer_->SendRequest(TestService::kMethodEcho, 1, late);
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kResponse, 1));
  EchoReply reply;
  ASSERT_TRUE(reply.ParseFromString(peer_->Frames(FrameType::kResponse)[0].payload));
  EXPECT_EQ(reply.data(), "on its way");
  // The answer to the PING: then the final GOAWAY, then closure.
  std::vector<SeenFrame> pings = peer_->Frames(FrameType::kPing);
  peer_->Send(FrameType::kPong, 0, 0, {}, pings[0].payload);
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kGoAway, 2));
  wire::GoAway last;
  ASSERT_TRUE(last.ParseFromString(peer_->Frames(FrameType::kGoAway)[1].meta));
  EXPECT_EQ(last.last_processed_call_id(), 1u);
  ASSERT_TRUE(peer_->AwaitClosed());
}

// The drain waits for as many calls as ids its final GOAWAY covers; a call
// above that id (refused) is not one of them and must not stand in for a
// covered call still on its way.
TEST_F(CoreLifeTest, ADrainWaitsForTheCoveredCallsNotForRefusedOnes) {
  ConnectionCore::Options options;
  options.max_age = absl::Milliseconds(1);  // no grace: as long as calls run
  options.drain_ping_timeout = kWatchdog;   // the answer below ends the wait
  Create(/*connecting=*/false, options);
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kGoAway, 1));
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kPing, 1));
  // Ids 1, 3 and 7 arrive; 5 was taken but is still on its way.
  EchoRequest request;
  for (uint64_t id : {1, 3, 7}) {
    request.set_data(absl::StrCat("call ", id));
    peer_->SendRequest(TestService::kMethodEcho, id, request);
  }
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kResponse, 3));
  peer_->Send(FrameType::kPong, 0, 0, {}, peer_->Frames(FrameType::kPing)[0].payload);
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kGoAway, 2));
  wire::GoAway last;
  ASSERT_TRUE(last.ParseFromString(peer_->Frames(FrameType::kGoAway)[1].meta));
  ASSERT_EQ(last.last_processed_call_id(), 7u);
  // Id 9, above the GOAWAY's: refused.
  request.set_data("call 9");
  peer_->SendRequest(TestService::kMethodEcho, 9, request);
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kResponse, 4));
  // The drain looks every few milliseconds; a timer due after the next look
  // has run once that look is done (timers run in the order of their time).
  auto looked = std::make_shared<absl::Notification>();
  TimerQueue::Get().Schedule(absl::Now() + absl::Milliseconds(50), [looked] { looked->Notify(); });
  ASSERT_TRUE(looked->WaitForNotificationWithTimeout(kWatchdog));
  ASSERT_FALSE(core_->closed()) << "closed while call 5, which the GOAWAY covers, was on its way";
  request.set_data("call 5");
  peer_->SendRequest(TestService::kMethodEcho, 5, request);
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kResponse, 5));
  const SeenFrame answer = peer_->Frames(FrameType::kResponse)[4];
  EXPECT_EQ(answer.header.call_id, 5u);
  EchoReply reply;
  ASSERT_TRUE(reply.ParseFromString(answer.payload));
  EXPECT_EQ(reply.data(), "call 5");
  ASSERT_TRUE(peer_->AwaitClosed());  // every covered call arrived and was answered
}

// A drain runs on the process-wide timer thread: its GOAWAYs and PING are
// queued or dropped, never waited for room (a peer that stops reading
// would hold every timer of the process).
TEST_F(CoreLifeTest, ADrainsControlFramesNeverWaitForRoom) {
  ConnectionCore::Options options;
  options.max_age = absl::Milliseconds(1);
  options.drain_ping_timeout = absl::Milliseconds(1);  // the PING goes unanswered
  Create(/*connecting=*/false, options);
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kGoAway, 2));
  ASSERT_TRUE(peer_->AwaitClosed());
  EXPECT_GE(counting_->control_frames(), 3);  // GOAWAY, PING, GOAWAY
  EXPECT_EQ(counting_->control_frames_that_may_wait(), 0);
}

// A PING carries 8 bytes (as in HTTP/2); any other payload (up to the
// message size limit, echoed back by the reader) is a protocol error.
TEST_F(CoreLifeTest, APingWhosePayloadIsNotEightBytesIsAProtocolError) {
  Create(/*connecting=*/true, {});
  peer_->Send(FrameType::kPing, 0, 0, {}, "12345678");
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kPong, 1));  // answered
  peer_->Send(FrameType::kPing, 0, 0, {}, std::string(4096, 'p'));
  ASSERT_TRUE(peer_->AwaitClosed()) << "an oversized PING was answered";
  EXPECT_EQ(peer_->Count(FrameType::kPong), 1u);
  EXPECT_TRUE(core_->closed());
}

TEST_F(CoreLifeTest, AnOldConnectionClosesOnceItsLastCallIsAnswered) {
  ConnectionCore::Options options;
  options.max_age = absl::Milliseconds(20);  // no grace: as long as calls run
  Create(/*connecting=*/false, options);
  peer_->set_answer_pings(true);
  WaitRequest wait;
  wait.set_max_wait_ms(300);
  peer_->SendRequest(TestService::kMethodWaitForCancel, 1, wait);
  ASSERT_TRUE(peer_->AwaitFrames(FrameType::kGoAway, 1));
  ASSERT_TRUE(peer_->AwaitClosed());
  std::vector<SeenFrame> responses = peer_->Frames(FrameType::kResponse);
  ASSERT_EQ(responses.size(), 1u) << "closed before the call in progress was answered";
  // Answered OK (a refusal is a RESPONSE too, with an error status).
  wire::CallStatus status;
  ASSERT_TRUE(status.ParseFromString(responses[0].meta));
  EXPECT_EQ(status.code(), 0) << status.message();
  WaitReply reply;
  ASSERT_TRUE(reply.ParseFromString(responses[0].payload));
  EXPECT_FALSE(reply.saw_cancellation());
}

}  // namespace
}  // namespace locus::internal
