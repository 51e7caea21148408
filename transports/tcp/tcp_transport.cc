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
#include "transports/socket/socket_listener.h"
#include "transports/socket/stream_connection.h"

namespace locus {
namespace {

std::string FormatSockaddr(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return absl::StrCat("tcp://[", host, "]:", ntohs(in6->sin6_port));
  }
  const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
  inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
  return absl::StrCat("tcp://", host, ":", ntohs(in->sin_port));
}

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

struct AddrInfoDeleter {
  void operator()(addrinfo* ai) const { freeaddrinfo(ai); }
};

absl::StatusOr<std::unique_ptr<addrinfo, AddrInfoDeleter>> Resolve(absl::string_view address,
                                                                    bool passive) {
  std::string host, port;
  absl::Status parsed = ParseTcpAddress(address, &host, &port);
  if (!parsed.ok()) return parsed;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* result = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &result);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve \"", address, "\": ", gai_strerror(rc)));
  }
  return std::unique_ptr<addrinfo, AddrInfoDeleter>(result);
}

}  // namespace

absl::Status ParseTcpAddress(absl::string_view address, std::string* host, std::string* port) {
  if (!absl::StartsWith(address, "tcp://")) {
    return absl::InvalidArgumentError(absl::StrCat("not a tcp address: \"", address, "\""));
  }
  absl::string_view rest = address.substr(6);
  size_t colon;
  if (absl::StartsWith(rest, "[")) {
    size_t close = rest.find(']');
    if (close == absl::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("bad IPv6 address \"", address, "\" (expected tcp://[addr]:port)"));
    }
    *host = std::string(rest.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = rest.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing port in \"", address, "\" (expected tcp://host:port)"));
    }
    *host = std::string(rest.substr(0, colon));
  }
  *port = std::string(rest.substr(colon + 1));
  int port_number;
  if (!absl::SimpleAtoi(*port, &port_number) || port_number < 0 || port_number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in \"", address, "\""));
  }
  return absl::OkStatus();
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
