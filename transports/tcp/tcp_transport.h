// TCP transport: "tcp://host:port", "tcp://[::1]:port" (IPv4 and IPv6).
// TCP_NODELAY is set on every connection (RPCs are latency-bound). Port 0
// binds an ephemeral port; Listener::address() reports the real one.
//
// Example:
//   server.AddListeningAddress("tcp://0.0.0.0:7000");
//   auto channel = locus::Connect("tcp://localhost:7000");
#ifndef LOCUS_TRANSPORTS_TCP_TCP_TRANSPORT_H_
#define LOCUS_TRANSPORTS_TCP_TCP_TRANSPORT_H_

#include "locus/transport.h"

namespace locus {

class TcpTransport final : public Transport {
 public:
  std::vector<std::string> schemes() const override { return {"tcp"}; }
  absl::StatusOr<std::unique_ptr<Listener>> Listen(absl::string_view address,
                                                   const TransportOptions& options,
                                                   AcceptCallback on_accept) override;
  absl::StatusOr<std::unique_ptr<Connection>> Connect(absl::string_view address,
                                                      const TransportOptions& options,
                                                      absl::Time deadline) override;
};

// Splits "tcp://host:port" / "tcp://[v6]:port" into host and port.
absl::Status ParseTcpAddress(absl::string_view address, std::string* host, std::string* port);

}  // namespace locus

#endif  // LOCUS_TRANSPORTS_TCP_TCP_TRANSPORT_H_
