// One direction of a shared-memory connection: a single-producer,
// single-consumer byte ring in memory shared with an untrusted peer.
//
// Example (producer):
//   ShmRing ring(&header->rings[0], data, capacity, &header->rings[1].data_seq);
//   size_t n = ring.Write(bytes);            // copies what fits, publishes
//   ring.WakeConsumerIfSleeping();
// Example (consumer):
//   absl::string_view a, b;
//   LOCUS_RETURN_IF_ERROR(ring.Readable(&a, &b));   // INTERNAL if the peer corrupted it
//   ...use a then b...; ring.Consume(a.size() + b.size());
//
// Each side keeps its own index locally and only publishes it: the indices
// read from shared memory are the peer's and are validated before use, so a
// corrupt or malicious peer causes an error, never an out-of-bounds access.
// Thread-compatible: one producer thread and one consumer thread at a time
// (callers serialise with their own locks).
#ifndef LOCUS_TRANSPORTS_SHM_SHM_RING_H_
#define LOCUS_TRANSPORTS_SHM_SHM_RING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "transports/shm/shm_layout.h"

namespace locus::internal {

class ShmRing {
 public:
  // `data` points to `capacity` bytes (a power of two) of the mapping.
  // One object per side: the producer uses only the producer methods, the
  // consumer only the consumer methods. `producer_doorbell` is the futex
  // word the producer sleeps on (the data_seq of the ring it consumes, see
  // shm_layout.h); only the consumer methods use it.
  ShmRing(ShmRingControl* control, char* data, uint64_t capacity,
          std::atomic<uint32_t>* producer_doorbell)
      : control_(control),
        data_(data),
        capacity_(capacity),
        mask_(capacity - 1),
        producer_doorbell_(producer_doorbell) {}

  uint64_t capacity() const { return capacity_; }
  ShmRingControl* control() const { return control_; }

  // --- producer ---
  // Bytes that can be written now, at least `wanted` if that many are
  // known to be free: the consumer's published index (a cache line the
  // consumer writes, so reading it costs a cross-core transfer) is re-read
  // only when the last value read leaves fewer than `wanted` bytes free.
  // INTERNAL if that index is impossible (corruption).
  absl::Status FreeSpace(uint64_t* free, uint64_t wanted = UINT64_MAX) const;
  // Copies `size` bytes and publishes them. Call FreeSpace() first: `size`
  // must not exceed it.
  void Write(const char* src, size_t size) {
    Append(src, size);
    Publish();
  }
  // Copies `size` bytes without publishing them, so that the parts of one
  // frame become visible to the consumer together (one index store instead
  // of one per part). The same limit as Write applies to the sum of the
  // appends since the last Publish.
  void Append(const char* src, size_t size);
  // Where the next `size` bytes would be written, if they lie in one piece
  // (do not wrap around the ring's end); nullptr otherwise. The caller
  // writes them there, then calls Advance(size). Same limit as Write.
  char* ContiguousRun(size_t size) const {
    const uint64_t pos = write_index_ & mask_;
    return pos + size <= capacity_ ? data_ + pos : nullptr;
  }
  // Counts `size` bytes written through ContiguousRun as appended.
  void Advance(size_t size) { write_index_ += size; }
  void Publish();
  // Takes ownership (PrefetchForWrite) of the cache lines the next
  // `bytes` written will use, from the first line boundary at or after the
  // write position and only within the room known to be free: the line
  // holding the position itself, and lines not yet consumed, may still be
  // read by the consumer, and taking them would steal them back mid-read.
  // A hint, for right after publishing a small frame.
  void PrefetchNextWrites(size_t bytes) const;
  // Wakes the consumer if it sleeps and nobody polls.
  void WakeConsumerIfSleeping();
  // Whether the consumer has left room, from the published indices only:
  // a hint for threads that do not write (a real write calls FreeSpace).
  bool RoomHint() const {
    const uint64_t write = control_->write_index.load(std::memory_order_acquire);
    const uint64_t read = control_->read_index.load(std::memory_order_acquire);
    return read <= write && write - read < capacity_;
  }

  // --- consumer ---
  // The bytes available, as at most two spans (the second after wrap-around).
  absl::Status Readable(absl::string_view* first, absl::string_view* second) const;
  bool HasData() const {
    // seq_cst: pairs with the consumer_sleepers increment in the sleep
    // protocol (an acquire load could be reordered before it on some CPUs).
    return control_->write_index.load(std::memory_order_seq_cst) != read_index_;
  }
  // Releases `size` bytes (previously returned by Readable) to the producer.
  void Consume(size_t size);

 private:
  ShmRingControl* control_;
  char* data_;
  uint64_t capacity_;
  uint64_t mask_;
  std::atomic<uint32_t>* producer_doorbell_;
  uint64_t write_index_ = 0;  // producer's own copy (authoritative)
  mutable uint64_t cached_read_ = 0;  // producer: consumer index last read (validated)
  uint64_t read_index_ = 0;   // consumer's own copy (authoritative)
  mutable uint64_t last_seen_write_ = 0;  // consumer: the peer's index only grows
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SHM_SHM_RING_H_
