// Locus cases: a locus::Server with the bench service (handlers inline, the
// default) in the server process; a generated stub in the client, sync calls
// for outstanding=1 and the callback API for outstanding=N.
//
// Every case but "auto" pins the channel to the transport under test with
// ChannelOptions::allowed_transports, since a channel otherwise moves to the
// closest transport the server offers (a tcp:// or unix: channel to a server
// on this host would end on shm):
//   unix    server on unix:/tmp/...sock, client allowed "unix"
//   tcp     server on tcp://127.0.0.1:0, client allowed "tcp"
//   udp     server on udp://127.0.0.1:0, client allowed "udp" (unary only)
//   shm     server on unix:/tmp/...sock, client connects shm:<same path>,
//           allowed "shm" (the Unix listener accepts shm clients)
//   inproc  server started in the harness process on a Unix socket, client
//           allowed "inproc": in-process calls, no sockets or serialization
//   auto    server on --address, client with the default policy; reports
//           where the channel ended
//
// Remote-object variants (unix, tcp, shm), on a server that also offers
// BenchObjects (locus_bench_rmi.proto) as its bootstrap object:
//   ref           Echo on an object a call returned (BenchObjects.Open gives
//                 a Remote<Bench>), set up before the timed window: the same
//                 call as the plain case's, on a received reference
//   callback_ref  BenchObjects.CallBack with a reference to the client's own
//                 Bench object in every request; the handler calls it (Echo)
//                 once and returns its reply: a call plus a callback round
//                 trip over the same connection
// Calls on exported objects run on the runtime's object pool (locus/object.h)
// where the plain case's handler runs inline on the I/O thread.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>

#include "harness/systems.h"
#include "locus/locus.h"
#include "locus/object.h"
#include "locus_bench.locus.h"
#include "locus_bench_rmi.locus.h"

namespace locus_bench {

const std::vector<LocusTransportInfo>& LocusTransports() {
  // To add a transport: mark it available here, teach main.cc's
  // DefaultAddress() its address form. "inproc" additionally needs the server
  // in the client's own process (see README.md).
  static const std::vector<LocusTransportInfo> kTransports = {
      {"unix", true, ""},
      {"tcp", true, ""},
      {"auto", true, ""},  // needs --address; reports what the channel picked
      {"shm", true, ""},     // server on unix:<path>, client on shm:<path>
      {"inproc", true, ""},  // server in the harness process (in-process calls)
      {"udp", true, ""},     // datagrams: unary calls only
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
  absl::Status Chat(locus::ServerContext*,
                    locus::ServerReaderWriter<locus::bench::EchoMsg, locus::bench::EchoMsg>* stream) override {
    locus::bench::EchoMsg message;
    while (stream->Read(&message) && stream->Write(message)) {
    }
    return absl::OkStatus();
  }
};

// The remote-object variants' bootstrap object (see the top of this file).
class BenchObjectsService final : public locus::bench::BenchObjects::Service {
 public:
  absl::Status Open(locus::ServerContext*, const locus::bench::OpenBenchRequest*,
                    locus::bench::OpenBenchReply* reply) override {
    return locus::bench::OpenBenchReplyRefs::set_bench(reply, std::make_shared<BenchService>());
  }
  absl::Status CallBack(locus::ServerContext*, const locus::bench::CallBackRequest* request,
                        locus::bench::EchoMsg* reply) override {
    absl::StatusOr<locus::Remote<locus::bench::Bench>> callback =
        locus::bench::CallBackRequestRefs::callback(*request);
    if (!callback.ok()) return callback.status();
    locus::bench::EchoMsg message;
    message.set_data(request->data());
    return (*callback)->Echo(message, reply);
  }
};

bool IsRmiVariant(const std::string& variant) {
  return variant == "ref" || variant == "callback_ref";
}

// Sets `*option` to `micros` microseconds unless `micros` is negative (the
// harness's "not given": the library default stays).
void SetMicros(double micros, absl::Duration* option) {
  if (micros >= 0) *option = absl::Nanoseconds(static_cast<int64_t>(micros * 1000));
}

locus::ServerOptions ServerOptionsFrom(const Flags& flags) {
  locus::ServerOptions options;  // handler_threads = 0: inline
  auto variant = flags.find("variant");
  if (variant != flags.end() && IsRmiVariant(variant->second)) {
    options.bootstrap = std::make_shared<BenchObjectsService>();
    // Its handler calls the client back synchronously: not inline on the
    // I/O thread that must read the answer (locus/server.h).
    if (variant->second == "callback_ref") options.handler_threads = 2;
  }
  auto micros = [&flags](const char* name) {
    auto it = flags.find(name);
    return it == flags.end() ? -1.0 : std::stod(it->second);
  };
  SetMicros(micros("shm-spin-us"), &options.shm_spin);
  SetMicros(micros("socket-spin-us"), &options.socket_spin);
  return options;
}

int LocusServe(const Flags& flags) {
  static BenchService service;
  static locus::Server server(ServerOptionsFrom(flags));
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

// The address the client dials for `spec`, given where the server listens.
std::string ClientAddress(const CaseSpec& spec, const std::string& server_address) {
  if (spec.transport == "shm" && server_address.rfind("unix:", 0) == 0) {
    return "shm:" + server_address.substr(5);
  }
  return server_address;
}

RunResult LocusClient(const CaseSpec& spec, const std::string& server_address, WindowHooks& hooks) {
  std::string address = ClientAddress(spec, server_address);
  locus::ChannelOptions channel_options;
  // Exactly the transport under test; "auto" keeps the default policy
  // (which $LOCUS_TRANSPORTS may still restrict).
  if (spec.transport != "auto") channel_options.allowed_transports = spec.transport;
  if (spec.shm_ring_bytes > 0) channel_options.shm_ring_bytes = spec.shm_ring_bytes;
  if (spec.shm_bulk_bytes >= 0) channel_options.shm_bulk_bytes = spec.shm_bulk_bytes;
  SetMicros(spec.shm_spin_us, &channel_options.shm_spin);
  SetMicros(spec.socket_spin_us, &channel_options.socket_spin);
  auto channel = locus::Connect(address, channel_options);
  if (!channel.ok()) return Fail("connect " + address + ": " + channel.status().ToString());
  locus::CallOptions options;  // no deadline: the watchdog bounds a hung case
  locus::bench::EchoMsg request;
  request.set_data(std::string(spec.size, 'x'));

  // The stub the Echo calls go through: the root service's (plain), or that
  // of an object BenchObjects.Open returned (ref).
  locus::bench::Bench::Stub root_stub(*channel);
  locus::bench::Bench::Stub* stub = &root_stub;
  std::optional<locus::Remote<locus::bench::BenchObjects>> objects;
  std::optional<locus::Remote<locus::bench::Bench>> remote;
  // callback_ref: the client's object, exported for the whole case; every
  // request carries a reference to it.
  std::optional<locus::Exported> callback;
  locus::bench::CallBackRequest callback_request;
  if (IsRmiVariant(spec.variant)) {
    if (spec.streaming) return Fail("variant " + spec.variant + " has no streaming case");
    auto bootstrap = locus::Remote<locus::bench::BenchObjects>::Bootstrap(*channel);
    if (!bootstrap.ok()) return Fail("bootstrap: " + bootstrap.status().ToString());
    objects = *std::move(bootstrap);
  }
  if (spec.variant == "ref") {
    auto opened = (*objects)->Open(locus::bench::OpenBenchRequest(), options);
    if (!opened.ok()) return Fail("BenchObjects.Open: " + opened.status().ToString());
    auto bench = locus::bench::OpenBenchReplyRefs::bench(*opened);
    if (!bench.ok()) return Fail("OpenBenchReply.bench: " + bench.status().ToString());
    remote = *std::move(bench);
    stub = &remote->stub();
  } else if (spec.variant == "callback_ref") {
    auto exported = locus::Export(std::make_shared<BenchService>());
    if (!exported.ok()) return Fail("export the callback: " + exported.status().ToString());
    callback = *std::move(exported);
    *callback_request.mutable_callback() = callback->ref();
    callback_request.set_data(request.data());
  }
  const bool calls_back = spec.variant == "callback_ref";

  RunResult r;
  if (spec.streaming) {
    auto chat = stub->Chat(options);
    locus::bench::EchoMsg reply;
    r = RunStreamingCase(
        spec, hooks, channel_options.stream_window_bytes, [&] { return chat.Write(request); }, [&] { return chat.Read(&reply); },
        [&] { chat.WritesDone(); });
    absl::Status status = chat.Finish();
    if (r.error.empty() && !status.ok()) r.error = "stream: " + status.ToString();
  } else if (spec.outstanding == 1) {
    locus::bench::EchoMsg reply;
    r = RunSyncLoop(spec, hooks, [&](std::string* err) {
      absl::Status status = calls_back ? (*objects)->CallBack(callback_request, &reply, options)
                                       : stub->Echo(request, &reply, options);
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
      auto done = [&, slot](absl::Status status) {
        driver_ptr->Complete(slot, status.ok(), status.ok() ? "" : status.ToString());
      };
      if (calls_back) {
        (*objects)->AsyncCallBack(callback_request, &replies[slot], options, std::move(done));
      } else {
        stub->AsyncEcho(request, &replies[slot], options, std::move(done));
      }
    });
    driver_ptr = &driver;
    r = driver.Run(hooks);
  }
  // Where the calls went: the reference's channel for ref (a received
  // reference goes back over the connection it came on).
  r.transport = remote.has_value() ? remote->channel()->transport_name() : (*channel)->transport_name();
  return r;
}

// "inproc": a locus::Server on a Unix socket in this process, and a channel
// to it that may only end on in-process calls.
RunResult LocusInProcess(const CaseSpec& spec, WindowHooks& hooks) {
  static std::atomic<int> seq{0};
  BenchService service;
  locus::Server server;  // handler_threads = 0: the handler runs on the caller
  const std::string path = "/tmp/locus-bench-inproc-" + std::to_string(getpid()) + "-" +
                           std::to_string(seq.fetch_add(1)) + ".sock";
  unlink(path.c_str());  // stale: see DefaultAddress in main.cc
  std::string address = "unix:" + path;
  absl::Status status = server.RegisterService(&service);
  if (status.ok()) status = server.AddListeningAddress(address);
  if (status.ok()) status = server.Start();
  if (!status.ok()) return Fail("in-process locus server: " + status.ToString());
  RunResult r = LocusClient(spec, server.listening_addresses().at(0), hooks);
  server.Shutdown(absl::Now() + absl::Seconds(5));
  server.Wait();
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
  s.run_in_process = LocusInProcess;
  return s;
}

}  // namespace locus_bench
