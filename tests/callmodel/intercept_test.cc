// Interceptors (locus/interceptor.h), initial metadata, case-insensitive
// metadata keys, metadata limits and status details, on every transport
// kind and handler mode of the conformance suite (streams: the reliable
// ones).
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "conformance_fixture.h"
#include "gtest/gtest.h"
#include "internal/interception.h"
#include "locus/locus.h"
#include "probe_service.h"

namespace locus::callmodel {
namespace {

using ::locus::conformance::ConfigNames;
using ::locus::conformance::ReliableKinds;
using ::locus::conformance::TransportKinds;
using ::locus::conformance::Watchdog;
using ::locus::testing::TempDir;

// What the interceptors of one side did, in order: "<name>:<hook>".
class EventLog {
 public:
  void Add(std::string event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(event));
  }
  std::vector<std::string> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  int Count(const std::string& event) const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(std::count(events_.begin(), events_.end(), event));
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

struct Behavior {
  absl::Status reject;          // OnStart's answer
  std::string add_key;          // client: metadata added in OnStart; server: a trailer
  std::string add_initial_key;  // server: initial metadata added in OnStart

  static Behavior Rejects(absl::Status status) {
    Behavior behavior;
    behavior.reject = std::move(status);
    return behavior;
  }
  static Behavior Adds(std::string key) {
    Behavior behavior;
    behavior.add_key = std::move(key);
    return behavior;
  }
  static Behavior AddsInitial(std::string key) {
    Behavior behavior;
    behavior.add_initial_key = std::move(key);
    return behavior;
  }
};

class RecordingClient final : public ClientInterceptor {
 public:
  RecordingClient(std::string name, EventLog* log, Behavior behavior)
      : name_(std::move(name)), log_(log), behavior_(std::move(behavior)) {}
  absl::Status OnStart(ClientCallInfo& call) override {
    log_->Add(name_ + ":start");
    if (!behavior_.add_key.empty()) call.metadata().emplace_back(behavior_.add_key, name_);
    return behavior_.reject;
  }
  void OnSendMessage(ClientCallInfo&, const google::protobuf::MessageLite&) override { log_->Add(name_ + ":send"); }
  void OnReceiveInitialMetadata(ClientCallInfo& call) override {
    log_->Add(name_ + ":initial");
    for (const auto& [key, value] : call.initial_metadata()) log_->Add(absl::StrCat(name_, ":initial:", key));
  }
  void OnReceiveMessage(ClientCallInfo&, const google::protobuf::MessageLite&) override { log_->Add(name_ + ":recv"); }
  void OnFinish(ClientCallInfo& call, absl::Status& status) override {
    for (const auto& [key, value] : call.trailing_metadata()) log_->Add(absl::StrCat(name_, ":trailer:", key));
    log_->Add(absl::StrCat(name_, ":finish:", absl::StatusCodeToString(status.code())));
  }

 private:
  const std::string name_;
  EventLog* const log_;
  const Behavior behavior_;
};

class RecordingClientFactory final : public ClientInterceptorFactory {
 public:
  RecordingClientFactory(std::string name, EventLog* log, Behavior behavior = {})
      : name_(std::move(name)), log_(log), behavior_(std::move(behavior)) {}
  std::unique_ptr<ClientInterceptor> Create(const ClientCallInfo&) override {
    return std::make_unique<RecordingClient>(name_, log_, behavior_);
  }

 private:
  const std::string name_;
  EventLog* const log_;
  const Behavior behavior_;
};

class RecordingServer final : public ServerInterceptor {
 public:
  RecordingServer(std::string name, EventLog* log, Behavior behavior)
      : name_(std::move(name)), log_(log), behavior_(std::move(behavior)) {}
  absl::Status OnStart(ServerCallInfo& call) override {
    log_->Add(name_ + ":start");
    for (const auto& [key, value] : call.context().client_metadata()) log_->Add(absl::StrCat(name_, ":metadata:", key));
    if (!behavior_.add_initial_key.empty()) call.context().AddInitialMetadata(behavior_.add_initial_key, name_);
    return behavior_.reject;
  }
  void OnReceiveMessage(ServerCallInfo&, const google::protobuf::MessageLite&) override { log_->Add(name_ + ":recv"); }
  void OnSendMessage(ServerCallInfo&, const google::protobuf::MessageLite&) override { log_->Add(name_ + ":send"); }
  void OnFinish(ServerCallInfo& call, absl::Status& status) override {
    if (!behavior_.add_key.empty()) call.context().AddTrailingMetadata(behavior_.add_key, name_);
    log_->Add(absl::StrCat(name_, ":finish:", absl::StatusCodeToString(status.code())));
  }

 private:
  const std::string name_;
  EventLog* const log_;
  const Behavior behavior_;
};

class RecordingServerFactory final : public ServerInterceptorFactory {
 public:
  RecordingServerFactory(std::string name, EventLog* log, Behavior behavior = {})
      : name_(std::move(name)), log_(log), behavior_(std::move(behavior)) {}
  std::unique_ptr<ServerInterceptor> Create(const ServerCallInfo&) override {
    return std::make_unique<RecordingServer>(name_, log_, behavior_);
  }

 private:
  const std::string name_;
  EventLog* const log_;
  const Behavior behavior_;
};

template <typename ConfigT>
class Intercept : public ::testing::Test {
 protected:
  using Kind = typename ConfigT::TransportKind;

  void SetUp() override {
    if constexpr (Kind::kIpv6) {
      LOCUS_SKIP_UNLESS_MACHINE(conformance::HasIpv6Loopback(), "no IPv6 loopback (::1) on this machine");
    }
  }
  void TearDown() override {
    stub_.reset();
    channel_.reset();
    if (server_ != nullptr) server_->Shutdown();
  }

  // A server with `server_options` and a channel with `channel_options`,
  // each completed with the configuration's transport and handler mode.
  void Start(ServerOptions server_options, ChannelOptions channel_options) {
    server_options.handler_threads = ConfigT::handler_threads;
    if (!ConfigT::spin) {
      server_options.socket_spin = server_options.shm_spin = absl::ZeroDuration();
      channel_options.socket_spin = channel_options.shm_spin = absl::ZeroDuration();
    }
    server_ = std::make_unique<Server>(server_options);
    ASSERT_TRUE(server_->RegisterService(&probe_).ok());
    ASSERT_TRUE(server_->AddListeningAddress(Kind::ListenAddress(dir_)).ok());
    absl::Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;
    channel_options.allowed_transports = Kind::kTransport;
    channel_options_ = channel_options;
    auto channel = Connect(server_->listening_addresses()[0], channel_options);
    ASSERT_TRUE(channel.ok()) << channel.status();
    channel_ = *channel;
    ASSERT_EQ(channel_->transport_name(), Kind::kTransport);
    stub_ = std::make_unique<Probe::Stub>(channel_);
  }

  // Two client interceptors (a, b) and two server ones (x, y).
  void StartRecording(Behavior a = Behavior(), Behavior b = Behavior(), Behavior x = Behavior(),
                      Behavior y = Behavior()) {
    ServerOptions server_options;
    server_options.interceptors = {std::make_shared<RecordingServerFactory>("x", &server_log_, x),
                                   std::make_shared<RecordingServerFactory>("y", &server_log_, y)};
    ChannelOptions channel_options;
    channel_options.interceptors = {std::make_shared<RecordingClientFactory>("a", &client_log_, a),
                                    std::make_shared<RecordingClientFactory>("b", &client_log_, b)};
    Start(server_options, channel_options);
  }

  TempDir dir_;
  ProbeImpl probe_;
  EventLog client_log_;
  EventLog server_log_;
  std::unique_ptr<Server> server_;
  ChannelOptions channel_options_;
  std::shared_ptr<Channel> channel_;
  std::unique_ptr<Probe::Stub> stub_;
};

template <typename ConfigT>
class InterceptStreams : public Intercept<ConfigT> {};

TYPED_TEST_SUITE(Intercept, TransportKinds, ConfigNames);
TYPED_TEST_SUITE(InterceptStreams, ReliableKinds, ConfigNames);

using Events = std::vector<std::string>;

TYPED_TEST(Intercept, UnaryHooksRunAsAnOnionOnBothSides) {
  this->StartRecording(Behavior::Adds("x-added-by"), Behavior(), Behavior::Adds("x-trailer"));
  ProbeRequest request;
  request.set_data("hi");
  request.set_echo_metadata(true);
  Metadata trailers;
  CallOptions options = Watchdog();
  options.trailing_metadata = &trailers;
  absl::StatusOr<ProbeReply> reply = this->stub_->Unary(request, options);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data(), "hi");
  // What a's OnStart added reached the handler.
  ASSERT_EQ(reply->metadata_size(), 1);
  EXPECT_EQ(reply->metadata(0).key(), "x-added-by");
  EXPECT_EQ(reply->metadata(0).value(), "a");
  // What x's OnFinish added reached the caller, and b and a saw it first.
  EXPECT_EQ(MetadataValue(trailers, "x-trailer"), "x");
  EXPECT_EQ(this->client_log_.events(),
            (Events{"a:start", "b:start", "a:send", "b:send", "b:initial", "a:initial", "b:recv", "a:recv",
                    "b:trailer:x-trailer", "b:finish:OK", "a:trailer:x-trailer", "a:finish:OK"}));
  EXPECT_EQ(this->server_log_.events(),
            (Events{"x:start", "x:metadata:x-added-by", "y:start", "y:metadata:x-added-by", "x:recv",
                    "y:recv", "y:send", "x:send", "y:finish:OK", "x:finish:OK"}));
}

TYPED_TEST(Intercept, FailedAndAsynchronousCallsAreIntercepted) {
  this->StartRecording();
  ProbeRequest request;
  request.set_fail_code(static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_EQ(this->stub_->Unary(request, Watchdog()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->client_log_.Count("a:recv"), 0);
  EXPECT_EQ(this->client_log_.Count("a:finish:NOT_FOUND"), 1);
  EXPECT_EQ(this->server_log_.Count("x:send"), 0);
  EXPECT_EQ(this->server_log_.Count("x:finish:NOT_FOUND"), 1);
  request.set_fail_code(0);
  absl::StatusOr<ProbeReply> reply = this->stub_->AsyncUnary(request, Watchdog()).Get();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(this->client_log_.Count("a:recv"), 1);
  EXPECT_EQ(this->client_log_.Count("b:finish:OK"), 1);
  EXPECT_EQ(this->server_log_.Count("y:finish:OK"), 1);
}

TYPED_TEST(Intercept, AClientInterceptorShortCircuitsBeforeAnythingIsSent) {
  this->StartRecording(Behavior(), Behavior::Rejects(absl::PermissionDeniedError("no token")));
  const int64_t calls_before = this->probe_.calls();
  absl::StatusOr<ProbeReply> reply = this->stub_->Unary(ProbeRequest(), Watchdog());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kPermissionDenied) << reply.status();
  EXPECT_EQ(reply.status().message(), "no token");
  // b rejected: nothing was sent; b and a see the end, last to first.
  EXPECT_EQ(this->client_log_.events(),
            (Events{"a:start", "b:start", "b:finish:PERMISSION_DENIED", "a:finish:PERMISSION_DENIED"}));
  EXPECT_EQ(this->probe_.calls(), calls_before);
  EXPECT_TRUE(this->server_log_.events().empty());
}

TYPED_TEST(Intercept, AServerInterceptorRejectsBeforeTheHandlerRuns) {
  this->StartRecording(Behavior(), Behavior(), Behavior(),
                       Behavior::Rejects(absl::UnauthenticatedError("who are you")));
  absl::StatusOr<ProbeReply> reply = this->stub_->Unary(ProbeRequest(), Watchdog());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnauthenticated) << reply.status();
  EXPECT_EQ(reply.status().message(), "who are you");
  EXPECT_EQ(this->probe_.calls(), 0);
  EXPECT_EQ(this->server_log_.events(),
            (Events{"x:start", "y:start", "y:finish:UNAUTHENTICATED", "x:finish:UNAUTHENTICATED"}));
  EXPECT_EQ(this->client_log_.Count("a:finish:UNAUTHENTICATED"), 1);
}

TYPED_TEST(Intercept, InitialMetadataArrivesWithTheReply) {
  this->StartRecording(Behavior(), Behavior(), Behavior::AddsInitial("From-Interceptor"));
  ProbeRequest request;
  Entry* entry = request.add_initial();
  entry->set_key("Server-Version");
  entry->set_value("7");
  Metadata initial;
  CallOptions options = Watchdog();
  options.initial_metadata = &initial;
  ASSERT_TRUE(this->stub_->Unary(request, options).ok());
  // Keys arrive in lower case.
  EXPECT_EQ(initial, (Metadata{{"from-interceptor", "x"}, {"server-version", "7"}}));
  EXPECT_EQ(this->client_log_.Count("a:initial:server-version"), 1);
  EXPECT_EQ(this->client_log_.Count("b:initial:from-interceptor"), 1);
}

TYPED_TEST(Intercept, MetadataKeysAreCaseInsensitive) {
  this->Start(ServerOptions(), ChannelOptions());
  ProbeRequest request;
  request.set_echo_metadata(true);
  Entry* trailer = request.add_trailing();
  trailer->set_key("Served-By");
  trailer->set_value("probe");
  CallOptions options = Watchdog();
  options.metadata = {{"X-Request-ID", "42"}, {"lower", "1"}};
  Metadata trailers;
  options.trailing_metadata = &trailers;
  absl::StatusOr<ProbeReply> reply = this->stub_->Unary(request, options);
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_EQ(reply->metadata_size(), 2);
  EXPECT_EQ(reply->metadata(0).key(), "x-request-id");
  EXPECT_EQ(reply->metadata(1).key(), "lower");
  EXPECT_EQ(trailers, (Metadata{{"served-by", "probe"}}));
  EXPECT_EQ(MetadataValue(trailers, "SERVED-by"), "probe");
  EXPECT_EQ(MetadataValue(options.metadata, "x-request-id"), "42");
}

// Initial metadata over the limit of a meta section fails that call with
// RESOURCE_EXHAUSTED at the server, and nothing else: the connection (and
// a stream open on it) goes on.
TYPED_TEST(Intercept, OversizeInitialMetadataFailsThatCallOnly) {
  this->Start(ServerOptions(), ChannelOptions());
  std::optional<ClientReaderWriter<ProbeRequest, ProbeReply>> chat;
  ProbeRequest hello;
  hello.set_data("hello");
  ProbeReply echoed;
  if constexpr (TypeParam::TransportKind::kReliable) {
    chat.emplace(this->stub_->Chat(Watchdog()));
    ASSERT_TRUE(chat->Write(hello));
    ASSERT_TRUE(chat->Read(&echoed));
  }
  ProbeRequest request;
  request.set_initial_padding_bytes(static_cast<int>(kDefaultMaxMetaSize) + 1);
  absl::StatusOr<ProbeReply> reply = this->stub_->Unary(request, Watchdog());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kResourceExhausted) << reply.status();
  request.set_initial_padding_bytes(0);
  request.set_data("after");
  reply = this->stub_->Unary(request, Watchdog());
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data(), "after");
  if (chat.has_value()) {
    hello.set_data("still open");
    ASSERT_TRUE(chat->Write(hello));
    ASSERT_TRUE(chat->Read(&echoed));
    EXPECT_EQ(echoed.data(), "still open");
    EXPECT_TRUE(chat->WritesDone());
    EXPECT_TRUE(chat->Finish().ok());
  }
}

TYPED_TEST(Intercept, StatusDetailsSurviveTheCall) {
  this->Start(ServerOptions(), ChannelOptions());
  ProbeReply typed_detail;
  typed_detail.set_data("a typed detail");
  ProbeRequest request;
  request.set_fail_code(static_cast<int>(absl::StatusCode::kFailedPrecondition));
  request.set_fail_message("precondition");
  Detail* typed = request.add_details();
  typed->set_type_url(StatusDetailTypeUrl(typed_detail));
  typed->set_value(typed_detail.SerializeAsString());
  Detail* raw = request.add_details();
  raw->set_type_url("urn:locus:test/raw");
  raw->set_value(std::string("\0binary\xff", 8));
  absl::StatusOr<ProbeReply> reply = this->stub_->Unary(request, Watchdog());
  ASSERT_EQ(reply.status().code(), absl::StatusCode::kFailedPrecondition) << reply.status();
  EXPECT_EQ(reply.status().message(), "precondition");
  ProbeReply got;
  ASSERT_TRUE(GetStatusDetail(reply.status(), &got));
  EXPECT_EQ(got.data(), "a typed detail");
  auto payload = reply.status().GetPayload("urn:locus:test/raw");
  ASSERT_TRUE(payload.has_value());
  EXPECT_EQ(std::string(*payload), std::string("\0binary\xff", 8));
}

// An error whose details would not fit a meta section reaches the client
// without them: its code and message survive.
TYPED_TEST(Intercept, DetailsTooLargeToSendAreDroppedNotTheError) {
  this->Start(ServerOptions(), ChannelOptions());
  ProbeRequest request;
  request.set_fail_code(static_cast<int>(absl::StatusCode::kAborted));
  request.set_fail_message("too detailed");
  request.set_detail_padding_bytes(static_cast<int>(kDefaultMaxMetaSize) + 1);
  Detail* small = request.add_details();
  small->set_type_url("urn:locus:test/small");
  small->set_value("s");
  absl::StatusOr<ProbeReply> reply = this->stub_->Unary(request, Watchdog());
  ASSERT_EQ(reply.status().code(), absl::StatusCode::kAborted) << reply.status();
  EXPECT_EQ(reply.status().message(), "too detailed");
  int payloads = 0;
  reply.status().ForEachPayload([&payloads](absl::string_view, const absl::Cord&) { ++payloads; });
  EXPECT_EQ(payloads, 0);
}

TYPED_TEST(Intercept, AChannelWithoutInterceptorsIsNotWrapped) {
  this->StartRecording();
  EXPECT_NE(&internal::UninterceptedChannel(*this->channel_), this->channel_.get());
  ChannelOptions plain;
  plain.allowed_transports = TypeParam::TransportKind::kTransport;
  auto channel = Connect(this->server_->listening_addresses()[0], plain);
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_EQ(&internal::UninterceptedChannel(**channel), channel->get());
}

TYPED_TEST(InterceptStreams, EachStreamMessageIsShownToBothSides) {
  this->StartRecording();
  ClientReaderWriter<ProbeRequest, ProbeReply> chat = this->stub_->Chat(Watchdog());
  ProbeRequest message;
  ProbeReply echoed;
  for (int i = 0; i < 3; ++i) {
    message.set_data(absl::StrCat("m", i));
    ASSERT_TRUE(chat.Write(message));
    ASSERT_TRUE(chat.Read(&echoed));
  }
  EXPECT_TRUE(chat.WritesDone());
  EXPECT_FALSE(chat.Read(&echoed));
  ASSERT_TRUE(chat.Finish().ok());
  EXPECT_EQ(this->client_log_.Count("a:send"), 3);
  EXPECT_EQ(this->client_log_.Count("b:recv"), 3);
  EXPECT_EQ(this->client_log_.Count("a:initial"), 1);
  EXPECT_EQ(this->client_log_.Count("a:finish:OK"), 1);
  // The server's OnFinish precedes its RESPONSE, which Finish waited for.
  EXPECT_EQ(this->server_log_.Count("x:recv"), 3);
  EXPECT_EQ(this->server_log_.Count("y:send"), 3);
  EXPECT_EQ(this->server_log_.Count("x:finish:OK"), 1);

  // Server streaming: the request, then each reply.
  ProbeRequest watch;
  watch.set_count(4);
  ClientReader<ProbeReply> reader = this->stub_->Watch(watch, Watchdog());
  int read = 0;
  while (reader.Read(&echoed)) ++read;
  ASSERT_TRUE(reader.Finish().ok());
  EXPECT_EQ(read, 4);
  EXPECT_EQ(this->client_log_.Count("a:send"), 4);
  EXPECT_EQ(this->client_log_.Count("a:recv"), 7);
  EXPECT_EQ(this->server_log_.Count("y:recv"), 4);
  EXPECT_EQ(this->server_log_.Count("x:send"), 7);

  // Client streaming: each request, then the reply.
  ProbeReply summary;
  ClientWriter<ProbeRequest> writer = this->stub_->Collect(&summary, Watchdog());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(writer.Write(message));
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_EQ(summary.messages(), 5);
  EXPECT_EQ(this->client_log_.Count("b:send"), 9);
  EXPECT_EQ(this->client_log_.Count("b:recv"), 8);
  EXPECT_EQ(this->server_log_.Count("x:recv"), 9);
  EXPECT_EQ(this->server_log_.Count("y:send"), 8);
  EXPECT_EQ(this->server_log_.Count("y:finish:OK"), 3);
}

TYPED_TEST(InterceptStreams, AStreamDroppedUnfinishedEndsCancelled) {
  this->StartRecording();
  {
    ClientReaderWriter<ProbeRequest, ProbeReply> chat = this->stub_->Chat(Watchdog());
    ProbeRequest message;
    message.set_data("one");
    ProbeReply reply;
    ASSERT_TRUE(chat.Write(message));
    ASSERT_TRUE(chat.Read(&reply));
  }  // the handler waits for more: only the client can end the call
  EXPECT_EQ(this->client_log_.Count("b:finish:CANCELLED"), 1);
  EXPECT_EQ(this->client_log_.Count("a:finish:CANCELLED"), 1);
}

// Dropped before Finish after the server had finished: the caller never
// learnt the server's status, so the interceptors see CANCELLED too.
TYPED_TEST(InterceptStreams, AStreamDroppedAfterItsServerFinishedEndsCancelled) {
  this->StartRecording();
  {
    ProbeRequest watch;
    watch.set_count(1);
    ClientReader<ProbeReply> reader = this->stub_->Watch(watch, Watchdog());
    ProbeReply reply;
    ASSERT_TRUE(reader.Read(&reply));
    EXPECT_FALSE(reader.Read(&reply));  // the server's status arrived
  }
  EXPECT_EQ(this->server_log_.Count("x:finish:OK"), 1);
  EXPECT_EQ(this->client_log_.Count("b:finish:CANCELLED"), 1);
  EXPECT_EQ(this->client_log_.Count("a:finish:CANCELLED"), 1);
  EXPECT_EQ(this->client_log_.Count("a:finish:OK"), 0);
}

TYPED_TEST(InterceptStreams, AServerInterceptorRejectsAStreamBeforeItsHandlerRuns) {
  this->StartRecording(Behavior(), Behavior(), Behavior(),
                       Behavior::Rejects(absl::PermissionDeniedError("streams refused")));
  ProbeRequest watch;
  watch.set_count(2);
  ClientReader<ProbeReply> refused = this->stub_->Watch(watch, Watchdog());
  ProbeReply reply;
  EXPECT_FALSE(refused.Read(&reply));
  EXPECT_EQ(refused.Finish().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(this->probe_.calls(), 0);
  EXPECT_EQ(this->server_log_.Count("x:finish:PERMISSION_DENIED"), 1);
  EXPECT_EQ(this->client_log_.Count("a:finish:PERMISSION_DENIED"), 1);
}

TYPED_TEST(InterceptStreams, InitialMetadataComesBeforeTheFirstMessage) {
  this->Start(ServerOptions(), ChannelOptions());
  ProbeRequest watch;
  watch.set_count(2);
  Entry* entry = watch.add_initial();
  entry->set_key("Stream-Header");
  entry->set_value("h");
  Metadata initial;
  CallOptions options = Watchdog();
  options.initial_metadata = &initial;
  ClientReader<ProbeReply> reader = this->stub_->Watch(watch, options);
  ProbeReply reply;
  ASSERT_TRUE(reader.Read(&reply));
  // Readable once a message was read: it came before.
  EXPECT_EQ(initial, (Metadata{{"stream-header", "h"}}));
  while (reader.Read(&reply)) {
  }
  ASSERT_TRUE(reader.Finish().ok());
  EXPECT_EQ(initial.size(), 1u);

  // No message: it comes with the status.
  watch.set_count(0);
  Metadata initial_only;
  options.initial_metadata = &initial_only;
  ClientReader<ProbeReply> empty = this->stub_->Watch(watch, options);
  EXPECT_FALSE(empty.Read(&reply));
  ASSERT_TRUE(empty.Finish().ok());
  EXPECT_EQ(initial_only, (Metadata{{"stream-header", "h"}}));
}

TYPED_TEST(InterceptStreams, OversizeInitialMetadataFailsThatStreamOnly) {
  this->Start(ServerOptions(), ChannelOptions());
  ClientReaderWriter<ProbeRequest, ProbeReply> chat = this->stub_->Chat(Watchdog());
  ProbeRequest message;
  message.set_data("first");
  ProbeReply reply;
  ASSERT_TRUE(chat.Write(message));
  ASSERT_TRUE(chat.Read(&reply));
  ProbeRequest watch;
  watch.set_count(3);
  watch.set_initial_padding_bytes(static_cast<int>(kDefaultMaxMetaSize) + 1);
  ClientReader<ProbeReply> reader = this->stub_->Watch(watch, Watchdog());
  EXPECT_FALSE(reader.Read(&reply));
  EXPECT_EQ(reader.Finish().code(), absl::StatusCode::kResourceExhausted);
  message.set_data("second");
  ASSERT_TRUE(chat.Write(message));
  ASSERT_TRUE(chat.Read(&reply));
  EXPECT_EQ(reply.data(), "second");
  EXPECT_TRUE(chat.WritesDone());
  EXPECT_TRUE(chat.Finish().ok());
}

TYPED_TEST(InterceptStreams, AStreamsStatusDetailsSurvive) {
  this->Start(ServerOptions(), ChannelOptions());
  ProbeRequest watch;
  watch.set_count(1);
  watch.set_fail_code(static_cast<int>(absl::StatusCode::kAborted));
  Detail* detail = watch.add_details();
  detail->set_type_url("urn:locus:test/stream");
  detail->set_value("why");
  ClientReader<ProbeReply> reader = this->stub_->Watch(watch, Watchdog());
  ProbeReply reply;
  EXPECT_TRUE(reader.Read(&reply));
  absl::Status status = reader.Finish();
  ASSERT_EQ(status.code(), absl::StatusCode::kAborted) << status;
  auto payload = status.GetPayload("urn:locus:test/stream");
  ASSERT_TRUE(payload.has_value());
  EXPECT_EQ(std::string(*payload), "why");
}

TYPED_TEST(InterceptStreams, AStreamsDetailsTooLargeToSendAreDropped) {
  this->Start(ServerOptions(), ChannelOptions());
  ProbeRequest watch;
  watch.set_count(1);
  watch.set_fail_code(static_cast<int>(absl::StatusCode::kAborted));
  watch.set_fail_message("too detailed");
  watch.set_detail_padding_bytes(static_cast<int>(kDefaultMaxMetaSize) + 1);
  ClientReader<ProbeReply> reader = this->stub_->Watch(watch, Watchdog());
  ProbeReply reply;
  EXPECT_TRUE(reader.Read(&reply));
  absl::Status status = reader.Finish();
  ASSERT_EQ(status.code(), absl::StatusCode::kAborted) << status;
  EXPECT_EQ(status.message(), "too detailed");
  EXPECT_FALSE(status.GetPayload("urn:locus:test/padding").has_value());
}

// Records hooks that overlap OnFinish or come after it. Read-side and
// write-side hooks may overlap each other (locus/interceptor.h); each
// lingers a little, so that an overlap is likely if the runtime allows one.
class OverlapProbe final : public ClientInterceptor {
 public:
  explicit OverlapProbe(std::atomic<int>* violations) : violations_(violations) {}
  void OnSendMessage(ClientCallInfo&, const google::protobuf::MessageLite&) override { Hook(writing_); }
  void OnReceiveInitialMetadata(ClientCallInfo&) override { Hook(reading_); }
  void OnReceiveMessage(ClientCallInfo&, const google::protobuf::MessageLite&) override { Hook(reading_); }
  void OnFinish(ClientCallInfo&, absl::Status&) override {
    if (finishing_.exchange(true) || finished_.load()) violations_->fetch_add(1);
    for (int i = 0; i < 20; ++i) {
      if (reading_.load() > 0 || writing_.load() > 0) violations_->fetch_add(1);
      absl::SleepFor(absl::Microseconds(50));
    }
    finished_.store(true);
    finishing_.store(false);
  }

 private:
  void Hook(std::atomic<int>& side) {
    side.fetch_add(1);
    if (finishing_.load() || finished_.load()) violations_->fetch_add(1);
    absl::SleepFor(absl::Microseconds(100));
    if (finishing_.load() || finished_.load()) violations_->fetch_add(1);
    side.fetch_sub(1);
  }

  std::atomic<int>* const violations_;
  std::atomic<int> reading_{0};
  std::atomic<int> writing_{0};
  std::atomic<bool> finishing_{false};
  std::atomic<bool> finished_{false};
};

class OverlapProbeFactory final : public ClientInterceptorFactory {
 public:
  std::unique_ptr<ClientInterceptor> Create(const ClientCallInfo&) override {
    return std::make_unique<OverlapProbe>(&violations);
  }
  std::atomic<int> violations{0};
};

// Finish from one thread while others Read and Write (locus/stream.h allows
// it): OnFinish runs alone, and no hook follows it.
TYPED_TEST(InterceptStreams, NoHookOverlapsOrFollowsOnFinish) {
  auto probe = std::make_shared<OverlapProbeFactory>();
  ChannelOptions channel_options;
  channel_options.interceptors = {probe};
  this->Start(ServerOptions(), channel_options);
  for (int round = 0; round < 3; ++round) {
    ClientReaderWriter<ProbeRequest, ProbeReply> chat = this->stub_->Chat(Watchdog());
    std::atomic<int> echoed{0};
    std::thread writer([&] {
      ProbeRequest message;
      message.set_data("m");
      while (chat.Write(message)) {
      }
    });
    std::thread reader([&] {
      ProbeReply reply;
      while (chat.Read(&reply)) echoed.fetch_add(1);
    });
    const absl::Time give_up = absl::Now() + ::locus::testing::kWatchdog;
    while (echoed.load() < 20 && absl::Now() < give_up) absl::SleepFor(absl::Microseconds(200));
    EXPECT_GE(echoed.load(), 20);
    absl::Status status = chat.Finish();
    writer.join();
    reader.join();
    EXPECT_TRUE(status.ok()) << status;
  }
  EXPECT_EQ(probe->violations.load(), 0);
}

}  // namespace
}  // namespace locus::callmodel
