// Who and where this process is, for the handshake (wire.HostIdentity): boot
// id, namespace inodes, pid and a random per-process nonce.
//
// Example:
//   *hello.mutable_host() = LocalHostIdentity();
#ifndef LOCUS_RUNTIME_INTERNAL_HOST_IDENTITY_H_
#define LOCUS_RUNTIME_INTERNAL_HOST_IDENTITY_H_

#include "locus/wire.pb.h"

namespace locus::internal {

// Computed once per process; thread-safe.
const wire::HostIdentity& LocalHostIdentity();

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_HOST_IDENTITY_H_
