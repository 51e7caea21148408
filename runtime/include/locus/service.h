// Services and their method tables: what a server dispatches calls to.
//
// Generated code (from locusc) derives `Foo::Service` from `locus::Service`
// and fills its method table in the constructor; users derive from
// `Foo::Service` and override the methods they implement. Methods left alone
// answer UNIMPLEMENTED.
//
// Example (what generated code does):
//   Foo::Service::Service() : ::locus::Service("pkg.Foo") {
//     AddMethod(&Foo::kMethodBar, ::locus::internal::MakeUnaryHandler(this, &Service::Bar));
//   }
#ifndef LOCUS_SERVICE_H_
#define LOCUS_SERVICE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "locus/retry_policy.h"
#include "locus/server_context.h"
#include "locus/stream.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace locus {

enum class RpcKind { kUnary, kClientStreaming, kServerStreaming, kBidiStreaming };

// Static description of one RPC method. Generated code defines one constant
// per method; the runtime keys calls by `full_name`.
struct RpcMethod {
  const char* full_name;  // "/package.Service/Method"
  RpcKind kind;
  bool oneway;  // (locus.oneway): no response is sent
  // The request or response type holds (at any depth) a locus.ObjectRef or
  // locus.FileDescriptor (locus/rmi.proto): the runtime then walks those
  // messages as they are sent and received (reference counts, descriptors).
  // Set by locusc; false costs nothing per call.
  bool has_attachments = false;
  // (locus.retry): how a failed call is retried (locus/retry_policy.h);
  // nullptr: only transparently. ChannelOptions::retry_policies overrides it.
  const RetryPolicy* retry_policy = nullptr;
};

// Where a call served from bytes (the remote path) delivers its outcome.
// The runtime implements it: it serializes the reply straight into the
// transport (into shared memory when the connection is one).
class ReplySink {
 public:
  // `reply` is the method's response if `status` is OK, else nullptr. It is
  // valid only during this call.
  virtual void Finish(const absl::Status& status, const google::protobuf::MessageLite* reply) = 0;

 protected:
  ~ReplySink() = default;
};

// Runs one method of a service. Implementations are generated (see
// codegen_support.h). Thread-safety: called concurrently for concurrent calls.
class MethodHandler {
 public:
  virtual ~MethodHandler() = default;
  // Remote path: parses `request`, runs the method, and calls
  // `sink.Finish` exactly once before returning. A request that does not
  // parse finishes with INVALID_ARGUMENT (the method is not run).
  virtual void CallSerialized(ServerContext* context, absl::string_view request,
                              ReplySink& sink) = 0;
  // In-process path: runs the method on the caller's own messages, which must
  // be of the method's request and response types.
  virtual absl::Status CallDirect(ServerContext* context,
                                  const google::protobuf::MessageLite& request,
                                  google::protobuf::MessageLite* response) = 0;
  // Streaming methods: runs the method over `stream` (on a thread of its
  // own: it may block in Read and Write) and calls `sink.Finish` exactly
  // once before returning, with the response for client streaming and
  // nullptr for the kinds that stream their responses.
  virtual void CallStream(ServerContext* context, ServerCallStream& stream, ReplySink& sink) {
    (void)context;
    (void)stream;
    sink.Finish(absl::UnimplementedError("not a streaming method"), nullptr);
  }
};

class Service {
 public:
  struct Method {
    const RpcMethod* method;
    std::unique_ptr<MethodHandler> handler;
  };

  virtual ~Service() = default;
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // "package.Service" (or the (locus.wire_name) option).
  const std::string& name() const { return name_; }
  const std::vector<Method>& methods() const { return methods_; }

 protected:
  explicit Service(std::string name) : name_(std::move(name)) {}
  void AddMethod(const RpcMethod* method, std::unique_ptr<MethodHandler> handler) {
    methods_.push_back(Method{method, std::move(handler)});
  }

 private:
  std::string name_;
  std::vector<Method> methods_;
};

}  // namespace locus

#endif  // LOCUS_SERVICE_H_
