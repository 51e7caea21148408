#include "transports/tcp/tcp_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "transports/socket/inet_address.h"
#include "transports/socket/socket_listener.h"
#include "transports/socket/stream_connection.h"

namespace locus {
namespace {

std::string FormatSockaddr(const sockaddr_storage& ss) { return internal::FormatInetAddress(ss, "tcp"); }

PeerInfo DescribeTcpPeer(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  PeerInfo peer;
  peer.transport = "tcp";
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) peer.remote_address = FormatSockaddr(ss);
  len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) peer.local_address = FormatSockaddr(ss);
  return peer;
}

absl::StatusOr<internal::AddrInfoList> Resolve(absl::string_view address, bool passive) {
  return internal::ResolveInetAddress(address, "tcp", SOCK_STREAM, passive);
}

}  // namespace

absl::Status ParseTcpAddress(absl::string_view address, std::string* host, std::string* port) {
  return internal::ParseInetAddress(address, "tcp", host, port);
}

absl::StatusOr<std::unique_ptr<Listener>> TcpTransport::Listen(absl::string_view address,
                                                               const TransportOptions& options,
                                                               AcceptCallback on_accept) {
  auto resolved = Resolve(address, /*passive=*/true);
  if (!resolved.ok()) return resolved.status();
  absl::Status last = absl::UnavailableError(absl::StrCat("no usable address for ", address));
  for (addrinfo* ai = resolved->get(); ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
      last = absl::UnavailableError(
          absl::StrCat("cannot listen on ", address, ": ", std::strerror(errno)));
      close(fd);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    auto listener = internal::SocketListener::Create(fd, FormatSockaddr(bound), options,
                                                     &DescribeTcpPeer, std::move(on_accept));
    if (!listener.ok()) return listener.status();
    return std::unique_ptr<Listener>(std::move(*listener));
  }
  return last;
}

absl::StatusOr<std::unique_ptr<Connection>> TcpTransport::Connect(absl::string_view address,
                                                                  const TransportOptions& options,
                                                                  absl::Time deadline) {
  auto resolved = Resolve(address, /*passive=*/false);
  if (!resolved.ok()) return resolved.status();
  absl::Status last = absl::UnavailableError(absl::StrCat("no usable address for ", address));
  for (addrinfo* ai = resolved->get(); ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    last = internal::ConnectWithDeadline(fd, ai->ai_addr, ai->ai_addrlen, deadline, std::string(address));
    if (!last.ok()) {
      close(fd);
      if (absl::IsDeadlineExceeded(last)) return last;
      continue;
    }
    return std::unique_ptr<Connection>(
        internal::StreamConnection::Create(fd, DescribeTcpPeer(fd), options));
  }
  return last;
}

}  // namespace locus
