// A server without an address, called through Server::InProcessChannel:
// unary calls (sync, Future, callback), the three streaming kinds, remote
// objects (returned by a call, the server's bootstrap object), the client's
// limits, and the channel's life around Start and Shutdown. Both handler
// modes (inline, handler pool).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "callmodel.locus.h"
#include "callmodel_services.h"
#include "gtest/gtest.h"
#include "locus/locus.h"
#include "locus/object.h"
#include "tests/testing/test_util.h"

namespace callmodel {
namespace {

using ::locus::testing::kWatchdog;

locus::CallOptions Watchdog() { return locus::CallOptions::WithTimeout(kWatchdog); }

Text MakeText(std::string text) {
  Text message;
  message.set_text(std::move(text));
  return message;
}

// Param: handler_threads.
class InProcessServerTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    locus::ServerOptions options;
    options.handler_threads = GetParam();
    options.bootstrap = root_counter_;
    server_ = std::make_unique<locus::Server>(options);
    ASSERT_TRUE(server_->RegisterService(&greeter_).ok());
    absl::Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;
    absl::StatusOr<std::shared_ptr<locus::Channel>> channel = server_->InProcessChannel();
    ASSERT_TRUE(channel.ok()) << channel.status();
    channel_ = *channel;
    stub_ = std::make_unique<Greeter::Stub>(channel_);
  }

  std::shared_ptr<CounterImpl> root_counter_ = std::make_shared<CounterImpl>();
  GreeterImpl greeter_;
  std::unique_ptr<locus::Server> server_;
  std::shared_ptr<locus::Channel> channel_;
  std::unique_ptr<Greeter::Stub> stub_;
};

TEST_P(InProcessServerTest, ListensNowhereAndCallsInProcess) {
  EXPECT_TRUE(server_->listening_addresses().empty());
  EXPECT_EQ(channel_->transport_name(), "inproc");
  absl::StatusOr<Text> reply = stub_->Greet(MakeText("unary"), Watchdog());
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->text(), "hello, unary");
  EXPECT_EQ(greeter_.last_transport(), "inproc");
}

TEST_P(InProcessServerTest, AsynchronousUnaryCalls) {
  absl::StatusOr<Text> later = stub_->AsyncGreet(MakeText("future"), Watchdog()).Get();
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->text(), "hello, future");

  Text reply;
  absl::Notification done;
  absl::Status status;
  stub_->AsyncGreet(MakeText("callback"), &reply, Watchdog(), [&](absl::Status s) {
    status = std::move(s);
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog));
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(reply.text(), "hello, callback");
}

TEST_P(InProcessServerTest, ServerStreaming) {
  RepeatRequest request;
  request.set_text("again");
  request.set_times(5);
  locus::ClientReader<Text> reader = stub_->Repeat(request, Watchdog());
  Text text;
  int count = 0;
  while (reader.Read(&text)) {
    EXPECT_EQ(text.text(), "again");
    ++count;
  }
  absl::Status finished = reader.Finish();
  ASSERT_TRUE(finished.ok()) << finished;
  EXPECT_EQ(count, 5);
}

TEST_P(InProcessServerTest, ClientStreaming) {
  Text joined;
  locus::ClientWriter<Text> writer = stub_->Join(&joined, Watchdog());
  for (const char* word : {"one", "two", "three"}) ASSERT_TRUE(writer.Write(MakeText(word)));
  ASSERT_TRUE(writer.WritesDone());
  absl::Status finished = writer.Finish();
  ASSERT_TRUE(finished.ok()) << finished;
  EXPECT_EQ(joined.text(), "one two three");
}

TEST_P(InProcessServerTest, BidirectionalStreaming) {
  locus::ClientReaderWriter<Text, Text> chat = stub_->Chat(Watchdog());
  Text reply;
  for (const char* word : {"ping", "pong"}) {
    ASSERT_TRUE(chat.Write(MakeText(word)));
    ASSERT_TRUE(chat.Read(&reply));
    EXPECT_EQ(reply.text(), word);
  }
  ASSERT_TRUE(chat.WritesDone());
  EXPECT_FALSE(chat.Read(&reply));
  absl::Status finished = chat.Finish();
  EXPECT_TRUE(finished.ok()) << finished;
}

TEST_P(InProcessServerTest, ObjectReturnedByACall) {
  absl::StatusOr<CounterRef> ref = stub_->NewCounter(Text(), Watchdog());
  ASSERT_TRUE(ref.ok()) << ref.status();
  absl::StatusOr<locus::Remote<Counter>> counter = CounterRefRefs::counter(*ref);
  ASSERT_TRUE(counter.ok()) << counter.status();
  Amount amount;
  amount.set_value(3);
  ASSERT_TRUE((*counter)->Add(amount, Watchdog()).ok());
  absl::StatusOr<Amount> total = (*counter)->Add(amount, Watchdog());
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(total->value(), 6);
}

TEST_P(InProcessServerTest, ServersBootstrapObject) {
  absl::StatusOr<locus::Remote<Counter>> root = locus::Remote<Counter>::Bootstrap(channel_);
  ASSERT_TRUE(root.ok()) << root.status();
  Amount amount;
  amount.set_value(7);
  absl::StatusOr<Amount> total = (*root)->Add(amount, Watchdog());
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(total->value(), 7);
  // It is the object the server offers: its total moved.
  Amount zero;
  Amount seen;
  ASSERT_TRUE(root_counter_->Add(nullptr, &zero, &seen).ok());
  EXPECT_EQ(seen.value(), 7);
}

TEST_P(InProcessServerTest, ShutdownEndsTheChannel) {
  ASSERT_TRUE(stub_->Greet(MakeText("before"), Watchdog()).ok());
  server_->Shutdown(absl::Now() + kWatchdog);
  absl::StatusOr<Text> unary = stub_->Greet(MakeText("after"), Watchdog());
  EXPECT_EQ(unary.status().code(), absl::StatusCode::kUnavailable) << unary.status();
  Text joined;
  locus::ClientWriter<Text> writer = stub_->Join(&joined, Watchdog());
  absl::Status stream = writer.Finish();
  EXPECT_EQ(stream.code(), absl::StatusCode::kUnavailable) << stream;
  absl::StatusOr<std::shared_ptr<locus::Channel>> late = server_->InProcessChannel();
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition) << late.status();
}

INSTANTIATE_TEST_SUITE_P(HandlerModes, InProcessServerTest, ::testing::Values(0, 4),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == 0 ? std::string("Inline") : std::string("Pool");
                         });

TEST(InProcessChannel, BeforeStartIsRefused) {
  GreeterImpl greeter;
  locus::Server server;
  ASSERT_TRUE(server.RegisterService(&greeter).ok());
  absl::StatusOr<std::shared_ptr<locus::Channel>> early = server.InProcessChannel();
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition) << early.status();
}

TEST(InProcessChannel, ServerWithAddressesToo) {
  locus::testing::TempDir dir;
  GreeterImpl greeter;
  locus::Server server;
  ASSERT_TRUE(server.RegisterService(&greeter).ok());
  ASSERT_TRUE(server.AddListeningAddress("unix:" + dir.path() + "/s.sock").ok());
  ASSERT_TRUE(server.Start().ok());
  absl::StatusOr<std::shared_ptr<locus::Channel>> channel = server.InProcessChannel();
  ASSERT_TRUE(channel.ok()) << channel.status();
  Greeter::Stub stub(*channel);
  absl::StatusOr<Text> reply = stub.Greet(MakeText("both"), Watchdog());
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->text(), "hello, both");
}

TEST(InProcessChannel, ClientLimitsApply) {
  GreeterImpl greeter;
  locus::Server server;
  ASSERT_TRUE(server.RegisterService(&greeter).ok());
  ASSERT_TRUE(server.Start().ok());
  locus::ChannelOptions options;
  options.max_send_message_size = 16;
  absl::StatusOr<std::shared_ptr<locus::Channel>> channel = server.InProcessChannel(options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  Greeter::Stub stub(*channel);
  absl::StatusOr<Text> reply = stub.Greet(MakeText(std::string(64, 'x')), Watchdog());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kResourceExhausted) << reply.status();
}

}  // namespace
}  // namespace callmodel
