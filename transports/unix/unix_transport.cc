#include "transports/unix/unix_transport.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "transports/socket/socket_listener.h"
#include "transports/socket/stream_connection.h"
#include "transports/unix/inherited_socket.h"

namespace locus {
namespace {

struct UnixAddress {
  sockaddr_un addr{};
  socklen_t len = 0;
  bool abstract = false;
  std::string path;  // file path, or abstract name
};

absl::StatusOr<UnixAddress> ParseUnixAddress(absl::string_view address) {
  UnixAddress out;
  out.addr.sun_family = AF_UNIX;
  if (absl::StartsWith(address, "unix-abstract:")) {
    out.abstract = true;
    out.path = std::string(address.substr(strlen("unix-abstract:")));
  } else if (absl::StartsWith(address, "unix:")) {
    out.path = std::string(address.substr(strlen("unix:")));
    // Accept gRPC's "unix:///abs/path" spelling too.
    if (absl::StartsWith(out.path, "//")) out.path = out.path.substr(2);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("not a unix address: \"", address, "\""));
  }
  if (out.path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("empty socket path in \"", address, "\""));
  }
  size_t max = sizeof(out.addr.sun_path) - 1;  // 107 bytes
  if (out.path.size() > max) {
    return absl::InvalidArgumentError(absl::StrCat("socket path in \"", address, "\" is ",
                                                   out.path.size(), " bytes; the limit is ", max));
  }
  if (out.abstract) {
    out.addr.sun_path[0] = '\0';
    std::memcpy(out.addr.sun_path + 1, out.path.data(), out.path.size());
    out.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + out.path.size());
  } else {
    std::memcpy(out.addr.sun_path, out.path.data(), out.path.size());
    out.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + out.path.size() + 1);
  }
  return out;
}

}  // namespace

PeerInfo internal::DescribeUnixPeer(int fd) {
  PeerInfo peer;
  peer.transport = "unix";
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    peer.has_credentials = true;
    peer.pid = cred.pid;
    peer.uid = cred.uid;
    peer.gid = cred.gid;
    peer.remote_address = absl::StrCat("unix:pid=", cred.pid);
    // A socketpair records its maker for both ends: on the maker's own end
    // (both ends unnamed, the maker this process) they are not the peer's.
    sockaddr_un local{}, remote{};
    socklen_t local_len = sizeof(local), remote_len = sizeof(remote);
    if (cred.pid == getpid() &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) == 0 &&
        getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &remote_len) == 0 &&
        local_len <= sizeof(sa_family_t) && remote_len <= sizeof(sa_family_t)) {
      peer = PeerInfo();
      peer.transport = "unix";
    }
  }
  return peer;
}

namespace {

// True if a server answers on the socket file at `addr`.
bool SomeoneListens(const UnixAddress& addr) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool listening = connect(fd, reinterpret_cast<const sockaddr*>(&addr.addr), addr.len) == 0;
  close(fd);
  return listening;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Listener>> UnixTransport::Listen(absl::string_view address,
                                                                const TransportOptions& options,
                                                                AcceptCallback on_accept) {
  if (absl::StartsWith(address, "fd:")) {
    return internal::ListenOnInheritedSocket(address, options, std::move(on_accept), upgrader_);
  }
  absl::StatusOr<UnixAddress> addr = ParseUnixAddress(address);
  if (!addr.ok()) return addr.status();
  if (!addr->abstract) {
    struct stat st;
    if (lstat(addr->path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot listen on ", address, ": the path exists and is not a socket"));
      }
      if (SomeoneListens(*addr)) {
        return absl::AlreadyExistsError(
            absl::StrCat("cannot listen on ", address, ": another server is listening there"));
      }
      unlink(addr->path.c_str());  // stale socket file from a dead server
    }
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  // Create the file with the configured mode from the start (no window in
  // which it is more open): bind honours the umask.
  mode_t old_umask = 0;
  if (!addr->abstract) old_umask = umask(static_cast<mode_t>(~options.unix_socket_mode & 0777));
  int bound = bind(fd, reinterpret_cast<const sockaddr*>(&addr->addr), addr->len);
  int bind_errno = errno;
  if (!addr->abstract) umask(old_umask);
  if (bound != 0 || listen(fd, SOMAXCONN) != 0) {
    int err = bound != 0 ? bind_errno : errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address, ": ", std::strerror(err)));
  }
  if (!addr->abstract) chmod(addr->path.c_str(), options.unix_socket_mode);
  std::function<void()> cleanup;
  if (!addr->abstract) cleanup = [path = addr->path] { unlink(path.c_str()); };
  auto listener = internal::SocketListener::Create(fd, std::string(address), options,
                                                   &internal::DescribeUnixPeer, std::move(on_accept),
                                                   std::move(cleanup), upgrader_);
  if (!listener.ok()) return listener.status();
  return std::unique_ptr<Listener>(std::move(*listener));
}

absl::StatusOr<int> internal::ConnectUnixSocket(absl::string_view address, absl::Time deadline) {
  if (absl::StartsWith(address, "fd:")) return internal::TakeInheritedSocket(address);
  absl::StatusOr<UnixAddress> addr = ParseUnixAddress(address);
  if (!addr.ok()) return addr.status();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  absl::Status connected = internal::ConnectWithDeadline(
      fd, reinterpret_cast<const sockaddr*>(&addr->addr), addr->len, deadline, std::string(address));
  if (!connected.ok()) {
    close(fd);
    return connected;
  }
  return fd;
}

absl::StatusOr<std::unique_ptr<Connection>> UnixTransport::Connect(absl::string_view address,
                                                                   const TransportOptions& options,
                                                                   absl::Time deadline) {
  absl::StatusOr<int> fd = internal::ConnectUnixSocket(address, deadline);
  if (!fd.ok()) return fd.status();
  PeerInfo peer = internal::DescribeUnixPeer(*fd);
  peer.remote_address = std::string(address);
  return std::unique_ptr<Connection>(internal::StreamConnection::Create(*fd, std::move(peer), options));
}

}  // namespace locus
