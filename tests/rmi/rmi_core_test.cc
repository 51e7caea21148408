// The RMI rules of ConnectionCore against a scripted peer (the other end of
// an in-process connection pair, driven by hand): what a peer without RMI
// gets, and what a hostile or confused RMI peer can and cannot make the
// core do with counted references.
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "internal/call_header_codec.h"
#include "internal/connection_core.h"
#include "internal/inproc_connection.h"
#include "internal/object_registry.h"
#include "locus/wire.pb.h"
#include "rmi_services.h"
#include "tests/testing/test_util.h"

namespace locus::internal {
namespace {

using ::locus::testing::kWatchdog;

// Records what the core sends; the test answers by hand.
class ScriptedPeer final : public FrameSink {
 public:
  void OnFrame(Frame& frame) override {
    absl::MutexLock lock(&mu_);
    frames_.push_back({frame.header, std::string(frame.meta_bytes()), std::string(frame.payload_bytes())});
  }
  void OnOversizeFrame(const FrameHeader&) override {}
  void OnClosed(const absl::Status&) override {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

  struct Received {
    FrameHeader header;
    std::string meta;
    std::string payload;
  };
  // Waits (watchdog-bounded) for a frame of `type` beyond the first `skip`.
  std::optional<Received> Await(FrameType type, size_t skip = 0) {
    absl::MutexLock lock(&mu_);
    std::optional<Received> found;
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      size_t n = 0;
      for (const Received& r : frames_) {
        if (r.header.frame_type() == type && n++ == skip) {
          found = r;
          return true;
        }
      }
      return closed_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&seen), kWatchdog);
    return found;
  }
  size_t Count(FrameType type) {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const Received& r : frames_) n += r.header.frame_type() == type;
    return n;
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

wire::Hello PeerHello(bool rmi) {
  wire::Hello hello;
  hello.set_min_protocol_version(kProtocolVersion);
  hello.set_max_protocol_version(kProtocolVersion);
  hello.mutable_host()->set_process_nonce(0x1234);
  if (rmi) hello.add_features("rmi/1");
  return hello;
}

class RmiCoreTest : public ::testing::Test {
 protected:
  // The core is the connecting side (a client) if `core_connects`.
  void Connect(bool core_connects, bool peer_speaks_rmi) {
    auto [client_end, server_end] = MakeInprocPair(InprocEnd{PeerInfo{"inproc", "c", "s"}, 1u << 20},
                                                   InprocEnd{PeerInfo{"inproc", "s", "c"}, 1u << 20});
    peer_connection_ = core_connects ? std::move(server_end) : std::move(client_end);
    peer_connection_->Start(&peer_);
    ConnectionCore::Options options;
    options.connecting_side = core_connects;
    if (!core_connects) {
      ASSERT_TRUE(services_.Add(&kv_).ok());
      options.services = &services_;
    }
    core_ = ConnectionCore::Create(core_connects ? std::move(client_end) : std::move(server_end),
                                   std::move(options));
    core_->Start();
    const std::string hello = PeerHello(peer_speaks_rmi).SerializeAsString();
    if (core_connects) {
      std::thread answer([&] {
        ASSERT_TRUE(peer_.Await(FrameType::kHello).has_value());
        ASSERT_TRUE(SendFrame(*peer_connection_, FrameType::kHelloAck, 0, 0, hello).ok());
      });
      absl::Status shaken = core_->ClientHandshake(absl::Now() + kWatchdog);
      answer.join();
      ASSERT_TRUE(shaken.ok()) << shaken;
    } else {
      ASSERT_TRUE(SendFrame(*peer_connection_, FrameType::kHello, 0, 0, hello).ok());
      ASSERT_TRUE(peer_.Await(FrameType::kHelloAck).has_value());
    }
  }
  void TearDown() override {
    if (core_ != nullptr) core_->Close(absl::CancelledError("test over"));
    if (peer_connection_ != nullptr) peer_connection_->Close(absl::CancelledError("test over"));
  }

  ScriptedPeer peer_;
  std::unique_ptr<Connection> peer_connection_;
  rmitest::KvImpl kv_;
  ServiceTable services_;
  std::shared_ptr<ConnectionCore> core_;
};

TEST_F(RmiCoreTest, APeerWithoutRmiGetsAClearErrorAndTheConnectionGoesOn) {
  Connect(/*core_connects=*/true, /*peer_speaks_rmi=*/false);
  EXPECT_FALSE(core_->peer_speaks_rmi());
  rmitest::OpenRequest request;
  ASSERT_TRUE(SetRef(request.mutable_progress(), std::make_shared<rmitest::ProgressImpl>()).ok());
  rmitest::OpenReply reply;
  absl::Status status = core_->CallUnary(rmitest::Kv::kMethodOpen, request, &reply,
                                         CallOptions::WithTimeout(kWatchdog));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("does not support object references"), std::string::npos);
  EXPECT_EQ(peer_.Count(FrameType::kRequest), 0u) << "nothing was sent";
  EXPECT_TRUE(core_->usable());
  // A call on an object: refused alike.
  ObjectTarget target{42, "token"};
  status = core_->CallUnary(rmitest::Kv::kMethodSessions, rmitest::Empty(), &reply,
                            CallOptions::WithTimeout(kWatchdog), &target);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(peer_.Count(FrameType::kRequest), 0u);
}

// The references a refused call counted are released to their owner at
// once: a peer cannot make this side hold what it never read.
TEST_F(RmiCoreTest, ReferencesCountedByARefusedCallAreReleased) {
  Connect(/*core_connects=*/false, /*peer_speaks_rmi=*/true);
  std::string meta;
  EncodeCallHeader("/no.Such/Method", 0, {}, &meta);
  wire::CallHeader counted;
  wire::CountedRef* ref = counted.add_counted_refs();
  ref->set_object_id(77);
  ref->set_token(std::string(16, 't'));
  ref->set_count(3);
  meta += counted.SerializeAsString();
  ASSERT_TRUE(SendFrame(*peer_connection_, FrameType::kRequest, kFlagHasMessage | kFlagEndStream, 1,
                        meta, "")
                  .ok());
  std::optional<ScriptedPeer::Received> answer = peer_.Await(FrameType::kResponse);
  ASSERT_TRUE(answer.has_value());
  // The release is a oneway call to the built-in object table service.
  std::optional<ScriptedPeer::Received> release = peer_.Await(FrameType::kRequest);
  ASSERT_TRUE(release.has_value());
  CallHeaderView header;
  ASSERT_TRUE(DecodeCallHeader(release->meta, &header));
  EXPECT_EQ(header.method, "/locus.rmi.Objects/Release");
  EXPECT_NE(release->header.flags & kFlagOneway, 0u);
  wire::ReleaseObjects released;
  ASSERT_TRUE(released.ParseFromString(release->payload));
  ASSERT_EQ(released.objects_size(), 1);
  EXPECT_EQ(released.objects(0).object_id(), 77u);
  EXPECT_EQ(released.objects(0).count(), 3u);
}

// A peer cannot release references another connection holds.
TEST_F(RmiCoreTest, APeerCannotReleaseWhatItDoesNotHold) {
  Connect(/*core_connects=*/false, /*peer_speaks_rmi=*/true);
  // Static: the session may be destroyed on a runtime thread after this
  // test returned (its destructor counts down here).
  auto live = std::make_shared<std::atomic<int64_t>>(0);
  absl::StatusOr<Exported> exported = Export(std::make_shared<rmitest::SessionImpl>(live));
  ASSERT_TRUE(exported.ok());
  const uint64_t id = exported->ref().object_id();
  // Held twice by some other connection.
  ASSERT_TRUE(ObjectRegistry::Get().AddHolder(id, /*serial=*/~uint64_t{0}, 2));
  wire::ReleaseObjects release;
  auto* entry = release.add_objects();
  entry->set_object_id(id);
  entry->set_count(1000);
  std::string meta;
  EncodeCallHeader("/locus.rmi.Objects/Release", 0, {}, &meta);
  ASSERT_TRUE(SendFrame(*peer_connection_, FrameType::kRequest,
                        kFlagHasMessage | kFlagEndStream | kFlagOneway, 1, meta,
                        release.SerializeAsString())
                  .ok());
  // A call after it on the same connection is answered: the release was handled.
  std::string sessions_meta;
  EncodeCallHeader(rmitest::Kv::kMethodSessions.full_name, 0, {}, &sessions_meta);
  ASSERT_TRUE(SendFrame(*peer_connection_, FrameType::kRequest, kFlagHasMessage | kFlagEndStream, 3,
                        sessions_meta, "")
                  .ok());
  ASSERT_TRUE(peer_.Await(FrameType::kResponse).has_value());
  EXPECT_EQ(exported->holders(), 2u);
  ObjectRegistry::Get().Release(id, ~uint64_t{0}, 2);
}

}  // namespace
}  // namespace locus::internal
