// Interceptors: code that runs around every call of a channel or a server,
// for logging, metrics, tracing, authentication (gRPC's experimental
// interceptor API, with typed hooks instead of batch methods).
//
// Each channel (ChannelOptions::interceptors) and server
// (ServerOptions::interceptors) holds a list of factories; for each call,
// each factory makes one interceptor (or none: nullptr), which lives as long
// as the call and sees its hooks. The list is an onion: the first factory's
// interceptor is the outermost. Hooks on the way out (a client's OnStart and
// OnSendMessage; a server's OnStart and OnReceiveMessage) run first to last;
// hooks on the way back (a client's OnReceiveInitialMetadata,
// OnReceiveMessage and OnFinish; a server's OnSendMessage and OnFinish) run
// last to first.
//
// Example (a client interceptor that adds a header and counts failures):
//   class AuthInterceptor : public locus::ClientInterceptor {
//    public:
//     absl::Status OnStart(locus::ClientCallInfo& call) override {
//       call.metadata().emplace_back("authorization", "Bearer t0k3n");
//       return absl::OkStatus();
//     }
//     void OnFinish(locus::ClientCallInfo& call, absl::Status& status) override {
//       if (!status.ok()) ++failures;
//     }
//     int failures = 0;
//   };
//   class AuthFactory : public locus::ClientInterceptorFactory {
//    public:
//     std::unique_ptr<locus::ClientInterceptor> Create(const locus::ClientCallInfo&) override {
//       return std::make_unique<AuthInterceptor>();
//     }
//   };
//   locus::ChannelOptions options;
//   options.interceptors.push_back(std::make_shared<AuthFactory>());
//   auto channel = locus::Connect("unix:/tmp/echo.sock", options);
//
// Short-circuit: an OnStart that returns an error ends the call with that
// status before anything is sent (client) or before the handler runs and
// the request is parsed (server); the interceptors after it do not run, and
// OnFinish runs for it and those before it.
//
// Scope: every call of the channel or server, unary and streaming, on every
// transport, including in-process calls that reach the handler directly.
// Calls on remote objects (locus/object.h: Remote<Foo>, bootstrap objects)
// are not intercepted. A channel or server without interceptors pays
// nothing for them.
//
// Threading: a call's hooks never run concurrently with each other, except
// that a stream's read-side hooks (OnReceive*) and write-side hooks
// (OnSendMessage) run on the threads that Read and Write, which may differ.
// OnFinish overlaps no other hook, and none follows it: a Read or Write
// that races a stream's Finish shows its message to no interceptor.
// Client hooks run on the calling thread, except OnReceiveInitialMetadata,
// OnReceiveMessage and OnFinish of an asynchronous unary call, which run on
// the thread that completes it (a runtime I/O thread: they must not block).
// Server hooks run on the handler's thread (OnSendMessage of a stream on
// the thread that writes). Factories are called concurrently for
// concurrent calls: they must be thread-safe.
#ifndef LOCUS_INTERCEPTOR_H_
#define LOCUS_INTERCEPTOR_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "locus/call_options.h"
#include "locus/service.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace locus {

// What a client interceptor sees of one call. Made by the runtime; valid
// until the call's OnFinish returned.
class ClientCallInfo {
 public:
  ClientCallInfo(const RpcMethod& method, const std::string& target, CallOptions options)
      : method_(method), target_(target), options_(std::move(options)) {}
  ClientCallInfo(const ClientCallInfo&) = delete;
  ClientCallInfo& operator=(const ClientCallInfo&) = delete;

  const RpcMethod& method() const { return method_; }
  // "/package.Service/Method".
  absl::string_view method_name() const { return method_.full_name; }
  // The channel's target (the address given to Connect).
  const std::string& target() const { return target_; }

  // The metadata and deadline the call is sent with. Changes made in
  // OnStart are what the server receives; later ones have no effect.
  Metadata& metadata() { return options_.metadata; }
  const Metadata& metadata() const { return options_.metadata; }
  absl::Time deadline() const { return options_.deadline; }
  void set_deadline(absl::Time deadline) { options_.deadline = deadline; }

  // The server's initial metadata: from OnReceiveInitialMetadata on.
  const Metadata& initial_metadata() const { return initial_metadata_; }
  // The server's trailing metadata: in OnFinish.
  const Metadata& trailing_metadata() const { return trailing_metadata_; }

  // For the runtime.
  CallOptions& options() { return options_; }
  Metadata* initial_metadata_storage() { return &initial_metadata_; }
  Metadata* trailing_metadata_storage() { return &trailing_metadata_; }

 private:
  const RpcMethod& method_;
  const std::string target_;  // a copy: an asynchronous call may outlive its channel
  CallOptions options_;
  Metadata initial_metadata_;
  Metadata trailing_metadata_;
};

class ClientInterceptor {
 public:
  virtual ~ClientInterceptor() = default;
  // Before anything is sent. May change the metadata and the deadline. An
  // error ends the call with it, unsent (see the file comment).
  virtual absl::Status OnStart(ClientCallInfo& call) { return absl::OkStatus(); }
  // Before each message is sent: the request of a unary or server-streaming
  // call, each Write of the others.
  virtual void OnSendMessage(ClientCallInfo& call, const google::protobuf::MessageLite& message) {}
  // Once per call that started (every OnStart succeeded), before the first
  // OnReceiveMessage and before OnFinish: the server's initial metadata
  // (possibly none).
  virtual void OnReceiveInitialMetadata(ClientCallInfo& call) {}
  // After each message is received: the reply of a unary or
  // client-streaming call, each successful Read of the others.
  virtual void OnReceiveMessage(ClientCallInfo& call, const google::protobuf::MessageLite& message) {}
  // Once, when the call ends (a stream: in Finish, or when it is destroyed
  // unfinished, then with CANCELLED whatever the server answered), with the
  // status the caller will get: it may replace it.
  virtual void OnFinish(ClientCallInfo& call, absl::Status& status) {}
};

class ClientInterceptorFactory {
 public:
  virtual ~ClientInterceptorFactory() = default;
  // One interceptor for the call `call` describes (its metadata as the
  // caller set it), or nullptr to leave this call alone. Thread-safe.
  virtual std::unique_ptr<ClientInterceptor> Create(const ClientCallInfo& call) = 0;
};

// What a server interceptor sees of one call: its method and its
// ServerContext (client metadata, deadline, peer; initial and trailing
// metadata may be added there). Valid until OnFinish returned.
class ServerCallInfo {
 public:
  ServerCallInfo(const RpcMethod& method, ServerContext& context) : method_(method), context_(context) {}
  ServerCallInfo(const ServerCallInfo&) = delete;
  ServerCallInfo& operator=(const ServerCallInfo&) = delete;

  const RpcMethod& method() const { return method_; }
  absl::string_view method_name() const { return method_.full_name; }
  ServerContext& context() const { return context_; }

 private:
  const RpcMethod& method_;
  ServerContext& context_;
};

class ServerInterceptor {
 public:
  virtual ~ServerInterceptor() = default;
  // After the client's metadata arrived, before the request is parsed and
  // the handler runs. An error rejects the call: the handler never runs and
  // the client gets the error (see the file comment).
  virtual absl::Status OnStart(ServerCallInfo& call) { return absl::OkStatus(); }
  // Each message the client sent, once parsed: the request of a unary or
  // server-streaming call, each successful Read of the others.
  virtual void OnReceiveMessage(ServerCallInfo& call, const google::protobuf::MessageLite& message) {}
  // Before each message is sent: the reply of a unary or client-streaming
  // call (if the handler succeeded), each Write of the others.
  virtual void OnSendMessage(ServerCallInfo& call, const google::protobuf::MessageLite& message) {}
  // Once, when the handler returned (or the call was rejected), before the
  // status goes to the client: it may replace it with an error (not an
  // error with OK: there is no reply to send), and add trailing metadata
  // (call.context().AddTrailingMetadata). It sees the handler's outcome:
  // limits the runtime applies afterwards (a deadline that passed, a reply
  // over the size limit) may still turn it into an error for the client.
  virtual void OnFinish(ServerCallInfo& call, absl::Status& status) {}
};

class ServerInterceptorFactory {
 public:
  virtual ~ServerInterceptorFactory() = default;
  // One interceptor for the call, or nullptr to leave it alone. Thread-safe.
  virtual std::unique_ptr<ServerInterceptor> Create(const ServerCallInfo& call) = 0;
};

}  // namespace locus

#endif  // LOCUS_INTERCEPTOR_H_
