// The example of README.md ("A short example"), as a program that runs it:
// the README's C++ block is the part between the [START readme] and
// [END readme] lines, and echo.proto is its proto block, verbatim
// (check_readme.sh, CTest sample.readme_snippets, compares them). Built with
// -Werror -Wall -Wextra and unused results as errors; CTest
// sample.readme_example runs it.
//
//   readme_example [address]     default: a Unix socket in a fresh temp dir
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "echo.locus.h"
#include "locus/locus.h"

namespace {

// [START readme]
// Server
class EchoImpl final : public demo::Echo::Service {
 public:
  absl::Status Say(locus::ServerContext* /*context*/, const demo::SayRequest* request,
                   demo::SayReply* reply) override {
    reply->set_text(request->text());
    return absl::OkStatus();
  }
};

absl::Status RunEcho(const std::string& address) {  // e.g. "tcp://0.0.0.0:7000"
  EchoImpl service;
  locus::Server server;
  if (absl::Status s = server.RegisterService(&service); !s.ok()) return s;
  if (absl::Status s = server.AddListeningAddress(address); !s.ok()) return s;
  if (absl::Status s = server.Start(); !s.ok()) return s;  // Status results are [[nodiscard]]

  // Client (here in the same process, so it ends on direct in-process calls;
  // on the same host it would use shared memory, elsewhere TCP)
  absl::StatusOr<std::shared_ptr<locus::Channel>> channel =
      locus::Connect(server.listening_addresses()[0]);
  if (!channel.ok()) return channel.status();
  demo::Echo::Stub stub(*channel);
  demo::SayRequest request;
  request.set_text("hello");
  absl::StatusOr<demo::SayReply> reply =
      stub.Say(request, locus::CallOptions::WithTimeout(absl::Seconds(1)));
  if (!reply.ok()) return reply.status();
  locus::Future<demo::SayReply> later = stub.AsyncSay(request);  // or Then(), or a callback
  absl::StatusOr<demo::SayReply> again = later.Get();
  if (!again.ok()) return again.status();

  // Shutdown: refuse new calls, let calls in progress finish for up to 5 s,
  // then close every connection. A thread blocked in server.Wait() returns.
  server.Shutdown(absl::Now() + absl::Seconds(5));
  return absl::OkStatus();
}
// [END readme]

}  // namespace

int main(int argc, char** argv) {
  std::string address;
  std::string dir;
  if (argc > 1) {
    address = argv[1];
  } else {
    char pattern[] = "/tmp/locus-readme-XXXXXX";
    if (mkdtemp(pattern) == nullptr) {
      std::perror("readme_example: mkdtemp");
      return 1;
    }
    dir = pattern;
    address = "unix:" + dir + "/echo.sock";
  }
  absl::Status status = RunEcho(address);
  if (!dir.empty()) {
    unlink((dir + "/echo.sock").c_str());
    rmdir(dir.c_str());
  }
  if (!status.ok()) {
    std::fprintf(stderr, "readme_example: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("readme_example: echoed over %s and shut down\n", address.c_str());
  return 0;
}
