// Unix domain socket transport: "unix:/path/to.sock" (a socket file, created
// with TransportOptions::unix_socket_mode, 0600 by default) and
// "unix-abstract:name" (Linux abstract namespace, no file), and "fd:N", a
// connected socket this process already has as descriptor N (one end of a
// socketpair; inherited_socket.h). Peers' credentials (pid, uid, gid) come
// from SO_PEERCRED and are exposed in PeerInfo.
//
// Example:
//   registry.Register(std::make_shared<locus::UnixTransport>());
//   server.AddListeningAddress("unix:/tmp/app.sock");
#ifndef LOCUS_TRANSPORTS_UNIX_UNIX_TRANSPORT_H_
#define LOCUS_TRANSPORTS_UNIX_UNIX_TRANSPORT_H_

#include "locus/transport.h"
#include "transports/socket/stream_upgrader.h"

namespace locus {

class UnixTransport final : public Transport {
 public:
  // With an `upgrader`, listeners also accept connections that ask to move
  // to another transport (shared memory) in their first frame.
  explicit UnixTransport(std::shared_ptr<internal::StreamUpgrader> upgrader = nullptr)
      : upgrader_(std::move(upgrader)) {}

  std::vector<std::string> schemes() const override { return {"unix", "unix-abstract", "fd"}; }
  absl::StatusOr<std::unique_ptr<Listener>> Listen(absl::string_view address,
                                                   const TransportOptions& options,
                                                   AcceptCallback on_accept) override;
  absl::StatusOr<std::unique_ptr<Connection>> Connect(absl::string_view address,
                                                      const TransportOptions& options,
                                                      absl::Time deadline) override;

 private:
  std::shared_ptr<internal::StreamUpgrader> upgrader_;
};

namespace internal {
// Connects a non-blocking Unix stream socket to `address` ("unix:/path" or
// "unix-abstract:name") and returns its fd; for "fd:N", takes descriptor N
// (TakeInheritedSocket).
absl::StatusOr<int> ConnectUnixSocket(absl::string_view address, absl::Time deadline);
// PeerInfo of a connected Unix socket, with SO_PEERCRED credentials; none
// on the end of a socketpair this process made, for which the kernel
// records this process, not the peer.
PeerInfo DescribeUnixPeer(int fd);
}  // namespace internal

}  // namespace locus

#endif  // LOCUS_TRANSPORTS_UNIX_UNIX_TRANSPORT_H_
