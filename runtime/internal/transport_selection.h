// Choosing the transport by where the peer lives. After the handshake on
// the address the user gave, a channel knows the server's host identity and
// its Unix endpoints (HELLO); from them it moves, in order of preference, to
//   inproc  same process: direct in-process calls (no sockets, no copies);
//   shm     same host: shared-memory rings, set up over the Unix socket;
//   unix    same host, shared memory not possible or forbidden;
//   tcp     otherwise (or whatever the given address was).
// A TransportPolicy (ChannelOptions::allowed_transports, else the
// LOCUS_TRANSPORTS environment variable) forbids or forces kinds.
//
// Example:
//   absl::StatusOr<TransportPolicy> policy = TransportPolicy::Parse("-shm");  // all but shm
//   policy->Allows("unix");   // true
#ifndef LOCUS_RUNTIME_INTERNAL_TRANSPORT_SELECTION_H_
#define LOCUS_RUNTIME_INTERNAL_TRANSPORT_SELECTION_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "locus/wire.pb.h"

namespace locus::internal {

class TransportPolicy {
 public:
  // "" or "auto": everything. "shm,unix": only those. "-shm,-inproc": all
  // but those. Kinds: inproc, shm, unix, tcp. INVALID_ARGUMENT otherwise.
  static absl::StatusOr<TransportPolicy> Parse(absl::string_view spec);
  // `option` if non-empty, else $LOCUS_TRANSPORTS, else everything.
  static absl::StatusOr<TransportPolicy> ForChannel(absl::string_view option);

  bool Allows(absl::string_view kind) const { return allowed_.contains(kind); }
  std::string ToString() const;

 private:
  absl::flat_hash_set<std::string> allowed_;
};

// The kind ("inproc", "shm", "unix", "tcp", ...) of a transport scheme.
std::string TransportKind(absl::string_view scheme);
// Higher is better (closer): inproc 3, shm 2, unix 1, anything else 0.
int TransportRank(absl::string_view kind);

// Whether `address` names a descriptor of this process ("fd:N",
// "shm-fd:N"): the first connection takes it, so it cannot be dialled again
// (no reconnect), and it means nothing to another process (never an
// endpoint to hand out).
bool IsDescriptorAddress(absl::string_view address);

bool SameProcess(const wire::HostIdentity& peer);
bool SameHost(const wire::HostIdentity& peer);

// Addresses through which a client on this host may reach the server that
// sent `hello` (reached at `target`), best first, restricted to `policy`
// and to kinds better than `current_kind`.
std::vector<std::string> SameHostCandidates(const wire::Hello& hello, absl::string_view target,
                                            const TransportPolicy& policy,
                                            absl::string_view current_kind);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_TRANSPORT_SELECTION_H_
