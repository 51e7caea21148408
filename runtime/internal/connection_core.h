// The RPC state of one connection: outstanding calls this side started,
// calls the peer started that this side is serving, and the handshake. It is
// symmetric: either side of a connection can call and serve (for RMI
// callbacks), only call-id parity differs. The transport below is any
// locus::Connection (Cap'n Proto's RpcConnectionState over VatNetwork).
//
// Example (client side):
//   auto core = ConnectionCore::Create(std::move(connection), options);
//   core->Start();
//   if (absl::Status s = core->ClientHandshake(deadline); !s.ok()) return s;
//   absl::Status s = core->CallUnary(method, request, &response, call_options);
//
// Threading: frames arrive on the transport's reader (an I/O thread, or a
// synchronous caller inside CallUnary). Replies are parsed and completed on
// that thread; server handlers run inline there unless a handler pool is set.
// All public methods are thread-safe.
//
// The implementation is spread over files by concern, as gRPC's chttp2 is:
//   connection_core.cc          lifecycle: handshake, frame dispatch, GOAWAY,
//                               oversize frames, close
//   connection_core_client.cc   unary calls this side makes, their replies
//   connection_core_server.cc   calls the peer makes: admission, handlers,
//                               replies, CANCEL
//   connection_core_streams.cc  streaming calls both ways, flow control
//   connection_core_objects.cc  RMI: calls on exported objects, references
//                               and descriptors in messages, imports,
//                               releases, bootstrap objects
//   connection_core_liveness.cc keepalive PINGs, idle and age limits, the
//                               graceful drain after a GOAWAY of this side
//   connection_core_frames.h    serializing and parsing what frames carry
// Its life (handshaking, open, draining, closed...) is one ConnectionState.
#ifndef LOCUS_RUNTIME_INTERNAL_CONNECTION_CORE_H_
#define LOCUS_RUNTIME_INTERNAL_CONNECTION_CORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/timer_queue.h"
#include "internal/attempt_report.h"
#include "internal/connection_state.h"
#include "internal/interception.h"
#include "internal/service_table.h"
#include "internal/stream_call.h"
#include "internal/thread_pool.h"
#include "locus/call_options.h"
#include "internal/attachments.h"
#include "locus/future.h"
#include "locus/object.h"
#include "locus/rmi.pb.h"
#include "locus/service.h"
#include "locus/transport.h"
#include "locus/wire.pb.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace locus::internal {

class ConnectionCore;
class ExportEntry;

// The object a call addresses (locus/object.h): its id and token. A call
// without one goes to the connection's services, by method name.
struct ObjectTarget {
  uint64_t id = 0;
  std::string token;
};

// A reference this side holds, over one connection, to an object the peer
// owns: made when the first reference to it arrives (counted in the
// frame's meta, wire.CountedRef) or is adopted, shared by everything made
// from it. When the last holder drops it, the references it counted are
// released to the owner (a Release call), if the connection is still open.
class ImportEntry {
 public:
  ImportEntry(std::weak_ptr<ConnectionCore> core, uint64_t connection, uint64_t id,
              std::string token)
      : core_(std::move(core)), connection_(connection), id_(id), token_(std::move(token)) {}
  ~ImportEntry();  // sends the release (ConnectionCore::SendRelease)
  ImportEntry(const ImportEntry&) = delete;
  ImportEntry& operator=(const ImportEntry&) = delete;

  uint64_t id() const { return id_; }
  const std::string& token() const { return token_; }
  std::shared_ptr<ConnectionCore> core() const { return core_.lock(); }
  void AddReceived(uint64_t count) { received_.fetch_add(count, std::memory_order_relaxed); }
  // Keeps `self` (this entry) alive for `timeout`, or (if `claimable`)
  // until a Claim() before that: the hold of a reference that arrived in a
  // reply, whose receiver makes its Remote after the call returned, and of
  // one passed on to a third party, which adopts it from the owner later.
  void Hold(std::shared_ptr<ImportEntry> self, absl::Duration timeout, bool claimable);
  // A Remote was made from it: one claimable hold ends.
  void Claim();

 private:
  void EndHold(uint64_t hold);

  const std::weak_ptr<ConnectionCore> core_;
  const uint64_t connection_;  // ConnectionCore::serial()
  const uint64_t id_;
  const std::string token_;
  std::atomic<uint64_t> received_{0};
  absl::Mutex mu_;
  struct HoldState {
    bool claimable = false;
    uint64_t timer = 0;  // TimerQueue id of its end
  };
  // Holds by id; `self_` while there are any.
  absl::flat_hash_map<uint64_t, HoldState> holds_ ABSL_GUARDED_BY(mu_);
  uint64_t next_hold_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<ImportEntry> self_ ABSL_GUARDED_BY(mu_);
};

// Process-wide index of live imports, by connection and object id: the
// import of the reference `ref` if it came by a connection
// (ref.received_via) that still holds it alive and its token matches, else
// null (ResolveRef finds callbacks and returned references here).
std::shared_ptr<ImportEntry> FindLiveImport(const ObjectRef& ref);

// Calls on this process's objects one connection may have running at once;
// more are refused with RESOURCE_EXHAUSTED.
inline constexpr size_t kMaxObjectCallsFromPeer = 256;

class ConnectionCore final : public FrameSink,
                             public StreamCallHost,
                             public std::enable_shared_from_this<ConnectionCore> {
 public:
  struct Options {
    bool connecting_side = true;  // true: started the connection (odd call ids)
    uint64_t max_send_message_size = kDefaultMaxMessageSize;
    uint64_t max_receive_message_size = kDefaultMaxMessageSize;
    const ServiceTable* services = nullptr;  // calls the peer may make; nullptr: none
    ThreadPool* handler_pool = nullptr;      // nullptr: handlers run inline
    // Runs streaming handlers (they block); nullptr: streaming calls from
    // the peer are refused with UNIMPLEMENTED.
    ThreadPool* stream_pool = nullptr;
    // Receive window per streaming call, announced in the handshake (at
    // least kMinStreamWindowBytes).
    uint64_t stream_window_bytes = kDefaultStreamWindowBytes;
    // Streaming calls the peer may have open at once on this connection;
    // more are refused with RESOURCE_EXHAUSTED (gRPC's MAX_CONCURRENT_STREAMS).
    size_t max_streams_from_peer = 100;
    // Unreliable (datagram) connections: the deadline of calls that set
    // none, since a lost datagram would leave them waiting forever.
    absl::Duration datagram_call_timeout = absl::Seconds(10);
    // Accepting side: announced in HELLO_ACK so that same-host clients can
    // move closer (in-process calls, shared memory, Unix socket).
    uint64_t server_instance = 0;
    std::vector<std::string> local_endpoints;
    // Accepting side: if not empty, peers with credentials must run as one
    // of these uids (ServerOptions::allowed_uids).
    std::vector<uid_t> allowed_uids;
    // Runs once after the connection closed (on the closing thread).
    std::function<void(ConnectionCore*)> on_closed;
    // The owner keeps a reference until on_closed has run (a server's
    // connection set): no frame delivery can then drop the last one, and
    // OnFrame takes none of its own (two atomic operations per call).
    bool owner_holds_until_closed = false;
    // Offered to the peer in this side's HELLO (Cap'n Proto's bootstrap
    // interface): ChannelOptions::bootstrap, ServerOptions::bootstrap.
    std::shared_ptr<Service> bootstrap;
    // Liveness (connection_core_liveness.cc). Keepalive: after
    // keepalive_time without a frame from the peer (checked every quarter
    // of it), a PING; no frame within keepalive_timeout after it closes the
    // connection (UNAVAILABLE). Only while calls are in progress either way
    // unless keepalive_without_calls. Infinite: off.
    absl::Duration keepalive_time = absl::InfiniteDuration();
    absl::Duration keepalive_timeout = absl::Seconds(20);
    bool keepalive_without_calls = false;
    // No call in progress either way for max_idle: GOAWAY, then closure.
    // At max_age (+-10%): GOAWAY, then closure once the calls in progress
    // are done or max_age_grace has passed. Connections that carry object
    // references are exempt from both. Infinite: off.
    absl::Duration max_idle = absl::InfiniteDuration();
    absl::Duration max_age = absl::InfiniteDuration();
    absl::Duration max_age_grace = absl::InfiniteDuration();
    // How long a drain waits for the answer to its PING before it sends its
    // final GOAWAY anyway (a client that reads nothing sends nothing
    // either). Tests lengthen it.
    absl::Duration drain_ping_timeout = absl::Seconds(1);
    // Run around calls the peer makes to `services` (not calls on
    // objects); nullptr: none (ServerOptions::interceptors).
    std::shared_ptr<const ServerInterceptors> interceptors;
  };

  static std::shared_ptr<ConnectionCore> Create(std::unique_ptr<Connection> connection,
                                                Options options);
  ~ConnectionCore() override;

  // Starts receiving. The accepting side then expects the peer's HELLO.
  void Start();
  // Connecting side: sends HELLO and waits for HELLO_ACK until `deadline`.
  absl::Status ClientHandshake(absl::Time deadline);
  // Accepting side: closes the connection if no HELLO arrives by `deadline`.
  // The timer is cancelled once the handshake settled or the connection
  // closed (a churning server holds no timer per finished connection).
  void ExpectHandshakeBy(absl::Time deadline);
  // Accepting side: waits until the peer's HELLO was handled or the
  // connection closed; the handshake's result, DEADLINE_EXCEEDED if neither
  // happened by `deadline`. Once OK, peer_hello() and peer_bootstrap() may be
  // read on any thread (written before the state settled under mu_). For
  // one peer, not a server's many: locus::ConnectToParent (spawn.cc).
  absl::Status AwaitPeerHandshake(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto settled = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return state_.handshake_settled(); };
    if (!mu_.AwaitWithDeadline(absl::Condition(&settled), deadline)) {
      return absl::DeadlineExceededError("no handshake from the peer in time");
    }
    return state_.handshake_result();
  }

  // `target`: the peer's object to call; nullptr: its services.
  // `report` (optional): set if the call fails without the peer having
  // processed it (attempt_report.h), before the call ends.
  absl::Status CallUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                         google::protobuf::MessageLite* response, const CallOptions& options,
                         const ObjectTarget* target = nullptr, AttemptReport* report = nullptr);
  void StartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response, const CallOptions& options,
                  absl::AnyInvocable<void(absl::Status) &&> done, const ObjectTarget* target = nullptr);
  // StartUnary for callers that may try again elsewhere: OK if the call
  // started (`done` was taken and runs once, when it ends; `later`, if set,
  // is filled before that and must stay valid until then), else why it
  // could not start, with `done` untouched (not run) and `refusal` (if
  // set) saying whether it left.
  absl::Status TryStartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                             google::protobuf::MessageLite* response, const CallOptions& options,
                             absl::AnyInvocable<void(absl::Status) &&>& done,
                             const ObjectTarget* target = nullptr, AttemptReport* refusal = nullptr,
                             AttemptReport* later = nullptr);

  // Opens a streaming call (see Channel::OpenStream). Never null.
  // `report` (optional): as for CallUnary; set before the stream ends.
  std::unique_ptr<ClientCallStream> OpenStream(const RpcMethod& method,
                                               const google::protobuf::MessageLite* request,
                                               google::protobuf::MessageLite* response,
                                               const CallOptions& options,
                                               const ObjectTarget* target = nullptr,
                                               std::shared_ptr<AttemptReport> report = nullptr);
  // OpenStream for callers that may try again elsewhere: a stream that
  // cannot start is its status (`report` says whether it left).
  absl::StatusOr<std::unique_ptr<ClientCallStream>> TryOpenStream(
      const RpcMethod& method, const google::protobuf::MessageLite* request,
      google::protobuf::MessageLite* response, const CallOptions& options,
      const ObjectTarget* target = nullptr, std::shared_ptr<AttemptReport> report = nullptr);

  // --- RMI (connection_core_objects.cc) ---
  // Unique in the process: this connection's key in the object registry.
  uint64_t serial() const { return serial_; }
  // Whether the peer speaks RMI ("rmi/1" in its HELLO); valid after the
  // handshake.
  bool peer_speaks_rmi() const { return peer_speaks_rmi_.load(std::memory_order_acquire); }
  // The peer's process (its HELLO's process nonce).
  uint64_t peer_process() const { return peer_hello_.host().process_nonce(); }
  // Takes a reference to the peer's object `ref` names (a third party's
  // reference) over this connection: an Adopt call, which checks the token.
  absl::StatusOr<std::shared_ptr<ImportEntry>> Adopt(const ObjectRef& ref, absl::Time deadline);
  // The reference to the object the peer offered in its HELLO (its
  // bootstrap object), or null if it offered none.
  const ObjectRef* peer_bootstrap() const {
    return peer_bootstrap_import_ != nullptr ? &peer_bootstrap_ : nullptr;
  }
  // Runs `callback` (on the object pool) once the connection has closed;
  // at once if it has.
  void AddCloseObserver(absl::AnyInvocable<void(absl::Status) &&> callback);

  // Tells the peer no new calls will be accepted (GOAWAY); calls in progress
  // continue.
  void SendGoAway(const absl::Status& reason);
  // Closes the connection; outstanding calls fail with UNAVAILABLE.
  void Close(const absl::Status& reason);

  // False once closed, broken, or draining after a GOAWAY from the peer.
  bool usable() const { return UsableLockFree(); }
  bool closed() const;
  // Calls the peer started that are still being served here.
  size_t active_server_calls() const;
  // PINGs this side sent for keepalive (tests).
  uint64_t keepalive_pings_sent() const { return keepalive_pings_sent_.load(std::memory_order_relaxed); }
  // The keepalive_time in effect (Options::keepalive_time, as the channel or
  // server set it).
  absl::Duration keepalive_time() const { return options_.keepalive_time; }
  // Whether frames sent are still queued in the transport (Connection::
  // HasQueuedOutput): closing now would drop them.
  bool has_queued_output() const { return connection_->HasQueuedOutput(); }
  const PeerInfo& peer() const { return peer_; }
  // The peer's HELLO (valid after the handshake).
  const wire::Hello& peer_hello() const { return peer_hello_; }

  // FrameSink
  void OnFrame(Frame& frame) override;
  void OnOversizeFrame(const FrameHeader& header) override;
  void OnClosed(const absl::Status& reason) override;

  // StreamCallHost (used by this connection's StreamCalls).
  bool DeliveringOnThisThread() const override;
  bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) override;
  void WillWaitWithoutDriving() override;
  void WaitedWithoutDriving() override;
  absl::Status SendStreamMessage(uint64_t id, const google::protobuf::MessageLite* message,
                                 size_t size, uint32_t flags, absl::Time deadline) override;
  void SendWindowUpdate(uint64_t id, uint64_t increment, absl::Time deadline) override;
  absl::Status SendInitialMetadata(uint64_t id, const Metadata& metadata, absl::Time deadline) override;
  // Ends a stream that failed on this side with `status`, and tells the
  // peer: a client sends CANCEL, a server answers the call with `status`.
  // No-op for a stream that already ended.
  void AbortStream(StreamCall* call, absl::Status status) override;

 private:
  friend class ImportEntry;  // SendRelease
  struct PendingCall;  // connection_core_client.cc
  // A call the peer started, accepted for serving.
  struct IncomingCall {
    uint64_t call_id = 0;
    bool oneway = false;
    std::shared_ptr<StreamCall> stream;  // streaming methods only
    absl::Time deadline = absl::InfiniteFuture();
    const ServiceTable::Entry* entry = nullptr;
    // On the handler pool: the call's own flag (CANCEL, closure). Inline on
    // the reader: the connection's InlineHandlersCancelled(), not owned.
    std::shared_ptr<std::atomic<bool>> cancelled;
    Metadata metadata;
    // Calls on an exported object: its entry (`entry` points into it) and
    // the object, held for the call.
    std::shared_ptr<ExportEntry> exported;
    std::shared_ptr<Service> object;
    // Not inline on the reader: on a pool, with a serving_ entry.
    bool pooled = false;
    // Descriptors that came with the request (methods with attachments).
    std::vector<OwnedFd> fds;
    // References the request counted (wire.CountedRef): held until the call
    // ends, released with it unless a Remote was made from them.
    std::vector<std::shared_ptr<ImportEntry>> imports;
  };

  ConnectionCore(std::unique_ptr<Connection> connection, Options options);

  void CancelHandshakeTimer();

  // The state's atomic parts, which need no lock (the rest of state_ does).
  bool UsableLockFree() const ABSL_NO_THREAD_SAFETY_ANALYSIS { return state_.usable(); }
  bool HandshakeSettledLockFree() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return state_.handshake_settled();
  }
  bool HandshakeSucceededLockFree() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return state_.handshake_succeeded();
  }
  // Counts a REQUEST for a drain (peer_requests_).
  void CountPeerRequestLocked(uint64_t call_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!goaway_sent_ || call_id <= goaway_last_processed_) ++peer_requests_;
  }
  std::atomic<bool>& InlineHandlersCancelled() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return state_.inline_handlers_cancelled();
  }
  void BeginClosing() ABSL_NO_THREAD_SAFETY_ANALYSIS { state_.BeginClosing(); }

  // --- Lifecycle (connection_core.cc) ---
  // Background reads follow the outstanding asynchronous calls (plain
  // clients only; see Start()).
  void AsyncCallStarted();
  void AsyncCallEnded();
  // UNAVAILABLE (with why) unless new calls may start; under mu_.
  absl::Status CheckAcceptsCallsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Registers call or stream `id` with `cancellation`: Cancel() abandons it
  // (AbandonCall / AbandonStream) on the timer thread. CANCELLED (and
  // nothing registered) if it is cancelled already. Caller holds mu_, so
  // that the call cannot be abandoned before `registration` is stored.
  absl::Status WatchCancellation(const Cancellation& cancellation, uint64_t id, bool stream,
                                 CancellationRegistration* registration)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Schedules AbandonCall / AbandonStream of `id` with DEADLINE_EXCEEDED at
  // `deadline` on the timer thread. Caller holds mu_ (see Register).
  uint64_t ScheduleDeadline(absl::Time deadline, uint64_t id, bool stream)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // AbandonStream or AbandonCall of `id`, as `stream` says.
  void Abandon(uint64_t id, bool stream, absl::Status status, bool by_its_timer);
  // Sends `header` (type, flags, call id set) with `meta` and, if `message`
  // is set, HAS_MESSAGE and the message (sized `size` by ByteSizeLong)
  // serialized straight into the transport. INTERNAL if the message no
  // longer serializes to `size` bytes (nothing is sent then).
  absl::Status SendFrame(FrameHeader header, absl::string_view meta,
                         const google::protobuf::MessageLite* message, size_t size,
                         absl::Time deadline);
  // A frame without payload whose meta is `meta` serialized (nullptr: none):
  // HELLO, HELLO_ACK, GOAWAY, WINDOW_UPDATE, CANCEL.
  absl::Status SendControlFrame(FrameType type, uint64_t call_id,
                                const google::protobuf::MessageLite* meta, absl::Time deadline);
  // CANCEL for call or stream `id`: best effort, never waits for room (it
  // may run on the timer thread or the reader).
  void SendCancel(uint64_t id);
  // The transport is gone: the next call must not pick this connection.
  void MarkBrokenIfUnavailable(const absl::Status& sent);
  void HandleHello(const Frame& frame);
  void HandleGoAway(const Frame& frame);
  void ProtocolError(const std::string& what);
  wire::Hello MakeHello();

  // --- Liveness (connection_core_liveness.cc) ---
  // Arms the keepalive, idle and age timers that Options ask for (Start).
  void StartLiveness();
  // Cancels them (OnClosed).
  void StopLiveness();
  void KeepaliveCheck();
  void IdleCheck();
  void AgeReached();
  // Sends GOAWAY with `reason`, then closes the connection once no call is
  // in progress and nothing is queued, or at `deadline`.
  void BeginDrain(const absl::Status& reason, absl::Time deadline);
  // The peer answered the drain's PING (or did not in time): every call it
  // sent before it read the first GOAWAY has arrived; the final GOAWAY
  // names the last of them.
  void HandleDrainPong(const Frame& frame);
  void DrainPingTimedOut();
  void FinishAnnouncingDrain();
  void DrainCheck();
  // Calls (unary and streams) in progress either way.
  size_t CallsInProgressLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the connection carries object references either way (exempt
  // from the idle and age limits).
  bool CarriesObjectsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Schedules `check` (a member above) on the timer thread at `when`,
  // remembering its id in `*slot`; nothing once closed.
  void ScheduleLivenessLocked(absl::Time when, void (ConnectionCore::*check)(), TimerQueue::Id* slot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- Calls this side makes (connection_core_client.cc) ---
  // Registers `call` under a fresh id, with a deadline timer unless
  // `timer_deadline` is InfiniteFuture, and with `cancellation` if set;
  // UNAVAILABLE if closed or draining (`refusal`, if set, says it never
  // left), CANCELLED if already cancelled.
  absl::StatusOr<uint64_t> Register(PendingCall* call, absl::Time timer_deadline,
                                    const std::optional<Cancellation>& cancellation,
                                    AttemptReport* refusal);
  // A send of the REQUEST that failed UNAVAILABLE lost the whole frame:
  // the peer cannot have processed the call.
  static void ReportUnsent(const absl::Status& sent, AttemptReport* report);
  // Removes `id` if still outstanding and returns its call (nullptr if it was
  // already taken by whoever completes it).
  PendingCall* Take(uint64_t id);
  // Completes a call taken from the table.
  static void Complete(PendingCall* call, absl::Status status);
  // The same, for a call the peer did not process (its report says so).
  static void CompleteUnprocessed(PendingCall* call, absl::Status status);
  // Waits for a synchronous call registered under `id` to complete, or
  // expires it at `deadline`.
  absl::Status AwaitCompletion(PendingCall* call, uint64_t id, const RpcMethod& method,
                               absl::Time deadline);
  // `options`, with a deadline if the connection is unreliable and it has
  // none (`storage` holds the copy).
  const CallOptions& BoundedOptions(const CallOptions& options,
                                    std::optional<CallOptions>* storage) const;
  // Sends the REQUEST that starts call `id`: with `request` (nullptr for
  // streaming calls whose messages follow) and `flags`.
  absl::Status SendRequest(const RpcMethod& method, uint64_t id,
                           const google::protobuf::MessageLite* request, uint32_t flags,
                           const CallOptions& options, const ObjectTarget* target);
  // Ends call `id` with `status` if still outstanding, and tells the peer
  // (CANCEL, best effort). `by_its_timer`: running as the call's deadline
  // timer (which must not cancel itself).
  void AbandonCall(uint64_t id, absl::Status status, bool by_its_timer);
  void HandleResponse(Frame& frame);

  // --- Calls the peer makes (connection_core_server.cc) ---
  void HandleRequest(Frame& frame);
  // Admission of a decoded REQUEST: the reason to refuse it, if any, before
  // the tables are consulted.
  absl::Status CheckRequest(const IncomingCall& call, absl::string_view method,
                            const FrameHeader& header) const;
  // Runs the handler; its reply is sent from FinishServing.
  // `method` and `payload` need only live until it returns.
  void Serve(IncomingCall& call, absl::string_view method, absl::string_view payload);
  // The handler's outcome: applies the deadline and the send limit, sends
  // the reply (unless oneway or cancelled), then ends the call's bookkeeping.
  // `reply` (if OK) is valid only during the call.
  void FinishServing(IncomingCall& call, const ServerContext& context, absl::Status status,
                     const google::protobuf::MessageLite* reply);
  // FinishServing's reply (none if oneway, cancelled or the stream was
  // answered already), `reply` sized `reply_size`.
  void SendOutcome(IncomingCall& call, const ServerContext& context, const absl::Status& status,
                   const google::protobuf::MessageLite* reply, size_t reply_size);
  // Drops the call from serving_ or the inline count (a stream's own
  // entries go before its reply, see FinishServing).
  void EndServing(const IncomingCall& call);
  // The peer cancelled call or stream `id` it started.
  void HandleCancel(uint64_t id);
  // Calls made on behalf of served calls (CallOptions::FromServerContext):
  // a Cancellation per served call that asked for one, cancelled with it.
  // Register returns it (cancelled at once if the call already is); the
  // entry goes with the call (Unregister, which leaves an entry that is
  // not `state`: a later call's under the same id).
  Cancellation RegisterPropagation(uint64_t id, const std::atomic<bool>& cancelled);
  void UnregisterPropagation(uint64_t id, const std::shared_ptr<CancellationState>& state);
  // Cancels the propagation of call `id`, or (all = true) of every call.
  void CancelPropagated(uint64_t id, bool all);
  // The initial metadata of a stream this side started (HEADERS).
  void HandleHeaders(const Frame& frame);
  // Sends a kResponse: `reply` (sized `reply_size` by ByteSizeLong, not
  // changed since) is serialized straight into the transport; nullptr for
  // an error or a reply without a message.
  // `attachments`: the reply may hold references or descriptors.
  // `initial`: the server's initial metadata not sent before (nullptr: none).
  void SendResponse(uint64_t call_id, const absl::Status& status,
                    const google::protobuf::MessageLite* reply, size_t reply_size,
                    const Metadata& trailers, absl::Time deadline, bool attachments = false,
                    const Metadata* initial = nullptr);
  void SendError(uint64_t call_id, const absl::Status& status, absl::Time deadline);

  // --- RMI (connection_core_objects.cc) ---
  // The pool that runs handlers of calls on exported objects.
  ThreadPool* PoolFor(const IncomingCall& call) const;
  // Sends a frame whose message may hold references or descriptors: counts
  // the references this side owns as held by the peer (and lists them in
  // the meta: field `counted_field` of the meta's message), pins imports
  // passed on to a third party, and sends the descriptors along.
  // FAILED_PRECONDITION (nothing sent) if the peer does not speak RMI, the
  // transport is unreliable or cannot carry descriptors; NOT_FOUND if a
  // reference of this side's names an object no longer exported.
  absl::Status SendWithAttachments(FrameHeader header, absl::string_view meta, uint32_t counted_field,
                                   const google::protobuf::MessageLite& message, absl::Time deadline);
  // After parsing a received message: imports its references to the
  // peer's objects (holds in `scope`) and swaps descriptor indexes for inbox
  // tickets. INVALID_ARGUMENT for an index without a descriptor.
  // After parsing a received message: marks its references to the peer's
  // objects as come by this connection (ObjectRef::received_via) and swaps
  // descriptor indexes for inbox tickets held by `scope`. INVALID_ARGUMENT
  // for an index without a descriptor (every descriptor field is then
  // cleared or redeemed, never left holding a peer's number).
  absl::Status ImportAttachments(google::protobuf::MessageLite& message, std::vector<OwnedFd>& fds,
                                 ReceivedAttachments* scope);
  // Takes in the references a frame's meta counts (wire.CountedRef): one
  // import per object, holding them. Dropping the holds releases them.
  template <typename CountedRefs>
  std::vector<std::shared_ptr<ImportEntry>> ImportCounted(const CountedRefs& refs);
  std::shared_ptr<ImportEntry> Import(uint64_t id, absl::string_view token, uint64_t count);
  // Requests to the built-in "locus.rmi.Objects" service; true if
  // `method` is one (handled here).
  bool HandleObjectsCall(absl::string_view method, const Frame& frame);
  // Sends Release for `count` references to the peer's object `id`.
  void SendRelease(uint64_t id, uint64_t count);
  // This side holds references the peer counts on: keep reading even
  // while no call of this side is outstanding (a plain client).
  void ServeObjects();
  // This side's HELLO offers its bootstrap object; the peer's is imported.
  void AddBootstrap(wire::Hello* hello);
  void ImportPeerBootstrap();
  // The connection closed: releases what the peer held here, tells the
  // observers.
  void ObjectsOnClosed(const absl::Status& reason);

  // --- Streams (connection_core_streams.cc) ---
  absl::StatusOr<std::shared_ptr<StreamCall>> RegisterStream(const RpcMethod& method,
                                                             const CallOptions& options,
                                                             google::protobuf::MessageLite* response,
                                                             const std::shared_ptr<AttemptReport>& report);
  std::shared_ptr<StreamCall> FindStream(uint64_t id);
  std::shared_ptr<StreamCall> TakeStream(uint64_t id);
  // The same as AbandonCall, for stream `id`.
  void AbandonStream(uint64_t id, absl::Status status, bool by_its_timer);
  void HandleMessage(Frame& frame);
  void HandleWindowUpdate(const Frame& frame);
  // The client side of a stream received its RESPONSE.
  void FinishClientStream(StreamCall& stream, const Frame& frame);
  // The receive window this side announces, and the peer's (from its HELLO).
  uint64_t ReceiveWindow() const;
  uint64_t PeerStreamWindow() const;

  const Options options_;
  const PeerInfo peer_;  // copied from the connection: valid while it is destroyed

  mutable absl::Mutex mu_;
  // Handshaking, open, broken, draining or closed, and why; its atomic
  // parts are also read without mu_ (the *LockFree() accessors above).
  ConnectionState state_ ABSL_GUARDED_BY(mu_);
  uint64_t next_call_id_ ABSL_GUARDED_BY(mu_);
  uint64_t last_peer_call_id_ ABSL_GUARDED_BY(mu_) = 0;
  // This side sent GOAWAY announcing this last processed id: calls the peer
  // starts above it are refused.
  bool goaway_sent_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t goaway_last_processed_ ABSL_GUARDED_BY(mu_) = 0;
  // Held while SendGoAway sends; taken before mu_.
  absl::Mutex goaway_send_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::flat_hash_map<uint64_t, PendingCall*> pending_ ABSL_GUARDED_BY(mu_);
  // Calls being served here, with their cancellation flags.
  absl::flat_hash_map<uint64_t, std::shared_ptr<std::atomic<bool>>> serving_ ABSL_GUARDED_BY(mu_);
  // Open streaming calls, both those this side started (client side) and
  // those it serves: their ids differ in parity.
  absl::flat_hash_map<uint64_t, std::shared_ptr<StreamCall>> streams_ ABSL_GUARDED_BY(mu_);
  size_t open_peer_streams_ ABSL_GUARDED_BY(mu_) = 0;  // streams the peer started, being served
  // RegisterPropagation's cancellations, by served call id.
  absl::flat_hash_map<uint64_t, std::shared_ptr<CancellationState>> propagated_ ABSL_GUARDED_BY(mu_);
  // Calls being served inline: counted up under mu_ (with the shutdown
  // checks of HandleRequest), down without it once their reply is sent.
  std::atomic<size_t> inline_serving_{0};
  // Plain client (connecting side, serves nothing): background reads are
  // requested only while async_calls_ > 0. Set in Start().
  bool on_demand_background_reads_ = false;
  std::atomic<int> async_calls_{0};

  // Liveness. Frames delivered so far: written by the reader only (OnFrame
  // calls never overlap), read by the keepalive timer.
  std::atomic<uint64_t> frames_received_{0};
  // REQUESTs the peer sent that a final GOAWAY covers (all of them until
  // one was sent: its id is the highest received; after it, those with ids
  // up to it; one refused above it is no call the drain waits for), and,
  // once a drain sent its final GOAWAY, how many ids that GOAWAY covers and
  // how long the drain waits for those still on their way (DrainCheck).
  uint64_t peer_requests_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t drain_expected_requests_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time drain_gap_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::atomic<uint64_t> keepalive_pings_sent_{0};
  // ExpectHandshakeBy's timer (0: none); whoever exchanges it out cancels it.
  std::atomic<TimerQueue::Id> handshake_timer_{0};
  TimerQueue::Id keepalive_timer_ ABSL_GUARDED_BY(mu_) = 0;
  TimerQueue::Id idle_timer_ ABSL_GUARDED_BY(mu_) = 0;
  TimerQueue::Id age_timer_ ABSL_GUARDED_BY(mu_) = 0;  // the age, then the drain checks
  struct KeepaliveState {
    uint64_t frames_seen = 0;   // frames_received_ at the last check
    int quiet_checks = 0;       // checks in a row that saw no new frame
    bool ping_outstanding = false;
    bool raised_reads = false;  // background reads asked for while it is
    absl::Time ping_deadline = absl::InfiniteFuture();
  } keepalive_ ABSL_GUARDED_BY(mu_);
  struct IdleState {
    uint64_t next_call_id = 0;       // next_call_id_ at the last check
    uint64_t last_peer_call_id = 0;  // last_peer_call_id_ at the last check
    absl::Time idle_since = absl::InfiniteFuture();
  } idle_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;  // BeginDrain ran
  // Between the first GOAWAY of a drain and its final one.
  bool announcing_drain_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> awaiting_drain_pong_{false};
  absl::Status drain_reason_ ABSL_GUARDED_BY(mu_);
  absl::Time drain_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();

  // Written once by the reader before the handshake settles (HandleHello).
  wire::Hello peer_hello_;
  std::atomic<bool> peer_speaks_rmi_{false};
  // The peer's HELLO lists "headers/1": it understands HEADERS frames.
  std::atomic<bool> peer_speaks_headers_{false};
  ObjectRef peer_bootstrap_;
  std::shared_ptr<ImportEntry> peer_bootstrap_import_;

  // RMI. Objects of this process the peer holds references to (their
  // counts live in the ObjectRegistry under serial_), imports of the
  // peer's objects, and who waits for the connection to close.
  const uint64_t serial_;
  absl::flat_hash_set<uint64_t> exported_to_peer_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::weak_ptr<ImportEntry>> imports_ ABSL_GUARDED_BY(mu_);
  // Calls on this side's objects running now (at most kMaxObjectCalls).
  size_t object_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<absl::AnyInvocable<void(absl::Status) &&>> close_observers_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> serving_objects_{false};

  // Declared last so that it is destroyed first (its destructor may deliver
  // OnClosed, which uses the members above).
  std::unique_ptr<Connection> connection_;
};

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_CONNECTION_CORE_H_
