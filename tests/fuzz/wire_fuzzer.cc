// Fuzz target for everything that parses bytes from a peer on the stream
// transports: the frame decoder (headers, lengths, oversize skipping) and,
// behind it, the RPC core's handling of each frame type (HELLO/HELLO_ACK,
// CallHeader, CallStatus, GoAway, cancel, ping, stream MESSAGEs and
// WINDOW_UPDATE), on both the accepting side (which serves a unary and a
// streaming method) and the connecting side (which has a stream open as
// call 1); and the UDP transport's datagram check (DecodeDatagram), with
// the input cut into datagrams at the lengths its frame headers claim.
//
// Built as a libFuzzer target with -DLOCUS_FUZZ=ON (clang), and otherwise as
// a regression test that replays the seed corpus plus deterministic
// mutations of it (fuzz_driver_main.cc), so CTest exercises it on every run.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <algorithm>
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

// A Connection that discards what is sent and records Close().
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
  absl::Status Send(const FrameHeader&, absl::string_view, absl::string_view, absl::Time) override {
    absl::MutexLock lock(&mu_);
    return closed_ ? absl::UnavailableError("closed") : absl::OkStatus();
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

 private:
  PeerInfo peer_;
  FrameSink* sink_ = nullptr;
  absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// Echoes its request (any message type will do: wire.CallStatus); enough
// for the server path to parse, run a handler and send a reply.
class EchoHandler final : public MethodHandler {
 public:
  void CallSerialized(ServerContext*, absl::string_view request, ReplySink& sink) override {
    wire::CallStatus message;
    if (!message.ParseFromArray(request.data(), static_cast<int>(request.size()))) {
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
  void CallStream(ServerContext*, ServerCallStream& stream, ReplySink& sink) override {
    wire::CallStatus message;
    while (stream.Read(&message) && stream.Write(message)) {
    }
    sink.Finish(absl::OkStatus(), nullptr);
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

// Feeds decoded frames to the core until the core closes the connection.
class CoreFeeder final : public FrameDecoderSink {
 public:
  CoreFeeder(ConnectionCore* core, FakeConnection* connection) : core_(core), connection_(connection) {}
  void OnFrame(Frame& frame) override {
    if (!connection_->closed()) core_->OnFrame(frame);
  }
  void OnOversizeFrame(const FrameHeader& header) override {
    if (!connection_->closed()) core_->OnOversizeFrame(header);
  }

 private:
  ConnectionCore* core_;
  FakeConnection* connection_;
};

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
  auto core = ConnectionCore::Create(std::move(connection), options);
  core->Start();
  // The connecting side has a stream open (call 1) for the input to talk to.
  std::unique_ptr<ClientCallStream> stream;
  if (connecting_side) stream = core->OpenStream(EchoService::kStreamMethod, nullptr, nullptr, {});
  CoreFeeder feeder(core.get(), raw);
  if (as_datagrams) {
    FeedDatagrams(data, size, feeder);
  } else {
    FrameDecoder decoder(kDefaultMaxMetaSize, options.max_receive_message_size);
    // Split the input in two reads to exercise partial frames.
    size_t half = size / 2;
    if (decoder.Consume(absl::string_view(reinterpret_cast<const char*>(data), half), feeder).ok()) {
      (void)decoder.Consume(absl::string_view(reinterpret_cast<const char*>(data) + half, size - half),
                            feeder);
    }
  }
  // The connection ends: streams end, their handlers return.
  raw->DeliverClosed();
  stream.reset();
  stream_pool.Stop();
}

}  // namespace
}  // namespace locus::internal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  locus::internal::RunOneSide(data, size, /*connecting_side=*/false, /*as_datagrams=*/false);
  locus::internal::RunOneSide(data, size, /*connecting_side=*/true, /*as_datagrams=*/false);
  locus::internal::RunOneSide(data, size, /*connecting_side=*/false, /*as_datagrams=*/true);
  return 0;
}
