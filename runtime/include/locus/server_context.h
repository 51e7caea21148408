// What a server handler knows about the call it is serving.
//
// Example:
//   absl::Status MyEcho::Say(locus::ServerContext* context, const SayRequest* request,
//                            SayReply* reply) {
//     if (context->IsCancelled()) return absl::CancelledError("client went away");
//     context->AddTrailingMetadata("served-by", "replica-3");
//     reply->set_text(request->text());
//     return absl::OkStatus();
//   }
#ifndef LOCUS_SERVER_CONTEXT_H_
#define LOCUS_SERVER_CONTEXT_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "locus/call_options.h"
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
  // After the request parsed (methods with attachments): takes in the
  // references and descriptors it carries, held until the handler returns.
  virtual absl::Status ImportRequest(google::protobuf::MessageLite* request) = 0;
  // The caller's bootstrap object (ChannelOptions::bootstrap), or null.
  virtual const ObjectRef* caller_object() const = 0;
  virtual void OnCallerGone(absl::AnyInvocable<void(absl::Status) &&> callback) = 0;

 protected:
  ~CallLink() = default;
};

}  // namespace internal

// Thread-safety: a handler may read the context from any thread while the
// call runs; AddTrailingMetadata must not race with itself. The context is
// valid only until the handler returns.
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
        cancelled_(std::move(cancelled)) {}

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
  const Metadata& client_metadata() const { return client_metadata_; }
  // The value of the first client metadata entry named `key`, or empty.
  absl::string_view client_metadata_value(absl::string_view key) const {
    for (const auto& [k, v] : client_metadata_) {
      if (k == key) return v;
    }
    return {};
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

  // Set by the runtime: its side of the call, and whether the request may
  // carry references or descriptors (RpcMethod::has_attachments).
  void set_link(internal::CallLink* link, bool imports_attachments) {
    link_ = link;
    imports_attachments_ = imports_attachments;
  }
  internal::CallLink* link() const { return link_; }
  bool imports_attachments() const { return imports_attachments_ && link_ != nullptr; }

  void AddTrailingMetadata(std::string key, std::string value) {
    trailing_metadata_.emplace_back(std::move(key), std::move(value));
  }
  const Metadata& trailing_metadata() const { return trailing_metadata_; }

 private:
  absl::string_view method_;
  absl::Time deadline_;
  Metadata client_metadata_;
  const PeerInfo* peer_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
  Metadata trailing_metadata_;
  internal::CallLink* link_ = nullptr;
  bool imports_attachments_ = false;
};

}  // namespace locus

#endif  // LOCUS_SERVER_CONTEXT_H_
