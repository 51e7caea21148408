// AdaptivePoll: a poller polls at every wait until its polls keep running
// out, then only once in kProbeInterval waits, until a poll finds input.
#include "transports/socket/adaptive_poll.h"

#include "gtest/gtest.h"

namespace locus::internal {
namespace {

// How many of the next `waits` waits would poll (each poll missing).
int PollsAmong(AdaptivePoll& policy, int waits) {
  int polls = 0;
  for (int i = 0; i < waits; ++i) {
    if (!policy.ShouldPoll()) continue;
    ++polls;
    policy.Miss();
  }
  return polls;
}

TEST(AdaptivePollTest, PollsAtEveryWaitWhilePollsFindInput) {
  AdaptivePoll policy;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(policy.ShouldPoll()) << "wait " << i;
    policy.Hit();
  }
}

TEST(AdaptivePollTest, BacksOffAfterMissesInARowThenProbes) {
  AdaptivePoll policy;
  // The first misses still poll; then one poll per probe interval.
  EXPECT_EQ(PollsAmong(policy, AdaptivePoll::kMissesBeforeBackoff), AdaptivePoll::kMissesBeforeBackoff);
  EXPECT_EQ(PollsAmong(policy, 10 * AdaptivePoll::kProbeInterval), 10);
}

TEST(AdaptivePollTest, OneMissBetweenHitsDoesNotBackOff) {
  AdaptivePoll policy;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(policy.ShouldPoll());
    policy.Miss();
    ASSERT_TRUE(policy.ShouldPoll());
    policy.Hit();
  }
}

TEST(AdaptivePollTest, AProbeThatFindsInputEndsTheBackOff) {
  AdaptivePoll policy;
  PollsAmong(policy, 3 * AdaptivePoll::kProbeInterval);  // backed off
  int waits = 0;
  while (!policy.ShouldPoll()) ++waits;
  EXPECT_LT(waits, static_cast<int>(AdaptivePoll::kProbeInterval));
  policy.Hit();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(policy.ShouldPoll());
    policy.Hit();
  }
}

}  // namespace
}  // namespace locus::internal
