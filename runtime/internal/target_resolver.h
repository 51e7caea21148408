// Targets that name several servers (locus/balancing.h): parsing them into
// elements, and resolving the elements into the addresses of backends.
//
//   "tcp://a:1,b:2"          two addresses; "b:2" takes the scheme before it
//   "unix:/a,tcp://b:1"      any Locus addresses
//   "dns:///host:port"       every A/AAAA record of host -> "tcp://ip:port"
//   "dns:host:port"          the same (gRPC's short form)
//   "dns:///a:1,unix:/b"     a list may mix names and addresses
//
// Example:
//   absl::StatusOr<std::vector<TargetElement>> elements = ParseTarget(target, registry);
//   if (!elements.ok()) return elements.status();
//   absl::StatusOr<std::vector<std::string>> addresses = ResolveTarget(*elements);
//
// Thread-safety: free functions, no shared state. ResolveTarget blocks in
// getaddrinfo for DNS elements.
#ifndef LOCUS_RUNTIME_INTERNAL_TARGET_RESOLVER_H_
#define LOCUS_RUNTIME_INTERNAL_TARGET_RESOLVER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "locus/transport.h"

namespace locus::internal {

// Whether `target` names several servers or a name to resolve (a comma, or
// the "dns:" scheme): such targets get a balanced channel, all others the
// plain channel to one address.
bool IsBalancedTarget(absl::string_view target);

// One element of a target: an address to dial as it is, or a DNS name.
struct TargetElement {
  std::string address;  // a Locus address ("tcp://a:1"); empty for a DNS name
  std::string host;     // DNS name (brackets removed from an IPv6 literal)
  std::string port;     // its port, decimal
  bool is_dns() const { return address.empty(); }
};

// Splits `target` at commas. Each element is a "dns:" name or an address
// whose scheme `registry` knows; one without a known scheme takes the
// previous element's scheme ("tcp://a:1,b:2"). INVALID_ARGUMENT for an
// empty element, a first element without a known scheme, a DNS name
// without a numeric port or naming a DNS server ("dns://8.8.8.8/h:1"), and
// descriptor addresses (fd:N), which connect once and cannot be one of
// several backends.
absl::StatusOr<std::vector<TargetElement>> ParseTarget(absl::string_view target,
                                                       const TransportRegistry& registry);

// The backends' addresses: the elements' in order, each DNS name replaced by
// its records ("tcp://1.2.3.4:80", "tcp://[::1]:80"), duplicates dropped.
// A name that does not resolve contributes nothing; UNAVAILABLE (naming
// every failure) only if no address is left.
absl::StatusOr<std::vector<std::string>> ResolveTarget(const std::vector<TargetElement>& elements);

// Whether any element is a DNS name (the target is worth resolving again).
bool HasDnsElement(const std::vector<TargetElement>& elements);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_TARGET_RESOLVER_H_
