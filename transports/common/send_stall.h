// The error a transport closes a connection with when its peer stops taking
// the bytes queued for it (TransportOptions::send_stall_timeout). One wording
// for every transport, so logs and tests can rely on it.
//
// Example:
//   const absl::Status stalled = PeerStoppedReadingError(peer_.remote_address, queued, stuck);
//   LOCUS_LOG(WARNING) << "closing connection: " << stalled.message();
//   Close(stalled);
//
// Thread-safe: a pure function.
#ifndef LOCUS_TRANSPORTS_COMMON_SEND_STALL_H_
#define LOCUS_TRANSPORTS_COMMON_SEND_STALL_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace locus::internal {

// UNAVAILABLE: `peer` has taken none of `queued_bytes` for `stuck`.
inline absl::Status PeerStoppedReadingError(absl::string_view peer, size_t queued_bytes,
                                            absl::Duration stuck) {
  return absl::UnavailableError(absl::StrCat("peer ", peer, " stopped reading: ", queued_bytes,
                                             " bytes queued for ", absl::FormatDuration(stuck),
                                             " without progress"));
}

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_COMMON_SEND_STALL_H_
