// One-time, process-wide settings Locus applies when the first Server or
// Channel is made.
//
// Release builds (NDEBUG) turn off Abseil's mutex deadlock detection:
// Debian's Abseil is built with it enabled, and it then costs every
// Mutex::Lock a graph update (measured: two thirds of the instructions of a
// in-process call, 2x its latency). Set LOCUS_ABSL_DEADLOCK_DETECTION=1 to
// keep it; debug builds (and Locus's sanitizer CI) keep it on.
//
// Example:
//   internal::EnsureProcessSetup();   // idempotent, thread-safe
#ifndef LOCUS_RUNTIME_INTERNAL_PROCESS_SETUP_H_
#define LOCUS_RUNTIME_INTERNAL_PROCESS_SETUP_H_

namespace locus::internal {

void EnsureProcessSetup();

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_PROCESS_SETUP_H_
