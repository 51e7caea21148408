// A byte buffer borrowed from a small per-thread pool, for serializing a
// message that is sent (copied into the transport) before the buffer goes
// back. Steady traffic then allocates nothing per call for encoding.
//
// Example:
//   ScratchBuffer payload;
//   request.SerializeToString(payload.get());
//   connection->Send(header, meta, *payload.get(), deadline);
//   // returned to the pool (cleared, capacity kept) when `payload` dies
//
// Nesting is fine (each ScratchBuffer owns its buffer while it lives).
// Buffers that grew beyond kMaxRetainedBytes are freed instead of pooled, so
// one large message does not pin memory in every thread that sent it.
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
  static constexpr size_t kMaxRetainedBytes = 256u << 10;
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
    if (buffer_.capacity() <= kMaxRetainedBytes && pool.size() < kMaxPooled) {
      buffer_.clear();
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
