// Targets that name several servers (locus/balancing.h): parsing them into
// elements, and resolving the elements into the addresses of backends.
//
//   "tcp://a:1,b:2"          two addresses; "b:2" takes the scheme before it
//   "unix:/a,tcp://b:1"      any Locus addresses
//   "unix:/a,unix:/b"        paths may hold commas: each element names its
//                            scheme ("unix:/a,/b" is the one path "/a,/b")
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

// Whether `target` names several servers or a name to resolve (elements
// separated by commas, or the "dns:" scheme): such targets get a balanced
// channel, all others the plain channel to one address. A comma in the
// path of a unix:, unix-abstract:, shm: or shm-abstract: address is part
// of it ("unix:/run/a,b.sock" is one address) unless what follows starts
// with a scheme `registry` knows or "dns:".
bool IsBalancedTarget(absl::string_view target, const TransportRegistry& registry);

// One element of a target: an address to dial as it is, or a DNS name.
struct TargetElement {
  std::string address;  // a Locus address ("tcp://a:1"); empty for a DNS name
  std::string host;     // DNS name (brackets removed from an IPv6 literal)
  std::string port;     // its port, decimal
  bool is_dns() const { return address.empty(); }
};

// Splits `target` at commas (as IsBalancedTarget). Each element is a
// "dns:" name or an address whose scheme `registry` knows; one without a
// known scheme takes the previous element's scheme ("tcp://a:1,b:2";
// "tcp://a:1,dns:7000" is the host "dns"). INVALID_ARGUMENT for an empty
// element, a first element without a known scheme, a tcp:// or udp://
// element that is not host:port (port 1 to 65535, an IPv6 address in
// brackets), a DNS name without a numeric port, with an IPv6 address
// without brackets, or naming a DNS server ("dns://8.8.8.8/h:1"), and
// descriptor addresses (fd:N), which connect once and cannot be one of
// several backends.
absl::StatusOr<std::vector<TargetElement>> ParseTarget(absl::string_view target,
                                                       const TransportRegistry& registry);

// The backends' addresses: the elements' in order, each DNS name replaced by
// its records ("tcp://1.2.3.4:80", "tcp://[::1]:80", "tcp://[fe80::1%eth0]:80"
// with its scope), duplicates dropped.
// A name that does not resolve contributes nothing; UNAVAILABLE (naming
// every failure) only if no address is left.
absl::StatusOr<std::vector<std::string>> ResolveTarget(const std::vector<TargetElement>& elements);

// Each element's addresses: an address element its own, a DNS name its
// records (as ResolveTarget), or why it did not resolve.
std::vector<absl::StatusOr<std::vector<std::string>>> ResolveEach(const std::vector<TargetElement>& elements);
// The backends' addresses from ResolveEach's result, in order, duplicates
// dropped. An element that did not resolve contributes its `previous`
// addresses (its last resolution's, when resolving again: a name that
// fails for a moment drops none of its backends), else nothing;
// UNAVAILABLE (naming every failure) if no address is left.
absl::StatusOr<std::vector<std::string>> CombineAddresses(
    const std::vector<absl::StatusOr<std::vector<std::string>>>& each,
    const std::vector<std::vector<std::string>>* previous);

// Whether any element is a DNS name (the target is worth resolving again).
bool HasDnsElement(const std::vector<TargetElement>& elements);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_TARGET_RESOLVER_H_
