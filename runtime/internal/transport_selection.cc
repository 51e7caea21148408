#include "internal/transport_selection.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "internal/host_identity.h"
#include "locus/transport.h"

namespace locus::internal {
namespace {

const char* const kKinds[] = {"inproc", "shm", "unix", "tcp", "udp"};

}  // namespace

absl::StatusOr<TransportPolicy> TransportPolicy::Parse(absl::string_view spec) {
  TransportPolicy policy;
  spec = absl::StripAsciiWhitespace(spec);
  if (spec.empty() || spec == "auto") {
    for (const char* kind : kKinds) policy.allowed_.insert(kind);
    return policy;
  }
  std::vector<absl::string_view> tokens = absl::StrSplit(spec, ',', absl::SkipWhitespace());
  bool subtractive = !tokens.empty() && absl::StartsWith(absl::StripAsciiWhitespace(tokens[0]), "-");
  if (subtractive) {
    for (const char* kind : kKinds) policy.allowed_.insert(kind);
  }
  for (absl::string_view token : tokens) {
    token = absl::StripAsciiWhitespace(token);
    bool remove = absl::ConsumePrefix(&token, "-");
    bool known = false;
    for (const char* kind : kKinds) known |= token == kind;
    if (!known || remove != subtractive) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad transport policy \"", spec,
          "\": use a list of kinds to allow (e.g. \"shm,unix\") or to forbid (e.g. \"-shm,-inproc\"); "
          "kinds are inproc, shm, unix, tcp, udp"));
    }
    if (remove) {
      policy.allowed_.erase(token);
    } else {
      policy.allowed_.insert(std::string(token));
    }
  }
  return policy;
}

absl::StatusOr<TransportPolicy> TransportPolicy::ForChannel(absl::string_view option) {
  if (!option.empty()) return Parse(option);
  const char* env = std::getenv("LOCUS_TRANSPORTS");
  absl::StatusOr<TransportPolicy> policy = Parse(env == nullptr ? "" : env);
  if (!policy.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("LOCUS_TRANSPORTS: ", policy.status().message()));
  }
  return policy;
}

std::string TransportPolicy::ToString() const {
  std::vector<std::string> kinds;
  for (const char* kind : kKinds) {
    if (allowed_.contains(kind)) kinds.push_back(kind);
  }
  return absl::StrJoin(kinds, ",");
}

std::string TransportKind(absl::string_view scheme) {
  if (scheme == "unix" || scheme == "unix-abstract") return "unix";
  if (scheme == "shm" || scheme == "shm-abstract") return "shm";
  return std::string(scheme);
}

int TransportRank(absl::string_view kind) {
  if (kind == "inproc") return 3;
  if (kind == "shm") return 2;
  if (kind == "unix") return 1;
  return 0;
}

bool IsDescriptorAddress(absl::string_view address) {
  const absl::string_view scheme = AddressScheme(address);
  return scheme == "fd" || scheme == "shm-fd";
}

bool SameProcess(const wire::HostIdentity& peer) {
  const wire::HostIdentity& local = LocalHostIdentity();
  return SameHost(peer) && peer.pid() == local.pid() && peer.process_nonce() == local.process_nonce();
}

bool SameHost(const wire::HostIdentity& peer) {
  const wire::HostIdentity& local = LocalHostIdentity();
  return !local.boot_id().empty() && peer.boot_id() == local.boot_id();
}

std::vector<std::string> SameHostCandidates(const wire::Hello& hello, absl::string_view target,
                                            const TransportPolicy& policy,
                                            absl::string_view current_kind) {
  const wire::HostIdentity& local = LocalHostIdentity();
  const wire::HostIdentity& peer = hello.host();
  std::vector<std::string> endpoints(hello.local_endpoints().begin(), hello.local_endpoints().end());
  if (TransportKind(AddressScheme(target)) == "unix") endpoints.insert(endpoints.begin(), std::string(target));
  std::vector<std::string> shm, unix;
  for (const std::string& endpoint : endpoints) {
    // A socket file is reachable only in the same mount namespace, an
    // abstract socket only in the same network namespace.
    std::string name;
    bool abstract = false;
    if (absl::StartsWith(endpoint, "unix:")) {
      name = endpoint.substr(5);
      if (peer.mount_namespace() != local.mount_namespace()) continue;
    } else if (absl::StartsWith(endpoint, "unix-abstract:")) {
      name = endpoint.substr(strlen("unix-abstract:"));
      abstract = true;
      if (peer.net_namespace() != local.net_namespace()) continue;
    } else {
      continue;
    }
    shm.push_back(absl::StrCat(abstract ? "shm-abstract:" : "shm:", name));
    unix.push_back(endpoint);
  }
  std::vector<std::string> out;
  int current = TransportRank(current_kind);
  if (policy.Allows("shm") && TransportRank("shm") > current) out.insert(out.end(), shm.begin(), shm.end());
  if (policy.Allows("unix") && TransportRank("unix") > current) out.insert(out.end(), unix.begin(), unix.end());
  return out;
}

}  // namespace locus::internal
