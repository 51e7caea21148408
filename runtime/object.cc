// Remote objects, the public side (locus/object.h): exporting, resolving a
// reference into a channel, and the two channels a reference resolves to:
// LocalObjectChannel (the owner is this process: direct calls) and
// RemoteObjectChannel (calls over the connection the reference came by, or
// over one dialled to a third party's owner).
#include "locus/object.h"

#include <unistd.h>

#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/message_lite.h"
#include "internal/attachments.h"
#include "internal/channel_internal.h"
#include "internal/connection_core.h"
#include "internal/inproc_connection.h"
#include "internal/object_registry.h"
#include "internal/transport_selection.h"

namespace locus {
namespace internal {
namespace {

const PeerInfo& LocalObjectPeer() {
  static const PeerInfo* info = [] {
    auto* peer = new PeerInfo();
    peer->transport = "inproc";
    peer->local_address = "inproc";
    peer->remote_address = "inproc";
    peer->has_credentials = true;
    peer->pid = getpid();
    peer->uid = getuid();
    peer->gid = getgid();
    return peer;
  }();
  return *info;
}

// A connection of this process to itself, for streaming calls on its own
// objects (unary calls on them are direct): made on first use.
struct Loopback {
  absl::Mutex mu;
  std::shared_ptr<ConnectionCore> client ABSL_GUARDED_BY(mu);
  std::shared_ptr<ConnectionCore> server ABSL_GUARDED_BY(mu);
};

absl::StatusOr<std::shared_ptr<ConnectionCore>> LoopbackCore(absl::Time deadline) {
  static Loopback* loopback = new Loopback();  // leaked: used until exit
  absl::MutexLock lock(&loopback->mu);
  if (loopback->client != nullptr && loopback->client->usable()) return loopback->client;
  auto [client_end, server_end] =
      MakeInprocPair(InprocEnd{LocalObjectPeer(), kDefaultMaxMessageSize},
                     InprocEnd{LocalObjectPeer(), kDefaultMaxMessageSize});
  ConnectionCore::Options server_options;
  server_options.connecting_side = false;
  auto server_core = ConnectionCore::Create(std::move(server_end), std::move(server_options));
  server_core->Start();
  ConnectionCore::Options client_options;
  auto client_core = ConnectionCore::Create(std::move(client_end), std::move(client_options));
  client_core->Start();
  absl::Status handshake = client_core->ClientHandshake(deadline);
  if (!handshake.ok()) {
    client_core->Close(handshake);
    server_core->Close(handshake);
    return handshake;
  }
  loopback->client = client_core;
  loopback->server = server_core;
  return client_core;
}

// Calls on an object of this process: unary calls run on the caller's
// thread, as an in-process server's do; asynchronous ones on the object pool.
class LocalObjectChannel final : public Channel {
 public:
  explicit LocalObjectChannel(std::shared_ptr<ExportEntry> entry) : entry_(std::move(entry)) {
    ObjectRegistry::Get().AddLocalHold(entry_->id());
    target_ = absl::StrCat("object:", entry_->id());
  }
  ~LocalObjectChannel() override { ObjectRegistry::Get().DropLocalHold(entry_->id()); }

  absl::Status CallUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                         google::protobuf::MessageLite* response, const CallOptions& options) override {
    std::shared_ptr<Service> object = entry_->object();
    if (object == nullptr) {
      return absl::NotFoundError(absl::StrCat("object ", entry_->id(), " was released or revoked"));
    }
    const ServiceTable::Entry* entry = entry_->FindMethod(method.full_name);
    if (entry == nullptr) return absl::UnimplementedError(absl::StrCat("unknown method ", method.full_name));
    if (entry->method->kind != RpcKind::kUnary) {
      return absl::InvalidArgumentError(absl::StrCat(method.full_name, " is a streaming method"));
    }
    const bool has_deadline = options.deadline != absl::InfiniteFuture();
    if (has_deadline && absl::Now() >= options.deadline) {
      return absl::DeadlineExceededError(absl::StrCat("deadline passed before ", method.full_name, " started"));
    }
    if (options.cancellation.has_value() && options.cancellation->cancelled()) {
      return absl::CancelledError(absl::StrCat("call to ", method.full_name, " cancelled before it started"));
    }
    ServerContext context(method.full_name, options.deadline, options.metadata, &LocalObjectPeer(), nullptr);
    absl::Status status = internal::CallDirect(method, *entry->handler, &context, request, response);
    if (has_deadline && absl::Now() >= options.deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded while the object handled ", method.full_name));
    }
    if (options.trailing_metadata != nullptr) {
      for (const auto& kv : context.trailing_metadata()) options.trailing_metadata->push_back(kv);
    }
    if (options.initial_metadata != nullptr) {
      for (const auto& kv : context.initial_metadata()) options.initial_metadata->push_back(kv);
    }
    return status;
  }

  void StartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response, const CallOptions& options,
                  absl::AnyInvocable<void(absl::Status) &&> done) override {
    std::shared_ptr<google::protobuf::MessageLite> copy(request.New());
    copy->CheckTypeAndMergeFrom(request);
    auto self = std::static_pointer_cast<LocalObjectChannel>(Keepalive());
    ObjectPool().Post([self, &method, copy, response, options, done = std::move(done)]() mutable {
      std::move(done)(self->CallUnary(method, *copy, response, options));
    });
  }

  std::unique_ptr<ClientCallStream> OpenStream(const RpcMethod& method,
                                               const google::protobuf::MessageLite* request,
                                               google::protobuf::MessageLite* response,
                                               const CallOptions& options) override {
    absl::StatusOr<std::shared_ptr<ConnectionCore>> core =
        LoopbackCore(std::min(options.deadline, absl::Now() + absl::Seconds(10)));
    if (!core.ok()) return MakeFailedClientStream(core.status());
    const ObjectTarget target{entry_->id(), std::string(entry_->token())};
    return (*core)->OpenStream(method, request, response, options, &target);
  }

  std::string transport_name() const override { return "inproc"; }
  const std::string& target() const override { return target_; }

  void set_keepalive(std::weak_ptr<Channel> self) { self_ = std::move(self); }

 private:
  std::shared_ptr<Channel> Keepalive() const { return self_.lock(); }

  const std::shared_ptr<ExportEntry> entry_;
  std::string target_;
  std::weak_ptr<Channel> self_;
};

// Calls on an object another process owns, over the connection its
// reference came by (or was adopted over). A reference with a lease and
// endpoints survives the connection: the next call dials the owner again
// and adopts the object anew, within the lease.
class RemoteObjectChannel final : public Channel {
 public:
  RemoteObjectChannel(std::shared_ptr<ImportEntry> import, ObjectRef ref,
                      std::shared_ptr<Channel> dialled, ChannelOptions options)
      : ref_(std::move(ref)),
        options_(std::move(options)),
        target_(absl::StrCat("object:", ref_.object_id())),
        object_{ref_.object_id(), ref_.token()},
        import_(std::move(import)),
        dialled_(std::move(dialled)) {}

  absl::Status CallUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                         google::protobuf::MessageLite* response, const CallOptions& options) override {
    absl::StatusOr<std::shared_ptr<ConnectionCore>> core = Core(options.deadline);
    if (!core.ok()) return core.status();
    return (*core)->CallUnary(method, request, response, options, &object_);
  }

  void StartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response, const CallOptions& options,
                  absl::AnyInvocable<void(absl::Status) &&> done) override {
    absl::StatusOr<std::shared_ptr<ConnectionCore>> core = Core(options.deadline);
    if (!core.ok()) {
      std::move(done)(core.status());
      return;
    }
    (*core)->StartUnary(method, request, response, options, std::move(done), &object_);
  }

  std::unique_ptr<ClientCallStream> OpenStream(const RpcMethod& method,
                                               const google::protobuf::MessageLite* request,
                                               google::protobuf::MessageLite* response,
                                               const CallOptions& options) override {
    absl::StatusOr<std::shared_ptr<ConnectionCore>> core = Core(options.deadline);
    if (!core.ok()) return MakeFailedClientStream(core.status());
    return (*core)->OpenStream(method, request, response, options, &object_);
  }

  std::string transport_name() const override {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<ConnectionCore> core = import_->core();
    return core == nullptr ? "none" : TransportKind(core->peer().transport);
  }
  const std::string& target() const override { return target_; }

  void OnDisconnect(absl::AnyInvocable<void(absl::Status) &&> callback) {
    std::shared_ptr<ConnectionCore> core;
    {
      absl::MutexLock lock(&mu_);
      core = import_->core();
    }
    if (core != nullptr) {
      core->AddCloseObserver(std::move(callback));
      return;
    }
    ObjectPool().Post([callback = std::move(callback)]() mutable {
      std::move(callback)(absl::UnavailableError("the object's connection is closed"));
    });
  }

 private:
  // The connection to call over: the import's while it is usable; else,
  // within a lease, a fresh one to the owner.
  absl::StatusOr<std::shared_ptr<ConnectionCore>> Core(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<ConnectionCore> core = import_->core();
    if (core != nullptr && core->usable()) return core;
    if (ref_.lease_ms() == 0 || ref_.endpoints().empty()) {
      return absl::UnavailableError(absl::StrCat(
          "the connection to the owner of object ", ref_.object_id(), " (", ref_.service(),
          ") is closed"));
    }
    if (dialled_ == nullptr) {
      absl::StatusOr<std::shared_ptr<Channel>> dialled = DialOwner(ref_, options_);
      if (!dialled.ok()) return dialled.status();
      dialled_ = *std::move(dialled);
    }
    absl::StatusOr<std::shared_ptr<ConnectionCore>> fresh =
        ChannelConnection(*dialled_, std::min(deadline, absl::Now() + options_.connect_timeout));
    if (!fresh.ok()) return fresh.status();
    absl::StatusOr<std::shared_ptr<ImportEntry>> adopted =
        (*fresh)->Adopt(ref_, std::min(deadline, absl::Now() + options_.connect_timeout));
    if (!adopted.ok()) return adopted.status();
    import_ = *std::move(adopted);
    return *fresh;
  }

 public:
  // A channel to one of `ref`'s owner's endpoints, the first that connects.
  static absl::StatusOr<std::shared_ptr<Channel>> DialOwner(const ObjectRef& ref,
                                                            const ChannelOptions& options) {
    if (ref.endpoints().empty()) {
      return absl::UnavailableError(absl::StrCat(
          "the owner of object ", ref.object_id(), " (", ref.service(),
          ") listens nowhere and is not this channel's peer"));
    }
    ChannelOptions dial_options = options;
    dial_options.bootstrap = nullptr;
    absl::Status last;
    for (const std::string& endpoint : ref.endpoints()) {
      absl::StatusOr<std::shared_ptr<Channel>> channel = Connect(endpoint, dial_options);
      if (channel.ok()) return channel;
      last = channel.status();
    }
    return absl::UnavailableError(absl::StrCat("cannot reach the owner of object ", ref.object_id(),
                                               ": ", last.message()));
  }

 private:
  const ObjectRef ref_;
  const ChannelOptions options_;
  const std::string target_;
  const ObjectTarget object_;
  mutable absl::Mutex mu_;
  std::shared_ptr<ImportEntry> import_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Channel> dialled_ ABSL_GUARDED_BY(mu_);
};

}  // namespace
}  // namespace internal

Exported::Exported() = default;
Exported::Exported(std::shared_ptr<internal::ExportEntry> entry)
    : entry_(std::move(entry)), ref_(std::make_unique<ObjectRef>()) {
  internal::ObjectRegistry::Get().FillRef(*entry_, ref_.get());
}
Exported::~Exported() {
  if (entry_ != nullptr) internal::ObjectRegistry::Get().DropOwnerHandle(entry_->id());
}
Exported::Exported(Exported&& other) noexcept = default;
Exported& Exported::operator=(Exported&& other) noexcept {
  if (this != &other) {
    if (entry_ != nullptr) internal::ObjectRegistry::Get().DropOwnerHandle(entry_->id());
    entry_ = std::move(other.entry_);
    ref_ = std::move(other.ref_);
  }
  return *this;
}

const ObjectRef& Exported::ref() const {
  static const ObjectRef* empty = new ObjectRef();
  return ref_ != nullptr ? *ref_ : *empty;
}

void Exported::Revoke() {
  if (entry_ != nullptr) internal::ObjectRegistry::Get().Revoke(entry_->id());
}

uint64_t Exported::holders() const {
  return entry_ == nullptr ? 0 : internal::ObjectRegistry::Get().Holders(entry_->id());
}

absl::StatusOr<Exported> Export(std::shared_ptr<Service> object, ExportOptions options) {
  absl::StatusOr<std::shared_ptr<internal::ExportEntry>> entry = internal::ObjectRegistry::Get().Export(
      std::move(object), std::move(options), internal::ObjectRegistry::Hold::kOwnerHandle);
  if (!entry.ok()) return entry.status();
  return Exported(*std::move(entry));
}

absl::Status SetRef(ObjectRef* field, std::shared_ptr<Service> object, ExportOptions options) {
  absl::StatusOr<std::shared_ptr<internal::ExportEntry>> entry = internal::ObjectRegistry::Get().Export(
      std::move(object), std::move(options), internal::ObjectRegistry::Hold::kUnsent);
  if (!entry.ok()) return entry.status();
  internal::ObjectRegistry::Get().FillRef(**entry, field);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Channel>> ResolveRef(const ObjectRef& ref, absl::string_view service,
                                                    const ChannelOptions& options) {
  if (ref.object_id() == 0) return absl::InvalidArgumentError("empty object reference");
  if (!service.empty() && ref.service() != service) {
    return absl::InvalidArgumentError(
        absl::StrCat("the reference is to a ", ref.service(), ", not a ", service));
  }
  if (ref.owner_process() == internal::LocalProcess()) {
    std::shared_ptr<internal::ExportEntry> entry =
        internal::ObjectRegistry::Get().Find(ref.object_id(), ref.token());
    if (entry == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("no object ", ref.object_id(), " here (released, revoked, or never exported)"));
    }
    auto channel = std::make_shared<internal::LocalObjectChannel>(std::move(entry));
    channel->set_keepalive(channel);
    return channel;
  }
  // Came by a connection that still holds it: calls go back over it.
  if (std::shared_ptr<internal::ImportEntry> import = internal::FindLiveImport(ref)) {
    return std::make_shared<internal::RemoteObjectChannel>(std::move(import), ref, nullptr, options);
  }
  // A third party's object: dial its owner and adopt it there.
  absl::StatusOr<std::shared_ptr<Channel>> dialled =
      internal::RemoteObjectChannel::DialOwner(ref, options);
  if (!dialled.ok()) return dialled.status();
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  absl::StatusOr<std::shared_ptr<internal::ConnectionCore>> core =
      internal::ChannelConnection(**dialled, deadline);
  if (!core.ok()) return core.status();
  absl::StatusOr<std::shared_ptr<internal::ImportEntry>> adopted = (*core)->Adopt(ref, deadline);
  if (!adopted.ok()) return adopted.status();
  return std::make_shared<internal::RemoteObjectChannel>(*std::move(adopted), ref,
                                                         *std::move(dialled), options);
}

void NotifyOnDisconnect(const std::shared_ptr<Channel>& channel,
                        absl::AnyInvocable<void(absl::Status) &&> callback) {
  if (auto* remote = dynamic_cast<internal::RemoteObjectChannel*>(channel.get())) {
    remote->OnDisconnect(std::move(callback));
  }
}

absl::StatusOr<ObjectRef> BootstrapRef(const std::shared_ptr<Channel>& channel) {
  if (channel == nullptr) return absl::InvalidArgumentError("null channel");
  // One server: a channel to several asks one backend both questions.
  absl::StatusOr<std::shared_ptr<Channel>> backend = internal::ChannelBackend(channel);
  if (!backend.ok()) return backend.status();
  if (std::shared_ptr<Service> local = internal::ChannelInprocBootstrap(**backend)) {
    ObjectRef ref;
    absl::Status set = SetRef(&ref, std::move(local));
    if (!set.ok()) return set;
    return ref;
  }
  // Connecting is bounded by the channel's connect_timeout.
  absl::StatusOr<std::shared_ptr<internal::ConnectionCore>> core =
      internal::ChannelConnection(**backend, absl::InfiniteFuture());
  if (!core.ok()) return core.status();
  const ObjectRef* ref = (*core)->peer_bootstrap();
  if (ref == nullptr) {
    return absl::NotFoundError(absl::StrCat("the server at ", channel->target(), " offers no bootstrap object"));
  }
  return *ref;
}

}  // namespace locus
