// In-process calls: a server's services called directly from a client in the
// same process, without sockets and without serialization. The handler gets
// the caller's request object and fills the caller's response object.
//
// Semantics match the remote path (the conformance suite runs over both):
// deadlines (checked before the call; a call past its deadline when the
// handler returns ends DEADLINE_EXCEEDED), metadata (client, initial,
// trailing), status with its payloads (dropped, code and message kept, if
// they would not fit a meta section), the server's interceptors,
// size limits (by ByteSizeLong), UNIMPLEMENTED for unknown methods,
// cancellation (the caller's, and the server's shutdown once its deadline
// passed, each propagated to the calls a handler makes on its call's
// behalf), and UNAVAILABLE once the server shuts down.
//
// Streaming calls do not go through here: the channel opens an in-process
// connection (ConnectInproc) that the server accepts like any other, so
// streams have exactly the remote path's semantics.
//
// Threading: the handler runs on the caller's thread (synchronous calls, and
// asynchronous calls when the server runs handlers inline: the callback then
// runs before StartUnary returns); with ServerOptions::handler_threads > 0,
// asynchronous calls run on the server's handler pool.
//
// Example:
//   auto dispatcher = InprocRegistry::Get().Find(hello.server_instance());
//   if (dispatcher) status = dispatcher->CallUnary(method, request, &response, options, limits);
#ifndef LOCUS_RUNTIME_INTERNAL_INPROC_DISPATCHER_H_
#define LOCUS_RUNTIME_INTERNAL_INPROC_DISPATCHER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "internal/attempt_report.h"
#include "absl/time/time.h"
#include "internal/interception.h"
#include "internal/service_table.h"
#include "internal/thread_pool.h"
#include "locus/call_options.h"
#include "locus/cancellation.h"
#include "locus/rmi.pb.h"
#include "locus/service.h"
#include "locus/transport.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace locus::internal {

class InprocDispatcher {
 public:
  struct ServerLimits {
    uint64_t max_receive_message_size;
    uint64_t max_send_message_size;
  };
  // The client side's limits, applied as on the wire.
  struct ClientLimits {
    uint64_t max_send_message_size;
    uint64_t max_receive_message_size;
    // The client's bootstrap object (ServerContext::caller_object), or null.
    std::shared_ptr<const ObjectRef> caller_object;
  };

  InprocDispatcher(const ServiceTable* services, ServerLimits limits, ThreadPool* pool);

  // `report` (optional): set when the server had stopped (the handler
  // never ran).
  absl::Status CallUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                         google::protobuf::MessageLite* response, const CallOptions& options,
                         const ClientLimits& client, AttemptReport* report = nullptr);
  void StartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response, const CallOptions& options,
                  const ClientLimits& client, absl::AnyInvocable<void(absl::Status) &&> done);
  // As ConnectionCore::TryStartUnary: OK if the call was taken (`done`
  // runs once, possibly already), else the refusal of a stopped server,
  // `done` untouched and `report` set.
  absl::Status TryStartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                             google::protobuf::MessageLite* response, const CallOptions& options,
                             const ClientLimits& client, absl::AnyInvocable<void(absl::Status) &&>& done,
                             AttemptReport* report);

  // Set by the server before the dispatcher is registered: its bootstrap
  // object (ServerOptions::bootstrap), for locus::Bootstrap on in-process
  // channels.
  void set_bootstrap(std::shared_ptr<Service> bootstrap) { bootstrap_ = std::move(bootstrap); }
  const std::shared_ptr<Service>& bootstrap() const { return bootstrap_; }

  // Set by the server before the dispatcher is registered: its
  // interceptors (ServerOptions::interceptors), or nullptr for none.
  void set_interceptors(std::shared_ptr<const ServerInterceptors> interceptors) {
    interceptors_ = std::move(interceptors);
  }

  // Set by the server before the dispatcher is registered: how it accepts
  // an in-process connection.
  void set_accept(std::function<void(std::unique_ptr<Connection>)> accept) {
    accept_ = std::move(accept);
  }
  // Connects to the server in-process; returns the client's end.
  // UNAVAILABLE once stopped.
  absl::StatusOr<std::unique_ptr<Connection>> ConnectInproc(const ClientLimits& client);

  // Refuses new in-process connections (in-process unary calls go on).
  void StopAccepting();
  // Refuses new calls and connections and waits until the calls in progress
  // have returned; at `deadline` it cancels those still running (their
  // handlers see IsCancelled(), the calls they made on their calls' behalf
  // are cancelled, and their callers get UNAVAILABLE).
  void Stop(absl::Time deadline);
  bool stopped() const { return stopped_.load(std::memory_order_acquire); }

 private:
  bool Enter();
  void Leave();
  // CallUnary's body, for a call already Enter()ed.
  absl::Status CallEntered(const RpcMethod& method, const google::protobuf::MessageLite& request,
                           google::protobuf::MessageLite* response, const CallOptions& options,
                           const ClientLimits& client);

  const ServiceTable* const services_;
  const ServerLimits limits_;
  ThreadPool* const pool_;
  std::function<void(std::unique_ptr<Connection>)> accept_;
  std::shared_ptr<Service> bootstrap_;
  std::shared_ptr<const ServerInterceptors> interceptors_;
  // Held while a connection is handed to the server, so that once
  // StopAccepting returns, the server has every in-process connection in
  // its set.
  absl::Mutex accept_mu_;
  bool accepting_ ABSL_GUARDED_BY(accept_mu_) = true;
  // Lock-free on the call path (an in-process call is tens of nanoseconds).
  std::atomic<bool> stopped_{false};
  std::atomic<int> active_{0};
  // Set by Stop at its deadline: the cancelled flag of the handlers whose
  // callers gave no cancellation. The others' flags, and the propagated
  // cancellations, are registered with shutdown_, which Stop cancels then.
  std::atomic<bool> shut_down_{false};
  const Cancellation shutdown_;
};

// Servers of this process by instance id (Hello.server_instance).
// Thread-safe.
class InprocRegistry {
 public:
  static InprocRegistry& Get();
  // Returns a fresh, non-zero instance id.
  uint64_t Add(std::shared_ptr<InprocDispatcher> dispatcher);
  void Remove(uint64_t instance);
  std::shared_ptr<InprocDispatcher> Find(uint64_t instance);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::weak_ptr<InprocDispatcher>> servers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_INPROC_DISPATCHER_H_
