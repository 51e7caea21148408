// The transport conformance suite: every transport must pass every test here
// that applies to it. A new transport adds a traits struct (how to make a
// listening address) and its configurations to the lists in
// conformance_fixture.h; nothing else changes.
//
// Tests use deadlines only as watchdogs against hangs, never to assert speed.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "internal/call_header_codec.h"
#include "locus/locus.h"
#include "locus/wire.pb.h"
#include "conformance_fixture.h"
#include "test_service.h"
#include "tests/testing/test_util.h"

namespace locus::conformance {
namespace {

using ::testing::HasSubstr;

using ::locus::testing::ChildServer;
using ::locus::testing::kWatchdog;
using ::locus::testing::StderrCapture;
using ::locus::testing::TempDir;

TYPED_TEST_SUITE(TransportConformance, TransportKinds, ConfigNames);
TYPED_TEST_SUITE(ReliableTransportConformance, ReliableKinds, ConfigNames);
TYPED_TEST_SUITE(WireTransportConformance, WireKinds, ConfigNames);
TYPED_TEST_SUITE(ReliableWireTransportConformance, ReliableWireKinds, ConfigNames);
TYPED_TEST_SUITE(CancellationSeenByTheHandler, HandlerSeesCancelKinds, ConfigNames);
TYPED_TEST_SUITE(CancellationOfABusyInlineHandler, BusyInlineHandlerKinds, ConfigNames);
template <typename ConfigT>
class DatagramTransportConformance : public TransportConformance<ConfigT> {
  static_assert(!ConfigT::TransportKind::kReliable, "for datagram transports");
};
TYPED_TEST_SUITE(DatagramTransportConformance, DatagramKinds, ConfigNames);


TYPED_TEST(TransportConformance, EchoFromOneByteToTheSizeLimit) {
  // The limit applies to the serialized message: field tag (1 byte) plus a
  // 4-byte length varint plus the data.
  const size_t largest = kDefaultMaxMessageSize - 5;
  for (size_t size : {size_t{1}, size_t{100}, size_t{4096}, size_t{65536}, size_t{1} << 20, largest}) {
    if (size > TypeParam::TransportKind::kMaxMessage) {
      // A datagram transport refuses what does not fit a datagram, clearly.
      absl::StatusOr<EchoReply> refused = this->Echo(*this->stub_, std::string(size, 'x'));
      EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
      continue;
    }
    std::string data(size, '\0');
    for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(i * 131 + size);
    absl::StatusOr<EchoReply> reply = this->Echo(*this->stub_, data);
    ASSERT_TRUE(reply.ok()) << size << ": " << reply.status();
    EXPECT_EQ(reply->data(), data) << size;
  }
  EchoRequest exact;
  exact.set_data(std::string(largest, 'x'));
  EXPECT_EQ(exact.ByteSizeLong(), kDefaultMaxMessageSize);
}

// Many large messages in flight at once, more than shared memory's bulk
// areas hold (the rest stream through the ring), each arriving whole.
TYPED_TEST(ReliableTransportConformance, LargeMessagesInFlightTogetherStayIntact) {
  constexpr int kRounds = 3;
  constexpr int kCalls = 16;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<Future<EchoReply>> pending;
    std::vector<std::string> sent;
    for (int i = 0; i < kCalls; ++i) {
      const size_t size = (32u << 10) + ((i * 7 + round * 5) % 16) * (96u << 10) + i;
      std::string data(size, '\0');
      for (size_t b = 0; b < size; b += 97) data[b] = static_cast<char>(b / 97 + i + round);
      EchoRequest request;
      request.set_data(data);
      sent.push_back(std::move(data));
      pending.push_back(this->stub_->AsyncEcho(request, Watchdog()));
    }
    for (int i = 0; i < kCalls; ++i) {
      absl::StatusOr<EchoReply> reply = pending[i].Get();
      ASSERT_TRUE(reply.ok()) << "round " << round << " call " << i << ": " << reply.status();
      EXPECT_TRUE(reply->data() == sent[i]) << "round " << round << " call " << i << " came back changed";
    }
  }
  absl::StatusOr<EchoReply> small = this->Echo(*this->stub_, "small after large");
  ASSERT_TRUE(small.ok()) << small.status();
}

TYPED_TEST(ReliableTransportConformance, SixteenThreadsOfAThousandConcurrentCalls) {
  constexpr int kThreads = 16;
  constexpr int kCallsPerThread = 1000;
  std::atomic<int> mismatches{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Future<EchoReply>> pending;
      std::vector<std::string> sent;
      for (int i = 0; i < kCallsPerThread; ++i) {
        EchoRequest request;
        request.set_data(absl::StrCat("thread ", t, " call ", i));
        sent.push_back(request.data());
        pending.push_back(this->stub_->AsyncEcho(request, Watchdog()));
      }
      for (int i = 0; i < kCallsPerThread; ++i) {
        absl::StatusOr<EchoReply> reply = pending[i].Get();
        if (!reply.ok()) {
          failures++;
        } else if (reply->data() != sent[i]) {
          mismatches++;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

// Synchronous calls while asynchronous ones keep the connection read in the
// background: the I/O thread reads (and, on sockets, polls) the connection
// between the synchronous callers' turns at reading it themselves, and
// hands the reader role back and forth with them. Every reply reaches its
// own call, every call is checked (the last window of asynchronous ones
// too). On a datagram transport a call whose datagram was lost ends at its
// (shorter) deadline: at most 1% may; any other failure or a mismatch fails.
TYPED_TEST(TransportConformance, SynchronousCallsAmidAsynchronousOnes) {
  constexpr int kSyncThreads = 2;
  constexpr int kSyncCalls = 500;
  constexpr int kAsyncInFlight = 8;
  CallOutcomes outcomes(TypeParam::TransportKind::kReliable);
  std::atomic<bool> stop{false};
  std::atomic<int> async_done{0};
  auto check = [&outcomes](const absl::StatusOr<EchoReply>& reply, const std::string& sent) {
    if (outcomes.Record(reply.status()) && reply->data() != sent) outcomes.RecordMismatch();
  };
  std::thread async_caller([&] {
    std::vector<std::pair<Future<EchoReply>, std::string>> window;
    auto drain = [&] {
      for (auto& [pending, sent] : window) {
        check(pending.Get(), sent);
        async_done++;
      }
      window.clear();
    };
    for (int i = 0; !stop.load(); ++i) {
      EchoRequest request;
      request.set_data(absl::StrCat("async ", i));
      window.emplace_back(this->stub_->AsyncEcho(request, outcomes.Options()), request.data());
      if (window.size() >= kAsyncInFlight) drain();
    }
    drain();
  });
  // The synchronous calls start once asynchronous ones flow.
  if (!Eventually([&] { return async_done.load() >= kAsyncInFlight; })) {
    stop = true;
    async_caller.join();
    FAIL() << "no asynchronous reply within the watchdog";
  }
  std::vector<std::thread> sync_callers;
  for (int t = 0; t < kSyncThreads; ++t) {
    sync_callers.emplace_back([&, t] {
      for (int i = 0; i < kSyncCalls; ++i) {
        EchoRequest request;
        request.set_data(absl::StrCat("sync ", t, " ", i));
        check(this->stub_->Echo(request, outcomes.Options()), request.data());
      }
    });
  }
  for (auto& thread : sync_callers) thread.join();
  stop = true;
  async_caller.join();
  EXPECT_EQ(outcomes.calls(), kSyncThreads * kSyncCalls + async_done.load());
  outcomes.Check();
}

// Calls issued from completion callbacks, with sizes around the limits of
// output batching (frames a reader thread sends while it delivers one read
// are queued and written together; large ones are written at once), keep
// every reply whole and matched to its call. (A datagram may be lost: at
// most 1% of the calls, see CallOutcomes.)
TYPED_TEST(TransportConformance, CallbackChainsOfMixedSizesStayIntact) {
  constexpr int kChains = 16;
  constexpr int kCallsPerChain = 40;
  const size_t kSizes[] = {1, 100, 16 * 1024 - 200, 16 * 1024 + 1, 70 * 1024, 300 * 1024};
  if constexpr (!TypeParam::TransportKind::kReliable) {
    // Every chain may have its largest datagram in flight at once.
    const size_t needed = kChains * (TypeParam::TransportKind::kMaxMessage + 1024);
    LOCUS_SKIP_UNLESS_MACHINE(GrantedUdpReceiveBuffer() >= needed,
                              "UDP receive buffers are capped at " << GrantedUdpReceiveBuffer()
                                  << " bytes (net.core.rmem_max), less than the " << needed
                                  << " this test has in flight: raise net.core.rmem_max");
  }
  CallOutcomes outcomes(TypeParam::TransportKind::kReliable);
  absl::Mutex mu;
  int finished_chains = 0;  // guarded by mu (an annotation clang checks on members only)
  struct Chain {
    int index = 0;
    int calls = 0;
    EchoRequest request;
    EchoReply reply;
  };
  std::vector<Chain> chains(kChains);
  std::function<void(Chain*)> next = [&](Chain* chain) {
    const size_t size = std::min<size_t>(kSizes[(chain->index + chain->calls) % std::size(kSizes)],
                                         TypeParam::TransportKind::kMaxMessage);
    chain->request.set_data(std::string(size, static_cast<char>('a' + chain->calls % 26)));
    this->stub_->AsyncEcho(chain->request, &chain->reply, outcomes.Options(), [&, chain](absl::Status status) {
      if (outcomes.Record(status) && chain->reply.data() != chain->request.data()) outcomes.RecordMismatch();
      if (++chain->calls < kCallsPerChain) {
        next(chain);  // from the thread that delivered the reply
        return;
      }
      absl::MutexLock lock(&mu);
      ++finished_chains;
    });
  };
  for (int i = 0; i < kChains; ++i) {
    chains[i].index = i;
    next(&chains[i]);
  }
  {
    absl::MutexLock lock(&mu);
    auto all_done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return finished_chains == kChains; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_done), kWatchdog));
  }
  EXPECT_EQ(outcomes.calls(), kChains * kCallsPerChain);
  outcomes.Check();
}

TYPED_TEST(TransportConformance, SixteenThreadsOfSynchronousCalls) {
  CallOutcomes outcomes(TypeParam::TransportKind::kReliable);
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        EchoRequest request;
        request.set_data(absl::StrCat(t, "/", i));
        absl::StatusOr<EchoReply> reply = this->stub_->Echo(request, outcomes.Options());
        if (outcomes.Record(reply.status()) && reply->data() != request.data()) outcomes.RecordMismatch();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  outcomes.Check();
}

TYPED_TEST(TransportConformance, CallbackApiDeliversReply) {
  EchoRequest request;
  request.set_data("callback");
  EchoReply reply;
  absl::Notification done;
  absl::Status result;
  this->stub_->AsyncEcho(request, &reply, Watchdog(), [&](absl::Status status) {
    result = status;
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_EQ(reply.data(), "callback");
}

TYPED_TEST(TransportConformance, SynchronousCallFromACallbackFailsInsteadOfHanging) {
  // The callback runs on the thread that read the reply, which holds the
  // connection's reader: a synchronous call on the same connection from
  // there could never read its own reply. (In-process calls have no reader
  // to wait for: the nested call simply runs.)
  const bool inproc = std::string(TypeParam::TransportKind::kTransport) == "inproc";
  EchoRequest request;
  request.set_data("outer");
  EchoReply reply;
  absl::Notification done;
  absl::Status nested;
  this->stub_->AsyncEcho(request, &reply, Watchdog(), [&](absl::Status) {
    EchoRequest inner;
    inner.set_data("inner");
    EchoReply inner_reply;
    nested = this->stub_->Echo(inner, &inner_reply, Watchdog());
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog));
  if (inproc) {
    EXPECT_TRUE(nested.ok()) << nested;
  } else {
    EXPECT_EQ(nested.code(), absl::StatusCode::kFailedPrecondition) << nested;
    EXPECT_NE(nested.message().find("make the call asynchronous"), absl::string_view::npos) << nested;
  }
  // The connection is still usable.
  absl::StatusOr<EchoReply> after = this->Echo(*this->stub_, "after");
  ASSERT_TRUE(after.ok()) << after.status();
}

TYPED_TEST(TransportConformance, OversizeRequestFailsAndConnectionStaysUsable) {
  absl::StatusOr<EchoReply> big = this->Echo(*this->stub_, std::string(kDefaultMaxMessageSize, 'x'));
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();
  absl::StatusOr<EchoReply> small = this->Echo(*this->stub_, "still works");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->data(), "still works");
}

TYPED_TEST(TransportConformance, OversizeRequestRejectedByServerKeepsConnection) {
  // The client may send more than the server accepts: the server refuses.
  this->channel_options_.max_send_message_size = 64u << 20;
  ServerOptions options;
  // Sizes above 32 KiB: on shared memory, they travel in the bulk area.
  options.max_receive_message_size = 40000;
  this->RestartServer(options);
  absl::StatusOr<EchoReply> big = this->Echo(*this->stub_, std::string(50000, 'x'));
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();
  EXPECT_THAT(std::string(big.status().message()), HasSubstr("limit"));
  absl::StatusOr<EchoReply> small = this->Echo(*this->stub_, "ok");
  ASSERT_TRUE(small.ok()) << small.status();
}

TYPED_TEST(TransportConformance, OversizeReplyRejectedByClientKeepsConnection) {
  this->channel_options_.max_receive_message_size = 40000;
  this->RestartServer(ServerOptions{});
  absl::StatusOr<EchoReply> big = this->Echo(*this->stub_, std::string(35000, 'x'));
  ASSERT_TRUE(big.ok()) << big.status();
  // The client's receive limit does not bound what it sends: the echoed
  // reply exceeds it, so the client drops the reply and fails the call.
  absl::StatusOr<EchoReply> too_big = this->Echo(*this->stub_, std::string(50000, 'x'));
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted) << too_big.status();
  absl::StatusOr<EchoReply> small = this->Echo(*this->stub_, "ok");
  ASSERT_TRUE(small.ok()) << small.status();
}

TYPED_TEST(TransportConformance, UnknownMethodIsUnimplemented) {
  static const RpcMethod kMissing{"/locus.conformance.TestService/NoSuchMethod", RpcKind::kUnary, false};
  EchoRequest request;
  EchoReply reply;
  absl::Status status = this->channel_->CallUnary(kMissing, request, &reply, Watchdog());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("NoSuchMethod"));
  absl::StatusOr<EchoReply> not_overridden = this->stub_->NotImplemented(request, Watchdog());
  EXPECT_EQ(not_overridden.status().code(), absl::StatusCode::kUnimplemented);
}

TYPED_TEST(TransportConformance, HandlerErrorReachesClientWithMessage) {
  for (absl::StatusCode code : {absl::StatusCode::kNotFound, absl::StatusCode::kPermissionDenied,
                                absl::StatusCode::kInternal, absl::StatusCode::kAborted}) {
    FailRequest request;
    request.set_code(static_cast<int>(code));
    request.set_message(absl::StrCat("failure number ", static_cast<int>(code)));
    absl::StatusOr<EchoReply> reply = this->stub_->Fail(request, Watchdog());
    EXPECT_EQ(reply.status().code(), code);
    EXPECT_EQ(reply.status().message(), request.message());
  }
}

TYPED_TEST(TransportConformance, MetadataAndTrailersTravel) {
  CallOptions options = Watchdog();
  options.metadata.emplace_back("request-id", std::string("a\0b", 3));
  Metadata trailers;
  options.trailing_metadata = &trailers;
  EchoRequest request;
  request.set_echo_metadata_key("request-id");
  absl::StatusOr<EchoReply> reply = this->stub_->Echo(request, options);
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_EQ(trailers.size(), 1u);
  EXPECT_EQ(trailers[0].first, "request-id");
  EXPECT_EQ(trailers[0].second, std::string("a\0b", 3));
}

TYPED_TEST(TransportConformance, DeadlineIsVisibleToHandler) {
  EchoRequest request;
  request.set_report_context(true);
  absl::StatusOr<EchoReply> reply = this->stub_->Echo(request, CallOptions::WithTimeout(absl::Seconds(50)));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(reply->had_deadline());
  EXPECT_GT(reply->deadline_in_ms(), 0);
  EXPECT_LE(reply->deadline_in_ms(), 50000);
  absl::StatusOr<EchoReply> none = this->stub_->Echo(request);
  ASSERT_TRUE(none.ok());
  // Datagram transports bound every call (ChannelOptions::datagram_call_timeout).
  EXPECT_EQ(none->had_deadline(), !TypeParam::TransportKind::kReliable);
}

TYPED_TEST(TransportConformance, DeadlineExceededAtClientAndSeenByServer) {
  WaitRequest request;
  request.set_max_wait_ms(30000);
  absl::StatusOr<WaitReply> reply =
      this->stub_->WaitForCancel(request, CallOptions::WithTimeout(absl::Milliseconds(100)));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded) << reply.status();
  absl::Time watchdog = absl::Now() + kWatchdog;
  while (this->service_.cancellations_seen() == 0 && absl::Now() < watchdog) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(this->service_.cancellations_seen(), 1);
  // The connection is still good.
  ASSERT_TRUE(this->Echo(*this->stub_, "after").ok());
}

TYPED_TEST(TransportConformance, AsyncDeadlineExceeded) {
  WaitRequest request;
  request.set_max_wait_ms(30000);
  Future<WaitReply> pending =
      this->stub_->AsyncWaitForCancel(request, CallOptions::WithTimeout(absl::Milliseconds(100)));
  absl::StatusOr<WaitReply> reply = pending.Get();
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded) << reply.status();
}

// CallOptions::cancellation: Cancel() from another thread ends a call in
// progress with CANCELLED, and the server's handler sees IsCancelled()
// (CancellationSeenByTheHandler: handler pools and in-process calls). An
// inline handler on a wire occupies the thread that would read the CANCEL:
// there the call still ends at once at the client, while the handler runs
// on (CancellationOfABusyInlineHandler).

// Cancels once the server has started more than `waits_before` waits (the
// call is in progress there). Runs on its own thread.
template <typename Fixture>
void CancelOnceTheServerWaits(Fixture* test, const Cancellation& cancel, int waits_before) {
  EXPECT_TRUE(Eventually([&] { return test->service_.waits_started() > waits_before; }))
      << "the call never reached the server's handler";
  cancel.Cancel();
}

// A WaitForCancel that lasts until cancelled where the handler can see it,
// and briefly where it cannot (an inline handler holds its connection
// meanwhile; the client's call ends at the Cancel anyway).
template <typename ConfigT>
WaitRequest WaitUntilCancelled() {
  WaitRequest request;
  request.set_max_wait_ms(HandlerSeesCancel<ConfigT>() ? 30000 : 300);
  return request;
}

template <typename Fixture>
void ExpectServerSawCancellations(Fixture* test, int count) {
  static_assert(HandlerSeesCancel<typename Fixture::Config>());
  EXPECT_TRUE(Eventually([&] { return test->service_.cancellations_seen() >= count; }))
      << "the handler saw " << test->service_.cancellations_seen() << " of " << count << " cancellations";
  EXPECT_EQ(test->service_.cancellations_seen(), count);
}

// A synchronous call cancelled while its handler waits: CANCELLED, nothing
// left registered with the cancellation, the channel still good.
template <typename Fixture>
void CancelASynchronousCallWhileItsHandlerRuns(Fixture* test) {
  WaitRequest request = WaitUntilCancelled<typename Fixture::Config>();
  Cancellation cancel;
  CallOptions options = Watchdog();
  options.cancellation = cancel;
  std::thread canceller([&] { CancelOnceTheServerWaits(test, cancel, 0); });
  absl::StatusOr<WaitReply> reply = test->stub_->WaitForCancel(request, options);
  canceller.join();
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kCancelled) << reply.status();
  EXPECT_EQ(cancel.state()->registered(), 0u);  // the call left nothing behind
  ASSERT_TRUE(test->Echo(*test->stub_, "after").ok());  // the channel is still good
}

template <typename Fixture>
void CancelAnAsynchronousCallWhileItsHandlerRuns(Fixture* test) {
  WaitRequest request = WaitUntilCancelled<typename Fixture::Config>();
  Cancellation cancel;
  CallOptions options = Watchdog();
  options.cancellation = cancel;
  // In-process calls with inline handlers run inside AsyncWaitForCancel:
  // the canceller is already watching then.
  std::thread canceller([&] { CancelOnceTheServerWaits(test, cancel, 0); });
  Future<WaitReply> pending = test->stub_->AsyncWaitForCancel(request, options);
  absl::StatusOr<WaitReply> reply = pending.Get();
  canceller.join();
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kCancelled) << reply.status();
  EXPECT_EQ(cancel.state()->registered(), 0u);
  ASSERT_TRUE(test->Echo(*test->stub_, "after").ok());
}

// Two calls in progress at once (each on its own thread: an in-process call
// runs its handler on the caller's), both ended by one Cancel(). Where the
// handler sees cancellations both handlers wait at once; an inline handler
// holds the connection, so there the second call may not reach the server
// before the first is cancelled.
template <typename Fixture>
void CancelTwoCallsWithOneCancellation(Fixture* test) {
  using ConfigT = typename Fixture::Config;
  Cancellation cancel;
  CallOptions options = Watchdog();
  options.cancellation = cancel;
  WaitRequest wait = WaitUntilCancelled<ConfigT>();
  absl::Status first;
  std::thread first_caller([&] { first = test->stub_->WaitForCancel(wait, options).status(); });
  const int waits_before = HandlerSeesCancel<ConfigT>() ? 1 : 0;
  std::thread canceller([&] { CancelOnceTheServerWaits(test, cancel, waits_before); });
  absl::StatusOr<WaitReply> second = test->stub_->WaitForCancel(wait, options);
  first_caller.join();
  canceller.join();
  EXPECT_EQ(first.code(), absl::StatusCode::kCancelled) << first;
  EXPECT_EQ(second.status().code(), absl::StatusCode::kCancelled) << second.status();
  EXPECT_EQ(cancel.state()->registered(), 0u);
}

TYPED_TEST(CancellationSeenByTheHandler, CancelEndsASynchronousCallAndTheServerSeesIt) {
  CancelASynchronousCallWhileItsHandlerRuns(this);
  ExpectServerSawCancellations(this, 1);
}

TYPED_TEST(CancellationSeenByTheHandler, CancelEndsAnAsynchronousCallAndTheServerSeesIt) {
  CancelAnAsynchronousCallWhileItsHandlerRuns(this);
  ExpectServerSawCancellations(this, 1);
}

TYPED_TEST(CancellationSeenByTheHandler, OneCancelEndsTwoWaitingCallsAndTheServerSeesBoth) {
  CancelTwoCallsWithOneCancellation(this);
  ExpectServerSawCancellations(this, 2);
}

TYPED_TEST(CancellationOfABusyInlineHandler, CancelEndsASynchronousCallWhileItsHandlerRuns) {
  CancelASynchronousCallWhileItsHandlerRuns(this);
}

TYPED_TEST(CancellationOfABusyInlineHandler, CancelEndsAnAsynchronousCallWhileItsHandlerRuns) {
  CancelAnAsynchronousCallWhileItsHandlerRuns(this);
}

TYPED_TEST(CancellationOfABusyInlineHandler, OneCancelEndsTwoCallsWhileAHandlerRuns) {
  CancelTwoCallsWithOneCancellation(this);
}

TYPED_TEST(TransportConformance, CallsStartedAfterCancelFailWithoutReachingTheServer) {
  Cancellation cancel;
  cancel.Cancel();
  CallOptions options = Watchdog();
  options.cancellation = cancel;
  WaitRequest request;
  request.set_max_wait_ms(30000);
  EXPECT_EQ(this->stub_->WaitForCancel(request, options).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(this->stub_->AsyncWaitForCancel(request, options).Get().status().code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(this->service_.waits_started(), 0);
  EXPECT_EQ(cancel.state()->registered(), 0u);
}

TYPED_TEST(TransportConformance, OneCancellationServesManyCallsAndKeepsNothingOfFinishedOnes) {
  Cancellation cancel;
  CallOutcomes outcomes(TypeParam::TransportKind::kReliable);
  CallOptions options = outcomes.Options();
  options.cancellation = cancel;
  EchoRequest request;
  request.set_data("x");
  for (int i = 0; i < 50; ++i) outcomes.Record(this->stub_->Echo(request, options).status());
  std::vector<Future<EchoReply>> pending;
  for (int i = 0; i < 50; ++i) pending.push_back(this->stub_->AsyncEcho(request, options));
  for (auto& p : pending) outcomes.Record(p.Get().status());
  outcomes.Check();
  EXPECT_EQ(cancel.state()->registered(), 0u);
}

// Cancel() racing the reply: each call is cancelled from another thread at
// a moment that sweeps across its round trip, so that some cancels land
// before the request leaves, some while the handler runs, some as the
// reply arrives and some after. Every call ends exactly once, with its
// reply (whole) or CANCELLED, leaves nothing registered, and the channel
// stays good. (A lost datagram: DEADLINE_EXCEEDED, see CallOutcomes.)
TYPED_TEST(TransportConformance, CancelRacingTheReplyEndsEveryCallOnceWithItsReplyOrCancelled) {
  constexpr int kCalls = 400;
  CallOutcomes outcomes(TypeParam::TransportKind::kReliable);
  // A typical round trip on this machine now, to spread the cancels over.
  const absl::Time start = absl::Now();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(this->Echo(*this->stub_, "warm up").ok());
  const absl::Duration round_trip = (absl::Now() - start) / 20;
  // Per call, what must outlive it: a second completion would land here.
  struct Call {
    Cancellation cancel;
    EchoRequest request;
    EchoReply reply;
    std::atomic<int> completions{0};
    absl::Notification done;
    absl::Status status;
  };
  std::vector<std::shared_ptr<Call>> calls;
  int cancelled = 0;
  for (int i = 0; i < kCalls; ++i) {
    auto call = std::make_shared<Call>();
    calls.push_back(call);
    CallOptions options = outcomes.Options();
    options.cancellation = call->cancel;
    call->request.set_data(absl::StrCat("call ", i));
    // The canceller waits (spinning, no sleep) up to twice the round trip.
    const absl::Duration delay = round_trip * (2.0 * (i % 40) / 40);
    std::atomic<bool> go{false};
    std::thread canceller([&go, delay, call] {
      while (!go.load()) {
      }
      const absl::Time at = absl::Now() + delay;
      while (absl::Now() < at) {
      }
      call->cancel.Cancel();
    });
    go = true;
    if (i % 2 == 0) {
      this->stub_->AsyncEcho(call->request, &call->reply, options, [call](absl::Status s) {
        if (call->completions.fetch_add(1) == 0) {
          call->status = s;
          call->done.Notify();
        }
      });
    } else {
      call->status = this->stub_->Echo(call->request, &call->reply, options);
      call->completions.fetch_add(1);
      call->done.Notify();
    }
    canceller.join();  // ends by itself: a bounded spin, then Cancel()
    ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(kWatchdog)) << "call " << i << " never ended";
    if (absl::IsCancelled(call->status)) {
      ++cancelled;
    } else if (outcomes.Record(call->status) && call->reply.data() != call->request.data()) {
      outcomes.RecordMismatch();
    }
    EXPECT_EQ(call->cancel.state()->registered(), 0u) << "call " << i;
  }
  outcomes.Check();
  // Cancelled calls do not break the channel.
  absl::StatusOr<EchoReply> after = this->Echo(*this->stub_, "after the race");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->data(), "after the race");
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(calls[i]->completions.load(), 1) << "call " << i;
  std::printf("%d of %d calls ended cancelled (round trip %s)\n", cancelled, kCalls,
              absl::FormatDuration(round_trip).c_str());
}

TYPED_TEST(TransportConformance, ManyTinyDeadlinesCompleteExactlyOnce) {
  // Deadlines racing replies, timers and registration: every call completes
  // exactly once, with its reply or DEADLINE_EXCEEDED.
  constexpr int kCalls = 2000;
  std::vector<std::atomic<int>> completions(kCalls);
  std::atomic<int> unexpected{0};
  std::vector<EchoReply> replies(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    EchoRequest request;
    request.set_data("x");
    this->stub_->AsyncEcho(request, &replies[i],
                           CallOptions::WithTimeout(absl::Microseconds(i % 50)),
                           [&, i](absl::Status status) {
                             if (!status.ok() && !absl::IsDeadlineExceeded(status)) unexpected++;
                             completions[i]++;
                           });
  }
  EXPECT_TRUE(Eventually([&] {
    return std::all_of(completions.begin(), completions.end(), [](const auto& c) { return c.load() > 0; });
  })) << "calls never completed";
  EXPECT_EQ(unexpected.load(), 0);
  // One round trip later (a late duplicate reply would have arrived by
  // then on an ordered transport), still exactly one completion each.
  EXPECT_TRUE(this->Echo(*this->stub_, "still fine").ok());
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(completions[i].load(), 1) << "call " << i;
}

// A completion callback that calls again on its channel while the channel
// replaces a broken connection (the server went away) must not deadlock:
// the second call ends with a clear error. (In-process calls have no
// connection to replace.)
TYPED_TEST(WireTransportConformance, CallbackMayCallTheSameChannelWhileItsConnectionBreaks) {
  WaitRequest wait;
  wait.set_max_wait_ms(30000);
  WaitReply wait_reply;
  absl::Notification first_done;
  absl::Notification second_done;
  absl::Status second_status;
  EchoReply second_reply;
  this->stub_->AsyncWaitForCancel(wait, &wait_reply, CallOptions::WithTimeout(kWatchdog),
                                  [&](absl::Status) {
                                    EchoRequest again;
                                    this->stub_->AsyncEcho(again, &second_reply,
                                                           CallOptions::WithTimeout(absl::Seconds(5)),
                                                           [&](absl::Status s) {
                                                             second_status = s;
                                                             second_done.Notify();
                                                           });
                                    first_done.Notify();
                                  });
  EXPECT_TRUE(Eventually([&] { return this->service_.waits_started() > 0; }))
      << "the call never reached the server";
  this->server_->Shutdown(absl::Now());  // fails the waiting call: its callback calls again
  EXPECT_TRUE(first_done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_TRUE(second_done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_FALSE(second_status.ok());  // no server any more: a clear error, not a hang
}

// A new server on the old address: the channel gets there again. At most
// one call fails on the way (UNAVAILABLE at once, never a hang until the
// deadline: over UDP the new server has no session for the client and says
// so with GOAWAY).
TYPED_TEST(TransportConformance, ServerRestartedOnTheSameAddressIsReachedAgain) {
  ASSERT_TRUE(this->Echo(*this->stub_, "before").ok());
  this->server_->Shutdown();
  this->StartAgainOnTheSameAddress();
  if (this->HasFatalFailure()) return;
  int failures = 0;
  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    EchoRequest request;
    request.set_data("after");
    absl::StatusOr<EchoReply> reply =
        this->stub_->Echo(request, CallOptions::WithTimeout(absl::Seconds(20)));
    if (reply.ok()) break;
    ++failures;
    last = reply.status();
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable) << reply.status();
  }
  EXPECT_LE(failures, 1) << last;
}

TYPED_TEST(TransportConformance, ServerStoppedGivesUnavailable) {
  ASSERT_TRUE(this->Echo(*this->stub_, "before").ok());
  this->server_->Shutdown();
  absl::StatusOr<EchoReply> after = this->Echo(*this->stub_, "after");
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable) << after.status();
  after = this->Echo(*this->stub_, "after, again");
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable) << after.status();
  auto fresh = Connect(this->address_, this->channel_options_);
  EXPECT_EQ(fresh.status().code(), absl::StatusCode::kUnavailable) << fresh.status();
}

// Graceful shutdown: a call already running when Shutdown starts is let
// finish within the grace period, and its reply reaches the client (the
// connection closes only once the reply is out).
TYPED_TEST(TransportConformance, ShutdownLetsACallInProgressAnswer) {
  WaitRequest request;
  request.set_max_wait_ms(300);  // not cancelled by a graceful shutdown: runs out
  absl::StatusOr<WaitReply> reply;
  std::thread caller([&] { reply = this->stub_->WaitForCancel(request, Watchdog()); });
  EXPECT_TRUE(Eventually([&] { return this->service_.waits_started() > 0; }))
      << "the call never reached the server";
  this->server_->Shutdown(absl::Now() + absl::Seconds(20));
  caller.join();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_FALSE(reply->saw_cancellation());
}

TYPED_TEST(WireTransportConformance, ServerKilledMidCallGivesUnavailableBeforeDeadline) {
  // A server in its own process, so that it can really die.
  std::string listen =
      SiblingAddress(TypeParam::TransportKind::ListenAddress(this->dir_), this->dir_, "child");
  ChildServer child(LOCUS_TEST_SERVER_PATH, {listen});
  ASSERT_EQ(child.addresses().size(), 1u) << "test server did not start";
  const std::string& address = child.addresses()[0];
  auto channel = Connect(address, this->channel_options_);
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_EQ((*channel)->transport_name(), TypeParam::TransportKind::kTransport);
  TestService::Stub stub(*channel);
  WaitRequest request;
  request.set_max_wait_ms(60000);
  const absl::Duration deadline = absl::Seconds(30);
  absl::Time start = absl::Now();
  Future<WaitReply> pending = stub.AsyncWaitForCancel(request, CallOptions::WithTimeout(deadline));
  // The reply to a later call on the same connection: the server has read
  // the first (the child runs handlers on a pool, so its handler waits).
  ASSERT_TRUE(this->Echo(stub, "behind the waiting call").ok());
  child.Kill();
  absl::StatusOr<WaitReply> reply = pending.Get();
  absl::Duration waited = absl::Now() - start;
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable) << reply.status();
  EXPECT_LT(waited, deadline);
  // A synchronous call on the dead channel fails the same way.
  absl::StatusOr<EchoReply> sync = this->Echo(stub, "x");
  EXPECT_EQ(sync.status().code(), absl::StatusCode::kUnavailable) << sync.status();
}

// Watches a raw connection for being closed by the server.
class ClosedWatcher : public FrameSink {
 public:
  // With `stuck`, the first frame delivered blocks its reader until
  // Unstick(): a client whose consumer is stuck in a callback and so has
  // stopped reading.
  explicit ClosedWatcher(bool stuck = false) : stuck_(stuck) {}
  void OnFrame(Frame&) override {
    if (stuck_) stuck_released_.WaitForNotification();
  }
  void Unstick() {
    if (stuck_ && !stuck_released_.HasBeenNotified()) stuck_released_.Notify();
  }
  void OnOversizeFrame(const FrameHeader&) override {}
  void OnClosed(const absl::Status&) override { closed.Notify(); }
  absl::Notification closed;

 private:
  const bool stuck_;
  absl::Notification stuck_released_;
};

template <typename ConfigT>
void SendBadBytesAndExpectOnlyThatConnectionClosed(TransportConformance<ConfigT>* test,
                                                   const FrameHeader& header,
                                                   absl::string_view body,
                                                   absl::string_view expected_log) {
  StderrCapture captured;
  auto transport = DefaultTransportRegistry().ForAddress(test->address_);
  ASSERT_TRUE(transport.ok());
  ClosedWatcher watcher;  // outlives the connection (an early ASSERT return)
  auto raw = (*transport)->Connect(test->address_, TransportOptions{}, absl::Now() + kWatchdog);
  ASSERT_TRUE(raw.ok()) << raw.status();
  (*raw)->Start(&watcher);
  ASSERT_TRUE((*raw)->Send(header, {}, body, absl::Now() + kWatchdog).ok());
  bool truncated = header.magic == kFrameMagic;
  if (truncated) (*raw)->Close(absl::CancelledError("test hangs up mid-frame"));
  EXPECT_TRUE(watcher.closed.WaitForNotificationWithTimeout(kWatchdog));
  // Other clients are still served.
  auto other = Connect(test->address_, test->channel_options_);
  ASSERT_TRUE(other.ok()) << other.status();
  TestService::Stub other_stub(*other);
  EXPECT_TRUE(test->Echo(other_stub, "other client").ok());
  EXPECT_TRUE(test->Echo(*test->stub_, "existing client").ok());
  raw->reset();
  // The server logged why it closed the connection.
  EXPECT_TRUE(captured.WaitFor(std::string(expected_log))) << captured.Contents();
}

// Records the frames a raw connection receives.
class FrameCollector : public FrameSink {
 public:
  void OnFrame(Frame& frame) override {
    absl::MutexLock lock(&mu_);
    frames_.push_back({frame.header, std::string(frame.meta_bytes())});
  }
  void OnOversizeFrame(const FrameHeader&) override {}
  void OnClosed(const absl::Status&) override {}
  // Waits (bounded by the watchdog) for a frame of `type` for `call_id`;
  // returns its meta, or nullopt.
  std::optional<std::string> WaitFor(FrameType type, uint64_t call_id) {
    absl::MutexLock lock(&mu_);
    std::string meta;
    auto arrived = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      for (const auto& [header, m] : frames_) {
        if (header.frame_type() == type && header.call_id == call_id) {
          meta = m;
          return true;
        }
      }
      return false;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&arrived), kWatchdog)) return std::nullopt;
    return meta;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<FrameHeader, std::string>> frames_ ABSL_GUARDED_BY(mu_);
};

// GOAWAY tells the client which calls were not processed, so that it can
// fail (and retry) them at once: the server must then really refuse them.
// (A stream holds the grace period here: reliable transports only.)
TYPED_TEST(ReliableWireTransportConformance, CallsAboveTheGoAwayIdAreRefusedUnprocessed) {
  auto transport = DefaultTransportRegistry().ForAddress(this->address_);
  ASSERT_TRUE(transport.ok());
  // Declared before the connection, so that it outlives the connection's
  // reader (which delivers OnClosed to it).
  FrameCollector frames;
  auto raw = (*transport)->Connect(this->address_, TransportOptions{}, absl::Now() + kWatchdog);
  ASSERT_TRUE(raw.ok()) << raw.status();
  (*raw)->Start(&frames);
  auto send = [&](FrameType type, uint32_t flags, uint64_t id, const std::string& meta,
                  const std::string& payload) {
    FrameHeader header = FrameHeader::Make(type, flags, id);
    header.meta_length = static_cast<uint32_t>(meta.size());
    header.payload_length = static_cast<uint32_t>(payload.size());
    return (*raw)->Send(header, meta, payload, absl::Now() + kWatchdog);
  };
  auto request_meta = [](const char* method) {
    std::string meta;
    internal::EncodeCallHeader(method, 0, {}, &meta);
    return meta;
  };
  wire::Hello hello;
  hello.set_min_protocol_version(kProtocolVersion);
  hello.set_max_protocol_version(kProtocolVersion);
  ASSERT_TRUE(send(FrameType::kHello, 0, 0, hello.SerializeAsString(), "").ok());
  ASSERT_TRUE(frames.WaitFor(FrameType::kHelloAck, 0).has_value());
  // A call in progress on another connection keeps the server in its grace
  // period: a streaming one, whose handler holds no I/O thread (an inline
  // unary handler would hold a loop thread this connection may share).
  GenerateRequest hold;
  hold.set_count(1);
  hold.set_size(1);
  hold.set_then_wait_ms(3000);
  ClientReader<EchoReply> holding = this->stub_->Generate(hold, Watchdog());
  EchoReply first;
  ASSERT_TRUE(holding.Read(&first));
  std::thread shutdown([&] { this->server_->Shutdown(absl::Now() + absl::Seconds(10)); });
  struct Joiner {
    std::thread& thread;
    ~Joiner() { thread.join(); }
  } joiner{shutdown};
  std::optional<std::string> goaway_meta = frames.WaitFor(FrameType::kGoAway, 0);
  ASSERT_TRUE(goaway_meta.has_value());
  wire::GoAway goaway;
  ASSERT_TRUE(goaway.ParseFromString(*goaway_meta));
  EXPECT_EQ(goaway.last_processed_call_id(), 0u);  // nothing was called on this connection
  // Call 1 comes after the GOAWAY: refused, never run.
  EchoRequest echo;
  echo.set_data("late");
  ASSERT_TRUE(send(FrameType::kRequest, kFlagHasMessage | kFlagEndStream, 1,
                   request_meta("/locus.conformance.TestService/Echo"), echo.SerializeAsString())
                  .ok());
  std::optional<std::string> refused = frames.WaitFor(FrameType::kResponse, 1);
  ASSERT_TRUE(refused.has_value());
  wire::CallStatus status;
  ASSERT_TRUE(status.ParseFromString(*refused));
  EXPECT_EQ(status.code(), static_cast<int>(absl::StatusCode::kUnavailable)) << status.message();
  (void)holding.Finish();
  (*raw)->Close(absl::CancelledError("test done"));
}

TYPED_TEST(ReliableWireTransportConformance, GarbageBytesCloseThatConnectionOnly) {
  FrameHeader garbage{};
  std::memcpy(&garbage, "GET / HTTP/1.1\r\nHost: x\r\n", sizeof(garbage));
  SendBadBytesAndExpectOnlyThatConnectionClosed(this, garbage, "\r\n\r\n", "malformed input");
}

TYPED_TEST(ReliableWireTransportConformance, TruncatedFrameClosesThatConnectionOnly) {
  // A HELLO announcing 100 bytes of meta, of which 10 arrive before the
  // client hangs up.
  FrameHeader header = FrameHeader::Make(FrameType::kHello, 0, 0);
  header.meta_length = 100;
  SendBadBytesAndExpectOnlyThatConnectionClosed(this, header, "0123456789", "truncated frame");
}

TYPED_TEST(ReliableWireTransportConformance, ClientThatStopsReadingIsDisconnected) {
  ServerOptions options;
  options.send_stall_timeout = absl::Milliseconds(300);
  this->RestartServer(options);
  StderrCapture captured;
  auto transport = DefaultTransportRegistry().ForAddress(this->address_);
  ASSERT_TRUE(transport.ok());
  // A raw connection that sends but never reads what arrives. A stream
  // socket's connection runs with background reads off (its event loop, which
  // other connections share, still flushes its output); a shared-memory
  // connection's own reader thread gets stuck in the first frame it delivers.
  const bool shared_memory = std::string(TypeParam::TransportKind::kTransport) == "shm";
  ClosedWatcher watcher(/*stuck=*/shared_memory);  // outlives the connection
  // Shared memory: bulk areas of 1 MiB, so that the replies overflow them
  // (and the ring) while this side's sends, which only its own threads
  // flush, still get enough requests through.
  TransportOptions raw_options;
  raw_options.shm_bulk_bytes = 1u << 20;
  auto raw = (*transport)->Connect(this->address_, raw_options, absl::Now() + kWatchdog);
  ASSERT_TRUE(raw.ok()) << raw.status();
  struct UnstickFirst {  // before the connection joins its reader, on every exit
    ClosedWatcher* watcher;
    ~UnstickFirst() { watcher->Unstick(); }
  } unstick_first{&watcher};
  if (!shared_memory) (*raw)->AdjustBackgroundReads(-1);
  (*raw)->Start(&watcher);
  wire::Hello hello;
  hello.set_min_protocol_version(kProtocolVersion);
  hello.set_max_protocol_version(kProtocolVersion);
  const std::string hello_meta = hello.SerializeAsString();
  FrameHeader hello_header = FrameHeader::Make(FrameType::kHello, 0, 0);
  hello_header.meta_length = static_cast<uint32_t>(hello_meta.size());
  ASSERT_TRUE((*raw)->Send(hello_header, hello_meta, {}, absl::Now() + kWatchdog).ok());
  // 24 MiB of replies: more than any socket buffer, ring or bulk area
  // holds, so the server has to queue them (its reader never blocks on a
  // send).
  EchoRequest request;
  request.set_data(std::string(256 << 10, 'x'));
  const std::string payload = request.SerializeAsString();
  std::string meta;
  internal::EncodeCallHeader(TestService::kMethodEcho.full_name, 0, {}, &meta);
  // Sent as the runtime sends them (on shared memory, through the bulk area
  // while it has room).
  for (uint64_t i = 0; i < 96; ++i) {
    FrameHeader header = FrameHeader::Make(FrameType::kRequest, kFlagHasMessage | kFlagEndStream, 2 * i + 1);
    header.meta_length = static_cast<uint32_t>(meta.size());
    header.payload_length = static_cast<uint32_t>(payload.size());
    absl::Status sent = (*raw)->SendWithPayloadWriter(
        header, meta,
        [&payload](char* out) {
          std::memcpy(out, payload.data(), payload.size());
          return true;
        },
        absl::Now() + absl::Seconds(2));
    if (!sent.ok()) break;
  }
  // The server gives up on it after the stall timeout, and says why.
  EXPECT_TRUE(captured.WaitFor("stopped reading")) << captured.Contents();
  watcher.Unstick();
  EXPECT_TRUE(watcher.closed.WaitForNotificationWithTimeout(kWatchdog));
  // Other clients are still served.
  EXPECT_TRUE(this->Echo(*this->stub_, "existing client").ok());
  raw->reset();
}

TYPED_TEST(WireTransportConformance, NonLocusPeerCannotHandshake) {
  // A server that accepts but never answers the handshake: Connect must fail
  // by its deadline instead of hanging.
  auto transport = DefaultTransportRegistry().ForAddress(this->address_);
  ASSERT_TRUE(transport.ok());
  std::vector<std::unique_ptr<Connection>> accepted;
  absl::Mutex mu;
  std::string silent_address =
      SiblingAddress(TypeParam::TransportKind::ListenAddress(this->dir_), this->dir_, "silent");
  auto listener = (*transport)->Listen(silent_address, TransportOptions{},
                                       [&](std::unique_ptr<Connection> c) {
                                         absl::MutexLock lock(&mu);
                                         accepted.push_back(std::move(c));
                                       });
  ASSERT_TRUE(listener.ok()) << listener.status();
  ChannelOptions options = this->channel_options_;
  options.connect_timeout = absl::Milliseconds(300);
  auto channel = Connect((*listener)->address(), options);
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kUnavailable) << channel.status();
  EXPECT_THAT(std::string(channel.status().message()), HasSubstr("handshake"));
  absl::MutexLock lock(&mu);
  for (auto& c : accepted) c->Close(absl::CancelledError("test over"));
}

// Metadata: a frame's meta section (the call header: method, deadline and
// client metadata; or the status and trailing metadata) is limited to
// kDefaultMaxMetaSize, 64 KiB; over a datagram transport the datagram
// (65507 bytes, with the frame header and the message) is the limit.
template <typename Kind>
size_t MetaRoom(size_t payload_bytes) {
  if constexpr (Kind::kReliable) {
    return kDefaultMaxMetaSize;
  } else {
    return 65507 - sizeof(FrameHeader) - payload_bytes;  // kMaxDatagramBytes
  }
}

// One client metadata entry {"k": value} whose Echo call header, with a
// watchdog deadline, is exactly `meta_bytes` long.
Metadata MetadataOfHeaderSize(size_t meta_bytes) {
  const int64_t timeout_ns = absl::ToInt64Nanoseconds(kWatchdog);
  Metadata metadata{{"k", ""}};
  const size_t empty = internal::CallHeaderSize(TestService::kMethodEcho.full_name, timeout_ns, metadata);
  size_t value = meta_bytes - empty;
  // The value's length varints grow with it: shrink until it fits.
  for (;; --value) {
    metadata[0].second.assign(value, 'v');
    if (internal::CallHeaderSize(TestService::kMethodEcho.full_name, timeout_ns, metadata) <= meta_bytes) break;
  }
  return metadata;
}

// An Echo request that echoes client metadata "k", serialized size.
EchoRequest EchoOfMetadataK() {
  EchoRequest request;
  request.set_echo_metadata_key("k");
  return request;
}

TYPED_TEST(TransportConformance, MetadataFillingTheMetaLimitTravelsBothWays) {
  const EchoRequest request = EchoOfMetadataK();
  const size_t room = MetaRoom<typename TypeParam::TransportKind>(request.ByteSizeLong());
  CallOptions options = Watchdog();
  options.metadata = MetadataOfHeaderSize(room);
  ASSERT_EQ(internal::CallHeaderSize(TestService::kMethodEcho.full_name,
                                     absl::ToInt64Nanoseconds(kWatchdog), options.metadata),
            room);
  Metadata trailers;
  options.trailing_metadata = &trailers;
  absl::StatusOr<EchoReply> reply = this->stub_->Echo(request, options);
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_EQ(trailers.size(), 1u);
  EXPECT_EQ(trailers[0].first, "k");
  EXPECT_TRUE(trailers[0].second == options.metadata[0].second)
      << "a value of " << trailers[0].second.size() << " bytes came back for "
      << options.metadata[0].second.size();
}

TYPED_TEST(TransportConformance, ThousandsOfMetadataEntriesArriveInOrder) {
  CallOptions options = Watchdog();
  for (int i = 0; i < 2000; ++i) {
    options.metadata.emplace_back(absl::StrCat("key-", i % 7), absl::StrCat("value ", i));
  }
  Metadata trailers;
  options.trailing_metadata = &trailers;
  EchoRequest request;
  request.set_echo_all_metadata(true);
  absl::StatusOr<EchoReply> reply = this->stub_->Echo(request, options);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(trailers == options.metadata) << trailers.size() << " of " << options.metadata.size()
                                            << " entries came back, or changed, or out of order";
}

// Metadata one byte over the limit fails that call with
// RESOURCE_EXHAUSTED, as an oversize message does, and nothing else: calls
// and streams already open on the connection go on.
TYPED_TEST(TransportConformance, MetadataOverTheMetaLimitFailsThatCallOnly) {
  const EchoRequest request = EchoOfMetadataK();
  const size_t room = MetaRoom<typename TypeParam::TransportKind>(request.ByteSizeLong());
  std::optional<ClientReaderWriter<EchoRequest, EchoReply>> chat;
  if constexpr (TypeParam::TransportKind::kReliable) chat.emplace(OpenChat(*this->stub_));
  CallOptions options = Watchdog();
  options.metadata = MetadataOfHeaderSize(room);
  options.metadata[0].second += 'v';
  absl::StatusOr<EchoReply> reply = this->stub_->Echo(request, options);
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kResourceExhausted) << reply.status();
  EXPECT_EQ(this->stub_->AsyncEcho(request, options).Get().status().code(),
            absl::StatusCode::kResourceExhausted);
  if (chat.has_value()) {
    // A stream with that metadata fails alike.
    ClientReaderWriter<EchoRequest, EchoReply> refused = this->stub_->Chat(options);
    EXPECT_EQ(refused.Finish().code(), absl::StatusCode::kResourceExhausted);
    EchoRequest ping;
    ping.set_data("still open");
    EchoReply pong;
    EXPECT_TRUE(chat->Write(ping) && chat->Read(&pong)) << "the open stream ended: " << chat->Finish();
    EXPECT_EQ(pong.data(), "still open");
    chat->WritesDone();
    EXPECT_TRUE(chat->Finish().ok());
  }
  absl::StatusOr<EchoReply> after = this->Echo(*this->stub_, "after");
  ASSERT_TRUE(after.ok()) << after.status();
}

// Trailing metadata over the limit: the server cannot send that status,
// so the call fails (RESOURCE_EXHAUSTED, as a reply over the size limit)
// and the connection stays.
TYPED_TEST(TransportConformance, TrailingMetadataOverTheMetaLimitFailsThatCallOnly) {
  std::optional<ClientReaderWriter<EchoRequest, EchoReply>> chat;
  if constexpr (TypeParam::TransportKind::kReliable) chat.emplace(OpenChat(*this->stub_));
  EchoRequest request;
  request.set_trailer_bytes(static_cast<int>(kDefaultMaxMetaSize));
  absl::StatusOr<EchoReply> reply = this->stub_->Echo(request, Watchdog());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kResourceExhausted) << reply.status();
  if (chat.has_value()) {
    EchoRequest ping;
    ping.set_data("still open");
    EchoReply pong;
    EXPECT_TRUE(chat->Write(ping) && chat->Read(&pong)) << "the open stream ended: " << chat->Finish();
    chat->WritesDone();
    EXPECT_TRUE(chat->Finish().ok());
  }
  absl::StatusOr<EchoReply> after = this->Echo(*this->stub_, "after");
  ASSERT_TRUE(after.ok()) << after.status();
}

// What the process holds: file descriptors and threads (both sides of every
// connection live in this process).
int OpenFileDescriptors() {
  int count = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (readdir(dir) != nullptr) ++count;
    closedir(dir);
  }
  return count;
}
int ThreadsInProcess() {
  int count = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (readdir(dir) != nullptr) ++count;
    closedir(dir);
  }
  return count;
}

// Many channels (each with its own connection) calling one server at once,
// then connection churn: channels opened, used once and dropped, again and
// again. Every call succeeds (datagrams: see CallOutcomes) and the server
// goes on serving. With `given_back`, what the connections held (file
// descriptors and threads on both sides) must be given back.
template <typename Fixture>
void ManyChannelsThenChurn(Fixture* test, bool given_back) {
  using Kind = typename Fixture::Kind;
  constexpr int kChannels = 32;
  constexpr int kCallers = 8;
  constexpr int kChurn = 150;
  CallOutcomes outcomes(Kind::kReliable);
  auto call = [&](TestService::Stub& stub, const std::string& data) {
    EchoRequest request;
    request.set_data(data);
    absl::StatusOr<EchoReply> reply = stub.Echo(request, outcomes.Options());
    if (outcomes.Record(reply.status()) && reply->data() != data) outcomes.RecordMismatch();
  };
  // One connection made and dropped, and an asynchronous call, first: what
  // the process starts once (timer thread, I/O threads) is not counted.
  {
    auto warm = Connect(test->address_, test->channel_options_);
    ASSERT_TRUE(warm.ok()) << warm.status();
    TestService::Stub stub(*warm);
    EchoRequest request;
    ASSERT_TRUE(stub.AsyncEcho(request, Watchdog()).Get().ok());
  }
  const int fds_before = OpenFileDescriptors();
  const int threads_before = ThreadsInProcess();
  {
    std::vector<std::shared_ptr<Channel>> channels;
    for (int i = 0; i < kChannels; ++i) {
      auto channel = Connect(test->address_, test->channel_options_);
      ASSERT_TRUE(channel.ok()) << "channel " << i << ": " << channel.status();
      ASSERT_EQ((*channel)->transport_name(), Kind::kTransport);
      channels.push_back(*channel);
    }
    std::vector<std::thread> callers;
    for (int t = 0; t < kCallers; ++t) {
      callers.emplace_back([&, t] {
        std::vector<TestService::Stub> stubs;
        for (int c = t; c < kChannels; c += kCallers) stubs.emplace_back(channels[c]);
        for (int round = 0; round < 25; ++round) {
          for (size_t c = 0; c < stubs.size(); ++c) call(stubs[c], absl::StrCat(t, "/", c, "/", round));
        }
      });
    }
    for (auto& caller : callers) caller.join();
  }
  for (int i = 0; i < kChurn; ++i) {
    auto channel = Connect(test->address_, test->channel_options_);
    ASSERT_TRUE(channel.ok()) << "churn " << i << ": " << channel.status();
    TestService::Stub stub(*channel);
    call(stub, absl::StrCat("churn ", i));
  }
  outcomes.Check();
  EXPECT_EQ(outcomes.calls(), kChannels * 25 + kChurn);
  // The test's own channel, open all along, still works.
  ASSERT_TRUE(test->Echo(*test->stub_, "after the churn").ok());
  if (!given_back) return;
  EXPECT_TRUE(Eventually([&] { return OpenFileDescriptors() <= fds_before; }))
      << OpenFileDescriptors() << " file descriptors open, " << fds_before << " before";
  EXPECT_TRUE(Eventually([&] { return ThreadsInProcess() <= threads_before; }))
      << ThreadsInProcess() << " threads, " << threads_before << " before";
}

TYPED_TEST(ReliableTransportConformance, ManyChannelsAndConnectionChurnAgainstOneServerGiveBackWhatTheyHeld) {
  ManyChannelsThenChurn(this, /*given_back=*/true);
}

// Datagram transports: a client's session lives on at the server until
// kUdpIdleTimeout of silence (a datagram client says no goodbye), so what
// it held comes back only then: not checked here.
// A client socket may reuse the port of an earlier one whose session still
// lives at the server: its HELLO starts a new session there.
TYPED_TEST(DatagramTransportConformance, ManyChannelsAndConnectionChurnAgainstOneServer) {
  ManyChannelsThenChurn(this, /*given_back=*/false);
}

// The server restarts (a new server on the same address) while calls are in
// flight, synchronous ones on several threads and a batch of asynchronous
// ones: each call ends exactly once, with its reply or UNAVAILABLE (a lost
// datagram: DEADLINE_EXCEEDED), none hangs, and calls then reach the new
// server.
template <typename Fixture>
void RestartWithCallsInFlight(Fixture* test) {
  using Kind = typename Fixture::Kind;
  constexpr int kThreads = 4;
  constexpr int kAsync = 64;
  constexpr int kOkAfterRestart = 20;  // per thread
  const bool reliable = Kind::kReliable;
  const CallOptions options = reliable ? Watchdog() : CallOptions::WithTimeout(absl::Seconds(5));
  std::atomic<int> unexpected{0};
  absl::Mutex mu;
  absl::Status first_unexpected;  // guarded by mu (an annotation clang checks on members only)
  auto expected = [&](const absl::Status& status) {
    if (status.ok() || absl::IsUnavailable(status) || (!reliable && absl::IsDeadlineExceeded(status))) {
      return;
    }
    unexpected.fetch_add(1);
    absl::MutexLock lock(&mu);
    if (first_unexpected.ok()) first_unexpected = status;
  };
  std::atomic<bool> restarted{false};
  std::vector<std::atomic<int>> ok_before(kThreads);
  std::vector<std::atomic<int>> ok_after(kThreads);
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      const absl::Time until = absl::Now() + kWatchdog;
      for (int i = 0; ok_after[t].load() < kOkAfterRestart && absl::Now() < until; ++i) {
        const bool after = restarted.load();
        EchoRequest request;
        request.set_data(absl::StrCat(t, "/", i));
        absl::StatusOr<EchoReply> reply = test->stub_->Echo(request, options);
        expected(reply.status());
        if (reply.ok()) (after ? ok_after : ok_before)[t].fetch_add(1);
      }
    });
  }
  // Calls flow on every thread.
  EXPECT_TRUE(Eventually([&] {
    return std::all_of(ok_before.begin(), ok_before.end(), [](const auto& n) { return n.load() >= 10; });
  }));
  struct Async {
    EchoReply reply;
    std::atomic<int> completions{0};
  };
  std::vector<std::shared_ptr<Async>> batch;
  for (int i = 0; i < kAsync; ++i) {
    auto call = std::make_shared<Async>();
    batch.push_back(call);
    EchoRequest request;
    request.set_data(absl::StrCat("async ", i));
    test->stub_->AsyncEcho(request, &call->reply, options, [&, call](absl::Status status) {
      expected(status);
      call->completions.fetch_add(1);
    });
  }
  test->server_->Shutdown(absl::Now());
  test->StartAgainOnTheSameAddress();
  restarted = true;
  for (auto& caller : callers) caller.join();
  EXPECT_TRUE(Eventually([&] {
    return std::all_of(batch.begin(), batch.end(), [](const auto& c) { return c->completions.load() > 0; });
  })) << "asynchronous calls in flight at the restart never ended";
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_GE(ok_after[t].load(), kOkAfterRestart) << "thread " << t << " never reached the new server";
  }
  ASSERT_TRUE(test->Echo(*test->stub_, "after the restart").ok());
  for (int i = 0; i < kAsync; ++i) EXPECT_EQ(batch[i]->completions.load(), 1) << "async call " << i;
  absl::MutexLock lock(&mu);
  EXPECT_EQ(unexpected.load(), 0) << "the first: " << first_unexpected;
}

TYPED_TEST(ReliableTransportConformance, CallsInFlightWhenTheServerRestartsEndOnceAndTheChannelRecovers) {
  RestartWithCallsInFlight(this);
}

// DISABLED, bug: now and then a channel whose calls were in flight when the UDP server restarted never
// reaches the new server (a pooled server; the calls after the restart fail until the watchdog).
TYPED_TEST(DatagramTransportConformance, DISABLED_CallsInFlightWhenTheServerRestartsEndOnceAndTheChannelRecovers) {
  RestartWithCallsInFlight(this);
}

// A client process killed mid-call, as the server sees it: the connection
// closes, the call's handler learns that its call ended, and the server
// goes on serving. A stream's handler runs on the stream pool, so it can
// learn it whatever the handler mode.
TYPED_TEST(ReliableWireTransportConformance, ClientKilledMidStreamEndsTheHandlersCallAndTheServerGoesOn) {
  ::locus::testing::ChildProcess client(
      LOCUS_TEST_CLIENT_PATH,
      {this->address_, TypeParam::TransportKind::kTransport, TypeParam::spin ? "1" : "0", "chat"});
  ASSERT_TRUE(client.ready()) << "the test client did not open its stream";
  ASSERT_EQ(this->service_.streams_started(), 1);
  client.Kill();
  EXPECT_TRUE(Eventually([&] { return this->service_.stream_cancellations_seen() >= 1; }))
      << "the handler never learned that its client died";
  ASSERT_TRUE(this->Echo(*this->stub_, "another client").ok());
  auto fresh = Connect(this->address_, this->channel_options_);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  TestService::Stub fresh_stub(*fresh);
  EXPECT_TRUE(this->Echo(fresh_stub, "a new client").ok());
}

// Likewise for a unary call whose handler waits on a handler pool.
template <typename ConfigT>
class ClientDeathSeenByAPoolHandler : public TransportConformance<ConfigT> {
  static_assert(ConfigT::TransportKind::kReliable && ConfigT::TransportKind::kHasWire &&
                ConfigT::handler_threads > 0);
};
TYPED_TEST_SUITE(ClientDeathSeenByAPoolHandler, ReliableWirePoolKinds, ConfigNames);

TYPED_TEST(ClientDeathSeenByAPoolHandler, ClientKilledMidCallCancelsTheHandlersCallAndTheServerGoesOn) {
  ::locus::testing::ChildProcess client(
      LOCUS_TEST_CLIENT_PATH,
      {this->address_, TypeParam::TransportKind::kTransport, TypeParam::spin ? "1" : "0", "wait"});
  ASSERT_TRUE(client.ready()) << "the test client did not start its call";
  ASSERT_TRUE(Eventually([&] { return this->service_.waits_started() >= 1; }))
      << "the test client's call never reached the handler";
  client.Kill();
  EXPECT_TRUE(Eventually([&] { return this->service_.cancellations_seen() >= 1; }))
      << "the handler never learned that its client died";
  ASSERT_TRUE(this->Echo(*this->stub_, "another client").ok());
}

TEST(Connect, NoServerGivesUnavailable) {
  TempDir dir;
  auto unix_channel = Connect("unix:" + dir.path() + "/nobody.sock");
  EXPECT_EQ(unix_channel.status().code(), absl::StatusCode::kUnavailable) << unix_channel.status();
  auto bad_scheme = Connect("carrier-pigeon://x");
  EXPECT_EQ(bad_scheme.status().code(), absl::StatusCode::kInvalidArgument) << bad_scheme.status();
  auto long_path = Connect("unix:/tmp/" + std::string(200, 'x'));
  EXPECT_EQ(long_path.status().code(), absl::StatusCode::kInvalidArgument) << long_path.status();
}

// A Unix-socket client speaking raw frames, so that a test decides when it
// reads. Blocking, each receive bounded by the watchdog.
class RawUnixClient {
 public:
  explicit RawUnixClient(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
    const timeval timeout = absl::ToTimeval(kWatchdog);
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    connected_ = true;
  }
  ~RawUnixClient() {
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return connected_; }

  bool Send(FrameType type, uint32_t flags, uint64_t call_id, const std::string& meta,
            const std::string& payload) {
    FrameHeader header = FrameHeader::Make(type, flags, call_id);
    header.meta_length = static_cast<uint32_t>(meta.size());
    header.payload_length = static_cast<uint32_t>(payload.size());
    std::string bytes(reinterpret_cast<const char*>(&header), sizeof(header));
    bytes += meta;
    bytes += payload;
    for (size_t sent = 0; sent < bytes.size();) {
      const ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // The next whole frame; false at the end of the stream, an error or the
  // watchdog.
  bool Read(FrameHeader* header, std::string* meta, std::string* payload) {
    if (!ReadExactly(reinterpret_cast<char*>(header), sizeof(*header))) return false;
    meta->resize(header->meta_length);
    payload->resize(header->payload_length);
    return ReadExactly(meta->data(), meta->size()) && ReadExactly(payload->data(), payload->size());
  }

 private:
  bool ReadExactly(char* out, size_t size) {
    for (size_t got = 0; got < size;) {
      const ssize_t n = recv(fd_, out + got, size - got, 0);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
};

// Graceful shutdown with a reply still queued in the server's transport (a
// large reply to a client that has not read it yet): the connection closes
// only once the reply has gone out.
TEST(Server, ShutdownWaitsForAQueuedReplyToReachTheClient) {
  TempDir dir;
  TestServiceImpl service;
  Server server;
  ASSERT_TRUE(server.RegisterService(&service).ok());
  const std::string path = dir.path() + "/queued.sock";
  ASSERT_TRUE(server.AddListeningAddress("unix:" + path).ok());
  ASSERT_TRUE(server.Start().ok());
  RawUnixClient client(path);
  ASSERT_TRUE(client.connected());
  wire::Hello hello;
  hello.set_min_protocol_version(kProtocolVersion);
  hello.set_max_protocol_version(kProtocolVersion);
  ASSERT_TRUE(client.Send(FrameType::kHello, 0, 0, hello.SerializeAsString(), ""));
  FrameHeader header;
  std::string meta, payload;
  ASSERT_TRUE(client.Read(&header, &meta, &payload));
  ASSERT_EQ(header.frame_type(), FrameType::kHelloAck);
  constexpr size_t kReplyBytes = 3u << 20;  // far beyond the socket's buffers
  EchoRequest request;
  request.set_data(std::string(kReplyBytes, 'q'));
  std::string call_meta;
  internal::EncodeCallHeader("/locus.conformance.TestService/Echo", 0, {}, &call_meta);
  ASSERT_TRUE(client.Send(FrameType::kRequest, kFlagHasMessage | kFlagEndStream, 1, call_meta,
                          request.SerializeAsString()));
  // The handler answers at once; most of the reply waits in the server's
  // queue while this client does not read. (Shutdown must wait for the
  // call, too, should it come before the reply is queued.)
  ASSERT_TRUE(Eventually([&] { return service.echoes() == 1; })) << "the request never reached the handler";
  std::atomic<pid_t> shutdown_thread{0};
  std::atomic<bool> shutdown_returned{false};
  std::thread shutdown([&] {
    shutdown_thread = ::locus::testing::ThisThreadId();
    server.Shutdown(absl::Now() + absl::Seconds(30));
    shutdown_returned = true;
  });
  // A shutdown that did not wait for the queue would close the connection
  // and return: read only once it has stopped listening (the socket file is
  // gone) and either returned or blocked (waiting, as it should, for the
  // queue to drain).
  struct stat st;
  EXPECT_TRUE(Eventually([&] {
    return stat(path.c_str(), &st) != 0 && shutdown_thread.load() != 0 &&
           (shutdown_returned.load() || ::locus::testing::ThreadIsBlocked(shutdown_thread.load()));
  })) << "the shutdown never got past closing its listener";
  bool answered = false;
  while (!answered && client.Read(&header, &meta, &payload)) {
    if (header.frame_type() != FrameType::kResponse || header.call_id != 1) continue;  // GOAWAY
    EchoReply reply;
    ASSERT_TRUE(reply.ParseFromString(payload));
    EXPECT_EQ(reply.data().size(), kReplyBytes);
    answered = true;
  }
  shutdown.join();
  EXPECT_TRUE(answered) << "the connection closed before the reply was out";
}

TEST(Server, SocketFileHasModeFromOptions) {
  TempDir dir;
  TestServiceImpl service;
  Server server;
  ASSERT_TRUE(server.RegisterService(&service).ok());
  std::string path = dir.path() + "/mode.sock";
  ASSERT_TRUE(server.AddListeningAddress("unix:" + path).ok());
  ASSERT_TRUE(server.Start().ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  server.Shutdown();
  EXPECT_NE(stat(path.c_str(), &st), 0) << "socket file removed on shutdown";
}

TEST(Server, ExposesPeerCredentialsOnUnixSocketsAndSharedMemory) {
  TempDir dir;
  TestServiceImpl service;
  Server server;
  ASSERT_TRUE(server.RegisterService(&service).ok());
  ASSERT_TRUE(server.AddListeningAddress("unix:" + dir.path() + "/c.sock").ok());
  ASSERT_TRUE(server.Start().ok());
  for (const char* kind : {"unix", "shm", "inproc"}) {
    ChannelOptions options;
    options.allowed_transports = kind;
    auto channel = Connect(server.listening_addresses()[0], options);
    ASSERT_TRUE(channel.ok()) << channel.status();
    EXPECT_EQ((*channel)->transport_name(), kind);
    TestService::Stub stub(*channel);
    EchoRequest request;
    request.set_report_context(true);
    auto reply = stub.Echo(request, Watchdog());
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->transport(), kind);
    EXPECT_TRUE(reply->has_credentials()) << kind;
    EXPECT_EQ(reply->peer_pid(), getpid()) << kind;
    EXPECT_EQ(reply->peer_uid(), getuid()) << kind;
  }
}

TEST(Server, UidAllowListRefusesOtherUsers) {
  TempDir dir;
  TestServiceImpl service;
  ServerOptions options;
  options.allowed_uids = {getuid() + 1};  // not us
  Server server(options);
  ASSERT_TRUE(server.RegisterService(&service).ok());
  ASSERT_TRUE(server.AddListeningAddress("unix:" + dir.path() + "/u.sock").ok());
  ASSERT_TRUE(server.Start().ok());
  for (const char* kind : {"unix", "shm", "inproc"}) {
    ChannelOptions channel_options;
    channel_options.allowed_transports = kind;
    channel_options.connect_timeout = absl::Seconds(10);
    auto channel = Connect(server.listening_addresses()[0], channel_options);
    EXPECT_FALSE(channel.ok()) << kind;
    EXPECT_THAT(std::string(channel.status().message()), HasSubstr("uid")) << kind << ": " << channel.status();
  }
}

}  // namespace
}  // namespace locus::conformance
