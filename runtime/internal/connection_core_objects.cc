// ConnectionCore: remote objects (docs/rmi.md). Calls on exported objects
// are admitted in HandleRequest like any call, found in the ObjectRegistry
// by id and token, and run on the object pool. References and descriptors
// inside messages are found by SendWithAttachments / ImportAttachments;
// the built-in service "locus.rmi.Objects" carries releases and adoptions.
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/timer_queue.h"
#include "google/protobuf/message_lite.h"
#include "internal/connection_core.h"
#include "internal/connection_core_frames.h"
#include "internal/object_registry.h"

namespace locus::internal {
namespace {

constexpr absl::string_view kObjectsService = "/locus.rmi.Objects/";
constexpr char kReleaseMethod[] = "/locus.rmi.Objects/Release";
constexpr char kAdoptMethod[] = "/locus.rmi.Objects/Adopt";
// Release is a oneway unary call; Adopt a plain one.
constexpr RpcMethod kRelease{kReleaseMethod, RpcKind::kUnary, true};
constexpr RpcMethod kAdopt{kAdoptMethod, RpcKind::kUnary, false};

// The process-wide index behind FindLiveImport. Slots of dead imports are
// erased by the import's destructor.
struct ImportIndex {
  absl::Mutex mu;
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, std::weak_ptr<ImportEntry>> imports
      ABSL_GUARDED_BY(mu);
};

ImportIndex& Imports() {
  static ImportIndex* index = new ImportIndex();
  return *index;
}

void RegisterImport(const ObjectRef& ref, const std::shared_ptr<ImportEntry>& entry) {
  ImportIndex& index = Imports();
  absl::MutexLock lock(&index.mu);
  index.imports[{ref.owner_process(), ref.object_id()}] = entry;
}

}  // namespace

void ImportEntry::HoldUntilClaimed(std::shared_ptr<ImportEntry> self, absl::Duration timeout) {
  std::weak_ptr<ImportEntry> weak = self;
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    unclaimed_ = std::move(self);
    generation = ++hold_generation_;
  }
  TimerQueue::Get().Schedule(absl::Now() + timeout, [weak, generation] {
    // Dropping the last hold sends a release: off the timer thread.
    ObjectPool().Post([weak, generation] {
      std::shared_ptr<ImportEntry> entry = weak.lock();
      if (entry == nullptr) return;
      std::shared_ptr<ImportEntry> released;  // dropped outside the lock
      absl::MutexLock lock(&entry->mu_);
      // A later reply's hold has its own timer.
      if (entry->hold_generation_ == generation) released = std::move(entry->unclaimed_);
    });
  });
}

void ImportEntry::Claim() {
  std::shared_ptr<ImportEntry> released;  // dropped outside the lock
  absl::MutexLock lock(&mu_);
  released = std::move(unclaimed_);
}

std::shared_ptr<ImportEntry> FindLiveImport(const ObjectRef& ref) {
  std::shared_ptr<ImportEntry> entry;
  {
    ImportIndex& index = Imports();
    absl::MutexLock lock(&index.mu);
    auto it = index.imports.find({ref.owner_process(), ref.object_id()});
    if (it == index.imports.end()) return nullptr;
    entry = it->second.lock();
  }
  if (entry == nullptr || entry->token() != ref.token()) return nullptr;
  entry->Claim();
  return entry;
}

ImportEntry::~ImportEntry() {
  {
    ImportIndex& index = Imports();
    absl::MutexLock lock(&index.mu);
    auto it = index.imports.find({owner_process_, id_});
    if (it != index.imports.end() && it->second.expired()) index.imports.erase(it);
  }
  const uint64_t received = received_.load(std::memory_order_relaxed);
  if (received == 0) return;
  if (std::shared_ptr<ConnectionCore> core = core_.lock()) core->SendRelease(id_, received);
}

ThreadPool* ConnectionCore::PoolFor(const IncomingCall& call) const {
  if (call.object != nullptr) return &ObjectPool();
  if (call.stream != nullptr) return options_.stream_pool;
  return options_.handler_pool;
}

void ConnectionCore::ServeObjects() {
  if (serving_objects_.exchange(true, std::memory_order_acq_rel)) return;
  // A plain client reads only while it waits for replies; a peer holding
  // references to this side's objects may call at any time.
  if (on_demand_background_reads_) connection_->AdjustBackgroundReads(+1);
}

absl::Status ConnectionCore::SendWithAttachments(FrameHeader header, absl::string_view meta,
                                                 const google::protobuf::MessageLite& message,
                                                 absl::Time deadline) {
  const uint64_t self_process = LocalProcess();
  std::vector<uint64_t> owned;
  absl::Status walked = ForEachAttachment(
      message,
      [&](const ObjectRef& ref) {
        if (ref.object_id() == 0) return absl::OkStatus();
        if (!peer_speaks_rmi_) {
          return absl::FailedPreconditionError(absl::StrCat(
              "the peer (", peer().remote_address, ") does not support object references"));
        }
        if (ref.owner_process() == self_process) owned.push_back(ref.object_id());
        return absl::OkStatus();
      },
      [](const FileDescriptor&) { return absl::OkStatus(); });
  if (!walked.ok()) return walked;
  std::string payload;
  std::vector<int> fds;
  std::vector<int64_t> given;
  absl::StatusOr<bool> with_fds = SerializeWithFds(message, &payload, &fds, &given);
  if (!with_fds.ok()) return with_fds.status();
  if (*with_fds && !connection_->CanPassFds()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot send file descriptors over ", peer().transport, " (only unix, shm and in-process)"));
  }
  if (!*with_fds && !message.SerializeToString(&payload)) {
    return absl::InternalError(absl::StrCat("cannot serialize ", message.GetTypeName()));
  }
  // Counted before the frame leaves: the peer may release them as soon as
  // it has them.
  if (!owned.empty()) {
    {
      absl::MutexLock lock(&mu_);
      exported_to_peer_.insert(owned.begin(), owned.end());
    }
    for (uint64_t id : owned) (void)ObjectRegistry::Get().AddHolder(id, serial_, 1);
    ServeObjects();
  }
  header.flags |= kFlagHasMessage;
  header.meta_length = static_cast<uint32_t>(meta.size());
  header.payload_length = static_cast<uint32_t>(payload.size());
  absl::Status sent = connection_->SendWithFds(header, meta, payload, fds, deadline);
  // Given descriptors are the runtime's to close once sent.
  if (sent.ok()) {
    for (int64_t ticket : given) FdInbox::Get().Discard(ticket);
  }
  return sent;
}

absl::Status ConnectionCore::ImportAttachments(google::protobuf::MessageLite& message,
                                               std::vector<OwnedFd>& fds,
                                               ReceivedAttachments* scope, bool until_claimed) {
  std::vector<bool> used(fds.size(), false);
  const uint64_t from_process = peer_process();
  return ForEachAttachment(
      message,
      [&](ObjectRef& ref) {
        // Only references the peer owns are counted on this connection;
        // others are the owner's business (this process, or a third party
        // the holder adopts from).
        if (ref.object_id() != 0 && from_process != 0 && ref.owner_process() == from_process &&
            ref.owner_process() != LocalProcess()) {
          std::shared_ptr<ImportEntry> import = ImportReceived(ref);
          if (until_claimed) {
            import->HoldUntilClaimed(import, kUnclaimedRefTimeout);
          } else {
            scope->AddHold(std::move(import));
          }
        }
        return absl::OkStatus();
      },
      [&](FileDescriptor& field) {
        const int64_t index = field.handle();
        if (index < 0) return absl::OkStatus();
        if (static_cast<uint64_t>(index) >= fds.size() || used[index]) {
          field.set_handle(-1);
          return absl::InvalidArgumentError(absl::StrCat(
              "message names descriptor ", index, " of the ", fds.size(), " that came with it"));
        }
        used[index] = true;
        field.set_handle(scope->AddFd(std::move(fds[index])));
        return absl::OkStatus();
      });
}

std::shared_ptr<ImportEntry> ConnectionCore::ImportReceived(const ObjectRef& ref) {
  std::shared_ptr<ImportEntry> entry;
  {
    absl::MutexLock lock(&mu_);
    std::weak_ptr<ImportEntry>& slot = imports_[ref.object_id()];
    entry = slot.lock();
    if (entry == nullptr || entry->token() != ref.token()) {
      entry = std::make_shared<ImportEntry>(weak_from_this(), ref.owner_process(), ref.object_id(),
                                            ref.token(), ref.lease_ms());
      slot = entry;
    }
  }
  entry->AddReceived(1);
  RegisterImport(ref, entry);
  return entry;
}

std::shared_ptr<ImportEntry> ConnectionCore::FindImport(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = imports_.find(id);
  return it == imports_.end() ? nullptr : it->second.lock();
}

absl::StatusOr<std::shared_ptr<ImportEntry>> ConnectionCore::Adopt(const ObjectRef& ref,
                                                                   absl::Time deadline) {
  if (!peer_speaks_rmi_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the peer (", peer().remote_address, ") does not support object references"));
  }
  wire::AdoptObject adopt;
  adopt.set_object_id(ref.object_id());
  adopt.set_token(ref.token());
  wire::ObjectsAck ack;
  absl::Status adopted = CallUnary(kAdopt, adopt, &ack, CallOptions::WithDeadline(deadline));
  if (!adopted.ok()) return adopted;
  return ImportReceived(ref);
}

void ConnectionCore::SendRelease(uint64_t id, uint64_t count) {
  if (!UsableLockFree()) return;  // the peer dropped everything with the connection
  wire::ReleaseObjects release;
  wire::ReleaseObjects::Released* released = release.add_objects();
  released->set_object_id(id);
  released->set_count(count);
  {
    absl::MutexLock lock(&mu_);
    auto it = imports_.find(id);
    if (it != imports_.end() && it->second.expired()) imports_.erase(it);
  }
  // Asynchronous and oneway: may run on any thread, a reader's included.
  StartUnary(kRelease, release, nullptr, CallOptions::WithTimeout(absl::Seconds(10)),
             [](absl::Status) {});
}

bool ConnectionCore::HandleObjectsCall(absl::string_view method, const Frame& frame) {
  if (!absl::StartsWith(method, kObjectsService)) return false;
  const absl::string_view payload = frame.payload_bytes();
  const bool oneway = (frame.header.flags & kFlagOneway) != 0;
  if (method == kReleaseMethod) {
    wire::ReleaseObjects release;
    if (!release.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      LOCUS_LOG(WARNING) << "malformed Release from " << peer().remote_address;
      return true;
    }
    for (const wire::ReleaseObjects::Released& released : release.objects()) {
      ObjectRegistry::Get().Release(released.object_id(), serial_, released.count());
    }
    return true;
  }
  absl::Status status = absl::UnimplementedError(absl::StrCat("unknown method ", method));
  if (method == kAdoptMethod) {
    wire::AdoptObject adopt;
    if (!adopt.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      status = absl::InvalidArgumentError("malformed Adopt");
    } else if (ObjectRegistry::Get().Find(adopt.object_id(), adopt.token()) == nullptr ||
               !ObjectRegistry::Get().AddHolder(adopt.object_id(), serial_, 1)) {
      status = absl::NotFoundError(absl::StrCat("no object ", adopt.object_id()));
    } else {
      {
        absl::MutexLock lock(&mu_);
        exported_to_peer_.insert(adopt.object_id());
      }
      ServeObjects();
      if (!oneway) {
        const wire::ObjectsAck ack;
        SendResponse(frame.header.call_id, absl::OkStatus(), &ack, ack.ByteSizeLong(), {},
                     absl::Now() + absl::Seconds(10));
      }
      return true;
    }
  }
  if (!oneway) SendError(frame.header.call_id, status, absl::Now() + absl::Seconds(10));
  return true;
}

void ConnectionCore::AddBootstrap(wire::Hello* hello) {
  hello->add_features("rmi/1");
  if (options_.bootstrap == nullptr) return;
  absl::StatusOr<std::shared_ptr<ExportEntry>> entry = ObjectRegistry::Get().Export(
      options_.bootstrap, ExportOptions(), ObjectRegistry::Hold::kUnsent);
  if (!entry.ok()) return;
  ObjectRegistry::Get().FillRef(**entry, hello->mutable_bootstrap());
  // Held by the peer for the connection's life.
  (void)ObjectRegistry::Get().AddHolder((*entry)->id(), serial_, 1);
  absl::MutexLock lock(&mu_);
  exported_to_peer_.insert((*entry)->id());
}

void ConnectionCore::ImportPeerBootstrap() {
  for (const std::string& feature : peer_hello_.features()) {
    if (feature == "rmi/1") peer_speaks_rmi_ = true;
  }
  if (!peer_speaks_rmi_ || !peer_hello_.has_bootstrap()) return;
  const ObjectRef& ref = peer_hello_.bootstrap();
  if (ref.object_id() == 0 || ref.owner_process() != peer_process()) return;
  peer_bootstrap_ = ref;
  peer_bootstrap_import_ = ImportReceived(ref);
  ServeObjects();  // it may call back
}

void ConnectionCore::AddCloseObserver(absl::AnyInvocable<void(absl::Status) &&> callback) {
  {
    absl::MutexLock lock(&mu_);
    if (state_.phase() != ConnectionState::Phase::kClosed) {
      close_observers_.push_back(std::move(callback));
      return;
    }
  }
  absl::Status reason = absl::UnavailableError(absl::StrCat("connection to ", peer().remote_address, " closed"));
  ObjectPool().Post([callback = std::move(callback), reason]() mutable { std::move(callback)(reason); });
}

void ConnectionCore::ObjectsOnClosed(const absl::Status& reason) {
  std::vector<uint64_t> exported;
  std::vector<absl::AnyInvocable<void(absl::Status) &&>> observers;
  {
    absl::MutexLock lock(&mu_);
    exported.assign(exported_to_peer_.begin(), exported_to_peer_.end());
    exported_to_peer_.clear();
    observers.swap(close_observers_);
  }
  if (!exported.empty()) ObjectRegistry::Get().ConnectionClosed(serial_, exported, peer_);
  if (observers.empty()) return;
  absl::Status gone = absl::UnavailableError(
      absl::StrCat("connection to ", peer_.remote_address, " lost: ", reason.message()));
  ObjectPool().Post([observers = std::move(observers), gone]() mutable {
    for (auto& observer : observers) std::move(observer)(gone);
  });
}

}  // namespace locus::internal
