// TimerQueue reads the real clock (no injectable clock), so these tests take
// no margins on it: the timer thread runs one callback at a time, and a
// callback that waits (TimerThreadHeld) holds every other timer back, so a
// test can queue timers that are already due, or far in the future, and
// release them at once, whatever the machine's load.
#include "base/timer_queue.h"

#include <atomic>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace locus::internal {
namespace {

using ::locus::testing::kWatchdog;

// Occupies the timer thread with a callback that waits until Release().
class TimerThreadHeld {
 public:
  TimerThreadHeld() {
    TimerQueue::Get().Schedule(absl::InfinitePast(), [state = state_] {
      state->thread = ::locus::testing::ThisThreadId();
      state->started.Notify();
      state->release.WaitForNotification();
    });
    held_ = state_->started.WaitForNotificationWithTimeout(kWatchdog);
  }
  ~TimerThreadHeld() { Release(); }
  bool held() const { return held_; }
  void Release() {
    if (!state_->release.HasBeenNotified()) state_->release.Notify();
  }
  // The timer thread's kernel id.
  pid_t thread() const { return state_->thread; }

 private:
  struct State {
    absl::Notification started;
    absl::Notification release;
    pid_t thread = 0;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
  bool held_ = false;
};

TEST(TimerQueue, DueTimersRunInDeadlineOrderNotSchedulingOrder) {
  absl::Mutex mu;
  std::vector<int> order;
  absl::Notification done;
  const absl::Time base = absl::Now() - absl::Seconds(1);  // all due at once
  {
    TimerThreadHeld held;
    ASSERT_TRUE(held.held());
    TimerQueue::Get().Schedule(base + absl::Milliseconds(3), [&] {
      absl::MutexLock l(&mu);
      order.push_back(3);
      done.Notify();
    });
    TimerQueue::Get().Schedule(base + absl::Milliseconds(1), [&] {
      absl::MutexLock l(&mu);
      order.push_back(1);
    });
    TimerQueue::Get().Schedule(base + absl::Milliseconds(2), [&] {
      absl::MutexLock l(&mu);
      order.push_back(2);
    });
  }
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWatchdog));
  absl::MutexLock l(&mu);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(TimerQueue, CancelledTimerDoesNotRun) {
  std::atomic<bool> ran{false};
  absl::Notification later;
  const absl::Time base = absl::Now() - absl::Seconds(1);
  {
    TimerThreadHeld held;
    ASSERT_TRUE(held.held());
    // Due, but the timer thread is busy: it cannot have run yet.
    TimerQueue::Id id = TimerQueue::Get().Schedule(base, [&] { ran = true; });
    EXPECT_TRUE(TimerQueue::Get().Cancel(id));
    EXPECT_FALSE(TimerQueue::Get().Cancel(id));
    // Due after it: had the cancelled timer stayed queued, it would run first.
    TimerQueue::Get().Schedule(base + absl::Milliseconds(1), [&] { later.Notify(); });
  }
  ASSERT_TRUE(later.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_FALSE(ran);
}

TEST(TimerQueue, TimerInTheFutureWaitsWhileDueOnesRun) {
  std::atomic<bool> future_ran{false};
  absl::Notification due_ran;
  TimerQueue::Id future;
  {
    TimerThreadHeld held;
    ASSERT_TRUE(held.held());
    future = TimerQueue::Get().Schedule(absl::Now() + absl::Hours(1), [&] { future_ran = true; });
    TimerQueue::Get().Schedule(absl::Now(), [&] { due_ran.Notify(); });
  }
  ASSERT_TRUE(due_ran.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_FALSE(future_ran);
  EXPECT_TRUE(TimerQueue::Get().Cancel(future)) << "ran, or was dropped, an hour early";
}

TEST(TimerQueue, EarlierTimerWakesTheThreadWaitingForALaterOne) {
  std::atomic<bool> later_ran{false};
  absl::Notification earlier_ran;
  TimerQueue::Id later;
  pid_t timer_thread = 0;
  {
    TimerThreadHeld held;
    ASSERT_TRUE(held.held());
    timer_thread = held.thread();
    later = TimerQueue::Get().Schedule(absl::Now() + absl::Hours(1), [&] { later_ran = true; });
  }
  // The timer thread now waits for the hour-long timer: a timer due now
  // must wake it.
  ASSERT_TRUE(::locus::testing::WaitUntilThreadBlocks(timer_thread));
  TimerQueue::Get().Schedule(absl::Now(), [&] { earlier_ran.Notify(); });
  EXPECT_TRUE(earlier_ran.WaitForNotificationWithTimeout(kWatchdog))
      << "the timer thread slept through an earlier timer";
  EXPECT_FALSE(later_ran);
  EXPECT_TRUE(TimerQueue::Get().Cancel(later));
}

// What a callback holds is released without the queue's lock, so that a
// capture's destructor may use the queue: after the callback ran, and when
// it is cancelled.
TEST(TimerQueue, ACallbacksCapturesMayUseTheQueueWhenReleased) {
  struct UsesQueue {
    explicit UsesQueue(absl::Notification* released) : released(released) {}
    UsesQueue(const UsesQueue&) = delete;
    absl::Notification* released;
    ~UsesQueue() {
      TimerQueue::Get().Cancel(TimerQueue::Get().Schedule(absl::Now() + absl::Hours(1), [] {}));
      released->Notify();
    }
  };
  absl::Notification after_run;
  TimerQueue::Get().Schedule(absl::Now(), [held = std::make_shared<UsesQueue>(&after_run)] {});
  EXPECT_TRUE(after_run.WaitForNotificationWithTimeout(kWatchdog)) << "released under the queue's lock";
  absl::Notification after_cancel;
  const TimerQueue::Id never = TimerQueue::Get().Schedule(
      absl::Now() + absl::Hours(1), [held = std::make_shared<UsesQueue>(&after_cancel)] {});
  EXPECT_TRUE(TimerQueue::Get().Cancel(never));
  EXPECT_TRUE(after_cancel.HasBeenNotified());
}

}  // namespace
}  // namespace locus::internal
