// A hop of propagation_test: serves Probe (probe_service.h) with a handler
// pool (so that a client's CANCEL reaches a waiting handler) and tracing
// interceptors on the server and on its channels to the next hops.
// Usage: locus_callmodel_peer <address>...
// Prints "listening <bound address>" per address, then "ready", on stdout.
#include <cstdio>
#include <memory>

#include "absl/time/clock.h"
#include "locus/server.h"
#include "probe_service.h"
#include "tests/testing/die_with_parent.h"
#include "tracing_interceptor.h"

int main(int argc, char** argv) {
  locus::testing::DieWithParent();
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <address>...\n", argv[0]);
    return 2;
  }
  auto spans = std::make_shared<locus_samples::SpanRecorder>();
  locus::callmodel::ProbeImpl probe;
  probe.set_client_interceptors({std::make_shared<locus_samples::TracingClientInterceptorFactory>(spans)});
  locus::ServerOptions options;
  options.handler_threads = 4;
  options.interceptors = {std::make_shared<locus_samples::TracingServerInterceptorFactory>(spans)};
  locus::Server server(options);
  absl::Status status = server.RegisterService(&probe);
  for (int i = 1; i < argc && status.ok(); ++i) status = server.AddListeningAddress(argv[i]);
  if (status.ok()) status = server.Start();
  if (!status.ok()) {
    std::fprintf(stderr, "cannot start: %s\n", status.ToString().c_str());
    return 1;
  }
  for (const std::string& address : server.listening_addresses()) std::printf("listening %s\n", address.c_str());
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) absl::SleepFor(absl::Hours(1));
}
