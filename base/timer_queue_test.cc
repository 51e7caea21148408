#include "base/timer_queue.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace locus::internal {
namespace {

TEST(TimerQueue, RunsInDeadlineOrder) {
  absl::Mutex mu;
  std::vector<int> order;
  absl::Notification done;
  absl::Time now = absl::Now();
  TimerQueue::Get().Schedule(now + absl::Milliseconds(30), [&] {
    absl::MutexLock l(&mu);
    order.push_back(2);
    done.Notify();
  });
  TimerQueue::Get().Schedule(now + absl::Milliseconds(10), [&] {
    absl::MutexLock l(&mu);
    order.push_back(1);
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  absl::MutexLock l(&mu);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(TimerQueue, CancelledTimerDoesNotRun) {
  std::atomic<bool> ran{false};
  TimerQueue::Id id = TimerQueue::Get().Schedule(absl::Now() + absl::Milliseconds(20), [&] { ran = true; });
  EXPECT_TRUE(TimerQueue::Get().Cancel(id));
  EXPECT_FALSE(TimerQueue::Get().Cancel(id));
  absl::Notification later;
  TimerQueue::Get().Schedule(absl::Now() + absl::Milliseconds(40), [&] { later.Notify(); });
  ASSERT_TRUE(later.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace locus::internal
