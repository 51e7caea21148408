// ConnectionCore: the calls the peer makes. A REQUEST is admitted (method,
// parity, shutdown, stream limits), its handler runs inline on the reader,
// on the handler pool, or (streams) on the stream pool, and its outcome is
// sent as one RESPONSE. CANCEL from the peer sets the call's flag.
#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "google/protobuf/message_lite.h"
#include "internal/call_header_codec.h"
#include "internal/connection_core.h"
#include "internal/connection_core_frames.h"
#include "internal/object_registry.h"

namespace locus::internal {

absl::Status ConnectionCore::CheckRequest(const IncomingCall& call, absl::string_view method,
                                          const FrameHeader& header) const {
  if (call.entry == nullptr) return absl::UnimplementedError(absl::StrCat("unknown method ", method));
  const RpcKind kind = call.entry->method->kind;
  const bool streaming = kind != RpcKind::kUnary;
  if ((kind == RpcKind::kUnary || kind == RpcKind::kServerStreaming) &&
      (header.flags & kFlagHasMessage) == 0) {
    return absl::InvalidArgumentError(absl::StrCat("request for ", method, " without a message"));
  }
  if (streaming && call.object == nullptr && options_.stream_pool == nullptr) {
    return absl::UnimplementedError(absl::StrCat("this side serves no streaming calls (", method, ")"));
  }
  if (streaming && !connection_->reliable()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "streaming call to ", method, " needs a reliable transport, not ", peer().transport));
  }
  if (streaming && call.entry->method->has_attachments) {
    return absl::FailedPreconditionError(absl::StrCat(
        method, ": object references and file descriptors travel in unary calls only"));
  }
  if (streaming && call.oneway) {
    return absl::InvalidArgumentError(absl::StrCat("streaming call to ", method, " marked oneway"));
  }
  return absl::OkStatus();
}

void ConnectionCore::HandleRequest(Frame& frame) {
  const uint64_t call_id = frame.header.call_id;
  const bool oneway = (frame.header.flags & kFlagOneway) != 0;
  // Calls the peer starts carry the peer's parity.
  if ((call_id % 2 == 1) == options_.connecting_side || call_id == 0) {
    ProtocolError(absl::StrCat("call id ", call_id, " has the wrong parity"));
    return;
  }
  // Each REQUEST is counted for a drain, which waits for the ids it said it
  // would serve (DrainCheck): under mu_, with the GOAWAY check, so that a
  // call refused above the final GOAWAY's id is never counted.
  CallHeaderView header;  // views the frame's meta
  if (!DecodeCallHeader(frame.meta_bytes(), &header)) {
    {
      absl::MutexLock lock(&mu_);
      CountPeerRequestLocked(call_id);
    }
    if (!oneway) SendError(call_id, absl::InvalidArgumentError("malformed call header"), absl::InfiniteFuture());
    return;
  }
  // The built-in service of RMI bookkeeping (only from peers that speak it).
  if (peer_speaks_rmi_ && header.object_id == 0 && HandleObjectsCall(header.method, frame)) {
    absl::MutexLock lock(&mu_);
    CountPeerRequestLocked(call_id);
    return;
  }
  IncomingCall call;
  call.call_id = call_id;
  call.oneway = oneway;
  call.deadline = DeadlineFromTimeout(header.timeout_ns);
  // Held by the call; released with it if refused or not taken.
  if (!header.counted_refs.empty()) call.imports = ImportCounted(header.counted_refs);
  absl::Status refused;
  if (header.object_id != 0) {
    // The same answer whether the id is unknown or the token wrong.
    call.exported = ObjectRegistry::Get().Find(header.object_id, header.object_token);
    if (call.exported != nullptr) call.object = call.exported->object();
    if (call.object == nullptr) {
      refused = absl::NotFoundError(absl::StrCat(
          "no object ", header.object_id, " here (released, revoked, or never exported)"));
    } else {
      call.entry = call.exported->FindMethod(header.method);
    }
  } else {
    call.entry = options_.services == nullptr ? nullptr : options_.services->Find(header.method);
  }
  if (refused.ok()) refused = CheckRequest(call, header.method, frame.header);
  const bool streaming = call.entry != nullptr && call.entry->method->kind != RpcKind::kUnary;
  // A handler running inline occupies the connection's reader, so no CANCEL
  // can be read while it runs: it is cancelled by its deadline or by this
  // side closing the connection (InlineHandlersCancelled(),
  // shared by all inline calls, held without ownership: OnFrame, or for a
  // server's connection the server's set, keeps this object alive until
  // Serve returns), and needs no table entry, only a count for graceful
  // shutdown. Pooled handlers get their own flag and a table entry.
  // Streaming handlers always run on the stream pool (they block in Read
  // and Write); the call's flag lives in its StreamCall.
  // Calls on objects run as a server's services do (inline on a server
  // without a handler pool: a call on a reference costs what a plain call
  // does); on a side that serves no services (a client's callbacks, a
  // spawned child's link) never inline, on the object pool.
  const bool pooled = options_.handler_pool != nullptr || streaming ||
                      (call.object != nullptr && options_.services == nullptr);
  call.pooled = pooled;
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
                            : std::shared_ptr<std::atomic<bool>>(
                                  std::shared_ptr<void>(), &InlineHandlersCancelled());
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
    if (!state_.accepts_calls() || (goaway_sent_ && call_id > goaway_last_processed_)) {
      refused = absl::UnavailableError("server is shutting down");
    }
    if (refused.ok() && streaming && open_peer_streams_ >= options_.max_streams_from_peer) {
      refused = absl::ResourceExhaustedError(
          absl::StrCat("too many streaming calls open on this connection (at most ",
                       options_.max_streams_from_peer, ")"));
    }
    if (refused.ok() && call.object != nullptr && pooled) {
      if (object_calls_ >= kMaxObjectCallsFromPeer) {
        refused = absl::ResourceExhaustedError(absl::StrCat(
            "too many calls on objects running for this connection (at most ",
            kMaxObjectCallsFromPeer, ")"));
      } else {
        ++object_calls_;  // until EndServing
      }
    }
    CountPeerRequestLocked(call_id);
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
    if (!oneway) {
      if (absl::IsUnavailable(refused)) {
        // Refused by a GOAWAY (or a closure): answered after the GOAWAY
        // itself has been handed to the transport (SendGoAway holds the
        // lock until then), so that the peer learns first that the call
        // was not processed.
        absl::MutexLock after_goaway(&goaway_send_mu_);
      }
      SendError(call_id, refused, call.deadline);
    }
    return;
  }
  call.metadata = std::move(header.metadata);
  if (call.entry->method->has_attachments) call.fds = std::move(frame.fds);
  if (streaming) {
    PoolFor(call)->Post([self = shared_from_this(), call = std::move(call),
                                method = std::string(header.method)]() mutable {
      self->Serve(call, method, {});
    });
  } else if (pooled) {
    // The frame's buffers go back to the transport when this returns: the
    // pooled handler takes its own copies.
    PoolFor(call)->Post([self = shared_from_this(), call = std::move(call),
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
  // RMI: what the request brought (held until the handler returned), the
  // caller's bootstrap object and its connection's end. Also the parsed
  // request's way to the interceptors, and the cancellation of calls made
  // on this call's behalf.
  class Link final : public CallLink {
   public:
    Link(ConnectionCore* core, IncomingCall& call) : core_(core), call_(call) {}
    ~Link() {
      // Only this call's entry: once EndServing freed the id, the peer may
      // have started another call under it.
      if (propagation_.has_value()) core_->UnregisterPropagation(call_.call_id, propagation_->state());
    }
    absl::Status ImportRequest(google::protobuf::MessageLite* request) override {
      if (call_.entry->method->has_attachments) {
        absl::Status imported = core_->ImportAttachments(*request, call_.fds, &scope_);
        if (!imported.ok()) return imported;
      }
      if (interception_ != nullptr) interception_->Received(*request);
      return absl::OkStatus();
    }
    const ObjectRef* caller_object() const override { return core_->peer_bootstrap(); }
    void OnCallerGone(absl::AnyInvocable<void(absl::Status) &&> callback) override {
      core_->AddCloseObserver(std::move(callback));
    }
    // From any thread the handler calls FromServerContext on: one
    // cancellation for all of them.
    std::optional<Cancellation> PropagatedCancellation() override {
      absl::MutexLock lock(&propagation_mu_);
      if (!propagation_.has_value()) {
        propagation_ = core_->RegisterPropagation(call_.call_id, *call_.cancelled);
      }
      return propagation_;
    }
    void set_interception(ServerInterception* interception) { interception_ = interception; }

   private:
    ConnectionCore* const core_;
    IncomingCall& call_;
    ReceivedAttachments scope_;
    // Made on first use; taken before the core's mu_.
    absl::Mutex propagation_mu_;
    std::optional<Cancellation> propagation_ ABSL_GUARDED_BY(propagation_mu_);
    ServerInterception* interception_ = nullptr;
  };
  Link link(this, call);
  Sink sink(this, call, context);
  // A stream's initial metadata goes with the handler's first Write.
  if (call.stream != nullptr) call.stream->set_headers_source(&context);
  auto run = [&](ReplySink& reply_sink, ServerCallStream* stream) {
    if (stream != nullptr) {
      call.entry->handler->CallStream(&context, *stream, reply_sink);
    } else {
      call.entry->handler->CallSerialized(&context, payload, reply_sink);
    }
    if (!sink.finished()) {
      reply_sink.Finish(absl::InternalError(absl::StrCat("handler of ", method, " returned no result")),
                        nullptr);
    }
  };
  if (ABSL_PREDICT_TRUE(options_.interceptors == nullptr) || call.object != nullptr) {
    context.set_link(&link, call.entry->method->has_attachments);
    run(sink, call.stream.get());
    return;
  }
  // Intercepted (locus/interceptor.h): the hooks wrap the sink, the stream
  // and (through the link) the parsed request.
  ServerInterception interception(*options_.interceptors, *call.entry->method, context);
  link.set_interception(&interception);
  context.set_link(&link, /*imports_attachments=*/true);
  InterceptedReplySink intercepted_sink(sink, interception);
  if (absl::Status started = interception.Start(); !started.ok()) {
    intercepted_sink.Finish(started, nullptr);
    return;
  }
  if (call.stream != nullptr) {
    InterceptedServerStream stream(*call.stream, interception);
    run(intercepted_sink, &stream);
  } else {
    run(intercepted_sink, nullptr);
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
      if (reply_size > options_.max_send_message_size || reply_size > kMaxMessageBytes) {
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
  if (!call.pooled) {
    inline_serving_.fetch_sub(1, std::memory_order_acq_rel);  // no table entry: no lock
    return;
  }
  absl::MutexLock lock(&mu_);
  serving_.erase(call.call_id);
  if (call.object != nullptr) --object_calls_;  // pooled ones are counted
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
    // The context goes when Serve returns; a late Write (another thread
    // of the handler's) must not read it.
    call.stream->set_headers_source(nullptr);
    // A stream may have been answered already (an error that ended it
    // early); its writes fail from now on.
    const bool answer = call.stream->ClaimResponse();
    call.stream->End(absl::CancelledError("the handler returned"));
    if (!answer) return;
  }
  if (cancelled) return;
  // The initial metadata, unless a stream's first Write sent it.
  const Metadata* initial = nullptr;
  if (!context.initial_metadata().empty() && (call.stream == nullptr || call.stream->ClaimHeaders())) {
    initial = &context.initial_metadata();
  }
  SendResponse(call.call_id, status, status.ok() ? reply : nullptr, reply_size,
               context.trailing_metadata(), call.deadline, call.entry->method->has_attachments, initial);
}

void ConnectionCore::HandleCancel(uint64_t id) {
  std::shared_ptr<StreamCall> stream;
  {
    absl::MutexLock lock(&mu_);
    auto it = serving_.find(id);
    if (it != serving_.end()) it->second->store(true, std::memory_order_release);
    auto s = streams_.find(id);
    if (s != streams_.end() && s->second->side() == StreamCall::Side::kServer) stream = s->second;
  }
  if (stream != nullptr) stream->End(absl::CancelledError("cancelled by the client"));
  CancelPropagated(id, /*all=*/false);
}

Cancellation ConnectionCore::RegisterPropagation(uint64_t id, const std::atomic<bool>& cancelled) {
  Cancellation cancellation;
  {
    absl::MutexLock lock(&mu_);
    propagated_[id] = cancellation.state();
  }
  // Whoever sets the flag cancels the entries it finds afterwards: one set
  // before this entry was there is seen here instead.
  if (cancelled.load(std::memory_order_acquire)) cancellation.Cancel();
  return cancellation;
}

void ConnectionCore::UnregisterPropagation(uint64_t id, const std::shared_ptr<CancellationState>& state) {
  absl::MutexLock lock(&mu_);
  auto it = propagated_.find(id);
  if (it != propagated_.end() && it->second == state) propagated_.erase(it);
}

void ConnectionCore::CancelPropagated(uint64_t id, bool all) {
  std::vector<std::shared_ptr<CancellationState>> doomed;
  {
    absl::MutexLock lock(&mu_);
    if (propagated_.empty()) return;
    if (all) {
      for (auto& [served, state] : propagated_) doomed.push_back(std::move(state));
      propagated_.clear();
    } else if (auto it = propagated_.find(id); it != propagated_.end()) {
      doomed.push_back(std::move(it->second));
      propagated_.erase(it);
    }
  }
  // Outside the lock: the calls' callbacks only schedule their abandonment.
  for (const auto& state : doomed) state->Cancel();
}

void ConnectionCore::SendError(uint64_t call_id, const absl::Status& status, absl::Time deadline) {
  SendResponse(call_id, status, nullptr, 0, {}, deadline);
}

void ConnectionCore::SendResponse(uint64_t call_id, const absl::Status& status,
                                  const google::protobuf::MessageLite* reply, size_t reply_size,
                                  const Metadata& trailers, absl::Time deadline,
                                  bool attachments, const Metadata* initial) {
  std::string meta;
  if (!status.ok() || !trailers.empty() || initial != nullptr) {
    meta = StatusToWire(status, trailers, initial).SerializeAsString();
    if (meta.size() > kDefaultMaxMetaSize && HasPayloads(status)) {
      // Details too large to send: the error goes without them.
      meta = StatusToWire(absl::Status(status.code(), status.message()), trailers, initial)
                 .SerializeAsString();
    }
    if (meta.size() > kDefaultMaxMetaSize) {
      // The peer would take an oversize meta section for malformed input and
      // close the connection, failing every other call on it: this call
      // fails alone instead, as a reply over the size limit does.
      SendError(call_id,
                absl::ResourceExhaustedError(absl::StrCat(
                    "the status and metadata of ", meta.size(),
                    " bytes exceed the limit of ", kDefaultMaxMetaSize, " bytes")),
                deadline);
      return;
    }
  }
  // The client stops waiting at its deadline; give the send a little slack
  // beyond it so a reply racing the deadline is not cut mid-way.
  absl::Time send_deadline =
      deadline == absl::InfiniteFuture() ? absl::InfiniteFuture() : deadline + absl::Seconds(1);
  absl::Status sent =
      attachments && reply != nullptr
          ? SendWithAttachments(FrameHeader::Make(FrameType::kResponse, 0, call_id), meta,
                                /*counted_field=*/4, *reply, send_deadline)
          : SendFrame(FrameHeader::Make(FrameType::kResponse, 0, call_id), meta, reply, reply_size,
                      send_deadline);
  if (!sent.ok() && attachments && reply != nullptr &&
      (absl::IsFailedPrecondition(sent) || absl::IsInvalidArgument(sent) ||
       absl::IsNotFound(sent) || absl::IsResourceExhausted(sent))) {
    // Nothing was sent (the transport cannot carry descriptors, a bad
    // descriptor): the client still gets an answer.
    SendError(call_id, sent, deadline);
    return;
  }
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

}  // namespace locus::internal
