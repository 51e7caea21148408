// "fd:N" addresses: a connection over a connected Unix stream socket this
// process already has as descriptor N, typically one end of a socketpair
// inherited from the process that started it (locus::SpawnChild passes
// LOCUS_PARENT_FD). No path, no name, no listening socket: nobody else can
// reach it (Mojo's and Binder's bootstrap pipe).
//
//   Connect("fd:N")  the connecting side over N.
//   Listen("fd:N")   the accepting side: a Listener that delivers the one
//                    connection N carries, once its first bytes arrive; a
//                    first frame asking for another transport
//                    (TRANSPORT_SETUP: "shm-fd:N" on the other end) goes to
//                    the upgrader, as on a Unix listener.
//
// Ownership: either takes descriptor N once it is validated. It moves the
// socket to a fresh close-on-exec descriptor and closes N, so that the
// address can be used once: a second use fails ("not open"), or finds
// whatever N has become since. A descriptor that fails validation (not
// open, not a socket, not a connected Unix stream socket) is left alone.
//
// Credentials: PeerInfo comes from SO_PEERCRED as on any Unix connection.
// For a socketpair that is the process that made the pair (the kernel
// records it for both ends): right for the end a child inherited, but on the
// maker's own end it names the maker itself, so there DescribeUnixPeer
// reports no credentials (unix_transport.h).
//
// Example:
//   int pair[2];
//   socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
//   auto theirs = transport->Listen(absl::StrCat("fd:", pair[1]), {}, on_accept);
//   auto mine = transport->Connect(absl::StrCat("fd:", pair[0]), {}, deadline);
#ifndef LOCUS_TRANSPORTS_UNIX_INHERITED_SOCKET_H_
#define LOCUS_TRANSPORTS_UNIX_INHERITED_SOCKET_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "locus/transport.h"
#include "transports/socket/stream_upgrader.h"

namespace locus::internal {

// The descriptor number of "fd:N" (N decimal). INVALID_ARGUMENT otherwise.
absl::StatusOr<int> ParseInheritedSocketAddress(absl::string_view address);

// Takes the socket "fd:N" names (see the file comment) and returns its new,
// non-blocking, close-on-exec descriptor, which the caller owns.
// INVALID_ARGUMENT, naming what N is, if it is not a connected Unix stream
// socket. Thread-safe: of concurrent takes of one N, one wins.
absl::StatusOr<int> TakeInheritedSocket(absl::string_view address);

// The accepting side over "fd:N": takes N at once (errors as
// TakeInheritedSocket), then delivers its connection to `on_accept` once,
// on an event-loop thread, when the peer's first bytes (or its hang-up)
// arrive. With an `upgrader`, a first frame of type kTransportSetup is
// handed to it instead (a refused upgrade is logged and closes the socket;
// nothing is delivered). Destroying the listener before that closes the
// socket; no callback runs after the destructor returned.
absl::StatusOr<std::unique_ptr<Listener>> ListenOnInheritedSocket(
    absl::string_view address, const TransportOptions& options, AcceptCallback on_accept,
    std::shared_ptr<StreamUpgrader> upgrader);

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_UNIX_INHERITED_SOCKET_H_
