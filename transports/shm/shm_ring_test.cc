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
  void SetUp() override {
    data_ = static_cast<char*>(std::aligned_alloc(64, kCapacity));
    new (&control_) ShmRingControl();
  }
  void TearDown() override { std::free(data_); }

  std::string ReadAll(ShmRing& consumer) {
    absl::string_view a, b;
    EXPECT_TRUE(consumer.Readable(&a, &b).ok());
    std::string out = std::string(a) + std::string(b);
    consumer.Consume(out.size());
    return out;
  }

  alignas(64) ShmRingControl control_;
  std::atomic<uint32_t> doorbell_{0};  // the producer's (unused by most tests)
  char* data_ = nullptr;
};

TEST_F(RingTest, BytesWrapAroundInOrder) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_);
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
  ShmRing producer(&control_, data_, kCapacity, &doorbell_);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_);
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
  ShmRing producer(&control_, data_, kCapacity, &doorbell_);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_);
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
  ShmRing producer(&control_, data_, kCapacity, &doorbell_);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_);
  std::string block(kCapacity, 'x');
  producer.Write(block.data(), block.size());
  uint64_t free = 1;
  ASSERT_TRUE(producer.FreeSpace(&free).ok());
  EXPECT_EQ(free, 0u);
  EXPECT_EQ(ReadAll(consumer).size(), kCapacity);
  ASSERT_TRUE(producer.FreeSpace(&free).ok());
  EXPECT_EQ(free, kCapacity);
}

TEST_F(RingTest, ImpossibleProducerIndexIsCorruption) {
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_);
  control_.write_index.store(kCapacity + 1);  // more than a ring's worth unread
  absl::string_view a, b;
  absl::Status s = consumer.Readable(&a, &b);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("corrupt"), absl::string_view::npos);
}

TEST_F(RingTest, ProducerIndexGoingBackwardsIsCorruption) {
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_);
  control_.write_index.store(100);
  absl::string_view a, b;
  ASSERT_TRUE(consumer.Readable(&a, &b).ok());
  control_.write_index.store(50);
  EXPECT_FALSE(consumer.Readable(&a, &b).ok());
}

TEST_F(RingTest, ImpossibleConsumerIndexIsCorruption) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_);
  control_.read_index.store(10);  // consumed more than was ever written
  uint64_t free = 0;
  EXPECT_EQ(producer.FreeSpace(&free).code(), absl::StatusCode::kInternal);
}

TEST_F(RingTest, SleepingConsumerIsWokenByProducer) {
  ShmRing producer(&control_, data_, kCapacity, &doorbell_);
  ShmRing consumer(&control_, data_, kCapacity, &doorbell_);
  std::thread reader([&] {
    absl::Time watchdog = absl::Now() + absl::Seconds(60);
    while (!consumer.HasData() && absl::Now() < watchdog) {
      uint32_t seq = control_.data_seq.load();
      control_.consumer_sleepers.fetch_add(1);
      if (!consumer.HasData()) FutexWait(&control_.data_seq, seq, absl::Seconds(1));
      control_.consumer_sleepers.fetch_sub(1);
    }
  });
  absl::SleepFor(absl::Milliseconds(20));
  producer.Write("ping", 4);
  producer.WakeConsumerIfSleeping();
  reader.join();
  EXPECT_EQ(ReadAll(consumer), "ping");
}

}  // namespace
}  // namespace locus::internal
