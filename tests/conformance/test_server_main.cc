// A conformance test server in its own process, for tests that need a real
// second process (killing the server mid-call, transport selection).
// Usage: locus_test_server <address>...
// Prints "listening <bound address>" per address, then "ready", on stdout.
#include <cstdio>

#include "locus/server.h"
#include "test_service.h"
#include "tests/testing/die_with_parent.h"

int main(int argc, char** argv) {
  locus::testing::DieWithParent();
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <address>...\n", argv[0]);
    return 2;
  }
  locus::conformance::TestServiceImpl service;
  locus::ServerOptions options;
  options.handler_threads = 4;
  locus::Server server(options);
  absl::Status status = server.RegisterService(&service);
  for (int i = 1; i < argc && status.ok(); ++i) status = server.AddListeningAddress(argv[i]);
  if (status.ok()) status = server.Start();
  if (!status.ok()) {
    std::fprintf(stderr, "cannot start: %s\n", status.ToString().c_str());
    return 1;
  }
  for (const std::string& address : server.listening_addresses()) {
    std::printf("listening %s\n", address.c_str());
  }
  std::printf("ready\n");
  std::fflush(stdout);
  server.Wait();
  return 0;
}
