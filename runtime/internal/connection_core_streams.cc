// ConnectionCore: streaming calls, both those this side opens and those it
// serves (whose admission is in connection_core_server.cc). The state of
// each stream lives in a StreamCall (internal/stream_call.h); the core owns
// the table, routes MESSAGE, WINDOW_UPDATE and the final RESPONSE to it, and
// sends what it asks for.
#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/message_lite.h"
#include "internal/connection_core.h"
#include "internal/connection_core_frames.h"

namespace locus::internal {

uint64_t ConnectionCore::ReceiveWindow() const {
  return std::max(options_.stream_window_bytes, kMinStreamWindowBytes);
}

uint64_t ConnectionCore::PeerStreamWindow() const {
  const uint64_t window = peer_hello_.stream_window_bytes();
  return window == 0 ? kMinStreamWindowBytes : window;
}

absl::StatusOr<std::shared_ptr<StreamCall>> ConnectionCore::RegisterStream(
    const RpcMethod& method, const CallOptions& options, google::protobuf::MessageLite* response,
    const std::shared_ptr<AttemptReport>& report) {
  absl::MutexLock lock(&mu_);
  if (absl::Status accepts = CheckAcceptsCallsLocked(); !accepts.ok()) {
    if (report != nullptr) report->not_processed = true;
    return accepts;
  }
  const uint64_t id = next_call_id_;
  next_call_id_ += 2;
  auto stream = std::make_shared<StreamCall>(this, StreamCall::Side::kClient, method, id,
                                             options.deadline, PeerStreamWindow(), ReceiveWindow(),
                                             options_.max_send_message_size, response);
  stream->trailing_metadata = options.trailing_metadata;
  stream->report = report;
  stream->initial_metadata = options.initial_metadata;
  if (options.cancellation.has_value()) {
    absl::Status watched =
        WatchCancellation(*options.cancellation, id, /*stream=*/true, &stream->cancel_registration);
    if (!watched.ok()) return watched;
    stream->waits_without_driving = true;
  }
  if (options.deadline != absl::InfiniteFuture()) {
    // Tells the server at the deadline even if the client is not waiting
    // on the stream then. End() cancels it.
    stream->deadline_timer = ScheduleDeadline(options.deadline, id, /*stream=*/true);
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
    google::protobuf::MessageLite* response, const CallOptions& options,
    const ObjectTarget* target, std::shared_ptr<AttemptReport> report) {
  absl::StatusOr<std::unique_ptr<ClientCallStream>> stream =
      TryOpenStream(method, request, response, options, target, std::move(report));
  if (!stream.ok()) return MakeFailedClientStream(stream.status());
  return *std::move(stream);
}

absl::StatusOr<std::unique_ptr<ClientCallStream>> ConnectionCore::TryOpenStream(
    const RpcMethod& method, const google::protobuf::MessageLite* request,
    google::protobuf::MessageLite* response, const CallOptions& options,
    const ObjectTarget* target, std::shared_ptr<AttemptReport> report) {
  if (method.kind == RpcKind::kUnary) {
    return absl::InvalidArgumentError(absl::StrCat(method.full_name, " is not a streaming method"));
  }
  if (method.has_attachments) {
    return absl::FailedPreconditionError(absl::StrCat(
        method.full_name,
        ": object references and file descriptors travel in unary requests and replies only, "
        "not in stream messages"));
  }
  if (!connection_->reliable()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "streaming call to ", method.full_name, " needs a reliable transport, not ",
        peer().transport, " (datagrams may be lost)"));
  }
  if ((method.kind == RpcKind::kServerStreaming) != (request != nullptr) ||
      (method.kind == RpcKind::kClientStreaming) != (response != nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "streaming call to ", method.full_name, " opened with the wrong request/response"));
  }
  if (absl::Now() >= options.deadline) {
    return absl::DeadlineExceededError(absl::StrCat("deadline passed before ", method.full_name, " started"));
  }
  absl::StatusOr<std::shared_ptr<StreamCall>> stream = RegisterStream(method, options, response, report);
  if (!stream.ok()) return stream.status();
  // A server-streaming request goes with the REQUEST, which half-closes.
  absl::Status sent = SendRequest(method, (*stream)->id(), request,
                                  request != nullptr ? kFlagEndStream : 0, options, target);
  if (!sent.ok() && TakeStream((*stream)->id()) != nullptr) {
    ReportUnsent(sent, report.get());
    (*stream)->End(sent);
    return sent;
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
  SendCancel(id);
}

void ConnectionCore::AbortStream(StreamCall* stream, absl::Status status) {
  if (stream->side() == StreamCall::Side::kClient) {
    // Whoever takes it from the table ends it (the reader, with the
    // server's status, or here).
    std::shared_ptr<StreamCall> taken = TakeStream(stream->id());
    if (taken == nullptr) return;
    taken->End(std::move(status));
    SendCancel(taken->id());
    return;
  }
  // Server: the handler still runs (it learns from IsCancelled, Read and
  // Write); the client learns now. Claimed before ending the stream: the
  // handler, woken by End, must find the answer taken.
  const bool answer = stream->ClaimResponse();
  stream->End(status);
  CancelPropagated(stream->id(), /*all=*/false);  // calls made on its behalf
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
  (void)SendControlFrame(FrameType::kWindowUpdate, id, &update, deadline);
}

absl::Status ConnectionCore::SendInitialMetadata(uint64_t id, const Metadata& metadata,
                                                 absl::Time deadline) {
  // A peer without "headers/1" would take the frame for a protocol error.
  if (!peer_speaks_headers_.load(std::memory_order_acquire)) return absl::OkStatus();
  wire::InitialMetadata headers;
  AddMetadataEntries(metadata, headers.mutable_metadata());
  const std::string meta = headers.SerializeAsString();
  if (meta.size() > kDefaultMaxMetaSize) {
    // As for trailers: this call fails, the connection goes on.
    return absl::ResourceExhaustedError(absl::StrCat("initial metadata of ", meta.size(),
                                                     " bytes exceeds the limit of ",
                                                     kDefaultMaxMetaSize, " bytes"));
  }
  absl::Status sent = SendFrame(FrameHeader::Make(FrameType::kHeaders, 0, id), meta, nullptr, 0, deadline);
  MarkBrokenIfUnavailable(sent);
  return sent;
}

void ConnectionCore::HandleHeaders(const Frame& frame) {
  // Only a server sends initial metadata, and in a frame of its own only on
  // streams: anything else (unknown or ended calls too) is dropped.
  std::shared_ptr<StreamCall> stream = FindStream(frame.header.call_id);
  if (stream == nullptr || stream->side() != StreamCall::Side::kClient) return;
  wire::InitialMetadata headers;
  if (!ParseMeta(frame, &headers)) {
    AbortStream(stream.get(), absl::InternalError(absl::StrCat(
                                  "malformed initial metadata on ", stream->method().full_name)));
    return;
  }
  Metadata metadata;
  metadata.reserve(headers.metadata_size());
  for (const wire::MetadataEntry& entry : headers.metadata()) metadata.emplace_back(entry.key(), entry.value());
  stream->OnInitialMetadata(std::move(metadata));
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
  Metadata initial;
  absl::Status status = ResponseStatus(frame, stream.trailing_metadata, &initial);
  // Initial metadata that no message came after (none, or none before a HEADERS).
  if (!initial.empty()) stream.OnInitialMetadata(std::move(initial));
  if (status.ok() && stream.response() != nullptr) {
    status = ParseReply(frame, stream.method().full_name, stream.response());
  }
  // Messages that arrived before the status stay readable, as in gRPC.
  stream.End(std::move(status), /*keep_unread=*/true);
}

}  // namespace locus::internal
