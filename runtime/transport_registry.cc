// TransportRegistry and address-scheme parsing (see locus/transport.h).
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "locus/transport.h"

namespace locus {

absl::string_view AddressScheme(absl::string_view address) {
  size_t colon = address.find(':');
  if (colon == absl::string_view::npos || colon == 0) return {};
  absl::string_view scheme = address.substr(0, colon);
  for (char c : scheme) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '+';
    if (!ok) return {};
  }
  return scheme;
}

void TransportRegistry::Register(std::shared_ptr<Transport> transport) {
  absl::MutexLock lock(&mu_);
  for (const std::string& scheme : transport->schemes()) by_scheme_[scheme] = transport;
}

Transport* TransportRegistry::Find(absl::string_view scheme) const {
  absl::MutexLock lock(&mu_);
  auto it = by_scheme_.find(scheme);
  return it == by_scheme_.end() ? nullptr : it->second.get();
}

absl::StatusOr<Transport*> TransportRegistry::ForAddress(absl::string_view address) const {
  absl::string_view scheme = AddressScheme(address);
  if (Transport* transport = Find(scheme); transport != nullptr) return transport;
  std::vector<std::string> known;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, unused] : by_scheme_) known.push_back(name);
  }
  std::sort(known.begin(), known.end());
  return absl::InvalidArgumentError(
      absl::StrCat("no transport for address \"", address, "\" (known schemes: ",
                   absl::StrJoin(known, ", "), "; e.g. unix:/path, tcp://host:port)"));
}

}  // namespace locus
