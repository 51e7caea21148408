// Unix domain socket transport: "unix:/path/to.sock" (a socket file, created
// with TransportOptions::unix_socket_mode, 0600 by default) and
// "unix-abstract:name" (Linux abstract namespace, no file). Peers' credentials
// (pid, uid, gid) come from SO_PEERCRED and are exposed in PeerInfo.
//
// Example:
//   registry.Register(std::make_shared<locus::UnixTransport>());
//   server.AddListeningAddress("unix:/tmp/app.sock");
#ifndef LOCUS_TRANSPORTS_UNIX_UNIX_TRANSPORT_H_
#define LOCUS_TRANSPORTS_UNIX_UNIX_TRANSPORT_H_

#include "locus/transport.h"

namespace locus {

class UnixTransport final : public Transport {
 public:
  std::vector<std::string> schemes() const override { return {"unix", "unix-abstract"}; }
  absl::StatusOr<std::unique_ptr<Listener>> Listen(absl::string_view address,
                                                   const TransportOptions& options,
                                                   AcceptCallback on_accept) override;
  absl::StatusOr<std::unique_ptr<Connection>> Connect(absl::string_view address,
                                                      const TransportOptions& options,
                                                      absl::Time deadline) override;
};

}  // namespace locus

#endif  // LOCUS_TRANSPORTS_UNIX_UNIX_TRANSPORT_H_
