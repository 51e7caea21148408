#include "transports/socket/inet_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace locus::internal {

absl::Status ParseInetAddress(absl::string_view address, absl::string_view scheme,
                              std::string* host, std::string* port) {
  const std::string prefix = absl::StrCat(scheme, "://");
  if (!absl::StartsWith(address, prefix)) {
    return absl::InvalidArgumentError(absl::StrCat("not a ", scheme, " address: \"", address, "\""));
  }
  absl::string_view rest = address.substr(prefix.size());
  size_t colon;
  if (absl::StartsWith(rest, "[")) {
    size_t close = rest.find(']');
    if (close == absl::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("bad IPv6 address \"", address, "\" (expected ",
                                                     prefix, "[addr]:port)"));
    }
    *host = std::string(rest.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = rest.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing port in \"", address, "\" (expected ", prefix, "host:port)"));
    }
    *host = std::string(rest.substr(0, colon));
  }
  *port = std::string(rest.substr(colon + 1));
  int port_number;
  if (!absl::SimpleAtoi(*port, &port_number) || port_number < 0 || port_number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in \"", address, "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<AddrInfoList> ResolveInetAddress(absl::string_view address, absl::string_view scheme,
                                                int socktype, bool passive) {
  std::string host, port;
  absl::Status parsed = ParseInetAddress(address, scheme, &host, &port);
  if (!parsed.ok()) return parsed;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* result = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &result);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve \"", address, "\": ", gai_strerror(rc)));
  }
  return AddrInfoList(result);
}

std::string FormatInetAddress(const sockaddr_storage& address, absl::string_view scheme) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (address.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return absl::StrCat(scheme, "://[", host, "]:", ntohs(in6->sin6_port));
  }
  const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
  inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
  return absl::StrCat(scheme, "://", host, ":", ntohs(in->sin_port));
}

}  // namespace locus::internal
