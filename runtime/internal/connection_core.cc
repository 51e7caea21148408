// ConnectionCore's lifecycle: creation, the handshake, frame dispatch,
// GOAWAY both ways, oversize frames and closure. Calls live in
// connection_core_client.cc, connection_core_server.cc and
// connection_core_streams.cc.
#include "internal/connection_core.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/timer_queue.h"
#include "google/protobuf/message_lite.h"
#include "internal/call_not_seen.h"
#include "internal/connection_core_frames.h"
#include "internal/host_identity.h"

namespace locus::internal {
namespace {
// The payload of every PING and PONG.
constexpr uint32_t kPingPayloadSize = 8;
}  // namespace
namespace {

constexpr char kImplementation[] = "locus-c++/0.1.0";

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

uint64_t NextSerial() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

std::shared_ptr<ConnectionCore> ConnectionCore::Create(std::unique_ptr<Connection> connection,
                                                       Options options) {
  return std::shared_ptr<ConnectionCore>(new ConnectionCore(std::move(connection), std::move(options)));
}

ConnectionCore::ConnectionCore(std::unique_ptr<Connection> connection, Options options)
    : options_(std::move(options)),
      peer_(connection->peer()),
      next_call_id_(options_.connecting_side ? 1 : 2),
      serial_(NextSerial()),
      connection_(std::move(connection)) {}

ConnectionCore::~ConnectionCore() {
  // Destroying the connection waits for its reader and delivers OnClosed if
  // still due (failing outstanding calls); members stay valid meanwhile.
  connection_->Close(absl::UnavailableError("connection released"));
}

void ConnectionCore::Start() {
  connection_->Start(this);
  // A side that serves calls needs its connection read at all times (one
  // that offers a bootstrap object too: the peer may call it whenever). A
  // plain client needs background reads only while asynchronous calls are
  // outstanding: synchronous callers read their own replies (DriveUntil).
  if (options_.connecting_side && options_.services == nullptr && options_.bootstrap == nullptr) {
    on_demand_background_reads_ = true;
    connection_->AdjustBackgroundReads(-1);
  }
  StartLiveness();
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

void ConnectionCore::WillWaitWithoutDriving() {
  if (on_demand_background_reads_) connection_->AdjustBackgroundReads(+1);
}

void ConnectionCore::WaitedWithoutDriving() {
  if (on_demand_background_reads_) connection_->AdjustBackgroundReads(-1);
}

// ---------------------------------------------------------------------------
// Handshake

wire::Hello ConnectionCore::MakeHello() {
  wire::Hello hello;
  hello.set_min_protocol_version(kProtocolVersion);
  hello.set_max_protocol_version(kProtocolVersion);
  hello.set_implementation(kImplementation);
  hello.set_max_receive_message_size(options_.max_receive_message_size);
  *hello.mutable_host() = LocalHostIdentity();
  hello.set_server_instance(options_.server_instance);
  for (const std::string& endpoint : options_.local_endpoints) hello.add_local_endpoints(endpoint);
  hello.add_features("shm/1");
  hello.add_features("headers/1");
  hello.set_stream_window_bytes(ReceiveWindow());
  AddBootstrap(&hello);
  return hello;
}

absl::Status ConnectionCore::ClientHandshake(absl::Time deadline) {
  const wire::Hello hello = MakeHello();
  absl::Status sent = SendControlFrame(FrameType::kHello, 0, &hello, deadline);
  if (!sent.ok()) return sent;
  const bool drove =
      DriveUntil([this] { return HandshakeSettledLockFree(); }, deadline);
  absl::MutexLock lock(&mu_);
  auto settled = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return state_.handshake_settled(); };
  mu_.AwaitWithDeadline(absl::Condition(&settled), deadline);
  if (!drove) WaitedWithoutDriving();
  if (!state_.handshake_settled()) {
    return absl::DeadlineExceededError(
        absl::StrCat("no handshake reply from ", peer().remote_address, " (is it a Locus server?)"));
  }
  return state_.handshake_result();
}

void ConnectionCore::ExpectHandshakeBy(absl::Time deadline) {
  std::weak_ptr<ConnectionCore> weak = weak_from_this();
  handshake_timer_.store(TimerQueue::Get().Schedule(deadline, [weak] {
    std::shared_ptr<ConnectionCore> self = weak.lock();
    if (self == nullptr) return;
    self->handshake_timer_.store(0);
    if (!self->HandshakeSucceededLockFree()) {
      LOCUS_LOG(WARNING) << "closing connection from " << self->peer().remote_address
                         << ": no handshake within the time limit";
      self->Close(absl::DeadlineExceededError("handshake timed out"));
    }
  }));
  // Settled (the first datagram of a UDP session is delivered in Start),
  // or closed, before the timer was stored: nobody else cancels it.
  if (HandshakeSettledLockFree()) CancelHandshakeTimer();
}

void ConnectionCore::CancelHandshakeTimer() {
  if (TimerQueue::Id timer = handshake_timer_.exchange(0); timer != 0) TimerQueue::Get().Cancel(timer);
}

void ConnectionCore::HandleHello(const Frame& frame) {
  const bool is_hello = frame.header.frame_type() == FrameType::kHello;
  // The connecting side sends HELLO and receives HELLO_ACK; the other side
  // the reverse. Anything else, or a second handshake, is a protocol error.
  if (is_hello == options_.connecting_side || HandshakeSettledLockFree()) {
    ProtocolError(absl::StrCat("unexpected handshake frame ", DescribeFrameHeader(frame.header)));
    return;
  }
  wire::Hello hello;
  if (!ParseMeta(frame, &hello)) {
    ProtocolError("malformed HELLO");
    return;
  }
  absl::Status accepted = absl::OkStatus();
  if (hello.min_protocol_version() > kProtocolVersion || hello.max_protocol_version() < kProtocolVersion) {
    accepted = absl::FailedPreconditionError(absl::StrCat(
        "peer speaks protocol versions ", hello.min_protocol_version(), "-",
        hello.max_protocol_version(), "; this side speaks ", kProtocolVersion));
  }
  if (is_hello && accepted.ok() && !options_.allowed_uids.empty() && peer_.has_credentials &&
      std::find(options_.allowed_uids.begin(), options_.allowed_uids.end(), peer_.uid) ==
          options_.allowed_uids.end()) {
    accepted = absl::PermissionDeniedError(
        absl::StrCat("uid ", peer_.uid, " is not allowed to call this server"));
  }
  if (is_hello) {
    if (!accepted.ok()) {
      LOCUS_LOG(WARNING) << "rejecting " << peer().remote_address << ": " << accepted.message();
      SendGoAway(accepted);
      connection_->Close(accepted);
      return;
    }
    const wire::Hello ack = MakeHello();
    if (!SendControlFrame(FrameType::kHelloAck, 0, &ack, absl::Now() + absl::Seconds(10)).ok()) return;
  }
  peer_hello_ = std::move(hello);
  for (const std::string& feature : peer_hello_.features()) {
    if (feature == "headers/1") peer_speaks_headers_.store(true, std::memory_order_release);
  }
  if (accepted.ok()) ImportPeerBootstrap();
  {
    absl::MutexLock lock(&mu_);
    if (accepted.ok()) {
      state_.HandshakeSucceeded();
    } else {
      state_.HandshakeFailed(std::move(accepted));
    }
  }
  CancelHandshakeTimer();
}

// ---------------------------------------------------------------------------
// Sending

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

absl::Status ConnectionCore::SendControlFrame(FrameType type, uint64_t call_id,
                                              const google::protobuf::MessageLite* meta,
                                              absl::Time deadline) {
  const std::string bytes = meta != nullptr ? meta->SerializeAsString() : std::string();
  return SendFrame(FrameHeader::Make(type, 0, call_id), bytes, nullptr, 0, deadline);
}

void ConnectionCore::SendCancel(uint64_t id) {
  (void)SendControlFrame(FrameType::kCancel, id, nullptr, absl::Now());
}

void ConnectionCore::MarkBrokenIfUnavailable(const absl::Status& sent) {
  if (sent.ok() || !absl::IsUnavailable(sent)) return;
  // The transport is gone even if its reader has not said so yet: the
  // next call must not pick this connection again.
  absl::MutexLock lock(&mu_);
  state_.SendFailed();
}

// ---------------------------------------------------------------------------
// Call bookkeeping shared by unary calls and streams

absl::Status ConnectionCore::CheckAcceptsCallsLocked() const {
  // Nothing of a call refused here was sent: marked as not seen
  // (call_not_seen.h), so that a balanced channel may send it elsewhere.
  switch (state_.phase()) {
    case ConnectionState::Phase::kClosed:
      return MarkNotSeen(
          absl::UnavailableError(absl::StrCat("connection closed: ", state_.close_reason().message())));
    case ConnectionState::Phase::kDraining:
      if (absl::Status handshake = state_.handshake_result(); !handshake.ok()) return handshake;
      return MarkNotSeen(absl::UnavailableError("server is shutting down (GOAWAY)"));
    default:
      return absl::OkStatus();
  }
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
      self->Abandon(id, stream, absl::CancelledError("call cancelled"), /*by_its_timer=*/false);
    });
  });
  if (!registration->active()) return absl::CancelledError("call cancelled before it started");
  return absl::OkStatus();
}

uint64_t ConnectionCore::ScheduleDeadline(absl::Time deadline, uint64_t id, bool stream) {
  // Scheduled under mu_ so the timer cannot expire (and free) the call
  // before its id is recorded; the timer thread takes mu_ only after
  // releasing its own lock, so the order is safe.
  std::weak_ptr<ConnectionCore> weak = weak_from_this();
  return TimerQueue::Get().Schedule(deadline, [weak, id, stream] {
    std::shared_ptr<ConnectionCore> self = weak.lock();
    if (self == nullptr) return;
    self->Abandon(id, stream, absl::DeadlineExceededError("deadline exceeded"), /*by_its_timer=*/true);
  });
}

void ConnectionCore::Abandon(uint64_t id, bool stream, absl::Status status, bool by_its_timer) {
  if (stream) {
    AbandonStream(id, std::move(status), by_its_timer);
  } else {
    AbandonCall(id, std::move(status), by_its_timer);
  }
}

// ---------------------------------------------------------------------------
// Receiving

void ConnectionCore::OnFrame(Frame& frame) {
  struct Delivering {
    DeliveringScope scope;
    explicit Delivering(const ConnectionCore* core) : scope{core, t_delivering} { t_delivering = &scope; }
    ~Delivering() { t_delivering = scope.outer; }
  } delivering(this);
  // Any frame shows the peer alive (keepalive). One writer: no atomic add.
  frames_received_.store(frames_received_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  const FrameType type = frame.header.frame_type();
  // Until a handshake succeeded only handshake frames count, and GOAWAY only from
  // an accepting side refusing this one: an accepting side that took a
  // client's GOAWAY as the end of the handshake would serve (PING, calls) a
  // peer that never said HELLO, and keep it past the handshake timeout.
  if (!HandshakeSucceededLockFree() && type != FrameType::kHello && type != FrameType::kHelloAck &&
      !(type == FrameType::kGoAway && options_.connecting_side)) {
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
    case FrameType::kCancel:
      HandleCancel(frame.header.call_id);
      return;
    case FrameType::kPing: {
      // 8 bytes, as in HTTP/2: a larger payload would make this side echo
      // up to a message's size per frame.
      if (frame.header.payload_length != kPingPayloadSize || frame.header.meta_length != 0) {
        ProtocolError(absl::StrCat("PING with a payload of ", frame.header.payload_length, " bytes (",
                                   kPingPayloadSize, " expected)"));
        return;
      }
      // At most one answer waits at a time: while output is still queued
      // (a peer that does not read), further PINGs go unanswered instead of
      // queueing answers without bound. A peer that reads gets its answer.
      if (connection_->HasQueuedOutput()) return;
      FrameHeader pong = FrameHeader::Make(FrameType::kPong, 0, frame.header.call_id);
      pong.payload_length = frame.header.payload_length;
      (void)connection_->Send(pong, {}, frame.payload_bytes(), absl::Now() + absl::Seconds(5));
      return;
    }
    case FrameType::kPong:
      if (awaiting_drain_pong_.load(std::memory_order_acquire)) HandleDrainPong(frame);
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
    case FrameType::kHeaders:
      HandleHeaders(frame);
      return;
    case FrameType::kTransportSetup:
      // Transport-level (the shm upgrade): never valid inside the frame stream.
      ProtocolError(absl::StrCat("unexpected ", DescribeFrameHeader(frame.header)));
      return;
  }
}

void ConnectionCore::OnOversizeFrame(const FrameHeader& header) {
  frames_received_.store(frames_received_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (!HandshakeSucceededLockFree()) {
    // Not even answered: the peer has not said who it is.
    ProtocolError(absl::StrCat("expected a handshake, got ", DescribeFrameHeader(header)));
    return;
  }
  const absl::Status too_large = absl::ResourceExhaustedError(absl::StrCat(
      header.frame_type() == FrameType::kMessage ? "message of " : "reply of ", header.payload_length,
      " bytes exceeds the limit of ", options_.max_receive_message_size, " bytes"));
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
        AbortStream(stream.get(), too_large);
      }
      return;
    case FrameType::kResponse:
      if (std::shared_ptr<StreamCall> stream = FindStream(header.call_id);
          stream != nullptr && stream->side() == StreamCall::Side::kClient) {
        AbortStream(stream.get(), too_large);
        return;
      }
      if (PendingCall* call = Take(header.call_id)) Complete(call, too_large);
      return;
    default:
      LOCUS_LOG(WARNING) << "dropped oversize " << DescribeFrameHeader(header) << " from "
                         << peer().remote_address;
      return;
  }
}

// ---------------------------------------------------------------------------
// GOAWAY and closure

void ConnectionCore::SendGoAway(const absl::Status& reason) {
  // Held until the frame is handed to the transport: a refusal of a call
  // above its id waits for it (HandleRequest), so that the peer reads the
  // GOAWAY, which tells it the call was not processed, before the refusal.
  // The frame is queued or dropped, never waited for room: the drain sends
  // it from the process-wide timer thread, and a refusal holds a reader (an
  // event-loop thread) until it was handed over. A peer that takes not
  // even a queued frame reads no GOAWAY either; its calls fail as lost.
  absl::MutexLock sending(&goaway_send_mu_);
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
  (void)SendControlFrame(FrameType::kGoAway, 0, &goaway, absl::Now());
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
    state_.PeerGoingAway(reason);
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
  const absl::Status not_processed = MarkNotSeen(absl::UnavailableError(absl::StrCat(
      "the server did not process the call (GOAWAY: ",
      reason.message().empty() ? "going away" : reason.message(), ")")));
  // Streams first: a completion callback may use one of them, and must
  // find it ended rather than wait for it (StreamCall::Await).
  for (const auto& stream : refused_streams) {
    if (stream->report != nullptr) stream->report->not_processed = true;
    stream->End(not_processed);
  }
  for (PendingCall* call : refused_calls) CompleteUnprocessed(call, not_processed);
}

void ConnectionCore::Close(const absl::Status& reason) {
  BeginClosing();
  // Calls made on behalf of served calls end now, even those of inline
  // handlers, whose OnClosed comes only once they returned.
  CancelPropagated(0, /*all=*/true);
  connection_->Close(reason);
}

void ConnectionCore::ProtocolError(const std::string& what) {
  LOCUS_LOG(WARNING) << "protocol error from " << peer().remote_address << ": " << what
                     << "; closing the connection";
  connection_->Close(absl::InternalError(absl::StrCat("protocol error: ", what)));
}

bool ConnectionCore::closed() const {
  absl::MutexLock lock(&mu_);
  return state_.phase() == ConnectionState::Phase::kClosed;
}

size_t ConnectionCore::active_server_calls() const {
  absl::MutexLock lock(&mu_);
  return serving_.size() + inline_serving_.load(std::memory_order_acquire);
}

void ConnectionCore::OnClosed(const absl::Status& reason) {
  std::shared_ptr<ConnectionCore> self = weak_from_this().lock();  // null while destroying
  absl::flat_hash_map<uint64_t, PendingCall*> pending;
  absl::flat_hash_map<uint64_t, std::shared_ptr<StreamCall>> streams;
  {
    absl::MutexLock lock(&mu_);
    state_.Closed(reason);
    pending.swap(pending_);
    streams.swap(streams_);
    for (auto& [id, flag] : serving_) flag->store(true, std::memory_order_release);
  }
  CancelHandshakeTimer();
  absl::Status failure = absl::UnavailableError(
      absl::StrCat("connection to ", peer().remote_address, " lost: ", reason.message()));
  for (auto& [id, stream] : streams) stream->End(failure);  // before callbacks, as above
  for (auto& [id, call] : pending) Complete(call, failure);
  StopLiveness();
  CancelPropagated(0, /*all=*/true);
  ObjectsOnClosed(reason);
  if (options_.on_closed) options_.on_closed(this);
}

}  // namespace locus::internal
