#include "transports/shm/shm_connection.h"

#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "transports/common/close_state.h"
#include "transports/common/frame_fds.h"
#include "transports/shm/shm_bulk.h"
#include "transports/shm/shm_layout.h"
#include "transports/shm/shm_reader.h"
#include "transports/shm/shm_writer.h"
#include "transports/socket/event_loop.h"

namespace locus::internal {

absl::StatusOr<std::unique_ptr<ShmMapping>> ShmMapping::Map(int fd, size_t size) {
  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("mmap of shared-memory region failed: ", std::strerror(errno)));
  }
  return std::unique_ptr<ShmMapping>(new ShmMapping(static_cast<char*>(data), size));
}

ShmMapping::~ShmMapping() { munmap(data_, size_); }

// The connection: its writer (shm_writer.h), its reader (shm_reader.h), the
// close state they share, and the Unix socket that tells each side when the
// other dies. Shared by the ShmConnection, the reader thread and the event
// loop watching the socket.
class ShmConnection::Impl final : public FdHandler,
                                  public ShmWriter::Owner,
                                  public ShmReader::Owner,
                                  public std::enable_shared_from_this<Impl> {
 public:
  // `geometry` was validated at setup and is never re-read from shared
  // memory. This side writes ring and bulk area 0 if `client_side`, else 1,
  // and reads the other.
  Impl(int socket_fd, std::unique_ptr<ShmMapping> mapping, bool client_side,
       const ShmGeometry& geometry, PeerInfo peer, const TransportOptions& options)
      : fd_(socket_fd),
        mapping_(std::move(mapping)),
        peer_(std::move(peer)),
        writer_(mapping_->data(), geometry, client_side ? 0 : 1, socket_fd, peer_, options, this),
        reader_(mapping_->data(), geometry, client_side ? 1 : 0, socket_fd, peer_, options, this) {}

  ~Impl() override { close(fd_); }

  const PeerInfo& peer() const { return peer_; }

  // Before Start() only.
  void SetReaderSleepForTesting(absl::Duration sleep) { reader_.set_idle_sleep(sleep); }
  bool ReaderParkedForTesting() const { return reader_.parked(); }
  bool HasQueuedOutput() const { return writer_.queued_bytes(std::memory_order_acquire) != 0; }

  void Start(FrameSink* sink) {
    reader_.set_sink(sink);
    loop_ = EventLoopPool::Get().Next();
    // Only hang-ups matter on the socket now: they are how the peer's death
    // is noticed, whatever state its rings are in.
    absl::Status added = loop_->Add(fd_, EPOLLRDHUP, shared_from_this());
    if (!added.ok()) Close(absl::UnavailableError(added.message()));
    reader_thread_ = std::thread([self = shared_from_this()] { self->RunReaderThread(); });
  }

  // After this the sink is never called again. From another thread it
  // joins the reader (which delivers OnClosed first); from the reader thread
  // itself (the sink released its last reference inside a callback) it
  // detaches it, and the reader stops calling the sink.
  void Shutdown() {
    Close(absl::CancelledError("connection destroyed"));
    if (loop_ != nullptr) loop_->Remove(fd_);
    if (reader_thread_.joinable()) {
      if (reader_thread_.get_id() == std::this_thread::get_id()) {
        reader_.Detach();
        reader_thread_.detach();
      } else {
        reader_thread_.join();
      }
    }
    reader_.Detach();
  }

  // ShmWriter::Owner, ShmReader::Owner, Connection::Close.
  void Close(const absl::Status& reason) override {
    if (!close_.Close(reason)) return;
    shutdown(fd_, SHUT_RDWR);  // the peer notices through its socket
    // Wake our own sleepers (on our ring words) so they see the closure.
    reader_.WakeLocal();  // everyone here sleeps on our doorbell
  }

  // ShmWriter::Owner: a sender that is not the reader-role holder waits for
  // room below the queue limit.
  void SleepUntilRoom(absl::Duration timeout) override {
    reader_.SleepOnDoorbell(writer_, close_, /*want_data=*/false, ShmReader::SpaceInterest::kAnyRoom,
                            std::min(timeout, ShmReader::kMaxSleep));
  }

  // FdHandler: the socket hung up or failed: the peer is gone.
  void OnEvents(uint32_t events) override {
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      Close(absl::UnavailableError("peer closed the connection"));
    }
  }

  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time deadline) {
    const bool role_holder = reader_.HoldsRole();
    ShmWriter::Sending sending(&writer_, payload.size(), role_holder);
    if (close_.closed(std::memory_order_acquire)) return close_.ClosedError();
    return writer_.SendLocked(header, meta, payload, {}, deadline, role_holder, close_);
  }

  // The count goes in the ring frame's private bits, the descriptors over
  // the socket just before it (shm_writer.h).
  absl::Status SendWithFds(const FrameHeader& header, absl::string_view meta,
                           absl::string_view payload, absl::Span<const int> fds,
                           absl::Time deadline) {
    absl::Status valid = ValidateFdsToSend(fds);
    if (!valid.ok()) return valid;
    FrameHeader wire = header;
    wire.flags = (wire.flags & ~kFlagsFdCount) | EncodeFdCount(fds.size());
    const bool role_holder = reader_.HoldsRole();
    ShmWriter::Sending sending(&writer_, payload.size(), role_holder);
    if (close_.closed(std::memory_order_acquire)) return close_.ClosedError();
    return writer_.SendLocked(wire, meta, payload, fds, deadline, role_holder, close_);
  }

  // See ShmWriter::SendInBulkLocked.
  absl::Status SendInBulk(const FrameHeader& header, absl::string_view meta,
                          Connection::PayloadWriter write_payload, absl::Time deadline,
                          bool* in_bulk) {
    *in_bulk = false;
    if (!writer_.MayUseBulk(header.payload_length)) return absl::OkStatus();
    const bool role_holder = reader_.HoldsRole();
    ShmWriter::Sending sending(&writer_, header.payload_length, role_holder);
    if (close_.closed(std::memory_order_acquire)) return close_.ClosedError();
    return writer_.SendInBulkLocked(header, meta, write_payload, deadline, role_holder, close_,
                                    in_bulk);
  }

  // See ShmWriter::SendInRingLocked.
  absl::Status SendInRing(const FrameHeader& header, absl::string_view meta,
                          Connection::PayloadWriter write_payload, bool* in_ring) {
    *in_ring = false;
    ShmWriter::Sending sending(&writer_, header.payload_length, reader_.HoldsRole());
    if (close_.closed(std::memory_order_acquire)) return close_.ClosedError();
    return writer_.SendInRingLocked(header, meta, write_payload, in_ring);
  }

  bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
    return reader_.DriveUntil(done, deadline, writer_, close_);
  }

  void AdjustBackgroundReads(int delta) { reader_.AdjustBackgroundReads(delta); }

 private:
  // The reader thread: reads until the connection closes, then delivers
  // OnClosed once, holding the role so no caller is delivering frames
  // concurrently.
  void RunReaderThread() {
    reader_.ReadUntilClosed(writer_, close_);
    reader_.StopReading();
    if (loop_ != nullptr) loop_->Remove(fd_);
    if (close_.TakeOnClosedDelivery()) reader_.DeliverClosed(close_.Reason());
  }

  const int fd_;
  const std::unique_ptr<ShmMapping> mapping_;
  const PeerInfo peer_;
  EventLoop* loop_ = nullptr;
  std::thread reader_thread_;
  CloseState close_;
  ShmWriter writer_;
  ShmReader reader_;
};

std::unique_ptr<ShmConnection> ShmConnection::Create(int socket_fd,
                                                     std::unique_ptr<ShmMapping> mapping,
                                                     bool client_side, const ShmGeometry& geometry,
                                                     PeerInfo peer, const TransportOptions& options) {
  return std::unique_ptr<ShmConnection>(new ShmConnection(std::make_shared<Impl>(
      socket_fd, std::move(mapping), client_side, geometry, std::move(peer), options)));
}

ShmConnection::~ShmConnection() { impl_->Shutdown(); }
void ShmConnection::Start(FrameSink* sink) { impl_->Start(sink); }
absl::Status ShmConnection::Send(const FrameHeader& header, absl::string_view meta,
                                 absl::string_view payload, absl::Time deadline) {
  return impl_->Send(header, meta, payload, deadline);
}
absl::Status ShmConnection::SendWithPayloadWriter(const FrameHeader& header, absl::string_view meta,
                                                  PayloadWriter write_payload, absl::Time deadline) {
  bool sent = false;
  absl::Status status = impl_->SendInBulk(header, meta, write_payload, deadline, &sent);
  if (sent || !status.ok()) return status;
  if (header.payload_length < kMinBulkPayload) {
    status = impl_->SendInRing(header, meta, write_payload, &sent);
    if (sent || !status.ok()) return status;
  }
  return Connection::SendWithPayloadWriter(header, meta, write_payload, deadline);
}
absl::Status ShmConnection::SendWithFds(const FrameHeader& header, absl::string_view meta,
                                        absl::string_view payload, absl::Span<const int> fds,
                                        absl::Time deadline) {
  if (fds.empty()) return impl_->Send(header, meta, payload, deadline);
  return impl_->SendWithFds(header, meta, payload, fds, deadline);
}
void ShmConnection::Close(const absl::Status& reason) { impl_->Close(reason); }
bool ShmConnection::DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
  return impl_->DriveUntil(done, deadline);
}
void ShmConnection::AdjustBackgroundReads(int delta) { impl_->AdjustBackgroundReads(delta); }
bool ShmConnection::HasQueuedOutput() const { return impl_->HasQueuedOutput(); }
void ShmConnection::SetReaderSleepForTesting(absl::Duration sleep) {
  impl_->SetReaderSleepForTesting(sleep);
}
bool ShmConnection::ReaderParkedForTesting() const { return impl_->ReaderParkedForTesting(); }
const PeerInfo& ShmConnection::peer() const { return impl_->peer(); }

}  // namespace locus::internal
