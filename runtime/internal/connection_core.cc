#include "internal/connection_core.h"

#include <algorithm>
#include <limits>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/message_lite.h"
#include "internal/call_header_codec.h"
#include "locus/codegen_support.h"
#include "internal/host_identity.h"
#include "internal/log.h"
#include "internal/scratch_buffer.h"
#include "internal/timer_queue.h"

namespace locus::internal {
namespace {

constexpr char kImplementation[] = "locus-c++/0.1.0";

absl::Status StatusFromWire(const wire::CallStatus& status) {
  int code = status.code();
  if (code < 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::UnknownError(absl::StrCat("peer sent unknown status code ", code, ": ", status.message()));
  }
  return absl::Status(static_cast<absl::StatusCode>(code), status.message());
}

// Protobuf's own limit on a serialized message (its sizes are ints).
constexpr size_t kMaxMessageBytes = static_cast<size_t>(std::numeric_limits<int>::max());

// Serializes `message`, sized by ByteSizeLong() and unchanged since, into
// the `size` bytes at `out`. False if the message changed size meanwhile
// (e.g. another thread still modifies it).
bool WriteMessage(const google::protobuf::MessageLite& message, size_t size, char* out) {
  uint8_t* start = reinterpret_cast<uint8_t*>(out);
  return message.SerializeWithCachedSizesToArray(start) == start + size;
}

// Parses a frame's meta (owned or borrowed) as `message`.
bool ParseMeta(const Frame& frame, google::protobuf::MessageLite* message) {
  const absl::string_view meta = frame.meta_bytes();
  return message->ParseFromArray(meta.data(), static_cast<int>(meta.size()));
}

// The status (and trailers, into `*trailers` if set) of a RESPONSE.
absl::Status ResponseStatus(const Frame& frame, Metadata* trailers) {
  if (frame.header.meta_length == 0) return absl::OkStatus();
  wire::CallStatus wire_status;
  if (!ParseMeta(frame, &wire_status)) {
    return absl::InternalError("malformed status from peer");
  }
  if (trailers != nullptr) {
    for (const wire::MetadataEntry& e : wire_status.trailing_metadata()) {
      trailers->emplace_back(e.key(), e.value());
    }
  }
  return StatusFromWire(wire_status);
}

// The reply a RESPONSE carries, parsed into `*response`.
// `method` (NUL-terminated) is only read for an error.
absl::Status ParseReply(const Frame& frame, const char* method,
                        google::protobuf::MessageLite* response) {
  if ((frame.header.flags & kFlagHasMessage) == 0) {
    return absl::InternalError(absl::StrCat("reply to ", method, " carried no message"));
  }
  absl::string_view payload = frame.payload_bytes();
  if (!response->ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InternalError(
        absl::StrCat("reply to ", method, " does not parse as ", response->GetTypeName()));
  }
  return absl::OkStatus();
}

// The connections whose frames this thread is delivering (OnFrame), the
// innermost first: a callback of one may drive another, whose callback...
// This thread holds all their readers, so a synchronous call on any of them
// from here (a completion callback, an inline handler) could never read its
// reply. Nodes live on the stack of the OnFrame calls.
struct DeliveringScope {
  const ConnectionCore* core;
  const DeliveringScope* outer;
};
thread_local const DeliveringScope* t_delivering = nullptr;

absl::Time DeadlineFromTimeout(int64_t timeout_ns) {
  if (timeout_ns <= 0) return absl::InfiniteFuture();
  // In nanoseconds (Time + Duration is an out-of-line call in Abseil); a
  // timeout that would overflow is no deadline, as the saturating sum was.
  const int64_t now_ns = absl::GetCurrentTimeNanos();
  if (timeout_ns > std::numeric_limits<int64_t>::max() - now_ns) return absl::InfiniteFuture();
  return absl::FromUnixNanos(now_ns + timeout_ns);
}

}  // namespace

struct ConnectionCore::PendingCall {
  google::protobuf::MessageLite* response = nullptr;
  Metadata* trailing_metadata = nullptr;
  const char* method = nullptr;
  // Asynchronous calls: `done` set, heap-allocated, freed by Complete().
  // They keep their connection alive until they complete.
  absl::AnyInvocable<void(absl::Status) &&> done;
  std::shared_ptr<ConnectionCore> keepalive;
  TimerQueue::Id timer = 0;
  // With CallOptions::cancellation: dropped when the call's state goes.
  CancellationRegistration cancel_registration;
  // Synchronous calls: the waiter sleeps on `mu` until `finished`. When
  // the waiter's own thread completes the call (caller-driven read),
  // Complete() sets the two waiter_ fields instead, which only that thread
  // touches.
  std::thread::id waiter;
  bool completed_by_waiter = false;
  absl::Status waiter_status;
  absl::Mutex mu;
  bool finished ABSL_GUARDED_BY(mu) = false;
  absl::Status status ABSL_GUARDED_BY(mu);
  std::atomic<bool> finished_flag{false};
};

std::shared_ptr<ConnectionCore> ConnectionCore::Create(std::unique_ptr<Connection> connection,
                                                       Options options) {
  return std::shared_ptr<ConnectionCore>(new ConnectionCore(std::move(connection), std::move(options)));
}

ConnectionCore::ConnectionCore(std::unique_ptr<Connection> connection, Options options)
    : options_(std::move(options)),
      peer_(connection->peer()),
      next_call_id_(options_.connecting_side ? 1 : 2),
      connection_(std::move(connection)) {}

ConnectionCore::~ConnectionCore() {
  // Destroying the connection waits for its reader and delivers OnClosed if
  // still due (failing outstanding calls); members stay valid meanwhile.
  connection_->Close(absl::UnavailableError("connection released"));
}

void ConnectionCore::Start() {
  connection_->Start(this);
  // A side that serves calls needs its connection read at all times. A
  // plain client needs background reads only while asynchronous calls are
  // outstanding: synchronous callers read their own replies (DriveUntil).
  if (options_.connecting_side && options_.services == nullptr) {
    on_demand_background_reads_ = true;
    connection_->AdjustBackgroundReads(-1);
  }
}

void ConnectionCore::AsyncCallStarted() {
  if (on_demand_background_reads_ && async_calls_.fetch_add(1, std::memory_order_acq_rel) == 0) {
    connection_->AdjustBackgroundReads(+1);
  }
}

void ConnectionCore::AsyncCallEnded() {
  if (on_demand_background_reads_ && async_calls_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    connection_->AdjustBackgroundReads(-1);
  }
}

bool ConnectionCore::DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
  if (connection_->DriveUntil(done, deadline)) return true;
  // Another thread reads the connection now, and may stop before `done`:
  // ask for background reads while this caller waits (see WaitedWithoutDriving).
  if (on_demand_background_reads_) connection_->AdjustBackgroundReads(+1);
  return false;
}

bool ConnectionCore::DeliveringOnThisThread() const {
  for (const DeliveringScope* scope = t_delivering; scope != nullptr; scope = scope->outer) {
    if (scope->core == this) return true;
  }
  return false;
}

void ConnectionCore::WaitedWithoutDriving() {
  if (on_demand_background_reads_) connection_->AdjustBackgroundReads(-1);
}

wire::Hello ConnectionCore::MakeHello() const {
  wire::Hello hello;
  hello.set_min_protocol_version(kProtocolVersion);
  hello.set_max_protocol_version(kProtocolVersion);
  hello.set_implementation(kImplementation);
  hello.set_max_receive_message_size(options_.max_receive_message_size);
  *hello.mutable_host() = LocalHostIdentity();
  hello.set_server_instance(options_.server_instance);
  for (const std::string& endpoint : options_.local_endpoints) hello.add_local_endpoints(endpoint);
  hello.add_features("shm/1");
  hello.set_stream_window_bytes(ReceiveWindow());
  return hello;
}

absl::Status ConnectionCore::ClientHandshake(absl::Time deadline) {
  std::string meta = MakeHello().SerializeAsString();
  FrameHeader hello = FrameHeader::Make(FrameType::kHello, 0, 0);
  hello.meta_length = static_cast<uint32_t>(meta.size());
  absl::Status sent = connection_->Send(hello, meta, {}, deadline);
  if (!sent.ok()) return sent;
  const bool drove =
      DriveUntil([this] { return handshake_flag_.load(std::memory_order_acquire); }, deadline);
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return handshake_done_ || closed_ || !handshake_error_.ok();
  };
  mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
  if (!drove) WaitedWithoutDriving();
  if (!handshake_error_.ok()) return handshake_error_;
  if (handshake_done_) return absl::OkStatus();
  if (closed_) {
    return absl::UnavailableError(
        absl::StrCat("connection closed during handshake: ", close_reason_.message()));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no handshake reply from ", peer().remote_address, " (is it a Locus server?)"));
}

void ConnectionCore::ExpectHandshakeBy(absl::Time deadline) {
  std::weak_ptr<ConnectionCore> weak = weak_from_this();
  TimerQueue::Get().Schedule(deadline, [weak] {
    std::shared_ptr<ConnectionCore> self = weak.lock();
    if (self == nullptr) return;
    if (!self->handshake_flag_.load()) {
      LOCUS_LOG(WARNING) << "closing connection from " << self->peer().remote_address
                         << ": no handshake within the time limit";
      self->Close(absl::DeadlineExceededError("handshake timed out"));
    }
  });
}

bool ConnectionCore::usable() const { return !unusable_.load(std::memory_order_acquire); }

bool ConnectionCore::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

size_t ConnectionCore::active_server_calls() const {
  absl::MutexLock lock(&mu_);
  return serving_.size() + inline_serving_.load(std::memory_order_acquire);
}

absl::StatusOr<uint64_t> ConnectionCore::Register(PendingCall* call, absl::Time timer_deadline,
                                                  const std::optional<Cancellation>& cancellation) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::UnavailableError(absl::StrCat("connection closed: ", close_reason_.message()));
  }
  if (draining_) return absl::UnavailableError("server is shutting down (GOAWAY)");
  uint64_t id = next_call_id_;
  next_call_id_ += 2;
  if (cancellation.has_value()) {
    absl::Status watched =
        WatchCancellation(*cancellation, id, /*stream=*/false, &call->cancel_registration);
    if (!watched.ok()) return watched;
  }
  if (timer_deadline != absl::InfiniteFuture()) {
    // Scheduled under mu_ so the timer cannot expire (and free) the call
    // before its id is recorded; the timer thread takes mu_ only after
    // releasing its own lock, so the order is safe.
    std::weak_ptr<ConnectionCore> weak = weak_from_this();
    call->timer = TimerQueue::Get().Schedule(timer_deadline, [weak, id] {
      if (std::shared_ptr<ConnectionCore> self = weak.lock()) {
        self->AbandonCall(id, absl::DeadlineExceededError("deadline exceeded"), /*by_its_timer=*/true);
      }
    });
  }
  pending_.emplace(id, call);
  return id;
}

absl::Status ConnectionCore::WatchCancellation(const Cancellation& cancellation, uint64_t id,
                                               bool stream, CancellationRegistration* registration) {
  // The callback runs on the thread that calls Cancel(), possibly before
  // this returns: it only schedules the abandonment on the timer thread,
  // which then takes mu_ (held here until the call is recorded).
  std::weak_ptr<ConnectionCore> weak = weak_from_this();
  *registration = CancellationRegistration::Watch(cancellation.state(), [weak, id, stream]() {
    TimerQueue::Get().Schedule(absl::Now(), [weak, id, stream] {
      std::shared_ptr<ConnectionCore> self = weak.lock();
      if (self == nullptr) return;
      absl::Status cancelled = absl::CancelledError("call cancelled");
      if (stream) {
        self->AbandonStream(id, std::move(cancelled), /*by_its_timer=*/false);
      } else {
        self->AbandonCall(id, std::move(cancelled), /*by_its_timer=*/false);
      }
    });
  });
  if (!registration->active()) return absl::CancelledError("call cancelled before it started");
  return absl::OkStatus();
}

ConnectionCore::PendingCall* ConnectionCore::Take(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(id);
  if (it == pending_.end()) return nullptr;
  PendingCall* call = it->second;
  pending_.erase(it);
  return call;
}

void ConnectionCore::Complete(PendingCall* call, absl::Status status) {
  if (call->done) {
    if (call->timer != 0) TimerQueue::Get().Cancel(call->timer);
    call->cancel_registration.Reset();  // finished before its callback says so
    std::move(call->done)(std::move(status));
    // After `done`, so that a callback starting the next call keeps the
    // connection's background reads on.
    call->keepalive->AsyncCallEnded();
    // The connection may be released here (keepalive): the caller of
    // Complete() must not touch it afterwards unless it holds its own reference.
    delete call;
    return;
  }
  if (call->waiter == std::this_thread::get_id()) {
    // The waiter itself is completing it (it drives the connection): it
    // reads the status after this returns, on this thread; no lock needed.
    call->waiter_status = std::move(status);
    call->completed_by_waiter = true;
    call->finished_flag.store(true, std::memory_order_release);
    return;
  }
  absl::MutexLock lock(&call->mu);
  call->status = std::move(status);
  call->finished = true;
  call->finished_flag.store(true, std::memory_order_release);
}

absl::Status ConnectionCore::SendRequest(const RpcMethod& method, uint64_t id,
                                         const google::protobuf::MessageLite* request,
                                         uint32_t flags, const CallOptions& options) {
  if (request != nullptr && !request->IsInitialized()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot serialize request for ", method.full_name, " (missing required fields?)"));
  }
  const size_t size = request != nullptr ? request->ByteSizeLong() : 0;
  if (size > options_.max_send_message_size || size > kMaxMessageBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("request of ", size, " bytes exceeds the send limit of ",
                     options_.max_send_message_size, " bytes"));
  }
  int64_t timeout_ns = 0;
  if (options.deadline != absl::InfiniteFuture()) {
    // In nanoseconds: Time - Time is an out-of-line call in Abseil.
    const int64_t deadline_ns = absl::ToUnixNanos(options.deadline);
    const int64_t now_ns = absl::GetCurrentTimeNanos();
    timeout_ns = deadline_ns > now_ns ? deadline_ns - now_ns : 1;
  }
  // The call header on the stack unless it is large (long metadata).
  char small_meta[256];
  std::optional<ScratchBuffer> large_meta;
  const absl::string_view method_name(method.full_name);
  const size_t meta_size = CallHeaderSize(method_name, timeout_ns, options.metadata);
  char* meta = small_meta;
  if (meta_size > sizeof(small_meta)) {
    large_meta.emplace();
    large_meta->get()->resize(meta_size);
    meta = large_meta->get()->data();
  }
  WriteCallHeader(method_name, timeout_ns, options.metadata, meta);
  absl::Status sent = SendFrame(FrameHeader::Make(FrameType::kRequest, flags, id),
                                absl::string_view(meta, meta_size), request, size, options.deadline);
  if (!sent.ok() && absl::IsInternal(sent)) {
    return absl::InternalError(absl::StrCat("cannot serialize request for ", method.full_name,
                                            " (was it modified while being sent?)"));
  }
  MarkBrokenIfUnavailable(sent);
  return sent;
}

absl::Status ConnectionCore::SendFrame(FrameHeader header, absl::string_view meta,
                                       const google::protobuf::MessageLite* message, size_t size,
                                       absl::Time deadline) {
  header.meta_length = static_cast<uint32_t>(meta.size());
  if (message == nullptr) return connection_->Send(header, meta, {}, deadline);
  header.flags |= kFlagHasMessage;
  header.payload_length = static_cast<uint32_t>(size);
  return connection_->SendWithPayloadWriter(
      header, meta, [message, size](char* out) { return WriteMessage(*message, size, out); },
      deadline);
}

void ConnectionCore::MarkBrokenIfUnavailable(const absl::Status& sent) {
  if (sent.ok() || !absl::IsUnavailable(sent)) return;
  // The transport is gone even if its reader has not said so yet: the
  // next call must not pick this connection again.
  absl::MutexLock lock(&mu_);
  broken_ = true;
  unusable_.store(true, std::memory_order_release);
}

const CallOptions& ConnectionCore::BoundedOptions(const CallOptions& options,
                                                  std::optional<CallOptions>* storage) const {
  if (options.deadline != absl::InfiniteFuture() || connection_->reliable()) return options;
  storage->emplace(options);
  (*storage)->deadline = absl::Now() + options_.datagram_call_timeout;
  return **storage;
}

absl::Status ConnectionCore::CallUnary(const RpcMethod& method,
                                       const google::protobuf::MessageLite& request,
                                       google::protobuf::MessageLite* response,
                                       const CallOptions& given_options) {
  if (!method.oneway && DeliveringOnThisThread()) {
    // Instead of waiting until the deadline (or for ever) for a reply that
    // only this thread could read.
    return absl::FailedPreconditionError(absl::StrCat(
        "synchronous call to ", method.full_name,
        " from a completion callback or inline handler running on the thread that reads its "
        "connection: its reply could never be read; make the call asynchronous"));
  }
  std::optional<CallOptions> bounded;
  const CallOptions& options = BoundedOptions(given_options, &bounded);
  if (options.deadline != absl::InfiniteFuture() && absl::Now() >= options.deadline) {
    return absl::DeadlineExceededError(absl::StrCat("deadline passed before ", method.full_name, " started"));
  }
  PendingCall call;
  call.waiter = std::this_thread::get_id();
  call.response = response;
  call.trailing_metadata = options.trailing_metadata;
  call.method = method.full_name;
  absl::StatusOr<uint64_t> id = Register(&call, absl::InfiniteFuture(), options.cancellation);
  if (!id.ok()) return id.status();
  absl::Status sent = SendRequest(method, *id, &request,
                                  kFlagEndStream | (method.oneway ? kFlagOneway : 0), options);
  if (!sent.ok() || method.oneway) {
    if (Take(*id) != nullptr) return sent;
    // Someone (OnClosed, Cancel) is completing it: wait for that below.
  } else if (options.cancellation.has_value()) {
    // Cancel() must end the wait at once, which it cannot while this thread
    // blocks reading the connection: the reply is read in the background,
    // as for an asynchronous call, and this thread waits on the call.
    AsyncCallStarted();
    absl::Status status = AwaitCompletion(&call, *id, method, options.deadline);
    AsyncCallEnded();
    return status;
  } else {
    // Read the connection on this thread if nobody else does.
    const bool drove = DriveUntil(
        [&call] { return call.finished_flag.load(std::memory_order_acquire); }, options.deadline);
    if (!drove) {
      absl::Status status = AwaitCompletion(&call, *id, method, options.deadline);
      WaitedWithoutDriving();
      return status;
    }
  }
  return AwaitCompletion(&call, *id, method, options.deadline);
}

absl::Status ConnectionCore::AwaitCompletion(PendingCall* call_ptr, uint64_t id,
                                             const RpcMethod& method, absl::Time deadline) {
  PendingCall& call = *call_ptr;
  if (call.completed_by_waiter) return call.waiter_status;
  absl::MutexLock lock(&call.mu);
  auto finished = [&call]() ABSL_SHARED_LOCKS_REQUIRED(call.mu) { return call.finished; };
  if (!call.mu.AwaitWithDeadline(absl::Condition(&finished), deadline)) {
    call.mu.Unlock();
    bool expired = Take(id) != nullptr;
    if (expired) {
      FrameHeader cancel = FrameHeader::Make(FrameType::kCancel, 0, id);
      (void)connection_->Send(cancel, {}, {}, absl::Now());  // best effort, never waits
    }
    call.mu.Lock();
    if (expired) {
      return absl::DeadlineExceededError(absl::StrCat("deadline exceeded waiting for ", method.full_name));
    }
    // The reply is being delivered right now: wait for it to finish.
    call.mu.Await(absl::Condition(&finished));
  }
  return call.status;
}

void ConnectionCore::StartUnary(const RpcMethod& method,
                                const google::protobuf::MessageLite& request,
                                google::protobuf::MessageLite* response,
                                const CallOptions& given_options,
                                absl::AnyInvocable<void(absl::Status) &&> done) {
  std::optional<CallOptions> bounded;
  const CallOptions& options = BoundedOptions(given_options, &bounded);
  if (absl::Now() >= options.deadline) {
    std::move(done)(absl::DeadlineExceededError(
        absl::StrCat("deadline passed before ", method.full_name, " started")));
    return;
  }
  AsyncCallStarted();
  auto* call = new PendingCall();
  call->response = response;
  call->trailing_metadata = options.trailing_metadata;
  call->method = method.full_name;
  call->done = std::move(done);
  call->keepalive = shared_from_this();
  const absl::Time timer_deadline =
      options.deadline != absl::InfiniteFuture() && !method.oneway ? options.deadline
                                                                   : absl::InfiniteFuture();
  absl::StatusOr<uint64_t> id = Register(call, timer_deadline, options.cancellation);
  if (!id.ok()) {
    Complete(call, id.status());
    return;
  }
  absl::Status sent = SendRequest(method, *id, &request,
                                  kFlagEndStream | (method.oneway ? kFlagOneway : 0), options);
  if (!sent.ok() || method.oneway) {
    if (PendingCall* taken = Take(*id)) Complete(taken, sent);
  }
}

void ConnectionCore::AbandonCall(uint64_t id, absl::Status status, bool by_its_timer) {
  PendingCall* call = Take(id);
  if (call == nullptr) return;
  if (by_its_timer) call->timer = 0;  // running now; nothing to cancel
  // On the process-wide timer thread: best effort, never waits for a peer
  // that stopped reading.
  FrameHeader cancel = FrameHeader::Make(FrameType::kCancel, 0, id);
  (void)connection_->Send(cancel, {}, {}, absl::Now());
  Complete(call, absl::Status(status.code(), absl::StrCat(status.message(), " waiting for ", call->method)));
}

void ConnectionCore::SendGoAway(const absl::Status& reason) {
  wire::GoAway goaway;
  {
    // From now on calls above this id are refused (HandleRequest), so that
    // the peer may fail them at once: GOAWAY says they were not processed.
    absl::MutexLock lock(&mu_);
    if (!goaway_sent_) {
      goaway_sent_ = true;
      goaway_last_processed_ = last_peer_call_id_;
    }
    goaway.set_last_processed_call_id(goaway_last_processed_);
  }
  goaway.set_code(static_cast<int>(reason.code()));
  goaway.set_reason(std::string(reason.message()));
  std::string meta = goaway.SerializeAsString();
  FrameHeader header = FrameHeader::Make(FrameType::kGoAway, 0, 0);
  header.meta_length = static_cast<uint32_t>(meta.size());
  (void)connection_->Send(header, meta, {}, absl::Now() + absl::Seconds(1));
}

void ConnectionCore::Close(const absl::Status& reason) {
  closing_.store(true, std::memory_order_release);
  connection_->Close(reason);
}

void ConnectionCore::ProtocolError(const std::string& what) {
  LOCUS_LOG(WARNING) << "protocol error from " << peer().remote_address << ": " << what
                     << "; closing the connection";
  connection_->Close(absl::InternalError(absl::StrCat("protocol error: ", what)));
}

// ---------------------------------------------------------------------------
// Streams (the state of each lives in a StreamCall, internal/stream_call.h)

uint64_t ConnectionCore::ReceiveWindow() const {
  return std::max(options_.stream_window_bytes, kMinStreamWindowBytes);
}

uint64_t ConnectionCore::PeerStreamWindow() const {
  const uint64_t window = peer_hello_.stream_window_bytes();
  return window == 0 ? kMinStreamWindowBytes : window;
}

absl::StatusOr<std::shared_ptr<StreamCall>> ConnectionCore::RegisterStream(
    const RpcMethod& method, const CallOptions& options, google::protobuf::MessageLite* response) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::UnavailableError(absl::StrCat("connection closed: ", close_reason_.message()));
  }
  if (draining_) return absl::UnavailableError("server is shutting down (GOAWAY)");
  const uint64_t id = next_call_id_;
  next_call_id_ += 2;
  auto stream = std::make_shared<StreamCall>(this, StreamCall::Side::kClient, method, id,
                                             options.deadline, PeerStreamWindow(), ReceiveWindow(),
                                             options_.max_send_message_size, response);
  stream->trailing_metadata = options.trailing_metadata;
  if (options.cancellation.has_value()) {
    absl::Status watched =
        WatchCancellation(*options.cancellation, id, /*stream=*/true, &stream->cancel_registration);
    if (!watched.ok()) return watched;
  }
  if (options.deadline != absl::InfiniteFuture()) {
    // Tells the server at the deadline even if the client is not waiting
    // on the stream then. Scheduled under mu_ as in Register(); End()
    // cancels it.
    std::weak_ptr<ConnectionCore> weak = weak_from_this();
    stream->deadline_timer = TimerQueue::Get().Schedule(options.deadline, [weak, id] {
      if (std::shared_ptr<ConnectionCore> self = weak.lock()) {
        self->AbandonStream(id, absl::DeadlineExceededError("deadline exceeded"), /*by_its_timer=*/true);
      }
    });
  }
  streams_.emplace(id, stream);
  return stream;
}

std::shared_ptr<StreamCall> ConnectionCore::FindStream(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second;
}

std::shared_ptr<StreamCall> ConnectionCore::TakeStream(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  if (it == streams_.end()) return nullptr;
  std::shared_ptr<StreamCall> stream = std::move(it->second);
  streams_.erase(it);
  return stream;
}

std::unique_ptr<ClientCallStream> ConnectionCore::OpenStream(
    const RpcMethod& method, const google::protobuf::MessageLite* request,
    google::protobuf::MessageLite* response, const CallOptions& options) {
  if (method.kind == RpcKind::kUnary) {
    return MakeFailedClientStream(
        absl::InvalidArgumentError(absl::StrCat(method.full_name, " is not a streaming method")));
  }
  if (!connection_->reliable()) {
    return MakeFailedClientStream(absl::FailedPreconditionError(absl::StrCat(
        "streaming call to ", method.full_name, " needs a reliable transport, not ",
        peer().transport, " (datagrams may be lost)")));
  }
  if ((method.kind == RpcKind::kServerStreaming) != (request != nullptr) ||
      (method.kind == RpcKind::kClientStreaming) != (response != nullptr)) {
    return MakeFailedClientStream(absl::InvalidArgumentError(absl::StrCat(
        "streaming call to ", method.full_name, " opened with the wrong request/response")));
  }
  if (absl::Now() >= options.deadline) {
    return MakeFailedClientStream(absl::DeadlineExceededError(
        absl::StrCat("deadline passed before ", method.full_name, " started")));
  }
  absl::StatusOr<std::shared_ptr<StreamCall>> stream = RegisterStream(method, options, response);
  if (!stream.ok()) return MakeFailedClientStream(stream.status());
  // A server-streaming request goes with the REQUEST, which half-closes.
  absl::Status sent = SendRequest(method, (*stream)->id(), request,
                                  request != nullptr ? kFlagEndStream : 0, options);
  if (!sent.ok()) {
    if (TakeStream((*stream)->id()) != nullptr) (*stream)->End(sent);
  }
  return MakeClientStream(shared_from_this(), *std::move(stream));
}

void ConnectionCore::AbandonStream(uint64_t id, absl::Status status, bool by_its_timer) {
  std::shared_ptr<StreamCall> stream = TakeStream(id);
  if (stream == nullptr) return;
  if (by_its_timer) stream->deadline_timer = 0;  // running now: must not cancel itself
  stream->End(
      absl::Status(status.code(), absl::StrCat(status.message(), " on ", stream->method().full_name)));
  // On the timer thread: best effort, never waits for a peer that stopped reading.
  FrameHeader cancel = FrameHeader::Make(FrameType::kCancel, 0, id);
  (void)connection_->Send(cancel, {}, {}, absl::Now());
}

void ConnectionCore::AbortStream(StreamCall* stream, absl::Status status) {
  if (stream->side() == StreamCall::Side::kClient) {
    // Whoever takes it from the table ends it (the reader, with the
    // server's status, or here).
    std::shared_ptr<StreamCall> taken = TakeStream(stream->id());
    if (taken == nullptr) return;
    taken->End(std::move(status));
    FrameHeader cancel = FrameHeader::Make(FrameType::kCancel, 0, taken->id());
    (void)connection_->Send(cancel, {}, {}, absl::Now());
    return;
  }
  // Server: the handler still runs (it learns from IsCancelled, Read and
  // Write); the client learns now. Claimed before ending the stream: the
  // handler, woken by End, must find the answer taken.
  const bool answer = stream->ClaimResponse();
  stream->End(status);
  // Not waiting for room in the connection beyond now: this may run on
  // the thread that reads it.
  if (answer) SendError(stream->id(), status, absl::Now());
}

absl::Status ConnectionCore::SendStreamMessage(uint64_t id,
                                               const google::protobuf::MessageLite* message,
                                               size_t size, uint32_t flags, absl::Time deadline) {
  absl::Status sent =
      SendFrame(FrameHeader::Make(FrameType::kMessage, flags, id), {}, message, size, deadline);
  if (!sent.ok() && absl::IsInternal(sent)) {
    return absl::InternalError("cannot serialize a stream message (was it modified while being sent?)");
  }
  MarkBrokenIfUnavailable(sent);
  return sent;
}

void ConnectionCore::SendWindowUpdate(uint64_t id, uint64_t increment, absl::Time deadline) {
  wire::WindowUpdate update;
  update.set_increment(increment);
  std::string meta = update.SerializeAsString();
  FrameHeader header = FrameHeader::Make(FrameType::kWindowUpdate, 0, id);
  header.meta_length = static_cast<uint32_t>(meta.size());
  (void)connection_->Send(header, meta, {}, deadline);
}

void ConnectionCore::HandleMessage(Frame& frame) {
  // Unknown ids are calls that ended here (cancelled, expired, answered):
  // their late messages are dropped.
  std::shared_ptr<StreamCall> stream = FindStream(frame.header.call_id);
  if (stream == nullptr) return;
  if ((frame.header.flags & kFlagHasMessage) != 0) {
    switch (stream->OnMessage(frame.TakePayload())) {
      case StreamCall::Received::kQueued:
      case StreamCall::Received::kDropped:
        break;
      case StreamCall::Received::kOverrun:
        AbortStream(stream.get(), absl::ResourceExhaustedError(absl::StrCat(
                                      "peer sent beyond the flow-control window of ",
                                      stream->method().full_name)));
        return;
      case StreamCall::Received::kAfterHalfClose:
        AbortStream(stream.get(), absl::InvalidArgumentError(absl::StrCat(
                                      "peer sent a message on ", stream->method().full_name,
                                      " after ending its stream")));
        return;
    }
  }
  if ((frame.header.flags & kFlagEndStream) != 0) stream->OnHalfClose();
}

void ConnectionCore::HandleWindowUpdate(const Frame& frame) {
  wire::WindowUpdate update;
  if (!ParseMeta(frame, &update)) {
    ProtocolError("malformed WINDOW_UPDATE");
    return;
  }
  if (std::shared_ptr<StreamCall> stream = FindStream(frame.header.call_id)) {
    stream->OnWindowUpdate(update.increment());
  }
}

void ConnectionCore::FinishClientStream(StreamCall& stream, const Frame& frame) {
  absl::Status status = ResponseStatus(frame, stream.trailing_metadata);
  if (status.ok() && stream.response() != nullptr) {
    status = ParseReply(frame, stream.method().full_name, stream.response());
  }
  // Messages that arrived before the status stay readable, as in gRPC.
  stream.End(std::move(status), /*keep_unread=*/true);
}

// ---------------------------------------------------------------------------
// Receiving

void ConnectionCore::OnFrame(Frame& frame) {
  struct Delivering {
    DeliveringScope scope;
    explicit Delivering(const ConnectionCore* core) : scope{core, t_delivering} { t_delivering = &scope; }
    ~Delivering() { t_delivering = scope.outer; }
  } delivering(this);
  const FrameType type = frame.header.frame_type();
  if (!handshake_flag_.load(std::memory_order_acquire) && type != FrameType::kHello &&
      type != FrameType::kHelloAck && type != FrameType::kGoAway) {
    ProtocolError(absl::StrCat("expected a handshake, got ", DescribeFrameHeader(frame.header)));
    return;
  }
  // The reply to a call (the hot path) takes the reference it needs itself.
  if (type == FrameType::kResponse) {
    HandleResponse(frame);
    return;
  }
  // A handler or a stream's callback run from here may drop the last other
  // reference, unless the owner holds one until closed.
  std::shared_ptr<ConnectionCore> self;
  if (!options_.owner_holds_until_closed) self = weak_from_this().lock();
  switch (type) {
    case FrameType::kHello:
    case FrameType::kHelloAck:
      HandleHello(frame);
      return;
    case FrameType::kRequest:
      HandleRequest(frame);
      return;
    case FrameType::kResponse:
      return;  // handled above
    case FrameType::kCancel: {
      std::shared_ptr<StreamCall> stream;
      {
        absl::MutexLock lock(&mu_);
        auto it = serving_.find(frame.header.call_id);
        if (it != serving_.end()) it->second->store(true, std::memory_order_release);
        auto s = streams_.find(frame.header.call_id);
        if (s != streams_.end() && s->second->side() == StreamCall::Side::kServer) stream = s->second;
      }
      if (stream != nullptr) stream->End(absl::CancelledError("cancelled by the client"));
      return;
    }
    case FrameType::kPing: {
      FrameHeader pong = FrameHeader::Make(FrameType::kPong, 0, frame.header.call_id);
      pong.payload_length = frame.header.payload_length;
      (void)connection_->Send(pong, {}, frame.payload_bytes(), absl::Now() + absl::Seconds(5));
      return;
    }
    case FrameType::kPong:
      return;
    case FrameType::kGoAway:
      HandleGoAway(frame);
      return;
    case FrameType::kMessage:
      HandleMessage(frame);
      return;
    case FrameType::kWindowUpdate:
      HandleWindowUpdate(frame);
      return;
    case FrameType::kTransportSetup:
      // Transport-level (the shm upgrade): never valid inside the frame stream.
      ProtocolError(absl::StrCat("unexpected ", DescribeFrameHeader(frame.header)));
      return;
  }
}

void ConnectionCore::HandleHello(const Frame& frame) {
  const bool is_hello = frame.header.frame_type() == FrameType::kHello;
  // The connecting side sends HELLO and receives HELLO_ACK; the other side
  // the reverse. Anything else, or a second handshake, is a protocol error.
  if (is_hello == options_.connecting_side || handshake_flag_.load()) {
    ProtocolError(absl::StrCat("unexpected handshake frame ", DescribeFrameHeader(frame.header)));
    return;
  }
  wire::Hello hello;
  if (!ParseMeta(frame, &hello)) {
    ProtocolError("malformed HELLO");
    return;
  }
  absl::Status version_ok = absl::OkStatus();
  if (hello.min_protocol_version() > kProtocolVersion || hello.max_protocol_version() < kProtocolVersion) {
    version_ok = absl::FailedPreconditionError(absl::StrCat(
        "peer speaks protocol versions ", hello.min_protocol_version(), "-",
        hello.max_protocol_version(), "; this side speaks ", kProtocolVersion));
  }
  if (is_hello && version_ok.ok() && !options_.allowed_uids.empty() && peer_.has_credentials &&
      std::find(options_.allowed_uids.begin(), options_.allowed_uids.end(), peer_.uid) ==
          options_.allowed_uids.end()) {
    version_ok = absl::PermissionDeniedError(
        absl::StrCat("uid ", peer_.uid, " is not allowed to call this server"));
  }
  if (is_hello) {
    if (!version_ok.ok()) {
      LOCUS_LOG(WARNING) << "rejecting " << peer().remote_address << ": " << version_ok.message();
      SendGoAway(version_ok);
      connection_->Close(version_ok);
      return;
    }
    std::string meta = MakeHello().SerializeAsString();
    FrameHeader ack = FrameHeader::Make(FrameType::kHelloAck, 0, 0);
    ack.meta_length = static_cast<uint32_t>(meta.size());
    if (!connection_->Send(ack, meta, {}, absl::Now() + absl::Seconds(10)).ok()) return;
  }
  peer_hello_ = std::move(hello);
  absl::MutexLock lock(&mu_);
  handshake_error_ = version_ok;
  handshake_done_ = version_ok.ok();
  handshake_flag_.store(true, std::memory_order_release);
}

void ConnectionCore::HandleGoAway(const Frame& frame) {
  wire::GoAway goaway;
  (void)ParseMeta(frame, &goaway);  // best effort: the frame's meaning is the type
  absl::Status reason(static_cast<absl::StatusCode>(
                          goaway.code() >= 0 && goaway.code() <= 16 ? goaway.code() : 2),
                      goaway.reason());
  // Calls above last_processed_call_id were not processed and will not be
  // (the peer refuses calls once it sent GOAWAY; a UDP server without a
  // session for us dropped them): they fail now, UNAVAILABLE, instead of at
  // their deadline.
  std::vector<PendingCall*> refused_calls;
  std::vector<std::shared_ptr<StreamCall>> refused_streams;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    unusable_.store(true, std::memory_order_release);
    if (!handshake_done_) {
      handshake_error_ = reason.ok() ? absl::UnavailableError("peer refused the connection") : reason;
      handshake_flag_.store(true, std::memory_order_release);
    }
    const uint64_t last = goaway.last_processed_call_id();
    for (auto it = pending_.begin(); it != pending_.end();) {
      auto current = it++;
      if (current->first > last) {
        refused_calls.push_back(current->second);
        pending_.erase(current);
      }
    }
    for (auto it = streams_.begin(); it != streams_.end();) {
      auto current = it++;
      if (current->first > last && current->second->side() == StreamCall::Side::kClient) {
        refused_streams.push_back(std::move(current->second));
        streams_.erase(current);
      }
    }
  }
  const absl::Status not_processed = absl::UnavailableError(absl::StrCat(
      "the server did not process the call (GOAWAY: ",
      reason.message().empty() ? "going away" : reason.message(), ")"));
  // Streams first: a completion callback may use one of them, and must
  // find it ended rather than wait for it (StreamCall::Await).
  for (const auto& stream : refused_streams) stream->End(not_processed);
  for (PendingCall* call : refused_calls) Complete(call, not_processed);
}

void ConnectionCore::HandleResponse(const Frame& frame) {
  PendingCall* call = Take(frame.header.call_id);
  if (call == nullptr) {
    // A stream this side started (a RESPONSE for a stream the peer
    // started is meaningless and dropped). Its callbacks may drop the last
    // other reference to this connection.
    std::shared_ptr<ConnectionCore> self = weak_from_this().lock();
    std::shared_ptr<StreamCall> stream = FindStream(frame.header.call_id);
    if (stream != nullptr && stream->side() == StreamCall::Side::kClient &&
        TakeStream(frame.header.call_id) != nullptr) {
      FinishClientStream(*stream, frame);
    }
    return;  // otherwise cancelled or expired: drop the late reply
  }
  absl::Status status = ResponseStatus(frame, call->trailing_metadata);
  if (status.ok()) status = ParseReply(frame, call->method, call->response);
  // An asynchronous call holds the connection until its callback returned
  // (PendingCall::keepalive), which may be the last reference: nothing here
  // touches this object after Complete().
  Complete(call, std::move(status));
}

void ConnectionCore::HandleRequest(Frame& frame) {
  const uint64_t call_id = frame.header.call_id;
  const bool oneway = (frame.header.flags & kFlagOneway) != 0;
  // Calls the peer starts carry the peer's parity.
  if ((call_id % 2 == 1) == options_.connecting_side || call_id == 0) {
    ProtocolError(absl::StrCat("call id ", call_id, " has the wrong parity"));
    return;
  }
  CallHeaderView header;  // views the frame's meta
  if (!DecodeCallHeader(frame.meta_bytes(), &header)) {
    if (!oneway) SendError(call_id, absl::InvalidArgumentError("malformed call header"), absl::InfiniteFuture());
    return;
  }
  IncomingCall call;
  call.call_id = call_id;
  call.oneway = oneway;
  call.deadline = DeadlineFromTimeout(header.timeout_ns);
  call.entry = options_.services == nullptr ? nullptr : options_.services->Find(header.method);
  absl::Status refused = absl::OkStatus();
  const RpcKind kind = call.entry != nullptr ? call.entry->method->kind : RpcKind::kUnary;
  const bool streaming = kind != RpcKind::kUnary;
  if (call.entry == nullptr) {
    refused = absl::UnimplementedError(absl::StrCat("unknown method ", header.method));
  } else if ((kind == RpcKind::kUnary || kind == RpcKind::kServerStreaming) &&
             (frame.header.flags & kFlagHasMessage) == 0) {
    refused = absl::InvalidArgumentError(absl::StrCat("request for ", header.method, " without a message"));
  } else if (streaming && options_.stream_pool == nullptr) {
    refused = absl::UnimplementedError(absl::StrCat("this side serves no streaming calls (", header.method, ")"));
  } else if (streaming && !connection_->reliable()) {
    refused = absl::FailedPreconditionError(absl::StrCat(
        "streaming call to ", header.method, " needs a reliable transport, not ", peer().transport));
  } else if (streaming && oneway) {
    refused = absl::InvalidArgumentError(absl::StrCat("streaming call to ", header.method, " marked oneway"));
  }
  // A handler running inline occupies the connection's reader, so no CANCEL
  // can be read while it runs: it is cancelled by its deadline or by this
  // side closing the connection (closing_, shared by all inline calls, held
  // without ownership: OnFrame, or for a server's connection the server's
  // set, keeps this object alive until Serve returns),
  // and needs no table entry, only a count for graceful shutdown. Pooled
  // handlers get their own flag and a table entry.
  // Streaming handlers always run on the stream pool (they block in Read
  // and Write); the call's flag lives in its StreamCall.
  const bool pooled = options_.handler_pool != nullptr || streaming;
  if (streaming && refused.ok()) {
    call.stream = std::make_shared<StreamCall>(
        this, StreamCall::Side::kServer, *call.entry->method, call_id, call.deadline,
        PeerStreamWindow(), ReceiveWindow(), options_.max_send_message_size, nullptr);
    call.cancelled = std::shared_ptr<std::atomic<bool>>(call.stream, &call.stream->cancelled_flag());
    // The REQUEST may carry the first message and END_STREAM.
    if ((frame.header.flags & kFlagHasMessage) != 0) (void)call.stream->OnMessage(frame.TakePayload());
    if ((frame.header.flags & kFlagEndStream) != 0) call.stream->OnHalfClose();
  } else {
    call.cancelled = pooled ? std::make_shared<std::atomic<bool>>(false)
                            : std::shared_ptr<std::atomic<bool>>(std::shared_ptr<void>(), &closing_);
  }
  // An id still in use would make two calls share table entries (ids need
  // not arrive in increasing order: concurrent callers take ids, then send,
  // in either order). Checked under the lock the registration takes anyway.
  bool in_use = false;
  {
    absl::MutexLock lock(&mu_);
    // (An inline unary server has both tables empty: no hashing then.)
    in_use = (!serving_.empty() && serving_.contains(call_id)) ||
             (!streams_.empty() && streams_.contains(call_id));
    if (in_use) refused = absl::InternalError("call id in use");  // registers nothing
    if (draining_ || closed_ || (goaway_sent_ && call_id > goaway_last_processed_)) {
      refused = absl::UnavailableError("server is shutting down");
    }
    if (refused.ok() && streaming && open_peer_streams_ >= options_.max_streams_from_peer) {
      refused = absl::ResourceExhaustedError(
          absl::StrCat("too many streaming calls open on this connection (at most ",
                       options_.max_streams_from_peer, ")"));
    }
    last_peer_call_id_ = std::max(last_peer_call_id_, call_id);
    if (refused.ok()) {
      if (pooled) {
        serving_[call_id] = call.cancelled;
      } else {
        inline_serving_.fetch_add(1, std::memory_order_relaxed);
      }
      if (call.stream != nullptr) {
        streams_[call_id] = call.stream;
        ++open_peer_streams_;
      }
    }
  }
  if (in_use) {
    // A datagram transport may duplicate a REQUEST: drop the copy.
    if (connection_->reliable()) ProtocolError(absl::StrCat("call id ", call_id, " is already in use"));
    return;
  }
  if (!refused.ok()) {
    if (!oneway) SendError(call_id, refused, call.deadline);
    return;
  }
  call.metadata = std::move(header.metadata);
  if (streaming) {
    options_.stream_pool->Post([self = shared_from_this(), call = std::move(call),
                                method = std::string(header.method)]() mutable {
      self->Serve(call, method, {});
    });
  } else if (pooled) {
    // The frame's buffers go back to the transport when this returns: the
    // pooled handler takes its own copies.
    options_.handler_pool->Post([self = shared_from_this(), call = std::move(call),
                                 method = std::string(header.method),
                                 payload = frame.TakePayload()]() mutable {
      self->Serve(call, method, payload);
    });
  } else {
    Serve(call, header.method, frame.payload_bytes());
  }
}

void ConnectionCore::Serve(IncomingCall& call, absl::string_view method, absl::string_view payload) {
  ServerContext context(method, call.deadline, std::move(call.metadata), &peer(), call.cancelled);
  // The reply is sent from inside the handler's Finish, while the handler's
  // response message is alive: it is serialized straight into the transport.
  class Sink final : public ReplySink {
   public:
    Sink(ConnectionCore* core, IncomingCall& call, ServerContext& context)
        : core_(core), call_(call), context_(context) {}
    void Finish(const absl::Status& status, const google::protobuf::MessageLite* reply) override {
      if (finished_) return;  // at most once, whatever the handler does
      finished_ = true;
      core_->FinishServing(call_, context_, status, reply);
    }
    bool finished() const { return finished_; }

   private:
    ConnectionCore* const core_;
    IncomingCall& call_;
    ServerContext& context_;
    bool finished_ = false;
  };
  Sink sink(this, call, context);
  if (call.stream != nullptr) {
    call.entry->handler->CallStream(&context, *call.stream, sink);
  } else {
    call.entry->handler->CallSerialized(&context, payload, sink);
  }
  if (!sink.finished()) {
    sink.Finish(absl::InternalError(absl::StrCat("handler of ", method, " returned no result")), nullptr);
  }
}

void ConnectionCore::FinishServing(IncomingCall& call, const ServerContext& context,
                                   absl::Status status, const google::protobuf::MessageLite* reply) {
  size_t reply_size = 0;
  // Unary and client-streaming calls end with a reply; the others streamed theirs.
  const bool reply_expected = call.entry->method->kind == RpcKind::kUnary ||
                              call.entry->method->kind == RpcKind::kClientStreaming;
  if (!reply_expected) reply = nullptr;
  if (call.deadline != absl::InfiniteFuture() && absl::Now() >= call.deadline) {
    // As in gRPC: past its deadline a call ends DEADLINE_EXCEEDED whatever
    // the handler produced, so the client sees one outcome however the
    // reply and its own timer race.
    status = absl::DeadlineExceededError(
        absl::StrCat("deadline exceeded while the server handled ", context.method()));
  } else if (status.ok() && reply_expected) {
    if (reply == nullptr || !reply->IsInitialized()) {
      status = absl::InternalError(absl::StrCat("cannot serialize reply of ", context.method()));
    } else {
      reply_size = reply->ByteSizeLong();
      if (reply_size > options_.max_send_message_size ||
          reply_size > kMaxMessageBytes) {
        status = absl::ResourceExhaustedError(
            absl::StrCat("reply of ", reply_size, " bytes exceeds the server's send limit of ",
                         options_.max_send_message_size, " bytes"));
      }
    }
  }
  if (call.stream != nullptr) {
    // Before the reply: a client that saw its stream end may open the next
    // one at once, and must find the slot free.
    absl::MutexLock lock(&mu_);
    streams_.erase(call.call_id);
    --open_peer_streams_;
  }
  SendOutcome(call, context, status, reply, reply_size);
  // Only now: until its reply is handed to the transport, the call counts
  // as in progress for Server::Shutdown, which closes the connection once
  // none is (which also waits for the transport to hand queued output to
  // the peer: has_queued_output).
  EndServing(call);
}

void ConnectionCore::EndServing(const IncomingCall& call) {
  if (options_.handler_pool == nullptr && call.stream == nullptr) {
    inline_serving_.fetch_sub(1, std::memory_order_acq_rel);  // no table entry: no lock
    return;
  }
  absl::MutexLock lock(&mu_);
  serving_.erase(call.call_id);
}

void ConnectionCore::SendOutcome(IncomingCall& call, const ServerContext& context,
                                 const absl::Status& status,
                                 const google::protobuf::MessageLite* reply, size_t reply_size) {
  if (call.oneway) {
    if (!status.ok()) LOCUS_LOG(INFO) << "oneway " << context.method() << " failed: " << status;
    return;
  }
  // Cancelled by the client (CANCEL) or the connection is gone: nobody
  // waits for the reply.
  const bool cancelled =
      call.cancelled->load(std::memory_order_acquire) && absl::Now() < call.deadline;
  if (call.stream != nullptr) {
    // A stream may have been answered already (an error that ended it
    // early); its writes fail from now on.
    const bool answer = call.stream->ClaimResponse();
    call.stream->End(absl::CancelledError("the handler returned"));
    if (!answer) return;
  }
  if (cancelled) return;
  SendResponse(call.call_id, status, status.ok() ? reply : nullptr, reply_size,
               context.trailing_metadata(), call.deadline);
}

void ConnectionCore::SendError(uint64_t call_id, const absl::Status& status, absl::Time deadline) {
  SendResponse(call_id, status, nullptr, 0, {}, deadline);
}

void ConnectionCore::SendResponse(uint64_t call_id, const absl::Status& status,
                                  const google::protobuf::MessageLite* reply, size_t reply_size,
                                  const Metadata& trailers, absl::Time deadline) {
  std::string meta;
  if (!status.ok() || !trailers.empty()) {
    wire::CallStatus wire_status;
    wire_status.set_code(static_cast<int>(status.code()));
    wire_status.set_message(std::string(status.message()));
    for (const auto& [key, value] : trailers) {
      wire::MetadataEntry* entry = wire_status.add_trailing_metadata();
      entry->set_key(key);
      entry->set_value(value);
    }
    meta = wire_status.SerializeAsString();
  }
  // The client stops waiting at its deadline; give the send a little slack
  // beyond it so a reply racing the deadline is not cut mid-way.
  absl::Time send_deadline =
      deadline == absl::InfiniteFuture() ? absl::InfiniteFuture() : deadline + absl::Seconds(1);
  absl::Status sent = SendFrame(FrameHeader::Make(FrameType::kResponse, 0, call_id), meta, reply,
                                reply_size, send_deadline);
  if (!sent.ok() && absl::IsResourceExhausted(sent) && reply != nullptr) {
    // The transport cannot carry a frame this large (a UDP datagram): the
    // client still gets an answer.
    SendError(call_id, sent, deadline);
    return;
  }
  if (!sent.ok() && absl::IsInternal(sent) && reply != nullptr) {
    // Nothing was sent for this call: the client still gets an answer.
    SendError(call_id,
              absl::InternalError(
                  "cannot serialize the reply (was it modified after the handler returned?)"),
              deadline);
    return;
  }
  if (!sent.ok()) {
    LOCUS_LOG(INFO) << "could not send reply for call " << call_id << ": " << sent;
  }
}

void ConnectionCore::OnOversizeFrame(const FrameHeader& header) {
  switch (header.frame_type()) {
    case FrameType::kRequest:
      if ((header.flags & kFlagOneway) == 0) {
        SendError(header.call_id,
                  absl::ResourceExhaustedError(absl::StrCat(
                      "request of ", header.payload_length, " bytes exceeds the server's limit of ",
                      options_.max_receive_message_size, " bytes")),
                  absl::InfiniteFuture());
      }
      return;
    case FrameType::kMessage:
      if (std::shared_ptr<StreamCall> stream = FindStream(header.call_id)) {
        AbortStream(stream.get(), absl::ResourceExhaustedError(absl::StrCat(
                                      "message of ", header.payload_length,
                                      " bytes exceeds the limit of ",
                                      options_.max_receive_message_size, " bytes")));
      }
      return;
    case FrameType::kResponse:
      if (std::shared_ptr<StreamCall> stream = FindStream(header.call_id);
          stream != nullptr && stream->side() == StreamCall::Side::kClient) {
        AbortStream(stream.get(), absl::ResourceExhaustedError(absl::StrCat(
                                      "reply of ", header.payload_length,
                                      " bytes exceeds the limit of ",
                                      options_.max_receive_message_size, " bytes")));
        return;
      }
      if (PendingCall* call = Take(header.call_id)) {
        Complete(call, absl::ResourceExhaustedError(absl::StrCat(
                           "reply of ", header.payload_length, " bytes exceeds the limit of ",
                           options_.max_receive_message_size, " bytes")));
      }
      return;
    default:
      LOCUS_LOG(WARNING) << "dropped oversize " << DescribeFrameHeader(header) << " from "
                         << peer().remote_address;
      return;
  }
}

void ConnectionCore::OnClosed(const absl::Status& reason) {
  std::shared_ptr<ConnectionCore> self = weak_from_this().lock();  // null while destroying
  absl::flat_hash_map<uint64_t, PendingCall*> pending;
  absl::flat_hash_map<uint64_t, std::shared_ptr<StreamCall>> streams;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    closing_.store(true, std::memory_order_release);
    unusable_.store(true, std::memory_order_release);
    close_reason_ = reason;
    pending.swap(pending_);
    streams.swap(streams_);
    for (auto& [id, flag] : serving_) flag->store(true, std::memory_order_release);
  }
  absl::Status failure = absl::UnavailableError(
      absl::StrCat("connection to ", peer().remote_address, " lost: ", reason.message()));
  for (auto& [id, stream] : streams) stream->End(failure);  // before callbacks, as above
  for (auto& [id, call] : pending) Complete(call, failure);
  if (options_.on_closed) options_.on_closed(this);
}

}  // namespace locus::internal
