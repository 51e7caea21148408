// A backend of the balanced-channel tests in a process of its own, for tests
// that kill a server or need one that is not in the test's process.
// Usage: [LOCUS_BALANCE_LOG=<file>] locus_balance_backend <name> <address>...
// Prints "listening <bound address>" per address, then "ready", on stdout
// (tests/testing/test_util.h: ChildProcess), and serves until killed.
#include <fcntl.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "balance_services.h"
#include "locus/server.h"
#include "tests/testing/die_with_parent.h"

int main(int argc, char** argv) {
  locus::testing::DieWithParent();
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <name> <address>...\n", argv[0]);
    return 2;
  }
  locus::callmodel::BackendImpl backend(argv[1]);
  // LOCUS_BALANCE_LOG: a file where Who logs the requests it runs.
  if (const char* log = std::getenv("LOCUS_BALANCE_LOG")) {
    const int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
      std::fprintf(stderr, "cannot open %s\n", log);
      return 1;
    }
    backend.set_log(fd);
  }
  locus::ServerOptions options;
  options.handler_threads = 4;
  options.bootstrap = std::make_shared<locus::callmodel::CounterImpl>(argv[1]);
  locus::Server server(options);
  absl::Status status = server.RegisterService(&backend);
  for (int i = 2; i < argc && status.ok(); ++i) status = server.AddListeningAddress(argv[i]);
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
