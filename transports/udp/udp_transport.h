// UDP transport: "udp://host:port", "udp://[::1]:port". Datagram-style
// calls: every frame is one datagram (a message plus its frame header and
// call header must fit in 65507 bytes), nothing is retransmitted, and
// calls end by their deadline if a datagram is lost (the runtime gives
// calls without a deadline ChannelOptions::datagram_call_timeout). Streaming
// calls are refused (FAILED_PRECONDITION): their flow control needs every
// frame. A channel given udp:// to a server on the same host moves to shared
// memory like any other, unless its policy forbids it.
//
// Server side: one listening socket receives the first datagram (HELLO) of
// each new peer; the listener then opens a socket connected to that peer on
// the same port, which the kernel prefers for the peer's later datagrams,
// so each peer gets its own connection on the event loops. A REQUEST or
// PING from an unknown peer (a client whose server restarted, or whose
// session expired after kUdpIdleTimeout of silence; clients end idle
// sessions themselves after half of it) is answered with GOAWAY, and a
// REQUEST also with UNAVAILABLE for that call (it was not processed); the
// client's next call reconnects. A HELLO that reaches a live session (a
// new client socket on the port of an earlier one whose session lives on)
// ends that session and starts a new one for the new client. At most
// kMaxUdpPeers peers at once;
// others are refused with GOAWAY. All these sockets set SO_REUSEADDR (so a
// restarted server binds while its predecessor's peer sockets linger);
// hazard: a second socket with SO_REUSEADDR may bind the same port without
// an error, and then takes some new peers' HELLOs.
//
// Example:
//   server.AddListeningAddress("udp://0.0.0.0:7001");
//   locus::ChannelOptions options;
//   options.allowed_transports = "udp";
//   auto channel = locus::Connect("udp://127.0.0.1:7001", options);
#ifndef LOCUS_TRANSPORTS_UDP_UDP_TRANSPORT_H_
#define LOCUS_TRANSPORTS_UDP_UDP_TRANSPORT_H_

#include "absl/time/time.h"
#include "locus/transport.h"

namespace locus {

inline constexpr absl::Duration kUdpIdleTimeout = absl::Seconds(60);
inline constexpr int kMaxUdpPeers = 1024;

class UdpTransport final : public Transport {
 public:
  std::vector<std::string> schemes() const override { return {"udp"}; }
  absl::StatusOr<std::unique_ptr<Listener>> Listen(absl::string_view address,
                                                   const TransportOptions& options,
                                                   AcceptCallback on_accept) override;
  absl::StatusOr<std::unique_ptr<Connection>> Connect(absl::string_view address,
                                                      const TransportOptions& options,
                                                      absl::Time deadline) override;
};

}  // namespace locus

#endif  // LOCUS_TRANSPORTS_UDP_UDP_TRANSPORT_H_
