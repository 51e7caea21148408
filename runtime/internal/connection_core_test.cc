// The RPC core without a real transport (as Cap'n Proto tests its RPC core
// over an in-memory network): two cores joined by the in-process connection
// pair, and one core facing a scripted peer (FakeConnection), which injects
// exactly the frames a test wants and records what the core sends.
// ConnectionState's transitions: connection_state_test.cc.
#include "internal/connection_core.h"

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "google/protobuf/wrappers.pb.h"
#include "gtest/gtest.h"
#include "internal/call_header_codec.h"
#include "internal/inproc_connection.h"
#include "internal/service_table.h"
#include "internal/thread_pool.h"
#include "locus/server_context.h"

namespace locus::internal {
namespace {

using ::google::protobuf::StringValue;

// A watchdog against hangs, never a performance bound.
constexpr absl::Duration kWatchdog = absl::Seconds(20);

// ---------------------------------------------------------------------------
// A service for the tests: Echo answers at once; Block waits until released
// and records whether it saw its call cancelled.

constexpr RpcMethod kEcho{"/test.Core/Echo", RpcKind::kUnary, false};
constexpr RpcMethod kBlock{"/test.Core/Block", RpcKind::kUnary, false};
constexpr RpcMethod kUnknown{"/test.Core/Unknown", RpcKind::kUnary, false};

class EchoHandler final : public MethodHandler {
 public:
  explicit EchoHandler(std::string prefix) : prefix_(std::move(prefix)) {}
  void CallSerialized(ServerContext*, absl::string_view request, ReplySink& sink) override {
    StringValue in;
    if (!in.ParseFromArray(request.data(), static_cast<int>(request.size()))) {
      sink.Finish(absl::InvalidArgumentError("bad request"), nullptr);
      return;
    }
    StringValue out;
    out.set_value(prefix_ + in.value());
    sink.Finish(absl::OkStatus(), &out);
  }
  absl::Status CallDirect(ServerContext*, const google::protobuf::MessageLite&,
                          google::protobuf::MessageLite*) override {
    return absl::UnimplementedError("remote only");
  }

 private:
  const std::string prefix_;
};

struct BlockControl {
  // Notified by the first call of Block only.
  absl::Notification entered;
  absl::Notification release;
  std::atomic<bool> saw_cancelled{false};
};

class BlockHandler final : public MethodHandler {
 public:
  explicit BlockHandler(BlockControl* control) : control_(control) {}
  void CallSerialized(ServerContext* context, absl::string_view, ReplySink& sink) override {
    if (!control_->entered.HasBeenNotified()) control_->entered.Notify();
    // Bounded: a cancellation that never comes fails the test, not hangs it.
    const absl::Time give_up = absl::Now() + kWatchdog;
    while (!control_->release.WaitForNotificationWithTimeout(absl::Milliseconds(1))) {
      if (context->IsCancelled()) {
        control_->saw_cancelled = true;
        break;
      }
      if (absl::Now() >= give_up) break;
    }
    StringValue out;
    sink.Finish(absl::OkStatus(), &out);
  }
  absl::Status CallDirect(ServerContext*, const google::protobuf::MessageLite&,
                          google::protobuf::MessageLite*) override {
    return absl::UnimplementedError("remote only");
  }

 private:
  BlockControl* const control_;
};

class CoreTestService final : public Service {
 public:
  CoreTestService(std::string prefix, BlockControl* block) : Service("test.Core") {
    AddMethod(&kEcho, std::make_unique<EchoHandler>(std::move(prefix)));
    AddMethod(&kBlock, std::make_unique<BlockHandler>(block));
  }
};

StringValue Text(const std::string& value) {
  StringValue message;
  message.set_value(value);
  return message;
}

// ---------------------------------------------------------------------------
// Two cores over the in-process connection pair.

class CoreOverInprocTest : public ::testing::Test {
 protected:
  void Connect(bool client_serves) {
    ASSERT_TRUE(server_services_.Add(&server_service_).ok());
    ASSERT_TRUE(client_services_.Add(&client_service_).ok());
    PeerInfo client_info{"inproc", "inproc:client", "inproc:server"};
    PeerInfo server_info{"inproc", "inproc:server", "inproc:client"};
    auto [client_end, server_end] = MakeInprocPair({server_info, kDefaultMaxMessageSize},
                                                   {client_info, kDefaultMaxMessageSize});
    ConnectionCore::Options server_options;
    server_options.connecting_side = false;
    server_options.services = &server_services_;
    server_options.handler_pool = &pool_;
    server_ = ConnectionCore::Create(std::move(server_end), server_options);
    ConnectionCore::Options client_options;
    client_options.services = client_serves ? &client_services_ : nullptr;
    client_options.handler_pool = client_serves ? &pool_ : nullptr;
    client_ = ConnectionCore::Create(std::move(client_end), client_options);
    server_->Start();
    client_->Start();
    ASSERT_TRUE(client_->ClientHandshake(absl::Now() + kWatchdog).ok());
  }

  // The accepting side calls Echo on the connecting side (asynchronously:
  // in-process delivery runs on the sender's thread) and waits for it.
  absl::Status CallTheClient(StringValue* reply) {
    absl::Notification done;
    absl::Status status;
    server_->StartUnary(kEcho, Text("back"), reply, CallOptions::WithTimeout(kWatchdog),
                        [&](absl::Status s) {
                          status = std::move(s);
                          done.Notify();
                        });
    // The call's own deadline completes it by then, so `done` outlives it.
    done.WaitForNotification();
    return status;
  }

  void TearDown() override {
    if (!block_.release.HasBeenNotified()) block_.release.Notify();
    if (client_ != nullptr) client_->Close(absl::CancelledError("test over"));
    if (server_ != nullptr) server_->Close(absl::CancelledError("test over"));
    pool_.Stop();
  }

  BlockControl block_;
  CoreTestService server_service_{"server:", &block_};
  CoreTestService client_service_{"client:", &block_};
  ServiceTable server_services_;
  ServiceTable client_services_;
  ThreadPool pool_{4};
  std::shared_ptr<ConnectionCore> server_;
  std::shared_ptr<ConnectionCore> client_;
};

TEST_F(CoreOverInprocTest, UnaryCallRoundTrip) {
  Connect(/*client_serves=*/false);
  StringValue reply;
  ASSERT_TRUE(client_->CallUnary(kEcho, Text("hi"), &reply, CallOptions::WithTimeout(kWatchdog)).ok());
  EXPECT_EQ(reply.value(), "server:hi");
  EXPECT_TRUE(client_->usable());
}

TEST_F(CoreOverInprocTest, UnknownMethodIsUnimplemented) {
  Connect(/*client_serves=*/false);
  StringValue reply;
  EXPECT_EQ(client_->CallUnary(kUnknown, Text("hi"), &reply, CallOptions::WithTimeout(kWatchdog)).code(),
            absl::StatusCode::kUnimplemented);
}

TEST_F(CoreOverInprocTest, TheAcceptingSideCallsTheConnectingSideOverTheSameConnection) {
  Connect(/*client_serves=*/true);
  StringValue reply;
  absl::Status status = CallTheClient(&reply);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(reply.value(), "client:back");
}

TEST_F(CoreOverInprocTest, AConnectingSideThatServesNothingRefusesCalls) {
  Connect(/*client_serves=*/false);
  StringValue reply;
  EXPECT_EQ(CallTheClient(&reply).code(), absl::StatusCode::kUnimplemented);
}

TEST_F(CoreOverInprocTest, CloseFailsAnOutstandingCallExactlyOnce) {
  Connect(/*client_serves=*/false);
  std::atomic<int> completions{0};
  absl::Notification done;
  absl::Status status;
  StringValue reply;
  client_->StartUnary(kBlock, Text(""), &reply, {}, [&](absl::Status s) {
    status = std::move(s);
    completions.fetch_add(1);
    done.Notify();
  });
  ASSERT_TRUE(block_.entered.WaitForNotificationWithTimeout(kWatchdog));
  client_->Close(absl::CancelledError("closing"));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(client_->closed());
  EXPECT_FALSE(client_->usable());
  block_.release.Notify();
  pool_.Stop();  // the handler has returned: a late reply had its chance
  EXPECT_EQ(completions.load(), 1);
}

TEST_F(CoreOverInprocTest, AClientDeadlineCancelsTheServersHandler) {
  Connect(/*client_serves=*/false);
  StringValue reply;
  absl::Status status = client_->CallUnary(
      kBlock, Text(""), &reply, CallOptions::WithTimeout(absl::Milliseconds(50)));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(block_.entered.WaitForNotificationWithTimeout(kWatchdog));
  pool_.Stop();  // waits for the handler, which returns only when cancelled
  EXPECT_TRUE(block_.saw_cancelled.load());
}

TEST_F(CoreOverInprocTest, GoAwayMakesTheConnectionUnusableForNewCalls) {
  Connect(/*client_serves=*/false);
  server_->SendGoAway(absl::UnavailableError("shutting down"));
  EXPECT_FALSE(client_->usable());  // in-process delivery happens on the sender's thread
  StringValue reply;
  EXPECT_EQ(client_->CallUnary(kEcho, Text("late"), &reply, CallOptions::WithTimeout(kWatchdog)).code(),
            absl::StatusCode::kUnavailable);
}

// ---------------------------------------------------------------------------
// One core facing a scripted peer.

struct SentFrame {
  FrameHeader header;
  std::string meta;
  std::string payload;
};

class FakeConnection final : public Connection {
 public:
  struct Shared {
    absl::Mutex mu;
    std::vector<SentFrame> sent ABSL_GUARDED_BY(mu);
    absl::Status send_result ABSL_GUARDED_BY(mu);
    int closed_count ABSL_GUARDED_BY(mu) = 0;
    absl::Status close_reason ABSL_GUARDED_BY(mu);
  };

  explicit FakeConnection(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {
    peer_.transport = "fake";
    peer_.remote_address = "fake:peer";
  }
  ~FakeConnection() override { Close(absl::UnavailableError("destroyed")); }

  void Start(FrameSink* sink) override { sink_ = sink; }
  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time) override {
    absl::MutexLock lock(&shared_->mu);
    if (!shared_->send_result.ok()) return shared_->send_result;
    shared_->sent.push_back(SentFrame{header, std::string(meta), std::string(payload)});
    return absl::OkStatus();
  }
  // As a real transport: OnClosed once, never inside OnFrame (a Close from
  // a callback is delivered when the callback returns), nothing after it.
  void Close(const absl::Status& reason) override {
    {
      absl::MutexLock lock(&shared_->mu);
      if (++shared_->closed_count > 1) return;
      shared_->close_reason = reason;
      shared_->send_result = absl::UnavailableError("closed");
    }
    if (delivering_) {
      close_pending_ = true;
      return;
    }
    DeliverClosed(reason);
  }
  const PeerInfo& peer() const override { return peer_; }

  // Delivers a frame from the scripted peer, on the calling thread (one
  // thread at a time); dropped once the connection is closed.
  void Deliver(Frame frame) {
    {
      absl::MutexLock lock(&shared_->mu);
      if (shared_->closed_count > 0) return;
    }
    delivering_ = true;
    sink_->OnFrame(frame);
    delivering_ = false;
    if (close_pending_) {
      close_pending_ = false;
      absl::Status reason;
      {
        absl::MutexLock lock(&shared_->mu);
        reason = shared_->close_reason;
      }
      DeliverClosed(reason);
    }
  }

 private:
  void DeliverClosed(const absl::Status& reason) {
    if (sink_ != nullptr && !closed_delivered_.exchange(true)) sink_->OnClosed(reason);
  }

  const std::shared_ptr<Shared> shared_;
  PeerInfo peer_;
  FrameSink* sink_ = nullptr;
  // Touched by the delivering thread only (tests deliver from one thread).
  bool delivering_ = false;
  bool close_pending_ = false;
  std::atomic<bool> closed_delivered_{false};
};

Frame MakeFrame(FrameType type, uint32_t flags, uint64_t call_id, std::string meta = {},
                std::string payload = {}) {
  Frame frame;
  frame.header = FrameHeader::Make(type, flags, call_id);
  frame.header.meta_length = static_cast<uint32_t>(meta.size());
  frame.header.payload_length = static_cast<uint32_t>(payload.size());
  frame.meta = std::move(meta);
  frame.payload = std::move(payload);
  return frame;
}

Frame HelloFrame(FrameType type, uint32_t min_version = kProtocolVersion,
                 uint32_t max_version = kProtocolVersion) {
  wire::Hello hello;
  hello.set_min_protocol_version(min_version);
  hello.set_max_protocol_version(max_version);
  return MakeFrame(type, 0, 0, hello.SerializeAsString());
}

Frame RequestFrame(const RpcMethod& method, uint64_t call_id, const std::string& text,
                   uint32_t extra_flags = 0) {
  std::string meta(CallHeaderSize(method.full_name, 0, {}), '\0');
  WriteCallHeader(method.full_name, 0, {}, meta.data());
  return MakeFrame(FrameType::kRequest, kFlagHasMessage | kFlagEndStream | extra_flags, call_id,
                   std::move(meta), Text(text).SerializeAsString());
}

Frame GoAwayFrame(uint64_t last_processed) {
  wire::GoAway goaway;
  goaway.set_last_processed_call_id(last_processed);
  goaway.set_code(static_cast<int>(absl::StatusCode::kUnavailable));
  goaway.set_reason("draining");
  return MakeFrame(FrameType::kGoAway, 0, 0, goaway.SerializeAsString());
}

class CoreFacingScriptedPeerTest : public ::testing::Test {
 protected:
  void Create(bool connecting_side) {
    ASSERT_TRUE(services_.Add(&service_).ok());
    auto connection = std::make_unique<FakeConnection>(shared_);
    connection_ = connection.get();
    ConnectionCore::Options options;
    options.connecting_side = connecting_side;
    options.on_closed = [this](ConnectionCore*) { closed_runs_.fetch_add(1); };
    if (!connecting_side) {
      options.services = &services_;
      options.handler_pool = &pool_;
    }
    core_ = ConnectionCore::Create(std::move(connection), options);
    core_->Start();
  }
  // Connecting side: the scripted peer answers HELLO with HELLO_ACK, from
  // a thread of its own, once it has seen the HELLO.
  void Handshake() {
    std::thread peer([this] {
      const absl::Time give_up = absl::Now() + kWatchdog;
      while (SentOfType(FrameType::kHello).empty() && absl::Now() < give_up) {
        absl::SleepFor(absl::Milliseconds(1));
      }
      connection_->Deliver(HelloFrame(FrameType::kHelloAck));
    });
    absl::Status shaken = core_->ClientHandshake(absl::Now() + kWatchdog);
    peer.join();
    ASSERT_TRUE(shaken.ok()) << shaken;
  }
  void TearDown() override {
    if (!block_.release.HasBeenNotified()) block_.release.Notify();
    if (core_ != nullptr) core_->Close(absl::CancelledError("test over"));
    pool_.Stop();
  }

  std::vector<SentFrame> Sent() {
    absl::MutexLock lock(&shared_->mu);
    return shared_->sent;
  }
  std::vector<SentFrame> SentOfType(FrameType type) {
    std::vector<SentFrame> frames;
    for (SentFrame& frame : Sent()) {
      if (frame.header.frame_type() == type) frames.push_back(std::move(frame));
    }
    return frames;
  }
  int CloseCount() {
    absl::MutexLock lock(&shared_->mu);
    return shared_->closed_count;
  }
  absl::Status CloseReason() {
    absl::MutexLock lock(&shared_->mu);
    return shared_->close_reason;
  }
  // Waits (watchdog-bounded) until the pool answered `count` calls.
  std::vector<SentFrame> AwaitResponses(size_t count) {
    const absl::Time deadline = absl::Now() + kWatchdog;
    while (absl::Now() < deadline) {
      std::vector<SentFrame> responses = SentOfType(FrameType::kResponse);
      if (responses.size() >= count) return responses;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return SentOfType(FrameType::kResponse);
  }

  int ClosedRuns() const { return closed_runs_.load(); }

  std::atomic<int> closed_runs_{0};
  std::shared_ptr<FakeConnection::Shared> shared_ = std::make_shared<FakeConnection::Shared>();
  FakeConnection* connection_ = nullptr;
  BlockControl block_;
  CoreTestService service_{"", &block_};
  ServiceTable services_;
  ThreadPool pool_{2};
  std::shared_ptr<ConnectionCore> core_;
};

TEST_F(CoreFacingScriptedPeerTest, TheConnectingSideSendsHelloFirst) {
  Create(/*connecting_side=*/true);
  Handshake();
  std::vector<SentFrame> sent = Sent();
  ASSERT_FALSE(sent.empty());
  EXPECT_EQ(sent[0].header.frame_type(), FrameType::kHello);
  wire::Hello hello;
  ASSERT_TRUE(hello.ParseFromString(sent[0].meta));
  EXPECT_EQ(hello.min_protocol_version(), kProtocolVersion);
}

TEST_F(CoreFacingScriptedPeerTest, AFrameBeforeTheHandshakeClosesTheConnection) {
  Create(/*connecting_side=*/false);
  connection_->Deliver(RequestFrame(kEcho, 1, "early"));
  EXPECT_EQ(CloseCount(), 1);
  EXPECT_EQ(CloseReason().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(core_->closed());
  EXPECT_TRUE(SentOfType(FrameType::kResponse).empty());
}

TEST_F(CoreFacingScriptedPeerTest, AGoAwayBeforeHelloClosesTheAcceptingSide) {
  Create(/*connecting_side=*/false);
  connection_->Deliver(GoAwayFrame(0));
  EXPECT_EQ(CloseCount(), 1) << "a GOAWAY must not stand in for the handshake";
  EXPECT_TRUE(core_->closed());
  EXPECT_EQ(ClosedRuns(), 1);
}

TEST_F(CoreFacingScriptedPeerTest, APingBeforeHelloIsNotAnswered) {
  Create(/*connecting_side=*/false);
  connection_->Deliver(MakeFrame(FrameType::kPing, 0, 1, {}, "12345678"));
  EXPECT_TRUE(SentOfType(FrameType::kPong).empty());
  EXPECT_TRUE(core_->closed());
}

TEST_F(CoreFacingScriptedPeerTest, AnOversizeRequestBeforeHelloIsNotAnswered) {
  Create(/*connecting_side=*/false);
  FrameHeader header = FrameHeader::Make(FrameType::kRequest, kFlagHasMessage, 1);
  header.payload_length = 1u << 30;
  core_->OnOversizeFrame(header);
  EXPECT_TRUE(SentOfType(FrameType::kResponse).empty());
  EXPECT_EQ(CloseCount(), 1);
}

TEST_F(CoreFacingScriptedPeerTest, AGoAwayBeforeHelloAckFailsTheConnectingSidesHandshake) {
  Create(/*connecting_side=*/true);
  connection_->Deliver(GoAwayFrame(0));
  EXPECT_EQ(CloseCount(), 0);  // the server's refusal: the client reports it
  EXPECT_EQ(core_->ClientHandshake(absl::Now() + kWatchdog).code(), absl::StatusCode::kUnavailable);
}

TEST_F(CoreFacingScriptedPeerTest, AHelloOfAnotherProtocolVersionGetsGoAwayAndClosure) {
  Create(/*connecting_side=*/false);
  connection_->Deliver(HelloFrame(FrameType::kHello, kProtocolVersion + 1, kProtocolVersion + 1));
  std::vector<SentFrame> goaways = SentOfType(FrameType::kGoAway);
  ASSERT_EQ(goaways.size(), 1u);
  wire::GoAway goaway;
  ASSERT_TRUE(goaway.ParseFromString(goaways[0].meta));
  EXPECT_EQ(goaway.code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(SentOfType(FrameType::kHelloAck).empty());
  EXPECT_EQ(CloseCount(), 1);
}

TEST_F(CoreFacingScriptedPeerTest, ASecondHelloIsAProtocolError) {
  Create(/*connecting_side=*/false);
  connection_->Deliver(HelloFrame(FrameType::kHello));
  ASSERT_EQ(SentOfType(FrameType::kHelloAck).size(), 1u);
  EXPECT_EQ(CloseCount(), 0);
  connection_->Deliver(HelloFrame(FrameType::kHello));
  EXPECT_EQ(CloseCount(), 1);
}

TEST_F(CoreFacingScriptedPeerTest, ARequestWithThisSidesParityClosesTheConnection) {
  Create(/*connecting_side=*/false);
  connection_->Deliver(HelloFrame(FrameType::kHello));
  connection_->Deliver(RequestFrame(kEcho, 2, "even"));  // the accepting side's own parity
  EXPECT_EQ(CloseCount(), 1);
  EXPECT_TRUE(SentOfType(FrameType::kResponse).empty());
}

TEST_F(CoreFacingScriptedPeerTest, ARequestIsServedAndAnsweredOnce) {
  Create(/*connecting_side=*/false);
  connection_->Deliver(HelloFrame(FrameType::kHello));
  connection_->Deliver(RequestFrame(kEcho, 1, "x"));
  std::vector<SentFrame> responses = AwaitResponses(1);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].header.call_id, 1u);
  EXPECT_EQ(responses[0].header.meta_length, 0u);  // OK without trailers: no status meta
  StringValue reply;
  ASSERT_TRUE(reply.ParseFromString(responses[0].payload));
  EXPECT_EQ(reply.value(), "x");
}

TEST_F(CoreFacingScriptedPeerTest, AnIdStillInUseOnAReliableConnectionIsAProtocolError) {
  Create(/*connecting_side=*/false);
  connection_->Deliver(HelloFrame(FrameType::kHello));
  connection_->Deliver(RequestFrame(kBlock, 1, ""));
  ASSERT_TRUE(block_.entered.WaitForNotificationWithTimeout(kWatchdog));
  connection_->Deliver(RequestFrame(kEcho, 1, "again"));
  EXPECT_EQ(CloseCount(), 1);
}

TEST_F(CoreFacingScriptedPeerTest, CancelFromThePeerCancelsAPooledHandler) {
  Create(/*connecting_side=*/false);
  connection_->Deliver(HelloFrame(FrameType::kHello));
  connection_->Deliver(RequestFrame(kBlock, 1, ""));
  ASSERT_TRUE(block_.entered.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_EQ(core_->active_server_calls(), 1u);
  connection_->Deliver(MakeFrame(FrameType::kCancel, 0, 1));
  pool_.Stop();  // the handler returns only once it sees the cancellation
  EXPECT_TRUE(block_.saw_cancelled.load());
  EXPECT_EQ(core_->active_server_calls(), 0u);
  EXPECT_TRUE(SentOfType(FrameType::kResponse).empty());  // nobody waits for it
}

TEST_F(CoreFacingScriptedPeerTest, AfterSendingGoAwayLaterCallsAreRefused) {
  Create(/*connecting_side=*/false);
  connection_->Deliver(HelloFrame(FrameType::kHello));
  connection_->Deliver(RequestFrame(kEcho, 1, "before"));
  AwaitResponses(1);
  core_->SendGoAway(absl::UnavailableError("draining"));
  wire::GoAway goaway;
  ASSERT_EQ(SentOfType(FrameType::kGoAway).size(), 1u);
  ASSERT_TRUE(goaway.ParseFromString(SentOfType(FrameType::kGoAway)[0].meta));
  EXPECT_EQ(goaway.last_processed_call_id(), 1u);
  connection_->Deliver(RequestFrame(kEcho, 3, "after"));
  std::vector<SentFrame> responses = AwaitResponses(2);
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[1].header.call_id, 3u);
  wire::CallStatus status;
  ASSERT_TRUE(status.ParseFromString(responses[1].meta));
  EXPECT_EQ(status.code(), static_cast<int>(absl::StatusCode::kUnavailable));
}

TEST_F(CoreFacingScriptedPeerTest, GoAwayFailsOnlyTheCallsAboveTheLastProcessedId) {
  Create(/*connecting_side=*/true);
  Handshake();
  std::vector<absl::Status> results(3, absl::UnknownError("pending"));
  StringValue replies[3];
  for (int i = 0; i < 3; ++i) {  // ids 1, 3, 5
    core_->StartUnary(kEcho, Text("c"), &replies[i], {},
                      [&results, i](absl::Status s) { results[i] = std::move(s); });
  }
  ASSERT_EQ(SentOfType(FrameType::kRequest).size(), 3u);
  connection_->Deliver(GoAwayFrame(/*last_processed=*/3));
  EXPECT_EQ(results[2].code(), absl::StatusCode::kUnavailable);  // call 5, at once
  EXPECT_EQ(results[0].code(), absl::StatusCode::kUnknown);      // still pending
  EXPECT_EQ(results[1].code(), absl::StatusCode::kUnknown);
  EXPECT_FALSE(core_->usable());
  connection_->Deliver(MakeFrame(FrameType::kResponse, kFlagHasMessage, 1, {},
                                 Text("one").SerializeAsString()));
  EXPECT_TRUE(results[0].ok()) << results[0];
  EXPECT_EQ(replies[0].value(), "one");
  StringValue reply;
  EXPECT_EQ(core_->CallUnary(kEcho, Text("new"), &reply, CallOptions::WithTimeout(kWatchdog)).code(),
            absl::StatusCode::kUnavailable);
  core_->Close(absl::CancelledError("done"));  // call 3 completes while `results` lives
  EXPECT_EQ(results[1].code(), absl::StatusCode::kUnavailable);
}

TEST_F(CoreFacingScriptedPeerTest, AnOversizeReplyFailsItsCall) {
  Create(/*connecting_side=*/true);
  Handshake();
  absl::Status result = absl::UnknownError("pending");
  StringValue reply;
  core_->StartUnary(kEcho, Text("big"), &reply, {}, [&](absl::Status s) { result = std::move(s); });
  FrameHeader header = FrameHeader::Make(FrameType::kResponse, kFlagHasMessage, 1);
  header.payload_length = 1u << 30;
  core_->OnOversizeFrame(header);
  EXPECT_EQ(result.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(core_->usable());
}

TEST_F(CoreFacingScriptedPeerTest, AnExpiredCallSendsOneCancel) {
  Create(/*connecting_side=*/true);
  Handshake();
  absl::Notification done;
  absl::Status result;
  StringValue reply;
  core_->StartUnary(kEcho, Text("slow"), &reply, CallOptions::WithTimeout(absl::Milliseconds(10)),
                    [&](absl::Status s) {
                      result = std::move(s);
                      done.Notify();
                    });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_EQ(result.code(), absl::StatusCode::kDeadlineExceeded);
  std::vector<SentFrame> cancels = SentOfType(FrameType::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].header.call_id, 1u);
  EXPECT_EQ(cancels[0].header.meta_length, 0u);
  EXPECT_EQ(cancels[0].header.payload_length, 0u);
  // The late reply is dropped.
  connection_->Deliver(MakeFrame(FrameType::kResponse, kFlagHasMessage, 1, {},
                                 Text("late").SerializeAsString()));
  EXPECT_EQ(reply.value(), "");
}

TEST_F(CoreFacingScriptedPeerTest, ASendThatFindsTheTransportGoneMakesTheConnectionUnusable) {
  Create(/*connecting_side=*/true);
  Handshake();
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->send_result = absl::UnavailableError("peer gone");
  }
  StringValue reply;
  EXPECT_EQ(core_->CallUnary(kEcho, Text("x"), &reply, CallOptions::WithTimeout(kWatchdog)).code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(core_->usable());
  EXPECT_FALSE(core_->closed());  // until the transport reports closure
}

TEST_F(CoreFacingScriptedPeerTest, ClosureFailsOutstandingCallsAndRunsOnClosedOnce) {
  Create(/*connecting_side=*/true);
  Handshake();
  std::vector<absl::Status> results;
  StringValue replies[2];
  for (StringValue& reply : replies) {
    core_->StartUnary(kEcho, Text("c"), &reply, {},
                      [&results](absl::Status s) { results.push_back(std::move(s)); });
  }
  core_->Close(absl::UnavailableError("bye"));
  core_->Close(absl::UnavailableError("again"));
  ASSERT_EQ(results.size(), 2u);
  for (const absl::Status& status : results) EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CloseCount(), 2);  // the fake counts Close calls
  EXPECT_EQ(ClosedRuns(), 1);  // the core's on_closed ran once
  EXPECT_TRUE(core_->closed());
}

TEST_F(CoreFacingScriptedPeerTest, PingIsAnsweredWithItsPayload) {
  Create(/*connecting_side=*/true);
  Handshake();
  connection_->Deliver(MakeFrame(FrameType::kPing, 0, 7, {}, "12345678"));
  std::vector<SentFrame> pongs = SentOfType(FrameType::kPong);
  ASSERT_EQ(pongs.size(), 1u);
  EXPECT_EQ(pongs[0].header.call_id, 7u);
  EXPECT_EQ(pongs[0].payload, "12345678");
}

}  // namespace
}  // namespace locus::internal
