// Transport choice by where the peer lives: a client given any address of a
// server ends on the closest transport the server offers and the policy
// allows (inproc > shm > unix > the given address), falls back when a step
// fails, and says why once.
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>

#include <string>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "locus/locus.h"
#include "test_service.h"
#include "tests/testing/test_util.h"

namespace locus::conformance {
namespace {

using ::locus::testing::ChildServer;
using ::locus::testing::kWatchdog;
using ::locus::testing::StderrCapture;
using ::locus::testing::TempDir;
using ::testing::HasSubstr;

// A server in another process listening on TCP and a Unix socket.
class TransportSelection : public ::testing::Test {
 protected:
  void StartChild(const std::vector<std::string>& env = {}) {
    child_ = std::make_unique<ChildServer>(
        LOCUS_TEST_SERVER_PATH, std::vector<std::string>{"tcp://127.0.0.1:0", "unix:" + dir_.path() + "/s.sock"},
        env);
    ASSERT_EQ(child_->addresses().size(), 2u) << "test server did not start";
    tcp_ = child_->addresses()[0];
    unix_ = child_->addresses()[1];
  }

  // Connects, checks a call works, and returns the transport the channel is on.
  std::string EndsOn(const std::string& address, ChannelOptions options = {}) {
    auto channel = Connect(address, options);
    if (!channel.ok()) return "error: " + channel.status().ToString();
    TestService::Stub stub(*channel);
    EchoRequest request;
    request.set_data("where am I");
    request.set_report_context(true);
    absl::StatusOr<EchoReply> reply = stub.Echo(request, CallOptions::WithTimeout(kWatchdog));
    if (!reply.ok()) return "call failed: " + reply.status().ToString();
    EXPECT_EQ(reply->transport(), (*channel)->transport_name()) << "the server agrees";
    return (*channel)->transport_name();
  }

  TempDir dir_;
  std::unique_ptr<ChildServer> child_;
  std::string tcp_;
  std::string unix_;
};

TEST_F(TransportSelection, TcpAddressOfSameHostServerEndsOnSharedMemory) {
  StartChild();
  EXPECT_EQ(EndsOn(tcp_), "shm");
}

TEST_F(TransportSelection, UnixAddressEndsOnSharedMemory) {
  StartChild();
  EXPECT_EQ(EndsOn(unix_), "shm");
}

TEST_F(TransportSelection, SharedMemoryForbiddenEndsOnUnixSocket) {
  StartChild();
  ChannelOptions options;
  options.allowed_transports = "-shm";
  EXPECT_EQ(EndsOn(tcp_, options), "unix");
}

TEST_F(TransportSelection, EnvironmentVariableForbidsTransports) {
  StartChild();
  setenv("LOCUS_TRANSPORTS", "-shm,-unix", 1);
  std::string ended = EndsOn(tcp_);
  unsetenv("LOCUS_TRANSPORTS");
  EXPECT_EQ(ended, "tcp");
  // The per-channel option wins over the environment.
  setenv("LOCUS_TRANSPORTS", "tcp", 1);
  ChannelOptions options;
  options.allowed_transports = "shm";
  ended = EndsOn(tcp_, options);
  unsetenv("LOCUS_TRANSPORTS");
  EXPECT_EQ(ended, "shm");
}

TEST_F(TransportSelection, OtherHostStaysOnTcp) {
  StartChild({"LOCUS_HOST_ID_FOR_TESTING=another-host"});
  EXPECT_EQ(EndsOn(tcp_), "tcp");
}

TEST_F(TransportSelection, ForcingAnUnreachableTransportFailsClearly) {
  StartChild({"LOCUS_HOST_ID_FOR_TESTING=another-host"});
  ChannelOptions options;
  options.allowed_transports = "shm";
  auto channel = Connect(tcp_, options);
  ASSERT_FALSE(channel.ok());
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kFailedPrecondition) << channel.status();
  EXPECT_THAT(std::string(channel.status().message()), HasSubstr("only use tcp"));
}

TEST_F(TransportSelection, BadPolicyIsRejected) {
  ChannelOptions options;
  options.allowed_transports = "shm,carrier-pigeon";
  auto channel = Connect("tcp://127.0.0.1:1", options);
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument) << channel.status();
}

TEST_F(TransportSelection, FallbackIsLoggedOncePerChannelHoweverOftenItReconnects) {
  StartChild();
  // The advertised Unix endpoint disappears: shm and unix both fail, the
  // channel stays on TCP and says why, once, however often it reconnects.
  std::string path = unix_.substr(5);
  ASSERT_EQ(unlink(path.c_str()), 0);
  StderrCapture captured;
  auto channel = Connect(tcp_);
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_EQ((*channel)->transport_name(), "tcp");
  TestService::Stub stub(*channel);
  ASSERT_TRUE(stub.Echo(EchoRequest(), CallOptions::WithTimeout(kWatchdog)).ok());
  // Reconnects: the server dies and a new one takes the same TCP port
  // (and again advertises a Unix socket that is gone before the channel
  // reconnects), three times. The old server is dead, so a call that
  // succeeds went over a new connection.
  const std::string tcp_address = tcp_;
  for (int restart = 1; restart <= 3; ++restart) {
    child_.reset();  // SIGKILL
    child_ = std::make_unique<ChildServer>(LOCUS_TEST_SERVER_PATH,
                                           std::vector<std::string>{tcp_address, unix_});
    ASSERT_EQ(child_->addresses().size(), 2u) << "test server did not start again";
    ASSERT_EQ(child_->addresses()[0], tcp_address);
    ASSERT_EQ(unlink(path.c_str()), 0);
    // At most one call sees the old connection break.
    absl::Status status = stub.Echo(EchoRequest(), CallOptions::WithTimeout(kWatchdog)).status();
    if (!status.ok()) {
      EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
      status = stub.Echo(EchoRequest(), CallOptions::WithTimeout(kWatchdog)).status();
    }
    ASSERT_TRUE(status.ok()) << "restart " << restart << ": " << status;
    EXPECT_EQ((*channel)->transport_name(), "tcp") << "restart " << restart;
  }
  EXPECT_EQ(captured.Count("closer transports failed"), 1u) << captured.Contents();
  EXPECT_THAT(captured.Contents(), HasSubstr("shm:" + path));
}

TEST(TransportSelectionInProcess, SameProcessServerGetsInprocCalls) {
  TempDir dir;
  TestServiceImpl service;
  Server server;
  ASSERT_TRUE(server.RegisterService(&service).ok());
  ASSERT_TRUE(server.AddListeningAddress("tcp://127.0.0.1:0").ok());
  ASSERT_TRUE(server.AddListeningAddress("unix:" + dir.path() + "/s.sock").ok());
  ASSERT_TRUE(server.Start().ok());
  auto channel = Connect(server.listening_addresses()[0]);
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_EQ((*channel)->transport_name(), "inproc");
  TestService::Stub stub(*channel);
  EchoRequest request;
  request.set_data("direct");
  request.set_report_context(true);
  auto reply = stub.Echo(request, CallOptions::WithTimeout(kWatchdog));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->transport(), "inproc");
  EXPECT_EQ(reply->data(), "direct");
  // Without inproc the same client ends on shared memory.
  ChannelOptions options;
  options.allowed_transports = "-inproc";
  auto remote = Connect(server.listening_addresses()[0], options);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_EQ((*remote)->transport_name(), "shm");
  // After the server stops, in-process calls fail like remote ones.
  server.Shutdown();
  EXPECT_EQ(stub.Echo(request, CallOptions::WithTimeout(kWatchdog)).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(TransportSelectionInProcess, ChannelReconnectsAfterServerRestart) {
  TempDir dir;
  std::string address = "unix:" + dir.path() + "/r.sock";
  TestServiceImpl service;
  auto server = std::make_unique<Server>();
  ASSERT_TRUE(server->RegisterService(&service).ok());
  ASSERT_TRUE(server->AddListeningAddress(address).ok());
  ASSERT_TRUE(server->Start().ok());
  ChannelOptions options;
  options.allowed_transports = "shm";
  auto channel = Connect(address, options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  TestService::Stub stub(*channel);
  ASSERT_TRUE(stub.Echo(EchoRequest(), CallOptions::WithTimeout(kWatchdog)).ok());
  server->Shutdown();
  server = std::make_unique<Server>();
  ASSERT_TRUE(server->RegisterService(&service).ok());
  ASSERT_TRUE(server->AddListeningAddress(address).ok());
  ASSERT_TRUE(server->Start().ok());
  // The old connection is gone; the next call reconnects (at most one
  // call may observe the shutdown).
  absl::Status status = stub.Echo(EchoRequest(), CallOptions::WithTimeout(kWatchdog)).status();
  if (!status.ok()) status = stub.Echo(EchoRequest(), CallOptions::WithTimeout(kWatchdog)).status();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ((*channel)->transport_name(), "shm");
}

}  // namespace
}  // namespace locus::conformance
