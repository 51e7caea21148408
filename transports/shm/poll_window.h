// How long a shared-memory reader busy-polls its ring before it sleeps on
// the futex: the policy, apart from the polling itself (shm_reader.cc).
//
// Example:
//   absl::Duration window = ShmPollWindow(options.shm_spin, last_sent_payload_bytes,
//                                         /*reply_awaited=*/true);
#ifndef LOCUS_TRANSPORTS_SHM_POLL_WINDOW_H_
#define LOCUS_TRANSPORTS_SHM_POLL_WINDOW_H_

#include <algorithm>
#include <cstdint>

#include "absl/time/time.h"

namespace locus::internal {

// `shm_spin` (TransportOptions; 0 or less disables polling), plus, when a
// reply to the message this side sent last is awaited, the time the peer
// needs to read and answer it: the reply to a large request comes only after
// the peer has copied it (parse, the handler's work, serialize), and a reader
// that slept meanwhile would add a futex wake-up to every such round trip.
// 1 us per 4 KiB sent, at most 2 ms.
//
// `reply_awaited` is false for a reader thread while nobody wants
// background reads (a plain client between synchronous calls, whose caller
// reads its own replies): it then polls shm_spin only, so that it does not
// spin for a large message's whole window on the core the caller needs
// next. (It still polls that long: frames of streams it delivers meanwhile
// are read sooner, which keeps a stream's messages flowing.)
inline absl::Duration ShmPollWindow(absl::Duration shm_spin, uint64_t last_sent_payload_bytes,
                                    bool reply_awaited) {
  if (shm_spin <= absl::ZeroDuration()) return absl::ZeroDuration();
  if (!reply_awaited || last_sent_payload_bytes < 4096) return shm_spin;
  return shm_spin + std::min(absl::Microseconds(static_cast<int64_t>(last_sent_payload_bytes / 4096)),
                             absl::Milliseconds(2));
}

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SHM_POLL_WINDOW_H_
