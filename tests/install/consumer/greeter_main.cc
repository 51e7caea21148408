// Starts a locus::Server on a Unix socket in a fresh temporary directory,
// calls it through the generated stub, prints the reply. Exit code 0 only if
// the round trip worked. Also compiles the typed accessors of an object
// reference against the installed locus/rmi.proto and locus/object.h.
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <type_traits>

#include "greeter.locus.h"
#include "locus/locus.h"

namespace {

static_assert(std::is_same_v<decltype(&consumer::ReferralRefs::greeter),
                             absl::StatusOr<locus::Remote<consumer::Greeter>> (*)(
                                 const consumer::Referral&, const locus::ChannelOptions&)>);

class GreeterImpl final : public consumer::Greeter::Service {
 public:
  absl::Status SayHello(locus::ServerContext* context, const consumer::HelloRequest* request,
                        consumer::HelloReply* reply) override {
    reply->set_message("Hello, " + request->name() + "! (via " + context->peer().transport + ")");
    return absl::OkStatus();
  }
};

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "greeter: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main() {
  char dir_template[] = "/tmp/lcsXXXXXX";  // short: sun_path is ~108 bytes
  if (mkdtemp(dir_template) == nullptr) {
    std::perror("greeter: mkdtemp");
    return 1;
  }
  const std::string dir = dir_template;
  const std::string address = "unix:" + dir + "/g.sock";
  int rc = 1;
  {
    GreeterImpl service;
    locus::Server server;
    absl::Status status = server.RegisterService(&service);
    if (status.ok()) status = server.AddListeningAddress(address);
    if (status.ok()) status = server.Start();
    if (!status.ok()) {
      rc = Fail("cannot start server", status);
    } else {
      std::printf("listening on %s\n", server.listening_addresses()[0].c_str());
      absl::StatusOr<std::shared_ptr<locus::Channel>> channel = locus::Connect(address);
      if (!channel.ok()) {
        rc = Fail("cannot connect", channel.status());
      } else {
        consumer::Greeter::Stub stub(*channel);
        consumer::HelloRequest request;
        request.set_name("installed Locus");
        absl::StatusOr<consumer::HelloReply> reply = stub.SayHello(request);
        if (!reply.ok()) {
          rc = Fail("SayHello failed", reply.status());
        } else if (reply->message() != "Hello, installed Locus! (via inproc)") {
          std::fprintf(stderr, "greeter: unexpected reply \"%s\"\n", reply->message().c_str());
        } else {
          std::printf("reply: %s\n", reply->message().c_str());
          rc = 0;
        }
      }
      server.Shutdown(absl::Now() + absl::Seconds(2));
      server.Wait();
    }
  }
  unlink((dir + "/g.sock").c_str());
  rmdir(dir.c_str());
  return rc;
}
