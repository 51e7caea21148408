#include "transports/socket/stream_connection.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "transports/common/close_state.h"
#include "transports/common/frame_decoder.h"
#include "transports/common/frame_fds.h"
#include "transports/socket/adaptive_poll.h"
#include "transports/socket/event_loop.h"
#include "transports/socket/received_fds.h"
#include "transports/socket/socket_reader_role.h"
#include "transports/socket/stream_writer.h"

namespace locus::internal {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;

// Blocking receives (DriveUntil) wake at most this late: SO_RCVTIMEO counts
// in scheduler ticks and rounds up, so they stop this much before the
// deadline and the rest is waited with ppoll. Below kBlockingReceiveMin of
// time left, only ppoll is used.
constexpr absl::Duration kBlockingReceiveSlack = absl::Milliseconds(5);
constexpr absl::Duration kBlockingReceiveMin = absl::Milliseconds(1);

// How long a blocked caller sleeps at most before it re-checks done() by
// itself (SetSocketReaderSleepForTesting).
std::atomic<int64_t> g_reader_sleep_ns{absl::ToInt64Nanoseconds(absl::Seconds(1))};

absl::Duration ReaderSleep() {
  return absl::Nanoseconds(g_reader_sleep_ns.load(std::memory_order_relaxed));
}

timespec PollTimeout(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  d = std::min(d, ReaderSleep());  // re-check done() now and then
  return absl::ToTimespec(d);
}

}  // namespace

// The connection: the reader (the reader role, reads, delivery), the writer
// (stream_writer.h), the close state they share, and the loop's interest
// in the socket. Shared by the StreamConnection and the event loop (which
// holds it while dispatching), and weakly by the writer's stall timer.
class StreamConnection::Impl final : public FdHandler,
                                     public FrameDecoderSink,
                                     public StreamWriter::Owner {
 public:
  using Reader = SocketReaderRole::Reader;

  // `can_pass_fds`: `fd` is a Unix socket, whose frames may carry file
  // descriptors (the count in their flags, frame_fds.h).
  Impl(int fd, PeerInfo peer, const TransportOptions& options, bool can_pass_fds)
      : fd_(fd),
        peer_(std::move(peer)),
        options_(options),
        can_pass_fds_(can_pass_fds),
        writer_(fd, peer_, options, close_, this),
        decoder_(options.max_meta_size, options.max_receive_message_size,
                 can_pass_fds ? kFlagsFdCount : 0),
        read_buffer_(new char[kReadBufferSize]) {}

  ~Impl() override { close(fd_); }

  const PeerInfo& peer() const { return peer_; }
  bool can_pass_fds() const { return can_pass_fds_; }

  // For the writer's timers; set at creation, before any Send (one may
  // need a stall check).
  void SetSelf(const std::shared_ptr<Impl>& self) {
    writer_.SetSelf(std::shared_ptr<StreamWriter>(self, &writer_));
  }

  void Start(FrameSink* sink, std::shared_ptr<Impl> self) {
    sink_ = sink;
    EventLoop* loop = EventLoopPool::Get().Next();
    uint32_t mask;
    {
      // Sends before Start() only queue, and AdjustBackgroundReads only
      // counts (UpdateInterest waits for the loop).
      absl::MutexLock lock(&interest_mu_);
      loop_ = loop;
      writer_.SetLoop(loop);
      mask = InterestFor(Reader::kIdle);
      last_mask_ = mask;
    }
    absl::Status added = loop->Add(fd_, mask, std::move(self));
    if (!added.ok()) DeliverClosed(absl::UnavailableError(added.message()));
  }

  // Removes the fd from the loop and makes sure OnClosed was delivered.
  // After this the sink is never called again, even by a reader that is
  // still unwinding on this thread (the sink may be what is being destroyed).
  void Shutdown() {
    Close(absl::CancelledError("connection destroyed"));
    if (loop_ != nullptr) loop_->Remove(fd_);
    if (sink_ != nullptr && !close_.on_closed_taken()) DeliverClosed(close_.Reason());
    detached_.store(true, std::memory_order_release);
  }

  // Connection::Close, StreamWriter::Owner.
  void Close(const absl::Status& reason) override {
    if (!close_.Close(reason)) return;
    writer_.CloseForWriting();
    // Wakes whoever reads (loop or caller) with EOF; they deliver OnClosed.
    shutdown(fd_, SHUT_RDWR);
  }

  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time deadline) {
    return writer_.Send(header, meta, payload, {}, deadline);
  }

  // A Unix socket's SendWithFds: the count goes in the header's private
  // bits, the descriptors with the frame's first byte (stream_writer.h).
  absl::Status SendWithFds(const FrameHeader& header, absl::string_view meta,
                           absl::string_view payload, absl::Span<const int> fds,
                           absl::Time deadline) {
    absl::Status valid = ValidateFdsToSend(fds);
    if (!valid.ok()) return valid;
    FrameHeader wire = header;
    wire.flags = (wire.flags & ~kFlagsFdCount) | EncodeFdCount(fds.size());
    return writer_.Send(wire, meta, payload, fds, deadline);
  }

  bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
    if (!role_.AcquireAsCaller(options_.socket_spin)) return false;
    UpdateInterestIfReaderMatters();
    bool closed = false;
    // The caller has just sent its request. It polls for the reply first
    // (socket_spin) while polling pays off; then, with time to spare, one
    // blocking receive waits for the reply and reads it (one system call,
    // as in a blocking ping-pong); close to the deadline, ppoll waits with
    // full precision.
    bool try_read = false;
    bool may_poll = true;
    while (!done()) {
      const absl::Duration left = deadline - absl::Now();
      if (left > kBlockingReceiveSlack + kBlockingReceiveMin) {
        if (may_poll) {
          ReadResult polled = ReadResult::kWouldBlock;
          // The lambda runs on this thread, which holds the role.
          PollAsCaller(caller_poll_, options_.socket_spin, deadline - kBlockingReceiveSlack,
                       [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
                         polled = ReadOnce();
                         return polled != ReadResult::kWouldBlock;
                       });
          if (polled == ReadResult::kClosed) {
            closed = true;
            break;
          }
          if (polled == ReadResult::kData) continue;
          may_poll = false;  // ran out (or may not poll): sleep until input,
          continue;          // with the time left now
        }
        SetReceiveTimeout(std::min(left - kBlockingReceiveSlack, ReaderSleep()));
        ReadResult r = ReadOnce(nullptr, /*blocking=*/true);
        if (r == ReadResult::kClosed) {
          closed = true;
          break;
        }
        continue;  // data, or the timeout passed: check done() and the deadline
      }
      if (try_read) {
        ReadResult r = ReadOnce();
        if (r == ReadResult::kClosed) {
          closed = true;
          break;
        }
        if (r == ReadResult::kData) continue;
      }
      try_read = true;
      absl::Time now = absl::Now();
      if (now >= deadline) break;
      pollfd pfd{fd_, POLLIN | POLLRDHUP, 0};
      timespec timeout = PollTimeout(deadline - now);
      ppoll(&pfd, 1, &timeout, nullptr);
    }
    LeaveAfterDriving(closed);
    if (!closed) UpdateInterestIfReaderMatters();
    return true;
  }

  bool HasQueuedOutput() const { return writer_.HasQueuedOutput(); }

  void AdjustBackgroundReads(int delta) {
    {
      absl::MutexLock lock(&interest_mu_);
      background_readers_.fetch_add(delta, std::memory_order_seq_cst);
    }
    UpdateInterest();
  }

  // FdHandler: runs on the loop thread.
  void OnEvents(uint32_t events) override {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) writer_.FlushQueue();
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0) return;
    const bool hangup = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    if (!role_.AcquireAsLoop(hangup)) return;
    if (hangup) {
      // The peer is gone: what it sent is finite, and with edge-triggered
      // interest no further event would come. Read to the end.
      while (ReadOnce() == ReadResult::kData) {
      }
    } else {
      ReadBatch();
    }
    role_.Release(Reader::kLoop);
  }

  // FdHandler: the loop polls this connection after handling its input
  // while it reads in the background (a server's connection, or a client's
  // with asynchronous calls out), as long as polling pays (loop_poll_); a
  // caller that reads polls by itself.
  absl::Duration PollWindow() override {
    if (options_.socket_spin <= absl::ZeroDuration() ||
        background_readers_.load(std::memory_order_relaxed) <= 0 || !loop_poll_.ShouldPoll()) {
      return absl::ZeroDuration();
    }
    return options_.socket_spin;
  }

  PollResult PollOnce() override {
    // A caller that wants the role gets it: the loop stops polling.
    if (role_.caller_waiting() || !role_.TryAcquire(Reader::kLoop)) return PollResult::kStop;
    size_t got = 0;
    const ReadResult r = ReadOnce(&got);
    if (r == ReadResult::kData && got == kReadBufferSize) ReadBatch();
    role_.Release(Reader::kLoop);
    if (r == ReadResult::kWouldBlock) return PollResult::kNothing;
    loop_poll_.Hit();
    return PollResult::kInput;
  }

  void PollMissed() override { loop_poll_.Miss(); }

  // StreamWriter::Owner: the loop's interest set follows who reads, whether
  // background reads are wanted, and whether the writer waits for EPOLLOUT.
  void UpdateInterest() override {
    absl::MutexLock lock(&interest_mu_);
    if (loop_ == nullptr) return;  // not started: Start() sets the interest
    const Reader reader = role_.reader();
    if (reader == Reader::kClosed) return;
    // With background reads wanted, the loop reads whenever no caller does
    // (a driving caller takes the socket out of the interest set so the
    // loop is not woken for its reply). Without, only the peer's hang-up
    // is watched, edge-triggered so that it cannot spin the loop while a
    // caller is reading: nothing changes per call.
    const uint32_t mask = InterestFor(reader);
    if (mask == last_mask_) return;
    last_mask_ = mask;
    (void)loop_->Modify(fd_, mask);
  }

  // FrameDecoderSink: runs on the reader-role holder's thread. A frame
  // takes the descriptors its flags claim (received_fds.h); those its sink
  // leaves are closed before the decoder reuses the frame. After a frame
  // that claimed descriptors that are not there, the rest of the read is
  // dropped: ReadOnce closes the connection.
  void OnFrame(Frame& frame) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) {
    if (can_pass_fds_) {
      if (fd_error_.ok()) fd_error_ = received_fds_.Claim(frame.header.flags, &frame.fds);
      if (!fd_error_.ok()) {
        frame.fds.clear();
        return;
      }
      frame.header.flags &= ~kFlagsFdCount;
    }
    if (!detached_.load(std::memory_order_acquire)) sink_->OnFrame(frame);
    frame.fds.clear();
  }
  void OnOversizeFrame(const FrameHeader& header) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) {
    FrameHeader reported = header;
    if (can_pass_fds_) {
      // The frame is skipped: so are (closed) its descriptors.
      std::vector<OwnedFd> skipped;
      if (fd_error_.ok()) fd_error_ = received_fds_.Claim(header.flags, &skipped);
      if (!fd_error_.ok()) return;
      reported.flags &= ~kFlagsFdCount;
    }
    if (!detached_.load(std::memory_order_acquire)) sink_->OnOversizeFrame(reported);
  }

 private:
  enum class ReadResult { kData, kWouldBlock, kClosed };

  // After this thread changed the reader: the interest depends on who
  // reads only while background reads are wanted (InterestFor), so without
  // them nothing changes per call and the two locks of UpdateInterest are
  // skipped. Race-free (Dekker, all seq_cst): AdjustBackgroundReads stores
  // the count before it reads the reader, and this thread reads the count
  // after storing the reader, so at least one of them sees the other's
  // change and sets the interest.
  void UpdateInterestIfReaderMatters() {
    if (background_readers_.load(std::memory_order_seq_cst) > 0) UpdateInterest();
  }

  // A caller leaving the role at the end of DriveUntil (`closed`: it read
  // the EOF or an error). If the loop saw the peer hang up meanwhile, reads
  // what is left and the EOF here first, since no further event will come.
  // Unchecked: SocketReaderRole::ReleaseAsCallerUnlessHangup keeps or
  // releases the role in one step.
  void LeaveAfterDriving(bool closed) ABSL_UNLOCK_FUNCTION(role_) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (!role_.ReleaseAsCallerUnlessHangup(closed)) return;
    while (ReadOnce() == ReadResult::kData) {
    }
    role_.Release(Reader::kCaller);
  }

  // Bounded batch so one busy connection cannot starve others on its loop.
  // A short read means the socket is drained: skip the read that would only
  // say EAGAIN (level-triggered epoll reports what comes next).
  void ReadBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) {
    for (int i = 0; i < 16; ++i) {
      size_t got = 0;
      ReadResult r = ReadOnce(&got);
      if (r != ReadResult::kData || got < kReadBufferSize) break;
    }
  }

  // SO_RCVTIMEO for blocking receives, changed only when the wanted
  // timeout is shorter than the current one (a receive must not outlive the
  // deadline) or much longer (no needless wake-ups): calls with similar
  // deadlines make no setsockopt.
  void SetReceiveTimeout(absl::Duration wanted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) {
    if (receive_timeout_ != absl::ZeroDuration() && wanted >= receive_timeout_ &&
        wanted <= receive_timeout_limit_) {
      return;
    }
    timeval tv = absl::ToTimeval(wanted);
    if (setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0) {
      receive_timeout_ = wanted;
      receive_timeout_limit_ = 4 * wanted;  // computed once, not per call
    }
  }

  uint32_t InterestFor(Reader reader) ABSL_EXCLUSIVE_LOCKS_REQUIRED(interest_mu_) {
    uint32_t mask;
    if (background_readers_.load(std::memory_order_relaxed) > 0) {
      // While a caller reads, nothing is watched but what epoll always
      // reports (hang-up, error): edge-triggered, so that it is reported
      // once (SocketReaderRole::AcquireAsLoop) instead of waking the loop
      // until the caller stops.
      mask = reader == Reader::kCaller ? static_cast<uint32_t>(EPOLLET) : (EPOLLIN | EPOLLRDHUP);
    } else {
      mask = EPOLLRDHUP | EPOLLET;
    }
    if (writer_.want_write()) mask |= EPOLLOUT;
    return mask;
  }

  // Whether `bytes`, read at a frame boundary, hold exactly one frame. Only
  // a batching decision: the decoder validates the header.
  bool IsOneWholeFrame(absl::string_view bytes) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) {
    if (!decoder_.at_frame_boundary() || bytes.size() < sizeof(FrameHeader)) return false;
    FrameHeader header;
    std::memcpy(&header, bytes.data(), sizeof(header));
    return sizeof(header) + header.body_length() == bytes.size();
  }

  // One receive: recv, or on a Unix socket recvmsg with room for the
  // descriptors that may come with the bytes (appended to `*fds`, each
  // checked; an error, e.g. more than a frame may carry, is returned in
  // `*fd_error` with `*fds` left as it was). Returns what recv returns.
  ssize_t Receive(bool blocking, std::vector<OwnedFd>* fds, absl::Status* fd_error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) {
    const int flags = blocking ? 0 : MSG_DONTWAIT;
    if (!can_pass_fds_) return recv(fd_, read_buffer_.get(), kReadBufferSize, flags);
    iovec iov{read_buffer_.get(), kReadBufferSize};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    fds_in_.PrepareFor(&msg);
    const ssize_t n = recvmsg(fd_, &msg, flags | MSG_CMSG_CLOEXEC);
    const int err = errno;
    if (n >= 0) *fd_error = fds_in_.Collect(msg, fds);
    errno = err;
    return n;
  }

  // One read(); delivers any frames completed. Caller holds the reader role.
  // `blocking`: wait up to the socket's receive timeout (a caller in
  // DriveUntil, see SetReceiveTimeout); otherwise never wait.
  ReadResult ReadOnce(size_t* got = nullptr, bool blocking = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) {
    ssize_t n;
    std::vector<OwnedFd> incoming;  // closed unless a frame claims them
    absl::Status fds_received;
    do {
      n = Receive(blocking, &incoming, &fds_received);
      // A signal ends a blocking receive early: the caller re-checks its
      // deadline (restarting would wait a whole SO_RCVTIMEO again).
      if (n < 0 && errno == EINTR && blocking) return ReadResult::kWouldBlock;
    } while (n < 0 && errno == EINTR);
    if (n > 0 && !fds_received.ok()) return FailMalformed(fds_received);
    if (n > 0) {
      if (got != nullptr) *got = static_cast<size_t>(n);
      received_fds_.Add(std::move(incoming));
      const absl::string_view bytes(read_buffer_.get(), static_cast<size_t>(n));
      // A read that is exactly one whole frame (a ping-pong's request) has
      // nothing to batch its reply with: uncorked, the reply leaves as soon
      // as the handler sends it, not after the call's clean-up.
      const bool corked = !IsOneWholeFrame(bytes);
      absl::Status decoded;
      {
        StreamWriter::Cork cork(writer_, corked);
        decoded = decoder_.Consume(bytes, *this);
      }
      // Only this thread, while corked, holds output back.
      if (corked) writer_.FlushCorkedOutput();
      if (decoded.ok()) decoded = fd_error_;
      if (decoded.ok()) decoded = received_fds_.EndOfRead(FdsMayWait());
      if (!decoded.ok()) return FailMalformed(decoded);
      return ReadResult::kData;
    }
    if (n < 0 && errno == EAGAIN) return ReadResult::kWouldBlock;
    const absl::Status reason = close_.ReasonOr(
        n == 0 ? absl::UnavailableError(decoder_.at_frame_boundary()
                                            ? "peer closed the connection"
                                            : "peer closed the connection in the middle of a frame")
               : absl::UnavailableError(absl::StrCat("read failed: ", std::strerror(errno))));
    received_fds_.Clear();  // the connection ends: what no frame claimed closes
    if (!decoder_.at_frame_boundary() && n == 0) {
      LOCUS_LOG(WARNING) << "connection from " << peer_.remote_address
                         << " ended with a truncated frame";
    }
    DeliverClosed(reason);
    return ReadResult::kClosed;
  }

  // How many received descriptors may wait, after a read, for the frame
  // the decoder is in the middle of (received_fds.h).
  size_t FdsMayWait() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) {
    if (decoder_.header_partly_read()) return kMaxFdsPerFrame;
    const FrameHeader* unfinished = decoder_.unfinished_frame();
    return unfinished != nullptr ? DecodeFdCount(unfinished->flags) : 0;
  }

  // Closes the connection for malformed input from the peer (`why`), with
  // every descriptor received and not delivered closed.
  ReadResult FailMalformed(const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) {
    received_fds_.Clear();
    LOCUS_LOG(WARNING) << "closing connection from " << peer_.remote_address
                       << ": malformed input: " << why.message();
    Close(absl::InternalError(absl::StrCat("malformed input from peer: ", why.message())));
    DeliverClosed(close_.Reason());
    return ReadResult::kClosed;
  }

  // Delivers OnClosed once (whoever gets here first: a reader that met the
  // EOF or an error, or Shutdown), after which nobody reads or writes.
  void DeliverClosed(const absl::Status& reason) {
    if (!close_.TakeOnClosedDelivery()) return;
    role_.MarkClosed();
    (void)close_.Close(reason);  // records `reason` unless a Close came first
    writer_.MarkClosed();
    shutdown(fd_, SHUT_RDWR);
    if (loop_ != nullptr) loop_->Remove(fd_);
    sink_->OnClosed(reason);
  }

  const int fd_;
  const PeerInfo peer_;
  const TransportOptions options_;
  const bool can_pass_fds_;     // a Unix socket
  FrameSink* sink_ = nullptr;   // set by Start
  EventLoop* loop_ = nullptr;   // set by Start
  std::atomic<bool> detached_{false};  // the wrapper (and maybe the sink) is gone
  CloseState close_;
  StreamWriter writer_;

  SocketReaderRole role_;
  FrameDecoder decoder_ ABSL_GUARDED_BY(role_);
  FdsToReceive fds_in_ ABSL_GUARDED_BY(role_);
  ReceivedFds received_fds_ ABSL_GUARDED_BY(role_);
  // Set by a frame that claimed descriptors that were not there; the read
  // then fails, and the connection closes.
  absl::Status fd_error_ ABSL_GUARDED_BY(role_);
  absl::Duration receive_timeout_ ABSL_GUARDED_BY(role_);        // zero: not set
  absl::Duration receive_timeout_limit_ ABSL_GUARDED_BY(role_);  // 4 x receive_timeout_
  const std::unique_ptr<char[]> read_buffer_;  // its bytes: the role holder's
  AdaptivePoll caller_poll_ ABSL_GUARDED_BY(role_);  // callers in DriveUntil
  AdaptivePoll loop_poll_;  // loop thread only (FdHandler polling)

  absl::Mutex interest_mu_;
  uint32_t last_mask_ ABSL_GUARDED_BY(interest_mu_) = 0;
  // Users that need frames read when no caller drives (Connection::
  // AdjustBackgroundReads); 1 until the runtime says otherwise. Written
  // under interest_mu_; DriveUntil reads it without (see there).
  std::atomic<int> background_readers_{1};
};

std::unique_ptr<StreamConnection> StreamConnection::Create(int fd, PeerInfo peer,
                                                           const TransportOptions& options) {
  // Blocking, so that a caller waiting for its reply can receive it with one
  // system call; every other read and write passes MSG_DONTWAIT.
  int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  int domain = 0;
  socklen_t length = sizeof(domain);
  const bool unix_socket =
      getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0 && domain == AF_UNIX;
  auto impl = std::make_shared<Impl>(fd, std::move(peer), options, unix_socket);
  impl->SetSelf(impl);
  return std::unique_ptr<StreamConnection>(new StreamConnection(std::move(impl)));
}

StreamConnection::~StreamConnection() { impl_->Shutdown(); }

void StreamConnection::Start(FrameSink* sink) { impl_->Start(sink, impl_); }

absl::Status StreamConnection::Send(const FrameHeader& header, absl::string_view meta,
                                    absl::string_view payload, absl::Time deadline) {
  return impl_->Send(header, meta, payload, deadline);
}

absl::Status StreamConnection::SendWithFds(const FrameHeader& header, absl::string_view meta,
                                           absl::string_view payload, absl::Span<const int> fds,
                                           absl::Time deadline) {
  if (fds.empty() || !impl_->can_pass_fds()) {
    return Connection::SendWithFds(header, meta, payload, fds, deadline);
  }
  return impl_->SendWithFds(header, meta, payload, fds, deadline);
}

bool StreamConnection::CanPassFds() const { return impl_->can_pass_fds(); }

void StreamConnection::Close(const absl::Status& reason) { impl_->Close(reason); }

void SetSocketReaderSleepForTesting(absl::Duration sleep) {
  g_reader_sleep_ns.store(absl::ToInt64Nanoseconds(sleep), std::memory_order_relaxed);
}

bool StreamConnection::DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
  return impl_->DriveUntil(done, deadline);
}
void StreamConnection::AdjustBackgroundReads(int delta) { impl_->AdjustBackgroundReads(delta); }

bool StreamConnection::HasQueuedOutput() const { return impl_->HasQueuedOutput(); }

const PeerInfo& StreamConnection::peer() const { return impl_->peer(); }

}  // namespace locus::internal
