// locus::Future without a server: futures with no call, taken results,
// ready futures and continuations (locus/future.h). Then on futures of real
// calls, on every transport, is in call_model_conformance_test.cc.
#include "locus/future.h"

#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "callmodel.pb.h"
#include "gtest/gtest.h"

namespace callmodel {
namespace {

using ::locus::Future;
using ::locus::MakeReadyFuture;

Text MakeText(std::string text) {
  Text message;
  message.set_text(std::move(text));
  return message;
}

// The one way to complete a future by hand: what the runtime does.
std::pair<Future<Text>, std::shared_ptr<locus::internal::FutureState<Text>>> PendingFuture() {
  auto state = std::make_shared<locus::internal::FutureState<Text>>();
  return {Future<Text>(state), state};
}

TEST(FutureWithoutCall, GetReportsFailedPrecondition) {
  Future<Text> future;
  EXPECT_FALSE(future.valid());
  EXPECT_FALSE(future.ready());
  EXPECT_FALSE(future.WaitUntil(absl::InfiniteFuture()));  // returns at once
  absl::StatusOr<Text> result = future.Get();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(result.status().message().find("no call"), std::string::npos) << result.status();
}

TEST(FutureWithoutCall, ThenRunsAtOnceWithTheError) {
  Future<Text> future;
  int runs = 0;
  absl::Status seen;
  future.Then([&](absl::StatusOr<Text> result) {
    ++runs;
    seen = result.status();
  });
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(seen.code(), absl::StatusCode::kFailedPrecondition);
}

TEST(FutureWithoutCall, MovedFromFutureHasNoCall) {
  Future<Text> original = MakeReadyFuture<Text>(MakeText("x"));
  Future<Text> moved = std::move(original);
  EXPECT_FALSE(original.valid());  // NOLINT(bugprone-use-after-move): the state under test
  EXPECT_EQ(original.Get().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(moved.Get()->text(), "x");
}

TEST(FutureTaken, SecondGetReportsFailedPrecondition) {
  Future<Text> future = MakeReadyFuture<Text>(MakeText("once"));
  ASSERT_TRUE(future.valid());
  absl::StatusOr<Text> first = future.Get();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->text(), "once");
  EXPECT_FALSE(future.valid());
  EXPECT_TRUE(future.ready());
  absl::StatusOr<Text> second = future.Get();
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("already taken"), std::string::npos) << second.status();
}

TEST(FutureTaken, ThenAfterGetGetsTheErrorAndGetAfterThenToo) {
  Future<Text> got = MakeReadyFuture<Text>(MakeText("a"));
  ASSERT_TRUE(got.Get().ok());
  absl::Status seen;
  got.Then([&](absl::StatusOr<Text> result) { seen = result.status(); });
  EXPECT_EQ(seen.code(), absl::StatusCode::kFailedPrecondition);

  auto [pending, state] = PendingFuture();
  pending.Then([](absl::StatusOr<Text>) {});
  EXPECT_FALSE(pending.valid());
  // Not complete, but already taken: fails at once instead of waiting.
  EXPECT_EQ(pending.Get().status().code(), absl::StatusCode::kFailedPrecondition);
  state->Complete(absl::OkStatus());
}

TEST(FutureTaken, CopiesShareOneResult) {
  Future<Text> future = MakeReadyFuture<Text>(MakeText("shared"));
  Future<Text> copy = future;
  EXPECT_EQ(copy.Get()->text(), "shared");
  EXPECT_FALSE(future.valid());
  EXPECT_EQ(future.Get().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(FutureThen, ReadyFutureRunsTheContinuationBeforeThenReturns) {
  Future<Text> future = MakeReadyFuture<Text>(MakeText("ready"));
  std::thread::id ran_on;
  std::string text;
  future.Then([&](absl::StatusOr<Text> result) {
    ran_on = std::this_thread::get_id();
    text = result.ok() ? result->text() : result.status().ToString();
  });
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_EQ(text, "ready");
}

TEST(FutureThen, ReadyFutureWithAnErrorPassesTheError) {
  Future<Text> future = MakeReadyFuture<Text>(absl::NotFoundError("gone"));
  absl::Status seen;
  future.Then([&](absl::StatusOr<Text> result) { seen = result.status(); });
  EXPECT_EQ(seen, absl::NotFoundError("gone"));
}

TEST(FutureThen, PendingFutureRunsTheContinuationOnTheCompletingThread) {
  auto [future, state] = PendingFuture();
  int runs = 0;
  std::thread::id ran_on;
  std::string text;
  future.Then([&](absl::StatusOr<Text> result) {
    ++runs;
    ran_on = std::this_thread::get_id();
    text = result.ok() ? result->text() : result.status().ToString();
  });
  EXPECT_EQ(runs, 0);
  EXPECT_FALSE(future.ready());
  std::thread::id completer;
  std::thread runtime([&, state = state] {
    completer = std::this_thread::get_id();
    state->value = MakeText("later");
    state->Complete(absl::OkStatus());
  });
  runtime.join();
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(ran_on, completer);
  EXPECT_EQ(text, "later");
}

TEST(FutureThen, ChainedFutureCarriesTheMappedValue) {
  auto [future, state] = PendingFuture();
  Future<size_t> length = future.Then([](absl::StatusOr<Text> result) -> absl::StatusOr<size_t> {
    if (!result.ok()) return result.status();
    return result->text().size();
  });
  EXPECT_FALSE(length.ready());
  std::thread runtime([state = state] {
    state->value = MakeText("four");
    state->Complete(absl::OkStatus());
  });
  absl::StatusOr<size_t> got = length.Get();  // waits for the chain
  runtime.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, 4u);
}

TEST(FutureThen, ChainedFutureCarriesErrorsOfEitherStage) {
  Future<int> from_call = MakeReadyFuture<Text>(absl::UnavailableError("down"))
                              .Then([](absl::StatusOr<Text> result) -> absl::StatusOr<int> {
                                if (!result.ok()) return result.status();
                                return 1;
                              });
  EXPECT_EQ(from_call.Get().status(), absl::UnavailableError("down"));
  Future<int> from_continuation =
      MakeReadyFuture<Text>(MakeText("x")).Then([](absl::StatusOr<Text>) -> absl::StatusOr<int> {
        return absl::InvalidArgumentError("no");
      });
  EXPECT_EQ(from_continuation.Get().status(), absl::InvalidArgumentError("no"));
}

TEST(FutureThen, ContinuationMayOwnMoveOnlyState) {
  std::string text;
  auto suffix = std::make_unique<std::string>("+owned");
  MakeReadyFuture<Text>(MakeText("moved"))
      .Then([&text, suffix = std::move(suffix)](absl::StatusOr<Text> result) {
        text = result->text() + *suffix;
      });
  EXPECT_EQ(text, "moved+owned");
}

TEST(FutureWait, WaitUntilSeesCompletion) {
  auto [future, state] = PendingFuture();
  EXPECT_FALSE(future.WaitUntil(absl::Now()));  // nothing yet; returns at the deadline
  absl::Notification waiting;
  std::thread runtime([&, state = state] {
    waiting.WaitForNotification();
    state->Complete(absl::OkStatus());
  });
  waiting.Notify();
  EXPECT_TRUE(future.WaitUntil(absl::InfiniteFuture()));
  runtime.join();
  EXPECT_TRUE(future.ready());
  EXPECT_TRUE(future.Get().ok());
}

}  // namespace
}  // namespace callmodel
