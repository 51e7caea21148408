// Streaming calls: a client and a server exchanging a sequence of messages
// on one call, with flow control, deadlines and cancellation.
//
// The three kinds, as in gRPC (and with gRPC's synchronous API shape):
//   server streaming  stub.Watch(request)      -> ClientReader<Event>
//   client streaming  stub.Upload(&summary)    -> ClientWriter<Chunk>
//   bidirectional     stub.Chat()              -> ClientReaderWriter<Note, Note>
// Handlers receive a ServerWriter, ServerReader or ServerReaderWriter.
//
// Example (client side of a server-streaming method):
//   locus::ClientReader<demo::Event> events = stub.Watch(request, options);
//   demo::Event event;
//   while (events.Read(&event)) Handle(event);
//   absl::Status status = events.Finish();   // the server's status
//
// Example (bidirectional, handler side):
//   absl::Status MyChat::Chat(locus::ServerContext* context,
//                             locus::ServerReaderWriter<Note, Note>* stream) {
//     Note note;
//     while (stream->Read(&note)) {
//       if (!stream->Write(note)) break;     // the client went away
//     }
//     return absl::OkStatus();
//   }
//
// Semantics:
// * Read returns false when the peer will send no more messages (the server
//   finished, or the client called WritesDone) or the call ended abnormally;
//   the client then calls Finish for the status. Write returns false when
//   the call is over (finished, cancelled, deadline, connection lost); the
//   message was not sent.
// * Flow control: a writer may have a window of bytes in flight per call
//   (the receiver's ChannelOptions/ServerOptions::stream_window_bytes,
//   4 MiB by default); Write waits for the reader to consume messages beyond
//   that, until the call's deadline. So a slow reader slows its writer
//   instead of filling memory.
// * The whole call is bounded by CallOptions::deadline. Cancel() (or
//   destroying the client object before Finish) ends it with CANCELLED at
//   once and tells the server, whose handler sees IsCancelled() and whose
//   Read/Write return false.
// * Finish() half-closes the client's side if WritesDone was not called,
//   discards messages not read, and waits for the server's status (and, for
//   client streaming, the response).
// * Not from a completion callback (or inline handler) on the same
//   connection: that thread holds the connection's reader, so a Read,
//   Write or Finish that would wait ends the call with FAILED_PRECONDITION
//   at once instead of waiting out its deadline (locus/channel.h).
//
// Thread-safety: one thread may Read while another Writes; Reads must not
// overlap each other, nor Writes (and WritesDone) each other. Finish and
// Cancel may be called from any thread, Finish once.
#ifndef LOCUS_STREAM_H_
#define LOCUS_STREAM_H_

#include <cstdint>
#include <memory>
#include <utility>

#include "absl/status/status.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace locus {

// Default receive window per streaming call (ChannelOptions and
// ServerOptions::stream_window_bytes).
inline constexpr uint64_t kDefaultStreamWindowBytes = 4u << 20;

// The client side of one streaming call, type-erased. Implemented by the
// runtime; users hold it through the typed wrappers below.
class ClientCallStream {
 public:
  // Cancels the call (CANCELLED) if it has not finished.
  virtual ~ClientCallStream() = default;
  virtual bool Write(const google::protobuf::MessageLite& message) = 0;
  // Half-closes: tells the server no more messages follow. Returns false if
  // the call is already over. Idempotent.
  virtual bool WritesDone() = 0;
  virtual bool Read(google::protobuf::MessageLite* message) = 0;
  [[nodiscard]] virtual absl::Status Finish() = 0;
  virtual void Cancel() = 0;
};

// The server side of one streaming call, type-erased; valid while the
// handler runs.
class ServerCallStream {
 public:
  virtual bool Read(google::protobuf::MessageLite* message) = 0;
  virtual bool Write(const google::protobuf::MessageLite& message) = 0;

 protected:
  ~ServerCallStream() = default;
};

// Client side of a server-streaming call.
template <typename Response>
class ClientReader {
 public:
  explicit ClientReader(std::unique_ptr<ClientCallStream> stream) : stream_(std::move(stream)) {}
  ClientReader(ClientReader&&) noexcept = default;
  ClientReader& operator=(ClientReader&&) noexcept = default;

  bool Read(Response* message) { return stream_->Read(message); }
  [[nodiscard]] absl::Status Finish() { return stream_->Finish(); }
  void Cancel() { stream_->Cancel(); }

 private:
  std::unique_ptr<ClientCallStream> stream_;
};

// Client side of a client-streaming call; the response (given to the stub)
// is valid once Finish returns OK.
template <typename Request>
class ClientWriter {
 public:
  explicit ClientWriter(std::unique_ptr<ClientCallStream> stream) : stream_(std::move(stream)) {}
  ClientWriter(ClientWriter&&) noexcept = default;
  ClientWriter& operator=(ClientWriter&&) noexcept = default;

  bool Write(const Request& message) { return stream_->Write(message); }
  bool WritesDone() { return stream_->WritesDone(); }
  [[nodiscard]] absl::Status Finish() { return stream_->Finish(); }
  void Cancel() { stream_->Cancel(); }

 private:
  std::unique_ptr<ClientCallStream> stream_;
};

// Client side of a bidirectional call.
template <typename Request, typename Response>
class ClientReaderWriter {
 public:
  explicit ClientReaderWriter(std::unique_ptr<ClientCallStream> stream)
      : stream_(std::move(stream)) {}
  ClientReaderWriter(ClientReaderWriter&&) noexcept = default;
  ClientReaderWriter& operator=(ClientReaderWriter&&) noexcept = default;

  bool Write(const Request& message) { return stream_->Write(message); }
  bool WritesDone() { return stream_->WritesDone(); }
  bool Read(Response* message) { return stream_->Read(message); }
  [[nodiscard]] absl::Status Finish() { return stream_->Finish(); }
  void Cancel() { stream_->Cancel(); }

 private:
  std::unique_ptr<ClientCallStream> stream_;
};

// Handler side of a client-streaming call.
template <typename Request>
class ServerReader {
 public:
  explicit ServerReader(ServerCallStream* stream) : stream_(stream) {}
  bool Read(Request* message) { return stream_->Read(message); }

 private:
  ServerCallStream* stream_;
};

// Handler side of a server-streaming call.
template <typename Response>
class ServerWriter {
 public:
  explicit ServerWriter(ServerCallStream* stream) : stream_(stream) {}
  bool Write(const Response& message) { return stream_->Write(message); }

 private:
  ServerCallStream* stream_;
};

// Handler side of a bidirectional call (gRPC's order: written type first).
template <typename Response, typename Request>
class ServerReaderWriter {
 public:
  explicit ServerReaderWriter(ServerCallStream* stream) : stream_(stream) {}
  bool Read(Request* message) { return stream_->Read(message); }
  bool Write(const Response& message) { return stream_->Write(message); }

 private:
  ServerCallStream* stream_;
};

}  // namespace locus

#endif  // LOCUS_STREAM_H_
