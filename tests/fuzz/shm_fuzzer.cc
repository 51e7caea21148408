// Fuzz target for what a shared-memory peer controls: the TRANSPORT_SETUP
// frame's meta and region header (validated before mapping is trusted), and
// the ring indices and bytes it writes (validated by ShmRing before any
// copy, then cut into frames by FrameDecoder).
//
// Input layout: [1 byte selector][8 bytes write index][8 bytes read index]
// [rest: ring contents / setup meta]. Regression-replayed by CTest like
// wire_fuzzer (see fuzz_driver_main.cc); -DLOCUS_FUZZ=ON builds libFuzzer.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "internal/frame_decoder.h"
#include "transports/shm/shm_layout.h"
#include "transports/shm/shm_ring.h"
#include "transports/shm/shm_transport.h"

namespace locus::internal {
namespace {

constexpr uint64_t kCapacity = 4096;

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
  ShmRing consumer(&control, ring, kCapacity, &doorbell);
  FrameDecoder decoder(kDefaultMaxMetaSize, 1 << 16);
  CountingSink sink;
  for (int round = 0; round < 3; ++round) {
    control.write_index.store(hostile_write + round * (hostile_read & 0xfff));
    absl::string_view first, second;
    if (!consumer.Readable(&first, &second).ok()) break;
    if (first.size() + second.size() > kCapacity) std::abort();  // validation must bound it
    bool ok = decoder.Consume(first, sink).ok() && decoder.Consume(second, sink).ok();
    consumer.Consume(first.size() + second.size());
    if (!ok) break;
  }

  // Producer facing a hostile consumer index.
  new (&control) ShmRingControl();
  ShmRing producer(&control, ring, kCapacity, &doorbell);
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
  absl::string_view meta(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<wire::ShmSetup> setup = ParseShmSetup(meta);
  if (!setup.ok()) return;
  // A region header as a peer might have written it.
  ShmRegionHeader region{};
  std::memcpy(static_cast<void*>(&region), data, std::min(size, sizeof(region)));
  (void)ValidateShmRegionHeader(region, *setup);
}

}  // namespace
}  // namespace locus::internal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 17) return 0;
  uint64_t write_index = locus::internal::Load64(data + 1);
  uint64_t read_index = locus::internal::Load64(data + 9);
  if (data[0] & 1) {
    locus::internal::FuzzSetup(data + 17, size - 17);
  } else {
    locus::internal::FuzzRing(write_index, read_index, data + 17, size - 17);
  }
  return 0;
}
