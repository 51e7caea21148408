// A byte buffer borrowed from a small per-thread pool, for serializing a
// message that is sent (copied into the transport) before the buffer goes
// back. Steady traffic then allocates nothing per call for encoding.
//
// Example:
//   ScratchBuffer payload;   // contents unspecified: overwrite them
//   payload.get()->resize(size);
//   request.SerializeWithCachedSizesToArray(
//       reinterpret_cast<uint8_t*>(payload.get()->data()));
//   connection->Send(header, meta, *payload.get(), deadline);
//   // returned to the pool (cleared, capacity kept) when `payload` dies
//
// Nesting is fine (each ScratchBuffer owns its buffer while it lives).
// Memory: a buffer goes back to the pool with its capacity while it is
// used for messages of a similar size, so a thread sending 1 MiB messages
// does not allocate (and page-fault in) 1 MiB per call; a large buffer
// (over kSmallBytes) that last held less than a quarter of its capacity is
// freed, so a thread back to small messages does not keep it. Nothing larger
// than kMaxRetainedBytes is kept.
// Thread-compatible: a ScratchBuffer must die on the thread that made it.
#ifndef LOCUS_RUNTIME_INTERNAL_SCRATCH_BUFFER_H_
#define LOCUS_RUNTIME_INTERNAL_SCRATCH_BUFFER_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace locus::internal {

class ScratchBuffer {
 public:
  static constexpr size_t kSmallBytes = 64u << 10;
  static constexpr size_t kMaxRetainedBytes = 16u << 20;
  static constexpr size_t kMaxPooled = 4;

  ScratchBuffer() {
    std::vector<std::string>& pool = Pool();
    if (!pool.empty()) {
      buffer_ = std::move(pool.back());
      pool.pop_back();
    }
  }
  ~ScratchBuffer() {
    std::vector<std::string>& pool = Pool();
    const size_t capacity = buffer_.capacity();
    const bool keep = capacity <= kSmallBytes ||
                      (capacity <= kMaxRetainedBytes && buffer_.size() >= capacity / 4);
    if (keep && pool.size() < kMaxPooled) {
      // Not cleared: a buffer that keeps its length lets the next user
      // resize to a similar length without zero-filling it.
      pool.push_back(std::move(buffer_));
    }
  }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;

  std::string* get() { return &buffer_; }

 private:
  static std::vector<std::string>& Pool() {
    thread_local std::vector<std::string> pool;
    return pool;
  }
  std::string buffer_;
};

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_SCRATCH_BUFFER_H_
