// The call model on every transport (tests/conformance's fixture: a server
// and a channel per test, every transport kind and handler mode):
// Future::Then on futures of real calls, ready and not ready, and
// `stub.Echo(request, {})` meaning "default options".
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "conformance_fixture.h"
#include "gtest/gtest.h"

namespace locus::conformance {
namespace {

template <typename C>
class CallModelConformance : public TransportConformance<C> {};
TYPED_TEST_SUITE(CallModelConformance, TransportKinds, ConfigNames);

// Futures that can be observed before their call completes: every kind but
// an in-process server whose handlers run inline, which completes an
// asynchronous call before AsyncFoo returns (locus/channel.h).
template <typename C>
class PendingFutureConformance : public TransportConformance<C> {
  static_assert(C::TransportKind::kHasWire || C::handler_threads > 0,
                "the call must be able to stay pending");
};
using PendingFutureKinds =
    ::testing::Types<UnixInline, UnixAbstractInline, Tcp4Inline, Tcp6Inline, ShmInline,
                     ShmAbstractInline, Udp4Inline, Udp6Inline, UnixPool, Tcp4Pool, ShmPool,
                     InProcessPool, Udp4Pool, UnixInlineNoSpin, Tcp4InlineNoSpin, ShmInlineNoSpin>;
TYPED_TEST_SUITE(PendingFutureConformance, PendingFutureKinds, ConfigNames);

EchoRequest Request(std::string data) {
  EchoRequest request;
  request.set_data(std::move(data));
  return request;
}

static_assert(std::is_same_v<decltype(std::declval<TestService::Stub&>().Echo(
                                 std::declval<const EchoRequest&>(), {})),
                             absl::StatusOr<EchoReply>>,
              "`{}` after the request is the options");

TYPED_TEST(CallModelConformance, BracesAfterTheRequestAreTheOptions) {
  absl::StatusOr<EchoReply> reply = this->stub_->Echo(Request("braces"), {});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data(), "braces");
  EchoReply into;
  absl::Status status = this->stub_->Echo(Request("into"), &into, {});
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(into.data(), "into");
}

TYPED_TEST(CallModelConformance, ThenOnACompletedCallRunsAtOnce) {
  Future<EchoReply> future = this->stub_->AsyncEcho(Request("ready"), Watchdog());
  ASSERT_TRUE(future.WaitUntil(absl::Now() + kWatchdog));
  int runs = 0;
  std::thread::id ran_on;
  absl::StatusOr<EchoReply> seen = absl::UnknownError("not run");
  future.Then([&](absl::StatusOr<EchoReply> reply) {
    ++runs;
    ran_on = std::this_thread::get_id();
    seen = std::move(reply);
  });
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->data(), "ready");
  EXPECT_EQ(future.Get().status().code(), absl::StatusCode::kFailedPrecondition);
}

TYPED_TEST(CallModelConformance, ThenChainsIntoAnotherFuture) {
  Future<size_t> size = this->stub_->AsyncEcho(Request("twelve bytes"), Watchdog())
                            .Then([](absl::StatusOr<EchoReply> reply) -> absl::StatusOr<size_t> {
                              if (!reply.ok()) return reply.status();
                              return reply->data().size();
                            });
  absl::StatusOr<size_t> got = size.Get();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, 12u);
}

TYPED_TEST(CallModelConformance, ThenGetsTheCallsError) {
  FailRequest request;
  request.set_code(static_cast<int>(absl::StatusCode::kPermissionDenied));
  request.set_message("nope");
  absl::Notification done;
  absl::Status seen;
  this->stub_->AsyncFail(request, Watchdog()).Then([&](absl::StatusOr<EchoReply> reply) {
    seen = reply.status();
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_EQ(seen.code(), absl::StatusCode::kPermissionDenied) << seen;
}

// The call waits in the handler until it is cancelled: the continuation
// attached meanwhile has not run, and runs once, with CANCELLED, when the
// call ends.
TYPED_TEST(PendingFutureConformance, ThenOnAPendingCallRunsWhenItEnds) {
  Cancellation cancel;
  CallOptions options = Watchdog();
  options.cancellation = cancel;
  WaitRequest request;
  request.set_max_wait_ms(absl::ToInt64Milliseconds(kWatchdog));
  Future<WaitReply> future = this->stub_->AsyncWaitForCancel(request, options);
  ASSERT_FALSE(future.ready());
  std::atomic<int> runs{0};
  absl::Notification ran;
  absl::Status seen;
  future.Then([&](absl::StatusOr<WaitReply> reply) {
    seen = reply.status();
    runs.fetch_add(1);
    ran.Notify();
  });
  EXPECT_EQ(runs.load(), 0);
  EXPECT_FALSE(future.valid());
  cancel.Cancel();
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(seen.code(), absl::StatusCode::kCancelled) << seen;
}

}  // namespace
}  // namespace locus::conformance
