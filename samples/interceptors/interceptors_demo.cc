// The interceptors sample: a server and a client in one process, each with
// a logging and a metrics interceptor (samples/interceptors/*_interceptor.h);
// the server also rejects calls without an "authorization" header before
// their handler runs, and the client adds one. Prints the log lines and
// both sides' metrics, then checks the counts (exit status 0 if they match).
// Usage: interceptors_demo [address]   (default: a Unix socket in /tmp)
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "demo.locus.h"
#include "locus/locus.h"
#include "logging_interceptor.h"
#include "metrics_interceptor.h"

namespace {

using demo::intercept::BadName;
using demo::intercept::Greeter;
using demo::intercept::GreetReply;
using demo::intercept::GreetRequest;

class GreeterImpl final : public Greeter::Service {
 public:
  absl::Status Greet(locus::ServerContext* context, const GreetRequest* request, GreetReply* reply) override {
    if (request->name().empty()) {
      absl::Status status = absl::InvalidArgumentError("no name");
      BadName detail;
      detail.set_reason("the name is empty");
      locus::SetStatusDetail(status, detail);
      return status;
    }
    context->AddInitialMetadata("greeter-version", "1");
    reply->set_text(absl::StrCat("hello, ", request->name()));
    return absl::OkStatus();
  }
  absl::Status GreetMany(locus::ServerContext*, const GreetRequest* request,
                         locus::ServerWriter<GreetReply>* writer) override {
    GreetReply reply;
    for (int i = 0; i < 3; ++i) {
      reply.set_text(absl::StrCat("hello #", i + 1, ", ", request->name()));
      if (!writer->Write(reply)) break;
    }
    return absl::OkStatus();
  }
};

// Server: refuses calls that carry no credentials (a short-circuit).
class RequireAuthorization final : public locus::ServerInterceptor {
 public:
  absl::Status OnStart(locus::ServerCallInfo& call) override {
    if (call.context().client_metadata_value("authorization").empty()) {
      return absl::PermissionDeniedError("no authorization header");
    }
    return absl::OkStatus();
  }
};
class RequireAuthorizationFactory final : public locus::ServerInterceptorFactory {
 public:
  std::unique_ptr<locus::ServerInterceptor> Create(const locus::ServerCallInfo&) override {
    return std::make_unique<RequireAuthorization>();
  }
};

// Client: adds the header.
class AddAuthorization final : public locus::ClientInterceptor {
 public:
  absl::Status OnStart(locus::ClientCallInfo& call) override {
    call.metadata().emplace_back("Authorization", "Bearer demo");  // keys are case-insensitive
    return absl::OkStatus();
  }
};
class AddAuthorizationFactory final : public locus::ClientInterceptorFactory {
 public:
  std::unique_ptr<locus::ClientInterceptor> Create(const locus::ClientCallInfo&) override {
    return std::make_unique<AddAuthorization>();
  }
};

absl::Mutex log_mu;
void Log(const std::string& line) {
  absl::MutexLock lock(&log_mu);
  std::cout << "  " << line << "\n";
}

int64_t Count(const locus_samples::CallMetrics::MethodStats& stats, absl::StatusCode code) {
  auto it = stats.by_code.find(code);
  return it == stats.by_code.end() ? 0 : it->second;
}

bool Check(bool ok, const std::string& what) {
  if (!ok) std::cerr << "MISMATCH: " << what << "\n";
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::string address;
  std::string dir;
  if (argc > 1) {
    address = argv[1];
  } else {
    char pattern[] = "/tmp/locus-demo-XXXXXX";
    dir = mkdtemp(pattern);
    address = "unix:" + dir + "/greeter.sock";
  }
  auto server_metrics = std::make_shared<locus_samples::CallMetrics>();
  auto client_metrics = std::make_shared<locus_samples::CallMetrics>();

  GreeterImpl service;
  locus::ServerOptions server_options;
  server_options.interceptors = {
      std::make_shared<locus_samples::LoggingServerInterceptorFactory>(Log),
      std::make_shared<locus_samples::MetricsServerInterceptorFactory>(server_metrics),
      std::make_shared<RequireAuthorizationFactory>(),
  };
  locus::Server server(server_options);
  absl::Status status = server.RegisterService(&service);
  if (status.ok()) status = server.AddListeningAddress(address);
  if (status.ok()) status = server.Start();
  if (!status.ok()) {
    std::cerr << "server: " << status << "\n";
    return 1;
  }

  locus::ChannelOptions channel_options;
  channel_options.allowed_transports = "-inproc";  // show the wire path (in-process calls are intercepted too)
  channel_options.interceptors = {
      std::make_shared<locus_samples::LoggingClientInterceptorFactory>(Log),
      std::make_shared<locus_samples::MetricsClientInterceptorFactory>(client_metrics),
      std::make_shared<AddAuthorizationFactory>(),
  };
  auto channel = locus::Connect(server.listening_addresses()[0], channel_options);
  if (!channel.ok()) {
    std::cerr << "connect: " << channel.status() << "\n";
    return 1;
  }
  Greeter::Stub stub(*channel);
  bool ok = true;

  std::cout << "calls (" << (*channel)->transport_name() << "):\n";
  for (int i = 0; i < 20; ++i) {
    GreetRequest request;
    request.set_name(absl::StrCat("caller ", i));
    locus::Metadata initial;
    locus::CallOptions options = locus::CallOptions::WithTimeout(absl::Seconds(10));
    options.initial_metadata = &initial;
    absl::StatusOr<GreetReply> reply = stub.Greet(request, options);
    ok &= Check(reply.ok(), absl::StrCat("call ", i, ": ", reply.status().ToString()));
    ok &= Check(locus::MetadataValue(initial, "Greeter-Version") == "1", "initial metadata");
  }
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<GreetReply> reply =
        stub.Greet(GreetRequest(), locus::CallOptions::WithTimeout(absl::Seconds(10)));
    BadName detail;
    ok &= Check(absl::IsInvalidArgument(reply.status()) && locus::GetStatusDetail(reply.status(), &detail) &&
                    detail.reason() == "the name is empty",
                absl::StrCat("a nameless greeting: ", reply.status().ToString()));
  }
  GreetRequest many;
  many.set_name("stream");
  locus::ClientReader<GreetReply> reader = stub.GreetMany(many, locus::CallOptions::WithTimeout(absl::Seconds(10)));
  GreetReply greeting;
  int greetings = 0;
  while (reader.Read(&greeting)) ++greetings;
  ok &= Check(reader.Finish().ok() && greetings == 3, "the stream");

  // A channel without the client's interceptors: the server refuses it.
  locus::ChannelOptions plain_options;
  plain_options.allowed_transports = "-inproc";
  auto plain = locus::Connect(server.listening_addresses()[0], plain_options);
  if (plain.ok()) {
    GreetRequest request;
    request.set_name("anonymous");
    absl::StatusOr<GreetReply> refused =
        Greeter::Stub(*plain).Greet(request, locus::CallOptions::WithTimeout(absl::Seconds(10)));
    ok &= Check(absl::IsPermissionDenied(refused.status()), "unauthorized: " + refused.status().ToString());
  }

  std::cout << "\nclient metrics:\n" << client_metrics->Report();
  std::cout << "\nserver metrics:\n" << server_metrics->Report();
  const auto client_greet = client_metrics->Get(Greeter::kMethodGreet.full_name);
  const auto server_greet = server_metrics->Get(Greeter::kMethodGreet.full_name);
  ok &= Check(client_greet.calls == 23 && Count(client_greet, absl::StatusCode::kOk) == 20 &&
                  Count(client_greet, absl::StatusCode::kInvalidArgument) == 3,
              "client Greet counts");
  ok &= Check(server_greet.calls == 24 && Count(server_greet, absl::StatusCode::kPermissionDenied) == 1,
              "server Greet counts");
  ok &= Check(server_metrics->Get(Greeter::kMethodGreetMany.full_name).calls == 1, "server GreetMany count");

  plain = absl::UnavailableError("done");
  channel = absl::UnavailableError("done");
  server.Shutdown();
  if (!dir.empty()) rmdir(dir.c_str());
  std::cout << (ok ? "\nall counts as expected\n" : "\ncounts differ\n");
  return ok ? 0 : 1;
}
