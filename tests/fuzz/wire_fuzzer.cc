// Fuzz target for everything that parses bytes from a peer on the stream
// transports: the frame decoder (headers, lengths, oversize skipping) and,
// behind it, the RPC core's handling of each frame type (HELLO/HELLO_ACK,
// CallHeader, CallStatus with its initial metadata and details, GoAway,
// cancel, ping, stream MESSAGEs, WINDOW_UPDATE and HEADERS), on both the
// accepting side (which serves a unary and a streaming method behind a
// server interceptor; the streaming handler sends initial metadata) and the
// connecting side (which has a stream open as call 1 and an asynchronous
// unary call as call 3); and the UDP transport's datagram check
// (DecodeDatagram), with the input cut into datagrams at the lengths its
// frame headers claim.
//
// Built as a libFuzzer target with -DLOCUS_FUZZ=ON (clang), and otherwise as
// a regression test that replays the seed corpus plus deterministic
// mutations of it (fuzz_driver_main.cc), so CTest exercises it on every run.
//
// Invariants (abort on violation), on the accepting side:
// - malformed input closes the connection and does nothing else: when the
//   input leaves the connection open (at a frame boundary, after the
//   handshake), a well-formed call that follows it (the sentinel, a call
//   id the input never names) is served: its handler runs and its OK
//   RESPONSE goes out;
// - every streaming handler that started has returned once the connection
//   is gone.
// LocusFuzzReached() counts the handlers the input itself reached: the
// replay driver requires it of the "valid-" seeds.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "internal/connection_core.h"
#include "internal/service_table.h"
#include "locus/codegen_support.h"
#include "locus/wire.pb.h"
#include "transports/common/frame_decoder.h"
#include "transports/udp/datagram_codec.h"

namespace locus::internal {
namespace {

// The sentinel call: an id the input does not name (checked), and a
// request the echo handler recognizes.
constexpr uint64_t kSentinelId = 0x5e17'1e15'e171'1e11;
constexpr absl::string_view kSentinelText = "sentinel";

// Handler runs: the input's own (LocusFuzzReached), the sentinel's, and
// streaming handlers started and returned.
std::atomic<size_t> handlers_reached{0};
std::atomic<size_t> sentinel_served{0};
std::atomic<size_t> stream_handlers_started{0};
std::atomic<size_t> stream_handlers_returned{0};

// A Connection that discards what is sent and records Close(), the
// handshake reply and the sentinel's response.
class FakeConnection final : public Connection {
 public:
  FakeConnection() { peer_.transport = "fuzz"; peer_.remote_address = "fuzz:peer"; }
  ~FakeConnection() override { DeliverClosed(); }
  // What a transport does once it stops reading: OnClosed, once.
  void DeliverClosed() {
    if (sink_ == nullptr) return;
    FrameSink* sink = sink_;
    sink_ = nullptr;
    sink->OnClosed(absl::UnavailableError("fuzz connection released"));
  }
  void Start(FrameSink* sink) override { sink_ = sink; }
  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view,
                    absl::Time) override {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::UnavailableError("closed");
    if (header.frame_type() == FrameType::kHelloAck) sent_hello_ack_ = true;
    if (header.frame_type() == FrameType::kResponse && header.call_id == kSentinelId) {
      wire::CallStatus status;
      sentinel_ok_ = status.ParseFromArray(meta.data(), static_cast<int>(meta.size())) && status.code() == 0;
    }
    return absl::OkStatus();
  }
  void Close(const absl::Status&) override {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  const PeerInfo& peer() const override { return peer_; }
  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }
  bool sent_hello_ack() {
    absl::MutexLock lock(&mu_);
    return sent_hello_ack_;
  }
  bool sentinel_answered_ok() {
    absl::MutexLock lock(&mu_);
    return sentinel_ok_;
  }

 private:
  PeerInfo peer_;
  FrameSink* sink_ = nullptr;
  absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool sent_hello_ack_ ABSL_GUARDED_BY(mu_) = false;
  bool sentinel_ok_ ABSL_GUARDED_BY(mu_) = false;
};

// Echoes its request (any message type will do: wire.CallStatus); enough
// for the server path to parse, run a handler and send a reply.
class EchoHandler final : public MethodHandler {
 public:
  void CallSerialized(ServerContext*, absl::string_view request, ReplySink& sink) override {
    wire::CallStatus message;
    const bool parsed = message.ParseFromArray(request.data(), static_cast<int>(request.size()));
    (parsed && message.message() == kSentinelText ? sentinel_served : handlers_reached).fetch_add(1);
    if (!parsed) {
      sink.Finish(absl::InvalidArgumentError("request does not parse"), nullptr);
      return;
    }
    sink.Finish(absl::OkStatus(), &message);
  }
  absl::Status CallDirect(ServerContext*, const google::protobuf::MessageLite&,
                          google::protobuf::MessageLite*) override {
    return absl::OkStatus();
  }
};

// Echoes each stream message until the client half-closes.
class EchoStreamHandler final : public MethodHandler {
 public:
  void CallSerialized(ServerContext*, absl::string_view, ReplySink& sink) override {
    sink.Finish(absl::InternalError("streaming"), nullptr);
  }
  absl::Status CallDirect(ServerContext*, const google::protobuf::MessageLite&,
                          google::protobuf::MessageLite*) override {
    return absl::InternalError("streaming");
  }
  void CallStream(ServerContext* context, ServerCallStream& stream, ReplySink& sink) override {
    stream_handlers_started.fetch_add(1);
    handlers_reached.fetch_add(1);
    context->AddInitialMetadata("fuzz-initial", "sent before the first message (HEADERS)");
    wire::CallStatus message;
    while (stream.Read(&message) && stream.Write(message)) {
    }
    sink.Finish(absl::OkStatus(), nullptr);
    stream_handlers_returned.fetch_add(1);
  }
};

class EchoService final : public Service {
 public:
  EchoService() : Service("fuzz.Echo") {
    AddMethod(&kMethod, std::make_unique<EchoHandler>());
    AddMethod(&kStreamMethod, std::make_unique<EchoStreamHandler>());
  }
  static constexpr RpcMethod kMethod{"/fuzz.Echo/Say", RpcKind::kUnary, false};
  static constexpr RpcMethod kStreamMethod{"/fuzz.Echo/Chat", RpcKind::kBidiStreaming, false};
};

// Rejects calls whose metadata names "reject" (a short-circuit), and looks
// at everything else a server interceptor sees: peer-controlled metadata
// and messages go through the interception path.
class FuzzInterceptor final : public ServerInterceptor {
 public:
  absl::Status OnStart(ServerCallInfo& call) override {
    size_t bytes = 0;
    for (const auto& [key, value] : call.context().client_metadata()) bytes += key.size() + value.size();
    (void)bytes;
    if (!call.context().client_metadata_value("REJECT").empty()) return absl::PermissionDeniedError("rejected");
    call.context().AddPropagatedMetadata("traceparent", "fuzz");
    return absl::OkStatus();
  }
  void OnReceiveMessage(ServerCallInfo&, const google::protobuf::MessageLite& message) override {
    (void)message.ByteSizeLong();
  }
  void OnFinish(ServerCallInfo& call, absl::Status& status) override {
    if (status.ok()) call.context().AddTrailingMetadata("fuzz-trailer", "1");
  }
};
class FuzzInterceptorFactory final : public ServerInterceptorFactory {
 public:
  std::unique_ptr<ServerInterceptor> Create(const ServerCallInfo&) override {
    return std::make_unique<FuzzInterceptor>();
  }
};

// Feeds decoded frames to the core until the core closes the connection.
class CoreFeeder final : public FrameDecoderSink {
 public:
  CoreFeeder(ConnectionCore* core, FakeConnection* connection) : core_(core), connection_(connection) {}
  void OnFrame(Frame& frame) override {
    if (frame.header.frame_type() == FrameType::kGoAway) saw_goaway_ = true;
    if (!connection_->closed()) core_->OnFrame(frame);
  }
  // A GOAWAY from the peer may leave the connection draining.
  bool saw_goaway() const { return saw_goaway_; }
  void OnOversizeFrame(const FrameHeader& header) override {
    if (!connection_->closed()) core_->OnOversizeFrame(header);
  }

 private:
  ConnectionCore* core_;
  FakeConnection* connection_;
  bool saw_goaway_ = false;
};

// The sentinel call, as bytes: a REQUEST for the unary method.
std::string SentinelRequest() {
  std::string meta;
  wire::CallHeader header;
  header.set_method(std::string(EchoService::kMethod.full_name));
  header.SerializeToString(&meta);
  wire::CallStatus message;
  message.set_message(std::string(kSentinelText));
  const std::string payload = message.SerializeAsString();
  FrameHeader frame = FrameHeader::Make(FrameType::kRequest, kFlagHasMessage | kFlagEndStream, kSentinelId);
  frame.meta_length = static_cast<uint32_t>(meta.size());
  frame.payload_length = static_cast<uint32_t>(payload.size());
  return std::string(reinterpret_cast<const char*>(&frame), sizeof(frame)) + meta + payload;
}

// Whether the input names the sentinel's call id anywhere.
bool NamesTheSentinel(const uint8_t* data, size_t size) {
  const uint64_t id = kSentinelId;
  return std::search(data, data + size, reinterpret_cast<const uint8_t*>(&id),
                     reinterpret_cast<const uint8_t*>(&id) + sizeof(id)) != data + size;
}

// Cuts the input into datagrams at the lengths the frame headers claim
// (clamped to what is left) and delivers what DecodeDatagram accepts.
void FeedDatagrams(const uint8_t* data, size_t size, FrameDecoderSink& sink) {
  absl::string_view rest(reinterpret_cast<const char*>(data), size);
  while (!rest.empty()) {
    size_t length = rest.size();
    if (rest.size() >= sizeof(FrameHeader)) {
      FrameHeader header;
      std::memcpy(&header, rest.data(), sizeof(header));
      length = std::min<uint64_t>(rest.size(),
                                  sizeof(header) + uint64_t{header.meta_length} + header.payload_length);
    }
    Frame frame;
    absl::Status error;
    switch (DecodeDatagram(rest.substr(0, length), kDefaultMaxMetaSize, 1 << 16, &frame, &error)) {
      case DatagramKind::kFrame:
        sink.OnFrame(frame);
        break;
      case DatagramKind::kOversize:
        sink.OnOversizeFrame(frame.header);
        break;
      case DatagramKind::kMalformed:
        break;  // the connection would close; later datagrams still get checked
    }
    rest.remove_prefix(length);
  }
}

void RunOneSide(const uint8_t* data, size_t size, bool connecting_side, bool as_datagrams) {
  static ServiceTable* services = [] {
    static EchoService service;
    auto* table = new ServiceTable();
    (void)table->Add(&service);
    return table;
  }();
  auto connection = std::make_unique<FakeConnection>();
  FakeConnection* raw = connection.get();
  // Streaming handlers run here; small windows so that inputs can overrun them.
  ThreadPool stream_pool(0, 4, absl::Seconds(1));
  ConnectionCore::Options options;
  options.connecting_side = connecting_side;
  options.max_receive_message_size = 1 << 16;
  options.services = services;
  options.stream_pool = &stream_pool;
  options.stream_window_bytes = 4096;
  static const auto* interceptors =
      new std::shared_ptr<const ServerInterceptors>(std::make_shared<const ServerInterceptors>(
          ServerInterceptors{std::make_shared<FuzzInterceptorFactory>()}));
  options.interceptors = *interceptors;
  auto core = ConnectionCore::Create(std::move(connection), options);
  core->Start();
  // The connecting side has a stream open (call 1) and an asynchronous
  // unary call (call 3) for the input to answer, both collecting the
  // server's metadata.
  std::unique_ptr<ClientCallStream> stream;
  Metadata stream_initial, stream_trailing, unary_initial, unary_trailing;
  wire::CallStatus unary_request, unary_response;
  if (connecting_side) {
    CallOptions stream_options;
    stream_options.initial_metadata = &stream_initial;
    stream_options.trailing_metadata = &stream_trailing;
    stream = core->OpenStream(EchoService::kStreamMethod, nullptr, nullptr, stream_options);
    CallOptions unary_options;
    unary_options.initial_metadata = &unary_initial;
    unary_options.trailing_metadata = &unary_trailing;
    core->StartUnary(EchoService::kMethod, unary_request, &unary_response, unary_options,
                     [](absl::Status status) { (void)status.GetPayload("type.googleapis.com/x"); });
  }
  CoreFeeder feeder(core.get(), raw);
  bool at_frame_boundary = true;
  if (as_datagrams) {
    FeedDatagrams(data, size, feeder);
  } else {
    FrameDecoder decoder(kDefaultMaxMetaSize, options.max_receive_message_size);
    // Split the input in two reads to exercise partial frames.
    size_t half = size / 2;
    at_frame_boundary =
        decoder.Consume(absl::string_view(reinterpret_cast<const char*>(data), half), feeder).ok() &&
        decoder.Consume(absl::string_view(reinterpret_cast<const char*>(data) + half, size - half), feeder)
            .ok() &&
        decoder.at_frame_boundary();
  }
  // Whatever the input did, if it left the connection open a well-formed
  // call must still be served.
  if (!connecting_side && at_frame_boundary && !raw->closed() && raw->sent_hello_ack() &&
      !feeder.saw_goaway() && !NamesTheSentinel(data, size)) {
    static const std::string sentinel = SentinelRequest();
    const size_t served_before = sentinel_served.load();
    if (as_datagrams) {
      FeedDatagrams(reinterpret_cast<const uint8_t*>(sentinel.data()), sentinel.size(), feeder);
    } else {
      FrameDecoder decoder(kDefaultMaxMetaSize, options.max_receive_message_size);
      (void)decoder.Consume(sentinel, feeder);
    }
    if (sentinel_served.load() != served_before + 1 || !raw->sentinel_answered_ok()) {
      std::fprintf(stderr, "wire_fuzzer: the connection stayed open but a well-formed call after the input "
                           "was not served (handler runs %zu, answered OK %d)\n",
                   sentinel_served.load() - served_before, raw->sentinel_answered_ok());
      std::abort();
    }
  }
  // The connection ends: streams end, their handlers return.
  raw->DeliverClosed();
  stream.reset();
  stream_pool.Stop();
  if (stream_handlers_started.load() != stream_handlers_returned.load()) {
    std::fprintf(stderr, "wire_fuzzer: %zu streaming handler(s) still running after the connection ended\n",
                 stream_handlers_started.load() - stream_handlers_returned.load());
    std::abort();
  }
}

}  // namespace
}  // namespace locus::internal

// Handlers the last input reached (sentinel calls not counted).
extern "C" size_t LocusFuzzReached() { return locus::internal::handlers_reached.load(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  locus::internal::handlers_reached = 0;
  locus::internal::RunOneSide(data, size, /*connecting_side=*/false, /*as_datagrams=*/false);
  locus::internal::RunOneSide(data, size, /*connecting_side=*/true, /*as_datagrams=*/false);
  locus::internal::RunOneSide(data, size, /*connecting_side=*/false, /*as_datagrams=*/true);
  return 0;
}
