// The wire additions for metadata (docs/wire.md "Metadata"), frame by frame
// against a scripted peer: a server sends HEADERS only to a peer whose
// HELLO lists "headers/1", before the stream's first MESSAGE; a unary
// call's initial metadata and an error's details ride in the RESPONSE's
// CallStatus; a client ignores HEADERS for a unary call.
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "internal/connection_core.h"
#include "internal/inproc_connection.h"
#include "internal/thread_pool.h"
#include "locus/wire.pb.h"
#include "probe_service.h"
#include "tests/testing/test_util.h"

namespace locus::internal {
namespace {

using ::locus::callmodel::ProbeImpl;
using ::locus::callmodel::ProbeReply;
using ::locus::callmodel::ProbeRequest;
using ::locus::testing::kWatchdog;

// Records what the core sends; the test answers by hand.
class ScriptedPeer final : public FrameSink {
 public:
  struct Received {
    FrameHeader header;
    std::string meta;
  };
  void OnFrame(Frame& frame) override {
    absl::MutexLock lock(&mu_);
    frames_.push_back({frame.header, std::string(frame.meta_bytes())});
  }
  void OnOversizeFrame(const FrameHeader&) override {}
  void OnClosed(const absl::Status&) override {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  // Waits (watchdog-bounded) for a frame of `type`; the frames until then.
  std::vector<Received> AwaitFrame(FrameType type) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const Received& r : frames_) {
        if (r.header.frame_type() == type) return true;
      }
      return closed_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&seen), kWatchdog);
    return frames_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Received> frames_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

absl::Status SendFrame(Connection& connection, FrameType type, uint32_t flags, uint64_t call_id,
                       const std::string& meta, const std::string& payload = {}) {
  FrameHeader header = FrameHeader::Make(type, flags, call_id);
  header.meta_length = static_cast<uint32_t>(meta.size());
  header.payload_length = static_cast<uint32_t>(payload.size());
  return connection.Send(header, meta, payload, absl::Now() + kWatchdog);
}

std::string PeerHello(bool headers) {
  wire::Hello hello;
  hello.set_min_protocol_version(kProtocolVersion);
  hello.set_max_protocol_version(kProtocolVersion);
  if (headers) hello.add_features("headers/1");
  return hello.SerializeAsString();
}

std::string Header(const char* method) {
  wire::CallHeader header;
  header.set_method(method);
  return header.SerializeAsString();
}

class WireCompat : public ::testing::Test {
 protected:
  // The core serves Probe; the scripted peer is its client.
  void ServeTo(bool peer_speaks_headers) {
    auto [client_end, server_end] = MakeInprocPair(InprocEnd{PeerInfo{"inproc", "c", "s"}, 1u << 20},
                                                   InprocEnd{PeerInfo{"inproc", "s", "c"}, 1u << 20});
    peer_connection_ = std::move(client_end);
    peer_connection_->Start(&peer_);
    ASSERT_TRUE(services_.Add(&probe_).ok());
    ConnectionCore::Options options;
    options.connecting_side = false;
    options.services = &services_;
    options.stream_pool = &stream_pool_;
    core_ = ConnectionCore::Create(std::move(server_end), std::move(options));
    core_->Start();
    ASSERT_TRUE(SendFrame(*peer_connection_, FrameType::kHello, 0, 0, PeerHello(peer_speaks_headers)).ok());
    ASSERT_FALSE(peer_.AwaitFrame(FrameType::kHelloAck).empty());
  }
  void TearDown() override {
    if (core_ != nullptr) core_->Close(absl::CancelledError("test over"));
    if (peer_connection_ != nullptr) peer_connection_->Close(absl::CancelledError("test over"));
    stream_pool_.Stop();
  }

  // A Watch that adds initial metadata and writes one reply.
  void Watch(uint64_t id) {
    ProbeRequest request;
    request.set_count(1);
    auto* entry = request.add_initial();
    entry->set_key("Stream-Header");
    entry->set_value("h");
    ASSERT_TRUE(SendFrame(*peer_connection_, FrameType::kRequest, kFlagHasMessage | kFlagEndStream, id,
                          Header(callmodel::Probe::kMethodWatch.full_name), request.SerializeAsString())
                    .ok());
  }

  ScriptedPeer peer_;
  std::unique_ptr<Connection> peer_connection_;
  ProbeImpl probe_;
  ServiceTable services_;
  ThreadPool stream_pool_{0, 4, absl::Seconds(1)};
  std::shared_ptr<ConnectionCore> core_;
};

// The frame types of `frames` for call `id`, in order.
std::vector<FrameType> TypesOf(const std::vector<ScriptedPeer::Received>& frames, uint64_t id) {
  std::vector<FrameType> types;
  for (const auto& frame : frames) {
    if (frame.header.call_id == id) types.push_back(frame.header.frame_type());
  }
  return types;
}

TEST_F(WireCompat, APeerWithHeadersGetsThemBeforeTheFirstMessage) {
  ServeTo(/*peer_speaks_headers=*/true);
  Watch(1);
  std::vector<ScriptedPeer::Received> frames = peer_.AwaitFrame(FrameType::kResponse);
  EXPECT_EQ(TypesOf(frames, 1),
            (std::vector<FrameType>{FrameType::kHeaders, FrameType::kMessage, FrameType::kResponse}));
  for (const auto& frame : frames) {
    if (frame.header.frame_type() != FrameType::kHeaders) continue;
    wire::InitialMetadata initial;
    ASSERT_TRUE(initial.ParseFromString(frame.meta));
    ASSERT_EQ(initial.metadata_size(), 1);
    EXPECT_EQ(initial.metadata(0).key(), "stream-header");  // sent in lower case
    EXPECT_EQ(initial.metadata(0).value(), "h");
  }
}

TEST_F(WireCompat, APeerWithoutHeadersNeverGetsTheFrame) {
  ServeTo(/*peer_speaks_headers=*/false);
  Watch(1);
  std::vector<ScriptedPeer::Received> frames = peer_.AwaitFrame(FrameType::kResponse);
  EXPECT_EQ(TypesOf(frames, 1), (std::vector<FrameType>{FrameType::kMessage, FrameType::kResponse}));
}

TEST_F(WireCompat, AUnaryCallsInitialMetadataAndDetailsRideInTheResponse) {
  ServeTo(/*peer_speaks_headers=*/false);
  ProbeRequest request;
  auto* entry = request.add_initial();
  entry->set_key("Unary-Header");
  entry->set_value("u");
  request.set_fail_code(static_cast<int>(absl::StatusCode::kAborted));
  request.set_fail_message("no");
  auto* detail = request.add_details();
  detail->set_type_url("urn:detail");
  detail->set_value("d");
  ASSERT_TRUE(SendFrame(*peer_connection_, FrameType::kRequest, kFlagHasMessage | kFlagEndStream, 1,
                        Header(callmodel::Probe::kMethodUnary.full_name), request.SerializeAsString())
                  .ok());
  std::vector<ScriptedPeer::Received> frames = peer_.AwaitFrame(FrameType::kResponse);
  ASSERT_EQ(TypesOf(frames, 1), (std::vector<FrameType>{FrameType::kResponse}));
  wire::CallStatus status;
  for (const auto& frame : frames) {
    if (frame.header.call_id == 1) {
      ASSERT_TRUE(status.ParseFromString(frame.meta));
    }
  }
  EXPECT_EQ(status.code(), static_cast<int>(absl::StatusCode::kAborted));
  ASSERT_EQ(status.initial_metadata_size(), 1);
  EXPECT_EQ(status.initial_metadata(0).key(), "unary-header");
  ASSERT_EQ(status.details_size(), 1);
  EXPECT_EQ(status.details(0).type_url(), "urn:detail");
  EXPECT_EQ(status.details(0).value(), "d");
}

TEST(WireCompatClient, HeadersForAUnaryCallAreIgnored) {
  ScriptedPeer peer;
  auto [client_end, server_end] = MakeInprocPair(InprocEnd{PeerInfo{"inproc", "c", "s"}, 1u << 20},
                                                 InprocEnd{PeerInfo{"inproc", "s", "c"}, 1u << 20});
  std::unique_ptr<Connection> server = std::move(server_end);
  server->Start(&peer);
  auto core = ConnectionCore::Create(std::move(client_end), ConnectionCore::Options());
  core->Start();
  std::thread answer([&] {
    ASSERT_FALSE(peer.AwaitFrame(FrameType::kHello).empty());
    ASSERT_TRUE(SendFrame(*server, FrameType::kHelloAck, 0, 0, PeerHello(true)).ok());
    ASSERT_FALSE(peer.AwaitFrame(FrameType::kRequest).empty());
    wire::InitialMetadata initial;
    auto* entry = initial.add_metadata();
    entry->set_key("ignored");
    entry->set_value("x");
    ASSERT_TRUE(SendFrame(*server, FrameType::kHeaders, 0, 1, initial.SerializeAsString()).ok());
    wire::CallStatus status;
    auto* kept = status.add_initial_metadata();
    kept->set_key("Kept");
    kept->set_value("y");
    ProbeReply reply;
    reply.set_data("done");
    ASSERT_TRUE(SendFrame(*server, FrameType::kResponse, kFlagHasMessage, 1, status.SerializeAsString(),
                          reply.SerializeAsString())
                    .ok());
  });
  ASSERT_TRUE(core->ClientHandshake(absl::Now() + kWatchdog).ok());
  Metadata initial;
  CallOptions options = CallOptions::WithTimeout(kWatchdog);
  options.initial_metadata = &initial;
  ProbeReply reply;
  absl::Status status = core->CallUnary(callmodel::Probe::kMethodUnary, ProbeRequest(), &reply, options);
  answer.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(reply.data(), "done");
  EXPECT_EQ(initial, (Metadata{{"kept", "y"}}));
  EXPECT_TRUE(core->usable());
  core->Close(absl::CancelledError("test over"));
  server->Close(absl::CancelledError("test over"));
}

// docs/wire.md: initial metadata after the stream's first MESSAGE (a
// HEADERS frame, or the RESPONSE's CallStatus.initial_metadata) is ignored;
// the caller may be reading what arrived before.
TEST(WireCompatClient, InitialMetadataAfterTheFirstMessageIsIgnored) {
  ScriptedPeer peer;
  auto [client_end, server_end] = MakeInprocPair(InprocEnd{PeerInfo{"inproc", "c", "s"}, 1u << 20},
                                                 InprocEnd{PeerInfo{"inproc", "s", "c"}, 1u << 20});
  std::unique_ptr<Connection> server = std::move(server_end);
  server->Start(&peer);
  auto core = ConnectionCore::Create(std::move(client_end), ConnectionCore::Options());
  core->Start();
  std::thread answer([&] {
    ASSERT_FALSE(peer.AwaitFrame(FrameType::kHello).empty());
    ASSERT_TRUE(SendFrame(*server, FrameType::kHelloAck, 0, 0, PeerHello(true)).ok());
    ASSERT_FALSE(peer.AwaitFrame(FrameType::kRequest).empty());
    ProbeReply first;
    first.set_data("first");
    ASSERT_TRUE(SendFrame(*server, FrameType::kMessage, kFlagHasMessage, 1, "", first.SerializeAsString()).ok());
    wire::InitialMetadata late;
    auto* entry = late.add_metadata();
    entry->set_key("late");
    entry->set_value("x");
    ASSERT_TRUE(SendFrame(*server, FrameType::kHeaders, 0, 1, late.SerializeAsString()).ok());
    wire::CallStatus status;
    auto* later = status.add_initial_metadata();
    later->set_key("later");
    later->set_value("y");
    ASSERT_TRUE(SendFrame(*server, FrameType::kResponse, 0, 1, status.SerializeAsString()).ok());
  });
  ASSERT_TRUE(core->ClientHandshake(absl::Now() + kWatchdog).ok());
  Metadata initial;
  CallOptions options = CallOptions::WithTimeout(kWatchdog);
  options.initial_metadata = &initial;
  ProbeRequest request;
  std::unique_ptr<ClientCallStream> stream =
      core->OpenStream(callmodel::Probe::kMethodWatch, &request, nullptr, options, nullptr);
  ProbeReply reply;
  ASSERT_TRUE(stream->Read(&reply));
  EXPECT_EQ(reply.data(), "first");
  EXPECT_FALSE(stream->Read(&reply));
  absl::Status status = stream->Finish();
  answer.join();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(initial.empty()) << initial.size() << " entries, the first \"" << initial[0].first << "\"";
  EXPECT_TRUE(core->usable());
  stream.reset();
  core->Close(absl::CancelledError("test over"));
  server->Close(absl::CancelledError("test over"));
}

// What the reader does with initial metadata (a HEADERS frame, or a
// RESPONSE's) for a stream it found just before the caller cancelled it,
// returned and freed its CallOptions: nothing. Under ASan a write into the
// freed metadata is a heap-use-after-free.
TEST(WireCompatClient, InitialMetadataAfterALocalCancelIsHarmless) {
  const RpcMethod& method = callmodel::Probe::kMethodWatch;
  {
    Metadata initial;
    StreamCall call(nullptr, StreamCall::Side::kClient, method, 1, absl::InfiniteFuture(),
                    kMinStreamWindowBytes, kMinStreamWindowBytes, 1u << 20, nullptr);
    call.initial_metadata = &initial;
    call.End(absl::CancelledError("cancelled by the client"));
    call.OnInitialMetadata(Metadata{{"late", "x"}});
    EXPECT_TRUE(initial.empty());
  }
  {
    auto initial = std::make_unique<Metadata>();
    StreamCall call(nullptr, StreamCall::Side::kClient, method, 3, absl::InfiniteFuture(),
                    kMinStreamWindowBytes, kMinStreamWindowBytes, 1u << 20, nullptr);
    call.initial_metadata = initial.get();
    call.End(absl::CancelledError("cancelled by the client"));
    initial.reset();  // the caller's CallOptions are gone
    call.OnInitialMetadata(Metadata{{"late", "x"}});
  }
}

}  // namespace
}  // namespace locus::internal
