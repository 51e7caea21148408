// A Locus connection over a connected UDP socket: one frame per datagram,
// no retransmission (reliable() is false: the runtime bounds every call
// with a deadline and refuses streams). Read on an event loop thread while
// background reads are wanted, and by a synchronous caller itself
// (DriveUntil, on a blocking client socket) otherwise.
//
// Liveness: while calls wait for replies (background reads wanted) and
// nothing has arrived for kProbeInterval, the client side sends a PING; if
// the server's port is gone, the kernel's ICMP answer fails the next
// receive with ECONNREFUSED and the connection closes (waiting calls get
// UNAVAILABLE at once instead of at their deadline). A connection that
// receives nothing for its idle timeout closes: a server's frees the peer's
// state; a client's (half the server's timeout, and only while no call
// waits) makes its next call open a fresh session. Malformed datagrams are
// dropped (anyone able to spoof the peer's address could send one).
//
// Example:
//   auto connection = DatagramConnection::Create(fd, peer, options, /*first_datagram=*/"",
//                                                /*probe_peer=*/true, absl::Seconds(30));
//   connection->Start(sink);
#ifndef LOCUS_TRANSPORTS_UDP_DATAGRAM_CONNECTION_H_
#define LOCUS_TRANSPORTS_UDP_DATAGRAM_CONNECTION_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "locus/transport.h"

namespace locus::internal {

inline constexpr absl::Duration kProbeInterval = absl::Milliseconds(250);

class DatagramConnection {
 public:
  // `fd`: a connected UDP socket (owned); blocking with SO_RCVTIMEO if
  // callers may drive it (the client side), else non-blocking. `first_datagram`: a
  // datagram that arrived before the socket existed (the server side's
  // HELLO, received on the listening socket); delivered first.
  // `probe_peer`: the client side (see above). `idle_timeout`: close after
  // this long without a datagram (InfiniteDuration: never). `lease` is held
  // as long as the connection object lives (the UDP listener counts its
  // peers by it).
  //
  // `on_new_session` (the server side): a HELLO after the first datagram is
  // a new client on the peer's address (a client socket that reused the
  // port while this session lived; clients send HELLO once per session).
  // The connection closes ("started a new session"), stops receiving from
  // that address (its descriptor no longer matches it), and hands the
  // HELLO to `on_new_session` on the delivering thread, which must not
  // block.
  using NewSessionHandoff = std::function<void(std::string hello)>;
  static std::unique_ptr<Connection> Create(int fd, PeerInfo peer, const TransportOptions& options,
                                            std::string first_datagram, bool probe_peer,
                                            absl::Duration idle_timeout,
                                            std::shared_ptr<void> lease = nullptr,
                                            NewSessionHandoff on_new_session = nullptr);
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_UDP_DATAGRAM_CONNECTION_H_
