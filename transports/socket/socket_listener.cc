#include "transports/socket/socket_listener.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <atomic>

#include "absl/synchronization/mutex.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/timer_queue.h"
#include "locus/frame.h"
#include "transports/socket/event_loop.h"
#include "transports/socket/stream_connection.h"

namespace locus::internal {

namespace {
constexpr absl::Duration kFirstFrameTimeout = absl::Seconds(10);
// How long a listener out of descriptors (or kernel memory) stops asking
// for connections: the first pause, doubled per failure up to the last.
constexpr absl::Duration kFirstAcceptPause = absl::Milliseconds(10);
constexpr absl::Duration kLastAcceptPause = absl::Seconds(1);

bool OutOfResources(int error) {
  return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}
}  // namespace

class SocketListener::Handler final : public FdHandler,
                                      public std::enable_shared_from_this<Handler> {
 public:
  Handler(int fd, const TransportOptions& options, PeerDescriber describe_peer,
          AcceptCallback on_accept, std::shared_ptr<StreamUpgrader> upgrader)
      : fd_(fd),
        options_(options),
        describe_peer_(describe_peer),
        upgrader_(std::move(upgrader)),
        on_accept_(std::move(on_accept)) {}
  ~Handler() override { CloseSocket(); }

  // Releases the address at once (an abstract name, a port): called by
  // ~SocketListener, because sniffers of accepted sockets may keep this
  // handler alive for a while after the listener is gone.
  void CloseSocket() {
    if (!socket_closed_.exchange(true)) close(fd_);
  }

  void OnEvents(uint32_t events) override {
    for (int i = 0; i < 64; ++i) {
      int conn = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (conn < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (OutOfResources(errno)) {
          PauseAccepting(errno);
        } else if (errno != EAGAIN) {
          LOCUS_LOG_FIRST_N(ERROR, 10) << "accept failed: " << std::strerror(errno);
        }
        return;
      }
      accept_pause_ = absl::ZeroDuration();
      if (upgrader_ != nullptr) {
        Sniff(conn);
      } else {
        Deliver(StreamConnection::Create(conn, describe_peer_(conn), options_));
      }
    }
  }

  // Hands a connection to the accept callback unless the listener is gone.
  void Deliver(std::unique_ptr<Connection> connection) {
    absl::MutexLock lock(&mu_);
    if (stopped_) {
      connection->Close(absl::UnavailableError("listener closed"));
      return;
    }
    on_accept_(std::move(connection));
  }

  // Called by ~SocketListener: no accept callback runs, and the listening
  // socket's registration is not touched, after this returns.
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }

  // Before the listening socket is registered with `loop`.
  void set_loop(EventLoop* loop) { loop_ = loop; }

  int fd() const { return fd_; }
  const TransportOptions& options() const { return options_; }
  PeerDescriber describe_peer() const { return describe_peer_; }
  StreamUpgrader* upgrader() const { return upgrader_.get(); }

 private:
  void Sniff(int conn);

  // Out of descriptors or kernel memory, the pending connection stays in
  // the backlog and the level-triggered socket would wake the loop again at
  // once, for as long as the shortage lasts. Instead the listener stops
  // asking for a while (kFirstAcceptPause, doubling up to kLastAcceptPause)
  // and then tries again; clients wait in the backlog meanwhile.
  void PauseAccepting(int error) {
    accept_pause_ = accept_pause_ == absl::ZeroDuration()
                        ? kFirstAcceptPause
                        : std::min(accept_pause_ * 2, kLastAcceptPause);
    LOCUS_LOG_FIRST_N(ERROR, 10) << "accept failed: " << std::strerror(error)
                                 << "; not accepting for " << accept_pause_;
    if (!loop_->Modify(fd_, 0).ok()) return;
    std::weak_ptr<Handler> weak = weak_from_this();
    TimerQueue::Get().Schedule(absl::Now() + accept_pause_, [weak] {
      if (std::shared_ptr<Handler> self = weak.lock()) self->ResumeAccepting();
    });
  }
  // On the timer thread.
  void ResumeAccepting() {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    (void)loop_->Modify(fd_, EPOLLIN);
  }

  const int fd_;
  EventLoop* loop_ = nullptr;
  // Loop thread only (OnEvents): the current pause, zero after an accept.
  absl::Duration accept_pause_ = absl::ZeroDuration();
  std::atomic<bool> socket_closed_{false};
  const TransportOptions options_;
  PeerDescriber describe_peer_;
  std::shared_ptr<StreamUpgrader> upgrader_;
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  AcceptCallback on_accept_ ABSL_GUARDED_BY(mu_);
};

// Waits (on the loop) for an accepted socket's first bytes and decides:
// a kTransportSetup frame goes to the upgrader, anything else becomes a
// StreamConnection with the bytes still unread.
class FirstFrameSniffer final : public FdHandler {
 public:
  FirstFrameSniffer(int fd, EventLoop* loop, std::shared_ptr<SocketListener::Handler> listener)
      : fd_(fd), loop_(loop), listener_(std::move(listener)) {}

  void OnEvents(uint32_t events) override {
    FrameHeader header{};
    ssize_t n = recv(fd_, &header, sizeof(header), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (done_.exchange(true)) return;
    loop_->Remove(fd_);
    PeerInfo peer = listener_->describe_peer()(fd_);
    // A client that sends its first frame in pieces is simply not upgraded.
    if (n == static_cast<ssize_t>(sizeof(header)) && header.magic == kFrameMagic &&
        header.type == static_cast<uint8_t>(FrameType::kTransportSetup)) {
      absl::StatusOr<std::unique_ptr<Connection>> upgraded =
          listener_->upgrader()->Upgrade(fd_, peer, listener_->options());
      if (!upgraded.ok()) {
        LOCUS_LOG(WARNING) << "refused transport upgrade from " << peer.remote_address << ": "
                           << upgraded.status().message();
        return;
      }
      listener_->Deliver(std::move(*upgraded));
      return;
    }
    listener_->Deliver(StreamConnection::Create(fd_, std::move(peer), listener_->options()));
  }

  // The first frame did not come in time.
  void Expire() {
    if (done_.exchange(true)) return;
    loop_->Remove(fd_);
    close(fd_);
  }

 private:
  const int fd_;
  EventLoop* const loop_;
  std::shared_ptr<SocketListener::Handler> listener_;
  std::atomic<bool> done_{false};
};

void SocketListener::Handler::Sniff(int conn) {
  EventLoop* loop = EventLoopPool::Get().Next();
  auto sniffer = std::make_shared<FirstFrameSniffer>(conn, loop, shared_from_this());
  if (!loop->Add(conn, EPOLLIN | EPOLLRDHUP, sniffer).ok()) {
    close(conn);
    return;
  }
  std::weak_ptr<FirstFrameSniffer> weak = sniffer;
  TimerQueue::Get().Schedule(absl::Now() + kFirstFrameTimeout, [weak] {
    if (auto live = weak.lock()) live->Expire();
  });
}

absl::StatusOr<std::unique_ptr<SocketListener>> SocketListener::Create(
    int listen_fd, std::string address, const TransportOptions& options,
    PeerDescriber describe_peer, AcceptCallback on_accept, std::function<void()> on_destroy,
    std::shared_ptr<StreamUpgrader> upgrader) {
  int flags = fcntl(listen_fd, F_GETFL, 0);
  fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK);
  std::unique_ptr<SocketListener> listener(new SocketListener());
  listener->address_ = std::move(address);
  listener->on_destroy_ = std::move(on_destroy);
  listener->handler_ = std::make_shared<Handler>(listen_fd, options, describe_peer,
                                                 std::move(on_accept), std::move(upgrader));
  listener->loop_ = EventLoopPool::Get().Next();
  listener->handler_->set_loop(listener->loop_);
  absl::Status added = listener->loop_->Add(listen_fd, EPOLLIN, listener->handler_);
  if (!added.ok()) return added;
  return listener;
}

SocketListener::~SocketListener() {
  handler_->Stop();               // waits for a connection being delivered and a resumption
  loop_->Remove(handler_->fd());  // waits for an accept in progress
  handler_->CloseSocket();
  handler_.reset();
  if (on_destroy_) on_destroy_();
}

absl::Status ConnectWithDeadline(int fd, const sockaddr* addr, unsigned addr_len,
                                 absl::Time deadline, const std::string& address) {
  int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  if (connect(fd, addr, addr_len) == 0) return absl::OkStatus();
  if (errno != EINPROGRESS && errno != EAGAIN) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", address, ": ", std::strerror(errno)));
  }
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat("timed out connecting to ", address));
    }
    pollfd pfd{fd, POLLOUT, 0};
    int timeout_ms = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1000));
    int r = poll(&pfd, 1, timeout_ms);
    if (r < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("poll: ", std::strerror(errno)));
    }
    if (r > 0) break;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", address, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace locus::internal
