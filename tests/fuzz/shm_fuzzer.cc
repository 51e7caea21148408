// Fuzz target for what a shared-memory peer controls: the TRANSPORT_SETUP
// frame's meta and region header (validated before mapping is trusted), the
// ring indices and bytes it writes, record headers included (validated by
// ShmRing before any copy, then cut into frames by FrameDecoder), and the
// bulk areas' payload references and release counts (validated by
// ShmBulkReader/Writer). The rings use kFuzzSealKey, a key the peer knows
// (as a real peer does), so that inputs can hold sealed records.
//
// Input layout: [1 byte selector][8 bytes write index][8 bytes read index]
// [rest: ring contents / setup / bulk references]. Selector % 3: 0 ring,
// 1 setup, 2 bulk. For the setup the rest is [kRegionBytes: the region
// header's fields, as the peer wrote them into the shared page][the
// TRANSPORT_SETUP meta], so that both sides of the comparison in
// ValidateShmRegionHeader come from the input (the header's magic is not
// a valid proto: one slice for both would never pass its first check).
// Regression-replayed by CTest like wire_fuzzer (see fuzz_driver_main.cc);
// -DLOCUS_FUZZ=ON builds libFuzzer.
//
// Invariants (abort on violation): a ring record never claims more than
// the ring less its header, free space never exceeds the capacity, bulk
// payloads and reservations stay inside their area, and a setup that
// validates describes exactly the region it was checked against (its
// sizes add up, its seal key carries the mark). LocusFuzzReached() counts
// what the last input got through (frames decoded, a setup accepted,
// payloads resolved): the replay driver requires it of the "valid-" seeds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>

#include "transports/common/frame_decoder.h"
#include "transports/shm/shm_bulk.h"
#include "transports/shm/shm_layout.h"
#include "transports/shm/shm_ring.h"
#include "transports/shm/shm_transport.h"

namespace locus::internal {
namespace {

constexpr uint64_t kCapacity = 4096;
constexpr uint64_t kFuzzSealKey = kShmSealKeyMark;  // also in make_seed_corpus.cc

// Bytes of the region header the peer controls and validation reads:
// magic, version, ring_capacity, region_size, bulk_capacity, seal_key.
constexpr size_t kRegionBytes = offsetof(ShmRegionHeader, seal_key) + sizeof(uint64_t);
static_assert(kRegionBytes == 40);

// What the last input got through (LocusFuzzReached).
size_t reached = 0;

struct CountingSink : FrameDecoderSink {
  size_t frames = 0;
  void OnFrame(Frame&) override { ++frames; }
  void OnOversizeFrame(const FrameHeader&) override {}
};

uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

void FuzzRing(uint64_t hostile_write, uint64_t hostile_read, const uint8_t* data, size_t size) {
  alignas(64) static ShmRingControl control;
  static std::atomic<uint32_t> doorbell{0};
  static char* ring = static_cast<char*>(std::aligned_alloc(64, kCapacity));
  new (&control) ShmRingControl();
  std::memset(ring, 0, kCapacity);
  std::memcpy(ring, data, std::min<size_t>(size, kCapacity));

  // Consumer facing a hostile producer index.
  ShmRing consumer(&control, ring, kCapacity, &doorbell, kFuzzSealKey);
  FrameDecoder decoder(kDefaultMaxMetaSize, 1 << 16);
  CountingSink sink;
  for (int round = 0; round < 16; ++round) {
    control.write_index.store(hostile_write + round * (hostile_read & 0xfff));
    absl::string_view first, second;
    if (!consumer.Readable(&first, &second).ok()) break;
    // Validation must bound a record to the ring less its header.
    if (first.size() + second.size() > kCapacity - sizeof(ShmRecordHeader)) std::abort();
    bool ok = decoder.Consume(first, sink).ok() && decoder.Consume(second, sink).ok();
    consumer.Consume(first.size() + second.size());
    if (round % 3 == 2) consumer.Release();
    if (!ok) break;
  }
  reached += sink.frames;

  // Producer facing a hostile consumer index.
  new (&control) ShmRingControl();
  ShmRing producer(&control, ring, kCapacity, &doorbell, kFuzzSealKey);
  for (int round = 0; round < 3; ++round) {
    uint64_t free = 0;
    if (!producer.FreeSpace(&free).ok()) break;
    if (free > kCapacity) std::abort();
    size_t n = std::min<uint64_t>(free, size);
    producer.Write(reinterpret_cast<const char*>(data), n);
    control.read_index.store(hostile_read + round);
  }
}

void FuzzSetup(const uint8_t* data, size_t size) {
  // A region header as a peer might have written it, from its own slice.
  ShmRegionHeader region{};
  std::memcpy(static_cast<void*>(&region), data, std::min(size, kRegionBytes));
  if (size < kRegionBytes) return;
  absl::string_view meta(reinterpret_cast<const char*>(data) + kRegionBytes, size - kRegionBytes);
  absl::StatusOr<wire::ShmSetup> setup = ParseShmSetup(meta);
  if (!setup.ok()) return;
  // An accepted setup's sizes add up (each bounded: no overflow).
  if (setup->region_size() != kShmHeaderSize + 2 * setup->ring_capacity() + 2 * setup->bulk_capacity() ||
      setup->ring_capacity() < kMinRingCapacity || setup->ring_capacity() > kMaxRingCapacity ||
      (setup->ring_capacity() & (setup->ring_capacity() - 1)) != 0 ||
      setup->bulk_capacity() > kMaxBulkCapacity || setup->bulk_capacity() % kBulkGranule != 0) {
    std::abort();
  }
  absl::StatusOr<ShmGeometry> geometry = ValidateShmRegionHeader(region, *setup);
  if (!geometry.ok()) return;
  // Accepted: the region is the one announced, the key usable for seals.
  if (region.magic != kShmMagic || region.version != kShmLayoutVersion ||
      region.ring_capacity != setup->ring_capacity() || region.region_size != setup->region_size() ||
      region.bulk_capacity != setup->bulk_capacity() || geometry->ring_capacity != region.ring_capacity ||
      geometry->bulk_capacity != region.bulk_capacity || geometry->seal_key != region.seal_key ||
      (geometry->seal_key & kShmSealKeyMark) == 0) {
    std::abort();
  }
  ++reached;
}

// `data` is a sequence of 16-byte payload references a hostile sender put
// in the ring; `release_count` what a hostile receiver publishes.
void FuzzBulk(uint64_t release_count, const uint8_t* data, size_t size) {
  constexpr uint64_t kBulkCapacity = 1u << 20;
  static char* area = static_cast<char*>(std::calloc(1, kBulkCapacity));
  alignas(64) static ShmBulkControl control;
  new (&control) ShmBulkControl();
  ShmBulkReader reader(&control, area, kBulkCapacity);
  for (size_t at = 0; at + sizeof(ShmPayloadRef) <= size; at += sizeof(ShmPayloadRef)) {
    absl::StatusOr<absl::string_view> bytes =
        reader.Resolve(absl::string_view(reinterpret_cast<const char*>(data) + at, sizeof(ShmPayloadRef)));
    if (!bytes.ok()) break;
    if (bytes->data() < area || bytes->data() + bytes->size() > area + kBulkCapacity) std::abort();
    volatile char sink = bytes->empty() ? 0 : (*bytes)[bytes->size() - 1];  // must be in bounds
    (void)sink;
    reader.Release();
    ++reached;
  }
  // A sender facing a hostile release count: reservations stay in the area.
  new (&control) ShmBulkControl();
  ShmBulkWriter writer(&control, area, kBulkCapacity);
  for (size_t i = 0; i < 16; ++i) {
    const uint64_t payload = kMinBulkPayload + (i < size ? data[i] : 0) * 1024;
    absl::StatusOr<std::optional<uint64_t>> offset = writer.Reserve(payload);
    if (!offset.ok()) break;
    if (offset->has_value()) {
      if (**offset + payload > kBulkCapacity) std::abort();
      writer.Commit(**offset, payload);
    }
    control.released.store(release_count + i / 2);
  }
}

}  // namespace
}  // namespace locus::internal

// Things the last input got through: frames decoded from the ring, a setup
// validated, bulk payloads resolved.
extern "C" size_t LocusFuzzReached() { return locus::internal::reached; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  locus::internal::reached = 0;
  if (size < 17) return 0;
  uint64_t write_index = locus::internal::Load64(data + 1);
  uint64_t read_index = locus::internal::Load64(data + 9);
  switch (data[0] % 3) {
    case 0:
      locus::internal::FuzzRing(write_index, read_index, data + 17, size - 17);
      break;
    case 1:
      locus::internal::FuzzSetup(data + 17, size - 17);
      break;
    default:
      locus::internal::FuzzBulk(read_index, data + 17, size - 17);
      break;
  }
  return 0;
}
