#include "transports/socket/socket_listener.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "internal/log.h"
#include "transports/socket/event_loop.h"
#include "transports/socket/stream_connection.h"

namespace locus::internal {

class SocketListener::Handler final : public FdHandler {
 public:
  Handler(int fd, const TransportOptions& options, PeerDescriber describe_peer,
          AcceptCallback on_accept)
      : fd_(fd), options_(options), describe_peer_(describe_peer), on_accept_(std::move(on_accept)) {}
  ~Handler() override { close(fd_); }

  void OnEvents(uint32_t events) override {
    for (int i = 0; i < 64; ++i) {
      int conn = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (conn < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN) {
          // EMFILE and friends: log (rate-limited) and let the next event retry.
          LOCUS_LOG_FIRST_N(ERROR, 10) << "accept failed: " << std::strerror(errno);
        }
        return;
      }
      on_accept_(StreamConnection::Create(conn, describe_peer_(conn), options_));
    }
  }

  int fd() const { return fd_; }

 private:
  const int fd_;
  const TransportOptions options_;
  PeerDescriber describe_peer_;
  AcceptCallback on_accept_;  // loop thread only
};

absl::StatusOr<std::unique_ptr<SocketListener>> SocketListener::Create(
    int listen_fd, std::string address, const TransportOptions& options,
    PeerDescriber describe_peer, AcceptCallback on_accept, std::function<void()> on_destroy) {
  int flags = fcntl(listen_fd, F_GETFL, 0);
  fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK);
  std::unique_ptr<SocketListener> listener(new SocketListener());
  listener->address_ = std::move(address);
  listener->on_destroy_ = std::move(on_destroy);
  listener->handler_ =
      std::make_shared<Handler>(listen_fd, options, describe_peer, std::move(on_accept));
  listener->loop_ = EventLoopPool::Get().Next();
  absl::Status added = listener->loop_->Add(listen_fd, EPOLLIN, listener->handler_);
  if (!added.ok()) return added;
  return listener;
}

SocketListener::~SocketListener() {
  loop_->Remove(handler_->fd());  // waits for an accept in progress
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
