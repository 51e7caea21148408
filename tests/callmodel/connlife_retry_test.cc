// Retries, on every transport: the retry policy of the IDL and of
// ChannelOptions (unary calls, synchronous and asynchronous, and the three
// kinds of streams, which retry only until committed), wait_for_ready, the
// reconnect backoff (a server that is down costs one connection attempt per
// backoff period, however many calls are made), and transparent retries of
// calls the server never saw.
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "connlife_fixture.h"
#include "gtest/gtest.h"

namespace locus::connlife {
namespace {

using ::locus::conformance::CallOutcomes;
using ::locus::conformance::ReliableKinds;
using ::locus::conformance::TransportKinds;

template <typename C>
class Retries : public ConnLife<C> {};
TYPED_TEST_SUITE(Retries, TransportKinds, ConfigNames);

Note Text(const std::string& text) {
  Note note;
  note.set_text(text);
  return note;
}

CallOptions WaitingForReady() {
  CallOptions options = Watchdog();
  options.wait_for_ready = true;
  return options;
}

TYPED_TEST(Retries, TheIdlPolicyRetriesItsCodesUpToItsAttempts) {
  this->Start();
  absl::StatusOr<Note> reply =
      this->flaky_stub_->Call(Text("a"), FlakyService::Failing("twice", 2, absl::StatusCode::kUnavailable));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->attempt(), 3);
  EXPECT_EQ(this->flaky_.attempts("twice"), 3);
  EXPECT_EQ(this->Stats().retries.by_policy, 2u);
  // A code the policy does not list is the call's outcome at once.
  EXPECT_EQ(this->flaky_stub_->Call(Text("b"), FlakyService::Failing("internal", 1, absl::StatusCode::kInternal))
                .status()
                .code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(this->flaky_.attempts("internal"), 1);
  // No more than max_attempts (3): the last attempt's status.
  absl::Status exhausted =
      this->flaky_stub_->Call(Text("c"), FlakyService::Failing("always", 10, absl::StatusCode::kUnavailable))
          .status();
  EXPECT_EQ(exhausted.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(exhausted.message().find("attempt 3 "), absl::string_view::npos) << exhausted;
  EXPECT_EQ(this->flaky_.attempts("always"), 3);
  // The method without a policy is tried once.
  EXPECT_EQ(this->flaky_stub_->CallOnce(Text("d"), FlakyService::Failing("once", 1, absl::StatusCode::kUnavailable))
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(this->flaky_.attempts("once"), 1);
}

TYPED_TEST(Retries, ChannelOptionsOverrideThePolicyByMethodAndByService) {
  ChannelOptions options;
  RetryPolicy off;
  off.max_attempts = 1;
  options.retry_policies[Flaky::kMethodCall.full_name] = off;
  RetryPolicy service_wide;
  service_wide.max_attempts = 2;
  service_wide.initial_backoff = absl::Milliseconds(1);
  service_wide.max_backoff = absl::Milliseconds(1);
  service_wide.retryable_codes = RetryPolicy::Code(absl::StatusCode::kAborted);
  options.retry_policies[absl::StrCat("/", Flaky::kServiceName, "/")] = service_wide;
  this->Start(ServerOptions{}, options);
  EXPECT_EQ(this->flaky_stub_->Call(Text("a"), FlakyService::Failing("off", 1, absl::StatusCode::kUnavailable))
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(this->flaky_.attempts("off"), 1);
  absl::StatusOr<Note> retried =
      this->flaky_stub_->CallOnce(Text("b"), FlakyService::Failing("aborted", 1, absl::StatusCode::kAborted));
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(this->flaky_.attempts("aborted"), 2);
}

TYPED_TEST(Retries, AnAsynchronousCallIsRetriedWithItsOwnCopyOfTheRequest) {
  this->Start();
  absl::Notification done;
  absl::Status status;
  Note reply;
  {
    Note request = Text("copied");  // gone when AsyncCall returns
    this->flaky_stub_->AsyncCall(request, &reply,
                                 FlakyService::Failing("async", 2, absl::StatusCode::kUnavailable),
                                 [&](absl::Status s) {
                                   status = std::move(s);
                                   done.Notify();
                                 });
  }
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog));
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(reply.text(), "copied");
  EXPECT_EQ(reply.attempt(), 3);
  EXPECT_EQ(this->flaky_.attempts("async"), 3);
  // The Future overload, through the same path.
  Future<Note> future =
      this->flaky_stub_->AsyncCall(Text("f"), FlakyService::Failing("future", 1, absl::StatusCode::kUnavailable));
  absl::StatusOr<Note> got = future.Get();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->attempt(), 2);
}

TYPED_TEST(Retries, CancellationEndsACallBetweenItsAttempts) {
  ChannelOptions options;
  RetryPolicy slow;  // waits of up to a minute between attempts
  slow.max_attempts = 5;
  slow.initial_backoff = absl::Seconds(60);
  slow.max_backoff = absl::Seconds(60);
  slow.retryable_codes = RetryPolicy::Code(absl::StatusCode::kUnavailable);
  options.retry_policies[Flaky::kMethodCall.full_name] = slow;
  this->Start(ServerOptions{}, options);
  for (bool async : {false, true}) {
    const std::string key = async ? "async" : "sync";
    Cancellation cancel;
    CallOptions call = FlakyService::Failing(key, 100, absl::StatusCode::kUnavailable);
    call.cancellation = cancel;
    absl::Status status;
    absl::Notification done;
    Note reply;
    std::optional<ScopedThread> caller;
    if (async) {
      this->flaky_stub_->AsyncCall(Text("x"), &reply, call, [&](absl::Status s) {
        status = std::move(s);
        done.Notify();
      });
    } else {
      caller.emplace([&] {
        status = this->flaky_stub_->Call(Text("x"), call).status();
        done.Notify();
      });
    }
    EXPECT_TRUE(Eventually([&] { return this->flaky_.attempts(key) >= 1; }));
    cancel.Cancel();
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog)) << key;
    EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << key << ": " << status;
  }
}

// A channel its user dropped ends the calls that wait in it: an
// asynchronous wait_for_ready call waiting for the server ends CANCELLED
// (the call holds the channel only while it makes an attempt), and the
// channel is gone.
TYPED_TEST(Retries, DroppingTheChannelEndsTheCallsWaitingInIt) {
  ASSERT_NO_FATAL_FAILURE(this->StartThenStopTheServer());
  struct Outcome {
    absl::Status status;
    absl::Notification done;
    EchoReply reply;
  };
  auto outcome = std::make_shared<Outcome>();  // outlives a failed wait
  CallOptions patient = CallOptions::WithTimeout(2 * kWatchdog);  // beyond the wait below
  patient.wait_for_ready = true;
  this->echo_stub_->AsyncEcho(EchoRequest(), &outcome->reply, patient, [outcome](absl::Status s) {
    outcome->status = std::move(s);
    outcome->done.Notify();
  });
  EXPECT_TRUE(Eventually([&] { return this->Stats().retries.waits >= 1; }));
  std::weak_ptr<Channel> dropped = this->channel_;
  this->echo_stub_.reset();
  this->flaky_stub_.reset();
  this->channel_.reset();
  ASSERT_TRUE(outcome->done.WaitForNotificationWithTimeout(kWatchdog)) << "the call outlived its channel";
  EXPECT_EQ(outcome->status.code(), absl::StatusCode::kCancelled) << outcome->status;
  EXPECT_TRUE(Eventually([&] { return dropped.expired(); }));
}

// A server that is down: fail-fast calls fail at once, and the channel
// makes one connection attempt per backoff period however many calls it
// gets (the first wait is initial_backoff exactly, later ones longer).
TYPED_TEST(Retries, FailFastCallsOnADownServerMakeOneConnectionAttemptPerBackoff) {
  ChannelOptions options;
  options.reconnect_backoff.initial_backoff = absl::Milliseconds(200);
  this->Start(ServerOptions{}, options);
  ASSERT_TRUE(this->Echo().ok());
  const uint64_t attempts_before = this->Stats().connects.attempts;
  const absl::Time start = absl::Now();
  this->StopServer();
  int unavailable = 0;
  constexpr int kCalls = 300;
  for (int i = 0; i < kCalls; ++i) {
    absl::Status status = this->Echo();
    if (absl::IsUnavailable(status)) ++unavailable;
    else ADD_FAILURE() << "call " << i << ": " << status;
  }
  const absl::Duration elapsed = absl::Now() - start;
  const uint64_t attempts = this->Stats().connects.attempts - attempts_before;
  EXPECT_EQ(unavailable, kCalls);
  EXPECT_GE(attempts, 1u);
  EXPECT_LE(attempts, 2 + static_cast<uint64_t>(elapsed / options.reconnect_backoff.initial_backoff))
      << kCalls << " calls in " << elapsed;
}

// wait_for_ready: the call waits for the server through failed connection
// attempts and succeeds once it is back; a fail-fast call meanwhile fails.
TYPED_TEST(Retries, WaitForReadyWaitsForTheServerToComeBack) {
  ASSERT_NO_FATAL_FAILURE(this->StartThenStopTheServer());
  const CallOptions patient = WaitingForReady();
  absl::Status sync_status;
  absl::Notification sync_done;
  ScopedThread caller([&] {
    sync_status = this->Echo(patient);
    sync_done.Notify();
  });
  absl::Status async_status;
  absl::Notification async_done;
  EchoReply async_reply;
  EchoRequest request;
  request.set_data("async");
  this->echo_stub_->AsyncEcho(request, &async_reply, patient, [&](absl::Status s) {
    async_status = std::move(s);
    async_done.Notify();
  });
  // Both wait for the channel's next connection attempt.
  EXPECT_TRUE(Eventually([&] { return this->Stats().retries.waits >= 2; }));
  EXPECT_GE(this->Stats().connects.failures, 1u);
  EXPECT_FALSE(sync_done.HasBeenNotified()) << sync_status;
  EXPECT_FALSE(async_done.HasBeenNotified()) << async_status;
  EXPECT_EQ(this->Echo().code(), absl::StatusCode::kUnavailable);
  this->Restart();
  ASSERT_TRUE(sync_done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_TRUE(sync_status.ok()) << sync_status;
  ASSERT_TRUE(async_done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_TRUE(async_status.ok()) << async_status;
  EXPECT_EQ(async_reply.data(), "async");
  EXPECT_EQ(this->channel_->transport_name(), TypeParam::TransportKind::kTransport);
}

TYPED_TEST(Retries, WaitForReadyEndsAtTheDeadlineAndAtCancel) {
  ASSERT_NO_FATAL_FAILURE(this->StartThenStopTheServer());
  CallOptions soon = CallOptions::WithTimeout(absl::Milliseconds(300));
  soon.wait_for_ready = true;
  EXPECT_EQ(this->Echo(soon).code(), absl::StatusCode::kDeadlineExceeded);
  for (bool async : {false, true}) {
    Cancellation cancel;
    CallOptions cancellable = WaitingForReady();
    cancellable.cancellation = cancel;
    const uint64_t waits_before = this->Stats().retries.waits;
    absl::Status status;
    absl::Notification done;
    std::optional<ScopedThread> caller;
    EchoReply reply;
    if (async) {
      this->echo_stub_->AsyncEcho(EchoRequest(), &reply, cancellable, [&](absl::Status s) {
        status = std::move(s);
        done.Notify();
      });
    } else {
      caller.emplace([&] {
        status = this->Echo(cancellable);
        done.Notify();
      });
    }
    EXPECT_TRUE(Eventually([&] { return this->Stats().retries.waits > waits_before; }));
    cancel.Cancel();
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog));
    EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << (async ? "async: " : "sync: ") << status;
  }
}

// Connections that the server ages out every few milliseconds: no call
// fails (calls the GOAWAY refused are sent again on the next connection;
// calls in progress finish on theirs). Synchronous calls are sent again
// transparently; asynchronous ones only with a retry policy (Flaky.Call
// has one in the IDL): without, their request is gone once StartUnary
// returned.
TYPED_TEST(Retries, ConnectionsAgedOutUnderLoadLoseNoCall) {
  constexpr bool kHasWire = TypeParam::TransportKind::kHasWire;
  ServerOptions options;
  options.max_connection_age = absl::Milliseconds(10);
  this->Start(options);
  CallOutcomes outcomes(TypeParam::TransportKind::kReliable);
  std::atomic<bool> stop{false};
  std::atomic<int> async_pending{0};
  std::atomic<int> calls_made[3] = {0, 0, 0};
  // Each call under a key of its own, which the server counts its
  // executions under: every call runs exactly once.
  auto keyed = [&outcomes](const std::string& key) {
    CallOptions options = outcomes.Options();
    options.metadata = {{"flaky-key", key}};
    return options;
  };
  {
    std::vector<std::unique_ptr<ScopedThread>> callers;
    for (int t = 0; t < 3; ++t) {
      callers.push_back(std::make_unique<ScopedThread>([&, t] {
        for (int i = 0; !stop.load(); ++i) {
          const std::string data = absl::StrCat(t, "/", i);
          calls_made[t].store(i + 1);
          if (i % 10 == 0) {
            auto reply = std::make_shared<Note>();
            async_pending.fetch_add(1);
            this->flaky_stub_->AsyncCall(Text(data), reply.get(), keyed(data),
                                         [&outcomes, &async_pending, reply, data](absl::Status s) {
                                           if (outcomes.Record(s) && reply->text() != data) {
                                             outcomes.RecordMismatch();
                                           }
                                           async_pending.fetch_sub(1);
                                         });
            continue;
          }
          absl::StatusOr<Note> reply = this->flaky_stub_->Call(Text(data), keyed(data));
          if (outcomes.Record(reply.status()) && reply->text() != data) outcomes.RecordMismatch();
        }
      }));
    }
    // Until several connections were aged out (an in-process channel has
    // none: a number of calls).
    EXPECT_TRUE(Eventually([&] {
      return kHasWire ? this->Stats().connects.attempts >= 6 : outcomes.calls() >= 600;
    }));
    stop.store(true);
  }
  EXPECT_TRUE(Eventually([&] { return async_pending.load() == 0; }));
  outcomes.Check();
  // (A datagram transport may lose a call or its answer: checked on
  // reliable transports, where none fails.)
  if (!TypeParam::TransportKind::kReliable) return;
  int not_once = 0;
  for (int t = 0; t < 3; ++t) {
    for (int i = 0; i < calls_made[t].load(); ++i) {
      const std::string key = absl::StrCat(t, "/", i);
      const int executions = this->flaky_.attempts(key);
      if (executions != 1 && ++not_once <= 5) ADD_FAILURE() << key << " ran " << executions << " times";
    }
  }
  EXPECT_EQ(not_once, 0) << "calls that did not run exactly once";
}

// A call the server had not read when it sent GOAWAY: the GOAWAY says so,
// and the channel sends the call again on a new connection, where it
// succeeds. The server's reader is held by an inline handler (a call in
// progress, until its deadline) so that the second call stays unread
// until the connection's age sends GOAWAY.
template <typename C>
class UnreadCalls : public ConnLife<C> {};
using InlineWireKinds = ::testing::Types<::locus::conformance::UnixInline, ::locus::conformance::Tcp4Inline,
                                         ::locus::conformance::ShmInline, ::locus::conformance::Udp4Inline>;
TYPED_TEST_SUITE(UnreadCalls, InlineWireKinds, ConfigNames);

TYPED_TEST(UnreadCalls, ACallRefusedByGoAwayIsSentAgainOnANewConnection) {
  ServerOptions options;
  options.max_connection_age = absl::Seconds(1);
  this->Start(options);
  std::shared_ptr<internal::ConnectionCore> first = this->Core();
  ASSERT_NE(first, nullptr);
  // Holds the server's reader until its deadline, well past the age.
  ::locus::conformance::WaitRequest wait;
  wait.set_max_wait_ms(absl::ToInt64Milliseconds(kWatchdog));
  Future<::locus::conformance::WaitReply> holder =
      this->echo_stub_->AsyncWaitForCancel(wait, CallOptions::WithTimeout(absl::Seconds(3)));
  ASSERT_TRUE(Eventually([&] { return this->service_.waits_started() == 1; }));
  absl::Status status = this->Echo();  // unread until the GOAWAY
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_GE(this->Stats().retries.transparent, 1u);
  EXPECT_FALSE(first->usable());
  EXPECT_EQ(holder.Get().status().code(), absl::StatusCode::kDeadlineExceeded);
}

// Streams retry only until committed: a message received, or (client
// streaming, bidirectional) one sent.
template <typename C>
class StreamRetries : public ConnLife<C> {};
TYPED_TEST_SUITE(StreamRetries, ReliableKinds, ConfigNames);

TYPED_TEST(StreamRetries, AServerStreamIsRetriedUntilItsFirstMessage) {
  this->Start();
  ClientReader<Note> watch =
      this->flaky_stub_->Watch(Text("w"), FlakyService::Failing("open", 2, absl::StatusCode::kUnavailable));
  Note note;
  std::vector<std::string> got;
  while (watch.Read(&note)) {
    got.push_back(note.text());
    EXPECT_EQ(note.attempt(), 3);
  }
  EXPECT_TRUE(watch.Finish().ok());
  EXPECT_EQ(got, (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(this->flaky_.attempts("open"), 3);

  ClientReader<Note> committed = this->flaky_stub_->Watch(
      Text("w"), FlakyService::Failing("message", 1, absl::StatusCode::kUnavailable, "message"));
  ASSERT_TRUE(committed.Read(&note));
  EXPECT_EQ(note.text(), "1");
  EXPECT_FALSE(committed.Read(&note));
  EXPECT_EQ(committed.Finish().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(this->flaky_.attempts("message"), 1);
}

TYPED_TEST(StreamRetries, ABidirectionalStreamIsRetriedUntilItsFirstMessageWasSent) {
  this->Start();
  ClientReaderWriter<Note, Note> chat =
      this->flaky_stub_->Chat(FlakyService::Failing("open", 2, absl::StatusCode::kUnavailable));
  Note note;
  ASSERT_TRUE(chat.Read(&note));  // nothing sent yet: the failed opens were retried
  EXPECT_EQ(note.text(), "ready");
  EXPECT_EQ(note.attempt(), 3);
  ASSERT_TRUE(chat.Write(Text("hi")));
  ASSERT_TRUE(chat.Read(&note));
  EXPECT_EQ(note.text(), "hi");
  EXPECT_TRUE(chat.WritesDone());
  EXPECT_FALSE(chat.Read(&note));
  EXPECT_TRUE(chat.Finish().ok());
  EXPECT_EQ(this->flaky_.attempts("open"), 3);

  ClientReaderWriter<Note, Note> sent =
      this->flaky_stub_->Chat(FlakyService::Failing("message", 1, absl::StatusCode::kUnavailable, "message"));
  ASSERT_TRUE(sent.Write(Text("seen")));  // the server may act on it: no retry from here
  EXPECT_FALSE(sent.Read(&note));
  EXPECT_EQ(sent.Finish().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(this->flaky_.attempts("message"), 1);
}

TYPED_TEST(StreamRetries, AClientStreamIsRetriedUntilItsFirstMessageWasSent) {
  this->Start();
  Note summary;
  ClientWriter<Note> empty =
      this->flaky_stub_->Upload(&summary, FlakyService::Failing("open", 2, absl::StatusCode::kUnavailable));
  absl::Status finished = empty.Finish();
  EXPECT_TRUE(finished.ok()) << finished;
  EXPECT_EQ(summary.text(), "0");
  EXPECT_EQ(summary.attempt(), 3);
  EXPECT_EQ(this->flaky_.attempts("open"), 3);

  ClientWriter<Note> upload = this->flaky_stub_->Upload(
      &summary, FlakyService::Failing("message", 1, absl::StatusCode::kUnavailable, "message"));
  ASSERT_TRUE(upload.Write(Text("seen")));
  upload.WritesDone();
  EXPECT_EQ(upload.Finish().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(this->flaky_.attempts("message"), 1);
}

TYPED_TEST(StreamRetries, AStreamWithWaitForReadyOpensOnceTheServerIsBack) {
  ASSERT_NO_FATAL_FAILURE(this->StartThenStopTheServer());
  const CallOptions patient = WaitingForReady();
  std::unique_ptr<ClientReaderWriter<EchoRequest, EchoReply>> chat;
  {
    ScopedThread opener([&] {
      chat = std::make_unique<ClientReaderWriter<EchoRequest, EchoReply>>(this->echo_stub_->Chat(patient));
    });
    EXPECT_TRUE(Eventually([&] { return this->Stats().retries.waits >= 1; }));
    this->Restart();
  }
  EchoRequest request;
  request.set_data("after");
  EchoReply reply;
  ASSERT_TRUE(chat->Write(request));
  ASSERT_TRUE(chat->Read(&reply));
  EXPECT_EQ(reply.data(), "after");
  EXPECT_TRUE(chat->WritesDone());
  EXPECT_TRUE(chat->Finish().ok());
}

}  // namespace
}  // namespace locus::connlife
