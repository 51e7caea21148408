// The other process of the RMI tests: serves Kv and Files, and offers a
// Pinger as its bootstrap object.
// Usage: locus_rmi_peer <address>...
// Prints "listening <bound address>" per address, then "ready", on stdout.
#include <cstdio>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "locus/server.h"
#include "rmi_services.h"
#include "tests/testing/die_with_parent.h"

namespace {

absl::Mutex mu;
std::unique_ptr<locus::Server> server ABSL_GUARDED_BY(mu);

absl::Status Serve(const std::vector<std::string>& addresses, rmitest::KvImpl* kv,
                   rmitest::FilesImpl* files, std::shared_ptr<rmitest::PingerImpl> pinger)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
  locus::ServerOptions options;
  options.handler_threads = 4;
  options.bootstrap = std::move(pinger);
  server = std::make_unique<locus::Server>(options);
  absl::Status status = server->RegisterService(kv);
  if (status.ok()) status = server->RegisterService(files);
  for (const std::string& address : addresses) {
    if (status.ok()) status = server->AddListeningAddress(address);
  }
  if (status.ok()) status = server->Start();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  locus::testing::DieWithParent();
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <address>...\n", argv[0]);
    return 2;
  }
  rmitest::KvImpl kv;
  rmitest::FilesImpl files;
  auto pinger = std::make_shared<rmitest::PingerImpl>();
  absl::StatusOr<locus::Exported> self = locus::Export(pinger);
  if (!self.ok()) return 1;
  pinger->set_self(*std::move(self));
  std::vector<std::string> addresses(argv + 1, argv + argc);
  // Set before the server starts: its handlers read it.
  kv.set_restart([&] {
    // After the reply has left: shut down (connections break, objects
    // stay exported) and listen again on the same addresses.
    std::thread([&] {
      absl::SleepFor(absl::Milliseconds(50));
      absl::MutexLock lock(&mu);
      server->Shutdown();
      absl::Status status = Serve(addresses, &kv, &files, pinger);
      if (!status.ok()) std::fprintf(stderr, "cannot restart: %s\n", status.ToString().c_str());
    }).detach();
  });
  {
    absl::MutexLock lock(&mu);
    absl::Status status = Serve(addresses, &kv, &files, pinger);
    if (!status.ok()) {
      std::fprintf(stderr, "cannot start: %s\n", status.ToString().c_str());
      return 1;
    }
    addresses = server->listening_addresses();
  }
  for (const std::string& address : addresses) std::printf("listening %s\n", address.c_str());
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) absl::SleepFor(absl::Hours(1));
}
