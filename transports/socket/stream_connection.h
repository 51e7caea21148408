// A Connection over a connected stream socket (Unix or TCP): frames are
// written with sendmsg and cut out of the byte stream by FrameDecoder.
//
// Example:
//   std::unique_ptr<Connection> conn = StreamConnection::Create(fd, peer, options);
//   conn->Start(&sink);
//
// Reading: exactly one party holds the reader role (socket_reader_role.h)
// at a time: the event-loop thread (default), or a caller inside
// DriveUntil() (a synchronous client waiting for its reply reads the socket
// itself, saving a thread hand-off). While a caller holds the role the fd is
// removed from the loop's interest set. Either polls before it sleeps
// (TransportOptions::socket_spin, adaptive): the caller with non-blocking
// receives, the loop by asking to poll the connection after its input
// (event_loop.h), taking the role for one read at a time and not at all
// while a caller waits for it.
//
// File descriptors (a Unix socket only; TCP has the default SendWithFds):
// sent with their frame's first byte (stream_writer.h), received with
// recvmsg into room for kMaxFdsPerFrame and matched to the frames that
// claim them (received_fds.h); a peer's descriptors that do not match, or
// come truncated, close the connection as malformed input.
//
// Writing (stream_writer.h): Send() writes directly from the calling thread;
// what the socket does not take at once is queued and flushed by the loop on
// EPOLLOUT, so a sender never blocks mid-frame. Send() blocks (until its
// deadline) only when more than max_send_queue_bytes are queued, and never
// on the loop thread.
#ifndef LOCUS_TRANSPORTS_SOCKET_STREAM_CONNECTION_H_
#define LOCUS_TRANSPORTS_SOCKET_STREAM_CONNECTION_H_

#include <memory>

#include "locus/transport.h"

namespace locus::internal {

class StreamConnection final : public Connection {
 public:
  // Takes ownership of `fd`, a connected socket (made blocking here: a
  // caller waiting for its reply receives it with one blocking recv; every
  // other read and write passes MSG_DONTWAIT).
  static std::unique_ptr<StreamConnection> Create(int fd, PeerInfo peer,
                                                  const TransportOptions& options);
  ~StreamConnection() override;

  void Start(FrameSink* sink) override;
  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time deadline) override;
  // True for a Unix socket.
  bool CanPassFds() const override;
  absl::Status SendWithFds(const FrameHeader& header, absl::string_view meta,
                           absl::string_view payload, absl::Span<const int> fds,
                           absl::Time deadline) override;
  void Close(const absl::Status& reason) override;
  bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) override;
  void AdjustBackgroundReads(int delta) override;
  bool HasQueuedOutput() const override;
  const PeerInfo& peer() const override;

  class Impl;

 private:
  explicit StreamConnection(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// Tests: the longest a caller blocked in DriveUntil sleeps before it looks
// at done() and its deadline by itself (1 s by default). Tests make it long,
// so that only the wake-ups under test (input, closure) end a wait and a
// missing one fails by watchdog instead of passing late. Process-wide, any
// thread; affects waits that start afterwards.
void SetSocketReaderSleepForTesting(absl::Duration sleep);

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_STREAM_CONNECTION_H_
