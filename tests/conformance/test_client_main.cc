// A conformance test client in its own process, for tests that kill a client
// mid-call and look at what the server sees.
// Usage: locus_test_client <address> <transport> <spin: 0|1> <call: chat|wait>
// Connects to <address> ending on <transport> only (no polling with spin 0)
// and starts the call:
//   chat  a TestService.Chat stream: one round trip, then "ready" on stdout,
//         then it waits (the stream stays open) until killed;
//   wait  a TestService.WaitForCancel unary call of an hour: "ready" just
//         before the call, which lasts until the process is killed.
// Exits 1 (with a message on stderr) if it cannot get that far.
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "conformance.locus.h"
#include "locus/locus.h"
#include "tests/testing/die_with_parent.h"

int main(int argc, char** argv) {
  locus::testing::DieWithParent();
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <address> <transport> <spin: 0|1> <call: chat|wait>\n", argv[0]);
    return 2;
  }
  const std::string call = argv[4];
  locus::ChannelOptions options;
  options.allowed_transports = argv[2];
  if (std::strcmp(argv[3], "0") == 0) {
    options.socket_spin = absl::ZeroDuration();
    options.shm_spin = absl::ZeroDuration();
  }
  auto channel = locus::Connect(argv[1], options);
  if (!channel.ok()) {
    std::fprintf(stderr, "cannot connect: %s\n", channel.status().ToString().c_str());
    return 1;
  }
  locus::conformance::TestService::Stub stub(*channel);
  const locus::CallOptions hour = locus::CallOptions::WithTimeout(absl::Hours(1));
  if (call == "chat") {
    locus::ClientReaderWriter<locus::conformance::EchoRequest, locus::conformance::EchoReply> chat =
        stub.Chat(hour);
    locus::conformance::EchoRequest request;
    request.set_data("hello");
    locus::conformance::EchoReply reply;
    if (!chat.Write(request) || !chat.Read(&reply)) {
      std::fprintf(stderr, "chat failed: %s\n", chat.Finish().ToString().c_str());
      return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    absl::Notification never;
    never.WaitForNotification();
  } else if (call == "wait") {
    locus::conformance::WaitRequest request;
    request.set_max_wait_ms(3600 * 1000);
    std::printf("ready\n");
    std::fflush(stdout);
    absl::StatusOr<locus::conformance::WaitReply> reply = stub.WaitForCancel(request, hour);
    std::fprintf(stderr, "the call ended: %s\n", reply.status().ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "unknown call %s\n", call.c_str());
  return 2;
}
