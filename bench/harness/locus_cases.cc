// Locus cases: a locus::Server with the bench service (handlers inline, the
// default) in the server process; a generated stub in the client, sync calls
// for outstanding=1 and the callback API for outstanding=N.
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "harness/systems.h"
#include "locus/locus.h"
#include "locus_bench.locus.h"

namespace locus_bench {

const std::vector<LocusTransportInfo>& LocusTransports() {
  // To add a transport: mark it available here, teach main.cc's
  // DefaultAddress() its address form. "inproc" additionally needs the server
  // in the client's own process (see README.md).
  static const std::vector<LocusTransportInfo> kTransports = {
      {"unix", true, ""},
      {"tcp", true, ""},
      {"auto", true, ""},  // needs --address; reports what the channel picked
      {"inproc", false, "the in-process transport is not available yet in Locus"},
      {"shm", false, "the shared-memory transport is not available yet in Locus"},
      {"udp", false, "the UDP transport is not available yet in Locus"},
  };
  return kTransports;
}

namespace {

class BenchService final : public locus::bench::Bench::Service {
 public:
  absl::Status Echo(locus::ServerContext*, const locus::bench::EchoMsg* request,
                    locus::bench::EchoMsg* reply) override {
    reply->set_data(request->data());
    return absl::OkStatus();
  }
};

int LocusServe(const Flags& flags) {
  static BenchService service;
  static locus::Server server;  // handler_threads = 0: inline
  absl::Status status = server.RegisterService(&service);
  if (status.ok()) status = server.AddListeningAddress(flags.at("address"));
  if (status.ok()) status = server.Start();
  if (!status.ok()) {
    fprintf(stderr, "locus server: %s\n", status.ToString().c_str());
    return 1;
  }
  ServeControlLoop(server.listening_addresses().at(0));
}

RunResult Fail(std::string error) {
  RunResult r;
  r.error = std::move(error);
  return r;
}

RunResult LocusClient(const CaseSpec& spec, const std::string& address, WindowHooks& hooks) {
  auto channel = locus::Connect(address);
  if (!channel.ok()) return Fail("connect " + address + ": " + channel.status().ToString());
  locus::bench::Bench::Stub stub(*channel);
  locus::bench::EchoMsg request;
  request.set_data(std::string(spec.size, 'x'));
  locus::CallOptions options;  // no deadline: the watchdog bounds a hung case
  RunResult r;
  if (spec.outstanding == 1) {
    locus::bench::EchoMsg reply;
    r = RunSyncLoop(spec, hooks, [&](std::string* err) {
      absl::Status status = stub.Echo(request, &reply, options);
      if (!status.ok()) {
        *err = status.ToString();
        return false;
      }
      return true;
    });
  } else {
    std::vector<locus::bench::EchoMsg> replies(spec.outstanding);
    AsyncDriver* driver_ptr = nullptr;
    AsyncDriver driver(spec, [&](int slot) {
      stub.AsyncEcho(request, &replies[slot], options, [&, slot](absl::Status status) {
        driver_ptr->Complete(slot, status.ok(), status.ok() ? "" : status.ToString());
      });
    });
    driver_ptr = &driver;
    r = driver.Run(hooks);
  }
  r.transport = (*channel)->transport_name();
  return r;
}

}  // namespace

System LocusSystem() {
  System s;
  s.name = "locus";
  for (const auto& t : LocusTransports()) {
    if (t.available) s.transports.push_back(t.name);
  }
  s.serve = LocusServe;
  s.run_client = LocusClient;
  return s;
}

}  // namespace locus_bench
