#include "transports/shm/shm_bulk.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace locus::internal {
namespace {

constexpr uint64_t kCapacity = 1u << 20;
constexpr uint64_t kPayload = 100u << 10;  // 100 KiB: a bulk payload

class ShmBulk : public ::testing::Test {
 protected:
  std::string Ref(uint64_t offset, uint64_t length) {
    ShmPayloadRef ref{offset, length};
    return std::string(reinterpret_cast<const char*>(&ref), sizeof(ref));
  }
  uint64_t MustReserve(uint64_t size) {
    absl::StatusOr<std::optional<uint64_t>> at = writer_.Reserve(size);
    EXPECT_TRUE(at.ok()) << at.status();
    EXPECT_TRUE(at.ok() && at->has_value());
    return at.ok() && at->has_value() ? **at : ~uint64_t{0};
  }

  std::vector<char> area_ = std::vector<char>(kCapacity);
  ShmBulkControl control_{};
  ShmBulkWriter writer_{&control_, area_.data(), kCapacity};
  ShmBulkReader reader_{&control_, area_.data(), kCapacity};
};

TEST_F(ShmBulk, PayloadWrittenByTheWriterIsWhatTheReaderResolves) {
  const uint64_t at = MustReserve(kPayload);
  std::memset(writer_.data() + at, 'x', kPayload);
  writer_.Commit(at, kPayload);
  absl::StatusOr<absl::string_view> bytes = reader_.Resolve(Ref(at, kPayload));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, std::string(kPayload, 'x'));
  EXPECT_EQ(bytes->data(), area_.data() + at);  // in place, not copied
}

TEST_F(ShmBulk, SmallOrHugePayloadsAreNotForTheBulkArea) {
  EXPECT_FALSE(writer_.Accepts(kMinBulkPayload - 1));
  EXPECT_TRUE(writer_.Accepts(kMinBulkPayload));
  EXPECT_FALSE(writer_.Accepts(kCapacity));  // plus its placement, more than the area
  absl::StatusOr<std::optional<uint64_t>> at = writer_.Reserve(100);
  ASSERT_TRUE(at.ok());
  EXPECT_FALSE(at->has_value());
  ShmBulkWriter none(&control_, nullptr, 0);
  EXPECT_FALSE(none.Accepts(kPayload));
}

TEST_F(ShmBulk, SequentialPayloadsReuseTheLowestBytes) {
  // One payload at a time (synchronous calls): every payload lands at the
  // same place, so the memory touched stays one payload's worth.
  const uint64_t first = MustReserve(kPayload);
  for (int i = 0; i < 100; ++i) {
    const uint64_t at = MustReserve(kPayload);
    EXPECT_EQ(at, first);
    writer_.Commit(at, kPayload);
    reader_.Release();
  }
  EXPECT_LT(first, 4096u);
}

TEST_F(ShmBulk, FullAreaSaysNoRoomUntilThePeerReleases) {
  std::vector<uint64_t> offsets;
  for (;;) {
    absl::StatusOr<std::optional<uint64_t>> at = writer_.Reserve(kPayload);
    ASSERT_TRUE(at.ok());
    if (!at->has_value()) break;
    offsets.push_back(**at);
    writer_.Commit(**at, kPayload);
  }
  ASSERT_GE(offsets.size(), 8u);  // 1 MiB holds nine 100 KiB payloads and placement
  for (size_t i = 1; i < offsets.size(); ++i) {
    EXPECT_GE(offsets[i], offsets[i - 1] + kPayload) << "payloads overlap";
    EXPECT_LE(offsets[i] + kPayload, kCapacity);
  }
  reader_.Release();  // the oldest payload is free again
  const uint64_t reused = MustReserve(kPayload);
  EXPECT_EQ(reused, offsets[0]);
  writer_.Commit(reused, kPayload);
  // Wrapped: the live payloads are offsets[1..] and the new one at the start.
  absl::StatusOr<std::optional<uint64_t>> none = writer_.Reserve(kPayload);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(writer_.in_flight(), offsets.size());
}

TEST_F(ShmBulk, ManyPayloadsInFlightNeverOverlapLivePayloads) {
  // Payloads of varying sizes, released in order at varying lags: every
  // reservation must avoid the bytes of every payload still in flight.
  struct Live {
    uint64_t offset, size;
  };
  std::deque<Live> live;
  uint64_t seed = 7;
  int placed = 0;
  size_t most_live = 0;
  for (int i = 0; i < 5000; ++i) {
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    const uint64_t size = kMinBulkPayload + (seed >> 33) % (200u << 10);
    const size_t release = (seed >> 20) % 3;
    for (size_t r = 0; r < release && !live.empty(); ++r) {
      live.pop_front();
      reader_.Release();
    }
    absl::StatusOr<std::optional<uint64_t>> at = writer_.Reserve(size);
    ASSERT_TRUE(at.ok());
    if (!at->has_value()) continue;
    const uint64_t offset = **at;
    ASSERT_LE(offset + size, kCapacity);
    for (const Live& l : live) {
      ASSERT_TRUE(offset + size <= l.offset || l.offset + l.size <= offset)
          << "payload at " << offset << " overlaps one at " << l.offset;
    }
    writer_.Commit(offset, size);
    live.push_back({offset, size});
    ++placed;
    most_live = std::max(most_live, live.size());
  }
  // A full area may refuse some (the sender then uses the ring), but a
  // writer that refused most would pass the checks above vacuously: with
  // about one release per reservation, most find room, and often next to
  // several live payloads (wrapping around them).
  EXPECT_GE(placed, 4000) << "of 5000";
  EXPECT_GE(most_live, 6u) << "payloads live at once, at most";
}

TEST_F(ShmBulk, ImpossibleReleaseCountIsCorruption) {
  const uint64_t at = MustReserve(kPayload);
  writer_.Commit(at, kPayload);
  control_.released.store(5);  // more than were ever sent
  absl::StatusOr<std::optional<uint64_t>> next = writer_.Reserve(kPayload);
  EXPECT_EQ(next.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(next.status().message().find("corrupt shared-memory bulk area"), std::string::npos);
  control_.released.store(1);
  ASSERT_TRUE(writer_.Reserve(kPayload).ok());
  control_.released.store(0);  // going backwards
  EXPECT_EQ(writer_.Reserve(kPayload).status().code(), absl::StatusCode::kInternal);
}

TEST_F(ShmBulk, ReferencesOutsideTheAreaAreRejected) {
  EXPECT_TRUE(reader_.Resolve(Ref(0, kCapacity)).ok());
  EXPECT_TRUE(reader_.Resolve(Ref(kCapacity, 0)).ok());
  for (const std::string& bad :
       {Ref(1, kCapacity), Ref(kCapacity + 1, 0), Ref(kCapacity - 10, 11),
        Ref(~uint64_t{0}, 2), Ref(2, ~uint64_t{0}), Ref(0, kCapacity + 1), std::string("short")}) {
    absl::StatusOr<absl::string_view> r = reader_.Resolve(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  }
  ShmBulkReader none(&control_, nullptr, 0);
  EXPECT_EQ(none.Resolve(Ref(0, 0)).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace locus::internal
