// echo_server: serves the Echo service (echo.proto) on every address given.
//
//   echo_server unix:/tmp/echo.sock tcp://127.0.0.1:7070
//   echo_server tcp://127.0.0.1:0          # any free port; the real one is printed
//
// Prints "listening on <address>" per address once ready, then one line per
// call served. Stops cleanly on SIGINT (Ctrl-C) or SIGTERM.
#include <signal.h>

#include <cctype>
#include <cstdio>
#include <string>

#include "echo.locus.h"
#include "locus/locus.h"

namespace {

namespace echo = ::locus::samples::echo;

class EchoImpl final : public echo::Echo::Service {
 public:
  absl::Status Say(locus::ServerContext* context, const echo::SayRequest* request,
                   echo::SayReply* reply) override {
    Log(context, "Say", request->text());
    reply->set_text(request->text());
    reply->set_transport(context->peer().transport);
    return absl::OkStatus();
  }

  absl::Status Shout(locus::ServerContext* context, const echo::SayRequest* request,
                     echo::SayReply* reply) override {
    Log(context, "Shout", request->text());
    std::string text = request->text();
    for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    reply->set_text(text);
    reply->set_transport(context->peer().transport);
    return absl::OkStatus();
  }

 private:
  // Handlers may run on several threads at once; one printf per line keeps
  // lines whole.
  static void Log(locus::ServerContext* context, const char* method, const std::string& text) {
    const locus::PeerInfo& peer = context->peer();
    std::printf("%s over %s from %s: \"%s\"\n", method, peer.transport.c_str(),
                peer.remote_address.empty() ? "?" : peer.remote_address.c_str(), text.c_str());
    std::fflush(stdout);
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::fprintf(stderr,
                 "usage: %s <address>...\n"
                 "  addresses: unix:/path/to.sock  unix-abstract:name  tcp://host:port\n"
                 "  example:   %s unix:/tmp/echo.sock tcp://127.0.0.1:7070\n",
                 argv[0], argv[0]);
    return 2;
  }

  // Block SIGINT/SIGTERM before any thread exists, so every thread the
  // server starts inherits the mask and the main thread alone receives them
  // through sigwait() below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  EchoImpl service;
  locus::Server server;
  absl::Status status = server.RegisterService(&service);
  for (int i = 1; status.ok() && i < argc; ++i) status = server.AddListeningAddress(argv[i]);
  if (status.ok()) status = server.Start();
  if (!status.ok()) {
    std::fprintf(stderr, "echo_server: cannot start: %s\n", status.ToString().c_str());
    return 1;
  }
  for (const std::string& address : server.listening_addresses()) {
    std::printf("listening on %s\n", address.c_str());
  }
  std::printf("ready (Ctrl-C to stop)\n");
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::printf("got %s, shutting down\n", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  std::fflush(stdout);
  // Let calls in progress finish for up to a second.
  server.Shutdown(absl::Now() + absl::Seconds(1));
  server.Wait();
  std::printf("stopped\n");
  return 0;
}
