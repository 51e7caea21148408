// What a server handler knows about the call it is serving.
//
// Example:
//   absl::Status MyEcho::Say(locus::ServerContext* context, const SayRequest* request,
//                            SayReply* reply) {
//     if (context->IsCancelled()) return absl::CancelledError("client went away");
//     context->AddInitialMetadata("accepted-at", "replica-3");  // before any message
//     context->AddTrailingMetadata("served-by", "replica-3");
//     // A call on behalf of this one: same deadline, cancelled with it.
//     absl::StatusOr<LookupReply> found =
//         directory_->Lookup(lookup, locus::CallOptions::FromServerContext(*context));
//     if (!found.ok()) return found.status();
//     reply->set_text(request->text());
//     return absl::OkStatus();
//   }
#ifndef LOCUS_SERVER_CONTEXT_H_
#define LOCUS_SERVER_CONTEXT_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "locus/call_options.h"
#include "locus/cancellation.h"
#include "locus/transport.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace locus {

class ObjectRef;  // locus/rmi.pb.h

namespace internal {

// The runtime's side of a call being served, for RMI (locus/object.h).
// Implemented by the runtime; valid while the handler runs.
class CallLink {
 public:
  // After the request parsed (ServerContext::imports_attachments(): methods
  // with attachments, intercepted calls): takes in the references and
  // descriptors it carries, held until the handler returns, and shows it to
  // the call's interceptors.
  virtual absl::Status ImportRequest(google::protobuf::MessageLite* request) = 0;
  // The caller's bootstrap object (ChannelOptions::bootstrap), or null.
  virtual const ObjectRef* caller_object() const = 0;
  virtual void OnCallerGone(absl::AnyInvocable<void(absl::Status) &&> callback) = 0;
  // A cancellation that fires when this call is cancelled (its client
  // cancelled or went away, the server shut down), for calls made on its
  // behalf (CallOptions::FromServerContext); none if it cannot be. The same
  // one each time it is asked for; thread-safe. Cancelling it cancels
  // nothing else.
  virtual std::optional<Cancellation> PropagatedCancellation() { return std::nullopt; }

 protected:
  ~CallLink() = default;
};

}  // namespace internal

// Thread-safety: a handler may read the context from any thread while the
// call runs; the Add*Metadata methods must not race with each other or with
// the handler's writes (a stream's initial metadata is sent with its first
// message). The context is valid only until the handler returns.
class ServerContext {
 public:
  // Made by the runtime. `method` and `*peer` must outlive the context;
  // `cancelled` may be null (only the deadline cancels the call).
  ServerContext(absl::string_view method, absl::Time deadline, Metadata client_metadata,
                const PeerInfo* peer, std::shared_ptr<std::atomic<bool>> cancelled)
      : method_(method),
        deadline_(deadline),
        client_metadata_(std::move(client_metadata)),
        peer_(peer),
        cancelled_(std::move(cancelled)) {
    internal::LowercaseKeys(client_metadata_);
  }

  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // "/package.Service/Method".
  absl::string_view method() const { return method_; }
  // The client's deadline (InfiniteFuture if none), on this host's clock.
  absl::Time deadline() const { return deadline_; }
  // True once the client cancelled, the deadline passed, or the connection to
  // the client was lost. A handler doing long work should check it.
  bool IsCancelled() const {
    return (cancelled_ != nullptr && cancelled_->load(std::memory_order_acquire)) ||
           absl::Now() >= deadline_;
  }
  // Keys in lower case (locus/call_options.h).
  const Metadata& client_metadata() const { return client_metadata_; }
  // The value of the first client metadata entry named `key` (ignoring
  // case), or empty.
  absl::string_view client_metadata_value(absl::string_view key) const {
    return MetadataValue(client_metadata_, key);
  }
  // The connection's peer: transport, addresses, and credentials where the
  // transport provides them.
  const PeerInfo& peer() const { return *peer_; }

  // The object the caller offered with its connection (ChannelOptions::
  // bootstrap), to call it back: locus::Remote<Foo>::From(*ref). Null if it
  // offered none (or the call came in-process without one).
  const ObjectRef* caller_object() const {
    return link_ != nullptr ? link_->caller_object() : nullptr;
  }
  // Runs `callback` once, on a runtime thread, when the connection to the
  // caller closes (at once if it has): the caller went away or died. May
  // outlive the handler. Never runs for in-process callers.
  void OnCallerGone(absl::AnyInvocable<void(absl::Status) &&> callback) const {
    if (link_ != nullptr) link_->OnCallerGone(std::move(callback));
  }

  // Set by the runtime: its side of the call, and whether the parsed
  // request must be handed to link()->ImportRequest (it may carry references
  // or descriptors, RpcMethod::has_attachments, or interceptors watch it).
  void set_link(internal::CallLink* link, bool imports_attachments) {
    link_ = link;
    imports_attachments_ = imports_attachments;
  }
  internal::CallLink* link() const { return link_; }
  bool imports_attachments() const { return imports_attachments_ && link_ != nullptr; }

  // Sent with the call's status. Keys are sent in lower case.
  void AddTrailingMetadata(std::string key, std::string value) {
    internal::LowercaseKey(key);
    trailing_metadata_.emplace_back(std::move(key), std::move(value));
  }
  const Metadata& trailing_metadata() const { return trailing_metadata_; }
  // Sent before the call's first response message (gRPC's initial
  // metadata, HTTP/2 headers): with the first message a streaming handler
  // writes, else with the status. Entries added after that are not sent.
  // Keys are sent in lower case. The client reads them through
  // CallOptions::initial_metadata.
  void AddInitialMetadata(std::string key, std::string value) {
    internal::LowercaseKey(key);
    initial_metadata_.emplace_back(std::move(key), std::move(value));
  }
  const Metadata& initial_metadata() const { return initial_metadata_; }
  // Metadata that calls made on this call's behalf carry
  // (CallOptions::FromServerContext copies it into their metadata): e.g. a
  // tracing interceptor's context for the next hop ("traceparent"). An
  // entry whose key is already there replaces it.
  void AddPropagatedMetadata(std::string key, std::string value) {
    for (auto& [k, v] : propagated_metadata_) {
      if (absl::EqualsIgnoreCase(k, key)) {
        v = std::move(value);
        return;
      }
    }
    propagated_metadata_.emplace_back(std::move(key), std::move(value));
  }
  const Metadata& propagated_metadata() const { return propagated_metadata_; }

 private:
  absl::string_view method_;
  absl::Time deadline_;
  Metadata client_metadata_;
  const PeerInfo* peer_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
  Metadata trailing_metadata_;
  Metadata initial_metadata_;
  Metadata propagated_metadata_;
  internal::CallLink* link_ = nullptr;
  bool imports_attachments_ = false;
};

inline CallOptions CallOptions::FromServerContext(const ServerContext& context) {
  CallOptions options;
  options.deadline = context.deadline();
  options.metadata = context.propagated_metadata();
  if (context.link() != nullptr) options.cancellation = context.link()->PropagatedCancellation();
  return options;
}

}  // namespace locus

#endif  // LOCUS_SERVER_CONTEXT_H_
