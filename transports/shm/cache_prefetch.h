// Cache-line prefetch hints for memory shared between cores. Platform code:
// everything CPU-specific about prefetching lives here.
//
// Example:
//   PrefetchForWrite(next_output);   // take ownership before writing there
//   PrefetchForRead(arrived_bytes);  // start the cross-core transfer now
//
// Hints only: never fault, never change what memory holds; a CPU without
// the instruction gets nothing (or a plain prefetch).
#ifndef LOCUS_TRANSPORTS_SHM_CACHE_PREFETCH_H_
#define LOCUS_TRANSPORTS_SHM_CACHE_PREFETCH_H_

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace locus::internal {

// Asks for the cache line holding `address` with the intent to write it
// (x86 PREFETCHW): a line another core holds is invalidated there now,
// instead of when the write happens.
inline void PrefetchForWrite(const void* address) {
#if defined(__x86_64__) || defined(__i386__)
  static const bool supported = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_PRFCHW) != 0;
  }();
  if (supported) {
    asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(address)));
    return;
  }
#endif
  __builtin_prefetch(address, 1);
}

inline void PrefetchForRead(const void* address) { __builtin_prefetch(address, 0); }

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SHM_CACHE_PREFETCH_H_
