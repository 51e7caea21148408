#include "internal/stream_call.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/timer_queue.h"
#include "google/protobuf/message_lite.h"

namespace locus::internal {

StreamCall::StreamCall(StreamCallHost* host, Side side, const RpcMethod& method, uint64_t id,
                       absl::Time deadline, uint64_t send_window, uint64_t receive_window,
                       uint64_t max_send_message_size, google::protobuf::MessageLite* response)
    : host_(host),
      side_(side),
      method_(method),
      id_(id),
      deadline_(deadline),
      receive_window_(receive_window),
      max_send_message_size_(max_send_message_size),
      response_(response),
      send_window_(static_cast<int64_t>(
          std::min<uint64_t>(send_window, std::numeric_limits<int64_t>::max() / 2))) {}

StreamCall::Received StreamCall::OnMessage(std::string payload) {
  absl::MutexLock lock(&mu_);
  if (ended_) return Received::kDropped;  // late: the call is over here
  if (peer_half_closed_) return Received::kAfterHalfClose;
  if (unacknowledged_ >= receive_window_) return Received::kOverrun;
  unacknowledged_ += payload.size() + kStreamMessageOverhead;
  inbox_.push_back(std::move(payload));
  // Initial metadata comes before the first message or not at all: the
  // caller may be reading what it has once a message is readable.
  headers_received_ = true;
  Changed();
  return Received::kQueued;
}

void StreamCall::set_headers_source(const ServerContext* context) {
  absl::MutexLock write_lock(&write_mu_);
  headers_source_ = context;
}

void StreamCall::OnHalfClose() {
  absl::MutexLock lock(&mu_);
  peer_half_closed_ = true;
  Changed();
}

void StreamCall::OnInitialMetadata(Metadata metadata) {
  absl::MutexLock lock(&mu_);
  // Once the call ended here, `initial_metadata` may be gone with its caller.
  if (ended_ || headers_received_) return;
  headers_received_ = true;
  if (initial_metadata == nullptr) return;
  LowercaseKeys(metadata);
  for (auto& entry : metadata) initial_metadata->push_back(std::move(entry));
}

void StreamCall::OnWindowUpdate(uint64_t increment) {
  absl::MutexLock lock(&mu_);
  // Saturating: a peer granting absurd amounts only lifts its own limit.
  const int64_t cap = std::numeric_limits<int64_t>::max() / 2;
  send_window_ = increment >= static_cast<uint64_t>(cap - std::max<int64_t>(send_window_, 0))
                     ? cap
                     : send_window_ + static_cast<int64_t>(increment);
  Changed();
}

void StreamCall::End(absl::Status status, bool keep_unread) {
  {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    ended_ = true;
    status_ = std::move(status);
    if (!keep_unread) inbox_.clear();
    cancelled_.store(true, std::memory_order_release);
    Changed();
  }
  if (TimerQueue::Id timer = deadline_timer.exchange(0); timer != 0) TimerQueue::Get().Cancel(timer);
  cancel_registration.Reset();  // only the first End() gets here
}

bool StreamCall::ended() const {
  absl::MutexLock lock(&mu_);
  return ended_;
}

absl::Status StreamCall::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

void StreamCall::WaitForEvent(uint64_t seen) {
  absl::MutexLock lock(&mu_);
  auto changed = [this, seen] { return events_.load(std::memory_order_relaxed) != seen; };
  mu_.AwaitWithDeadline(absl::Condition(&changed), deadline_);
}

bool StreamCall::Await(absl::FunctionRef<bool()> ready) {
  for (;;) {
    uint64_t seen;
    {
      absl::MutexLock lock(&mu_);
      if (ready()) return true;
      seen = events_.load(std::memory_order_relaxed);
    }
    if (absl::Now() >= deadline_) return false;
    if (host_->DeliveringOnThisThread()) {
      // A completion callback or inline handler: this thread holds the
      // connection's reader, so what we wait for could never arrive. The
      // call ends (ready() then holds) instead of waiting out its deadline.
      absl::Status refused = absl::FailedPreconditionError(absl::StrCat(
          "synchronous use of stream ", method_.full_name,
          " from a completion callback or inline handler running on the thread that reads its "
          "connection: its messages could never be read; use it from another thread"));
      Abort(refused);
      // Ended here too (End is idempotent): if someone else took the call
      // from the table, it may be this very thread, later (a GOAWAY's
      // refused streams), and ready() must hold now.
      End(std::move(refused));
      continue;
    }
    // Read the connection on this thread if nobody else does (on shared
    // memory a waiting thread takes the reading role from the connection's
    // reader thread): the frame we wait for then needs no thread hand-off.
    if (waits_without_driving) {
      host_->WillWaitWithoutDriving();
    } else if (host_->DriveUntil(
                   [this, seen] { return events_.load(std::memory_order_acquire) != seen; },
                   deadline_)) {
      continue;
    }
    WaitForEvent(seen);
    host_->WaitedWithoutDriving();
  }
}

void StreamCall::Consumed(uint64_t cost) {
  uint64_t grant = 0;
  {
    absl::MutexLock lock(&mu_);
    consumed_ += cost;
    if (ended_ || consumed_ < receive_window_ / 4) return;
    grant = consumed_;
    consumed_ = 0;
    unacknowledged_ -= std::min(unacknowledged_, grant);
  }
  host_->SendWindowUpdate(id_, grant, deadline_);
}

void StreamCall::Abort(absl::Status status) { host_->AbortStream(this, std::move(status)); }

bool StreamCall::Read(google::protobuf::MessageLite* message) {
  // A server handler past its deadline is cancelled (its call ends
  // DEADLINE_EXCEEDED when it returns): nothing more to read.
  if (side_ == Side::kServer && absl::Now() >= deadline_) return false;
  const bool ready = Await([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !inbox_.empty() || ended_ || peer_half_closed_;
  });
  std::string payload;  // an empty payload is a valid (empty) message
  bool got = false;
  bool expired = false;
  {
    absl::MutexLock lock(&mu_);
    if (!inbox_.empty()) {
      payload = std::move(inbox_.front());
      inbox_.pop_front();
      got = true;
    } else {
      expired = !ready && !ended_;
    }
  }
  if (!got) {
    // Deadline: the client's call fails here; a server handler sees
    // IsCancelled() and its call ends DEADLINE_EXCEEDED when it returns.
    if (expired && side_ == Side::kClient) {
      Abort(absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded reading from ", method_.full_name)));
    }
    return false;
  }
  Consumed(payload.size() + kStreamMessageOverhead);
  if (!message->ParseFromString(payload)) {
    Abort(absl::Status(
        side_ == Side::kServer ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kInternal,
        absl::StrCat("message of ", method_.full_name, " does not parse as ",
                     message->GetTypeName())));
    return false;
  }
  return true;
}

bool StreamCall::Write(const google::protobuf::MessageLite& message) {
  if (ended()) return false;
  if (side_ == Side::kServer && absl::Now() >= deadline_) return false;
  if (!message.IsInitialized()) {
    Abort(absl::InternalError(absl::StrCat("cannot serialize a message of ", method_.full_name,
                                           " (missing required fields?)")));
    return false;
  }
  const size_t size = message.ByteSizeLong();
  if (size > max_send_message_size_ || size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    Abort(absl::ResourceExhaustedError(absl::StrCat("message of ", size, " bytes on ",
                                                    method_.full_name, " exceeds the send limit of ",
                                                    max_send_message_size_, " bytes")));
    return false;
  }
  const bool ready = Await([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ended_ || send_window_ > 0;
  });
  if (!ready) {
    // Deadline: the client's call fails here; a server handler sees
    // IsCancelled() and its call ends DEADLINE_EXCEEDED when it returns.
    if (side_ == Side::kClient) {
      Abort(absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded writing to ", method_.full_name)));
    }
    return false;
  }
  absl::Status sent;
  {
    absl::MutexLock write_lock(&write_mu_);
    if (half_closed_ || ended()) return false;  // no message after END_STREAM
    // A handler's initial metadata goes before its first message.
    if (headers_source_ != nullptr && !headers_claimed_.load(std::memory_order_relaxed) &&
        ClaimHeaders() && !headers_source_->initial_metadata().empty()) {
      sent = host_->SendInitialMetadata(id_, headers_source_->initial_metadata(), deadline_);
    }
    if (sent.ok()) sent = host_->SendStreamMessage(id_, &message, size, 0, deadline_);
  }
  if (!sent.ok()) {
    Abort(std::move(sent));
    return false;
  }
  absl::MutexLock lock(&mu_);
  send_window_ -= static_cast<int64_t>(size + kStreamMessageOverhead);
  return true;
}

bool StreamCall::HalfClose() {
  absl::Status sent;
  {
    absl::MutexLock write_lock(&write_mu_);
    if (half_closed_) return !ended();
    if (ended()) return false;
    half_closed_ = true;
    sent = host_->SendStreamMessage(id_, nullptr, 0, kFlagEndStream, deadline_);
  }
  if (!sent.ok()) {
    Abort(std::move(sent));
    return false;
  }
  return true;
}

absl::Status StreamCall::AwaitEnd() {
  for (;;) {
    const bool ready = Await([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return ended_ || !inbox_.empty();
    });
    if (!ready) {
      Abort(absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded waiting for ", method_.full_name)));
      // Whoever took the call from the table (this thread, the deadline
      // timer or the reader with the server's status) ends it right away.
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&ended_));
      return status_;
    }
    uint64_t dropped = 0;
    {
      absl::MutexLock lock(&mu_);
      for (const std::string& payload : inbox_) dropped += payload.size() + kStreamMessageOverhead;
      inbox_.clear();
      if (ended_) return status_;
    }
    // Unread messages: grant their room back so the server can finish.
    Consumed(dropped);
  }
}

namespace {

class RemoteClientStream final : public ClientCallStream {
 public:
  RemoteClientStream(std::shared_ptr<StreamCallHost> host, std::shared_ptr<StreamCall> call)
      : host_(std::move(host)), call_(std::move(call)) {}

  ~RemoteClientStream() override {
    if (!call_->ended()) Cancel();
    // The reader may still be parsing the final reply into the caller's
    // response message; it ends the call right after.
    (void)call_->AwaitEnd();
  }

  bool Write(const google::protobuf::MessageLite& message) override { return call_->Write(message); }
  bool WritesDone() override { return call_->HalfClose(); }
  bool Read(google::protobuf::MessageLite* message) override { return call_->Read(message); }
  absl::Status Finish() override {
    if (call_->method().kind != RpcKind::kServerStreaming) (void)call_->HalfClose();
    return call_->AwaitEnd();
  }
  void Cancel() override {
    host_->AbortStream(call_.get(), absl::CancelledError(absl::StrCat(
                                        call_->method().full_name, " cancelled by the client")));
  }

 private:
  const std::shared_ptr<StreamCallHost> host_;
  const std::shared_ptr<StreamCall> call_;
};

class FailedClientStream final : public ClientCallStream {
 public:
  explicit FailedClientStream(absl::Status status) : status_(std::move(status)) {}
  bool Write(const google::protobuf::MessageLite&) override { return false; }
  bool WritesDone() override { return false; }
  bool Read(google::protobuf::MessageLite*) override { return false; }
  absl::Status Finish() override { return status_; }
  void Cancel() override {}

 private:
  const absl::Status status_;
};

}  // namespace

std::unique_ptr<ClientCallStream> MakeClientStream(std::shared_ptr<StreamCallHost> host,
                                                   std::shared_ptr<StreamCall> call) {
  return std::make_unique<RemoteClientStream>(std::move(host), std::move(call));
}

std::unique_ptr<ClientCallStream> MakeFailedClientStream(absl::Status status) {
  return std::make_unique<FailedClientStream>(std::move(status));
}

}  // namespace locus::internal
