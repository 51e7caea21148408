// One direction of a shared-memory connection: a single-producer,
// single-consumer byte ring in memory shared with an untrusted peer,
// carrying sealed records (shm_layout.h).
//
// Example (producer):
//   ShmRing ring(&header->rings[0], data, capacity, &header->rings[1].data_seq, key);
//   uint64_t free;
//   absl::Status ok = ring.FreeSpace(&free);   // INTERNAL if the peer corrupted it
//   if (!ok.ok()) return ok;
//   ring.Write(bytes, std::min(free, size));   // one record, published
//   ring.WakeConsumerIfSleeping();
// Example (consumer):
//   absl::string_view a, b;
//   absl::Status ok = ring.Readable(&a, &b);   // INTERNAL if the peer corrupted it
//   if (!ok.ok()) return ok;
//   ...use a then b...; ring.Consume(a.size() + b.size());
//   ...more records...; ring.Release();             // gives their room back
//
// Each side keeps its own position locally and only publishes it: what is
// read from shared memory (the peer's index, a record's seal and length) is
// validated before use, so a corrupt or malicious peer causes an error (or,
// for a seal it never writes, no input), never an out-of-bounds access.
// Thread-compatible: one producer thread and one consumer thread at a time
// (callers serialise with their own locks).
#ifndef LOCUS_TRANSPORTS_SHM_SHM_RING_H_
#define LOCUS_TRANSPORTS_SHM_SHM_RING_H_

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "transports/shm/shm_layout.h"

namespace locus::internal {

class ShmRing {
 public:
  // `data` points to `capacity` bytes (a power of two, at least 4 KiB) of
  // the mapping. One object per side: the producer uses only the producer
  // methods, the consumer only the consumer methods. `producer_doorbell` is
  // the futex word the producer sleeps on (the data_seq of the ring it
  // consumes, see shm_layout.h); only the consumer methods use it.
  // `seal_key` is the region's (ShmRecordSeal).
  ShmRing(ShmRingControl* control, char* data, uint64_t capacity,
          std::atomic<uint32_t>* producer_doorbell, uint64_t seal_key)
      : control_(control),
        data_(data),
        capacity_(capacity),
        mask_(capacity - 1),
        producer_doorbell_(producer_doorbell),
        seal_key_(seal_key) {}

  uint64_t capacity() const { return capacity_; }
  ShmRingControl* control() const { return control_; }

  // --- producer ---
  // Bytes that can be appended now (to the open record, or to a new one,
  // its header accounted for), at least `wanted` if that many are known to
  // be free: the consumer's published index (a cache line the consumer
  // writes, so reading it costs a cross-core transfer) is re-read only when
  // the last value read leaves fewer than `wanted` bytes free. INTERNAL if
  // that index is impossible (corruption).
  absl::Status FreeSpace(uint64_t* free, uint64_t wanted = UINT64_MAX) const;
  // Appends `size` bytes and publishes them as one record. Call FreeSpace()
  // first: `size` must not exceed it.
  void Write(const char* src, size_t size) {
    Append(src, size);
    Publish();
  }
  // Copies `size` bytes into the open record (opening one if none is),
  // without publishing them, so that the parts of one frame become visible
  // to the consumer together. The sum of the appends since the last Publish
  // must not exceed what FreeSpace() reported before the first.
  void Append(const char* src, size_t size);
  // Where the next `size` bytes would be appended, if they lie in one piece
  // (do not wrap around the ring's end); nullptr otherwise. The caller
  // writes them there, then calls Advance(size). Same limit as Append.
  char* ContiguousRun(size_t size) const {
    const uint64_t pos = (record_open_ ? write_index_ : write_index_ + sizeof(ShmRecordHeader)) & mask_;
    return pos + size <= capacity_ ? data_ + pos : nullptr;
  }
  // Counts `size` bytes written through ContiguousRun as appended.
  void Advance(size_t size) {
    OpenRecord();
    write_index_ += size;
  }
  // Seals the open record (if any holds bytes) and publishes the index
  // after it.
  void Publish();
  // Takes ownership (PrefetchForWrite) of the cache lines the next
  // `bytes` written will use, from the first line after the one holding the
  // write position and only within the room known to be free: the line
  // holding the position itself is the one a waiting consumer watches for
  // the next seal, and lines not yet consumed may still be read; taking
  // them would steal them back mid-read. A hint, for right after publishing
  // a small frame.
  void PrefetchNextWrites(size_t bytes) const;
  // Wakes the consumer if it sleeps and nobody polls.
  void WakeConsumerIfSleeping();
  // Whether the consumer has left room for a record, from the published
  // indices only: a hint for threads that do not write (a real write calls
  // FreeSpace). The write index is this side's private copy of what it
  // published (the shared word is the peer's to overwrite: a hint that
  // stayed true while FreeSpace said no would keep waiters from sleeping).
  // The consumer may have read records whose publication this thread does
  // not see yet: a read index ahead of the write index is a moment's lag,
  // and says the ring is empty.
  bool RoomHint() const {
    // A stale value (another thread's later publication not seen yet) only
    // reports more room than there is: the waiter tries, and waits again.
    const uint64_t write = published_write_.load(std::memory_order_acquire);
    const uint64_t read = control_->read_index.load(std::memory_order_seq_cst);
    return read >= write || write - read + sizeof(ShmRecordHeader) < capacity_;
  }

  // --- consumer ---
  // The unread bytes of the next record, as at most two spans (the second
  // after wrap-around); both empty if no record is sealed yet.
  absl::Status Readable(absl::string_view* first, absl::string_view* second);
  // Whether Readable() has bytes: a record is open or the next one is
  // sealed. Reads the cache line the next record starts in, which the
  // producer's next record brings along (a poller spins here).
  bool HasData() const {
    // seq_cst: pairs with the consumer_sleepers increment in the sleep
    // protocol (an acquire load could be reordered before it on some CPUs).
    return body_begin_ != body_end_ ||
           RecordAt(read_index_)->seal.load(std::memory_order_seq_cst) ==
               ShmRecordSeal(read_index_, seal_key_);
  }
  // HasData() for a thread that is not the consumer (which may be reading
  // meanwhile): whether a record is sealed where the consumer last released
  // (Release), so it may also say yes for records being read right now.
  // That position is this side's private copy (the shared read_index is the
  // peer's to overwrite: pointed back at an old record, a hint that stayed
  // true would keep sleepers awake for ever). The same seq_cst load of the
  // seal as HasData(), for the sleep protocol.
  bool HasDataHint() const {
    const uint64_t released = published_read_.load(std::memory_order_acquire);
    return RecordAt(released)->seal.load(std::memory_order_seq_cst) == ShmRecordSeal(released, seal_key_);
  }
  // Marks `size` bytes (previously returned by Readable) read; at the end
  // of a record, moves on to the next. Releases nothing: see Release().
  void Consume(size_t size);
  // Gives the producer the room of the records consumed since the last
  // call (one store of read_index for a batch of records), and wakes it if
  // it waits for room.
  void Release();

 private:
  ShmRecordHeader* RecordAt(uint64_t index) const {
    return reinterpret_cast<ShmRecordHeader*>(data_ + (index & mask_));
  }
  void OpenRecord() {
    if (record_open_) return;
    record_open_ = true;
    record_start_ = write_index_;
    write_index_ += sizeof(ShmRecordHeader);
  }

  ShmRingControl* control_;
  char* data_;
  uint64_t capacity_;
  uint64_t mask_;
  std::atomic<uint32_t>* producer_doorbell_;
  uint64_t seal_key_;
  // Producer: own copies (authoritative).
  uint64_t write_index_ = 0;    // after the last byte appended
  uint64_t record_start_ = 0;   // the open record's header
  bool record_open_ = false;
  mutable uint64_t cached_read_ = 0;  // consumer index last read (validated)
  std::atomic<uint64_t> published_write_{0};  // write_index as last published (RoomHint)
  // Consumer: own copies (authoritative).
  uint64_t read_index_ = 0;    // the next record's header
  std::atomic<uint64_t> published_read_{0};  // read_index_ as last published (HasDataHint)
  uint64_t body_begin_ = 0;    // unread bytes of the open record: [begin, end)
  uint64_t body_end_ = 0;
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SHM_SHM_RING_H_
