// Shared-memory transport for peers on the same host: "shm:/path/to.sock"
// (or "shm-abstract:name") names a Unix socket of a Locus server. The client
// connects to it, creates a memfd with two rings (shm_layout.h), seals it and
// passes it over the socket (SCM_RIGHTS) in a TRANSPORT_SETUP frame; once the
// server accepts, every frame travels through the rings and the socket only
// tells each side when the other dies. Any Locus Unix-socket listener built
// with this transport's upgrader accepts such clients, so servers need no
// separate address: a server on "unix:/x.sock" also serves "shm:/x.sock".
// "shm-fd:N" does the same over a connected socket this process already has
// as descriptor N (an end of a socketpair; "fd:N" in unix_transport.h, whose
// accepting side sniffs the setup frame as a listener does): no path at all.
//
// Example:
//   auto shm = std::make_shared<locus::ShmTransport>();
//   registry.Register(shm);
//   registry.Register(std::make_shared<locus::UnixTransport>(shm->upgrader()));
//   auto channel = locus::Connect("shm:/tmp/app.sock");
#ifndef LOCUS_TRANSPORTS_SHM_SHM_TRANSPORT_H_
#define LOCUS_TRANSPORTS_SHM_SHM_TRANSPORT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "locus/transport.h"
#include "locus/wire.pb.h"
#include "transports/shm/shm_connection.h"
#include "transports/shm/shm_layout.h"
#include "transports/socket/stream_upgrader.h"
#include "transports/unix/unix_transport.h"

namespace locus {

class ShmTransport final : public Transport {
 public:
  ShmTransport();
  std::vector<std::string> schemes() const override { return {"shm", "shm-abstract", "shm-fd"}; }
  // Listens on the Unix socket the address names; plain Unix clients are
  // served there too.
  absl::StatusOr<std::unique_ptr<Listener>> Listen(absl::string_view address,
                                                   const TransportOptions& options,
                                                   AcceptCallback on_accept) override;
  // Errors: UNAVAILABLE when the server is unreachable or does not accept
  // shared memory (e.g. another host's socket, an older server).
  absl::StatusOr<std::unique_ptr<Connection>> Connect(absl::string_view address,
                                                      const TransportOptions& options,
                                                      absl::Time deadline) override;

  // What a Unix listener uses to accept shared-memory clients.
  std::shared_ptr<internal::StreamUpgrader> upgrader() const { return upgrader_; }

 private:
  std::shared_ptr<internal::StreamUpgrader> upgrader_;
  std::shared_ptr<UnixTransport> unix_;
};

// Parses and validates the meta of a TRANSPORT_SETUP frame from a peer
// (version, power-of-two ring capacity within limits, consistent size).
absl::StatusOr<wire::ShmSetup> ParseShmSetup(absl::string_view meta);
// Checks the header the peer wrote in the region against its setup frame;
// returns the geometry to use: the setup's, and the seal key as read (once)
// and validated here. The peer may change the header afterwards: nothing
// else of it is read again.
absl::StatusOr<internal::ShmGeometry> ValidateShmRegionHeader(const internal::ShmRegionHeader& region,
                                                              const wire::ShmSetup& setup);

// "shm:/p" -> "unix:/p", "shm-abstract:n" -> "unix-abstract:n",
// "shm-fd:N" -> "fd:N"; empty if `address` is not a shm address.
std::string ShmToUnixAddress(absl::string_view address);

}  // namespace locus

#endif  // LOCUS_TRANSPORTS_SHM_SHM_TRANSPORT_H_
