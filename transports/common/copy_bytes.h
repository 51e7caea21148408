// Byte copies for the transports' hot paths that avoid a pathological case
// of glibc's memcpy on AMD Zen CPUs.
//
// Hazard: for copies of at least ~2 KiB, glibc (2.36, CPUs with FSRM) uses
// `rep movsb`, which AMD Zen CPUs run many times slower when the destination
// is 1 to 31 bytes ahead of the source modulo 4 KiB (glibc bug 30994; this
// file avoids 1 to 63, for other parts with wider windows). Framing makes
// such distances common and stable (a frame header shifts every payload by
// a few dozen bytes, and reused buffers keep their addresses), so an unlucky
// layout slows every call of a run. Below the threshold glibc copies with
// vector loops, which do not care; so a copy with such a distance is split
// into chunks below it. The measurements: docs/performance-notes.md.
//
// Example:
//   CopyBytes(ring_slot, frame_bytes, n);             // instead of memcpy
//   AppendBytes(&frame.payload, bytes.data(), take);  // instead of append
//
// Thread-compatible: plain functions on caller-owned memory.
#ifndef LOCUS_TRANSPORTS_COMMON_COPY_BYTES_H_
#define LOCUS_TRANSPORTS_COMMON_COPY_BYTES_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace locus::internal {

// Chunks stay below glibc's smallest `rep movsb` threshold (2112 bytes).
inline constexpr size_t kCopyChunkBytes = 2048;

// True if a copy of `size` bytes from `src` to `dst` would take the slow
// `rep movsb` case described above.
inline bool IsSlowCopy(const void* dst, const void* src, size_t size) {
  const uintptr_t distance =
      (reinterpret_cast<uintptr_t>(dst) - reinterpret_cast<uintptr_t>(src)) & 4095;
  return size > kCopyChunkBytes && distance != 0 && distance < 64;
}

// memcpy(dst, src, size) for non-overlapping ranges.
inline void CopyBytes(void* dst, const void* src, size_t size) {
  if (!IsSlowCopy(dst, src, size)) {
    if (size != 0) std::memcpy(dst, src, size);
    return;
  }
  auto* to = static_cast<char*>(dst);
  const auto* from = static_cast<const char*>(src);
  while (size > 0) {
    const size_t chunk = std::min(size, kCopyChunkBytes);
    std::memcpy(to, from, chunk);
    to += chunk;
    from += chunk;
    size -= chunk;
  }
}

// out->append(src, size), without the slow case. `src` must not point into
// *out.
inline void AppendBytes(std::string* out, const char* src, size_t size) {
  if (size <= kCopyChunkBytes) {
    out->append(src, size);
    return;
  }
  out->reserve(out->size() + size);  // data() is stable from here on
  if (!IsSlowCopy(out->data() + out->size(), src, size)) {
    out->append(src, size);
    return;
  }
  while (size > 0) {
    const size_t chunk = std::min(size, kCopyChunkBytes);
    out->append(src, chunk);
    src += chunk;
    size -= chunk;
  }
}

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_COMMON_COPY_BYTES_H_
