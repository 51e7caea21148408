// ConnectionCore: remote objects (docs/rmi.md). Calls on exported objects
// are admitted in HandleRequest like any call, found in the ObjectRegistry
// by id and token, and run on the object pool. A frame whose message holds
// references to the sender's objects lists them, counted, in its meta
// (wire.CountedRef): the sender counts them held by the receiver, the
// receiver imports them whether or not it reads the message, and releases
// them when nothing holds them. Descriptors ride with the frame. The
// built-in service "locus.rmi.Objects" carries releases and adoptions.
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/timer_queue.h"
#include "google/protobuf/message_lite.h"
#include "internal/call_header_codec.h"
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
// Distinct objects one frame may count (its meta is bounded anyway).
constexpr size_t kMaxCountedRefs = 1024;

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

absl::Status NoRmi(const PeerInfo& peer) {
  return absl::FailedPreconditionError(
      absl::StrCat("the peer (", peer.remote_address, ") does not support object references"));
}

}  // namespace

std::shared_ptr<ImportEntry> FindLiveImport(const ObjectRef& ref) {
  if (ref.received_via() == 0) return nullptr;
  std::shared_ptr<ImportEntry> entry;
  {
    ImportIndex& index = Imports();
    absl::MutexLock lock(&index.mu);
    auto it = index.imports.find({ref.received_via(), ref.object_id()});
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
    auto it = index.imports.find({connection_, id_});
    if (it != index.imports.end() && it->second.expired()) index.imports.erase(it);
  }
  const uint64_t received = received_.load(std::memory_order_relaxed);
  if (received == 0) return;
  if (std::shared_ptr<ConnectionCore> core = core_.lock()) core->SendRelease(id_, received);
}

void ImportEntry::Hold(std::shared_ptr<ImportEntry> self, absl::Duration timeout, bool claimable) {
  std::weak_ptr<ImportEntry> weak = self;
  absl::MutexLock lock(&mu_);
  const uint64_t hold = ++next_hold_;
  self_ = std::move(self);
  // Scheduled under mu_ so that Claim finds the timer to cancel; the timer
  // thread takes no lock of ours (it posts).
  const uint64_t timer = TimerQueue::Get().Schedule(absl::Now() + timeout, [weak, hold] {
    // Ending the last hold may send a release: off the timer thread.
    ObjectPool().Post([weak, hold] {
      if (std::shared_ptr<ImportEntry> entry = weak.lock()) entry->EndHold(hold);
    });
  });
  holds_[hold] = HoldState{claimable, timer};
}

void ImportEntry::EndHold(uint64_t hold) {
  std::shared_ptr<ImportEntry> released;  // dropped outside the lock
  absl::MutexLock lock(&mu_);
  if (holds_.erase(hold) == 0) return;
  if (holds_.empty()) released = std::move(self_);
}

void ImportEntry::Claim() {
  std::shared_ptr<ImportEntry> released;  // dropped outside the lock
  absl::MutexLock lock(&mu_);
  auto oldest = holds_.end();
  for (auto it = holds_.begin(); it != holds_.end(); ++it) {
    if (it->second.claimable && (oldest == holds_.end() || it->first < oldest->first)) oldest = it;
  }
  if (oldest == holds_.end()) return;
  TimerQueue::Get().Cancel(oldest->second.timer);
  holds_.erase(oldest);
  if (holds_.empty()) released = std::move(self_);
}

ThreadPool* ConnectionCore::PoolFor(const IncomingCall& call) const {
  if (call.stream != nullptr) return options_.stream_pool != nullptr ? options_.stream_pool : &ObjectPool();
  if (options_.handler_pool != nullptr) return options_.handler_pool;
  // Calls on this side's objects where no handler pool is set: a client's
  // callbacks, which must not run on the thread that reads (a synchronous
  // caller's, whose own reply they may need).
  return &ObjectPool();
}

void ConnectionCore::ServeObjects() {
  if (serving_objects_.exchange(true, std::memory_order_acq_rel)) return;
  // A plain client reads only while it waits for replies; a peer holding
  // references to this side's objects may call at any time.
  if (on_demand_background_reads_) connection_->AdjustBackgroundReads(+1);
}

absl::Status ConnectionCore::SendWithAttachments(FrameHeader header, absl::string_view meta,
                                                 uint32_t counted_field,
                                                 const google::protobuf::MessageLite& message,
                                                 absl::Time deadline) {
  const uint64_t self_process = LocalProcess();
  absl::flat_hash_map<uint64_t, wire::CountedRef> owned;
  std::vector<std::shared_ptr<ImportEntry>> passed_on;
  absl::Status walked = ForEachAttachment(
      message,
      [&](const ObjectRef& ref) {
        if (ref.object_id() == 0) return absl::OkStatus();
        if (!peer_speaks_rmi()) return NoRmi(peer());
        if (!connection_->reliable()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "object references need a reliable transport, not ", peer().transport));
        }
        if (ref.owner_process() == self_process) {
          wire::CountedRef& counted = owned[ref.object_id()];
          counted.set_object_id(ref.object_id());
          counted.set_token(ref.token());
          counted.set_count(counted.count() + 1);
        } else if (std::shared_ptr<ImportEntry> import = FindLiveImport(ref)) {
          passed_on.push_back(std::move(import));
        }
        return absl::OkStatus();
      },
      [](const FileDescriptor&) { return absl::OkStatus(); });
  if (!walked.ok()) return walked;
  if (owned.size() > kMaxCountedRefs) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a message carries references to at most ", kMaxCountedRefs, " objects"));
  }
  std::string payload;
  PreparedFds fds;
  absl::StatusOr<bool> with_fds = SerializeWithFds(message, &payload, &fds);
  if (!with_fds.ok()) return with_fds.status();
  if (*with_fds && !connection_->CanPassFds()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot send file descriptors over ", peer().transport, " (only unix, shm and in-process)"));
  }
  if (!*with_fds && !message.SerializeToString(&payload)) {
    return absl::InternalError(absl::StrCat("cannot serialize ", message.GetTypeName()));
  }
  std::string full_meta(meta);
  for (const auto& [id, counted] : owned) {
    // A length-delimited field of the meta's message (CallHeader 6,
    // CallStatus 4): appending keeps the rest as it is.
    const std::string bytes = counted.SerializeAsString();
    full_meta.push_back(static_cast<char>((counted_field << 3) | 2));
    for (uint64_t n = bytes.size(); ; n >>= 7) {
      if (n < 0x80) {
        full_meta.push_back(static_cast<char>(n));
        break;
      }
      full_meta.push_back(static_cast<char>((n & 0x7f) | 0x80));
    }
    full_meta += bytes;
  }
  if (full_meta.size() > kDefaultMaxMetaSize) {
    return absl::ResourceExhaustedError("too many object references in one message");
  }
  // Counted before the frame leaves (the peer may release them as soon as
  // it has them), and only on a connection not closed yet: a closed one
  // already gave its holds back (ObjectsOnClosed).
  {
    absl::MutexLock lock(&mu_);
    if (state_.phase() == ConnectionState::Phase::kClosed) {
      return absl::UnavailableError(absl::StrCat("connection closed: ", state_.close_reason().message()));
    }
    for (auto it = owned.begin(); it != owned.end(); ++it) {
      if (!ObjectRegistry::Get().AddHolder(it->first, serial_, it->second.count())) {
        for (auto done = owned.begin(); done != it; ++done) {
          ObjectRegistry::Get().Release(done->first, serial_, done->second.count());
        }
        return absl::NotFoundError(absl::StrCat("object ", it->first,
                                                " is no longer exported (released or revoked)"));
      }
      exported_to_peer_.insert(it->first);
    }
  }
  if (!owned.empty()) ServeObjects();
  // Passed on to a third party: keep our import while it adopts the object.
  for (auto& import : passed_on) import->Hold(import, kUnclaimedRefTimeout, /*claimable=*/false);
  header.flags |= kFlagHasMessage;
  header.meta_length = static_cast<uint32_t>(full_meta.size());
  header.payload_length = static_cast<uint32_t>(payload.size());
  absl::Status sent = connection_->SendWithFds(header, full_meta, payload, fds.numbers, deadline);
  if (sent.ok()) {
    fds.Sent();
  } else {
    for (const auto& [id, counted] : owned) ObjectRegistry::Get().Release(id, serial_, counted.count());
  }
  return sent;
}

absl::Status ConnectionCore::ImportAttachments(google::protobuf::MessageLite& message,
                                               std::vector<OwnedFd>& fds,
                                               ReceivedAttachments* scope) {
  std::vector<bool> used(fds.size(), false);
  const uint64_t from_process = peer_process();
  absl::Status first_error;
  absl::Status walked = ForEachAttachment(
      message,
      [&](ObjectRef& ref) {
        // Which connection a reference came by is the receiver's to say.
        const bool from_peer = ref.object_id() != 0 && from_process != 0 &&
                               ref.owner_process() == from_process &&
                               ref.owner_process() != LocalProcess();
        ref.set_received_via(from_peer ? serial_ : 0);
        return absl::OkStatus();
      },
      [&](FileDescriptor& field) {
        const int64_t index = field.handle();
        if (index < 0) return absl::OkStatus();
        if (static_cast<uint64_t>(index) >= fds.size() || used[index]) {
          field.set_handle(-1);
          if (first_error.ok()) {
            first_error = absl::InvalidArgumentError(absl::StrCat(
                "message names descriptor ", index, " of the ", fds.size(), " that came with it"));
          }
          return absl::OkStatus();  // go on: every field is cleared or redeemed
        }
        used[index] = true;
        field.set_handle(scope->AddFd(std::move(fds[index])));
        return absl::OkStatus();
      });
  if (!walked.ok()) return walked;
  return first_error;
}

std::shared_ptr<ImportEntry> ConnectionCore::Import(uint64_t id, absl::string_view token,
                                                    uint64_t count) {
  std::shared_ptr<ImportEntry> entry;
  std::shared_ptr<ImportEntry> replaced;  // dropped outside mu_: it may send a release
  {
    absl::MutexLock lock(&mu_);
    std::weak_ptr<ImportEntry>& slot = imports_[id];
    entry = slot.lock();
    if (entry == nullptr || entry->token() != token) {
      replaced = std::move(entry);
      entry = std::make_shared<ImportEntry>(weak_from_this(), serial_, id, std::string(token));
      slot = entry;
    }
  }
  entry->AddReceived(count);
  ImportIndex& index = Imports();
  absl::MutexLock lock(&index.mu);
  index.imports[{serial_, id}] = entry;
  return entry;
}

template <typename CountedRefs>
std::vector<std::shared_ptr<ImportEntry>> ConnectionCore::ImportCounted(const CountedRefs& refs) {
  std::vector<std::shared_ptr<ImportEntry>> holds;
  if (!peer_speaks_rmi() || refs.empty()) return holds;
  holds.reserve(std::min<size_t>(refs.size(), kMaxCountedRefs));
  for (const auto& ref : refs) {
    if (holds.size() == kMaxCountedRefs) break;
    if constexpr (std::is_same_v<std::decay_t<decltype(ref)>, CallHeaderView::CountedRef>) {
      if (ref.object_id == 0 || ref.count == 0) continue;
      holds.push_back(Import(ref.object_id, ref.token, ref.count));
    } else {
      if (ref.object_id() == 0 || ref.count() == 0) continue;
      holds.push_back(Import(ref.object_id(), ref.token(), ref.count()));
    }
  }
  return holds;
}

template std::vector<std::shared_ptr<ImportEntry>> ConnectionCore::ImportCounted(
    const std::vector<CallHeaderView::CountedRef>&);
template std::vector<std::shared_ptr<ImportEntry>> ConnectionCore::ImportCounted(
    const google::protobuf::RepeatedPtrField<wire::CountedRef>&);

absl::StatusOr<std::shared_ptr<ImportEntry>> ConnectionCore::Adopt(const ObjectRef& ref,
                                                                   absl::Time deadline) {
  if (!peer_speaks_rmi()) return NoRmi(peer());
  wire::AdoptObject adopt;
  adopt.set_object_id(ref.object_id());
  adopt.set_token(ref.token());
  wire::ObjectsAck ack;
  absl::Status adopted = CallUnary(kAdopt, adopt, &ack, CallOptions::WithDeadline(deadline));
  if (!adopted.ok()) return adopted;
  return Import(ref.object_id(), ref.token(), 1);
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
      if (ObjectRegistry::Get().Release(released.object_id(), serial_, released.count()) == 0) {
        absl::MutexLock lock(&mu_);
        exported_to_peer_.erase(released.object_id());
      }
    }
    return true;
  }
  absl::Status status = absl::UnimplementedError(absl::StrCat("unknown method ", method));
  if (method == kAdoptMethod) {
    wire::AdoptObject adopt;
    if (!adopt.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      status = absl::InvalidArgumentError("malformed Adopt");
    } else if (ObjectRegistry::Get().Find(adopt.object_id(), adopt.token()) == nullptr) {
      status = absl::NotFoundError(absl::StrCat("no object ", adopt.object_id()));
    } else {
      {
        absl::MutexLock lock(&mu_);
        if (state_.phase() == ConnectionState::Phase::kClosed ||
            !ObjectRegistry::Get().AddHolder(adopt.object_id(), serial_, 1)) {
          status = absl::NotFoundError(absl::StrCat("no object ", adopt.object_id()));
        } else {
          exported_to_peer_.insert(adopt.object_id());
          status = absl::OkStatus();
        }
      }
      if (status.ok()) {
        ServeObjects();
        if (!oneway) {
          const wire::ObjectsAck ack;
          SendResponse(frame.header.call_id, absl::OkStatus(), &ack, ack.ByteSizeLong(), {},
                       absl::Now() + absl::Seconds(10));
        }
        return true;
      }
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
  // Held by the peer for the connection's life (it imports it with count 1).
  absl::MutexLock lock(&mu_);
  (void)ObjectRegistry::Get().AddHolder((*entry)->id(), serial_, 1);
  exported_to_peer_.insert((*entry)->id());
}

void ConnectionCore::ImportPeerBootstrap() {
  for (const std::string& feature : peer_hello_.features()) {
    if (feature == "rmi/1") peer_speaks_rmi_.store(true, std::memory_order_release);
  }
  if (!peer_speaks_rmi() || !peer_hello_.has_bootstrap()) return;
  const ObjectRef& ref = peer_hello_.bootstrap();
  if (ref.object_id() == 0) return;
  peer_bootstrap_ = ref;
  peer_bootstrap_.set_received_via(serial_);
  peer_bootstrap_import_ = Import(ref.object_id(), ref.token(), 1);
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
