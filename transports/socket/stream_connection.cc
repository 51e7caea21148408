#include "transports/socket/stream_connection.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/timer_queue.h"
#include "transports/common/copy_bytes.h"
#include "transports/common/frame_decoder.h"
#include "transports/common/send_stall.h"
#include "transports/common/spin_budget.h"
#include "transports/socket/adaptive_poll.h"
#include "transports/socket/event_loop.h"

namespace locus::internal {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;

// Blocking receives (DriveUntil) wake at most this late: SO_RCVTIMEO counts
// in scheduler ticks (up to 4 ms) and rounds up, so they stop this much
// before the deadline and the rest is waited with ppoll. Below
// kBlockingReceiveMin of time left, only ppoll is used.
constexpr absl::Duration kBlockingReceiveSlack = absl::Milliseconds(5);
constexpr absl::Duration kBlockingReceiveMin = absl::Milliseconds(1);

// Output corking. While a thread delivers the frames of one read, the
// frames it sends on the same connection (inline handlers' replies, calls
// made from completion callbacks) are queued and written together when the
// batch ends: one system call for a batch of pipelined calls instead of one
// per call. Frames above kCorkedFrameMaxBytes, or a queue that would grow
// past kCorkedQueueMaxBytes, are written at once as before. A read that is
// exactly one frame is not corked: its reply has nothing to wait for, and
// leaves before the call's clean-up (a ping-pong's latency). The connection
// corked by this thread, if any:
thread_local const void* t_corked_connection = nullptr;
constexpr size_t kCorkedFrameMaxBytes = 16 * 1024;
constexpr size_t kCorkedQueueMaxBytes = 256 * 1024;

// How long DriveUntil waits for the loop to hand over the reader role it
// holds for one non-blocking read while polling (it takes it no more once a
// caller wants it): a read and the inline handlers of what it read.
constexpr absl::Duration kReaderRoleWait = absl::Microseconds(20);

timespec PollTimeout(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  if (d > absl::Seconds(1)) d = absl::Seconds(1);  // re-check done() at least every second
  return absl::ToTimespec(d);
}

}  // namespace

class StreamConnection::Impl final : public FdHandler, public FrameDecoderSink {
 public:
  Impl(int fd, PeerInfo peer, const TransportOptions& options)
      : fd_(fd),
        peer_(std::move(peer)),
        options_(options),
        decoder_(options.max_meta_size, options.max_receive_message_size),
        read_buffer_(new char[kReadBufferSize]) {}

  ~Impl() override { close(fd_); }

  const PeerInfo& peer() const { return peer_; }

  // For timers; set at creation, before any Send (one may need a stall check).
  void SetSelf(const std::shared_ptr<Impl>& self) { weak_self_ = self; }

  void Start(FrameSink* sink, std::shared_ptr<Impl> self) {
    sink_ = sink;
    EventLoop* loop = EventLoopPool::Get().Next();
    uint32_t mask;
    {
      // Sends before Start() only queue, and AdjustBackgroundReads only
      // counts (UpdateInterest waits for the loop).
      absl::MutexLock lock(&interest_mu_);
      loop_ = loop;
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
    if (sink_ != nullptr && !closed_delivered_.load()) DeliverClosed(CloseReason());
    detached_.store(true, std::memory_order_release);
  }

  void Close(const absl::Status& reason) {
    {
      absl::MutexLock lock(&state_mu_);
      if (closing_) return;
      closing_ = true;
      close_reason_ = reason;
    }
    {
      absl::MutexLock lock(&write_mu_);
      // Frames sent before closing go out first, as far as the socket takes
      // them without waiting (e.g. a rejection queued by a corked batch).
      corked_output_ = false;
      (void)WriteQueuedLocked();
      write_closed_ = true;
    }
    // Wakes whoever reads (loop or caller) with EOF; they deliver OnClosed.
    shutdown(fd_, SHUT_RDWR);
  }

  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time deadline) {
    const size_t total = sizeof(header) + meta.size() + payload.size();
    absl::MutexLock lock(&write_mu_);
    if (write_closed_) return absl::UnavailableError(absl::StrCat("connection closed: ", CloseReason().message()));
    if (t_corked_connection == this) {
      if (total <= kCorkedFrameMaxBytes && queued_bytes() + total <= kCorkedQueueMaxBytes) {
        AppendToQueue(header, meta, payload, 0);
        corked_output_ = true;
        return absl::OkStatus();
      }
      // Too much to hold back: write what this batch queued, then this
      // frame as usual (directly if the socket took the queue).
      if (!want_write_.load() && WriteQueuedLocked() && write_closed_) {
        return absl::UnavailableError("connection closed");
      }
    }
    if (queued_bytes() == 0) {
      iovec iov[3] = {{const_cast<FrameHeader*>(&header), sizeof(header)},
                      {const_cast<char*>(meta.data()), meta.size()},
                      {const_cast<char*>(payload.data()), payload.size()}};
      ssize_t n;
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = 3;
      do {
        // No SIGPIPE if the peer is gone; never block (the fd is blocking
        // for callers' receives, see DriveUntil).
        n = sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      } while (n < 0 && errno == EINTR);
      if (n < 0 && errno != EAGAIN) {
        std::string why = absl::StrCat("write to ", peer_.remote_address, " failed: ", std::strerror(errno));
        write_closed_ = true;
        write_mu_.Unlock();
        Close(absl::UnavailableError(why));
        write_mu_.Lock();
        return absl::UnavailableError(why);
      }
      size_t written = n < 0 ? 0 : static_cast<size_t>(n);
      if (written == total) return absl::OkStatus();
      AppendToQueue(header, meta, payload, written);
      ArmWrite();
      return absl::OkStatus();
    }
    // Bytes are queued already: this frame goes behind them.
    if (loop_ == nullptr || !loop_->InLoopThread()) {  // not started: never the loop
      auto room = [this]() ABSL_SHARED_LOCKS_REQUIRED(write_mu_) {
        return write_closed_ || queued_bytes() < options_.max_send_queue_bytes;
      };
      // The stall is counted from the peer's last progress, not from when
      // this sender started waiting: a peer that reads slowly while other
      // senders keep the queue full is not stalled.
      for (;;) {
        const absl::Time stall = last_progress_ + options_.send_stall_timeout;
        if (write_mu_.AwaitWithDeadline(absl::Condition(&room), std::min(deadline, stall))) break;
        if (absl::Now() >= deadline) {
          return absl::DeadlineExceededError("deadline passed while the peer was not reading");
        }
        if (absl::Now() < last_progress_ + options_.send_stall_timeout) continue;  // it moved
        const absl::Status stalled =
            PeerStoppedReadingError(peer_.remote_address, queued_bytes(), options_.send_stall_timeout);
        write_mu_.Unlock();
        CloseStalled(stalled);
        write_mu_.Lock();
        return stalled;
      }
      if (write_closed_) return absl::UnavailableError("connection closed");
    }
    AppendToQueue(header, meta, payload, 0);
    // The loop may have drained the queue (and dropped EPOLLOUT) while we
    // waited. Write now rather than only arming EPOLLOUT: with
    // edge-triggered interest, a socket that stayed writable gives no new
    // edge, and the queue would wait for the stall timer. Arm only if the
    // socket refused bytes (a later edge is then certain).
    if (!want_write_.load() && !WriteQueuedLocked()) ArmWrite();
    return absl::OkStatus();
  }

  bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
    if (!TakeReaderRoleAsCaller()) return false;
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
          PollAsCaller(caller_poll_, options_.socket_spin, deadline - kBlockingReceiveSlack, [&] {
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
        SetReceiveTimeout(std::min(left - kBlockingReceiveSlack, absl::Seconds(1)));
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
    bool read_to_end = false;
    for (uint32_t state = reader_state_.load(std::memory_order_seq_cst);;) {
      if (ReaderOf(state) != Reader::kCaller) break;  // closed meanwhile
      // The loop saw the peer hang up while this caller read: read what is
      // left and the EOF here, since no further event will come.
      read_to_end = (state & kHangupSeen) != 0 && !closed;
      const uint32_t next = static_cast<uint32_t>(read_to_end ? Reader::kCaller : Reader::kIdle);
      if (reader_state_.compare_exchange_weak(state, next, std::memory_order_seq_cst)) break;
    }
    if (read_to_end) {
      while (ReadOnce() == ReadResult::kData) {
      }
      LeaveReaderRole(Reader::kCaller);
    }
    if (!closed) UpdateInterestIfReaderMatters();
    return true;
  }

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

  bool HasQueuedOutput() const {
    absl::MutexLock lock(&write_mu_);
    return queued_bytes() != 0;
  }

  void AdjustBackgroundReads(int delta) {
    {
      absl::MutexLock lock(&interest_mu_);
      background_readers_.fetch_add(delta, std::memory_order_seq_cst);
    }
    UpdateInterest();
  }

  // FdHandler: runs on the loop thread.
  void OnEvents(uint32_t events) override {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) FlushQueue();
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0) return;
    const bool hangup = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    for (uint32_t state = reader_state_.load(std::memory_order_seq_cst);;) {
      if (ReaderOf(state) == Reader::kIdle) {
        if (reader_state_.compare_exchange_weak(state, static_cast<uint32_t>(Reader::kLoop),
                                                std::memory_order_seq_cst)) {
          break;
        }
        continue;
      }
      // A caller reads (or closed). Without background reads the hang-up
      // is reported once (edge-triggered): the caller handles it when it
      // stops driving, if it has not read the EOF itself.
      if (!hangup || reader_state_.compare_exchange_weak(state, state | kHangupSeen,
                                                         std::memory_order_seq_cst)) {
        return;
      }
    }
    if (hangup) {
      // The peer is gone: what it sent is finite, and with edge-triggered
      // interest no further event would come. Read to the end.
      while (ReadOnce() == ReadResult::kData) {
      }
    } else {
      ReadBatch();
    }
    LeaveReaderRole(Reader::kLoop);
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
    if (callers_wanting_role_.load(std::memory_order_seq_cst) > 0 || !TakeReaderRole(Reader::kLoop)) {
      return PollResult::kStop;
    }
    size_t got = 0;
    const ReadResult r = ReadOnce(&got);
    if (r == ReadResult::kData && got == kReadBufferSize) ReadBatch();
    LeaveReaderRole(Reader::kLoop);
    if (r == ReadResult::kWouldBlock) return PollResult::kNothing;
    loop_poll_.Hit();
    return PollResult::kInput;
  }

  void PollMissed() override { loop_poll_.Miss(); }

  // Bounded batch so one busy connection cannot starve others on its loop.
  // A short read means the socket is drained: skip the read that would only
  // say EAGAIN (level-triggered epoll reports what comes next).
  void ReadBatch() {
    for (int i = 0; i < 16; ++i) {
      size_t got = 0;
      ReadResult r = ReadOnce(&got);
      if (r != ReadResult::kData || got < kReadBufferSize) break;
    }
  }

  // SO_RCVTIMEO for blocking receives, changed only when the wanted
  // timeout is shorter than the current one (a receive must not outlive the
  // deadline) or much longer (no needless wake-ups): calls with similar
  // deadlines make no setsockopt. Caller (reader role) only.
  void SetReceiveTimeout(absl::Duration wanted) {
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

  // FrameDecoderSink: runs on the reader-role holder's thread.
  void OnFrame(Frame& frame) override {
    if (!detached_.load(std::memory_order_acquire)) sink_->OnFrame(frame);
  }
  void OnOversizeFrame(const FrameHeader& header) override {
    if (!detached_.load(std::memory_order_acquire)) sink_->OnOversizeFrame(header);
  }

 private:
  // Who reads the socket: nobody, the loop, a driving caller, or nobody
  // ever again. Kept in reader_state_ with kHangupSeen (see OnEvents).
  enum class Reader : uint32_t { kIdle, kLoop, kCaller, kClosed };
  enum class ReadResult { kData, kWouldBlock, kClosed };
  static constexpr uint32_t kReaderMask = 3;
  static constexpr uint32_t kHangupSeen = 4;  // only while a caller reads
  static Reader ReaderOf(uint32_t state) { return static_cast<Reader>(state & kReaderMask); }

  // Idle -> `who`; false if someone else reads (or the socket is closed).
  bool TakeReaderRole(Reader who) {
    uint32_t idle = static_cast<uint32_t>(Reader::kIdle);
    return reader_state_.compare_exchange_strong(idle, static_cast<uint32_t>(who),
                                                 std::memory_order_seq_cst);
  }
  // Idle -> caller. The loop holds the role only briefly while it polls
  // (one non-blocking read, and the inline handlers of what came), and
  // takes it no more once a caller wants it: worth a short wait then.
  // Without polling (socket_spin 0, or a one-core machine) the loop holds
  // the role only while it handles events, and waiting for it would spin
  // on the core it needs: the caller falls back at once.
  bool TakeReaderRoleAsCaller() {
    if (TakeReaderRole(Reader::kCaller)) return true;
    if (options_.socket_spin <= absl::ZeroDuration() || SpinBudget::Get().limit() == 0 ||
        ReaderOf(reader_state_.load(std::memory_order_seq_cst)) != Reader::kLoop) {
      return false;
    }
    callers_wanting_role_.fetch_add(1, std::memory_order_seq_cst);
    const absl::Time give_up = absl::Now() + kReaderRoleWait;
    bool taken = false;
    for (;;) {
      CpuRelax();
      taken = TakeReaderRole(Reader::kCaller);
      if (taken || absl::Now() >= give_up) break;
      // Only the loop hands the role back soon; another caller (or
      // closure) keeps it.
      const Reader reader = ReaderOf(reader_state_.load(std::memory_order_seq_cst));
      if (reader != Reader::kLoop && reader != Reader::kIdle) break;
    }
    callers_wanting_role_.fetch_sub(1, std::memory_order_seq_cst);
    return taken;
  }

  // `who` -> idle, unless the connection closed meanwhile.
  void LeaveReaderRole(Reader who) {
    for (uint32_t state = reader_state_.load(std::memory_order_seq_cst);
         ReaderOf(state) == who;) {
      if (reader_state_.compare_exchange_weak(state, static_cast<uint32_t>(Reader::kIdle),
                                              std::memory_order_seq_cst)) {
        return;
      }
    }
  }

  size_t queued_bytes() const ABSL_SHARED_LOCKS_REQUIRED(write_mu_) {
    return out_queue_.size() - out_offset_;
  }


  absl::Status CloseReason() {
    absl::MutexLock lock(&state_mu_);
    return closing_ ? close_reason_ : absl::UnavailableError("connection closed");
  }

  void AppendToQueue(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                     size_t skip) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    absl::string_view parts[3] = {
        absl::string_view(reinterpret_cast<const char*>(&header), sizeof(header)), meta, payload};
    if (queued_bytes() == 0) {
      last_progress_ = absl::Now();
    } else if (out_offset_ >= out_queue_.size() / 2) {
      // Drop what was sent before growing, so that a queue that never
      // quite empties does not keep (and copy) everything it ever held.
      out_queue_.erase(0, out_offset_);
      out_offset_ = 0;
    }
    for (absl::string_view part : parts) {
      size_t drop = std::min(skip, part.size());
      skip -= drop;
      AppendBytes(&out_queue_, part.data() + drop, part.size() - drop);
    }
  }

  // Queued output must make progress: a peer that stops reading while this
  // side (the loop thread, which never blocks on a send) keeps queueing
  // replies would otherwise grow the queue without bound. Checked by a timer
  // while anything is queued; the connection is closed after
  // send_stall_timeout without a byte taken.
  void ScheduleStallCheck(absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    stall_check_pending_ = true;
    TimerQueue::Get().Schedule(when, [weak = weak_self_] {
      if (std::shared_ptr<Impl> self = weak.lock()) self->CheckStall();
    });
  }

  void CheckStall() {
    absl::Status stalled;
    {
      absl::MutexLock lock(&write_mu_);
      stall_check_pending_ = false;
      if (queued_bytes() == 0 || write_closed_) return;
      const absl::Time due = last_progress_ + options_.send_stall_timeout;
      if (absl::Now() < due) {
        ScheduleStallCheck(due);
        return;
      }
      stalled = PeerStoppedReadingError(peer_.remote_address, queued_bytes(),
                                        absl::Now() - last_progress_);
    }
    CloseStalled(stalled);
  }

  // Gives up on a peer that stopped reading, and says why.
  void CloseStalled(const absl::Status& stalled) ABSL_LOCKS_EXCLUDED(write_mu_) {
    LOCUS_LOG(WARNING) << "closing connection: " << stalled.message();
    // Reset rather than close in order: a TCP FIN would wait behind the
    // queued bytes the peer does not take, and the peer would never learn.
    linger reset{1, 0};
    (void)setsockopt(fd_, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    Close(stalled);
  }

  void ArmWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    if (!stall_check_pending_) ScheduleStallCheck(last_progress_ + options_.send_stall_timeout);
    want_write_.store(true);
    write_mu_.Unlock();
    UpdateInterest();
    write_mu_.Lock();
  }

  // Writes queued bytes until the socket takes no more. True if the queue
  // is empty afterwards (written, or dropped because the connection failed:
  // the reader sees the error too and delivers OnClosed).
  bool WriteQueuedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    while (queued_bytes() > 0) {
      ssize_t n = send(fd_, out_queue_.data() + out_offset_, queued_bytes(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return false;
      if (n <= 0) {
        write_closed_ = true;
        break;
      }
      out_offset_ += static_cast<size_t>(n);
      last_progress_ = absl::Now();
    }
    out_queue_.clear();
    out_offset_ = 0;
    return true;
  }

  // Ends a corked batch (see kCorkedFrameMaxBytes): writes what it queued.
  void FlushCorkedOutput() {
    absl::MutexLock lock(&write_mu_);
    if (!corked_output_) return;
    corked_output_ = false;
    if (want_write_.load()) return;  // the loop writes the queue on EPOLLOUT
    if (!WriteQueuedLocked()) ArmWrite();
  }

  void FlushQueue() {
    absl::MutexLock lock(&write_mu_);
    if (!WriteQueuedLocked()) return;
    if (want_write_.exchange(false)) {
      write_mu_.Unlock();
      UpdateInterest();
      write_mu_.Lock();
    }
  }

  uint32_t InterestFor(Reader reader) ABSL_EXCLUSIVE_LOCKS_REQUIRED(interest_mu_) {
    uint32_t mask;
    if (background_readers_.load(std::memory_order_relaxed) > 0) {
      // While a caller reads, nothing is watched but what epoll always
      // reports (hang-up, error): edge-triggered, so that it is reported
      // once (kHangupSeen) instead of waking the loop until the caller stops.
      mask = reader == Reader::kCaller ? static_cast<uint32_t>(EPOLLET) : (EPOLLIN | EPOLLRDHUP);
    } else {
      mask = EPOLLRDHUP | EPOLLET;
    }
    if (want_write_.load()) mask |= EPOLLOUT;
    return mask;
  }

  void UpdateInterest() {
    absl::MutexLock lock(&interest_mu_);
    if (loop_ == nullptr) return;  // not started: Start() sets the interest
    const Reader reader = ReaderOf(reader_state_.load(std::memory_order_seq_cst));
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

  // Whether `bytes`, read at a frame boundary, hold exactly one frame. Only
  // a batching decision: the decoder validates the header.
  bool IsOneWholeFrame(absl::string_view bytes) const {
    if (!decoder_.at_frame_boundary() || bytes.size() < sizeof(FrameHeader)) return false;
    FrameHeader header;
    std::memcpy(&header, bytes.data(), sizeof(header));
    return sizeof(header) + header.body_length() == bytes.size();
  }

  // One read(); delivers any frames completed. Caller holds the reader role.
  // `blocking`: wait up to the socket's receive timeout (a caller in
  // DriveUntil, see SetReceiveTimeout); otherwise never wait.
  ReadResult ReadOnce(size_t* got = nullptr, bool blocking = false) {
    ssize_t n;
    do {
      n = recv(fd_, read_buffer_.get(), kReadBufferSize, blocking ? 0 : MSG_DONTWAIT);
      // A signal ends a blocking receive early: the caller re-checks its
      // deadline (restarting would wait a whole SO_RCVTIMEO again).
      if (n < 0 && errno == EINTR && blocking) return ReadResult::kWouldBlock;
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
      if (got != nullptr) *got = static_cast<size_t>(n);
      const absl::string_view bytes(read_buffer_.get(), static_cast<size_t>(n));
      const void* outer_corked = t_corked_connection;  // a callback may drive another connection
      // A read that is exactly one whole frame (a ping-pong's request) has
      // nothing to batch its reply with: uncorked, the reply leaves as soon
      // as the handler sends it, not after the call's clean-up.
      const bool corked = !IsOneWholeFrame(bytes);
      if (corked) t_corked_connection = this;
      absl::Status decoded = decoder_.Consume(bytes, *this);
      t_corked_connection = outer_corked;
      // Only this thread, while corked, holds output back.
      if (corked) FlushCorkedOutput();
      if (!decoded.ok()) {
        LOCUS_LOG(WARNING) << "closing connection from " << peer_.remote_address
                           << ": malformed input: " << decoded.message();
        Close(absl::InternalError(absl::StrCat("malformed input from peer: ", decoded.message())));
        DeliverClosed(CloseReason());
        return ReadResult::kClosed;
      }
      return ReadResult::kData;
    }
    if (n < 0 && errno == EAGAIN) return ReadResult::kWouldBlock;
    absl::Status reason;
    {
      absl::MutexLock lock(&state_mu_);
      if (closing_) {
        reason = close_reason_;
      } else if (n == 0) {
        reason = absl::UnavailableError(
            decoder_.at_frame_boundary() ? "peer closed the connection"
                                         : "peer closed the connection in the middle of a frame");
      } else {
        reason = absl::UnavailableError(absl::StrCat("read failed: ", std::strerror(errno)));
      }
    }
    if (!decoder_.at_frame_boundary() && n == 0) {
      LOCUS_LOG(WARNING) << "connection from " << peer_.remote_address
                         << " ended with a truncated frame";
    }
    DeliverClosed(reason);
    return ReadResult::kClosed;
  }

  void DeliverClosed(const absl::Status& reason) {
    if (closed_delivered_.exchange(true)) return;
    reader_state_.store(static_cast<uint32_t>(Reader::kClosed), std::memory_order_seq_cst);
    {
      absl::MutexLock lock(&state_mu_);
      if (!closing_) {
        closing_ = true;
        close_reason_ = reason;
      }
    }
    {
      absl::MutexLock lock(&write_mu_);
      write_closed_ = true;
    }
    shutdown(fd_, SHUT_RDWR);
    if (loop_ != nullptr) loop_->Remove(fd_);
    sink_->OnClosed(reason);
  }

  const int fd_;
  const PeerInfo peer_;
  const TransportOptions options_;
  FrameSink* sink_ = nullptr;   // set by Start
  EventLoop* loop_ = nullptr;   // set by Start

  FrameDecoder decoder_;                  // reader-role holder only
  absl::Duration receive_timeout_;        // reader-role holder only; zero: not set
  absl::Duration receive_timeout_limit_;  // reader-role holder only: 4 x receive_timeout_
  std::unique_ptr<char[]> read_buffer_;   // reader-role holder only
  AdaptivePoll caller_poll_;              // reader-role holder only (callers)
  AdaptivePoll loop_poll_;                // loop thread only (FdHandler polling)
  // Callers in TakeReaderRoleAsCaller: the loop's polls leave the role alone.
  std::atomic<int> callers_wanting_role_{0};
  std::atomic<bool> closed_delivered_{false};
  std::atomic<bool> detached_{false};  // the wrapper (and maybe the sink) is gone

  // A Reader, plus kHangupSeen. Changed by compare-and-swap only (one
  // atomic per change instead of a lock pair: every call changes it twice).
  std::atomic<uint32_t> reader_state_{static_cast<uint32_t>(Reader::kIdle)};
  absl::Mutex state_mu_;
  bool closing_ ABSL_GUARDED_BY(state_mu_) = false;
  absl::Status close_reason_ ABSL_GUARDED_BY(state_mu_);

  absl::Mutex interest_mu_ ABSL_ACQUIRED_BEFORE(state_mu_);
  uint32_t last_mask_ ABSL_GUARDED_BY(interest_mu_) = 0;
  // Users that need frames read when no caller drives (Connection::
  // AdjustBackgroundReads); 1 until the runtime says otherwise. Written
  // under interest_mu_; DriveUntil reads it without (see there).
  std::atomic<int> background_readers_{1};
  std::atomic<bool> want_write_{false};

  mutable absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(interest_mu_);
  std::string out_queue_ ABSL_GUARDED_BY(write_mu_);
  size_t out_offset_ ABSL_GUARDED_BY(write_mu_) = 0;
  absl::Time last_progress_ ABSL_GUARDED_BY(write_mu_);  // queue started, or last bytes taken
  bool stall_check_pending_ ABSL_GUARDED_BY(write_mu_) = false;
  bool corked_output_ ABSL_GUARDED_BY(write_mu_) = false;  // queued by a corked batch
  std::weak_ptr<Impl> weak_self_;  // set by Create; for timers
  bool write_closed_ ABSL_GUARDED_BY(write_mu_) = false;
};

std::unique_ptr<StreamConnection> StreamConnection::Create(int fd, PeerInfo peer,
                                                           const TransportOptions& options) {
  // Blocking, so that a caller waiting for its reply can receive it with one
  // system call; every other read and write passes MSG_DONTWAIT.
  int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  auto impl = std::make_shared<Impl>(fd, std::move(peer), options);
  impl->SetSelf(impl);
  return std::unique_ptr<StreamConnection>(new StreamConnection(std::move(impl)));
}

StreamConnection::~StreamConnection() { impl_->Shutdown(); }

void StreamConnection::Start(FrameSink* sink) { impl_->Start(sink, impl_); }

absl::Status StreamConnection::Send(const FrameHeader& header, absl::string_view meta,
                                    absl::string_view payload, absl::Time deadline) {
  return impl_->Send(header, meta, payload, deadline);
}

void StreamConnection::Close(const absl::Status& reason) { impl_->Close(reason); }

bool StreamConnection::DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
  return impl_->DriveUntil(done, deadline);
}
void StreamConnection::AdjustBackgroundReads(int delta) { impl_->AdjustBackgroundReads(delta); }

bool StreamConnection::HasQueuedOutput() const { return impl_->HasQueuedOutput(); }

const PeerInfo& StreamConnection::peer() const { return impl_->peer(); }

}  // namespace locus::internal
