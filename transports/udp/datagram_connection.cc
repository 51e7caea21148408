#include "transports/udp/datagram_connection.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/timer_queue.h"
#include "transports/common/close_state.h"
#include "transports/common/spin_budget.h"
#include "transports/socket/adaptive_poll.h"
#include "transports/socket/event_loop.h"
#include "transports/udp/datagram_codec.h"

namespace locus::internal {
namespace {

// Datagrams read per readiness event before yielding to other fds.
constexpr int kReadBatch = 64;

// How long a synchronous caller waits for the loop to stop delivering when
// it polls the socket (see BeginDriving).
constexpr absl::Duration kDeliveryWait = absl::Microseconds(20);

int64_t NowNs() { return absl::ToUnixNanos(absl::Now()); }

// Shared by the connection object and the event loop (which holds it while
// dispatching), and weakly by the probe timer.
class DatagramSocket final : public FdHandler, public std::enable_shared_from_this<DatagramSocket> {
 public:
  DatagramSocket(int fd, PeerInfo peer, const TransportOptions& options, std::string first_datagram,
                 bool probe_peer, absl::Duration idle_timeout,
                 DatagramConnection::NewSessionHandoff on_new_session)
      : fd_(fd),
        peer_(std::move(peer)),
        max_meta_(options.max_meta_size),
        max_payload_(options.max_receive_message_size),
        socket_spin_(options.socket_spin),
        probe_peer_(probe_peer),
        idle_timeout_(idle_timeout),
        first_datagram_(std::move(first_datagram)),
        on_new_session_(std::move(on_new_session)),
        loop_(EventLoopPool::Get().Next()),
        last_receive_ns_(NowNs()) {}

  ~DatagramSocket() override { close(fd_); }

  const PeerInfo& peer() const { return peer_; }

  void Start(FrameSink* sink) {
    {
      absl::MutexLock lock(&mu_);
      sink_ = sink;
      // Nobody else delivers before the fd is watched: the first datagram
      // goes out on this thread.
      delivering_ = true;
      deliverer_ = std::this_thread::get_id();
    }
    if (!first_datagram_.empty()) Dispatch(first_datagram_);
    first_datagram_.clear();
    EndDelivery();
    if (close_.closed()) return;
    absl::Status added = loop_->Add(fd_, EPOLLIN, shared_from_this());
    if (!added.ok()) {
      Close(added);
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      registered_ = true;
      watching_ = true;
    }
    UpdateInterest();
    // A Close() that ran before Add() removed nothing: remove now.
    if (close_.closed()) {
      loop_->Remove(fd_);
      return;
    }
    ScheduleCheck();
  }

  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time deadline) {
    if (close_.closed()) {
      return absl::UnavailableError(absl::StrCat("connection to ", peer_.remote_address, " closed"));
    }
    const size_t total = sizeof(header) + meta.size() + payload.size();
    if (total > kMaxDatagramBytes) {
      return absl::ResourceExhaustedError(absl::StrCat("frame of ", total, " bytes does not fit a UDP datagram (at most ",
                                                       kMaxDatagramBytes, " bytes)"));
    }
    iovec parts[3] = {{const_cast<FrameHeader*>(&header), sizeof(header)},
                      {const_cast<char*>(meta.data()), meta.size()},
                      {const_cast<char*>(payload.data()), payload.size()}};
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = 3;
    for (;;) {
      ssize_t sent = sendmsg(fd_, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (sent >= 0) return absl::OkStatus();
      if (errno == EINTR) continue;
      if (errno == ENOBUFS || errno == EMSGSIZE || errno == EHOSTUNREACH || errno == ENETUNREACH) {
        // The kernel dropped it, as the network may: the call ends by its
        // deadline (waiting would spin: poll reports the socket writable).
        return absl::OkStatus();
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        // The socket's send buffer is full: wait for room until the deadline.
        const absl::Time now = absl::Now();
        if (now >= deadline) {
          return absl::DeadlineExceededError(
              absl::StrCat("UDP send buffer to ", peer_.remote_address, " stayed full"));
        }
        pollfd p{fd_, POLLOUT, 0};
        const int64_t wait_ms = deadline == absl::InfiniteFuture()
                                    ? 100
                                    : std::min<int64_t>(100, absl::ToInt64Milliseconds(deadline - now) + 1);
        poll(&p, 1, static_cast<int>(wait_ms));
        continue;
      }
      if (errno == ECONNREFUSED) {
        absl::Status gone = absl::UnavailableError(
            absl::StrCat(peer_.remote_address, " refused the datagram (nothing listens there)"));
        Close(gone);
        return gone;
      }
      return absl::UnavailableError(absl::StrCat("UDP send to ", peer_.remote_address, ": ", std::strerror(errno)));
    }
  }

  // Closes once. OnClosed follows: from the thread delivering frames when
  // one is (at the end of its delivery, never inside a callback), else on
  // this thread.
  void Close(const absl::Status& reason) {
    {
      // Under mu_: the delivery state changes only with mu_ held, and so
      // does closed() (see EndDelivery).
      absl::MutexLock lock(&mu_);
      if (!close_.Close(reason)) return;
    }
    if (TimerQueue::Id timer = check_timer_.load(); timer != 0) TimerQueue::Get().Cancel(timer);
    loop_->Remove(fd_);  // waits for a dispatch in progress on the loop (unless on it)
    FrameSink* sink;
    absl::Status why;
    {
      absl::MutexLock lock(&mu_);
      if (delivering_ || sink_ == nullptr || !close_.TakeOnClosedDelivery()) return;
      delivering_ = true;
      deliverer_ = std::this_thread::get_id();
      sink = sink_;
      why = close_.Reason();
    }
    sink->OnClosed(why);
    absl::MutexLock lock(&mu_);
    delivering_ = false;
    deliverer_ = std::thread::id();
  }

  // Called by the owner's destructor (after Close): OnClosed must have been
  // delivered when this returns, and the sink is never used again.
  void Detach() {
    absl::MutexLock lock(&mu_);
    if (sink_ == nullptr) return;
    if (delivering_ && deliverer_ == std::this_thread::get_id()) {
      // Released from inside our own delivery: deliver OnClosed now.
      FrameSink* sink = sink_;
      sink_ = nullptr;
      if (close_.TakeOnClosedDelivery()) {
        absl::Status reason = close_.Reason();
        mu_.Unlock();
        sink->OnClosed(reason);
        mu_.Lock();
      }
      return;
    }
    auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return close_.on_closed_taken() && !delivering_;
    };
    mu_.Await(absl::Condition(&done));
    sink_ = nullptr;
  }

  void AdjustBackgroundReads(int delta) {
    waiting_.fetch_add(delta, std::memory_order_acq_rel);
    UpdateInterest();
  }

  // A caller reads its own reply (see Connection::DriveUntil): it polls
  // with non-blocking receives first (socket_spin, while that pays), then
  // blocking receives on this thread, one system call per datagram, while
  // the event loop stops watching the socket. False if another thread is
  // delivering.
  bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
    if (!BeginDriving()) return false;
    UpdateInterest();
    bool may_poll = true;
    while (!done() && !close_.closed() && absl::Now() < deadline) {
      if (may_poll) {
        ssize_t n = -1;
        int error = 0;
        const bool came = PollAsCaller(caller_poll_, socket_spin_, deadline, [&] {
          if (close_.closed()) return true;
          n = recv(fd_, buffer_, sizeof(buffer_), MSG_DONTWAIT | MSG_TRUNC);
          error = n < 0 ? errno : 0;
          return n >= 0 || !TransientReceiveError(error);
        });
        if (close_.closed()) break;
        if (came) {
          if (n < 0) {
            CloseFromDelivery(ReceiveError(error));
            break;
          }
          if (!Received(n)) break;
          continue;
        }
        may_poll = false;  // ran out (or may not poll): block until input
        continue;
      }
      // Blocking (SO_RCVTIMEO bounds it, so the deadline is rechecked).
      ssize_t n = recv(fd_, buffer_, sizeof(buffer_), MSG_TRUNC);
      if (n < 0) {
        if (TransientReceiveError(errno)) continue;
        CloseFromDelivery(ReceiveError(errno));
        break;
      }
      if (!Received(n)) break;
    }
    driving_.store(false, std::memory_order_release);
    EndDelivery();
    UpdateInterest();
    return true;
  }

  // FdHandler (loop thread).
  void OnEvents(uint32_t events) override {
    (void)events;
    if (!BeginDelivery()) return;
    ReceiveBatch();
    EndDelivery();
  }

  // The loop polls while background reads are wanted and no caller drives,
  // as long as polling pays (loop_poll_).
  absl::Duration PollWindow() override {
    if (socket_spin_ <= absl::ZeroDuration() || waiting_.load(std::memory_order_acquire) <= 0 ||
        driving_.load(std::memory_order_acquire) || !loop_poll_.ShouldPoll()) {
      return absl::ZeroDuration();
    }
    return socket_spin_;
  }

  PollResult PollOnce() override {
    // A caller that wants to read gets the socket: the loop stops polling.
    if (driving_.load(std::memory_order_acquire) ||
        callers_wanting_.load(std::memory_order_acquire) > 0 || !BeginDelivery()) {
      return PollResult::kStop;
    }
    const bool came = ReceiveBatch();
    EndDelivery();
    if (!came) return PollResult::kNothing;
    loop_poll_.Hit();
    return PollResult::kInput;
  }

  void PollMissed() override { loop_poll_.Miss(); }

 private:
  // Makes this caller the delivering thread, driving. The loop delivers
  // only briefly while it polls (one batch of receives and the inline
  // handlers of what came), and polls no more once a caller wants the
  // socket: worth a short wait then (only where polling happens at all).
  bool BeginDriving() {
    const bool may_wait = socket_spin_ > absl::ZeroDuration() && SpinBudget::Get().limit() > 0;
    const absl::Time give_up = absl::Now() + kDeliveryWait;
    bool announced = false;
    bool began = false;
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (close_.closed() || sink_ == nullptr) break;
        if (!delivering_) {
          delivering_ = true;
          deliverer_ = std::this_thread::get_id();
          driving_.store(true, std::memory_order_release);
          began = true;
          break;
        }
      }
      if (!may_wait || absl::Now() >= give_up) break;
      if (!announced) {
        callers_wanting_.fetch_add(1, std::memory_order_acq_rel);
        announced = true;
      }
      for (int i = 0; i < 64; ++i) CpuRelax();
    }
    if (announced) callers_wanting_.fetch_sub(1, std::memory_order_acq_rel);
    return began;
  }

  // Makes this thread the delivering one; false if another is, or closed.
  bool BeginDelivery() {
    absl::MutexLock lock(&mu_);
    if (close_.closed() || delivering_ || sink_ == nullptr) return false;
    delivering_ = true;
    deliverer_ = std::this_thread::get_id();
    return true;
  }

  // Delivering thread: receives what is queued, at most kReadBatch
  // datagrams, without waiting. True if any came (or the connection ended).
  bool ReceiveBatch() {
    bool came = false;
    for (int i = 0; i < kReadBatch; ++i) {
      ssize_t n = recv(fd_, buffer_, sizeof(buffer_), MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (TransientReceiveError(errno)) continue;
        CloseFromDelivery(ReceiveError(errno));
        return true;
      }
      came = true;
      if (!Received(n)) break;
    }
    return came;
  }

  // ICMP reports that do not mean the peer is gone (a path MTU change, a
  // transient route problem) surface as these receive errors: not fatal.
  static bool TransientReceiveError(int error) {
    return error == EINTR || error == EAGAIN || error == EWOULDBLOCK || error == EMSGSIZE ||
           error == EHOSTUNREACH || error == ENETUNREACH || error == EPERM;
  }

  absl::Status ReceiveError(int error) const {
    if (error == ECONNREFUSED) {
      return absl::UnavailableError(
          absl::StrCat(peer_.remote_address, " is unreachable (nothing listens there any more)"));
    }
    return absl::UnavailableError(
        absl::StrCat("UDP receive from ", peer_.remote_address, ": ", std::strerror(error)));
  }

  // A datagram of `n` bytes (as recv with MSG_TRUNC reports it) is in
  // buffer_; false once the connection closed.
  bool Received(ssize_t n) {
    last_receive_ns_.store(NowNs(), std::memory_order_relaxed);
    if (static_cast<size_t>(n) > sizeof(buffer_)) {
      // MSG_TRUNC reports the real length: larger than any frame we take.
      CloseFromDelivery(absl::InvalidArgumentError(
          absl::StrCat("datagram of ", n, " bytes from ", peer_.remote_address, " is too large")));
      return false;
    }
    const absl::string_view datagram(buffer_, static_cast<size_t>(n));
    if (on_new_session_ && IsWellFormedHello(datagram)) {
      HandOffNewSession(datagram);
      return false;
    }
    return Dispatch(datagram);
  }

  // A malformed datagram is dropped as any other (Dispatch), not taken for
  // a new client.
  bool IsWellFormedHello(absl::string_view datagram) {
    FrameHeader header{};
    if (datagram.size() < sizeof(header)) return false;
    std::memcpy(&header, datagram.data(), sizeof(header));
    if (header.magic != kFrameMagic || header.frame_type() != FrameType::kHello) return false;
    absl::Status error;
    return DecodeDatagram(datagram, max_meta_, max_payload_, &frame_, &error) == DatagramKind::kFrame;
  }

  // A new client on the peer's address (see Create): this session ends,
  // its descriptor becomes an unbound socket (dup2 keeps the number valid
  // for a concurrent Send, which then fails), so that the new session's
  // socket alone is connected to the address, and the HELLO goes to the
  // listener.
  void HandOffNewSession(absl::string_view hello) {
    CloseFromDelivery(absl::UnavailableError(
        absl::StrCat(peer_.remote_address, " started a new session from the same address")));
    sockaddr_storage local{};
    socklen_t length = sizeof(local);
    const int family = getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &length) == 0 ? local.ss_family : AF_INET;
    const int blank = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (blank < 0 || dup2(blank, fd_) < 0) {
      // The session's socket still matches the address: the new client's
      // datagrams would reach a closed session. Drop the HELLO (the
      // client's handshake fails and its next attempt starts over).
      LOCUS_LOG(WARNING) << "UDP session of " << peer_.remote_address
                         << ": cannot release its address for a new session: " << std::strerror(errno);
      if (blank >= 0) close(blank);
      return;
    }
    close(blank);
    on_new_session_(std::string(hello));
  }

  // The event loop watches for input while background reads are wanted and
  // no caller drives; otherwise only for errors (a dead peer's ICMP).
  void UpdateInterest() {
    absl::MutexLock lock(&mu_);
    if (close_.closed() || !registered_) return;
    const bool want = waiting_.load(std::memory_order_acquire) > 0 &&
                      !driving_.load(std::memory_order_acquire);
    if (want == watching_) return;
    watching_ = want;
    (void)loop_->Modify(fd_, want ? static_cast<uint32_t>(EPOLLIN) : 0u);
  }

  // Decodes and delivers one datagram; false once the connection closed.
  bool Dispatch(absl::string_view datagram) {
    FrameSink* sink;
    {
      absl::MutexLock lock(&mu_);
      if (close_.closed() || sink_ == nullptr) return false;
      sink = sink_;
    }
    absl::Status error;
    switch (DecodeDatagram(datagram, max_meta_, max_payload_, &frame_, &error)) {
      case DatagramKind::kFrame:
        sink->OnFrame(frame_);
        break;
      case DatagramKind::kOversize:
        sink->OnOversizeFrame(frame_.header);
        break;
      case DatagramKind::kMalformed:
        // Anyone who can spoof the peer's address can send one, and the
        // network may mangle one: drop it, keep the session.
        if (malformed_logged_++ % 1000 == 0) {
          LOCUS_LOG(WARNING) << "dropped malformed datagram(s) from " << peer_.remote_address << ": "
                             << error.message() << " (" << malformed_logged_ << " so far)";
        }
        break;
    }
    absl::MutexLock lock(&mu_);
    return !close_.closed() && sink_ != nullptr;
  }

  // Close() from the delivering thread: OnClosed follows in EndDelivery.
  void CloseFromDelivery(const absl::Status& reason) { Close(reason); }

  // The delivering thread is done; delivers OnClosed if the connection
  // closed meanwhile.
  void EndDelivery() {
    FrameSink* sink = nullptr;
    absl::Status reason;
    {
      absl::MutexLock lock(&mu_);
      if (close_.closed() && sink_ != nullptr && close_.TakeOnClosedDelivery()) {
        sink = sink_;
        reason = close_.Reason();
        delivering_ = true;
        deliverer_ = std::this_thread::get_id();
      } else {
        delivering_ = false;
        deliverer_ = std::thread::id();
        return;
      }
    }
    sink->OnClosed(reason);
    absl::MutexLock lock(&mu_);
    delivering_ = false;
    deliverer_ = std::thread::id();
  }

  // Every kProbeInterval: idle expiry, and (client side) a PING while calls
  // wait and the peer has been silent.
  void ScheduleCheck() {
    std::weak_ptr<DatagramSocket> weak = weak_from_this();
    check_timer_ = TimerQueue::Get().Schedule(absl::Now() + kProbeInterval, [weak] {
      if (std::shared_ptr<DatagramSocket> self = weak.lock()) self->Check();
    });
  }

  void Check() {
    if (close_.closed()) return;
    const absl::Duration silent =
        absl::Nanoseconds(NowNs() - last_receive_ns_.load(std::memory_order_relaxed));
    // A client probes while its calls wait, so a server hears from every
    // live client at least every kProbeInterval during a call. A client
    // ends an idle session itself (before the server expires it), so that
    // its next call opens a fresh one instead of meeting a forgotten one.
    const bool waiting_calls =
        waiting_.load(std::memory_order_acquire) > 0 || driving_.load(std::memory_order_acquire);
    if (silent >= idle_timeout_ && !(probe_peer_ && waiting_calls)) {
      Close(absl::UnavailableError(absl::StrCat("UDP peer ", peer_.remote_address, " idle for ",
                                                absl::FormatDuration(silent))));
      return;
    }
    const bool calls_wait =
        waiting_.load(std::memory_order_acquire) > 0 || driving_.load(std::memory_order_acquire);
    if (probe_peer_ && calls_wait && silent >= kProbeInterval) {
      FrameHeader ping = FrameHeader::Make(FrameType::kPing, 0, 0);
      (void)Send(ping, {}, {}, absl::Now());
    }
    ScheduleCheck();
  }

  const int fd_;
  const PeerInfo peer_;
  const uint32_t max_meta_;
  const uint64_t max_payload_;
  const absl::Duration socket_spin_;  // TransportOptions::socket_spin
  const bool probe_peer_;
  const absl::Duration idle_timeout_;
  std::string first_datagram_;  // Start() only
  const DatagramConnection::NewSessionHandoff on_new_session_;
  EventLoop* const loop_;
  std::atomic<int64_t> last_receive_ns_;
  std::atomic<int> waiting_{1};  // AdjustBackgroundReads: connections start at 1
  std::atomic<TimerQueue::Id> check_timer_{0};
  // closed() changes under mu_ only (Close), so that the delivery state
  // under mu_ and it are seen together.
  CloseState close_;
  std::atomic<bool> driving_{false};  // a caller is inside DriveUntil
  std::atomic<int> callers_wanting_{0};  // callers in BeginDriving: the loop stops polling

  absl::Mutex mu_;
  FrameSink* sink_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool delivering_ ABSL_GUARDED_BY(mu_) = false;
  std::thread::id deliverer_ ABSL_GUARDED_BY(mu_);
  bool registered_ ABSL_GUARDED_BY(mu_) = false;  // added to the loop
  bool watching_ ABSL_GUARDED_BY(mu_) = false;    // EPOLLIN in the interest set

  AdaptivePoll loop_poll_;  // the loop thread only (FdHandler polling)
  // Delivery state: only the delivering thread touches these.
  AdaptivePoll caller_poll_;  // callers in DriveUntil
  uint64_t malformed_logged_ = 0;
  char buffer_[kMaxDatagramBytes + 1];
  Frame frame_;
};

class DatagramConnectionImpl final : public Connection {
 public:
  DatagramConnectionImpl(std::shared_ptr<DatagramSocket> socket, std::shared_ptr<void> lease)
      : socket_(std::move(socket)), lease_(std::move(lease)) {}
  ~DatagramConnectionImpl() override {
    socket_->Close(absl::UnavailableError("connection released"));
    socket_->Detach();
  }
  void Start(FrameSink* sink) override { socket_->Start(sink); }
  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time deadline) override {
    return socket_->Send(header, meta, payload, deadline);
  }
  void Close(const absl::Status& reason) override { socket_->Close(reason); }
  void AdjustBackgroundReads(int delta) override { socket_->AdjustBackgroundReads(delta); }
  bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) override {
    return socket_->DriveUntil(done, deadline);
  }
  bool reliable() const override { return false; }
  const PeerInfo& peer() const override { return socket_->peer(); }

 private:
  const std::shared_ptr<DatagramSocket> socket_;
  const std::shared_ptr<void> lease_;
};

}  // namespace

std::unique_ptr<Connection> DatagramConnection::Create(int fd, PeerInfo peer,
                                                       const TransportOptions& options,
                                                       std::string first_datagram, bool probe_peer,
                                                       absl::Duration idle_timeout,
                                                       std::shared_ptr<void> lease,
                                                       NewSessionHandoff on_new_session) {
  return std::make_unique<DatagramConnectionImpl>(
      std::make_shared<DatagramSocket>(fd, std::move(peer), options, std::move(first_datagram),
                                       probe_peer, idle_timeout, std::move(on_new_session)),
      std::move(lease));
}

}  // namespace locus::internal
