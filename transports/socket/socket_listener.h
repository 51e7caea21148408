// Accepting connections on a listening stream socket, shared by the Unix and
// TCP transports.
//
// Example:
//   auto listener = SocketListener::Create(listen_fd, "tcp://127.0.0.1:7000", options,
//                                          &DescribeTcpPeer, std::move(on_accept));
#ifndef LOCUS_TRANSPORTS_SOCKET_SOCKET_LISTENER_H_
#define LOCUS_TRANSPORTS_SOCKET_SOCKET_LISTENER_H_

#include <functional>
#include <sys/socket.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "locus/transport.h"
#include "transports/socket/stream_upgrader.h"

namespace locus::internal {

class EventLoop;

// Builds the PeerInfo of an accepted or connected socket.
using PeerDescriber = PeerInfo (*)(int fd);

class SocketListener final : public Listener {
 public:
  // Takes ownership of `listen_fd` (bound and listening). `on_destroy` runs
  // after the fd is closed (e.g. to unlink a socket file). With an
  // `upgrader`, each accepted socket's first frame is peeked first, and
  // sockets asking for another transport are handed to it (a socket that
  // sends nothing within 10 s is closed).
  static absl::StatusOr<std::unique_ptr<SocketListener>> Create(
      int listen_fd, std::string address, const TransportOptions& options,
      PeerDescriber describe_peer, AcceptCallback on_accept,
      std::function<void()> on_destroy = nullptr,
      std::shared_ptr<StreamUpgrader> upgrader = nullptr);
  ~SocketListener() override;
  std::string address() const override { return address_; }

  class Handler;

 private:
  SocketListener() = default;
  std::string address_;
  EventLoop* loop_ = nullptr;
  std::shared_ptr<Handler> handler_;
  std::function<void()> on_destroy_;
};

// Connects `fd` (a fresh non-blocking socket) to `addr`, waiting until
// `deadline`. Returns UNAVAILABLE (refused/unreachable) or DEADLINE_EXCEEDED.
absl::Status ConnectWithDeadline(int fd, const ::sockaddr* addr, unsigned addr_len,
                                 absl::Time deadline, const std::string& address);

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_SOCKET_LISTENER_H_
