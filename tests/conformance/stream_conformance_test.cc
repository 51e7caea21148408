// Streaming calls on every transport and handler mode (the fixture and the
// list of kinds are in conformance_fixture.h): the three kinds, order and
// content, status and trailers, flow control, cancellation, deadlines, size
// limits, shutdown and peers that die.
//
// Tests use deadlines only as watchdogs against hangs, never to assert speed.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "conformance_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace locus::conformance {
namespace {

using ::locus::testing::ChildServer;
using ::testing::HasSubstr;

// Streams need every frame: on datagram transports only the refusal is
// tested (StreamRefusal).
template <typename ConfigT>
class StreamConformance : public TransportConformance<ConfigT> {
  static_assert(ConfigT::TransportKind::kReliable, "streams need a reliable transport");
};
TYPED_TEST_SUITE(StreamConformance, ReliableKinds, ConfigNames);

// Streams whose bytes cross a wire (a server in another process).
template <typename ConfigT>
class StreamOverAWire : public StreamConformance<ConfigT> {
  static_assert(ConfigT::TransportKind::kHasWire, "needs bytes that cross a wire");
};
TYPED_TEST_SUITE(StreamOverAWire, ReliableWireKinds, ConfigNames);

template <typename ConfigT>
class StreamRefusal : public TransportConformance<ConfigT> {
  static_assert(!ConfigT::TransportKind::kReliable, "streams work here");
};
TYPED_TEST_SUITE(StreamRefusal, DatagramKinds, ConfigNames);

TYPED_TEST(StreamRefusal, DatagramTransportsRefuseStreamsClearly) {
  ClientReaderWriter<EchoRequest, EchoReply> chat = this->stub_->Chat(Watchdog());
  EchoRequest request;
  EXPECT_FALSE(chat.Write(request));
  absl::Status status = chat.Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("reliable transport"));
  // Unary calls on the same channel are unaffected.
  EXPECT_TRUE(this->Echo(*this->stub_, "after").ok());
}


GenerateRequest Generate(int count, int size) {
  GenerateRequest request;
  request.set_count(count);
  request.set_size(size);
  return request;
}

TYPED_TEST(StreamConformance, ServerStreamingDeliversEveryMessageInOrderThenStatus) {
  // Sizes across the shm ring / bulk threshold and a few empty messages.
  for (int size : {0, 1, 1000, 40000, 300000}) {
    const int count = size >= 40000 ? 40 : 500;
    CallOptions options = Watchdog();
    options.metadata.emplace_back("tag", absl::StrCat("size-", size));
    Metadata trailers;
    options.trailing_metadata = &trailers;
    GenerateRequest request = Generate(count, size);
    request.set_echo_metadata_key("tag");
    ClientReader<EchoReply> reader = this->stub_->Generate(request, options);
    EchoReply reply;
    int received = 0;
    while (reader.Read(&reply)) {
      ASSERT_TRUE(reply.data() == TestServiceImpl::GeneratedData(received, size))
          << "message " << received << " of size " << size << " came back changed";
      ++received;
    }
    absl::Status status = reader.Finish();
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_EQ(received, count);
    EXPECT_THAT(trailers, ::testing::ElementsAre(std::make_pair("tag", absl::StrCat("size-", size))));
  }
}

TYPED_TEST(StreamConformance, ServerStreamingErrorArrivesAfterTheMessages) {
  GenerateRequest request = Generate(3, 10);
  request.set_final_code(static_cast<int>(absl::StatusCode::kAborted));
  request.set_final_message("conflict after three");
  ClientReader<EchoReply> reader = this->stub_->Generate(request, Watchdog());
  EchoReply reply;
  int received = 0;
  while (reader.Read(&reply)) ++received;
  absl::Status status = reader.Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << status;
  EXPECT_EQ(status.message(), "conflict after three");
  EXPECT_EQ(received, 3);  // messages before the error stay readable, as in gRPC
}

TYPED_TEST(StreamConformance, WriteAfterWritesDoneFails) {
  ClientReaderWriter<EchoRequest, EchoReply> chat = this->stub_->Chat(Watchdog());
  EchoRequest request;
  request.set_data("one");
  ASSERT_TRUE(chat.Write(request));
  ASSERT_TRUE(chat.WritesDone());
  EXPECT_FALSE(chat.Write(request));
  EchoReply reply;
  ASSERT_TRUE(chat.Read(&reply));
  EXPECT_EQ(reply.data(), "one");
  EXPECT_FALSE(chat.Read(&reply));
  EXPECT_TRUE(chat.Finish().ok());
}

TYPED_TEST(StreamConformance, StreamsBeyondTheServersLimitAreRefused) {
  ServerOptions options;
  options.max_concurrent_streams = 2;
  this->RestartServer(options);
  ClientReaderWriter<EchoRequest, EchoReply> first = this->stub_->Chat(Watchdog());
  ClientReaderWriter<EchoRequest, EchoReply> second = this->stub_->Chat(Watchdog());
  EchoRequest request;
  request.set_data("x");
  EchoReply reply;
  // Both are open (a round trip each proves the server took them).
  ASSERT_TRUE(first.Write(request) && first.Read(&reply));
  ASSERT_TRUE(second.Write(request) && second.Read(&reply));
  ClientReaderWriter<EchoRequest, EchoReply> third = this->stub_->Chat(Watchdog());
  EXPECT_FALSE(third.Read(&reply));
  absl::Status refused = third.Finish();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  // Once one ends, a new stream is taken.
  EXPECT_TRUE(first.Finish().ok());
  ClientReaderWriter<EchoRequest, EchoReply> fourth = this->stub_->Chat(Watchdog());
  EXPECT_TRUE(fourth.Write(request) && fourth.Read(&reply));
  EXPECT_TRUE(fourth.Finish().ok());
  EXPECT_TRUE(second.Finish().ok());
}

TYPED_TEST(StreamConformance, ClientStreamingCountsEverythingSent) {
  SumReply sum;
  ClientWriter<EchoRequest> writer = this->stub_->Sum(&sum, Watchdog());
  int64_t bytes = 0;
  int64_t checksum = 0;
  EchoRequest request;
  for (int i = 0; i < 2000; ++i) {
    const size_t size = (i % 50 == 0) ? 70000 : static_cast<size_t>(i % 300);
    request.set_data(std::string(size, static_cast<char>('a' + i % 26)));
    bytes += static_cast<int64_t>(size);
    if (size > 0) checksum += (i + 1) * static_cast<int64_t>('a' + i % 26);
    ASSERT_TRUE(writer.Write(request)) << "message " << i << ": " << writer.Finish();
  }
  ASSERT_TRUE(writer.WritesDone());
  absl::Status status = writer.Finish();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(sum.messages(), 2000);
  EXPECT_EQ(sum.bytes(), bytes);
  EXPECT_EQ(sum.checksum(), checksum);
}

TYPED_TEST(StreamConformance, ClientStreamingFinishHalfClosesByItself) {
  SumReply sum;
  ClientWriter<EchoRequest> writer = this->stub_->Sum(&sum, Watchdog());
  EchoRequest request;
  request.set_data("x");
  ASSERT_TRUE(writer.Write(request));
  absl::Status status = writer.Finish();  // no WritesDone: Finish sends it
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(sum.messages(), 1);
}

TYPED_TEST(StreamConformance, BidiEchoesInLockstep) {
  ClientReaderWriter<EchoRequest, EchoReply> chat = this->stub_->Chat(Watchdog());
  EchoRequest request;
  EchoReply reply;
  for (int i = 0; i < 300; ++i) {
    request.set_data(absl::StrCat("ping ", i));
    ASSERT_TRUE(chat.Write(request)) << i;
    ASSERT_TRUE(chat.Read(&reply)) << i << ": " << chat.Finish();
    ASSERT_EQ(reply.data(), request.data());
  }
  ASSERT_TRUE(chat.WritesDone());
  EXPECT_FALSE(chat.Read(&reply));  // the server ends after our half-close
  absl::Status status = chat.Finish();
  EXPECT_TRUE(status.ok()) << status;
}

// As for a synchronous unary call: a stream read from a completion callback
// on the connection that callback's thread reads could never see its
// messages, so the stream fails at once instead of waiting for its deadline.
// (In-process calls have no reader thread: there the stream simply works.)
TYPED_TEST(StreamConformance, SynchronousStreamFromACallbackFailsInsteadOfHanging) {
  const bool inproc = std::string(TypeParam::TransportKind::kTransport) == "inproc";
  EchoRequest request;
  request.set_data("outer");
  EchoReply reply;
  absl::Notification done;
  int received = 0;
  bool read_after_end = true;
  absl::Status nested;
  this->stub_->AsyncEcho(request, &reply, Watchdog(), [&](absl::Status) {
    // Shorter than the wait below: a stream that hung would end
    // DEADLINE_EXCEEDED and fail the expectations, not the watchdog.
    ClientReader<EchoReply> reader =
        this->stub_->Generate(Generate(3, 10), CallOptions::WithTimeout(kWatchdog / 3));
    EchoReply message;
    while (reader.Read(&message)) ++received;
    read_after_end = reader.Read(&message);
    nested = reader.Finish();
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_FALSE(read_after_end);
  if (inproc) {
    EXPECT_TRUE(nested.ok()) << nested;
    EXPECT_EQ(received, 3);
  } else {
    EXPECT_EQ(nested.code(), absl::StatusCode::kFailedPrecondition) << nested;
    EXPECT_THAT(std::string(nested.message()), HasSubstr("use it from another thread"));
    EXPECT_EQ(received, 0);
  }
  // The connection is still usable, for streams and unary calls.
  ClientReader<EchoReply> after = this->stub_->Generate(Generate(2, 5), Watchdog());
  EchoReply message;
  int after_count = 0;
  while (after.Read(&message)) ++after_count;
  EXPECT_TRUE(after.Finish().ok());
  EXPECT_EQ(after_count, 2);
  EXPECT_TRUE(this->Echo(*this->stub_, "after").ok());
}

// Far more bytes than either flow-control window, written by one thread and
// read by another: both directions throttle and nothing is lost or reordered.
TYPED_TEST(StreamConformance, BidiMoreThanTheWindowsWithConcurrentReaderAndWriter) {
  ClientReaderWriter<EchoRequest, EchoReply> chat = this->stub_->Chat(Watchdog());
  constexpr int kMessages = 400;
  constexpr size_t kSize = 64u << 10;  // 25 MiB in total each way
  std::atomic<int> mismatches{0};
  std::atomic<int> received{0};
  std::thread reader([&] {
    EchoReply reply;
    while (chat.Read(&reply)) {
      const int i = received.load();
      if (reply.data().size() != kSize || reply.data()[0] != static_cast<char>(i) ||
          reply.data()[kSize - 1] != static_cast<char>(i * 7)) {
        mismatches.fetch_add(1);
      }
      received.fetch_add(1);
    }
  });
  EchoRequest request;
  for (int i = 0; i < kMessages; ++i) {
    std::string data(kSize, static_cast<char>(i * 3));
    data[0] = static_cast<char>(i);
    data[kSize - 1] = static_cast<char>(i * 7);
    request.set_data(std::move(data));
    if (!chat.Write(request)) break;
  }
  chat.WritesDone();
  reader.join();
  absl::Status status = chat.Finish();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(received.load(), kMessages);
  EXPECT_EQ(mismatches.load(), 0);
}

// A client that does not read holds the server's writer at the window: the
// server cannot run ahead and fill memory.
TYPED_TEST(StreamConformance, FlowControlHoldsAWriterWhoseReaderDoesNotRead) {
  constexpr int kSize = 256 << 10;
  constexpr int kCount = 200;  // 50 MiB if nothing held the server back
  const int64_t before = this->service_.generated();
  ClientReader<EchoReply> reader = this->stub_->Generate(Generate(kCount, kSize), Watchdog());
  EchoReply reply;
  ASSERT_TRUE(reader.Read(&reply));
  // Wait until the server stops making progress, then check how far it got.
  int64_t last = -1;
  ASSERT_TRUE(Eventually([&] {
    int64_t now = this->service_.generated() - before;
    if (now == last) return true;
    last = now;
    absl::SleepFor(absl::Milliseconds(200));
    return false;
  }));
  const int64_t window_messages = static_cast<int64_t>(kDefaultStreamWindowBytes / (kSize + 24));
  EXPECT_LE(last, window_messages + 2) << "the server wrote far beyond the client's window";
  EXPECT_LT(last, kCount);
  // Reading on lets it finish.
  int received = 1;
  while (reader.Read(&reply)) ++received;
  absl::Status status = reader.Finish();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(received, kCount);
}

TYPED_TEST(StreamConformance, CancelEndsTheCallOnBothSides) {
  ClientReaderWriter<EchoRequest, EchoReply> chat = OpenChat(*this->stub_);
  EchoRequest request;
  request.set_data("hello");
  EchoReply reply;
  chat.Cancel();
  EXPECT_FALSE(chat.Write(request));
  EXPECT_FALSE(chat.Read(&reply));
  absl::Status status = chat.Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_TRUE(Eventually([&] { return this->service_.stream_cancellations_seen() >= 1; }))
      << "the handler never saw the cancellation";
}

TYPED_TEST(StreamConformance, CallOptionsCancellationEndsAStreamWhileTheClientReads) {
  Cancellation cancel;
  CallOptions options = Watchdog();
  options.cancellation = cancel;
  ClientReaderWriter<EchoRequest, EchoReply> chat = this->stub_->Chat(options);
  EchoRequest request;
  request.set_data("hello");
  EchoReply reply;
  ASSERT_TRUE(chat.Write(request));
  ASSERT_TRUE(chat.Read(&reply));
  // The client now blocks reading a reply that never comes: another thread
  // cancels once this one sleeps in Read.
  const pid_t reader = ::locus::testing::ThisThreadId();
  std::atomic<bool> reading{false};
  std::thread canceller([&] {
    while (!reading.load()) std::this_thread::yield();
    EXPECT_TRUE(::locus::testing::WaitUntilThreadBlocks(reader)) << "Read never blocked";
    cancel.Cancel();
  });
  reading = true;
  EXPECT_FALSE(chat.Read(&reply));
  canceller.join();
  absl::Status status = chat.Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_TRUE(Eventually([&] { return this->service_.stream_cancellations_seen() >= 1; }))
      << "the handler never saw the cancellation";
  EXPECT_EQ(cancel.state()->registered(), 0u);
  // Later streams with it are refused at once.
  ClientReaderWriter<EchoRequest, EchoReply> late = this->stub_->Chat(options);
  EXPECT_EQ(late.Finish().code(), absl::StatusCode::kCancelled);
}

TYPED_TEST(StreamConformance, DroppingTheStreamUnfinishedCancelsIt) {
  {
    ClientReaderWriter<EchoRequest, EchoReply> chat = OpenChat(*this->stub_);
  }
  EXPECT_TRUE(Eventually([&] { return this->service_.stream_cancellations_seen() >= 1; }));
  // The channel is still fine.
  EXPECT_TRUE(this->Echo(*this->stub_, "after").ok());
}

// The deadline ends the stream while the client reads, after the messages
// sent before it (readable, in order). The deadline must leave room for
// the two deliveries: a machine too busy to deliver them within it gets a
// doubled deadline, again, until they fit (the watchdog bounds the
// attempts); the stream must end DEADLINE_EXCEEDED every time.
TYPED_TEST(StreamConformance, DeadlineEndsAStreamThatOutlivesIt) {
  GenerateRequest request = Generate(2, 10);
  request.set_then_wait_ms(60000);
  int attempts = 0;
  int received = 0;
  for (absl::Duration deadline = absl::Milliseconds(300); received < 2 && deadline < kWatchdog;
       deadline *= 2) {
    ++attempts;
    ClientReader<EchoReply> reader = this->stub_->Generate(request, CallOptions::WithTimeout(deadline));
    EchoReply reply;
    received = 0;
    while (reader.Read(&reply)) {
      EXPECT_EQ(reply.data(), TestServiceImpl::GeneratedData(received, 10)) << received;
      ++received;
    }
    absl::Status status = reader.Finish();
    EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
    EXPECT_LE(received, 2);
  }
  EXPECT_EQ(received, 2) << "the two messages never arrived within a deadline";
  EXPECT_TRUE(Eventually([&] { return this->service_.stream_cancellations_seen() >= attempts; }))
      << "the handler never saw the deadline";
}

TYPED_TEST(StreamConformance, DeadlineFiresWhileTheClientIsNotWaiting) {
  GenerateRequest request = Generate(0, 0);
  request.set_then_wait_ms(60000);
  ClientReader<EchoReply> reader =
      this->stub_->Generate(request, CallOptions::WithTimeout(absl::Milliseconds(200)));
  // The client does nothing with the stream; the server must still be told.
  EXPECT_TRUE(Eventually([&] { return this->service_.stream_cancellations_seen() >= 1; }));
  EXPECT_EQ(reader.Finish().code(), absl::StatusCode::kDeadlineExceeded);
}

TYPED_TEST(StreamConformance, OversizeMessageFromClientFailsTheCallOnly) {
  SumReply sum;
  ClientWriter<EchoRequest> writer = this->stub_->Sum(&sum, Watchdog());
  EchoRequest request;
  request.set_data(std::string(kDefaultMaxMessageSize + 1, 'x'));
  EXPECT_FALSE(writer.Write(request));
  absl::Status status = writer.Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_TRUE(this->Echo(*this->stub_, "after").ok());
}

TYPED_TEST(StreamConformance, OversizeMessageRejectedByServerKeepsConnection) {
  ServerOptions options;
  options.max_receive_message_size = 40000;
  this->RestartServer(options);
  ClientReaderWriter<EchoRequest, EchoReply> chat = this->stub_->Chat(Watchdog());
  EchoRequest request;
  request.set_data(std::string(50000, 'x'));
  chat.Write(request);  // may succeed: the server decides
  EchoReply reply;
  EXPECT_FALSE(chat.Read(&reply));
  absl::Status status = chat.Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_TRUE(this->Echo(*this->stub_, "after").ok());
}

TYPED_TEST(StreamConformance, OversizeMessageFromServerFailsTheCallAtTheClient) {
  this->channel_options_.max_receive_message_size = 40000;
  this->RestartServer(ServerOptions{});
  ClientReader<EchoReply> reader = this->stub_->Generate(Generate(3, 50000), Watchdog());
  EchoReply reply;
  EXPECT_FALSE(reader.Read(&reply));
  absl::Status status = reader.Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_TRUE(this->Echo(*this->stub_, "after").ok());
}

TYPED_TEST(StreamConformance, UnimplementedStreamingMethod) {
  ClientReaderWriter<EchoRequest, EchoReply> stream = this->stub_->NotImplementedStream(Watchdog());
  EchoReply reply;
  EXPECT_FALSE(stream.Read(&reply));
  absl::Status status = stream.Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
}

TYPED_TEST(StreamConformance, ManyStreamsAndUnaryCallsShareOneChannel) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ClientReaderWriter<EchoRequest, EchoReply> chat = this->stub_->Chat(Watchdog());
      EchoRequest request;
      EchoReply reply;
      for (int i = 0; i < kRounds; ++i) {
        request.set_data(absl::StrCat("thread ", t, " round ", i));
        if (!chat.Write(request) || !chat.Read(&reply) || reply.data() != request.data()) {
          failures.fetch_add(1);
          break;
        }
        if (i % 10 == 0 && !this->Echo(*this->stub_, request.data()).ok()) failures.fetch_add(1);
      }
      if (!chat.Finish().ok()) failures.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TYPED_TEST(StreamConformance, ServerShutdownEndsOpenStreams) {
  ClientReaderWriter<EchoRequest, EchoReply> chat = OpenChat(*this->stub_);
  EchoReply reply;
  // The handler waits in Read: shutdown lets it run until the deadline,
  // then ends the call.
  this->server_->Shutdown(absl::Now() + absl::Milliseconds(100));
  EXPECT_FALSE(chat.Read(&reply));
  absl::Status status = chat.Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_GE(this->service_.stream_cancellations_seen(), 1);
}

TYPED_TEST(StreamOverAWire, ServerKilledMidStreamGivesUnavailable) {
  std::string listen =
      SiblingAddress(TypeParam::TransportKind::ListenAddress(this->dir_), this->dir_, "child");
  ChildServer child(LOCUS_TEST_SERVER_PATH, {listen});
  ASSERT_EQ(child.addresses().size(), 1u) << "test server did not start";
  auto channel = Connect(child.addresses()[0], this->channel_options_);
  ASSERT_TRUE(channel.ok()) << channel.status();
  TestService::Stub stub(*channel);
  GenerateRequest request = Generate(1, 10);
  request.set_then_wait_ms(60000);
  ClientReader<EchoReply> reader = stub.Generate(request, Watchdog());
  EchoReply reply;
  ASSERT_TRUE(reader.Read(&reply));
  child.Kill();
  EXPECT_FALSE(reader.Read(&reply));
  absl::Status status = reader.Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
}

}  // namespace
}  // namespace locus::conformance
