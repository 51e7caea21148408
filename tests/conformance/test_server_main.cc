// A conformance test server in its own process, for tests that kill the
// server mid-call. Usage: locus_test_server <address>
// Prints "listening <address>" on stdout once ready, then serves until killed.
#include <cstdio>

#include "locus/server.h"
#include "test_service.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <address>\n", argv[0]);
    return 2;
  }
  locus::conformance::TestServiceImpl service;
  locus::ServerOptions options;
  options.handler_threads = 4;
  locus::Server server(options);
  absl::Status status = server.RegisterService(&service);
  if (status.ok()) status = server.AddListeningAddress(argv[1]);
  if (status.ok()) status = server.Start();
  if (!status.ok()) {
    std::fprintf(stderr, "cannot start: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("listening %s\n", server.listening_addresses()[0].c_str());
  std::fflush(stdout);
  server.Wait();
  return 0;
}
