// The state of one streaming call on one side of a connection: messages
// received and not yet read, the flow-control windows, and how the call
// ended. ConnectionCore owns the table of open streams and feeds frames in
// (the On* methods, on the connection's reader); the application reads and
// writes (the client through ClientCallStream, a handler through
// ServerCallStream, which this class implements).
//
// Flow control (docs/wire.md): each side announces in its HELLO how many
// bytes of stream messages it accepts per call (its receive window). A
// message costs its payload plus 24. A writer may send while its window is
// positive (so one message may overdraw it); the reader grants the bytes it
// consumed back with WINDOW_UPDATE once they reach a quarter of its window.
// A peer that sends beyond its window ends the call (RESOURCE_EXHAUSTED).
//
// Waiting: Read, Write and Finish drive the connection themselves when
// nobody else reads it (as a synchronous unary call does; on shared memory
// they take the reading role from the connection's reader thread), so a
// message costs no thread hand-off; otherwise they wait on the call's mutex
// for the thread that reads. A server handler that drives dispatches the
// connection's other frames too (unary handlers may then run inline on its
// thread). Every wait ends at the call's deadline, when the call ends
// (End: a reply, a CANCEL, closure) and, for a client stream with a
// Cancellation, at Cancel(): such a stream never drives (a thread blocked
// reading a socket would not notice the Cancel).
//
// Thread-safety: the On* methods come from the reader; Read and Write may
// run concurrently on two application threads (one each); End and Abort
// from anywhere.
//
// Example (what ConnectionCore does with a MESSAGE frame):
//   if (stream->OnMessage(frame.TakePayload()) == StreamCall::Received::kOverrun) {
//     AbortStream(stream.get(), absl::ResourceExhaustedError("beyond the window"));
//   }
#ifndef LOCUS_RUNTIME_INTERNAL_STREAM_CALL_H_
#define LOCUS_RUNTIME_INTERNAL_STREAM_CALL_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "internal/attempt_report.h"
#include "locus/cancellation.h"
#include "locus/service.h"
#include "locus/stream.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace locus::internal {

class StreamCall;

// What a StreamCall needs from the connection that carries it; implemented
// by ConnectionCore. All methods are thread-safe.
class StreamCallHost {
 public:
  // Whether this thread is delivering the connection's frames (it holds the
  // reader, so it must not wait for a frame).
  virtual bool DeliveringOnThisThread() const = 0;
  // Connection::DriveUntil. If it returns false (another thread reads), the
  // caller waits by other means and then calls WaitedWithoutDriving().
  virtual bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) = 0;
  // Background reads for a caller that waits without trying to drive;
  // WaitedWithoutDriving() ends them, as after a DriveUntil that declined.
  virtual void WillWaitWithoutDriving() = 0;
  virtual void WaitedWithoutDriving() = 0;
  // A MESSAGE frame for stream `id` (`message`: nullptr for END_STREAM
  // alone), sized `size` by ByteSizeLong.
  virtual absl::Status SendStreamMessage(uint64_t id, const google::protobuf::MessageLite* message,
                                         size_t size, uint32_t flags, absl::Time deadline) = 0;
  // Grants the peer `increment` more bytes on stream `id` (best effort).
  virtual void SendWindowUpdate(uint64_t id, uint64_t increment, absl::Time deadline) = 0;
  // Server side: the call's initial metadata (a HEADERS frame), before its
  // first message. RESOURCE_EXHAUSTED (nothing sent) if it exceeds the
  // limit of a meta section; OK without sending if the peer cannot read it.
  virtual absl::Status SendInitialMetadata(uint64_t id, const Metadata& metadata,
                                           absl::Time deadline) = 0;
  // Ends `call`, which failed on this side, with `status` and tells the peer.
  virtual void AbortStream(StreamCall* call, absl::Status status) = 0;

 protected:
  ~StreamCallHost() = default;
};

// What a message costs in a flow-control window: its payload plus a frame
// header, so that empty messages are not free.
inline constexpr uint64_t kStreamMessageOverhead = 24;
// Receive window assumed for a peer whose HELLO announces none.
inline constexpr uint64_t kMinStreamWindowBytes = 64u << 10;

class StreamCall final : public ServerCallStream {
 public:
  enum class Side { kClient, kServer };

  // `host` outlives the call (client streams hold it; server streams live
  // inside its table and handler tasks hold it). `response`: client side of
  // a client-streaming call, where the final reply is parsed.
  StreamCall(StreamCallHost* host, Side side, const RpcMethod& method, uint64_t id,
             absl::Time deadline, uint64_t send_window, uint64_t receive_window,
             uint64_t max_send_message_size, google::protobuf::MessageLite* response);

  uint64_t id() const { return id_; }
  Side side() const { return side_; }
  const RpcMethod& method() const { return method_; }
  absl::Time deadline() const { return deadline_; }
  google::protobuf::MessageLite* response() const { return response_; }
  // Server side: the handler's cancellation flag (ServerContext); set by End.
  std::atomic<bool>& cancelled_flag() { return cancelled_; }
  // Client side: where the server's trailing and initial metadata go
  // (CallOptions); set before the call is published. Initial metadata is
  // written under the call's lock, before the first message is queued and
  // never once the call ended (its caller may have freed it).
  Metadata* trailing_metadata = nullptr;
  Metadata* initial_metadata = nullptr;
  // Server side: the handler's context, whose initial metadata goes with
  // the first Write (or, if none, the RESPONSE); set before the handler
  // runs, and cleared (nullptr) before the context goes, once the handler
  // returned. Serialized with Write.
  void set_headers_source(const ServerContext* context);
  // Server side: true for the first caller only, who sends the initial
  // metadata (a Write's HEADERS, or the RESPONSE).
  bool ClaimHeaders() { return !headers_claimed_.exchange(true, std::memory_order_acq_rel); }
  // Client side: the deadline timer (0: none or already running); End
  // cancels it. The timer's own callback clears it first.
  std::atomic<uint64_t> deadline_timer{0};
  // Client streams with CallOptions::cancellation (set before the stream is
  // shared; dropped by End).
  CancellationRegistration cancel_registration;
  // Set with cancel_registration, before the stream is shared: Cancel()
  // must wake a waiter at once, which a thread blocked reading the
  // connection could not notice, so this stream's waits never drive the
  // connection; they wait for its reader (as cancellable unary calls do).
  bool waits_without_driving = false;
  // Client side: told if the server never processed the call (set before
  // the stream is shared, written before End); may be null.
  std::shared_ptr<AttemptReport> report;

  // --- From the connection's reader ---
  enum class Received { kQueued, kDropped, kOverrun, kAfterHalfClose };
  // A message from the peer: queued; dropped (the call ended here); or a
  // violation that the caller ends the call for (beyond the window this
  // side announced, or after the peer's END_STREAM).
  Received OnMessage(std::string payload);
  // The peer sends no more messages (END_STREAM).
  void OnHalfClose();
  // Client side: the server's initial metadata (HEADERS, or the RESPONSE's);
  // only the first is kept, and none after a message or the end of the call.
  void OnInitialMetadata(Metadata metadata);
  void OnWindowUpdate(uint64_t increment);

  // Ends the call on this side (idempotent; the first status wins). Read
  // and Write fail afterwards, except that with `keep_unread` (the client
  // received the server's final status) messages already received stay
  // readable, as in gRPC; waiters wake. Cancels the deadline timer.
  void End(absl::Status status, bool keep_unread = false);
  bool ended() const;
  // Server side: true for the first caller only; whoever gets it sends the
  // call's RESPONSE (the handler's outcome, or an error that ended it early).
  bool ClaimResponse() { return !response_claimed_.exchange(true, std::memory_order_acq_rel); }

  // --- From the application ---
  bool Read(google::protobuf::MessageLite* message) override;
  bool Write(const google::protobuf::MessageLite& message) override;
  // Client: END_STREAM without a message. Idempotent.
  bool HalfClose();
  // Client: drops unread messages (granting their window back) and waits
  // for the end of the call; returns its status.
  absl::Status AwaitEnd();
  // The status the call ended with (OK while it runs).
  absl::Status status() const;

 private:
  // Waits until `ready` (evaluated under mu_) or the deadline; returns
  // whether ready. Drives the connection when it can.
  bool Await(absl::FunctionRef<bool()> ready);
  void WaitForEvent(uint64_t seen);
  // Counts a consumed message and sends WINDOW_UPDATE when due.
  void Consumed(uint64_t cost);
  // The call failed on this side (deadline, bad message, send error): ends
  // it and tells the peer (StreamCallHost::AbortStream).
  void Abort(absl::Status status);
  void Changed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { events_.fetch_add(1, std::memory_order_release); }

  StreamCallHost* const host_;
  const Side side_;
  const RpcMethod& method_;
  const uint64_t id_;
  const absl::Time deadline_;
  const uint64_t receive_window_;
  const uint64_t max_send_message_size_;
  google::protobuf::MessageLite* const response_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> response_claimed_{false};
  std::atomic<bool> headers_claimed_{false};
  // Bumped (under mu_) on every change a waiter may be waiting for; read
  // without the lock by a client driving the connection.
  std::atomic<uint64_t> events_{0};

  mutable absl::Mutex mu_;
  std::deque<std::string> inbox_ ABSL_GUARDED_BY(mu_);
  bool peer_half_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool headers_received_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  // Bytes this side may still send (may go negative by one message).
  int64_t send_window_ ABSL_GUARDED_BY(mu_);
  // Bytes received and not yet granted back; bytes read and not yet granted.
  uint64_t unacknowledged_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t consumed_ ABSL_GUARDED_BY(mu_) = 0;
  // Serializes sends of messages and of END_STREAM (Finish may half-close
  // from another thread than the writer's), so END_STREAM never overtakes
  // a message and no message follows it.
  absl::Mutex write_mu_;
  bool half_closed_ ABSL_GUARDED_BY(write_mu_) = false;
  const ServerContext* headers_source_ ABSL_GUARDED_BY(write_mu_) = nullptr;
};

// The client's handle on a StreamCall (what Channel::OpenStream returns).
// Cancels the call if destroyed before it ended, and then waits until the
// reader has let go of the call's response message.
std::unique_ptr<ClientCallStream> MakeClientStream(std::shared_ptr<StreamCallHost> host,
                                                   std::shared_ptr<StreamCall> call);
// A stream that never started: Read and Write fail, Finish returns `status`.
std::unique_ptr<ClientCallStream> MakeFailedClientStream(absl::Status status);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_STREAM_CALL_H_
