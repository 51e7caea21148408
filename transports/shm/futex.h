// Linux futex wait/wake on 32-bit words in memory shared between processes
// (no FUTEX_PRIVATE_FLAG). Platform code, kept out of the ring logic.
//
// Example:
//   uint32_t seen = word->load();
//   if (!condition()) FutexWait(word, seen, absl::Milliseconds(50));
//   ...
//   word->fetch_add(1); FutexWakeAll(word);
#ifndef LOCUS_TRANSPORTS_SHM_FUTEX_H_
#define LOCUS_TRANSPORTS_SHM_FUTEX_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace locus::internal {

// Sleeps while *word == expected, at most `timeout` (spurious returns allowed).
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, absl::Duration timeout);
// Wakes every waiter on `word`.
void FutexWakeAll(std::atomic<uint32_t>* word);

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SHM_FUTEX_H_
