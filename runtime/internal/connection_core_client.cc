// ConnectionCore: the unary calls this side makes, synchronous and
// asynchronous, and their replies (RESPONSE). A call is a PendingCall in
// pending_ from Register until whoever Takes it (the reply, its deadline,
// Cancel, GOAWAY or closure) completes it, exactly once.
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/timer_queue.h"
#include "google/protobuf/message_lite.h"
#include "internal/call_header_codec.h"
#include "internal/call_not_seen.h"
#include "internal/connection_core.h"
#include "internal/connection_core_frames.h"
#include "internal/scratch_buffer.h"

namespace locus::internal {

struct ConnectionCore::PendingCall {
  google::protobuf::MessageLite* response = nullptr;
  Metadata* trailing_metadata = nullptr;
  Metadata* initial_metadata = nullptr;
  const char* method = nullptr;
  bool has_attachments = false;  // the reply may hold references or descriptors
  // Set when the call fails without the peer having processed it.
  AttemptReport* report = nullptr;
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

absl::StatusOr<uint64_t> ConnectionCore::Register(PendingCall* call, absl::Time timer_deadline,
                                                  const std::optional<Cancellation>& cancellation,
                                                  AttemptReport* refusal) {
  absl::MutexLock lock(&mu_);
  if (absl::Status accepts = CheckAcceptsCallsLocked(); !accepts.ok()) {
    if (refusal != nullptr) refusal->not_processed = true;
    return accepts;
  }
  uint64_t id = next_call_id_;
  next_call_id_ += 2;
  if (cancellation.has_value()) {
    absl::Status watched =
        WatchCancellation(*cancellation, id, /*stream=*/false, &call->cancel_registration);
    if (!watched.ok()) return watched;
  }
  if (timer_deadline != absl::InfiniteFuture()) {
    call->timer = ScheduleDeadline(timer_deadline, id, /*stream=*/false);
  }
  pending_.emplace(id, call);
  return id;
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

void ConnectionCore::ReportUnsent(const absl::Status& sent, AttemptReport* report) {
  if (report != nullptr && absl::IsUnavailable(sent)) report->not_processed = true;
}

void ConnectionCore::CompleteUnprocessed(PendingCall* call, absl::Status status) {
  if (call->report != nullptr) call->report->not_processed = true;
  Complete(call, std::move(status));
}

absl::Status ConnectionCore::SendRequest(const RpcMethod& method, uint64_t id,
                                         const google::protobuf::MessageLite* request,
                                         uint32_t flags, const CallOptions& options,
                                         const ObjectTarget* target) {
  if (target != nullptr && !peer_speaks_rmi_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the peer (", peer().remote_address, ") does not support object references"));
  }
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
  const int64_t timeout_ns = TimeoutFromDeadline(options.deadline);
  // The call header on the stack unless it is large (long metadata).
  char small_meta[256];
  std::optional<ScratchBuffer> large_meta;
  const absl::string_view method_name(method.full_name);
  const size_t header_size = CallHeaderSize(method_name, timeout_ns, options.metadata);
  const size_t meta_size =
      header_size + (target != nullptr ? ObjectTargetSize(target->id, target->token) : 0);
  if (meta_size > kDefaultMaxMetaSize) {
    // The peer would take it for malformed input and close the connection,
    // failing every other call on it.
    return absl::ResourceExhaustedError(absl::StrCat("call header of ", meta_size,
                                                     " bytes (client metadata) exceeds the limit of ",
                                                     kDefaultMaxMetaSize, " bytes"));
  }
  char* meta = small_meta;
  if (meta_size > sizeof(small_meta)) {
    large_meta.emplace();
    large_meta->get()->resize(meta_size);
    meta = large_meta->get()->data();
  }
  WriteCallHeader(method_name, timeout_ns, options.metadata, meta);
  if (target != nullptr) WriteObjectTarget(target->id, target->token, meta + header_size);
  const FrameHeader header = FrameHeader::Make(FrameType::kRequest, flags, id);
  absl::Status sent =
      method.has_attachments && request != nullptr
          ? SendWithAttachments(header, absl::string_view(meta, meta_size), /*counted_field=*/6,
                                *request, options.deadline)
          : SendFrame(header, absl::string_view(meta, meta_size), request, size, options.deadline);
  if (!sent.ok() && absl::IsInternal(sent)) {
    return absl::InternalError(absl::StrCat("cannot serialize request for ", method.full_name,
                                            " (was it modified while being sent?)"));
  }
  MarkBrokenIfUnavailable(sent);
  // A frame is sent whole or not at all (transport contract 1): a request
  // the connection refused never reached the server.
  if (absl::IsUnavailable(sent)) return MarkNotSeen(std::move(sent));
  return sent;
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
                                       const CallOptions& given_options,
                                       const ObjectTarget* target, AttemptReport* report) {
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
  call.initial_metadata = options.initial_metadata;
  call.method = method.full_name;
  call.has_attachments = method.has_attachments;
  call.report = report;
  absl::StatusOr<uint64_t> id = Register(&call, absl::InfiniteFuture(), options.cancellation, report);
  if (!id.ok()) return id.status();
  absl::Status sent = SendRequest(method, *id, &request,
                                  kFlagEndStream | (method.oneway ? kFlagOneway : 0), options, target);
  if (!sent.ok() || method.oneway) {
    if (Take(*id) != nullptr) {
      ReportUnsent(sent, report);
      return sent;
    }
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
  absl::Status status = AwaitCompletion(&call, *id, method, options.deadline);
  // The send failed but closure completed the call: still never sent.
  if (IsNotSeen(sent) && absl::IsUnavailable(status)) {
    ReportUnsent(sent, report);
    return MarkNotSeen(std::move(status));
  }
  return status;
}

absl::Status ConnectionCore::AwaitCompletion(PendingCall* call_ptr, uint64_t id,
                                             const RpcMethod& method, absl::Time deadline) {
  PendingCall& call = *call_ptr;
  if (call.completed_by_waiter) return call.waiter_status;
  absl::MutexLock lock(&call.mu);
  auto finished = [&call]() ABSL_SHARED_LOCKS_REQUIRED(call.mu) { return call.finished; };
  if (!call.mu.AwaitWithDeadline(absl::Condition(&finished), deadline)) {
    call.mu.Unlock();
    const bool expired = Take(id) != nullptr;
    if (expired) SendCancel(id);
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
                                const CallOptions& options,
                                absl::AnyInvocable<void(absl::Status) &&> done,
                                const ObjectTarget* target) {
  absl::Status started = TryStartUnary(method, request, response, options, done, target);
  if (!started.ok()) std::move(done)(std::move(started));
}

absl::Status ConnectionCore::TryStartUnary(const RpcMethod& method,
                                           const google::protobuf::MessageLite& request,
                                           google::protobuf::MessageLite* response,
                                           const CallOptions& given_options,
                                           absl::AnyInvocable<void(absl::Status) &&>& done,
                                           const ObjectTarget* target, AttemptReport* refusal,
                                           AttemptReport* later) {
  std::optional<CallOptions> bounded;
  const CallOptions& options = BoundedOptions(given_options, &bounded);
  if (absl::Now() >= options.deadline) {
    return absl::DeadlineExceededError(absl::StrCat("deadline passed before ", method.full_name, " started"));
  }
  AsyncCallStarted();
  auto* call = new PendingCall();
  call->response = response;
  call->trailing_metadata = options.trailing_metadata;
  call->initial_metadata = options.initial_metadata;
  call->method = method.full_name;
  call->has_attachments = method.has_attachments;
  call->report = later;
  call->done = std::move(done);
  call->keepalive = shared_from_this();
  const absl::Time timer_deadline =
      options.deadline != absl::InfiniteFuture() && !method.oneway ? options.deadline
                                                                   : absl::InfiniteFuture();
  absl::StatusOr<uint64_t> id = Register(call, timer_deadline, options.cancellation, refusal);
  if (!id.ok()) {
    done = std::move(call->done);  // registered nothing: back to the caller, unrun
    delete call;
    AsyncCallEnded();
    return id.status();
  }
  absl::Status sent = SendRequest(method, *id, &request,
                                  kFlagEndStream | (method.oneway ? kFlagOneway : 0), options, target);
  if (!sent.ok() || method.oneway) {
    if (PendingCall* taken = Take(*id)) {
      if (sent.ok()) {
        Complete(taken, sent);  // oneway: done once handed to the transport
        return absl::OkStatus();
      }
      // Never started: `done` goes back to the caller, unrun.
      ReportUnsent(sent, refusal);
      done = std::move(taken->done);
      if (taken->timer != 0) TimerQueue::Get().Cancel(taken->timer);
      std::shared_ptr<ConnectionCore> keepalive = std::move(taken->keepalive);
      delete taken;  // drops its cancellation registration
      keepalive->AsyncCallEnded();
      return sent;
    }
  }
  return absl::OkStatus();
}

void ConnectionCore::AbandonCall(uint64_t id, absl::Status status, bool by_its_timer) {
  PendingCall* call = Take(id);
  if (call == nullptr) return;
  if (by_its_timer) call->timer = 0;  // running now; nothing to cancel
  // On the process-wide timer thread: best effort, never waits for a peer
  // that stopped reading.
  SendCancel(id);
  Complete(call, absl::Status(status.code(), absl::StrCat(status.message(), " waiting for ", call->method)));
}

void ConnectionCore::HandleResponse(Frame& frame) {
  // References the reply counts are this side's to release, whether or not
  // anyone reads the reply (it may come too late, or not parse).
  std::vector<std::shared_ptr<ImportEntry>> imports;
  if (frame.header.meta_length != 0 && peer_speaks_rmi()) {
    wire::CallStatus counted;
    if (ParseMeta(frame, &counted)) imports = ImportCounted(counted.counted_refs());
  }
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
  absl::Status status = ResponseStatus(frame, call->trailing_metadata, call->initial_metadata);
  if (status.ok()) status = ParseReply(frame, call->method, call->response);
  if (status.ok() && call->has_attachments) {
    // What the reply brought waits for its receiver (Remote::From, TakeFd)
    // after the call returned, for a while.
    ReceivedAttachments scope;
    status = ImportAttachments(*call->response, frame.fds, &scope);
    std::move(scope).ExpireAfter(kUnclaimedFdTimeout);
    if (status.ok()) {
      for (auto& import : imports) import->Hold(import, kUnclaimedRefTimeout, /*claimable=*/true);
    }
  }
  // An asynchronous call holds the connection until its callback returned
  // (PendingCall::keepalive), which may be the last reference: nothing here
  // touches this object after Complete().
  Complete(call, std::move(status));
}

}  // namespace locus::internal
