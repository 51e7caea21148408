#include "transports/shm/shm_ring.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "transports/shm/futex.h"

namespace locus::internal {
namespace {

class RingTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kCapacity = 4096;
  static constexpr uint64_t kKey = kShmSealKeyMark | 0x5eed;
  void SetUp() override {
    data_ = static_cast<char*>(std::aligned_alloc(64, kCapacity));
    std::memset(data_, 0, kCapacity);  // as a fresh memfd is
    new (&control_) ShmRingControl();
  }
  void TearDown() override { std::free(data_); }

  std::string ReadAll(ShmRing& consumer) {
    absl::string_view a, b;
    EXPECT_TRUE(consumer.Readable(&a, &b).ok());
    std::string out = std::string(a) + std::string(b);
    consumer.Consume(out.size());
    consumer.Release();
    return out;
  }

  alignas(64) ShmRingControl control_;
  std::atomic<uint32_t> doorbell_{0};  // the producer's (unused by most tests)
  char* data_ = nullptr;
};

TEST_F(RingTest, BytesWrapAroundInOrder) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  std::string expected, got;
  for (int round = 0; round < 50; ++round) {
    std::string chunk(1000 + round, static_cast<char>('a' + round % 26));
    uint64_t free = 0;
    ASSERT_TRUE(producer.FreeSpace(&free).ok());
    ASSERT_GE(free, chunk.size());
    producer.Write(chunk.data(), chunk.size());
    expected += chunk;
    got += ReadAll(consumer);
  }
  EXPECT_EQ(got, expected);
}

// Taking ownership ahead (a hint) changes nothing a consumer reads: not
// the bytes published, not those written after it, at any position
// including across the ring's end.
TEST_F(RingTest, PrefetchNextWritesChangesNothing) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  std::memset(data_, '#', kCapacity);
  std::string expected, got;
  for (int round = 0; round < 60; ++round) {
    std::string chunk(97 + round * 13, static_cast<char>('a' + round % 26));
    producer.Write(chunk.data(), chunk.size());
    producer.PrefetchNextWrites(256);
    producer.PrefetchNextWrites(kCapacity);  // the whole ring, wrapping
    expected += chunk;
    got += ReadAll(consumer);
  }
  EXPECT_EQ(got, expected);
}

TEST_F(RingTest, ContiguousRunOnlyWhereBytesDoNotWrap) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  std::string expected, got;
  for (int round = 0; round < 40; ++round) {
    std::string chunk(300 + round * 7, static_cast<char>('a' + round % 26));
    if (char* run = producer.ContiguousRun(chunk.size())) {
      EXPECT_GE(run, data_);
      EXPECT_LE(run + chunk.size(), data_ + kCapacity);
      std::memcpy(run, chunk.data(), chunk.size());
      producer.Advance(chunk.size());
      producer.Publish();
    } else {
      producer.Write(chunk.data(), chunk.size());  // wraps: copied in two pieces
    }
    expected += chunk;
    got += ReadAll(consumer);
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(producer.ContiguousRun(kCapacity + 1), nullptr);
}

TEST_F(RingTest, FullRingHasNoSpaceUntilConsumed) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  // An empty ring holds one record of everything but its header.
  uint64_t free = 0;
  ASSERT_TRUE(producer.FreeSpace(&free).ok());
  ASSERT_EQ(free, kCapacity - sizeof(ShmRecordHeader));
  std::string block(free, 'x');
  producer.Write(block.data(), block.size());
  ASSERT_TRUE(producer.FreeSpace(&free).ok());
  EXPECT_EQ(free, 0u);
  EXPECT_FALSE(producer.RoomHint());
  EXPECT_EQ(ReadAll(consumer).size(), block.size());
  ASSERT_TRUE(producer.FreeSpace(&free).ok());
  EXPECT_EQ(free, kCapacity - sizeof(ShmRecordHeader));
  EXPECT_TRUE(producer.RoomHint());
}

// The parts appended between two publications form one record: the
// consumer sees them together or not at all, never a partial frame.
TEST_F(RingTest, AppendsBecomeVisibleOnlyWhenPublished) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  for (int round = 0; round < 30; ++round) {  // across the ring's end too
    producer.Append("head-", 5);
    producer.Append("body", 4);
    EXPECT_FALSE(consumer.HasData());
    EXPECT_EQ(ReadAll(consumer), "");
    producer.Publish();
    EXPECT_TRUE(consumer.HasData());
    EXPECT_TRUE(consumer.HasDataHint());
    EXPECT_EQ(ReadAll(consumer), "head-body");
    EXPECT_FALSE(consumer.HasData());
    EXPECT_FALSE(consumer.HasDataHint());
    producer.Publish();  // nothing appended: no record
    EXPECT_FALSE(consumer.HasData());
    std::string filler(100 + round, 'f');
    producer.Write(filler.data(), filler.size());
    EXPECT_EQ(ReadAll(consumer), filler);
  }
}

// Records are read one at a time, each exactly as published.
TEST_F(RingTest, RecordsAreReadOneAtATime) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  producer.Write("one", 3);
  producer.Write("two!", 4);
  producer.Write("three", 5);
  EXPECT_EQ(ReadAll(consumer), "one");
  EXPECT_EQ(ReadAll(consumer), "two!");
  EXPECT_EQ(ReadAll(consumer), "three");
  EXPECT_EQ(ReadAll(consumer), "");
}

// Room comes back to the producer when the consumer releases, once for a
// batch of records, not as each is read.
TEST_F(RingTest, RoomComesBackOnRelease) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  std::string half(kCapacity / 2 - sizeof(ShmRecordHeader), 'h');
  producer.Write(half.data(), half.size());
  producer.Write(half.data(), half.size());
  uint64_t free = 1;
  ASSERT_TRUE(producer.FreeSpace(&free).ok());
  ASSERT_EQ(free, 0u);
  for (int record = 0; record < 2; ++record) {
    absl::string_view a, b;
    ASSERT_TRUE(consumer.Readable(&a, &b).ok());
    ASSERT_EQ(a.size() + b.size(), half.size());
    consumer.Consume(a.size() + b.size());
  }
  ASSERT_TRUE(producer.FreeSpace(&free).ok());
  EXPECT_EQ(free, 0u);
  consumer.Release();
  ASSERT_TRUE(producer.FreeSpace(&free).ok());
  EXPECT_EQ(free, kCapacity - sizeof(ShmRecordHeader));
}

// Bytes left in the ring by an earlier lap, even a real record header with
// its seal, never pass for the record the consumer waits for: the seal
// depends on the position in the stream, not in the ring.
TEST_F(RingTest, StaleRecordFromAnEarlierLapIsNotInput) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  std::string lap(kCapacity - sizeof(ShmRecordHeader), 'L');
  producer.Write(lap.data(), lap.size());
  ASSERT_EQ(ReadAll(consumer), lap);
  // The consumer now waits at index kCapacity, ring position 0, where the
  // first lap's record header (sealed for index 0) still lies.
  EXPECT_FALSE(consumer.HasData());
  EXPECT_EQ(ReadAll(consumer), "");
  producer.Write("fresh", 5);
  EXPECT_EQ(ReadAll(consumer), "fresh");
}

// A record whose header fills the ring's last 16 bytes starts its bytes at
// the ring's start, for ContiguousRun as for Append.
TEST_F(RingTest, HeaderInTheLastBytesOfTheRing) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  for (const bool in_place : {true, false}) {
    SCOPED_TRACE(in_place);
    // A record that ends 16 bytes before the ring's end (the next header's
    // place).
    const uint64_t at = control_.write_index.load() % kCapacity;
    ASSERT_LT(at + 2 * sizeof(ShmRecordHeader), kCapacity);
    std::string filler(kCapacity - at - 2 * sizeof(ShmRecordHeader), 'f');
    producer.Write(filler.data(), filler.size());
    ASSERT_EQ(control_.write_index.load() % kCapacity, kCapacity - sizeof(ShmRecordHeader));
    ASSERT_EQ(ReadAll(consumer), filler);
    if (in_place) {
      char* run = producer.ContiguousRun(5);
      ASSERT_EQ(run, data_);
      std::memcpy(run, "start", 5);
      producer.Advance(5);
      producer.Publish();
    } else {
      producer.Write("start", 5);
    }
    EXPECT_EQ(ReadAll(consumer), "start");
  }
}

// The hints for threads other than the producer and the consumer go by
// this side's own copies of what it published, not the shared words, which
// the peer can overwrite.
TEST_F(RingTest, HintsIgnoreWhatThePeerWritesIntoThisSidesIndices) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  std::string full(kCapacity - sizeof(ShmRecordHeader), 'f');
  producer.Write(full.data(), full.size());
  ASSERT_FALSE(producer.RoomHint());
  control_.write_index.store(0);  // the peer (consumer) rewrites the producer's index
  EXPECT_FALSE(producer.RoomHint());
  control_.write_index.store(kCapacity);
  ASSERT_EQ(ReadAll(consumer), full);
  ASSERT_FALSE(consumer.HasDataHint());
  control_.read_index.store(0);  // the peer (producer) points it back at the old record
  EXPECT_FALSE(consumer.HasDataHint());
}

TEST_F(RingTest, ImpossibleProducerIndexIsCorruption) {
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  control_.write_index.store(kCapacity + 1);  // moved, yet no record sealed
  absl::string_view a, b;
  absl::Status s = consumer.Readable(&a, &b);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("corrupt"), absl::string_view::npos);
}

TEST_F(RingTest, ImpossibleRecordLengthIsCorruption) {
  for (uint32_t length : {uint32_t{0}, uint32_t{kCapacity - sizeof(ShmRecordHeader) + 1}, ~uint32_t{0}}) {
    SCOPED_TRACE(length);
    ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
    auto* record = reinterpret_cast<ShmRecordHeader*>(data_);
    record->length.store(length);
    record->seal.store(ShmRecordSeal(0, kKey));
    absl::string_view a, b;
    absl::Status s = consumer.Readable(&a, &b);
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
    EXPECT_NE(s.message().find("claims"), absl::string_view::npos) << s;
  }
}

TEST_F(RingTest, ImpossibleConsumerIndexIsCorruption) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  control_.read_index.store(16);  // consumed more than was ever written
  uint64_t free = 0;
  EXPECT_EQ(producer.FreeSpace(&free).code(), absl::StatusCode::kInternal);
}

TEST_F(RingTest, ConsumerIndexOffARecordBoundaryIsCorruption) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  producer.Write("0123456789abcdef0123", 20);  // the next record starts at 48
  control_.read_index.store(20);
  uint64_t free = 0;
  EXPECT_EQ(producer.FreeSpace(&free).code(), absl::StatusCode::kInternal);
}

TEST_F(RingTest, SleepingConsumerIsWokenByProducer) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_, kKey);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_, kKey);
  // Sleeps only on the doorbell (the watchdog is a minute): a lost wake-up
  // shows as a reader that woke at its watchdog.
  const absl::Time watchdog = absl::Now() + absl::Seconds(60);
  std::thread reader([&] {
    while (!consumer.HasData() && absl::Now() < watchdog) {
      uint32_t seq = control_.data_seq.load();
      control_.consumer_sleepers.fetch_add(1);
      if (!consumer.HasData()) FutexWait(&control_.data_seq, seq, watchdog - absl::Now());
      control_.consumer_sleepers.fetch_sub(1);
    }
  });
  while (control_.consumer_sleepers.load() == 0 && absl::Now() < watchdog) absl::SleepFor(absl::Milliseconds(1));
  producer.Write("ping", 4);
  producer.WakeConsumerIfSleeping();
  reader.join();
  EXPECT_LT(absl::Now(), watchdog) << "the wake-up was lost";
  EXPECT_EQ(ReadAll(consumer), "ping");
}

}  // namespace
}  // namespace locus::internal
