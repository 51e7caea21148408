// gRPC C++ baseline (Debian's libgrpc++): the same echo service.
//   variant "sync":     sync server (gRPC's thread pool) + sync stub calls
//   variant "callback": callback server + callback client API, N in flight
//   --mode=streaming:   sync server; one bidirectional stream (sync API),
//                       N messages in flight
// Over a Unix socket ("unix:/path") or TCP loopback ("127.0.0.1:port").
// Built only when find_package(gRPC) succeeds (LOCUS_BENCH_HAVE_GRPC).
#include <cstdio>
#include <memory>

#include "harness/systems.h"

#ifdef LOCUS_BENCH_HAVE_GRPC
#include <grpcpp/grpcpp.h>

#include "grpc_bench.grpc.pb.h"
#endif

namespace locus_bench {

#ifdef LOCUS_BENCH_HAVE_GRPC
namespace {

using locus::bench::grpcbase::EchoMsg;
using locus::bench::grpcbase::GrpcBench;

class SyncService final : public GrpcBench::Service {
  grpc::Status Echo(grpc::ServerContext*, const EchoMsg* request, EchoMsg* reply) override {
    reply->set_data(request->data());
    return grpc::Status::OK;
  }
  grpc::Status Chat(grpc::ServerContext*, grpc::ServerReaderWriter<EchoMsg, EchoMsg>* stream) override {
    EchoMsg message;
    while (stream->Read(&message) && stream->Write(message)) {
    }
    return grpc::Status::OK;
  }
};

class CallbackService final : public GrpcBench::CallbackService {
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context, const EchoMsg* request,
                                 EchoMsg* reply) override {
    reply->set_data(request->data());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// Locus-style address -> gRPC target / listening address.
std::string GrpcAddress(const std::string& address) {
  if (address.rfind("tcp://", 0) == 0) return address.substr(6);
  return address;  // "unix:/path" is a gRPC address too
}

int GrpcServe(const Flags& flags) {
  static SyncService sync_service;
  static CallbackService callback_service;
  std::string address = flags.at("address");
  bool callback = flags.count("variant") && flags.at("variant") == "callback";
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(GrpcAddress(address), grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  if (callback) {
    builder.RegisterService(&callback_service);
  } else {
    builder.RegisterService(&sync_service);
  }
  static std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    fprintf(stderr, "grpc server: cannot listen on %s\n", address.c_str());
    return 1;
  }
  if (address.rfind("tcp://", 0) == 0) {
    address = "tcp://127.0.0.1:" + std::to_string(port);
  }
  ServeControlLoop(address);
}

RunResult Fail(std::string error) {
  RunResult r;
  r.error = std::move(error);
  return r;
}

RunResult GrpcClient(const CaseSpec& spec, const std::string& address, WindowHooks& hooks) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(GrpcAddress(address), grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    return Fail("grpc: cannot connect to " + address);
  }
  auto stub = GrpcBench::NewStub(channel);
  EchoMsg request;
  request.set_data(std::string(spec.size, 'x'));
  RunResult r;
  if (spec.streaming) {
    if (spec.variant != "sync") return Fail("grpc streaming baseline uses the sync API");
    grpc::ClientContext context;
    auto chat = stub->Chat(&context);
    EchoMsg reply;
    // 64 KiB: HTTP/2's initial stream window (gRPC grows it by BDP probing).
    r = RunStreamingCase(
        spec, hooks, 64u << 10, [&] { return chat->Write(request); }, [&] { return chat->Read(&reply); },
        [&] { chat->WritesDone(); });
    grpc::Status status = chat->Finish();
    if (r.error.empty() && !status.ok()) r.error = "stream: " + status.error_message();
  } else if (spec.variant == "sync") {
    if (spec.outstanding != 1) return Fail("grpc sync baseline is outstanding=1 only; use callback");
    EchoMsg reply;
    r = RunSyncLoop(spec, hooks, [&](std::string* err) {
      grpc::ClientContext context;
      grpc::Status status = stub->Echo(&context, request, &reply);
      if (!status.ok()) {
        *err = status.error_message();
        return false;
      }
      return true;
    });
  } else {
    struct Slot {
      std::unique_ptr<grpc::ClientContext> context;
      EchoMsg reply;
    };
    std::vector<Slot> slots(spec.outstanding);
    AsyncDriver* driver_ptr = nullptr;
    AsyncDriver driver(spec, [&](int slot) {
      Slot& s = slots[slot];
      s.context = std::make_unique<grpc::ClientContext>();
      stub->async()->Echo(s.context.get(), &request, &s.reply, [&, slot](grpc::Status status) {
        driver_ptr->Complete(slot, status.ok(), status.error_message());
      });
    });
    driver_ptr = &driver;
    r = driver.Run(hooks);
  }
  r.transport = spec.transport;
  return r;
}

}  // namespace

System GrpcSystem(std::string* note) {
  System s;
  s.name = "grpc";
  s.transports = {"unix", "tcp"};
  s.serve = GrpcServe;
  s.run_client = GrpcClient;
  return s;
}

#else  // !LOCUS_BENCH_HAVE_GRPC

System GrpcSystem(std::string* note) {
  *note = "gRPC C++ was not found when locus-bench was built: gRPC cases skipped "
          "(install libgrpc++-dev protobuf-compiler-grpc and reconfigure)";
  System s;
  s.name = "grpc";
  return s;
}

#endif

}  // namespace locus_bench
