// A Connection over two shared-memory rings (one per direction) in a memfd,
// with the Unix socket that set it up kept open to detect the peer's death
// and to carry file descriptors (SendWithFds: one message per frame with
// descriptors, matched to the frames in the ring that claim them; see
// shm_writer.h, shm_reader.h). No other data goes through it after setup.
//
// Example:
//   auto mapping = ShmMapping::Map(memfd, size);           // after setup
//   auto conn = ShmConnection::Create(socket_fd, std::move(*mapping),
//                                     /*client_side=*/true, geometry, peer, options);
//   conn->Start(&sink);
//
// Made of a writer (shm_writer.h: the outgoing ring and bulk area, queued
// output) and a reader (shm_reader.h: the incoming ring, delivery, the
// reader role, polling and doorbell waits), which share the connection's
// CloseState (transports/common/close_state.h).
//
// Threads: each connection has one reader thread, which drains the incoming
// ring and delivers frames (on the server, handlers run inline on it). A
// synchronous caller can take the reader role (DriveUntil) and poll the ring
// itself, so its reply needs no thread wake-up. Waiting is adaptive: a reader
// polls for `shm_spin` (only if another core can run the peer and the
// process-wide spinner budget allows), then sleeps on a futex in the ring; a
// writer only issues a futex wake when the reader sleeps and nobody polls.
#ifndef LOCUS_TRANSPORTS_SHM_SHM_CONNECTION_H_
#define LOCUS_TRANSPORTS_SHM_SHM_CONNECTION_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "locus/transport.h"
#include "transports/shm/shm_layout.h"  // ShmGeometry

namespace locus::internal {

// A MAP_SHARED mapping of a connection's memfd; unmapped on destruction.
class ShmMapping {
 public:
  // Maps `size` bytes of `fd` (the fd may be closed afterwards).
  static absl::StatusOr<std::unique_ptr<ShmMapping>> Map(int fd, size_t size);
  ~ShmMapping();
  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  ShmMapping(char* data, size_t size) : data_(data), size_(size) {}
  char* data_;
  size_t size_;
};

class ShmConnection final : public Connection {
 public:
  // Takes ownership of `socket_fd` and `mapping`, whose header has been
  // validated against `geometry`. `client_side`: this side writes ring 0 and
  // bulk area 0 and reads ring 1 and bulk area 1.
  static std::unique_ptr<ShmConnection> Create(int socket_fd, std::unique_ptr<ShmMapping> mapping,
                                               bool client_side, const ShmGeometry& geometry,
                                               PeerInfo peer, const TransportOptions& options);
  ~ShmConnection() override;

  void Start(FrameSink* sink) override;
  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time deadline) override;
  // Large payloads are serialized straight into the bulk area (shm_bulk.h)
  // when it has room, small ones straight into the ring when the frame fits
  // there in one piece; the rest take the default path (a scratch buffer,
  // then Send).
  absl::Status SendWithPayloadWriter(const FrameHeader& header, absl::string_view meta,
                                     PayloadWriter write_payload, absl::Time deadline) override;
  // True: descriptors travel over the connection's Unix socket.
  bool CanPassFds() const override { return true; }
  absl::Status SendWithFds(const FrameHeader& header, absl::string_view meta,
                           absl::string_view payload, absl::Span<const int> fds,
                           absl::Time deadline) override;
  void Close(const absl::Status& reason) override;
  bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) override;
  // At 0, a synchronous caller's polling announcement outlives its call
  // (the next call's reply then needs no write to a shared cache line).
  void AdjustBackgroundReads(int delta) override;
  bool HasQueuedOutput() const override;
  // Before Start(): how long the idle reader thread sleeps before it looks
  // at the ring by itself (ShmReader::kMaxSleep). Tests make it long, so
  // that only the wake-ups under test wake it.
  void SetReaderSleepForTesting(absl::Duration sleep);
  // Whether the reader thread sleeps because a synchronous caller holds
  // the reader role while nobody wants background reads (it then waits
  // for a local wake-up only).
  bool ReaderParkedForTesting() const;
  const PeerInfo& peer() const override;

  class Impl;

 private:
  explicit ShmConnection(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SHM_SHM_CONNECTION_H_
