// The layout of a shared-memory connection's memfd: a versioned header, two
// single-producer/single-consumer byte rings and two bulk areas, one of each
// per direction. Both processes map it; everything read from it is validated
// (the peer is not trusted: it can write anything at any time).
//
//   offset 0                          ShmRegionHeader (4 KiB, one page)
//   4096                              ring 0 data (client -> server), ring_capacity bytes
//   4096 + ring_capacity              ring 1 data (server -> client)
//   4096 + 2 * ring_capacity          bulk 0 (client -> server), bulk_capacity bytes
//   4096 + 2 * ring + bulk_capacity   bulk 1 (server -> client)
//
// Each ring carries Locus frames as a byte stream (exactly what a stream
// socket carries), so a frame larger than the ring simply streams through it
// and the receiver's FrameDecoder reassembles and validates it. The stream
// is cut into records (ShmRecordHeader), one per publication, each made
// visible by the seal its producer stores last: a consumer waiting for the
// next record watches the cache line the record starts in, which brings the
// start of the frame with the signal (one cross-core transfer, not two). A large
// payload may instead lie in the sender's bulk area, written there once by
// the serializer; its frame in the ring then carries kFlagPayloadInBulk and a
// ShmPayloadRef as payload (shm_bulk.h).
#ifndef LOCUS_TRANSPORTS_SHM_SHM_LAYOUT_H_
#define LOCUS_TRANSPORTS_SHM_SHM_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace locus::internal {

inline constexpr uint32_t kShmMagic = 0x4D534C4C;  // "LLSM"
// Version 2: one futex word (doorbell) per side, see ShmRingControl.
// Version 3: bulk areas (bulk_capacity, ShmBulkControl, kFlagPayloadInBulk).
// Version 4: sealed records in the rings (ShmRecordHeader, seal_key).
inline constexpr uint32_t kShmLayoutVersion = 4;
inline constexpr size_t kShmHeaderSize = 4096;
inline constexpr size_t kCacheLine = 64;

// Control block of one ring. Indices count bytes since the start and never
// wrap (64 bits); position in the ring is index % capacity (capacity is a
// power of two). The producer owns write_index and the producer_* words, the
// consumer owns read_index and the consumer_* words; each on its own cache
// line so producer and consumer do not false-share. Both indices are at
// record boundaries: write_index is stored after each record's seal (the
// consumer reads records by their seals, and the index only to tell a
// corrupt record from one not written yet); read_index after a batch of
// records consumed (the consumer gives their room back at once).
//
// Waking: each side sleeps on a single futex word, its doorbell, which is
// the data_seq of the ring it consumes. A producer that published data rings
// the consumer's doorbell (this ring's data_seq) if consumer_sleepers says it
// sleeps and consumer_polling says nobody polls; a consumer that freed space
// rings the producer's doorbell (the data_seq of the other ring) if
// producer_sleepers says it waits for room. A side that waits for input and
// for room for its output at once thus waits on one word.
struct alignas(kCacheLine) ShmRingControl {
  alignas(kCacheLine) std::atomic<uint64_t> write_index;
  alignas(kCacheLine) std::atomic<uint64_t> read_index;
  // Consumer side: how many threads sleep on data_seq, and whether one is
  // actively polling (then the producer need not wake anyone).
  alignas(kCacheLine) std::atomic<uint32_t> consumer_sleepers;
  std::atomic<uint32_t> consumer_polling;
  std::atomic<uint32_t> data_seq;  // the consumer's doorbell (futex word)
  // Producer side: how many threads wait for room in this ring.
  alignas(kCacheLine) std::atomic<uint32_t> producer_sleepers;
  uint32_t reserved;  // version 1's space_seq; unused
};
static_assert(sizeof(ShmRingControl) == 4 * kCacheLine, "ring control is a wire struct");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "lock-free 64-bit atomics in shared memory");

// Control block of one bulk area, written by its receiver only: how many
// bulk payloads it has delivered and no longer reads. The sender may reuse
// their bytes; payloads are released in the order they were sent.
struct alignas(kCacheLine) ShmBulkControl {
  std::atomic<uint64_t> released;
};
static_assert(sizeof(ShmBulkControl) == kCacheLine, "bulk control is a wire struct");

struct ShmRegionHeader {
  uint32_t magic;           // kShmMagic
  uint32_t version;         // kShmLayoutVersion
  uint64_t ring_capacity;   // bytes per ring, a power of two
  uint64_t region_size;     // kShmHeaderSize + 2 * ring_capacity + 2 * bulk_capacity
  uint64_t bulk_capacity;   // bytes per bulk area, a multiple of 4 KiB; 0: none
  uint64_t seal_key;        // random, top bit set (kShmSealKeyMark); see ShmRecordSeal
  uint8_t reserved[kCacheLine - 40];
  ShmRingControl rings[2];  // [0]: client -> server, [1]: server -> client
  ShmBulkControl bulk[2];   // [0]: client -> server, [1]: server -> client
};
static_assert(sizeof(ShmRegionHeader) ==
                  kCacheLine + 2 * sizeof(ShmRingControl) + 2 * sizeof(ShmBulkControl),
              "region header is a wire struct");
static_assert(sizeof(ShmRegionHeader) <= kShmHeaderSize, "header fits its page");

// A record: this header, `length` bytes of the stream, then padding to the
// next multiple of kShmRecordAlign, where the next record starts. The
// producer writes length and the bytes, then stores the seal (release; the
// consumer loads it with acquire, then trusts nothing but the bounds of
// what it reads). A header never wraps around the ring's end (records are
// aligned and the capacity is a multiple of the alignment); the bytes may.
struct ShmRecordHeader {
  std::atomic<uint32_t> length;  // 1 .. ring capacity - sizeof(ShmRecordHeader)
  uint32_t reserved;             // 0
  std::atomic<uint64_t> seal;    // ShmRecordSeal(index of this header, seal_key)
};
static_assert(sizeof(ShmRecordHeader) == 16, "record header is a wire struct");
inline constexpr uint64_t kShmRecordAlign = 16;

// The seal of the record at `index`. Unguessable without the key (the
// region's, which only the two processes see), and different for every
// index: bytes left at a position by an earlier lap of the ring (an old
// record's seal, or payload bytes a third party chose) never pass for the
// record the consumer waits for there.
inline uint64_t ShmRecordSeal(uint64_t index, uint64_t seal_key) { return index ^ seal_key; }
// The top bit of every valid seal_key: no seal is 0 (as a fresh, zero-filled
// ring is) for any index below 2^63.
inline constexpr uint64_t kShmSealKeyMark = uint64_t{1} << 63;

inline constexpr uint64_t kMinRingCapacity = 4096;
inline constexpr uint64_t kMaxRingCapacity = uint64_t{1} << 30;
inline constexpr uint64_t kBulkGranule = 4096;
inline constexpr uint64_t kMaxBulkCapacity = uint64_t{1} << 30;

// The sizes of a connection's rings and bulk areas, as validated at setup
// (never re-read from the region, which the peer can rewrite).
struct ShmGeometry {
  uint64_t ring_capacity = 0;
  uint64_t bulk_capacity = 0;
  uint64_t seal_key = 0;  // the region's (ShmRegionHeader::seal_key), as validated
};

// Where ring `index`'s data and bulk area `index` (0: client -> server, 1:
// server -> client) start in a mapped region of `geometry`.
inline char* ShmRingData(char* region, const ShmGeometry& geometry, int index) {
  return region + kShmHeaderSize + index * geometry.ring_capacity;
}
inline char* ShmBulkData(char* region, const ShmGeometry& geometry, int index) {
  return region + kShmHeaderSize + 2 * geometry.ring_capacity + index * geometry.bulk_capacity;
}

// Frame flag (one of kTransportPrivateFlags) on a ring frame whose payload
// is a ShmPayloadRef into the sender's bulk area.
inline constexpr uint32_t kFlagPayloadInBulk = 1u << 24;

// The on-ring payload of a kFlagPayloadInBulk frame.
struct ShmPayloadRef {
  uint64_t offset;  // from the start of the sender's bulk area
  uint64_t length;  // the payload's length (the frame's real payload_length)
};
static_assert(sizeof(ShmPayloadRef) == 16, "payload reference is a wire struct");

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SHM_SHM_LAYOUT_H_
