// Code written against Greeter::StubInterface, tested with the generated
// gmock stub (MockGreeterStub, callmodel.locus_mock.h) and run against the
// real Stub on an in-process server: every overload of a unary method, a
// continuation, a streaming method through a fake stream, and errors.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "callmodel.locus_mock.h"
#include "callmodel_services.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "locus/locus.h"
#include "tests/testing/test_util.h"

namespace callmodel {
namespace {

using ::testing::_;
using ::testing::ByMove;
using ::testing::DoAll;
using ::testing::Field;
using ::testing::Property;
using ::testing::Return;
using ::testing::SetArgPointee;

Text MakeText(std::string text) {
  Text message;
  message.set_text(std::move(text));
  return message;
}

// --- The code under test: it only knows Greeter::StubInterface. ---

// Greets `name` and shouts the answer.
absl::StatusOr<std::string> Shout(Greeter::StubInterface& stub, const std::string& name) {
  absl::StatusOr<Text> reply = stub.Greet(MakeText(name));
  if (!reply.ok()) return reply.status();
  return absl::AsciiStrToUpper(reply->text());
}

// Greets each of `names` into one reused reply; stops at the first error.
absl::StatusOr<std::vector<std::string>> GreetAll(Greeter::StubInterface& stub,
                                                  const std::vector<std::string>& names) {
  std::vector<std::string> out;
  Text reply;
  for (const std::string& name : names) {
    absl::Status status = stub.Greet(MakeText(name), &reply,
                                     locus::CallOptions::WithTimeout(locus::testing::kWatchdog));
    if (!status.ok()) return status;
    out.push_back(reply.text());
  }
  return out;
}

// The greeting's length, computed in a continuation of the asynchronous call.
locus::Future<size_t> GreetingLength(Greeter::StubInterface& stub, const std::string& name) {
  return stub.AsyncGreet(MakeText(name))
      .Then([](absl::StatusOr<Text> reply) -> absl::StatusOr<size_t> {
        if (!reply.ok()) return reply.status();
        return reply->text().size();
      });
}

// Greets through the callback form; `done` gets the greeting or the error.
void GreetWithCallback(Greeter::StubInterface& stub, const std::string& name,
                       absl::AnyInvocable<void(absl::StatusOr<std::string>) &&> done) {
  auto reply = std::make_shared<Text>();
  stub.AsyncGreet(MakeText(name), reply.get(), {},
                  [reply, done = std::move(done)](absl::Status status) mutable {
                    if (!status.ok()) {
                      std::move(done)(std::move(status));
                    } else {
                      std::move(done)(reply->text());
                    }
                  });
}

// Everything the server repeats, concatenated, or the stream's error.
absl::StatusOr<std::string> Collect(Greeter::StubInterface& stub, const std::string& text,
                                    int times) {
  RepeatRequest request;
  request.set_text(text);
  request.set_times(times);
  locus::ClientReader<Text> reader = stub.Repeat(request);
  std::string all;
  Text next;
  while (reader.Read(&next)) all += next.text();
  absl::Status status = reader.Finish();
  if (!status.ok()) return status;
  return all;
}

// --- Tests with the mock. ---

TEST(StubMock, ValueOverload) {
  MockGreeterStub stub;
  EXPECT_CALL(stub, Greet(Property(&Text::text, "ada"), _))
      .WillOnce(Return(MakeText("hello, ada")));
  absl::StatusOr<std::string> shouted = Shout(stub, "ada");
  ASSERT_TRUE(shouted.ok()) << shouted.status();
  EXPECT_EQ(*shouted, "HELLO, ADA");
}

TEST(StubMock, ValueOverloadError) {
  MockGreeterStub stub;
  EXPECT_CALL(stub, Greet(_, _)).WillOnce(Return(absl::UnavailableError("no server")));
  EXPECT_EQ(Shout(stub, "ada").status(), absl::UnavailableError("no server"));
}

TEST(StubMock, OutParameterOverload) {
  MockGreeterStub stub;
  EXPECT_CALL(stub, Greet(Property(&Text::text, "a"), _, _))
      .WillOnce(DoAll(SetArgPointee<1>(MakeText("hello, a")), Return(absl::OkStatus())));
  EXPECT_CALL(stub,
              Greet(Property(&Text::text, "b"), _,
                    Field(&locus::CallOptions::deadline, ::testing::Ne(absl::InfiniteFuture()))))
      .WillOnce([](const Text& request, locus::Out<Text> reply, const locus::CallOptions&) {
        reply->set_text(absl::StrCat("hi, ", request.text()));
        return absl::OkStatus();
      });
  absl::StatusOr<std::vector<std::string>> greeted = GreetAll(stub, {"a", "b"});
  ASSERT_TRUE(greeted.ok()) << greeted.status();
  EXPECT_THAT(*greeted, ::testing::ElementsAre("hello, a", "hi, b"));
}

TEST(StubMock, OutParameterOverloadStopsAtAnError) {
  MockGreeterStub stub;
  EXPECT_CALL(stub, Greet(_, _, _))
      .WillOnce(Return(absl::OkStatus()))
      .WillOnce(Return(absl::DeadlineExceededError("late")));
  EXPECT_EQ(GreetAll(stub, {"a", "b", "c"}).status(), absl::DeadlineExceededError("late"));
}

TEST(StubMock, FutureOverloadWithAContinuation) {
  MockGreeterStub stub;
  EXPECT_CALL(stub, AsyncGreet(Property(&Text::text, "bo"), _))
      .WillOnce(Return(locus::MakeReadyFuture<Text>(MakeText("hello, bo"))));
  absl::StatusOr<size_t> length = GreetingLength(stub, "bo").Get();
  ASSERT_TRUE(length.ok()) << length.status();
  EXPECT_EQ(*length, 9u);
}

TEST(StubMock, FutureOverloadLeftAtItsDefault) {
  // A mock asked for a future it was not told about returns a default
  // Future: the continuation gets a clear error, nothing crashes.
  ::testing::NiceMock<MockGreeterStub> stub;
  absl::StatusOr<size_t> length = GreetingLength(stub, "bo").Get();
  EXPECT_EQ(length.status().code(), absl::StatusCode::kFailedPrecondition) << length.status();
}

TEST(StubMock, CallbackOverload) {
  MockGreeterStub stub;
  EXPECT_CALL(stub, AsyncGreet(Property(&Text::text, "cy"), _, _, _))
      .WillOnce([](const Text& request, locus::Out<Text> reply, const locus::CallOptions&,
                   absl::AnyInvocable<void(absl::Status) &&> done) {
        reply->set_text(absl::StrCat("hello, ", request.text()));
        std::move(done)(absl::OkStatus());
      });
  absl::StatusOr<std::string> greeting = absl::UnknownError("not called");
  GreetWithCallback(stub, "cy", [&](absl::StatusOr<std::string> result) { greeting = result; });
  ASSERT_TRUE(greeting.ok()) << greeting.status();
  EXPECT_EQ(*greeting, "hello, cy");
}

// A scripted server-streaming call for the mock to return.
class ScriptedStream final : public locus::ClientCallStream {
 public:
  ScriptedStream(std::vector<std::string> messages, absl::Status end)
      : messages_(std::move(messages)), end_(std::move(end)) {}
  bool Write(const google::protobuf::MessageLite&) override { return false; }
  bool WritesDone() override { return false; }
  bool Read(google::protobuf::MessageLite* message) override {
    if (next_ == messages_.size()) return false;
    Text text = MakeText(messages_[next_++]);
    return message->ParseFromString(text.SerializeAsString());
  }
  absl::Status Finish() override { return end_; }
  void Cancel() override {}

 private:
  const std::vector<std::string> messages_;
  const absl::Status end_;
  size_t next_ = 0;
};

TEST(StubMock, StreamingMethod) {
  MockGreeterStub stub;
  EXPECT_CALL(stub, Repeat(Property(&RepeatRequest::times, 2), _))
      .WillOnce(Return(ByMove(locus::ClientReader<Text>(std::make_unique<ScriptedStream>(
          std::vector<std::string>{"x", "y"}, absl::OkStatus())))));
  EXPECT_CALL(stub, Repeat(Property(&RepeatRequest::times, 9), _))
      .WillOnce(Return(ByMove(locus::ClientReader<Text>(std::make_unique<ScriptedStream>(
          std::vector<std::string>{"x"}, absl::AbortedError("cut"))))));
  absl::StatusOr<std::string> all = Collect(stub, "ignored", 2);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, "xy");
  EXPECT_EQ(Collect(stub, "ignored", 9).status(), absl::AbortedError("cut"));
}

// --- The same code against the real stub. ---

TEST(StubInterfaceForReal, SameCodeRunsAgainstAServer) {
  GreeterImpl greeter;
  locus::Server server;
  ASSERT_TRUE(server.RegisterService(&greeter).ok());
  ASSERT_TRUE(server.Start().ok());
  absl::StatusOr<std::shared_ptr<locus::Channel>> channel = server.InProcessChannel();
  ASSERT_TRUE(channel.ok()) << channel.status();
  Greeter::Stub real(*channel);
  Greeter::StubInterface& stub = real;

  absl::StatusOr<std::string> shouted = Shout(stub, "eve");
  ASSERT_TRUE(shouted.ok()) << shouted.status();
  EXPECT_EQ(*shouted, "HELLO, EVE");
  absl::StatusOr<std::vector<std::string>> greeted = GreetAll(stub, {"f", "g"});
  ASSERT_TRUE(greeted.ok()) << greeted.status();
  EXPECT_THAT(*greeted, ::testing::ElementsAre("hello, f", "hello, g"));
  absl::StatusOr<size_t> length = GreetingLength(stub, "h").Get();
  ASSERT_TRUE(length.ok()) << length.status();
  EXPECT_EQ(*length, 8u);
  absl::Notification called;
  absl::StatusOr<std::string> greeting = absl::UnknownError("not called");
  GreetWithCallback(stub, "i", [&](absl::StatusOr<std::string> result) {
    greeting = std::move(result);
    called.Notify();
  });
  ASSERT_TRUE(called.WaitForNotificationWithTimeout(locus::testing::kWatchdog));
  EXPECT_EQ(greeting.value_or("error"), "hello, i");
  absl::StatusOr<std::string> all = Collect(stub, "ab", 3);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, "ababab");
}

}  // namespace
}  // namespace callmodel
