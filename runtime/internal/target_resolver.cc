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
// it: "tcp://" of "tcp://a:1", "unix:" of "unix:/a", "dns:///" of
// "dns:///a:1".
std::string SchemePrefix(absl::string_view element) {
  const absl::string_view scheme = AddressScheme(element);
  absl::string_view rest = element.substr(scheme.size() + 1);
  if (scheme == kDnsScheme && absl::StartsWith(rest, "///")) return "dns:///";
  if (absl::StartsWith(rest, "//")) return absl::StrCat(scheme, "://");
  return absl::StrCat(scheme, ":");
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
    char text[INET6_ADDRSTRLEN] = {};
    if (entry->ai_family == AF_INET) {
      const auto* ipv4 = reinterpret_cast<const sockaddr_in*>(entry->ai_addr);
      if (inet_ntop(AF_INET, &ipv4->sin_addr, text, sizeof(text)) == nullptr) continue;
      addresses.push_back(absl::StrCat("tcp://", text, ":", port));
    } else if (entry->ai_family == AF_INET6) {
      const auto* ipv6 = reinterpret_cast<const sockaddr_in6*>(entry->ai_addr);
      if (inet_ntop(AF_INET6, &ipv6->sin6_addr, text, sizeof(text)) == nullptr) continue;
      addresses.push_back(absl::StrCat("tcp://[", text, "]:", port));
    }
  }
  freeaddrinfo(found);
  if (addresses.empty()) return absl::UnavailableError(absl::StrCat(host, " has no IPv4 or IPv6 address"));
  return addresses;
}

}  // namespace

bool IsBalancedTarget(absl::string_view target) {
  return target.find(',') != absl::string_view::npos || AddressScheme(target) == kDnsScheme;
}

absl::StatusOr<std::vector<TargetElement>> ParseTarget(absl::string_view target,
                                                       const TransportRegistry& registry) {
  std::vector<TargetElement> elements;
  std::string prefix;  // of the previous element
  for (absl::string_view piece : absl::StrSplit(target, ',')) {
    piece = absl::StripAsciiWhitespace(piece);
    if (piece.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("target \"", target, "\" has an empty element"));
    }
    std::string text(piece);
    const absl::string_view scheme = AddressScheme(text);
    if (scheme != kDnsScheme && registry.Find(scheme) == nullptr) {
      if (prefix.empty()) {
        // The registry's own error names the known schemes.
        absl::StatusOr<Transport*> transport = registry.ForAddress(text);
        return absl::InvalidArgumentError(absl::StrCat("target \"", target, "\": ",
                                                       transport.status().message()));
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
      element.address = text;
    }
    prefix = SchemePrefix(text);
    elements.push_back(std::move(element));
  }
  return elements;
}

absl::StatusOr<std::vector<std::string>> ResolveTarget(const std::vector<TargetElement>& elements) {
  std::vector<std::string> addresses;
  absl::flat_hash_set<std::string> seen;
  std::vector<std::string> failures;
  auto add = [&](std::string address) {
    if (seen.insert(address).second) addresses.push_back(std::move(address));
  };
  for (const TargetElement& element : elements) {
    if (!element.is_dns()) {
      add(element.address);
      continue;
    }
    absl::StatusOr<std::vector<std::string>> resolved = ResolveDns(element.host, element.port);
    if (!resolved.ok()) {
      failures.push_back(std::string(resolved.status().message()));
      continue;
    }
    for (std::string& address : *resolved) add(std::move(address));
  }
  if (addresses.empty()) {
    return absl::UnavailableError(absl::StrCat("no address to connect to: ", absl::StrJoin(failures, "; ")));
  }
  return addresses;
}

bool HasDnsElement(const std::vector<TargetElement>& elements) {
  return std::any_of(elements.begin(), elements.end(),
                     [](const TargetElement& element) { return element.is_dns(); });
}

}  // namespace locus::internal
