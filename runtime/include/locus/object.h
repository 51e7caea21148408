// Remote objects: references to objects that travel inside messages
// (locus.ObjectRef, locus/rmi.proto) and the typed handles that call them.
//
// Example (the owner puts a reference to a fresh object in its reply):
//   absl::Status KvImpl::Open(locus::ServerContext*, const OpenRequest* request,
//                             OpenReply* reply) {
//     auto session = std::make_shared<SessionImpl>(request->name());  // a kv::Session::Service
//     return locus::SetRef(reply->mutable_session(), std::move(session));
//   }
// Example (the receiver calls it like any stub):
//   absl::StatusOr<locus::Remote<kv::Session>> session =
//       locus::Remote<kv::Session>::From(reply.session());
//   if (!session.ok()) return session.status();
//   absl::StatusOr<kv::GetReply> got = (*session)->Get(get_request);
//
// Where calls go: a reference into this process calls the object directly
// (in-process path); one that arrived over a connection from its owner goes
// back over that connection (callbacks included: a client can pass the
// server a reference to its own object); one to a third process (passed on
// by someone else) dials the owner's closest endpoint (shared memory on the
// same host) and presents the reference's token.
//
// Lifetimes (docs/rmi.md): the owner counts, per connection, the references
// it sent; the receiver releases them when the last Remote (or channel from
// ResolveRef) made from them is gone, or when the message that brought them
// was not used to make one (at the end of the handler for a request, after
// kUnclaimedRefTimeout otherwise). An object lives while the owner holds its
// Exported handle or any peer holds a reference; a connection that closes
// drops its references at once (or after the export's lease). Calls on an
// object that is gone fail NOT_FOUND; on one whose connection is gone,
// UNAVAILABLE.
//
// Threading (docs/rmi.md): on a server, calls on its objects run as its
// services' handlers do (inline on the I/O thread by default, or on its
// handler pool); on a side that serves no services (a client's callbacks)
// on a process-wide elastic pool, so a callback may call the server again
// synchronously and re-entrant chains complete.
#ifndef LOCUS_OBJECT_H_
#define LOCUS_OBJECT_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "locus/channel.h"
#include "locus/rmi.pb.h"
#include "locus/service.h"
#include "locus/transport.h"

namespace locus {

namespace internal {
class ExportEntry;
}  // namespace internal

// How long references received in a reply or stream message stay held when
// no Remote was made from them (a request's are released when its handler
// returns).
inline constexpr absl::Duration kUnclaimedRefTimeout = absl::Seconds(10);

struct ExportOptions {
  // After the last connection holding references to the object closed, the
  // owner keeps the object this much longer; a holder that reconnects
  // within it (its Remote's next call) keeps using it. A holder with a live
  // connection renews it. Zero: released with the connection.
  absl::Duration lease = absl::ZeroDuration();
  // Runs once, on a runtime thread, when no peer holds a reference and no
  // Exported handle is left (Java RMI's Unreferenced): the runtime drops its
  // shared_ptr to the object right after.
  absl::AnyInvocable<void() &&> on_unreferenced;
  // Runs, on a runtime thread, each time a connection that held references
  // to the object closes (Binder's death notification, seen by the owner).
  std::function<void(const PeerInfo&)> on_holder_gone;
};

// The owner's handle on an exported object. While it lives the object stays
// exported even if no peer holds a reference (e.g. a root object others get
// references to); once it is gone, the object lives while peers hold
// references. Move-only; thread-safe.
class Exported {
 public:
  Exported();
  ~Exported();
  Exported(Exported&&) noexcept;
  Exported& operator=(Exported&&) noexcept;

  // A reference to hand out (copy it into any number of messages).
  const ObjectRef& ref() const;
  // Unexports at once: later calls fail NOT_FOUND, whoever holds a reference.
  void Revoke();
  // References peers hold now, counted over all connections.
  uint64_t holders() const;

 private:
  friend absl::StatusOr<Exported> Export(std::shared_ptr<Service>, ExportOptions);
  explicit Exported(std::shared_ptr<internal::ExportEntry> entry);
  std::shared_ptr<internal::ExportEntry> entry_;
  std::unique_ptr<ObjectRef> ref_;
};

// Exports `object` in this process. INVALID_ARGUMENT if it is null.
[[nodiscard]] absl::StatusOr<Exported> Export(std::shared_ptr<Service> object,
                                              ExportOptions options = {});

// Exports `object` and writes a reference to it into `*field`, for a
// message about to be sent. No Exported handle: the object lives while a
// peer holds a reference (or for `options.lease`, or kUnclaimedRefTimeout if
// the message is never sent).
[[nodiscard]] absl::Status SetRef(ObjectRef* field, std::shared_ptr<Service> object,
                                  ExportOptions options = {});

// A channel whose calls go to the object `ref` names; `service` is the
// service the caller expects ("" skips the check; INVALID_ARGUMENT if the
// reference names another). `options` apply when a third party's owner must
// be dialled. NOT_FOUND/UNAVAILABLE errors of the object come from calls.
[[nodiscard]] absl::StatusOr<std::shared_ptr<Channel>> ResolveRef(
    const ObjectRef& ref, absl::string_view service, const ChannelOptions& options = {});

// Runs `callback` once, on a runtime thread, when the object behind
// `channel` (made by ResolveRef or Remote) can no longer be reached: its
// connection closed (the owner died or went away) or the owner released it.
// Runs at once if that already happened. No-op for other channels.
void NotifyOnDisconnect(const std::shared_ptr<Channel>& channel,
                        absl::AnyInvocable<void(absl::Status) &&> callback);

// The reference to the object the server of `channel` offers every client
// (ServerOptions::bootstrap). NOT_FOUND if it offers none.
absl::StatusOr<ObjectRef> BootstrapRef(const std::shared_ptr<Channel>& channel);

// A typed handle on a remote object: `ServiceT` is a class locusc generates
// (it has ::Stub and kServiceName). Copyable; the reference is released
// when the last copy (and every stub made from channel()) is gone.
template <typename ServiceT>
class Remote {
 public:
  using Stub = typename ServiceT::Stub;

  static absl::StatusOr<Remote> From(const ObjectRef& ref, const ChannelOptions& options = {}) {
    absl::StatusOr<std::shared_ptr<Channel>> channel = ResolveRef(ref, ServiceT::kServiceName, options);
    if (!channel.ok()) return channel.status();
    return Remote(*std::move(channel));
  }
  // The object `channel`'s server offers (ServerOptions::bootstrap).
  static absl::StatusOr<Remote> Bootstrap(const std::shared_ptr<Channel>& channel) {
    absl::StatusOr<ObjectRef> ref = BootstrapRef(channel);
    if (!ref.ok()) return ref.status();
    return From(*ref);
  }

  Stub* operator->() { return stub_.get(); }
  Stub& stub() { return *stub_; }
  const std::shared_ptr<Channel>& channel() const { return stub_->channel(); }
  // See NotifyOnDisconnect.
  void OnDisconnect(absl::AnyInvocable<void(absl::Status) &&> callback) const {
    NotifyOnDisconnect(channel(), std::move(callback));
  }

 private:
  explicit Remote(std::shared_ptr<Channel> channel)
      : stub_(std::make_shared<Stub>(std::move(channel))) {}
  std::shared_ptr<Stub> stub_;
};

}  // namespace locus

#endif  // LOCUS_OBJECT_H_
