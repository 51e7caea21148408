// echo_client: calls the Echo service (echo.proto).
//
//   echo_client <address> [message] [--count N]
//   echo_client unix:/tmp/echo.sock "hello" --count 1000
//
// Makes one synchronous Say call, one asynchronous Shout call (through a
// locus::Future), then N timed Say calls, and prints the replies, the
// transport the channel is on and the average round-trip time. Exits non-zero
// with a message on stderr if anything fails.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "echo.locus.h"
#include "locus/locus.h"

namespace {

namespace echo = ::locus::samples::echo;

int Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s <address> [message] [--count N]\n"
               "  address: unix:/path/to.sock  unix-abstract:name  tcp://host:port\n"
               "  --count N: number of timed calls for the average round trip (default 100)\n",
               argv0);
  return 2;
}

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "echo_client: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string address;
  std::string message = "hello from echo_client";
  bool have_message = false;
  int count = 100;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") return Usage(argv[0]);
    if (arg == "--count" || arg.rfind("--count=", 0) == 0) {
      std::string value;
      if (arg == "--count") {
        if (i + 1 >= argc) return Usage(argv[0]);
        value = argv[++i];
      } else {
        value = arg.substr(8);
      }
      if (!absl::SimpleAtoi(value, &count) || count < 1) {
        std::fprintf(stderr, "echo_client: --count needs a positive number, not \"%s\"\n",
                     value.c_str());
        return 2;
      }
    } else if (address.empty()) {
      address = arg;
    } else if (!have_message) {
      message = arg;
      have_message = true;
    } else {
      return Usage(argv[0]);
    }
  }
  if (address.empty()) return Usage(argv[0]);

  locus::ChannelOptions channel_options;
  channel_options.connect_timeout = absl::Seconds(5);
  absl::StatusOr<std::shared_ptr<locus::Channel>> channel =
      locus::Connect(address, channel_options);
  if (!channel.ok()) return Fail("cannot connect to " + address, channel.status());
  echo::Echo::Stub stub(*channel);
  std::printf("connected to %s over %s\n", (*channel)->target().c_str(),
              (*channel)->transport_name().c_str());

  echo::SayRequest request;
  request.set_text(message);

  // Synchronous: blocks until the reply arrives.
  absl::StatusOr<echo::SayReply> reply = stub.Say(request);
  if (!reply.ok()) return Fail("Say failed", reply.status());
  std::printf("Say   -> \"%s\" (server saw transport %s)\n", reply->text().c_str(),
              reply->transport().c_str());

  // Asynchronous: the call proceeds while this thread could do other work.
  locus::Future<echo::SayReply> pending = stub.AsyncShout(request);
  absl::StatusOr<echo::SayReply> shouted = pending.Get();
  if (!shouted.ok()) return Fail("Shout failed", shouted.status());
  std::printf("Shout -> \"%s\" (async, via Future)\n", shouted->text().c_str());

  // Round-trip time: N synchronous calls, one after the other.
  echo::SayReply timed;
  absl::Time start = absl::Now();
  for (int i = 0; i < count; ++i) {
    absl::Status status = stub.Say(request, &timed);
    if (!status.ok()) return Fail("Say #" + std::to_string(i + 1) + " failed", status);
  }
  absl::Duration average = (absl::Now() - start) / count;
  std::printf("%d calls over %s: average round trip %.1f us\n", count,
              (*channel)->transport_name().c_str(), absl::ToDoubleMicroseconds(average));
  return 0;
}
