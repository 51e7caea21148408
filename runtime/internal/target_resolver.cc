// Parsing and resolving targets that name several servers
// (target_resolver.h).
#include "internal/target_resolver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "internal/transport_selection.h"

namespace locus::internal {
namespace {

constexpr absl::string_view kDnsScheme = "dns";

// What an element without a scheme of its own takes from the one before
// it: "tcp://" of "tcp://a:1", "dns:///" of "dns:///a:1".
std::string SchemePrefix(absl::string_view element) {
  const absl::string_view scheme = AddressScheme(element);
  absl::string_view rest = element.substr(scheme.size() + 1);
  if (scheme == kDnsScheme && absl::StartsWith(rest, "///")) return "dns:///";
  if (absl::StartsWith(rest, "//")) return absl::StrCat(scheme, "://");
  return absl::StrCat(scheme, ":");
}

// Schemes whose address is a file path or a socket name, which may hold
// commas: "unix:/run/a,b.sock" is one address.
bool IsPathScheme(absl::string_view scheme) {
  return scheme == "unix" || scheme == "unix-abstract" || scheme == "shm" || scheme == "shm-abstract";
}

// Whether `piece` starts an element of its own: a scheme `registry` knows,
// or a DNS name ("dns:" followed by more than a port: "dns:7000" is the
// host "dns" with its port).
bool HasOwnScheme(absl::string_view piece, const TransportRegistry& registry) {
  const absl::string_view scheme = AddressScheme(piece);
  if (scheme.empty() || scheme.size() == piece.size()) return false;
  if (scheme == kDnsScheme) {
    const absl::string_view rest = piece.substr(scheme.size() + 1);
    return !std::all_of(rest.begin(), rest.end(), [](char c) { return absl::ascii_isdigit(c); });
  }
  return registry.Find(scheme) != nullptr;
}

// `target` cut at its commas into elements (whitespace around each
// removed). A comma inside the path of a path scheme's address stays in
// it, unless what follows starts an element of its own.
std::vector<std::string> SplitTarget(absl::string_view target, const TransportRegistry& registry) {
  std::vector<std::string> elements;
  bool in_path = false;  // the last element is a path scheme's
  for (absl::string_view piece : absl::StrSplit(target, ',')) {
    const absl::string_view stripped = absl::StripAsciiWhitespace(piece);
    if (in_path && !HasOwnScheme(stripped, registry)) {
      absl::StrAppend(&elements.back(), ",", piece);
      continue;
    }
    elements.emplace_back(stripped);
    in_path = IsPathScheme(AddressScheme(stripped));
  }
  for (std::string& element : elements) element = std::string(absl::StripAsciiWhitespace(element));
  return elements;
}

// Whether `text` ("host:port", "[v6]:port") names a host and a port from 1
// to 65535; the host and port into `*host`, `*port`.
bool SplitHostPort(absl::string_view text, absl::string_view* host, absl::string_view* port) {
  if (absl::StartsWith(text, "[")) {
    const size_t close = text.find(']');
    if (close == absl::string_view::npos || text.substr(close + 1, 1) != ":") return false;
    *host = text.substr(1, close - 1);
    *port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) return false;
    *host = text.substr(0, colon);
    *port = text.substr(colon + 1);
    // An IPv6 address needs its brackets: where its port starts is unclear.
    if (absl::StrContains(*host, ':')) return false;
  }
  uint32_t number = 0;
  return !host->empty() && !port->empty() &&
         std::all_of(port->begin(), port->end(), [](char c) { return absl::ascii_isdigit(c); }) &&
         absl::SimpleAtoi(*port, &number) && number >= 1 && number <= 65535;
}

// The Locus address `text` of `target` is well formed where the balancer
// can tell: tcp:// and udp:// need host:port, path schemes a path. Other
// schemes (custom transports) are the transport's to judge when it dials.
absl::Status ValidateAddress(absl::string_view target, absl::string_view text) {
  const absl::string_view scheme = AddressScheme(text);
  absl::string_view rest = text.substr(scheme.size() + 1);
  if (scheme == "tcp" || scheme == "udp") {
    absl::string_view host;
    absl::string_view port;
    if (!absl::ConsumePrefix(&rest, "//") || !SplitHostPort(rest, &host, &port)) {
      return absl::InvalidArgumentError(absl::StrCat("target \"", target, "\": \"", text, "\" is not ", scheme,
                                                     "://host:port (a port from 1 to 65535; an IPv6 "
                                                     "address in brackets)"));
    }
  } else if (IsPathScheme(scheme) && rest.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("target \"", target, "\": \"", text, "\" names no socket"));
  }
  return absl::OkStatus();
}

// "dns:///host:port" or "dns:host:port" into `element`.
absl::Status ParseDnsName(absl::string_view text, TargetElement* element) {
  absl::string_view rest = text.substr(kDnsScheme.size() + 1);
  if (absl::ConsumePrefix(&rest, "//")) {
    const size_t slash = rest.find('/');
    if (slash == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": expected dns:///host:port"));
    }
    if (slash != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", text, "\": naming a DNS server is not supported; use dns:///host:port"));
    }
    rest.remove_prefix(1);
  }
  absl::string_view host;
  absl::string_view port;
  if (absl::StartsWith(rest, "[")) {
    const size_t close = rest.find(']');
    if (close == absl::string_view::npos || rest.substr(close + 1, 1) != ":") {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": expected dns:///[v6-address]:port"));
    }
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    const size_t colon = rest.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": a DNS name needs a port (dns:///host:port)"));
    }
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (absl::StrContains(host, ':')) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", text, "\": an IPv6 address needs brackets (dns:///[v6-address]:port)"));
    }
  }
  uint32_t number = 0;
  if (host.empty() || !absl::SimpleAtoi(port, &number) || number == 0 || number > 65535 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return absl::ascii_isdigit(c); })) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\": expected dns:///host:port with a port from 1 to 65535"));
  }
  element->host = std::string(host);
  element->port = std::string(port);
  return absl::OkStatus();
}

// The addresses of `host`:`port` (every A/AAAA record), as tcp:// addresses.
absl::StatusOr<std::vector<std::string>> ResolveDns(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int error = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (error != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(error)));
  }
  std::vector<std::string> addresses;
  for (const addrinfo* entry = found; entry != nullptr; entry = entry->ai_next) {
    if (entry->ai_family != AF_INET && entry->ai_family != AF_INET6) continue;
    // Numeric, with an IPv6 address's scope ("fe80::1%eth0") kept.
    char text[NI_MAXHOST] = {};
    if (getnameinfo(entry->ai_addr, entry->ai_addrlen, text, sizeof(text), nullptr, 0, NI_NUMERICHOST) != 0) {
      continue;
    }
    addresses.push_back(entry->ai_family == AF_INET6 ? absl::StrCat("tcp://[", text, "]:", port)
                                                     : absl::StrCat("tcp://", text, ":", port));
  }
  freeaddrinfo(found);
  if (addresses.empty()) return absl::UnavailableError(absl::StrCat(host, " has no IPv4 or IPv6 address"));
  return addresses;
}

}  // namespace

bool IsBalancedTarget(absl::string_view target, const TransportRegistry& registry) {
  return AddressScheme(target) == kDnsScheme || SplitTarget(target, registry).size() > 1;
}

absl::StatusOr<std::vector<TargetElement>> ParseTarget(absl::string_view target,
                                                       const TransportRegistry& registry) {
  std::vector<TargetElement> elements;
  std::string prefix;  // of the previous element
  for (std::string& text : SplitTarget(target, registry)) {
    if (text.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("target \"", target, "\" has an empty element"));
    }
    if (!HasOwnScheme(text, registry)) {
      if (prefix.empty()) {
        // The registry's own error names the known schemes.
        absl::StatusOr<Transport*> transport = registry.ForAddress(text);
        return absl::InvalidArgumentError(absl::StrCat("target \"", target, "\": ",
                                                       transport.ok() ? "no scheme in the first element"
                                                                      : transport.status().message()));
      }
      text = absl::StrCat(prefix, text);
    }
    if (IsDescriptorAddress(text)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "target \"", target, "\": ", text,
          " connects once and cannot be one of several servers; connect to it alone"));
    }
    TargetElement element;
    if (AddressScheme(text) == kDnsScheme) {
      if (absl::Status parsed = ParseDnsName(text, &element); !parsed.ok()) return parsed;
    } else {
      if (absl::Status valid = ValidateAddress(target, text); !valid.ok()) return valid;
      element.address = text;
    }
    // A path scheme's path is the element's own: the next takes no part.
    prefix = IsPathScheme(AddressScheme(text)) ? "" : SchemePrefix(text);
    elements.push_back(std::move(element));
  }
  return elements;
}

std::vector<absl::StatusOr<std::vector<std::string>>> ResolveEach(const std::vector<TargetElement>& elements) {
  std::vector<absl::StatusOr<std::vector<std::string>>> each;
  each.reserve(elements.size());
  for (const TargetElement& element : elements) {
    if (element.is_dns()) {
      each.push_back(ResolveDns(element.host, element.port));
    } else {
      each.push_back(std::vector<std::string>{element.address});
    }
  }
  return each;
}

absl::StatusOr<std::vector<std::string>> CombineAddresses(
    const std::vector<absl::StatusOr<std::vector<std::string>>>& each,
    const std::vector<std::vector<std::string>>* previous) {
  std::vector<std::string> addresses;
  absl::flat_hash_set<std::string> seen;
  std::vector<std::string> failures;
  for (size_t i = 0; i < each.size(); ++i) {
    const std::vector<std::string>* found = nullptr;
    if (each[i].ok()) {
      found = &*each[i];
    } else {
      failures.push_back(std::string(each[i].status().message()));
      if (previous != nullptr && i < previous->size()) found = &(*previous)[i];
    }
    if (found == nullptr) continue;
    for (const std::string& address : *found) {
      if (seen.insert(address).second) addresses.push_back(address);
    }
  }
  if (addresses.empty()) {
    return absl::UnavailableError(absl::StrCat("no address to connect to: ", absl::StrJoin(failures, "; ")));
  }
  return addresses;
}

absl::StatusOr<std::vector<std::string>> ResolveTarget(const std::vector<TargetElement>& elements) {
  return CombineAddresses(ResolveEach(elements), nullptr);
}

bool HasDnsElement(const std::vector<TargetElement>& elements) {
  return std::any_of(elements.begin(), elements.end(),
                     [](const TargetElement& element) { return element.is_dns(); });
}

}  // namespace locus::internal
