// Internet addresses of the form "<scheme>://host:port" and
// "<scheme>://[v6addr]:port", shared by the TCP and UDP transports:
// parsing, resolving, and formatting a socket address back.
//
// Example:
//   auto resolved = ResolveInetAddress("udp://127.0.0.1:7000", "udp", SOCK_DGRAM, false);
//   std::string text = FormatInetAddress(bound, "udp");   // "udp://127.0.0.1:7000"
#ifndef LOCUS_TRANSPORTS_SOCKET_INET_ADDRESS_H_
#define LOCUS_TRANSPORTS_SOCKET_INET_ADDRESS_H_

#include <netdb.h>
#include <sys/socket.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace locus::internal {

// Splits "<scheme>://host:port" / "<scheme>://[v6]:port" into host and port.
absl::Status ParseInetAddress(absl::string_view address, absl::string_view scheme,
                              std::string* host, std::string* port);

struct AddrInfoDeleter {
  void operator()(addrinfo* ai) const { freeaddrinfo(ai); }
};
using AddrInfoList = std::unique_ptr<addrinfo, AddrInfoDeleter>;

// getaddrinfo for `address` (numeric port); `passive` for binding.
absl::StatusOr<AddrInfoList> ResolveInetAddress(absl::string_view address, absl::string_view scheme,
                                                int socktype, bool passive);

// "<scheme>://1.2.3.4:5" or "<scheme>://[::1]:5".
std::string FormatInetAddress(const sockaddr_storage& address, absl::string_view scheme);

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_INET_ADDRESS_H_
